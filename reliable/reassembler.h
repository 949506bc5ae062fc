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
// both the number of messages in progress and the bytes held across them are
// capped. What is held counts the overheads too (held_bytes()): every
// buffered fragment costs its payload plus kFragmentOverheadBytes and every
// message in progress kPartialMessageBytes, so a peer sending 1-byte
// fragments cannot hold a hundred times the limit in bookkeeping.
// Incomplete messages are dropped by Expire() after a timeout.
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

// The size of every fragment but the last of `total_size` bytes in `count`
// (count > 0).
inline uint64_t FragmentChunk(uint32_t count, uint64_t total_size) {
  return (total_size + count - 1) / count;
}

// Where fragments [index, index + run) lie together, for a consistent
// triple and index + run <= count (a sender's own cut, or one LayoutOf
// accepted): no checks. The last fragment takes what is left.
inline FragmentLayout RunLayoutOfValid(uint32_t index, uint32_t run, uint32_t count,
                                       uint64_t total_size) {
  const uint64_t chunk = FragmentChunk(count, total_size);
  const uint64_t offset = chunk * index;
  const uint64_t end = uint64_t{index} + run >= count ? total_size : chunk * (uint64_t{index} + run);
  return FragmentLayout{offset, end - offset};
}

// The same for fragment `index` alone.
inline FragmentLayout LayoutOfValid(uint32_t index, uint32_t count, uint64_t total_size) {
  return RunLayoutOfValid(index, 1, count, total_size);
}

// Upper bounds of the heap the reassembler holds besides payload (checked by
// tests/reliable/endpoint_test.cc with a counting allocator; see
// docs/security.md, "Memory per connection").
// A buffered fragment: its btree_map slot (40 bytes) in a node at worst half
// full, its share of the inner nodes, and the rounding of its payload's
// allocation.
inline constexpr uint64_t kFragmentOverheadBytes = 160;
// A message in progress: its slot in the table of partial messages (at worst
// about 2.3 slots of ~90 bytes per message) and its fragment map's root.
inline constexpr uint64_t kPartialMessageBytes = 256;
// A message's in-order buffer (see Add's `growth_allowance`) besides its
// reserved bytes: the allocation's header and rounding, and a string's
// smallest allocation (30 bytes) when it reserved less.
inline constexpr uint64_t kPrefixOverheadBytes = 48;

struct FragmentHeader {
  uint32_t index = 0;
  uint32_t count = 1;
  uint64_t total_size = 0;
  // Fragments [index, index + run) back to back (a data frame's run,
  // proto::DataFragment::run): >= 1, index + run <= count.
  uint32_t run = 1;
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
    // Across all partial messages: payload + kFragmentOverheadBytes per
    // fragment + kPartialMessageBytes per message (held_bytes()).
    uint64_t max_buffered_bytes = 64 << 20;
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
  // Not copied or moved: it remembers a pointer into its own map.
  Reassembler(const Reassembler&) = delete;
  Reassembler& operator=(const Reassembler&) = delete;

  // Adds one fragment, or a run of them (header.run: the payload is their
  // bytes back to back). Returns the whole message when this completes it,
  // nullopt when more are needed (or it was a duplicate). A run that is next
  // in order (or a message's start) goes into the in-order buffer in one
  // append; otherwise its fragments are added one by one, as if they had
  // come in frames of their own, except that the allowance is for the whole
  // run (what the first ones hold is taken off it for the next), and an
  // error part-way keeps the fragments added before it (the caller refuses
  // the packet: the sender sends them again, duplicates then).
  // INVALID_ARGUMENT: inconsistent with the layout or with earlier fragments
  //   of the same message (count/total changed), or message too large.
  // RESOURCE_EXHAUSTED: accepting it would exceed a limit (held_bytes() over
  //   max_buffered_bytes, or max_partial_messages); the fragment is dropped
  //   and nothing else changes (the peer may send it again later).
  // A single-fragment message is returned directly without buffering.
  //
  // In-order fragments: a message's fragments 0, 1, 2, ... are appended to
  // one buffer that becomes the delivered message (no allocation and map
  // slot per fragment, no copy when it completes), when the caller allows
  // the buffer to grow: it is reserved in doubling steps (never beyond
  // total_size, never more than twice the bytes it holds) and each step's
  // new bytes count in held_bytes() and must fit in `growth_allowance` and
  // max_buffered_bytes; appending within what is reserved costs nothing
  // more. Fragments out of order, or when a step does not fit, are kept one
  // by one as before (and moved into the buffer once the gap before them
  // fills). With an allowance of 0 nothing is ever reserved: what held
  // bytes mean and every limit are exactly as without the buffer. The
  // caller decides how much of its budget a message may take ahead
  // (Connection: what is left after the headroom it keeps for the head).
  absl::StatusOr<std::optional<std::string>> Add(absl::Time now, const MessageKey& key,
                                                 const FragmentHeader& header,
                                                 absl::string_view payload,
                                                 uint64_t growth_allowance = 0);

  // Whether Add would put this fragment (or run) into what its message's
  // in-order buffer already reserved: it is the next in order, not held
  // yet, and fits. Such a fragment adds no held bytes (and lets fragments kept one by
  // one join the buffer, which frees theirs), so a caller that keeps room
  // for a message to complete needs none for it: the buffer reserved in
  // advance is what the message is then short of, not more. Reservations end
  // on fragment boundaries, so the next fragment is inside or wholly past it.
  bool FitsReserved(const MessageKey& key, const FragmentHeader& header,
                    size_t payload_size) const;

  // What Add returns for a fragment of a message no fragment of which is
  // buffered, when the fragment is the whole message (header.count == 1):
  // the same checks, without a Reassembler (a connection creates one only
  // for a fragmented message). A run of all of a message's fragments is
  // whole too. nullopt when it is not a whole message (or
  // is malformed): Add must decide.
  static std::optional<std::string> Whole(uint64_t max_message_bytes,
                                          const FragmentHeader& header,
                                          absl::string_view payload);

  // Drops partial messages whose first fragment arrived before now - timeout.
  // Returns how many were dropped.
  size_t Expire(absl::Time now);
  // Drops one partial message (e.g. a stale sequenced one).
  void Discard(const MessageKey& key);

  size_t partial_messages() const { return partial_.size(); }
  // Payload bytes buffered in partial messages.
  uint64_t buffered_bytes() const { return buffered_bytes_; }
  // What the partial messages hold: payload + kFragmentOverheadBytes per
  // fragment + kPartialMessageBytes per message. Never over
  // max_buffered_bytes.
  uint64_t held_bytes() const { return held_bytes_; }
  // What a message of `size` bytes may hold while partial, when each of its
  // fragments carries at least `min_fragment` bytes.
  static uint64_t PartialCost(uint64_t size, uint64_t min_fragment);
  const Stats& stats() const { return stats_; }
  const Limits& limits() const { return limits_; }

 private:
  struct Partial {
    FragmentHeader header;
    absl::Time started;
    uint64_t received_bytes = 0;
    // Fragments [0, contiguous) in order, in `prefix` (reserved: `reserved`
    // bytes, counted whole in held bytes); the others one by one.
    std::string prefix;
    uint64_t reserved = 0;
    uint32_t contiguous = 0;
    absl::btree_map<uint32_t, std::string> fragments;
  };
  // Reallocates the prefix to exactly `size` bytes of capacity (a string's
  // own reserve may round up to twice its old capacity: more than is
  // charged).
  static void ReserveExactly(std::string& prefix, uint64_t size);
  // Appends `run` fragments from index partial.contiguous to the prefix
  // when they fit in what is reserved or a growth step fits; returns the
  // held bytes it added through *grown. False: they do not fit (nothing
  // changed).
  bool TryAppend(Partial& partial, absl::string_view payload, uint64_t growth_allowance,
                 uint64_t* grown, uint32_t run = 1);
  // Add for each fragment of a run that cannot go in order in one piece.
  absl::StatusOr<std::optional<std::string>> AddOneByOne(absl::Time now, const MessageKey& key,
                                                         const FragmentHeader& header,
                                                         absl::string_view payload,
                                                         uint64_t growth_allowance);

  // partial_'s entry for `key`, or nullptr. The entry found last is
  // remembered (a fragment's message is nearly always the one before's, and
  // FitsReserved then Add look it up twice per fragment: the hash lookups
  // were ~5% of the veth receiver's samples); the memory is cleared on every
  // insertion and erasure, which may move entries.
  Partial* Lookup(const MessageKey& key) const;
  void Remember(const MessageKey& key, Partial* partial) const {
    last_key_ = key;
    last_ = partial;
  }
  void Forget() const { last_ = nullptr; }
  // Whether any of fragments [index, index + run) is among those kept one
  // by one (most messages arrive in order and keep none: the btree is not
  // searched then).
  static bool KeptApart(const Partial& partial, uint32_t index, uint32_t run = 1) {
    if (partial.fragments.empty()) return false;
    const auto it = partial.fragments.lower_bound(index);
    return it != partial.fragments.end() && it->first - index < run;
  }

  Limits limits_;
  absl::flat_hash_map<MessageKey, Partial> partial_;
  mutable MessageKey last_key_;
  mutable Partial* last_ = nullptr;
  // What a partial message holds (see held_bytes()).
  static uint64_t Held(const Partial& partial) {
    return (partial.received_bytes - partial.prefix.size()) +
           partial.fragments.size() * kFragmentOverheadBytes + kPartialMessageBytes +
           (partial.reserved > 0 ? partial.reserved + kPrefixOverheadBytes : 0);
  }

  uint64_t buffered_bytes_ = 0;
  uint64_t held_bytes_ = 0;
  Stats stats_;
};

}  // namespace udpmsg::reliable

#endif  // UDPMSG_RELIABLE_REASSEMBLER_H_
