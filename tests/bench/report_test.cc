// bench/report.h's parsers and table formats; ParseBulkTransports and
// PercentileUs from bulk.h and latency.h.
#include "bench/report.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "bench/bulk.h"
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

TEST(ParseBulkTransportsTest, TableOrderWithoutDuplicates) {
  absl::StatusOr<std::vector<std::string>> t =
      ParseBulkTransports("enet, TCP-Reno,udpmsg,tcp,enet");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(*t, ElementsAre("udpmsg", "tcp", "tcp-reno", "enet"));
}

TEST(ParseBulkTransportsTest, RejectsUnknownAndEmpty) {
  EXPECT_THAT(ParseBulkTransports("udpmsg,quic").status().message(), HasSubstr("\"quic\""));
  EXPECT_EQ(ParseBulkTransports(" , ").status().code(), absl::StatusCode::kInvalidArgument);
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
