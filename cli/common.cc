#include "cli/common.h"

#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/flags.h"
#include "udpmsg/text.h"

namespace udpmsg::cli {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "udpmsg: %s\n", Displayable(status.message()).c_str());
  std::fflush(stderr);
  return absl::IsInvalidArgument(status) || absl::IsNotFound(status) ? kExitUsage : kExitFailure;
}

int UsageError(absl::string_view command, absl::string_view message) {
  std::fprintf(stderr, "udpmsg %s: %s (see udpmsg --help)\n", Displayable(command).c_str(),
               Displayable(message).c_str());
  std::fflush(stderr);
  return kExitUsage;
}

AddressFamily FamilyFromFlags() {
  if (absl::GetFlag(FLAGS_ipv4)) return AddressFamily::kIpv4;
  if (absl::GetFlag(FLAGS_ipv6)) return AddressFamily::kIpv6;
  return AddressFamily::kUnspecified;
}

void PrintListening(const SocketAddress& address) {
  std::fprintf(stderr, "listening on %s\n", address.ToString().c_str());
  std::fflush(stderr);
}

absl::StatusOr<absl::Duration> TimeoutFromFlag() {
  absl::Duration d;
  if (!absl::ParseDuration(absl::GetFlag(FLAGS_timeout), &d) || d <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--timeout \"", absl::GetFlag(FLAGS_timeout),
                     "\" is not a positive duration (e.g. 10s, 500ms)"));
  }
  // The longest idle and handshake timeout HostOptions::Validate accepts.
  if (d > absl::Hours(24)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--timeout \"", absl::GetFlag(FLAGS_timeout), "\" is longer than 24h"));
  }
  return d;
}

std::string Printable(absl::string_view payload) {
  // The reversible spellings first (all printable ASCII, and ASCII bytes are
  // never part of a multi-byte UTF-8 character); Displayable does the rest.
  std::string spelled;
  spelled.reserve(payload.size());
  for (const char c : payload) {
    switch (c) {
      case '\\':
        spelled += "\\\\";
        break;
      case '\n':
        spelled += "\\n";
        break;
      case '\r':
        spelled += "\\r";
        break;
      case '\t':
        spelled += "\\t";
        break;
      default:
        spelled.push_back(c);
    }
  }
  return Displayable(spelled);
}

absl::StatusOr<OwnedFd> SignalFd(std::initializer_list<int> signals) {
  sigset_t mask;
  sigemptyset(&mask);
  for (int s : signals) sigaddset(&mask, s);
  if (::sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) return ErrnoStatus(errno, "sigprocmask");
  OwnedFd fd(::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!fd) return ErrnoStatus(errno, "signalfd");
  return fd;
}

int DrainSignals(int fd) {
  int first = 0;
  signalfd_siginfo info;
  while (::read(fd, &info, sizeof(info)) == static_cast<ssize_t>(sizeof(info))) {
    if (first == 0) first = static_cast<int>(info.ssi_signo);
  }
  return first;
}

std::string SignalName(int signal) {
  switch (signal) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    case SIGHUP:
      return "SIGHUP";
    default:
      return absl::StrCat("signal ", signal);
  }
}

absl::StatusOr<uint16_t> BindPortFlag(absl::string_view name, absl::string_view value) {
  if (value.empty()) return absl::InvalidArgumentError(absl::StrCat("--", name, " is required"));
  absl::StatusOr<uint16_t> port = ParsePort(value, PortRange::kBind);
  if (!port.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, " \"", value, "\" is not a number from 0 to 65535"));
  }
  return *port;
}

absl::StatusOr<uint16_t> PortFromFlag() { return BindPortFlag("port", absl::GetFlag(FLAGS_port)); }

absl::StatusOr<std::vector<SocketAddress>> ResolveDestination(absl::string_view host_port,
                                                              SocketType type) {
  return ResolveHostPort(host_port, FamilyFromFlags(), type);
}

int AddressError(absl::string_view command, const absl::Status& status) {
  if (absl::IsInvalidArgument(status)) return UsageError(command, status.message());
  return Fail(status);
}

absl::StatusOr<std::vector<SocketAddress>> BindAddresses(absl::string_view bind, uint16_t port,
                                                         SocketType type) {
  if (!bind.empty()) {
    return Resolve(bind, absl::StrCat(port), AddressFamily::kUnspecified, type);
  }
  // Dual-stack "::" when this host can make IPv6 sockets, else 0.0.0.0.
  int probe = ::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (probe >= 0) {
    ::close(probe);
    return std::vector<SocketAddress>{SocketAddress::Any(AddressFamily::kIpv6, port)};
  }
  return std::vector<SocketAddress>{SocketAddress::Any(AddressFamily::kIpv4, port)};
}

}  // namespace udpmsg::cli
