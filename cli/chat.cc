// Placeholder until chat lands: keeps //cli:udpmsg building.
#include <cstdio>

#include "cli/commands.h"
#include "cli/common.h"

namespace udpmsg::cli {

int RunChat(const Args& args) {
  (void)args;
  return UsageError("chat", "not implemented yet");
}

}  // namespace udpmsg::cli
