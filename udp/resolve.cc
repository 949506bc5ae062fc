#include "udp/resolve.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <unistd.h>

#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"
#include "udp/errno_status.h"

namespace udpmsg::udp {
namespace {

// Why `host` has no address of `family` (kIpv4 or kIpv6) when it does
// resolve with another family: "127.0.0.1 is an IPv4 address, not IPv6", or
// "localhost has no IPv6 address (it has IPv4: 127.0.0.1)". Empty when the
// name does not resolve at all (the caller's resolver error stands).
std::string OtherFamilyNote(absl::string_view host, AddressFamily family, SocketType type) {
  if (absl::StatusOr<SocketAddress> literal = SocketAddress::FromIp(host, 0); literal.ok()) {
    return absl::StrCat(host, " is an ", FamilyName(literal->family()), " address, not ",
                        FamilyName(family));
  }
  absl::StatusOr<std::vector<SocketAddress>> any =
      Resolve(host, "", AddressFamily::kUnspecified, type);
  if (!any.ok()) return "";
  std::string others;
  AddressFamily other = AddressFamily::kUnspecified;
  for (const SocketAddress& a : *any) {
    if (a.family() == family) return "";  // a race with the resolver; keep its error
    other = a.family();
    absl::StrAppend(&others, others.empty() ? "" : ", ", a.IpString());
  }
  return absl::StrCat(host, " has no ", FamilyName(family), " address (it has ", FamilyName(other),
                      ": ", others, ")");
}

}  // namespace

absl::StatusOr<std::vector<SocketAddress>> Resolve(absl::string_view host,
                                                   absl::string_view service,
                                                   AddressFamily family, SocketType type) {
  addrinfo hints{};
  hints.ai_family = ToNative(family);
  hints.ai_socktype = type == SocketType::kDatagram ? SOCK_DGRAM : SOCK_STREAM;
  // No AI_ADDRCONFIG: it hides ::1 on hosts whose only IPv6 address is
  // loopback, and callers try every address in order anyway.
  hints.ai_flags = host.empty() ? AI_PASSIVE : 0;
  const std::string host_text(host);
  const std::string service_text = service.empty() ? std::string("0") : std::string(service);
  const std::string what = absl::StrCat("resolve \"", host, "\"",
                                        service.empty() ? "" : absl::StrCat(" port ", service));

  addrinfo* list = nullptr;
  int rc = ::getaddrinfo(host.empty() ? nullptr : host_text.c_str(), service_text.c_str(), &hints,
                         &list);
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> owner(list, &::freeaddrinfo);
  switch (rc) {
    case 0:
      break;
    case EAI_SYSTEM:
      return ErrnoStatus(errno, what);
    case EAI_NONAME:
    case EAI_NODATA:
    case EAI_ADDRFAMILY:
      // "Name or service not known" for a name that resolves, only not to
      // `family`, sends users hunting for a typo: say what it has instead.
      if (family != AddressFamily::kUnspecified && !host.empty()) {
        std::string note = OtherFamilyNote(host, family, type);
        if (!note.empty()) return absl::NotFoundError(note);
      }
      return absl::NotFoundError(absl::StrCat(what, ": ", ::gai_strerror(rc)));
    case EAI_AGAIN:
    case EAI_FAIL:
      return absl::NotFoundError(absl::StrCat(what, ": ", ::gai_strerror(rc)));
    case EAI_SERVICE:
    case EAI_FAMILY:
    case EAI_SOCKTYPE:
    case EAI_BADFLAGS:
      return absl::InvalidArgumentError(absl::StrCat(what, ": ", ::gai_strerror(rc)));
    default:
      return absl::UnknownError(absl::StrCat(what, ": ", ::gai_strerror(rc)));
  }

  std::vector<SocketAddress> result;
  for (const addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    absl::StatusOr<SocketAddress> address = SocketAddress::FromSockaddr(ai->ai_addr, ai->ai_addrlen);
    if (!address.ok()) continue;  // Not IPv4/IPv6; nothing we can use.
    if (std::find(result.begin(), result.end(), *address) == result.end()) {
      result.push_back(*std::move(address));
    }
  }
  if (result.empty()) {
    return absl::NotFoundError(absl::StrCat(what, ": no ", FamilyName(family), " address"));
  }
  return result;
}

absl::StatusOr<std::vector<SocketAddress>> ResolveHostPort(absl::string_view host_port,
                                                           AddressFamily family, SocketType type) {
  absl::StatusOr<HostPort> parts = ParseHostPort(host_port, PortRange::kDestination);
  if (!parts.ok()) return parts.status();
  return Resolve(parts->host, absl::StrCat(parts->port), family, type);
}

absl::StatusOr<std::string> HostName() {
  char buffer[HOST_NAME_MAX + 1] = {};
  if (::gethostname(buffer, sizeof(buffer) - 1) != 0) {
    return ErrnoStatus(errno, "gethostname");
  }
  return std::string(buffer);
}

}  // namespace udpmsg::udp
