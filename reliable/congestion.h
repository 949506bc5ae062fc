// Congestion control behind an interface, NewReno per RFC 9002 section 7 and
// appendix B first, and a pacer (RFC 9002 7.7).
//
// NewReno: the window starts at min(10 * max_datagram, max(2 * max_datagram,
// 14720)) bytes; slow start grows it by the bytes acknowledged; a loss (of a
// packet sent after the current recovery period began) halves it
// (kLossReductionFactor 0.5, floor kMinimumWindow = 2 * max_datagram) and
// starts a recovery period: further losses of packets sent before the period
// started do not cut again, so three losses in one window cut once.
// Congestion avoidance adds max_datagram * acked / window per ACK. Persistent
// congestion collapses the window to kMinimumWindow. Acks of packets sent
// before recovery began do not grow the window.
//
// The caller tracks bytes in flight (SentPackets) and asks CanSend().
//
// Bbr (MakeCongestionController("bbr", ...)): a model-based controller after
// draft-cardwell-iccrg-bbr-congestion-control (BBR v1) with the delivery-rate
// sampler of draft-cheng-iccrg-delivery-rate-estimation. It paces at
// pacing_gain * max_bw and bounds inflight by cwnd_gain * max_bw * min_rtt,
// so random (non-congestive) loss does not lower its rate; see the comment
// on class Bbr for the details and for its one loss response.
//
// Not thread-safe.
#ifndef UDPMSG_RELIABLE_CONGESTION_H_
#define UDPMSG_RELIABLE_CONGESTION_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/btree_map.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace udpmsg::reliable {

// What the controller needs to know about one acked or lost packet.
struct PacketInfo {
  uint64_t number = 0;
  absl::Time sent_time;
  size_t bytes = 0;
};

class CongestionController {
 public:
  virtual ~CongestionController() = default;
  virtual absl::string_view name() const = 0;

  virtual void OnPacketSent(absl::Time now, const PacketInfo& packet, uint64_t bytes_in_flight) = 0;
  virtual void OnPacketAcked(absl::Time now, const PacketInfo& packet) = 0;
  // `packet` is the largest of the lost packets of one ACK/timeout event
  // (RFC 9002 B.8 reacts once per event); `bytes` is their total.
  virtual void OnPacketsLost(absl::Time now, const PacketInfo& largest_lost, uint64_t bytes,
                             bool persistent_congestion) = 0;

  // A packet reported to OnPacketsLost was acknowledged after all (it was
  // reordered, not lost). A controller may undo the response to a loss
  // episode that turns out to have been entirely spurious.
  virtual void OnSpuriousLoss(absl::Time now, const PacketInfo& packet) {}

  // The sender had nothing to send while the window was open (its queue is
  // empty or flow-control blocked): rate samples taken until what is in
  // flight now is acknowledged measure the application, not the path.
  virtual void OnAppLimited() {}

  // The connection's datagram size changed (path MTU discovery,
  // reliable/pmtud.h): the controller keeps its state (window, estimates)
  // and counts in the new size from now on.
  virtual void OnDatagramSizeChanged(size_t max_datagram) = 0;

  virtual uint64_t window() const = 0;
  virtual bool InRecovery() const = 0;
  virtual bool InSlowStart() const = 0;
  // How many times loss made the controller cut what it lets in flight
  // (ConnectionStats::congestion_reductions).
  virtual uint64_t reductions() const = 0;
  // The rate the sender should pace at, in bytes per second, for a
  // controller that sets it (BBR); nullopt lets the caller derive it from
  // window() and the smoothed RTT (RFC 9002 7.7).
  virtual std::optional<double> PacingRate() const { return std::nullopt; }
  // Whether OnPacketSent may change PacingRate() or window(): a sender that
  // reads them once for a burst of packets reads them again after each.
  virtual bool SendingMayChangePacing() const { return false; }
  bool CanSend(uint64_t bytes_in_flight) const { return bytes_in_flight < window(); }
};

class NewReno final : public CongestionController {
 public:
  explicit NewReno(size_t max_datagram);

  absl::string_view name() const override { return "newreno"; }
  void OnPacketSent(absl::Time now, const PacketInfo& packet, uint64_t bytes_in_flight) override;
  void OnPacketAcked(absl::Time now, const PacketInfo& packet) override;
  void OnPacketsLost(absl::Time now, const PacketInfo& largest_lost, uint64_t bytes,
                     bool persistent_congestion) override;
  // Undo (like Linux's, after Eifel, RFC 3522): once every byte declared
  // lost in the current loss episode has been acknowledged after all, the
  // window and ssthresh go back to what they were before its reduction.
  void OnSpuriousLoss(absl::Time now, const PacketInfo& packet) override;
  // The window is kept (raised to the new minimum window if below it).
  void OnDatagramSizeChanged(size_t max_datagram) override;
  uint64_t window() const override { return window_; }
  bool InRecovery() const override { return in_recovery_; }
  bool InSlowStart() const override { return window_ < ssthresh_; }

  uint64_t ssthresh() const { return ssthresh_; }
  uint64_t minimum_window() const { return 2 * max_datagram_; }
  uint64_t initial_window() const;
  // How many times the window was cut (once per loss episode).
  uint64_t reductions() const override { return reductions_; }
  // How many of those cuts were undone as spurious.
  uint64_t undos() const { return undos_; }

 private:
  uint64_t max_datagram_;
  uint64_t window_;
  uint64_t ssthresh_ = UINT64_MAX;
  uint64_t acked_in_ca_ = 0;  // bytes acked toward the next +max_datagram
  bool in_recovery_ = false;
  absl::Time recovery_start_ = absl::InfinitePast();
  uint64_t reductions_ = 0;
  uint64_t undos_ = 0;
  // The current loss episode, for undo: the window and ssthresh before its
  // cut, the bytes declared lost in it and those acknowledged later. Not
  // undoable after persistent congestion or once undone.
  bool undo_possible_ = false;
  uint64_t undo_window_ = 0;
  uint64_t undo_ssthresh_ = 0;
  uint64_t episode_lost_bytes_ = 0;
  uint64_t episode_spurious_bytes_ = 0;
  // The recovery start before the current one: packets sent before it
  // belong to an older episode and never count toward this one's undo.
  absl::Time previous_recovery_start_ = absl::InfinitePast();
};

// Spreads a window's worth of packets over an RTT instead of sending them in
// one burst: rate = 1.25 * window / smoothed_rtt, with a burst allowance of
// `burst_packets` datagrams (a token bucket, RFC 9002 7.7), or what the rate
// sends in kBurstInterval when that is more, up to kMaxBurstTrains full GSO
// trains (MaxBurstBytes). On a fast path a burst of ten 1472-byte datagrams
// lasts a few microseconds, so each wake-up sent one short train and paid a
// system call and an skb per 8 datagrams; a 1 ms quantum (Linux's TSO
// autosizing interval) leaves paths under ~2 Gbit/s at 1 ms of their rate,
// or ten datagrams under ~120 Mbit/s. The cap was one 64 KiB train: each
// wake-up then paid its timer, epoll, Poll and sendmmsg for 64 KiB. Four
// trains (44 datagrams of 1472 bytes each, 259,072 bytes) go in one
// sendmmsg: clean veth, six alternating 1 GiB rounds, 9,403 to 11,751
// Mbit/s and 1.41 to 1.20 CPU s/GB (docs/performance.md). That is a burst
// at line rate four times what Linux's TCP puts back to back (one 64 KiB
// TSO segment; its small-queues limit lets 1 ms of the rate wait below the
// socket, which its pacing then spaces): 210 us at 10 Gbit/s, which a
// shallow switch buffer may not hold; paths under ~2 Gbit/s are not
// affected.
class Pacer final {
 public:
  static constexpr double kBurstIntervalNs = 1e6;  // 1 ms
  static constexpr int kMaxBurstTrains = 4;
  // The most a GSO train carries (IPv4's largest UDP payload; whole
  // datagrams of it): udp::kMaxUdpPayloadIpv4, the bound
  // udp::DatagramSocket::MaxTrainBytes applies, restated because this
  // sans-I/O library does not depend on the socket's.
  static constexpr size_t kTrainBytes = 65507;
  // kMaxBurstTrains trains of whole `max_datagram`-byte datagrams (one
  // datagram each when one is larger than a train).
  static double MaxBurstBytes(size_t max_datagram);
  Pacer(size_t max_datagram, int burst_packets = 10);

  // The datagram size changed: the burst allowance (in packets) follows it,
  // and so do the tokens saved.
  void SetMaxDatagram(size_t max_datagram);

  // A pacing rate, worked out once for the packets of one burst (a
  // connection's Poll): `bytes_per_period` per `period_ns` (either <= 0: no
  // pacing information, the bucket fills), waits capped at `max_wait`.
  struct Rate {
    // 1.25 * window per smoothed RTT (RFC 9002 7.7), waits at most one RTT.
    static Rate OfWindow(uint64_t window, absl::Duration smoothed_rtt);
    // An explicit rate in bytes per second (CongestionController::PacingRate).
    static Rate Fixed(double bytes_per_second, absl::Duration max_wait);
    double bytes_per_period = 0;
    double period_ns = 0;
    absl::Duration max_wait;
  };
  // When a packet of `bytes` may leave at `rate`; `now` if right away.
  absl::Time NextSendTime(absl::Time now, size_t bytes, const Rate& rate) const;
  // Spends tokens for a packet sent at `now`.
  void OnSent(absl::Time now, size_t bytes, const Rate& rate);

  // Packets leaving back to back at one instant, decided at once (a burst,
  // Connection::SendBurst): for each in turn what NextSendTime(now, bytes,
  // rate) == now and then OnSent(now, bytes, rate) decide (both are built
  // on it), worked out on a copy of the bucket (BurstAt). BurstAt refills
  // the pacer to `now` as NextSendTime does; spending stays on the copy.
  class Burst {
   public:
    // Whether a packet of `bytes` may leave now.
    bool Allows(size_t bytes) const {
      return !paced_ || tokens_ >= std::min(static_cast<double>(bytes), capacity_);
    }
    // A packet of `bytes` left.
    void Spend(size_t bytes) {
      tokens_ = std::max(tokens_ - static_cast<double>(bytes), -capacity_);
    }

   private:
    friend class Pacer;
    double tokens_ = 0;
    double capacity_ = 0;
    bool paced_ = false;
  };
  Burst BurstAt(absl::Time now, const Rate& rate) const;

  // Shorthands for the two above at Rate::OfWindow(window, smoothed_rtt) and
  // Rate::Fixed(bytes_per_second, max_wait), for callers that send one packet
  // at a time (tests, simple senders).
  //
  // When a packet of `bytes` may leave, given the current window and RTT;
  // `now` if right away. Never later than now + smoothed_rtt.
  absl::Time NextSendTime(absl::Time now, size_t bytes, uint64_t window,
                          absl::Duration smoothed_rtt) const;
  // Spends tokens for a packet sent at `now`.
  void OnSent(absl::Time now, size_t bytes, uint64_t window, absl::Duration smoothed_rtt);

  // The same at an explicit rate (CongestionController::PacingRate(), bytes
  // per second); a non-positive rate means no pacing. Never later than
  // now + max_wait.
  absl::Time NextSendTimeAtRate(absl::Time now, size_t bytes, double bytes_per_second,
                                absl::Duration max_wait) const;
  void OnSentAtRate(absl::Time now, size_t bytes, double bytes_per_second);

 private:
  // Adds the tokens earned since the last call at `bytes_per_period` per
  // `period_ns` (either <= 0: no pacing information, the bucket fills).
  void Refill(absl::Time now, double bytes_per_period, double period_ns) const;

  // The burst allowance at `bytes_per_ns`.
  double BurstBytes(double bytes_per_ns) const;

  size_t max_datagram_;
  int burst_packets_;
  double max_burst_bytes_;  // MaxBurstBytes(max_datagram_)
  mutable double capacity_;         // bytes, follows the rate (BurstBytes)
  mutable double tokens_;           // bytes
  mutable absl::Time last_ = absl::InfinitePast();
};

// Kathleen Nichols' windowed min/max filter (as used by BBR): the best value
// seen within the last `window` units of time (rounds, for BBR's bandwidth),
// kept as the best, second-best and third-best samples of successive
// sub-windows so it needs O(1) memory and time. `Better(a, b)` is true when
// `a` should replace `b` (std::greater_equal for a max filter).
template <typename T, typename Better>
class WindowedFilter final {
 public:
  explicit WindowedFilter(uint64_t window) : window_(window) {}

  void Update(T value, uint64_t time) {
    if (!has_value_ || Better()(value, best_[0].value) || time - best_[2].time > window_) {
      Reset(value, time);
      return;
    }
    if (Better()(value, best_[1].value)) {
      best_[1] = best_[2] = Sample{value, time};
    } else if (Better()(value, best_[2].value)) {
      best_[2] = Sample{value, time};
    }
    // Age out: the best is older than the window, or promote fresher samples
    // into the sub-window slots.
    const uint64_t age = time - best_[0].time;
    if (age > window_) {
      best_[0] = best_[1];
      best_[1] = best_[2];
      best_[2] = Sample{value, time};
      if (time - best_[0].time > window_) {
        best_[0] = best_[1];
        best_[1] = best_[2];
        best_[2] = Sample{value, time};
      }
    } else if (best_[1].time == best_[0].time && age > window_ / 4) {
      best_[1] = best_[2] = Sample{value, time};
    } else if (best_[2].time == best_[1].time && age > window_ / 2) {
      best_[2] = Sample{value, time};
    }
  }
  void Reset(T value, uint64_t time) {
    has_value_ = true;
    best_[0] = best_[1] = best_[2] = Sample{value, time};
  }
  void Clear() { has_value_ = false; }
  bool has_value() const { return has_value_; }
  // Default-constructed T before any sample.
  T Best() const { return has_value_ ? best_[0].value : T{}; }
  T SecondBest() const { return has_value_ ? best_[1].value : T{}; }
  T ThirdBest() const { return has_value_ ? best_[2].value : T{}; }
  uint64_t window() const { return window_; }

 private:
  struct Sample {
    T value{};
    uint64_t time = 0;
  };
  uint64_t window_;
  bool has_value_ = false;
  Sample best_[3];
};

// One delivery-rate sample (draft-cheng-iccrg-delivery-rate-estimation),
// taken when a packet is acknowledged.
struct RateSample {
  uint64_t delivered = 0;        // bytes delivered during the interval
  uint64_t prior_delivered = 0;  // C.delivered when the packet was sent
  absl::Time prior_time;         // C.delivered_time when the packet was sent
  absl::Duration send_elapsed;   // packet's send time - its flight's first send time
  absl::Duration ack_elapsed;    // now - prior_time
  absl::Duration interval;       // max(send_elapsed, ack_elapsed)
  absl::Duration rtt;            // now - packet's send time
  double delivery_rate = 0;      // bytes per second; 0 when interval is 0
  bool is_app_limited = false;   // the packet was sent while app-limited
  uint64_t packet_bytes = 0;
  uint64_t prior_inflight = 0;   // bytes in flight before this ack
};

// The delivery-rate sampler: per sent packet it records the connection's
// delivered bytes, the time they were last updated and the first send time
// of the current flight; an ack of that packet then yields
//   rate = (delivered now - delivered at send) /
//          max(send time - first send time, now - delivered time at send).
// The send interval guards against ack compression, the ack interval against
// send bursts. Tracks bytes in flight itself (packets it saw sent and not yet
// acked or lost) and the app-limited mark.
class DeliveryRateSampler final {
 public:
  // Packet numbers must increase (they are never reused).
  void OnPacketSent(absl::Time now, uint64_t number, uint64_t bytes);
  // nullopt if `number` is not in flight (unknown, already acked or lost).
  std::optional<RateSample> OnPacketAcked(absl::Time now, uint64_t number);
  // Every tracked packet numbered <= `largest` is lost (RFC 9002 loss
  // detection declares packets lost in order); returns their bytes.
  uint64_t OnPacketsLost(uint64_t largest);
  // Nothing to send: marks samples app-limited until what is in flight now
  // has been delivered.
  void OnAppLimited();

  uint64_t delivered() const { return delivered_; }
  absl::Time delivered_time() const { return delivered_time_; }
  uint64_t inflight() const { return inflight_; }
  uint64_t lost() const { return lost_; }
  bool app_limited() const { return app_limited_until_ != 0; }
  size_t tracked_packets() const { return packets_.size(); }

 private:
  struct Sent {
    absl::Time sent_time;
    uint64_t bytes = 0;
    uint64_t delivered = 0;
    absl::Time delivered_time;
    absl::Time first_sent_time;
    bool is_app_limited = false;
  };
  absl::btree_map<uint64_t, Sent> packets_;
  uint64_t delivered_ = 0;
  absl::Time delivered_time_ = absl::InfinitePast();
  absl::Time first_sent_time_ = absl::InfinitePast();
  uint64_t app_limited_until_ = 0;  // C.app_limited: 0 = not app-limited
  uint64_t inflight_ = 0;
  uint64_t lost_ = 0;
};

// BBR (v1) after draft-cardwell-iccrg-bbr-congestion-control.
//
// Model: max_bw = windowed max of delivery-rate samples over 10 rounds (a
// round ends when a packet sent after the previous round's end is acked;
// app-limited samples only count when they raise the max); min_rtt = min of
// per-packet RTT samples, replaced by the current sample once 10 s old.
// BDP = max_bw * min_rtt.
//
// Output: pacing rate = pacing_gain * max_bw (in Startup it only rises; before
// any bandwidth sample it is 2.885 * cwnd / min_rtt, or nullopt before any
// RTT sample too); cwnd = cwnd_gain * BDP + 3 datagrams (ack aggregation and
// the receiver's every-second-packet acks; +2 more in the 1.25 phase), at
// least 4 datagrams. cwnd grows toward that target by the bytes each ack
// delivers (so it starts like slow start, from the RFC 9002 initial window).
//
// States:
//   Startup  pacing gain 2/ln2 = 2.885, cwnd gain 2 (as in BBRv2/v3; v1's
//            2.885 overflows a 1-BDP queue more); left once max_bw grew by
//            less than 25% in 3 consecutive rounds (not app-limited): the
//            pipe is full.
//   Drain    pacing gain 1/2.885 until inflight <= BDP.
//   ProbeBW  cwnd gain 2; pacing gain cycles 1.25, 0.75, 1, 1, 1, 1, 1, 1, one
//            phase per min_rtt (the 1.25 phase also lasts until inflight
//            reaches 1.25 BDP or a loss; the 0.75 phase ends early once
//            inflight <= BDP). The starting phase is derived from the bytes
//            delivered (deterministic, never the 0.75 phase).
//   ProbeRTT entered when min_rtt was not refreshed for 10 s: cwnd 4
//            datagrams, held for max(200 ms, 1 round) once inflight is that
//            low; then back to ProbeBW (or Startup) with the old cwnd.
//
// Loss. Random loss does not reduce cwnd or the rate (no multiplicative
// decrease, no packet-conservation phase). The one loss response (the BBRv2
// idea, simplified): when a round loses more than 20% of its bytes (and at
// least 8 packets), inflight is capped at 0.7 x the most in flight during
// that round (never under 4 datagrams), and Startup ends. Each later round
// under the threshold raises the cap by 1, 2, 4, ... datagrams; once it
// exceeds the uncapped target it is dropped. InRecovery() reports the cap.
// Persistent congestion (RFC 9002 7.6) drops cwnd to 4 datagrams, from which
// it regrows by the bytes acked toward the target. Like BBRv1, it keeps
// ~2 BDP in flight, so a bottleneck queue much smaller than a BDP sees a few
// percent of drops (the ProbeBW 1.25 phases) that stay under the threshold.
//
// Idle restart: sending from idle while app-limited paces at 1 x max_bw in
// ProbeBW until the next ack.
class Bbr final : public CongestionController {
 public:
  enum class Mode { kStartup, kDrain, kProbeBw, kProbeRtt };

  static constexpr double kHighGain = 2.885;  // 2 / ln(2)
  static constexpr double kDrainGain = 1.0 / 2.885;
  static constexpr double kCwndGain = 2.0;  // ProbeBW and Startup
  static constexpr int kGainCycleLength = 8;
  static constexpr uint64_t kBandwidthWindowRounds = 10;
  static constexpr absl::Duration kMinRttWindow = absl::Seconds(10);
  static constexpr absl::Duration kProbeRttDuration = absl::Milliseconds(200);
  static constexpr int kFullBandwidthRounds = 3;
  static constexpr double kFullBandwidthGrowth = 1.25;
  static constexpr uint64_t kMinPipeCwndPackets = 4;
  static constexpr uint64_t kAckAggregationPackets = 3;
  static constexpr double kLossThreshold = 0.2;
  static constexpr uint64_t kLossMinPackets = 8;
  static constexpr double kLossBeta = 0.7;

  explicit Bbr(size_t max_datagram);

  absl::string_view name() const override { return "bbr"; }
  void OnPacketSent(absl::Time now, const PacketInfo& packet, uint64_t bytes_in_flight) override;
  void OnPacketAcked(absl::Time now, const PacketInfo& packet) override;
  void OnPacketsLost(absl::Time now, const PacketInfo& largest_lost, uint64_t bytes,
                     bool persistent_congestion) override;
  void OnAppLimited() override;
  // Its model (bandwidth, min RTT) is in bytes and time: only the packet
  // quanta (minimum window, aggregation allowance) follow the new size.
  void OnDatagramSizeChanged(size_t max_datagram) override { max_datagram_ = max_datagram; }
  uint64_t window() const override { return cwnd_; }
  bool InRecovery() const override { return inflight_cap_ != 0; }
  bool InSlowStart() const override { return mode_ == Mode::kStartup; }
  std::optional<double> PacingRate() const override;
  // A restart from idle sets the rate (OnPacketSent).
  bool SendingMayChangePacing() const override { return true; }

  Mode mode() const { return mode_; }
  static absl::string_view ModeName(Mode mode);
  double max_bandwidth() const { return bandwidth_.Best(); }  // bytes per second
  absl::Duration min_rtt() const { return min_rtt_; }        // Infinite before a sample
  uint64_t round_count() const { return round_count_; }
  double pacing_gain() const { return pacing_gain_; }
  double cwnd_gain() const { return cwnd_gain_; }
  bool full_bandwidth_reached() const { return full_bandwidth_reached_; }
  int cycle_index() const { return cycle_index_; }
  // The loss cap on inflight (bytes); 0 when none.
  uint64_t inflight_cap() const { return inflight_cap_; }
  uint64_t initial_window() const;
  uint64_t minimum_window() const { return kMinPipeCwndPackets * max_datagram_; }
  // gain * BDP; the initial window before a bandwidth or RTT sample.
  uint64_t Bdp(double gain) const;
  // The cwnd the model asks for (before the loss cap).
  uint64_t TargetWindow() const;
  const DeliveryRateSampler& sampler() const { return sampler_; }
  uint64_t excessive_loss_rounds() const { return excessive_loss_rounds_; }
  // Rounds of excessive loss (each set or lowered the cap) and persistent
  // congestion's collapses to the minimum window.
  uint64_t reductions() const override { return excessive_loss_rounds_ + collapses_; }

 private:
  void OnRoundEnd();
  void UpdateMinRtt(absl::Time now, absl::Duration rtt);
  void CheckFullBandwidth(const RateSample& rs);
  void EnterStartup();
  void EnterDrain();
  void EnterProbeBw(absl::Time now);
  void AdvanceCyclePhase(absl::Time now);
  void UpdateCyclePhase(absl::Time now, const RateSample& rs);
  void CheckDrain(absl::Time now);
  void EnterProbeRtt();
  void UpdateProbeRtt(absl::Time now);
  void SetPacingRate();
  void SetCwnd(uint64_t acked);
  void ApplyCap();

  uint64_t max_datagram_;
  DeliveryRateSampler sampler_;
  WindowedFilter<double, std::greater_equal<double>> bandwidth_{kBandwidthWindowRounds};

  Mode mode_ = Mode::kStartup;
  double pacing_gain_ = kHighGain;
  double cwnd_gain_ = kCwndGain;
  uint64_t cwnd_;
  double pacing_rate_ = 0;  // bytes per second; 0 = not set yet
  bool idle_restart_ = false;

  // Rounds.
  uint64_t round_count_ = 0;
  uint64_t next_round_delivered_ = 0;
  bool round_start_ = false;

  // min_rtt.
  absl::Duration min_rtt_ = absl::InfiniteDuration();
  absl::Time min_rtt_stamp_ = absl::InfinitePast();

  // Startup exit.
  bool full_bandwidth_reached_ = false;
  double full_bandwidth_ = 0;
  int full_bandwidth_count_ = 0;

  // ProbeBW.
  int cycle_index_ = 0;
  absl::Time cycle_stamp_ = absl::InfinitePast();
  bool loss_in_cycle_phase_ = false;

  // ProbeRTT.
  uint64_t prior_cwnd_ = 0;
  absl::Time probe_rtt_done_ = absl::InfiniteFuture();  // InfiniteFuture: not timing yet
  bool probe_rtt_round_done_ = false;

  // Loss accounting per round, and the cap it may set.
  uint64_t round_start_delivered_ = 0;
  uint64_t lost_in_round_ = 0;
  uint64_t lost_packets_in_round_ = 0;
  uint64_t max_inflight_in_round_ = 0;
  uint64_t inflight_cap_ = 0;
  int cap_growth_rounds_ = 0;
  uint64_t excessive_loss_rounds_ = 0;
  uint64_t collapses_ = 0;
};

std::unique_ptr<CongestionController> MakeCongestionController(absl::string_view name,
                                                                size_t max_datagram);

}  // namespace udpmsg::reliable

#endif  // UDPMSG_RELIABLE_CONGESTION_H_
