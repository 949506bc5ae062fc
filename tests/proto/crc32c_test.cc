#include "proto/crc32c.h"

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "gtest/gtest.h"
#include "proto/codec.h"

namespace udpmsg::proto {
namespace {

// Bit-at-a-time reference.
uint32_t Reference(absl::string_view data) {
  uint32_t crc = 0xFFFFFFFF;
  for (unsigned char c : data) {
    crc ^= c;
    for (int i = 0; i < 8; ++i) crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78 : crc >> 1;
  }
  return ~crc;
}

TEST(Crc32cTest, CheckValue) { EXPECT_EQ(Crc32c("123456789"), 0xE3069283u); }

TEST(Crc32cTest, Empty) { EXPECT_EQ(Crc32c(""), 0u); }

// RFC 3720 appendix B.4.
TEST(Crc32cTest, Rfc3720Vectors) {
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(std::string(32, '\xFF')), 0x62A8AB43u);
  std::string up(32, '\0');
  std::string down(32, '\0');
  for (int i = 0; i < 32; ++i) {
    up[i] = static_cast<char>(i);
    down[i] = static_cast<char>(31 - i);
  }
  EXPECT_EQ(Crc32c(up), 0x46DD794Eu);
  EXPECT_EQ(Crc32c(down), 0x113FDB5Cu);
}

TEST(Crc32cTest, MatchesReferenceAtEveryLengthAndAlignment) {
  std::mt19937_64 rng(7);
  std::string buffer(300, '\0');
  for (char& c : buffer) c = static_cast<char>(rng());
  for (size_t offset = 0; offset < 8; ++offset) {
    for (size_t n = 0; n + offset <= buffer.size(); ++n) {
      const absl::string_view s = absl::string_view(buffer).substr(offset, n);
      ASSERT_EQ(Crc32c(s), Reference(s)) << "offset " << offset << " n " << n;
    }
  }
}

// Both implementations behind Crc32cExtend, from every starting CRC state
// the codec produces (chained Extend calls), against the reference.
TEST(Crc32cTest, PortableAndHardwareMatchTheReference) {
  std::mt19937_64 rng(9);
  std::string buffer(1500, '\0');
  for (char& c : buffer) c = static_cast<char>(rng());
  const bool hardware = crc32c_internal::HardwareAvailable();
  for (size_t offset = 0; offset < 8; ++offset) {
    for (size_t n : {0, 1, 7, 8, 9, 15, 16, 63, 64, 65, 1200, 1492}) {
      const absl::string_view s = absl::string_view(buffer).substr(offset, n);
      const uint32_t want = Reference(s);
      ASSERT_EQ(crc32c_internal::ExtendPortable(0, s), want) << "offset " << offset << " n " << n;
      if (hardware) {
        ASSERT_EQ(crc32c_internal::ExtendHardware(0, s), want) << "offset " << offset << " n " << n;
        const size_t half = n / 2;
        ASSERT_EQ(crc32c_internal::ExtendHardware(crc32c_internal::ExtendPortable(0, s.substr(0, half)),
                                                  s.substr(half)),
                  want);
      }
    }
  }
  if (!hardware) GTEST_SKIP() << "no SSE4.2 on this CPU: only the portable path was checked";
}

// The interleaved path at every size class it splits into (3 x 2048, 512,
// 128 and 32 bytes, then one stream), around each boundary, from a chained
// starting state, against the reference.
TEST(Crc32cTest, InterleavedMatchesTheReference) {
  if (!crc32c_internal::InterleavedAvailable()) {
    GTEST_SKIP() << "no SSE4.2 + PCLMULQDQ on this CPU";
  }
  std::mt19937_64 rng(10);
  std::string buffer(3 * 2048 * 2 + 3 * 512 + 3 * 128 + 3 * 32 + 64, '\0');
  for (char& c : buffer) c = static_cast<char>(rng());
  std::vector<size_t> sizes;
  for (size_t stride : {32, 128, 512, 2048}) {
    for (size_t chunks : {1, 2}) {
      for (long delta = -9; delta <= 9; ++delta) {
        sizes.push_back(static_cast<size_t>(static_cast<long>(3 * stride * chunks) + delta));
      }
    }
  }
  for (size_t n : {0, 1, 8, 95, 1200, 1472, 9000, 16384}) sizes.push_back(n);
  sizes.push_back(buffer.size() - 8);
  for (size_t offset : {0, 3}) {
    for (size_t n : sizes) {
      const absl::string_view s = absl::string_view(buffer).substr(offset, n);
      ASSERT_EQ(crc32c_internal::ExtendInterleaved(0, s), Reference(s)) << "offset " << offset << " n " << n;
      const size_t third = n / 3;
      ASSERT_EQ(crc32c_internal::ExtendInterleaved(crc32c_internal::ExtendPortable(0, s.substr(0, third)),
                                                   s.substr(third)),
                Reference(s))
          << "offset " << offset << " n " << n;
    }
  }
  EXPECT_EQ(Crc32c(std::string(32 * 3, '\0')), Reference(std::string(32 * 3, '\0')));
}

// The folding path at every length from below its threshold to past three
// 256-byte rounds (each count of 256-, 128-, 64- and 16-byte blocks and each
// tail),
// at large sizes, from a chained starting state and from every starting
// register bit, against the reference.
TEST(Crc32cTest, FoldingMatchesTheReference) {
  if (!crc32c_internal::FoldingAvailable()) {
    GTEST_SKIP() << "no AVX-512F + VPCLMULQDQ on this CPU";
  }
  std::mt19937_64 rng(11);
  std::string buffer(70000, '\0');
  for (char& c : buffer) c = static_cast<char>(rng());
  std::vector<size_t> sizes;
  for (size_t n = 0; n <= 256 + 3 * 256 + 128 + 64 + 3 * 16 + 15; ++n) sizes.push_back(n);
  for (size_t n : {1200, 1472, 4096, 9000, 16383, 16384, 65507}) sizes.push_back(n);
  for (size_t offset : {0, 5}) {
    for (size_t n : sizes) {
      const absl::string_view s = absl::string_view(buffer).substr(offset, n);
      const uint32_t want = Reference(s);
      ASSERT_EQ(crc32c_internal::ExtendFolding(0, s), want) << "offset " << offset << " n " << n;
      const size_t third = n / 3;
      ASSERT_EQ(crc32c_internal::ExtendFolding(crc32c_internal::ExtendPortable(0, s.substr(0, third)),
                                               s.substr(third)),
                want)
          << "offset " << offset << " n " << n;
    }
  }
  const absl::string_view block = absl::string_view(buffer).substr(0, 1000);
  for (int bit = 0; bit < 32; ++bit) {
    const uint32_t start = uint32_t{1} << bit;
    ASSERT_EQ(crc32c_internal::ExtendFolding(start, block),
              crc32c_internal::ExtendPortable(start, block))
        << "starting CRC " << start;
  }
  EXPECT_EQ(Crc32c(std::string(1472, '\0')), Reference(std::string(1472, '\0')));
}

// Long enough that both halves of most splits take the folding path where
// the CPU has it (256 bytes up).
TEST(Crc32cTest, ExtendEqualsWhole) {
  std::mt19937_64 rng(8);
  std::string buffer(700, '\0');
  for (char& c : buffer) c = static_cast<char>(rng());
  const absl::string_view all(buffer);
  for (size_t split = 0; split <= all.size(); ++split) {
    ASSERT_EQ(Crc32cExtend(Crc32c(all.substr(0, split)), all.substr(split)),
              Crc32c(all));
  }
}

}  // namespace
}  // namespace udpmsg::proto
