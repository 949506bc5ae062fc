#include "reliable/pmtud.h"

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace udpmsg::reliable {
namespace {

using State = PathMtuProber::State;

const absl::Time kStart = absl::UnixEpoch() + absl::Hours(1);

// Plays a path that carries datagrams up to `path_mtu` bytes: every probe
// of at most that size is acknowledged, every larger one lost. Returns the
// probe sizes sent, in order.
std::vector<size_t> RunSearch(PathMtuProber& p, absl::Time now, size_t path_mtu,
                              uint64_t* number) {
  std::vector<size_t> sizes;
  for (int i = 0; i < 200; ++i) {
    std::optional<size_t> size = p.ProbeSize(now);
    if (!size) break;
    sizes.push_back(*size);
    p.OnProbeSent(now, *number, *size);
    if (*size <= path_mtu) {
      p.OnProbeAcked(now, *number);
    } else {
      p.OnProbeLost(now, *number);
    }
    ++*number;
  }
  return sizes;
}

TEST(PmtudTest, DisabledWhenCeilingIsTheBase) {
  PathMtuProber p(kStart, {.base = 1200, .ceiling = 1200});
  EXPECT_EQ(p.state(), State::kDisabled);
  EXPECT_EQ(p.plpmtu(), 1200u);
  EXPECT_FALSE(p.ProbeSize(kStart).has_value());
  EXPECT_EQ(p.NextTimeout(), absl::InfiniteFuture());
}

TEST(PmtudTest, ReachesTheCeilingThroughCommonSizes) {
  PathMtuProber p(kStart, {.base = 1200, .ceiling = 9000});
  EXPECT_EQ(p.state(), State::kSearching);
  uint64_t n = 1;
  EXPECT_THAT(RunSearch(p, kStart, 65535, &n),
              ::testing::ElementsAre(1280, 1372, 1400, 1452, 1472, 4096, 8192, 8952, 8972,
                                     9000));
  EXPECT_EQ(p.plpmtu(), 9000u);
  EXPECT_EQ(p.state(), State::kSearchComplete);
  EXPECT_EQ(p.stats().probes_lost, 0u);
}

TEST(PmtudTest, FindsTheExactSizeOnAnEthernetPath) {
  PathMtuProber p(kStart, {.base = 1200, .ceiling = 9000});
  uint64_t n = 1;
  RunSearch(p, kStart, 1472, &n);
  EXPECT_EQ(p.plpmtu(), 1472u);
  EXPECT_EQ(p.state(), State::kSearchComplete);
  // Two sizes failed (4096 and 1473), max_probes losses each.
  EXPECT_EQ(p.stats().probes_lost, 6u);
}

TEST(PmtudTest, FindsTheExactSizeBetweenCommonSizes) {
  for (size_t mtu : {1201u, 1279u, 1372u, 1399u, 1401u, 1500u, 4000u, 8999u}) {
    PathMtuProber p(kStart, {.base = 1200, .ceiling = 9000});
    uint64_t n = 1;
    RunSearch(p, kStart, mtu, &n);
    EXPECT_EQ(p.plpmtu(), mtu) << "path " << mtu;
    EXPECT_EQ(p.state(), State::kSearchComplete);
  }
}

TEST(PmtudTest, ASizeFailsOnlyAfterMaxProbesLosses) {
  PathMtuProber p(kStart, {.base = 1200, .ceiling = 1300, .max_probes = 3});
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(p.ProbeSize(kStart), 1280u);
    p.OnProbeSent(kStart, 10 + i, 1280);
    EXPECT_FALSE(p.ProbeSize(kStart).has_value());  // one probe at a time
    p.OnProbeLost(kStart, 10 + i);
  }
  ASSERT_EQ(p.ProbeSize(kStart), 1280u);  // a third try at the same size
  p.OnProbeSent(kStart, 12, 1280);
  p.OnProbeAcked(kStart, 12);  // got through after all
  EXPECT_EQ(p.plpmtu(), 1280u);
  EXPECT_EQ(p.ProbeSize(kStart), 1300u);
}

TEST(PmtudTest, LocalTooBigFailsTheSizeAtOnce) {
  PathMtuProber p(kStart, {.base = 1200, .ceiling = 1500});
  uint64_t n = 1;
  for (int i = 0; i < 50; ++i) {
    std::optional<size_t> size = p.ProbeSize(kStart);
    if (!size) break;
    p.OnProbeSent(kStart, n, *size);
    if (*size <= 1372) {
      p.OnProbeAcked(kStart, n);
    } else {
      p.OnProbeTooBig(kStart, n);
    }
    ++n;
  }
  EXPECT_EQ(p.plpmtu(), 1372u);
  EXPECT_EQ(p.stats().probes_lost, p.stats().probes_sent - p.stats().probes_acked);
}

TEST(PmtudTest, UnknownNumbersAreIgnored) {
  PathMtuProber p(kStart, {.base = 1200, .ceiling = 1500});
  p.OnProbeSent(kStart, 5, 1280);
  p.OnProbeAcked(kStart, 6);
  p.OnProbeLost(kStart, 7);
  p.OnProbeTooBig(kStart, 8);
  EXPECT_EQ(p.plpmtu(), 1200u);
  EXPECT_TRUE(p.IsProbe(5));
  EXPECT_FALSE(p.ProbeSize(kStart).has_value());
}

TEST(PmtudTest, ResearchesAfterTheRaiseTimer) {
  PathMtuProber p(kStart, {.base = 1200, .ceiling = 9000,
                           .raise_interval = absl::Seconds(600)});
  uint64_t n = 1;
  RunSearch(p, kStart, 1472, &n);
  ASSERT_EQ(p.state(), State::kSearchComplete);
  EXPECT_EQ(p.NextTimeout(), kStart + absl::Seconds(600));
  p.OnTimeout(kStart + absl::Seconds(599));
  EXPECT_EQ(p.state(), State::kSearchComplete);
  const absl::Time later = kStart + absl::Seconds(600);
  p.OnTimeout(later);
  EXPECT_EQ(p.state(), State::kSearching);
  // The path grew meanwhile: the failures were forgotten.
  RunSearch(p, later, 8000, &n);
  EXPECT_EQ(p.plpmtu(), 8000u);
  EXPECT_EQ(p.stats().searches, 2u);
}

TEST(PmtudTest, BlackHoleFallsBackToTheBaseAndSearchesAgain) {
  PathMtuProber p(kStart, {.base = 1200, .ceiling = 9000, .black_hole_losses = 6});
  uint64_t n = 1;
  RunSearch(p, kStart, 1472, &n);
  ASSERT_EQ(p.plpmtu(), 1472u);
  absl::Time t = kStart + absl::Seconds(1);
  p.OnPacketAcked(t, 1472);
  // Five losses of full-size packets: not yet.
  for (int i = 1; i <= 5; ++i) {
    EXPECT_FALSE(p.OnPacketLost(t + absl::Seconds(1), t + absl::Milliseconds(i), 1472));
  }
  // Small packets' losses never count.
  EXPECT_FALSE(p.OnPacketLost(t + absl::Seconds(1), t + absl::Milliseconds(7), 1200));
  EXPECT_TRUE(p.OnPacketLost(t + absl::Seconds(1), t + absl::Milliseconds(8), 1472));
  EXPECT_EQ(p.plpmtu(), 1200u);
  EXPECT_EQ(p.state(), State::kBase);
  EXPECT_EQ(p.stats().black_holes, 1u);
  // Confirm the base, then search the now smaller path.
  const absl::Time after = t + absl::Seconds(2);
  RunSearch(p, after, 1300, &n);
  EXPECT_EQ(p.plpmtu(), 1300u);
  EXPECT_EQ(p.state(), State::kSearchComplete);
}

TEST(PmtudTest, CongestionLossIsNoBlackHole) {
  PathMtuProber p(kStart, {.base = 1200, .ceiling = 1472, .black_hole_losses = 3});
  uint64_t n = 1;
  RunSearch(p, kStart, 1472, &n);
  ASSERT_EQ(p.plpmtu(), 1472u);
  const absl::Time t = kStart + absl::Seconds(1);
  // A burst of 20 lost full-size packets, declared lost because a full-size
  // packet sent after them was acknowledged: the path carries them.
  p.OnPacketAcked(t + absl::Milliseconds(30), 1472);
  for (int i = 0; i < 20; ++i) {
    EXPECT_FALSE(p.OnPacketLost(t + absl::Milliseconds(40), t + absl::Milliseconds(i), 1472));
  }
  // Losses interleaved with acknowledged full-size packets do not add up.
  for (int i = 0; i < 20; ++i) {
    const absl::Time sent = t + absl::Milliseconds(100 + 2 * i);
    EXPECT_FALSE(p.OnPacketLost(t + absl::Seconds(1), sent, 1472));
    p.OnPacketAcked(sent + absl::Milliseconds(1), 1472);
  }
  EXPECT_EQ(p.plpmtu(), 1472u);
  EXPECT_EQ(p.stats().black_holes, 0u);
}

TEST(PmtudTest, BaseLostMaxProbesTimesIsTheErrorState) {
  PathMtuProber p(kStart, {.base = 1200, .ceiling = 1500, .raise_interval = absl::Seconds(60),
                           .black_hole_losses = 1});
  uint64_t n = 1;
  RunSearch(p, kStart, 1500, &n);
  ASSERT_TRUE(p.OnPacketLost(kStart + absl::Seconds(1), kStart + absl::Milliseconds(500), 1500));
  const absl::Time t = kStart + absl::Seconds(2);
  RunSearch(p, t, 1000, &n);  // even the base is lost
  EXPECT_EQ(p.state(), State::kError);
  EXPECT_EQ(p.plpmtu(), 1200u);
  EXPECT_EQ(p.NextTimeout(), t + absl::Seconds(60));
  p.OnTimeout(t + absl::Seconds(60));
  EXPECT_EQ(p.state(), State::kBase);
  RunSearch(p, t + absl::Seconds(60), 1500, &n);
  EXPECT_EQ(p.plpmtu(), 1500u);
}

TEST(PmtudTest, AProbeOutstandingAtABlackHoleDoesNotCount) {
  PathMtuProber p(kStart, {.base = 1200, .ceiling = 1500, .black_hole_losses = 1});
  uint64_t n = 1;
  RunSearch(p, kStart, 1400, &n);  // complete at 1400
  p.OnTimeout(p.NextTimeout());    // searching again
  std::optional<size_t> size = p.ProbeSize(p.NextTimeout());
  ASSERT_EQ(size, 1452u);
  p.OnProbeSent(kStart, 100, *size);
  ASSERT_TRUE(p.OnPacketLost(kStart + absl::Seconds(700), kStart + absl::Seconds(699), 1400));
  EXPECT_TRUE(p.IsProbe(100));  // still known: its loss is no congestion
  EXPECT_FALSE(p.ProbeSize(kStart).has_value());
  p.OnProbeAcked(kStart, 100);  // settles it without raising anything
  EXPECT_EQ(p.plpmtu(), 1200u);
  EXPECT_EQ(p.ProbeSize(kStart), 1200u);  // the base probe
}

}  // namespace
}  // namespace udpmsg::reliable
