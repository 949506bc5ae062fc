#include "cli/common.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/flags.h"
#include "udpmsg/text.h"

namespace udpmsg::cli {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "udpmsg: %s\n", std::string(status.message()).c_str());
  std::fflush(stderr);
  return absl::IsInvalidArgument(status) || absl::IsNotFound(status) ? kExitUsage : kExitFailure;
}

int UsageError(absl::string_view command, absl::string_view message) {
  std::fprintf(stderr, "udpmsg %s: %s (see udpmsg --help)\n", std::string(command).c_str(),
               std::string(message).c_str());
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
  std::string out;
  out.reserve(payload.size());
  for (size_t i = 0; i < payload.size();) {
    const unsigned char c = static_cast<unsigned char>(payload[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    if (c >= 0x80) {
      if (size_t n = udpmsg::Utf8Length(payload, i); n > 0) {
        out.append(payload.data() + i, n);
        i += n;
        continue;
      }
    }
    switch (c) {
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\\':
        out += "\\\\";
        break;
      default:
        absl::StrAppendFormat(&out, "\\x%02x", c);
    }
    ++i;
  }
  return out;
}

absl::Status CheckPort(int port) {
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--port ", port, " is out of range (0 to 65535)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SocketAddress>> BindAddresses(absl::string_view bind, int port,
                                                              SocketType type) {
  if (absl::Status s = CheckPort(port); !s.ok()) return s;
  if (!bind.empty()) {
    return Resolve(bind, absl::StrCat(port), AddressFamily::kUnspecified, type);
  }
  // Dual-stack "::" when this host can make IPv6 sockets, else 0.0.0.0.
  int probe = ::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (probe >= 0) {
    ::close(probe);
    return std::vector<SocketAddress>{
        SocketAddress::Any(AddressFamily::kIpv6, static_cast<uint16_t>(port))};
  }
  return std::vector<SocketAddress>{
      SocketAddress::Any(AddressFamily::kIpv4, static_cast<uint16_t>(port))};
}

}  // namespace udpmsg::cli
