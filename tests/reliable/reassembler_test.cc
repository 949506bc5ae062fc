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

// `message` cut for `max_payload`, a quarter of its fragments repeated, then
// shuffled: wholly, or only nearly (swaps of up to 8 places, what loss and
// reordering look like).
std::vector<std::pair<FragmentHeader, std::string>> ShuffledWithCopies(const std::string& message,
                                                                       uint64_t max_payload,
                                                                       bool nearly_in_order,
                                                                       std::mt19937_64& rng) {
  auto fragments = Cut(message, max_payload);
  for (size_t i = 0, copies = fragments.size() / 4; i < copies; ++i) {
    fragments.push_back(fragments[rng() % fragments.size()]);
  }
  if (!nearly_in_order) {
    std::shuffle(fragments.begin(), fragments.end(), rng);
    return fragments;
  }
  for (size_t i = 0; i + 1 < fragments.size(); ++i) {
    if (rng() % 4 != 0) continue;
    std::swap(fragments[i], fragments[i + 1 + rng() % std::min<size_t>(8, fragments.size() - i - 1)]);
  }
  return fragments;
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
    const auto fragments = ShuffledWithCopies(message, 1100, /*nearly_in_order=*/false, rng);

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

// Cuts `message` into fragments of at most `max_payload` and groups them
// into runs of 1..max_run consecutive fragments (frames.h
// kFeatureFragmentRuns), as a sender filling datagrams does.
std::vector<std::pair<FragmentHeader, std::string>> CutRuns(const std::string& message,
                                                            uint64_t max_payload, uint32_t max_run,
                                                            std::mt19937_64& rng) {
  const auto singles = Cut(message, max_payload);
  std::vector<std::pair<FragmentHeader, std::string>> out;
  for (size_t i = 0; i < singles.size();) {
    const uint32_t run = std::min<uint32_t>(static_cast<uint32_t>(singles.size() - i),
                                            1 + static_cast<uint32_t>(rng() % max_run));
    FragmentHeader h = singles[i].first;
    h.run = run;
    std::string bytes;
    for (uint32_t k = 0; k < run; ++k) bytes += singles[i + k].second;
    out.push_back({h, bytes});
    i += run;
  }
  return out;
}

// Runs cut differently on each copy (a run lost and sent again one
// fragment at a time, or a different cut altogether), shuffled, with and
// without room for the in-order buffer, under a tight and a loose budget:
// every message comes out exactly once and whole, held bytes stay within
// the limit, and nothing is left behind.
TEST(ReassemblerRunTest, OverlappingShuffledRunsRebuildTheMessage) {
  for (uint64_t seed = 1; seed <= 60; ++seed) {
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    std::mt19937_64 rng(seed);
    const std::string message = Pattern(rng() % 40000 + 10000, seed);
    std::vector<std::pair<FragmentHeader, std::string>> pieces = CutRuns(message, 700, 8, rng);
    const auto again = CutRuns(message, 700, 1 + seed % 5, rng);
    pieces.insert(pieces.end(), again.begin(), again.end());
    if (seed % 3 != 0) std::shuffle(pieces.begin(), pieces.end(), rng);
    Reassembler::Limits limits;
    limits.max_buffered_bytes = seed % 2 == 0 ? 64 << 20 : message.size() / 2 + 4096;
    Reassembler r(limits);
    const uint64_t allowance = seed % 4 == 1 ? 0 : 1 << 20;
    std::optional<std::string> result;
    for (const auto& [header, bytes] : pieces) {
      if (result.has_value()) break;  // the connection drops later copies by sequence number
      absl::StatusOr<std::optional<std::string>> got =
          r.Add(kT0, {1, 0, 7}, header, bytes, allowance);
      EXPECT_LE(r.held_bytes(), limits.max_buffered_bytes);
      if (!got.ok()) {
        ASSERT_EQ(got.status().code(), absl::StatusCode::kResourceExhausted) << got.status();
        continue;
      }
      if (got->has_value()) result = std::move(*got);
    }
    // Under the tight budget (half the message) it cannot complete: what is
    // held stays within the limit, and Expire returns all of it.
    if (seed % 2 != 0) {
      EXPECT_FALSE(result.has_value());
      EXPECT_GT(r.stats().refused_for_space, 0u);
      r.Expire(kT0 + r.limits().timeout);
    } else {
      ASSERT_TRUE(result.has_value());
      EXPECT_TRUE(*result == message);
    }
    EXPECT_EQ(r.partial_messages(), 0u);
    EXPECT_EQ(r.buffered_bytes(), 0u);
    EXPECT_EQ(r.held_bytes(), 0u);
  }
}

// A run next in order goes into the buffer in one piece: no fragment is
// kept apart (held bytes are the reservation), and FitsReserved sees the
// whole run. A run over fragments already held is added one by one.
TEST(ReassemblerRunTest, AnInOrderRunIsOneAppend) {
  const std::string message = Pattern(1000, 5);
  const auto f = Cut(message, 100);  // 10 of 100 bytes
  auto run = [&](uint32_t index, uint32_t n) {
    FragmentHeader h = f[index].first;
    h.run = n;
    return std::make_pair(h, message.substr(100 * index, 100 * n));
  };
  Reassembler r({});
  const uint64_t kFixed = kPartialMessageBytes + kPrefixOverheadBytes;
  auto [h0, b0] = run(0, 3);
  ASSERT_TRUE(r.Add(kT0, {1, 0, 7}, h0, b0, 1 << 20).ok());
  EXPECT_EQ(r.held_bytes(), kFixed + 300);  // reserved what the run needed
  EXPECT_EQ(r.buffered_bytes(), 300u);
  // The next run fits what a doubling reserves...
  auto [h1, b1] = run(3, 3);
  EXPECT_FALSE(r.FitsReserved({1, 0, 7}, h1, b1.size()));
  ASSERT_TRUE(r.Add(kT0, {1, 0, 7}, h1, b1, 1 << 20).ok());
  EXPECT_EQ(r.held_bytes(), kFixed + 600);
  // ...fragment 7 alone comes early and is kept apart; a run over it is
  // then not in order in one piece, and adds its fragments one by one.
  ASSERT_TRUE(r.Add(kT0, {1, 0, 7}, f[7].first, f[7].second, 1 << 20).ok());
  auto [h2, b2] = run(6, 3);
  EXPECT_FALSE(r.FitsReserved({1, 0, 7}, h2, b2.size()));
  ASSERT_TRUE(r.Add(kT0, {1, 0, 7}, h2, b2, 1 << 20).ok());
  EXPECT_EQ(r.stats().duplicate_fragments, 1u);  // fragment 7
  EXPECT_EQ(r.buffered_bytes(), 900u);
  // The last fragment completes it; a run of all of it afterwards would be
  // a new message (the connection drops it by sequence number first).
  absl::StatusOr<std::optional<std::string>> last =
      r.Add(kT0, {1, 0, 7}, f[9].first, f[9].second, 1 << 20);
  ASSERT_TRUE(last.ok() && last->has_value());
  EXPECT_TRUE(**last == message);
  EXPECT_EQ(r.held_bytes(), 0u);
}

// A run of all of a message's fragments is the whole message: returned at
// once, nothing partial, and Whole (no reassembler yet) agrees. A run
// whose payload is not exactly its fragments, or that runs past the count,
// is rejected and changes nothing.
TEST(ReassemblerRunTest, AWholeRunCompletesAtOnceAndBadRunsAreRejected) {
  const std::string message = Pattern(950, 6);
  FragmentHeader all{0, 10, message.size(), 10};
  Reassembler r({});
  absl::StatusOr<std::optional<std::string>> got = r.Add(kT0, {1, 0, 7}, all, message);
  ASSERT_TRUE(got.ok() && got->has_value()) << got.status();
  EXPECT_TRUE(**got == message);
  EXPECT_EQ(r.partial_messages(), 0u);
  std::optional<std::string> whole = Reassembler::Whole(1 << 20, all, message);
  ASSERT_TRUE(whole.has_value());
  EXPECT_TRUE(*whole == message);
  EXPECT_FALSE(Reassembler::Whole(1 << 20, all, message.substr(1)).has_value());

  EXPECT_THAT(std::string(r.Add(kT0, {1, 0, 8}, FragmentHeader{2, 10, message.size(), 3},
                                message.substr(190, 286))
                              .status()
                              .message()),
              HasSubstr("(run 3) carries 286 bytes; its layout needs 285"));
  EXPECT_THAT(std::string(r.Add(kT0, {1, 0, 8}, FragmentHeader{8, 10, message.size(), 3},
                                message.substr(760))
                              .status()
                              .message()),
              HasSubstr("fragment run 3 from 8 outside count 10"));
  EXPECT_THAT(std::string(r.Add(kT0, {1, 0, 8}, FragmentHeader{8, 10, message.size(), 0},
                                message.substr(760))
                              .status()
                              .message()),
              HasSubstr("fragment run 0"));
  EXPECT_EQ(r.stats().rejected_fragments, 3u);
  EXPECT_EQ(r.partial_messages(), 0u);
  EXPECT_EQ(r.held_bytes(), 0u);
}

// With a growth allowance, in-order fragments go into one buffer reserved in
// doubling steps (never beyond the message, never more than twice what it
// holds) and held bytes count what is reserved, not a slot per fragment.
TEST(ReassemblerInOrderTest, InOrderFragmentsFillOneBufferChargedForWhatIsReserved) {
  const std::string message = Pattern(1000, 3);
  auto fragments = Cut(message, 100);  // 10 of 100 bytes
  Reassembler r({});
  const uint64_t kFixed = kPartialMessageBytes + kPrefixOverheadBytes;
  const uint64_t reserved_after[] = {100, 200, 400, 400, 800, 800, 800, 800, 1000};
  for (size_t i = 0; i + 1 < fragments.size(); ++i) {
    absl::StatusOr<std::optional<std::string>> got =
        r.Add(kT0, {1, 0, 7}, fragments[i].first, fragments[i].second, 1 << 20);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_FALSE(got->has_value());
    EXPECT_EQ(r.held_bytes(), kFixed + reserved_after[i]) << "after fragment " << i;
    EXPECT_LE(reserved_after[i], 2 * (i + 1) * 100);
    EXPECT_EQ(r.buffered_bytes(), (i + 1) * 100);
  }
  // A copy of a fragment already in the buffer is a duplicate.
  ASSERT_TRUE(r.Add(kT0, {1, 0, 7}, fragments[3].first, fragments[3].second, 1 << 20).ok());
  EXPECT_EQ(r.stats().duplicate_fragments, 1u);
  EXPECT_EQ(r.buffered_bytes(), 900u);
  absl::StatusOr<std::optional<std::string>> last =
      r.Add(kT0, {1, 0, 7}, fragments[9].first, fragments[9].second, 1 << 20);
  ASSERT_TRUE(last.ok() && last->has_value());
  EXPECT_TRUE(**last == message);
  EXPECT_EQ(r.held_bytes(), 0u);
  EXPECT_EQ(r.buffered_bytes(), 0u);
  EXPECT_EQ(r.partial_messages(), 0u);
}

// Fragments after a gap are kept one by one; when the gap fills they move
// into the buffer and their per-fragment charge goes.
TEST(ReassemblerInOrderTest, FragmentsAfterAGapJoinTheBufferWhenItFills) {
  const std::string message = Pattern(600, 4);
  auto f = Cut(message, 100);  // 6 of 100 bytes
  Reassembler r({});
  const uint64_t kAllow = 1 << 20;
  for (int i : {0, 1, 3, 4}) ASSERT_TRUE(r.Add(kT0, {1, 0, 7}, f[i].first, f[i].second, kAllow).ok());
  // Buffer: 0 and 1 (200 reserved); kept: 3 and 4.
  EXPECT_EQ(r.held_bytes(), kPartialMessageBytes + kPrefixOverheadBytes + 200 +
                                2 * (100 + kFragmentOverheadBytes));
  ASSERT_TRUE(r.Add(kT0, {1, 0, 7}, f[2].first, f[2].second, kAllow).ok());
  // 2, 3 and 4 joined: 400 reserved by doubling, then 800 capped at 600.
  EXPECT_EQ(r.held_bytes(), kPartialMessageBytes + kPrefixOverheadBytes + 600);
  EXPECT_EQ(r.buffered_bytes(), 500u);
  absl::StatusOr<std::optional<std::string>> done =
      r.Add(kT0, {1, 0, 7}, f[5].first, f[5].second, kAllow);
  ASSERT_TRUE(done.ok() && done->has_value());
  EXPECT_TRUE(**done == message);
  EXPECT_EQ(r.held_bytes(), 0u);
}

// Without an allowance (or when a step does not fit it or the limit) nothing
// is reserved: the same charges as fragments one by one, and the message
// still completes, out of order and in order alike.
TEST(ReassemblerInOrderTest, NoRoomToGrowKeepsFragmentsOneByOne) {
  const std::string message = Pattern(500, 5);
  auto f = Cut(message, 100);
  for (uint64_t allowance : {uint64_t{0}, uint64_t{100 + kPrefixOverheadBytes - 1}}) {
    SCOPED_TRACE(::testing::Message() << "allowance " << allowance);
    Reassembler r({});
    for (size_t i = 0; i + 1 < f.size(); ++i) {
      ASSERT_TRUE(r.Add(kT0, {1, 0, 7}, f[i].first, f[i].second, allowance).ok());
      EXPECT_EQ(r.held_bytes(), kPartialMessageBytes + (i + 1) * (100 + kFragmentOverheadBytes));
    }
    absl::StatusOr<std::optional<std::string>> done =
        r.Add(kT0, {1, 0, 7}, f[4].first, f[4].second, allowance);
    ASSERT_TRUE(done.ok() && done->has_value());
    EXPECT_TRUE(**done == message);
    EXPECT_EQ(r.held_bytes(), 0u);
  }
  // The limit bounds growth too: 1 KiB of budget, a 2,000-byte message.
  const std::string big = Pattern(2000, 6);
  auto g = Cut(big, 100);
  Reassembler small({.max_buffered_bytes = 1024});
  uint64_t refused = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    absl::StatusOr<std::optional<std::string>> got =
        small.Add(kT0, {1, 0, 7}, g[i].first, g[i].second, 1 << 20);
    if (!got.ok()) {
      EXPECT_EQ(got.status().code(), absl::StatusCode::kResourceExhausted);
      ++refused;
    }
    EXPECT_LE(small.held_bytes(), 1024u) << "after fragment " << i;
  }
  EXPECT_GT(refused, 0u);
}

// FitsReserved says whether the next fragment lands in what the buffer
// reserved; the buffer is reallocated to exactly what it reserves (a
// string's own growth may round up to twice its capacity, more than is
// charged), so a message that came in order is delivered at its size.
// Found by review: 258 fragments of 1,200 bytes were charged 309,888 bytes
// and held 618,632, and the delivered string had capacity 614,400.
TEST(ReassemblerInOrderTest, ReservedIsExactAndFitsReservedSaysWhatLandsInIt) {
  const std::string message = Pattern(258 * 1200, 8);
  auto f = Cut(message, 1200);
  ASSERT_EQ(f.size(), 258u);
  Reassembler r({});
  const MessageKey key{1, 0, 7};
  EXPECT_FALSE(r.FitsReserved(key, f[0].first, f[0].second.size()));  // nothing yet
  for (size_t i = 0; i < 257; ++i) {
    ASSERT_TRUE(r.Add(kT0, key, f[i].first, f[i].second, 1 << 30).ok());
  }
  // 257 fragments in 2^9 x 1200 = 614,400 reserved would be the doubling;
  // capped at the message: 309,600.
  EXPECT_EQ(r.held_bytes(), kPartialMessageBytes + kPrefixOverheadBytes + 309'600);
  EXPECT_TRUE(r.FitsReserved(key, f[257].first, f[257].second.size()));
  EXPECT_FALSE(r.FitsReserved(key, f[256].first, f[256].second.size()));  // held already
  FragmentHeader other = f[257].first;
  other.total_size += 1;
  EXPECT_FALSE(r.FitsReserved(key, other, f[257].second.size()));
  absl::StatusOr<std::optional<std::string>> done = r.Add(kT0, key, f[257].first, f[257].second);
  ASSERT_TRUE(done.ok() && done->has_value());
  EXPECT_TRUE(**done == message);
  EXPECT_EQ((*done)->capacity(), message.size());
}

// Expiry and discarding give back what a buffer reserved.
TEST(ReassemblerInOrderTest, ExpireAndDiscardReturnTheBuffer) {
  const std::string message = Pattern(1000, 7);
  auto f = Cut(message, 100);
  Reassembler r({.timeout = absl::Seconds(1)});
  for (int i : {0, 1, 2, 5}) ASSERT_TRUE(r.Add(kT0, {1, 0, 7}, f[i].first, f[i].second, 1 << 20).ok());
  for (int i : {0, 1}) ASSERT_TRUE(r.Add(kT0, {1, 0, 8}, f[i].first, f[i].second, 1 << 20).ok());
  EXPECT_GT(r.held_bytes(), 0u);
  r.Discard({1, 0, 8});
  EXPECT_EQ(r.held_bytes(), kPartialMessageBytes + kPrefixOverheadBytes + 400 + 100 +
                                kFragmentOverheadBytes);
  EXPECT_EQ(r.Expire(kT0 + absl::Seconds(1)), 1u);
  EXPECT_EQ(r.held_bytes(), 0u);
  EXPECT_EQ(r.buffered_bytes(), 0u);
}

// The shuffled-duplicates property with an allowance: whatever the order,
// the message comes back whole and nothing stays held.
TEST(ReassemblerInOrderTest, ShuffledFragmentsWithAnAllowanceRebuildTheMessage) {
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    std::mt19937_64 rng(seed);
    const std::string message = Pattern(rng() % 50000 + 2, seed);
    const auto fragments = ShuffledWithCopies(message, 700, /*nearly_in_order=*/true, rng);
    Reassembler r({});
    std::optional<std::string> result;
    for (const auto& [header, bytes] : fragments) {
      absl::StatusOr<std::optional<std::string>> got =
          r.Add(kT0, {1, 0, 7}, header, bytes, rng() % 3 == 0 ? 0 : rng() % 100000);
      ASSERT_TRUE(got.ok()) << got.status();
      if (got->has_value()) {
        ASSERT_FALSE(result.has_value()) << "completed twice";
        result = std::move(*got);
        break;
      }
    }
    ASSERT_TRUE(result.has_value());
    EXPECT_TRUE(*result == message);
    EXPECT_EQ(r.held_bytes(), 0u);
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

// The reassembler remembers the last message it looked up; insertions
// (which rehash the map and move its entries), completions, discards and
// expiry must each make it look again. Run under the ASan twin, a stale
// memory is a use after free; in the plain build, a wrong message.
TEST(ReassemblerTest, LookupsStayRightAcrossRehashCompletionDiscardAndExpiry) {
  Reassembler r({.timeout = absl::Seconds(1)});
  std::vector<std::string> messages;
  std::vector<std::vector<std::pair<FragmentHeader, std::string>>> cut;
  for (uint64_t j = 0; j < 40; ++j) {
    messages.push_back(Pattern(500, 100 + j));
    cut.push_back(Cut(messages.back(), 100));
  }
  auto key = [](uint64_t j) { return MessageKey{1, 0, j}; };
  ASSERT_TRUE(r.Add(kT0, key(0), cut[0][0].first, cut[0][0].second, 1 << 20).ok());
  r.FitsReserved(key(0), cut[0][1].first, cut[0][1].second.size());  // remembers message 0
  for (uint64_t j = 1; j < 40; ++j) {  // 39 insertions: the map grows and rehashes
    ASSERT_TRUE(r.Add(kT0, key(j), cut[j][0].first, cut[j][0].second, 1 << 20).ok());
  }
  for (size_t i = 1; i < 5; ++i) {
    absl::StatusOr<std::optional<std::string>> out =
        r.Add(kT0, key(0), cut[0][i].first, cut[0][i].second, 1 << 20);
    ASSERT_TRUE(out.ok()) << out.status();
    ASSERT_EQ(out->has_value(), i == 4);
    if (i == 4) {
      EXPECT_TRUE(**out == messages[0]);
    }
  }
  // Message 0 completed (erased): its key starts a new message, not the old one.
  const std::string again = Pattern(300, 99);
  auto again_cut = Cut(again, 100);
  ASSERT_TRUE(r.Add(kT0, key(0), again_cut[0].first, again_cut[0].second, 1 << 20).ok());
  EXPECT_FALSE(r.FitsReserved(key(1), cut[1][2].first, cut[1][2].second.size()));  // out of order
  r.Discard(key(1));
  absl::StatusOr<std::optional<std::string>> restarted =
      r.Add(kT0, key(1), cut[1][1].first, cut[1][1].second, 1 << 20);
  ASSERT_TRUE(restarted.ok());
  EXPECT_FALSE(restarted->has_value());
  for (size_t i = 1; i < 3; ++i) {
    absl::StatusOr<std::optional<std::string>> out =
        r.Add(kT0, key(0), again_cut[i].first, again_cut[i].second, 1 << 20);
    ASSERT_TRUE(out.ok());
    ASSERT_EQ(out->has_value(), i == 2);
    if (i == 2) {
      EXPECT_TRUE(**out == again);
    }
  }
  r.FitsReserved(key(2), cut[2][1].first, cut[2][1].second.size());  // remembers message 2
  EXPECT_EQ(r.Expire(kT0 + absl::Seconds(1)), 39u);
  EXPECT_FALSE(r.FitsReserved(key(2), cut[2][1].first, cut[2][1].second.size()));
  EXPECT_EQ(r.held_bytes(), 0u);
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
