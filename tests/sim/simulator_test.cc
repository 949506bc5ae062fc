#include "tests/sim/simulator.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "impairment/model.h"
#include "udp/socket_address.h"

namespace udpmsg::sim {
namespace {

using ::testing::ElementsAre;

udp::SocketAddress Addr(absl::string_view text) {
  absl::StatusOr<udp::SocketAddress> address = udp::SocketAddress::Parse(text);
  EXPECT_TRUE(address.ok()) << address.status();
  return address.ok() ? *address : udp::SocketAddress();
}

udp::SocketAddress A() { return Addr("10.0.0.1:4000"); }
udp::SocketAddress B() { return Addr("[fd00::1]:4000"); }

struct Arrival {
  absl::Time at;
  udp::SocketAddress from;
  udp::SocketAddress to;
  std::string bytes;
  friend bool operator==(const Arrival& x, const Arrival& y) {
    return x.at == y.at && x.from == y.from && x.to == y.to && x.bytes == y.bytes;
  }
  friend void PrintTo(const Arrival& x, std::ostream* os) {
    *os << "{" << absl::FormatTime(x.at) << " " << x.from << " -> " << x.to << " \""
        << absl::CHexEscape(x.bytes.substr(0, 16)) << "\"}";
  }
};

// Records arrivals; sends what Send() queued; no timer.
class SinkNode : public Node {
 public:
  void OnDatagram(absl::Time now, const udp::SocketAddress& from, const udp::SocketAddress& to,
                  absl::string_view bytes) override {
    arrivals.push_back(Arrival{now, from, to, std::string(bytes)});
  }
  void OnTimeout(absl::Time now) override {}
  absl::Time NextTimeout() const override { return absl::InfiniteFuture(); }
  std::vector<Datagram> TakeOutgoing() override { return std::exchange(outgoing_, {}); }

  // Queued with an empty `from`: the simulator fills in this node's address.
  void Send(const udp::SocketAddress& to, std::string bytes) {
    outgoing_.push_back(Datagram{udp::SocketAddress(), to, std::move(bytes)});
  }

  std::vector<Arrival> arrivals;

 protected:
  std::vector<Datagram> outgoing_;
};

// Sends every datagram back to where it came from.
class EchoNode : public SinkNode {
 public:
  void OnDatagram(absl::Time now, const udp::SocketAddress& from, const udp::SocketAddress& to,
                  absl::string_view bytes) override {
    SinkNode::OnDatagram(now, from, to, bytes);
    outgoing_.push_back(Datagram{to, from, std::string(bytes)});
  }
};

// "%08d" index, padded with '.' to `size` bytes.
std::string Ping(int i, size_t size) {
  std::string bytes = absl::StrFormat("%08d", i);
  bytes.resize(std::max(size, bytes.size()), '.');
  return bytes;
}

int PingIndex(absl::string_view bytes) {
  int i = -1;
  EXPECT_TRUE(absl::SimpleAtoi(bytes.substr(0, 8), &i)) << bytes;
  return i;
}

// Sends `count` numbered pings to `peer`, the first at `first`, then one every
// `interval`, all driven by its timer. Records what comes back.
class PingNode : public SinkNode {
 public:
  PingNode(udp::SocketAddress peer, int count, absl::Time first, absl::Duration interval,
           size_t size = 100)
      : peer_(peer), count_(count), next_(first), interval_(interval), size_(size) {}

  void OnTimeout(absl::Time now) override {
    EXPECT_GE(now, next_);
    Send(peer_, Ping(sent_++, size_));
    next_ = sent_ < count_ ? next_ + interval_ : absl::InfiniteFuture();
  }
  absl::Time NextTimeout() const override {
    return sent_ < count_ ? next_ : absl::InfiniteFuture();
  }

 private:
  udp::SocketAddress peer_;
  int count_;
  int sent_ = 0;
  absl::Time next_;
  absl::Duration interval_;
  size_t size_;
};

// A timer whose deadline the test sets; records when OnTimeout ran. With
// `stuck`, OnTimeout leaves the deadline where it is (a livelock).
class TimerNode : public SinkNode {
 public:
  void OnTimeout(absl::Time now) override {
    EXPECT_GE(now, deadline);
    fired.push_back(now);
    if (!stuck) deadline = absl::InfiniteFuture();
  }
  absl::Time NextTimeout() const override { return deadline; }

  absl::Time deadline = absl::InfiniteFuture();
  bool stuck = false;
  std::vector<absl::Time> fired;
};

void ExpectBinomial(uint64_t observed, uint64_t n, double p, double sigmas = 5.0) {
  const double mean = static_cast<double>(n) * p;
  const double sd = std::sqrt(static_cast<double>(n) * p * (1.0 - p));
  EXPECT_LE(std::abs(static_cast<double>(observed) - mean), sigmas * sd)
      << "observed " << observed << " of " << n << ", expected " << mean << " +- " << sd;
}

TEST(SimulatorTest, DefaultLinkIsOneMillisecondAndEchoRoundTrips) {
  Simulator sim(1);
  SinkNode a;
  EchoNode b;
  ASSERT_TRUE(sim.AddNode(A(), &a).ok());
  ASSERT_TRUE(sim.AddNode(B(), &b).ok());
  const absl::Time t0 = sim.start() + absl::Seconds(1);
  sim.At(t0, [&] { a.Send(B(), "hi"); });
  sim.RunFor(absl::Seconds(2));
  ASSERT_EQ(b.arrivals.size(), 1u);
  EXPECT_EQ(b.arrivals[0], (Arrival{t0 + absl::Milliseconds(1), A(), B(), "hi"}));
  ASSERT_EQ(a.arrivals.size(), 1u);
  EXPECT_EQ(a.arrivals[0], (Arrival{t0 + absl::Milliseconds(2), B(), A(), "hi"}));
  EXPECT_EQ(sim.now(), sim.start() + absl::Seconds(2));
  EXPECT_EQ(sim.path_stats(A(), B()).packets_delivered, 1u);
  EXPECT_EQ(sim.path_stats(B(), A()).bytes_delivered, 2u);
}

TEST(SimulatorTest, DeliveryTimeIsSendTimePlusDelay) {
  Simulator sim(1);
  PingNode a(B(), 5, sim.start() + absl::Milliseconds(3), absl::Milliseconds(7));
  EchoNode b;
  ASSERT_TRUE(sim.AddNode(A(), &a).ok());
  ASSERT_TRUE(sim.AddNode(B(), &b).ok());
  impairment::ImpairmentConfig forward;
  forward.delay = absl::Milliseconds(20);
  impairment::ImpairmentConfig back;
  back.delay = absl::Microseconds(500);
  ASSERT_TRUE(sim.SetLink(A(), B(), forward).ok());
  ASSERT_TRUE(sim.SetLink(B(), A(), back).ok());
  sim.RunFor(absl::Seconds(1));
  ASSERT_EQ(b.arrivals.size(), 5u);
  ASSERT_EQ(a.arrivals.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    const absl::Time sent = sim.start() + absl::Milliseconds(3 + 7 * i);
    EXPECT_EQ(b.arrivals[i].at, sent + absl::Milliseconds(20)) << i;
    EXPECT_EQ(a.arrivals[i].at, sent + absl::Microseconds(20500)) << i;
    EXPECT_EQ(PingIndex(a.arrivals[i].bytes), i);
  }
}

TEST(SimulatorTest, LossFractionIsBinomial) {
  for (uint64_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE(absl::StrCat("seed=", seed));
    Simulator sim(seed);
    constexpr int kCount = 20000;
    PingNode a(B(), kCount, sim.start(), absl::Milliseconds(1));
    SinkNode b;
    ASSERT_TRUE(sim.AddNode(A(), &a).ok());
    ASSERT_TRUE(sim.AddNode(B(), &b).ok());
    impairment::ImpairmentConfig lossy;
    lossy.loss = 0.1;
    lossy.delay = absl::Milliseconds(5);
    ASSERT_TRUE(sim.SetLink(A(), B(), lossy).ok());
    sim.RunFor(absl::Seconds(30));
    const Simulator::PathStats stats = sim.path_stats(A(), B());
    EXPECT_EQ(stats.packets_sent, uint64_t{kCount});
    EXPECT_EQ(stats.counters.received, uint64_t{kCount});
    EXPECT_EQ(stats.counters.dropped_loss + b.arrivals.size(), uint64_t{kCount});
    EXPECT_EQ(stats.packets_delivered, b.arrivals.size());
    ExpectBinomial(stats.counters.dropped_loss, kCount, 0.1);
  }
}

// Everything at once: jitter, loss, reorder, duplicate, corrupt, both ways.
std::vector<Arrival> NoisyRun(uint64_t seed) {
  Simulator sim(seed);
  PingNode a(B(), 500, sim.start(), absl::Milliseconds(2));
  EchoNode b;
  EXPECT_TRUE(sim.AddNode(A(), &a).ok());
  EXPECT_TRUE(sim.AddNode(B(), &b).ok());
  impairment::ImpairmentConfig noisy;
  noisy.loss = 0.1;
  noisy.delay = absl::Milliseconds(10);
  noisy.jitter = absl::Milliseconds(5);
  noisy.reorder = 0.1;
  noisy.duplicate = 0.1;
  noisy.corrupt = 0.05;
  EXPECT_TRUE(sim.SetDefaultLink(noisy).ok());
  sim.RunFor(absl::Seconds(5));
  return a.arrivals;
}

TEST(SimulatorTest, SameSeedSameRunDifferentSeedDifferentRun) {
  for (uint64_t seed : {7u, 8u}) {
    SCOPED_TRACE(absl::StrCat("seed=", seed));
    const std::vector<Arrival> first = NoisyRun(seed);
    EXPECT_GT(first.size(), 300u);
    EXPECT_TRUE(first == NoisyRun(seed));
    EXPECT_FALSE(first == NoisyRun(seed + 100));
  }
}

TEST(SimulatorTest, PathsHaveIndependentSeeds) {
  // The same config on both directions must not make the same decisions.
  Simulator sim(5);
  SCOPED_TRACE("seed=5");
  PingNode a(B(), 1000, sim.start(), absl::Milliseconds(1));
  PingNode b(A(), 1000, sim.start(), absl::Milliseconds(1));
  ASSERT_TRUE(sim.AddNode(A(), &a).ok());
  ASSERT_TRUE(sim.AddNode(B(), &b).ok());
  impairment::ImpairmentConfig lossy;
  lossy.loss = 0.5;
  ASSERT_TRUE(sim.SetDefaultLink(lossy).ok());
  sim.RunFor(absl::Seconds(2));
  std::vector<int> got_a, got_b;
  for (const Arrival& x : a.arrivals) got_a.push_back(PingIndex(x.bytes));
  for (const Arrival& x : b.arrivals) got_b.push_back(PingIndex(x.bytes));
  EXPECT_NE(got_a, got_b);
}

TEST(SimulatorTest, DuplicatesArriveTwiceAtTheSameTime) {
  Simulator sim(3);
  SCOPED_TRACE("seed=3");
  PingNode a(B(), 10, sim.start(), absl::Milliseconds(1));
  SinkNode b;
  ASSERT_TRUE(sim.AddNode(A(), &a).ok());
  ASSERT_TRUE(sim.AddNode(B(), &b).ok());
  impairment::ImpairmentConfig dup;
  dup.duplicate = 1.0;
  dup.delay = absl::Milliseconds(4);
  ASSERT_TRUE(sim.SetLink(A(), B(), dup).ok());
  sim.RunFor(absl::Seconds(1));
  ASSERT_EQ(b.arrivals.size(), 20u);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(b.arrivals[2 * i], b.arrivals[2 * i + 1]);
    EXPECT_EQ(PingIndex(b.arrivals[2 * i].bytes), i);
  }
  EXPECT_EQ(sim.path_stats(A(), B()).counters.duplicated, 10u);
  EXPECT_EQ(sim.path_stats(A(), B()).packets_sent, 10u);
  EXPECT_EQ(sim.path_stats(A(), B()).packets_delivered, 20u);
}

TEST(SimulatorTest, ReorderedPacketsAreOvertaken) {
  Simulator sim(4);
  SCOPED_TRACE("seed=4");
  constexpr int kCount = 1000;
  PingNode a(B(), kCount, sim.start(), absl::Milliseconds(1));
  SinkNode b;
  ASSERT_TRUE(sim.AddNode(A(), &a).ok());
  ASSERT_TRUE(sim.AddNode(B(), &b).ok());
  impairment::ImpairmentConfig reorder;
  reorder.reorder = 0.1;
  reorder.reorder_delay = absl::Milliseconds(10);
  reorder.delay = absl::Milliseconds(5);
  ASSERT_TRUE(sim.SetLink(A(), B(), reorder).ok());
  sim.RunFor(absl::Seconds(2));
  ASSERT_EQ(b.arrivals.size(), size_t{kCount});
  int late = 0;
  for (const Arrival& x : b.arrivals) {
    const int i = PingIndex(x.bytes);
    const absl::Duration latency = x.at - (sim.start() + absl::Milliseconds(i));
    EXPECT_TRUE(latency == absl::Milliseconds(5) || latency == absl::Milliseconds(15)) << latency;
    if (latency == absl::Milliseconds(15)) ++late;
  }
  int inversions = 0;
  for (size_t k = 1; k < b.arrivals.size(); ++k) {
    if (PingIndex(b.arrivals[k].bytes) < PingIndex(b.arrivals[k - 1].bytes)) ++inversions;
  }
  EXPECT_EQ(static_cast<uint64_t>(late), sim.path_stats(A(), B()).counters.reordered);
  EXPECT_GT(inversions, 0);
  ExpectBinomial(late, kCount, 0.1);
}

// Five 1250-byte pings from `a` (at A()) to B() over a 1 Mbit/s link with
// 2 ms delay, sent at start + 100 ms (returned); runs the simulator 1 s.
absl::Time SendFivePingsAtOneMegabit(Simulator& sim, SinkNode& a) {
  impairment::ImpairmentConfig slow;
  slow.rate_bps = 1'000'000;
  slow.delay = absl::Milliseconds(2);
  EXPECT_TRUE(sim.SetLink(A(), B(), slow).ok());
  const absl::Time t0 = sim.start() + absl::Milliseconds(100);
  sim.At(t0, [&] {
    for (int i = 0; i < 5; ++i) a.Send(B(), Ping(i, 1250));
  });
  sim.RunFor(absl::Seconds(1));
  return t0;
}

TEST(SimulatorTest, BandwidthSpacesArrivals) {
  Simulator sim(1);
  SinkNode a, b;
  ASSERT_TRUE(sim.AddNode(A(), &a).ok());
  ASSERT_TRUE(sim.AddNode(B(), &b).ok());
  const absl::Time t0 = SendFivePingsAtOneMegabit(sim, a);
  ASSERT_EQ(b.arrivals.size(), 5u);
  // 1250 bytes * 8 / 1 Mbit/s = 10 ms per packet.
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(b.arrivals[i].at, t0 + absl::Milliseconds(10 * (i + 1) + 2)) << i;
    EXPECT_EQ(PingIndex(b.arrivals[i].bytes), i);
  }
}

// Records each OnDatagrams call's size besides the arrivals.
class BatchSinkNode : public SinkNode {
 public:
  void OnDatagrams(absl::Time now, const std::vector<Datagram>& batch) override {
    batches.push_back(batch.size());
    SinkNode::OnDatagrams(now, batch);
  }
  std::vector<size_t> batches;
};

TEST(SimulatorTest, ReceiveBatchingHandsOverWhatArrivedWithinTheInterval) {
  Simulator sim(1);
  SinkNode a;
  BatchSinkNode b;
  ASSERT_TRUE(sim.AddNode(A(), &a).ok());
  ASSERT_TRUE(sim.AddNode(B(), &b).ok());
  EXPECT_EQ(sim.SetReceiveBatching(B(), -absl::Microseconds(1)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sim.SetReceiveBatching(Addr("10.0.0.3:4000"), absl::Microseconds(1)).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(sim.SetReceiveBatching(B(), absl::Milliseconds(25)).ok());
  const absl::Time t0 = SendFivePingsAtOneMegabit(sim, a);
  // Arrivals at 12, 22, 32, 42, 52 ms: the first opens a read at 37 ms
  // (12, 22, 32), the fourth one at 67 ms (42, 52).
  ASSERT_EQ(b.arrivals.size(), 5u);
  EXPECT_EQ(b.batches, (std::vector<size_t>{3, 2}));
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(b.arrivals[i].at, t0 + absl::Milliseconds(i < 3 ? 37 : 67)) << i;
    EXPECT_EQ(PingIndex(b.arrivals[i].bytes), i);
    EXPECT_EQ(b.arrivals[i].from, A());
  }
  EXPECT_EQ(sim.path_stats(A(), B()).packets_delivered, 5u);
  // Off again: alone, on arrival.
  ASSERT_TRUE(sim.SetReceiveBatching(B(), absl::ZeroDuration()).ok());
  const absl::Time t1 = sim.now();
  sim.At(t1, [&] { a.Send(B(), Ping(5, 1250)); });
  sim.RunFor(absl::Seconds(1));
  ASSERT_EQ(b.arrivals.size(), 6u);
  EXPECT_EQ(b.arrivals[5].at, t1 + absl::Milliseconds(12));
  EXPECT_EQ(b.batches.size(), 2u);
}

TEST(SimulatorTest, BatchingTurnedOffWhileDatagramsWaitLetsNothingOvertakeThem) {
  Simulator sim(1);
  SinkNode a;
  BatchSinkNode b;
  ASSERT_TRUE(sim.AddNode(A(), &a).ok());
  ASSERT_TRUE(sim.AddNode(B(), &b).ok());
  ASSERT_TRUE(sim.SetReceiveBatching(B(), absl::Milliseconds(25)).ok());
  // Pings at 12, 22, 32, 42, 52 ms (see above); batching goes off at 15 ms,
  // while the first waits for its read at 37 ms.
  sim.At(sim.start() + absl::Milliseconds(115),
         [&] { ASSERT_TRUE(sim.SetReceiveBatching(B(), absl::ZeroDuration()).ok()); });
  const absl::Time t0 = SendFivePingsAtOneMegabit(sim, a);
  ASSERT_EQ(b.arrivals.size(), 5u);
  EXPECT_EQ(b.batches, (std::vector<size_t>{3}));  // 12, 22, 32 at 37 ms
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(PingIndex(b.arrivals[i].bytes), i);
    EXPECT_EQ(b.arrivals[i].at, t0 + absl::Milliseconds(i < 3 ? 37 : 10 * (i + 1) + 2)) << i;
  }
}

TEST(SimulatorTest, AReceiveBatchHoldsAtMostTheRuntimesBoundAndTheRestFollowsAtOnce) {
  Simulator sim(1);
  SinkNode a;
  BatchSinkNode b;
  ASSERT_TRUE(sim.AddNode(A(), &a).ok());
  ASSERT_TRUE(sim.AddNode(B(), &b).ok());
  ASSERT_TRUE(sim.SetReceiveBatching(B(), absl::Milliseconds(5)).ok());
  const int count = static_cast<int>(kMaxReceiveBatch) + 100;
  const absl::Time t0 = sim.start() + absl::Milliseconds(100);
  sim.At(t0, [&] {
    for (int i = 0; i < count; ++i) a.Send(B(), Ping(i, 100));
  });
  sim.RunFor(absl::Seconds(1));
  EXPECT_EQ(b.batches, (std::vector<size_t>{kMaxReceiveBatch, 100}));
  ASSERT_EQ(b.arrivals.size(), static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    EXPECT_EQ(b.arrivals[i].at, t0 + absl::Milliseconds(6)) << i;  // 1 ms link + 5 ms
    EXPECT_EQ(PingIndex(b.arrivals[i].bytes), i);
  }
}

TEST(SimulatorTest, BlackoutDropsEverythingInsideTheWindow) {
  Simulator sim(9);
  SCOPED_TRACE("seed=9");
  PingNode a(B(), 300, sim.start(), absl::Milliseconds(10));
  SinkNode b;
  ASSERT_TRUE(sim.AddNode(A(), &a).ok());
  ASSERT_TRUE(sim.AddNode(B(), &b).ok());
  impairment::ImpairmentConfig config;
  config.delay = absl::Milliseconds(1);
  config.blackouts.push_back({absl::Seconds(1), absl::Seconds(2)});  // from sim start
  ASSERT_TRUE(sim.SetLink(A(), B(), config).ok());
  sim.RunFor(absl::Seconds(5));
  std::vector<int> got;
  for (const Arrival& x : b.arrivals) got.push_back(PingIndex(x.bytes));
  std::vector<int> want;
  for (int i = 0; i < 300; ++i) {
    if (i < 100 || i >= 200) want.push_back(i);
  }
  EXPECT_EQ(got, want);
  EXPECT_EQ(sim.path_stats(A(), B()).counters.dropped_blackout, 100u);
}

TEST(SimulatorTest, PathsCarryAnEthernetPayloadByDefault) {
  Simulator sim(1);
  SinkNode a, b;
  ASSERT_TRUE(sim.AddNode(A(), &a).ok());
  ASSERT_TRUE(sim.AddNode(B(), &b).ok());
  sim.At(sim.start() + absl::Milliseconds(10), [&] {
    a.Send(B(), std::string(kDefaultPathMtu, 'a'));
    a.Send(B(), std::string(kDefaultPathMtu + 1, 'b'));
  });
  sim.RunFor(absl::Seconds(1));
  ASSERT_EQ(b.arrivals.size(), 1u);
  EXPECT_EQ(b.arrivals[0].bytes.size(), 1472u);
  EXPECT_EQ(sim.path_stats(A(), B()).mtu_dropped, 1u);
}

TEST(SimulatorTest, PathMtuDropsLargerDatagramsAndMayShrinkMidRun) {
  Simulator sim(1);
  SinkNode a, b;
  ASSERT_TRUE(sim.AddNode(A(), &a).ok());
  ASSERT_TRUE(sim.AddNode(B(), &b).ok());
  sim.SetPathMtu(A(), B(), 1472);
  sim.SetPathMtu(B(), A(), 0);  // no limit
  const absl::Time t = sim.start() + absl::Milliseconds(10);
  sim.At(t, [&] {
    a.Send(B(), std::string(1472, 'a'));
    a.Send(B(), std::string(1473, 'b'));
    b.Send(A(), std::string(9000, 'c'));  // the other direction has no limit
  });
  // A black hole: from now on only 1200 bytes get through.
  sim.At(t + absl::Seconds(1), [&] { sim.SetPathMtu(A(), B(), 1200); });
  sim.At(t + absl::Seconds(2), [&] {
    a.Send(B(), std::string(1201, 'd'));
    a.Send(B(), std::string(1200, 'e'));
  });
  sim.RunFor(absl::Seconds(3));
  ASSERT_EQ(b.arrivals.size(), 2u);
  EXPECT_EQ(b.arrivals[0].bytes.size(), 1472u);
  EXPECT_EQ(b.arrivals[1].bytes.size(), 1200u);
  ASSERT_EQ(a.arrivals.size(), 1u);
  EXPECT_EQ(sim.path_stats(A(), B()).mtu_dropped, 2u);
  EXPECT_EQ(sim.path_stats(A(), B()).packets_sent, 4u);
  EXPECT_EQ(sim.path_stats(B(), A()).mtu_dropped, 0u);
}

TEST(SimulatorTest, InjectBypassesLinks) {
  Simulator sim(1);
  SinkNode a, b;
  ASSERT_TRUE(sim.AddNode(A(), &a).ok());
  ASSERT_TRUE(sim.AddNode(B(), &b).ok());
  impairment::ImpairmentConfig dead;
  dead.loss = 1.0;
  dead.delay = absl::Seconds(1);
  ASSERT_TRUE(sim.SetDefaultLink(dead).ok());
  const udp::SocketAddress spoofed = Addr("192.0.2.7:9");
  const absl::Time t = sim.start() + absl::Milliseconds(250);
  sim.Inject(t, Datagram{spoofed, B(), "forged"});
  sim.Inject(t, Datagram{A(), B(), "also"});
  sim.RunFor(absl::Seconds(1));
  EXPECT_THAT(b.arrivals, ElementsAre(Arrival{t, spoofed, B(), "forged"},
                                      Arrival{t, A(), B(), "also"}));
  EXPECT_EQ(sim.path_stats(A(), B()).packets_sent, 0u);
  EXPECT_EQ(sim.path_stats(A(), B()).packets_delivered, 0u);
}

TEST(SimulatorTest, AtRunsActionsAtTheirTimeInInsertionOrder) {
  Simulator sim(1);
  std::vector<std::pair<int, absl::Time>> log;
  const absl::Time s = sim.start();
  sim.At(s + absl::Seconds(2), [&] { log.push_back({1, sim.now()}); });
  sim.At(s + absl::Seconds(1), [&] { log.push_back({2, sim.now()}); });
  sim.At(s + absl::Seconds(2), [&] {
    log.push_back({3, sim.now()});
    sim.At(s, [&] { log.push_back({4, sim.now()}); });  // past: runs now
  });
  sim.At(s + absl::Seconds(9), [&] { log.push_back({5, sim.now()}); });
  sim.RunFor(absl::Seconds(3));
  EXPECT_THAT(log, ElementsAre(std::make_pair(2, s + absl::Seconds(1)),
                               std::make_pair(1, s + absl::Seconds(2)),
                               std::make_pair(3, s + absl::Seconds(2)),
                               std::make_pair(4, s + absl::Seconds(2))));
  EXPECT_EQ(sim.now(), s + absl::Seconds(3));
  EXPECT_EQ(sim.pending_events(), 1u);
}

TEST(SimulatorTest, RunUntilStopsWhenDone) {
  Simulator sim(1);
  PingNode a(B(), 10, sim.start(), absl::Milliseconds(10));
  SinkNode b;
  ASSERT_TRUE(sim.AddNode(A(), &a).ok());
  ASSERT_TRUE(sim.AddNode(B(), &b).ok());
  EXPECT_TRUE(sim.RunUntil([&] { return b.arrivals.size() == 3; },
                           sim.start() + absl::Seconds(10)));
  EXPECT_EQ(sim.now(), sim.start() + absl::Milliseconds(21));
  EXPECT_FALSE(sim.RunUntil([&] { return b.arrivals.size() == 11; },
                            sim.start() + absl::Seconds(10)));
  EXPECT_EQ(b.arrivals.size(), 10u);
  EXPECT_EQ(sim.now(), sim.start() + absl::Seconds(10));
  EXPECT_TRUE(sim.status().ok());
}

TEST(SimulatorTest, TimersFireExactlyAndStaleTimersAreSkipped) {
  Simulator sim(1);
  TimerNode n;
  const absl::Time s = sim.start();
  n.deadline = s + absl::Milliseconds(10);
  ASSERT_TRUE(sim.AddNode(A(), &n).ok());  // polls: timer at +10ms
  // Moved later through At() (which polls): the +10ms event goes stale.
  sim.At(s + absl::Milliseconds(5), [&] { n.deadline = s + absl::Milliseconds(20); });
  sim.RunFor(absl::Milliseconds(25));
  EXPECT_THAT(n.fired, ElementsAre(s + absl::Milliseconds(20)));
  EXPECT_EQ(sim.stale_timers(), 1u);

  // Moved later behind the simulator's back, then polled: still exact.
  n.deadline = s + absl::Milliseconds(40);
  sim.PollAll();
  n.deadline = s + absl::Milliseconds(50);  // no poll: the +40ms timer fires early...
  sim.RunFor(absl::Milliseconds(45));        // ...but OnTimeout is not called
  EXPECT_THAT(n.fired, ElementsAre(s + absl::Milliseconds(20), s + absl::Milliseconds(50)));
  EXPECT_EQ(sim.now(), s + absl::Milliseconds(70));
  EXPECT_EQ(sim.overdue_timers(), 0u);
}

TEST(SimulatorTest, PastDeadlineIsScheduledAtNow) {
  Simulator sim(1);
  TimerNode n;
  ASSERT_TRUE(sim.AddNode(A(), &n).ok());
  sim.RunFor(absl::Seconds(1));
  n.deadline = sim.start();  // a second ago
  sim.PollAll();
  sim.RunFor(absl::Seconds(1));
  EXPECT_THAT(n.fired, ElementsAre(sim.start() + absl::Seconds(1)));
  EXPECT_EQ(sim.overdue_timers(), 1u);
}

TEST(SimulatorTest, UndeliverableIsCounted) {
  Simulator sim(1);
  SinkNode a;
  ASSERT_TRUE(sim.AddNode(A(), &a).ok());
  const udp::SocketAddress nobody = Addr("10.0.0.99:1");
  sim.At(sim.start(), [&] {
    a.Send(nobody, "lost");
    a.Send(B(), "lost too");
  });
  sim.Inject(sim.start(), Datagram{A(), nobody, "forged"});
  sim.RunFor(absl::Seconds(1));
  EXPECT_EQ(sim.undeliverable(), 3u);
  EXPECT_EQ(sim.path_stats(A(), nobody).packets_sent, 1u);
  EXPECT_EQ(sim.path_stats(A(), nobody).packets_delivered, 0u);
}

TEST(SimulatorTest, MaxEventsStopsALivelock) {
  Simulator sim(1);
  TimerNode n;
  n.stuck = true;
  n.deadline = sim.start() + absl::Milliseconds(1);
  ASSERT_TRUE(sim.AddNode(A(), &n).ok());
  sim.set_max_events(1000);
  EXPECT_FALSE(sim.RunUntil([] { return false; }, sim.start() + absl::Seconds(1)));
  EXPECT_EQ(sim.events_processed(), 1000u);
  EXPECT_EQ(n.fired.size(), 1000u);
  EXPECT_EQ(sim.now(), sim.start() + absl::Milliseconds(1));
  EXPECT_EQ(sim.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(sim.overdue_timers(), 1000u);  // after every OnTimeout
}

TEST(SimulatorTest, ConfigurationErrors) {
  Simulator sim(1);
  SinkNode a, b;
  ASSERT_TRUE(sim.AddNode(A(), &a).ok());
  EXPECT_EQ(sim.AddNode(A(), &b).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(sim.AddNode(udp::SocketAddress(), &b).code(), absl::StatusCode::kInvalidArgument);
  impairment::ImpairmentConfig bad;
  bad.loss = 1.5;
  EXPECT_EQ(sim.SetLink(A(), B(), bad).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sim.SetDefaultLink(bad).code(), absl::StatusCode::kInvalidArgument);
  const Simulator::PathStats unused = sim.path_stats(A(), B());
  EXPECT_EQ(unused.packets_sent, 0u);
  EXPECT_EQ(unused.counters, impairment::ImpairmentCounters{});
}

TEST(SimulatorTest, IdleRunAdvancesTime) {
  Simulator sim(1, absl::UnixEpoch());
  EXPECT_EQ(sim.now(), absl::UnixEpoch());
  sim.RunFor(absl::Minutes(3));
  EXPECT_EQ(sim.now(), absl::UnixEpoch() + absl::Minutes(3));
  EXPECT_EQ(sim.events_processed(), 0u);
}

TEST(SimulatorTest, NatRebindingChangesTheSourceAndRetiresTheOldAddress) {
  Simulator sim(7);
  SinkNode client;
  EchoNode server;
  const udp::SocketAddress c = Addr("10.0.0.2:5000");
  const udp::SocketAddress moved = Addr("10.0.0.2:40001");
  ASSERT_TRUE(sim.AddNode(c, &client).ok());
  ASSERT_TRUE(sim.AddNode(A(), &server).ok());
  sim.At(sim.now(), [&] { client.Send(A(), "before"); });
  sim.RunFor(absl::Milliseconds(10));
  ASSERT_EQ(client.arrivals.size(), 1u);
  EXPECT_EQ(server.arrivals.back().from, c);
  EXPECT_EQ(client.arrivals.back().to, c);

  // The NAT rebinds: the client's datagrams now come from `moved`, the echo
  // to `moved` reaches it, and datagrams to its old address are dropped.
  ASSERT_TRUE(sim.Rebind(c, moved).ok());
  EXPECT_EQ(sim.PublicAddress(c), moved);
  sim.At(sim.now(), [&] { client.Send(A(), "after"); });
  sim.Inject(sim.now(), Datagram{A(), c, "to the old address"});
  sim.RunFor(absl::Milliseconds(10));
  ASSERT_EQ(server.arrivals.size(), 2u);
  EXPECT_EQ(server.arrivals.back().from, moved);
  ASSERT_EQ(client.arrivals.size(), 2u);
  EXPECT_EQ(client.arrivals.back().to, moved);
  EXPECT_EQ(client.arrivals.back().bytes, "after");
  EXPECT_EQ(sim.nat_dropped(), 1u);
  EXPECT_EQ(sim.path_stats(moved, A()).packets_delivered, 1u);

  // Errors: an unknown node, another node's address.
  EXPECT_EQ(sim.Rebind(Addr("10.9.9.9:1"), moved).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sim.Rebind(c, A()).code(), absl::StatusCode::kAlreadyExists);
  // Back to its own address: `moved` is retired in turn.
  ASSERT_TRUE(sim.Rebind(c, c).ok());
  sim.Inject(sim.now(), Datagram{A(), moved, "late"});
  sim.At(sim.now(), [&] { client.Send(A(), "home"); });
  sim.RunFor(absl::Milliseconds(10));
  EXPECT_EQ(sim.nat_dropped(), 2u);
  EXPECT_EQ(server.arrivals.back().from, c);
  EXPECT_EQ(client.arrivals.back().to, c);
}

}  // namespace
}  // namespace udpmsg::sim
