#include "reliable/pmtud.h"

#include <algorithm>

namespace udpmsg::reliable {

absl::string_view PmtudStateName(PathMtuProber::State state) {
  switch (state) {
    case PathMtuProber::State::kDisabled:
      return "disabled";
    case PathMtuProber::State::kBase:
      return "base";
    case PathMtuProber::State::kSearching:
      return "searching";
    case PathMtuProber::State::kSearchComplete:
      return "search complete";
    case PathMtuProber::State::kError:
      return "error";
  }
  return "?";
}

PathMtuProber::PathMtuProber(absl::Time now, const Options& options)
    : options_(options),
      state_(State::kDisabled),
      plpmtu_(options.base),
      smallest_failed_(options.ceiling + 1) {
  options_.max_probes = std::max(options_.max_probes, 1);
  options_.black_hole_losses = std::max(options_.black_hole_losses, 1);
  if (options_.ceiling <= options_.base) return;
  // The handshake proved the base: search at once.
  StartSearch(now);
}

void PathMtuProber::StartSearch(absl::Time now) {
  state_ = State::kSearching;
  ++stats_.searches;
  smallest_failed_ = options_.ceiling + 1;
  failed_once_ = false;
  edge_tried_ = false;
  raise_at_ = absl::InfiniteFuture();
  Advance(now);
}

void PathMtuProber::Advance(absl::Time now) {
  losses_at_size_ = 0;
  const size_t hi = smallest_failed_ - 1;  // largest size not known to fail
  if (plpmtu_ >= hi) {
    state_ = State::kSearchComplete;
    next_size_ = 0;
    raise_at_ = now + options_.raise_interval;
    return;
  }
  if (failed_once_) {
    if (!edge_tried_) {
      edge_tried_ = true;
      next_size_ = plpmtu_ + 1;
      return;
    }
    next_size_ = plpmtu_ + (hi - plpmtu_ + 1) / 2;  // upper middle: always > plpmtu_
    return;
  }
  next_size_ = hi;  // the ceiling when no common size is left
  for (size_t size : kCommonSizes) {
    if (size > plpmtu_ && size <= hi) {
      next_size_ = size;
      break;
    }
  }
}

std::optional<size_t> PathMtuProber::ProbeSize(absl::Time now) const {
  (void)now;
  if (probe_number_ || next_size_ == 0) return std::nullopt;
  if (state_ != State::kSearching && state_ != State::kBase) return std::nullopt;
  return next_size_;
}

void PathMtuProber::OnProbeSent(absl::Time now, uint64_t number, size_t size) {
  (void)now;
  if (size != next_size_) return;
  probe_number_ = number;
  ++stats_.probes_sent;
}

bool PathMtuProber::SettleStale(uint64_t number) {
  if (!IsProbe(number) || !probe_stale_) return false;
  probe_number_.reset();
  probe_stale_ = false;
  return true;
}

void PathMtuProber::OnProbeAcked(absl::Time now, uint64_t number) {
  if (!IsProbe(number) || SettleStale(number)) return;
  probe_number_.reset();
  ++stats_.probes_acked;
  if (state_ == State::kBase) {
    // The base works again: search upwards from it.
    StartSearch(now);
    return;
  }
  plpmtu_ = std::max(plpmtu_, next_size_);
  Advance(now);
}

void PathMtuProber::OnProbeLost(absl::Time now, uint64_t number) {
  if (!IsProbe(number) || SettleStale(number)) return;
  ++stats_.probes_lost;
  probe_number_.reset();
  if (++losses_at_size_ >= options_.max_probes) Failed(now, next_size_);
}

void PathMtuProber::OnProbeTooBig(absl::Time now, uint64_t number) {
  if (!IsProbe(number) || SettleStale(number)) return;
  ++stats_.probes_lost;
  probe_number_.reset();
  Failed(now, next_size_);
}

void PathMtuProber::Failed(absl::Time now, size_t size) {
  if (state_ == State::kBase) {
    // Not even the base gets through: keep it (nothing smaller is allowed)
    // and try again later.
    state_ = State::kError;
    next_size_ = 0;
    losses_at_size_ = 0;
    raise_at_ = now + options_.raise_interval;
    return;
  }
  smallest_failed_ = std::min(smallest_failed_, size);
  failed_once_ = true;
  Advance(now);
}

void PathMtuProber::OnPacketAcked(absl::Time sent_time, size_t size) {
  if (size <= options_.base) return;
  last_large_acked_sent_ = std::max(last_large_acked_sent_, sent_time);
  large_losses_ = 0;
}

bool PathMtuProber::OnPacketLost(absl::Time now, absl::Time sent_time, size_t size) {
  if (size <= options_.base || plpmtu_ <= options_.base) return false;
  // A larger packet sent later got through: congestion, not a black hole.
  if (sent_time <= last_large_acked_sent_) return false;
  if (++large_losses_ < options_.black_hole_losses) return false;
  ++stats_.black_holes;
  large_losses_ = 0;
  plpmtu_ = options_.base;
  last_large_acked_sent_ = now;  // losses of what was sent before do not count again
  state_ = State::kBase;
  raise_at_ = absl::InfiniteFuture();
  losses_at_size_ = 0;
  // An outstanding probe stays known (its loss is still no congestion
  // signal) but no longer counts: the next probe waits for it to settle.
  probe_stale_ = probe_number_.has_value();
  next_size_ = options_.base;
  return true;
}

void PathMtuProber::OnTimeout(absl::Time now) {
  if (now < raise_at_) return;
  raise_at_ = absl::InfiniteFuture();
  if (state_ == State::kError) {
    state_ = State::kBase;
    next_size_ = options_.base;
    losses_at_size_ = 0;
    return;
  }
  if (state_ == State::kSearchComplete) StartSearch(now);
}

}  // namespace udpmsg::reliable
