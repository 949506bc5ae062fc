// Name resolution over getaddrinfo(3), IPv4 and IPv6.
//
// Usage:
//   absl::StatusOr<std::vector<SocketAddress>> addrs =
//       Resolve("localhost", "9000", AddressFamily::kUnspecified, SocketType::kDatagram);
//   // [::1]:9000, 127.0.0.1:9000 (in the resolver's preference order)
//
// Thread-safe (getaddrinfo is).
#ifndef UDPMSG_UDP_RESOLVE_H_
#define UDPMSG_UDP_RESOLVE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "udp/socket_address.h"

namespace udpmsg::udp {

enum class SocketType { kDatagram, kStream };

// Resolves `host` (a name or numeric address; empty means the wildcard
// address for binding) and `service` (a port number or service name; empty
// means port 0). The result keeps getaddrinfo's order, which follows RFC 6724
// preferences, without duplicates.
//
// Errors carry the resolver's own message (gai_strerror) and the name:
//   NOT_FOUND: resolve "nosuch.invalid": Name or service not known
//   NotFound         the name does not exist, has no address of `family`,
//                    or the resolver failed temporarily (EAI_AGAIN). A name
//                    or literal that has addresses of the other family says
//                    so instead of the resolver's text: "localhost has no
//                    IPv6 address (it has IPv4: 127.0.0.1)", "127.0.0.1 is
//                    an IPv4 address, not IPv6".
//   InvalidArgument  the service or family is not valid
//   other            EAI_SYSTEM with errno text, or an unexpected resolver error
absl::StatusOr<std::vector<SocketAddress>> Resolve(absl::string_view host,
                                                   absl::string_view service,
                                                   AddressFamily family, SocketType type);

// Resolves a destination, "host:port" or "[v6]:port" (ParseHostPort with
// PortRange::kDestination: the port is required, a number from 1 to 65535;
// no service names). INVALID_ARGUMENT from ParseHostPort for malformed text
// or a bad port (`port "99999" in "localhost:99999" is not a number from 1
// to 65535`); otherwise the errors of Resolve.
absl::StatusOr<std::vector<SocketAddress>> ResolveHostPort(absl::string_view host_port,
                                                           AddressFamily family, SocketType type);

// This machine's host name (gethostname); the errno status on failure.
absl::StatusOr<std::string> HostName();

}  // namespace udpmsg::udp

#endif  // UDPMSG_UDP_RESOLVE_H_
