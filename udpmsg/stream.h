// udpmsg streams: TCP sockets, offered beside the datagram socket and the
// Host so that programs can compare them on the same path.
//
// StreamSocket owns a connected TCP descriptor; StreamListener owns a
// listening one. Both close on destruction, are move-only, retry EINTR
// inside, and return UNAVAILABLE only for "would block" (IsWouldBlock,
// udpmsg/io.h).
//
// Usage (client):
//   absl::StatusOr<std::vector<udpmsg::SocketAddress>> to = udpmsg::ResolveHostPort(
//       "localhost:3490", udpmsg::AddressFamily::kUnspecified, udpmsg::SocketType::kStream);
//   absl::StatusOr<udpmsg::StreamSocket> conn = udpmsg::StreamSocket::Connect(*to);
//   conn->SendAll(udpmsg::AsBytes("hello"));
//   conn->Shutdown(udpmsg::ShutdownHow::kWrite);
//
// Usage (server):
//   absl::StatusOr<udpmsg::StreamListener> listener = udpmsg::StreamListener::Listen(
//       udpmsg::SocketAddress::Any(udpmsg::AddressFamily::kIpv6, 0), /*backlog=*/16, {});
//   absl::StatusOr<udpmsg::AcceptedStream> client = listener->Accept();
//
// Status codes: Connect tries each address in order; when all fail it
// returns the last attempt's code with every attempt's reason, and
// INVALID_ARGUMENT for an empty list. Listen returns the errno status naming
// the address. Accept, Send and Recv return UNAVAILABLE when they would
// block, other errno statuses naming the peer (udp/stream_socket.h has each
// method's details).
//
// Threading: one reader and one writer may use a StreamSocket concurrently;
// moving or destroying it must not race with use.
#ifndef UDPMSG_UDPMSG_STREAM_H_
#define UDPMSG_UDPMSG_STREAM_H_

#include "udp/stream_socket.h"
#include "udpmsg/address.h"
#include "udpmsg/datagram.h"

namespace udpmsg {

using udp::AcceptedStream;  // a connection from Accept, with its peer
using udp::ShutdownHow;     // kRead, kWrite, kBoth
using udp::StreamListener;
using udp::StreamSocket;

}  // namespace udpmsg

#endif  // UDPMSG_UDPMSG_STREAM_H_
