// udpmsg showip HOST: every address the resolver gives for HOST.
#include <cstdio>

#include "absl/flags/flag.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/flags.h"
#include "udpmsg/udpmsg.h"

namespace udpmsg::cli {

int RunShowIp(const Args& args) {
  if (args.size() != 1) return UsageError("showip", "expects exactly one HOST");
  const AddressFamily family = FamilyFromFlags();
  absl::StatusOr<std::vector<SocketAddress>> addresses =
      Resolve(args[0], "", family, SocketType::kStream);
  if (!addresses.ok()) return Fail(addresses.status());
  std::printf("IP addresses for %s:\n", args[0].c_str());
  for (const SocketAddress& address : *addresses) {
    std::printf("  %s: %s\n", std::string(FamilyName(address.family())).c_str(),
                address.IpString().c_str());
  }
  return kExitOk;
}

}  // namespace udpmsg::cli
