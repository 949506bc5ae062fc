// SentPackets: the sender's packets in flight, loss detection and the probe
// timeout, per RFC 9002 sections 6 and A.
//
// Every sent packet is recorded with its number, time, size and the fragments
// it carried. An ACK frame marks packets acknowledged (yielding an RTT sample
// when the largest acknowledged is newly acked and at least one newly acked
// packet is ack-eliciting, RFC 9002 5.1) and then
// declares lost every unacknowledged packet sent before the largest
// acknowledged one that is either `packet_threshold` (3) numbers older, or
// was sent more than RttEstimator::LossDelay() (9/8 RTT) ago. Packets that
// are older than the largest acked but within both thresholds get a loss
// timer. With nothing to time, a probe timeout (PTO) fires after
// Pto() * 2^pto_count: the caller then sends one or two ack-eliciting probes
// (new data, else a retransmission, else a ping) and the count doubles the
// next timeout. The count resets when an ACK newly acknowledges something.
//
// Reordering (RFC 9002 6.1 allows adapting both thresholds; Linux's RACK
// and TCP reordering metric do the same): a packet declared lost and then
// acknowledged was only reordered. Each such spurious loss raises the packet
// threshold to the reordering it saw (largest acked now - its number + 1, at
// most kMaxPacketThreshold) and the time threshold to its delay over the RTT
// plus 1/8 (at most kMaxTimeThreshold), so a path that keeps reordering by
// the same amount stops costing retransmissions and congestion responses.
// The last kLostMemory lost packets are remembered to notice this.
//
// Persistent congestion (RFC 9002 7.6): reported when an ACK declares lost two
// ack-eliciting packets sent more than PersistentCongestionDuration() apart,
// both after the first RTT sample, with every packet sent between them lost
// in the same event (none acknowledged, none still outstanding; a packet
// declared lost by an earlier event also ends the span, conservatively).
//
// Bounded: at most `max_packets` tracked; OnSent returns false past that and
// the caller must stop sending (it means the peer stopped acking).
//
// Not thread-safe. Owns its records.
#ifndef UDPMSG_RELIABLE_SENT_PACKETS_H_
#define UDPMSG_RELIABLE_SENT_PACKETS_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/frames.h"
#include "reliable/rtt_estimator.h"
#include "reliable/send_queue.h"

namespace udpmsg::reliable {

struct SentPacket {
  uint64_t number = 0;
  absl::Time sent_time;
  size_t bytes = 0;            // datagram size
  bool ack_eliciting = false;  // counts toward bytes in flight when true
  // A path MTU probe: its loss says the size is too big, not that the path
  // is congested (RFC 9000 14.4), so it never counts towards persistent
  // congestion, and the connection keeps its ack or loss (spurious too)
  // from the congestion controller. (Beside ack_eliciting: one padding
  // word less per record.)
  bool mtu_probe = false;
  // Inline for the usual one or two fragments: no heap allocation per packet.
  absl::InlinedVector<FragmentId, 2> fragments;
  // The largest number in the ACK frame this packet carried, if any (for
  // AckTracker::OnAckAcknowledged).
  std::optional<uint64_t> largest_acked_in_ack;
  // The sequence of the AckFrequency frame this packet carried; 0 for none.
  uint64_t ack_frequency_sequence = 0;
};

class SentPackets final {
 public:
  static constexpr int kMaxPacketThreshold = 300;
  static constexpr double kMaxTimeThreshold = 2.0;
  static constexpr size_t kLostMemory = 1024;

  struct Options {
    int packet_threshold = 3;              // kPacketThreshold (the starting value)
    // kTimeThreshold (the starting value); 9/8 uses RttEstimator::LossDelay().
    double time_threshold = 9.0 / 8.0;
    size_t max_packets = 1 << 16;
    // The backed-off probe timeout never exceeds this (nor goes below the
    // unbacked PTO): a connection that gives up after a fixed time without
    // progress (ConnectionOptions::peer_timeout) still probes several times
    // within it, however many probes went unanswered before.
    absl::Duration max_pto_period = absl::InfiniteDuration();
  };

  struct AckResult {
    std::vector<SentPacket> acked;  // newly acknowledged, ascending
    std::vector<SentPacket> lost;   // newly declared lost, ascending
    // Set when the largest acknowledged was newly acked and at least one newly
    // acked packet is ack-eliciting (RFC 9002 5.1): now - the largest's send
    // time.
    std::optional<absl::Duration> rtt_sample;
    bool persistent_congestion = false;
    // Packets declared lost earlier and acknowledged by this ACK: reordered,
    // not lost (number, send time, size; no fragments), ascending.
    std::vector<SentPacket> spurious;
  };

  struct TimeoutResult {
    std::vector<SentPacket> lost;  // time-threshold losses
    bool probe = false;            // a PTO fired: send 1-2 probes
  };

  SentPackets() : SentPackets(Options{}) {}
  explicit SentPackets(const Options& options);

  // Records a packet. Numbers must increase. False (the packet is not
  // recorded) when max_packets are already tracked or the number does not
  // increase.
  bool OnSent(SentPacket packet);

  // Processes an ACK received at `now`; updates `rtt` with the sample (using
  // ack.ack_delay) before detecting losses, as RFC 9002 A.7 does.
  // INVALID_ARGUMENT when the ACK names a number never sent (>= next number):
  // a protocol violation, the caller closes the connection.
  absl::StatusOr<AckResult> OnAck(absl::Time now, const proto::Ack& ack, RttEstimator& rtt,
                                  bool handshake_confirmed);

  // When OnTimeout must be called: the earliest loss time if any, else the
  // PTO deadline (last ack-eliciting send + Pto(true) * 2^pto_count, at most
  // max(Pto(true), max_pto_period) after it) if ack-eliciting packets are in
  // flight, else InfiniteFuture.
  absl::Time Deadline(const RttEstimator& rtt) const;

  // Call when now >= Deadline(): declares time-threshold losses, or else
  // reports a PTO and increments pto_count. An early call does nothing.
  TimeoutResult OnTimeout(absl::Time now, const RttEstimator& rtt);

  // Stops tracking everything (connection closed); returns nothing.
  void Clear();
  // The connection moved to a new path (connection.h, "Path validation and
  // migration"): returns every packet in flight, ascending, and forgets
  // them without remembering them as lost (a later ack of one is ignored and
  // raises no reordering threshold); the probe count, loss timer and first
  // RTT sample start over. The thresholds in force are kept.
  std::vector<SentPacket> AbandonAll();

  uint64_t bytes_in_flight() const { return bytes_in_flight_; }
  size_t size() const { return packets_.size(); }
  // Slots the packets in flight occupy in memory (about 112 bytes each):
  // at most twice the span from the oldest tracked to the newest, none when
  // nothing is tracked; a ring shrinks back when at most an eighth is in use.
  size_t slots() const { return packets_.slots(); }
  int pto_count() const { return pto_count_; }
  // Largest number acknowledged so far; nullopt before any ACK.
  std::optional<uint64_t> largest_acked() const { return largest_acked_; }
  // The thresholds in force (raised by spurious losses, never lowered).
  int packet_threshold() const { return packet_threshold_; }
  double time_threshold() const { return time_threshold_; }

 private:
  // Bytes-in-flight bookkeeping for a packet leaving packets_.
  void Remove(const SentPacket& packet);
  absl::Duration LossDelay(const RttEstimator& rtt) const;
  // RFC 9002 A.10: removes and returns the lost packets; re-arms loss_time_.
  std::vector<SentPacket> DetectLost(absl::Time now, const RttEstimator& rtt,
                                     bool* persistent_congestion);

  // A packet declared lost, kept to notice a later acknowledgement.
  struct LostRecord {
    absl::Time sent_time;
    size_t bytes = 0;
    bool ack_eliciting = false;
    bool mtu_probe = false;
  };
  // Raises the thresholds for the lost packets inside `ack` (acked after
  // all), forgets them and appends them to `spurious`.
  void OnSpuriousLosses(absl::Time now, const proto::Ack& ack, const RttEstimator& rtt,
                        std::vector<SentPacket>* spurious);

  // The packets in flight by number: numbers only grow, so they live in a
  // ring indexed by number (O(1) to record, find and take, where a btree
  // cost a node walk and rebalancing per packet), with a slot per number
  // from the oldest packet still tracked to the newest; taken slots are
  // dead and trimmed from the front. Empty, it holds no heap (an idle
  // connection's memory, docs/scale.md).
  class Window {
   public:
    size_t size() const { return live_; }
    bool empty() const { return live_ == 0; }
    size_t slots() const { return ring_.size(); }
    // Numbers [first(), end()) have slots (live or dead); end() == first()
    // when empty.
    uint64_t first() const { return base_; }
    uint64_t end() const { return base_ + span_; }
    // Slots a packet numbered `number` would need (gap included).
    uint64_t SpanWith(uint64_t number) const { return span_ == 0 ? 1 : number - base_ + 1; }
    // `packet.number` >= end() (numbers increase).
    void Append(SentPacket packet);
    // The live packet numbered `number`, or nullptr.
    SentPacket* Find(uint64_t number);
    // Marks `number`'s slot dead (its packet was moved out) and trims.
    void Drop(uint64_t number);
    void Clear();

   private:
    struct Slot {
      bool live = false;
      SentPacket packet;
    };
    Slot& At(uint64_t number) { return ring_[(head_ + (number - base_)) & (ring_.size() - 1)]; }
    void Reserve(uint64_t span);
    // Moves the slots in use into a ring of `size` (a power of two >= span_).
    void Resize(size_t size);
    // Rings this large shrink when at most an eighth is in use.
    static constexpr size_t kShrinkFrom = 256;

    std::vector<Slot> ring_;  // size 0 or a power of two
    size_t head_ = 0;         // ring index of number base_
    uint64_t base_ = 0;
    uint64_t span_ = 0;
    size_t live_ = 0;
  };

  Options options_;
  int packet_threshold_;
  double time_threshold_;
  absl::btree_map<uint64_t, LostRecord> recently_lost_;  // at most kLostMemory
  Window packets_;  // unacked, not yet lost
  std::optional<uint64_t> largest_acked_;
  std::optional<uint64_t> largest_sent_;
  uint64_t bytes_in_flight_ = 0;
  size_t eliciting_in_flight_ = 0;  // ack-eliciting packets in packets_
  // When the first RTT sample was taken (persistent congestion only counts
  // packets sent after it); InfinitePast before.
  absl::Time first_rtt_sample_ = absl::InfinitePast();
  absl::Time last_eliciting_sent_ = absl::InfinitePast();
  absl::Time loss_time_ = absl::InfiniteFuture();
  int pto_count_ = 0;
};

}  // namespace udpmsg::reliable

#endif  // UDPMSG_RELIABLE_SENT_PACKETS_H_
