// Runs the udpmsg binary with the addresses and ports users type: every
// HOST:PORT (send, send --reliable, tcp connect, chat join, impair --to) and
// every --port (listen, recv, tcp serve, chat serve; impair --listen) goes
// through one parser, so a port out of range is a usage error naming it,
// never a port taken modulo 65536.
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

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;
using ::testing::StartsWith;

// How a run of udpmsg ended: exit code (-1: did not end in time), stdout,
// stderr.
using Outcome = RunResult;

// Each command that takes a destination HOST:PORT, given `host_port`: the
// command name its usage errors start with, and its arguments.
std::vector<std::pair<std::string, std::vector<std::string>>> DestinationCommands(
    const std::string& host_port) {
  return {
      {"send", {"send", host_port, "hi"}},
      {"send", {"send", "--reliable", host_port, "hi", "--timeout", "2s"}},
      {"tcp connect", {"tcp", "connect", host_port}},
      {"chat", {"chat", "join", host_port, "--nick", "alice", "--timeout", "2s"}},
      {"impair", {"impair", "--listen", "0", "--to", host_port, "--duration", "2s"}},
  };
}

TEST(DestinationPortTest, PortsOutsideOneTo65535AreUsageErrorsNamingThem) {
  // 99999 used to be sent to port 34463 (99999 mod 65536), 65545 to 9.
  for (const std::string port : {"99999", "65536", "65545", "0", "-1", "abc", "http", "+80"}) {
    const std::string host_port = absl::StrCat("localhost:", port);
    for (const auto& [command, args] : DestinationCommands(host_port)) {
      SCOPED_TRACE(absl::StrJoin(args, " "));
      Outcome run = RunUdpmsg(args);
      EXPECT_EQ(run.code, 2);
      EXPECT_EQ(run.out, "");
      ASSERT_THAT(Lines(run.err), SizeIs(1)) << run.err;
      EXPECT_THAT(run.err, StartsWith(absl::StrCat("udpmsg ", command, ": ")));
      EXPECT_THAT(run.err, HasSubstr(absl::StrCat("port \"", port, "\" in \"", host_port,
                                                  "\" is not a number from 1 to 65535")));
    }
  }
}

TEST(DestinationPortTest, MissingOrMalformedPortIsAUsageError) {
  for (const std::string bad : {"localhost", "localhost:", "[::1]", "::1:80", "[::1]80"}) {
    for (const auto& [command, args] : DestinationCommands(bad)) {
      SCOPED_TRACE(absl::StrJoin(args, " "));
      Outcome run = RunUdpmsg(args);
      EXPECT_EQ(run.code, 2);
      ASSERT_THAT(Lines(run.err), SizeIs(1)) << run.err;
      EXPECT_THAT(run.err, StartsWith(absl::StrCat("udpmsg ", command, ": ")));
      EXPECT_THAT(run.err, HasSubstr(absl::StrCat("\"", bad, "\"")));
    }
  }
}

TEST(DestinationPortTest, HighestPortIsAccepted) {
  Outcome run = RunUdpmsg({"send", "127.0.0.1:65535", "hi"});
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.err, "sent 2 bytes to 127.0.0.1:65535\n");
  Outcome v6 = RunUdpmsg({"send", "[::1]:65535", "hi"});
  EXPECT_EQ(v6.code, 0) << v6.err;
  EXPECT_EQ(v6.err, "sent 2 bytes to [::1]:65535\n");
}

// Each server with --port `port`: the command name its usage errors start
// with, and its arguments.
std::vector<std::pair<std::string, std::vector<std::string>>> ServerCommands(
    const std::string& port) {
  return {
      {"listen", {"listen", "--port", port}},
      {"recv", {"recv", "--reliable", "--port", port, "--out", "x"}},
      {"tcp serve", {"tcp", "serve", "--port", port}},
      {"chat", {"chat", "serve", "--port", port}},
  };
}

TEST(ServerPortTest, PortFlagOutsideZeroTo65535IsAUsageErrorNamingIt) {
  for (const std::string port : {"-5", "-1", "65536", "99999", "abc", "4294967296", "1.5"}) {
    for (const auto& [command, args] : ServerCommands(port)) {
      SCOPED_TRACE(absl::StrJoin(args, " "));
      Outcome run = RunUdpmsg(args);
      EXPECT_EQ(run.code, 2);
      ASSERT_THAT(Lines(run.err), SizeIs(1)) << run.err;
      EXPECT_THAT(run.err, StartsWith(absl::StrCat("udpmsg ", command, ": ")));
      EXPECT_THAT(run.err,
                  HasSubstr(absl::StrCat("--port \"", port, "\" is not a number from 0 to 65535")));
    }
    SCOPED_TRACE(absl::StrCat("impair --listen ", port));
    Outcome impair = RunUdpmsg({"impair", "--listen", port, "--to", "127.0.0.1:9"});
    EXPECT_EQ(impair.code, 2);
    EXPECT_THAT(Lines(impair.err),
                ElementsAre(StartsWith(absl::StrCat("udpmsg impair: --listen \"", port,
                                                    "\" is not a number from 0 to 65535"))));
  }
}

TEST(ServerPortTest, MissingPortFlagIsRequired) {
  for (const auto& [command, args] : ServerCommands("")) {
    std::vector<std::string> without(args.begin(), args.end());
    // Drop "--port" and its empty value.
    for (size_t i = 0; i + 1 < without.size(); ++i) {
      if (without[i] == "--port") without.erase(without.begin() + i, without.begin() + i + 2);
    }
    SCOPED_TRACE(absl::StrJoin(without, " "));
    Outcome run = RunUdpmsg(without);
    EXPECT_EQ(run.code, 2);
    ASSERT_THAT(Lines(run.err), SizeIs(1)) << run.err;
    EXPECT_THAT(run.err, HasSubstr("--port is required"));
  }
}

TEST(ShowIpTest, BracketedLiteralsAreAcceptedAsSendAcceptsThem) {
  Outcome v6 = RunUdpmsg({"showip", "[::1]"});
  EXPECT_EQ(v6.code, 0) << v6.err;
  EXPECT_THAT(Lines(v6.out), ElementsAre("IP addresses for [::1]:", "  IPv6: ::1"));
  Outcome v4 = RunUdpmsg({"showip", "[127.0.0.1]"});
  EXPECT_EQ(v4.code, 0) << v4.err;
  EXPECT_THAT(Lines(v4.out), ElementsAre("IP addresses for [127.0.0.1]:", "  IPv4: 127.0.0.1"));
  Outcome open = RunUdpmsg({"showip", "[::1"});
  EXPECT_EQ(open.code, 2);
  EXPECT_THAT(Lines(open.err), ElementsAre(StartsWith("udpmsg showip: missing ']'")));
}

TEST(ShowIpTest, AnAddressOfTheOtherFamilyIsNamedNotUnknown) {
  Outcome v4 = RunUdpmsg({"showip", "127.0.0.1", "--ipv6"});
  EXPECT_EQ(v4.code, 2);
  EXPECT_EQ(v4.out, "");
  EXPECT_EQ(v4.err, "udpmsg: 127.0.0.1 is an IPv4 address, not IPv6\n");
  Outcome v6 = RunUdpmsg({"showip", "[::1]", "--ipv4"});
  EXPECT_EQ(v6.code, 2);
  EXPECT_EQ(v6.err, "udpmsg: ::1 is an IPv6 address, not IPv4\n");
}

TEST(ShowIpTest, NameWithoutTheFamilyAskedForSaysWhatItHas) {
  Outcome all = RunUdpmsg({"showip", "localhost"});
  ASSERT_EQ(all.code, 0) << all.err;
  std::vector<std::string> v4;
  for (const std::string& line : Lines(all.out)) {
    if (absl::StartsWith(line, "  IPv6: ")) GTEST_SKIP() << "localhost has IPv6 here";
    if (absl::StartsWith(line, "  IPv4: ")) v4.push_back(line.substr(8));
  }
  ASSERT_FALSE(v4.empty()) << all.out;
  // It used to say "Name or service not known", as for a name that does not exist.
  Outcome v6 = RunUdpmsg({"showip", "localhost", "--ipv6"});
  EXPECT_EQ(v6.code, 2);
  EXPECT_EQ(v6.err, absl::StrCat("udpmsg: localhost has no IPv6 address (it has IPv4: ",
                                 absl::StrJoin(v4, ", "), ")\n"));
  Outcome send = RunUdpmsg({"send", "--ipv6", "localhost:9", "x"});
  EXPECT_EQ(send.code, 2);
  EXPECT_EQ(send.err, v6.err);
}

}  // namespace
}  // namespace udpmsg::testing
