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
#include "bench/bulk_wire.h"
#include "bench/harness.h"
#include "bench/transports.h"

namespace udpmsg::bench {
namespace {

// "tcp" is the kernel's default congestion control; "tcp-<cc>" sets <cc> on
// the sending socket (TCP_CONGESTION), so one run compares several.
constexpr const char* kTransports[] = {"udpmsg", "tcp", "tcp-cubic", "tcp-reno", "tcp-bbr",
                                       "enet"};
// A receiver serves at most this many transfers at once.
constexpr size_t kMaxTransfers = 64;

bool IsTcp(absl::string_view transport) { return absl::StartsWith(transport, "tcp"); }

TransportSpec SpecFor(absl::string_view transport, const BulkConfig& c) {
  TransportSpec spec;
  if (transport == "udpmsg") {
    spec.kind = TransportKind::kUdpmsg;
    spec.udpmsg.congestion = c.cc;
    spec.udpmsg.max_datagram = kBulkDatagramBytes;
    spec.udpmsg.timeout = c.timeout;
    spec.udpmsg.send_window = 4 << 20;
    spec.udpmsg.chunk_bytes = 64 * 1024;
  } else if (IsTcp(transport)) {
    spec.kind = TransportKind::kTcp;
    if (transport != "tcp") spec.tcp.congestion = std::string(transport.substr(4));
  } else {
    spec.kind = TransportKind::kEnet;
    spec.enet.mtu = kBulkDatagramBytes;
  }
  return spec;
}

// The receiving end on any transport: one ReceiveState per connection, the
// result sent back when the transfer is complete.
class BulkReceiver final : public Transport::Handler {
 public:
  BulkReceiver(Transport& transport, bool verbose, absl::Duration timeout)
      : transport_(transport), verbose_(verbose), timeout_(timeout) {}

  void OnConnected(PeerId peer, const std::string& name) override {
    if (transfers_.size() >= kMaxTransfers) {
      transport_.Close(peer, "busy", absl::ZeroDuration());
      return;
    }
    const absl::Time now = absl::Now();
    transfers_[peer] = Transfer{name, ReceiveState(), now, now, false};
  }

  void OnReceived(PeerId peer, absl::string_view bytes) override {
    auto it = transfers_.find(peer);
    if (it == transfers_.end() || it->second.answered) return;
    Transfer& t = it->second;
    t.last_data = absl::Now();
    if (absl::Status s = t.state.Consume(bytes, t.last_data); !s.ok()) {
      Drop(it, std::string(s.message()));
      return;
    }
    if (!t.state.complete()) return;
    t.answered = true;
    transport_.Send(peer, t.state.EncodedResult()).IgnoreError();  // the sender times out
    if (verbose_) {
      Log(absl::StrFormat("%s: received %d bytes from %s in %.2f s", transport_.name(),
                          t.state.received(), t.name,
                          absl::ToDoubleSeconds(absl::Now() - t.start)));
    }
  }

  void OnClosed(PeerId peer, const std::string& reason) override {
    auto it = transfers_.find(peer);
    if (it == transfers_.end()) return;
    if (!it->second.answered && verbose_) {
      Log(absl::StrCat(transport_.name(), ": ", it->second.name, " went away after ",
                       it->second.state.received(), " bytes: ", reason));
    }
    transfers_.erase(it);
  }

  // Ends the transfers that saw nothing for the timeout (answered ones too:
  // their sender should have closed by then).
  void Expire() {
    const absl::Time now = absl::Now();
    for (auto it = transfers_.begin(); it != transfers_.end();) {
      auto here = it++;
      if (now - here->second.last_data <= timeout_) continue;
      if (here->second.answered) {
        transport_.Close(here->first, "bench done", absl::ZeroDuration());
        transfers_.erase(here);
      } else {
        Drop(here, absl::StrCat("no data for ", absl::FormatDuration(timeout_)));
      }
    }
  }

 private:
  struct Transfer {
    std::string name;
    ReceiveState state;
    absl::Time start;
    absl::Time last_data;
    bool answered = false;
  };
  using Map = absl::flat_hash_map<PeerId, Transfer>;

  void Drop(Map::iterator it, const std::string& why) {
    if (verbose_) Log(absl::StrCat(transport_.name(), ": ", it->second.name, ": ", why));
    const PeerId peer = it->first;
    transfers_.erase(it);
    transport_.Close(peer, why, absl::ZeroDuration());
  }

  Transport& transport_;
  const bool verbose_;
  const absl::Duration timeout_;
  Map transfers_;
};

// The sender's view of the answer: the result bytes, or why the connection
// ended.
class ResultCollector final : public Transport::Handler {
 public:
  void OnReceived(PeerId, absl::string_view bytes) override {
    if (answer.size() > kBulkResultBytes) return;  // already too long: malformed
    answer.append(bytes.data(), std::min(bytes.size(), kBulkResultBytes + 1 - answer.size()));
  }
  void OnClosed(PeerId, const std::string& why) override { closed = why; }
  std::string answer;
  std::optional<std::string> closed;
};

BulkOutcome Finish(absl::string_view transport, absl::Time start, absl::Time done,
                   const BulkResult& result, const Payload& payload) {
  BulkOutcome o;
  o.transport = std::string(transport);
  o.bytes = result.received;
  o.verified = result.received == payload.data.size() && result.checksum == payload.checksum;
  if (!o.verified) {
    o.error = absl::StrFormat("receiver got %d of %d bytes, checksum %016x, expected %016x",
                              result.received, payload.data.size(), result.checksum,
                              payload.checksum);
  }
  absl::Time end = result.last_byte;
  if (end < start || end > done) {
    end = done;
    o.receiver_clock = false;
  }
  o.seconds = std::max(1e-9, absl::ToDoubleSeconds(end - start));
  return o;
}

// One transfer from `t` to the receiver at `to`.
absl::StatusOr<BulkOutcome> SendBulk(const std::string& label, Transport& t,
                                     absl::Span<const udp::SocketAddress> to,
                                     const Payload& payload, absl::Duration timeout) {
  absl::StatusOr<PeerId> peer = t.Connect(to, timeout);
  if (!peer.ok()) return peer.status();
  const absl::string_view data = payload.data;
  const absl::Time start = absl::Now();
  if (absl::Status s = t.Send(*peer, EncodeHeader(data.size())); !s.ok()) return s;
  size_t offset = 0;
  absl::Time last_progress = start;
  uint64_t queued_seen = UINT64_MAX;
  ResultCollector collector;
  for (;;) {
    while (offset < data.size() && t.QueuedBytes(*peer) < t.send_window()) {
      const size_t n = std::min(t.chunk_bytes(), data.size() - offset);
      absl::Status s = t.Send(*peer, data.substr(offset, n));
      if (absl::IsResourceExhausted(s)) break;
      if (!s.ok()) return s;
      offset += n;
      last_progress = absl::Now();
    }
    if (absl::Status s = t.Poll(absl::Milliseconds(50), collector); !s.ok()) return s;
    const absl::Time now = absl::Now();
    if (collector.answer.size() >= kBulkResultBytes) {
      absl::StatusOr<BulkResult> result = DecodeResult(collector.answer);
      if (!result.ok()) return result.status();
      BulkOutcome o = Finish(label, start, now, *result, payload);
      if (absl::StatusOr<TransportStats> st = t.Stats(*peer); st.ok()) {
        o.retransmits = st->retransmits;
      }
      t.Close(*peer, "bench done", absl::Seconds(1));
      return o;
    }
    if (collector.closed.has_value()) {
      return absl::UnavailableError(absl::StrCat(t.name(), ": connection closed after ", offset,
                                                 " bytes queued: ", *collector.closed));
    }
    const uint64_t queued = t.QueuedBytes(*peer);
    if (queued < queued_seen) last_progress = now;
    queued_seen = queued;
    if (now - last_progress > timeout) {
      return absl::DeadlineExceededError(absl::StrCat(t.name(), ": no progress for ",
                                                      absl::FormatDuration(timeout), " after ",
                                                      offset, " bytes queued"));
    }
  }
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
  if (IsUdp(spec.kind)) {
    impairment::ImpairmentConfig config = c.impairment;
    config.loss = loss;
    absl::StatusOr<std::unique_ptr<LossyPath>> p = LossyPath::Create(to, config);
    if (!p.ok()) return p.status();
    path = *std::move(p);
    to = path->address();
  }
  absl::StatusOr<std::unique_ptr<Transport>> client =
      MakeTransport(spec, udp::SocketAddress::Any(to.family(), 0), false);
  if (!client.ok()) return client.status();
  absl::StatusOr<BulkOutcome> o = SendBulk(transport, **client, {to}, payload, c.timeout);
  thread.Stop();
  if (!thread.status().ok()) return thread.status();
  return o;
}

absl::StatusOr<BulkOutcome> RunClient(const std::string& transport, const Payload& payload,
                                      const BulkConfig& c) {
  const TransportSpec spec = SpecFor(transport, c);
  std::vector<udp::SocketAddress> to;
  if (spec.kind == TransportKind::kTcp) {
    absl::StatusOr<std::vector<udp::SocketAddress>> addrs =
        udp::ResolveHostPort(c.peer, c.family, udp::SocketType::kStream);
    if (!addrs.ok()) return addrs.status();
    to = *addrs;
  } else {
    const bool enet = spec.kind == TransportKind::kEnet;
    absl::StatusOr<std::vector<udp::SocketAddress>> addrs = udp::ResolveHostPort(
        c.peer, enet ? udp::AddressFamily::kIpv4 : c.family, udp::SocketType::kDatagram);
    if (!addrs.ok()) return addrs.status();
    to = {addrs->front()};
    if (enet) {
      if (to[0].port() == 65535) return absl::InvalidArgumentError("enet: port+1 is out of range");
      to[0].set_port(static_cast<uint16_t>(to[0].port() + 1));
    }
  }
  absl::StatusOr<std::unique_ptr<Transport>> client =
      MakeTransport(spec, udp::SocketAddress::Any(to.front().family(), 0), false);
  if (!client.ok()) return client.status();
  return SendBulk(transport, **client, to, payload, c.timeout);
}

bool Wants(const BulkConfig& c, absl::string_view transport) {
  return std::find(c.transports.begin(), c.transports.end(), transport) != c.transports.end();
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
    if (transport == "tcp") Log(absl::StrCat("tcp listening on ", local.ToString()));
    if (transport == "enet") Log(absl::StrCat("enet listening on port ", local.port()));
    servers.push_back(std::move(s));
    return absl::OkStatus();
  };
  if (Wants(c, "udpmsg")) {
    if (absl::Status s = open("udpmsg", c.udpmsg_bind); !s.ok()) return s;
  }
  if (std::any_of(c.transports.begin(), c.transports.end(), IsTcp)) {
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

void LogOutcome(const BulkOutcome& o) {
  if (!o.error.empty()) {
    Log(absl::StrCat("bench bulk: ", o.transport, " at ", o.loss, " loss FAILED: ", o.error));
    return;
  }
  Log(absl::StrFormat("bench bulk: %s at %s loss: %d bytes in %.3f s, %.2f Mbit/s, %s retransmits",
                      o.transport, o.loss, o.bytes, o.seconds, o.mbps(),
                      o.retransmits >= 0 ? absl::StrCat(o.retransmits) : "?"));
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ParseBulkTransports(absl::string_view text) {
  std::vector<std::string> named;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    const std::string name = absl::AsciiStrToLower(absl::StripAsciiWhitespace(part));
    if (std::find(std::begin(kTransports), std::end(kTransports), name) == std::end(kTransports)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--bench_transports: unknown transport \"", part,
          "\" (udpmsg, tcp, tcp-cubic, tcp-reno, tcp-bbr, enet)"));
    }
    named.push_back(name);
  }
  if (named.empty()) return absl::InvalidArgumentError("--bench_transports names none");
  std::vector<std::string> ordered;  // always in the table's order
  for (const char* t : kTransports) {
    if (std::find(named.begin(), named.end(), t) != named.end()) ordered.push_back(t);
  }
  return ordered;
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
