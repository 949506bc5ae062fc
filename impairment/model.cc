#include "impairment/model.h"

#include <cctype>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/numeric/int128.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace udpmsg::impairment {
namespace {

// Stream ids; changing them changes every seeded run, so don't.
enum Stream : uint64_t {
  kLossStream = 1,
  kJitterStream = 2,
  kReorderStream = 3,
  kDuplicateStream = 4,
  kCorruptStream = 5,
};

constexpr uint64_t kMaxRateBps = uint64_t{1} << 62;

bool IsProbability(double p) { return p >= 0.0 && p <= 1.0; }  // false for NaN

absl::Status CheckProbability(absl::string_view name, double p) {
  if (!IsProbability(p)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("impairment %s must be a probability in [0, 1], got %g", name, p));
  }
  return absl::OkStatus();
}

absl::Status CheckDuration(absl::string_view name, absl::Duration d) {
  if (d < absl::ZeroDuration() || d == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "impairment ", name, " must be a finite duration >= 0, got ", absl::FormatDuration(d)));
  }
  return absl::OkStatus();
}

// P(Good -> Bad) that makes the stationary loss rate equal `loss`.
double EnterBadProbability(double loss, double burst) {
  return loss * (1.0 - burst) / (1.0 - loss);
}

}  // namespace

// ---------------------------------------------------------------------------
// Validation

absl::Status Validate(const ImpairmentConfig& c) {
  for (const auto& [name, p] : {std::pair<absl::string_view, double>{"loss", c.loss},
                                {"burst", c.burst},
                                {"reorder", c.reorder},
                                {"duplicate", c.duplicate},
                                {"corrupt", c.corrupt}}) {
    if (absl::Status s = CheckProbability(name, p); !s.ok()) return s;
  }
  const bool partial_loss = c.loss > 0.0 && c.loss < 1.0;
  if (partial_loss && c.burst >= 1.0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "impairment burst must be < 1 when 0 < loss < 1 (burst 1 means a loss burst never ends), "
        "got burst %g with loss %g",
        c.burst, c.loss));
  }
  if (partial_loss && c.burst > 0.0 && EnterBadProbability(c.loss, c.burst) > 1.0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "impairment loss %g cannot be reached with burst %g: bursts of mean length %g need "
        "burst >= %g (2 - 1/loss) or burst 0 for independent loss",
        c.loss, c.burst, 1.0 / (1.0 - c.burst), 2.0 - 1.0 / c.loss));
  }
  for (const auto& [name, d] : {std::pair<absl::string_view, absl::Duration>{"delay", c.delay},
                                {"jitter", c.jitter},
                                {"reorder_delay", c.reorder_delay}}) {
    if (absl::Status s = CheckDuration(name, d); !s.ok()) return s;
  }
  if (c.rate_bps > kMaxRateBps) {
    return absl::InvalidArgumentError(
        absl::StrCat("impairment rate_bps must be <= 2^62, got ", c.rate_bps));
  }
  if (c.rate_bps > 0 && c.queue_limit_bytes == 0) {
    return absl::InvalidArgumentError(
        "impairment queue_limit_bytes must be > 0 when rate_bps is set (0 would drop everything)");
  }
  for (size_t i = 0; i < c.blackouts.size(); ++i) {
    const BlackoutWindow& w = c.blackouts[i];
    if (w.start < absl::ZeroDuration() || w.start == absl::InfiniteDuration()) {
      return absl::InvalidArgumentError(absl::StrCat("impairment blackout #", i,
                                                     " start must be finite and >= 0, got ",
                                                     absl::FormatDuration(w.start)));
    }
    if (w.end <= w.start) {
      return absl::InvalidArgumentError(
          absl::StrCat("impairment blackout #", i, " must end after it starts, got [",
                       absl::FormatDuration(w.start), ", ", absl::FormatDuration(w.end), ")"));
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Counters

ImpairmentCounters& ImpairmentCounters::operator+=(const ImpairmentCounters& o) {
  received += o.received;
  delivered += o.delivered;
  dropped_loss += o.dropped_loss;
  dropped_queue += o.dropped_queue;
  dropped_blackout += o.dropped_blackout;
  duplicated += o.duplicated;
  reordered += o.reordered;
  corrupted += o.corrupted;
  bytes_in += o.bytes_in;
  bytes_out += o.bytes_out;
  return *this;
}

std::string ImpairmentCounters::ToString() const {
  return absl::StrCat("received=", received, " delivered=", delivered,
                      " dropped_loss=", dropped_loss, " dropped_queue=", dropped_queue,
                      " dropped_blackout=", dropped_blackout, " duplicated=", duplicated,
                      " reordered=", reordered, " corrupted=", corrupted, " bytes_in=", bytes_in,
                      " bytes_out=", bytes_out);
}

bool operator==(const ImpairmentCounters& a, const ImpairmentCounters& b) {
  return a.received == b.received && a.delivered == b.delivered &&
         a.dropped_loss == b.dropped_loss && a.dropped_queue == b.dropped_queue &&
         a.dropped_blackout == b.dropped_blackout && a.duplicated == b.duplicated &&
         a.reordered == b.reordered && a.corrupted == b.corrupted && a.bytes_in == b.bytes_in &&
         a.bytes_out == b.bytes_out;
}

// ---------------------------------------------------------------------------
// ImpairmentModel

absl::StatusOr<ImpairmentModel> ImpairmentModel::Create(const ImpairmentConfig& config,
                                                        absl::Time origin) {
  if (absl::Status s = Validate(config); !s.ok()) return s;
  return ImpairmentModel(config, origin);
}

ImpairmentModel::ImpairmentModel(const ImpairmentConfig& config, absl::Time origin)
    : config_(config),
      origin_(origin),
      loss_rng_(config.seed, kLossStream),
      jitter_rng_(config.seed, kJitterStream),
      reorder_rng_(config.seed, kReorderStream),
      duplicate_rng_(config.seed, kDuplicateStream),
      corrupt_rng_(config.seed, kCorruptStream) {
  if (config_.burst > 0.0 && config_.loss > 0.0 && config_.loss < 1.0) {
    enter_bad_ = EnterBadProbability(config_.loss, config_.burst);
    bad_ = loss_rng_.Bernoulli(config_.loss);  // start in the stationary distribution
  }
}

bool ImpairmentModel::InBlackout(absl::Time now) const {
  if (config_.blackouts.empty()) return false;
  const absl::Duration since = now - origin_;
  for (const BlackoutWindow& w : config_.blackouts) {
    if (since >= w.start && since < w.end) return true;
  }
  return false;
}

bool ImpairmentModel::DrawLoss() {
  if (config_.loss <= 0.0) return false;
  if (config_.loss >= 1.0) return true;
  if (config_.burst <= 0.0) return loss_rng_.Bernoulli(config_.loss);
  bad_ = bad_ ? loss_rng_.Bernoulli(config_.burst) : loss_rng_.Bernoulli(enter_bad_);
  return bad_;
}

void ImpairmentModel::Corrupt(std::string* bytes) {
  const uint64_t bits = uint64_t{8} * bytes->size();
  uint64_t flips = 1 + corrupt_rng_.Uniform(3);
  if (flips > bits) flips = bits;
  uint64_t chosen[3];
  for (uint64_t i = 0; i < flips; ++i) {
    uint64_t bit;
    bool repeat;
    do {  // distinct positions, so the flips never cancel out
      bit = corrupt_rng_.Uniform(bits);
      repeat = false;
      for (uint64_t j = 0; j < i; ++j) repeat |= chosen[j] == bit;
    } while (repeat);
    chosen[i] = bit;
    (*bytes)[bit / 8] = static_cast<char>(static_cast<uint8_t>((*bytes)[bit / 8]) ^
                                          static_cast<uint8_t>(1u << (bit % 8)));
  }
}

std::vector<Delivery> ImpairmentModel::OnPacket(absl::Time now, absl::string_view bytes) {
  std::vector<Delivery> out;
  OnPacket(now, bytes, &out);
  return out;
}

std::vector<Delivery> ImpairmentModel::OnPacket(absl::Time now, absl::Span<const uint8_t> bytes) {
  return OnPacket(now,
                  absl::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

int ImpairmentModel::OnPacket(absl::Time now, absl::string_view bytes, std::vector<Delivery>* out) {
  const uint64_t size = bytes.size();
  ++counters_.received;
  counters_.bytes_in += size;

  // 1. Blackout.
  if (InBlackout(now)) {
    ++counters_.dropped_blackout;
    return 0;
  }
  // 2. Loss.
  if (DrawLoss()) {
    ++counters_.dropped_loss;
    return 0;
  }
  // 3. Bottleneck queue and serialization.
  absl::Time departure = now;
  if (config_.rate_bps > 0) {
    uint64_t backlog = 0;
    if (link_free_at_ > now) {
      const absl::uint128 ns = static_cast<uint64_t>(absl::ToInt64Nanoseconds(link_free_at_ - now));
      constexpr uint64_t kBitNsPerByte = 8ULL * 1000 * 1000 * 1000;
      backlog = absl::Uint128Low64((ns * config_.rate_bps + (kBitNsPerByte - 1)) / kBitNsPerByte);
    }
    if (backlog + size > config_.queue_limit_bytes) {
      ++counters_.dropped_queue;
      return 0;
    }
    const absl::Time start = link_free_at_ > now ? link_free_at_ : now;
    departure = start + absl::Seconds(static_cast<int64_t>(size * 8)) /
                            static_cast<int64_t>(config_.rate_bps);
    link_free_at_ = departure;
  }
  // 4. Delay and order-preserving jitter.
  absl::Time at = departure + config_.delay;
  if (config_.jitter > absl::ZeroDuration()) {
    const uint64_t span_ns = static_cast<uint64_t>(absl::ToInt64Nanoseconds(config_.jitter));
    at += absl::Nanoseconds(static_cast<int64_t>(jitter_rng_.Uniform(span_ns + 1)));
  }
  // 5. Reorder.
  const bool held = reorder_rng_.Bernoulli(config_.reorder);
  if (held) {
    ++counters_.reordered;
    at += config_.reorder_delay;
  } else {
    if (at < last_in_order_at_) at = last_in_order_at_;
    last_in_order_at_ = at;
  }
  // 6. Duplicate.
  const int copies = duplicate_rng_.Bernoulli(config_.duplicate) ? 2 : 1;
  if (copies == 2) ++counters_.duplicated;
  // 7. Corrupt, per copy.
  for (int i = 0; i < copies; ++i) {
    Delivery& d = out->emplace_back();
    d.deliver_at = at;
    d.bytes.assign(bytes.data(), bytes.size());
    d.duplicate = i == 1;
    d.reordered = held;
    if (size > 0 && corrupt_rng_.Bernoulli(config_.corrupt)) {
      Corrupt(&d.bytes);
      d.corrupted = true;
      ++counters_.corrupted;
    }
    ++counters_.delivered;
    counters_.bytes_out += size;
  }
  return copies;
}

// ---------------------------------------------------------------------------
// Parsers

absl::StatusOr<double> ParseRate(absl::string_view text) {
  absl::string_view s = absl::StripAsciiWhitespace(text);
  bool percent = false;
  if (!s.empty() && s.back() == '%') {
    percent = true;
    s.remove_suffix(1);
    s = absl::StripTrailingAsciiWhitespace(s);
  }
  double value = 0;
  if (s.empty() || !absl::SimpleAtod(s, &value) || !std::isfinite(value)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid rate \"", text, "\": want a probability like 0.1 or a percentage like 10%"));
  }
  if (percent) value /= 100.0;
  if (!IsProbability(value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid rate \"", text, "\": must be between 0 and 1 (0% and 100%)"));
  }
  return value;
}

absl::StatusOr<absl::Duration> ParseDuration(absl::string_view text) {
  absl::string_view s = absl::StripAsciiWhitespace(text);
  absl::Duration d;
  if (s.empty() || !absl::ParseDuration(s, &d)) {
    bool bare_number = !s.empty();
    double ignored;
    bare_number = bare_number && absl::SimpleAtod(s, &ignored);
    return absl::InvalidArgumentError(
        absl::StrCat("invalid duration \"", text, "\": ", bare_number ? "missing unit, " : "",
                     "want a number with a unit (ns, us, ms, s, m, h) "
                     "like 20ms or 1.5s"));
  }
  if (d < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid duration \"", text, "\": must not be negative"));
  }
  if (d == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid duration \"", text, "\": must be finite"));
  }
  return d;
}

absl::StatusOr<uint64_t> ParseBandwidth(absl::string_view text) {
  const absl::string_view s = absl::StripAsciiWhitespace(text);
  size_t split = 0;
  while (split < s.size() && (absl::ascii_isdigit(s[split]) || s[split] == '.')) ++split;
  const absl::string_view number = s.substr(0, split);
  const absl::string_view unit = absl::StripLeadingAsciiWhitespace(s.substr(split));
  auto error = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid bandwidth \"", text, "\": ", why,
        "; want bits/s like 1000000, 20mbit, 20Mbps, 20Mb/s or bytes/s like 2.5MB/s, 1MiB/s"));
  };
  double value = 0;
  if (number.empty() || !absl::SimpleAtod(number, &value) || !std::isfinite(value)) {
    return error("not a non-negative number");
  }
  // Bytes units are case-sensitive ("B"); bit units are not.
  struct Unit {
    absl::string_view name;
    double bits_per_second;
  };
  static constexpr Unit kByteUnits[] = {
      {"B/s", 8.0},
      {"kB/s", 8e3},
      {"KB/s", 8e3},
      {"MB/s", 8e6},
      {"GB/s", 8e9},
      {"KiB/s", 8.0 * 1024},
      {"MiB/s", 8.0 * 1024 * 1024},
      {"GiB/s", 8.0 * 1024 * 1024 * 1024},
  };
  static constexpr Unit kBitUnits[] = {
      {"", 1.0},     {"bit", 1.0},  {"kbit", 1e3}, {"mbit", 1e6}, {"gbit", 1e9},
      {"bps", 1.0},  {"kbps", 1e3}, {"mbps", 1e6}, {"gbps", 1e9}, {"b/s", 1.0},
      {"kb/s", 1e3}, {"mb/s", 1e6}, {"gb/s", 1e9},
  };
  double multiplier = 0;
  for (const Unit& u : kByteUnits) {
    if (unit == u.name) multiplier = u.bits_per_second;
  }
  // An upper-case B always means bytes, so "2.5mB/s" is an error, not 2.5 Mbit/s.
  if (multiplier == 0 && unit.find('B') == absl::string_view::npos) {
    const std::string lower = absl::AsciiStrToLower(unit);
    for (const Unit& u : kBitUnits) {
      if (lower == u.name) multiplier = u.bits_per_second;
    }
  }
  if (multiplier == 0) return error(absl::StrCat("unknown unit \"", unit, "\""));
  const double bps = std::round(value * multiplier);
  if (!(bps <= static_cast<double>(kMaxRateBps))) return error("more than 2^62 bits/s");
  if (bps == 0 && value != 0) return error("less than 1 bit/s");
  return static_cast<uint64_t>(bps);
}

absl::StatusOr<BlackoutWindow> ParseBlackoutWindow(absl::string_view text) {
  const size_t dash = text.find('-');
  if (dash == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid blackout \"", text, "\": want START-END like 5s-8s"));
  }
  absl::StatusOr<absl::Duration> start = ParseDuration(text.substr(0, dash));
  absl::StatusOr<absl::Duration> end = ParseDuration(text.substr(dash + 1));
  for (const absl::StatusOr<absl::Duration>* d : {&start, &end}) {
    if (!d->ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid blackout \"", text, "\": ", d->status().message()));
    }
  }
  if (*end <= *start) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid blackout \"", text, "\": END must be after START"));
  }
  return BlackoutWindow{*start, *end};
}

std::string FormatRate(double rate) { return rate == 0 ? "0" : absl::StrCat(rate * 100, "%"); }

std::string FormatBandwidth(uint64_t bits_per_second) {
  if (bits_per_second == 0) return "unlimited";
  const std::pair<uint64_t, const char*> units[] = {
      {1000000000, "gbit"}, {1000000, "mbit"}, {1000, "kbit"}};
  for (const auto& [scale, unit] : units) {
    if (bits_per_second % scale == 0) return absl::StrCat(bits_per_second / scale, unit);
  }
  return absl::StrCat(bits_per_second, "bit");
}

bool ImpairsBesidesLoss(const ImpairmentConfig& c) {
  return c.delay > absl::ZeroDuration() || c.jitter > absl::ZeroDuration() || c.reorder > 0 ||
         c.duplicate > 0 || c.corrupt > 0 || c.rate_bps > 0 || !c.blackouts.empty();
}

std::string DescribeBesidesLoss(const ImpairmentConfig& c) {
  std::vector<std::string> parts;
  if (c.delay > absl::ZeroDuration())
    parts.push_back(absl::StrCat("delay ", absl::FormatDuration(c.delay)));
  if (c.jitter > absl::ZeroDuration())
    parts.push_back(absl::StrCat("jitter ", absl::FormatDuration(c.jitter)));
  if (c.reorder > 0) {
    parts.push_back(absl::StrCat("reorder ", FormatRate(c.reorder), " by ",
                                 absl::FormatDuration(c.reorder_delay)));
  }
  if (c.duplicate > 0) parts.push_back(absl::StrCat("dup ", FormatRate(c.duplicate)));
  if (c.corrupt > 0) parts.push_back(absl::StrCat("corrupt ", FormatRate(c.corrupt)));
  if (c.rate_bps > 0) parts.push_back(absl::StrCat("rate ", FormatBandwidth(c.rate_bps)));
  return absl::StrJoin(parts, ", ");
}

}  // namespace udpmsg::impairment
