// The udpmsg commands, their modes, and the flags each mode accepts: the one
// table that the argument parser (cli/command_line.h) checks a command line
// against and that `udpmsg COMMAND --help` prints. A flag a mode's code reads
// belongs in that mode's list and nowhere else; tests/cli/command_table_test
// checks that every listed flag is registered and every registered udpmsg
// flag is listed somewhere.
//
// Usage:
//   const CommandSpec* send = FindCommand("send");
//   const CommandMode& reliable = send->modes[1];  // selected by --reliable
//   for (const FlagUse& f : reliable.flags) ...
#ifndef UDPMSG_CLI_COMMAND_TABLE_H_
#define UDPMSG_CLI_COMMAND_TABLE_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "cli/commands.h"

namespace udpmsg::cli {

// One flag as one mode uses it.
struct FlagUse {
  std::string name;   // the registered (Abseil) name: "key_file"
  std::string value;  // the placeholder help shows: "FILE"; empty for a bool
  // One line for help; empty: the flag's own help text (its "command: "
  // prefix removed).
  std::string help;
  // What help shows as the default: empty takes the flag's default (hidden
  // when it is empty or a bool's false); "-" shows none.
  std::string default_text;
};

// A way to run a command: `chat serve`, `send --reliable`, or a command's
// only mode.
struct CommandMode {
  // The argument that selects it ("serve"); for CommandSpec::mode_flag the
  // flag ("--reliable"), empty for the default mode; empty for a command's
  // only mode.
  std::string name;
  std::vector<std::string> synopsis;  // after "udpmsg ", one form per line
  std::string summary;                // one line
  std::vector<FlagUse> flags;
  // Flags the mode does not take but that its code refuses with an
  // explanation of its own (bench bulk --loss: "bench takes its loss rates
  // from --bench_loss ..."): parsed and passed through, never in help.
  std::vector<std::string> refused = {};
};

struct CommandSpec {
  std::string name;
  std::string overview;  // the left column of `udpmsg --help`: "chat serve|join"
  std::string summary;   // the right column, one line
  // How the mode is chosen: by the first argument after the command
  // (argument modes), or by the bool flag `mode_flag` (modes[0] when false,
  // modes[1] when true), or there is one mode.
  bool modes_by_argument = false;
  std::string mode_flag;
  std::vector<CommandMode> modes;
  int (*run)(const Args&) = nullptr;
};

// Every command, in the order `udpmsg --help` lists them.
const std::vector<CommandSpec>& Commands();

// The command called `name`; nullptr when there is none.
const CommandSpec* FindCommand(absl::string_view name);

// "chat serve", "send --reliable", "listen": how help and errors name a mode.
std::string ModeTitle(const CommandSpec& command, const CommandMode& mode);

}  // namespace udpmsg::cli

#endif  // UDPMSG_CLI_COMMAND_TABLE_H_
