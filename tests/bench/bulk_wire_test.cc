// bench/bulk_wire.h: the checksum, the payload, the header/result codec and
// the receiver's state machine, including every rejection it lists.
#include "bench/bulk_wire.h"

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace udpmsg::bench {
namespace {

using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

TEST(ChecksumTest, DoesNotDependOnHowTheInputIsSplit) {
  const Payload p = MakePayload(1000, 7);
  for (size_t piece : {1u, 3u, 7u, 8u, 9u, 64u, 999u}) {
    Checksum c;
    for (size_t at = 0; at < p.data.size(); at += piece) c.Update(p.data.substr(at, piece));
    EXPECT_EQ(c.Final(), p.checksum) << "pieces of " << piece;
  }
}

TEST(ChecksumTest, SeesLengthOrderAndContent) {
  const Payload p = MakePayload(64, 1);
  std::string swapped = p.data;
  std::swap(swapped[0], swapped[8]);
  std::string flipped = p.data;
  flipped[33] ^= 1;
  std::string longer = p.data + std::string(1, '\0');
  for (const std::string& other : {swapped, flipped, longer}) {
    Checksum c;
    c.Update(other);
    EXPECT_NE(c.Final(), p.checksum);
  }
}

TEST(PayloadTest, SameSeedSameBytesOtherSeedOtherBytes) {
  EXPECT_EQ(MakePayload(100, 3).data, MakePayload(100, 3).data);
  EXPECT_NE(MakePayload(100, 3).data, MakePayload(100, 4).data);
  EXPECT_EQ(MakePayload(13, 3).data.size(), 13u);
}

TEST(ResultTest, RoundTrips) {
  const BulkResult r{12345, 0xdeadbeefcafef00dULL, kT0 + absl::Nanoseconds(17)};
  const std::string wire = EncodeResult(r);
  EXPECT_EQ(wire.size(), kBulkResultBytes);
  absl::StatusOr<BulkResult> back = DecodeResult(wire);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->received, r.received);
  EXPECT_EQ(back->checksum, r.checksum);
  EXPECT_EQ(back->last_byte, r.last_byte);
}

TEST(ResultTest, RejectsWrongSizeOrMagic) {
  const std::string wire = EncodeResult(BulkResult{1, 2, kT0});
  EXPECT_EQ(DecodeResult(wire.substr(0, 31)).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeResult(wire + "x").status().code(), absl::StatusCode::kDataLoss);
  std::string bad = wire;
  bad[0] ^= 1;
  EXPECT_EQ(DecodeResult(bad).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeResult(EncodeHeader(32) + EncodeHeader(0)).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(ReceiveStateTest, CompletesWithTheSendersChecksumInAnyPieces) {
  const Payload p = MakePayload(5000, 9);
  const std::string all = EncodeHeader(p.data.size()) + p.data;
  ReceiveState rx;
  for (size_t at = 0; at < all.size(); at += 7) {
    ASSERT_TRUE(rx.Consume(absl::string_view(all).substr(at, 7), kT0).ok());
  }
  EXPECT_TRUE(rx.complete());
  EXPECT_EQ(rx.received(), p.data.size());
  absl::StatusOr<BulkResult> r = DecodeResult(rx.EncodedResult());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->checksum, p.checksum);
  EXPECT_EQ(r->received, p.data.size());
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

}  // namespace
}  // namespace udpmsg::bench
