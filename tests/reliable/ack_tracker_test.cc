#include "reliable/ack_tracker.h"

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <ostream>
#include <random>
#include <set>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/frames.h"

namespace udpmsg::proto {
// Readable failure messages.
void PrintTo(const AckRange& range, std::ostream* os) {
  *os << "[" << range.smallest << ", " << range.largest << "]";
}
}  // namespace udpmsg::proto

namespace udpmsg::reliable {
namespace {

using ::testing::ElementsAre;
using proto::AckRange;

const absl::Time kBase = absl::UnixEpoch() + absl::Hours(24);

absl::Time At(int64_t ms) { return kBase + absl::Milliseconds(ms); }

TEST(AckTrackerTest, InOrderPacketsAckAfterEverySecondAckElicitingPacket) {
  AckTracker acks;
  for (uint64_t n = 0; n < 10; n += 2) {
    SCOPED_TRACE(testing::Message() << "packet " << n);
    ASSERT_TRUE(acks.OnPacket(At(n), n, true));
    EXPECT_FALSE(acks.AckNow());
    ASSERT_TRUE(acks.OnPacket(At(n + 1), n + 1, true));
    EXPECT_TRUE(acks.AckNow());
    proto::Ack ack = acks.BuildAck(At(n + 1), 32);
    EXPECT_THAT(ack.ranges, ElementsAre(AckRange{0, n + 1}));
    EXPECT_FALSE(acks.AckNow());
    EXPECT_EQ(acks.AckDeadline(), absl::InfiniteFuture());
    EXPECT_FALSE(acks.HasNewPackets());
  }
  EXPECT_EQ(acks.largest(), 9u);
  EXPECT_EQ(acks.range_count(), 1u);
}

TEST(AckTrackerTest, ThresholdIsConfigurable) {
  AckTracker acks(AckTracker::Options{3, absl::Milliseconds(25), 1024});
  acks.OnPacket(At(0), 0, true);
  acks.OnPacket(At(0), 1, true);
  EXPECT_FALSE(acks.AckNow());
  acks.OnPacket(At(0), 2, true);
  EXPECT_TRUE(acks.AckNow());
}

TEST(AckTrackerTest, AckFrequencyRaisesTheThresholdButGapsAreStillAckedAtOnce) {
  AckTracker acks;
  ASSERT_TRUE(acks.OnAckFrequency(1, 10));
  EXPECT_EQ(acks.ack_eliciting_threshold(), 10);
  for (uint64_t n = 0; n < 9; ++n) {
    acks.OnPacket(At(0), n, true);
    EXPECT_FALSE(acks.AckNow()) << "packet " << n;
  }
  EXPECT_EQ(acks.AckDeadline(), At(25));  // max_ack_delay still bounds it
  acks.OnPacket(At(0), 9, true);
  EXPECT_TRUE(acks.AckNow());
  acks.BuildAck(At(0), 32);
  // Packet 11 arrives before 10: a gap, acknowledged at once whatever the
  // threshold (the sender's loss detection needs it).
  acks.OnPacket(At(1), 11, true);
  EXPECT_TRUE(acks.AckNow());
}

TEST(AckTrackerTest, AckFrequencyIgnoresOlderRequestsAndClampsTheThreshold) {
  AckTracker acks;
  ASSERT_TRUE(acks.OnAckFrequency(5, 8));
  EXPECT_FALSE(acks.OnAckFrequency(4, 3));  // reordered, older: ignored
  EXPECT_FALSE(acks.OnAckFrequency(5, 3));  // the same sequence again
  EXPECT_EQ(acks.ack_eliciting_threshold(), 8);
  ASSERT_TRUE(acks.OnAckFrequency(6, 1000000));
  EXPECT_EQ(acks.ack_eliciting_threshold(), static_cast<int>(proto::kMaxAckFrequencyThreshold));
  ASSERT_TRUE(acks.OnAckFrequency(7, 0));
  EXPECT_EQ(acks.ack_eliciting_threshold(), 1);
}

TEST(AckTrackerTest, LoweringTheThresholdBelowWhatIsWaitingAcksAtOnce) {
  AckTracker acks;
  ASSERT_TRUE(acks.OnAckFrequency(1, 10));
  for (uint64_t n = 0; n < 5; ++n) acks.OnPacket(At(0), n, true);
  EXPECT_FALSE(acks.AckNow());
  ASSERT_TRUE(acks.OnAckFrequency(2, 4));
  EXPECT_TRUE(acks.AckNow());
}

TEST(AckTrackerTest, SinglePacketIsAckedWithinMaxAckDelay) {
  AckTracker acks;
  EXPECT_EQ(acks.AckDeadline(), absl::InfiniteFuture());
  EXPECT_FALSE(acks.HasNewPackets());
  ASSERT_TRUE(acks.OnPacket(At(100), 0, true));
  EXPECT_FALSE(acks.AckNow());
  EXPECT_TRUE(acks.HasNewPackets());
  EXPECT_EQ(acks.AckDeadline(), At(125));  // receive time + max_ack_delay 25ms
  // A later non-eliciting packet does not move the deadline.
  ASSERT_TRUE(acks.OnPacket(At(110), 1, false));
  EXPECT_EQ(acks.AckDeadline(), At(125));
  // At the deadline the ACK goes out; ack_delay = 125 - 110 (largest is 1).
  proto::Ack ack = acks.BuildAck(At(125), 32);
  EXPECT_THAT(ack.ranges, ElementsAre(AckRange{0, 1}));
  EXPECT_EQ(ack.ack_delay, absl::Milliseconds(15));
  // The next ack-eliciting packet starts a new deadline.
  ASSERT_TRUE(acks.OnPacket(At(200), 2, true));
  EXPECT_EQ(acks.AckDeadline(), At(225));
}

// Packets that only carry ACKs are piggybacked on data at most once per
// interval after the last ACK built; an ack-eliciting one at once.
TEST(AckTrackerTest, AckOnlyPacketsArePiggybackedOncePerInterval) {
  AckTracker acks;
  const absl::Duration interval = absl::Milliseconds(25);
  EXPECT_FALSE(acks.PiggybackWanted(At(0), interval));  // nothing received
  ASSERT_TRUE(acks.OnPacket(At(0), 0, false));
  EXPECT_TRUE(acks.PiggybackWanted(At(0), interval));  // no ACK built yet
  ASSERT_EQ(acks.BuildAck(At(1), 32).ranges.size(), 1u);
  ASSERT_TRUE(acks.OnPacket(At(2), 1, false));
  EXPECT_FALSE(acks.PiggybackWanted(At(25), interval));
  EXPECT_TRUE(acks.PiggybackWanted(At(26), interval));
  ASSERT_TRUE(acks.OnPacket(At(3), 2, true));
  EXPECT_TRUE(acks.PiggybackWanted(At(3), interval));
  acks.BuildAck(At(4), 32);
  EXPECT_FALSE(acks.PiggybackWanted(At(100), interval));  // nothing new since
}

TEST(AckTrackerTest, NonElicitingPacketsNeverTriggerAnAck) {
  AckTracker acks;
  // In order, out of order (gaps, filled gaps) and duplicates: never AckNow.
  for (uint64_t n : {0, 1, 2, 5, 9, 3, 4, 4, 0}) {
    acks.OnPacket(At(n), n, false);
    EXPECT_FALSE(acks.AckNow()) << n;
    EXPECT_EQ(acks.AckDeadline(), absl::InfiniteFuture()) << n;
  }
  EXPECT_TRUE(acks.HasNewPackets());  // may still be piggybacked
  EXPECT_EQ(acks.duplicates(), 2u);
  EXPECT_THAT(acks.BuildAck(At(10), 32).ranges,
              ElementsAre(AckRange{9, 9}, AckRange{0, 5}));
}

TEST(AckTrackerTest, GapBelowANewPacketAcksImmediately) {
  AckTracker acks;
  acks.OnPacket(At(0), 0, true);
  EXPECT_FALSE(acks.AckNow());
  acks.OnPacket(At(1), 2, true);  // 1 is missing
  EXPECT_TRUE(acks.AckNow());
  EXPECT_THAT(acks.BuildAck(At(1), 32).ranges, ElementsAre(AckRange{2, 2}, AckRange{0, 0}));
  // 3 continues the largest: in order again, first since the ACK.
  acks.OnPacket(At(2), 3, true);
  EXPECT_FALSE(acks.AckNow());
  acks.BuildAck(At(2), 32);
}

TEST(AckTrackerTest, PacketFillingAGapAcksImmediately) {
  AckTracker acks;
  acks.OnPacket(At(0), 0, true);
  acks.OnPacket(At(1), 2, true);
  acks.BuildAck(At(1), 32);
  acks.OnPacket(At(2), 1, true);  // below the largest
  EXPECT_TRUE(acks.AckNow());
  proto::Ack ack = acks.BuildAck(At(3), 32);
  EXPECT_THAT(ack.ranges, ElementsAre(AckRange{0, 2}));
  EXPECT_EQ(ack.ack_delay, absl::Milliseconds(2));  // from packet 2's arrival at 1ms
  EXPECT_EQ(acks.range_count(), 1u);
}

TEST(AckTrackerTest, DuplicateReturnsFalseCountsAndAsksForAnAck) {
  AckTracker acks;
  ASSERT_TRUE(acks.OnPacket(At(0), 7, true));
  acks.BuildAck(At(0), 32);
  EXPECT_FALSE(acks.OnPacket(At(1), 7, true));
  EXPECT_EQ(acks.duplicates(), 1u);
  EXPECT_TRUE(acks.AckNow());  // the peer missed our ACK: repeat it
  EXPECT_FALSE(acks.HasNewPackets());
  EXPECT_THAT(acks.BuildAck(At(1), 32).ranges, ElementsAre(AckRange{7, 7}));
  EXPECT_FALSE(acks.OnPacket(At(2), 7, false));
  EXPECT_EQ(acks.duplicates(), 2u);
  EXPECT_FALSE(acks.AckNow());  // not for a non-eliciting duplicate
  EXPECT_TRUE(acks.Contains(7));
  EXPECT_FALSE(acks.Contains(6));
  EXPECT_FALSE(acks.Contains(8));
}

// Ranges must be sorted descending, disjoint and non-adjacent, and cover
// exactly the numbers received.
void ExpectMatchesModel(const proto::Ack& ack, const std::set<uint64_t>& model) {
  std::set<uint64_t> reported;
  for (size_t i = 0; i < ack.ranges.size(); ++i) {
    const AckRange& r = ack.ranges[i];
    ASSERT_LE(r.smallest, r.largest) << "range " << i;
    if (i > 0) {
      ASSERT_GT(ack.ranges[i - 1].smallest, r.largest + 1) << "range " << i;
    }
    for (uint64_t n = r.smallest; n <= r.largest; ++n) reported.insert(n);
  }
  EXPECT_EQ(reported, model);
  if (!model.empty()) {
    EXPECT_EQ(ack.ranges.front().largest, *model.rbegin());
  }
}

TEST(AckTrackerTest, RandomArrivalOrdersMatchASetModel) {
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    std::mt19937_64 rng(seed);
    std::vector<uint64_t> order(300);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    order.resize(150 + rng() % 150);                              // some never arrive
    for (int i = 0; i < 40; ++i) order.push_back(order[rng() % order.size()]);  // duplicates
    std::shuffle(order.begin(), order.end(), rng);

    AckTracker acks;
    std::set<uint64_t> model;
    uint64_t duplicates = 0;
    int64_t ms = 0;
    for (uint64_t n : order) {
      const bool fresh = model.insert(n).second;
      if (!fresh) ++duplicates;
      ASSERT_EQ(acks.OnPacket(At(++ms), n, rng() % 4 != 0), fresh) << "packet " << n;
      ASSERT_TRUE(acks.Contains(n));
      if (rng() % 8 == 0) {
        ExpectMatchesModel(acks.BuildAck(At(ms), 1024), model);
        if (HasFatalFailure()) return;
      }
    }
    proto::Ack ack = acks.BuildAck(At(ms), 1024);
    ExpectMatchesModel(ack, model);
    EXPECT_EQ(acks.range_count(), ack.ranges.size());
    EXPECT_EQ(acks.duplicates(), duplicates);
    EXPECT_EQ(acks.largest(), *model.rbegin());
    for (uint64_t n = 0; n < 300; ++n) ASSERT_EQ(acks.Contains(n), model.count(n) == 1) << n;
  }
}

TEST(AckTrackerTest, MaxRangesForgetsTheOldestAndTreatsThemAsDuplicates) {
  AckTracker acks(AckTracker::Options{2, absl::Milliseconds(25), 3});
  for (uint64_t n : {0, 2, 4, 6}) ASSERT_TRUE(acks.OnPacket(At(n), n, true));
  // {0} {2} {4} {6}: four ranges, bound 3: {0} is forgotten.
  EXPECT_EQ(acks.range_count(), 3u);
  EXPECT_TRUE(acks.Contains(0));
  EXPECT_FALSE(acks.OnPacket(At(7), 0, true));
  EXPECT_EQ(acks.duplicates(), 1u);
  ASSERT_TRUE(acks.OnPacket(At(8), 8, true));  // forgets {2}: horizon 2
  EXPECT_EQ(acks.range_count(), 3u);
  // Everything at or below the horizon counts as received, 1 included.
  EXPECT_TRUE(acks.Contains(1));
  EXPECT_FALSE(acks.OnPacket(At(9), 1, true));
  EXPECT_FALSE(acks.OnPacket(At(9), 2, true));
  EXPECT_EQ(acks.duplicates(), 3u);
  // 3 lies above the horizon: new, and it joins {4}.
  EXPECT_TRUE(acks.OnPacket(At(10), 3, true));
  EXPECT_THAT(acks.BuildAck(At(10), 32).ranges,
              ElementsAre(AckRange{8, 8}, AckRange{6, 6}, AckRange{3, 4}));
}

TEST(AckTrackerTest, BoundedRangesNeverAcceptANumberTwice) {
  for (uint64_t seed = 1; seed <= 100; ++seed) {
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    std::mt19937_64 rng(seed);
    AckTracker acks(AckTracker::Options{2, absl::Milliseconds(25), 4});
    std::set<uint64_t> accepted;
    for (int i = 0; i < 500; ++i) {
      const uint64_t n = rng() % 200;
      const bool fresh = acks.OnPacket(At(i), n, true);
      if (fresh) {
        ASSERT_TRUE(accepted.insert(n).second) << "accepted twice: " << n;
      }
      ASSERT_LE(acks.range_count(), 4u);
      ASSERT_TRUE(acks.Contains(n));
      proto::Ack ack = acks.BuildAck(At(i), 32);
      ASSERT_LE(ack.ranges.size(), 4u);
      // Whatever is reported was received.
      for (const AckRange& r : ack.ranges) {
        for (uint64_t m = r.smallest; m <= r.largest; ++m) ASSERT_EQ(accepted.count(m), 1u) << m;
      }
    }
  }
}

TEST(AckTrackerTest, BuildAckReturnsTheNewestRanges) {
  AckTracker acks;
  for (uint64_t n : {8, 0, 2, 4, 6}) acks.OnPacket(At(n), n, true);
  EXPECT_THAT(acks.BuildAck(At(10), 2).ranges, ElementsAre(AckRange{8, 8}, AckRange{6, 6}));
  EXPECT_EQ(acks.range_count(), 5u);  // nothing forgotten
  EXPECT_THAT(acks.BuildAck(At(10), 32).ranges,
              ElementsAre(AckRange{8, 8}, AckRange{6, 6}, AckRange{4, 4}, AckRange{2, 2},
                          AckRange{0, 0}));
}

TEST(AckTrackerTest, EmptyAckBeforeAnyPacket) {
  AckTracker acks;
  proto::Ack ack = acks.BuildAck(At(0), 32);
  EXPECT_TRUE(ack.ranges.empty());
  EXPECT_EQ(ack.ack_delay, absl::ZeroDuration());
  EXPECT_EQ(acks.largest(), 0u);
}

TEST(AckTrackerTest, AckDelayIsMeasuredFromTheLargestsArrival) {
  AckTracker acks;
  acks.OnPacket(At(0), 5, true);
  acks.OnPacket(At(10), 3, true);  // not the largest: does not reset the clock
  proto::Ack ack = acks.BuildAck(At(30), 32);
  EXPECT_EQ(ack.ack_delay, absl::Milliseconds(30));  // 30 - 0
  EXPECT_THAT(ack.ranges, ElementsAre(AckRange{5, 5}, AckRange{3, 3}));
  acks.OnPacket(At(40), 6, true);
  EXPECT_EQ(acks.BuildAck(At(45), 32).ack_delay, absl::Milliseconds(5));  // 45 - 40
}

TEST(AckTrackerTest, AckOfAckShrinksLaterAcks) {
  AckTracker acks;
  for (uint64_t n = 0; n < 10; ++n) {
    if (n != 5) acks.OnPacket(At(n), n, true);
  }
  EXPECT_THAT(acks.BuildAck(At(10), 32).ranges, ElementsAre(AckRange{6, 9}, AckRange{0, 4}));
  // The peer saw an ACK whose largest was 4: 0..4 need no more reporting.
  acks.OnAckAcknowledged(4);
  EXPECT_THAT(acks.BuildAck(At(10), 32).ranges, ElementsAre(AckRange{6, 9}));
  acks.OnPacket(At(11), 10, true);
  acks.OnAckAcknowledged(7);
  EXPECT_THAT(acks.BuildAck(At(11), 32).ranges, ElementsAre(AckRange{8, 10}));
  // An older ack-of-ack does not widen it again.
  acks.OnAckAcknowledged(2);
  EXPECT_THAT(acks.BuildAck(At(11), 32).ranges, ElementsAre(AckRange{8, 10}));
  // Still known as received.
  EXPECT_TRUE(acks.Contains(2));
  EXPECT_FALSE(acks.OnPacket(At(12), 2, true));
  // Everything acked: the largest is still reported, so an ACK is never empty.
  acks.OnAckAcknowledged(10);
  EXPECT_THAT(acks.BuildAck(At(12), 32).ranges, ElementsAre(AckRange{10, 10}));
}

}  // namespace
}  // namespace udpmsg::reliable
