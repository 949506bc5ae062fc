#include "cli/impair_flags.h"

#include <cstdint>
#include <string>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cli/flags.h"

namespace udpmsg::cli {
namespace {

// Parses the --flag value `text` with `parse`, or explains what is wrong.
template <typename T, typename Parser>
absl::Status ParseFlag(absl::string_view name, const std::string& text, Parser parse, T* out) {
  auto value = parse(text);
  if (!value.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--", name, ": ", value.status().message()));
  }
  *out = *value;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<impairment::ImpairmentConfig> ImpairmentFromFlags() {
  impairment::ImpairmentConfig c;
  const auto rate = [](absl::string_view t) { return impairment::ParseRate(t); };
  const auto duration = [](absl::string_view t) { return impairment::ParseDuration(t); };
  const auto bandwidth = [](absl::string_view t) { return impairment::ParseBandwidth(t); };
  const auto bytes = [](absl::string_view t) -> absl::StatusOr<uint64_t> {
    uint64_t n = 0;
    if (!absl::SimpleAtoi(t, &n)) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid byte count \"", t, "\" (want a whole number of bytes)"));
    }
    return n;
  };
  for (absl::Status s : {
           ParseFlag("loss", absl::GetFlag(FLAGS_loss), rate, &c.loss),
           ParseFlag("burst", absl::GetFlag(FLAGS_burst), rate, &c.burst),
           ParseFlag("delay", absl::GetFlag(FLAGS_delay), duration, &c.delay),
           ParseFlag("jitter", absl::GetFlag(FLAGS_jitter), duration, &c.jitter),
           ParseFlag("reorder", absl::GetFlag(FLAGS_reorder), rate, &c.reorder),
           ParseFlag("reorder_delay", absl::GetFlag(FLAGS_reorder_delay), duration,
                     &c.reorder_delay),
           ParseFlag("dup", absl::GetFlag(FLAGS_dup), rate, &c.duplicate),
           ParseFlag("corrupt", absl::GetFlag(FLAGS_corrupt), rate, &c.corrupt),
           ParseFlag("rate", absl::GetFlag(FLAGS_rate), bandwidth, &c.rate_bps),
           ParseFlag("queue_limit", absl::GetFlag(FLAGS_queue_limit), bytes, &c.queue_limit_bytes),
       }) {
    if (!s.ok()) return s;
  }
  c.seed = absl::GetFlag(FLAGS_seed);
  if (absl::Status s = impairment::Validate(c); !s.ok()) return s;
  return c;
}

}  // namespace udpmsg::cli
