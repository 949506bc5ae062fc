// Scenario tests of reliable::Endpoint in the deterministic simulator: every
// run is a pure function of its seed, printed on failure.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "impairment/model.h"
#include "proto/codec.h"
#include "proto/frames.h"
#include "reliable/deterministic_rng.h"
#include "reliable/endpoint.h"
#include "tests/reliable/endpoint_node.h"
#include "tests/reliable/scenario.h"
#include "tests/sim/simulator.h"
#include "udp/socket_address.h"
#include "tests/sim/seeds.h"

namespace udpmsg::testing {
namespace {

using reliable::ConnectionId;
using reliable::DeliveryMode;
using reliable::EndpointOptions;
using reliable::Event;

TEST(EndpointSimTest, HandshakeThenMessageAndReceiptOnPerfectLink) {
  Pair net(1, Lossy(0, 0, 0));
  const ConnectionId id = net.Connect();
  ASSERT_TRUE(net.client().endpoint()
                  .Send(net.sim().now(), id, 3, DeliveryMode::kReliableOrdered, "hello")
                  .ok());
  net.sim().PollAll();
  ASSERT_TRUE(net.sim().RunUntil([&] { return net.client().Count(Event::Type::kAcked) == 1; },
                                 net.sim().now() + absl::Seconds(5)));
  std::vector<const Event*> got = Messages(net.server(), 3);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0]->message, "hello");
  EXPECT_EQ(got[0]->mode, DeliveryMode::kReliableOrdered);
  EXPECT_EQ(got[0]->peer, net.client().address());
  EXPECT_EQ(net.server().endpoint().stats().accepted, 1u);
  EXPECT_EQ(net.server().endpoint().stats().challenges_sent, 1u);
  // The RTT estimate sees the 2 x 10 ms path (plus at most 2 x 2 ms jitter).
  absl::StatusOr<reliable::ConnectionStats> stats = net.client().endpoint().Stats(id);
  ASSERT_TRUE(stats.ok());
  EXPECT_GE(stats->min_rtt, absl::Milliseconds(20)) << stats->ToString();
  EXPECT_LE(stats->min_rtt, absl::Milliseconds(24))
      << stats->ToString();
}

// Sends `big` bytes as one message followed by `small` small messages, all
// reliable-ordered on channel 1, and checks exact, in-order, once-only
// delivery and one receipt per message.
// With `receive_batching`, both ends read their datagrams in batches
// (Simulator::SetReceiveBatching: Endpoint::OnDatagrams, as the runtime).
void RunOrderedTransfer(uint64_t seed, const impairment::ImpairmentConfig& link,
                        const std::vector<size_t>& big, int small, absl::Duration limit,
                        absl::Duration receive_batching = absl::ZeroDuration()) {
  SCOPED_TRACE(absl::StrCat("seed=", seed));
  Pair net(seed, link);
  ASSERT_TRUE(net.sim().SetReceiveBatching(net.server().address(), receive_batching).ok());
  ASSERT_TRUE(net.sim().SetReceiveBatching(net.client().address(), receive_batching).ok());
  const ConnectionId id = net.Connect();
  ASSERT_NE(id, 0u);
  std::vector<std::string> sent;
  for (size_t b : big) sent.push_back(Payload(seed, sent.size(), b));
  reliable::DeterministicRng sizes(seed, 99);
  for (int i = 0; i < small; ++i) {
    sent.push_back(Payload(seed, sent.size(), 1 + sizes.Uniform(200)));
  }
  for (const std::string& m : sent) {
    absl::StatusOr<uint64_t> seq =
        net.client().endpoint().Send(net.sim().now(), id, 1, DeliveryMode::kReliableOrdered, m);
    ASSERT_TRUE(seq.ok()) << seq.status();
  }
  net.sim().PollAll();
  const bool done = net.sim().RunUntil(
      [&] { return net.client().Count(Event::Type::kAcked) == sent.size(); },
      net.sim().now() + limit);
  std::vector<const Event*> got = Messages(net.server(), 1);
  if (!done) {
    absl::StatusOr<reliable::ConnectionStats> stats = net.client().endpoint().Stats(id);
    const Event* closed = net.client().Find(Event::Type::kClosed);
    FAIL() << "delivered " << got.size() << " of " << sent.size() << "; client "
           << (stats.ok() ? stats->ToString() : std::string(stats.status().message()))
           << (closed != nullptr ? absl::StrCat("; closed: ", closed->reason) : "");
  }
  ASSERT_EQ(got.size(), sent.size())
      << "server " << net.server().endpoint().Stats(net.ServerConnection())->ToString()
      << " events " << net.server().events().size() << " endpoint "
      << net.server().endpoint().stats().ToString();
  for (size_t i = 0; i < sent.size(); ++i) {
    ASSERT_EQ(got[i]->sequence, i);
    ASSERT_TRUE(got[i]->message == sent[i]) << "message " << i << " corrupted";
  }
  EXPECT_EQ(net.client().Count(Event::Type::kClosed), 0u);
  EXPECT_EQ(net.server().Count(Event::Type::kClosed), 0u);
  if (receive_batching > absl::ZeroDuration()) {
    // Batches did form: the receiver ran its connection for fewer of the
    // datagrams it got than one by one (one run each, hellos aside).
    const reliable::EndpointStats& server = net.server().endpoint().stats();
    EXPECT_LT(server.received_flushes, server.datagrams_received - server.hellos)
        << server.ToString();
  }
}

// The same transfers with both ends reading in batches (2 ms of arrivals
// on a 10 ms path with 2 ms jitter: reordered, duplicated and lost
// datagrams share batches with the rest).
class BatchedSeedTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(BatchedSeedTest, OneMebibytePlusAThousandSmallUnderLossReorderDupInReceiveBatches) {
  RunOrderedTransfer(GetParam(), Lossy(0.20, 0.05, 0.02), {1 << 20}, 1'000, absl::Minutes(20),
                     absl::Milliseconds(2));
}

INSTANTIATE_TEST_SUITE_P(Seeds, BatchedSeedTest,
                         ::testing::Range<uint64_t>(1, 1 + sim::SeedCount(20)));

// One seed per test instance, so Bazel shards the 200 runs across cores.
class OrderedSeedTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(OrderedSeedTest, OneAndSixteenMebibytesPlusTenThousandSmallUnderLossReorderDup) {
  RunOrderedTransfer(GetParam(), Lossy(0.20, 0.05, 0.02), {1 << 20, 16 << 20}, 10'000,
                     absl::Minutes(60));
}

INSTANTIATE_TEST_SUITE_P(Seeds, OrderedSeedTest, ::testing::Range<uint64_t>(1, 1 + sim::SeedCount(200)));

TEST(EndpointSimTest, FiftyHandshakesAtThirtyPercentLossBothWaysAllComplete) {
  const uint64_t seed = 50;
  SCOPED_TRACE(absl::StrCat("seed=", seed));
  sim::Simulator sim(seed, kStart);
  EndpointNode server(kStart, Addr("10.0.0.1:4000"), ServerOptions(seed));
  ASSERT_TRUE(sim.AddNode(server.address(), &server).ok());
  std::vector<std::unique_ptr<EndpointNode>> clients;
  for (int i = 0; i < 50; ++i) {
    clients.push_back(std::make_unique<EndpointNode>(
        kStart, Addr(absl::StrCat("10.0.1.", i + 1, ":5000")), ClientOptions(seed + i)));
    EndpointNode& c = *clients.back();
    ASSERT_TRUE(sim.AddNode(c.address(), &c).ok());
    ASSERT_TRUE(sim.SetLink(c.address(), server.address(), Lossy(0.3, 0, 0)).ok());
    ASSERT_TRUE(sim.SetLink(server.address(), c.address(), Lossy(0.3, 0, 0)).ok());
    ASSERT_TRUE(c.endpoint().Connect(sim.now(), server.address()).ok());
  }
  sim.PollAll();
  auto all_connected = [&] {
    for (auto& c : clients) {
      if (c->Count(Event::Type::kConnected) != 1) return false;
    }
    return server.Count(Event::Type::kConnected) == clients.size();
  };
  EXPECT_TRUE(sim.RunUntil(all_connected, kStart + absl::Seconds(60)));
  for (auto& c : clients) {
    EXPECT_EQ(c->Count(Event::Type::kConnected), 1u) << c->address();
    EXPECT_EQ(c->Count(Event::Type::kClosed), 0u)
        << c->address() << ": "
        << (c->Find(Event::Type::kClosed) ? c->Find(Event::Type::kClosed)->reason : "")
        << " peer=" << (c->Find(Event::Type::kClosed) ? c->Find(Event::Type::kClosed)->peer.ToString() : "")
        << " hellos=" << c->endpoint().stats().hellos << " accepted=" << c->endpoint().stats().accepted;
  }
  EXPECT_EQ(server.endpoint().open_connections(), clients.size());
}

TEST(EndpointSimTest, TenMegabytesAcrossTwoSecondBlackoutsCompletes) {
  impairment::ImpairmentConfig link = Lossy(0.01, 0, 0);
  link.rate_bps = 50'000'000;
  link.queue_limit_bytes = 256 * 1024;
  link.blackouts = {{absl::Seconds(1), absl::Seconds(3)}, {absl::Seconds(5), absl::Seconds(7)}};
  RunOrderedTransfer(4242, link, {10'000'000}, 10, absl::Minutes(2));
}

// Sends `message` from the client as the first message of its connection
// `id` (channel 1, reliable ordered) and runs until it is acknowledged;
// false when the send fails or `limit` of virtual time passes first.
bool SendAndRunUntilAcked(Pair& net, ConnectionId id, const std::string& message,
                          absl::Duration limit) {
  if (!net.client()
           .endpoint()
           .Send(net.sim().now(), id, 1, DeliveryMode::kReliableOrdered, message)
           .ok()) {
    return false;
  }
  net.sim().PollAll();
  return net.sim().RunUntil([&] { return net.client().Count(Event::Type::kAcked) == 1; },
                            net.sim().now() + limit);
}

// ConnectionStats::congestion_reductions counts the controller's cuts for
// loss (it stayed 0 while nothing filled it in): none on a path that loses
// nothing but path MTU probes, at most one per lost packet where NewReno
// halves its window, and BBR's rounds of excessive loss where more than a
// fifth of the packets are lost.
TEST(EndpointSimTest, StatsCountTheCongestionControllersCutsForLoss) {
  struct Case {
    const char* congestion;
    double loss;
  } cases[] = {{"newreno", 0}, {"bbr", 0}, {"newreno", 0.05}, {"bbr", 0.3}};
  for (const Case& c : cases) {
    const uint64_t seed = 43;
    SCOPED_TRACE(absl::StrCat("seed=", seed, " ", c.congestion, " loss=", c.loss));
    EndpointOptions client = ClientOptions(seed);
    client.connection.congestion_control =
        reliable::ParseCongestionControl(c.congestion).value();
    Pair net(seed, Lossy(c.loss, 0, 0), ServerOptions(seed), client);
    const ConnectionId id = net.Connect();
    ASSERT_TRUE(SendAndRunUntilAcked(net, id, Payload(seed, 0, 1 << 20), absl::Seconds(120)));
    const reliable::ConnectionStats s = *net.client().endpoint().Stats(id);
    if (c.loss == 0) {
      EXPECT_EQ(s.congestion_reductions, 0u) << s.ToString();
    } else {
      EXPECT_GT(s.congestion_reductions, 0u) << s.ToString();
      EXPECT_LE(s.congestion_reductions, s.packets_lost) << s.ToString();
    }
  }
}

// A path change starts a new controller; the count of cuts is the
// connection's, so it never goes back (found in review: it fell to 0).
TEST(EndpointSimTest, CongestionReductionsOutliveAPathChange) {
  const uint64_t seed = 43;
  SCOPED_TRACE(absl::StrCat("seed=", seed));
  Pair net(seed, Lossy(0.05, 0, 0), ServerOptions(seed), ClientOptions(seed));
  const ConnectionId id = net.Connect();
  ASSERT_TRUE(SendAndRunUntilAcked(net, id, Payload(seed, 0, 1 << 20), absl::Seconds(120)));
  const uint64_t before = net.client().endpoint().Stats(id)->congestion_reductions;
  ASSERT_GT(before, 0u);
  net.client().endpoint().OnLocalAddressChanged(net.sim().now());
  EXPECT_EQ(net.client().endpoint().Stats(id)->congestion_reductions, before);
}

// The client of `net` idles out in 1 s (IdleClient); ServerHearsTheClose
// then heals the path, sends from the server and returns the server's close
// (nullptr, a failure, when none comes within 5 s).
EndpointOptions IdleClient(uint64_t seed) {
  EndpointOptions client = ClientOptions(seed);
  client.connection.idle_timeout = absl::Seconds(1);
  return client;
}

const Event* ServerHearsTheClose(Pair& net) {
  net.SetLinks(Lossy(0, 0, 0));
  EXPECT_TRUE(net.server()
                  .endpoint()
                  .Send(net.sim().now(), net.ServerConnection(), 1,
                        DeliveryMode::kReliableOrdered, "still there?")
                  .ok());
  net.sim().PollAll();
  EXPECT_TRUE(net.sim().RunUntil([&] { return net.server().Count(Event::Type::kClosed) == 1; },
                                 net.sim().now() + absl::Seconds(5)));
  return net.server().Find(Event::Type::kClosed);
}

// A connection that closed as idle sends nothing (the path is silent), but
// answers the peer's next packet with a Close of its own code: the peer
// learns that this side gave up on the path (CloseReason::kIdleTimeout,
// by the peer), not that its application closed (an empty Close read as
// kClosedByPeer).
TEST(EndpointSimTest, AnIdleTimedOutConnectionAnswersThePeerWithItsTimeout) {
  const uint64_t seed = 47;
  SCOPED_TRACE(absl::StrCat("seed=", seed));
  Pair net(seed, Lossy(0, 0, 0), ServerOptions(seed), IdleClient(seed));
  net.Connect();
  impairment::ImpairmentConfig dead;
  dead.loss = 1.0;
  net.SetLinks(dead);
  ASSERT_TRUE(net.sim().RunUntil([&] { return net.client().Count(Event::Type::kClosed) == 1; },
                                 net.sim().now() + absl::Seconds(5)));
  const Event* mine = net.client().Find(Event::Type::kClosed);
  EXPECT_EQ(mine->close_reason, reliable::CloseReason::kIdleTimeout);
  EXPECT_FALSE(mine->by_peer);
  EXPECT_EQ(net.server().Count(Event::Type::kClosed), 0u);  // it heard nothing
  const Event* theirs = ServerHearsTheClose(net);
  ASSERT_NE(theirs, nullptr);
  EXPECT_TRUE(theirs->by_peer);
  EXPECT_EQ(theirs->close_reason, reliable::CloseReason::kIdleTimeout);
  EXPECT_THAT(theirs->reason, ::testing::HasSubstr("no packets from 10.0.0.1:4000"));
}

// An application's Close(flush=true) still flushing when the connection
// idles out keeps its own frame: the peer's next packet is answered with
// the application's reason, not the idle timeout.
TEST(EndpointSimTest, AFlushingCloseThatIdlesOutAnswersWithItsOwnReason) {
  const uint64_t seed = 53;
  SCOPED_TRACE(absl::StrCat("seed=", seed));
  Pair net(seed, Lossy(0, 0, 0), ServerOptions(seed), IdleClient(seed));
  const ConnectionId id = net.Connect();
  impairment::ImpairmentConfig dead;
  dead.loss = 1.0;
  net.SetLinks(dead);
  ASSERT_TRUE(net.client()
                  .endpoint()
                  .Send(net.sim().now(), id, 1, DeliveryMode::kReliableOrdered, "last words")
                  .ok());
  ASSERT_TRUE(net.client().endpoint().Close(net.sim().now(), id, "bye for now", true).ok());
  net.sim().PollAll();
  ASSERT_TRUE(net.sim().RunUntil([&] { return net.client().Count(Event::Type::kClosed) == 1; },
                                 net.sim().now() + absl::Seconds(5)));
  EXPECT_EQ(net.client().Find(Event::Type::kClosed)->close_reason,
            reliable::CloseReason::kIdleTimeout);
  const Event* theirs = ServerHearsTheClose(net);
  ASSERT_NE(theirs, nullptr);
  EXPECT_TRUE(theirs->by_peer);
  EXPECT_EQ(theirs->close_reason, reliable::CloseReason::kClosedByPeer);
  EXPECT_EQ(theirs->reason, "bye for now");
}

// Acks per data packet of an 8 MiB transfer over a clean 1 Gbit/s path
// with a 0.2 ms RTT, with the sender asking for up to `max_ack_threshold`.
double AcksPerDataPacket(uint32_t max_ack_threshold, uint32_t* peer_threshold) {
  impairment::ImpairmentConfig link;
  link.delay = absl::Microseconds(100);
  link.rate_bps = 1'000'000'000;
  link.queue_limit_bytes = 4 << 20;
  EndpointOptions client = ClientOptions(7);
  client.connection.max_ack_threshold = max_ack_threshold;
  Pair net(7, link, ServerOptions(7), client);
  const ConnectionId id = net.Connect();
  const std::string message = Payload(7, 0, 8 << 20);
  EXPECT_TRUE(SendAndRunUntilAcked(net, id, message, absl::Seconds(30)));
  std::vector<const Event*> got = Messages(net.server(), 1);
  EXPECT_TRUE(got.size() == 1 && got[0]->message == message);
  const reliable::ConnectionStats sender = *net.client().endpoint().Stats(id);
  const reliable::ConnectionStats receiver =
      *net.server().endpoint().Stats(net.ServerConnection());
  *peer_threshold = sender.peer_ack_threshold;
  return static_cast<double>(receiver.acks_sent) / static_cast<double>(sender.packets_sent);
}

TEST(EndpointSimTest, AckFrequencyCutsAcksOnAFastCleanPath) {
  uint32_t threshold = 0;
  const double every_second = AcksPerDataPacket(2, &threshold);
  EXPECT_EQ(threshold, 2u);
  // One ACK per two packets: the window-edge request for an immediate ACK
  // is one at a time (it drew an ACK for nearly every packet before).
  EXPECT_GE(every_second, 0.45);
  EXPECT_LE(every_second, 0.55);
  const double adaptive = AcksPerDataPacket(10, &threshold);
  EXPECT_EQ(threshold, 10u);  // the window grew far past 40 packets
  EXPECT_LE(adaptive, 0.15) << "every_second=" << every_second;
  // The default asks for up to one ACK per 32 packets (128+ packet windows).
  const double by_default = AcksPerDataPacket(reliable::ConnectionOptions{}.max_ack_threshold, &threshold);
  EXPECT_EQ(threshold, 32u);
  EXPECT_LE(by_default, 0.06) << "adaptive=" << adaptive;
  std::printf("acks per data packet: every second %.3f, up to 10 %.3f, up to 32 %.3f\n",
              every_second, adaptive, by_default);
}

TEST(EndpointSimTest, TotalLossMakesSenderGiveUpWithinBoundedTimeAndBytes) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE(absl::StrCat("seed=", seed));
    Pair net(seed, Lossy(0, 0, 0));
    const ConnectionId id = net.Connect();
    impairment::ImpairmentConfig dead;
    dead.loss = 1.0;
    net.SetLinks(dead);
    const absl::Time cut = net.sim().now();
    const uint64_t bytes_before = net.client().endpoint().stats().bytes_sent;
    ASSERT_TRUE(net.client().endpoint()
                    .Send(net.sim().now(), id, 0, DeliveryMode::kReliableOrdered,
                          std::string(4 << 20, 'x'))
                    .ok());
    net.sim().PollAll();
    ASSERT_TRUE(net.sim().RunUntil([&] { return net.client().Count(Event::Type::kClosed) == 1; },
                                   cut + absl::Seconds(60)));
    const Event* closed = net.client().Find(Event::Type::kClosed);
    EXPECT_FALSE(closed->by_peer);
    EXPECT_EQ(closed->close_reason, reliable::CloseReason::kPeerTimeout);
    EXPECT_THAT(closed->reason, ::testing::HasSubstr("10.0.0.1:4000"));
    // Bounded time: the peer timeout (10 s) plus one probe interval.
    EXPECT_LE(net.sim().now() - cut, absl::Seconds(12));
    // Bounded bytes: one initial window plus probes, far below the 4 MiB.
    const uint64_t spent = net.client().endpoint().stats().bytes_sent - bytes_before;
    EXPECT_LE(spent, 64u * 1024);
    // The server, hearing nothing, gives up too: its unanswered keepalive
    // trips the peer timeout, or else the idle timeout.
    ASSERT_TRUE(net.sim().RunUntil([&] { return net.server().Count(Event::Type::kClosed) == 1; },
                                   cut + absl::Seconds(60)));
    EXPECT_THAT(net.server().Find(Event::Type::kClosed)->close_reason,
                ::testing::AnyOf(reliable::CloseReason::kPeerTimeout,
                                 reliable::CloseReason::kIdleTimeout));
    EXPECT_LE(net.sim().now() - cut, absl::Seconds(31));
  }
}

// The probe timeout backs off to at most peer_timeout / 8: a sender whose
// peer went silent probes many times before it gives up, so a few lost acks
// in a row on a lossy path do not end a live connection (uncapped, a 55 ms
// PTO had probed seven times in the 10 s; see SentPacketsOptions).
TEST(EndpointSimTest, SilentPeerIsProbedEveryFewSecondsUntilThePeerTimeout) {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    SCOPED_TRACE(absl::StrCat("seed=", seed));
    Pair net(seed, Lossy(0, 0, 0));
    const ConnectionId id = net.Connect();
    ASSERT_TRUE(net.client().endpoint()
                    .Send(net.sim().now(), id, 0, DeliveryMode::kReliableOrdered,
                          std::string(64 << 10, 'x'))
                    .ok());
    net.sim().PollAll();
    impairment::ImpairmentConfig dead;
    dead.loss = 1.0;
    net.SetLinks(dead);
    const absl::Time cut = net.sim().now();
    const absl::Duration peer_timeout = reliable::ConnectionOptions{}.peer_timeout;
    uint64_t probes = 0;
    absl::Time last_probe = cut;
    absl::Duration longest_gap;
    ASSERT_TRUE(net.sim().RunUntil(
        [&] {
          absl::StatusOr<reliable::ConnectionStats> s = net.client().endpoint().Stats(id);
          if (s.ok() && s->probes > probes) {
            probes = s->probes;
            longest_gap = std::max(longest_gap, net.sim().now() - last_probe);
            last_probe = net.sim().now();
          }
          return net.client().Count(Event::Type::kClosed) == 1;
        },
        cut + absl::Seconds(60)));
    EXPECT_EQ(net.client().Find(Event::Type::kClosed)->close_reason,
              reliable::CloseReason::kPeerTimeout);
    // The peer timeout decides, not max_probes (ten probes had come within
    // 9.2 s here).
    EXPECT_THAT(net.client().Find(Event::Type::kClosed)->reason,
                ::testing::HasSubstr("acknowledged nothing for 10s"));
    EXPECT_GE(probes, 9u);
    EXPECT_LE(longest_gap, peer_timeout / 8 + absl::Milliseconds(1));
    EXPECT_LE(net.sim().now() - cut, peer_timeout + absl::Milliseconds(100));
  }
}

TEST(EndpointSimTest, KeepaliveHoldsAnIdleConnectionOpen) {
  Pair net(5, Lossy(0.05, 0, 0));
  net.Connect();
  net.sim().RunFor(absl::Minutes(3));
  EXPECT_EQ(net.client().Count(Event::Type::kClosed), 0u);
  EXPECT_EQ(net.server().Count(Event::Type::kClosed), 0u);
}

TEST(EndpointSimTest, GracefulCloseDeliversEverythingThenClosesBothSides) {
  Pair net(6, Lossy(0.1, 0.05, 0.02));
  const ConnectionId id = net.Connect();
  for (int i = 0; i < 300; ++i) {
    ASSERT_TRUE(net.client().endpoint()
                    .Send(net.sim().now(), id, 0, DeliveryMode::kReliableOrdered,
                          Payload(6, i, 3000))
                    .ok());
  }
  ASSERT_TRUE(net.client().endpoint().Close(net.sim().now(), id, "bye", /*flush=*/true).ok());
  net.sim().PollAll();
  ASSERT_TRUE(net.sim().RunUntil(
      [&] {
        return net.server().Count(Event::Type::kClosed) == 1 &&
               net.client().Count(Event::Type::kClosed) == 1;
      },
      net.sim().now() + absl::Seconds(60)));
  EXPECT_EQ(Messages(net.server(), 0).size(), 300u);
  const Event* closed = net.server().Find(Event::Type::kClosed);
  EXPECT_TRUE(closed->by_peer);
  EXPECT_EQ(closed->reason, "bye");
  EXPECT_EQ(net.client().Count(Event::Type::kAcked), 300u);
}

// The client's Close is lost. The server, idle, pings after its keepalive,
// which the accepting side waits half a keepalive longer for
// (Connection::KeepaliveAfter) and counts from its own last packet; the
// client, draining, must still be there to answer with its Close, or the
// server ends with a peer timeout instead of the client's reason. The
// drain used to last the client's own keepalive and two PTOs: over before
// the server's ping.
TEST(EndpointSimTest, AClientsLostCloseIsAnsweredWhenTheServerPings) {
  Pair net(6, Lossy());
  const ConnectionId id = net.Connect();
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(net.client().endpoint()
                    .Send(net.sim().now(), id, 0, DeliveryMode::kReliableOrdered,
                          Payload(6, i, 3000))
                    .ok());
  }
  net.sim().PollAll();
  ASSERT_TRUE(net.sim().RunUntil([&] { return net.client().Count(Event::Type::kAcked) == 20; },
                                 net.sim().now() + absl::Seconds(10)));
  // Both sides fall quiet (the server's last acks arrive; the client's
  // keepalive is seconds away).
  net.sim().RunFor(absl::Milliseconds(500));
  // Only the Close is lost: the link is cut for the moment it leaves.
  impairment::ImpairmentConfig cut = Lossy();
  cut.loss = 1.0;
  ASSERT_TRUE(net.sim().SetLink(net.client().address(), net.server().address(), cut).ok());
  ASSERT_TRUE(net.client().endpoint().Close(net.sim().now(), id, "bye", /*flush=*/true).ok());
  net.sim().PollAll();
  ASSERT_TRUE(net.sim().RunUntil([&] { return net.client().Count(Event::Type::kClosed) == 1; },
                                 net.sim().now() + absl::Seconds(1)));
  net.sim().RunFor(absl::Milliseconds(500));
  ASSERT_EQ(net.server().Count(Event::Type::kClosed), 0u);
  ASSERT_TRUE(net.sim().SetLink(net.client().address(), net.server().address(), Lossy()).ok());
  ASSERT_TRUE(net.sim().RunUntil([&] { return net.server().Count(Event::Type::kClosed) == 1; },
                                 net.sim().now() + absl::Seconds(30)));
  const Event* closed = net.server().Find(Event::Type::kClosed);
  EXPECT_TRUE(closed->by_peer);
  EXPECT_EQ(closed->reason, "bye");
}

TEST(EndpointSimTest, UnreliableSequencedNeverDeliversStaleAndReliableUnorderedDeliversAllOnce) {
  const uint64_t seed = 7;
  SCOPED_TRACE(absl::StrCat("seed=", seed));
  Pair net(seed, Lossy(0.2, 0.2, 0.05));
  const ConnectionId id = net.Connect();
  for (int i = 0; i < 2000; ++i) {
    ASSERT_TRUE(net.client().endpoint()
                    .Send(net.sim().now(), id, 2, DeliveryMode::kUnreliableSequenced,
                          absl::StrCat(i))
                    .ok());
    ASSERT_TRUE(net.client().endpoint()
                    .Send(net.sim().now(), id, 4, DeliveryMode::kReliableUnordered,
                          absl::StrCat(i))
                    .ok());
    net.sim().PollAll();
    net.sim().RunFor(absl::Milliseconds(1));
  }
  ASSERT_TRUE(net.sim().RunUntil([&] { return net.client().Count(Event::Type::kAcked) == 2000; },
                                 net.sim().now() + absl::Seconds(60)));
  std::vector<const Event*> sequenced = Messages(net.server(), 2);
  ASSERT_FALSE(sequenced.empty());
  EXPECT_LT(sequenced.size(), 2000u);  // 20% loss: some are gone for good
  for (size_t i = 1; i < sequenced.size(); ++i) {
    ASSERT_GT(sequenced[i]->sequence, sequenced[i - 1]->sequence);
    ASSERT_EQ(sequenced[i]->message, absl::StrCat(sequenced[i]->sequence));
  }
  std::vector<const Event*> unordered = Messages(net.server(), 4);
  ASSERT_EQ(unordered.size(), 2000u);
  std::vector<bool> seen(2000, false);
  for (const Event* e : unordered) {
    ASSERT_LT(e->sequence, 2000u);
    ASSERT_FALSE(seen[e->sequence]) << "delivered twice: " << e->sequence;
    seen[e->sequence] = true;
    ASSERT_EQ(e->message, absl::StrCat(e->sequence));
  }
}

TEST(EndpointSimTest, PacketNumbersNearTheLimitCloseInsteadOfWrapping) {
  Pair net(8, Lossy(0, 0, 0));
  reliable::TestHooks hooks;
  hooks.initial_packet_number = proto::kMaxSequenceNumber - 200;
  net.client().endpoint().SetTestHooksForTesting(hooks);
  const ConnectionId id = net.Connect();
  // Crossing 2^32 on the way would break a 32-bit implementation; here it
  // must not matter, and running out closes the connection with a reason.
  for (int i = 0; i < 400; ++i) {
    ASSERT_TRUE(net.client().endpoint()
                    .Send(net.sim().now(), id, 0, DeliveryMode::kReliableOrdered,
                          std::string(1000, 'p'))
                    .ok());
  }
  net.sim().PollAll();
  ASSERT_TRUE(net.sim().RunUntil([&] { return net.client().Count(Event::Type::kClosed) == 1; },
                                 net.sim().now() + absl::Seconds(30)));
  EXPECT_EQ(net.client().Find(Event::Type::kClosed)->close_reason,
            reliable::CloseReason::kNumberSpaceExhausted);
  // Everything acknowledged before the end arrived once and in order.
  std::vector<const Event*> got = Messages(net.server(), 0);
  EXPECT_GT(got.size(), 100u);
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i]->sequence, i);
}

TEST(EndpointSimTest, PacketNumbersCrossTheThirtyTwoBitBoundary) {
  Pair net(9, Lossy(0.1, 0.05, 0.02));
  reliable::TestHooks hooks;
  hooks.initial_packet_number = (uint64_t{1} << 32) - 50;
  net.client().endpoint().SetTestHooksForTesting(hooks);
  net.server().endpoint().SetTestHooksForTesting(hooks);
  const ConnectionId id = net.Connect();
  for (int i = 0; i < 500; ++i) {
    ASSERT_TRUE(net.client().endpoint()
                    .Send(net.sim().now(), id, 0, DeliveryMode::kReliableOrdered,
                          Payload(9, i, 900))
                    .ok());
  }
  net.sim().PollAll();
  ASSERT_TRUE(net.sim().RunUntil([&] { return net.client().Count(Event::Type::kAcked) == 500; },
                                 net.sim().now() + absl::Seconds(60)));
  std::vector<const Event*> got = Messages(net.server(), 0);
  ASSERT_EQ(got.size(), 500u);
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i]->message, Payload(9, i, 900));
}

}  // namespace
}  // namespace udpmsg::testing

namespace udpmsg::testing {
namespace {

TEST(EndpointSimTest, MessageSequencesCrossTheThirtyTwoBitBoundary) {
  const uint64_t first = (uint64_t{1} << 32) - 100;
  Pair net(11, Lossy(0.15, 0.05, 0.02));
  reliable::TestHooks hooks;
  hooks.initial_message_sequence = first;
  net.client().endpoint().SetTestHooksForTesting(hooks);
  net.server().endpoint().SetTestHooksForTesting(hooks);
  const ConnectionId id = net.Connect();
  const DeliveryMode modes[] = {DeliveryMode::kReliableOrdered, DeliveryMode::kReliableUnordered,
                                DeliveryMode::kUnreliableSequenced};
  for (int i = 0; i < 300; ++i) {
    for (int m = 0; m < 3; ++m) {
      absl::StatusOr<uint64_t> seq = net.client().endpoint().Send(
          net.sim().now(), id, m, modes[m], absl::StrCat(first + i));
      ASSERT_TRUE(seq.ok()) << seq.status();
      ASSERT_EQ(*seq, first + i);
    }
    net.sim().PollAll();
    net.sim().RunFor(absl::Milliseconds(1));
  }
  ASSERT_TRUE(net.sim().RunUntil([&] { return net.client().Count(Event::Type::kAcked) == 600; },
                                 net.sim().now() + absl::Seconds(60)));
  std::vector<const Event*> ordered = Messages(net.server(), 0);
  ASSERT_EQ(ordered.size(), 300u);
  for (size_t i = 0; i < ordered.size(); ++i) {
    ASSERT_EQ(ordered[i]->sequence, first + i);
    ASSERT_EQ(ordered[i]->message, absl::StrCat(first + i));
  }
  std::vector<const Event*> unordered = Messages(net.server(), 1);
  ASSERT_EQ(unordered.size(), 300u);
  std::vector<bool> seen(300, false);
  for (const Event* e : unordered) {
    ASSERT_GE(e->sequence, first);
    ASSERT_LT(e->sequence, first + 300);
    ASSERT_FALSE(seen[e->sequence - first]);
    seen[e->sequence - first] = true;
  }
  std::vector<const Event*> sequenced = Messages(net.server(), 2);
  ASSERT_FALSE(sequenced.empty());
  for (size_t i = 1; i < sequenced.size(); ++i) {
    ASSERT_GT(sequenced[i]->sequence, sequenced[i - 1]->sequence);  // across 2^32 too
  }
  EXPECT_GT(sequenced.back()->sequence, uint64_t{1} << 32);
}

TEST(EndpointSimTest, MessageSequenceSpaceRunsOutWithAnErrorInsteadOfWrapping) {
  const uint64_t first = proto::kMaxSequenceNumber - 5;
  Pair net(12, Lossy(0.1, 0, 0));
  reliable::TestHooks hooks;
  hooks.initial_message_sequence = first;
  net.client().endpoint().SetTestHooksForTesting(hooks);
  net.server().endpoint().SetTestHooksForTesting(hooks);
  const ConnectionId id = net.Connect();
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(net.client().endpoint()
                    .Send(net.sim().now(), id, 0, DeliveryMode::kReliableOrdered, "x")
                    .ok());
  }
  absl::StatusOr<uint64_t> sixth =
      net.client().endpoint().Send(net.sim().now(), id, 0, DeliveryMode::kReliableOrdered, "x");
  EXPECT_EQ(sixth.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(sixth.status().message()), ::testing::HasSubstr("exhausted"));
  // Another channel has its own numbers and still works.
  EXPECT_TRUE(net.client().endpoint()
                  .Send(net.sim().now(), id, 1, DeliveryMode::kReliableOrdered, "y")
                  .ok());
  net.sim().PollAll();
  ASSERT_TRUE(net.sim().RunUntil([&] { return net.client().Count(Event::Type::kAcked) == 6; },
                                 net.sim().now() + absl::Seconds(30)));
  std::vector<const Event*> got = Messages(net.server(), 0);
  ASSERT_EQ(got.size(), 5u);
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i]->sequence, first + i);
}

}  // namespace
}  // namespace udpmsg::testing

namespace udpmsg::testing {
namespace {

reliable::Psk RoomKey(uint8_t fill) {
  reliable::Psk k;
  k.bytes.fill(fill);
  return k;
}

TEST(EncryptionSimTest, EncryptedTransferIsIntactAndNothingTravelsInClear) {
  const uint64_t seed = 21;
  SCOPED_TRACE(absl::StrCat("seed=", seed));
  EndpointOptions server = ServerOptions(seed);
  EndpointOptions client = ClientOptions(seed);
  server.encrypt = client.encrypt = true;
  Pair net(seed, Lossy(0.1, 0.05, 0.02), server, client);
  std::vector<std::string> wire;
  net.client().set_sent_log(&wire);
  const ConnectionId id = net.Connect();
  const std::string secret = "attack at dawn, the password is swordfish";
  std::vector<std::string> sent;
  for (int i = 0; i < 200; ++i) sent.push_back(absl::StrCat(secret, " #", i));
  sent.push_back(Payload(seed, 1, 300'000));
  for (const std::string& m : sent) {
    ASSERT_TRUE(net.client().endpoint()
                    .Send(net.sim().now(), id, 0, DeliveryMode::kReliableOrdered, m)
                    .ok());
  }
  net.sim().PollAll();
  ASSERT_TRUE(net.sim().RunUntil(
      [&] { return net.client().Count(Event::Type::kAcked) == sent.size(); },
      net.sim().now() + absl::Seconds(120)));
  std::vector<const Event*> got = Messages(net.server(), 0);
  ASSERT_EQ(got.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) ASSERT_TRUE(got[i]->message == sent[i]) << i;
  // On the wire: hellos in clear (they carry no application data), every
  // later datagram sealed, and the secret never visible.
  size_t sealed = 0;
  for (const std::string& d : wire) {
    ASSERT_FALSE(absl::StrContains(d, "swordfish"));
    sealed += static_cast<uint8_t>(d[0]) == proto::kSealedVersion;
  }
  EXPECT_GE(sealed, wire.size() - 4);
  // The link's duplicates are replays to the packet protection: dropped
  // there, and nothing else fails to authenticate.
  EXPECT_LE(net.server().endpoint().stats().unauthenticated,
            net.sim().path_stats(net.client().address(), net.server().address()).counters.duplicated);

  // A replayed sealed datagram and a forged one are dropped and counted.
  const std::string replay = wire.back();
  std::string forged = replay;
  forged[forged.size() / 2] ^= 1;
  const uint64_t before = net.server().endpoint().stats().unauthenticated;
  net.sim().Inject(net.sim().now(), sim::Datagram{net.client().address(), net.server().address(),
                                                  replay});
  net.sim().Inject(net.sim().now(), sim::Datagram{net.client().address(), net.server().address(),
                                                  forged});
  net.sim().RunFor(absl::Milliseconds(10));
  EXPECT_EQ(net.server().endpoint().stats().unauthenticated, before + 2);
  EXPECT_EQ(Messages(net.server(), 0).size(), sent.size());

  // A sealed datagram for a live connection id but larger than anything the
  // server accepts is dropped as malformed before any AEAD work.
  std::string oversized = replay;
  oversized.resize(65'000, 'x');
  const uint64_t malformed = net.server().endpoint().stats().malformed;
  net.server().endpoint().OnDatagram(net.sim().now(), net.client().address(), oversized);
  EXPECT_EQ(net.server().endpoint().stats().malformed, malformed + 1);
  EXPECT_EQ(net.server().endpoint().stats().unauthenticated, before + 2);
}

TEST(EncryptionSimTest, RoomKeyMustMatch) {
  for (bool same : {true, false}) {
    SCOPED_TRACE(same ? "same key" : "different keys");
    EndpointOptions server = ServerOptions(22);
    EndpointOptions client = ClientOptions(22);
    server.psk = RoomKey(7);
    client.psk = RoomKey(same ? 7 : 8);
    Pair net(22, Lossy(0.05, 0, 0), server, client);
    ASSERT_TRUE(net.client().endpoint().Connect(net.sim().now(), net.server().address()).ok());
    net.sim().PollAll();
    net.sim().RunUntil(
        [&] {
          return net.client().Count(Event::Type::kConnected) +
                     net.client().Count(Event::Type::kClosed) >
                 0;
        },
        net.sim().now() + absl::Seconds(30));
    if (same) {
      EXPECT_EQ(net.client().Count(Event::Type::kConnected), 1u);
      continue;
    }
    EXPECT_EQ(net.client().Count(Event::Type::kConnected), 0u);
    const Event* closed = net.client().Find(Event::Type::kClosed);
    ASSERT_NE(closed, nullptr);
    EXPECT_THAT(closed->reason, ::testing::HasSubstr("wrong room key"));
    EXPECT_EQ(closed->close_reason, reliable::CloseReason::kWrongRoomKey);
    EXPECT_FALSE(closed->by_peer);
    net.sim().RunFor(absl::Seconds(60));
    EXPECT_EQ(net.server().Count(Event::Type::kConnected), 0u);
  }
}

TEST(EncryptionSimTest, EncryptionMismatchIsRefusedWithAReason) {
  struct Case {
    bool server_encrypts, client_encrypts;
    const char* reason;
  } cases[] = {{true, false, "requires encryption"}, {false, true, "does not encrypt"}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.reason);
    EndpointOptions server = ServerOptions(23);
    EndpointOptions client = ClientOptions(23);
    server.encrypt = c.server_encrypts;
    client.encrypt = c.client_encrypts;
    Pair net(23, Lossy(0, 0, 0), server, client);
    ASSERT_TRUE(net.client().endpoint().Connect(net.sim().now(), net.server().address()).ok());
    net.sim().PollAll();
    ASSERT_TRUE(net.sim().RunUntil([&] { return net.client().Count(Event::Type::kClosed) == 1; },
                                   net.sim().now() + absl::Seconds(30)));
    EXPECT_THAT(net.client().Find(Event::Type::kClosed)->reason, ::testing::HasSubstr(c.reason));
    EXPECT_EQ(net.client().Find(Event::Type::kClosed)->close_reason,
              reliable::CloseReason::kEncryptionMismatch);
    EXPECT_TRUE(net.client().Find(Event::Type::kClosed)->by_peer);
    EXPECT_EQ(net.server().endpoint().open_connections(), 0u);
  }
}

}  // namespace
}  // namespace udpmsg::testing

// Path MTU discovery (reliable/pmtud.h) on simulated paths with a path MTU.
namespace udpmsg::testing {
namespace {

using reliable::ConnectionStats;

impairment::ImpairmentConfig Clean() {
  impairment::ImpairmentConfig c;
  c.delay = absl::Milliseconds(10);  // no jitter: nothing is reordered
  return c;
}

// Path MTU discovery on (the default; explicit, as these tests are about it).
EndpointOptions WithPmtud(EndpointOptions o) {
  o.connection.pmtud = true;
  return o;
}

ConnectionStats ClientStats(Pair& net, ConnectionId id) {
  absl::StatusOr<ConnectionStats> s = net.client().endpoint().Stats(id);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : ConnectionStats{};
}

ConnectionStats ServerStats(Pair& net) {
  absl::StatusOr<ConnectionStats> s = net.server().endpoint().Stats(net.ServerConnection());
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : ConnectionStats{};
}

void SetPathMtu(Pair& net, size_t mtu) {
  net.sim().SetPathMtu(net.client().address(), net.server().address(), mtu);
  net.sim().SetPathMtu(net.server().address(), net.client().address(), mtu);
}

// Sends `count` messages of `size` bytes (payload seed `seed`, numbered from
// `first`) and runs until all are acknowledged.
void Transfer(Pair& net, ConnectionId id, uint64_t seed, int first, int count, size_t size) {
  const size_t acked = net.client().Count(Event::Type::kAcked);
  for (int i = first; i < first + count; ++i) {
    ASSERT_TRUE(net.client().endpoint()
                    .Send(net.sim().now(), id, 0, DeliveryMode::kReliableOrdered,
                          Payload(seed, i, size))
                    .ok());
  }
  net.sim().PollAll();
  ASSERT_TRUE(net.sim().RunUntil(
      [&] { return net.client().Count(Event::Type::kAcked) == acked + count; },
      net.sim().now() + absl::Seconds(120)))
      << ClientStats(net, id).ToString();
}

void ExpectDelivered(Pair& net, uint64_t seed, int count, size_t size) {
  std::vector<const Event*> got = Messages(net.server(), 0);
  ASSERT_EQ(got.size(), static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) ASSERT_EQ(got[i]->message, Payload(seed, i, size)) << i;
}

// On a connected `net` whose path carries `path_mtu`: lets discovery settle
// (four 64 KiB messages, then `settle` of quiet), then returns the client's
// datagrams while `count` more messages of 64 KiB cross, all delivered.
std::vector<std::string> SentAtPathMtu(Pair& net, ConnectionId id, uint64_t seed,
                                       size_t path_mtu, int count,
                                       absl::Duration settle = absl::ZeroDuration()) {
  std::vector<std::string> sent;
  Transfer(net, id, seed, 0, 4, 64 << 10);
  net.sim().RunFor(settle);
  EXPECT_EQ(ClientStats(net, id).datagram_size, path_mtu);
  net.client().set_sent_log(&sent);
  Transfer(net, id, seed, 4, count, 64 << 10);
  net.client().set_sent_log(nullptr);
  ExpectDelivered(net, seed, 4 + count, 64 << 10);
  return sent;
}

// Decodes any datagram the endpoints send (up to proto::kMaxDatagram).
absl::StatusOr<proto::Packet> DecodeSent(const std::string& datagram) {
  proto::Codec::Limits limits;
  limits.max_datagram = proto::kMaxDatagram;
  return proto::Codec(limits).Decode(datagram);
}

TEST(PmtudSimTest, SettlesAtExactlyTheLargestSizeThePathCarries) {
  struct Case {
    size_t path_mtu;
    bool encrypt;
  } cases[] = {{1472, false}, {1372, true}, {1452, false}};
  for (const Case& c : cases) {
    const uint64_t seed = 31;
    SCOPED_TRACE(absl::StrCat("seed=", seed, " path_mtu=", c.path_mtu, " encrypt=", c.encrypt));
    EndpointOptions server = WithPmtud(ServerOptions(seed));
    EndpointOptions client = WithPmtud(ClientOptions(seed));
    server.encrypt = client.encrypt = c.encrypt;
    Pair net(seed, Clean(), server, client);
    SetPathMtu(net, c.path_mtu);
    const ConnectionId id = net.Connect();
    Transfer(net, id, seed, 0, 300, 10'000);
    ExpectDelivered(net, seed, 300, 10'000);
    const ConnectionStats s = ClientStats(net, id);
    EXPECT_EQ(s.datagram_size, c.path_mtu) << s.ToString();
    EXPECT_EQ(ServerStats(net).datagram_size, c.path_mtu);
    // The failed sizes' probes were lost, and the path lost nothing else:
    // the window was never cut for them.
    EXPECT_GT(s.mtu_probes_lost, 0u);
    EXPECT_EQ(s.packets_lost, s.mtu_probes_lost) << s.ToString();
    EXPECT_EQ(s.congestion_reductions, 0u) << s.ToString();
    EXPECT_GT(net.sim().path_stats(net.client().address(), net.server().address()).mtu_dropped,
              0u);
  }
}

// The runtime sends a burst as GSO trains, which need datagrams of one size
// (all but the last): full data packets are padded to one size when a ping
// or a varint's width makes them a few bytes shorter.
TEST(PmtudSimTest, DataPacketsKeepOneSizeForGsoTrains) {
  const uint64_t seed = 33;
  SCOPED_TRACE(absl::StrCat("seed=", seed));
  impairment::ImpairmentConfig link;
  link.delay = absl::Microseconds(100);
  link.rate_bps = 1'000'000'000;
  link.queue_limit_bytes = 4 << 20;
  Pair net(seed, link, WithPmtud(ServerOptions(seed)), WithPmtud(ClientOptions(seed)));
  SetPathMtu(net, 1472);
  const ConnectionId id = net.Connect();
  const std::vector<std::string> sent = SentAtPathMtu(net, id, seed, 1472, 128);
  ASSERT_FALSE(sent.empty());
  // A full-size data packet 2-32 bytes shorter than the data packet before it (neither
  // carrying an ACK frame, which goes by its own size) would cut a train
  // where padding could have kept it whole. The transfer's last packet may
  // be short. And the trains the runtime can form (equal sizes, then at most
  // one shorter datagram, at most 65,507 bytes): the server's packets are
  // ACKs (not ack-eliciting) and need no ACK; one riding on data made that
  // datagram longer than its neighbours and a train of its own, once per
  // burst.
  std::map<size_t, int> sizes;  // data datagrams by size
  size_t previous = 0;          // the last data datagram's size, 0 after an ACK
  std::vector<std::string> cuts;
  size_t with_ack = 0;
  size_t data_datagrams = 0;
  size_t payload_bytes = 0;
  size_t trains = 0;
  size_t train_size = 0;   // of the open train; 0 when none is open
  size_t train_bytes = 0;
  for (size_t i = 0; i < sent.size(); ++i) {
    absl::StatusOr<proto::Packet> p = DecodeSent(sent[i]);
    ASSERT_TRUE(p.ok()) << p.status();
    if (p->data.empty()) continue;
    const size_t size = sent[i].size();
    ++sizes[size];
    ++data_datagrams;
    for (const proto::DataFragment& d : p->data) payload_bytes += d.bytes().size();
    const bool last = i + 1 == sent.size();
    if (!p->ack && !last && previous >= size + 2 && previous <= size + 32) {
      cuts.push_back(absl::StrCat("datagram ", i, ": ", size, " after ", previous));
    }
    previous = p->ack ? 0 : size;
    if (p->ack) ++with_ack;
    if (size <= train_size && train_bytes + size <= 65507) {
      train_bytes += size;
      if (size < train_size) train_size = 0;  // a shorter datagram ends its train
    } else {
      ++trains;
      train_size = size;
      train_bytes = size;
    }
  }
  std::string histogram;
  for (const auto& [size, n] : sizes) absl::StrAppend(&histogram, " ", size, ":", n);
  EXPECT_THAT(cuts, ::testing::IsEmpty()) << histogram;
  EXPECT_GT(sizes.size(), 0u);
  std::printf("data datagrams by size:%s; %zu with an ACK frame; %zu trains\n", histogram.c_str(),
              with_ack, trains);
  // One ACK per max(srtt, max_ack_delay) at most: the transfer takes about
  // 70 ms here (142 when every burst carried one).
  EXPECT_LE(with_ack, 10u) << histogram;
  // 128 messages of 64 KiB in 47-datagram trains: about 135 at the least
  // (342 with an ACK on every burst).
  EXPECT_LE(trains, 200u) << histogram;
  // A run of two fragments of 707 bytes under one frame header in
  // 1,449-byte datagrams (fragment runs). Without runs, two frames of 690 in
  // 1,435 bytes (1,380; frames are checked at their exact size); when each
  // frame was allowed the longest header a data frame can have, two of 662
  // in 1,377.
  EXPECT_GE(payload_bytes / data_datagrams, 1400u) << histogram;
}

// With runs, one frame header serves every fragment of a datagram, so more
// and smaller fragments cost nothing on the wire; but a lost run is sent
// again a fragment per frame, and the receiver's headroom for its head
// message assumes fragments of at least half its base payload. On paths
// where a division's remainder favoured many small fragments (five of 257
// at 1343 bytes, three of 427 at 1372 encrypted) they stay at least half
// the base fragment (978 plain, 945 sealed).
TEST(PmtudSimTest, RunFragmentsStayAtLeastHalfTheBaseFragment) {
  for (size_t path_mtu : {size_t{1343}, size_t{8972}}) {
    const uint64_t seed = 37;
    SCOPED_TRACE(absl::StrCat("seed=", seed, " path_mtu=", path_mtu));
    EndpointOptions server = WithPmtud(ServerOptions(seed));
    EndpointOptions client = WithPmtud(ClientOptions(seed));
    server.connection.max_udp_payload = client.connection.max_udp_payload = 9000;
    Pair net(seed, Clean(), server, client);
    SetPathMtu(net, path_mtu);
    const ConnectionId id = net.Connect();
    // (The search takes a few seconds more to find these sizes.)
    const std::vector<std::string> sent =
        SentAtPathMtu(net, id, seed, path_mtu, 4, absl::Seconds(5));
    size_t runs = 0;
    std::set<uint64_t> chunks;
    for (const std::string& d : sent) {
      absl::StatusOr<proto::Packet> p = DecodeSent(d);
      ASSERT_TRUE(p.ok()) << p.status();
      for (const proto::DataFragment& f : p->data) {
        chunks.insert((f.total_size + f.count - 1) / f.count);
        if (f.run > 1) ++runs;
      }
    }
    EXPECT_GT(runs, 0u);
    ASSERT_FALSE(chunks.empty());
    EXPECT_GE(*chunks.begin(), 978u / 2) << chunks.size() << " fragment sizes";
  }
}

// Fragment runs (ConnectionOptions::fragment_runs, frames.h
// kFeatureFragmentRuns) are used only when both ends announce them: a 1472-
// byte path carries one data frame per message part in each datagram, and
// with an end that does not announce them (as an older version) every frame
// is one fragment, in either direction, and the transfer is the same.
TEST(PmtudSimTest, FragmentRunsOnlyWhenBothEndsAnnounceThem) {
  struct Case {
    bool client_runs;
    bool server_runs;
  } cases[] = {{true, true}, {true, false}, {false, true}};
  for (const Case& c : cases) {
    const uint64_t seed = 36;
    SCOPED_TRACE(absl::StrCat("seed=", seed, " client_runs=", c.client_runs,
                              " server_runs=", c.server_runs));
    EndpointOptions server = WithPmtud(ServerOptions(seed));
    EndpointOptions client = WithPmtud(ClientOptions(seed));
    server.connection.fragment_runs = c.server_runs;
    client.connection.fragment_runs = c.client_runs;
    Pair net(seed, Clean(), server, client);
    SetPathMtu(net, 1472);
    const ConnectionId id = net.Connect();
    const std::vector<std::string> sent = SentAtPathMtu(net, id, seed, 1472, 24);
    size_t frames = 0;
    size_t runs = 0;
    size_t data_datagrams = 0;
    for (const std::string& d : sent) {
      absl::StatusOr<proto::Packet> p = DecodeSent(d);
      ASSERT_TRUE(p.ok()) << p.status();
      if (p->data.empty()) continue;
      ++data_datagrams;
      for (const proto::DataFragment& f : p->data) {
        ++frames;
        if (f.run > 1) ++runs;
      }
    }
    if (c.client_runs && c.server_runs) {
      // Two frames only where a datagram holds the end of one message and
      // the start of the next (one in 46 here).
      EXPECT_LT(frames, data_datagrams * 11 / 10);
      EXPECT_GT(runs, data_datagrams * 9 / 10);
    } else {
      EXPECT_EQ(runs, 0u);
      EXPECT_GE(frames, data_datagrams * 2 - 2);
    }
    EXPECT_EQ(ClientStats(net, id).packets_lost, ClientStats(net, id).mtu_probes_lost);
  }
}

// Small messages, each in its own packet, alternate between 100 and 80
// bytes: padding the shorter ones up to the longer (to keep a GSO train)
// would be a fifth of each packet. Small packets get at most 4 bytes
// (kMaxSmallTrainPadding); the 32 a full-size train may add is for
// datagrams at the path's limit.
TEST(PmtudSimTest, SmallPacketsAreNotPaddedToKeepATrain) {
  const uint64_t seed = 35;
  SCOPED_TRACE(absl::StrCat("seed=", seed));
  Pair net(seed, Clean(), WithPmtud(ServerOptions(seed)), WithPmtud(ClientOptions(seed)));
  const ConnectionId id = net.Connect();
  std::vector<std::string> sent;
  net.client().set_sent_log(&sent);
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(net.client().endpoint()
                    .Send(net.sim().now(), id, 0, DeliveryMode::kReliableOrdered,
                          std::string(i % 2 == 0 ? 100 : 80, 'm'))
                    .ok());
    net.sim().PollAll();
    net.sim().RunFor(absl::Microseconds(100));
  }
  net.sim().RunFor(absl::Seconds(1));
  net.client().set_sent_log(nullptr);
  proto::Codec::Limits limits;
  limits.max_datagram = proto::kMaxDatagram;
  const proto::Codec codec(limits);
  size_t data_packets = 0;
  for (const std::string& d : sent) {
    absl::StatusOr<proto::Packet> p = codec.Decode(d);
    ASSERT_TRUE(p.ok()) << p.status();
    if (p->data.empty()) continue;
    ++data_packets;
    const size_t unpadded = codec.Encode(*p)->size();
    EXPECT_LE(d.size() - unpadded, 4u) << "a " << d.size() << "-byte packet";
  }
  EXPECT_GE(data_packets, 40u);
}

TEST(PmtudSimTest, WithoutAPathLimitReachesTheConfiguredMaximum) {
  const uint64_t seed = 32;
  SCOPED_TRACE(absl::StrCat("seed=", seed));
  EndpointOptions server = WithPmtud(ServerOptions(seed));
  EndpointOptions client = WithPmtud(ClientOptions(seed));
  server.connection.max_udp_payload = 9000;  // the smaller side decides
  Pair net(seed, Clean(), server, client);
  SetPathMtu(net, 0);  // no limit
  const ConnectionId id = net.Connect();
  Transfer(net, id, seed, 0, 100, 50'000);
  ExpectDelivered(net, seed, 100, 50'000);
  EXPECT_EQ(ClientStats(net, id).datagram_size, 9000u);
  EXPECT_EQ(ServerStats(net).datagram_size, 9000u);
  EXPECT_EQ(ClientStats(net, id).mtu_probes_lost, 0u);
}

TEST(PmtudSimTest, APeerThatAnnouncesNothingStaysAtTheBase) {
  const uint64_t seed = 33;
  SCOPED_TRACE(absl::StrCat("seed=", seed));
  EndpointOptions server = ServerOptions(seed);
  server.connection.pmtud = false;  // as an older version: no max_udp_payload
  EndpointOptions client = WithPmtud(ClientOptions(seed));
  Pair net(seed, Clean(), server, client);
  std::vector<std::string> client_wire, server_wire;
  net.client().set_sent_log(&client_wire);
  net.server().set_sent_log(&server_wire);
  const ConnectionId id = net.Connect();
  Transfer(net, id, seed, 0, 50, 20'000);
  ExpectDelivered(net, seed, 50, 20'000);
  EXPECT_EQ(ClientStats(net, id).datagram_size, proto::kDefaultMaxDatagram);
  EXPECT_EQ(ClientStats(net, id).mtu_probes, 0u);
  for (const std::string& d : client_wire) ASSERT_LE(d.size(), proto::kDefaultMaxDatagram);
  for (const std::string& d : server_wire) ASSERT_LE(d.size(), proto::kDefaultMaxDatagram);
}

TEST(PmtudSimTest, ABlackHoleFallsBackKeepsDeliveringAndTheRaiseTimerProbesAgain) {
  const uint64_t seed = 34;
  SCOPED_TRACE(absl::StrCat("seed=", seed));
  Pair net(seed, Clean(), WithPmtud(ServerOptions(seed)), WithPmtud(ClientOptions(seed)));
  SetPathMtu(net, 1472);
  const ConnectionId id = net.Connect();
  Transfer(net, id, seed, 0, 100, 10'000);
  ASSERT_EQ(ClientStats(net, id).datagram_size, 1472u);
  // The route changes to a tunnel that silently drops anything over 1300
  // bytes (no ICMP) as a transfer starts: its first window, cut for and
  // sent in 1472-byte datagrams, is lost and must get through at the base.
  SetPathMtu(net, 1300);
  for (int i = 100; i < 400; ++i) {
    ASSERT_TRUE(net.client().endpoint()
                    .Send(net.sim().now(), id, 0, DeliveryMode::kReliableOrdered,
                          Payload(seed, i, 10'000))
                    .ok());
  }
  net.sim().PollAll();
  ASSERT_TRUE(net.sim().RunUntil([&] { return net.client().Count(Event::Type::kAcked) == 400; },
                                 net.sim().now() + absl::Seconds(120)))
      << ClientStats(net, id).ToString();
  ExpectDelivered(net, seed, 400, 10'000);
  ConnectionStats s = ClientStats(net, id);
  EXPECT_GE(s.mtu_black_holes, 1u) << s.ToString();
  EXPECT_GT(s.fragments_retransmitted, 0u);
  // The search from the base, which ran alongside, finishes on the idle
  // connection.
  net.sim().RunFor(absl::Seconds(5));
  s = ClientStats(net, id);
  EXPECT_EQ(s.datagram_size, 1300u) << s.ToString();
  EXPECT_EQ(net.client().Count(Event::Type::kClosed), 0u);
  // The path grows back; the next search (PMTU_RAISE_TIMER, 600 s) finds it.
  SetPathMtu(net, 1472);
  net.sim().RunFor(absl::Seconds(590));
  EXPECT_EQ(ClientStats(net, id).datagram_size, 1300u);
  net.sim().RunFor(absl::Seconds(60));
  EXPECT_EQ(ClientStats(net, id).datagram_size, 1472u);
  Transfer(net, id, seed, 400, 50, 10'000);
  ExpectDelivered(net, seed, 450, 10'000);
}

// ---------------------------------------------------------------------------
// NAT rebinding (connection.h, "Path validation and migration"): the
// client's public port changes in the middle of a transfer. The server must
// validate the new address, move, deliver every byte exactly, tell its
// application, and stop sending to the old address. Also prints how long
// the rebinding stalled deliveries (docs/protocol.md's figure).

struct RebindRun {
  absl::Duration path_changed_after;  // rebinding -> the server's kPathChanged
  // The longest pause between deliveries in the 2 s after the delivery that
  // made the NAT rebind (a quarter of the messages).
  absl::Duration stall;
  absl::Duration total;               // the whole transfer
};

// Without `rebind`, the same transfer on a stable path (the baseline).
RebindRun RunRebindingTransfer(uint64_t seed, bool encrypt, double loss, bool rebind = true) {
  SCOPED_TRACE(absl::StrCat("seed=", seed, " encrypt=", encrypt, " loss=", loss,
                            " rebind=", rebind));
  RebindRun run{};
  EndpointOptions server_options = ServerOptions(seed);
  EndpointOptions client_options = ClientOptions(seed);
  server_options.encrypt = client_options.encrypt = encrypt;
  impairment::ImpairmentConfig link = Lossy(loss);
  link.rate_bps = 50'000'000;  // a 50 Mbit/s bottleneck each way
  link.queue_limit_bytes = 256 << 10;
  Pair net(seed, link, server_options, client_options);
  sim::Simulator& sim = net.sim();
  const udp::SocketAddress client = net.client().address();
  const udp::SocketAddress server = net.server().address();
  const udp::SocketAddress rebound = Addr("10.0.0.2:40001");  // the NAT's new port
  EXPECT_TRUE(sim.SetLink(rebound, server, link).ok());
  EXPECT_TRUE(sim.SetLink(server, rebound, link).ok());
  const ConnectionId id = net.Connect();
  const absl::Time start = sim.now();

  // 8 MiB in 512 messages of 16 KiB, queued at once.
  constexpr int kMessages = 512;
  constexpr size_t kSize = 16 << 10;
  std::vector<std::string> sent;
  for (int i = 0; i < kMessages; ++i) sent.push_back(Payload(seed, i, kSize));
  for (const std::string& m : sent) {
    EXPECT_TRUE(net.client().endpoint()
                    .Send(sim.now(), id, 1, DeliveryMode::kReliableOrdered, m)
                    .ok());
  }
  // The NAT rebinds once a quarter of the messages arrived.
  absl::Time rebound_at = absl::InfiniteFuture();
  absl::Time moved_at = absl::InfiniteFuture();
  sim::Simulator::PathStats to_old_at_move;
  std::vector<absl::Time> delivered;
  net.server().set_on_event([&](const Event& e) {
    if (e.type == Event::Type::kMessage) {
      delivered.push_back(sim.now());
      if (rebind && delivered.size() == kMessages / 4) {
        EXPECT_TRUE(sim.Rebind(client, rebound).ok());
        rebound_at = sim.now();
      }
    }
    if (e.type == Event::Type::kPathChanged) {
      moved_at = sim.now();
      to_old_at_move = sim.path_stats(server, client);
      EXPECT_EQ(e.old_peer, client);
      EXPECT_EQ(e.peer, rebound);
      // The new path starts fresh: RTT estimate and datagram size at their
      // initial values (path MTU discovery probes again).
      const reliable::ConnectionStats s = *net.server().endpoint().Stats(e.connection);
      EXPECT_EQ(s.srtt, server_options.connection.initial_rtt) << s.ToString();
      EXPECT_EQ(s.datagram_size, server_options.connection.max_datagram) << s.ToString();
      // In flight: at most the new path's first MTU probe (the old path's
      // packets were abandoned).
      EXPECT_LE(s.bytes_in_flight, 1280u) << s.ToString();
    }
  });
  sim.PollAll();
  const bool done = sim.RunUntil(
      [&] { return net.client().Count(Event::Type::kAcked) == sent.size(); },
      sim.now() + absl::Seconds(120));
  EXPECT_TRUE(done) << "transfer did not complete; acked "
                    << net.client().Count(Event::Type::kAcked) << " of " << sent.size();
  std::vector<const Event*> got = Messages(net.server(), 1);
  EXPECT_EQ(got.size(), sent.size());
  for (size_t i = 0; i < std::min(got.size(), sent.size()); ++i) {
    if (got[i]->message != sent[i]) {
      ADD_FAILURE() << "message " << i << " differs";
      break;
    }
  }
  EXPECT_EQ(net.client().Count(Event::Type::kClosed), 0u);
  EXPECT_EQ(net.server().Count(Event::Type::kClosed), 0u);
  if (rebind) {
    EXPECT_EQ(net.server().Count(Event::Type::kPathChanged), 1u);
    EXPECT_EQ(net.server().endpoint().stats().migrations, 1u);
    EXPECT_EQ(
        *net.server().endpoint().PeerOf(net.server().Find(Event::Type::kConnected)->connection),
        rebound);
    // Path MTU discovery found the path's 1472 bytes again on the new path.
    const ConnectionId server_id = net.server().Find(Event::Type::kConnected)->connection;
    EXPECT_EQ(net.server().endpoint().Stats(server_id)->datagram_size, sim::kDefaultPathMtu);
    // The old address stops receiving: nothing sent there after the move.
    sim.RunFor(absl::Seconds(1));
    EXPECT_EQ(sim.path_stats(server, client).packets_sent, to_old_at_move.packets_sent);
    EXPECT_GT(sim.nat_dropped(), 0u);  // what was in flight to it when the NAT rebound
    run.path_changed_after = moved_at - rebound_at;
  } else {
    EXPECT_EQ(net.server().Count(Event::Type::kPathChanged), 0u);
  }
  for (size_t i = kMessages / 4; i < delivered.size(); ++i) {
    if (delivered[i - 1] - delivered[kMessages / 4 - 1] > absl::Seconds(2)) break;
    run.stall = std::max(run.stall, delivered[i] - delivered[i - 1]);
  }
  run.total = (delivered.empty() ? start : delivered.back()) - start;
  return run;
}

TEST(RebindingSimTest, TransferCompletesWhenTheClientsNatRebindsMidTransfer) {
  std::printf("NAT rebinding mid-transfer (8 MiB, 50 Mbit/s, 10 ms each way):\n");
  for (bool encrypt : {false, true}) {
    for (double loss : {0.0, 0.02}) {
      // Sanitizer twins (sim::SeedCount(200) below 200) run one seed of three.
      const std::vector<uint64_t> seeds =
          sim::SeedCount(200) < 200 ? std::vector<uint64_t>{61} : std::vector<uint64_t>{61, 62, 63};
      for (uint64_t seed : seeds) {
        const RebindRun r = RunRebindingTransfer(seed, encrypt, loss);
        const RebindRun base = RunRebindingTransfer(seed, encrypt, loss, /*rebind=*/false);
        if (::testing::Test::HasFailure()) return;
        std::printf(
            "  encrypt=%d loss=%.0f%% seed=%llu: path changed %.0f ms after the rebinding, "
            "longest pause in deliveries %.0f ms (%.0f ms without rebinding), "
            "transfer %.2f s (%.2f s)\n",
            encrypt, loss * 100, static_cast<unsigned long long>(seed),
            absl::ToDoubleMilliseconds(r.path_changed_after),
            absl::ToDoubleMilliseconds(r.stall), absl::ToDoubleMilliseconds(base.stall),
            absl::ToDoubleSeconds(r.total), absl::ToDoubleSeconds(base.total));
      }
    }
  }
}

}  // namespace
}  // namespace udpmsg::testing

// ---------------------------------------------------------------------------
// Bursts (Connection::SendBurst): a run of plain data packets decided at
// once must be exactly what SendOne sends one by one. Each scenario runs
// twice from one seed, once with bursts off (TestHooks::no_bursts), and
// both sides' datagrams must match byte for byte and arrive at the same
// virtual times.

namespace udpmsg::testing {
namespace {

struct BurstScenario {
  const char* name;
  uint64_t seed;
  impairment::ImpairmentConfig link;
  size_t path_mtu = 1472;  // 0: no limit (and a 9,000-byte receive size)
  uint64_t initial_packet_number = 0;
  bool encrypt = false;
  // Messages: `count` of `size` bytes (0: sizes from 1 byte to 100 KB,
  // channels 0-3 and every delivery mode, from the seed).
  int count = 0;
  size_t size = 0;
  // Sizes of further messages, sent first.
  std::vector<size_t> sizes = {};
  // Where bursts must not be used (their outcome could differ from
  // SendOne's), and none may be.
  bool bbr = false;
  bool lanes = false;
};

void PrintTo(const BurstScenario& s, std::ostream* os) { *os << s.name; }

struct BurstRun {
  std::vector<std::string> client_wire, server_wire;
  // What the server received, and when (the client likewise).
  std::vector<std::string> server_got, client_got;
  std::vector<absl::Time> server_at, client_at;
  uint64_t burst_packets = 0;
  uint64_t packets_sent = 0;
  std::vector<std::string> delivered;
};

BurstRun RunBurstScenario(const BurstScenario& s, bool bursts) {
  BurstRun run;
  EndpointOptions server = ServerOptions(s.seed);
  EndpointOptions client = ClientOptions(s.seed);
  server.encrypt = client.encrypt = s.encrypt;
  if (s.path_mtu == 0) {
    server.connection.max_udp_payload = client.connection.max_udp_payload = 9000;
  }
  if (s.bbr) {
    server.connection.congestion_control = client.connection.congestion_control =
        reliable::CongestionControl::kBbr;
  }
  Pair net(s.seed, s.link, server, client);
  SetPathMtu(net, s.path_mtu);
  reliable::TestHooks hooks;
  hooks.no_bursts = !bursts;
  hooks.initial_packet_number = s.initial_packet_number;
  net.client().endpoint().SetTestHooksForTesting(hooks);
  net.server().endpoint().SetTestHooksForTesting(hooks);
  net.client().set_sent_log(&run.client_wire);
  net.server().set_sent_log(&run.server_wire);
  net.server().set_received_log(&run.server_got);
  net.server().set_arrival_log(&run.server_at);
  net.client().set_received_log(&run.client_got);
  net.client().set_arrival_log(&run.client_at);
  const ConnectionId id = net.Connect();
  if (s.lanes) {
    // Two channels of one priority share bytes by weight: the queue may
    // switch messages between any two packets.
    EXPECT_TRUE(net.client().endpoint().SetChannelPriority(net.sim().now(), id, 1, 0, 3).ok());
    EXPECT_TRUE(net.client().endpoint().SetChannelPriority(net.sim().now(), id, 2, 0, 1).ok());
  }
  reliable::DeterministicRng rng(s.seed, 7);
  int reliable = 0;
  for (size_t i = 0; i < s.sizes.size(); ++i) {
    EXPECT_TRUE(net.client()
                    .endpoint()
                    .Send(net.sim().now(), id, 0, DeliveryMode::kReliableOrdered,
                          Payload(s.seed, 2000 + i, s.sizes[i]))
                    .ok());
    ++reliable;
  }
  for (int i = 0; i < s.count; ++i) {
    size_t size = s.size;
    uint32_t channel = s.lanes ? 1 + i % 2 : 0;
    DeliveryMode mode = DeliveryMode::kReliableOrdered;
    if (size == 0) {
      size = 1 + rng.Next() % 100'000;
      channel = static_cast<uint32_t>(rng.Next() % 4);
      mode = static_cast<DeliveryMode>(rng.Next() % 4);
    }
    if (mode == DeliveryMode::kReliableOrdered || mode == DeliveryMode::kReliableUnordered) {
      ++reliable;
    }
    EXPECT_TRUE(net.client()
                    .endpoint()
                    .Send(net.sim().now(), id, channel, mode, Payload(s.seed, i, size))
                    .ok());
  }
  net.sim().PollAll();
  EXPECT_TRUE(net.sim().RunUntil(
      [&] { return net.client().Count(Event::Type::kAcked) == static_cast<size_t>(reliable); },
      net.sim().now() + absl::Seconds(300)))
      << ClientStats(net, id).ToString();
  net.sim().RunFor(absl::Seconds(1));
  if (const Event* closed = net.client().Find(Event::Type::kClosed)) {
    ADD_FAILURE() << "closed: " << closed->reason;
  }
  const ConnectionStats stats = ClientStats(net, id);
  run.burst_packets = stats.burst_packets;
  run.packets_sent = stats.packets_sent;
  for (const reliable::Event& e : net.server().events()) {
    if (e.type == Event::Type::kMessage) run.delivered.push_back(e.message);
  }
  return run;
}

class BurstTest : public ::testing::TestWithParam<BurstScenario> {};

TEST_P(BurstTest, BurstsSendWhatSendOneSendsByteForByte) {
  const BurstScenario& s = GetParam();
  SCOPED_TRACE(absl::StrCat(s.name, " seed=", s.seed));
  const BurstRun one_by_one = RunBurstScenario(s, /*bursts=*/false);
  const BurstRun bursts = RunBurstScenario(s, /*bursts=*/true);
  EXPECT_EQ(one_by_one.burst_packets, 0u);
  if (s.bbr || s.lanes) {
    EXPECT_EQ(bursts.burst_packets, 0u);
  } else {
    // Most data packets went in bursts (not a path the test skips).
    EXPECT_GT(bursts.burst_packets, bursts.packets_sent / 2)
        << bursts.burst_packets << " of " << bursts.packets_sent;
  }
  ASSERT_EQ(bursts.delivered.size(), one_by_one.delivered.size());
  EXPECT_TRUE(bursts.delivered == one_by_one.delivered);
  ExpectSameDatagrams(bursts.client_wire, one_by_one.client_wire, s.encrypt, "client sent");
  ExpectSameDatagrams(bursts.server_wire, one_by_one.server_wire, s.encrypt, "server sent");
  ExpectSameDatagrams(bursts.server_got, one_by_one.server_got, s.encrypt, "server got");
  ExpectSameDatagrams(bursts.client_got, one_by_one.client_got, s.encrypt, "client got");
  EXPECT_TRUE(bursts.server_at == one_by_one.server_at) << "arrival times at the server";
  EXPECT_TRUE(bursts.client_at == one_by_one.client_at) << "arrival times at the client";
  if (!s.sizes.empty()) {
    // The scenario reaches what it is for: a message's last fragment as a
    // second frame after its own run.
    const proto::Codec codec{proto::Codec::Limits{}};
    int both = 0;
    for (const std::string& d : bursts.client_wire) {
      absl::StatusOr<proto::Packet> p = codec.Decode(d);
      if (p.ok() && p->data.size() >= 2 && p->data[0].sequence == p->data[1].sequence) ++both;
    }
    EXPECT_GT(both, 0);
  }
}

impairment::ImpairmentConfig CleanLink() {
  impairment::ImpairmentConfig c;
  c.delay = absl::Milliseconds(1);
  return c;
}

INSTANTIATE_TEST_SUITE_P(
    Scenarios, BurstTest,
    ::testing::Values(
        BurstScenario{"clean", 61, CleanLink(), 1472, 0, false, 40, 64 << 10},
        // Retransmissions (one fragment each, never in a burst) between bursts.
        BurstScenario{"lossy", 62, Lossy(0.03, 0.02, 0.01), 1472, 0, false, 40, 64 << 10},
        // Cut at the base size (978-byte fragments): fragment indexes past 127
        // and 16,383 (two- and three-byte varints).
        BurstScenario{"largest messages", 63, CleanLink(), 1472, 0, false, 2, 16 << 20},
        // Packet numbers whose varint grows inside a burst.
        BurstScenario{"packet number widths", 64, CleanLink(), 1472, (uint64_t{1} << 21) - 300,
                      false, 20, 64 << 10},
        // Messages of every size, channel and mode: bursts stop at each end.
        BurstScenario{"mixed", 65, Lossy(0.01), 1472, 0, false, 300, 0},
        // No path limit: 9,000-byte datagrams.
        BurstScenario{"jumbo", 66, CleanLink(), 0, 0, false, 40, 64 << 10},
        BurstScenario{"sealed", 67, Lossy(0.01), 1472, 0, true, 40, 64 << 10},
        // Cut at the base size (978 fragments of 978 bytes, the last of 1, 2
        // and 4), sent mostly in 1472-byte datagrams, which carry one such
        // fragment and leave room for a frame: the last fragment goes as a
        // second frame after the one before it, a packet a burst must leave
        // to SendOne.
        BurstScenario{"short last fragments", 68, CleanLink(), 1472, 0, false, 0, 0,
                      {955'507, 955'508, 955'510}},
        BurstScenario{"bbr", 69, Lossy(0.01), 1472, 0, false, 40, 64 << 10, {}, /*bbr=*/true},
        BurstScenario{"lanes", 70, Lossy(0.01), 1472, 0, false, 40, 64 << 10, {}, false,
                      /*lanes=*/true}),
    [](const ::testing::TestParamInfo<BurstScenario>& info) {
      std::string name = info.param.name;
      for (char& c : name) {
        if (c == ' ') c = '_';
      }
      return name;
    });

}  // namespace
}  // namespace udpmsg::testing
