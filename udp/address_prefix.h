// AddressPrefix: the key per-address limits count a peer under. One host
// usually has one IPv4 address but a whole IPv6 /64, so an IPv4 address is
// its own key ("192.0.2.1"), an IPv4-mapped IPv6 address counts as that IPv4
// address, and an IPv6 address counts by its /64 ("2001:db8:1:2::/64"). The
// port never matters.
//
//   per_address[AddressPrefix(peer)] += 1;
//
// Used by reliable::Endpoint (connections per address) and the chat server
// (members per address). Pure; thread-safe.
#ifndef UDPMSG_UDP_ADDRESS_PREFIX_H_
#define UDPMSG_UDP_ADDRESS_PREFIX_H_

#include <string>

#include "udp/socket_address.h"

namespace udpmsg::udp {

std::string AddressPrefix(const SocketAddress& peer);

}  // namespace udpmsg::udp

#endif  // UDPMSG_UDP_ADDRESS_PREFIX_H_
