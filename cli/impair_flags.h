// The impairment the shared flags describe, for `udpmsg impair` and for the
// in-process proxy path of `udpmsg bench bulk|latency`.
#ifndef UDPMSG_CLI_IMPAIR_FLAGS_H_
#define UDPMSG_CLI_IMPAIR_FLAGS_H_

#include "absl/status/statusor.h"
#include "impairment/model.h"

namespace udpmsg::cli {

// --loss, --burst, --delay, --jitter, --reorder, --reorder_delay, --dup,
// --corrupt, --rate, --queue_limit and --seed as one validated config.
// InvalidArgument naming the flag and its value otherwise.
absl::StatusOr<impairment::ImpairmentConfig> ImpairmentFromFlags();

}  // namespace udpmsg::cli

#endif  // UDPMSG_CLI_IMPAIR_FLAGS_H_
