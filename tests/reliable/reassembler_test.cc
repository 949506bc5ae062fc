#include "reliable/reassembler.h"

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace udpmsg::reliable {
namespace {

using ::testing::HasSubstr;

const absl::Time kT0 = absl::UnixEpoch() + absl::Hours(1);

std::string Pattern(size_t size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(size, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// Cuts `message` the way a sender does.
std::vector<std::pair<FragmentHeader, std::string>> Cut(const std::string& message,
                                                        uint64_t max_payload) {
  const uint32_t count = FragmentCountFor(message.size(), max_payload);
  std::vector<std::pair<FragmentHeader, std::string>> out;
  for (uint32_t i = 0; i < count; ++i) {
    absl::StatusOr<FragmentLayout> layout = LayoutOf(i, count, message.size());
    EXPECT_TRUE(layout.ok()) << layout.status();
    EXPECT_LE(layout->length, max_payload);
    out.push_back({FragmentHeader{i, count, message.size()},
                   message.substr(layout->offset, layout->length)});
  }
  return out;
}

TEST(FragmentLayoutTest, EveryCountTilesTheMessageExactly) {
  for (uint64_t total : {1u, 2u, 7u, 1000u, 1151u, 4096u, 100003u}) {
    for (uint64_t max : {1u, 3u, 1150u, 5000u}) {
      const uint32_t count = FragmentCountFor(total, max);
      uint64_t next_offset = 0;
      for (uint32_t i = 0; i < count; ++i) {
        absl::StatusOr<FragmentLayout> layout = LayoutOf(i, count, total);
        ASSERT_TRUE(layout.ok()) << total << "/" << max << ": " << layout.status();
        EXPECT_EQ(layout->offset, next_offset);
        EXPECT_GT(layout->length, 0u);
        EXPECT_LE(layout->length, max);
        next_offset += layout->length;
      }
      EXPECT_EQ(next_offset, total) << total << "/" << max;
    }
  }
}

TEST(FragmentLayoutTest, InconsistentTriplesAreRejected) {
  EXPECT_FALSE(LayoutOf(0, 0, 10).ok());
  EXPECT_FALSE(LayoutOf(3, 3, 10).ok());
  EXPECT_FALSE(LayoutOf(0, 11, 10).ok());       // more fragments than bytes
  EXPECT_FALSE(LayoutOf(0, 2, 0).ok());         // empty message in 2 pieces
  EXPECT_FALSE(LayoutOf(0, 4, 9).ok());         // chunk 3: the 4th would be empty
  EXPECT_TRUE(LayoutOf(0, 1, 0).ok());
  EXPECT_FALSE(LayoutOf(0, UINT32_MAX, UINT64_MAX / 2).ok() &&
               LayoutOf(UINT32_MAX - 1, UINT32_MAX, UINT64_MAX / 2)->length == 0);
}

TEST(ReassemblerTest, ShuffledDuplicatedFragmentsRebuildTheMessage) {
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    std::mt19937_64 rng(seed);
    const std::string message = Pattern(rng() % 50000 + 1, seed);
    auto fragments = Cut(message, 1100);
    // Duplicate a few and shuffle.
    for (size_t i = 0; i < fragments.size() / 4; ++i) {
      fragments.push_back(fragments[rng() % fragments.size()]);
    }
    std::shuffle(fragments.begin(), fragments.end(), rng);

    Reassembler r({});
    std::optional<std::string> result;
    size_t late = 0;
    for (const auto& [header, bytes] : fragments) {
      absl::StatusOr<std::optional<std::string>> got = r.Add(kT0, {1, 0, 7}, header, bytes);
      ASSERT_TRUE(got.ok()) << got.status();
      if (result.has_value()) ++late;
      if (got->has_value()) {
        ASSERT_FALSE(result.has_value()) << "completed twice";
        result = std::move(*got);
        EXPECT_EQ(r.partial_messages(), 0u);
        EXPECT_EQ(r.buffered_bytes(), 0u);
      }
    }
    ASSERT_TRUE(result.has_value());
    EXPECT_TRUE(*result == message);
    // Duplicates after completion (the connection filters these by sequence
    // number) start a partial that can never finish; Expire reclaims it.
    EXPECT_EQ(r.partial_messages(), late > 0 && fragments.size() > 1 ? 1u : 0u);
    r.Expire(kT0 + r.limits().timeout);
    EXPECT_EQ(r.partial_messages(), 0u);
    EXPECT_EQ(r.buffered_bytes(), 0u);
  }
}

TEST(ReassemblerTest, ClaimedHugeSizeCostsOnlyWhatArrives) {
  Reassembler r({.max_message_bytes = uint64_t{8} << 30});
  const uint64_t claimed = uint64_t{4} << 30;  // 4 GiB
  const uint32_t count = FragmentCountFor(claimed, 1100);
  absl::StatusOr<FragmentLayout> layout = LayoutOf(5, count, claimed);
  ASSERT_TRUE(layout.ok());
  std::string bytes(layout->length, 'x');
  absl::StatusOr<std::optional<std::string>> got = r.Add(kT0, {0, 0, 1}, {5, count, claimed}, bytes);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_FALSE(got->has_value());
  EXPECT_EQ(r.buffered_bytes(), bytes.size());
}

TEST(ReassemblerTest, OversizedMessageIsRejectedWithReason) {
  Reassembler r({.max_message_bytes = 1000});
  absl::StatusOr<std::optional<std::string>> got =
      r.Add(kT0, {0, 0, 1}, {0, 2, 2000}, std::string(1000, 'x'));
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(got.status().message(), HasSubstr("exceeds the limit of 1000"));
}

TEST(ReassemblerTest, WrongLengthAndChangedHeaderAreRejected) {
  Reassembler r({});
  absl::StatusOr<std::optional<std::string>> got =
      r.Add(kT0, {0, 0, 1}, {0, 2, 10}, std::string(4, 'x'));
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(got.status().message(), HasSubstr("its layout needs 5"));
  ASSERT_TRUE(r.Add(kT0, {0, 0, 1}, {0, 2, 10}, std::string(5, 'x')).ok());
  got = r.Add(kT0, {0, 0, 1}, {1, 3, 12}, std::string(4, 'x'));
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(got.status().message(), HasSubstr("earlier ones said 2 / 10"));
  EXPECT_EQ(r.stats().rejected_fragments, 2u);
}

TEST(ReassemblerTest, PartialMessageLimitRefusesNewMessagesOnly) {
  Reassembler r({.max_partial_messages = 3});
  for (uint64_t seq = 0; seq < 3; ++seq) {
    ASSERT_TRUE(r.Add(kT0, {0, 0, seq}, {0, 2, 4}, "ab").ok());
  }
  absl::StatusOr<std::optional<std::string>> got = r.Add(kT0, {0, 0, 3}, {0, 2, 4}, "ab");
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kResourceExhausted);
  // Messages already in progress can still finish.
  got = r.Add(kT0, {0, 0, 1}, {1, 2, 4}, "cd");
  ASSERT_TRUE(got.ok());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ(**got, "abcd");
  // ... which frees a place.
  EXPECT_TRUE(r.Add(kT0, {0, 0, 3}, {0, 2, 4}, "ab").ok());
}

TEST(ReassemblerTest, BufferedByteLimitIsNeverExceeded) {
  Reassembler r({.max_buffered_bytes = 10000});
  std::mt19937_64 rng(99);
  for (int i = 0; i < 5000; ++i) {
    const uint64_t seq = rng() % 200;
    const uint32_t index = static_cast<uint32_t>(rng() % 99);  // never the 100th: never completes
    (void)r.Add(kT0, {0, 0, seq}, {index, 100, 100 * 100}, std::string(100, 'x'));
    ASSERT_LE(r.buffered_bytes(), 10000u);
  }
  EXPECT_GT(r.stats().refused_for_space, 0u);
}

TEST(ReassemblerTest, HeldBytesChargeEachFragmentAndMessageBesidesPayload) {
  Reassembler r({});
  ASSERT_TRUE(r.Add(kT0, {0, 0, 1}, {0, 3, 6}, "ab").ok());
  ASSERT_TRUE(r.Add(kT0, {0, 0, 1}, {1, 3, 6}, "cd").ok());
  ASSERT_TRUE(r.Add(kT0, {0, 0, 2}, {0, 2, 2}, "e").ok());
  EXPECT_EQ(r.buffered_bytes(), 5u);
  EXPECT_EQ(r.held_bytes(), 5 + 3 * kFragmentOverheadBytes + 2 * kPartialMessageBytes);
  ASSERT_TRUE(r.Add(kT0, {0, 0, 1}, {1, 3, 6}, "cd").ok());  // duplicate: no charge
  EXPECT_EQ(r.held_bytes(), 5 + 3 * kFragmentOverheadBytes + 2 * kPartialMessageBytes);
  absl::StatusOr<std::optional<std::string>> done = r.Add(kT0, {0, 0, 1}, {2, 3, 6}, "ef");
  ASSERT_TRUE(done.ok());
  ASSERT_TRUE(done->has_value());
  EXPECT_EQ(r.held_bytes(), 1 + kFragmentOverheadBytes + kPartialMessageBytes);
  r.Discard({0, 0, 2});
  EXPECT_EQ(r.held_bytes(), 0u);
  // A single-fragment message is never buffered.
  ASSERT_TRUE(r.Add(kT0, {0, 0, 3}, {0, 1, 3}, "abc").ok());
  EXPECT_EQ(r.held_bytes(), 0u);
}

TEST(ReassemblerTest, OneByteFragmentsCannotHoldMoreThanTheLimitInBookkeeping) {
  // 1-byte fragments: the limit counts each one's overhead, so 64 KiB holds
  // a few hundred of them, not 65536 (which really take ~100x their bytes).
  constexpr uint64_t kLimit = 64 << 10;
  Reassembler r({.max_buffered_bytes = kLimit});
  uint32_t accepted = 0;
  for (uint32_t index = 0; index < 65536; ++index) {
    absl::StatusOr<std::optional<std::string>> got =
        r.Add(kT0, {0, 0, 7}, {index, 65536, 65536}, "x");
    if (!got.ok()) {
      EXPECT_EQ(got.status().code(), absl::StatusCode::kResourceExhausted);
      break;
    }
    ++accepted;
  }
  EXPECT_EQ(accepted, (kLimit - kPartialMessageBytes) / (1 + kFragmentOverheadBytes));
  EXPECT_LE(r.held_bytes(), kLimit);
  EXPECT_EQ(r.buffered_bytes(), accepted);
  EXPECT_EQ(r.stats().refused_for_space, 1u);
}

TEST(ReassemblerTest, PartialCostBoundsWhatAMessageHolds) {
  // The connection reserves PartialCost(size, fragment / 2) for a head
  // message: it must cover the message cut by a sender whose fragments are
  // at least half as large as ours.
  for (uint64_t size : {uint64_t{1}, uint64_t{1000}, uint64_t{1} << 16, uint64_t{3000001}}) {
    for (uint64_t fragment : {uint64_t{600}, uint64_t{1140}}) {
      SCOPED_TRACE(::testing::Message() << "size " << size << " fragment " << fragment);
      const uint32_t count = FragmentCountFor(size, fragment);
      const uint64_t held = size + count * kFragmentOverheadBytes + kPartialMessageBytes;
      EXPECT_LE(held, Reassembler::PartialCost(size, fragment));
      EXPECT_LE(held, Reassembler::PartialCost(size, fragment / 2));
    }
  }
}

TEST(ReassemblerTest, ExpireDropsOldPartialMessagesAndTheirBytes) {
  Reassembler r({.timeout = absl::Seconds(5)});
  ASSERT_TRUE(r.Add(kT0, {0, 0, 1}, {0, 2, 4}, "ab").ok());
  ASSERT_TRUE(r.Add(kT0 + absl::Seconds(3), {0, 0, 2}, {0, 2, 4}, "ab").ok());
  EXPECT_EQ(r.Expire(kT0 + absl::Seconds(4)), 0u);
  EXPECT_EQ(r.Expire(kT0 + absl::Seconds(5)), 1u);
  EXPECT_EQ(r.partial_messages(), 1u);
  EXPECT_EQ(r.buffered_bytes(), 2u);
  r.Discard({0, 0, 2});
  EXPECT_EQ(r.buffered_bytes(), 0u);
}

TEST(ReassemblerTest, KeysSeparateChannelsAndSpaces) {
  Reassembler r({});
  ASSERT_TRUE(r.Add(kT0, {1, 0, 5}, {0, 2, 4}, "ab").ok());
  auto other_channel = r.Add(kT0, {2, 0, 5}, {1, 2, 4}, "cd");
  ASSERT_TRUE(other_channel.ok());
  EXPECT_FALSE(other_channel->has_value());
  auto other_space = r.Add(kT0, {1, 3, 5}, {1, 2, 4}, "cd");
  ASSERT_TRUE(other_space.ok());
  EXPECT_FALSE(other_space->has_value());
  EXPECT_EQ(r.partial_messages(), 3u);
}

}  // namespace
}  // namespace udpmsg::reliable
