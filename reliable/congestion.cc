#include "reliable/congestion.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "absl/strings/match.h"

namespace udpmsg::reliable {

NewReno::NewReno(size_t max_datagram) : max_datagram_(max_datagram) {
  window_ = initial_window();
}

uint64_t NewReno::initial_window() const {
  // RFC 9002 7.2: min(10 * max_datagram_size, max(2 * max_datagram_size, 14720)).
  return std::min<uint64_t>(10 * max_datagram_, std::max<uint64_t>(2 * max_datagram_, 14720));
}

void NewReno::OnPacketSent(absl::Time now, const PacketInfo& packet, uint64_t bytes_in_flight) {
  // Bytes in flight are the caller's (SentPackets); nothing to record.
}

void NewReno::OnPacketAcked(absl::Time now, const PacketInfo& packet) {
  // RFC 9002 B.5: no growth for packets sent before recovery began.
  if (packet.sent_time <= recovery_start_) return;
  // A packet sent after recovery began was acknowledged: recovery is over.
  in_recovery_ = false;
  if (window_ < ssthresh_) {
    window_ += packet.bytes;  // slow start
    return;
  }
  // Congestion avoidance: max_datagram * acked / window per ACK, kept exact
  // with a byte counter (one max_datagram per window acknowledged).
  acked_in_ca_ += packet.bytes;
  while (acked_in_ca_ >= window_) {
    acked_in_ca_ -= window_;
    window_ += max_datagram_;
  }
}

void NewReno::OnPacketsLost(absl::Time now, const PacketInfo& largest_lost, uint64_t bytes,
                            bool persistent_congestion) {
  bool cut = false;
  // RFC 9002 B.6: one reduction per recovery period.
  if (largest_lost.sent_time > recovery_start_) {
    undo_possible_ = true;
    undo_window_ = window_;
    undo_ssthresh_ = ssthresh_;
    episode_lost_bytes_ = 0;
    episode_spurious_bytes_ = 0;
    previous_recovery_start_ = recovery_start_;
    recovery_start_ = now;
    in_recovery_ = true;
    ssthresh_ = window_ / 2;  // kLossReductionFactor
    window_ = std::max(ssthresh_, minimum_window());
    acked_in_ca_ = 0;
    ++reductions_;
    cut = true;
  }
  episode_lost_bytes_ += bytes;
  // RFC 9002 B.8: collapse to the minimum window and leave recovery.
  if (persistent_congestion) {
    window_ = minimum_window();
    recovery_start_ = absl::InfinitePast();
    in_recovery_ = false;
    acked_in_ca_ = 0;
    if (!cut) ++reductions_;
    undo_possible_ = false;
  }
}

void NewReno::OnSpuriousLoss(absl::Time now, const PacketInfo& packet) {
  // Only packets of the current episode (sent before its cut) count.
  if (!undo_possible_ || packet.sent_time > recovery_start_ ||
      packet.sent_time <= previous_recovery_start_) {
    return;
  }
  episode_spurious_bytes_ += packet.bytes;
  if (episode_spurious_bytes_ < episode_lost_bytes_) return;
  window_ = std::max(window_, undo_window_);
  ssthresh_ = std::max(ssthresh_, undo_ssthresh_);
  in_recovery_ = false;
  acked_in_ca_ = 0;
  undo_possible_ = false;
  ++undos_;
}

Pacer::Pacer(size_t max_datagram, int burst_packets)
    : max_datagram_(max_datagram),
      burst_packets_(std::max(burst_packets, 1)),
      max_burst_bytes_(MaxBurstBytes(max_datagram)),
      capacity_(static_cast<double>(max_datagram) * burst_packets_),
      tokens_(capacity_) {}

void Pacer::SetMaxDatagram(size_t max_datagram) {
  if (max_datagram == 0 || max_datagram_ == 0) return;
  tokens_ = tokens_ * static_cast<double>(max_datagram) / static_cast<double>(max_datagram_);
  max_datagram_ = max_datagram;
  max_burst_bytes_ = MaxBurstBytes(max_datagram);
  capacity_ = static_cast<double>(max_datagram) * burst_packets_;
  tokens_ = std::min(tokens_, capacity_);
}

void NewReno::OnDatagramSizeChanged(size_t max_datagram) {
  max_datagram_ = max_datagram;
  acked_in_ca_ = std::min(acked_in_ca_, window_);
  window_ = std::max(window_, minimum_window());
}

namespace {

// Bytes per nanosecond times srtt_ns: 1.25 * window (RFC 9002 7.7, N = 1.25).
double PacingBytesPerRtt(uint64_t window) { return 1.25 * static_cast<double>(window); }

constexpr double kNanosPerSecond = 1e9;

}  // namespace

double Pacer::MaxBurstBytes(size_t max_datagram) {
  const size_t per_train = std::max<size_t>(kTrainBytes / std::max<size_t>(max_datagram, 1), 1);
  return static_cast<double>(kMaxBurstTrains) * static_cast<double>(per_train * max_datagram);
}

// The rate is `bytes_per_period` per `period_ns` (kept as a pair so NewReno's
// 1.25 * window / srtt is computed exactly as before); no pacing information
// (either <= 0) fills the bucket.
double Pacer::BurstBytes(double bytes_per_ns) const {
  const double floor = static_cast<double>(max_datagram_) * burst_packets_;
  const double ceiling = std::max(floor, max_burst_bytes_);
  return std::clamp(bytes_per_ns * kBurstIntervalNs, floor, ceiling);
}

void Pacer::Refill(absl::Time now, double bytes_per_period, double period_ns) const {
  if (period_ns > 0 && bytes_per_period > 0) {
    capacity_ = BurstBytes(bytes_per_period / period_ns);
    tokens_ = std::min(tokens_, capacity_);
  }
  if (last_ == absl::InfinitePast()) {
    last_ = now;
    return;
  }
  if (now <= last_) return;
  const double elapsed_ns = absl::ToDoubleNanoseconds(now - last_);
  last_ = now;
  if (!(period_ns > 0) || !(bytes_per_period > 0)) {
    tokens_ = capacity_;  // no pacing information: no pacing
    return;
  }
  tokens_ = std::min(capacity_, tokens_ + elapsed_ns * bytes_per_period / period_ns);
}

Pacer::Rate Pacer::Rate::OfWindow(uint64_t window, absl::Duration smoothed_rtt) {
  return Rate{window == 0 ? 0 : PacingBytesPerRtt(window), absl::ToDoubleNanoseconds(smoothed_rtt),
              smoothed_rtt};
}

Pacer::Rate Pacer::Rate::Fixed(double bytes_per_second, absl::Duration max_wait) {
  return Rate{bytes_per_second, kNanosPerSecond, max_wait};
}

Pacer::Burst Pacer::BurstAt(absl::Time now, const Rate& rate) const {
  Refill(now, rate.bytes_per_period, rate.period_ns);
  Burst b;
  b.tokens_ = tokens_;
  b.capacity_ = capacity_;
  b.paced_ = rate.period_ns > 0 && rate.bytes_per_period > 0;
  return b;
}

absl::Time Pacer::NextSendTime(absl::Time now, size_t bytes, const Rate& rate) const {
  // No pacing information, or the tokens for it: now.
  if (BurstAt(now, rate).Allows(bytes)) return now;
  const double needed = std::min(static_cast<double>(bytes), capacity_);
  const double wait_ns = std::ceil((needed - tokens_) * rate.period_ns / rate.bytes_per_period);
  return now + std::min(absl::Nanoseconds(wait_ns), rate.max_wait);
}

void Pacer::OnSent(absl::Time now, size_t bytes, const Rate& rate) {
  // Sending ahead of schedule (probes) goes into debt, at most one bucket.
  Burst b = BurstAt(now, rate);
  b.Spend(bytes);
  tokens_ = b.tokens_;
}

absl::Time Pacer::NextSendTime(absl::Time now, size_t bytes, uint64_t window,
                               absl::Duration smoothed_rtt) const {
  return NextSendTime(now, bytes, Rate::OfWindow(window, smoothed_rtt));
}

void Pacer::OnSent(absl::Time now, size_t bytes, uint64_t window, absl::Duration smoothed_rtt) {
  OnSent(now, bytes, Rate::OfWindow(window, smoothed_rtt));
}

absl::Time Pacer::NextSendTimeAtRate(absl::Time now, size_t bytes, double bytes_per_second,
                                     absl::Duration max_wait) const {
  return NextSendTime(now, bytes, Rate::Fixed(bytes_per_second, max_wait));
}

void Pacer::OnSentAtRate(absl::Time now, size_t bytes, double bytes_per_second) {
  // (No wait is computed when spending: max_wait is not used.)
  OnSent(now, bytes, Rate::Fixed(bytes_per_second, absl::ZeroDuration()));
}

// ---------------------------------------------------------------------------
// Delivery-rate sampler (draft-cheng-iccrg-delivery-rate-estimation).

void DeliveryRateSampler::OnPacketSent(absl::Time now, uint64_t number, uint64_t bytes) {
  // A new flight: nothing in flight, so intervals start now.
  if (inflight_ == 0) first_sent_time_ = delivered_time_ = now;
  Sent s;
  s.sent_time = now;
  s.bytes = bytes;
  s.delivered = delivered_;
  s.delivered_time = delivered_time_;
  s.first_sent_time = first_sent_time_;
  s.is_app_limited = app_limited_until_ != 0;
  if (packets_.emplace(number, s).second) inflight_ += bytes;
}

std::optional<RateSample> DeliveryRateSampler::OnPacketAcked(absl::Time now, uint64_t number) {
  auto it = packets_.find(number);
  if (it == packets_.end()) return std::nullopt;
  const Sent p = it->second;
  packets_.erase(it);
  RateSample rs;
  rs.prior_inflight = inflight_;
  inflight_ -= std::min(inflight_, p.bytes);
  delivered_ += p.bytes;
  delivered_time_ = now;
  // Later packets of this flight measure their send interval from this one.
  first_sent_time_ = std::max(first_sent_time_, p.sent_time);
  if (app_limited_until_ != 0 && delivered_ > app_limited_until_) app_limited_until_ = 0;
  rs.packet_bytes = p.bytes;
  rs.prior_delivered = p.delivered;
  rs.prior_time = p.delivered_time;
  rs.is_app_limited = p.is_app_limited;
  rs.delivered = delivered_ - p.delivered;
  rs.send_elapsed = p.sent_time - p.first_sent_time;
  rs.ack_elapsed = now - p.delivered_time;
  rs.interval = std::max(rs.send_elapsed, rs.ack_elapsed);
  rs.rtt = now - p.sent_time;
  if (rs.interval > absl::ZeroDuration()) {
    rs.delivery_rate = static_cast<double>(rs.delivered) / absl::ToDoubleSeconds(rs.interval);
  }
  return rs;
}

uint64_t DeliveryRateSampler::OnPacketsLost(uint64_t largest) {
  uint64_t bytes = 0;
  auto it = packets_.begin();
  while (it != packets_.end() && it->first <= largest) {
    bytes += it->second.bytes;
    it = packets_.erase(it);
  }
  inflight_ -= std::min(inflight_, bytes);
  lost_ += bytes;
  return bytes;
}

void DeliveryRateSampler::OnAppLimited() {
  app_limited_until_ = std::max<uint64_t>(delivered_ + inflight_, 1);
}

// ---------------------------------------------------------------------------
// BBR.

namespace {

// ProbeBW pacing gains, one phase per min_rtt.
constexpr double kPacingGainCycle[Bbr::kGainCycleLength] = {1.25, 0.75, 1, 1, 1, 1, 1, 1};

}  // namespace

Bbr::Bbr(size_t max_datagram) : max_datagram_(max_datagram) {
  cwnd_ = initial_window();
  EnterStartup();
}

absl::string_view Bbr::ModeName(Mode mode) {
  switch (mode) {
    case Mode::kStartup:
      return "startup";
    case Mode::kDrain:
      return "drain";
    case Mode::kProbeBw:
      return "probe_bw";
    case Mode::kProbeRtt:
      return "probe_rtt";
  }
  return "?";
}

uint64_t Bbr::initial_window() const {
  // As NewReno (RFC 9002 7.2), but never under BBR's 4-packet floor.
  return std::max<uint64_t>(
      std::min<uint64_t>(10 * max_datagram_, std::max<uint64_t>(2 * max_datagram_, 14720)),
      minimum_window());
}

uint64_t Bbr::Bdp(double gain) const {
  if (!bandwidth_.has_value() || min_rtt_ == absl::InfiniteDuration()) return initial_window();
  return static_cast<uint64_t>(gain * max_bandwidth() * absl::ToDoubleSeconds(min_rtt_));
}

uint64_t Bbr::TargetWindow() const {
  uint64_t target = Bdp(cwnd_gain_) + kAckAggregationPackets * max_datagram_;
  if (mode_ == Mode::kProbeBw && cycle_index_ == 0) target += 2 * max_datagram_;
  return std::max(target, minimum_window());
}

std::optional<double> Bbr::PacingRate() const {
  if (pacing_rate_ > 0) return pacing_rate_;
  return std::nullopt;
}

void Bbr::OnPacketSent(absl::Time now, const PacketInfo& packet, uint64_t bytes_in_flight) {
  if (sampler_.inflight() == 0 && sampler_.app_limited()) {
    // Restarting from idle: no queue to drain, so cruise at the estimate
    // (RFC draft "BBRHandleRestartFromIdle").
    idle_restart_ = true;
    if (mode_ == Mode::kProbeBw && bandwidth_.has_value()) pacing_rate_ = max_bandwidth();
  }
  sampler_.OnPacketSent(now, packet.number, packet.bytes);
  max_inflight_in_round_ = std::max(max_inflight_in_round_, sampler_.inflight());
}

void Bbr::OnAppLimited() { sampler_.OnAppLimited(); }

void Bbr::OnPacketAcked(absl::Time now, const PacketInfo& packet) {
  std::optional<RateSample> rs = sampler_.OnPacketAcked(now, packet.number);
  if (!rs) return;
  idle_restart_ = false;

  // Rounds: one ends when a packet sent after the last one ended is acked.
  round_start_ = false;
  if (rs->prior_delivered >= next_round_delivered_) {
    next_round_delivered_ = sampler_.delivered();
    ++round_count_;
    round_start_ = true;
    OnRoundEnd();
  }

  UpdateMinRtt(now, rs->rtt);

  // A sample shorter than min_rtt cannot describe the bottleneck (the
  // draft's rule); an app-limited one only counts if it raises the max.
  if (rs->delivery_rate > 0 && rs->interval >= min_rtt_ &&
      (!rs->is_app_limited || rs->delivery_rate >= max_bandwidth())) {
    bandwidth_.Update(rs->delivery_rate, round_count_);
  }

  if (mode_ == Mode::kProbeBw) UpdateCyclePhase(now, *rs);
  CheckFullBandwidth(*rs);
  CheckDrain(now);
  UpdateProbeRtt(now);
  SetPacingRate();
  SetCwnd(rs->packet_bytes);
}

void Bbr::OnPacketsLost(absl::Time now, const PacketInfo& largest_lost, uint64_t bytes,
                        bool persistent_congestion) {
  const uint64_t lost = sampler_.OnPacketsLost(largest_lost.number);
  if (lost == 0 && !persistent_congestion) return;
  lost_in_round_ += lost;
  lost_packets_in_round_ += (lost + max_datagram_ - 1) / max_datagram_;
  loss_in_cycle_phase_ = true;
  if (persistent_congestion) {
    // Everything sent over several PTOs was lost: start again from the
    // minimum window; acks regrow it toward the target.
    cwnd_ = minimum_window();
    ++collapses_;
  }
}

void Bbr::OnRoundEnd() {
  const uint64_t delivered = sampler_.delivered() - round_start_delivered_;
  const bool excessive =
      lost_packets_in_round_ >= kLossMinPackets &&
      static_cast<double>(lost_in_round_) >
          kLossThreshold * static_cast<double>(lost_in_round_ + delivered);
  if (excessive) {
    ++excessive_loss_rounds_;
    uint64_t basis = max_inflight_in_round_;
    if (inflight_cap_ != 0) basis = std::min(basis, inflight_cap_);
    inflight_cap_ =
        std::max(minimum_window(), static_cast<uint64_t>(kLossBeta * static_cast<double>(basis)));
    cap_growth_rounds_ = 0;
    if (mode_ == Mode::kStartup) full_bandwidth_reached_ = true;  // CheckDrain leaves Startup
  } else if (inflight_cap_ != 0) {
    inflight_cap_ += max_datagram_ << std::min(cap_growth_rounds_, 16);
    ++cap_growth_rounds_;
    if (inflight_cap_ >= TargetWindow()) inflight_cap_ = 0;
  }
  round_start_delivered_ = sampler_.delivered();
  lost_in_round_ = 0;
  lost_packets_in_round_ = 0;
  max_inflight_in_round_ = sampler_.inflight();
}

void Bbr::UpdateMinRtt(absl::Time now, absl::Duration rtt) {
  const bool expired =
      min_rtt_stamp_ != absl::InfinitePast() && now - min_rtt_stamp_ > kMinRttWindow;
  if (rtt > absl::ZeroDuration() && (rtt < min_rtt_ || expired)) {
    min_rtt_ = rtt;
    min_rtt_stamp_ = now;
  }
  if (expired && !idle_restart_ && mode_ != Mode::kProbeRtt) EnterProbeRtt();
}

void Bbr::CheckFullBandwidth(const RateSample& rs) {
  if (full_bandwidth_reached_ || !round_start_ || rs.is_app_limited) return;
  if (max_bandwidth() >= full_bandwidth_ * kFullBandwidthGrowth) {
    full_bandwidth_ = max_bandwidth();
    full_bandwidth_count_ = 0;
    return;
  }
  if (++full_bandwidth_count_ >= kFullBandwidthRounds) full_bandwidth_reached_ = true;
}

void Bbr::EnterStartup() {
  mode_ = Mode::kStartup;
  pacing_gain_ = kHighGain;
  cwnd_gain_ = kCwndGain;
}

void Bbr::EnterDrain() {
  mode_ = Mode::kDrain;
  pacing_gain_ = kDrainGain;
  cwnd_gain_ = kCwndGain;
}

void Bbr::EnterProbeBw(absl::Time now) {
  mode_ = Mode::kProbeBw;
  cwnd_gain_ = kCwndGain;
  // Start at a pseudo-random phase other than 0.75 (the draft picks one at
  // random so flows do not probe in lockstep); derived from the bytes
  // delivered so runs stay deterministic. AdvanceCyclePhase moves one on.
  const uint64_t r = (sampler_.delivered() / std::max<uint64_t>(max_datagram_, 1)) %
                     static_cast<uint64_t>(kGainCycleLength - 1);
  cycle_index_ = kGainCycleLength - 1 - static_cast<int>(r);
  AdvanceCyclePhase(now);
}

void Bbr::AdvanceCyclePhase(absl::Time now) {
  cycle_index_ = (cycle_index_ + 1) % kGainCycleLength;
  cycle_stamp_ = now;
  loss_in_cycle_phase_ = false;
  pacing_gain_ = kPacingGainCycle[cycle_index_];
}

void Bbr::UpdateCyclePhase(absl::Time now, const RateSample& rs) {
  const bool full_length = now - cycle_stamp_ > min_rtt_;
  bool advance = full_length;
  if (pacing_gain_ > 1) {
    // Probe until the extra inflight has been put out (or caused a loss).
    advance = full_length && (loss_in_cycle_phase_ || rs.prior_inflight >= Bdp(pacing_gain_));
  } else if (pacing_gain_ < 1) {
    // Drain the probe's queue; done early once inflight is down to BDP.
    advance = full_length || rs.prior_inflight <= Bdp(1.0);
  }
  if (advance) AdvanceCyclePhase(now);
}

void Bbr::CheckDrain(absl::Time now) {
  if (mode_ == Mode::kStartup && full_bandwidth_reached_) EnterDrain();
  if (mode_ == Mode::kDrain && sampler_.inflight() <= Bdp(1.0)) EnterProbeBw(now);
}

void Bbr::EnterProbeRtt() {
  prior_cwnd_ = std::max(prior_cwnd_, cwnd_);
  mode_ = Mode::kProbeRtt;
  pacing_gain_ = 1.0;
  cwnd_gain_ = 1.0;
  probe_rtt_done_ = absl::InfiniteFuture();
  probe_rtt_round_done_ = false;
}

void Bbr::UpdateProbeRtt(absl::Time now) {
  if (mode_ != Mode::kProbeRtt) return;
  // Samples taken at 4 packets say nothing about the bottleneck.
  sampler_.OnAppLimited();
  if (probe_rtt_done_ == absl::InfiniteFuture()) {
    if (sampler_.inflight() <= minimum_window()) {
      probe_rtt_done_ = now + kProbeRttDuration;
      probe_rtt_round_done_ = false;
      next_round_delivered_ = sampler_.delivered();  // time one full round from here
    }
    return;
  }
  if (round_start_) probe_rtt_round_done_ = true;
  if (probe_rtt_round_done_ && now >= probe_rtt_done_) {
    min_rtt_stamp_ = now;
    cwnd_ = std::max(cwnd_, prior_cwnd_);
    prior_cwnd_ = 0;
    if (full_bandwidth_reached_) {
      EnterProbeBw(now);
    } else {
      EnterStartup();
    }
  }
}

void Bbr::SetPacingRate() {
  double rate = 0;
  if (bandwidth_.has_value()) {
    rate = pacing_gain_ * max_bandwidth();
  } else if (min_rtt_ != absl::InfiniteDuration() && min_rtt_ > absl::ZeroDuration()) {
    rate = kHighGain * static_cast<double>(cwnd_) / absl::ToDoubleSeconds(min_rtt_);
  }
  if (rate <= 0) return;
  // In Startup the rate only rises (a low sample must not stall the ramp).
  if (full_bandwidth_reached_ || rate > pacing_rate_) pacing_rate_ = rate;
}

void Bbr::SetCwnd(uint64_t acked) {
  const uint64_t target = TargetWindow();
  if (full_bandwidth_reached_) {
    cwnd_ = std::min(cwnd_ + acked, target);
  } else if (cwnd_ < target || sampler_.delivered() < initial_window()) {
    cwnd_ += acked;
  }
  cwnd_ = std::max(cwnd_, minimum_window());
  if (mode_ == Mode::kProbeRtt) cwnd_ = std::min(cwnd_, minimum_window());
  ApplyCap();
}

void Bbr::ApplyCap() {
  if (inflight_cap_ != 0) cwnd_ = std::min(cwnd_, std::max(inflight_cap_, minimum_window()));
}

std::unique_ptr<CongestionController> MakeCongestionController(absl::string_view name,
                                                                size_t max_datagram) {
  if (absl::EqualsIgnoreCase(name, "newreno")) return std::make_unique<NewReno>(max_datagram);
  if (absl::EqualsIgnoreCase(name, "bbr")) return std::make_unique<Bbr>(max_datagram);
  return nullptr;
}

}  // namespace udpmsg::reliable
