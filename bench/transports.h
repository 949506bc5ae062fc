// The benchmarked transports by kind: one spec type, one factory, so that a
// measurement names what it runs (a TransportSpec) and works on the
// bench::Transport it gets back.
//
// Usage:
//   TransportSpec spec{.kind = TransportKind::kTcp};
//   spec.tcp.congestion = "reno";
//   absl::StatusOr<std::unique_ptr<Transport>> t = MakeTransport(spec, bind, /*listen=*/true);
//
// Threading: MakeTransport from any thread; the transport is then used as
// bench::Transport says. The caller owns what it returns.
#ifndef UDPMSG_BENCH_TRANSPORTS_H_
#define UDPMSG_BENCH_TRANSPORTS_H_

#include <memory>

#include "absl/status/statusor.h"
#include "bench/enet_transport.h"
#include "bench/raw_udp_transport.h"
#include "bench/tcp_transport.h"
#include "bench/transport.h"
#include "bench/udpmsg_transport.h"

namespace udpmsg::bench {

enum class TransportKind { kUdpmsg, kTcp, kEnet, kRawUdp };

// Which transport, and the options of that kind (the others are ignored).
struct TransportSpec {
  TransportKind kind = TransportKind::kUdpmsg;
  UdpmsgTransport::Options udpmsg;
  TcpTransport::Options tcp;
  EnetTransport::Options enet;
  RawUdpTransport::Options raw;
};

// Whether the transport runs over UDP (and so can cross an ImpairProxy).
bool IsUdp(TransportKind kind);

// A transport of `spec.kind` bound to `bind` (a client's source address; the
// port may be 0), accepting connections when `listen`. Errors: the
// implementation's Create.
absl::StatusOr<std::unique_ptr<Transport>> MakeTransport(const TransportSpec& spec,
                                                         const udp::SocketAddress& bind,
                                                         bool listen);

}  // namespace udpmsg::bench

#endif  // UDPMSG_BENCH_TRANSPORTS_H_
