// udpmsg's command line: parses argv against cli/command_table.h, prints help
// and the version, and runs the command.
//
// Flags are parsed here, not by absl::ParseCommandLine, so that every problem
// is one line in udpmsg's own words and exit code (Abseil prints "ERROR: ..."
// and exits 1, and warns "RAW: Did you really mean ..." for `--out -`). The
// flags themselves are still Abseil flags, set through
// absl::CommandLineFlag::ParseFrom.
//
//   udpmsg [--help | -h | --version | -V]
//   udpmsg help [COMMAND [MODE]]
//   udpmsg COMMAND [MODE] [ARGS...] [FLAGS...]     (flags anywhere, `--` ends them)
//
// A flag is --name=value, --name value (not for bools), --name / --noname for
// bools; dashes in the name work as underscores (--key-file); -name works as
// --name. A command accepts only the flags its mode lists in the table: an
// unknown flag, another command's flag, a missing or malformed value is a
// usage error (exit 2) naming the command; unknown commands, modes and flags
// get a did-you-mean suggestion. Abseil's own flags (--flagfile, --helpon,
// ...) are not accepted; `--helpfull` lists every udpmsg flag in full with
// the commands that take it.
#ifndef UDPMSG_CLI_COMMAND_LINE_H_
#define UDPMSG_CLI_COMMAND_LINE_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "cli/command_table.h"

namespace udpmsg::cli {

// Parses argv, then prints help or the version, reports a usage error, or
// runs the command; returns the process's exit code.
int RunCommandLine(int argc, char** argv);

// `udpmsg --help`: what the commands are and how to get more.
std::string GlobalHelp();

// `udpmsg COMMAND --help`: its synopsis and, per mode, the flags it accepts.
// `only` (one of command.modes) limits it to that mode.
std::string CommandHelp(const CommandSpec& command, const CommandMode* only = nullptr);

// The candidate nearest to `word` by edit distance (insertions, deletions,
// substitutions and swaps of neighbours), when it is near enough to be a
// typo of it; empty otherwise.
std::string Suggest(absl::string_view word, const std::vector<std::string>& candidates);

}  // namespace udpmsg::cli

#endif  // UDPMSG_CLI_COMMAND_LINE_H_
