// Reliable transfer over udpmsg: `udpmsg send --reliable` and
// `udpmsg recv --reliable`. The protocol is apps/transfer (Sender, Receiver,
// transfer.proto); transfer.cc supplies the flags, the source and the file
// sink, the terminal and the udpmsg::Host loop.
#ifndef UDPMSG_CLI_TRANSFER_H_
#define UDPMSG_CLI_TRANSFER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace udpmsg::cli {

// `udpmsg send --reliable HOST:PORT [--file F | MSG...]`: sends the file (or
// the messages, one per line, or stdin), and exits 0 only when the receiver
// acknowledged everything and verified the SHA-256.
int RunReliableSend(const std::vector<std::string>& args);

// "[#######-------]  48%  12.1 MB/s  rtt 1.2ms  lost 0.5%" for a progress
// line; `total` < 0 when unknown (no bar, no percent).
std::string ProgressLine(uint64_t done, int64_t total, double bytes_per_second,
                         double rtt_ms, double loss_percent);

// "12.3 MB" / "512 B" style sizes and "6.1 MB/s" rates (decimal units).
std::string HumanBytes(double bytes);

}  // namespace udpmsg::cli

#endif  // UDPMSG_CLI_TRANSFER_H_
