#include "udp/address_prefix.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "udp/socket_address.h"

namespace udpmsg::udp {

std::string AddressPrefix(const SocketAddress& peer) {
  SocketAddress a = peer.Unmapped();
  if (a.native_family() == AF_INET6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(a.mutable_data());
    for (int i = 8; i < 16; ++i) in6->sin6_addr.s6_addr[i] = 0;
    return absl::StrCat(a.IpString(), "/64");
  }
  return a.IpString();
}

}  // namespace udpmsg::udp
