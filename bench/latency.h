// bench latency: ping-pong round trips at a fixed rate over raw UDP, udpmsg
// (unreliable and reliable-ordered) and TCP_NODELAY, written once against
// bench::Transport.
//
// The client sends 64-byte ping i at start + i / rate (its scheduled time),
// whatever happened before, and records (time the echo arrived) - (scheduled
// time): a client that falls behind sends late and the lateness counts (the
// figures are corrected for coordinated omission). Percentiles (nearest
// rank) come from the full sorted sample; unanswered pings are lost, not
// latency; the reliable transports must answer every ping.
//
// Roles (BenchRole): kLocal runs each echo server on a thread of this
// process; for every loss rate above zero (or any other impairment) the UDP
// transports cross an in-process LossyPath, TCP runs at 0% only. kServer
// echoes until `duration` (raw UDP and TCP on `raw_bind`/`tcp_bind`, udpmsg
// on `udpmsg_bind`, by convention port+1). kClient pings the server at
// `peer` with every transport, TCP included; the network applies the loss.
//
// Usage:
//   LatencyConfig c;
//   c.rate = 1000;
//   c.count = 5000;
//   c.duration = absl::Seconds(5);
//   absl::Status s = RunLatency(c);   // prints the table
//
// Threading: RunLatency blocks the calling thread until the table is printed (a
// server: until `duration`) and runs its receivers on threads of its own,
// joined before it returns. Tables go to stdout, progress lines to stderr.
#ifndef UDPMSG_BENCH_LATENCY_H_
#define UDPMSG_BENCH_LATENCY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "bench/report.h"
#include "impairment/model.h"
#include "reliable/connection.h"
#include "udp/resolve.h"
#include "udp/socket_address.h"

namespace udpmsg::bench {

struct LatencyConfig {
  BenchRole role = BenchRole::kLocal;
  int rate = 1000;     // pings per second
  int64_t count = 0;   // pings per transport
  // kLocal/kClient: rate * duration = count (for the title); kServer: how
  // long to serve (zero: until killed).
  absl::Duration duration = absl::Seconds(5);
  reliable::CongestionControl cc = reliable::CongestionControl::kNewReno;
  uint64_t seed = 1;
  std::vector<double> losses = {0};
  std::string client_loss_label = "?";  // kClient: every row's label
  // kLocal: the proxy's impairments besides loss, and their description.
  impairment::ImpairmentConfig impairment;
  bool impairs_besides_loss = false;
  std::string impairment_description;
  // kClient: the server's HOST:PORT (udpmsg on PORT+1).
  std::string peer;
  udp::AddressFamily family = udp::AddressFamily::kUnspecified;
  // kServer: where each echo server listens.
  udp::SocketAddress raw_bind;
  udp::SocketAddress tcp_bind;
  udp::SocketAddress udpmsg_bind;
  TableFormat format = TableFormat::kText;
};

// Runs `config` and prints its table. DATA_LOSS when a reliable transport
// did not answer every ping; a transport's errors, prefixed with its row.
absl::Status RunLatency(const LatencyConfig& config);

// The nearest-rank percentile `q` (0 < q <= 1) of `sorted` in microseconds
// with one decimal ("12.5"), "-" when empty.
std::string PercentileUs(const std::vector<int64_t>& sorted, double q);

}  // namespace udpmsg::bench

#endif  // UDPMSG_BENCH_LATENCY_H_
