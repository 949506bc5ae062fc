#include "bench/latency.h"

#include <sys/prctl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/harness.h"
#include "bench/transports.h"

namespace udpmsg::bench {
namespace {

constexpr size_t kPingBytes = 64;
// How long the client waits for answers after the last scheduled ping:
// unreliable transports count what is missing then as lost; reliable ones
// must have everything by the longer deadline.
constexpr absl::Duration kUnreliableDrain = absl::Milliseconds(500);
constexpr absl::Duration kReliableDrain = absl::Seconds(30);
constexpr absl::Duration kHandshakeTimeout = absl::Seconds(20);
// Timer slack for the client thread, so its scheduled sends are not late by
// the default 50 us of slack.
constexpr unsigned long kTimerSlackNs = 1000;

enum class Kind { kRawUdp, kUdpmsgUnreliable, kUdpmsgReliable, kTcp };

absl::string_view KindName(Kind k) {
  switch (k) {
    case Kind::kRawUdp:
      return "raw UDP";
    case Kind::kUdpmsgUnreliable:
      return "udpmsg unreliable";
    case Kind::kUdpmsgReliable:
      return "udpmsg reliable-ordered";
    case Kind::kTcp:
      return "TCP_NODELAY";
  }
  return "?";
}

bool Reliable(Kind k) { return k == Kind::kUdpmsgReliable || k == Kind::kTcp; }

// The client's transport for `k`; `server` for its echo server (udpmsg
// answers in the mode each ping came in).
TransportSpec SpecFor(Kind k, const LatencyConfig& c, bool server) {
  TransportSpec spec;
  switch (k) {
    case Kind::kRawUdp:
      spec.kind = TransportKind::kRawUdp;
      break;
    case Kind::kTcp:
      spec.kind = TransportKind::kTcp;
      spec.tcp.no_delay = true;
      break;
    default:
      spec.kind = TransportKind::kUdpmsg;
      spec.udpmsg.congestion = c.cc;
      spec.udpmsg.delivery = server                       ? UdpmsgTransport::Delivery::kMatchPeer
                             : k == Kind::kUdpmsgReliable ? UdpmsgTransport::Delivery::kReliable
                                                          : UdpmsgTransport::Delivery::kUnreliable;
      break;
  }
  return spec;
}

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Ping i carries i in its first 8 bytes; the rest is filler.
std::string PingPayload(uint64_t index) {
  std::string p(kPingBytes, 'p');
  std::memcpy(&p[0], &index, sizeof(index));
  return p;
}

// Sends every chunk back where it came from.
class Echo final : public Transport::Handler {
 public:
  explicit Echo(Transport& t) : t_(t) {}
  void OnReceived(PeerId peer, absl::string_view bytes) override {
    t_.Send(peer, bytes).IgnoreError();  // a lost answer is what the client measures
  }

 private:
  Transport& t_;
};

// The client's side: pings out of what arrives (a stream reassembled).
class Pings final : public Transport::Handler {
 public:
  Pings(bool stream, std::function<void(uint64_t, int64_t)> answered)
      : stream_(stream), answered_(std::move(answered)) {}
  void OnReceived(PeerId, absl::string_view bytes) override {
    const int64_t at = NowNs();
    if (!stream_) {
      if (bytes.size() == kPingBytes) Answer(bytes.data(), at);  // else a stray datagram
      return;
    }
    pending_.append(bytes.data(), bytes.size());
    size_t used = 0;
    for (; pending_.size() - used >= kPingBytes; used += kPingBytes) {
      Answer(pending_.data() + used, at);
    }
    pending_.erase(0, used);
  }
  void OnClosed(PeerId, const std::string& reason) override { closed = reason; }
  std::optional<std::string> closed;

 private:
  void Answer(const char* ping, int64_t at) {
    uint64_t index = 0;
    std::memcpy(&index, ping, sizeof(index));
    answered_(index, at);
  }
  const bool stream_;
  std::function<void(uint64_t, int64_t)> answered_;
  std::string pending_;  // bytes of an incomplete answer (stream)
};

struct Sample {
  int64_t sent = 0;
  int64_t answered = 0;
  std::vector<int64_t> latency_ns;  // sorted
};

// The fixed schedule against the echo server at `to`: `count` pings, `rate`
// per second.
absl::StatusOr<Sample> RunSchedule(Transport& t, absl::Span<const udp::SocketAddress> to,
                                   int64_t count, int rate, absl::Duration drain) {
  absl::StatusOr<PeerId> peer = t.Connect(to, kHandshakeTimeout);
  if (!peer.ok()) return peer.status();
  const unsigned long old_slack = static_cast<unsigned long>(prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0));
  prctl(PR_SET_TIMERSLACK, kTimerSlackNs, 0, 0, 0);
  struct RestoreSlack {
    unsigned long slack;
    ~RestoreSlack() { prctl(PR_SET_TIMERSLACK, slack, 0, 0, 0); }
  } restore{old_slack};

  const double interval_ns = 1e9 / rate;
  const int64_t start = NowNs() + 1000000;  // 1 ms from now
  auto scheduled = [&](int64_t i) {
    return start + static_cast<int64_t>(std::llround(static_cast<double>(i) * interval_ns));
  };
  const int64_t drain_end = scheduled(count - 1) + absl::ToInt64Nanoseconds(drain);
  Sample sample;
  sample.latency_ns.reserve(static_cast<size_t>(count));
  std::vector<bool> seen(static_cast<size_t>(count), false);
  int64_t next = 0;  // the next ping to send
  Pings pings(t.is_stream(), [&](uint64_t index, int64_t at) {
    if (index >= static_cast<uint64_t>(next) || seen[index]) return;  // stray or duplicate
    seen[index] = true;
    ++sample.answered;
    sample.latency_ns.push_back(at - scheduled(static_cast<int64_t>(index)));
  });
  for (;;) {
    const int64_t now = NowNs();
    while (next < count && scheduled(next) <= now) {
      if (absl::Status s = t.Send(*peer, PingPayload(static_cast<uint64_t>(next))); !s.ok()) {
        return s;
      }
      ++next;
    }
    if (next == count && (sample.answered == count || now >= drain_end)) break;
    const int64_t wake = next < count ? scheduled(next) : drain_end;
    if (absl::Status s = t.Poll(absl::Nanoseconds(std::max<int64_t>(0, wake - NowNs())), pings);
        !s.ok()) {
      return s;
    }
    if (pings.closed.has_value()) {
      return absl::UnavailableError(
          absl::StrCat(t.name(), " connection closed: ", *pings.closed));
    }
  }
  sample.sent = count;
  std::sort(sample.latency_ns.begin(), sample.latency_ns.end());
  return sample;
}

absl::StatusOr<Sample> Measure(Kind k, absl::Span<const udp::SocketAddress> to,
                               const LatencyConfig& c) {
  absl::StatusOr<std::unique_ptr<Transport>> client =
      MakeTransport(SpecFor(k, c, false), udp::SocketAddress::Any(to.front().family(), 0), false);
  if (!client.ok()) return client.status();
  return RunSchedule(**client, to, c.count, c.rate,
                     Reliable(k) ? kReliableDrain : kUnreliableDrain);
}

// One row in this process: `k` at `loss` (through a proxy when loss > 0 or
// other impairments are asked for; never for TCP).
absl::StatusOr<Sample> MeasureLocal(Kind k, double loss, const LatencyConfig& c) {
  absl::StatusOr<std::unique_ptr<Transport>> server = MakeTransport(
      SpecFor(k, c, true), udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, 0), true);
  if (!server.ok()) return server.status();
  Echo echo(**server);
  PollThread thread(**server, echo);
  udp::SocketAddress to = (*server)->local_address();
  std::unique_ptr<LossyPath> path;
  if (k != Kind::kTcp && (loss > 0 || c.impairs_besides_loss)) {
    impairment::ImpairmentConfig config = c.impairment;
    config.loss = loss;
    absl::StatusOr<std::unique_ptr<LossyPath>> p = LossyPath::Create(to, config);
    if (!p.ok()) return p.status();
    path = *std::move(p);
    to = path->address();
  }
  return Measure(k, {to}, c);
}

// The echo servers of a kServer run, as the client reaches them.
struct RemoteServers {
  udp::SocketAddress raw_udp;           // HOST:PORT, UDP
  udp::SocketAddress udpmsg;            // HOST:PORT+1
  std::vector<udp::SocketAddress> tcp;  // HOST:PORT, TCP (every address)
};

absl::StatusOr<RemoteServers> ResolveServers(const std::string& peer, udp::AddressFamily family) {
  RemoteServers servers;
  absl::StatusOr<std::vector<udp::SocketAddress>> udp_addrs =
      udp::ResolveHostPort(peer, family, udp::SocketType::kDatagram);
  if (!udp_addrs.ok()) return udp_addrs.status();
  servers.raw_udp = udp_addrs->front();
  if (servers.raw_udp.port() == 0 || servers.raw_udp.port() == 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--bench_peer \"", peer, "\": want a port in 1..65534 (udpmsg is on port+1)"));
  }
  servers.udpmsg = servers.raw_udp;
  servers.udpmsg.set_port(static_cast<uint16_t>(servers.raw_udp.port() + 1));
  absl::StatusOr<std::vector<udp::SocketAddress>> tcp_addrs =
      udp::ResolveHostPort(peer, family, udp::SocketType::kStream);
  if (!tcp_addrs.ok()) return tcp_addrs.status();
  servers.tcp = *tcp_addrs;
  return servers;
}

absl::StatusOr<Sample> MeasureRemote(Kind k, const RemoteServers& servers,
                                     const LatencyConfig& c) {
  switch (k) {
    case Kind::kTcp:
      return Measure(k, servers.tcp, c);
    case Kind::kRawUdp:
      return Measure(k, {servers.raw_udp}, c);
    default:
      return Measure(k, {servers.udpmsg}, c);
  }
}

// kServer: the three echo servers until `duration` (or killed).
absl::Status RunServer(const LatencyConfig& c) {
  struct Server {
    std::unique_ptr<Transport> transport;
    std::unique_ptr<Echo> echo;
    std::unique_ptr<PollThread> thread;
  };
  std::vector<Server> servers;
  for (const auto& [k, bind] : {std::make_pair(Kind::kRawUdp, c.raw_bind),
                                std::make_pair(Kind::kUdpmsgReliable, c.udpmsg_bind),
                                std::make_pair(Kind::kTcp, c.tcp_bind)}) {
    absl::StatusOr<std::unique_ptr<Transport>> t = MakeTransport(SpecFor(k, c, true), bind, true);
    if (!t.ok()) return t.status();
    Server s;
    s.transport = *std::move(t);
    s.echo = std::make_unique<Echo>(*s.transport);
    servers.push_back(std::move(s));
  }
  std::vector<PollThread*> threads;
  for (Server& s : servers) {
    s.thread = std::make_unique<PollThread>(*s.transport, *s.echo);
    threads.push_back(s.thread.get());
  }
  Log(absl::StrCat("listening on ", servers[0].transport->local_address().ToString()));
  Log(absl::StrCat("raw UDP echo on ", servers[0].transport->local_address().ToString(),
                   ", TCP echo on ", servers[2].transport->local_address().ToString(),
                   ", udpmsg echo on ", servers[1].transport->local_address().ToString()));
  return ServeFor(c.duration, threads);
}

}  // namespace

std::string PercentileUs(const std::vector<int64_t>& sorted, double q) {
  if (sorted.empty()) return "-";
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return absl::StrFormat("%.1f", static_cast<double>(sorted[rank - 1]) / 1e3);
}

absl::Status RunLatency(const LatencyConfig& c) {
  if (c.role == BenchRole::kServer) return RunServer(c);
  std::optional<RemoteServers> remote;
  if (c.role == BenchRole::kClient) {
    absl::StatusOr<RemoteServers> servers = ResolveServers(c.peer, c.family);
    if (!servers.ok()) return servers.status();
    remote = *std::move(servers);
  }
  BenchTable table;
  table.title = absl::StrCat(
      "bench latency: ", kPingBytes, "-byte ping-pong, ", c.rate, "/s for ",
      absl::FormatDuration(c.duration),
      remote ? absl::StrCat(" to ", c.peer) : std::string(", loopback IPv4"),
      ", round trip from the scheduled send time");
  table.columns = {"transport", "loss", "sent", "answered", "p50 us", "p99 us", "p99.9 us",
                   "max us"};
  bool tcp_measured = false;
  for (double loss : c.losses) {
    const std::string label = remote ? c.client_loss_label : LossLabel(loss);
    std::vector<Kind> kinds = {Kind::kRawUdp, Kind::kUdpmsgUnreliable, Kind::kUdpmsgReliable};
    // Locally TCP cannot cross the UDP proxy: only at 0%. Across a network
    // it meets the same loss as the rest.
    if (remote || (loss == 0 && !tcp_measured)) kinds.push_back(Kind::kTcp);
    for (Kind k : kinds) {
      absl::StatusOr<Sample> s = remote ? MeasureRemote(k, *remote, c) : MeasureLocal(k, loss, c);
      if (!s.ok()) {
        return absl::Status(s.status().code(), absl::StrCat(KindName(k), " at ", label,
                                                            " loss: ", s.status().message()));
      }
      if (Reliable(k) && s->answered != s->sent) {
        return absl::DataLossError(absl::StrCat(KindName(k), " at ", label, " loss answered ",
                                                s->answered, " of ", s->sent, " pings within ",
                                                absl::FormatDuration(kReliableDrain)));
      }
      if (k == Kind::kTcp) tcp_measured = true;
      table.rows.push_back({std::string(KindName(k)), label, absl::StrCat(s->sent),
                            absl::StrCat(s->answered), PercentileUs(s->latency_ns, 0.50),
                            PercentileUs(s->latency_ns, 0.99), PercentileUs(s->latency_ns, 0.999),
                            PercentileUs(s->latency_ns, 1.0)});
    }
  }
  table.notes = {
      "latency = echo arrival - scheduled send time (coordinated omission corrected: a late "
      "send counts); nearest-rank percentiles of all answered pings",
      absl::StrCat("unanswered pings (raw UDP, udpmsg unreliable) are lost, not latency; they "
                   "get ", absl::FormatDuration(kUnreliableDrain),
                   " after the last send; reliable transports must answer every ping"),
  };
  if (remote) {
    table.notes.push_back(
        "loss: applied by the network between client and server to every protocol alike "
        "(--bench_loss only labels the rows)");
  } else {
    table.notes.push_back(absl::StrCat(
        "loss > 0: UDP transports go through an in-process impairment proxy dropping that share "
        "in each direction (seed ", c.seed, "; round-trip loss ~2x), which adds a hop; "
        "0%: direct"));
    if (c.impairs_besides_loss) {
      table.notes.push_back(absl::StrCat(
          "the proxy (then at every loss rate, 0% too) also applies, both ways: ",
          c.impairment_description));
    }
    table.notes.push_back(
        tcp_measured ? "TCP (TCP_NODELAY) only at 0%: it cannot go through the UDP proxy; "
                       "bench/run.sh measures it under loss across two network namespaces"
                     : "TCP not measured: --bench_loss lists no 0%");
  }
  table.notes.push_back(absl::StrCat("udpmsg: one connection, channel 0, --cc ",
                                     reliable::CongestionControlName(c.cc)));
  PrintTable(table, c.format);
  return absl::OkStatus();
}

}  // namespace udpmsg::bench
