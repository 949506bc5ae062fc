// cluster_bench: one chat room over 1, 2, 3 servers through Redis, on this
// machine (bench/cluster.h says what it measures and how). It starts its own
// redis-server (redis::ServerProcess: a free port of 127.0.0.1, a temporary
// directory, AOF with fsync every second unless --redis_persistence says
// otherwise), or uses --redis HOST:PORT (its pid in --redis_pid for its CPU).
//
//   ./bazelw run -c opt //bench:cluster_bench                     # ~45 s
//   ./bazelw run -c opt //bench:cluster_bench -- --format markdown --seconds 10
//
// bench/run.sh --only cluster puts its tables in the report;
// //tests/bench:cluster_bench_smoke_test runs it briefly.
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "bench/cluster.h"
#include "bench/report.h"
#include "redis/client.h"
#include "redis/server_process.h"

ABSL_FLAG(std::string, redis, "",
          "HOST:PORT of the Redis to use; empty: start a redis-server of our own");
ABSL_FLAG(int, redis_pid, 0, "with --redis: its process id on this machine (CPU from /proc)");
ABSL_FLAG(std::string, redis_persistence, "everysec",
          "our own redis-server's persistence: everysec (AOF, fsync each second), always (AOF, "
          "fsync before each answer) or none");
ABSL_FLAG(std::string, servers, "1,2,3", "server counts, one throughput run each");
ABSL_FLAG(int, shards, 1, "saying shards (threads) per server");
ABSL_FLAG(int, members, 4, "members per shard (they say in turn)");
ABSL_FLAG(int, line_bytes, 64, "text bytes per line");
ABSL_FLAG(double, seconds, 5, "duration of each throughput run");
ABSL_FLAG(double, latency_rate, 1000, "lines per second of the latency runs (0: none)");
ABSL_FLAG(double, latency_seconds, 5, "duration of each latency run");
ABSL_FLAG(std::string, format, "text", "text, csv or markdown");

namespace udpmsg::bench {
namespace {

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "cluster_bench: %s\n", std::string(s.message()).c_str());
  return 1;
}

std::string RedisVersion(const redis::Endpoint& e) {
  absl::StatusOr<std::unique_ptr<redis::Connection>> c =
      redis::Connection::Connect(e, absl::Seconds(5));
  if (!c.ok()) return "?";
  absl::StatusOr<redis::Reply> info = (*c)->Command({"INFO", "server"});
  if (!info.ok()) return "?";
  for (absl::string_view line : absl::StrSplit(info->str, "\r\n")) {
    if (absl::ConsumePrefix(&line, "redis_version:")) return std::string(line);
  }
  return "?";
}

int Main() {
  ClusterConfig c;
  absl::StatusOr<TableFormat> format = ParseTableFormat(absl::GetFlag(FLAGS_format));
  if (!format.ok()) return Fail(format.status());
  c.format = *format;
  c.servers.clear();
  for (absl::string_view n : absl::StrSplit(absl::GetFlag(FLAGS_servers), ',')) {
    int v = 0;
    if (!absl::SimpleAtoi(n, &v)) {
      return Fail(absl::InvalidArgumentError(absl::StrCat(
          "--servers \"", absl::GetFlag(FLAGS_servers), "\": want counts like 1,2,3")));
    }
    c.servers.push_back(v);
  }
  c.shards = absl::GetFlag(FLAGS_shards);
  c.members = absl::GetFlag(FLAGS_members);
  c.line_bytes = static_cast<size_t>(std::max(0, absl::GetFlag(FLAGS_line_bytes)));
  c.duration = absl::Seconds(absl::GetFlag(FLAGS_seconds));
  c.latency_rate = absl::GetFlag(FLAGS_latency_rate);
  c.latency_duration = absl::Seconds(absl::GetFlag(FLAGS_latency_seconds));
  if (absl::Status s = ValidateClusterConfig(c); !s.ok()) return Fail(s);

  std::unique_ptr<redis::ServerProcess> own;
  const std::string persistence = absl::GetFlag(FLAGS_redis_persistence);
  if (absl::GetFlag(FLAGS_redis).empty()) {
    redis::ServerProcess::Options o;
    if (persistence == "everysec") {
      o.persistence = redis::ServerProcess::Persistence::kAofEverySec;
    } else if (persistence == "always") {
      o.persistence = redis::ServerProcess::Persistence::kAofAlways;
    } else if (persistence == "none") {
      o.persistence = redis::ServerProcess::Persistence::kNone;
    } else {
      return Fail(absl::InvalidArgumentError(absl::StrCat("--redis_persistence \"", persistence,
                                                          "\" must be everysec, always or none")));
    }
    absl::StatusOr<std::unique_ptr<redis::ServerProcess>> s = redis::ServerProcess::Start(o);
    if (!s.ok()) return Fail(s.status());
    own = *std::move(s);
    c.redis = own->endpoint();
    c.redis_pid = own->pid();
    c.redis_description = absl::StrCat(
        "redis-server ", RedisVersion(c.redis), " started by the benchmark on ", c.redis.ToString(),
        ", ",
        persistence == "none" ? "no persistence" : absl::StrCat("AOF, appendfsync ", persistence),
        ", same machine");
  } else {
    absl::StatusOr<redis::Url> url =
        redis::ParseUrl(absl::StrCat("redis://", absl::GetFlag(FLAGS_redis)));
    if (!url.ok()) return Fail(url.status());
    c.redis = url->endpoint;
    c.redis_pid = absl::GetFlag(FLAGS_redis_pid);
    c.redis_description = absl::StrCat(
        "redis-server ", RedisVersion(c.redis), " at ", c.redis.ToString(),
        c.redis_pid > 0 ? absl::StrCat(" (pid ", c.redis_pid, ")") : " (CPU not measured)");
  }
  if (absl::Status s = RunCluster(c); !s.ok()) return Fail(s);
  return 0;
}

}  // namespace
}  // namespace udpmsg::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "one chat room over 1, 2, 3 servers through Redis: lines/s and the Redis hop's latency");
  absl::ParseCommandLine(argc, argv);
  return udpmsg::bench::Main();
}
