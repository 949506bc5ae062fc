// RttEstimator: round-trip time per RFC 9002 section 5 (which refines RFC
// 6298), and the timer values derived from it.
//
//   first sample:  min_rtt = smoothed = latest; rttvar = latest / 2
//   later samples: min_rtt = min(min_rtt, latest)
//                  adjusted = latest - ack_delay   if latest - ack_delay >= min_rtt
//                           = latest               otherwise
//                  (ack_delay is first capped at max_ack_delay once the
//                   handshake is confirmed, RFC 9002 5.3)
//                  rttvar   = 3/4 rttvar + 1/4 |smoothed - adjusted|
//                  smoothed = 7/8 smoothed + 1/8 adjusted
//
// Before any sample, smoothed = initial_rtt and rttvar = initial_rtt / 2.
// Samples are only taken by the caller when the largest acknowledged packet
// is newly acknowledged and ack-eliciting; packet numbers are never reused, so
// every sample is unambiguous (Karn's problem does not arise).
//
// Not thread-safe. A value type.
#ifndef UDPMSG_RELIABLE_RTT_ESTIMATOR_H_
#define UDPMSG_RELIABLE_RTT_ESTIMATOR_H_

#include "absl/time/time.h"

namespace udpmsg::reliable {

class RttEstimator final {
 public:
  struct Options {
    absl::Duration initial_rtt = absl::Milliseconds(333);  // RFC 9002 kInitialRtt
    absl::Duration max_ack_delay = absl::Milliseconds(25);  // the peer's
    absl::Duration granularity = absl::Milliseconds(1);     // kGranularity
  };

  RttEstimator() : RttEstimator(Options{}) {}
  explicit RttEstimator(const Options& options);

  // One sample: `latest_rtt` = ack receive time - send time of the largest
  // newly acknowledged packet; `ack_delay` as reported by the peer.
  // Non-positive samples are ignored.
  void OnSample(absl::Duration latest_rtt, absl::Duration ack_delay, bool handshake_confirmed);

  bool has_sample() const { return has_sample_; }
  absl::Duration latest() const { return latest_; }
  absl::Duration smoothed() const { return smoothed_; }
  absl::Duration rttvar() const { return rttvar_; }
  absl::Duration min_rtt() const { return min_rtt_; }  // Infinite before a sample
  const Options& options() const { return options_; }

  // RFC 9002 6.2.1 probe timeout (without backoff):
  //   smoothed + max(4 * rttvar, granularity) [+ max_ack_delay]
  absl::Duration Pto(bool include_max_ack_delay) const;
  // RFC 6298 2.2-2.4 retransmission timeout: smoothed + max(granularity,
  // 4 * rttvar), at least `floor` (RFC 6298 says 1 s; we default lower, as
  // every modern stack does) and at most 60 s.
  absl::Duration Rto(absl::Duration floor = absl::Milliseconds(200)) const;
  // RFC 9002 6.1.2 time threshold: 9/8 * max(smoothed, latest), at least
  // granularity.
  absl::Duration LossDelay() const;
  // RFC 9002 7.6.1 persistent congestion duration:
  //   (smoothed + max(4 * rttvar, granularity) + max_ack_delay) * 3
  absl::Duration PersistentCongestionDuration() const;

 private:
  Options options_;
  bool has_sample_ = false;
  absl::Duration latest_;
  absl::Duration smoothed_;
  absl::Duration rttvar_;
  absl::Duration min_rtt_ = absl::InfiniteDuration();
};

}  // namespace udpmsg::reliable

#endif  // UDPMSG_RELIABLE_RTT_ESTIMATOR_H_
