// udpmsg: reliable, ordered or unordered messages over UDP, with optional
// encryption. Include this header and depend on //udpmsg; nothing else is
// needed.
//
//   udpmsg/host.h     Host: one socket, its connections, Poll() for events
//   udpmsg/options.h  HostOptions (Validate()), CongestionControl,
//                     DeliveryMode, RoomKey
//   udpmsg/event.h    Event, CloseReason, ConnectionId
//   udpmsg/address.h  SocketAddress, ResolveHostPort, Resolve
//   udpmsg/text.h     Displayable, ValidUtf8: peer text made safe to show
//
// Beside the Host, for tools and for comparison on the same path:
//   udpmsg/datagram.h DatagramSocket: bare UDP datagrams, no reliability
//   udpmsg/stream.h   StreamSocket, StreamListener: TCP
//   udpmsg/io.h       OwnedFd, Poller, ErrnoStatus, IsWouldBlock
//
// A client in full (examples/echo_client.cc adds error handling):
//   #include "udpmsg/udpmsg.h"
//
//   absl::StatusOr<udpmsg::Host> host = udpmsg::Host::Create(udpmsg::HostOptions());
//   absl::StatusOr<std::vector<udpmsg::SocketAddress>> to =
//       udpmsg::ResolveHostPort("localhost:9000");
//   absl::StatusOr<udpmsg::ConnectionId> id = host->Connect(to->front());
//   host->AwaitConnected(*id, absl::Seconds(5));
//   host->Send(*id, /*channel=*/0, udpmsg::DeliveryMode::kReliableOrdered, "hello");
//   for (;;) {
//     absl::StatusOr<udpmsg::Host::PollResult> r = host->Poll(absl::Seconds(1));
//     for (udpmsg::Event& e : r->events) { ... }
//   }
//
// Every fallible call returns absl::Status or absl::StatusOr with a message
// that names what failed; each header lists the codes of its methods.
// Servers live in examples/echo_server.cc and examples/chat_minimal.cc.
#ifndef UDPMSG_UDPMSG_UDPMSG_H_
#define UDPMSG_UDPMSG_UDPMSG_H_

#include "udpmsg/address.h"
#include "udpmsg/datagram.h"
#include "udpmsg/event.h"
#include "udpmsg/host.h"
#include "udpmsg/io.h"
#include "udpmsg/options.h"
#include "udpmsg/stream.h"
#include "udpmsg/text.h"

#endif  // UDPMSG_UDPMSG_UDPMSG_H_
