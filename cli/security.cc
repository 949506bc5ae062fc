// udpmsg keygen, and the --encrypt / --key-file flags.
#include "cli/security.h"

#include <sodium.h>

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/flags.h"

namespace udpmsg::cli {

absl::Status ApplySecurityFlags(HostOptions* options) {
  options->encrypt = absl::GetFlag(FLAGS_encrypt);
  const std::string path = absl::GetFlag(FLAGS_key_file);
  if (path.empty()) return absl::OkStatus();
  if (sodium_init() < 0) return absl::InternalError("libsodium failed to initialise");
  absl::StatusOr<RoomKey> key = ReadRoomKeyFile(path);
  if (!key.ok()) return key.status();
  options->room_key = *key;
  options->encrypt = true;
  return absl::OkStatus();
}

// udpmsg keygen: a fresh random room key (64 hex digits) on stdout.
int RunKeygen(const Args& args) {
  if (!args.empty()) return UsageError("keygen", "takes no arguments (redirect stdout to a file)");
  if (sodium_init() < 0) return Fail(absl::InternalError("libsodium failed to initialise"));
  std::fputs(GenerateRoomKeyFileContents().c_str(), stdout);
  return kExitOk;
}

}  // namespace udpmsg::cli
