// udpmsg bench rate|latency|bulk: dispatch and the shared table printer.
#include "cli/bench.h"

#include <algorithm>
#include <cstdio>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/flags.h"
#include "cli/impair_flags.h"
#include "impairment/model.h"

namespace udpmsg::cli {

void PrintTable(const BenchTable& table) {
  const std::string format = absl::GetFlag(FLAGS_format);
  if (format == "csv") {
    std::printf("%s\n", absl::StrJoin(table.columns, ",").c_str());
    for (const auto& row : table.rows) std::printf("%s\n", absl::StrJoin(row, ",").c_str());
  } else if (format == "markdown") {
    std::printf("### %s\n\n| %s |\n|", table.title.c_str(),
                absl::StrJoin(table.columns, " | ").c_str());
    for (size_t i = 0; i < table.columns.size(); ++i) std::printf("---|");
    std::printf("\n");
    for (const auto& row : table.rows) std::printf("| %s |\n", absl::StrJoin(row, " | ").c_str());
    for (const std::string& note : table.notes) std::printf("\n%s\n", note.c_str());
    std::printf("\n");
  } else {
    std::vector<size_t> width(table.columns.size(), 0);
    for (size_t i = 0; i < table.columns.size(); ++i) width[i] = table.columns[i].size();
    for (const auto& row : table.rows) {
      for (size_t i = 0; i < row.size() && i < width.size(); ++i) {
        width[i] = std::max(width[i], row[i].size());
      }
    }
    auto line = [&](const std::vector<std::string>& cells) {
      std::string out = " ";
      for (size_t i = 0; i < cells.size() && i < width.size(); ++i) {
        absl::StrAppend(&out, " ", cells[i], std::string(width[i] - cells[i].size() + 1, ' '));
      }
      std::printf("%s\n", out.c_str());
    };
    std::printf("%s\n", table.title.c_str());
    line(table.columns);
    for (const auto& row : table.rows) line(row);
    for (const std::string& note : table.notes) std::printf("  %s\n", note.c_str());
  }
  std::fflush(stdout);
}

std::string LossLabel(double loss) { return absl::StrFormat("%g%%", loss * 100); }

bool BenchLossIsDefault() {
  const absl::CommandLineFlag* flag = absl::FindCommandLineFlag("bench_loss");
  return flag != nullptr && flag->CurrentValue() == flag->DefaultValue();
}

absl::StatusOr<std::vector<double>> ParseLossList(const std::string& text) {
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

absl::StatusOr<std::string> ClientLossLabel(const std::vector<double>& losses) {
  if (BenchLossIsDefault()) return std::string("?");  // not told what the network drops
  if (losses.size() == 1) return LossLabel(losses[0]);
  return absl::InvalidArgumentError(
      "--bench_role client: the network applies the loss; --bench_loss labels the rows "
      "with the one rate it applies (e.g. --bench_loss 5%)");
}

absl::StatusOr<impairment::ImpairmentConfig> BenchImpairmentFromFlags(bool local_role) {
  absl::StatusOr<impairment::ImpairmentConfig> c = ImpairmentFromFlags();
  if (!c.ok()) return c.status();
  if (c->loss > 0 || c->burst > 0) {
    return absl::InvalidArgumentError(
        "bench takes its loss rates from --bench_loss (--loss and --burst are impair's)");
  }
  if (!local_role && ImpairsBesidesLoss(*c)) {
    return absl::InvalidArgumentError(
        "--delay, --jitter, --reorder, --dup, --corrupt and --rate shape the in-process proxy of "
        "--bench_role local; between hosts the network applies them (bench/run.sh --delay)");
  }
  return c;
}

int RunBench(const Args& args) {
  const std::string format = absl::GetFlag(FLAGS_format);
  if (format != "text" && format != "csv" && format != "markdown") {
    return UsageError("bench", absl::StrCat("--format \"", format, "\" must be text, csv or markdown"));
  }
  if (args.empty()) return UsageError("bench", "expects rate, latency or bulk");
  const Args rest(args.begin() + 1, args.end());
  absl::Status s;
  if (args[0] == "rate") {
    s = RunBenchRate(rest);
  } else if (args[0] == "latency") {
    s = RunBenchLatency(rest);
  } else if (args[0] == "bulk") {
    s = RunBenchBulk(rest);
  } else {
    return UsageError("bench", absl::StrCat("unknown kind \"", args[0], "\": rate, latency or bulk"));
  }
  if (!s.ok()) return Fail(s);
  return kExitOk;
}

}  // namespace udpmsg::cli
