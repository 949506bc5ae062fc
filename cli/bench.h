// `udpmsg bench`: measurements of udpmsg next to raw UDP, TCP and ENet.
// Each kind lives in its own file; they share the result table below.
#ifndef UDPMSG_CLI_BENCH_H_
#define UDPMSG_CLI_BENCH_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "impairment/model.h"

namespace udpmsg::cli {

// One table of results: a header row and data rows, printed by
// PrintTable in the --format the user asked for (text, csv, markdown).
struct BenchTable {
  std::string title;
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> notes;  // printed under the table
};

void PrintTable(const BenchTable& table);

// "5%": a loss rate as the tables label it.
std::string LossLabel(double loss);
// Whether --bench_loss was left at its default.
bool BenchLossIsDefault();
// The comma-separated loss rates of a --bench_loss value, each below 100%.
absl::StatusOr<std::vector<double>> ParseLossList(const std::string& text);
// --bench_role client: the label of every row. The network applies the loss,
// so --bench_loss names the one rate it applies; "?" when the flag was left
// at its default. InvalidArgument for several rates.
absl::StatusOr<std::string> ClientLossLabel(const std::vector<double>& losses);

// The impairments besides loss (--delay, --jitter, --reorder, --dup,
// --corrupt, --rate) that the in-process proxy of a local bench run applies
// to the UDP transports; the loss comes from --bench_loss. InvalidArgument
// for --loss/--burst (use --bench_loss) and, outside `local_role`, for any
// impairment (the network between the hosts applies them there).
absl::StatusOr<impairment::ImpairmentConfig> BenchImpairmentFromFlags(bool local_role);

// bench rate: 64-byte message rate (raw sendto/recvfrom, sendmmsg/recvmmsg,
// udpmsg unreliable, udpmsg reliable), packets/s and CPU per message.
absl::Status RunBenchRate(const std::vector<std::string>& args);
// bench latency: ping-pong at a fixed rate, p50/p99/p99.9 from the
// scheduled send time (coordinated omission corrected).
absl::Status RunBenchLatency(const std::vector<std::string>& args);
// bench bulk: goodput of a bulk transfer, udpmsg reliable vs TCP vs ENet.
absl::Status RunBenchBulk(const std::vector<std::string>& args);

}  // namespace udpmsg::cli

#endif  // UDPMSG_CLI_BENCH_H_
