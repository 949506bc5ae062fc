#include "cli/command_line.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "cli/common.h"
#include "cli/version.h"
#include "udpmsg/text.h"

namespace udpmsg::cli {
namespace {

// One flag on the command line.
struct FlagArg {
  std::string text;                       // as typed, up to any '=': "--key-fiel"
  std::string name;                       // dashes as underscores, without the dashes: "key_fiel"
  std::string value;                      // as typed, or "true"/"false" for a bare bool
  absl::CommandLineFlag* flag = nullptr;  // nullptr: no such flag
  bool missing_value = false;             // a non-bool flag last on the line
  bool negated_with_value = false;        // --noFLAG=value
};

struct CommandLine {
  std::vector<std::string> positional;
  std::vector<FlagArg> flags;
  bool help = false;      // --help, -h
  bool version = false;   // --version, -V
  bool helpfull = false;  // --helpfull: Abseil's list of every flag
};

bool IsBool(const absl::CommandLineFlag& flag) { return flag.IsOfType<bool>(); }

CommandLine Tokenize(int argc, char** argv) {
  CommandLine line;
  bool flags_ended = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (flags_ended || arg.size() < 2 || arg[0] != '-') {
      line.positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_ended = true;
      continue;
    }
    if (arg == "--help" || arg == "-h") {
      line.help = true;
      continue;
    }
    if (arg == "--version" || arg == "-V") {
      line.version = true;
      continue;
    }
    if (arg == "--helpfull") {
      line.helpfull = true;
      continue;
    }
    const size_t dashes = arg[1] == '-' ? 2 : 1;
    const size_t equals = arg.find('=');
    FlagArg f;
    f.text = arg.substr(0, equals);
    f.name = absl::StrReplaceAll(f.text.substr(dashes), {{"-", "_"}});
    const bool has_value = equals != std::string::npos;
    if (has_value) f.value = arg.substr(equals + 1);
    f.flag = absl::FindCommandLineFlag(f.name);
    bool negated = false;
    // --noFLAG, and --no-FLAG (--no_FLAG) as its dashed spelling.
    for (absl::string_view no : {"no_", "no"}) {
      if (f.flag != nullptr || !absl::StartsWith(f.name, no)) continue;
      absl::CommandLineFlag* base = absl::FindCommandLineFlag(f.name.substr(no.size()));
      if (base != nullptr && IsBool(*base)) {
        f.flag = base;
        f.name = f.name.substr(no.size());
        negated = true;
      }
    }
    if (f.flag != nullptr && IsBool(*f.flag)) {
      if (negated && has_value) f.negated_with_value = true;
      if (!has_value) f.value = negated ? "false" : "true";
    } else if (f.flag != nullptr && !has_value) {
      // As getopt does, the next argument is the value whatever it is:
      // `--out -`, `--bench_server_args "--announce_limit=0"`.
      if (i + 1 < argc) {
        f.value = argv[++i];
      } else {
        f.missing_value = true;
      }
    }
    line.flags.push_back(std::move(f));
  }
  return line;
}

// Prints "udpmsg[ TITLE]: MESSAGE" (escaped) to stderr; kExitUsage.
int ArgumentError(absl::string_view title, absl::string_view message) {
  std::fprintf(stderr, "udpmsg%s%s: %s\n", title.empty() ? "" : " ", Displayable(title).c_str(),
               Displayable(message).c_str());
  std::fflush(stderr);
  return kExitUsage;
}

// Optimal string alignment distance: insertions, deletions, substitutions
// and transpositions of neighbours each cost 1.
size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

std::vector<std::string> ModeNames(const CommandSpec& command) {
  std::vector<std::string> names;
  for (const CommandMode& m : command.modes) names.push_back(m.name);
  return names;
}

int UnknownCommand(absl::string_view name) {
  std::vector<std::string> names;
  for (const CommandSpec& c : Commands()) names.push_back(c.name);
  names.push_back("help");
  const std::string near = Suggest(name, names);
  return ArgumentError(
      "", absl::StrCat("unknown command \"", name, "\"",
                       near.empty() ? " (see udpmsg --help)"
                                    : absl::StrCat(" (did you mean \"", near, "\"?)")));
}

int UnknownMode(const CommandSpec& command, absl::string_view name) {
  const std::vector<std::string> modes = ModeNames(command);
  const std::string near = Suggest(name, modes);
  return ArgumentError(
      command.name,
      absl::StrCat("unknown mode \"", name, "\"",
                   near.empty() ? absl::StrCat(" (expects ", absl::StrJoin(modes, ", "), ")")
                                : absl::StrCat(" (did you mean \"", near, "\"?)")));
}

const CommandMode* FindMode(const CommandSpec& command, absl::string_view name) {
  for (const CommandMode& m : command.modes) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

bool Lists(const CommandMode& mode, absl::string_view flag) {
  for (const FlagUse& f : mode.flags) {
    if (f.name == flag) return true;
  }
  return false;
}

// Whether `mode` lets `flag` through: listed, or refused by its code.
bool Accepts(const CommandMode& mode, absl::string_view flag) {
  return Lists(mode, flag) ||
         std::find(mode.refused.begin(), mode.refused.end(), flag) != mode.refused.end();
}

// Every mode of every command that lists `flag`, as help names them.
std::vector<std::string> ModesTaking(absl::string_view flag) {
  std::vector<std::string> titles;
  for (const CommandSpec& c : Commands()) {
    for (const CommandMode& m : c.modes) {
      if (Lists(m, flag)) titles.push_back(ModeTitle(c, m));
    }
  }
  return titles;
}

// "a", "a and b", "a, b and c".
std::string Enumerate(const std::vector<std::string>& items) {
  if (items.size() <= 1) return absl::StrJoin(items, "");
  return absl::StrCat(absl::StrJoin(items.begin(), items.end() - 1, ", "), " and ", items.back());
}

bool IsWholeNumber(absl::string_view s) {
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](char c) { return absl::ascii_isdigit(c); });
}

// What is wrong with `value` for `flag`, which rejected it.
std::string Malformed(const absl::CommandLineFlag& flag, absl::string_view value,
                      const std::string& abseil_error) {
  if (IsBool(flag)) return "not true or false";
  if (flag.IsOfType<int>() || flag.IsOfType<int64_t>() || flag.IsOfType<uint64_t>() ||
      flag.IsOfType<int32_t>() || flag.IsOfType<uint32_t>() || flag.IsOfType<uint16_t>()) {
    return IsWholeNumber(value) ? "out of range" : "not a whole number";
  }
  if (flag.IsOfType<double>() || flag.IsOfType<float>()) return "not a number";
  return abseil_error;
}

// Checks the flags against `mode` (every mode of `command` when it is not
// known) and sets them. `title` names the command (and an argument's mode)
// in errors. kExitOk, or the usage error's exit code.
int SetFlags(const CommandLine& line, const CommandSpec& command, const CommandMode* mode,
             const std::string& title) {
  const std::string scope = mode != nullptr ? ModeTitle(command, *mode) : command.name;
  const auto allowed = [&](absl::string_view name) {
    if (mode != nullptr) return Accepts(*mode, name);
    for (const CommandMode& m : command.modes) {
      if (Accepts(m, name)) return true;
    }
    return false;
  };
  for (const FlagArg& f : line.flags) {
    const std::vector<std::string> takers = ModesTaking(f.name);
    if (f.flag == nullptr || takers.empty()) {
      std::vector<std::string> names;
      for (const CommandMode& m : command.modes) {
        if (mode != nullptr && &m != mode) continue;
        for (const FlagUse& u : m.flags) names.push_back(u.name);
      }
      std::string near = Suggest(f.name, names);
      // In the user's spelling: --key-file for --key-fiel.
      if (f.text.find('-', 2) != std::string::npos) {
        absl::StrReplaceAll({{"_", "-"}}, &near);
      }
      return ArgumentError(
          title, absl::StrCat("unknown flag ", f.text,
                              near.empty() ? absl::StrCat(" (see udpmsg ", title, " --help)")
                                           : absl::StrCat(" (did you mean --", near, "?)")));
    }
    if (!allowed(f.name)) {
      return ArgumentError(
          title, absl::StrCat(f.text, " is not a flag of ", scope, " (", Enumerate(takers),
                              takers.size() == 1 ? " takes it)" : " take it)"));
    }
    if (f.missing_value) return ArgumentError(title, absl::StrCat(f.text, " needs a value"));
    if (f.negated_with_value) {
      return ArgumentError(title, absl::StrCat(f.text, " takes no value"));
    }
    std::string error;
    if (!f.flag->ParseFrom(f.value, &error)) {
      return ArgumentError(
          title, absl::StrCat(f.text, " \"", f.value, "\": ", Malformed(*f.flag, f.value, error)));
    }
  }
  return kExitOk;
}

// The default help shows for a flag: empty for none.
std::string DefaultText(const FlagUse& use, const absl::CommandLineFlag* flag) {
  if (use.default_text == "-") return "";
  if (!use.default_text.empty()) return use.default_text;
  if (flag == nullptr) return "";
  const std::string d = flag->DefaultValue();
  if (d.empty() || (IsBool(*flag) && d == "false")) return "";
  return d;
}

std::string FlagLeft(const FlagUse& use) {
  return absl::StrCat("  --", use.name, use.value.empty() ? "" : " ", use.value);
}

std::string FlagLine(const FlagUse& use, size_t column) {
  const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(use.name);
  std::string line = FlagLeft(use);
  line.resize(std::max(column, line.size() + 2), ' ');
  std::string help = use.help;
  if (help.empty() && flag != nullptr) help = flag->Help();
  absl::StrAppend(&line, help);
  const std::string d = DefaultText(use, flag);
  if (d == "required") {
    absl::StrAppend(&line, " (required)");
  } else if (!d.empty()) {
    absl::StrAppend(&line, " (default ", d, ")");
  }
  return line + "\n";
}

// `text` as lines of at most `width` columns (longer words alone), each
// after `indent`.
std::string Wrap(absl::string_view text, absl::string_view indent, size_t width) {
  std::string out;
  std::string line;
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (!line.empty() && indent.size() + line.size() + 1 + word.size() > width) {
      absl::StrAppend(&out, indent, line, "\n");
      line.clear();
    }
    absl::StrAppend(&line, line.empty() ? "" : " ", word);
  }
  if (!line.empty()) absl::StrAppend(&out, indent, line, "\n");
  return out;
}

// `udpmsg --helpfull`: every udpmsg flag with its full help text, its
// default and the modes that take it.
std::string FullFlagList() {
  std::vector<std::pair<std::string, const absl::CommandLineFlag*>> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    // Abseil's own flags (--flagfile, ...) are not udpmsg's: it rejects them.
    if (absl::StartsWith(flag->Filename(), "cli/")) flags.emplace_back(name, flag);
  }
  std::sort(flags.begin(), flags.end());
  std::string text =
      "Every udpmsg flag, with the commands that take it (udpmsg COMMAND --help lists one\n"
      "command's):\n";
  for (const auto& [name, flag] : flags) {
    const std::string d = flag->DefaultValue();
    absl::StrAppend(
        &text, "\n  --", name, d.empty() ? "" : absl::StrCat(" (default ", d, ")"), "\n",
        Wrap(flag->Help(), "      ", 80),
        Wrap(absl::StrCat("taken by: ", absl::StrJoin(ModesTaking(name), ", ")), "      ", 80));
  }
  return text;
}

constexpr char kFlagSyntax[] =
    "Flags go anywhere: --name=value or --name value; --name or --noname for on/off;\n"
    "--key-file is --key_file. docs/commands.md has every command in full.\n";

}  // namespace

std::string Suggest(absl::string_view word, const std::vector<std::string>& candidates) {
  const std::string lower = absl::AsciiStrToLower(word);
  std::string best;
  size_t best_distance = 0;
  for (const std::string& c : candidates) {
    const size_t d = EditDistance(lower, c);
    if (best.empty() || d < best_distance) {
      best = c;
      best_distance = d;
    }
  }
  const size_t limit = word.size() >= 6 ? 2 : 1;
  if (best.empty() || best == word || best_distance > limit) return "";
  return best;
}

std::string GlobalHelp() {
  std::string text =
      absl::StrCat("udpmsg ", kVersion,
                   ": messages and files over UDP, chat, link impairment, benchmarks\n\n"
                   "usage: udpmsg COMMAND [ARGS] [FLAGS]\n\ncommands:\n");
  const std::vector<std::pair<std::string, std::string>> rows = [] {
    std::vector<std::pair<std::string, std::string>> r;
    for (const CommandSpec& c : Commands()) r.emplace_back(c.overview, c.summary);
    r.emplace_back("help [COMMAND]", "this text, or one command's usage and flags");
    return r;
  }();
  size_t column = 0;
  for (const auto& [left, right] : rows) column = std::max(column, left.size());
  for (const auto& [left, right] : rows) {
    std::string line = "  " + left;
    line.resize(column + 4, ' ');
    absl::StrAppend(&text, line, right, "\n");
  }
  absl::StrAppend(&text,
                  "\nudpmsg COMMAND --help (or udpmsg help COMMAND) shows a command's usage and "
                  "flags.\n"
                  "udpmsg --version prints the version. Exit codes: 0 success, 1 runtime "
                  "failure,\n"
                  "2 usage error, 128+N stopped by signal N.\n");
  return text;
}

std::string CommandHelp(const CommandSpec& command, const CommandMode* only) {
  std::vector<const CommandMode*> modes;
  for (const CommandMode& m : command.modes) {
    if (only == nullptr || only == &m) modes.push_back(&m);
  }
  std::string text;
  bool first = true;
  for (const CommandMode* m : modes) {
    for (const std::string& s : m->synopsis) {
      absl::StrAppend(&text, first ? "usage: " : "       ", "udpmsg ", s, "\n");
      first = false;
    }
  }
  size_t column = 0;
  for (const CommandMode* m : modes) {
    for (const FlagUse& f : m->flags) column = std::max(column, FlagLeft(f).size() + 2);
  }
  for (const CommandMode* m : modes) {
    absl::StrAppend(&text, "\n", ModeTitle(command, *m), ": ", m->summary, "\n");
    for (const FlagUse& f : m->flags) absl::StrAppend(&text, FlagLine(f, column));
  }
  absl::StrAppend(&text, "\n", kFlagSyntax);
  return text;
}

int RunCommandLine(int argc, char** argv) {
  const CommandLine line = Tokenize(argc, argv);
  if (line.helpfull) {
    std::fputs(FullFlagList().c_str(), stdout);
    return kExitOk;
  }
  if (line.version) {
    std::printf("udpmsg %s%s\n", kVersion, kBuildNote);
    return kExitOk;
  }
  const bool help_command = !line.positional.empty() && line.positional[0] == "help";
  if (line.help || help_command) {
    const std::vector<std::string> topic(line.positional.begin() + (help_command ? 1 : 0),
                                         line.positional.end());
    if (topic.empty() || topic[0] == "help") {
      std::fputs(GlobalHelp().c_str(), stdout);
      return kExitOk;
    }
    const CommandSpec* command = FindCommand(topic[0]);
    if (command == nullptr) return UnknownCommand(topic[0]);
    const CommandMode* only = nullptr;
    if (command->modes_by_argument && topic.size() > 1) {
      only = FindMode(*command, topic[1]);
      if (only == nullptr) return UnknownMode(*command, topic[1]);
    } else if (!command->mode_flag.empty()) {
      for (const FlagArg& f : line.flags) {
        if (f.name == command->mode_flag) only = &command->modes[f.value == "true" ? 1 : 0];
      }
    }
    std::fputs(CommandHelp(*command, only).c_str(), stdout);
    return kExitOk;
  }
  if (line.positional.empty()) {
    std::fputs(GlobalHelp().c_str(), stderr);
    return kExitUsage;
  }
  const CommandSpec* command = FindCommand(line.positional[0]);
  if (command == nullptr) return UnknownCommand(line.positional[0]);

  // The mode, where an argument names it; flags are checked against it, or
  // against every mode of the command until a flag picks one.
  const CommandMode* mode = nullptr;
  std::string title = command->name;
  if (command->modes.size() == 1) {
    mode = &command->modes[0];
  } else if (command->modes_by_argument && line.positional.size() > 1) {
    mode = FindMode(*command, line.positional[1]);
    if (mode == nullptr) return UnknownMode(*command, line.positional[1]);
    title = ModeTitle(*command, *mode);
  }
  if (mode == nullptr && !command->mode_flag.empty()) {
    // The mode flag's value picks the mode (a malformed value is reported
    // below, with the default mode).
    absl::CommandLineFlag* selector = absl::FindCommandLineFlag(command->mode_flag);
    bool on = false;
    for (const FlagArg& f : line.flags) {
      std::string error;
      if (f.flag == selector && selector->ParseFrom(f.value, &error)) {
        on = selector->CurrentValue() == "true";
      }
    }
    mode = &command->modes[on ? 1 : 0];
  }
  if (int code = SetFlags(line, *command, mode, title); code != kExitOk) return code;
  return command->run(Args(line.positional.begin() + 1, line.positional.end()));
}

}  // namespace udpmsg::cli
