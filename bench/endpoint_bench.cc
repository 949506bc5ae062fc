// The cost of one endpoint turn as the number of connections grows: a
// datagram for one connection, then what a runtime does every turn
// (NextTimeout, OnTimeout when due, TakeEvents, TakeOutgoing). With timers
// in an ordered set and routing by hash, the cost should stay flat from 100
// to 100,000 connections (reliable/endpoint.h, "Timers").
//
//   ./bazelw run -c opt //bench:endpoint_bench
//
// BM_BulkInMemory: a bulk transfer between two endpoints, the datagrams
// handed over in memory the way the runtime hands them to and from its
// socket (TakeOutgoing into a DatagramBatch, OnDatagrams), on a simulated
// clock. It is the per-datagram user-space work of both ends with no
// kernel and no scheduler in it: run under callgrind, its instruction
// count per datagram is deterministic, a measure for a change that the
// shared machines' timing cannot resolve (docs/performance.md):
//
//   ./bazelw build -c opt //bench:endpoint_bench
//   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//     bazel-bin/bench/endpoint_bench --benchmark_filter=BM_BulkInMemory
//   callgrind_annotate /tmp/cg.out | head -30
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "reliable/datagram_batch.h"
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

// Hands every datagram in `from` to `to` (as one received batch), then
// clears it. Returns how many.
size_t Deliver(absl::Time now, DatagramBatch& from, const udp::SocketAddress& from_address,
               Endpoint& to, std::vector<ReceivedDatagram>& batch) {
  batch.clear();
  for (size_t i = 0; i < from.size(); ++i) batch.push_back({&from_address, from[i]});
  to.OnDatagrams(now, batch);
  const size_t n = from.size();
  from.Clear();
  return n;
}

// 64 MiB in messages of 1 MiB from a client to a server with 1472-byte
// datagrams (path MTU discovery settles there, as on a 1500-byte veth).
// Each turn: both ends' timers, the client's datagrams to the server, the
// server's to the client, 20 us of simulated time.
void BM_BulkInMemory(benchmark::State& state) {
  constexpr size_t kMessage = 1 << 20;
  constexpr size_t kTotal = 64 << 20;
  // Shared, as bench bulk sends (no copy per message), kept at most 8 MiB
  // ahead of what is acknowledged.
  const auto message = std::make_shared<const std::string>(kMessage, 'm');
  uint64_t datagrams = 0;
  uint64_t client_datagrams = 0;
  uint64_t turns = 0;
  for (auto _ : state) {
    absl::Time now = absl::FromUnixSeconds(1'700'000'000);
    EndpointOptions so = Options(true, 1);
    EndpointOptions co = Options(false, 1);
    for (EndpointOptions* o : {&so, &co}) {
      o->connection.pmtud = true;
      o->connection.max_udp_payload = 1472;
    }
    Endpoint server(now, so);
    Endpoint client(now, co);
    const ConnectionId id = *client.Connect(now, kServer);
    DatagramBatch to_server;
    DatagramBatch to_client;
    std::vector<ReceivedDatagram> batch;
    size_t sent = 0;
    size_t received = 0;
    for (int turn = 0; received < kTotal && turn < 10'000'000; ++turn, ++turns) {
      now += absl::Microseconds(20);
      while (sent < kTotal && client.IsEstablished(id) && client.QueuedBytes(id) < 8 * kMessage &&
             client.Send(now, id, 0, DeliveryMode::kReliableOrdered, MessageBytes(message, *message))
                 .ok()) {
        sent += kMessage;
      }
      for (Endpoint* e : {&client, &server}) {
        if (e->NextTimeout() <= now) e->OnTimeout(now);
      }
      client.TakeOutgoing(&to_server);
      client_datagrams += Deliver(now, to_server, kClient, server, batch);
      server.TakeOutgoing(&to_client);
      datagrams += Deliver(now, to_client, kServer, client, batch);
      for (const Event& e : server.TakeEvents()) {
        if (e.type == Event::Type::kMessage) received += e.message.size();
      }
      client.TakeEvents();
    }
    if (received < kTotal) {
      state.SkipWithError("the transfer did not finish");
      break;
    }
  }
  datagrams += client_datagrams;
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * kTotal);
  state.counters["client_datagrams"] =
      benchmark::Counter(static_cast<double>(client_datagrams), benchmark::Counter::kAvgIterations);
  state.counters["turns"] =
      benchmark::Counter(static_cast<double>(turns), benchmark::Counter::kAvgIterations);
  state.counters["datagrams"] =
      benchmark::Counter(static_cast<double>(datagrams), benchmark::Counter::kAvgIterations);
}
BENCHMARK(BM_BulkInMemory)->Unit(benchmark::kMillisecond)->Iterations(1);

}  // namespace
}  // namespace udpmsg::reliable
