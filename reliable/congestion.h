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
// Not thread-safe.
#ifndef UDPMSG_RELIABLE_CONGESTION_H_
#define UDPMSG_RELIABLE_CONGESTION_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

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

  virtual uint64_t window() const = 0;
  virtual bool InRecovery() const = 0;
  virtual bool InSlowStart() const = 0;
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
  uint64_t window() const override { return window_; }
  bool InRecovery() const override { return in_recovery_; }
  bool InSlowStart() const override { return window_ < ssthresh_; }

  uint64_t ssthresh() const { return ssthresh_; }
  uint64_t minimum_window() const { return 2 * max_datagram_; }
  uint64_t initial_window() const;
  // How many times the window was cut (once per loss episode).
  uint64_t reductions() const { return reductions_; }

 private:
  uint64_t max_datagram_;
  uint64_t window_;
  uint64_t ssthresh_ = UINT64_MAX;
  uint64_t acked_in_ca_ = 0;  // bytes acked toward the next +max_datagram
  bool in_recovery_ = false;
  absl::Time recovery_start_ = absl::InfinitePast();
  uint64_t reductions_ = 0;
};

// Spreads a window's worth of packets over an RTT instead of sending them in
// one burst: rate = 1.25 * window / smoothed_rtt, with a burst allowance of
// `burst_packets` datagrams (a token bucket, RFC 9002 7.7).
class Pacer final {
 public:
  Pacer(size_t max_datagram, int burst_packets = 10);

  // When a packet of `bytes` may leave, given the current window and RTT;
  // `now` if right away. Never later than now + smoothed_rtt.
  absl::Time NextSendTime(absl::Time now, size_t bytes, uint64_t window,
                          absl::Duration smoothed_rtt) const;
  // Spends tokens for a packet sent at `now`.
  void OnSent(absl::Time now, size_t bytes, uint64_t window, absl::Duration smoothed_rtt);

 private:
  void Refill(absl::Time now, uint64_t window, absl::Duration smoothed_rtt) const;

  size_t max_datagram_;
  double capacity_;                 // bytes
  mutable double tokens_;           // bytes
  mutable absl::Time last_ = absl::InfinitePast();
};

std::unique_ptr<CongestionController> MakeCongestionController(absl::string_view name,
                                                                size_t max_datagram);

}  // namespace udpmsg::reliable

#endif  // UDPMSG_RELIABLE_CONGESTION_H_
