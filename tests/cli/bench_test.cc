// `udpmsg bench rate` and `udpmsg bench latency`: the CSV tables they print
// and their usage errors. No speed or latency is asserted (the machine may be
// busy): only the shape of the tables and that the counts are consistent.
#include <signal.h>

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/cli/subprocess.h"

namespace udpmsg::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr absl::Duration kTimeout = absl::Seconds(240);

using Result = RunResult;

Result RunCli(std::vector<std::string> args) { return RunUdpmsg(std::move(args), "", kTimeout); }

// The CSV lines split into cells; the first is the header.
std::vector<std::vector<std::string>> Csv(const std::string& out) {
  std::vector<std::vector<std::string>> table;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    table.push_back(absl::StrSplit(line, ','));
  }
  return table;
}

int64_t Int(const std::string& cell) {
  int64_t v = -1;
  EXPECT_TRUE(absl::SimpleAtoi(cell, &v)) << "not an integer: \"" << cell << "\"";
  return v;
}

double Positive(const std::string& cell) {
  double v = -1;
  EXPECT_TRUE(absl::SimpleAtod(cell, &v)) << "not a number: \"" << cell << "\"";
  EXPECT_GT(v, 0) << cell;
  return v;
}

TEST(BenchRateTest, PrintsOneRowPerTransport) {
  const Result r = RunCli({"bench", "rate", "--bench_messages", "20000", "--format", "csv"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<std::vector<std::string>> table = Csv(r.out);
  ASSERT_EQ(table.size(), 5u) << r.out;
  EXPECT_THAT(table[0], ElementsAre("transport", "messages", "msgs/s", "ns CPU/msg", "lost",
                                    "ratio vs sendto"));
  std::vector<std::string> transports;
  for (size_t i = 1; i < table.size(); ++i) {
    const std::vector<std::string>& row = table[i];
    ASSERT_EQ(row.size(), 6u) << absl::StrJoin(row, ",");
    transports.push_back(row[0]);
    const int64_t messages = Int(row[1]);
    EXPECT_EQ(messages, 20000) << row[0];
    Positive(row[2]);  // msgs/s
    Positive(row[3]);  // ns CPU/msg
    const int64_t lost = Int(row[4]);
    EXPECT_GE(lost, 0) << row[0];
    EXPECT_LT(lost, messages) << row[0];  // received > 0: the rates are positive
    Positive(row[5]);
    if (row[0] == "udpmsg reliable") {
      EXPECT_EQ(lost, 0) << "reliable delivers every message";
    }
    if (row[0] == "raw sendto/recvfrom") {
      EXPECT_EQ(row[5], "1.00");
    }
  }
  EXPECT_THAT(transports, ElementsAre("raw sendto/recvfrom", "raw sendmmsg/recvmmsg",
                                      "udpmsg unreliable", "udpmsg reliable"));
}

TEST(BenchRateTest, TextOutputNamesTheTarget) {
  const Result r = RunCli({"bench", "rate", "--bench_messages", "2000"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("udpmsg unreliable >= 80% of raw sendto/recvfrom"));
}

TEST(BenchLatencyTest, PrintsOneRowPerTransportAndLoss) {
  const Result r = RunCli({"bench", "latency", "--bench_rate", "500", "--bench_duration", "1s",
                        "--bench_loss", "0,5%", "--format", "csv"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<std::vector<std::string>> table = Csv(r.out);
  ASSERT_EQ(table.size(), 8u) << r.out;
  EXPECT_THAT(table[0], ElementsAre("transport", "loss", "sent", "answered", "p50 us", "p99 us",
                                    "p99.9 us", "max us"));
  std::vector<std::string> keys;
  for (size_t i = 1; i < table.size(); ++i) {
    const std::vector<std::string>& row = table[i];
    ASSERT_EQ(row.size(), 8u) << absl::StrJoin(row, ",");
    keys.push_back(row[0] + " " + row[1]);
    const int64_t sent = Int(row[2]);
    const int64_t answered = Int(row[3]);
    EXPECT_EQ(sent, 500) << keys.back();
    EXPECT_GT(answered, 0) << keys.back();
    EXPECT_LE(answered, sent) << keys.back();
    if (row[0] == "udpmsg reliable-ordered" || row[0] == "TCP_NODELAY") {
      EXPECT_EQ(answered, sent) << keys.back() << ": a reliable transport answers every ping";
    }
    const double p50 = Positive(row[4]);
    const double p99 = Positive(row[5]);
    const double p999 = Positive(row[6]);
    const double max = Positive(row[7]);
    EXPECT_LE(p50, p99) << keys.back();
    EXPECT_LE(p99, p999) << keys.back();
    EXPECT_LE(p999, max) << keys.back();
  }
  EXPECT_THAT(keys, ElementsAre("raw UDP 0%", "udpmsg unreliable 0%",
                                "udpmsg reliable-ordered 0%", "TCP_NODELAY 0%", "raw UDP 5%",
                                "udpmsg unreliable 5%", "udpmsg reliable-ordered 5%"));
}

// --bench_role server / client: the echo servers in one process, the pinging
// client in another, TCP measured at the label --bench_loss gives (the
// network, here loopback, applies the loss).
TEST(BenchLatencyTest, SplitModeOverLoopback) {
  std::unique_ptr<Subprocess> server;
  int port = 0;
  for (int attempt = 0; attempt < 5 && server == nullptr; ++attempt) {
    port = FreePortPair();
    ASSERT_NE(port, 0);
    absl::StatusOr<std::unique_ptr<Subprocess>> p =
        Subprocess::Start({UdpmsgPath(), "bench", "latency", "--bench_role", "server", "--port",
                           absl::StrCat(port), "--duration", "3m"});
    ASSERT_TRUE(p.ok()) << p.status();
    // "listening on ...", then "raw UDP echo on ..., udpmsg echo on ...:P+1".
    bool ready = false;
    for (int i = 0; i < 2; ++i) {
      absl::StatusOr<std::string> line = (*p)->ReadStderrLine(absl::Seconds(10));
      if (!line.ok()) break;
      if (absl::StrContains(*line, absl::StrCat("udpmsg echo on ")) &&
          absl::EndsWith(*line, absl::StrCat(":", port + 1))) {
        ready = true;
      }
    }
    if (ready) server = *std::move(p);  // else a port was taken meanwhile: try another
  }
  ASSERT_NE(server, nullptr);

  // Twice: the server serves one client after another.
  for (int run = 0; run < 2; ++run) {
    const Result r = RunCli({"bench", "latency", "--bench_role", "client", "--bench_peer",
                             absl::StrCat("127.0.0.1:", port), "--bench_rate", "500",
                             "--bench_duration", "0.4s", "--bench_loss", "1%", "--format",
                             "csv"});
    ASSERT_EQ(r.code, 0) << r.err;
    const std::vector<std::vector<std::string>> table = Csv(r.out);
    ASSERT_EQ(table.size(), 5u) << r.out;
    std::vector<std::string> keys;
    for (size_t i = 1; i < table.size(); ++i) {
      ASSERT_EQ(table[i].size(), 8u) << absl::StrJoin(table[i], ",");
      keys.push_back(table[i][0] + " " + table[i][1]);
      EXPECT_EQ(Int(table[i][2]), 200) << keys.back();
      if (table[i][0] == "udpmsg reliable-ordered" || table[i][0] == "TCP_NODELAY") {
        EXPECT_EQ(Int(table[i][3]), 200) << keys.back();
      }
      EXPECT_LE(Positive(table[i][4]), Positive(table[i][5])) << keys.back();
    }
    EXPECT_THAT(keys, ElementsAre("raw UDP 1%", "udpmsg unreliable 1%",
                                  "udpmsg reliable-ordered 1%", "TCP_NODELAY 1%"));
  }
  server->Kill(SIGTERM);
  EXPECT_TRUE(server->Wait(absl::Seconds(10)).ok());
}

TEST(BenchUsageTest, BadUsageExitsTwo) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"bench", "nope"},
           {"bench"},
           {"bench", "rate", "extra"},
           {"bench", "rate", "--bench_messages", "0"},
           {"bench", "rate", "--cc", "cubic"},
           {"bench", "latency", "--bench_loss", "0,150%"},
           {"bench", "latency", "--bench_rate", "0"},
           {"bench", "latency", "--bench_duration", "soon"},
           {"bench", "latency", "--bench_role", "relay"},
           {"bench", "latency", "--bench_role", "server"},
           {"bench", "latency", "--bench_role", "client"},
           {"bench", "latency", "--bench_role", "client", "--bench_peer", "127.0.0.1:9",
            "--bench_loss", "0,1%"},
           {"bench", "latency", "--bench_peer", "127.0.0.1:9"},
       }) {
    const Result r = RunCli(args);
    EXPECT_EQ(r.code, 2) << absl::StrJoin(args, " ") << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr("udpmsg")) << absl::StrJoin(args, " ");
  }
}

}  // namespace
}  // namespace udpmsg::testing
