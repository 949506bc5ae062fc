// bench/bulk_wire.h: the checksum, the payload, the header/result codec
// (both result versions) and the receiver's state machine (sized and timed),
// including every rejection it lists.
#include "bench/bulk_wire.h"

#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace udpmsg::bench {
namespace {

using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

TEST(ChecksumTest, DoesNotDependOnHowTheInputIsSplit) {
  // 1013 = 31 * 32 + 21: Final's tail reaches into three of the four lanes.
  const Payload p = MakePayload(1013, 7);
  for (int version : {1, 2}) {
    Checksum whole(version);
    whole.Update(p.data());
    if (version == kChecksumVersion) {
      EXPECT_EQ(whole.Final(), p.checksum);
    }
    for (size_t piece : {1u, 3u, 7u, 8u, 9u, 31u, 32u, 33u, 64u, 999u}) {
      Checksum c(version);
      for (size_t at = 0; at < p.data().size(); at += piece) c.Update(p.data().substr(at, piece));
      EXPECT_EQ(c.Final(), whole.Final()) << "version " << version << ", pieces of " << piece;
    }
  }
}

// Version 1 as receivers before "USMGRES3" compute it: one FNV-1a lane over
// little-endian words, the tail zero-padded, then the length.
uint64_t ReferenceVersionOne(const std::string& data) {
  uint64_t h = 0xCBF29CE484222325ULL;
  const auto mix = [&h](uint64_t word) {
    h = (h ^ word) * 0x100000001B3ULL;
    h ^= h >> 32;
  };
  for (size_t i = 0; i < data.size(); i += 8) {
    uint64_t word = 0;
    for (size_t b = 0; b < 8 && i + b < data.size(); ++b) {
      word |= uint64_t{static_cast<uint8_t>(data[i + b])} << (8 * b);
    }
    mix(word);
  }
  mix(data.size());
  return h;
}

TEST(ChecksumTest, VersionOneIsWhatOlderReceiversSend) {
  const Payload p = MakePayload(1000, 9);
  for (size_t length : {0u, 1u, 7u, 8u, 31u, 32u, 33u, 1000u}) {
    Checksum c(1);
    c.Update(p.data().substr(0, length));
    EXPECT_EQ(c.Final(), ReferenceVersionOne(std::string(p.data().substr(0, length)))) << length;
    EXPECT_EQ(CyclicChecksum(p.data(), length, 1), c.Final()) << length;
  }
  EXPECT_NE(CyclicChecksum(p.data(), 1000, 1), p.checksum);
}

// Words in different lanes swapped whole, or two words of one lane swapped.
TEST(ChecksumTest, SeesWholeWordsMovedAcrossAndWithinLanes) {
  const Payload p = MakePayload(96, 2);
  for (const auto& [a, b] : {std::pair<size_t, size_t>{0, 1}, {0, 4}, {3, 11}, {1, 2}}) {
    std::string moved(p.data());
    for (size_t i = 0; i < 8; ++i) std::swap(moved[8 * a + i], moved[8 * b + i]);
    ASSERT_NE(moved, p.data());
    Checksum c;
    c.Update(moved);
    EXPECT_NE(c.Final(), p.checksum) << "words " << a << " and " << b;
  }
}

TEST(ChecksumTest, SeesLengthOrderAndContent) {
  const Payload p = MakePayload(64, 1);
  std::string swapped(p.data());
  std::swap(swapped[0], swapped[8]);
  std::string flipped(p.data());
  flipped[33] ^= 1;
  std::string longer = absl::StrCat(p.data(), std::string(1, '\0'));
  for (const std::string& other : {swapped, flipped, longer}) {
    Checksum c;
    c.Update(other);
    EXPECT_NE(c.Final(), p.checksum);
  }
}

TEST(PayloadTest, SameSeedSameBytesOtherSeedOtherBytes) {
  EXPECT_EQ(MakePayload(100, 3).data(), MakePayload(100, 3).data());
  EXPECT_NE(MakePayload(100, 3).data(), MakePayload(100, 4).data());
  EXPECT_EQ(MakePayload(13, 3).data().size(), 13u);
}

TEST(ResultTest, RoundTrips) {
  const BulkResult r{12345, 0xdeadbeefcafef00dULL, kT0 + absl::Nanoseconds(17), 987654321};
  const std::string wire = EncodeResult(r);
  EXPECT_EQ(wire.size(), kBulkResultBytes);
  EXPECT_EQ(wire.substr(0, 8), "USMGRES3");
  absl::StatusOr<BulkResult> back = DecodeResult(wire);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->checksum_version, kChecksumVersion);
  EXPECT_EQ(back->received, r.received);
  EXPECT_EQ(back->checksum, r.checksum);
  EXPECT_EQ(back->last_byte, r.last_byte);
  EXPECT_EQ(back->receiver_cpu_ns, r.receiver_cpu_ns);
  // Unknown CPU time round-trips as -1.
  absl::StatusOr<BulkResult> unknown = DecodeResult(EncodeResult(BulkResult{1, 2, kT0}));
  ASSERT_TRUE(unknown.ok()) << unknown.status();
  EXPECT_EQ(unknown->receiver_cpu_ns, -1);
}

// A server from before the CPU figure answers with the 32-byte version 1:
// it still decodes, the CPU time unknown.
TEST(ResultTest, DecodesVersionOneWithoutCpu) {
  std::string v1 = EncodeResult(BulkResult{777, 0x1122334455667788ULL, kT0, 5});
  v1 = "USMGRSLT" + v1.substr(8, kBulkResultV1Bytes - 8);
  ASSERT_EQ(v1.size(), kBulkResultV1Bytes);
  absl::StatusOr<size_t> length = ResultLength(v1.substr(0, 8));
  ASSERT_TRUE(length.ok());
  EXPECT_EQ(*length, kBulkResultV1Bytes);
  absl::StatusOr<BulkResult> back = DecodeResult(v1);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->received, 777u);
  EXPECT_EQ(back->checksum, 0x1122334455667788ULL);
  EXPECT_EQ(back->last_byte, kT0);
  EXPECT_EQ(back->receiver_cpu_ns, -1);
  EXPECT_EQ(back->checksum_version, 1);
  // Version 1 is exactly 32 bytes.
  EXPECT_EQ(DecodeResult(v1 + "12345678").status().code(), absl::StatusCode::kDataLoss);
}

// A server from before checksum version 2 answers "USMGRES2": the same
// layout, its checksum of version 1.
TEST(ResultTest, DecodesUsmgres2WithChecksumVersionOne) {
  std::string v2 = EncodeResult(BulkResult{777, 0x1122334455667788ULL, kT0, 5});
  v2 = "USMGRES2" + v2.substr(8);
  absl::StatusOr<size_t> length = ResultLength(v2.substr(0, 8));
  ASSERT_TRUE(length.ok());
  EXPECT_EQ(*length, kBulkResultBytes);
  absl::StatusOr<BulkResult> back = DecodeResult(v2);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->checksum, 0x1122334455667788ULL);
  EXPECT_EQ(back->receiver_cpu_ns, 5);
  EXPECT_EQ(back->checksum_version, 1);
}

TEST(ResultTest, LengthNeedsTheMagic) {
  const std::string wire = EncodeResult(BulkResult{1, 2, kT0});
  for (size_t n = 0; n < 8; ++n) {
    absl::StatusOr<size_t> length = ResultLength(wire.substr(0, n));
    ASSERT_TRUE(length.ok());
    EXPECT_EQ(*length, 0u) << n;
  }
  absl::StatusOr<size_t> length = ResultLength(wire.substr(0, 8));
  ASSERT_TRUE(length.ok());
  EXPECT_EQ(*length, kBulkResultBytes);
  EXPECT_EQ(ResultLength("USMGBULKxxxxxxxx").status().code(), absl::StatusCode::kDataLoss);
}

TEST(ResultTest, RejectsWrongSizeOrMagic) {
  const std::string wire = EncodeResult(BulkResult{1, 2, kT0});
  EXPECT_EQ(DecodeResult(wire.substr(0, 39)).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeResult(wire.substr(0, 32)).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeResult(wire.substr(0, 7)).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeResult(wire + "x").status().code(), absl::StatusCode::kDataLoss);
  std::string bad = wire;
  bad[0] ^= 1;
  EXPECT_EQ(DecodeResult(bad).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeResult(EncodeHeader(32) + EncodeHeader(0)).status().code(),
            absl::StatusCode::kDataLoss);
  std::string negative = wire;
  negative[39] = static_cast<char>(0x80);  // CPU time below -1
  EXPECT_EQ(DecodeResult(negative).status().code(), absl::StatusCode::kDataLoss);
}

TEST(CyclicChecksumTest, IsTheChecksumOfTheRepeatedData) {
  const Payload p = MakePayload(100, 5);
  for (uint64_t length : {0u, 1u, 99u, 100u, 101u, 250u, 300u}) {
    std::string repeated;
    while (repeated.size() < length) absl::StrAppend(&repeated, p.data());
    repeated.resize(length);
    Checksum c;
    c.Update(repeated);
    EXPECT_EQ(CyclicChecksum(p.data(), length), c.Final()) << length;
  }
  EXPECT_EQ(CyclicChecksum(p.data(), 100), p.checksum);
}

TEST(ReceiveStateTest, CompletesWithTheSendersChecksumInAnyPieces) {
  const Payload p = MakePayload(5000, 9);
  const std::string all = absl::StrCat(EncodeHeader(p.data().size()), p.data());
  ReceiveState rx;
  for (size_t at = 0; at < all.size(); at += 7) {
    ASSERT_TRUE(rx.Consume(absl::string_view(all).substr(at, 7), kT0).ok());
  }
  EXPECT_TRUE(rx.complete());
  EXPECT_EQ(rx.received(), p.data().size());
  absl::StatusOr<BulkResult> r = DecodeResult(rx.EncodedResult());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->checksum, p.checksum);
  EXPECT_EQ(r->received, p.data().size());
  EXPECT_EQ(r->last_byte, kT0);
}

TEST(ReceiveStateTest, IncompleteUntilTheLastByte) {
  ReceiveState rx;
  ASSERT_TRUE(rx.Consume(EncodeHeader(2), kT0).ok());
  ASSERT_TRUE(rx.Consume("a", kT0).ok());
  EXPECT_FALSE(rx.complete());
  ASSERT_TRUE(rx.Consume("b", kT0).ok());
  EXPECT_TRUE(rx.complete());
}

TEST(ReceiveStateTest, RejectsABadHeader) {
  ReceiveState rx;
  std::string header = EncodeHeader(10);
  header[3] ^= 0x40;
  absl::Status s = rx.Consume(header, kT0);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("bad header"));
  EXPECT_FALSE(rx.Consume("more", kT0).ok());  // and stays rejected
}

TEST(ReceiveStateTest, RejectsASizeOver1GiB) {
  ReceiveState rx;
  EXPECT_EQ(rx.Consume(EncodeHeader((uint64_t{1} << 30) + 1), kT0).code(),
            absl::StatusCode::kDataLoss);
}

TEST(ReceiveStateTest, RejectsMoreDataThanAnnounced) {
  ReceiveState rx;
  ASSERT_TRUE(rx.Consume(EncodeHeader(3), kT0).ok());
  absl::Status s = rx.Consume("four", kT0);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("more data than the 3 bytes announced"));
  EXPECT_EQ(rx.received(), 0u);
}

TEST(ReceiveStateTest, TimedCountsOnlyWithinTheDurationOfTheFirstByte) {
  const Payload p = MakePayload(1000, 2);
  ReceiveState rx;
  ASSERT_TRUE(rx.Consume(EncodeTimedHeader(absl::Seconds(2)), kT0).ok());
  EXPECT_TRUE(rx.timed());
  EXPECT_FALSE(rx.complete());
  rx.Tick(kT0 + absl::Seconds(5));  // the window starts with the first data byte
  EXPECT_FALSE(rx.complete());
  const absl::Time first = kT0 + absl::Seconds(10);
  ASSERT_TRUE(rx.Consume(absl::string_view(p.data()).substr(0, 600), first).ok());
  ASSERT_TRUE(rx.Consume(absl::string_view(p.data()).substr(600), first + absl::Seconds(1)).ok());
  rx.Tick(first + absl::Milliseconds(1999));
  EXPECT_FALSE(rx.complete());
  // At the deadline: complete; later data is not counted.
  ASSERT_TRUE(rx.Consume(p.data(), first + absl::Seconds(2)).ok());
  EXPECT_TRUE(rx.complete());
  EXPECT_EQ(rx.received(), 1000u);
  absl::StatusOr<BulkResult> r = DecodeResult(rx.EncodedResult(42));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->received, 1000u);
  EXPECT_EQ(r->checksum, CyclicChecksum(p.data(), 1000));
  EXPECT_EQ(r->last_byte, first + absl::Seconds(1));
  EXPECT_EQ(r->receiver_cpu_ns, 42);
}

TEST(ReceiveStateTest, TimedCompletesByTickWithoutData) {
  ReceiveState rx;
  ASSERT_TRUE(rx.Consume(EncodeTimedHeader(absl::Milliseconds(100)) + "abc", kT0).ok());
  rx.Tick(kT0 + absl::Milliseconds(99));
  EXPECT_FALSE(rx.complete());
  rx.Tick(kT0 + absl::Milliseconds(100));
  EXPECT_TRUE(rx.complete());
  EXPECT_EQ(rx.received(), 3u);
}

TEST(ReceiveStateTest, TimedTakesNoLimitOnBytes) {
  ReceiveState rx;
  ASSERT_TRUE(rx.Consume(EncodeTimedHeader(absl::Seconds(1)), kT0).ok());
  const std::string mib(1 << 20, 'x');
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(rx.Consume(mib, kT0).ok());
  EXPECT_EQ(rx.received(), 3u << 20);
  EXPECT_FALSE(rx.complete());
}

TEST(ReceiveStateTest, RejectsATimedDurationOfZeroOrOverAnHour) {
  for (absl::Duration d : {absl::ZeroDuration(), absl::Hours(1) + absl::Nanoseconds(1)}) {
    ReceiveState rx;
    absl::Status s = rx.Consume(EncodeTimedHeader(d), kT0);
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << d;
    EXPECT_THAT(s.message(), HasSubstr("timed transfer"));
  }
  ReceiveState hour;
  EXPECT_TRUE(hour.Consume(EncodeTimedHeader(absl::Hours(1)), kT0).ok());
}

}  // namespace
}  // namespace udpmsg::bench
