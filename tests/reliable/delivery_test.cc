#include "reliable/delivery.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace udpmsg::reliable {
namespace {

using ::testing::ElementsAre;

std::vector<std::string> Feed(ReceiveChannel& channel, const std::vector<uint64_t>& sequences) {
  std::vector<std::string> out;
  for (uint64_t s : sequences) channel.OnComplete(s, absl::StrCat(s), &out);
  return out;
}

TEST(DeliveryTest, ReliableOrderedHoldsLaterMessagesUntilTheGapFills) {
  ReceiveChannel channel(DeliveryMode::kReliableOrdered, 100);
  EXPECT_THAT(Feed(channel, {1, 2}), ElementsAre());
  EXPECT_EQ(channel.buffered_messages(), 2u);
  EXPECT_THAT(Feed(channel, {0}), ElementsAre("0", "1", "2"));
  EXPECT_THAT(Feed(channel, {2, 1, 0}), ElementsAre());  // duplicates
  EXPECT_EQ(channel.stats().duplicates, 3u);
  EXPECT_EQ(channel.next(), 3u);
}

TEST(DeliveryTest, ReliableOrderedDeliversAnyPermutationExactlyOnceInOrder) {
  for (uint64_t seed = 1; seed <= 100; ++seed) {
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    std::mt19937_64 rng(seed);
    std::vector<uint64_t> order(500);
    std::iota(order.begin(), order.end(), 0);
    // Local reordering (bounded by the window) plus duplicates.
    for (size_t i = 0; i + 1 < order.size(); ++i) {
      std::swap(order[i], order[std::min(order.size() - 1, i + rng() % 30)]);
    }
    for (int i = 0; i < 100; ++i) order.push_back(rng() % 500);
    ReceiveChannel channel(DeliveryMode::kReliableOrdered, 1000);
    std::vector<std::string> out = Feed(channel, order);
    ASSERT_EQ(out.size(), 500u);
    for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], absl::StrCat(i));
    EXPECT_EQ(channel.buffered_messages(), 0u);
  }
}

TEST(DeliveryTest, ReliableUnorderedDeliversImmediatelyButOnlyOnce) {
  ReceiveChannel channel(DeliveryMode::kReliableUnordered, 100);
  EXPECT_THAT(Feed(channel, {2, 0, 2, 1, 0, 3}), ElementsAre("2", "0", "1", "3"));
  EXPECT_EQ(channel.next(), 4u);
  EXPECT_EQ(channel.stats().duplicates, 2u);
  EXPECT_FALSE(channel.Wanted(2));
  EXPECT_TRUE(channel.Wanted(4));
}

TEST(DeliveryTest, SequencedDropsStaleMessages) {
  ReceiveChannel channel(DeliveryMode::kUnreliableSequenced, 100);
  EXPECT_THAT(Feed(channel, {0, 3, 1, 2, 5, 4, 6}), ElementsAre("0", "3", "5", "6"));
  EXPECT_EQ(channel.stats().stale, 3u);
  EXPECT_FALSE(channel.Wanted(5));
  EXPECT_TRUE(channel.Wanted(7));
}

TEST(DeliveryTest, UnreliableDeliversInArrivalOrder) {
  ReceiveChannel channel(DeliveryMode::kUnreliable, 100);
  EXPECT_THAT(Feed(channel, {3, 1, 2}), ElementsAre("3", "1", "2"));
}

TEST(DeliveryTest, ReliableModesRefuseMessagesBeyondTheWindow) {
  for (DeliveryMode mode : {DeliveryMode::kReliableOrdered, DeliveryMode::kReliableUnordered}) {
    SCOPED_TRACE(ModeName(mode));
    ReceiveChannel channel(mode, 8);
    EXPECT_TRUE(channel.Wanted(7));
    EXPECT_FALSE(channel.Wanted(8));
    EXPECT_FALSE(channel.Wanted(UINT64_MAX));
    std::vector<std::string> out;
    channel.OnComplete(1000, "far", &out);
    EXPECT_TRUE(out.empty());
    EXPECT_EQ(channel.stats().out_of_window, 1u);
    EXPECT_EQ(channel.buffered_messages(), 0u);
  }
}

TEST(DeliveryTest, HeldBytesChargeParkedMessagesAndNumbersDeliveredAhead) {
  // What the connection charges to its budget: parked payload plus a
  // per-message overhead (a zero-byte message is not free), and a cost per
  // number an unordered space delivered ahead; all released on delivery.
  ReceiveChannel ordered(DeliveryMode::kReliableOrdered, 100);
  std::vector<std::string> out;
  ordered.OnComplete(2, "", &out);
  ordered.OnComplete(1, std::string(100, 'x'), &out);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(ordered.held_bytes(), 100 + 2 * kParkedMessageBytes);
  ordered.OnComplete(1, std::string(100, 'x'), &out);  // duplicate: no charge
  EXPECT_EQ(ordered.held_bytes(), 100 + 2 * kParkedMessageBytes);
  ordered.OnComplete(0, "a", &out);
  EXPECT_EQ(out.size(), 3u);
  EXPECT_EQ(ordered.held_bytes(), 0u);

  ReceiveChannel unordered(DeliveryMode::kReliableUnordered, 100);
  out.clear();
  for (uint64_t seq : {3, 1, 2}) unordered.OnComplete(seq, "", &out);
  EXPECT_EQ(out.size(), 3u);  // delivered at once, but remembered
  EXPECT_EQ(unordered.delivered_ahead(), 3u);
  EXPECT_EQ(unordered.held_bytes(), 3 * kDeliveredAheadBytes);
  unordered.OnComplete(0, "", &out);
  EXPECT_EQ(unordered.delivered_ahead(), 0u);
  EXPECT_EQ(unordered.held_bytes(), 0u);

  for (DeliveryMode mode : {DeliveryMode::kUnreliable, DeliveryMode::kUnreliableSequenced}) {
    ReceiveChannel channel(mode, 100);
    for (uint64_t seq : {5, 9, 7}) channel.OnComplete(seq, "abc", &out);
    EXPECT_EQ(channel.held_bytes(), 0u);  // unreliable modes keep nothing
  }
}

TEST(DeliveryTest, SequenceNumbersNearTheTopOfTheSpaceWork) {
  // 64-bit sequence numbers never wrap in practice (2^64 messages), but the
  // arithmetic must hold right up to the end.
  ReceiveChannel channel(DeliveryMode::kUnreliableSequenced, 100);
  std::vector<std::string> out;
  channel.OnComplete(UINT64_MAX - 2, "a", &out);
  channel.OnComplete(UINT64_MAX - 3, "stale", &out);
  channel.OnComplete(UINT64_MAX - 1, "b", &out);
  EXPECT_THAT(out, ElementsAre("a", "b"));
}

}  // namespace
}  // namespace udpmsg::reliable
