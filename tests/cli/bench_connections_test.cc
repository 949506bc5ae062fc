// `udpmsg bench connections`: a small run (48 chat members against the
// `udpmsg chat serve` it spawns, short phases) prints every figure, every
// member joins, none is lost and all saw the lines in one order; and its
// usage errors. No speed, memory or CPU figure is asserted (the machine may
// be busy): only that each is there and consistent.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/cli/subprocess.h"

namespace udpmsg::testing {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kTimeout = absl::Seconds(120);

using Result = RunResult;

Result RunCli(std::vector<std::string> args) { return RunUdpmsg(std::move(args), "", kTimeout); }

// The flat JSON object bench connections prints: {"key": value, ...} with
// numbers bare and strings quoted (no nesting, no commas inside strings of
// interest).
std::map<std::string, std::string> ParseFlatJson(absl::string_view text) {
  std::map<std::string, std::string> out;
  text = absl::StripAsciiWhitespace(text);
  if (!absl::ConsumePrefix(&text, "{") || !absl::ConsumeSuffix(&text, "}")) return out;
  for (absl::string_view pair : absl::StrSplit(text, ", \"")) {
    absl::ConsumePrefix(&pair, "\"");
    const size_t colon = pair.find("\": ");
    if (colon == absl::string_view::npos) continue;
    out[std::string(pair.substr(0, colon))] = std::string(pair.substr(colon + 3));
  }
  return out;
}

double Number(const std::map<std::string, std::string>& json, const std::string& key) {
  auto it = json.find(key);
  EXPECT_NE(it, json.end()) << "no " << key;
  double v = -1;
  if (it != json.end()) EXPECT_TRUE(absl::SimpleAtod(it->second, &v)) << key << ": " << it->second;
  return v;
}

TEST(BenchConnectionsTest, SmallRunReportsEveryFigureWithNoLossAndOneOrder) {
  const Result r = RunCli({"bench", "connections", "--bench_connections", "48",
                           "--bench_per_socket", "8", "--bench_threads", "2", "--bench_idle", "1s",
                           "--bench_load", "2s", "--bench_line_rate", "20", "--format", "json"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const std::map<std::string, std::string> json = ParseFlatJson(r.out);
  ASSERT_FALSE(json.empty()) << r.out;
  for (const char* key : {"connections",
                          "joined",
                          "failed",
                          "connect_p50_ms",
                          "connect_p99_ms",
                          "join_p50_ms",
                          "join_p99_ms",
                          "connect_seconds",
                          "settle_seconds",
                          "server_rss_before_mib",
                          "server_rss_idle_mib",
                          "server_rss_per_connection_bytes",
                          "server_cpu_idle_pct",
                          "lost_idle",
                          "lines_sent",
                          "deliveries_per_s",
                          "server_cpu_load_pct",
                          "drain_seconds",
                          "lost_load",
                          "lost_total",
                          "members_end",
                          "lines_per_member",
                          "order_mismatches",
                          "client_cpu_idle_pct",
                          "client_cpu_load_pct",
                          "client_rss_mib"}) {
    EXPECT_TRUE(json.count(key)) << "no " << key << " in " << r.out;
  }
  EXPECT_EQ(Number(json, "connections"), 48);
  EXPECT_EQ(Number(json, "joined"), 48);
  EXPECT_EQ(Number(json, "failed"), 0);
  EXPECT_EQ(Number(json, "lost_total"), 0);
  EXPECT_EQ(Number(json, "members_end"), 48);
  EXPECT_EQ(Number(json, "order_mismatches"), 0);
  EXPECT_EQ(Number(json, "lines_sent"), 40);  // 20/s for 2 s
  EXPECT_EQ(Number(json, "lines_per_member"), 40);
  EXPECT_GT(Number(json, "deliveries_per_s"), 0);
  EXPECT_LE(Number(json, "connect_p50_ms"), Number(json, "connect_p99_ms"));
  EXPECT_LE(Number(json, "join_p50_ms"), Number(json, "join_p99_ms"));
  EXPECT_LE(Number(json, "connect_p50_ms"), Number(json, "join_p50_ms"));
  EXPECT_GT(Number(json, "server_rss_idle_mib"), 0);
  // Progress on stderr names the spawned server.
  EXPECT_THAT(r.err, HasSubstr("chat serve"));
}

TEST(BenchConnectionsTest, TextTableNamesTheFigures) {
  const Result r = RunCli({"bench", "connections", "--bench_connections", "3", "--bench_idle", "0s",
                           "--bench_load", "1s", "--bench_line_rate", "3"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  for (const char* label :
       {"bench connections: 3 chat members", "connect p50 ms", "server RSS per connection B",
        "server CPU idle", "deliveries/s", "server CPU load", "lost connections",
        "order mismatches", "client CPU load"}) {
    EXPECT_THAT(r.out, HasSubstr(label));
  }
}

TEST(BenchConnectionsTest, UsageErrors) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--bench_server", "127.0.0.1:9"},  // no pid
           {"--bench_server_pid", "1"},        // no server
           {"--bench_connections", "0"},
           {"--bench_per_socket", "0"},
           {"--bench_line_rate", "0"},
           {"--bench_idle", "soon"},
           {"--format", "yaml"},
           {"extra"},
       }) {
    std::vector<std::string> argv = {"bench", "connections"};
    argv.insert(argv.end(), args.begin(), args.end());
    const Result r = RunCli(argv);
    EXPECT_EQ(r.code, 2) << args[0] << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr("udpmsg bench:")) << args[0];
  }
}

}  // namespace
}  // namespace udpmsg::testing
