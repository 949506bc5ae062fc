// bench/report.h's parsers and table formats; ParseBulkTransports, the bulk
// table's CPU columns and targets, the fairness flows, Jain's index and the
// fairness table, and PercentileUs from bulk.h, fairness.h and latency.h.
#include "bench/report.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "bench/bulk.h"
#include "bench/fairness.h"
#include "bench/latency.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace udpmsg::bench {
namespace {

using ::testing::DoubleEq;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ParseLossListTest, PercentagesAndFractions) {
  absl::StatusOr<std::vector<double>> l = ParseLossList("0, 1%,5%,0.1");
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_THAT(*l, ElementsAre(DoubleEq(0), DoubleEq(0.01), DoubleEq(0.05), DoubleEq(0.1)));
}

TEST(ParseLossListTest, RejectsFullLossGarbageAndNothing) {
  for (const char* bad : {"100%", "0,150%", "five", "", " , "}) {
    absl::StatusOr<std::vector<double>> l = ParseLossList(bad);
    EXPECT_EQ(l.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(l.status().message(), HasSubstr("--bench_loss")) << bad;
  }
}

TEST(LossLabelTest, Percent) {
  EXPECT_EQ(LossLabel(0), "0%");
  EXPECT_EQ(LossLabel(0.05), "5%");
  EXPECT_EQ(LossLabel(0.005), "0.5%");
}

TEST(ParseSizeTest, UnitsAndBounds) {
  EXPECT_EQ(*ParseSize("16MiB"), 16u << 20);
  EXPECT_EQ(*ParseSize("512KiB"), 512u << 10);
  EXPECT_EQ(*ParseSize("4MB"), 4000000u);
  EXPECT_EQ(*ParseSize("1048576"), 1048576u);
  EXPECT_EQ(*ParseSize("1.5MiB"), 3u << 19);
  EXPECT_EQ(*ParseSize("1GiB"), kMaxTransferSize);
  for (const char* bad : {"lots", "0", "2GiB", "", "MiB", "5 parsecs"}) {
    EXPECT_EQ(ParseSize(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(ParseTableFormatTest, ThreeNames) {
  EXPECT_EQ(*ParseTableFormat("text"), TableFormat::kText);
  EXPECT_EQ(*ParseTableFormat("csv"), TableFormat::kCsv);
  EXPECT_EQ(*ParseTableFormat("markdown"), TableFormat::kMarkdown);
  EXPECT_THAT(ParseTableFormat("xml").status().message(), HasSubstr("--format \"xml\""));
}

BenchTable Sample() {
  BenchTable t;
  t.title = "title";
  t.columns = {"a", "long column"};
  t.rows = {{"1", "2"}, {"wide cell", "3"}};
  t.notes = {"note"};
  return t;
}

TEST(FormatTableTest, CsvIsHeaderAndRowsOnly) {
  EXPECT_EQ(FormatTable(Sample(), TableFormat::kCsv), "a,long column\n1,2\nwide cell,3\n");
}

TEST(FormatTableTest, MarkdownHasTitleTableAndNotes) {
  EXPECT_EQ(FormatTable(Sample(), TableFormat::kMarkdown),
            "### title\n\n| a | long column |\n|---|---|\n| 1 | 2 |\n| wide cell | 3 |\n"
            "\nnote\n\n");
}

TEST(FormatTableTest, TextAlignsColumns) {
  EXPECT_EQ(FormatTable(Sample(), TableFormat::kText),
            "title\n"
            "  a          long column \n"
            "  1          2           \n"
            "  wide cell  3           \n"
            "  note\n");
}

// The order given is the order they run (bench/run.sh alternates it).
TEST(ParseBulkTransportsTest, GivenOrderWithoutDuplicates) {
  absl::StatusOr<std::vector<std::string>> t =
      ParseBulkTransports("enet, TCP-Reno,udpmsg,tcp,enet");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(*t, ElementsAre("enet", "tcp-reno", "udpmsg", "tcp"));
}

TEST(ParseBulkTransportsTest, RejectsUnknownAndEmpty) {
  EXPECT_THAT(ParseBulkTransports("udpmsg,quic").status().message(), HasSubstr("\"quic\""));
  EXPECT_EQ(ParseBulkTransports(" , ").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ParseBulkTransportsTest, UdpmsgWithANamedCongestionControl) {
  absl::StatusOr<std::vector<std::string>> t =
      ParseBulkTransports("tcp-cubic,udpmsg-bbr,UDPMSG-NEWRENO,enet,udpmsg-sealed");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(*t, ElementsAre("tcp-cubic", "udpmsg-bbr", "udpmsg-newreno", "enet", "udpmsg-sealed"));
}

BulkOutcome Row(const std::string& transport, const std::string& loss, double seconds,
                double send_cpu, double recv_cpu) {
  BulkOutcome o;
  o.transport = transport;
  o.loss = loss;
  o.bytes = 1000000000;  // 8000 Mbit
  o.verified = true;
  o.seconds = seconds;
  o.sender_cpu_seconds = send_cpu;
  o.receiver_cpu_seconds = recv_cpu;
  return o;
}

TEST(BulkTableTest, CpuColumnsAndTargetsPerUdpmsgFlavour) {
  BulkConfig c;
  c.role = BenchRole::kClient;
  c.transports = {"udpmsg-newreno", "udpmsg-bbr", "tcp-cubic"};
  std::vector<BulkOutcome> rows = {Row("udpmsg-newreno", "0%", 4, 1.5, 1.0),
                                   Row("udpmsg-bbr", "0%", 2, 3.0, 2.0),
                                   Row("tcp-cubic", "0%", 1, 1.0, 1.0)};
  rows.push_back(Row("enet", "0%", 1, -1, -1));  // no CPU figure: "-"
  const BenchTable t = MakeBulkTable(rows, c);
  ASSERT_EQ(t.columns.size(), 11u);
  EXPECT_EQ(t.columns[9], "send_cpu_s/GB");
  EXPECT_EQ(t.columns[10], "recv_cpu_s/GB");
  EXPECT_EQ(t.rows[0][9], "1.500");
  EXPECT_EQ(t.rows[0][10], "1.000");
  EXPECT_EQ(t.rows[3][9], "-");
  const std::string notes = FormatTable(t, TableFormat::kText);
  EXPECT_THAT(notes, HasSubstr("target: udpmsg-newreno >= 0.5x TCP cubic at 0% loss (the target "
                               "is for the rate-limited veth of bench/run.sh): 0.25x (NOT met: "
                               "50% short)"));
  EXPECT_THAT(notes, HasSubstr("target: udpmsg-bbr >= 0.5x TCP cubic at 0% loss (the target is "
                               "for the rate-limited veth of bench/run.sh): 0.50x (met)"));
  EXPECT_THAT(notes, HasSubstr("target: udpmsg-newreno CPU (sender + receiver) per GB <= 2x TCP "
                               "cubic's at 0% loss: 2.500 vs 2.000 s/GB, 1.25x (met)"));
  EXPECT_THAT(notes, HasSubstr("target: udpmsg-bbr CPU (sender + receiver) per GB <= 2x TCP "
                               "cubic's at 0% loss: 5.000 vs 2.000 s/GB, 2.50x (NOT met: 25% "
                               "over)"));
}

// Transports run in any order; the table lists them by loss (as run), then
// in table order, and its targets in table order too.
TEST(BulkTableTest, RowsInTableOrderWhateverTheRunOrder) {
  BulkConfig c;
  c.role = BenchRole::kLocal;
  c.transports = {"enet", "tcp", "udpmsg-bbr", "udpmsg-newreno"};
  const std::vector<BulkOutcome> run = {
      Row("enet", "0%", 4, -1, -1),           Row("tcp", "0%", 1, -1, -1),
      Row("udpmsg-bbr", "0%", 2, -1, -1),     Row("udpmsg-newreno", "0%", 2, -1, -1),
      Row("enet", "5%", 8, -1, -1),           Row("udpmsg-bbr", "5%", 3, -1, -1),
      Row("udpmsg-newreno", "5%", 3, -1, -1)};
  const BenchTable t = MakeBulkTable(run, c);
  std::vector<std::string> order;
  for (const std::vector<std::string>& row : t.rows) order.push_back(row[0] + "@" + row[1]);
  EXPECT_THAT(order, ElementsAre("udpmsg-newreno@0%", "udpmsg-bbr@0%", "tcp@0%", "enet@0%",
                                 "udpmsg-newreno@5%", "udpmsg-bbr@5%", "enet@5%"));
  const std::string text = FormatTable(t, TableFormat::kText);
  EXPECT_LT(text.find("target: udpmsg-newreno"), text.find("target: udpmsg-bbr"));
}

TEST(ParseFairnessFlowsTest, OrderAndRepeatsKept) {
  absl::StatusOr<std::vector<std::string>> f = ParseFairnessFlows("udpmsg, UDPMSG,tcp-cubic");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_THAT(*f, ElementsAre("udpmsg", "udpmsg", "tcp-cubic"));
}

TEST(ParseFairnessFlowsTest, RejectsUnknownNoneAndTooMany) {
  EXPECT_THAT(ParseFairnessFlows("udpmsg,quic").status().message(), HasSubstr("\"quic\""));
  EXPECT_EQ(ParseFairnessFlows(" , ").status().code(), absl::StatusCode::kInvalidArgument);
  std::string many = "tcp";
  for (size_t i = 1; i <= kMaxFairnessFlows; ++i) many += ",tcp";
  EXPECT_THAT(ParseFairnessFlows(many).status().message(), HasSubstr("at most 16"));
}

TEST(JainIndexTest, OneWhenEqualOneOverNWhenOneTakesAll) {
  EXPECT_DOUBLE_EQ(JainIndex({5, 5, 5}), 1.0);
  EXPECT_DOUBLE_EQ(JainIndex({9, 0, 0}), 1.0 / 3);
  EXPECT_DOUBLE_EQ(JainIndex({1, 3}), 16.0 / 20);
  EXPECT_EQ(JainIndex({}), 0);
  EXPECT_EQ(JainIndex({0, 0}), 0);
}

TEST(FairnessTableTest, SharesJainAndTheTarget) {
  FairnessConfig c;
  c.duration = absl::Seconds(1);
  std::vector<BulkOutcome> rows = {Row("udpmsg-newreno", "", 1, -1, -1),
                                   Row("udpmsg-newreno", "", 2, -1, -1),
                                   Row("tcp-cubic", "", 8, -1, -1)};  // 8000, 4000, 1000 Mbit/s
  BenchTable t = MakeFairnessTable(rows, c);
  ASSERT_EQ(t.rows.size(), 3u);
  EXPECT_THAT(t.rows[0], ElementsAre("1", "udpmsg-newreno", "1000000000", "1", "8000.00", "1.85",
                                     "yes"));
  EXPECT_EQ(t.rows[2][5], "0.23");
  std::string text = FormatTable(t, TableFormat::kText);
  EXPECT_THAT(text, HasSubstr("Jain's fairness index (sum x)^2 / (n * sum x^2): 0.695 over 3 "
                              "flows, total 13000.00 Mbit/s"));
  EXPECT_THAT(text, HasSubstr("target: each flow within a factor of 2 of its fair share: NOT "
                              "met: flow 3 (tcp-cubic) at 0.23x"));
  rows[2].seconds = 2;  // 8000, 4000, 4000
  text = FormatTable(MakeFairnessTable(rows, c), TableFormat::kText);
  EXPECT_THAT(text, HasSubstr("target: each flow within a factor of 2 of its fair share: met"));
  rows[2].seconds = 8000;  // 8000, 4000, 1: a starved flow keeps its digits
  t = MakeFairnessTable(rows, c);
  EXPECT_EQ(t.rows[2][5], "0.00025");
  EXPECT_EQ(t.rows[1][5], "1.00");
  EXPECT_THAT(FormatTable(t, TableFormat::kText),
              HasSubstr("NOT met: flow 3 (tcp-cubic) at 0.00025x"));
  rows[1].verified = false;
  text = FormatTable(MakeFairnessTable(rows, c), TableFormat::kText);
  EXPECT_THAT(text, HasSubstr("Jain's fairness index: not measured"));
}

TEST(PercentileUsTest, NearestRank) {
  const std::vector<int64_t> sorted = {1000, 2000, 3000, 4000};  // ns
  EXPECT_EQ(PercentileUs(sorted, 0.5), "2.0");
  EXPECT_EQ(PercentileUs(sorted, 0.51), "3.0");
  EXPECT_EQ(PercentileUs(sorted, 1.0), "4.0");
  EXPECT_EQ(PercentileUs(sorted, 0.001), "1.0");
  EXPECT_EQ(PercentileUs({}, 0.5), "-");
}

}  // namespace
}  // namespace udpmsg::bench
