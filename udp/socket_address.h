// SocketAddress: an IPv4 or IPv6 address with a port, as a value type.
//
// Wraps sockaddr_storage so it can be handed to bind/connect/sendto directly
// (`data()`, `size()`), compared, hashed (usable as a flat_hash_map key for
// connection tables) and printed. Ports are kept in host byte order at the API
// and converted with htons/ntohs at the sockaddr boundary only.
//
// Text forms:
//   IPv4  "1.2.3.4:80"
//   IPv6  "[::1]:80", with a scope for link-local: "[fe80::1%eth0]:80"
//
// Usage:
//   absl::StatusOr<SocketAddress> addr = SocketAddress::Parse("[::1]:9000");
//   if (!addr.ok()) return addr.status();
//   ::sendto(fd, buf, len, 0, addr->data(), addr->size());
//
// Thread-compatible value type.
#ifndef UDPMSG_UDP_SOCKET_ADDRESS_H_
#define UDPMSG_UDP_SOCKET_ADDRESS_H_

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstring>
#include <ostream>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace udpmsg::udp {

enum class AddressFamily { kUnspecified, kIpv4, kIpv6 };

// AF_UNSPEC / AF_INET / AF_INET6.
int ToNative(AddressFamily family);
absl::string_view FamilyName(AddressFamily family);  // "IPv4", "IPv6", "any"

// Splits "host:port", "[v6]:port" or "[v6]" / "host" (port empty).
// Returns InvalidArgument for empty hosts, an unbracketed IPv6 literal with a
// port ("::1:80" is ambiguous), or a missing ']'.
absl::StatusOr<std::pair<std::string, std::string>> SplitHostPort(absl::string_view text);

// The ports a port text may name. A destination is 1..65535 (port 0
// addresses nothing: the kernel would send to it, and no one listens there);
// a local port to bind is 0..65535, where 0 asks the kernel for a free one.
enum class PortRange { kDestination, kBind };

// Parses a decimal port in `range`: 1 to 5 ASCII digits and nothing else (no
// sign, spaces, leading "+" or service names), so that "99999" is an error,
// never port 34463 (99999 mod 65536). INVALID_ARGUMENT otherwise, quoting
// the text: `port "99999" is not a number from 1 to 65535`.
absl::StatusOr<uint16_t> ParsePort(absl::string_view text, PortRange range = PortRange::kBind);

// A host (a name or a numeric address, IPv6 without its brackets) and a port.
struct HostPort {
  std::string host;
  uint16_t port = 0;
};

// The one parser of "HOST:PORT" and "[IPv6]:PORT" (what ResolveHostPort
// and SocketAddress::Parse accept, and every HOST:PORT of the udpmsg
// command). Splits as SplitHostPort, then requires a port in `range`
// (destinations by default: 1..65535). Does not resolve the host.
// INVALID_ARGUMENT naming the text, for a missing port ("missing port in
// \"localhost\" (expected HOST:PORT or [IPv6]:PORT)"), an empty host, a bad
// bracket, an unbracketed IPv6 literal, or a bad port:
//   port "99999" in "localhost:99999" is not a number from 1 to 65535
absl::StatusOr<HostPort> ParseHostPort(absl::string_view text,
                                       PortRange range = PortRange::kDestination);

class SocketAddress final {
 public:
  // An empty address (family AF_UNSPEC); `valid()` is false.
  SocketAddress();

  // Copies a kernel-provided address. InvalidArgument when the family is not
  // AF_INET/AF_INET6 or `length` is too short for it.
  static absl::StatusOr<SocketAddress> FromSockaddr(const sockaddr* address, socklen_t length);

  // Parses a numeric address with port: "1.2.3.4:80", "[::1]:80". No DNS.
  // InvalidArgument with the offending text otherwise.
  static absl::StatusOr<SocketAddress> Parse(absl::string_view text);

  // Parses a numeric IP (no port) with inet_pton; "::1", "10.0.0.1".
  static absl::StatusOr<SocketAddress> FromIp(absl::string_view ip, uint16_t port);

  // 0.0.0.0 / :: with `port`.
  static SocketAddress Any(AddressFamily family, uint16_t port);
  // 127.0.0.1 / ::1 with `port`.
  static SocketAddress Loopback(AddressFamily family, uint16_t port);
  // IPv4 from a host-order 32-bit value.
  static SocketAddress Ipv4(uint32_t host_order_ip, uint16_t port);

  bool valid() const { return storage_.ss_family == AF_INET || storage_.ss_family == AF_INET6; }
  AddressFamily family() const;
  int native_family() const { return storage_.ss_family; }
  uint16_t port() const;
  void set_port(uint16_t port);

  // ::ffff:a.b.c.d
  bool IsV4Mapped() const;
  // For a v4-mapped IPv6 address, the plain IPv4 address; otherwise a copy.
  SocketAddress Unmapped() const;
  // For IPv4, the v4-mapped IPv6 address (to send from a dual-stack socket).
  SocketAddress V4Mapped() const;
  bool IsLoopback() const;
  bool IsAny() const;

  // The IP alone, as inet_ntop prints it ("::1", "127.0.0.1").
  std::string IpString() const;
  // "1.2.3.4:80" or "[::1]:80"; "(none)" for an empty address.
  std::string ToString() const;

  const sockaddr* data() const { return reinterpret_cast<const sockaddr*>(&storage_); }
  sockaddr* mutable_data() { return reinterpret_cast<sockaddr*>(&storage_); }
  socklen_t size() const { return length_; }
  static constexpr socklen_t capacity() { return sizeof(sockaddr_storage); }
  // After a kernel call filled mutable_data(), records its length.
  void set_size(socklen_t length) { length_ = length; }

  friend bool operator==(const SocketAddress& a, const SocketAddress& b);
  friend bool operator!=(const SocketAddress& a, const SocketAddress& b) { return !(a == b); }

  template <typename H>
  friend H AbslHashValue(H h, const SocketAddress& a) {
    if (a.storage_.ss_family == AF_INET) {
      const auto& in = reinterpret_cast<const sockaddr_in&>(a.storage_);
      return H::combine(std::move(h), AF_INET, in.sin_addr.s_addr, in.sin_port);
    }
    if (a.storage_.ss_family == AF_INET6) {
      const auto& in6 = reinterpret_cast<const sockaddr_in6&>(a.storage_);
      return H::combine(H::combine_contiguous(std::move(h), in6.sin6_addr.s6_addr, 16), AF_INET6,
                        in6.sin6_port, in6.sin6_scope_id);
    }
    return H::combine(std::move(h), 0);
  }

  friend std::ostream& operator<<(std::ostream& os, const SocketAddress& a) {
    return os << a.ToString();
  }

 private:
  sockaddr_storage storage_;
  socklen_t length_;
};

}  // namespace udpmsg::udp

#endif  // UDPMSG_UDP_SOCKET_ADDRESS_H_
