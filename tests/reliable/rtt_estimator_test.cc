#include "reliable/rtt_estimator.h"

#include <cstdint>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace udpmsg::reliable {
namespace {

using absl::Milliseconds;

// Half a nanosecond: absl::Duration keeps quarter nanoseconds, so every value
// below is exact and compared with EXPECT_EQ.
const absl::Duration kHalfNs = absl::Nanoseconds(1) / 2;

TEST(RttEstimatorTest, InitialValuesBeforeAnySample) {
  RttEstimator rtt;  // initial_rtt 333ms, max_ack_delay 25ms, granularity 1ms
  EXPECT_FALSE(rtt.has_sample());
  EXPECT_EQ(rtt.smoothed(), Milliseconds(333));
  EXPECT_EQ(rtt.rttvar(), absl::Microseconds(166500));  // 333 / 2
  EXPECT_EQ(rtt.min_rtt(), absl::InfiniteDuration());
  EXPECT_EQ(rtt.latest(), absl::ZeroDuration());
  // 333 + max(4 * 166.5, 1) = 333 + 666 = 999ms; + 25ms max_ack_delay.
  EXPECT_EQ(rtt.Pto(false), Milliseconds(999));
  EXPECT_EQ(rtt.Pto(true), Milliseconds(1024));
  // 9/8 * max(333, 0) = 374.625ms.
  EXPECT_EQ(rtt.LossDelay(), absl::Microseconds(374625));
  // (333 + 666 + 25) * 3 = 3072ms.
  EXPECT_EQ(rtt.PersistentCongestionDuration(), Milliseconds(3072));
  // RFC 6298 2.1 analogue: 333 + 666 = 999ms, above the 200ms floor.
  EXPECT_EQ(rtt.Rto(), Milliseconds(999));
}

TEST(RttEstimatorTest, CustomInitialRtt) {
  RttEstimator rtt(RttEstimator::Options{Milliseconds(100), Milliseconds(10), Milliseconds(1)});
  EXPECT_EQ(rtt.smoothed(), Milliseconds(100));
  EXPECT_EQ(rtt.rttvar(), Milliseconds(50));
  // 100 + 4 * 50 = 300ms; + 10ms.
  EXPECT_EQ(rtt.Pto(false), Milliseconds(300));
  EXPECT_EQ(rtt.Pto(true), Milliseconds(310));
}

TEST(RttEstimatorTest, FirstSampleInitialisesAndIgnoresAckDelay) {
  RttEstimator rtt;
  rtt.OnSample(Milliseconds(100), Milliseconds(10), /*handshake_confirmed=*/true);
  EXPECT_TRUE(rtt.has_sample());
  EXPECT_EQ(rtt.latest(), Milliseconds(100));
  EXPECT_EQ(rtt.min_rtt(), Milliseconds(100));
  EXPECT_EQ(rtt.smoothed(), Milliseconds(100));  // not 100 - 10
  EXPECT_EQ(rtt.rttvar(), Milliseconds(50));     // 100 / 2
  // 100 + 4 * 50 = 300ms; + 25ms.
  EXPECT_EQ(rtt.Pto(false), Milliseconds(300));
  EXPECT_EQ(rtt.Pto(true), Milliseconds(325));
}

TEST(RttEstimatorTest, NonPositiveSamplesAreIgnored) {
  RttEstimator rtt;
  rtt.OnSample(absl::ZeroDuration(), absl::ZeroDuration(), true);
  rtt.OnSample(Milliseconds(-5), absl::ZeroDuration(), true);
  EXPECT_FALSE(rtt.has_sample());
  EXPECT_EQ(rtt.smoothed(), Milliseconds(333));
  rtt.OnSample(Milliseconds(100), absl::ZeroDuration(), true);
  rtt.OnSample(absl::ZeroDuration(), absl::ZeroDuration(), true);
  EXPECT_EQ(rtt.latest(), Milliseconds(100));
  EXPECT_EQ(rtt.smoothed(), Milliseconds(100));
}

TEST(RttEstimatorTest, AckDelaySubtractedWhenResultStaysAtOrAboveMinRtt) {
  RttEstimator rtt;
  rtt.OnSample(Milliseconds(100), absl::ZeroDuration(), true);  // srtt 100, var 50, min 100
  // 120 - 20 = 100 >= min_rtt 100: adjusted = 100.
  rtt.OnSample(Milliseconds(120), Milliseconds(20), true);
  EXPECT_EQ(rtt.latest(), Milliseconds(120));
  EXPECT_EQ(rtt.rttvar(), absl::Microseconds(37500));  // 3/4 * 50 + 1/4 * |100 - 100|
  EXPECT_EQ(rtt.smoothed(), Milliseconds(100));        // 7/8 * 100 + 1/8 * 100
}

TEST(RttEstimatorTest, AckDelayNotSubtractedBelowMinRtt) {
  RttEstimator rtt;
  rtt.OnSample(Milliseconds(100), absl::ZeroDuration(), true);  // srtt 100, var 50, min 100
  // 120 - 25 (30 capped at max_ack_delay) = 95 < min_rtt 100: adjusted = 120.
  rtt.OnSample(Milliseconds(120), Milliseconds(30), true);
  EXPECT_EQ(rtt.rttvar(), absl::Microseconds(42500));   // 37.5 + 1/4 * |100 - 120| = 37.5 + 5
  EXPECT_EQ(rtt.smoothed(), absl::Microseconds(102500));  // 87.5 + 120 / 8 = 87.5 + 15
  EXPECT_EQ(rtt.min_rtt(), Milliseconds(100));
}

TEST(RttEstimatorTest, MinRttIgnoresAckDelay) {
  RttEstimator rtt;
  rtt.OnSample(Milliseconds(100), absl::ZeroDuration(), true);
  // min_rtt = min(100, 80) = 80 (raw latest). 80 - 50 = 30 < 80: adjusted 80.
  rtt.OnSample(Milliseconds(80), Milliseconds(50), false);
  EXPECT_EQ(rtt.min_rtt(), Milliseconds(80));
  EXPECT_EQ(rtt.rttvar(), absl::Microseconds(42500));  // 37.5 + 1/4 * |100 - 80| = 37.5 + 5
  EXPECT_EQ(rtt.smoothed(), absl::Microseconds(97500));  // 87.5 + 80 / 8 = 87.5 + 10
}

TEST(RttEstimatorTest, AckDelayNotCappedBeforeHandshakeConfirmed) {
  RttEstimator rtt;
  rtt.OnSample(Milliseconds(100), absl::ZeroDuration(), false);
  // Not confirmed: ack_delay 50 used in full; 200 - 50 = 150 >= 100: adjusted 150.
  rtt.OnSample(Milliseconds(200), Milliseconds(50), false);
  EXPECT_EQ(rtt.rttvar(), Milliseconds(50));  // 37.5 + 1/4 * |100 - 150| = 37.5 + 12.5
  EXPECT_EQ(rtt.smoothed(), absl::Microseconds(106250));  // 87.5 + 150 / 8 = 87.5 + 18.75
}

TEST(RttEstimatorTest, AckDelayCappedAtMaxAckDelayOnceHandshakeConfirmed) {
  RttEstimator rtt;
  rtt.OnSample(Milliseconds(100), absl::ZeroDuration(), true);
  // Confirmed: ack_delay min(50, 25) = 25; 200 - 25 = 175 >= 100: adjusted 175.
  rtt.OnSample(Milliseconds(200), Milliseconds(50), true);
  EXPECT_EQ(rtt.rttvar(), absl::Microseconds(56250));   // 37.5 + 1/4 * 75 = 37.5 + 18.75
  EXPECT_EQ(rtt.smoothed(), absl::Microseconds(109375));  // 87.5 + 175 / 8 = 87.5 + 21.875
}

TEST(RttEstimatorTest, SequenceOfSamplesMatchesHandComputedTable) {
  RttEstimator rtt;
  struct Row {
    absl::Duration latest;
    absl::Duration ack_delay;
    absl::Duration smoothed;
    absl::Duration rttvar;
    absl::Duration min_rtt;
  };
  const Row rows[] = {
      // 1st: srtt = 80, var = 80 / 2 = 40 (ack delay ignored).
      {Milliseconds(80), Milliseconds(5), Milliseconds(80), Milliseconds(40), Milliseconds(80)},
      // 2nd: adjusted = 120 - 20 = 100 (>= 80).
      //   var  = 3/4 * 40 + 1/4 * |80 - 100| = 30 + 5 = 35
      //   srtt = 7/8 * 80 + 1/8 * 100 = 70 + 12.5 = 82.5
      {Milliseconds(120), Milliseconds(20), absl::Microseconds(82500), Milliseconds(35),
       Milliseconds(80)},
      // 3rd: min = 60, adjusted = 60.
      //   var  = 3/4 * 35 + 1/4 * |82.5 - 60| = 26.25 + 5.625 = 31.875
      //   srtt = 7/8 * 82.5 + 1/8 * 60 = 72.1875 + 7.5 = 79.6875
      {Milliseconds(60), absl::ZeroDuration(), absl::Microseconds(79687) + absl::Nanoseconds(500),
       absl::Microseconds(31875), Milliseconds(60)},
      // 4th: adjusted = 100 - 10 = 90 (>= 60).
      //   var  = 3/4 * 31.875 + 1/4 * |79.6875 - 90| = 23.90625 + 2.578125 = 26.484375
      //   srtt = 7/8 * 79.6875 + 1/8 * 90 = 69.7265625 + 11.25 = 80.9765625
      {Milliseconds(100), Milliseconds(10), absl::Nanoseconds(80976562) + kHalfNs,
       absl::Nanoseconds(26484375), Milliseconds(60)},
  };
  int i = 0;
  for (const Row& row : rows) {
    SCOPED_TRACE(testing::Message() << "sample " << ++i);
    rtt.OnSample(row.latest, row.ack_delay, true);
    EXPECT_EQ(rtt.latest(), row.latest);
    EXPECT_EQ(rtt.smoothed(), row.smoothed);
    EXPECT_EQ(rtt.rttvar(), row.rttvar);
    EXPECT_EQ(rtt.min_rtt(), row.min_rtt);
  }
  // PTO = 80.9765625 + 4 * 26.484375 + 25 = 80.9765625 + 105.9375 + 25 = 211.9140625ms.
  EXPECT_EQ(rtt.Pto(true), absl::Nanoseconds(211914062) + kHalfNs);
}

TEST(RttEstimatorTest, RtoHasAFloorAndASixtySecondCap) {
  RttEstimator rtt;
  rtt.OnSample(Milliseconds(10), absl::ZeroDuration(), true);  // srtt 10, var 5
  // 10 + max(1, 4 * 5) = 30ms.
  EXPECT_EQ(rtt.Rto(absl::ZeroDuration()), Milliseconds(30));
  EXPECT_EQ(rtt.Rto(), Milliseconds(200));  // default floor
  EXPECT_EQ(rtt.Rto(absl::Seconds(1)), absl::Seconds(1));  // RFC 6298's floor

  RttEstimator slow;
  slow.OnSample(absl::Seconds(40), absl::ZeroDuration(), true);  // srtt 40s, var 20s
  // 40 + 4 * 20 = 120s, capped at 60s.
  EXPECT_EQ(slow.Rto(), absl::Seconds(60));
  EXPECT_EQ(slow.Pto(false), absl::Seconds(120));  // the PTO has no cap
}

TEST(RttEstimatorTest, RtoUsesGranularityWhenVarianceIsTiny) {
  RttEstimator rtt(RttEstimator::Options{Milliseconds(333), Milliseconds(25), Milliseconds(10)});
  rtt.OnSample(Milliseconds(4), absl::ZeroDuration(), true);  // srtt 4, var 2
  // 4 + max(10, 8) = 14ms.
  EXPECT_EQ(rtt.Rto(absl::ZeroDuration()), Milliseconds(14));
  EXPECT_EQ(rtt.Pto(false), Milliseconds(14));
}

TEST(RttEstimatorTest, LossDelayIsNineEighthsOfTheLargerRtt) {
  RttEstimator rtt;
  rtt.OnSample(Milliseconds(100), absl::ZeroDuration(), true);
  EXPECT_EQ(rtt.LossDelay(), absl::Microseconds(112500));  // 9/8 * 100
  // srtt = 87.5 + 200 / 8 = 112.5 < latest 200: 9/8 * 200 = 225.
  rtt.OnSample(Milliseconds(200), absl::ZeroDuration(), true);
  EXPECT_EQ(rtt.smoothed(), absl::Microseconds(112500));
  EXPECT_EQ(rtt.LossDelay(), Milliseconds(225));
  // latest 40 < srtt = 7/8 * 112.5 + 5 = 103.4375: 9/8 * 103.4375 = 116.3671875.
  rtt.OnSample(Milliseconds(40), absl::ZeroDuration(), true);
  EXPECT_EQ(rtt.smoothed(), absl::Microseconds(103437) + absl::Nanoseconds(500));
  EXPECT_EQ(rtt.LossDelay(), absl::Nanoseconds(116367187) + kHalfNs);
}

TEST(RttEstimatorTest, LossDelayIsAtLeastTheGranularity) {
  RttEstimator rtt;
  rtt.OnSample(absl::Microseconds(500), absl::ZeroDuration(), true);
  // 9/8 * 0.5 = 0.5625ms < 1ms granularity.
  EXPECT_EQ(rtt.LossDelay(), Milliseconds(1));
}

TEST(RttEstimatorTest, PersistentCongestionDuration) {
  RttEstimator rtt;
  rtt.OnSample(Milliseconds(100), absl::ZeroDuration(), true);
  // (100 + max(4 * 50, 1) + 25) * 3 = 325 * 3 = 975ms.
  EXPECT_EQ(rtt.PersistentCongestionDuration(), Milliseconds(975));
  EXPECT_EQ(rtt.PersistentCongestionDuration(), 3 * rtt.Pto(true));

  RttEstimator fast(RttEstimator::Options{Milliseconds(333), absl::ZeroDuration(),
                                          Milliseconds(1)});
  fast.OnSample(absl::Microseconds(100), absl::ZeroDuration(), true);  // var 50us
  // (0.1 + max(0.2, 1) + 0) * 3 = 3.3ms: the granularity term applies.
  EXPECT_EQ(fast.PersistentCongestionDuration(), absl::Microseconds(3300));
}

}  // namespace
}  // namespace udpmsg::reliable
