// udpmsg impair --listen P --to HOST:PORT [--loss R ...]: a UDP proxy that
// impairs the traffic passing through it, for testing any UDP program; with
// --nfqueue N (root) it impairs whatever netfilter queues to N instead.
//
// The engines are impairment::ImpairProxy (impairment/proxy.h) and
// impairment::NfqueueImpairer (impairment/nfqueue.h). This file parses the
// flags, turns SIGINT/SIGTERM into a clean stop, and prints what the engine
// says: its description, then at exit the per-direction counters
//   up:   received=.. delivered=.. dropped_loss=.. ... bytes_out=.. sent=..
//         overflow=.. send_failed=.. pending=.. unreachable=..
// where delivered (the model's copies) = sent + overflow + send_failed
// (socket errors, mapping gone) + pending (still scheduled at exit), and
// unreachable counts the ICMP errors the target sent back (each also logged
// as "impair: 127.0.0.1:9: Connection refused (nothing listens there)", at
// most once a second).
#include <signal.h>
#include <sys/signalfd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/flags.h"
#include "cli/impair_flags.h"
#include "impairment/model.h"
#include "impairment/nfqueue.h"
#include "impairment/proxy.h"
#include "udpmsg/udpmsg.h"

namespace udpmsg::cli {
namespace {

constexpr absl::string_view kCommand = "impair";

// What the flags ask for.
struct ImpairSettings {
  int nfqueue = -1;          // --nfqueue N, or -1 for the UDP proxy
  uint16_t listen_port = 0;  // proxy: --listen
  std::string to;            // proxy: --to HOST:PORT
  impairment::ImpairmentConfig config;
  absl::Duration duration;  // zero: until SIGINT/SIGTERM
  absl::Duration rebind_every;  // proxy: zero, never
};

// The flags as settings; InvalidArgument with the message for the user.
absl::StatusOr<ImpairSettings> ParseFlags(const Args& args) {
  if (!args.empty()) return absl::InvalidArgumentError("takes no positional arguments");
  ImpairSettings s;
  s.nfqueue = absl::GetFlag(FLAGS_nfqueue);
  if (s.nfqueue == -1) {
    if (absl::GetFlag(FLAGS_listen).empty()) {
      return absl::InvalidArgumentError("--listen PORT is required");
    }
    absl::StatusOr<uint16_t> port = BindPortFlag("listen", absl::GetFlag(FLAGS_listen));
    if (!port.ok()) return port.status();
    s.listen_port = *port;
    s.to = absl::GetFlag(FLAGS_to);
    if (s.to.empty()) return absl::InvalidArgumentError("--to HOST:PORT is required");
    // The syntax and port now, a usage error; the name is resolved later.
    if (absl::StatusOr<HostPort> to = ParseHostPort(s.to); !to.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--to: ", to.status().message()));
    }
  }
  absl::StatusOr<impairment::ImpairmentConfig> config = ImpairmentFromFlags();
  if (!config.ok()) return absl::InvalidArgumentError(config.status().message());
  s.config = *std::move(config);
  absl::StatusOr<absl::Duration> duration =
      impairment::ParseDuration(absl::GetFlag(FLAGS_duration));
  if (!duration.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--duration: ", duration.status().message()));
  }
  s.duration = *duration;
  absl::StatusOr<absl::Duration> rebind =
      impairment::ParseDuration(absl::GetFlag(FLAGS_rebind_every));
  if (!rebind.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--rebind_every: ", rebind.status().message()));
  }
  s.rebind_every = *rebind;
  if (s.rebind_every != absl::ZeroDuration() && s.rebind_every < absl::Milliseconds(1)) {
    return absl::InvalidArgumentError("--rebind_every must be 0 (never) or at least 1ms");
  }
  if (s.nfqueue != -1) {
    if (s.rebind_every != absl::ZeroDuration()) {
      return absl::InvalidArgumentError("--rebind_every needs the proxy (--listen/--to)");
    }
    if (s.nfqueue < 0 || s.nfqueue > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("--nfqueue ", s.nfqueue, " is out of range (0 to 65535)"));
    }
    if (!absl::GetFlag(FLAGS_listen).empty() || !absl::GetFlag(FLAGS_to).empty()) {
      return absl::InvalidArgumentError("--nfqueue cannot be combined with --listen/--to");
    }
  }
  return s;
}

// Blocks SIGINT/SIGTERM and returns a signalfd that becomes readable when one
// arrives: the engines' stop descriptor.
absl::StatusOr<int> StopSignals() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  if (::sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) {
    return ErrnoStatus(errno, "sigprocmask");
  }
  const int fd = ::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "signalfd");
  return fd;
}

void PrintLine(const std::string& line) {
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

// udpmsg impair --nfqueue N: verdicts on the packets netfilter queues to N.
int RunNfqueue(const ImpairSettings& s) {
  absl::StatusOr<int> signals = StopSignals();
  if (!signals.ok()) return Fail(signals.status());
  impairment::NfqueueImpairer::Options options;
  options.queue = static_cast<uint16_t>(s.nfqueue);
  options.config = s.config;
  options.stop_fd = *signals;
  options.on_no_traffic = [](const absl::Status& warning) {
    PrintLine(absl::StrCat("udpmsg: ", warning.message()));
  };
  absl::StatusOr<std::unique_ptr<impairment::NfqueueImpairer>> impairer =
      impairment::NfqueueImpairer::Create(options);
  if (!impairer.ok()) {
    if (absl::IsInvalidArgument(impairer.status())) {
      return UsageError(kCommand, impairer.status().message());
    }
    PrintLine(absl::StrCat("udpmsg: ", impairer.status().message()));
    return kExitFailure;
  }
  PrintLine(impairment::DescribeNfqueue(options.queue, s.config));
  const absl::Status status = (*impairer)->Run(s.duration);
  PrintLine((*impairer)->CountersLine());
  if (!status.ok()) return Fail(status);
  return kExitOk;
}

// udpmsg impair --listen P --to HOST:PORT: the UDP proxy.
int RunProxy(const ImpairSettings& s) {
  const AddressFamily family = FamilyFromFlags();
  absl::StatusOr<std::vector<SocketAddress>> targets =
      ResolveDestination(s.to, SocketType::kDatagram);
  if (!targets.ok()) return AddressError(kCommand, targets.status());
  const SocketAddress target = targets->front();

  // The listen address: --bind, else the dual-stack wildcard (or the
  // wildcard of the family --ipv4/--ipv6 asks for).
  std::vector<SocketAddress> locals;
  const std::string bind = absl::GetFlag(FLAGS_bind);
  if (bind.empty() && family != AddressFamily::kUnspecified) {
    locals.push_back(SocketAddress::Any(family, s.listen_port));
  } else {
    absl::StatusOr<std::vector<SocketAddress>> resolved =
        BindAddresses(bind, s.listen_port, SocketType::kDatagram);
    if (!resolved.ok()) return Fail(resolved.status());
    locals = *std::move(resolved);
  }
  absl::StatusOr<int> signals = StopSignals();
  if (!signals.ok()) return Fail(signals.status());

  impairment::ImpairProxy::Options options;
  options.listen = locals.front();
  options.v6_only = family == AddressFamily::kIpv6;
  options.target = target;
  options.config = s.config;
  options.stop_fd = *signals;
  options.rebind_every = s.rebind_every;
  options.on_mapping_error = [](const absl::Status& error) {
    PrintLine(absl::StrCat("udpmsg: ", error.message()));
  };
  // The target refusing (nothing listens there) or unreachable: the clients
  // only see silence, so say it here; at most once a second.
  options.on_target_error = [](const absl::Status& error) {
    PrintLine(absl::StrCat("impair: ", Displayable(error.message())));
  };
  absl::StatusOr<std::unique_ptr<impairment::ImpairProxy>> proxy =
      impairment::ImpairProxy::Create(options);
  if (!proxy.ok()) {
    return absl::IsInvalidArgument(proxy.status()) ? UsageError(kCommand, proxy.status().message())
                                                   : Fail(proxy.status());
  }
  PrintListening((*proxy)->local_address());
  PrintLine(impairment::DescribeImpairment(s.config, target));
  const absl::Status status = (*proxy)->Run(s.duration);
  const impairment::ProxyStats stats = (*proxy)->stats();
  PrintLine(impairment::FormatProxyStats(stats));
  if (s.rebind_every != absl::ZeroDuration()) {
    PrintLine(absl::StrCat("rebinding: ", stats.rebinds, " mappings moved to a new port",
                           stats.rebind_failures > 0
                               ? absl::StrCat(", ", stats.rebind_failures, " failed")
                               : std::string()));
  }
  if (!status.ok()) return Fail(status);
  return kExitOk;
}

}  // namespace

int RunImpair(const Args& args) {
  absl::StatusOr<ImpairSettings> settings = ParseFlags(args);
  if (!settings.ok()) return UsageError(kCommand, settings.status().message());
  return settings->nfqueue != -1 ? RunNfqueue(*settings) : RunProxy(*settings);
}

}  // namespace udpmsg::cli
