// Runs `udpmsg chat serve` and scripted `udpmsg chat join` members (pipes on
// stdin/stdout), some behind `udpmsg impair` proxies, and checks what every
// member prints. Every wait is for an expected line, with a deadline; nothing
// sleeps. The last test drives an interactive member in tmux.
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/cli/chat_member.h"
#include "tests/cli/subprocess.h"

namespace udpmsg::testing {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr absl::Duration kTimeout = absl::Seconds(20);
// Everything of a lossy exchange: generous, the usual run takes seconds.
constexpr absl::Duration kLongTimeout = absl::Seconds(90);

std::unique_ptr<Subprocess> Udpmsg(std::vector<std::string> args) {
  args.insert(args.begin(), UdpmsgPath());
  absl::StatusOr<std::unique_ptr<Subprocess>> p = Subprocess::Start(args);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *std::move(p) : nullptr;
}

int ExitCode(Subprocess& p, absl::Duration timeout = kTimeout) {
  absl::StatusOr<int> code = p.Wait(timeout);
  EXPECT_TRUE(code.ok()) << code.status();
  return code.ok() ? *code : -1;
}

// Starts a process and returns it with the port of its "listening on" line.
std::pair<std::unique_ptr<Subprocess>, int> StartListening(std::vector<std::string> args) {
  std::unique_ptr<Subprocess> p = Udpmsg(std::move(args));
  if (p == nullptr) return {nullptr, 0};
  absl::StatusOr<std::string> line = p->ReadStderrLine(kTimeout);
  EXPECT_TRUE(line.ok()) << line.status();
  absl::StatusOr<int> port = ParseListeningPort(line.ok() ? *line : "");
  EXPECT_TRUE(port.ok()) << port.status();
  return {std::move(p), port.ok() ? *port : 0};
}

struct ChatServer {
  std::unique_ptr<Subprocess> process;
  int port = 0;
};

ChatServer StartServer(std::vector<std::string> flags = {}, int port = 0) {
  std::vector<std::string> args = {"chat", "serve", "--port", absl::StrCat(port)};
  args.insert(args.end(), flags.begin(), flags.end());
  auto [p, bound] = StartListening(args);
  return {std::move(p), bound};
}

// `udpmsg impair` in front of 127.0.0.1:to_port; returns it and its port.
std::pair<std::unique_ptr<Subprocess>, int> StartProxy(int to_port, const std::string& loss,
                                                       int seed) {
  auto [p, port] = StartListening({"impair", "--listen", "0", "--to",
                                   absl::StrCat("127.0.0.1:", to_port), "--loss", loss, "--seed",
                                   absl::StrCat(seed)});
  if (p != nullptr) {
    absl::StatusOr<std::string> config = p->ReadStderrLine(kTimeout);  // "impairing ..."
    EXPECT_TRUE(config.ok()) << config.status();
  }
  return {std::move(p), port};
}

// A member of the server on 127.0.0.1:PORT.
class Member : public ChatMember {
 public:
  Member(int port, const std::string& nick, std::vector<std::string> flags = {})
      : ChatMember({absl::StrCat("127.0.0.1:", port)}, nick, std::move(flags)) {}
};

// (1) Three members, each behind its own lossy proxy, 50 lines each sent
// interleaved: all three transcripts hold all 150 lines in the same order.
TEST(ChatTest, ThreeLossyMembersSeeOneIdenticalTranscript) {
  ChatServer server = StartServer();
  ASSERT_NE(server.port, 0);
  const std::vector<std::string> nicks = {"alice", "bob", "carol"};
  const std::vector<std::string> losses = {"10%", "15%", "20%"};
  std::vector<std::unique_ptr<Subprocess>> proxies;
  std::vector<std::unique_ptr<Member>> members;
  for (size_t i = 0; i < nicks.size(); ++i) {
    auto [proxy, proxy_port] = StartProxy(server.port, losses[i], static_cast<int>(11 + i));
    ASSERT_NE(proxy_port, 0);
    proxies.push_back(std::move(proxy));
    members.push_back(std::make_unique<Member>(proxy_port, nicks[i]));
    // Everyone present sees the newcomer before the next one comes.
    for (auto& m : members) {
      ASSERT_TRUE(m->WaitFor(absl::StrCat("*** ", nicks[i], " joined"))) << m->nick();
    }
  }

  constexpr int kPerMember = 50;
  constexpr int kBatch = 10;
  for (int start = 0; start < kPerMember; start += kBatch) {
    for (auto& m : members) {
      std::string batch;
      for (int k = start; k < start + kBatch; ++k) {
        absl::StrAppend(&batch, "line ", k, " from ", m->nick(), "\n");
      }
      ASSERT_TRUE(m->process().WriteStdin(batch).ok());
    }
  }
  const size_t total = kPerMember * nicks.size();
  for (auto& m : members) {
    size_t says = 0;
    ASSERT_TRUE(m->WaitUntil(
        [&](const std::string& l) { return absl::StartsWith(l, "<") && ++says == total; },
        absl::StrCat(total, " lines"), kLongTimeout));
  }
  // Leave both ways: /quit and EOF.
  members[0]->Send("/quit");
  members[1]->process().CloseStdin();
  members[2]->Send("/quit");
  for (auto& m : members) EXPECT_EQ(ExitCode(m->process()), 0) << m->nick();

  const std::vector<std::string> reference = members[0]->SayLines();
  ASSERT_EQ(reference.size(), total);
  for (auto& m : members) EXPECT_EQ(m->SayLines(), reference) << m->nick();
  // Complete: every line once; and each sender's lines in the order sent.
  std::set<std::string> distinct(reference.begin(), reference.end());
  EXPECT_EQ(distinct.size(), total);
  for (const std::string& nick : nicks) {
    int next = 0;
    for (const std::string& l : reference) {
      if (!absl::StartsWith(l, absl::StrCat("<", nick, "> "))) continue;
      EXPECT_EQ(l, absl::StrCat("<", nick, "> line ", next, " from ", nick));
      ++next;
    }
    EXPECT_EQ(next, kPerMember) << nick;
  }
  // The proxies really dropped packets, both ways (summed over the members:
  // messages share packets, so one member's path may carry only a few dozen).
  uint64_t dropped[2] = {0, 0};
  for (size_t i = 0; i < proxies.size(); ++i) {
    proxies[i]->Kill(SIGTERM);
    EXPECT_EQ(ExitCode(*proxies[i]), 0);
    int d = 0;
    for (const char* direction : {"up", "down"}) {
      dropped[d++] += ImpairCounters(proxies[i]->stderr_text(), direction)["dropped_loss"];
    }
  }
  EXPECT_GT(dropped[0], 0u) << "no packet was lost on the way to the server";
  EXPECT_GT(dropped[1], 0u) << "no packet was lost on the way back";
  server.process->Kill(SIGTERM);
  EXPECT_EQ(ExitCode(*server.process), 0);
  const std::string log = server.process->stderr_text();
  for (const std::string& nick : nicks) {
    EXPECT_THAT(log, HasSubstr(absl::StrCat(nick, " joined from 127.0.0.1:")));
    EXPECT_THAT(log, HasSubstr(absl::StrCat("\n", nick, " left (")));
  }
}

// (2) A taken nick is refused with a clear message and exit 1; the check
// ignores case; invalid nicks are usage errors; /nick cannot take one either.
TEST(ChatTest, TakenNickIsRefused) {
  ChatServer server = StartServer();
  Member alice(server.port, "alice");
  ASSERT_TRUE(alice.WaitFor("*** alice joined"));
  for (const std::string nick : {"alice", "ALICE"}) {
    Member again(server.port, nick);
    EXPECT_EQ(ExitCode(again.process()), 1);
    EXPECT_EQ(again.process().stderr_text(), absl::StrCat("udpmsg: nick \"", nick, "\" is taken\n"));
  }
  for (const std::string& nick : std::vector<std::string>{"two words", std::string(33, 'x'), "tab\tbed"}) {
    Member bad(server.port, nick);
    EXPECT_EQ(ExitCode(bad.process()), 2) << nick;
    EXPECT_THAT(bad.process().stderr_text(), StartsWith("udpmsg chat: nick \"")) << nick;
  }
  Member bob(server.port, "bob");
  ASSERT_TRUE(bob.WaitFor("*** bob joined"));
  bob.Send("/nick Alice");
  EXPECT_TRUE(bob.WaitFor("*** error: nick \"Alice\" is taken"));
  bob.Send("/nick robert");
  EXPECT_TRUE(bob.WaitFor("*** bob is now known as robert"));
  EXPECT_TRUE(alice.WaitFor("*** bob is now known as robert"));
  alice.Send("/who");
  EXPECT_TRUE(alice.WaitFor("*** 2 members: alice, robert"));
  // The old nick is free again.
  Member bob2(server.port, "bob");
  EXPECT_TRUE(bob2.WaitFor("*** bob joined"));
  bob2.process().CloseStdin();
  EXPECT_EQ(ExitCode(bob2.process()), 0);
}

// (3) /msg reaches its target and the sender only.
TEST(ChatTest, PrivateMessageReachesOnlyItsTarget) {
  ChatServer server = StartServer();
  Member alice(server.port, "alice");
  ASSERT_TRUE(alice.WaitFor("*** alice joined"));
  Member bob(server.port, "bob");
  ASSERT_TRUE(bob.WaitFor("*** bob joined"));
  Member carol(server.port, "carol");
  ASSERT_TRUE(carol.WaitFor("*** carol joined"));
  ASSERT_TRUE(alice.WaitFor("*** carol joined"));

  alice.Send("/msg bob psst, a secret");
  alice.Send("/msg zed hello?");
  alice.Send("/me is done whispering");
  alice.Send("public after");
  EXPECT_TRUE(alice.WaitFor("-> bob: psst, a secret"));
  EXPECT_TRUE(alice.WaitFor("*** error: no member named \"zed\""));
  EXPECT_TRUE(alice.WaitFor("<alice> public after"));
  EXPECT_TRUE(bob.WaitFor("<- alice: psst, a secret"));
  EXPECT_TRUE(bob.WaitFor("<alice> public after"));
  // Carol gets the later public lines, so she would have had the private one.
  EXPECT_TRUE(carol.WaitFor("<alice> public after"));
  for (const std::string& l : carol.lines()) EXPECT_THAT(l, Not(HasSubstr("secret")));
  EXPECT_THAT(carol.lines(), Contains("* alice is done whispering"));
  for (Member* m : {&alice, &bob, &carol}) {
    m->process().CloseStdin();
    EXPECT_EQ(ExitCode(m->process()), 0);
  }
}

// (4) A member who quits is announced as having left; one killed with
// SIGKILL is dropped after the server's --timeout and announced as timed out.
TEST(ChatTest, LeaveAndTimeoutNotices) {
  ChatServer server = StartServer({"--timeout", "2s"});
  Member alice(server.port, "alice");
  ASSERT_TRUE(alice.WaitFor("*** alice joined"));
  Member bob(server.port, "bob");
  ASSERT_TRUE(bob.WaitFor("*** bob joined"));
  Member carol(server.port, "carol");
  ASSERT_TRUE(carol.WaitFor("*** carol joined"));
  ASSERT_TRUE(alice.WaitFor("*** carol joined"));

  // "/quit REASON": the others see the reason, escaped like all peer text.
  bob.Send("/quit gone \x1b[31mfishing");
  EXPECT_EQ(ExitCode(bob.process()), 0);
  EXPECT_TRUE(alice.WaitFor("*** bob left (gone \\x1b[31mfishing)"));
  EXPECT_TRUE(carol.WaitFor("*** bob left (gone \\x1b[31mfishing)"));

  const absl::Time killed = absl::Now();
  carol.process().Kill(SIGKILL);
  EXPECT_TRUE(alice.WaitFor("*** carol left (timed out)"));
  EXPECT_GE(absl::Now() - killed, absl::Seconds(1));
  alice.Send("/who");
  EXPECT_TRUE(alice.WaitFor("*** 1 member: alice"));
  alice.process().CloseStdin();
  EXPECT_EQ(ExitCode(alice.process()), 0);
  server.process->Kill(SIGTERM);
  EXPECT_EQ(ExitCode(*server.process), 0);
  EXPECT_THAT(server.process->stderr_text(),
              HasSubstr("\nbob left (gone \\x1b[31mfishing) (2 members)\n"));
  EXPECT_THAT(server.process->stderr_text(), HasSubstr("\ncarol left (timed out: "));
}

// Every stop signal makes each side tell the other at once, instead of the
// other waiting out its --timeout (60 s here): a member stopped by SIGINT,
// SIGTERM or SIGHUP leaves (its leave and close reach the server), and a
// server stopped by any of them closes every member's connection.
TEST(ChatTest, StopSignalsSendACloseToThePeer) {
  for (const int signal : {SIGINT, SIGTERM, SIGHUP}) {
    SCOPED_TRACE(absl::StrCat("signal ", signal));
    ChatServer server = StartServer({"--timeout", "60s"});
    Member alice(server.port, "alice", {"--timeout", "60s", "--reconnect=false"});
    ASSERT_TRUE(alice.WaitFor("*** alice joined"));
    Member bob(server.port, "bob", {"--timeout", "60s"});
    ASSERT_TRUE(bob.WaitFor("*** bob joined"));
    bob.process().Kill(signal);
    EXPECT_EQ(ExitCode(bob.process()), 0) << bob.process().stderr_text();
    EXPECT_TRUE(alice.WaitFor("*** bob left", absl::Seconds(10)));

    const absl::Time stopped = absl::Now();
    server.process->Kill(signal);
    EXPECT_TRUE(alice.WaitFor("*** server shutting down", absl::Seconds(10)));
    EXPECT_EQ(ExitCode(alice.process(), absl::Seconds(10)), 1);
    EXPECT_LT(absl::Now() - stopped, absl::Seconds(10));
    EXPECT_THAT(alice.process().stderr_text(),
                HasSubstr("server closed the connection: server shutting down"));
    EXPECT_EQ(ExitCode(*server.process), 0) << server.process->stderr_text();
  }
}

// (5) With --reconnect=false, a member notices a killed server and exits 1;
// a restarted server on the same port takes members again; a stopped server
// says goodbye.
TEST(ChatTest, ClientNoticesDeadServerAndRestartedServerWorks) {
  ChatServer server = StartServer({"--timeout", "2s"});
  const int port = server.port;
  Member alice(port, "alice", {"--timeout", "2s", "--reconnect=false"});
  ASSERT_TRUE(alice.WaitFor("*** alice joined"));
  server.process->Kill(SIGKILL);
  EXPECT_EQ(ExitCode(*server.process), 128 + SIGKILL);
  EXPECT_EQ(ExitCode(alice.process()), 1);
  EXPECT_THAT(alice.process().stderr_text(),
              StartsWith(absl::StrCat("udpmsg: lost connection to server 127.0.0.1:", port, ": ")));

  ChatServer again = StartServer({"--timeout", "2s"}, port);
  ASSERT_EQ(again.port, port);
  Member alice2(port, "alice", {"--reconnect=false"});
  ASSERT_TRUE(alice2.WaitFor("*** alice joined"));
  alice2.Send("back again");
  EXPECT_TRUE(alice2.WaitFor("<alice> back again"));
  again.process->Kill(SIGTERM);
  EXPECT_TRUE(alice2.WaitFor("*** server shutting down"));
  EXPECT_EQ(ExitCode(alice2.process()), 1);
  EXPECT_THAT(alice2.process().stderr_text(),
              HasSubstr("server closed the connection: server shutting down"));
  EXPECT_EQ(ExitCode(*again.process), 0);
}

// (5b) Reconnect: a member whose server is killed says which line the dead
// server never confirmed, announces the loss and the backoff, refuses a line
// typed while disconnected out loud, reconnects when a server is back on the
// port, rejoins under its nick and can talk; a server shutdown is
// reconnected too, and /quit while waiting exits 0.
TEST(ChatTest, MemberReconnectsToARestartedServerAndNoLineVanishes) {
  ChatServer server = StartServer({"--timeout", "2s"});
  const int port = server.port;
  ASSERT_NE(port, 0);
  Member alice(port, "alice", {"--timeout", "2s"});
  ASSERT_TRUE(alice.WaitFor("*** alice joined"));
  Member bob(port, "bob", {"--timeout", "2s"});
  ASSERT_TRUE(bob.WaitFor("*** bob joined"));
  server.process->Kill(SIGKILL);
  EXPECT_EQ(ExitCode(*server.process), 128 + SIGKILL);

  alice.Send("into the void");
  ASSERT_TRUE(alice.WaitFor("*** maybe not sent (connection lost): into the void"));
  ASSERT_TRUE(alice.WaitUntil(
      [](const std::string& l) {
        return absl::StartsWith(l, "*** connection lost: ") &&
               absl::EndsWith(l, " (Ctrl-C to quit)") && absl::StrContains(l, "; reconnecting in ");
      },
      "the connection lost notice"));
  // A line while disconnected is refused out loud, never queued or lost.
  alice.Send("typed while down");
  ASSERT_TRUE(alice.WaitFor("*** not sent (not connected): typed while down"));

  ChatServer again = StartServer({"--timeout", "2s"}, port);
  ASSERT_EQ(again.port, port);
  const std::string welcome_back = absl::StrCat("*** reconnected to 127.0.0.1:", port, " as ");
  ASSERT_TRUE(alice.WaitUntil(
      [&](const std::string& l) { return absl::StartsWith(l, welcome_back + "alice; "); },
      "alice's reconnect"));
  ASSERT_TRUE(bob.WaitUntil(
      [&](const std::string& l) { return absl::StartsWith(l, welcome_back + "bob; "); },
      "bob's reconnect"));
  alice.Send("both back");
  EXPECT_TRUE(bob.WaitFor("<alice> both back"));
  for (const std::string& l : bob.lines()) {
    EXPECT_THAT(l, Not(HasSubstr("into the void")));
    EXPECT_THAT(l, Not(HasSubstr("typed while down")));
  }

  // A server shutdown is reconnected too; /quit while waiting ends cleanly.
  again.process->Kill(SIGTERM);
  EXPECT_EQ(ExitCode(*again.process), 0);
  EXPECT_TRUE(alice.WaitFor("*** server shutting down"));
  EXPECT_TRUE(alice.WaitUntil(
      [](const std::string& l) {
        return absl::StartsWith(
            l, "*** connection lost: server closed the connection: server shutting down; "
               "reconnecting in ");
      },
      "the shutdown notice"));
  alice.Send("/quit");
  EXPECT_EQ(ExitCode(alice.process()), 0) << alice.process().stderr_text();
  bob.process().Kill(SIGTERM);
  EXPECT_EQ(ExitCode(bob.process()), 0) << bob.process().stderr_text();
}

// (5c) Taking a nick back: a member killed with SIGKILL (no Leave, no
// close) restarts under its nick within about the probe's second, not the
// server's 10 s timeout; the others see "alice reconnected". A live member
// keeps its nick: a second process asking for it from the same address is
// refused after the probe.
TEST(ChatTest, AKilledMemberRejoinsUnderItsNickAtOnceAndALiveOneKeepsIt) {
  ChatServer server = StartServer({"--timeout", "10s"});
  const int port = server.port;
  ASSERT_NE(port, 0);
  Member alice(port, "alice");
  ASSERT_TRUE(alice.WaitFor("*** alice joined"));
  Member bob(port, "bob");
  ASSERT_TRUE(bob.WaitFor("*** bob joined"));
  alice.process().Kill(SIGKILL);
  EXPECT_EQ(ExitCode(alice.process()), 128 + SIGKILL);
  const absl::Time killed = absl::Now();
  Member again(port, "alice");
  const std::string welcome = absl::StrCat("*** connected to 127.0.0.1:", port, " as alice; ");
  ASSERT_TRUE(again.WaitUntil(
      [&](const std::string& l) { return absl::StartsWith(l, welcome); }, "alice's welcome"));
  const absl::Duration took = absl::Now() - killed;
  EXPECT_LT(took, absl::Seconds(5)) << "the dead member held the nick until its timeout";
  EXPECT_GE(took, absl::Milliseconds(1900)) << "no probe?";
  EXPECT_TRUE(bob.WaitFor("*** alice reconnected"));
  again.Send("back");
  EXPECT_TRUE(bob.WaitFor("<alice> back"));

  Member impostor(port, "bob");
  EXPECT_EQ(ExitCode(impostor.process()), 1);
  EXPECT_EQ(impostor.process().stderr_text(), "udpmsg: nick \"bob\" is taken\n");
  bob.Send("still here");
  EXPECT_TRUE(again.WaitFor("<bob> still here"));
  for (const std::string& l : bob.lines()) EXPECT_THAT(l, Not(HasSubstr("bob left")));
  for (Member* m : {&again, &bob}) {
    m->process().CloseStdin();
    EXPECT_EQ(ExitCode(m->process()), 0);
  }
  server.process->Kill(SIGTERM);
  EXPECT_EQ(ExitCode(*server.process), 0);
  const std::string log = server.process->stderr_text();
  EXPECT_THAT(log, HasSubstr("asks for the nick alice of a member from its address: probing"));
  EXPECT_THAT(log, HasSubstr("\nalice reconnected from 127.0.0.1:"));
  EXPECT_THAT(log, HasSubstr("refused 127.0.0.1:"));
}

// (5d) A server that times a member out first (its --timeout is shorter)
// answers the member's next packets with its timeout's close code: the
// member reads that as a lost connection, not a refusal, and reconnects
// under its nick (the close's code reaches chat::ClassifyClose from
// ChatClient::OnEvent). The path is cut by stopping the member's proxy
// until the server has timed it out; the member's 10 s timeout leaves it
// live, its keepalive (2.5 s) and probes (at most 1.25 s apart) wait in the
// stopped proxy, and the server's connection drains for about 2 s after its
// timeout, answering them with its close.
TEST(ChatTest, AMemberTheServerTimedOutReconnectsOnTheServersTimeoutClose) {
  ChatServer server = StartServer({"--timeout", "4s"});
  ASSERT_NE(server.port, 0);
  auto [proxy, proxy_port] = StartProxy(server.port, "0%", 1);
  ASSERT_NE(proxy, nullptr);
  ASSERT_NE(proxy_port, 0);
  Member alice(proxy_port, "alice", {"--timeout", "10s"});
  ASSERT_TRUE(alice.WaitFor("*** alice joined"));
  Member bob(server.port, "bob");
  ASSERT_TRUE(bob.WaitFor("*** bob joined"));

  proxy->Kill(SIGSTOP);
  const bool timed_out = bob.WaitFor("*** alice left (timed out)", absl::Seconds(10));
  proxy->Kill(SIGCONT);
  ASSERT_TRUE(timed_out);
  ASSERT_TRUE(alice.WaitUntil(
      [](const std::string& l) {
        // The server's own timeout ("no packets from ... for 4s"), not ours.
        return absl::StartsWith(l, "*** connection lost: server closed the connection: ") &&
               absl::StrContains(l, " for 4s; reconnecting in ");
      },
      "the lost-connection notice for the server's close"))
      << alice.process().stderr_text();
  const std::string welcome_back = absl::StrCat("*** reconnected to 127.0.0.1:", proxy_port,
                                                " as alice; ");
  ASSERT_TRUE(alice.WaitUntil(
      [&](const std::string& l) { return absl::StartsWith(l, welcome_back); },
      "alice's reconnect"));
  alice.Send("still here");
  EXPECT_TRUE(bob.WaitFor("<alice> still here"));
  for (Member* m : {&alice, &bob}) {
    m->process().CloseStdin();
    EXPECT_EQ(ExitCode(m->process()), 0) << m->process().stderr_text();
  }
  server.process->Kill(SIGTERM);
  EXPECT_EQ(ExitCode(*server.process), 0);
  proxy->Kill(SIGTERM);
  EXPECT_EQ(ExitCode(*proxy), 0);
  EXPECT_THAT(server.process->stderr_text(), HasSubstr("\nalice left (timed out: "));
}

TEST(ChatTest, LimitsAndCommandErrors) {
  ChatServer server = StartServer({"--max_members", "2"});
  Member alice(server.port, "alice");
  ASSERT_TRUE(alice.WaitFor("*** alice joined"));
  Member bob(server.port, "bob");
  ASSERT_TRUE(bob.WaitFor("*** bob joined"));
  Member carol(server.port, "carol");
  EXPECT_EQ(ExitCode(carol.process()), 1);
  EXPECT_EQ(carol.process().stderr_text(), "udpmsg: the chat is full (2 members)\n");

  alice.Send(std::string(5000, 'x'));
  EXPECT_TRUE(alice.WaitFor("*** error: message too long (5000 bytes, at most 4096)"));
  alice.Send(std::string(4096, 'y'));
  EXPECT_TRUE(bob.WaitFor(absl::StrCat("<alice> ", std::string(4096, 'y'))));
  alice.Send("/frob");
  EXPECT_TRUE(alice.WaitFor("*** error: unknown command /frob (try /help)"));
  alice.Send("/msg bob");
  EXPECT_TRUE(alice.WaitFor("*** error: usage: /msg NICK TEXT"));
  alice.Send("//slash first");
  EXPECT_TRUE(bob.WaitFor("<alice> /slash first"));
  alice.Send("tab\there \x01 ok");
  EXPECT_TRUE(bob.WaitFor("<alice> tab here \\x01 ok"));
  alice.Send("/stats");
  EXPECT_TRUE(alice.WaitUntil(
      [](const std::string& l) { return absl::StartsWith(l, "*** stats: rtt "); }, "stats"));
  for (Member* m : {&alice, &bob}) {
    m->process().CloseStdin();
    EXPECT_EQ(ExitCode(m->process()), 0);
  }
}

// `chat serve --threads 3`: three shards on one port, one room. Six members
// (spread over the shards by the kernel) each say 20 lines, interleaved;
// every member sees all 120 in one identical order, nicks are unique across
// shards, /who sees the whole room, a private line crosses shards, and on
// SIGTERM everyone hears the server is shutting down.
TEST(ChatTest, ThreeShardsServeOneRoomInOneOrder) {
  ChatServer server = StartServer({"--threads", "3"});
  absl::StatusOr<std::string> shards = server.process->ReadStderrLine(kTimeout);
  ASSERT_TRUE(shards.ok()) << shards.status();
  EXPECT_THAT(*shards, StartsWith("3 shards, "));
  const std::vector<std::string> nicks = {"ann", "ben", "cat", "dan", "eve", "fay"};
  std::vector<std::unique_ptr<Member>> members;
  for (const std::string& nick : nicks) {
    members.push_back(
        std::make_unique<Member>(server.port, nick, std::vector<std::string>{"--reconnect=false"}));
    ASSERT_TRUE(members.back()->WaitFor(absl::StrCat("*** ", nick, " joined")));
  }
  Member taken(server.port, "ANN");
  EXPECT_EQ(ExitCode(taken.process()), 1);
  EXPECT_EQ(taken.process().stderr_text(), "udpmsg: nick \"ANN\" is taken\n");
  constexpr int kLines = 20;
  for (int k = 0; k < kLines; k += 5) {
    for (auto& m : members) {
      std::string batch;
      for (int j = k; j < k + 5; ++j) absl::StrAppend(&batch, m->nick(), " line ", j, "\n");
      ASSERT_TRUE(m->process().WriteStdin(batch).ok());
    }
  }
  const size_t total = kLines * nicks.size();
  for (auto& m : members) {
    size_t says = 0;
    ASSERT_TRUE(m->WaitUntil(
        [&](const std::string& l) { return absl::StartsWith(l, "<") && ++says == total; },
        absl::StrCat(total, " lines"), kLongTimeout));
  }
  for (auto& m : members) EXPECT_EQ(m->SayLines(), members[0]->SayLines()) << m->nick();
  members[0]->Send("/who");
  EXPECT_TRUE(members[0]->WaitFor("*** 6 members: ann, ben, cat, dan, eve, fay"));
  for (size_t i = 1; i < members.size(); ++i) {
    members[0]->Send(absl::StrCat("/msg ", nicks[i], " psst ", i));
    EXPECT_TRUE(members[i]->WaitUntil(
        [&](const std::string& l) { return absl::EndsWith(l, absl::StrCat("ann: psst ", i)); },
        "the private line"));
  }
  server.process->Kill(SIGTERM);
  EXPECT_EQ(ExitCode(*server.process), 0);
  for (auto& m : members) {
    EXPECT_TRUE(m->WaitFor("*** server shutting down")) << m->nick();
    EXPECT_EQ(ExitCode(m->process()), 1) << m->nick();
  }
}

// A room configured far beyond the old 1024 cap: it serves, announces joins
// only up to --announce_limit, and /who gives the room's size.
TEST(ChatTest, LargeRoomAnnouncesUpToTheLimitAndWhoCounts) {
  ChatServer server = StartServer({"--max_members", "100000", "--max_members_per_address",
                                   "100000", "--announce_limit", "1"});
  Member alice(server.port, "alice");
  ASSERT_TRUE(alice.WaitFor("*** alice joined"));
  Member bob(server.port, "bob");
  ASSERT_TRUE(bob.WaitUntil(
      [](const std::string& l) { return absl::EndsWith(l, "as bob; 2 members: alice, bob"); },
      "bob's welcome"));
  bob.Send("hello");
  ASSERT_TRUE(alice.WaitFor("<bob> hello"));  // no "*** bob joined" before it
  EXPECT_THAT(alice.lines(), Not(Contains("*** bob joined")));
  alice.Send("/who");
  EXPECT_TRUE(alice.WaitFor("*** 2 members: alice, bob"));
  for (Member* m : {&alice, &bob}) {
    m->process().CloseStdin();
    EXPECT_EQ(ExitCode(m->process()), 0);
  }
}

TEST(ChatTest, UsageErrors) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"chat"}, "expects serve or join"},
      {{"chat", "dance"}, "unknown mode \"dance\""},
      {{"chat", "serve"}, "--port is required"},
      {{"chat", "serve", "--port", "0", "--max_members", "0"}, "--max_members 0"},
      {{"chat", "serve", "--port", "0", "--max_members", "1000001"},
       "--max_members 1000001 is out of range (1 to 1000000)"},
      {{"chat", "serve", "--port", "0", "--threads", "300"},
       "--threads 300 is out of range (1 to 256; 0: one per CPU)"},
      {{"chat", "serve", "--port", "0", "--announce_limit", "-1"},
       "--announce_limit -1 is out of range (0 to 1000000)"},
      {{"chat", "serve", "--port", "0", "--timeout", "soon"}, "--timeout"},
      {{"chat", "join", "127.0.0.1:9"}, "--nick NAME is required"},
      {{"chat", "join", "--nick", "x"}, "join expects HOST:PORT"},
  };
  for (const auto& [args, message] : cases) {
    auto p = Udpmsg(args);
    EXPECT_EQ(ExitCode(*p), 2) << absl::StrJoin(args, " ");
    EXPECT_THAT(p->stderr_text(), HasSubstr(message)) << absl::StrJoin(args, " ");
  }
  // Nobody listening: the handshake times out.
  auto p = Udpmsg({"chat", "join", "127.0.0.1:9", "--nick", "x", "--timeout", "300ms"});
  EXPECT_EQ(ExitCode(*p), 1);
  EXPECT_THAT(p->stderr_text(), StartsWith("udpmsg: cannot connect to 127.0.0.1:9"));
}

// ---- (6) interactive, in tmux ------------------------------------------------

std::string FindTmux() {
  for (const char* path : {"/usr/bin/tmux", "/usr/local/bin/tmux", "/bin/tmux"}) {
    if (::access(path, X_OK) == 0) return path;
  }
  return "";
}

// A private tmux server (its own socket), killed when destroyed.
class Tmux {
 public:
  static absl::StatusOr<std::unique_ptr<Tmux>> Start(const std::string& binary) {
    std::unique_ptr<Tmux> t(new Tmux);
    t->binary_ = binary;
    // Unix socket paths are short (108 bytes): prefer /tmp.
    const char* test_tmpdir = std::getenv("TEST_TMPDIR");
    for (const std::string& base : {std::string("/tmp"), std::string(test_tmpdir ? test_tmpdir : "")}) {
      if (base.empty()) continue;
      std::string dir = base + "/chat_tmux.XXXXXX";
      if (::mkdtemp(dir.data()) != nullptr && dir.size() < 80) {
        t->dir_ = dir;
        break;
      }
    }
    if (t->dir_.empty()) return absl::UnavailableError("no short writable directory for a socket");
    return t;
  }
  ~Tmux() {
    if (started_) (void)Run({"kill-server"});
  }

  const std::string& dir() const { return dir_; }

  absl::StatusOr<std::string> Run(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {binary_, "-S", dir_ + "/socket"};
    argv.insert(argv.end(), args.begin(), args.end());
    absl::StatusOr<std::unique_ptr<Subprocess>> p = Subprocess::Start(argv);
    if (!p.ok()) return p.status();
    absl::StatusOr<int> code = (*p)->Wait(kTimeout);
    if (!code.ok()) return code.status();
    if (*code != 0) {
      return absl::InternalError(absl::StrCat("tmux ", absl::StrJoin(args, " "), ": exit ", *code,
                                              ": ", (*p)->stderr_text()));
    }
    if (!args.empty() && args[0] == "new-session") started_ = true;
    return (*p)->stdout_text();
  }

  // The visible pane, trailing blank lines dropped.
  std::vector<std::string> Capture() {
    absl::StatusOr<std::string> text = Run({"capture-pane", "-p", "-t", "chat"});
    if (!text.ok()) return {};
    std::vector<std::string> lines = absl::StrSplit(*text, '\n');
    for (std::string& l : lines) l = std::string(absl::StripTrailingAsciiWhitespace(l));
    while (!lines.empty() && lines.back().empty()) lines.pop_back();
    return lines;
  }

  // Polls the pane until `ok` holds; the last capture otherwise.
  bool WaitForPane(const std::function<bool(const std::vector<std::string>&)>& ok,
                   std::vector<std::string>* last) {
    const absl::Time deadline = absl::Now() + kTimeout;
    for (;;) {
      *last = Capture();
      if (ok(*last)) return true;
      if (absl::Now() >= deadline) return false;
      absl::SleepFor(absl::Milliseconds(50));  // polling the pane, not waiting on luck
    }
  }

  // Polls until the pane's cursor is in column `x` (0-based).
  bool WaitForCursorX(int x, std::string* last) {
    const absl::Time deadline = absl::Now() + kTimeout;
    for (;;) {
      absl::StatusOr<std::string> out = Run({"display-message", "-p", "-t", "chat", "#{cursor_x}"});
      *last = out.ok() ? std::string(absl::StripAsciiWhitespace(*out)) : out.status().ToString();
      if (*last == absl::StrCat(x)) return true;
      if (absl::Now() >= deadline) return false;
      absl::SleepFor(absl::Milliseconds(50));  // polling the pane, not waiting on luck
    }
  }

 private:
  Tmux() = default;
  std::string binary_;
  std::string dir_;
  bool started_ = false;
};

// "[HH:MM] rest" -> whether rest == want.
bool Stamped(const std::string& line, const std::string& want) {
  return line.size() == want.size() + 8 && line[0] == '[' && line[3] == ':' && line[6] == ']' &&
         line[7] == ' ' && line.substr(8) == want;
}

bool HasStamped(const std::vector<std::string>& pane, const std::string& want) {
  return std::any_of(pane.begin(), pane.end(),
                     [&](const std::string& l) { return Stamped(l, want); });
}

std::string Last(const std::vector<std::string>& pane) { return pane.empty() ? "" : pane.back(); }

TEST(ChatTmuxTest, PromptEditingAndIncomingLinesDoNotGarble) {
  const std::string tmux_binary = FindTmux();
  if (tmux_binary.empty()) {
    GTEST_SKIP() << "tmux is not installed (apt-get install tmux); see docs/chat-tmux-check.md "
                    "for the manual check";
  }
  absl::StatusOr<std::unique_ptr<Tmux>> tmux_or = Tmux::Start(tmux_binary);
  if (!tmux_or.ok()) GTEST_SKIP() << "cannot use tmux here: " << tmux_or.status();
  Tmux& tmux = **tmux_or;

  ChatServer server = StartServer();
  ASSERT_NE(server.port, 0);
  Member bob(server.port, "bob");
  ASSERT_TRUE(bob.WaitFor("*** bob joined"));

  char cwd[4096];
  ASSERT_NE(::getcwd(cwd, sizeof(cwd)), nullptr);
  const std::string binary = absl::StrCat(cwd, "/", UdpmsgPath());
  // The script records the exit code and whether the terminal settings came
  // back, then stays so the pane can be captured.
  const std::string script = tmux.dir() + "/alice.sh";
  {
    std::ofstream out(script);
    out << "saved=$(stty -g)\n"
        << "'" << binary << "' chat join 127.0.0.1:" << server.port
        << " --nick alice --color=false\n"
        << "code=$?\n"
        << "if [ \"$saved\" = \"$(stty -g)\" ]; then same=yes; else same=no; fi\n"
        << "echo \"exit=$code restored=$same\"\n"
        << "sleep 600\n";
  }
  ::setenv("TERM", "xterm-256color", 0);
  absl::StatusOr<std::string> started = tmux.Run(
      {"new-session", "-d", "-s", "chat", "-x", "100", "-y", "30", "sh " + script});
  if (!started.ok()) GTEST_SKIP() << "cannot start tmux here: " << started.status();

  std::vector<std::string> pane;
  ASSERT_TRUE(tmux.WaitForPane(
      [](const auto& p) { return HasStamped(p, "*** alice joined") && Last(p) == ">"; }, &pane))
      << absl::StrJoin(pane, "\n");
  ASSERT_TRUE(bob.WaitFor("*** alice joined"));

  ASSERT_TRUE(tmux.Run({"send-keys", "-t", "chat", "-l", "hello there"}).ok());
  ASSERT_TRUE(tmux.Run({"send-keys", "-t", "chat", "Enter"}).ok());
  EXPECT_TRUE(tmux.WaitForPane(
      [](const auto& p) { return HasStamped(p, "<alice> hello there") && Last(p) == ">"; },
      &pane))
      << absl::StrJoin(pane, "\n");
  EXPECT_TRUE(bob.WaitFor("<alice> hello there"));

  // A half-typed line survives an incoming one: it is redrawn under it.
  ASSERT_TRUE(tmux.Run({"send-keys", "-t", "chat", "-l", "half typed"}).ok());
  ASSERT_TRUE(
      tmux.WaitForPane([](const auto& p) { return Last(p) == "> half typed"; }, &pane))
      << absl::StrJoin(pane, "\n");
  bob.Send("interrupting you");
  EXPECT_TRUE(tmux.WaitForPane(
      [](const auto& p) {
        return HasStamped(p, "<bob> interrupting you") && Last(p) == "> half typed";
      },
      &pane))
      << absl::StrJoin(pane, "\n");
  ASSERT_TRUE(tmux.Run({"send-keys", "-t", "chat", "-l", " done"}).ok());
  ASSERT_TRUE(tmux.Run({"send-keys", "-t", "chat", "Enter"}).ok());
  EXPECT_TRUE(bob.WaitFor("<alice> half typed done"));
  EXPECT_TRUE(tmux.WaitForPane(
      [](const auto& p) { return HasStamped(p, "<alice> half typed done") && Last(p) == ">"; },
      &pane))
      << absl::StrJoin(pane, "\n");

  const auto keys = [&](const std::vector<std::string>& k) {
    std::vector<std::string> args = {"send-keys", "-t", "chat"};
    args.insert(args.end(), k.begin(), k.end());
    absl::StatusOr<std::string> r = tmux.Run(args);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok();
  };
  // Editing keys: Backspace, Ctrl-W (word), Left and Right, an unbound key's
  // escape sequence (F12: consumed whole).
  for (const std::vector<std::string>& k :
       std::vector<std::vector<std::string>>{{"-l", "abcd"},
                                             {"BSpace"},
                                             {"-l", "X one two"},
                                             {"C-w"},
                                             {"Left"},
                                             {"Right"},
                                             {"F12"},
                                             {"-l", "three"}}) {
    ASSERT_TRUE(keys(k));
  }
  ASSERT_TRUE(
      tmux.WaitForPane([](const auto& p) { return Last(p) == "> abcX one three"; }, &pane))
      << absl::StrJoin(pane, "\n");
  ASSERT_TRUE(tmux.Run({"send-keys", "-t", "chat", "Enter"}).ok());
  EXPECT_TRUE(bob.WaitFor("<alice> abcX one three"));
  ASSERT_TRUE(tmux.Run({"send-keys", "-t", "chat", "-l", "never sent"}).ok());
  ASSERT_TRUE(tmux.Run({"send-keys", "-t", "chat", "C-u"}).ok());
  ASSERT_TRUE(tmux.Run({"send-keys", "-t", "chat", "-l", "/me waves"}).ok());
  ASSERT_TRUE(tmux.Run({"send-keys", "-t", "chat", "Enter"}).ok());
  EXPECT_TRUE(bob.WaitFor("* alice waves"));

  // The typo: "helo world", seven Lefts, "l" sends "hello world".
  ASSERT_TRUE(keys({"-l", "helo world"}));
  ASSERT_TRUE(keys({"Left", "Left", "Left", "Left", "Left", "Left", "Left"}));
  std::string cursor;
  EXPECT_TRUE(tmux.WaitForCursorX(5, &cursor)) << "cursor at " << cursor;  // "> hel|o world"
  ASSERT_TRUE(keys({"-l", "l"}));
  ASSERT_TRUE(tmux.WaitForPane([](const auto& p) { return Last(p) == "> hello world"; }, &pane))
      << absl::StrJoin(pane, "\n");
  ASSERT_TRUE(keys({"Enter"}));
  EXPECT_TRUE(bob.WaitFor("<alice> hello world"));

  // Ctrl-D with a draft deletes under the cursor (Home first) and does not quit.
  ASSERT_TRUE(keys({"-l", "xdraft"}));
  ASSERT_TRUE(keys({"Home"}));
  ASSERT_TRUE(keys({"C-d"}));
  ASSERT_TRUE(keys({"Enter"}));
  EXPECT_TRUE(bob.WaitFor("<alice> draft"));

  // Up and Down: the lines sent, and the half-typed one kept at the bottom.
  ASSERT_TRUE(keys({"-l", "new"}));
  ASSERT_TRUE(keys({"Up"}));
  ASSERT_TRUE(tmux.WaitForPane([](const auto& p) { return Last(p) == "> draft"; }, &pane))
      << absl::StrJoin(pane, "\n");
  ASSERT_TRUE(keys({"Up"}));
  ASSERT_TRUE(tmux.WaitForPane([](const auto& p) { return Last(p) == "> hello world"; }, &pane))
      << absl::StrJoin(pane, "\n");
  ASSERT_TRUE(keys({"Down"}));
  ASSERT_TRUE(keys({"Down"}));
  ASSERT_TRUE(tmux.WaitForPane([](const auto& p) { return Last(p) == "> new"; }, &pane))
      << absl::StrJoin(pane, "\n");
  ASSERT_TRUE(keys({"C-u"}));

  // Tab completes a member's nick: "nick: " at the start of the line.
  ASSERT_TRUE(keys({"-l", "bo"}));
  ASSERT_TRUE(keys({"Tab"}));
  ASSERT_TRUE(tmux.WaitForPane([](const auto& p) { return Last(p) == "> bob:"; }, &pane))
      << absl::StrJoin(pane, "\n");
  ASSERT_TRUE(keys({"-l", "hi"}));
  ASSERT_TRUE(keys({"Enter"}));
  EXPECT_TRUE(bob.WaitFor("<alice> bob: hi"));

  // A (bracketed) paste longer than a line: the first 4096 bytes stay, once
  // said; the prompt shows the end of the line, scrolled, the cursor after it.
  ASSERT_TRUE(tmux.Run({"set-buffer", std::string(5000, 'x')}).ok());
  ASSERT_TRUE(tmux.Run({"paste-buffer", "-p", "-t", "chat"}).ok());
  EXPECT_TRUE(tmux.WaitForPane(
      [](const auto& p) {
        return HasStamped(p, "*** line too long: kept the first 4096 bytes") &&
               Last(p) == "> " + std::string(97, 'x');
      },
      &pane))
      << absl::StrJoin(pane, "\n");
  EXPECT_TRUE(tmux.WaitForCursorX(99, &cursor)) << "cursor at " << cursor;
  ASSERT_TRUE(keys({"Enter"}));
  EXPECT_TRUE(bob.WaitFor("<alice> " + std::string(4096, 'x')));

  // Ctrl-C leaves cleanly and gives the terminal back as it was.
  ASSERT_TRUE(tmux.Run({"send-keys", "-t", "chat", "C-c"}).ok());
  EXPECT_TRUE(bob.WaitFor("*** alice left"));
  EXPECT_TRUE(tmux.WaitForPane(
      [](const auto& p) { return Last(p) == "exit=0 restored=yes"; }, &pane))
      << absl::StrJoin(pane, "\n");
  for (const std::string& l : pane) EXPECT_THAT(l, Not(HasSubstr("never sent")));
  bob.process().CloseStdin();
  EXPECT_EQ(ExitCode(bob.process()), 0);
}

}  // namespace
}  // namespace udpmsg::testing

namespace udpmsg::testing {
namespace {

// Item 2 on a terminal: a line typed while the server is gone is refused
// out loud and stays under the prompt; after the reconnect, Enter sends it.
TEST(ChatTmuxTest, ALineTypedWhileDisconnectedIsRefusedAndKeptInThePrompt) {
  const std::string tmux_binary = FindTmux();
  if (tmux_binary.empty()) GTEST_SKIP() << "tmux is not installed (apt-get install tmux)";
  absl::StatusOr<std::unique_ptr<Tmux>> tmux_or = Tmux::Start(tmux_binary);
  if (!tmux_or.ok()) GTEST_SKIP() << "cannot use tmux here: " << tmux_or.status();
  Tmux& tmux = **tmux_or;

  ChatServer server = StartServer({"--timeout", "2s"});
  const int port = server.port;
  ASSERT_NE(port, 0);
  char cwd[4096];
  ASSERT_NE(::getcwd(cwd, sizeof(cwd)), nullptr);
  const std::string script = tmux.dir() + "/alice.sh";
  {
    std::ofstream out(script);
    out << "'" << cwd << "/" << UdpmsgPath() << "' chat join 127.0.0.1:" << port
        << " --nick alice --timeout 2s --color=false\n"
        << "echo \"exit=$?\"\n"
        << "sleep 600\n";
  }
  ::setenv("TERM", "xterm-256color", 0);
  absl::StatusOr<std::string> started = tmux.Run(
      {"new-session", "-d", "-s", "chat", "-x", "120", "-y", "30", "sh " + script});
  if (!started.ok()) GTEST_SKIP() << "cannot start tmux here: " << started.status();
  std::vector<std::string> pane;
  ASSERT_TRUE(tmux.WaitForPane(
      [](const auto& p) { return HasStamped(p, "*** alice joined") && Last(p) == ">"; }, &pane))
      << absl::StrJoin(pane, "\n");

  server.process->Kill(SIGKILL);
  EXPECT_EQ(ExitCode(*server.process), 128 + SIGKILL);
  auto lost = [](const std::vector<std::string>& p) {
    return std::any_of(p.begin(), p.end(), [](const std::string& l) {
      return absl::StrContains(l, "*** connection lost: ");
    });
  };
  ASSERT_TRUE(tmux.WaitForPane(lost, &pane)) << absl::StrJoin(pane, "\n");
  ASSERT_TRUE(tmux.Run({"send-keys", "-t", "chat", "-l", "typed in the dark"}).ok());
  ASSERT_TRUE(tmux.Run({"send-keys", "-t", "chat", "Enter"}).ok());
  ASSERT_TRUE(tmux.WaitForPane(
      [](const auto& p) {
        return HasStamped(p, "*** not sent (not connected): typed in the dark") &&
               Last(p) == "> typed in the dark";
      },
      &pane))
      << absl::StrJoin(pane, "\n");

  ChatServer again = StartServer({"--timeout", "2s"}, port);
  ASSERT_EQ(again.port, port);
  Member bob(port, "bob");
  ASSERT_TRUE(tmux.WaitForPane(
      [&](const auto& p) {
        return std::any_of(p.begin(), p.end(), [&](const std::string& l) {
          return absl::StrContains(l, absl::StrCat("*** reconnected to 127.0.0.1:", port));
        }) && Last(p) == "> typed in the dark";
      },
      &pane))
      << absl::StrJoin(pane, "\n");
  ASSERT_TRUE(bob.WaitFor("*** bob joined"));
  ASSERT_TRUE(tmux.Run({"send-keys", "-t", "chat", "Enter"}).ok());
  EXPECT_TRUE(bob.WaitFor("<alice> typed in the dark"));
  ASSERT_TRUE(tmux.Run({"send-keys", "-t", "chat", "C-c"}).ok());
  EXPECT_TRUE(tmux.WaitForPane([](const auto& p) { return Last(p) == "exit=0"; }, &pane))
      << absl::StrJoin(pane, "\n");
  bob.process().CloseStdin();
  EXPECT_EQ(ExitCode(bob.process()), 0);
}

}  // namespace
}  // namespace udpmsg::testing
