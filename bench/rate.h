// bench rate: how many 64-byte messages per second one sender thread gets
// to one receiver thread over loopback IPv4, and the CPU each costs,
// written once against bench::Transport.
//
// Four transports, each run kRateRuns times, interleaved (the median run by
// msgs/s is shown): raw UDP with sendto/recvfrom, raw UDP with
// sendmmsg/recvmmsg (64 per call), udpmsg unreliable and udpmsg reliable
// (which must deliver every message).
//
// Figures: msgs/s = messages received / (last receive - first send);
// ns CPU/msg = user+sys time of both threads (RUSAGE_THREAD) / messages
// received; lost = sent - received.
//
// Raw UDP has no flow control: a sender that outruns its receiver just
// overflows the receive buffer. So the raw receiver gets a big SO_RCVBUF,
// and the sender of an unpaced transport stays at most kRawWindow messages
// ahead of its receiver through a shared in-process counter (no syscalls;
// it sleeps while that far ahead). Paced senders keep QueuedBytes under the
// transport's send window (then wait until half of it is acknowledged).
//
// Usage:
//   RateConfig c;
//   c.messages = 200000;
//   absl::Status s = RunRate(c);   // prints the table
//
// Threading: RunRate blocks the calling thread until the table is printed and
// runs each sender and receiver on a thread of its own, joined before it
// returns. Tables go to stdout, progress lines to stderr.
#ifndef UDPMSG_BENCH_RATE_H_
#define UDPMSG_BENCH_RATE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "bench/report.h"
#include "reliable/connection.h"

namespace udpmsg::bench {

struct RateConfig {
  int64_t messages = 200000;  // per run
  reliable::CongestionControl cc = reliable::CongestionControl::kNewReno;
  TableFormat format = TableFormat::kText;
};

// Runs `config` and prints its table. DATA_LOSS when udpmsg reliable lost a
// message; a transport's errors, prefixed with its name.
absl::Status RunRate(const RateConfig& config);

}  // namespace udpmsg::bench

#endif  // UDPMSG_BENCH_RATE_H_
