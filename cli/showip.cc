// udpmsg showip HOST: every address the resolver gives for HOST.
#include <cstdio>

#include "absl/flags/flag.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/flags.h"
#include "udp/resolve.h"

namespace udpmsg::cli {

int RunShowIp(const Args& args) {
  if (args.size() != 1) return UsageError("showip", "expects exactly one HOST");
  const udp::AddressFamily family = FamilyFromFlags();
  absl::StatusOr<std::vector<udp::SocketAddress>> addresses =
      udp::Resolve(args[0], "", family, udp::SocketType::kStream);
  if (!addresses.ok()) return Fail(addresses.status());
  std::printf("IP addresses for %s:\n", args[0].c_str());
  for (const udp::SocketAddress& address : *addresses) {
    std::printf("  %s: %s\n", std::string(udp::FamilyName(address.family())).c_str(),
                address.IpString().c_str());
  }
  return kExitOk;
}

}  // namespace udpmsg::cli
