// bench bulk: the goodput of one bulk transfer, udpmsg against TCP (with
// the kernel's congestion controls) and ENet, written once against
// bench::Transport.
//
// Every transfer has the shape of bulk_wire.h: a header, the data, the
// receiver's 32-byte result. The sender compares size and checksum with its
// own; goodput is verified bytes / (first byte sent -> last byte received at
// the receiver). When the receiver's clock cannot be compared (its last-byte
// time does not fall between the sender's start and its receipt of the
// result: another host), the receipt of the result ends the interval. Each
// row also gives the CPU seconds per GB of the sending and the receiving
// thread (bulk_flow.h says what they count).
//
// Roles (BenchRole): kLocal runs every receiver on a thread of this process
// and sends over loopback; the UDP transports pass an in-process LossyPath
// dropping each loss rate in both directions (TCP runs at 0% only: dropping
// TCP segments needs the kernel). kServer runs the receivers until
// `duration`; kClient sends to them and labels every row `loss_label` (the
// network applies the loss).
//
// Usage:
//   BulkConfig c;
//   c.size = 16 << 20;
//   c.losses = {0, 0.05};
//   c.transports = *ParseBulkTransports("udpmsg,tcp,enet");
//   absl::Status s = RunBulk(c);   // prints the table; logs to stderr
//
// Threading: RunBulk blocks the calling thread until the table is printed (a
// server: until `duration`) and runs its receivers on threads of its own,
// joined before it returns. Tables go to stdout, progress lines to stderr.
#ifndef UDPMSG_BENCH_BULK_H_
#define UDPMSG_BENCH_BULK_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "bench/bulk_flow.h"
#include "bench/report.h"
#include "impairment/model.h"
#include "reliable/connection.h"
#include "udp/resolve.h"
#include "udp/socket_address.h"

namespace udpmsg::bench {

struct BulkConfig {
  BenchRole role = BenchRole::kLocal;
  uint64_t size = 16 << 20;
  std::vector<double> losses = {0};  // kLocal: the rates to run
  std::string loss_label = "?";      // kClient: the label of every row
  // In the order they run (ParseBulkTransports); the table lists them in
  // table order (BulkTableRank).
  std::vector<std::string> transports = {"udpmsg", "tcp", "enet"};
  reliable::CongestionControl cc = reliable::CongestionControl::kNewReno;
  uint64_t seed = 1;
  absl::Duration timeout = absl::Seconds(10);  // no progress this long: failed
  // kLocal: what the proxy applies besides the loss, and its description
  // for the notes (empty when nothing, or only blackouts).
  impairment::ImpairmentConfig impairment;
  bool impairs_besides_loss = false;
  std::string impairment_description;
  // kClient: the server's HOST:PORT (udpmsg and TCP there, ENet on PORT+1,
  // udpmsg-sealed on PORT+2).
  std::string peer;
  udp::AddressFamily family = udp::AddressFamily::kUnspecified;
  // kServer: where each receiver listens (only those of `transports`).
  udp::SocketAddress udpmsg_bind;
  udp::SocketAddress tcp_bind;
  udp::SocketAddress enet_bind;  // IPv4
  udp::SocketAddress udpmsg_sealed_bind;  // "udpmsg-sealed": encrypted
  absl::Duration duration = absl::ZeroDuration();  // kServer: 0 = until killed
  TableFormat format = TableFormat::kText;
};

// The transports of a --bench_transports value ("udpmsg, tcp-reno,enet"),
// case-insensitive, duplicates dropped, in the order given (the order they
// run: bench/run.sh alternates it between rounds, so that no transport
// always goes first on a machine whose speed drifts). INVALID_ARGUMENT
// naming an unknown one, or when it names none.
absl::StatusOr<std::vector<std::string>> ParseBulkTransports(absl::string_view text);

// Whether a server of `c` serves udpmsg-sealed (its receiver on
// udpmsg_sealed_bind, PORT+2): only when its transports name it.
bool ServesSealed(const BulkConfig& c);

// A transport's place in the table (udpmsg, udpmsg-<cc>..., tcp,
// tcp-<cc>..., enet), whatever order they ran in; unknown names last.
size_t BulkTableRank(absl::string_view transport);

// Runs `config` and prints its table. DATA_LOSS when any transfer failed or
// was not verified (after printing); a server's or setup's own errors.
absl::Status RunBulk(const BulkConfig& config);

// The table of `rows`, with its notes and targets.
BenchTable MakeBulkTable(const std::vector<BulkOutcome>& rows, const BulkConfig& config);

}  // namespace udpmsg::bench

#endif  // UDPMSG_BENCH_BULK_H_
