#include "bench/transports.h"

namespace udpmsg::bench {

bool IsUdp(TransportKind kind) { return kind != TransportKind::kTcp; }

absl::StatusOr<std::unique_ptr<Transport>> MakeTransport(const TransportSpec& spec,
                                                         const udp::SocketAddress& bind,
                                                         bool listen) {
  switch (spec.kind) {
    case TransportKind::kUdpmsg: {
      auto t = UdpmsgTransport::Create(spec.udpmsg, bind, listen);
      if (!t.ok()) return t.status();
      return std::unique_ptr<Transport>(*std::move(t));
    }
    case TransportKind::kTcp: {
      auto t = TcpTransport::Create(spec.tcp, bind, listen);
      if (!t.ok()) return t.status();
      return std::unique_ptr<Transport>(*std::move(t));
    }
    case TransportKind::kEnet: {
      auto t = EnetTransport::Create(spec.enet, bind, listen);
      if (!t.ok()) return t.status();
      return std::unique_ptr<Transport>(*std::move(t));
    }
    case TransportKind::kRawUdp: {
      auto t = RawUdpTransport::Create(spec.raw, bind, listen);
      if (!t.ok()) return t.status();
      return std::unique_ptr<Transport>(*std::move(t));
    }
  }
  return absl::InvalidArgumentError("unknown transport kind");
}

}  // namespace udpmsg::bench
