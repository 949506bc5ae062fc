// Delivery modes and the receive side of one (channel, mode) sequence space.
//
// Each message carries a 64-bit sequence number, counted per channel and per
// mode by the sender. ReceiveChannel decides, for a completed message, whether
// and when the application gets it:
//
//   kUnreliable           delivered when complete, in arrival order
//   kUnreliableSequenced  delivered only if newer than every message already
//                         delivered; older ones are stale and dropped
//   kReliableUnordered    delivered exactly once, as soon as complete
//   kReliableOrdered      delivered exactly once, in sequence order; later
//                         messages wait for earlier ones
//
// For the reliable modes the receiver accepts sequence numbers only inside a
// window [next, next + window): the sender never runs further ahead (flow
// control), so buffered out-of-order messages and delivered-number sets are
// bounded by the window.
//
// Memory: held_bytes() is what the channel holds for its peer beyond its own
// object: each parked (ordered, waiting) message's payload plus
// kParkedMessageBytes, and kDeliveredAheadBytes per sequence number an
// unordered channel delivered ahead of next(). The constants are upper
// bounds of the heap the containers really use (absl btree nodes half full
// in the worst case, allocator rounding), which
// tests/reliable/endpoint_test.cc checks with a counting allocator; the
// connection charges them to its budget (docs/security.md, "Memory per
// connection").
//
// Usage:
//   ReceiveChannel channel(DeliveryMode::kReliableOrdered, /*window=*/4096);
//   if (!channel.Wanted(seq)) return;   // duplicate or stale: drop early
//   std::vector<std::string> ready;
//   channel.OnComplete(seq, std::move(message), &ready);   // 0..n messages
//
// Not thread-safe.
#ifndef UDPMSG_RELIABLE_DELIVERY_H_
#define UDPMSG_RELIABLE_DELIVERY_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/strings/string_view.h"

namespace udpmsg::reliable {

enum class DeliveryMode : uint8_t {
  kUnreliable = 0,
  kUnreliableSequenced = 1,
  kReliableUnordered = 2,
  kReliableOrdered = 3,
};

// Upper bounds of the heap a ReceiveChannel holds (see the file comment).
// The channel object itself with its slot in the connection's table of
// channels (a flat_hash_map of unique_ptrs, at worst about 2.3 slots per
// channel).
inline constexpr uint64_t kChannelBytes = 256;
// A parked message besides its payload: its btree_map slot (40 bytes) in a
// node at worst half full, its share of the inner nodes, and the rounding of
// its payload's allocation.
inline constexpr uint64_t kParkedMessageBytes = 160;
// A sequence number delivered ahead: its btree_set slot (8 bytes) in a node
// at worst half full, with its share of the inner nodes.
inline constexpr uint64_t kDeliveredAheadBytes = 32;

inline constexpr bool IsReliable(DeliveryMode mode) {
  return mode == DeliveryMode::kReliableUnordered || mode == DeliveryMode::kReliableOrdered;
}
absl::string_view ModeName(DeliveryMode mode);

class ReceiveChannel final {
 public:
  struct Stats {
    uint64_t delivered = 0;
    uint64_t duplicates = 0;   // reliable messages seen again after delivery
    uint64_t stale = 0;        // sequenced messages older than the newest
    uint64_t out_of_window = 0;
  };

  // `initial`: the sender's first sequence number (0 unless a test moves it).
  ReceiveChannel(DeliveryMode mode, uint64_t window, uint64_t initial = 0)
      : mode_(mode), window_(window), next_(initial) {}

  // Whether a fragment of message `sequence` is worth keeping: false for a
  // reliable message already delivered (or buffered complete), a stale
  // sequenced one, or one beyond the window.
  bool Wanted(uint64_t sequence) const;

  // A message completed reassembly. Appends what may now be delivered, in
  // delivery order, to `out`. Ignores (and counts) unwanted messages.
  void OnComplete(uint64_t sequence, std::string message, std::vector<std::string>* out);

  // Lowest sequence number not yet delivered in order (reliable modes), or
  // one past the newest delivered (sequenced).
  uint64_t next() const { return next_; }
  // Complete messages waiting for earlier ones (ordered mode).
  size_t buffered_messages() const { return waiting_.size(); }
  // Sequence numbers delivered ahead of next() (unordered mode).
  size_t delivered_ahead() const { return delivered_ahead_.size(); }
  // Parked payload + kParkedMessageBytes per parked message +
  // kDeliveredAheadBytes per number delivered ahead (not kChannelBytes).
  uint64_t held_bytes() const { return held_bytes_; }
  const Stats& stats() const { return stats_; }
  DeliveryMode mode() const { return mode_; }

 private:
  void Advance();

  DeliveryMode mode_;
  uint64_t window_;
  uint64_t next_ = 0;
  absl::btree_set<uint64_t> delivered_ahead_;        // unordered: delivered >= next_
  absl::btree_map<uint64_t, std::string> waiting_;   // ordered: complete, > next_
  uint64_t held_bytes_ = 0;
  Stats stats_;
};

}  // namespace udpmsg::reliable

#endif  // UDPMSG_RELIABLE_DELIVERY_H_
