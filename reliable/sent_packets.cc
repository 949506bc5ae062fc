#include "reliable/sent_packets.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace udpmsg::reliable {

void SentPackets::Window::Resize(size_t size) {
  std::vector<Slot> resized(size);
  for (uint64_t i = 0; i < span_; ++i) resized[i] = std::move(At(base_ + i));
  ring_.swap(resized);
  head_ = 0;
}

void SentPackets::Window::Reserve(uint64_t span) {
  if (span <= ring_.size()) return;
  // From one slot, doubling: an idle connection tracks one ACK-only packet.
  size_t size = std::max<size_t>(ring_.size(), 1);
  while (size < span) size *= 2;
  Resize(size);
}

void SentPackets::Window::Append(SentPacket packet) {
  const uint64_t number = packet.number;
  if (span_ == 0) {
    base_ = number;
    head_ = 0;
  }
  const uint64_t span = number - base_ + 1;
  Reserve(span);
  for (uint64_t n = base_ + span_; n < number; ++n) At(n).live = false;  // numbers not recorded
  Slot& slot = At(number);
  slot.live = true;
  slot.packet = std::move(packet);
  span_ = span;
  ++live_;
}

SentPacket* SentPackets::Window::Find(uint64_t number) {
  if (number < base_ || number >= base_ + span_) return nullptr;
  Slot& slot = At(number);
  return slot.live ? &slot.packet : nullptr;
}

void SentPackets::Window::Drop(uint64_t number) {
  Slot& slot = At(number);
  slot.live = false;
  slot.packet.fragments.clear();
  --live_;
  while (span_ > 0 && !ring_[head_].live) {
    head_ = (head_ + 1) & (ring_.size() - 1);
    ++base_;
    --span_;
  }
  if (span_ == 0) {
    Clear();
  } else if (ring_.size() >= kShrinkFrom && span_ * 8 <= ring_.size()) {
    // A burst is over but a few packets stay tracked (a connection that
    // goes quiet keeps its last ACK-only packet): give the memory back,
    // keeping room to double once. Amortised: at least 7/8 of the slots
    // were settled since the ring last changed size.
    size_t size = kShrinkFrom / 2;
    while (size < 2 * span_) size *= 2;
    Resize(size);
  }
}

void SentPackets::Window::Clear() {
  std::vector<Slot>().swap(ring_);
  head_ = 0;
  span_ = 0;
  live_ = 0;
}

SentPackets::SentPackets(const Options& options)
    : options_(options),
      packet_threshold_(std::clamp(options.packet_threshold, 1, kMaxPacketThreshold)),
      time_threshold_(options.time_threshold) {}

bool SentPackets::OnSent(SentPacket packet) {
  if (packets_.size() >= options_.max_packets) return false;
  if (largest_sent_.has_value() && packet.number <= *largest_sent_) return false;
  // The ring spans from the oldest packet tracked to the newest. Its dead
  // slots are packets already settled between live ones, which loss
  // detection keeps few (see DetectLost); numbers refused above leave gaps
  // (the connection closes on a refusal). Bounded at twice the count.
  if (packets_.SpanWith(packet.number) > 2 * options_.max_packets) return false;
  largest_sent_ = packet.number;
  if (packet.ack_eliciting) {
    bytes_in_flight_ += packet.bytes;
    ++eliciting_in_flight_;
    last_eliciting_sent_ = std::max(last_eliciting_sent_, packet.sent_time);
  }
  packets_.Append(std::move(packet));
  return true;
}

void SentPackets::Remove(const SentPacket& packet) {
  if (!packet.ack_eliciting) return;
  bytes_in_flight_ -= std::min<uint64_t>(bytes_in_flight_, packet.bytes);
  if (eliciting_in_flight_ > 0) --eliciting_in_flight_;
}

absl::Duration SentPackets::LossDelay(const RttEstimator& rtt) const {
  // RFC 9002 6.1.2: time_threshold * max(smoothed_rtt, latest_rtt), at least
  // kGranularity. The default threshold uses RttEstimator's exact 9/8.
  if (time_threshold_ == 9.0 / 8.0) return rtt.LossDelay();
  return std::max(std::max(rtt.smoothed(), rtt.latest()) * time_threshold_,
                  rtt.options().granularity);
}

void SentPackets::OnSpuriousLosses(absl::Time now, const proto::Ack& ack,
                                   const RttEstimator& rtt, std::vector<SentPacket>* spurious) {
  if (recently_lost_.empty() || !largest_acked_.has_value()) return;
  const absl::Duration basis = std::max(rtt.smoothed(), rtt.latest());
  for (const proto::AckRange& range : ack.ranges) {
    auto it = recently_lost_.lower_bound(range.smallest);
    while (it != recently_lost_.end() && it->first <= range.largest) {
      SentPacket p;
      p.number = it->first;
      p.sent_time = it->second.sent_time;
      p.bytes = it->second.bytes;
      p.ack_eliciting = it->second.ack_eliciting;
      p.mtu_probe = it->second.mtu_probe;
      spurious->push_back(std::move(p));
      // Reordered by at most this many numbers (an upper bound: acks are
      // not sent for every packet).
      const uint64_t distance = *largest_acked_ - it->first + 1;
      packet_threshold_ = static_cast<int>(std::min<uint64_t>(
          kMaxPacketThreshold, std::max<uint64_t>(packet_threshold_, distance)));
      if (basis > absl::ZeroDuration()) {
        const double needed = absl::FDivDuration(now - it->second.sent_time, basis) + 1.0 / 8.0;
        time_threshold_ = std::min(kMaxTimeThreshold, std::max(time_threshold_, needed));
      }
      it = recently_lost_.erase(it);
    }
  }
  std::sort(spurious->begin(), spurious->end(),
            [](const SentPacket& a, const SentPacket& b) { return a.number < b.number; });
}

absl::StatusOr<SentPackets::AckResult> SentPackets::OnAck(absl::Time now, const proto::Ack& ack,
                                                          RttEstimator& rtt,
                                                          bool handshake_confirmed) {
  AckResult result;
  if (ack.ranges.empty()) return result;
  // Validate before touching any state.
  uint64_t largest = 0;
  for (const proto::AckRange& range : ack.ranges) {
    if (range.smallest > range.largest) {
      return absl::InvalidArgumentError(
          absl::StrCat("ack range [", range.smallest, ", ", range.largest, "] is inverted"));
    }
    if (!largest_sent_.has_value() || range.largest > *largest_sent_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ack of packet ", range.largest, " which was never sent (largest sent: ",
          largest_sent_.has_value() ? absl::StrCat(*largest_sent_) : std::string("none"), ")"));
    }
    largest = std::max(largest, range.largest);
  }
  // Packets above this are new to every ACK (see the reservation below).
  const uint64_t fresh_from = largest_acked_.has_value() ? *largest_acked_ + 1 : 0;
  if (!largest_acked_.has_value() || largest > *largest_acked_) largest_acked_ = largest;
  OnSpuriousLosses(now, ack, rtt, &result.spurious);

  // Newly acknowledged packets: the tracked ones inside any range.
  // Ranges are clipped to the ring, whose span is bounded (2 x max_packets).
  // Room at once for those above the largest acknowledged before (nearly
  // all of a bulk sender's): grown by push_back, the vector was reallocated
  // (and its records moved) about log2(n) times per ACK. Not for the ring
  // below it, which every ACK's ranges cover again while an old packet
  // awaits its loss threshold: mostly acknowledged already, and push_back
  // takes the few that are not.
  size_t candidates = 0;
  for (const proto::AckRange& range : ack.ranges) {
    const uint64_t from = std::max({range.smallest, packets_.first(), fresh_from});
    const uint64_t to = std::min(range.largest + 1, packets_.end());
    if (from < to) candidates += static_cast<size_t>(to - from);
  }
  result.acked.reserve(std::min(candidates, packets_.size()));
  for (const proto::AckRange& range : ack.ranges) {
    const uint64_t from = std::max(range.smallest, packets_.first());
    for (uint64_t n = from; n <= range.largest && n < packets_.end(); ++n) {
      SentPacket* p = packets_.Find(n);
      if (p == nullptr) continue;
      Remove(*p);
      result.acked.push_back(std::move(*p));
      packets_.Drop(n);
    }
  }
  if (result.acked.empty()) return result;  // nothing new: no sample, no loss
  std::sort(result.acked.begin(), result.acked.end(),
            [](const SentPacket& a, const SentPacket& b) { return a.number < b.number; });

  // RTT sample (RFC 9002 5.1) before loss detection (A.7): the largest
  // acknowledged is newly acknowledged and at least one newly acknowledged
  // packet is ack-eliciting. ack_delay is measured from the largest's receipt,
  // so the sample stays meaningful when the largest itself only carried an
  // ACK (which the peer does not acknowledge on its own).
  const SentPacket& newest = result.acked.back();
  const bool any_eliciting =
      std::any_of(result.acked.begin(), result.acked.end(),
                  [](const SentPacket& p) { return p.ack_eliciting; });
  if (newest.number == largest && any_eliciting) {
    const absl::Duration sample = now - newest.sent_time;
    if (sample > absl::ZeroDuration()) {
      rtt.OnSample(sample, ack.ack_delay, handshake_confirmed);
      result.rtt_sample = sample;
      if (first_rtt_sample_ == absl::InfinitePast()) first_rtt_sample_ = now;
    }
  }
  pto_count_ = 0;

  bool persistent = false;
  result.lost = DetectLost(now, rtt, &persistent);
  result.persistent_congestion = persistent;
  return result;
}

std::vector<SentPacket> SentPackets::DetectLost(absl::Time now, const RttEstimator& rtt,
                                                bool* persistent_congestion) {
  std::vector<SentPacket> lost;
  loss_time_ = absl::InfiniteFuture();
  if (!largest_acked_.has_value()) return lost;
  const uint64_t largest_acked = *largest_acked_;
  const absl::Duration loss_delay = LossDelay(rtt);
  const absl::Time lost_send_time = now - loss_delay;
  const uint64_t threshold = static_cast<uint64_t>(packet_threshold_);
  const absl::Duration pc_duration = rtt.PersistentCongestionDuration();

  // Persistent congestion (RFC 9002 7.6.2): a run of consecutive packet
  // numbers, all lost now, whose first and last ack-eliciting packets sent
  // after the first RTT sample are more than pc_duration apart. A number
  // missing from packets_ was acknowledged (or lost earlier) and breaks the
  // run.
  absl::Time run_start = absl::InfiniteFuture();  // first eligible send time
  bool run_open = false;
  uint64_t previous = 0;

  // Every live packet more than packet_threshold_ below the largest
  // acknowledged is declared lost here, and dead slots are trimmed from the
  // front, so this walks at most the threshold plus what the ACK settled.
  for (uint64_t n = packets_.first(); n < largest_acked && n < packets_.end(); ++n) {
    SentPacket* found = packets_.Find(n);
    if (found == nullptr) continue;
    SentPacket& packet = *found;
    if (run_open && packet.number != previous + 1) {
      run_open = false;
      run_start = absl::InfiniteFuture();
    }
    previous = packet.number;
    if (packet.sent_time <= lost_send_time || largest_acked - packet.number >= threshold) {
      if (packet.ack_eliciting && !packet.mtu_probe &&
          first_rtt_sample_ != absl::InfinitePast() && packet.sent_time > first_rtt_sample_) {
        if (run_start == absl::InfiniteFuture()) {
          run_start = packet.sent_time;
        } else if (packet.sent_time - run_start > pc_duration) {
          *persistent_congestion = true;
        }
      }
      run_open = true;
      recently_lost_[packet.number] =
          LostRecord{packet.sent_time, packet.bytes, packet.ack_eliciting, packet.mtu_probe};
      if (recently_lost_.size() > kLostMemory) recently_lost_.erase(recently_lost_.begin());
      Remove(packet);
      lost.push_back(std::move(packet));
      packets_.Drop(n);
    } else {
      loss_time_ = std::min(loss_time_, packet.sent_time + loss_delay);
      run_open = false;
      run_start = absl::InfiniteFuture();
    }
  }
  return lost;
}

absl::Time SentPackets::Deadline(const RttEstimator& rtt) const {
  if (loss_time_ != absl::InfiniteFuture()) return loss_time_;
  if (eliciting_in_flight_ == 0) return absl::InfiniteFuture();
  // Exponential backoff (Duration multiplication saturates to infinity),
  // capped.
  const int shift = std::min(pto_count_, 62);
  const absl::Duration pto = rtt.Pto(true);
  return last_eliciting_sent_ +
         std::min(pto * (int64_t{1} << shift), std::max(pto, options_.max_pto_period));
}

SentPackets::TimeoutResult SentPackets::OnTimeout(absl::Time now, const RttEstimator& rtt) {
  TimeoutResult result;
  if (now < Deadline(rtt)) return result;  // early call: nothing is due
  if (loss_time_ != absl::InfiniteFuture()) {
    bool persistent = false;  // only ACKs establish persistent congestion
    result.lost = DetectLost(now, rtt, &persistent);
    return result;
  }
  if (eliciting_in_flight_ == 0) return result;
  result.probe = true;
  ++pto_count_;
  return result;
}

std::vector<SentPacket> SentPackets::AbandonAll() {
  std::vector<SentPacket> out;
  out.reserve(packets_.size());
  for (uint64_t n = packets_.first(); n < packets_.end(); ++n) {
    if (SentPacket* p = packets_.Find(n)) out.push_back(std::move(*p));
  }
  packets_.Clear();
  bytes_in_flight_ = 0;
  eliciting_in_flight_ = 0;
  loss_time_ = absl::InfiniteFuture();
  pto_count_ = 0;
  first_rtt_sample_ = absl::InfinitePast();
  return out;
}

void SentPackets::Clear() {
  packets_.Clear();
  recently_lost_.clear();
  bytes_in_flight_ = 0;
  eliciting_in_flight_ = 0;
  loss_time_ = absl::InfiniteFuture();
  pto_count_ = 0;
}

}  // namespace udpmsg::reliable
