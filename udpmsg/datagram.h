// udpmsg plain datagrams: a bare UDP (SOCK_DGRAM) socket, with no
// connections, retransmission or ordering, for tools that send and receive
// single datagrams and for comparing raw UDP with a Host.
//
// DatagramSocket owns its descriptor (closed on destruction) and is
// move-only. Every call returns a Status; EINTR is retried inside, and
// UNAVAILABLE means "would block" on a non-blocking socket and nothing else
// (test it with IsWouldBlock, udpmsg/io.h). Received bytes go into the
// caller's buffer; a datagram longer than the buffer is cut and reported as
// `truncated`. An IPv6 socket bound to "::" also serves IPv4 unless
// `Options::v6_only` is set; IPv4 peers are reported as plain IPv4.
//
// Usage:
//   absl::StatusOr<udpmsg::DatagramSocket> socket = udpmsg::DatagramSocket::Bind(
//       udpmsg::SocketAddress::Loopback(udpmsg::AddressFamily::kIpv4, 0), {});
//   if (!socket.ok()) return socket.status();   // "bind 127.0.0.1:9000: ..."
//   socket->SendTo(peer, udpmsg::AsBytes("hello"));
//   std::array<uint8_t, udpmsg::kMaxUdpPayloadIpv6> buffer;
//   absl::StatusOr<udpmsg::Datagram> got = socket->RecvFrom(absl::MakeSpan(buffer));
//   // got->size bytes at the front of buffer, from got->from
//
// Status codes: Open and Bind return the errno status of the failed call,
// naming the address; SendTo/Send/RecvFrom/SendBatch/RecvBatch return
// UNAVAILABLE when they would block and otherwise errno statuses naming the
// peer (see udp/datagram_socket.h for each method).
//
// Threading: calls on one socket may come from several threads (the kernel
// serialises them); moving or destroying it must not race with use.
#ifndef UDPMSG_UDPMSG_DATAGRAM_H_
#define UDPMSG_UDPMSG_DATAGRAM_H_

#include "udp/datagram_socket.h"
#include "udpmsg/address.h"

namespace udpmsg {

// The socket: Open, Bind, Connect, SendTo, Send, RecvFrom, SendBatch,
// RecvBatch (sendmmsg/recvmmsg), EnableErrorQueue/ReadErrors (ICMP
// reports), buffer sizes, LocalAddress.
using udp::DatagramSocket;
// One received datagram (size, sender, truncated).
using udp::Datagram;
// One datagram to send with SendBatch, and one receive slot for RecvBatch.
using udp::OutgoingDatagram;
using udp::ReceiveSlot;
// An ICMP report read from the error queue.
using udp::SocketError;
// Views a string's bytes as a payload.
using udp::AsBytes;
// The largest UDP payloads: 65507 bytes over IPv4, 65527 over IPv6.
using udp::kMaxUdpPayloadIpv4;
using udp::kMaxUdpPayloadIpv6;

}  // namespace udpmsg

#endif  // UDPMSG_UDPMSG_DATAGRAM_H_
