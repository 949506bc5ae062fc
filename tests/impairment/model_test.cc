#include "impairment/model.h"

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace udpmsg::impairment {
namespace {

absl::Time Origin() { return absl::UnixEpoch() + absl::Hours(1000); }

ImpairmentModel MakeModel(const ImpairmentConfig& config) {
  absl::StatusOr<ImpairmentModel> model = ImpairmentModel::Create(config, Origin());
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return *ImpairmentModel::Create(ImpairmentConfig{}, Origin());
  return *std::move(model);
}

// A payload that differs per packet, so corruption and duplication can be
// traced back to their input.
std::string Payload(uint64_t i, size_t size = 100) {
  std::string bytes(size, '\0');
  for (size_t k = 0; k < size; ++k) bytes[k] = static_cast<char>((i * 131 + k * 7) & 0xff);
  return bytes;
}

// |observed - n*p| <= sigmas * sqrt(inflation * n*p*(1-p)), where `inflation`
// widens the variance for correlated (Markov) trials.
void ExpectBinomial(uint64_t observed, uint64_t n, double p, double inflation = 1.0,
                    double sigmas = 5.0) {
  const double mean = static_cast<double>(n) * p;
  const double sd = std::sqrt(inflation * static_cast<double>(n) * p * (1.0 - p));
  EXPECT_NEAR(static_cast<double>(observed), mean, sigmas * sd + 1e-9)
      << "observed " << observed << " of " << n << ", expected rate " << p;
}

int HammingDistance(const std::string& a, const std::string& b) {
  int bits = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    bits += __builtin_popcount(static_cast<uint8_t>(a[i] ^ b[i]));
  }
  return bits;
}

// Runs `n` packets spaced by `gap` and records, per packet, whether it was
// lost (no delivery).
std::vector<bool> LossPattern(const ImpairmentConfig& config, int n) {
  ImpairmentModel model = MakeModel(config);
  std::vector<bool> lost;
  lost.reserve(n);
  std::vector<Delivery> out;
  const std::string bytes = Payload(0, 20);
  for (int i = 0; i < n; ++i) {
    out.clear();
    lost.push_back(model.OnPacket(Origin() + absl::Milliseconds(i), bytes, &out) == 0);
  }
  return lost;
}

// ---------------------------------------------------------------------------
// Determinism

ImpairmentConfig Everything(uint64_t seed) {
  ImpairmentConfig c;
  c.loss = 0.1;
  c.burst = 0.4;
  c.delay = absl::Milliseconds(20);
  c.jitter = absl::Milliseconds(7);
  c.reorder = 0.05;
  c.reorder_delay = absl::Milliseconds(4);
  c.duplicate = 0.05;
  c.corrupt = 0.05;
  c.rate_bps = 4'000'000;  // offered ~5.6 Mbit/s, so the queue overflows
  c.queue_limit_bytes = 8000;
  c.blackouts = {{absl::Seconds(1), absl::Milliseconds(1200)}};
  c.seed = seed;
  return c;
}

std::vector<Delivery> RunEverything(uint64_t seed, ImpairmentCounters* counters) {
  ImpairmentModel model = MakeModel(Everything(seed));
  std::vector<Delivery> out;
  for (int i = 0; i < 5000; ++i) {
    // Bursts of 4 back-to-back packets every 2 ms so the queue fills sometimes.
    const absl::Time now = Origin() + absl::Milliseconds(2 * (i / 4));
    model.OnPacket(now, Payload(i, 200 + i % 300), &out);
  }
  *counters = model.counters();
  return out;
}

bool SameDeliveries(const std::vector<Delivery>& a, const std::vector<Delivery>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].deliver_at != b[i].deliver_at || a[i].bytes != b[i].bytes ||
        a[i].duplicate != b[i].duplicate || a[i].reordered != b[i].reordered ||
        a[i].corrupted != b[i].corrupted) {
      return false;
    }
  }
  return true;
}

TEST(ImpairmentModelTest, SameSeedGivesIdenticalDeliveries) {
  for (uint64_t seed : {1u, 2u, 12345u}) {
    SCOPED_TRACE(absl::StrCat("seed=", seed));
    ImpairmentCounters c1, c2, c3;
    const std::vector<Delivery> first = RunEverything(seed, &c1);
    const std::vector<Delivery> second = RunEverything(seed, &c2);
    const std::vector<Delivery> other = RunEverything(seed + 1000, &c3);
    EXPECT_TRUE(SameDeliveries(first, second));
    EXPECT_EQ(c1, c2) << c1.ToString() << " vs " << c2.ToString();
    EXPECT_FALSE(SameDeliveries(first, other));
    // Every impairment was exercised, so the comparison means something.
    EXPECT_GT(c1.dropped_loss, 0u) << c1.ToString();
    EXPECT_GT(c1.dropped_queue, 0u) << c1.ToString();
    EXPECT_GT(c1.dropped_blackout, 0u) << c1.ToString();
    EXPECT_GT(c1.duplicated, 0u) << c1.ToString();
    EXPECT_GT(c1.reordered, 0u) << c1.ToString();
    EXPECT_GT(c1.corrupted, 0u) << c1.ToString();
  }
}

TEST(ImpairmentModelTest, CopiedModelMakesTheSameFutureDecisions) {
  ImpairmentModel a = MakeModel(Everything(5));
  for (int i = 0; i < 100; ++i) a.OnPacket(Origin() + absl::Milliseconds(i), Payload(i));
  ImpairmentModel b = a;
  for (int i = 100; i < 1000; ++i) {
    const absl::Time now = Origin() + absl::Milliseconds(i);
    ASSERT_TRUE(SameDeliveries(a.OnPacket(now, Payload(i)), b.OnPacket(now, Payload(i))))
        << "packet " << i;
  }
}

TEST(ImpairmentModelTest, EnablingOtherImpairmentsDoesNotChangeWhichPacketsAreLost) {
  for (uint64_t seed : {3u, 4u}) {
    SCOPED_TRACE(absl::StrCat("seed=", seed));
    ImpairmentConfig plain;
    plain.loss = 0.2;
    plain.burst = 0.5;
    plain.seed = seed;
    ImpairmentConfig busy = plain;
    busy.jitter = absl::Milliseconds(3);
    busy.reorder = 0.3;
    busy.duplicate = 0.3;
    busy.corrupt = 0.3;
    EXPECT_EQ(LossPattern(plain, 20000), LossPattern(busy, 20000));
  }
}

TEST(ImpairmentModelTest, PerfectLinkDeliversOnceImmediatelyUnchanged) {
  ImpairmentModel model = MakeModel(ImpairmentConfig{});
  const absl::Time now = Origin() + absl::Seconds(3);
  std::vector<Delivery> out = model.OnPacket(now, absl::string_view("hello"));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].deliver_at, now);
  EXPECT_EQ(out[0].bytes, "hello");
  EXPECT_FALSE(out[0].duplicate || out[0].reordered || out[0].corrupted);
  const uint8_t raw[] = {1, 2, 3};
  out = model.OnPacket(now, absl::Span<const uint8_t>(raw));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].bytes, std::string("\x01\x02\x03"));
  EXPECT_EQ(model.counters().received, 2u);
  EXPECT_EQ(model.counters().delivered, 2u);
  EXPECT_EQ(model.counters().bytes_in, 8u);
  EXPECT_EQ(model.counters().bytes_out, 8u);
}

// ---------------------------------------------------------------------------
// Loss

TEST(ImpairmentModelTest, IndependentLossRateIsWithinBinomialTolerance) {
  constexpr int kPackets = 100000;
  for (double loss : {0.01, 0.1, 0.3, 0.7}) {
    for (uint64_t seed : {1u, 2u, 3u, 99u, 2024u}) {
      SCOPED_TRACE(absl::StrCat("seed=", seed, " loss=", loss));
      ImpairmentConfig c;
      c.loss = loss;
      c.seed = seed;
      const std::vector<bool> lost = LossPattern(c, kPackets);
      uint64_t dropped = 0, runs = 0;
      for (int i = 0; i < kPackets; ++i) {
        dropped += lost[i];
        runs += lost[i] && (i == 0 || !lost[i - 1]);
      }
      ExpectBinomial(dropped, kPackets, loss);
      // Independent losses: runs are geometric with mean 1/(1-loss).
      const double mean_run = static_cast<double>(dropped) / runs;
      const double expected_run = 1.0 / (1.0 - loss);
      const double sd = std::sqrt(loss) / (1.0 - loss) / std::sqrt(static_cast<double>(runs));
      EXPECT_NEAR(mean_run, expected_run, 5 * sd);
    }
  }
}

TEST(ImpairmentModelTest, BurstLossHasConfiguredMeanBurstLengthAndLongRunRate) {
  constexpr int kPackets = 200000;
  struct Case {
    double loss, burst;
  };
  for (const Case& k : {Case{0.1, 0.8}, Case{0.3, 0.5}, Case{0.6, 0.5}, Case{0.02, 0.9}}) {
    for (uint64_t seed : {11u, 12u, 13u}) {
      SCOPED_TRACE(absl::StrCat("seed=", seed, " loss=", k.loss, " burst=", k.burst));
      ImpairmentConfig c;
      c.loss = k.loss;
      c.burst = k.burst;
      c.seed = seed;
      const std::vector<bool> lost = LossPattern(c, kPackets);
      uint64_t dropped = 0, runs = 0;
      for (int i = 0; i < kPackets; ++i) {
        dropped += lost[i];
        runs += lost[i] && (i == 0 || !lost[i - 1]);
      }
      // A two-state chain's count has variance n*p*(1-p)*(1+l)/(1-l), where
      // l = burst - p_enter is the chain's second eigenvalue.
      const double enter = k.loss * (1 - k.burst) / (1 - k.loss);
      const double lambda = k.burst - enter;
      ExpectBinomial(dropped, kPackets, k.loss, (1 + lambda) / (1 - lambda));
      const double mean_run = static_cast<double>(dropped) / runs;
      const double sd = std::sqrt(k.burst) / (1 - k.burst) / std::sqrt(static_cast<double>(runs));
      EXPECT_NEAR(mean_run, 1.0 / (1.0 - k.burst), 5 * sd);
    }
  }
}

TEST(ImpairmentModelTest, LossZeroAndOneAreExact) {
  for (double burst : {0.0, 0.7}) {
    ImpairmentConfig c;
    c.burst = burst;
    c.loss = 0.0;
    for (bool l : LossPattern(c, 1000)) ASSERT_FALSE(l);
    c.loss = 1.0;
    for (bool l : LossPattern(c, 1000)) ASSERT_TRUE(l);
  }
}

// ---------------------------------------------------------------------------
// Delay, jitter, reorder

TEST(ImpairmentModelTest, DelayAndJitterStayWithinBoundsAndKeepOrder) {
  for (uint64_t seed : {1u, 77u}) {
    SCOPED_TRACE(absl::StrCat("seed=", seed));
    ImpairmentConfig c;
    c.delay = absl::Milliseconds(20);
    c.jitter = absl::Milliseconds(5);
    c.seed = seed;
    ImpairmentModel model = MakeModel(c);
    absl::Duration min_latency = absl::InfiniteDuration();
    absl::Duration max_latency = -absl::InfiniteDuration();
    absl::Duration sum = absl::ZeroDuration();
    absl::Time previous = absl::InfinitePast();
    constexpr int kPackets = 10000;
    for (int i = 0; i < kPackets; ++i) {
      // Half the packets 1 ms apart (the order clamp matters), half 50 ms apart.
      const absl::Time now =
          Origin() + (i < kPackets / 2 ? absl::Milliseconds(i) : absl::Milliseconds(50 * i));
      std::vector<Delivery> out = model.OnPacket(now, Payload(i, 10));
      ASSERT_EQ(out.size(), 1u);
      const absl::Duration latency = out[0].deliver_at - now;
      ASSERT_GE(latency, c.delay) << "packet " << i;
      ASSERT_LE(latency, c.delay + c.jitter) << "packet " << i;
      ASSERT_GE(out[0].deliver_at, previous) << "jitter reordered packet " << i;
      previous = out[0].deliver_at;
      min_latency = std::min(min_latency, latency);
      max_latency = std::max(max_latency, latency);
      if (i >= kPackets / 2) sum += latency;
    }
    // The whole jitter range is used...
    EXPECT_LT(min_latency, c.delay + absl::Milliseconds(0.1));
    EXPECT_GT(max_latency, c.delay + c.jitter - absl::Milliseconds(0.1));
    // ...uniformly: widely spaced packets average delay + jitter/2
    // (sd of the mean = 5ms/sqrt(12*5000) ~ 0.02 ms).
    EXPECT_NEAR(absl::ToDoubleMilliseconds(sum / (kPackets / 2)), 22.5, 0.1);
  }
}

TEST(ImpairmentModelTest, ReorderMakesLaterPacketsOvertakeAtTheConfiguredRate) {
  constexpr int kPackets = 50000;
  for (uint64_t seed : {5u, 6u, 7u}) {
    SCOPED_TRACE(absl::StrCat("seed=", seed));
    ImpairmentConfig c;
    c.delay = absl::Milliseconds(20);
    c.reorder = 0.1;
    c.reorder_delay = absl::Milliseconds(5);
    c.seed = seed;
    ImpairmentModel model = MakeModel(c);
    std::vector<absl::Time> at(kPackets);
    std::vector<bool> flagged(kPackets);
    for (int i = 0; i < kPackets; ++i) {
      std::vector<Delivery> out = model.OnPacket(Origin() + absl::Milliseconds(i), Payload(i, 8));
      ASSERT_EQ(out.size(), 1u);
      at[i] = out[0].deliver_at;
      flagged[i] = out[0].reordered;
    }
    // A packet is overtaken when some later-sent packet arrives strictly
    // earlier. Later packets can only be 1..5 ms behind it.
    uint64_t overtaken = 0, flagged_count = 0;
    for (int i = 0; i < kPackets; ++i) {
      flagged_count += flagged[i];
      bool was_overtaken = false;
      for (int j = i + 1; j < std::min(kPackets, i + 6); ++j) was_overtaken |= at[j] < at[i];
      overtaken += was_overtaken;
      if (was_overtaken) {
        ASSERT_TRUE(flagged[i]) << "packet " << i << " overtaken but not held";
      }
      if (flagged[i]) {
        ASSERT_EQ(at[i] - (Origin() + absl::Milliseconds(i)), absl::Milliseconds(25));
      }
    }
    EXPECT_EQ(flagged_count, model.counters().reordered);
    ExpectBinomial(overtaken, kPackets, c.reorder);
    // A held packet escapes being overtaken only if the next four are held too.
    EXPECT_LE(flagged_count - overtaken, 5u);
  }
}

// ---------------------------------------------------------------------------
// Duplicate, corrupt

TEST(ImpairmentModelTest, DuplicateRateAndCopiesAreIdentical) {
  constexpr int kPackets = 100000;
  for (uint64_t seed : {1u, 8u}) {
    SCOPED_TRACE(absl::StrCat("seed=", seed));
    ImpairmentConfig c;
    c.duplicate = 0.05;
    c.delay = absl::Milliseconds(1);
    c.seed = seed;
    ImpairmentModel model = MakeModel(c);
    uint64_t copies = 0, pairs = 0;
    for (int i = 0; i < kPackets; ++i) {
      const std::string bytes = Payload(i, 16);
      std::vector<Delivery> out = model.OnPacket(Origin() + absl::Microseconds(i), bytes);
      ASSERT_GE(out.size(), 1u);
      ASSERT_LE(out.size(), 2u);
      copies += out.size();
      EXPECT_FALSE(out[0].duplicate);
      if (out.size() == 2) {
        ++pairs;
        EXPECT_TRUE(out[1].duplicate);
        EXPECT_EQ(out[1].bytes, bytes);
        EXPECT_EQ(out[1].deliver_at, out[0].deliver_at);
      }
    }
    ExpectBinomial(pairs, kPackets, c.duplicate);
    EXPECT_EQ(model.counters().duplicated, pairs);
    EXPECT_EQ(model.counters().delivered, copies);
    EXPECT_EQ(copies, kPackets + pairs);
    EXPECT_EQ(model.counters().bytes_out, copies * 16);
  }
}

TEST(ImpairmentModelTest, CorruptFlipsOneToThreeBitsAndKeepsLength) {
  ImpairmentConfig c;
  c.corrupt = 1.0;
  c.seed = 31;
  ImpairmentModel model = MakeModel(c);
  constexpr int kPackets = 30000;
  uint64_t by_flips[4] = {0, 0, 0, 0};
  for (int i = 0; i < kPackets; ++i) {
    const std::string bytes = Payload(i, 1 + i % 100);
    std::vector<Delivery> out = model.OnPacket(Origin(), bytes);
    ASSERT_EQ(out.size(), 1u);
    ASSERT_EQ(out[0].bytes.size(), bytes.size());
    ASSERT_TRUE(out[0].corrupted);
    const int flips = HammingDistance(bytes, out[0].bytes);
    ASSERT_GE(flips, 1) << "packet " << i;
    ASSERT_LE(flips, 3) << "packet " << i;
    ++by_flips[flips];
  }
  for (int k = 1; k <= 3; ++k) ExpectBinomial(by_flips[k], kPackets, 1.0 / 3);
  EXPECT_EQ(model.counters().corrupted, static_cast<uint64_t>(kPackets));

  // A one-byte packet can still take three distinct flips; an empty one none.
  std::vector<Delivery> tiny = model.OnPacket(Origin(), absl::string_view("\x00", 1));
  ASSERT_EQ(tiny.size(), 1u);
  EXPECT_NE(tiny[0].bytes, std::string(1, '\0'));
  std::vector<Delivery> empty = model.OnPacket(Origin(), absl::string_view());
  ASSERT_EQ(empty.size(), 1u);
  EXPECT_TRUE(empty[0].bytes.empty());
  EXPECT_FALSE(empty[0].corrupted);
}

TEST(ImpairmentModelTest, CorruptRateIsWithinBinomialTolerance) {
  constexpr int kPackets = 100000;
  for (uint64_t seed : {2u, 3u}) {
    SCOPED_TRACE(absl::StrCat("seed=", seed));
    ImpairmentConfig c;
    c.corrupt = 0.2;
    c.seed = seed;
    ImpairmentModel model = MakeModel(c);
    uint64_t changed = 0;
    for (int i = 0; i < kPackets; ++i) {
      const std::string bytes = Payload(i, 32);
      std::vector<Delivery> out = model.OnPacket(Origin(), bytes);
      ASSERT_EQ(out.size(), 1u);
      ASSERT_EQ(out[0].corrupted, out[0].bytes != bytes);
      changed += out[0].bytes != bytes;
    }
    ExpectBinomial(changed, kPackets, c.corrupt);
    EXPECT_EQ(model.counters().corrupted, changed);
  }
}

// ---------------------------------------------------------------------------
// Bottleneck

TEST(ImpairmentModelTest, RateLimitSpacesDeliveriesBySerializationTime) {
  ImpairmentConfig c;
  c.rate_bps = 8'000'000;  // 1000 bytes = 1 ms, 500 bytes = 0.5 ms
  c.delay = absl::Milliseconds(10);
  c.queue_limit_bytes = 1'000'000;
  ImpairmentModel model = MakeModel(c);
  const absl::Time t0 = Origin();
  for (int i = 1; i <= 5; ++i) {
    std::vector<Delivery> out = model.OnPacket(t0, Payload(i, 1000));
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].deliver_at, t0 + absl::Milliseconds(i) + absl::Milliseconds(10));
  }
  // Queued behind the five: starts at 5 ms, takes 0.5 ms.
  std::vector<Delivery> out = model.OnPacket(t0 + absl::Milliseconds(1), Payload(6, 500));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].deliver_at, t0 + absl::Microseconds(5500) + absl::Milliseconds(10));
  // After the link went idle, no leftover: now + 1 ms + delay.
  const absl::Time later = t0 + absl::Seconds(1);
  out = model.OnPacket(later, Payload(7, 1000));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].deliver_at, later + absl::Milliseconds(11));
  // An odd rate: 1200 bytes at 1 Mbit/s = 9.6 ms.
  c.rate_bps = 1'000'000;
  ImpairmentModel slow = MakeModel(c);
  out = slow.OnPacket(t0, Payload(8, 1200));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].deliver_at, t0 + absl::Microseconds(9600) + absl::Milliseconds(10));
}

TEST(ImpairmentModelTest, RateLimitTailDropsWhenQueueWouldOverflow) {
  ImpairmentConfig c;
  c.rate_bps = 8'000'000;
  c.queue_limit_bytes = 5000;
  ImpairmentModel model = MakeModel(c);
  const absl::Time t0 = Origin();
  int accepted = 0;
  for (int i = 0; i < 10; ++i) accepted += model.OnPacket(t0, Payload(i, 1000)).size();
  EXPECT_EQ(accepted, 5);  // 5000 bytes fill the queue exactly
  EXPECT_EQ(model.counters().dropped_queue, 5u);
  // Half a packet has drained: 4500 bytes queued, 1000 more would overflow,
  // 500 fit exactly.
  const absl::Time half = t0 + absl::Microseconds(500);
  EXPECT_TRUE(model.OnPacket(half, Payload(10, 1000)).empty());
  std::vector<Delivery> out = model.OnPacket(half, Payload(11, 500));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].deliver_at, t0 + absl::Microseconds(5500));
  EXPECT_EQ(model.counters().dropped_queue, 6u);
  // A packet larger than the whole queue never fits.
  EXPECT_TRUE(model.OnPacket(t0 + absl::Seconds(10), Payload(12, 5001)).empty());
  EXPECT_EQ(model.counters().dropped_queue, 7u);
  EXPECT_EQ(model.counters().received, 13u);
  EXPECT_EQ(model.counters().delivered, 6u);
}

TEST(ImpairmentModelTest, SustainedOverloadDeliversAtTheBottleneckRate) {
  ImpairmentConfig c;
  c.rate_bps = 1'000'000;  // 125 bytes/ms
  c.queue_limit_bytes = 10'000;
  ImpairmentModel model = MakeModel(c);
  // Offer 250 bytes every 1 ms (2x the rate) for 10 s.
  uint64_t delivered_bytes = 0;
  absl::Time last = Origin();
  for (int i = 0; i < 10000; ++i) {
    for (const Delivery& d : model.OnPacket(Origin() + absl::Milliseconds(i), Payload(i, 250))) {
      delivered_bytes += d.bytes.size();
      EXPECT_GE(d.deliver_at, last);
      last = d.deliver_at;
    }
  }
  const double seconds = absl::ToDoubleSeconds(last - Origin());
  EXPECT_NEAR(delivered_bytes * 8 / seconds, 1e6, 1e6 * 0.01);
  // Accepted = what the link serves in 10 s plus the final full queue:
  // (1.25 MB + 10 kB) / 250 B = 5040 packets, so 4960 are dropped.
  EXPECT_NEAR(static_cast<double>(model.counters().dropped_queue), 4960, 2);
}

// ---------------------------------------------------------------------------
// Blackout

TEST(ImpairmentModelTest, BlackoutDropsEverythingInsideTheWindowOnly) {
  ImpairmentConfig c;
  c.delay = absl::Milliseconds(5);
  c.blackouts = {{absl::Seconds(1), absl::Seconds(2)},
                 {absl::Seconds(5), absl::InfiniteDuration()}};
  ImpairmentModel model = MakeModel(c);
  uint64_t expected_drops = 0;
  for (int ms = 0; ms < 7000; ms += 10) {
    const bool dark = (ms >= 1000 && ms < 2000) || ms >= 5000;
    expected_drops += dark;
    const size_t copies = model.OnPacket(Origin() + absl::Milliseconds(ms), Payload(ms)).size();
    ASSERT_EQ(copies, dark ? 0u : 1u) << "at " << ms << " ms";
  }
  EXPECT_EQ(model.counters().dropped_blackout, expected_drops);
  // Edges: start inclusive, end exclusive, to the nanosecond.
  ImpairmentModel edges = MakeModel(c);
  EXPECT_EQ(edges.OnPacket(Origin() + absl::Seconds(1) - absl::Nanoseconds(1), "x").size(), 1u);
  EXPECT_EQ(edges.OnPacket(Origin() + absl::Seconds(1), "x").size(), 0u);
  EXPECT_EQ(edges.OnPacket(Origin() + absl::Seconds(2) - absl::Nanoseconds(1), "x").size(), 0u);
  EXPECT_EQ(edges.OnPacket(Origin() + absl::Seconds(2), "x").size(), 1u);
}

// ---------------------------------------------------------------------------
// Validation

TEST(ImpairmentValidateTest, AcceptsDefaultsAndBoundaries) {
  EXPECT_TRUE(Validate(ImpairmentConfig{}).ok());
  EXPECT_TRUE(Validate(Everything(1)).ok());
  ImpairmentConfig c;
  c.loss = 1.0;
  c.burst = 1.0;  // loss 1 never needs to leave the bad state
  EXPECT_TRUE(Validate(c).ok());
  c.loss = 0.6;
  c.burst = 0.34;  // >= 2 - 1/0.6 = 0.333...
  EXPECT_TRUE(Validate(c).ok()) << Validate(c);
  c.loss = 0.9;
  c.burst = 0.0;  // independent loss has no such limit
  EXPECT_TRUE(Validate(c).ok());
}

TEST(ImpairmentValidateTest, RejectsBadConfigsWithClearMessages) {
  struct Case {
    const char* name;
    void (*mutate)(ImpairmentConfig&);
    const char* message;
  };
  const Case cases[] = {
      {"negative loss", [](ImpairmentConfig& c) { c.loss = -0.1; }, "loss must be a probability"},
      {"loss > 1", [](ImpairmentConfig& c) { c.loss = 1.5; }, "loss must be a probability"},
      {"NaN loss", [](ImpairmentConfig& c) { c.loss = std::nan(""); }, "loss"},
      {"burst > 1", [](ImpairmentConfig& c) { c.burst = 2; }, "burst must be a probability"},
      {"reorder", [](ImpairmentConfig& c) { c.reorder = -1; }, "reorder must be"},
      {"duplicate", [](ImpairmentConfig& c) { c.duplicate = 1.01; }, "duplicate must be"},
      {"corrupt", [](ImpairmentConfig& c) { c.corrupt = 7; }, "corrupt must be"},
      {"endless burst",
       [](ImpairmentConfig& c) {
         c.loss = 0.1;
         c.burst = 1.0;
       },
       "burst must be < 1"},
      {"unreachable loss",
       [](ImpairmentConfig& c) {
         c.loss = 0.9;
         c.burst = 0.5;
       },
       "cannot be reached"},
      {"negative delay", [](ImpairmentConfig& c) { c.delay = absl::Milliseconds(-1); },
       "delay must be a finite duration >= 0"},
      {"infinite jitter", [](ImpairmentConfig& c) { c.jitter = absl::InfiniteDuration(); },
       "jitter must be"},
      {"negative reorder delay", [](ImpairmentConfig& c) { c.reorder_delay = absl::Seconds(-1); },
       "reorder_delay must"},
      {"huge rate", [](ImpairmentConfig& c) { c.rate_bps = ~uint64_t{0}; }, "rate_bps"},
      {"rate without queue",
       [](ImpairmentConfig& c) {
         c.rate_bps = 1000;
         c.queue_limit_bytes = 0;
       },
       "queue_limit_bytes"},
      {"blackout backwards",
       [](ImpairmentConfig& c) {
         c.blackouts = {{absl::Seconds(2), absl::Seconds(1)}};
       },
       "blackout #0 must end after it starts"},
      {"blackout empty",
       [](ImpairmentConfig& c) {
         c.blackouts = {{absl::Seconds(0), absl::Seconds(1)}, {absl::Seconds(1), absl::Seconds(1)}};
       },
       "blackout #1"},
      {"blackout negative",
       [](ImpairmentConfig& c) {
         c.blackouts = {{absl::Seconds(-1), absl::Seconds(1)}};
       },
       "start must be finite and >= 0"},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    ImpairmentConfig c;
    k.mutate(c);
    const absl::Status status = Validate(c);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_NE(status.message().find(k.message), absl::string_view::npos) << status;
    absl::StatusOr<ImpairmentModel> model = ImpairmentModel::Create(c, Origin());
    EXPECT_EQ(model.status(), status);
  }
}

// ---------------------------------------------------------------------------
// Parsers

TEST(ImpairmentParseTest, ParseRate) {
  EXPECT_DOUBLE_EQ(*ParseRate("10%"), 0.1);
  EXPECT_DOUBLE_EQ(*ParseRate("0.5%"), 0.005);
  EXPECT_DOUBLE_EQ(*ParseRate("0.1"), 0.1);
  EXPECT_DOUBLE_EQ(*ParseRate(" 1 "), 1.0);
  EXPECT_DOUBLE_EQ(*ParseRate("100%"), 1.0);
  EXPECT_DOUBLE_EQ(*ParseRate("0"), 0.0);
  for (const char* bad :
       {"", "%", "abc", "-1", "-5%", "1.5", "150%", "nan", "inf", "10%%", "0.1x"}) {
    SCOPED_TRACE(bad);
    absl::StatusOr<double> rate = ParseRate(bad);
    ASSERT_FALSE(rate.ok()) << *rate;
    EXPECT_EQ(rate.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(rate.status().message().find(absl::StrCat("\"", bad, "\"")), absl::string_view::npos)
        << rate.status();
  }
}

TEST(ImpairmentParseTest, ParseDuration) {
  EXPECT_EQ(*ParseDuration("20ms"), absl::Milliseconds(20));
  EXPECT_EQ(*ParseDuration("1.5s"), absl::Milliseconds(1500));
  EXPECT_EQ(*ParseDuration("250us"), absl::Microseconds(250));
  EXPECT_EQ(*ParseDuration("0"), absl::ZeroDuration());
  EXPECT_EQ(*ParseDuration(" 2m "), absl::Minutes(2));
  for (const char* bad : {"", "20", "ms", "-5ms", "inf", "20 parsecs", "1x"}) {
    SCOPED_TRACE(bad);
    absl::StatusOr<absl::Duration> d = ParseDuration(bad);
    ASSERT_FALSE(d.ok()) << *d;
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_NE(ParseDuration("20").status().message().find("missing unit"), absl::string_view::npos);
  EXPECT_NE(ParseDuration("-5ms").status().message().find("negative"), absl::string_view::npos);
}

TEST(ImpairmentParseTest, ParseBandwidth) {
  EXPECT_EQ(*ParseBandwidth("1000000"), 1'000'000u);
  EXPECT_EQ(*ParseBandwidth("20mbit"), 20'000'000u);
  EXPECT_EQ(*ParseBandwidth("20Mbit"), 20'000'000u);
  EXPECT_EQ(*ParseBandwidth("512kbit"), 512'000u);
  EXPECT_EQ(*ParseBandwidth("1gbit"), 1'000'000'000u);
  EXPECT_EQ(*ParseBandwidth("20Mbps"), 20'000'000u);
  EXPECT_EQ(*ParseBandwidth("20Mb/s"), 20'000'000u);
  EXPECT_EQ(*ParseBandwidth("2.5MB/s"), 20'000'000u);
  EXPECT_EQ(*ParseBandwidth("800kB/s"), 6'400'000u);
  EXPECT_EQ(*ParseBandwidth("100B/s"), 800u);
  EXPECT_EQ(*ParseBandwidth("1MiB/s"), 8u * 1024 * 1024);
  EXPECT_EQ(*ParseBandwidth("1.5 mbit"), 1'500'000u);
  EXPECT_EQ(*ParseBandwidth("0"), 0u);
  for (const char* bad : {"", "fast", "-1mbit", "10furlongs", "1e6", "10mb/", "0.1bit",
                          "99999999999gbit", "1.2.3mbit", "2.5mB/s"}) {
    SCOPED_TRACE(bad);
    absl::StatusOr<uint64_t> bw = ParseBandwidth(bad);
    ASSERT_FALSE(bw.ok()) << *bw;
    EXPECT_EQ(bw.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(bw.status().message().find(absl::StrCat("\"", bad, "\"")), absl::string_view::npos)
        << bw.status();
  }
  EXPECT_NE(ParseBandwidth("10furlongs").status().message().find("unknown unit \"furlongs\""),
            absl::string_view::npos);
}

TEST(ImpairmentParseTest, FormatRateAndBandwidthParseBack) {
  EXPECT_EQ(FormatRate(0), "0");
  EXPECT_EQ(FormatRate(0.02), "2%");
  EXPECT_EQ(FormatRate(0.005), "0.5%");
  for (double r : {0.0, 0.005, 0.02, 0.1, 1.0}) {
    absl::StatusOr<double> back = ParseRate(FormatRate(r));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_DOUBLE_EQ(*back, r);
  }
  EXPECT_EQ(FormatBandwidth(0), "unlimited");
  EXPECT_EQ(FormatBandwidth(20000000), "20mbit");
  EXPECT_EQ(FormatBandwidth(512000), "512kbit");
  EXPECT_EQ(FormatBandwidth(2000000000), "2gbit");
  EXPECT_EQ(FormatBandwidth(1234), "1234bit");
  for (uint64_t b : {uint64_t{1}, uint64_t{1234}, uint64_t{512000}, uint64_t{20000000}}) {
    absl::StatusOr<uint64_t> back = ParseBandwidth(FormatBandwidth(b));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, b);
  }
}

TEST(ImpairmentParseTest, ParseBlackoutWindow) {
  absl::StatusOr<BlackoutWindow> w = ParseBlackoutWindow("5s-8s");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->start, absl::Seconds(5));
  EXPECT_EQ(w->end, absl::Seconds(8));
  w = ParseBlackoutWindow("1500ms-2s");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->start, absl::Milliseconds(1500));
  for (const char* bad : {"", "5s", "8s-5s", "5s-5s", "5-8s", "5s-", "-5s-8s"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(ParseBlackoutWindow(bad).status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(ImpairmentDescribeTest, BesidesLossNamesEverythingButLoss) {
  ImpairmentConfig c;
  c.loss = 0.2;
  c.burst = 0.5;
  c.seed = 7;
  EXPECT_FALSE(ImpairsBesidesLoss(c));
  EXPECT_EQ(DescribeBesidesLoss(c), "");
  c.delay = absl::Milliseconds(20);
  c.jitter = absl::Milliseconds(5);
  c.reorder = 0.02;
  c.duplicate = 0.01;
  c.corrupt = 0.005;
  c.rate_bps = 20000000;
  EXPECT_TRUE(ImpairsBesidesLoss(c));
  EXPECT_EQ(DescribeBesidesLoss(c),
            "delay 20ms, jitter 5ms, reorder 2% by 10ms, dup 1%, corrupt 0.5%, rate 20mbit");
  ImpairmentConfig blackout_only;
  blackout_only.blackouts.push_back({absl::Seconds(1), absl::Seconds(2)});
  EXPECT_TRUE(ImpairsBesidesLoss(blackout_only));
}

}  // namespace
}  // namespace udpmsg::impairment
