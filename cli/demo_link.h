// The impaired-link part of `udpmsg demo` (see demo_link.cc).
#ifndef UDPMSG_CLI_DEMO_LINK_H_
#define UDPMSG_CLI_DEMO_LINK_H_

#include <cstdint>

#include "absl/status/status.h"

namespace udpmsg::cli {

// Runs raw UDP, the four delivery modes, chat lines and a 2 MiB transfer
// through an in-process impairment proxy (10% loss, jitter, reorder, dup,
// seeded with `seed`) on loopback, and prints the comparison. DATA_LOSS if a
// reliable mode lost, duplicated or reordered anything.
absl::Status RunLinkDemo(uint64_t seed);

}  // namespace udpmsg::cli

#endif  // UDPMSG_CLI_DEMO_LINK_H_
