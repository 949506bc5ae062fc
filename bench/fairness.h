// bench fairness: several bulk flows at once through one path for a fixed
// time (e.g. two udpmsg flows and one TCP CUBIC flow through one 20 Mbit/s
// bottleneck for 30 s), the goodput of each and Jain's fairness index
// (sum x)^2 / (n * sum x^2), with the target "each flow within a factor of
// 2 of its fair share" (the fair share: the flows' total / n).
//
// Each flow is a timed transfer (bulk_wire.h) on its own connection and
// thread: the flows connect first, then start together; each receiver
// counts what arrives within `duration` of its first byte. Roles: kLocal
// runs the receivers on threads of this process over loopback (no
// bottleneck: a smoke test of the machinery); kClient sends to the
// receivers of `udpmsg bench bulk --bench_role server` at `peer`
// (bench/run.sh: senders in one namespace, the server in the other, the
// bottleneck a tbf between them).
//
// Usage:
//   FairnessConfig c;
//   c.flows = *ParseFairnessFlows("udpmsg,udpmsg,tcp-cubic");
//   c.duration = absl::Seconds(30);
//   absl::Status s = RunFairness(c);   // prints the table; logs to stderr
//
// Threading: RunFairness blocks the calling thread until the table is
// printed and runs one thread per flow (and, local, per receiver), joined
// before it returns. Tables go to stdout, progress lines to stderr.
#ifndef UDPMSG_BENCH_FAIRNESS_H_
#define UDPMSG_BENCH_FAIRNESS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "bench/bulk_flow.h"
#include "bench/report.h"
#include "reliable/connection.h"
#include "udp/socket_address.h"

namespace udpmsg::bench {

// At most this many flows at once (a BulkReceiver serves 64).
inline constexpr size_t kMaxFairnessFlows = 16;

struct FairnessConfig {
  BenchRole role = BenchRole::kLocal;  // kLocal or kClient
  // One entry per flow, repeats allowed, in the order given (bulk transport
  // names: udpmsg, udpmsg-<cc>, tcp, tcp-<cc>, enet).
  std::vector<std::string> flows = {"udpmsg", "udpmsg", "tcp-cubic"};
  absl::Duration duration = absl::Seconds(30);
  reliable::CongestionControl cc = reliable::CongestionControl::kNewReno;  // "udpmsg" flows
  uint64_t seed = 1;
  absl::Duration timeout = absl::Seconds(10);  // no progress this long: failed
  std::string peer;  // kClient: the bulk server's HOST:PORT
  udp::AddressFamily family = udp::AddressFamily::kUnspecified;
  TableFormat format = TableFormat::kText;
};

// The flows of a --bench_flows value ("udpmsg,udpmsg,tcp-cubic"),
// case-insensitive, in the order given, repeats kept. INVALID_ARGUMENT for
// an unknown transport, none, or more than kMaxFairnessFlows.
absl::StatusOr<std::vector<std::string>> ParseFairnessFlows(absl::string_view text);

// Jain's fairness index of `x` (each >= 0): (sum x)^2 / (n * sum x^2), in
// (0, 1], 1 when all are equal; 0 when `x` is empty or all zero.
double JainIndex(const std::vector<double>& x);

// Runs `config` and prints its table. DATA_LOSS when a flow failed or was
// not verified (after printing); INVALID_ARGUMENT for the server role or
// no flows; setup errors.
absl::Status RunFairness(const FairnessConfig& config);

// The table of `rows` (one per flow, in order, numbered from 1; their
// `loss` is not used), with Jain's index and the target in its notes.
BenchTable MakeFairnessTable(const std::vector<BulkOutcome>& rows, const FairnessConfig& config);

}  // namespace udpmsg::bench

#endif  // UDPMSG_BENCH_FAIRNESS_H_
