// shards_bench, briefly, in each of its modes: it runs, connects every
// client, steers every message to its shard, and prints its figures. The
// figures themselves are not checked (this machine's load decides them).
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/cli/subprocess.h"

namespace udpmsg::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string RunBench(std::vector<std::string> args) {
  args.insert(args.begin(), "tests/udpmsg/shards_bench");
  absl::StatusOr<std::unique_ptr<Subprocess>> p = Subprocess::Start(args);
  EXPECT_TRUE(p.ok()) << p.status();
  if (!p.ok()) return "";
  absl::StatusOr<int> code = (*p)->Wait(absl::Seconds(60));
  EXPECT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(code.ok() ? *code : -1, 0) << (*p)->stderr_text();
  return (*p)->stdout_text();
}

TEST(ShardsBenchSmokeTest, MessagesIntoTwoShards) {
  const std::string out =
      RunBench({"--shards=2", "--clients=8", "--seconds=0.2", "--warmup=0.1", "--window=2048"});
  EXPECT_THAT(out, HasSubstr("2 shards (steered by connection id)"));
  EXPECT_THAT(out, HasSubstr("8 of 8 clients connected"));
  EXPECT_THAT(out, HasSubstr("messages/s "));
  EXPECT_THAT(out, HasSubstr("shard 1: "));
  EXPECT_THAT(out, Not(HasSubstr("unknown_connection 1")));
}

TEST(ShardsBenchSmokeTest, SteeringCostAndHandoff) {
  EXPECT_THAT(RunBench({"--steering_cost=2000"}), HasSubstr("round 2: "));
  EXPECT_THAT(RunBench({"--handoff=20000"}), HasSubstr("hand-off: 20000 datagrams"));
}

}  // namespace
}  // namespace udpmsg::testing
