// udpmsg rendezvous: a NAT-traversal rendezvous server and relay
// (apps/rendezvous/server_on_host.h; docs/nat.md). Flags, signals and the
// log around ServerOnHost: registrations and introductions over udpmsg's
// reliable transport on --port (always encrypted), the relay on
// --relay_port. Runs until SIGINT/SIGTERM/SIGHUP, then prints its counters.
#include <signal.h>
#include <sodium.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "apps/rendezvous/server_on_host.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/flags.h"
#include "udpmsg/udpmsg.h"

namespace udpmsg::cli {
namespace {

constexpr uint64_t kSignalToken = 1;

// "1GiB", "64MiB", "512KiB", "1000000" (bytes).
absl::StatusOr<uint64_t> ParseBytes(absl::string_view text) {
  uint64_t unit = 1;
  absl::string_view digits = text;
  if (absl::ConsumeSuffix(&digits, "GiB")) {
    unit = uint64_t{1} << 30;
  } else if (absl::ConsumeSuffix(&digits, "MiB")) {
    unit = uint64_t{1} << 20;
  } else if (absl::ConsumeSuffix(&digits, "KiB")) {
    unit = uint64_t{1} << 10;
  }
  uint64_t n = 0;
  if (!absl::SimpleAtoi(digits, &n) || n == 0 || n > (uint64_t{1} << 50) / unit) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", text, "\" is not a byte count in [1, 2^50] (e.g. 1GiB, 64MiB, 4096)"));
  }
  return n * unit;
}

// "100mbit", "1gbit", "500kbit", "8000000" (bits/s): bytes per second.
absl::StatusOr<uint64_t> ParseBitRate(absl::string_view text) {
  uint64_t unit = 1;
  std::string lower = absl::AsciiStrToLower(text);
  absl::string_view digits = lower;
  if (absl::ConsumeSuffix(&digits, "gbit")) {
    unit = 1'000'000'000;
  } else if (absl::ConsumeSuffix(&digits, "mbit")) {
    unit = 1'000'000;
  } else if (absl::ConsumeSuffix(&digits, "kbit")) {
    unit = 1'000;
  }
  uint64_t n = 0;
  if (!absl::SimpleAtoi(digits, &n) || n == 0 || n > (uint64_t{1} << 40) / unit) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", text, "\" is not a rate (e.g. 100mbit, 1gbit, 500kbit)"));
  }
  return std::max<uint64_t>(1, n * unit / 8);
}

}  // namespace

int RunRendezvous(const Args& args) {
  if (!args.empty()) return UsageError("rendezvous", "takes no positional arguments");
  if (absl::GetFlag(FLAGS_port).empty()) return UsageError("rendezvous", "--port P is required");
  absl::StatusOr<uint16_t> port = PortFromFlag();
  if (!port.ok()) return UsageError("rendezvous", port.status().message());
  absl::StatusOr<uint16_t> relay_port = BindPortFlag("relay_port", absl::GetFlag(FLAGS_relay_port));
  if (!relay_port.ok()) return UsageError("rendezvous", relay_port.status().message());
  rendezvous::ServerOptions server;
  rendezvous::RelayOptions relay;
  const int max_names = absl::GetFlag(FLAGS_max_names);
  const int per_address = absl::GetFlag(FLAGS_max_names_per_address);
  const int max_relays = absl::GetFlag(FLAGS_max_relays);
  if (max_names < 1 || max_names > 1'000'000) {
    return UsageError("rendezvous", "--max_names must be in [1, 1000000]");
  }
  if (per_address < 1 || per_address > max_names) {
    return UsageError("rendezvous", "--max_names_per_address must be in [1, --max_names]");
  }
  if (max_relays < 0 || max_relays > 100'000) {
    return UsageError("rendezvous", "--max_relays must be in [0, 100000] (0: no relay)");
  }
  absl::StatusOr<uint64_t> budget = ParseBytes(absl::GetFlag(FLAGS_relay_budget));
  if (!budget.ok())
    return UsageError("rendezvous", absl::StrCat("--relay_budget ", budget.status().message()));
  absl::StatusOr<uint64_t> rate = ParseBitRate(absl::GetFlag(FLAGS_relay_rate));
  if (!rate.ok())
    return UsageError("rendezvous", absl::StrCat("--relay_rate ", rate.status().message()));
  absl::Duration idle;
  if (!absl::ParseDuration(absl::GetFlag(FLAGS_relay_idle), &idle) || idle < absl::Seconds(1) ||
      idle > absl::Hours(24)) {
    return UsageError("rendezvous", "--relay_idle must be a duration in [1s, 24h]");
  }
  server.max_names = static_cast<size_t>(max_names);
  server.max_names_per_address = static_cast<size_t>(per_address);
  relay.max_relays = static_cast<size_t>(max_relays);
  relay.byte_budget = *budget;
  relay.rate_bytes_per_second = *rate;
  relay.burst_bytes = std::max<uint64_t>(64 << 10, std::min<uint64_t>(*rate / 4, 4 << 20));
  relay.idle_timeout = idle;

  if (sodium_init() < 0) return Fail(absl::InternalError("libsodium failed to initialise"));
  absl::StatusOr<OwnedFd> signals = SignalFd({SIGINT, SIGTERM, SIGHUP});
  if (!signals.ok()) return Fail(signals.status());
  absl::StatusOr<std::vector<SocketAddress>> locals =
      BindAddresses(absl::GetFlag(FLAGS_bind), *port, SocketType::kDatagram);
  if (!locals.ok()) return Fail(locals.status());
  HostOptions options;
  options.bind = locals->front();
  options.accept_incoming = true;
  options.encrypt = true;  // control connections carry relay tokens
  options.idle_timeout = absl::Seconds(60);
  options.keepalive = absl::Seconds(10);
  absl::StatusOr<Host> host = Host::Create(options);
  if (!host.ok()) return Fail(host.status());
  if (absl::Status s = host->Watch(signals->get(), kSignalToken); !s.ok()) return Fail(s);
  SocketAddress relay_bind = host->local_address();
  relay_bind.set_port(*relay_port);
  const auto log = [](const std::string& line) {
    std::fprintf(stderr, "%s\n", Displayable(line).c_str());
    std::fflush(stderr);
  };
  absl::StatusOr<std::unique_ptr<rendezvous::ServerOnHost>> rv =
      rendezvous::ServerOnHost::Create(&*host, relay_bind, server, relay, log);
  if (!rv.ok()) return Fail(rv.status());
  std::fprintf(stderr, "udpmsg rendezvous: rendezvous on %s, relay on %s\n",
               host->local_address().ToString().c_str(), (*rv)->relay_address().ToString().c_str());
  std::fflush(stderr);
  for (;;) {
    const absl::Duration wait =
        std::clamp((*rv)->NextTimeout() - absl::Now(), absl::ZeroDuration(), absl::Seconds(1));
    absl::StatusOr<Host::PollResult> r = host->Poll(wait);
    if (!r.ok()) return Fail(r.status());
    const absl::Time now = absl::Now();
    for (const Event& e : r->events) (*rv)->OnEvent(now, e);
    for (uint64_t token : r->ready) {
      if (token == rendezvous::ServerOnHost::kRelayToken) {
        if (absl::Status s = (*rv)->OnRelayReadable(now); !s.ok()) log(std::string(s.message()));
      } else if (token == kSignalToken) {
        if (const int sig = DrainSignals(signals->get()); sig != 0) {
          log(absl::StrCat("udpmsg rendezvous: stopping on ", SignalName(sig), "; ",
                           (*rv)->core().stats().ToString(), "; relay ",
                           (*rv)->relay().stats().ToString()));
          (void)host->Flush(absl::Milliseconds(200));
          return kExitOk;
        }
      }
    }
    (*rv)->OnTick(now);
  }
}

}  // namespace udpmsg::cli
