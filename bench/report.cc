#include "bench/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "impairment/model.h"

namespace udpmsg::bench {

absl::StatusOr<TableFormat> ParseTableFormat(absl::string_view name) {
  if (name == "text") return TableFormat::kText;
  if (name == "csv") return TableFormat::kCsv;
  if (name == "markdown") return TableFormat::kMarkdown;
  return absl::InvalidArgumentError(
      absl::StrCat("--format \"", name, "\" must be text, csv or markdown"));
}

std::string FormatTable(const BenchTable& table, TableFormat format) {
  std::string out;
  if (format == TableFormat::kCsv) {
    absl::StrAppend(&out, absl::StrJoin(table.columns, ","), "\n");
    for (const auto& row : table.rows) absl::StrAppend(&out, absl::StrJoin(row, ","), "\n");
    return out;
  }
  if (format == TableFormat::kMarkdown) {
    absl::StrAppend(&out, "### ", table.title, "\n\n| ", absl::StrJoin(table.columns, " | "),
                    " |\n|");
    for (size_t i = 0; i < table.columns.size(); ++i) out += "---|";
    out += "\n";
    for (const auto& row : table.rows) absl::StrAppend(&out, "| ", absl::StrJoin(row, " | "), " |\n");
    for (const std::string& note : table.notes) absl::StrAppend(&out, "\n", note, "\n");
    out += "\n";
    return out;
  }
  std::vector<size_t> width(table.columns.size(), 0);
  for (size_t i = 0; i < table.columns.size(); ++i) width[i] = table.columns[i].size();
  for (const auto& row : table.rows) {
    for (size_t i = 0; i < row.size() && i < width.size(); ++i) {
      width[i] = std::max(width[i], row[i].size());
    }
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string l = " ";
    for (size_t i = 0; i < cells.size() && i < width.size(); ++i) {
      absl::StrAppend(&l, " ", cells[i], std::string(width[i] - cells[i].size() + 1, ' '));
    }
    absl::StrAppend(&out, l, "\n");
  };
  absl::StrAppend(&out, table.title, "\n");
  line(table.columns);
  for (const auto& row : table.rows) line(row);
  for (const std::string& note : table.notes) absl::StrAppend(&out, "  ", note, "\n");
  return out;
}

void PrintTable(const BenchTable& table, TableFormat format) {
  const std::string text = FormatTable(table, format);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

std::string LossLabel(double loss) { return absl::StrFormat("%g%%", loss * 100); }

absl::StatusOr<std::vector<double>> ParseLossList(absl::string_view text) {
  std::vector<double> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    absl::StatusOr<double> rate = impairment::ParseRate(absl::StripAsciiWhitespace(part));
    if (!rate.ok() || *rate >= 1.0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--bench_loss \"", text, "\": \"", part, "\" is not a loss rate below 100% (e.g. 5%)"));
    }
    out.push_back(*rate);
  }
  if (out.empty()) return absl::InvalidArgumentError("--bench_loss names no loss rate");
  return out;
}

absl::StatusOr<uint64_t> ParseSize(absl::string_view text) {
  const std::string s(absl::StripAsciiWhitespace(text));
  size_t digits = 0;
  while (digits < s.size() && (absl::ascii_isdigit(s[digits]) || s[digits] == '.')) ++digits;
  const std::string unit = s.substr(digits);
  double number = 0;
  double scale = 0;
  if (unit.empty() || unit == "B") scale = 1;
  if (unit == "k" || unit == "K" || unit == "kB" || unit == "KB") scale = 1e3;
  if (unit == "M" || unit == "MB") scale = 1e6;
  if (unit == "G" || unit == "GB") scale = 1e9;
  if (unit == "KiB" || unit == "Ki") scale = 1024.0;
  if (unit == "MiB" || unit == "Mi") scale = 1024.0 * 1024;
  if (unit == "GiB" || unit == "Gi") scale = 1024.0 * 1024 * 1024;
  if (digits == 0 || scale == 0 || !absl::SimpleAtod(s.substr(0, digits), &number)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--bench_size \"", text, "\" is not a size (e.g. 16MiB, 512KiB, 4MB, 1048576)"));
  }
  const double bytes = std::round(number * scale);
  if (bytes < 1 || bytes > static_cast<double>(kMaxTransferSize)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--bench_size \"", text, "\" must be between 1 byte and 1GiB"));
  }
  return static_cast<uint64_t>(bytes);
}

}  // namespace udpmsg::bench
