#include "udp/socket_address.h"

#include <arpa/inet.h>
#include <net/if.h>

#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace udpmsg::udp {
namespace {

sockaddr_in& AsV4(sockaddr_storage& s) { return reinterpret_cast<sockaddr_in&>(s); }
const sockaddr_in& AsV4(const sockaddr_storage& s) {
  return reinterpret_cast<const sockaddr_in&>(s);
}
sockaddr_in6& AsV6(sockaddr_storage& s) { return reinterpret_cast<sockaddr_in6&>(s); }
const sockaddr_in6& AsV6(const sockaddr_storage& s) {
  return reinterpret_cast<const sockaddr_in6&>(s);
}

}  // namespace

int ToNative(AddressFamily family) {
  switch (family) {
    case AddressFamily::kIpv4:
      return AF_INET;
    case AddressFamily::kIpv6:
      return AF_INET6;
    case AddressFamily::kUnspecified:
      break;
  }
  return AF_UNSPEC;
}

absl::string_view FamilyName(AddressFamily family) {
  switch (family) {
    case AddressFamily::kIpv4:
      return "IPv4";
    case AddressFamily::kIpv6:
      return "IPv6";
    case AddressFamily::kUnspecified:
      break;
  }
  return "any";
}

absl::StatusOr<std::pair<std::string, std::string>> SplitHostPort(absl::string_view text) {
  std::string host;
  std::string port;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("missing ']' in address \"", text, "\""));
    }
    host = std::string(text.substr(1, close - 1));
    absl::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        return absl::InvalidArgumentError(
            absl::StrCat("expected ':' after ']' in address \"", text, "\""));
      }
      port = std::string(rest.substr(1));
      if (port.empty()) {
        return absl::InvalidArgumentError(absl::StrCat("empty port in address \"", text, "\""));
      }
    }
  } else {
    size_t colon = text.rfind(':');
    if (colon == absl::string_view::npos) {
      host = std::string(text);
    } else if (text.find(':') != colon) {
      return absl::InvalidArgumentError(absl::StrCat(
          "IPv6 address needs brackets when a port follows: \"[", text.substr(0, colon), "]:",
          text.substr(colon + 1), "\" (got \"", text, "\")"));
    } else {
      host = std::string(text.substr(0, colon));
      port = std::string(text.substr(colon + 1));
      if (port.empty()) {
        return absl::InvalidArgumentError(absl::StrCat("empty port in address \"", text, "\""));
      }
    }
  }
  if (host.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("empty host in address \"", text, "\""));
  }
  return std::make_pair(std::move(host), std::move(port));
}

namespace {

// The reason a port text is refused: "is not a number from 1 to 65535".
std::string PortRangeText(PortRange range) {
  return absl::StrCat("is not a number from ", range == PortRange::kDestination ? 1 : 0,
                      " to 65535");
}

// The port of `text` in `range`; nullopt when it is not one.
std::optional<uint16_t> PortValue(absl::string_view text, PortRange range) {
  uint32_t value = 0;
  bool digits = !text.empty() && text.size() <= 5;
  for (char c : text) digits = digits && absl::ascii_isdigit(static_cast<unsigned char>(c));
  if (!digits || !absl::SimpleAtoi(text, &value) || value > 65535) return std::nullopt;
  if (value == 0 && range == PortRange::kDestination) return std::nullopt;
  return static_cast<uint16_t>(value);
}

}  // namespace

absl::StatusOr<uint16_t> ParsePort(absl::string_view text, PortRange range) {
  std::optional<uint16_t> port = PortValue(text, range);
  if (!port) {
    return absl::InvalidArgumentError(absl::StrCat("port \"", text, "\" ", PortRangeText(range)));
  }
  return *port;
}

absl::StatusOr<HostPort> ParseHostPort(absl::string_view text, PortRange range) {
  absl::StatusOr<std::pair<std::string, std::string>> parts = SplitHostPort(text);
  if (!parts.ok()) return parts.status();
  if (parts->second.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("missing port in \"", text, "\" (expected HOST:PORT or [IPv6]:PORT)"));
  }
  std::optional<uint16_t> port = PortValue(parts->second, range);
  if (!port) {
    return absl::InvalidArgumentError(
        absl::StrCat("port \"", parts->second, "\" in \"", text, "\" ", PortRangeText(range)));
  }
  return HostPort{std::move(parts->first), *port};
}

SocketAddress::SocketAddress() : length_(0) {
  std::memset(&storage_, 0, sizeof(storage_));
  storage_.ss_family = AF_UNSPEC;
}

absl::StatusOr<SocketAddress> SocketAddress::FromSockaddr(const sockaddr* address,
                                                          socklen_t length) {
  if (address == nullptr) return absl::InvalidArgumentError("null socket address");
  SocketAddress result;
  if (address->sa_family == AF_INET && length >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    std::memcpy(&result.storage_, address, sizeof(sockaddr_in));
    result.length_ = sizeof(sockaddr_in);
    return result;
  }
  if (address->sa_family == AF_INET6 && length >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    std::memcpy(&result.storage_, address, sizeof(sockaddr_in6));
    result.length_ = sizeof(sockaddr_in6);
    return result;
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported socket address family ",
                                                 address->sa_family, " (length ", length, ")"));
}

absl::StatusOr<SocketAddress> SocketAddress::FromIp(absl::string_view ip, uint16_t port) {
  std::string text(ip);
  SocketAddress result;
  sockaddr_in& v4 = AsV4(result.storage_);
  if (::inet_pton(AF_INET, text.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    v4.sin_port = htons(port);
    result.length_ = sizeof(sockaddr_in);
    return result;
  }
  std::memset(&result.storage_, 0, sizeof(result.storage_));
  sockaddr_in6& v6 = AsV6(result.storage_);
  std::string scope;
  size_t percent = text.find('%');
  if (percent != std::string::npos) {
    scope = text.substr(percent + 1);
    text.resize(percent);
  }
  if (::inet_pton(AF_INET6, text.c_str(), &v6.sin6_addr) == 1) {
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(port);
    if (!scope.empty()) {
      uint32_t index = 0;
      if (!absl::SimpleAtoi(scope, &index)) index = ::if_nametoindex(scope.c_str());
      if (index == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown IPv6 scope \"", scope, "\" in \"", ip, "\""));
      }
      v6.sin6_scope_id = index;
    }
    result.length_ = sizeof(sockaddr_in6);
    return result;
  }
  return absl::InvalidArgumentError(absl::StrCat("not a numeric IP address: \"", ip, "\""));
}

absl::StatusOr<SocketAddress> SocketAddress::Parse(absl::string_view text) {
  absl::StatusOr<HostPort> parts = ParseHostPort(text, PortRange::kBind);
  if (!parts.ok()) return parts.status();
  return FromIp(parts->host, parts->port);
}

SocketAddress SocketAddress::Any(AddressFamily family, uint16_t port) {
  SocketAddress result;
  if (family == AddressFamily::kIpv4) {
    sockaddr_in& v4 = AsV4(result.storage_);
    v4.sin_family = AF_INET;
    v4.sin_addr.s_addr = htonl(INADDR_ANY);
    v4.sin_port = htons(port);
    result.length_ = sizeof(sockaddr_in);
  } else {
    sockaddr_in6& v6 = AsV6(result.storage_);
    v6.sin6_family = AF_INET6;
    v6.sin6_addr = in6addr_any;
    v6.sin6_port = htons(port);
    result.length_ = sizeof(sockaddr_in6);
  }
  return result;
}

SocketAddress SocketAddress::Loopback(AddressFamily family, uint16_t port) {
  if (family == AddressFamily::kIpv4) return Ipv4(INADDR_LOOPBACK, port);
  SocketAddress result;
  sockaddr_in6& v6 = AsV6(result.storage_);
  v6.sin6_family = AF_INET6;
  v6.sin6_addr = in6addr_loopback;
  v6.sin6_port = htons(port);
  result.length_ = sizeof(sockaddr_in6);
  return result;
}

SocketAddress SocketAddress::Ipv4(uint32_t host_order_ip, uint16_t port) {
  SocketAddress result;
  sockaddr_in& v4 = AsV4(result.storage_);
  v4.sin_family = AF_INET;
  v4.sin_addr.s_addr = htonl(host_order_ip);
  v4.sin_port = htons(port);
  result.length_ = sizeof(sockaddr_in);
  return result;
}

AddressFamily SocketAddress::family() const {
  switch (storage_.ss_family) {
    case AF_INET:
      return AddressFamily::kIpv4;
    case AF_INET6:
      return AddressFamily::kIpv6;
    default:
      return AddressFamily::kUnspecified;
  }
}

uint16_t SocketAddress::port() const {
  switch (storage_.ss_family) {
    case AF_INET:
      return ntohs(AsV4(storage_).sin_port);
    case AF_INET6:
      return ntohs(AsV6(storage_).sin6_port);
    default:
      return 0;
  }
}

void SocketAddress::set_port(uint16_t port) {
  if (storage_.ss_family == AF_INET) AsV4(storage_).sin_port = htons(port);
  if (storage_.ss_family == AF_INET6) AsV6(storage_).sin6_port = htons(port);
}

bool SocketAddress::IsV4Mapped() const {
  return storage_.ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&AsV6(storage_).sin6_addr);
}

SocketAddress SocketAddress::Unmapped() const {
  if (!IsV4Mapped()) return *this;
  uint32_t network_order;
  std::memcpy(&network_order, &AsV6(storage_).sin6_addr.s6_addr[12], 4);
  return Ipv4(ntohl(network_order), port());
}

SocketAddress SocketAddress::V4Mapped() const {
  if (storage_.ss_family != AF_INET) return *this;
  SocketAddress result;
  sockaddr_in6& v6 = AsV6(result.storage_);
  v6.sin6_family = AF_INET6;
  v6.sin6_port = AsV4(storage_).sin_port;
  v6.sin6_addr.s6_addr[10] = 0xff;
  v6.sin6_addr.s6_addr[11] = 0xff;
  std::memcpy(&v6.sin6_addr.s6_addr[12], &AsV4(storage_).sin_addr.s_addr, 4);
  result.length_ = sizeof(sockaddr_in6);
  return result;
}

bool SocketAddress::IsLoopback() const {
  if (storage_.ss_family == AF_INET) {
    return (ntohl(AsV4(storage_).sin_addr.s_addr) >> 24) == 127;
  }
  if (IsV4Mapped()) return Unmapped().IsLoopback();
  return storage_.ss_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&AsV6(storage_).sin6_addr);
}

bool SocketAddress::IsAny() const {
  if (storage_.ss_family == AF_INET) return AsV4(storage_).sin_addr.s_addr == htonl(INADDR_ANY);
  return storage_.ss_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&AsV6(storage_).sin6_addr);
}

std::string SocketAddress::IpString() const {
  char buffer[INET6_ADDRSTRLEN + IF_NAMESIZE + 2] = {};
  if (storage_.ss_family == AF_INET) {
    ::inet_ntop(AF_INET, &AsV4(storage_).sin_addr, buffer, sizeof(buffer));
    return buffer;
  }
  if (storage_.ss_family == AF_INET6) {
    ::inet_ntop(AF_INET6, &AsV6(storage_).sin6_addr, buffer, sizeof(buffer));
    std::string text = buffer;
    if (uint32_t scope = AsV6(storage_).sin6_scope_id; scope != 0) {
      char name[IF_NAMESIZE] = {};
      if (::if_indextoname(scope, name) != nullptr) {
        absl::StrAppend(&text, "%", name);
      } else {
        absl::StrAppend(&text, "%", scope);
      }
    }
    return text;
  }
  return "(none)";
}

std::string SocketAddress::ToString() const {
  if (storage_.ss_family == AF_INET) return absl::StrCat(IpString(), ":", port());
  if (storage_.ss_family == AF_INET6) return absl::StrCat("[", IpString(), "]:", port());
  return "(none)";
}

bool operator==(const SocketAddress& a, const SocketAddress& b) {
  if (a.storage_.ss_family != b.storage_.ss_family) return false;
  if (a.storage_.ss_family == AF_INET) {
    return AsV4(a.storage_).sin_addr.s_addr == AsV4(b.storage_).sin_addr.s_addr &&
           AsV4(a.storage_).sin_port == AsV4(b.storage_).sin_port;
  }
  if (a.storage_.ss_family == AF_INET6) {
    return std::memcmp(&AsV6(a.storage_).sin6_addr, &AsV6(b.storage_).sin6_addr, 16) == 0 &&
           AsV6(a.storage_).sin6_port == AsV6(b.storage_).sin6_port &&
           AsV6(a.storage_).sin6_scope_id == AsV6(b.storage_).sin6_scope_id;
  }
  return true;
}

}  // namespace udpmsg::udp
