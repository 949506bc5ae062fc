// `udpmsg bench bulk` and `udpmsg bench fairness`: the tables they print
// (CSV, text), in the default one-process mode and in the split
// server/client mode over loopback, and their usage errors. No speed is
// asserted: only that every transfer delivered and verified every byte at a
// positive rate with positive CPU figures, and that Jain's index is in (0, 1].
#include <signal.h>

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

constexpr char kHeader[] =
    "transport,loss,bytes,seconds,MB/s,Mbit/s,vs_tcp,retransmits,verified,send_cpu_s/GB,"
    "recv_cpu_s/GB";
constexpr size_t kColumns = 11;

std::unique_ptr<Subprocess> Udpmsg(std::vector<std::string> args) {
  args.insert(args.begin(), UdpmsgPath());
  absl::StatusOr<std::unique_ptr<Subprocess>> p = Subprocess::Start(args);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *std::move(p) : nullptr;
}

int Finish(Subprocess& p, absl::Duration timeout) {
  absl::StatusOr<int> code = p.Wait(timeout);
  EXPECT_TRUE(code.ok()) << code.status();
  return code.ok() ? *code : -1;
}

struct Row {
  std::string transport;
  std::string loss;
  std::vector<std::string> cells;
};

// The CSV table: checks the header and returns the rows.
std::vector<Row> ParseCsv(const std::string& out) {
  std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
  EXPECT_FALSE(lines.empty());
  if (lines.empty()) return {};
  EXPECT_EQ(lines[0], kHeader);
  std::vector<Row> rows;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::vector<std::string> cells = absl::StrSplit(lines[i], ',');
    EXPECT_EQ(cells.size(), kColumns) << lines[i];
    if (cells.size() != kColumns) continue;
    rows.push_back(Row{cells[0], cells[1], cells});
  }
  return rows;
}

// Every byte delivered and verified, at a positive rate.
void ExpectDelivered(const Row& row, uint64_t size) {
  SCOPED_TRACE(absl::StrJoin(row.cells, ","));
  uint64_t bytes = 0;
  ASSERT_TRUE(absl::SimpleAtoi(row.cells[2], &bytes));
  EXPECT_EQ(bytes, size);
  EXPECT_EQ(row.cells[8], "yes");
  double seconds = 0, mbytes = 0, mbits = 0;
  ASSERT_TRUE(absl::SimpleAtod(row.cells[3], &seconds));
  ASSERT_TRUE(absl::SimpleAtod(row.cells[4], &mbytes));
  ASSERT_TRUE(absl::SimpleAtod(row.cells[5], &mbits));
  EXPECT_GT(seconds, 0);
  EXPECT_GT(mbytes, 0);
  EXPECT_GT(mbits, 0);
  // Both rates follow from bytes / seconds (MB = 10^6 bytes), to the 1% the
  // columns' rounding of seconds allows plus half of their last digit (two
  // decimals): comparing the two rounded columns with each other failed at
  // slow rates, where 0.005 of MB/s is 0.04 Mbit/s.
  const double rate = static_cast<double>(bytes) / seconds / 1e6;
  EXPECT_NEAR(mbytes, rate, rate * 0.01 + 0.005);
  EXPECT_NEAR(mbits, rate * 8, rate * 8 * 0.01 + 0.005);
  if (row.cells[7] != "-") {
    int64_t retransmits = -1;
    EXPECT_TRUE(absl::SimpleAtoi(row.cells[7], &retransmits));
    EXPECT_GE(retransmits, 0);
  }
  // CPU seconds per GB of each side: present and positive (both ends of
  // these runs report them).
  double send_cpu = 0, recv_cpu = 0;
  ASSERT_TRUE(absl::SimpleAtod(row.cells[9], &send_cpu)) << row.cells[9];
  ASSERT_TRUE(absl::SimpleAtod(row.cells[10], &recv_cpu)) << row.cells[10];
  EXPECT_GT(send_cpu, 0);
  EXPECT_GT(recv_cpu, 0);
}

std::vector<std::pair<std::string, std::string>> Keys(const std::vector<Row>& rows) {
  std::vector<std::pair<std::string, std::string>> keys;
  for (const Row& r : rows) keys.emplace_back(r.transport, r.loss);
  return keys;
}

// bench fairness's text table: one verified row per flow (in order) with
// the duration and a positive rate, shares averaging 1, and Jain's index in
// (0, 1].
void ExpectFairnessTable(const std::string& out, const std::vector<std::string>& flows,
                         double seconds) {
  SCOPED_TRACE(out);
  std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
  ASSERT_GE(lines.size(), 2 + flows.size());
  EXPECT_THAT(lines[1], HasSubstr("flow  transport"));
  double shares = 0;
  for (size_t i = 0; i < flows.size(); ++i) {
    std::vector<std::string> cells =
        absl::StrSplit(lines[2 + i], ' ', absl::SkipWhitespace());
    ASSERT_EQ(cells.size(), 7u) << lines[2 + i];
    EXPECT_EQ(cells[0], absl::StrCat(i + 1));
    EXPECT_EQ(cells[1], flows[i]);
    double got_seconds = 0, mbits = 0, share = 0;
    ASSERT_TRUE(absl::SimpleAtod(cells[3], &got_seconds));
    ASSERT_TRUE(absl::SimpleAtod(cells[4], &mbits));
    ASSERT_TRUE(absl::SimpleAtod(cells[5], &share));
    EXPECT_DOUBLE_EQ(got_seconds, seconds);
    EXPECT_GT(mbits, 0);
    EXPECT_GT(share, 0);
    shares += share;
    EXPECT_EQ(cells[6], "yes");
  }
  EXPECT_NEAR(shares / flows.size(), 1.0, 0.02);
  const std::string marker = "Jain's fairness index (sum x)^2 / (n * sum x^2): ";
  const size_t at = out.find(marker);
  ASSERT_NE(at, std::string::npos);
  double jain = -1;
  ASSERT_TRUE(absl::SimpleAtod(out.substr(at + marker.size(), 5), &jain));
  EXPECT_GT(jain, 0);
  EXPECT_LE(jain, 1);
}

TEST(BenchBulkTest, LocalModeVerifiesEveryTransportAtEachLoss) {
  auto p = Udpmsg({"bench", "bulk", "--bench_size", "1MiB", "--bench_loss", "0,5%", "--format",
                   "csv"});
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(Finish(*p, absl::Minutes(4)), 0) << p->stderr_text();
  const std::vector<Row> rows = ParseCsv(p->stdout_text());
  // TCP only at 0%: the in-process proxy cannot drop TCP segments.
  EXPECT_THAT(Keys(rows), ElementsAre(std::make_pair("udpmsg", "0%"), std::make_pair("tcp", "0%"),
                                      std::make_pair("enet", "0%"),
                                      std::make_pair("udpmsg", "5%"),
                                      std::make_pair("enet", "5%")));
  for (const Row& row : rows) ExpectDelivered(row, 1 << 20);
  // Ratios against TCP exist where TCP ran.
  for (const Row& row : rows) {
    if (row.loss == "0%") { EXPECT_TRUE(absl::EndsWith(row.cells[6], "x")) << row.cells[6]; }
    if (row.loss == "5%") { EXPECT_EQ(row.cells[6], "-"); }
    if (row.transport == "tcp") { EXPECT_EQ(row.cells[6], "1.00x"); }
  }
  // Retransmissions happened at 5% (both directions lose packets).
  for (const Row& row : rows) {
    if (row.loss == "5%") { EXPECT_NE(row.cells[7], "0") << row.transport; }
  }
}

TEST(BenchBulkTest, TextFormatNotesTheTargets) {
  auto p = Udpmsg({"bench", "bulk", "--bench_size", "256KiB", "--bench_loss", "5%",
                   "--bench_transports", "udpmsg,enet"});
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(Finish(*p, absl::Minutes(2)), 0) << p->stderr_text();
  EXPECT_THAT(p->stdout_text(), HasSubstr("target: udpmsg >= 2x ENet at 5% loss: "));
  EXPECT_THAT(p->stdout_text(), HasSubstr("target: udpmsg >= 3x TCP at 5% loss: not measured"));
  EXPECT_FALSE(absl::StrContains(p->stdout_text(), "\n  tcp ")) << p->stdout_text();
}

// --delay, --jitter, --reorder, --dup (impair's flags) shape the in-process
// proxy the UDP transports cross in local mode, on top of --bench_loss.
TEST(BenchBulkTest, LocalModeAppliesTheImpairFlagsToTheUdpPath) {
  auto p = Udpmsg({"bench", "bulk", "--bench_size", "256KiB", "--bench_loss", "0,5%",
                   "--bench_transports", "udpmsg,enet", "--delay", "5ms", "--jitter", "2ms",
                   "--reorder", "2%", "--dup", "1%", "--cc", "bbr"});
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(Finish(*p, absl::Minutes(3)), 0) << p->stderr_text();
  EXPECT_THAT(p->stdout_text(), HasSubstr("the proxy also applies, both ways: delay 5ms, "
                                          "jitter 2ms, reorder 2% by 10ms, dup 1%"));
  auto csv = Udpmsg({"bench", "bulk", "--bench_size", "256KiB", "--bench_loss", "0",
                     "--bench_transports", "udpmsg,enet", "--reorder", "5%", "--dup", "2%",
                     "--format", "csv"});
  ASSERT_NE(csv, nullptr);
  ASSERT_EQ(Finish(*csv, absl::Minutes(3)), 0) << csv->stderr_text();
  const std::vector<Row> rows = ParseCsv(csv->stdout_text());
  EXPECT_THAT(Keys(rows), ElementsAre(std::make_pair("udpmsg", "0%"), std::make_pair("enet", "0%")));
  for (const Row& row : rows) ExpectDelivered(row, 256 << 10);
}

// tcp-<cc> sets that congestion control on the sending socket; reno is in
// every kernel's tcp_allowed_congestion_control, so no privilege is needed.
TEST(BenchBulkTest, TcpWithANamedCongestionControl) {
  auto p = Udpmsg({"bench", "bulk", "--bench_size", "256KiB", "--bench_loss", "0",
                   "--bench_transports", "tcp-reno,tcp", "--format", "csv"});
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(Finish(*p, absl::Minutes(2)), 0) << p->stderr_text();
  const std::vector<Row> rows = ParseCsv(p->stdout_text());
  // Table order, whatever the order asked.
  EXPECT_THAT(Keys(rows), ElementsAre(std::make_pair("tcp", "0%"), std::make_pair("tcp-reno", "0%")));
  for (const Row& row : rows) ExpectDelivered(row, 256 << 10);
}

TEST(BenchBulkTest, SplitModeOverLoopback) {
  std::unique_ptr<Subprocess> server;
  int port = 0;
  for (int attempt = 0; attempt < 5 && server == nullptr; ++attempt) {
    port = FreePortPair();
    ASSERT_NE(port, 0);
    server = Udpmsg({"bench", "bulk", "--bench_role", "server", "--port", absl::StrCat(port),
                     "--bench_transports", "udpmsg,tcp,enet,udpmsg-sealed", "--duration", "3m"});
    ASSERT_NE(server, nullptr);
    // "listening on ...", "tcp listening on ...", "udpmsg-sealed listening
    // on ...P+2", "enet listening on port P+1".
    bool ready = false;
    for (int i = 0; i < 4; ++i) {
      absl::StatusOr<std::string> line = server->ReadStderrLine(absl::Seconds(10));
      if (!line.ok()) break;
      if (absl::StrContains(*line, absl::StrCat("enet listening on port ", port + 1))) ready = true;
    }
    if (!ready) server.reset();  // a port was taken meanwhile: try another
  }
  ASSERT_NE(server, nullptr);

  auto client = Udpmsg({"bench", "bulk", "--bench_role", "client", "--bench_peer",
                        absl::StrCat("127.0.0.1:", port), "--bench_size", "512KiB",
                        "--bench_loss", "0", "--format", "csv"});
  ASSERT_NE(client, nullptr);
  ASSERT_EQ(Finish(*client, absl::Minutes(2)), 0) << client->stderr_text();
  const std::vector<Row> rows = ParseCsv(client->stdout_text());
  EXPECT_THAT(Keys(rows), ElementsAre(std::make_pair("udpmsg", "0%"), std::make_pair("tcp", "0%"),
                                      std::make_pair("enet", "0%")));
  for (const Row& row : rows) ExpectDelivered(row, 512 << 10);

  // The server serves more than one transfer; udpmsg-<cc> rows beside
  // udpmsg's, and the encrypted one (its own receiver on P+2).
  auto again = Udpmsg({"bench", "bulk", "--bench_role", "client", "--bench_peer",
                       absl::StrCat("127.0.0.1:", port), "--bench_size", "64KiB",
                       "--bench_transports", "enet,udpmsg-sealed,udpmsg-bbr,udpmsg",
                       "--bench_loss", "0", "--format", "csv"});
  ASSERT_NE(again, nullptr);
  ASSERT_EQ(Finish(*again, absl::Minutes(1)), 0) << again->stderr_text();
  const std::vector<Row> again_rows = ParseCsv(again->stdout_text());
  EXPECT_THAT(Keys(again_rows),
              ElementsAre(std::make_pair("udpmsg", "0%"), std::make_pair("udpmsg-bbr", "0%"),
                          std::make_pair("udpmsg-sealed", "0%"), std::make_pair("enet", "0%")));
  for (const Row& row : again_rows) ExpectDelivered(row, 64 << 10);

  // bench fairness: timed flows at once to the same receivers.
  auto fair = Udpmsg({"bench", "fairness", "--bench_role", "client", "--bench_peer",
                      absl::StrCat("127.0.0.1:", port), "--bench_flows", "udpmsg,udpmsg,tcp",
                      "--bench_duration", "300ms", "--cc", "bbr"});
  ASSERT_NE(fair, nullptr);
  ASSERT_EQ(Finish(*fair, absl::Minutes(1)), 0) << fair->stderr_text();
  ExpectFairnessTable(fair->stdout_text(), {"udpmsg-bbr", "udpmsg-bbr", "tcp"}, 0.3);

  server->Kill(SIGTERM);
  Finish(*server, absl::Seconds(10));
  EXPECT_THAT(server->stderr_text(), HasSubstr("udpmsg: received 524288 bytes"));
  EXPECT_THAT(server->stderr_text(), HasSubstr("tcp: received 524288 bytes"));
  EXPECT_THAT(server->stderr_text(), HasSubstr("enet: received 65536 bytes"));
  EXPECT_THAT(server->stderr_text(), HasSubstr("(timed)"));
}

// Runs `udpmsg bench BENCH FLAGS...` for each case: exit 2, nothing on
// stdout, and stderr naming what was wrong.
void ExpectUsageErrors(
    const std::string& bench,
    const std::vector<std::pair<std::string, std::vector<std::string>>>& cases) {
  for (const auto& [what, flags] : cases) {
    std::vector<std::string> args = {"bench", bench};
    args.insert(args.end(), flags.begin(), flags.end());
    SCOPED_TRACE(absl::StrJoin(args, " "));
    auto p = Udpmsg(args);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(Finish(*p, absl::Seconds(30)), 2) << p->stderr_text();
    EXPECT_TRUE(p->stdout_text().empty()) << p->stdout_text();
    EXPECT_THAT(p->stderr_text(), HasSubstr(what));
  }
}

TEST(BenchFairnessTest, LocalModeRunsTheFlowsAtOnce) {
  auto p = Udpmsg({"bench", "fairness", "--bench_flows", "udpmsg-newreno,tcp-reno",
                   "--bench_duration", "250ms"});
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(Finish(*p, absl::Minutes(1)), 0) << p->stderr_text();
  ExpectFairnessTable(p->stdout_text(), {"udpmsg-newreno", "tcp-reno"}, 0.25);
  EXPECT_THAT(p->stdout_text(), HasSubstr("target: each flow within a factor of 2 of its fair "
                                          "share: "));
}

TEST(BenchFairnessTest, BadFlagsExitTwo) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"--bench_flows: unknown", {"--bench_flows", "udpmsg,quic"}},
      {"--bench_flows names none", {"--bench_flows", ","}},
      {"at most 16", {"--bench_flows", "tcp,tcp,tcp,tcp,tcp,tcp,tcp,tcp,tcp,tcp,tcp,tcp,tcp,tcp,"
                                       "tcp,tcp,tcp"}},
      {"--bench_duration", {"--bench_duration", "0"}},
      {"--bench_duration", {"--bench_duration", "2h"}},
      {"--bench_duration", {"--bench_duration", "soon"}},
      {"bench bulk --bench_role server", {"--bench_role", "server"}},
      {"not a flag of bench fairness", {"--port", "9"}},
      {"--bench_peer HOST:PORT", {"--bench_role", "client"}},
      {"--bench_peer needs", {"--bench_peer", "127.0.0.1:9"}},
      {"no --bench_loss", {"--bench_loss", "5%"}},
      {"no impairment flags", {"--delay", "5ms"}},
      {"--cc", {"--cc", "vegas"}},
      {"positional", {"extra"}},
  };
  ExpectUsageErrors("fairness", cases);
}

TEST(BenchBulkTest, ClientWithoutServerFailsWithExitOne) {
  const int port = FreePortPair();
  ASSERT_NE(port, 0);
  auto p = Udpmsg({"bench", "bulk", "--bench_role", "client", "--bench_peer",
                   absl::StrCat("127.0.0.1:", port), "--bench_transports", "tcp",
                   "--bench_loss", "0", "--format", "csv", "--timeout", "2s"});
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(Finish(*p, absl::Seconds(30)), 1) << p->stderr_text();
  EXPECT_THAT(p->stdout_text(), HasSubstr("tcp,0%,0,-,-,-,-,-,no,-,-"));
  EXPECT_THAT(p->stderr_text(), HasSubstr("transfers failed"));
}

TEST(BenchBulkTest, BadFlagsExitTwo) {
  // A vector, not a map: several cases share the text they expect.
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"--bench_size", {"--bench_size", "lots"}},
      {"--bench_size", {"--bench_size", "0"}},
      {"--bench_size", {"--bench_size", "2GiB"}},
      {"--bench_loss", {"--bench_loss", "0,150%"}},
      {"--bench_loss", {"--bench_loss", "100%"}},
      {"--bench_loss", {"--bench_loss", "five"}},
      {"--bench_transports", {"--bench_transports", "udpmsg,quic"}},
      {"--bench_transports", {"--bench_transports", "udpmsg-vegas"}},
      {"--bench_role", {"--bench_role", "both"}},
      {"--cc", {"--cc", "vegas"}},
      {"--timeout", {"--timeout", "never"}},
      {"--port", {"--bench_role", "server"}},
      {"--bench_peer", {"--bench_role", "client"}},
      {"--bench_peer needs", {"--bench_peer", "127.0.0.1:9"}},
      {"--bench_loss labels", {"--bench_role", "client", "--bench_peer", "127.0.0.1:9",
                               "--bench_loss", "0,5%"}},
      {"positional", {"extra"}},
      {"--format", {"--format", "xml"}},
      {"--bench_loss (--loss", {"--loss", "5%"}},
      {"--delay:", {"--delay", "soon"}},
      {"shape the in-process proxy", {"--bench_role", "client", "--bench_peer", "127.0.0.1:9",
                                      "--bench_loss", "0", "--delay", "5ms"}},
  };
  ExpectUsageErrors("bulk", cases);
}

}  // namespace
}  // namespace udpmsg::testing
