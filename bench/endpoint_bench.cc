// The cost of one endpoint turn as the number of connections grows: a
// datagram for one connection, then what a runtime does every turn
// (NextTimeout, OnTimeout when due, TakeEvents, TakeOutgoing). With timers
// in an ordered set and routing by hash, the cost should stay flat from 100
// to 100,000 connections (reliable/endpoint.h, "Timers").
//
//   ./bazelw run -c opt //bench:endpoint_bench
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "reliable/endpoint.h"
#include "udp/socket_address.h"

namespace udpmsg::reliable {
namespace {

const udp::SocketAddress kServer = *udp::SocketAddress::Parse("10.0.0.1:4000");
const udp::SocketAddress kClient = *udp::SocketAddress::Parse("10.0.0.2:5000");

EndpointOptions Options(bool server, size_t n) {
  EndpointOptions o;
  o.accept_incoming = server;
  o.seed = server ? 1 : 2;
  o.cookie_secret = CookieJar::Secret{};
  o.max_connections = n + 16;
  o.max_unconfirmed_connections = n + 16;
  o.max_connections_per_address = n + 16;
  o.connection.pmtud = false;  // no probes in the measured turns
  return o;
}

// Delivers everything either side has to send, instantly, until quiet.
void Shuttle(absl::Time now, Endpoint& a, const udp::SocketAddress& a_address, Endpoint& b,
             const udp::SocketAddress& b_address) {
  for (bool busy = true; busy;) {
    busy = false;
    for (Outgoing& o : a.TakeOutgoing()) {
      b.OnDatagram(now, a_address, o.bytes);
      busy = true;
    }
    for (Outgoing& o : b.TakeOutgoing()) {
      a.OnDatagram(now, b_address, o.bytes);
      busy = true;
    }
    a.TakeEvents();
    b.TakeEvents();
  }
}

void BM_TurnWithOneActiveConnection(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  absl::Time now = absl::FromUnixSeconds(1'700'000'000);
  Endpoint server(now, Options(true, n));
  Endpoint client(now, Options(false, n));
  std::vector<ConnectionId> ids;
  for (size_t i = 0; i < n; ++i) {
    ids.push_back(*client.Connect(now, kServer));
    // Spread over a second: timers out of phase, as a real server's are.
    now += absl::Seconds(1) / static_cast<double>(n);
    Shuttle(now, client, kClient, server, kServer);
  }
  if (server.open_connections() != n) {
    state.SkipWithError("not every connection was established");
    return;
  }
  uint64_t turns = 0;
  const std::string message(100, 'x');
  for (auto _ : state) {
    // One message on one connection, delivered and acknowledged, with the
    // per-turn calls of a runtime on both sides.
    now += absl::Microseconds(50);
    const ConnectionId id = ids[turns++ % n];
    client.Send(now, id, 0, DeliveryMode::kReliableOrdered, message).IgnoreError();
    for (Endpoint* e : {&client, &server}) {
      if (e->NextTimeout() <= now) e->OnTimeout(now);
    }
    Shuttle(now, client, kClient, server, kServer);
    benchmark::DoNotOptimize(server.NextTimeout());
  }
  state.counters["connections"] = static_cast<double>(n);
  state.counters["server_timer_wakeups"] = static_cast<double>(server.stats().timer_wakeups);
}
BENCHMARK(BM_TurnWithOneActiveConnection)->Arg(100)->Arg(1000)->Arg(10000)->Arg(100000)
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace udpmsg::reliable
