// One chat room over several `udpmsg chat serve --cluster` processes, all
// real: a real redis-server (tests/redis/redis_server.h), real servers, and
// scripted `udpmsg chat join` members (pipes on stdin/stdout), some behind
// `udpmsg impair` proxies. Checks what every member prints: one order
// across servers through loss, members moving to another server when theirs
// is killed (`chat join A B C`, the resume token taking their nick back
// there; a refused first connection moving on), Redis killed and restarted
// mid-run, and the errors of an unreachable Redis or a bad --cluster URL.
// Every wait is for an expected line, with a deadline; nothing sleeps.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
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
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/cli/chat_member.h"
#include "tests/cli/subprocess.h"
#include "tests/redis/redis_server.h"

namespace udpmsg::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr absl::Duration kTimeout = absl::Seconds(20);
// Everything of a lossy exchange: generous, the usual run takes seconds.
constexpr absl::Duration kLongTimeout = absl::Seconds(90);

std::string Address(int port) { return absl::StrCat("127.0.0.1:", port); }

std::unique_ptr<RedisServer> StartRedis() {
  absl::StatusOr<std::unique_ptr<RedisServer>> r = RedisServer::Start({});
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *std::move(r) : nullptr;
}

// `chat serve --port 0 --cluster URL --threads 1 FLAGS...`, once it listens
// and has said which room it serves.
UdpmsgServer StartClusterServer(const std::string& url, std::vector<std::string> flags = {}) {
  std::vector<std::string> args = {"chat",      "serve", "--port",    "0",
                                   "--cluster", url,     "--threads", "1"};
  args.insert(args.end(), flags.begin(), flags.end());
  UdpmsgServer s = StartUdpmsgServer(args, kTimeout);
  if (s.process != nullptr) {
    absl::StatusOr<std::string> room = s.process->ReadStderrLine(kTimeout);
    EXPECT_TRUE(room.ok()) << room.status();
    EXPECT_THAT(room.ok() ? *room : "", StartsWith("room "));
  }
  return s;
}

// `udpmsg impair` in front of 127.0.0.1:to_port; returns it and its port.
UdpmsgServer StartProxy(int to_port, const std::string& loss, int seed) {
  UdpmsgServer p = StartUdpmsgServer({"impair", "--listen", "0", "--to", Address(to_port), "--loss",
                                      loss, "--seed", absl::StrCat(seed)},
                                     kTimeout);
  if (p.process != nullptr) {
    absl::StatusOr<std::string> config = p.process->ReadStderrLine(kTimeout);  // "impairing ..."
    EXPECT_TRUE(config.ok()) << config.status();
  }
  return p;
}

// A member of the room given the servers on 127.0.0.1:PORTS.
class Member : public ChatMember {
 public:
  Member(const std::vector<int>& ports, const std::string& nick,
         std::vector<std::string> flags = {})
      : ChatMember(Addresses(ports), nick, std::move(flags)) {}

  // Quits (/quit) and returns the exit code.
  int Quit() {
    Send("/quit");
    return ExitCodeWithin(process(), kTimeout);
  }

 private:
  static std::vector<std::string> Addresses(const std::vector<int>& ports) {
    std::vector<std::string> out;
    for (int port : ports) out.push_back(Address(port));
    return out;
  }
};

// Every sender's lines `<nick> PREFIX k` appear once each, k = 0.. in order.
void ExpectEachSendersLinesInOrder(const std::vector<std::string>& transcript,
                                   const std::vector<std::string>& nicks, const std::string& prefix,
                                   int per_sender) {
  for (const std::string& nick : nicks) {
    int next = 0;
    for (const std::string& l : transcript) {
      if (!absl::StartsWith(l, absl::StrCat("<", nick, "> "))) continue;
      if (!absl::StrContains(l, prefix)) continue;
      EXPECT_EQ(l, absl::StrCat("<", nick, "> ", prefix, next)) << nick;
      ++next;
    }
    EXPECT_EQ(next, per_sender) << nick;
  }
}

// (a) Three servers of one room, two members on each, every member behind
// its own 10%-loss proxy: every member's transcript holds every line once,
// in one order, each sender's in the order sent.
TEST(ChatClusterTest, ThreeServersOneOrderThroughLoss) {
  std::unique_ptr<RedisServer> redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  std::vector<UdpmsgServer> servers;
  for (int i = 0; i < 3; ++i) {
    servers.push_back(StartClusterServer(redis->url("lobby"), {"--cluster_ttl", "2s"}));
    ASSERT_NE(servers.back().port, 0);
  }
  const std::vector<std::string> nicks = {"ann", "ben", "cat", "dan", "eve", "fay"};
  std::vector<int> seeds;
  for (size_t i = 0; i < nicks.size(); ++i) seeds.push_back(static_cast<int>(101 + i));
  SCOPED_TRACE(absl::StrCat("impair seeds ", absl::StrJoin(seeds, ","), " (member i: seed 101+i)"));
  std::vector<UdpmsgServer> proxies;
  std::vector<std::unique_ptr<Member>> members;
  for (size_t i = 0; i < nicks.size(); ++i) {
    proxies.push_back(StartProxy(servers[i / 2].port, "10%", seeds[i]));
    ASSERT_NE(proxies.back().port, 0);
    members.push_back(std::make_unique<Member>(std::vector<int>{proxies.back().port}, nicks[i]));
    ASSERT_TRUE(members.back()->WaitForPrefix(
        absl::StrCat("*** connected to ", Address(proxies.back().port), " as ", nicks[i], "; ")));
    // Everyone present sees the newcomer (the newcomer itself too) before
    // the next one comes.
    for (auto& m : members) {
      ASSERT_TRUE(m->WaitFor(absl::StrCat("*** ", nicks[i], " joined"))) << m->nick();
    }
  }

  constexpr int kPerMember = 20;
  constexpr int kBatch = 5;
  for (int start = 0; start < kPerMember; start += kBatch) {
    for (auto& m : members) {
      std::string batch;
      for (int k = start; k < start + kBatch; ++k) {
        absl::StrAppend(&batch, "line from ", m->nick(), " ", k, "\n");
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
  for (auto& m : members) EXPECT_EQ(m->Quit(), 0) << m->nick() << m->process().stderr_text();

  const std::vector<std::string> reference = members[0]->SayLines();
  ASSERT_EQ(reference.size(), total);
  for (auto& m : members) EXPECT_EQ(m->SayLines(), reference) << m->nick();
  EXPECT_EQ(std::set<std::string>(reference.begin(), reference.end()).size(), total);
  for (const std::string& nick : nicks) {
    ExpectEachSendersLinesInOrder(reference, {nick}, absl::StrCat("line from ", nick, " "),
                                  kPerMember);
  }
  // The proxies really dropped packets, both ways (summed over the members).
  uint64_t dropped[2] = {0, 0};
  for (UdpmsgServer& p : proxies) {
    p.process->Kill(SIGTERM);
    EXPECT_EQ(ExitCodeWithin(*p.process, kTimeout), 0);
    dropped[0] += ImpairCounters(p.process->stderr_text(), "up")["dropped_loss"];
    dropped[1] += ImpairCounters(p.process->stderr_text(), "down")["dropped_loss"];
  }
  EXPECT_GT(dropped[0], 0u) << "no packet was lost on the way to the servers";
  EXPECT_GT(dropped[1], 0u) << "no packet was lost on the way back";
  for (UdpmsgServer& s : servers) {
    s.process->Kill(SIGTERM);
    EXPECT_EQ(ExitCodeWithin(*s.process, kTimeout), 0) << s.process->stderr_text();
  }
}

// (b) Members given all three servers (each list starting with a different
// one). The server alice is on is killed: she notices, moves to the next
// server on her list and takes her nick back there with her resume token;
// the others see "*** alice reconnected", never a second alice, and what is
// said afterwards reaches everyone in one order. dave, on the killed server
// with --reconnect=false, exits 1.
TEST(ChatClusterTest, AKilledServersMembersMoveOn) {
  std::unique_ptr<RedisServer> redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  // A dead server's members leave the room ("left (server lost)") within
  // --cluster_ttl and a heartbeat: 10 s here, well after alice's reconnect
  // (her --timeout, 2 s, and a backoff of at most 0.5 s), which therefore
  // finds her nick still hers and takes it over with the token.
  std::vector<UdpmsgServer> servers;
  std::vector<int> ports;
  for (int i = 0; i < 3; ++i) {
    servers.push_back(StartClusterServer(redis->url("lobby"), {"--cluster_ttl", "10s"}));
    ASSERT_NE(servers.back().port, 0);
    ports.push_back(servers.back().port);
  }
  const std::vector<int> from0 = {ports[0], ports[1], ports[2]};
  const std::vector<int> from1 = {ports[1], ports[2], ports[0]};
  const std::vector<int> from2 = {ports[2], ports[0], ports[1]};
  const std::vector<std::string> quick = {"--timeout", "2s"};
  Member alice(from0, "alice", quick);
  ASSERT_TRUE(
      alice.WaitForPrefix(absl::StrCat("*** connected to ", Address(ports[0]), " as alice; ")));
  ASSERT_TRUE(alice.WaitFor("*** alice joined"));
  Member bob(from1, "bob", quick);
  ASSERT_TRUE(bob.WaitForPrefix(absl::StrCat("*** connected to ", Address(ports[1]), " as bob; ")));
  ASSERT_TRUE(bob.WaitFor("*** bob joined"));
  Member carol(from2, "carol", quick);
  ASSERT_TRUE(
      carol.WaitForPrefix(absl::StrCat("*** connected to ", Address(ports[2]), " as carol; ")));
  ASSERT_TRUE(carol.WaitFor("*** carol joined"));
  Member dave(from0, "dave", {"--timeout", "2s", "--reconnect=false"});
  ASSERT_TRUE(
      dave.WaitForPrefix(absl::StrCat("*** connected to ", Address(ports[0]), " as dave; ")));
  for (Member* m : {&alice, &bob, &carol, &dave}) ASSERT_TRUE(m->WaitFor("*** dave joined"));
  alice.Send("before the kill");
  for (Member* m : {&alice, &bob, &carol, &dave}) {
    ASSERT_TRUE(m->WaitFor("<alice> before the kill")) << m->nick();
  }

  servers[0].process->Kill(SIGKILL);
  EXPECT_EQ(ExitCodeWithin(*servers[0].process, kTimeout), 128 + SIGKILL);
  // dave: the connection is lost and he does not reconnect.
  EXPECT_EQ(ExitCodeWithin(dave.process(), kTimeout), 1);
  const std::vector<std::string> dave_err = Lines(dave.process().stderr_text());
  ASSERT_EQ(dave_err.size(), 1u) << dave.process().stderr_text();
  EXPECT_THAT(dave_err[0], StartsWith(absl::StrCat("udpmsg: lost connection to server ",
                                                   Address(ports[0]), ": ")));
  // alice: the loss, then the next server on her list, under her nick.
  ASSERT_TRUE(alice.WaitUntil(
      [&](const std::string& l) {
        return absl::StartsWith(l, "*** connection lost: ") &&
               absl::StrContains(l, absl::StrCat("; reconnecting to ", Address(ports[1]), " in "));
      },
      "the connection lost notice naming the next server"));
  ASSERT_TRUE(
      alice.WaitForPrefix(absl::StrCat("*** reconnected to ", Address(ports[1]), " as alice; ")));
  for (Member* m : {&alice, &bob, &carol}) {
    ASSERT_TRUE(m->WaitFor("*** alice reconnected")) << m->nick();
  }
  // One alice in the room, on whichever server is asked.
  for (Member* m : {&bob, &carol}) {
    m->Send("/who");
    ASSERT_TRUE(m->WaitUntil(
        [](const std::string& l) { return absl::StrContains(l, " members: "); }, "/who"));
    const std::string& who = m->lines().back();
    EXPECT_THAT(who, HasSubstr("alice")) << m->nick();
    EXPECT_EQ(who.find("alice"), who.rfind("alice")) << m->nick() << ": " << who;
  }

  // Lines after the move reach everyone in one order.
  constexpr int kAfter = 5;
  for (int k = 0; k < kAfter; ++k) {
    for (Member* m : {&alice, &bob, &carol}) m->Send(absl::StrCat("after ", k));
  }
  std::vector<std::vector<std::string>> after;
  for (Member* m : {&alice, &bob, &carol}) {
    int says = 0;
    ASSERT_TRUE(m->WaitUntil(
        [&](const std::string& l) {
          return absl::StartsWith(l, "<") && absl::StrContains(l, "> after ") &&
                 ++says == 3 * kAfter;
        },
        "every line after the move", kLongTimeout));
    std::vector<std::string> says_after;
    for (const std::string& l : m->SayLines()) {
      if (absl::StrContains(l, "> after ")) says_after.push_back(l);
    }
    after.push_back(says_after);
  }
  EXPECT_EQ(after[1], after[0]);
  EXPECT_EQ(after[2], after[0]);
  ExpectEachSendersLinesInOrder(after[0], {"alice", "bob", "carol"}, "after ", kAfter);
  // Never a second alice: no join of hers after the first, no leave either.
  for (Member* m : {&alice, &bob, &carol}) {
    int joins = 0;
    for (const std::string& l : m->lines()) {
      joins += l == "*** alice joined" ? 1 : 0;
      EXPECT_THAT(l, Not(StartsWith("*** alice left"))) << m->nick();
    }
    EXPECT_EQ(joins, 1) << m->nick() << "'s lines:\n" << absl::StrJoin(m->lines(), "\n");
  }
  for (Member* m : {&alice, &bob, &carol}) {
    EXPECT_EQ(m->Quit(), 0) << m->nick() << ": " << m->process().stderr_text();
  }
  for (size_t i = 1; i < servers.size(); ++i) {
    servers[i].process->Kill(SIGTERM);
    EXPECT_EQ(ExitCodeWithin(*servers[i].process, kTimeout), 0);
  }
  EXPECT_THAT(servers[1].process->stderr_text(), HasSubstr("\nalice reconnected from 127.0.0.1:"));
}

// (c) Redis killed (SIGKILL) while members chat and restarted: every member
// is told the store is lost, a line typed meanwhile is refused aloud, every
// member is told it is back, and the transcripts agree: every accepted line
// once, the refused one nowhere.
TEST(ChatClusterTest, RedisRestartedMidRun) {
  std::unique_ptr<RedisServer> redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  std::vector<UdpmsgServer> servers;
  for (int i = 0; i < 3; ++i) {
    servers.push_back(StartClusterServer(redis->url("lobby"), {"--cluster_ttl", "2s"}));
    ASSERT_NE(servers.back().port, 0);
  }
  const std::vector<std::string> nicks = {"alice", "bob", "carol"};
  std::vector<std::unique_ptr<Member>> members;
  for (size_t i = 0; i < nicks.size(); ++i) {
    members.push_back(std::make_unique<Member>(std::vector<int>{servers[i].port}, nicks[i]));
    for (auto& m : members) {
      ASSERT_TRUE(m->WaitFor(absl::StrCat("*** ", nicks[i], " joined"))) << m->nick();
    }
  }
  constexpr int kLines = 5;
  for (int k = 0; k < kLines; ++k) {
    for (auto& m : members) m->Send(absl::StrCat("before ", k));
  }
  for (auto& m : members) {
    int says = 0;
    ASSERT_TRUE(m->WaitUntil(
        [&](const std::string& l) { return absl::StartsWith(l, "<") && ++says == 3 * kLines; },
        "the lines before"));
  }

  redis->Kill(SIGKILL);
  const std::string lost =
      absl::StrCat("*** this server lost the room's store (Redis at 127.0.0.1:", redis->port(),
                   "): lines are refused until it is back");
  for (auto& m : members) ASSERT_TRUE(m->WaitFor(lost)) << m->nick();
  members[0]->Send("said during the outage");
  ASSERT_TRUE(members[0]->WaitFor(
      "*** error: the room is unavailable (its store cannot be reached): that message was not "
      "sent"));

  ASSERT_TRUE(redis->Restart().ok()) << redis->LogTail();
  for (auto& m : members) {
    ASSERT_TRUE(m->WaitFor("*** this server reached the room's store again: lines flow again"))
        << m->nick();
  }
  for (int k = 0; k < kLines; ++k) {
    for (auto& m : members) m->Send(absl::StrCat("after ", k));
  }
  for (auto& m : members) {
    int says = 0;
    ASSERT_TRUE(m->WaitUntil(
        [&](const std::string& l) {
          return absl::StartsWith(l, "<") && absl::StrContains(l, "> after ") &&
                 ++says == 3 * kLines;
        },
        "the lines after"));
  }
  for (auto& m : members) EXPECT_EQ(m->Quit(), 0) << m->nick();

  const std::vector<std::string> reference = members[0]->SayLines();
  EXPECT_EQ(reference.size(), 2u * 3 * kLines);
  for (auto& m : members) {
    EXPECT_EQ(m->SayLines(), reference) << m->nick();
    for (const std::string& l : m->lines()) {
      EXPECT_THAT(l, Not(HasSubstr("said during the outage"))) << m->nick();
    }
  }
  EXPECT_EQ(std::set<std::string>(reference.begin(), reference.end()).size(), reference.size());
  ExpectEachSendersLinesInOrder(reference, nicks, "before ", kLines);
  ExpectEachSendersLinesInOrder(reference, nicks, "after ", kLines);
  for (UdpmsgServer& s : servers) {
    s.process->Kill(SIGTERM);
    EXPECT_EQ(ExitCodeWithin(*s.process, kTimeout), 0);
    EXPECT_THAT(s.process->stderr_text(), HasSubstr("lost the room's Redis: "));
    EXPECT_THAT(s.process->stderr_text(), HasSubstr("reached the room's Redis at "));
  }
}

// A TCP (or UDP) port of 127.0.0.1 nobody listens on right now.
int ClosedPort(int type = SOCK_STREAM) {
  const int fd = ::socket(AF_INET, type, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);  // bound, never listening: connecting is refused
  return port;
}

// (d) An unreachable Redis is a runtime failure (exit 1, one line); a bad
// --cluster URL is bad input (exit 2, "udpmsg chat: --cluster: ...").
TEST(ChatClusterTest, UnreachableRedisAtStart) {
  const int port = ClosedPort();
  ASSERT_NE(port, 0);
  std::unique_ptr<Subprocess> p = StartUdpmsg({"chat", "serve", "--port", "0", "--cluster",
                                               absl::StrCat("redis://127.0.0.1:", port, "/room")});
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(ExitCodeWithin(*p, kTimeout), 1);
  EXPECT_EQ(p->stderr_text(), absl::StrCat("udpmsg: chat serve --cluster: cannot reach Redis at ",
                                           "127.0.0.1:", port, ": Connection refused\n"));
  EXPECT_EQ(p->stdout_text(), "");

  for (const std::string url :
       {"http://x", "redis://h:99999/r", "redis://127.0.0.1:6379", "redis://:@127.0.0.1:6379/r"}) {
    SCOPED_TRACE(url);
    std::unique_ptr<Subprocess> bad =
        StartUdpmsg({"chat", "serve", "--port", "0", "--cluster", url});
    ASSERT_NE(bad, nullptr);
    EXPECT_EQ(ExitCodeWithin(*bad, kTimeout), 2);
    const std::vector<std::string> err = Lines(bad->stderr_text());
    ASSERT_EQ(err.size(), 1u) << bad->stderr_text();
    EXPECT_THAT(err[0], StartsWith("udpmsg chat: --cluster: "));
  }
}

// (f) Redis over TLS: two servers reach a TLS-only redis-server with
// rediss:// and the test CA (--cluster_tls_ca); their members share one
// room. Without the CA (the system's store) the handshake is refused: exit
// 1, one line naming the address.
TEST(ChatClusterTest, TwoServersOverTlsToRedis) {
  RedisServer::Options o;
  o.tls = true;
  absl::StatusOr<std::unique_ptr<RedisServer>> redis = RedisServer::Start(o);
  ASSERT_TRUE(redis.ok()) << redis.status();
  const std::string url = (*redis)->url("lobby");
  ASSERT_TRUE(absl::StartsWith(url, "rediss://")) << url;
  const std::string ca = (*redis)->endpoint().tls_ca_file;
  UdpmsgServer one = StartClusterServer(url, {"--cluster_tls_ca", ca});
  UdpmsgServer two = StartClusterServer(url, {"--cluster_tls_ca", ca});
  ASSERT_NE(one.port, 0);
  ASSERT_NE(two.port, 0);
  Member alice({one.port}, "alice");
  ASSERT_TRUE(alice.WaitFor("*** alice joined"));
  Member bob({two.port}, "bob");
  ASSERT_TRUE(bob.WaitFor("*** bob joined"));
  ASSERT_TRUE(alice.WaitFor("*** bob joined"));
  alice.Send("over tls");
  EXPECT_TRUE(bob.WaitFor("<alice> over tls"));
  bob.Send("here too");
  EXPECT_TRUE(alice.WaitFor("<bob> here too"));
  EXPECT_EQ(alice.Quit(), 0);
  EXPECT_EQ(bob.Quit(), 0);

  std::unique_ptr<Subprocess> untrusted =
      StartUdpmsg({"chat", "serve", "--port", "0", "--cluster", url});
  ASSERT_NE(untrusted, nullptr);
  EXPECT_EQ(ExitCodeWithin(*untrusted, kTimeout), 1);
  const std::vector<std::string> err = Lines(untrusted->stderr_text());
  ASSERT_EQ(err.size(), 1u) << untrusted->stderr_text();
  EXPECT_THAT(err[0], StartsWith(absl::StrCat("udpmsg: chat serve --cluster: TLS handshake with "
                                              "Redis at 127.0.0.1:",
                                              (*redis)->port(), " failed: ")));
  std::unique_ptr<Subprocess> plain =
      StartUdpmsg({"chat", "serve", "--port", "0", "--cluster", "redis://127.0.0.1:6379/r",
                   "--cluster_tls_ca", ca});
  ASSERT_NE(plain, nullptr);
  EXPECT_EQ(ExitCodeWithin(*plain, kTimeout), 2);
  EXPECT_THAT(plain->stderr_text(), HasSubstr("rediss://"));
}

// (e) A first connection that is refused moves on to the next address at
// once, saying so; when every address refuses, join fails with the last
// one's error.
TEST(ChatClusterTest, ARefusedFirstConnectionTriesTheNextServer) {
  std::unique_ptr<RedisServer> redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  UdpmsgServer server = StartClusterServer(redis->url("lobby"));
  ASSERT_NE(server.port, 0);
  const int closed[2] = {ClosedPort(SOCK_DGRAM), ClosedPort(SOCK_DGRAM)};
  ASSERT_NE(closed[0], 0);
  ASSERT_NE(closed[1], 0);
  Member alice({closed[0], closed[1], server.port}, "alice");
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(alice.WaitFor(absl::StrCat("*** cannot connect to ", Address(closed[i]),
                                           ": unreachable: Connection refused; trying ",
                                           Address(i == 0 ? closed[1] : server.port))));
  }
  ASSERT_TRUE(
      alice.WaitForPrefix(absl::StrCat("*** connected to ", Address(server.port), " as alice; ")));
  EXPECT_EQ(alice.Quit(), 0);

  Member nobody({closed[0], closed[1]}, "bob");
  EXPECT_EQ(ExitCodeWithin(nobody.process(), kTimeout), 1);
  EXPECT_EQ(nobody.process().stderr_text(),
            absl::StrCat("udpmsg: cannot connect to ", Address(closed[1]),
                         ": unreachable: Connection refused\n"));
  EXPECT_EQ(nobody.process().stdout_text(),
            absl::StrCat("*** cannot connect to ", Address(closed[0]),
                         ": unreachable: Connection refused; trying ", Address(closed[1]), "\n"));
  server.process->Kill(SIGTERM);
  EXPECT_EQ(ExitCodeWithin(*server.process, kTimeout), 0);
}

}  // namespace
}  // namespace udpmsg::testing
