#include "reliable/ack_tracker.h"

#include <algorithm>
#include <iterator>

namespace udpmsg::reliable {

AckTracker::AckTracker(const Options& options) : options_(options) {
  // The newest range (holding the largest number) is always kept.
  options_.max_ranges = std::max<size_t>(options_.max_ranges, 1);
  options_.ack_eliciting_threshold = std::max(options_.ack_eliciting_threshold, 1);
}

bool AckTracker::Contains(uint64_t number) const {
  if (has_horizon_ && number <= horizon_) return true;
  auto it = ranges_.upper_bound(number);  // first range starting above number
  if (it == ranges_.begin()) return false;
  --it;
  return number <= it->second;
}

bool AckTracker::OnPacket(absl::Time now, uint64_t number, bool ack_eliciting) {
  // In order, the common case: the next number extends the newest range
  // (nothing above the largest is known, the horizon is below it). The same
  // state changes as below, without the btree searches.
  if (any_ && number == largest_ + 1 && !ranges_.empty()) {
    auto newest = std::prev(ranges_.end());
    if (newest->second == largest_) {
      newest->second = number;
      largest_ = number;
      largest_time_ = now;
      new_packets_ = true;
      if (ack_eliciting) {
        ++unacked_eliciting_;
        if (unacked_eliciting_ >= options_.ack_eliciting_threshold) ack_now_ = true;
        if (deadline_ == absl::InfiniteFuture()) deadline_ = now + options_.max_ack_delay;
      }
      return true;
    }
  }
  if (Contains(number)) {
    ++duplicates_;
    // The peer did not see our ACK (or retransmitted spuriously): tell it
    // again soon (RFC 9000 13.2.1).
    if (ack_eliciting) ack_now_ = true;
    return false;
  }

  // Out of order (RFC 9000 13.2.1): below something already received (it may
  // fill a gap), or above the largest with a gap below it.
  const bool out_of_order = any_ && (number < largest_ || number - largest_ > 1);

  // Insert, merging with adjacent ranges.
  auto next = ranges_.upper_bound(number);
  auto prev = next == ranges_.begin() ? ranges_.end() : std::prev(next);
  const bool merge_prev = prev != ranges_.end() && prev->second + 1 == number;
  const bool merge_next = next != ranges_.end() && next->first == number + 1;
  if (merge_prev && merge_next) {
    prev->second = next->second;
    ranges_.erase(next);
  } else if (merge_prev) {
    prev->second = number;
  } else if (merge_next) {
    const uint64_t last = next->second;
    ranges_.erase(next);
    ranges_.emplace(number, last);
  } else {
    ranges_.emplace(number, number);
  }
  // Forget the oldest ranges beyond the bound: everything up to the end of a
  // forgotten range counts as received from now on.
  while (ranges_.size() > options_.max_ranges) {
    auto oldest = ranges_.begin();
    horizon_ = has_horizon_ ? std::max(horizon_, oldest->second) : oldest->second;
    has_horizon_ = true;
    ranges_.erase(oldest);
  }

  if (!any_ || number > largest_) {
    largest_ = number;
    largest_time_ = now;
  }
  any_ = true;
  new_packets_ = true;

  if (ack_eliciting) {
    ++unacked_eliciting_;
    if (unacked_eliciting_ >= options_.ack_eliciting_threshold || out_of_order) ack_now_ = true;
    if (deadline_ == absl::InfiniteFuture()) deadline_ = now + options_.max_ack_delay;
  }
  return true;
}

bool AckTracker::OnAckFrequency(uint64_t sequence, uint32_t threshold) {
  if (has_frequency_sequence_ && sequence <= frequency_sequence_) return false;
  has_frequency_sequence_ = true;
  frequency_sequence_ = sequence;
  options_.ack_eliciting_threshold =
      static_cast<int>(std::clamp<uint32_t>(threshold, 1, proto::kMaxAckFrequencyThreshold));
  // Already over a lowered threshold: acknowledge now.
  if (unacked_eliciting_ >= options_.ack_eliciting_threshold) ack_now_ = true;
  return true;
}

proto::Ack AckTracker::BuildAck(absl::Time now, size_t max_ranges) {
  proto::Ack ack;
  ack_now_ = false;
  deadline_ = absl::InfiniteFuture();
  unacked_eliciting_ = 0;
  new_packets_ = false;
  if (!any_ || ranges_.empty()) return ack;

  max_ranges = std::max<size_t>(max_ranges, 1);
  // Numbers at or below the report floor were acknowledged in an ACK the peer
  // has seen (RFC 9000 13.2.4); the largest is always reported so that an ACK
  // is never empty.
  uint64_t lowest = 0;
  if (has_report_floor_) lowest = report_floor_ < largest_ ? report_floor_ + 1 : largest_;
  for (auto it = ranges_.rbegin(); it != ranges_.rend() && ack.ranges.size() < max_ranges; ++it) {
    if (it->second < lowest) break;
    ack.ranges.push_back(proto::AckRange{std::max(it->first, lowest), it->second});
  }
  ack.ack_delay = std::max(now - largest_time_, absl::ZeroDuration());
  last_built_ = now;
  return ack;
}

void AckTracker::OnAckAcknowledged(uint64_t largest_acked) {
  if (!has_report_floor_ || largest_acked > report_floor_) {
    report_floor_ = largest_acked;
    has_report_floor_ = true;
  }
}

}  // namespace udpmsg::reliable
