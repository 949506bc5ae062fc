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
    recovery_start_ = now;
    in_recovery_ = true;
    ssthresh_ = window_ / 2;  // kLossReductionFactor
    window_ = std::max(ssthresh_, minimum_window());
    acked_in_ca_ = 0;
    ++reductions_;
    cut = true;
  }
  // RFC 9002 B.8: collapse to the minimum window and leave recovery.
  if (persistent_congestion) {
    window_ = minimum_window();
    recovery_start_ = absl::InfinitePast();
    in_recovery_ = false;
    acked_in_ca_ = 0;
    if (!cut) ++reductions_;
  }
}

Pacer::Pacer(size_t max_datagram, int burst_packets)
    : max_datagram_(max_datagram),
      capacity_(static_cast<double>(max_datagram) * std::max(burst_packets, 1)),
      tokens_(capacity_) {}

namespace {

// Bytes per nanosecond times srtt_ns: 1.25 * window (RFC 9002 7.7, N = 1.25).
double PacingBytesPerRtt(uint64_t window) { return 1.25 * static_cast<double>(window); }

}  // namespace

void Pacer::Refill(absl::Time now, uint64_t window, absl::Duration smoothed_rtt) const {
  if (last_ == absl::InfinitePast()) {
    last_ = now;
    return;
  }
  if (now <= last_) return;
  const double elapsed_ns = absl::ToDoubleNanoseconds(now - last_);
  last_ = now;
  const double rtt_ns = absl::ToDoubleNanoseconds(smoothed_rtt);
  if (rtt_ns <= 0 || window == 0) {
    tokens_ = capacity_;  // no pacing information: no pacing
    return;
  }
  tokens_ = std::min(capacity_, tokens_ + elapsed_ns * PacingBytesPerRtt(window) / rtt_ns);
}

absl::Time Pacer::NextSendTime(absl::Time now, size_t bytes, uint64_t window,
                               absl::Duration smoothed_rtt) const {
  Refill(now, window, smoothed_rtt);
  const double needed = std::min(static_cast<double>(bytes), capacity_);
  if (tokens_ >= needed) return now;
  const double rtt_ns = absl::ToDoubleNanoseconds(smoothed_rtt);
  if (rtt_ns <= 0 || window == 0) return now;
  const double wait_ns = std::ceil((needed - tokens_) * rtt_ns / PacingBytesPerRtt(window));
  return now + std::min(absl::Nanoseconds(wait_ns), smoothed_rtt);
}

void Pacer::OnSent(absl::Time now, size_t bytes, uint64_t window, absl::Duration smoothed_rtt) {
  Refill(now, window, smoothed_rtt);
  // Sending ahead of schedule (probes) goes into debt, at most one bucket.
  tokens_ = std::max(tokens_ - static_cast<double>(bytes), -capacity_);
}

std::unique_ptr<CongestionController> MakeCongestionController(absl::string_view name,
                                                                size_t max_datagram) {
  if (absl::EqualsIgnoreCase(name, "newreno")) return std::make_unique<NewReno>(max_datagram);
  return nullptr;
}

}  // namespace udpmsg::reliable
