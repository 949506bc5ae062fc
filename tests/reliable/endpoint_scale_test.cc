// Many connections on one reliable::Endpoint, in virtual time: timers of
// quiet connections share wakeups, and a turn does work for the connections
// that are due, not for every connection that exists (endpoint.h, "Timers").
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "reliable/endpoint.h"
#include "tests/reliable/endpoint_node.h"
#include "tests/reliable/scenario.h"
#include "tests/sim/simulator.h"
#include "tests/sim/seeds.h"

namespace udpmsg::testing {
namespace {

using reliable::ConnectionId;
using reliable::DeliveryMode;
using reliable::EndpointOptions;
using reliable::Event;

constexpr size_t kConnections = 2000;

// Two seeds each; one in the sanitized twins (they set UDPMSG_SIM_SEEDS),
// where 2,000 connections run 5-10x slower.
std::vector<uint64_t> Seeds(uint64_t first) {
  if (sim::ReducedSeeds()) return {first};
  return {first, first + 1};
}

EndpointOptions Many(EndpointOptions o) {
  o.max_connections = 2 * kConnections;
  o.max_unconfirmed_connections = 2 * kConnections;
  o.max_connections_per_address = 2 * kConnections;
  return o;
}

// A server and one client endpoint holding kConnections connections to it.
class Crowd {
 public:
  Crowd(uint64_t seed, const EndpointOptions& server, const EndpointOptions& client)
      : net_(seed, Lossy(), Many(server), Many(client)) {}
  explicit Crowd(uint64_t seed) : Crowd(seed, ServerOptions(seed), ClientOptions(seed)) {}

  // Connects every connection, one every 5 ms (so their timers are out of
  // phase, as a server's clients are); false if some did not.
  bool ConnectAll() {
    bool ok = true;
    const absl::Time start = net_.sim().now();
    for (size_t i = 0; i < kConnections; ++i) {
      net_.sim().At(start + absl::Milliseconds(5) * i, [this, &ok] {
        absl::StatusOr<ConnectionId> id =
            net_.client().endpoint().Connect(net_.sim().now(), net_.server().address());
        if (!id.ok()) {
          ok = false;
          return;
        }
        ids_.push_back(*id);
      });
    }
    return net_.sim().RunUntil(
               [&] {
                 return net_.client().Count(Event::Type::kConnected) == kConnections &&
                        net_.server().Count(Event::Type::kConnected) == kConnections;
               },
               start + absl::Seconds(40)) &&
           ok;
  }

  Pair& net() { return net_; }
  const std::vector<ConnectionId>& ids() const { return ids_; }

 private:
  Pair net_;
  std::vector<ConnectionId> ids_;
};

TEST(EndpointScaleTest, QuietConnectionsWakeTheServerAFewTimesASecond) {
  for (uint64_t seed : Seeds(1)) {
    SCOPED_TRACE(absl::StrCat("seed=", seed));
    Crowd crowd(seed);
    ASSERT_TRUE(crowd.ConnectAll());
    Pair& net = crowd.net();
    // Path MTU discovery probes each new connection's path for its first
    // seconds (exact timers: probes are traffic); then a minute of silence:
    // keepalives (5 s) keep every connection open, and their timers share
    // the endpoint's wakeups.
    net.sim().RunFor(absl::Seconds(60));
    const uint64_t server_before = net.server().wakeups();
    const uint64_t client_before = net.client().wakeups();
    const reliable::EndpointStats stats_before = net.server().endpoint().stats();
    net.sim().RunFor(absl::Seconds(60));
    const uint64_t server_wakeups = net.server().wakeups() - server_before;
    const uint64_t client_wakeups = net.client().wakeups() - client_before;
    const reliable::EndpointStats& stats = net.server().endpoint().stats();
    std::cout << kConnections << " quiet connections, 60 s: server woke " << server_wakeups
              << " times, client " << client_wakeups << "\n";
    EXPECT_LE(server_wakeups, 60u * 5) << stats.ToString();
    EXPECT_LE(client_wakeups, 60u * 5);
    EXPECT_EQ(net.server().endpoint().open_connections(), kConnections);
    EXPECT_EQ(net.client().endpoint().open_connections(), kConnections);
    EXPECT_EQ(net.server().Count(Event::Type::kClosed), 0u);
    // Every connection did hear from its peer: keepalives were sent.
    EXPECT_GE(stats.datagrams_received - stats_before.datagrams_received, kConnections * 60 / 6);
  }
}

// With keepalives shorter than the coalescing horizon (chat's 2.5 s), the
// server leaves them to its clients: a client's ping reaches it (jitter
// included) before its own keepalive would fire, so a quiet minute costs the
// server a receive and an ack per ping and almost no timer of its own. When
// both sides kept the same interval, a ping arriving a little late let the
// server's keepalive fire first, and from then on the server pinged every
// connection itself: a timer wake-up and a second receive per exchange.
TEST(EndpointScaleTest, TheServerLeavesShortKeepalivesToItsClients) {
  for (uint64_t seed : Seeds(4)) {
    SCOPED_TRACE(absl::StrCat("seed=", seed));
    EndpointOptions server = ServerOptions(seed);
    EndpointOptions client = ClientOptions(seed);
    for (EndpointOptions* o : {&server, &client}) {
      o->connection.keepalive = absl::Milliseconds(2500);
      o->connection.idle_timeout = absl::Seconds(10);
      o->connection.pmtud = false;  // probes are traffic of their own
    }
    Crowd crowd(seed, server, client);
    ASSERT_TRUE(crowd.ConnectAll());
    Pair& net = crowd.net();
    net.sim().RunFor(absl::Seconds(10));
    const reliable::EndpointStats before = net.server().endpoint().stats();
    net.sim().RunFor(absl::Seconds(60));
    const reliable::EndpointStats& after = net.server().endpoint().stats();
    const uint64_t fired = after.timers_fired - before.timers_fired;
    const uint64_t received = after.datagrams_received - before.datagrams_received;
    std::cout << kConnections << " quiet connections, 2.5 s keepalive, 60 s: server timers fired "
              << fired << ", datagrams received " << received << "\n";
    // 24 pings per connection a minute arrive and are answered...
    EXPECT_GE(received, kConnections * 23);
    EXPECT_LE(received, kConnections * 25);
    // ...and the server's own timers (ack delays aside) stay quiet.
    EXPECT_LE(fired, kConnections) << after.ToString();
    EXPECT_EQ(net.server().endpoint().open_connections(), kConnections);
    EXPECT_EQ(net.server().Count(Event::Type::kClosed), 0u);
  }
}

TEST(EndpointScaleTest, ABusyConnectionAmongQuietOnesFiresOnlyItsOwnTimers) {
  const uint64_t seed = 3;
  EndpointOptions server = ServerOptions(seed);
  EndpointOptions client = ClientOptions(seed);
  // Quiet connections have nothing due for the whole exchange.
  for (EndpointOptions* o : {&server, &client}) {
    o->connection.keepalive = absl::Minutes(10);
    o->connection.idle_timeout = absl::Minutes(20);
  }
  Crowd crowd(seed, server, client);
  ASSERT_TRUE(crowd.ConnectAll());
  Pair& net = crowd.net();
  net.sim().RunFor(absl::Seconds(5));  // handshake leftovers (ack delays) settle
  const reliable::EndpointStats before = net.server().endpoint().stats();
  const ConnectionId busy = crowd.ids()[kConnections / 2];
  constexpr int kMessages = 300;
  for (int i = 0; i < kMessages; ++i) {
    net.sim().At(net.sim().now() + absl::Milliseconds(10) * i, [&net, busy, seed, i] {
      ASSERT_TRUE(net.client().endpoint()
                      .Send(net.sim().now(), busy, 1, DeliveryMode::kReliableOrdered,
                            Payload(seed, i, 3000))
                      .ok());
    });
  }
  ASSERT_TRUE(net.sim().RunUntil(
      [&] { return Messages(net.server(), 1).size() == kMessages; },
      net.sim().now() + absl::Seconds(30)));
  const reliable::EndpointStats& after = net.server().endpoint().stats();
  const uint64_t wakeups = after.timer_wakeups - before.timer_wakeups;
  const uint64_t fired = after.timers_fired - before.timers_fired;
  ASSERT_GT(wakeups, 0u);  // the busy connection's own ack and loss timers
  // Each wakeup ran the busy connection and nothing else.
  EXPECT_EQ(fired, wakeups) << after.ToString();
  EXPECT_EQ(net.server().endpoint().open_connections(), kConnections);
}

// The endpoint's next deadline is the earliest of its connections' (filed
// when each was touched), through handshakes, traffic, closes and reaping.
TEST(EndpointScaleTest, NextTimeoutFollowsEveryConnectionThroughItsLife) {
  const uint64_t seed = 4;
  Crowd crowd(seed);
  ASSERT_TRUE(crowd.ConnectAll());
  Pair& net = crowd.net();
  // Close a third, send on a third, leave a third quiet.
  for (size_t i = 0; i < kConnections; ++i) {
    const ConnectionId id = crowd.ids()[i];
    if (i % 3 == 0) {
      ASSERT_TRUE(net.client().endpoint().Close(net.sim().now(), id, "bye").ok());
    } else if (i % 3 == 1) {
      ASSERT_TRUE(net.client().endpoint()
                      .Send(net.sim().now(), id, 0, DeliveryMode::kReliableOrdered, "x")
                      .ok());
    }
  }
  net.sim().PollAll();
  ASSERT_TRUE(net.sim().RunUntil(
      [&] { return net.server().Count(Event::Type::kClosed) == (kConnections + 2) / 3; },
      net.sim().now() + absl::Seconds(30)));
  // Closed connections drain and are removed by their own timers.
  net.sim().RunFor(absl::Seconds(20));
  const size_t open = kConnections - (kConnections + 2) / 3;
  EXPECT_EQ(net.server().endpoint().open_connections(), open);
  EXPECT_EQ(net.server().endpoint().connection_count(), open);
  EXPECT_EQ(net.client().endpoint().connection_count(), open);
  EXPECT_EQ(Messages(net.server(), 0).size(), (kConnections + 1) / 3);
  // Quiet from here: nothing is due before the next keepalive.
  const absl::Time next = net.server().endpoint().NextTimeout();
  EXPECT_GT(next, net.sim().now());
  EXPECT_LE(next, net.sim().now() + absl::Seconds(6));
}

}  // namespace
}  // namespace udpmsg::testing
