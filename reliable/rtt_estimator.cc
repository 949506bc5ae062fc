#include "reliable/rtt_estimator.h"

#include <algorithm>

namespace udpmsg::reliable {

RttEstimator::RttEstimator(const Options& options)
    : options_(options),
      latest_(absl::ZeroDuration()),
      smoothed_(options.initial_rtt),
      rttvar_(options.initial_rtt / 2) {}

void RttEstimator::OnSample(absl::Duration latest_rtt, absl::Duration ack_delay,
                            bool handshake_confirmed) {
  if (latest_rtt <= absl::ZeroDuration()) return;
  latest_ = latest_rtt;
  if (!has_sample_) {
    // RFC 9002 5.3: the first sample initialises everything; ack_delay is
    // ignored.
    has_sample_ = true;
    min_rtt_ = latest_rtt;
    smoothed_ = latest_rtt;
    rttvar_ = latest_rtt / 2;
    return;
  }
  // min_rtt ignores ack delay (RFC 9002 5.2).
  min_rtt_ = std::min(min_rtt_, latest_rtt);
  ack_delay = std::max(ack_delay, absl::ZeroDuration());
  if (handshake_confirmed) ack_delay = std::min(ack_delay, options_.max_ack_delay);
  // Never let the adjustment push the sample below min_rtt.
  absl::Duration adjusted = latest_rtt;
  if (latest_rtt >= min_rtt_ + ack_delay) adjusted = latest_rtt - ack_delay;
  rttvar_ = rttvar_ * 3 / 4 + absl::AbsDuration(smoothed_ - adjusted) / 4;
  smoothed_ = smoothed_ * 7 / 8 + adjusted / 8;
}

absl::Duration RttEstimator::Pto(bool include_max_ack_delay) const {
  absl::Duration pto = smoothed_ + std::max(4 * rttvar_, options_.granularity);
  if (include_max_ack_delay) pto += options_.max_ack_delay;
  return pto;
}

absl::Duration RttEstimator::Rto(absl::Duration floor) const {
  const absl::Duration rto = smoothed_ + std::max(options_.granularity, 4 * rttvar_);
  return std::min(std::max(rto, floor), absl::Seconds(60));
}

absl::Duration RttEstimator::LossDelay() const {
  return std::max(std::max(smoothed_, latest_) * 9 / 8, options_.granularity);
}

absl::Duration RttEstimator::PersistentCongestionDuration() const {
  return (smoothed_ + std::max(4 * rttvar_, options_.granularity) + options_.max_ack_delay) * 3;
}

}  // namespace udpmsg::reliable
