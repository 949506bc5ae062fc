// udpmsg addresses: the socket address value type and name resolution,
// re-exported so that an application needs only //udpmsg.
//
// Usage:
//   absl::StatusOr<std::vector<udpmsg::SocketAddress>> peers =
//       udpmsg::ResolveHostPort("localhost:9000");   // for UDP; TCP names a SocketType
//   if (!peers.ok()) return peers.status();   // NOT_FOUND, INVALID_ARGUMENT
//   host.Connect(peers->front());
//   udpmsg::SocketAddress any = udpmsg::SocketAddress::Any(udpmsg::AddressFamily::kIpv6, 9000);
//
// SocketAddress is a value (copyable, comparable, printable with ToString(),
// e.g. "127.0.0.1:9000" or "[::1]:9000"). Parse() takes numeric text only;
// the Resolve functions use the system resolver (getaddrinfo) and block.
//
// Threading: SocketAddress is a value; the functions are thread-safe.
#ifndef UDPMSG_UDPMSG_ADDRESS_H_
#define UDPMSG_UDPMSG_ADDRESS_H_

#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "udp/resolve.h"
#include "udp/socket_address.h"

namespace udpmsg {

using udp::AddressFamily;
using udp::FamilyName;  // "IPv4", "IPv6", "any"
// Ports: ParsePort("9000") -> 9000, INVALID_ARGUMENT outside 0..65535 (or
// 1..65535 with PortRange::kDestination), never wrapping modulo 65536;
// ParseHostPort("[::1]:9000") -> {"::1", 9000} without resolving, the one
// parser of HOST:PORT that ResolveHostPort uses (destinations: 1..65535).
using udp::HostPort;
using udp::ParseHostPort;
using udp::ParsePort;
using udp::PortRange;
using udp::SocketAddress;
// What an address is resolved for: kDatagram (UDP, the default below) or
// kStream (TCP, for udpmsg/stream.h).
using udp::SocketType;

// Resolves "host:port" or "[v6]:port" for UDP. The port is required, a
// number from 1 to 65535 (ParseHostPort).
// NOT_FOUND: the name does not exist (or has no address of `family`);
// INVALID_ARGUMENT: no port, or a bad port ("port \"99999\" in
// \"localhost:99999\" is not a number from 1 to 65535"). Messages name the
// input.
inline absl::StatusOr<std::vector<SocketAddress>> ResolveHostPort(
    absl::string_view host_port, AddressFamily family = AddressFamily::kUnspecified) {
  return udp::ResolveHostPort(host_port, family, udp::SocketType::kDatagram);
}

// Resolves `host` (empty: the wildcard address) and `service` (a port or
// service name; empty: 0) for UDP. Errors as ResolveHostPort.
inline absl::StatusOr<std::vector<SocketAddress>> Resolve(
    absl::string_view host, absl::string_view service,
    AddressFamily family = AddressFamily::kUnspecified) {
  return udp::Resolve(host, service, family, udp::SocketType::kDatagram);
}

// The same two for an explicit SocketType (kStream for TCP); same errors.
using udp::Resolve;
using udp::ResolveHostPort;

}  // namespace udpmsg

#endif  // UDPMSG_UDPMSG_ADDRESS_H_
