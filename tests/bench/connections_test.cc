// bench/connections.h's pure parts: the /proc parsers, percentiles and the
// client sockets' loopback addresses.
#include "bench/connections.h"

#include <unistd.h>

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace udpmsg::bench {
namespace {

TEST(ParseVmRssKibTest, ReadsTheVmRssLine) {
  EXPECT_EQ(
      *ParseVmRssKib("Name:\tudpmsg\nVmPeak:\t  9000 kB\nVmRSS:\t    9612 kB\nRssAnon: 1 kB\n"),
      9612);
  EXPECT_FALSE(ParseVmRssKib("Name:\tzombie\nState:\tZ\n").ok());
}

TEST(ParseStatCpuSecondsTest, SumsUtimeAndStimeAfterTheCommandName) {
  // The command name may hold spaces and parentheses: fields count from the
  // last ')'.
  const char stat[] =
      "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 12345 "
      "1000000 2400 18446744073709551615";
  EXPECT_DOUBLE_EQ(*ParseStatCpuSeconds(stat, 100), 3.0);
  EXPECT_FALSE(ParseStatCpuSeconds("1234 no parens", 100).ok());
  EXPECT_FALSE(ParseStatCpuSeconds("1234 (x) S 1", 100).ok());
}

TEST(ReadProcSampleTest, ReadsThisProcess) {
  absl::StatusOr<ProcSample> s = ReadProcSample(::getpid());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_GT(s->rss_kib, 0);
  EXPECT_GE(s->cpu_seconds, 0);
}

TEST(PercentileTest, NearestRank) {
  std::vector<double> v = {5, 1, 4, 2, 3};
  EXPECT_EQ(Percentile(v, 50), 3);
  EXPECT_EQ(Percentile(v, 99), 5);
  EXPECT_EQ(Percentile(v, 0), 1);
  std::vector<double> none;
  EXPECT_EQ(Percentile(none, 50), 0);
}

TEST(ClientAddressTest, CountsUpFrom127_1_0_1SkippingZeroAndTheTop) {
  EXPECT_EQ(ClientAddress(0)->ToString(), "127.1.0.1:0");
  EXPECT_EQ(ClientAddress(252)->ToString(), "127.1.0.253:0");
  EXPECT_EQ(ClientAddress(253)->ToString(), "127.1.1.1:0");
  EXPECT_EQ(ClientAddress(253 * 256)->ToString(), "127.2.0.1:0");
  EXPECT_EQ(ClientAddress(253 * 255 * 256 - 1)->ToString(), "127.255.255.253:0");
  EXPECT_FALSE(ClientAddress(253 * 255 * 256).ok());
  EXPECT_FALSE(ClientAddress(-1).ok());
}

}  // namespace
}  // namespace udpmsg::bench
