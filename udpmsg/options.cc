#include "udpmsg/options.h"

#include <cstdint>

#include "absl/strings/str_cat.h"

namespace udpmsg {
namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kGiB = 1024 * kMiB;

std::string Bytes(uint64_t n) {
  if (n != 0 && n % kGiB == 0) return absl::StrCat(n / kGiB, " GiB");
  if (n != 0 && n % kMiB == 0) return absl::StrCat(n / kMiB, " MiB");
  return absl::StrCat(n);
}

absl::Status CheckRange(absl::string_view field, uint64_t value, uint64_t low, uint64_t high,
                        bool as_bytes = false) {
  if (value >= low && value <= high) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "HostOptions.", field, " ", value, " outside [", as_bytes ? Bytes(low) : absl::StrCat(low),
      ", ", as_bytes ? Bytes(high) : absl::StrCat(high), "]"));
}

absl::Status CheckSigned(absl::string_view field, int64_t value, int64_t low, int64_t high,
                         bool as_bytes = false) {
  if (value >= low && value <= high) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "HostOptions.", field, " ", value, " outside [",
      as_bytes ? Bytes(static_cast<uint64_t>(low)) : absl::StrCat(low), ", ",
      as_bytes ? Bytes(static_cast<uint64_t>(high)) : absl::StrCat(high), "]"));
}

// `low_open`: the range excludes `low` (a duration that must be positive).
absl::Status CheckDuration(absl::string_view field, absl::Duration value, absl::Duration low,
                           absl::Duration high, bool low_open) {
  const bool above = low_open ? value > low : value >= low;
  if (above && value <= high) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("HostOptions.", field, " ", absl::FormatDuration(value), " outside ",
                   low_open ? "(" : "[", absl::FormatDuration(low), ", ",
                   absl::FormatDuration(high), "]"));
}

}  // namespace

absl::Status HostOptions::Validate() const {
  if (!bind.valid()) {
    return absl::InvalidArgumentError("HostOptions.bind is empty: set an IPv4 or IPv6 address");
  }
  const absl::Duration day = absl::Hours(24);
  const absl::Status checks[] = {
      CheckRange("max_connections", max_connections, 1, 1 << 20),
      CheckRange("max_unconfirmed_connections", max_unconfirmed_connections, 1, 1 << 20),
      CheckDuration("unconfirmed_timeout", unconfirmed_timeout, absl::ZeroDuration(), day, true),
      CheckRange("max_connections_per_address", max_connections_per_address, 1, 1 << 20),
      CheckSigned("socket_buffer_bytes", socket_buffer_bytes, 0, kGiB, /*as_bytes=*/true),
      CheckDuration("cookie_lifetime", cookie_lifetime, absl::ZeroDuration(), absl::Hours(1),
                    true),
      CheckRange("max_datagram", max_datagram, kMinDatagram, kMaxDatagram),
      CheckRange("max_ack_threshold", max_ack_threshold, 2, 64),
      CheckRange("max_message_bytes", max_message_bytes, 1, 256 * kMiB, true),
      CheckRange("window", window, 1, 65536),
      CheckRange("max_queued_bytes", max_queued_bytes, 1, 16 * kGiB, true),
      CheckRange("max_reassembly_bytes", max_reassembly_bytes, 1, 16 * kGiB, true),
      CheckRange("max_undelivered_bytes", max_undelivered_bytes, 1, 16 * kGiB, true),
      CheckRange("max_channels", max_channels, 1, 65536),
      CheckDuration("idle_timeout", idle_timeout, absl::ZeroDuration(), day, true),
      CheckDuration("keepalive", keepalive, absl::ZeroDuration(), day, true),
      CheckDuration("handshake_timeout", handshake_timeout, absl::ZeroDuration(), day, true),
      CheckDuration("peer_timeout", peer_timeout, absl::ZeroDuration(), day, true),
      CheckDuration("reassembly_timeout", reassembly_timeout, absl::ZeroDuration(), day, true),
      CheckSigned("max_probes", max_probes, 1, 100),
      CheckDuration("max_ack_delay", max_ack_delay, absl::ZeroDuration(), absl::Seconds(1),
                    false),
      CheckDuration("initial_rtt", initial_rtt, absl::Milliseconds(1), absl::Seconds(60), false),
  };
  for (const absl::Status& s : checks) {
    if (!s.ok()) return s;
  }
  if (server_pin.has_value()) {
    absl::StatusOr<std::string> pin = ParseServerFingerprint(*server_pin);
    if (!pin.ok() || *pin != *server_pin) {
      return absl::InvalidArgumentError(absl::StrCat(
          "HostOptions.server_pin is not a canonical fingerprint (use ParseServerFingerprint): ",
          pin.ok() ? "upper case" : pin.status().message()));
    }
  }
  switch (congestion_control) {
    case CongestionControl::kNewReno:
    case CongestionControl::kBbr:
      return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("HostOptions.congestion_control ", static_cast<int>(congestion_control),
                   " is not a controller (valid: newreno, bbr)"));
}

}  // namespace udpmsg
