#include "reliable/cookie.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace udpmsg::reliable {
namespace {

using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1'800'000'000);
const CookieJar::Secret kSecret = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};

TEST(CookieTest, FreshCookieVerifiesForTheSamePeerAndId) {
  CookieJar jar(kT0, kSecret);
  std::string cookie = jar.Mint(kT0, "10.0.0.1:5000", 77);
  EXPECT_EQ(cookie.size(), CookieJar::kCookieBytes);
  EXPECT_TRUE(jar.Verify(kT0 + absl::Seconds(2), "10.0.0.1:5000", 77, cookie).ok());
}

TEST(CookieTest, AnotherAddressOrIdIsRejected) {
  CookieJar jar(kT0, kSecret);
  std::string cookie = jar.Mint(kT0, "10.0.0.1:5000", 77);
  EXPECT_THAT(jar.Verify(kT0, "10.0.0.1:5001", 77, cookie).message(), HasSubstr("forged"));
  EXPECT_THAT(jar.Verify(kT0, "10.0.0.1:5000", 78, cookie).message(), HasSubstr("forged"));
}

TEST(CookieTest, EveryFlippedBitIsDetected) {
  CookieJar jar(kT0, kSecret);
  const std::string cookie = jar.Mint(kT0, "peer", 1);
  for (size_t bit = 0; bit < cookie.size() * 8; ++bit) {
    std::string bad = cookie;
    bad[bit / 8] ^= static_cast<char>(1 << (bit % 8));
    EXPECT_FALSE(jar.Verify(kT0, "peer", 1, bad).ok()) << "bit " << bit;
  }
}

TEST(CookieTest, ExpiresAfterItsLifetime) {
  CookieJar jar(kT0, kSecret, /*lifetime=*/absl::Seconds(10));
  std::string cookie = jar.Mint(kT0, "peer", 1);
  EXPECT_TRUE(jar.Verify(kT0 + absl::Seconds(10), "peer", 1, cookie).ok());
  EXPECT_THAT(jar.Verify(kT0 + absl::Seconds(11), "peer", 1, cookie).message(),
              HasSubstr("expired"));
}

TEST(CookieTest, SurvivesOneRotationButNotTwo) {
  CookieJar jar(kT0, kSecret, /*lifetime=*/absl::Hours(1), /*rotation=*/absl::Minutes(2));
  std::string cookie = jar.Mint(kT0, "peer", 1);
  EXPECT_TRUE(jar.Verify(kT0 + absl::Minutes(3), "peer", 1, cookie).ok());   // previous secret
  EXPECT_FALSE(jar.Verify(kT0 + absl::Minutes(5), "peer", 1, cookie).ok());  // two rotations on
}

TEST(CookieTest, OtherServersSecretDoesNotVerify) {
  CookieJar ours(kT0);
  CookieJar theirs(kT0);
  EXPECT_FALSE(ours.Verify(kT0, "peer", 1, theirs.Mint(kT0, "peer", 1)).ok());
}

TEST(CookieTest, WrongLengthIsRejected) {
  CookieJar jar(kT0, kSecret);
  EXPECT_THAT(jar.Verify(kT0, "peer", 1, "short").message(), HasSubstr("expected 24"));
}

}  // namespace
}  // namespace udpmsg::reliable
