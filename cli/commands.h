// Entry points of the udpmsg subcommands. Each takes the positional
// arguments after the subcommand name (flags are already parsed) and returns
// the process exit code (see common.h).
#ifndef UDPMSG_CLI_COMMANDS_H_
#define UDPMSG_CLI_COMMANDS_H_

#include <string>
#include <vector>

namespace udpmsg::cli {

using Args = std::vector<std::string>;

int RunShowIp(const Args& args);
int RunSend(const Args& args);
int RunListen(const Args& args);
int RunTcp(const Args& args);
int RunDemo(const Args& args);
int RunRecv(const Args& args);
int RunImpair(const Args& args);
int RunChat(const Args& args);
int RunBench(const Args& args);
int RunKeygen(const Args& args);
int RunRendezvous(const Args& args);

}  // namespace udpmsg::cli

#endif  // UDPMSG_CLI_COMMANDS_H_
