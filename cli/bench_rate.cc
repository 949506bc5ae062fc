// Placeholder until bench rate lands.
#include "cli/bench.h"

namespace udpmsg::cli {

absl::Status RunBenchRate(const std::vector<std::string>& args) {
  (void)args;
  return absl::UnimplementedError("bench rate is not implemented yet");
}

}  // namespace udpmsg::cli
