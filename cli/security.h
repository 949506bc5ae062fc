// The encryption flags shared by send/recv --reliable and chat, and
// `udpmsg keygen`.
#ifndef UDPMSG_CLI_SECURITY_H_
#define UDPMSG_CLI_SECURITY_H_

#include "absl/status/status.h"
#include "udpmsg/udpmsg.h"

namespace udpmsg::cli {

// Applies --encrypt and --key-file to `options` (encrypt, room_key). The key
// file's errors name the path (NOT_FOUND, PERMISSION_DENIED, INVALID_ARGUMENT).
absl::Status ApplySecurityFlags(HostOptions* options);

}  // namespace udpmsg::cli

#endif  // UDPMSG_CLI_SECURITY_H_
