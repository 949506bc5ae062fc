// Reassembler: bounded reassembly of fragmented messages.
//
// A message of `total_size` bytes is cut into `count` fragments of exactly
// `chunk = ceil(total_size / count)` bytes each, the last one shorter (see
// FragmentLayout). Because every fragment's offset and length follow from
// (index, count, total_size), the wire needs no offsets, and a fragment whose
// length does not match is rejected instead of corrupting a buffer.
//
// Memory is charged for bytes actually received, never for a size a peer
// claims: a header announcing 4 GiB costs nothing until 4 GiB arrive, and
// both the number of messages in progress and the bytes buffered across them
// are capped. Incomplete messages are dropped by Expire() after a timeout.
//
// Usage:
//   Reassembler r({.max_message_bytes = 16 << 20});
//   absl::StatusOr<std::optional<std::string>> done =
//       r.Add(now, key, FragmentHeader{index, count, total}, payload);
//   if (done.ok() && done->has_value()) Deliver(**done);
//
// Owns the partial messages. Not thread-safe.
#ifndef UDPMSG_RELIABLE_REASSEMBLER_H_
#define UDPMSG_RELIABLE_REASSEMBLER_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace udpmsg::reliable {

// Where fragment `index` of a message lies.
struct FragmentLayout {
  uint64_t offset = 0;
  uint64_t length = 0;
};

// The fragment count a sender uses for `total_size` bytes when each fragment
// may carry up to `max_fragment_payload` bytes (at least 1, also for an empty
// message). `max_fragment_payload` must be > 0.
uint32_t FragmentCountFor(uint64_t total_size, uint64_t max_fragment_payload);

// Offset and length of fragment `index` of `count` for `total_size` bytes.
// INVALID_ARGUMENT when the triple is inconsistent (index >= count, more
// fragments than bytes, or a layout whose last fragment would be empty).
absl::StatusOr<FragmentLayout> LayoutOf(uint32_t index, uint32_t count, uint64_t total_size);

struct FragmentHeader {
  uint32_t index = 0;
  uint32_t count = 1;
  uint64_t total_size = 0;
};

// Identifies one message: the channel, its sequence space, and its number.
struct MessageKey {
  uint32_t channel = 0;
  uint32_t space = 0;  // e.g. the delivery mode: each has its own numbers
  uint64_t sequence = 0;
  friend bool operator==(const MessageKey& a, const MessageKey& b) {
    return a.channel == b.channel && a.space == b.space && a.sequence == b.sequence;
  }
  template <typename H>
  friend H AbslHashValue(H h, const MessageKey& k) {
    return H::combine(std::move(h), k.channel, k.space, k.sequence);
  }
};

class Reassembler final {
 public:
  struct Limits {
    uint64_t max_message_bytes = 16 << 20;    // larger messages are refused
    uint64_t max_buffered_bytes = 64 << 20;   // across all partial messages
    size_t max_partial_messages = 1024;       // messages in progress at once
    absl::Duration timeout = absl::Seconds(30);  // Expire() drops older ones
  };

  struct Stats {
    uint64_t completed = 0;
    uint64_t duplicate_fragments = 0;
    uint64_t rejected_fragments = 0;  // malformed or inconsistent
    uint64_t refused_for_space = 0;   // RESOURCE_EXHAUSTED
    uint64_t expired_messages = 0;
  };

  explicit Reassembler(const Limits& limits) : limits_(limits) {}

  // Adds one fragment. Returns the whole message when this fragment completes
  // it, nullopt when more are needed (or it was a duplicate).
  // INVALID_ARGUMENT: inconsistent with the layout or with earlier fragments
  //   of the same message (count/total changed), or message too large.
  // RESOURCE_EXHAUSTED: accepting it would exceed a limit; the fragment is
  //   dropped and nothing else changes (the peer may send it again later).
  // A single-fragment message is returned directly without buffering.
  absl::StatusOr<std::optional<std::string>> Add(absl::Time now, const MessageKey& key,
                                                 const FragmentHeader& header,
                                                 absl::string_view payload);

  // Drops partial messages whose first fragment arrived before now - timeout.
  // Returns how many were dropped.
  size_t Expire(absl::Time now);
  // Drops one partial message (e.g. a stale sequenced one).
  void Discard(const MessageKey& key);

  size_t partial_messages() const { return partial_.size(); }
  uint64_t buffered_bytes() const { return buffered_bytes_; }
  const Stats& stats() const { return stats_; }
  const Limits& limits() const { return limits_; }

 private:
  struct Partial {
    FragmentHeader header;
    absl::Time started;
    uint64_t received_bytes = 0;
    absl::btree_map<uint32_t, std::string> fragments;
  };

  Limits limits_;
  absl::flat_hash_map<MessageKey, Partial> partial_;
  uint64_t buffered_bytes_ = 0;
  Stats stats_;
};

}  // namespace udpmsg::reliable

#endif  // UDPMSG_RELIABLE_REASSEMBLER_H_
