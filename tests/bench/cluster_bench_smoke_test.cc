// bench cluster, briefly, against a real redis-server: every server reads
// every accepted line, all in one order (the same line numbers and bytes on
// every shard of every server), the latency runs measure every line on every
// hop, and the cluster_bench binary prints both tables with their rows. The
// figures themselves are not checked (this machine's load decides them).
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "bench/cluster.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/cli/subprocess.h"
#include "tests/redis/redis_server.h"

namespace udpmsg::bench {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using ::udpmsg::testing::RedisServer;
using ::udpmsg::testing::Subprocess;

ClusterConfig SmallConfig(const RedisServer& redis) {
  ClusterConfig c;
  c.redis = redis.endpoint();
  c.redis_pid = redis.pid();
  c.duration = absl::Milliseconds(300);
  c.latency_rate = 200;
  c.latency_duration = absl::Milliseconds(300);
  return c;
}

TEST(ClusterBenchSmokeTest, EveryServerReadsEveryLineInOneOrder) {
  absl::StatusOr<std::unique_ptr<RedisServer>> redis = RedisServer::Start({});
  ASSERT_TRUE(redis.ok()) << redis.status();
  ClusterConfig c = SmallConfig(**redis);
  c.shards = 2;
  absl::StatusOr<ThroughputResult> r = RunThroughput(c, 3);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(r->accepted, 0u);
  EXPECT_EQ(r->busy + r->failed, 0u);
  EXPECT_TRUE(r->drained);
  EXPECT_EQ(r->lost, 0u);
  EXPECT_TRUE(r->one_order);
  // The same check, from the sequences themselves.
  ASSERT_EQ(r->sequences.size(), 3u);
  const std::vector<uint64_t>& first = r->sequences[0][0];
  EXPECT_EQ(first.size(), r->accepted);
  for (size_t i = 1; i < first.size(); ++i) ASSERT_LT(first[i - 1], first[i]) << i;
  for (size_t s = 0; s < r->sequences.size(); ++s) {
    ASSERT_EQ(r->sequences[s].size(), 2u) << "server " << s;
    for (size_t k = 0; k < 2; ++k) {
      EXPECT_EQ(r->sequences[s][k], first) << "server " << s << " shard " << k;
      EXPECT_EQ(r->hashes[s][k], r->hashes[0][0]) << "server " << s << " shard " << k;
    }
  }
  ASSERT_EQ(r->delivered_in_window.size(), 3u);
  for (uint64_t d : r->delivered_in_window) EXPECT_LE(d, r->accepted);
  EXPECT_GE(r->redis_cpu, 0);
  EXPECT_GT(r->process_cpu, 0);
  EXPECT_THAT(r->redis_commands,
              Contains(::testing::Field(&ThroughputResult::CommandTime::command, "evalsha")));
  const BenchTable t = ThroughputTable(c, {*r});
  ASSERT_EQ(t.rows.size(), 1u);
  EXPECT_EQ(t.rows[0][0], "3");
}

TEST(ClusterBenchSmokeTest, LatencyRunsMeasureEveryLineOnEveryHop) {
  absl::StatusOr<std::unique_ptr<RedisServer>> redis = RedisServer::Start({});
  ASSERT_TRUE(redis.ok()) << redis.status();
  const ClusterConfig c = SmallConfig(**redis);
  absl::StatusOr<std::vector<LatencyResult>> local = RunLatency(c, 0);
  ASSERT_TRUE(local.ok()) << local.status();
  ASSERT_EQ(local->size(), 1u);
  EXPECT_EQ((*local)[0].hop, "other shard");
  absl::StatusOr<std::vector<LatencyResult>> remote = RunLatency(c, 3);
  ASSERT_TRUE(remote.ok()) << remote.status();
  ASSERT_EQ(remote->size(), 2u);
  EXPECT_EQ((*remote)[0].hop, "own server");
  EXPECT_EQ((*remote)[1].hop, "other server");
  for (const std::vector<LatencyResult>* runs : {&*local, &*remote}) {
    for (const LatencyResult& h : *runs) {
      SCOPED_TRACE(h.hop);
      EXPECT_EQ(h.lines, 60u);  // 200/s for 0.3 s
      EXPECT_EQ(h.lost, 0u);
      EXPECT_GT(h.p50_us, 0);
      EXPECT_LE(h.p50_us, h.p99_us);
      EXPECT_LE(h.p99_us, h.max_us);
    }
  }
  EXPECT_EQ((*local)[0].samples, 60u);
  EXPECT_EQ((*remote)[0].samples, 60u);
  EXPECT_EQ((*remote)[1].samples, 120u);  // two other servers
}

// Rows of the CSV table whose header starts with `first_column`.
std::vector<std::vector<std::string>> CsvRows(const std::string& out,
                                              const std::string& first_column) {
  std::vector<std::vector<std::string>> rows;
  bool in = false;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    std::vector<std::string> cells = absl::StrSplit(line, ',');
    if (!cells.empty() && (cells[0] == "servers" || cells[0] == "room")) {
      in = cells[0] == first_column;
      continue;
    }
    if (in) rows.push_back(cells);
  }
  return rows;
}

TEST(ClusterBenchSmokeTest, BinaryPrintsBothTables) {
  absl::StatusOr<std::unique_ptr<Subprocess>> p =
      Subprocess::Start({"bench/cluster_bench", "--seconds=0.3", "--latency_seconds=0.3",
                         "--latency_rate=200", "--servers=1,2", "--format=csv"});
  ASSERT_TRUE(p.ok()) << p.status();
  absl::StatusOr<int> code = (*p)->Wait(absl::Seconds(120));
  ASSERT_TRUE(code.ok()) << code.status();
  ASSERT_EQ(*code, 0) << (*p)->stderr_text();
  const std::string& out = (*p)->stdout_text();
  EXPECT_THAT(out, StartsWith("servers,seconds,accepted,accepted/s,"));
  std::vector<std::vector<std::string>> throughput = CsvRows(out, "servers");
  ASSERT_EQ(throughput.size(), 2u) << out;
  for (size_t i = 0; i < throughput.size(); ++i) {
    ASSERT_GE(throughput[i].size(), 9u) << out;
    EXPECT_EQ(throughput[i][0], std::to_string(i + 1));
    EXPECT_NE(throughput[i][2], "0") << "accepted";
    EXPECT_EQ(throughput[i][7], "0") << "lost";
    EXPECT_EQ(throughput[i][8], "one") << "order";
  }
  std::vector<std::vector<std::string>> latency = CsvRows(out, "room");
  ASSERT_EQ(latency.size(), 4u) << out;  // LocalRoom; 1 server: own; 2: own, other
  EXPECT_EQ(latency[0][0], "LocalRoom");
  EXPECT_EQ(latency[3][2], "other server");
  for (const auto& row : latency) EXPECT_EQ(row[4], "0") << "lost";
  EXPECT_THAT((*p)->stderr_text(), HasSubstr("bench cluster: latency, LocalRoom"));
}

}  // namespace
}  // namespace udpmsg::bench
