// SendQueue: the sender's messages, cut into fragments, until acknowledged.
//
// Messages are queued per (channel, mode) with their own sequence numbers and
// cut into fragments of at most `max_fragment_payload` bytes (layout as in
// reassembler.h). The connection asks for the next fragment to put in a
// packet; fragments it reports lost are sent again (reliable modes) before
// any new data of their lane, always in a new packet. When every fragment of
// a reliable message is acknowledged the message is released and an ack
// receipt reported. Unreliable messages are released once every fragment has
// been sent.
//
// Scheduling by lane (the idea of GameNetworkingSockets' lanes). Every
// channel starts in the shared lane: one FIFO across channels in Enqueue
// order, a message's fragments before the next message's; that is the
// whole scheduler until SetChannelLane is called. SetChannelLane(channel,
// priority, weight) gives a channel a lane of its own (for all its delivery
// modes), and lanes compete:
//   - strict priority: only lanes of the most urgent priority with something
//     sendable send (0 is the most urgent, kPriorities - 1 the least; the
//     shared lane has priority 0 and weight 1);
//   - within a priority, start-time fair queueing by bytes: a lane's tag
//     grows by (payload + kFragmentCostBytes) * kTagScale / weight per
//     fragment sent, the lane with the smallest tag sends next, and a lane
//     that becomes sendable starts no lower than the tag last served at its
//     priority (no credit for idle time). Backlogged lanes of one priority
//     thus share bytes in proportion to their weights, fragment by fragment.
// A lane's messages keep their queue order; lost fragments go first within
// their lane (the receiver waits for them and they hold the flow-control
// window, but a more urgent lane's new data still overtakes a less urgent
// lane's retransmissions: strict priority is the point, and a lane's own
// retransmissions never fall behind its own new data). A message blocked
// by its space's window blocks its lane (not the others). Cost per fragment:
// an O(log lanes) ready-set update on top of the message lookups with lanes
// configured, nothing more without. Tags are 64-bit; a priority's tags are
// rebased (shifted down together) whenever its virtual time passes 2^62, so
// they never overflow. Lanes are bounded by the channels the caller accepts
// (Connection: max_channels); their state is allocated on the first
// SetChannelLane and kept for the queue's life.
//
// Bounds: queued bytes (RESOURCE_EXHAUSTED from Enqueue when full: the
// application's back-pressure) and, per reliable sequence space, at most
// `window` messages between the oldest unacknowledged one and the newest one
// sent: the receiver's ReceiveChannel window (flow control). Urgent reserve:
// a message that does not fit under max_queued_bytes is still accepted when
// the bytes queued at its priority or more urgent ones, itself included, fit
// in max_queued_bytes / kUrgentReserveDivisor and the total stays within
// max_queued_bytes plus that reserve: a bulk sender that filled the queue at
// a less urgent priority does not lock out a more urgent message. Without
// lanes every byte is at priority 0, so the reserve never applies and the
// bound is max_queued_bytes as before.
//
// Not thread-safe. Owns the message bytes. An idle queue (nothing queued, no
// lane configured) holds no heap.
#ifndef UDPMSG_RELIABLE_SEND_QUEUE_H_
#define UDPMSG_RELIABLE_SEND_QUEUE_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "reliable/delivery.h"
#include "reliable/message_bytes.h"
#include "reliable/reassembler.h"

namespace udpmsg::reliable {

// Names fragments [index, index + run) of one queued message (one fragment
// unless taken as a run, see SendQueue::NextRun); stable while the message
// lives.
struct FragmentId {
  uint64_t message = 0;  // the queue's internal message number
  uint32_t index = 0;
  uint32_t run = 1;
  friend bool operator==(const FragmentId& a, const FragmentId& b) {
    return a.message == b.message && a.index == b.index && a.run == b.run;
  }
};

// What the connection writes into a data frame: fragment header.index, or
// the run of id.run fragments from it (payload holds them back to back).
struct OutgoingFragment {
  FragmentId id;
  uint32_t channel = 0;
  DeliveryMode mode = DeliveryMode::kReliableOrdered;
  uint64_t sequence = 0;
  FragmentHeader header;
  // Valid until the queue next changes shape (Enqueue, OnAcked, OnLost,
  // Clear: a released message takes its bytes, an owned short string moves
  // with its message): encode it before then.
  absl::string_view payload;
  bool retransmission = false;
};

// Reported when a reliable message is fully acknowledged.
struct MessageReceipt {
  uint32_t channel = 0;
  DeliveryMode mode = DeliveryMode::kReliableOrdered;
  uint64_t sequence = 0;
  uint64_t bytes = 0;
};

class SendQueue final {
 public:
  struct Limits {
    uint64_t max_fragment_payload = 1100;
    uint64_t max_queued_bytes = 64 << 20;
    uint64_t max_message_bytes = 16 << 20;
    uint64_t window = 4096;  // messages per reliable sequence space
    // The first sequence number of every space, and the bound no sequence
    // reaches (numbers never wrap: Enqueue fails first). The first is a test
    // hook for behaviour near the bound.
    uint64_t initial_sequence = 0;
    uint64_t sequence_limit = uint64_t{1} << 62;
    // Test hook: the virtual time every priority starts at when lanes are
    // first configured (tags near overflow exercise the rebase).
    uint64_t initial_virtual_time = 0;
  };

  // Priorities are [0, kPriorities), 0 the most urgent; weights are
  // [1, kMaxWeight].
  static constexpr uint32_t kPriorities = 8;
  static constexpr uint32_t kMaxWeight = 65535;
  // Scheduling cost of a fragment besides its payload (about a data frame's
  // header), so that empty messages are not free.
  static constexpr uint64_t kFragmentCostBytes = 32;
  // Tag units per byte at weight 1.
  static constexpr uint64_t kTagScale = 1 << 16;
  // The urgent reserve is max_queued_bytes / kUrgentReserveDivisor.
  static constexpr uint64_t kUrgentReserveDivisor = 8;

  explicit SendQueue(const Limits& limits) : limits_(limits) {}
  SendQueue(SendQueue&&) = default;
  SendQueue& operator=(SendQueue&&) = default;

  // Queues a message. Returns its sequence number in (channel, mode).
  // INVALID_ARGUMENT: larger than max_message_bytes.
  // RESOURCE_EXHAUSTED: the queue holds max_queued_bytes already (and the
  //   urgent reserve does not apply, see above), or the (channel, mode)
  //   space has used every number below sequence_limit.
  absl::StatusOr<uint64_t> Enqueue(uint32_t channel, DeliveryMode mode, MessageBytes message);

  // The next fragment to send, from the lane that sends next (see above):
  // one of its lost fragments first, then its new data (subject to the
  // flow-control window). nullopt when nothing may be sent now. The
  // fragment counts as in flight until OnAcked/OnLost.
  std::optional<OutgoingFragment> Next();
  // The same, but only a fragment of at most `max_payload` bytes: nullopt
  // (and nothing taken) when the next one is larger, so a packet being
  // filled takes the next fragment only if it fits.
  std::optional<OutgoingFragment> Next(uint64_t max_payload);
  // The same, but only a fragment `fits` accepts (it sees the whole
  // fragment, so a packet being filled can check the frame's exact size);
  // nullopt and nothing taken when it refuses.
  std::optional<OutgoingFragment> NextIf(absl::FunctionRef<bool(const OutgoingFragment&)> fits);
  // The same for a frame that may carry a run of consecutive fragments of
  // one message (frames.h kFeatureFragmentRuns): the candidate is offered
  // as the longest run available (id.run: the message's fragments never
  // sent, at most `max_run` (0 counts as 1); a lost fragment alone, retransmissions are
  // never merged), its payload spanning them, and `take` returns how many
  // of them to take from its start (0 takes nothing). The fragment
  // returned is the run taken, each of its fragments in flight as if
  // taken one by one.
  // `fetch_ahead`: prefetch the message's bytes a packet or two past the run
  // (see the comment in NextRun); a caller that takes a run for many packets
  // fetches each packet's bytes itself (Connection::SendBurst).
  std::optional<OutgoingFragment> NextRun(
      uint32_t max_run, absl::FunctionRef<uint32_t(const OutgoingFragment&)> take,
      bool fetch_ahead = true);
  // Whether Next() would return something. What it found is kept for the
  // next call of NextRun (Next, NextIf) if nothing changes the queue first
  // (a NextRun that takes nothing keeps it too): a sender asks this before
  // each packet or burst, then takes from it.
  bool HasSendable();
  // Whether lanes are configured (SetChannelLane): then what is taken after
  // a fragment may come from another lane's message whatever that message's
  // fragments left. Without lanes the queue hands out one message's unsent
  // fragments in order until its last is taken (lost fragments, which go
  // first, change only through OnLost).
  bool HasLanes() const { return lanes_ != nullptr; }

  // The packet carrying `id` (each fragment of its run) was acknowledged /
  // declared lost. Unknown or already-settled fragments are ignored (acks
  // may repeat). A lost run is sent again one fragment at a time.
  void OnAcked(const FragmentId& id, std::vector<MessageReceipt>* receipts);
  void OnLost(const FragmentId& id);

  // Cuts messages whose first fragment has not been sent yet (and every
  // later one) into fragments of at most `size` bytes (> 0): the datagram
  // size changed (path MTU discovery). Messages already started keep their
  // fragments, retransmissions included: the receiver knows their count.
  // O(messages not started).
  void SetMaxFragmentPayload(uint64_t size);
  uint64_t max_fragment_payload() const { return limits_.max_fragment_payload; }

  // Gives `channel` a lane of its own with `priority` and `weight` (see
  // "Scheduling by lane"), or changes its lane's. Its queued messages and
  // lost fragments move to the lane in their order, and the bytes it has
  // queued count at the new priority from now on. There is no way back to
  // the shared lane; (0, 1) is a lane of its own at the default priority.
  // O(messages queued). The caller bounds the channels (Connection:
  // max_channels).
  // INVALID_ARGUMENT: priority >= kPriorities, or weight outside
  //   [1, kMaxWeight].
  absl::Status SetChannelLane(uint32_t channel, uint32_t priority, uint32_t weight);
  // The channel's (priority, weight): (0, 1) for the shared lane.
  std::pair<uint32_t, uint32_t> ChannelLane(uint32_t channel) const;

  // Drops everything queued (connection closed); lane settings stay.
  void Clear();

  uint64_t queued_bytes() const { return queued_bytes_; }
  size_t messages() const { return messages_.size(); }
  bool empty() const { return messages_.empty(); }
  uint64_t retransmitted_fragments() const { return retransmitted_; }

 private:
  struct Space;
  struct Message {
    uint32_t channel;
    DeliveryMode mode;
    uint64_t sequence;
    MessageBytes bytes;
    uint32_t count;
    uint8_t priority = 0;      // its lane's when queued (for the reserve)
    uint32_t next_unsent = 0;  // fragments [0, next_unsent) have been sent once
    uint32_t settled = 0;      // acked (reliable) or sent (unreliable)
    std::vector<bool> acked;   // reliable only
    Space* space = nullptr;    // its (channel, mode) space (spaces_ is node-stable)
  };
  struct SpaceKey {
    uint32_t channel;
    DeliveryMode mode;
    friend bool operator==(const SpaceKey& a, const SpaceKey& b) {
      return a.channel == b.channel && a.mode == b.mode;
    }
    template <typename H>
    friend H AbslHashValue(H h, const SpaceKey& k) {
      return H::combine(std::move(h), k.channel, k.mode);
    }
  };
  struct Space {
    uint64_t next_sequence = 0;
    // Unacknowledged reliable messages by sequence -> message number.
    absl::btree_map<uint64_t, uint64_t> unacked;
  };

  // A FIFO of messages with its lost fragments. Queues are vectors with a
  // head index, not std::deques (which allocate a map and a 512-byte block
  // when constructed), freed when drained: an idle lane holds no heap.
  struct Lane {
    uint8_t priority = 0;
    uint32_t weight = 1;
    uint64_t tag = 0;    // virtual start time of its next fragment
    bool ready = false;  // in `ready_` (configured lanes only)
    // Message numbers with fragments never sent, in queue order:
    // pending[pending_head, end); entries already fully sent or released
    // are skipped lazily.
    std::vector<uint64_t> pending;
    size_t pending_head = 0;
    // Lost fragments to send again, oldest first: lost[lost_head, end);
    // entries settled meanwhile are skipped lazily.
    std::vector<FragmentId> lost;
    size_t lost_head = 0;
  };
  // (priority, tag, lane key): the lane to serve is the smallest. Lane key 0
  // is the shared lane, channel c's is c + 1.
  using ReadyKey = std::tuple<uint8_t, uint64_t, uint64_t>;
  // Exists once a channel got a lane of its own.
  struct Lanes {
    absl::flat_hash_map<uint32_t, Lane> by_channel;
    absl::btree_set<ReadyKey> ready;
    uint64_t virtual_time[kPriorities] = {};  // tag last served per priority
    uint64_t queued_by_priority[kPriorities] = {};
  };

  // Where the next fragment comes from (Candidate): a lost one or the front
  // message's next unsent one.
  struct Pick {
    Lane* lane = nullptr;
    uint64_t key = 0;
    uint64_t number = 0;
    Message* message = nullptr;
    uint32_t index = 0;
    bool lost = false;
  };
  // The fragment Next() would take; lane == nullptr when none.
  Pick Candidate();
  // The message numbered `number`, or nullptr. Remembers the last one found
  // (the sender asks for the same message for each of its fragments).
  Message* Find(uint64_t number);
  // Forgets what Find remembers; called whenever messages_ changes shape
  // (a btree moves its values on insert and erase).
  void ForgetFound() { found_.valid = false; }
  // Forgets the Candidate() HasSendable kept; called on entry to every
  // public method that changes the queue, and by NextRun once it took
  // something (one that took nothing keeps it: nothing changed).
  void ForgetCandidate() { candidate_.valid = false; }

  static void Fill(uint64_t number, const Message& m, uint32_t index, const FragmentLayout& layout,
                   bool retransmission, OutgoingFragment& f);
  bool WindowAllows(const Message& m) const;
  // One past the last fragment of `id`'s run that `m` has (ids may be
  // stale or repeated).
  static uint32_t RunEnd(const FragmentId& id, const Message& m) {
    return static_cast<uint32_t>(std::min<uint64_t>(uint64_t{id.index} + id.run, m.count));
  }
  void Release(uint64_t number);

  Lane& LaneOf(uint32_t channel, uint64_t* key);
  Lane& LaneByKey(uint64_t key);
  // Drops settled lost entries at the head of `lane.lost`.
  void SkipSettledLost(Lane& lane);
  // The oldest message of `lane` with fragments never sent (nullptr if
  // none), dropping fully sent ones from the head; sets *number.
  Message* FrontPending(Lane& lane, uint64_t* number);
  bool Sendable(Lane& lane);
  // Puts `lane` into or out of the ready set as Sendable says (lanes only).
  void Refresh(uint64_t key, Lane& lane);
  // Advances the tag of `lane` (the one that just sent) by a fragment of
  // `bytes` payload.
  void Charge(uint64_t key, Lane& lane, size_t bytes);
  // Subtracts priority p's virtual time from the tags of its lanes (keeps
  // them far from overflowing; once per 2^62 tag units).
  void Rebase(uint8_t priority);
  // The lane that sends next, or nullptr; sets *key.
  Lane* Top(uint64_t* key);
  void PushLost(Lane& lane, const FragmentId& id);
  void PopLost(Lane& lane);
  void PopPending(Lane& lane);
  uint64_t& QueuedAt(uint8_t priority);

  Limits limits_;
  uint64_t next_number_ = 0;
  absl::btree_map<uint64_t, Message> messages_;  // by message number = queue order
  // Node-stable: messages point at their space. Never erased (the caller
  // bounds the channels).
  absl::node_hash_map<SpaceKey, Space> spaces_;
  // Something remembered that points into this queue's own storage, while
  // `valid`. Forgotten on both sides of a move: it pointed into the source,
  // whose map nodes the destination now owns.
  template <typename T>
  struct Memory {
    T value{};
    bool valid = false;
    Memory() = default;
    Memory(Memory&& other) noexcept { other.valid = false; }
    Memory& operator=(Memory&& other) noexcept {
      valid = false;
      other.valid = false;
      return *this;
    }
  };
  struct FoundMessage {
    uint64_t number = 0;
    Message* message = nullptr;
  };
  // Find's memory.
  Memory<FoundMessage> found_;
  // HasSendable's Candidate(), or the one a NextRun that took nothing
  // looked at (ForgetCandidate). Asking the queue again in
  // NextRun cost a bulk sender about 108 instructions per packet
  // (bench/endpoint_bench.cc BM_BulkInMemory).
  Memory<Pick> candidate_;
  Lane shared_;
  std::unique_ptr<Lanes> lanes_;  // null until SetChannelLane
  uint64_t queued_bytes_ = 0;
  uint64_t retransmitted_ = 0;
};

}  // namespace udpmsg::reliable

#endif  // UDPMSG_RELIABLE_SEND_QUEUE_H_
