// SendQueue: the sender's messages, cut into fragments, until acknowledged.
//
// Messages are queued per (channel, mode) with their own sequence numbers and
// cut into fragments of at most `max_fragment_payload` bytes (layout as in
// reassembler.h). The connection asks for the next fragment to put in a
// packet; fragments it reports lost are sent again (reliable modes) before any
// new data, always in a new packet. When every fragment of a reliable message
// is acknowledged the message is released and an ack receipt reported.
// Unreliable messages are released once every fragment has been sent.
//
// Bounds: queued bytes (RESOURCE_EXHAUSTED from Enqueue when full: the
// application's back-pressure) and, per reliable sequence space, at most
// `window` messages between the oldest unacknowledged one and the newest one
// sent: the receiver's ReceiveChannel window (flow control).
//
// Not thread-safe. Owns the message bytes.
#ifndef UDPMSG_RELIABLE_SEND_QUEUE_H_
#define UDPMSG_RELIABLE_SEND_QUEUE_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "reliable/delivery.h"
#include "reliable/reassembler.h"

namespace udpmsg::reliable {

// Names one fragment of one queued message; stable while the message lives.
struct FragmentId {
  uint64_t message = 0;  // the queue's internal message number
  uint32_t index = 0;
  friend bool operator==(const FragmentId& a, const FragmentId& b) {
    return a.message == b.message && a.index == b.index;
  }
};

// What the connection writes into a data frame.
struct OutgoingFragment {
  FragmentId id;
  uint32_t channel = 0;
  DeliveryMode mode = DeliveryMode::kReliableOrdered;
  uint64_t sequence = 0;
  FragmentHeader header;
  absl::string_view payload;  // valid until the fragment is acked or lost
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
  };

  explicit SendQueue(const Limits& limits) : limits_(limits) {}

  // Queues a message. Returns its sequence number in (channel, mode).
  // INVALID_ARGUMENT: larger than max_message_bytes.
  // RESOURCE_EXHAUSTED: the queue holds max_queued_bytes already, or the
  //   (channel, mode) space has used every number below sequence_limit.
  absl::StatusOr<uint64_t> Enqueue(uint32_t channel, DeliveryMode mode, std::string message);

  // The next fragment to send: a lost one first, then new data (subject to the
  // flow-control window). nullopt when nothing may be sent now. The fragment
  // counts as in flight until OnAcked/OnLost.
  std::optional<OutgoingFragment> Next();
  // Whether Next() would return something.
  bool HasSendable();
  // The payload size of the fragment Next() would return; nullopt when it
  // would return nothing. Lets the caller check that the fragment fits in
  // the packet being filled before taking it.
  std::optional<size_t> PeekPayloadSize();

  // The packet carrying `id` was acknowledged / declared lost. Unknown or
  // already-settled ids are ignored (acks may repeat).
  void OnAcked(const FragmentId& id, std::vector<MessageReceipt>* receipts);
  void OnLost(const FragmentId& id);

  // Cuts messages whose first fragment has not been sent yet (and every
  // later one) into fragments of at most `size` bytes (> 0): the datagram
  // size changed (path MTU discovery). Messages already started keep their
  // fragments, retransmissions included: the receiver knows their count.
  // O(messages not started).
  void SetMaxFragmentPayload(uint64_t size);
  uint64_t max_fragment_payload() const { return limits_.max_fragment_payload; }

  // Drops everything (connection closed).
  void Clear();

  uint64_t queued_bytes() const { return queued_bytes_; }
  size_t messages() const { return messages_.size(); }
  bool empty() const { return messages_.empty(); }
  uint64_t retransmitted_fragments() const { return retransmitted_; }

 private:
  struct Message {
    uint32_t channel;
    DeliveryMode mode;
    uint64_t sequence;
    std::string bytes;
    uint32_t count;
    uint32_t next_unsent = 0;  // fragments [0, next_unsent) have been sent once
    uint32_t settled = 0;      // acked (reliable) or sent (unreliable)
    std::vector<bool> acked;   // reliable only
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

  // The oldest message with fragments never sent (nullptr if none); moves
  // `cursor_` past fully sent ones.
  Message* FirstUnsent();
  OutgoingFragment Make(uint64_t number, Message& m, uint32_t index, bool retransmission);
  bool WindowAllows(const Message& m) const;
  void Release(uint64_t number);

  Limits limits_;
  uint64_t next_number_ = 0;
  uint64_t cursor_ = 0;  // no message below this has unsent fragments
  absl::btree_map<uint64_t, Message> messages_;  // by message number = queue order
  absl::flat_hash_map<SpaceKey, Space> spaces_;
  // Lost fragments to send again, oldest first: lost_[lost_head_, end). A
  // vector, not a std::deque, which allocates a map and a 512-byte block
  // when constructed: an idle connection's queue holds no heap.
  bool LostEmpty() const { return lost_head_ == lost_.size(); }
  void PopLost();
  std::vector<FragmentId> lost_;
  size_t lost_head_ = 0;
  uint64_t queued_bytes_ = 0;
  uint64_t retransmitted_ = 0;
};

}  // namespace udpmsg::reliable

#endif  // UDPMSG_RELIABLE_SEND_QUEUE_H_
