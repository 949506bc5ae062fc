// udpmsg showip HOST: every address the resolver gives for HOST.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/flags.h"
#include "udpmsg/udpmsg.h"

namespace udpmsg::cli {

int RunShowIp(const Args& args) {
  if (args.size() != 1) return UsageError("showip", "expects exactly one HOST");
  // "[::1]", as in [::1]:PORT elsewhere, is the literal ::1.
  std::string host = args[0];
  if (!host.empty() && host.front() == '[') {
    const size_t close = host.find(']');
    if (close == std::string::npos) {
      return UsageError("showip", absl::StrCat("missing ']' in \"", host, "\""));
    }
    if (close == 1) return UsageError("showip", "empty host in \"[]\"");
    if (close + 1 != host.size()) {
      return UsageError("showip",
                        absl::StrCat("expects a HOST without a port, not \"", host, "\""));
    }
    host = host.substr(1, close - 1);
  }
  const AddressFamily family = FamilyFromFlags();
  absl::StatusOr<std::vector<SocketAddress>> addresses =
      Resolve(host, "", family, SocketType::kStream);
  if (!addresses.ok()) return Fail(addresses.status());
  std::printf("IP addresses for %s:\n", args[0].c_str());
  for (const SocketAddress& address : *addresses) {
    std::printf("  %s: %s\n", std::string(FamilyName(address.family())).c_str(),
                address.IpString().c_str());
  }
  return kExitOk;
}

}  // namespace udpmsg::cli
