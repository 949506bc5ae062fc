#include "bench/bulk.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "bench/bulk_flow.h"
#include "bench/bulk_wire.h"
#include "bench/harness.h"
#include "bench/transports.h"

namespace udpmsg::bench {
namespace {

// "tcp" is the kernel's default congestion control; "tcp-<cc>" sets <cc> on
// the sending socket (TCP_CONGESTION), so one run compares several.
// "udpmsg" runs --cc; "udpmsg-<cc>" that congestion control, so one run
// compares them.
constexpr const char* kTransports[] = {"udpmsg",   "udpmsg-newreno", "udpmsg-bbr", "udpmsg-sealed",
                                       "tcp",      "tcp-cubic",      "tcp-reno",   "tcp-bbr",
                                       "enet"};
bool IsTcp(absl::string_view transport) { return IsTcpTransport(transport); }

TransportSpec SpecFor(absl::string_view transport, const BulkConfig& c) {
  return BulkTransportSpec(transport, c.cc, c.timeout);
}

// One sized transfer from `t` to the receiver at `to`, labelled `label`.
absl::StatusOr<BulkOutcome> Send(const std::string& label, Transport& t,
                                 absl::Span<const udp::SocketAddress> to, const Payload& payload,
                                 absl::Duration timeout) {
  absl::StatusOr<PeerId> peer = t.Connect(to, timeout);
  if (!peer.ok()) return peer.status();
  absl::StatusOr<BulkOutcome> o = SendSized(t, *peer, payload, timeout);
  if (o.ok()) o->transport = label;
  return o;
}

absl::StatusOr<BulkOutcome> RunLocal(const std::string& transport, double loss,
                                     const Payload& payload, const BulkConfig& c) {
  const TransportSpec spec = SpecFor(transport, c);
  absl::StatusOr<std::unique_ptr<Transport>> server =
      MakeTransport(spec, udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, 0), true);
  if (!server.ok()) return server.status();
  BulkReceiver receiver(**server, /*verbose=*/false, c.timeout);
  PollThread thread(**server, receiver, absl::Milliseconds(50), [&] { receiver.Expire(); });
  udp::SocketAddress to = (*server)->local_address();
  std::unique_ptr<LossyPath> path;
  impairment::ImpairmentConfig config = c.impairment;
  config.loss = loss;
  // A clean path needs no proxy: its thread and copy would be measured too
  // (TCP never has one).
  if (IsUdp(spec.kind) && (config.loss > 0 || impairment::ImpairsBesidesLoss(config))) {
    absl::StatusOr<std::unique_ptr<LossyPath>> p = LossyPath::Create(to, config);
    if (!p.ok()) return p.status();
    path = *std::move(p);
    to = path->address();
  }
  absl::StatusOr<std::unique_ptr<Transport>> client =
      MakeTransport(spec, udp::SocketAddress::Any(to.family(), 0), false);
  if (!client.ok()) return client.status();
  absl::StatusOr<BulkOutcome> o = Send(transport, **client, {to}, payload, c.timeout);
  thread.Stop();
  if (!thread.status().ok()) return thread.status();
  return o;
}

absl::StatusOr<BulkOutcome> RunClient(const std::string& transport, const Payload& payload,
                                      const BulkConfig& c) {
  const TransportSpec spec = SpecFor(transport, c);
  absl::StatusOr<std::vector<udp::SocketAddress>> to =
      BulkPeerAddresses(transport, c.peer, c.family);
  if (!to.ok()) return to.status();
  absl::StatusOr<std::unique_ptr<Transport>> client =
      MakeTransport(spec, udp::SocketAddress::Any(to->front().family(), 0), false);
  if (!client.ok()) return client.status();
  return Send(transport, **client, *to, payload, c.timeout);
}

// Whether a transport of `c` starts with `prefix` ("udpmsg" for
// udpmsg-bbr too).
bool Wants(const BulkConfig& c, absl::string_view prefix) {
  return std::any_of(c.transports.begin(), c.transports.end(),
                     [&](const std::string& t) { return absl::StartsWith(t, prefix); });
}

absl::Status RunServer(const BulkConfig& c) {
  struct Server {
    std::unique_ptr<Transport> transport;
    std::unique_ptr<BulkReceiver> receiver;
    std::unique_ptr<PollThread> thread;
  };
  std::vector<Server> servers;
  const auto open = [&](absl::string_view transport,
                        const udp::SocketAddress& bind) -> absl::Status {
    absl::StatusOr<std::unique_ptr<Transport>> t = MakeTransport(SpecFor(transport, c), bind, true);
    if (!t.ok()) return t.status();
    Server s;
    s.transport = *std::move(t);
    s.receiver = std::make_unique<BulkReceiver>(*s.transport, /*verbose=*/true, c.timeout);
    const udp::SocketAddress local = s.transport->local_address();
    if (transport == "udpmsg") Log(absl::StrCat("listening on ", local.ToString()));
    if (transport == "udpmsg-sealed") {
      Log(absl::StrCat("udpmsg-sealed listening on ", local.ToString()));
    }
    if (transport == "tcp") Log(absl::StrCat("tcp listening on ", local.ToString()));
    if (transport == "enet") Log(absl::StrCat("enet listening on port ", local.port()));
    servers.push_back(std::move(s));
    return absl::OkStatus();
  };
  if (Wants(c, "udpmsg")) {
    if (absl::Status s = open("udpmsg", c.udpmsg_bind); !s.ok()) return s;
  }
  // Before ENet's: its line then says every receiver is listening.
  if (ServesSealed(c)) {
    if (absl::Status s = open("udpmsg-sealed", c.udpmsg_sealed_bind); !s.ok()) return s;
  }
  if (Wants(c, "tcp")) {
    if (absl::Status s = open("tcp", c.tcp_bind); !s.ok()) return s;
  }
  if (Wants(c, "enet")) {
    if (absl::Status s = open("enet", c.enet_bind); !s.ok()) return s;
  }
  std::vector<PollThread*> threads;
  for (Server& s : servers) {
    BulkReceiver* r = s.receiver.get();
    s.thread = std::make_unique<PollThread>(*s.transport, *r, absl::Milliseconds(50),
                                            [r] { r->Expire(); });
    threads.push_back(s.thread.get());
  }
  return ServeFor(c.duration, threads);
}

std::string CpuText(double per_gb) {
  return per_gb >= 0 ? absl::StrFormat("%.3f", per_gb) : "?";
}

void LogOutcome(const BulkOutcome& o) {
  if (!o.error.empty()) {
    Log(absl::StrCat("bench bulk: ", o.transport, " at ", o.loss, " loss FAILED: ", o.error));
    return;
  }
  Log(absl::StrFormat(
      "bench bulk: %s at %s loss: %d bytes in %.3f s, %.2f Mbit/s, %s retransmits, CPU s/GB "
      "sender %s receiver %s",
      o.transport, o.loss, o.bytes, o.seconds, o.mbps(),
      o.retransmits >= 0 ? absl::StrCat(o.retransmits) : "?", CpuText(o.sender_cpu_per_gb()),
      CpuText(o.receiver_cpu_per_gb())));
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ParseBulkTransports(absl::string_view text) {
  std::vector<std::string> named;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    const std::string name = absl::AsciiStrToLower(absl::StripAsciiWhitespace(part));
    if (std::find(std::begin(kTransports), std::end(kTransports), name) == std::end(kTransports)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--bench_transports: unknown transport \"", part,
          "\" (udpmsg, udpmsg-newreno, udpmsg-bbr, udpmsg-sealed, tcp, tcp-cubic, tcp-reno, "
          "tcp-bbr, enet)"));
    }
    named.push_back(name);
  }
  if (named.empty()) return absl::InvalidArgumentError("--bench_transports names none");
  std::vector<std::string> ordered;  // the order given, each once
  for (const std::string& t : named) {
    if (std::find(ordered.begin(), ordered.end(), t) == ordered.end()) ordered.push_back(t);
  }
  return ordered;
}

bool ServesSealed(const BulkConfig& c) {
  return std::find(c.transports.begin(), c.transports.end(), "udpmsg-sealed") != c.transports.end();
}

size_t BulkTableRank(absl::string_view transport) {
  const auto* it = std::find(std::begin(kTransports), std::end(kTransports), transport);
  return static_cast<size_t>(it - std::begin(kTransports));
}

absl::Status RunBulk(const BulkConfig& c) {
  if (c.role == BenchRole::kServer) return RunServer(c);
  const Payload payload = MakePayload(c.size, c.seed);
  std::vector<BulkOutcome> rows;
  auto record = [&](const std::string& transport, const std::string& label,
                    absl::StatusOr<BulkOutcome> got) {
    BulkOutcome o;
    if (got.ok()) {
      o = *std::move(got);
    } else {
      o.transport = transport;
      o.error = std::string(got.status().message());
    }
    o.loss = label;
    LogOutcome(o);
    rows.push_back(std::move(o));
  };
  if (c.role == BenchRole::kClient) {
    for (const std::string& transport : c.transports) {
      record(transport, c.loss_label, RunClient(transport, payload, c));
    }
  } else {
    for (double loss : c.losses) {
      for (const std::string& transport : c.transports) {
        if (IsTcp(transport) && loss > 0) continue;
        record(transport, LossLabel(loss), RunLocal(transport, loss, payload, c));
      }
    }
  }
  PrintTable(MakeBulkTable(rows, c), c.format);
  const size_t failed =
      std::count_if(rows.begin(), rows.end(), [](const BulkOutcome& o) { return !o.verified; });
  if (failed > 0) {
    return absl::DataLossError(
        absl::StrCat(failed, " of ", rows.size(), " transfers failed or were not verified"));
  }
  return absl::OkStatus();
}

}  // namespace udpmsg::bench
