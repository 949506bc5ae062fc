// The result tables of udpmsg's benchmarks and the small parsers their
// settings share (loss lists, sizes).
//
// Usage:
//   BenchTable t{.title = "bench rate", .columns = {"transport", "msgs/s"}};
//   t.rows.push_back({"udpmsg", "123456"});
//   PrintTable(t, TableFormat::kCsv);   // to stdout
//
// Threading: pure functions (PrintTable writes stdout).
#ifndef UDPMSG_BENCH_REPORT_H_
#define UDPMSG_BENCH_REPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace udpmsg::bench {

enum class TableFormat { kText, kCsv, kMarkdown };

// Where a bench bulk/latency run puts its two ends: both in this process
// over loopback, or this process as the server (until killed) or the client
// of one on another host.
enum class BenchRole { kLocal, kServer, kClient };

// "text", "csv", "markdown"; INVALID_ARGUMENT otherwise.
absl::StatusOr<TableFormat> ParseTableFormat(absl::string_view name);

// One table of results: a header row and data rows, and notes under it.
struct BenchTable {
  std::string title;
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> notes;
};

// The table as `format` prints it: text (aligned columns, title and notes),
// csv (header and rows only), markdown (a ### title, the table, the notes).
std::string FormatTable(const BenchTable& table, TableFormat format);
// FormatTable to stdout, flushed.
void PrintTable(const BenchTable& table, TableFormat format);

// "5%": a loss rate as the tables label it.
std::string LossLabel(double loss);

// The comma-separated loss rates of a --bench_loss value ("0,1%,5%", or
// fractions "0.05"), each below 100%. INVALID_ARGUMENT quoting the value
// otherwise, or when it names none.
absl::StatusOr<std::vector<double>> ParseLossList(absl::string_view text);

// The largest transfer ParseSize accepts.
inline constexpr uint64_t kMaxTransferSize = uint64_t{1} << 30;

// "16MiB", "512KiB", "4MB", "1048576", "1.5MiB" as bytes, 1 to 1 GiB.
// INVALID_ARGUMENT quoting `text` (as --bench_size) otherwise.
absl::StatusOr<uint64_t> ParseSize(absl::string_view text);

}  // namespace udpmsg::bench

#endif  // UDPMSG_BENCH_REPORT_H_
