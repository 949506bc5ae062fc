// AckTracker: the receiver's record of packet numbers, turned into ACK frames.
//
// Follows RFC 9000 13.2: an ACK is sent immediately after every
// `ack_eliciting_threshold` (2) ack-eliciting packets, immediately when an
// ack-eliciting packet arrives out of order (a gap below it, or it fills a
// gap), and otherwise within `max_ack_delay` of the first unacknowledged
// ack-eliciting packet. Packets that only carry acks are recorded but never
// trigger an ACK by themselves.
//
// The peer may raise or lower the threshold with an AckFrequency frame
// (OnAckFrequency): a fast sender with a large window asks for an ACK every
// few packets instead of every second one. Out-of-order packets and the
// max_ack_delay bound still apply whatever the threshold.
//
// Received numbers are kept as disjoint ranges, at most `max_ranges` of them
// (the oldest ranges are forgotten first; a forgotten packet that arrives
// again is reported as a duplicate so it is never delivered twice, because
// everything at or below the forgotten horizon counts as received). A peer
// that skips packet numbers can make the tracker hold max_ranges ranges of
// at most kAckRangeBytes each (docs/security.md, "Memory per connection").
//
// Usage:
//   AckTracker acks;
//   if (!acks.OnPacket(now, number, packet.AckEliciting())) return;  // duplicate
//   ...
//   if (acks.AckNow() || now >= acks.AckDeadline()) packet.ack = acks.BuildAck(now, kMaxAckRanges);
//
// Not thread-safe.
#ifndef UDPMSG_RELIABLE_ACK_TRACKER_H_
#define UDPMSG_RELIABLE_ACK_TRACKER_H_

#include <cstddef>
#include <cstdint>

#include "absl/container/btree_map.h"
#include "absl/time/time.h"
#include "proto/frames.h"

namespace udpmsg::reliable {

// An upper bound of the heap one received range holds: its btree_map slot
// (16 bytes) in a node at worst half full, with its share of the inner
// nodes (checked by tests/reliable/endpoint_test.cc).
inline constexpr uint64_t kAckRangeBytes = 64;

class AckTracker final {
 public:
  struct Options {
    int ack_eliciting_threshold = 2;
    absl::Duration max_ack_delay = absl::Milliseconds(25);
    size_t max_ranges = 1024;
  };

  AckTracker() : AckTracker(Options{}) {}
  explicit AckTracker(const Options& options);

  // Records packet `number` received at `now`. Returns false (and records
  // nothing) when it was received before or lies at or below the forgotten
  // horizon: the caller must then drop the packet's frames (but still treat
  // it as a reason to re-send an ACK soon, which this method arranges for
  // ack-eliciting duplicates: they set AckNow()).
  bool OnPacket(absl::Time now, uint64_t number, bool ack_eliciting);

  // The peer asked for an immediate ACK (a packet with a Ping: it is about
  // to be blocked by its congestion window, or has nothing more to send):
  // sets AckNow() if anything is waiting to be acknowledged.
  void RequestImmediateAck() {
    if (new_packets_) ack_now_ = true;
  }
  // The peer's AckFrequency frame: from now on acknowledge every `threshold`
  // ack-eliciting packets (clamped to [1, proto::kMaxAckFrequencyThreshold]).
  // A `sequence` not above the last applied one is ignored (a reordered,
  // older request), and so returns false.
  bool OnAckFrequency(uint64_t sequence, uint32_t threshold);
  int ack_eliciting_threshold() const { return options_.ack_eliciting_threshold; }
  // True when an ACK should go out in the next packet without waiting.
  bool AckNow() const { return ack_now_; }
  // When a delayed ACK is due; InfiniteFuture when nothing needs acking.
  absl::Time AckDeadline() const { return deadline_; }
  // True when some packet was received since the last BuildAck (what
  // PiggybackWanted starts from).
  bool HasNewPackets() const { return new_packets_; }
  // Whether an ACK should ride on outgoing data (besides AckNow() and
  // AckDeadline()): an ack-eliciting packet awaits one, or packets that only
  // carried ACKs arrived and `ack_only_interval` has passed since the last
  // ACK built. Those need no ACK (RFC 9000 13.2.1); one now and then lets the
  // peer forget the ranges it reported.
  bool PiggybackWanted(absl::Time now, absl::Duration ack_only_interval) const {
    return new_packets_ && (unacked_eliciting_ > 0 || now - last_built_ >= ack_only_interval);
  }

  // Builds an ACK of the newest `max_ranges` ranges (descending, as
  // proto::Ack requires) with ack_delay = now - receive time of the largest.
  // Resets AckNow, the deadline and the ack-eliciting counter. Returns an ack
  // with no ranges when nothing was ever received.
  proto::Ack BuildAck(absl::Time now, size_t max_ranges);

  // The peer acknowledged a packet that carried an ACK whose largest was
  // `largest_acked`: numbers at or below it no longer need reporting (RFC 9000
  // 13.2.4), which keeps ACKs small. Numbers stay known as received. The
  // largest received number is always reported, so an ACK is never empty.
  void OnAckAcknowledged(uint64_t largest_acked);

  bool Contains(uint64_t number) const;
  uint64_t largest() const { return largest_; }  // 0 before any packet
  size_t range_count() const { return ranges_.size(); }
  uint64_t duplicates() const { return duplicates_; }

 private:
  Options options_;
  // Received ranges: smallest -> largest, disjoint and non-adjacent.
  absl::btree_map<uint64_t, uint64_t> ranges_;
  bool any_ = false;
  uint64_t largest_ = 0;
  absl::Time largest_time_ = absl::InfinitePast();
  // Everything <= horizon_ counts as received (forgotten or acked-of-ack).
  bool has_horizon_ = false;
  uint64_t horizon_ = 0;
  // Numbers <= report_floor_ are not reported any more (ack of ack).
  bool has_report_floor_ = false;
  uint64_t report_floor_ = 0;
  int unacked_eliciting_ = 0;
  bool has_frequency_sequence_ = false;
  uint64_t frequency_sequence_ = 0;
  bool ack_now_ = false;
  bool new_packets_ = false;
  absl::Time last_built_ = absl::InfinitePast();  // the last BuildAck with ranges
  absl::Time deadline_ = absl::InfiniteFuture();
  uint64_t duplicates_ = 0;
};

}  // namespace udpmsg::reliable

#endif  // UDPMSG_RELIABLE_ACK_TRACKER_H_
