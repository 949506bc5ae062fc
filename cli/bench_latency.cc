// Placeholder until bench latency lands.
#include "cli/bench.h"

namespace udpmsg::cli {

absl::Status RunBenchLatency(const std::vector<std::string>& args) {
  (void)args;
  return absl::UnimplementedError("bench latency is not implemented yet");
}

}  // namespace udpmsg::cli
