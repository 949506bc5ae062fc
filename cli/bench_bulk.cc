// Placeholder until bench bulk lands.
#include "cli/bench.h"

namespace udpmsg::cli {

absl::Status RunBenchBulk(const std::vector<std::string>& args) {
  (void)args;
  return absl::UnimplementedError("bench bulk is not implemented yet");
}

}  // namespace udpmsg::cli
