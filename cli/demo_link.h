// The impaired-link part of `udpmsg demo` (see demo_link.cc).
#ifndef UDPMSG_CLI_DEMO_LINK_H_
#define UDPMSG_CLI_DEMO_LINK_H_

#include <cstdint>

#include "absl/status/status.h"

namespace udpmsg::cli {

// Runs raw UDP, a chat (a chat::ServerCore and two chat::ClientCores), the
// four delivery modes and a 2 MiB transfer (transfer::Sender to a
// transfer::Receiver) through an in-process impairment proxy (10% loss,
// jitter, reorder, dup, seeded with `seed`) on loopback, and prints the
// comparison. DATA_LOSS if a reliable mode lost, duplicated or reordered
// anything, if a chat member missed a line, saw one twice or saw another
// order than the other member, or if the receiver did not verify the
// transfer; DEADLINE_EXCEEDED if a step takes over a minute; UNAVAILABLE if a
// connection closed; socket errors as they come.
absl::Status RunLinkDemo(uint64_t seed);

}  // namespace udpmsg::cli

#endif  // UDPMSG_CLI_DEMO_LINK_H_
