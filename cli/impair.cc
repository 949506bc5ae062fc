// udpmsg impair --listen P --to HOST:PORT [--loss R ...]: a UDP proxy that
// impairs the traffic passing through it, for testing any UDP program. The
// engine is impairment::ImpairProxy (impairment/proxy.h); this file parses flags, turns
// SIGINT/SIGTERM into a clean stop, and prints the per-direction counters:
//   up:   received=.. delivered=.. dropped_loss=.. ... bytes_out=.. sent=..
//         overflow=.. send_failed=.. pending=..
// where delivered (the model's copies) = sent + overflow + send_failed
// (socket errors, mapping gone) + pending (still scheduled at exit).
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <list>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/flags.h"
#include "cli/impair_flags.h"
#include "impairment/model.h"
#include "udp/datagram_socket.h"
#include "udp/errno_status.h"
#include "udp/owned_fd.h"
#include "udp/poller.h"
#include "udp/resolve.h"

#include "impairment/nfqueue.h"
#include "impairment/proxy.h"

namespace udpmsg::cli {
namespace {

constexpr absl::string_view kCommand = "impair";


// SIGINT/SIGTERM as a readable signalfd, or -1 (errno set).
int BlockStopSignals() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  if (::sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) return -1;
  return ::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
}

// udpmsg impair --nfqueue N: verdicts on the packets netfilter queues to N.
int RunNfqueue(int queue, const impairment::ImpairmentConfig& config, absl::Duration duration) {
  if (queue < 0 || queue > 65535) {
    return UsageError(kCommand, absl::StrCat("--nfqueue ", queue, " is out of range (0 to 65535)"));
  }
  if (absl::GetFlag(FLAGS_listen) != -1 || !absl::GetFlag(FLAGS_to).empty()) {
    return UsageError(kCommand, "--nfqueue cannot be combined with --listen/--to");
  }
  const int signals = BlockStopSignals();
  if (signals < 0) return Fail(udp::ErrnoStatus(errno, "signalfd"));
  impairment::NfqueueImpairer::Options options;
  options.queue = static_cast<uint16_t>(queue);
  options.config = config;
  options.stop_fd = signals;
  absl::StatusOr<std::unique_ptr<impairment::NfqueueImpairer>> impairer = impairment::NfqueueImpairer::Create(options);
  if (!impairer.ok()) {
    if (absl::IsInvalidArgument(impairer.status())) {
      return UsageError(kCommand, impairer.status().message());
    }
    std::fprintf(stderr, "udpmsg: %s\n", std::string(impairer.status().message()).c_str());
    return kExitFailure;
  }
  std::fprintf(stderr, "%s\n", DescribeNfqueue(options.queue, config).c_str());
  std::fflush(stderr);
  const absl::Status status = (*impairer)->Run(duration);
  std::fprintf(stderr, "%s\n", (*impairer)->CountersLine().c_str());
  if (!status.ok()) return Fail(status);
  return kExitOk;
}

}  // namespace

int RunImpair(const Args& args) {
  if (!args.empty()) return UsageError(kCommand, "takes no positional arguments");
  if (const int queue = absl::GetFlag(FLAGS_nfqueue); queue != -1) {
    absl::StatusOr<impairment::ImpairmentConfig> config = ImpairmentFromFlags();
    if (!config.ok()) return UsageError(kCommand, config.status().message());
    absl::StatusOr<absl::Duration> d = impairment::ParseDuration(absl::GetFlag(FLAGS_duration));
    if (!d.ok()) return UsageError(kCommand, absl::StrCat("--duration: ", d.status().message()));
    return RunNfqueue(queue, *config, *d);
  }
  const int listen_port = absl::GetFlag(FLAGS_listen);
  if (listen_port == -1) return UsageError(kCommand, "--listen PORT is required");
  if (listen_port < 0 || listen_port > 65535) {
    return UsageError(kCommand,
                      absl::StrCat("--listen ", listen_port, " is out of range (0 to 65535)"));
  }
  const std::string to = absl::GetFlag(FLAGS_to);
  if (to.empty()) return UsageError(kCommand, "--to HOST:PORT is required");
  absl::StatusOr<impairment::ImpairmentConfig> config = ImpairmentFromFlags();
  if (!config.ok()) return UsageError(kCommand, config.status().message());
  absl::Duration duration;
  if (absl::StatusOr<absl::Duration> d = impairment::ParseDuration(absl::GetFlag(FLAGS_duration));
      d.ok()) {
    duration = *d;
  } else {
    return UsageError(kCommand, absl::StrCat("--duration: ", d.status().message()));
  }

  const udp::AddressFamily family = FamilyFromFlags();
  absl::StatusOr<std::vector<udp::SocketAddress>> targets =
      udp::ResolveHostPort(to, family, udp::SocketType::kDatagram);
  if (!targets.ok()) return Fail(targets.status());
  const udp::SocketAddress target = targets->front();

  // The listen address: --bind, else the dual-stack wildcard (or the
  // wildcard of the family --ipv4/--ipv6 asks for).
  std::vector<udp::SocketAddress> locals;
  const std::string bind = absl::GetFlag(FLAGS_bind);
  if (bind.empty() && family != udp::AddressFamily::kUnspecified) {
    locals.push_back(udp::SocketAddress::Any(family, static_cast<uint16_t>(listen_port)));
  } else {
    absl::StatusOr<std::vector<udp::SocketAddress>> resolved =
        BindAddresses(bind, listen_port, udp::SocketType::kDatagram);
    if (!resolved.ok()) return Fail(resolved.status());
    locals = *std::move(resolved);
  }
  // SIGINT/SIGTERM become readable events on a signalfd the proxy watches.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  if (::sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) {
    return Fail(udp::ErrnoStatus(errno, "sigprocmask"));
  }
  const int signals = ::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signals < 0) return Fail(udp::ErrnoStatus(errno, "signalfd"));

  impairment::ImpairProxy::Options options;
  options.listen = locals.front();
  options.v6_only = family == udp::AddressFamily::kIpv6;
  options.target = target;
  options.config = *config;
  options.stop_fd = signals;
  absl::StatusOr<std::unique_ptr<impairment::ImpairProxy>> proxy = impairment::ImpairProxy::Create(options);
  if (!proxy.ok()) {
    return absl::IsInvalidArgument(proxy.status()) ? UsageError(kCommand, proxy.status().message())
                                                   : Fail(proxy.status());
  }
  PrintListening((*proxy)->local_address());
  std::fprintf(stderr, "%s\n", DescribeImpairment(*config, target).c_str());
  std::fflush(stderr);
  const absl::Status status = (*proxy)->Run(duration);
  (*proxy)->PrintCounters();
  if (!status.ok()) return Fail(status);
  return kExitOk;
}

}  // namespace udpmsg::cli
