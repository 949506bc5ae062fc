// udpmsg's help, version and argument errors, run as a user would: each
// help form, where it goes (stdout or stderr), the exit code (0 for help and
// version, 2 for usage errors), did-you-mean for commands, modes and flags,
// malformed values, and that no Abseil "ERROR:" or "RAW:" line ever reaches
// the user.
#include <csignal>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/cli/subprocess.h"

namespace udpmsg::testing {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr absl::Duration kTimeout = absl::Seconds(10);

using Result = RunResult;

// Nothing of Abseil's own error reporting leaks through.
void ExpectNoAbseilLines(const Result& r) {
  EXPECT_THAT(r.err, Not(HasSubstr("ERROR:")));
  EXPECT_THAT(r.err, Not(HasSubstr("RAW:")));
  EXPECT_THAT(r.err, Not(HasSubstr("No flags matched")));
  EXPECT_THAT(r.out, Not(HasSubstr("No flags matched")));
}

// A usage error: one line on stderr, nothing on stdout, exit 2.
std::string ExpectUsageError(const std::vector<std::string>& args) {
  SCOPED_TRACE(absl::StrJoin(args, " "));
  const Result r = RunUdpmsg(args);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(r.out, "");
  ExpectNoAbseilLines(r);
  const std::vector<std::string> lines = Lines(r.err);
  EXPECT_EQ(lines.size(), 1u) << r.err;
  return lines.empty() ? "" : lines[0];
}

TEST(HelpTest, GlobalHelpFormsPrintTheCommandListToStdoutAndExitZero) {
  const std::vector<std::vector<std::string>> forms = {{"--help"}, {"-h"}, {"help"}};
  std::string first;
  for (const std::vector<std::string>& form : forms) {
    SCOPED_TRACE(absl::StrJoin(form, " "));
    const Result r = RunUdpmsg(form);
    EXPECT_EQ(r.code, 0);
    EXPECT_EQ(r.err, "");
    ExpectNoAbseilLines(r);
    EXPECT_THAT(r.out, HasSubstr("usage: udpmsg COMMAND"));
    for (const char* command : {"showip", "listen", "send", "recv", "chat", "tcp", "impair",
                                "keygen", "bench", "demo", "help"}) {
      EXPECT_THAT(r.out, HasSubstr(absl::StrCat("\n  ", command, " "))) << command;
    }
    EXPECT_THAT(r.out, HasSubstr("udpmsg COMMAND --help"));
    EXPECT_THAT(r.out, Not(HasSubstr("--helpfull")));
    if (first.empty()) first = r.out;
    EXPECT_EQ(r.out, first);
  }
}

TEST(HelpTest, CommandHelpFormsAgreeAndListOnlyThatCommandsFlags) {
  const Result a = RunUdpmsg({"send", "--help"});
  const Result b = RunUdpmsg({"help", "send"});
  const Result c = RunUdpmsg({"send", "-h"});
  for (const Result* r : {&a, &b, &c}) {
    EXPECT_EQ(r->code, 0);
    EXPECT_EQ(r->err, "");
    ExpectNoAbseilLines(*r);
  }
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(a.out, c.out);
  EXPECT_THAT(a.out, StartsWith("usage: udpmsg send HOST:PORT"));
  EXPECT_THAT(a.out, HasSubstr("udpmsg send --reliable HOST:PORT"));
  for (const char* flag : {"--reliable", "--file FILE", "--timeout D", "--cc", "--progress",
                           "--encrypt", "--key_file FILE", "--server_id", "--known_hosts"}) {
    EXPECT_THAT(a.out, HasSubstr(absl::StrCat("  ", flag))) << flag;
  }
  // Other commands' flags, and Abseil's, are not there.
  for (const char* flag : {"--port", "--nick", "--loss", "--bench_", "--identity", "--out",
                           "--helpfull", "--flagfile", "--max_members"}) {
    EXPECT_THAT(a.out, Not(HasSubstr(flag))) << flag;
  }
}

TEST(HelpTest, EachFlagLineShowsValueDefaultAndOneLineDescription) {
  const Result r = RunUdpmsg({"listen", "--help"});
  EXPECT_EQ(r.code, 0);
  std::vector<std::string> flag_lines;
  for (const std::string& line : Lines(r.out)) {
    if (absl::StartsWith(line, "  --")) flag_lines.push_back(line);
  }
  ASSERT_EQ(flag_lines.size(), 3u) << r.out;
  EXPECT_THAT(flag_lines[0], AllOf(StartsWith("  --port P "), HasSubstr("required")));
  EXPECT_THAT(flag_lines[1], StartsWith("  --bind ADDR "));
  EXPECT_THAT(flag_lines[2], AllOf(StartsWith("  --count N "), HasSubstr("0: run until")));
  const Result recv = RunUdpmsg({"recv", "--help"});
  EXPECT_THAT(recv.out,
              ::testing::ContainsRegex("\n  --timeout D +give up [^\n]*\\(default 10s\\)\n"));
}

TEST(HelpTest, ModeHelpShowsThatModeOnly) {
  const Result serve = RunUdpmsg({"chat", "serve", "--help"});
  EXPECT_EQ(serve.code, 0);
  EXPECT_THAT(serve.out, HasSubstr("--max_members N"));
  EXPECT_THAT(serve.out, HasSubstr("--identity FILE"));
  EXPECT_THAT(serve.out, Not(HasSubstr("--nick")));
  const Result join = RunUdpmsg({"help", "chat", "join"});
  EXPECT_EQ(join.code, 0);
  EXPECT_THAT(join.out, HasSubstr("--nick NAME"));
  EXPECT_THAT(join.out, Not(HasSubstr("--max_members")));
  const Result both = RunUdpmsg({"chat", "--help"});
  EXPECT_EQ(both.code, 0);
  EXPECT_THAT(both.out, AllOf(HasSubstr("--nick NAME"), HasSubstr("--max_members N")));
  const Result bulk = RunUdpmsg({"bench", "bulk", "-h"});
  EXPECT_EQ(bulk.code, 0);
  EXPECT_THAT(bulk.out, HasSubstr("--bench_transports"));
  EXPECT_THAT(bulk.out, Not(HasSubstr("--bench_connections")));
  const Result reliable = RunUdpmsg({"send", "--reliable", "--help"});
  EXPECT_EQ(reliable.code, 0);
  EXPECT_THAT(reliable.out, StartsWith("usage: udpmsg send --reliable HOST:PORT"));
}

TEST(HelpTest, EveryCommandHasHelp) {
  for (const char* command :
       {"showip", "listen", "send", "recv", "chat", "tcp", "impair", "keygen", "bench", "demo"}) {
    SCOPED_TRACE(command);
    const Result r = RunUdpmsg({"help", command});
    EXPECT_EQ(r.code, 0);
    EXPECT_THAT(r.out, StartsWith(absl::StrCat("usage: udpmsg ", command)));
    ExpectNoAbseilLines(r);
    for (const std::string& line : Lines(r.out)) EXPECT_LE(line.size(), 100u) << line;
  }
}

TEST(HelpTest, HelpWinsOverOtherArguments) {
  const Result r = RunUdpmsg({"send", "--relaible", "--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.out, StartsWith("usage: udpmsg send"));
}

TEST(HelpTest, VersionPrintsTheVersionAndExitsZero) {
  const Result a = RunUdpmsg({"--version"});
  const Result b = RunUdpmsg({"-V"});
  for (const Result* r : {&a, &b}) {
    EXPECT_EQ(r->code, 0);
    EXPECT_EQ(r->err, "");
    const std::vector<std::string> lines = Lines(r->out);
    ASSERT_EQ(lines.size(), 1u) << r->out;
    EXPECT_THAT(lines[0], ::testing::MatchesRegex("udpmsg [0-9]+\\.[0-9]+\\.[0-9]+( \\(.*\\))?"));
    EXPECT_THAT(lines[0], Not(HasSubstr("NDEBUG")));
  }
  EXPECT_EQ(a.out, b.out);
}

TEST(HelpTest, HelpfullListsEveryUdpmsgFlagWithItsCommands) {
  const Result r = RunUdpmsg({"--helpfull"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.err, "");
  EXPECT_THAT(r.out, HasSubstr("\n  --count (default 0)\n"));
  EXPECT_THAT(r.out, HasSubstr("taken by: listen, recv, chat serve, tcp serve"));
  // Abseil's own flags are not udpmsg's.
  EXPECT_THAT(r.out, Not(HasSubstr("--flagfile")));
}

TEST(HelpTest, NoCommandPrintsUsageToStderrAndExitsTwo) {
  const Result r = RunUdpmsg({});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, HasSubstr("usage: udpmsg COMMAND"));
}

TEST(ArgumentErrorTest, UnknownCommandSuggestsTheNearestOne) {
  EXPECT_EQ(ExpectUsageError({"sned", "127.0.0.1:9", "x"}),
            "udpmsg: unknown command \"sned\" (did you mean \"send\"?)");
  EXPECT_EQ(ExpectUsageError({"help", "lisen"}),
            "udpmsg: unknown command \"lisen\" (did you mean \"listen\"?)");
  EXPECT_EQ(ExpectUsageError({"frobnicate"}),
            "udpmsg: unknown command \"frobnicate\" (see udpmsg --help)");
}

TEST(ArgumentErrorTest, UnknownModeSuggestsTheNearestOne) {
  EXPECT_EQ(ExpectUsageError({"chat", "srve", "--port", "0"}),
            "udpmsg chat: unknown mode \"srve\" (did you mean \"serve\"?)");
  EXPECT_THAT(ExpectUsageError({"bench", "bluk"}), HasSubstr("(did you mean \"bulk\"?)"));
}

TEST(ArgumentErrorTest, UnknownFlagSuggestsTheNearestOne) {
  EXPECT_EQ(ExpectUsageError({"send", "--relaible", "127.0.0.1:9", "x"}),
            "udpmsg send: unknown flag --relaible (did you mean --reliable?)");
  // Dashed spellings are suggested as dashes.
  EXPECT_EQ(ExpectUsageError({"chat", "join", "h:1", "--nick", "a", "--key-fiel", "k"}),
            "udpmsg chat join: unknown flag --key-fiel (did you mean --key-file?)");
  EXPECT_EQ(ExpectUsageError({"listen", "--xyzzy"}),
            "udpmsg listen: unknown flag --xyzzy (see udpmsg listen --help)");
  // Abseil's own flags are not udpmsg's.
  EXPECT_THAT(ExpectUsageError({"listen", "--port", "0", "--flagfile=x"}),
              StartsWith("udpmsg listen: unknown flag --flagfile"));
}

TEST(ArgumentErrorTest, AnotherCommandsFlagIsRejected) {
  EXPECT_EQ(ExpectUsageError({"listen", "--port", "0", "--nick", "bob"}),
            "udpmsg listen: --nick is not a flag of listen (chat join takes it)");
  // Another mode's flag: plain send reads no file.
  EXPECT_EQ(ExpectUsageError({"send", "127.0.0.1:9", "--file", "x"}),
            "udpmsg send: --file is not a flag of send (send --reliable takes it)");
  EXPECT_EQ(ExpectUsageError({"send", "--reliable", "127.0.0.1:9", "--nick", "x"}),
            "udpmsg send: --nick is not a flag of send --reliable (chat join takes it)");
  EXPECT_EQ(ExpectUsageError({"tcp", "connect", "127.0.0.1:9", "--port", "1"}),
            "udpmsg tcp connect: --port is not a flag of tcp connect (listen, recv, chat serve, "
            "tcp serve, rendezvous, bench latency and bench bulk take it)");
  // A few flags get the command's own explanation instead.
  EXPECT_THAT(ExpectUsageError({"send", "--reliable", "127.0.0.1:9", "--identity", "x"}),
              StartsWith("udpmsg send: --identity is for servers"));
  EXPECT_THAT(ExpectUsageError({"bench", "bulk", "--loss", "5%"}),
              HasSubstr("bench takes its loss rates from --bench_loss"));
}

TEST(ArgumentErrorTest, MalformedValueNamesTheFlagAndValue) {
  EXPECT_EQ(ExpectUsageError({"listen", "--count=abc"}),
            "udpmsg listen: --count \"abc\": not a whole number");
  EXPECT_EQ(ExpectUsageError({"listen", "--count", "abc"}),
            "udpmsg listen: --count \"abc\": not a whole number");
  EXPECT_EQ(ExpectUsageError({"listen", "--count", "99999999999999999999"}),
            "udpmsg listen: --count \"99999999999999999999\": out of range");
  // Ports have their own parser (one for every command), and say the range.
  EXPECT_EQ(ExpectUsageError({"listen", "--port=abc"}),
            "udpmsg listen: --port \"abc\" is not a number from 0 to 65535 (see udpmsg --help)");
  EXPECT_EQ(ExpectUsageError({"send", "--reliable=maybe", "127.0.0.1:9"}),
            "udpmsg send: --reliable \"maybe\": not true or false");
  EXPECT_EQ(ExpectUsageError({"listen", "--port"}), "udpmsg listen: --port needs a value");
}

TEST(ArgumentErrorTest, AValueMayStartWithDashes) {
  // The value of --bench_server_args is "--announce_limit=0", which bench
  // connections then refuses for an external server.
  EXPECT_THAT(
      ExpectUsageError({"bench", "connections", "--bench_server", "127.0.0.1:9",
                        "--bench_server_pid", "1", "--bench_server_args", "--announce_limit=0"}),
      HasSubstr("are for the spawned server"));
}

TEST(ArgumentErrorTest, DashedFlagNamesStillWork) {
  // --max-members is --max_members; out of range is the command's own check.
  EXPECT_THAT(ExpectUsageError({"chat", "serve", "--port", "0", "--max-members", "0"}),
              HasSubstr("--max_members 0 is out of range"));
  // --noFLAG and --no-FLAG turn a bool off: plain send's own complaint.
  for (const char* off : {"--noreliable", "--no-reliable", "--reliable=false"}) {
    EXPECT_THAT(ExpectUsageError({"send", "--reliable", off}),
                HasSubstr("send: expects HOST:PORT and then messages"));
  }
}

TEST(ArgumentErrorTest, FlagsMayComeBeforeTheCommand) {
  EXPECT_THAT(ExpectUsageError({"--count", "abc", "listen"}),
              HasSubstr("udpmsg listen: --count \"abc\""));
  EXPECT_THAT(ExpectUsageError({"--port", "70000", "listen"}),
              HasSubstr("not a number from 0 to 65535"));
}

TEST(ArgumentErrorTest, DoubleDashEndsTheFlags) {
  // "--relaible" after "--" is an argument, not a flag.
  EXPECT_EQ(ExpectUsageError({"demo", "--", "--relaible"}),
            "udpmsg demo: takes no arguments (see udpmsg --help)");
}

// `--out -` is stdout: no "Did you really mean" warning, either spelling.
TEST(OutDashTest, DashIsAValueWithoutWarnings) {
  for (const std::vector<std::string>& out :
       std::vector<std::vector<std::string>>{{"--out", "-"}, {"--out=-"}}) {
    std::vector<std::string> args = {"recv",   "--reliable", "--port",    "0",
                                     "--bind", "127.0.0.1",  "--timeout", "1s"};
    args.insert(args.end(), out.begin(), out.end());
    SCOPED_TRACE(absl::StrJoin(args, " "));
    absl::StatusOr<std::unique_ptr<Subprocess>> p = [&] {
      std::vector<std::string> argv = args;
      argv.insert(argv.begin(), UdpmsgPath());
      return Subprocess::Start(argv);
    }();
    ASSERT_TRUE(p.ok()) << p.status();
    absl::StatusOr<std::string> line = (*p)->ReadStderrLine(kTimeout);
    ASSERT_TRUE(line.ok()) << line.status();
    EXPECT_THAT(*line, StartsWith("listening on 127.0.0.1:"));
    (*p)->Kill(SIGTERM);
    absl::StatusOr<int> code = (*p)->Wait(kTimeout);
    ASSERT_TRUE(code.ok());
    EXPECT_EQ(*code, 128 + SIGTERM);
    EXPECT_THAT((*p)->stderr_text(), Not(HasSubstr("RAW:")));
    EXPECT_THAT((*p)->stderr_text(), Not(HasSubstr("Did you really mean")));
  }
}

// The sanitized twin runs this (plain) test against //cli:udpmsg rebuilt
// under ASan+UBSan (sanitized_binary in tests/cli/BUILD): the binary it
// starts must be that build there, and the plain one otherwise. ASan prints
// its flags when ASAN_OPTIONS asks for help; a plain binary ignores it.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kDriverBuiltWithAsan = true;
#else
constexpr bool kDriverBuiltWithAsan = false;
#endif

TEST(SanitizedTwinTest, TheBinaryIsSanitizedExactlyInTheTwin) {
  const char* env = std::getenv("UDPMSG_SANITIZERS");
  const bool twin = env != nullptr && *env != '\0';
  const char* old = std::getenv("ASAN_OPTIONS");
  const std::string saved = old == nullptr ? "" : old;
  ::setenv("ASAN_OPTIONS", absl::StrCat(saved, saved.empty() ? "" : ":", "help=1").c_str(), 1);
  const Result r = RunUdpmsg({"--version"});
  if (old == nullptr) {
    ::unsetenv("ASAN_OPTIONS");
  } else {
    ::setenv("ASAN_OPTIONS", saved.c_str(), 1);
  }
  EXPECT_EQ(r.code, 0) << r.err;
  if (twin) {
    EXPECT_THAT(r.err, HasSubstr("Available flags for AddressSanitizer"));
  } else if (!kDriverBuiltWithAsan) {  // --config=asan builds everything with it
    EXPECT_THAT(r.err, Not(HasSubstr("AddressSanitizer")));
  }
}

}  // namespace
}  // namespace udpmsg::testing
