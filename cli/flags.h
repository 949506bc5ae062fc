// Flags shared by several udpmsg subcommands. Defined once here because
// Abseil flags are process-wide; each subcommand reads the ones it documents.
#ifndef UDPMSG_CLI_FLAGS_H_
#define UDPMSG_CLI_FLAGS_H_

#include <cstdint>
#include <string>

#include "absl/flags/declare.h"

ABSL_DECLARE_FLAG(int, port);
ABSL_DECLARE_FLAG(std::string, bind);
ABSL_DECLARE_FLAG(int64_t, count);
ABSL_DECLARE_FLAG(std::string, message);
ABSL_DECLARE_FLAG(bool, ipv4);
ABSL_DECLARE_FLAG(bool, ipv6);

#endif  // UDPMSG_CLI_FLAGS_H_
