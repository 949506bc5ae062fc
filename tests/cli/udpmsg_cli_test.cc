// Runs the udpmsg binary as a user would and checks what it prints.
#include <signal.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/cli/subprocess.h"
#include "udp/socket_address.h"
#include "udp/stream_socket.h"

namespace udpmsg::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::StartsWith;

constexpr absl::Duration kTimeout = absl::Seconds(10);

std::unique_ptr<Subprocess> Udpmsg(std::vector<std::string> args) {
  args.insert(args.begin(), UdpmsgPath());
  absl::StatusOr<std::unique_ptr<Subprocess>> p = Subprocess::Start(args);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *std::move(p) : nullptr;
}

// Runs to completion; returns the exit code.
int RunToEnd(Subprocess& p) {
  absl::StatusOr<int> code = p.Wait(kTimeout);
  EXPECT_TRUE(code.ok()) << code.status();
  return code.ok() ? *code : -1;
}

// Starts a server and returns it with the port from its first stderr line.
std::pair<std::unique_ptr<Subprocess>, int> StartServer(std::vector<std::string> args) {
  std::unique_ptr<Subprocess> server = Udpmsg(std::move(args));
  absl::StatusOr<std::string> line = server->ReadStderrLine(kTimeout);
  EXPECT_TRUE(line.ok()) << line.status();
  absl::StatusOr<int> port = ParseListeningPort(line.ok() ? *line : "");
  EXPECT_TRUE(port.ok()) << port.status();
  return {std::move(server), port.ok() ? *port : 0};
}

TEST(ShowIpTest, NumericAddressesPrintTheirFamily) {
  auto p = Udpmsg({"showip", "127.0.0.1"});
  EXPECT_EQ(RunToEnd(*p), 0);
  EXPECT_THAT(Lines(p->stdout_text()),
              ElementsAre("IP addresses for 127.0.0.1:", "  IPv4: 127.0.0.1"));
  auto q = Udpmsg({"showip", "::1"});
  EXPECT_EQ(RunToEnd(*q), 0);
  EXPECT_THAT(Lines(q->stdout_text()), ElementsAre("IP addresses for ::1:", "  IPv6: ::1"));
}

TEST(ShowIpTest, LocalhostListsLoopbackAddresses) {
  auto p = Udpmsg({"showip", "localhost"});
  EXPECT_EQ(RunToEnd(*p), 0);
  std::vector<std::string> lines = Lines(p->stdout_text());
  ASSERT_GE(lines.size(), 2u);
  EXPECT_EQ(lines[0], "IP addresses for localhost:");
  for (size_t i = 1; i < lines.size(); ++i) {
    EXPECT_THAT(lines[i], MatchesRegex("  IPv(4: 127\\.[0-9.]+|6: ::1)"));
  }
}

TEST(ShowIpTest, UnknownHostIsOneLineErrorWithExitTwo) {
  auto p = Udpmsg({"showip", "no-such-host.invalid"});
  EXPECT_EQ(RunToEnd(*p), 2);
  EXPECT_EQ(p->stdout_text(), "");
  std::vector<std::string> lines = Lines(p->stderr_text());
  ASSERT_EQ(lines.size(), 1u) << p->stderr_text();
  EXPECT_THAT(lines[0], StartsWith("udpmsg: resolve \"no-such-host.invalid\": "));
}

TEST(CliTest, UnknownCommandAndMissingArgumentsAreUsageErrors) {
  auto p = Udpmsg({"frobnicate"});
  EXPECT_EQ(RunToEnd(*p), 2);
  EXPECT_THAT(p->stderr_text(), HasSubstr("unknown command \"frobnicate\""));
  auto q = Udpmsg({"listen"});
  EXPECT_EQ(RunToEnd(*q), 2);
  EXPECT_THAT(q->stderr_text(), HasSubstr("--port is required"));
  auto r = Udpmsg({"listen", "--port", "70000"});
  EXPECT_EQ(RunToEnd(*r), 2);
  EXPECT_THAT(r->stderr_text(),
              StartsWith("udpmsg listen: --port \"70000\" is not a number from 0 to 65535"));
  auto s = Udpmsg({"send", "127.0.0.1", "x"});
  EXPECT_EQ(RunToEnd(*s), 2);
  EXPECT_THAT(s->stderr_text(), HasSubstr("missing port"));
}

TEST(CliTest, BadFlagValueFails) {
  auto p = Udpmsg({"listen", "--port", "abc"});
  EXPECT_EQ(RunToEnd(*p), 2);
  EXPECT_THAT(p->stderr_text(),
              StartsWith("udpmsg listen: --port \"abc\" is not a number from 0 to 65535"));
}

class ListenSendTest : public ::testing::TestWithParam<const char*> {};

INSTANTIATE_TEST_SUITE_P(Loopbacks, ListenSendTest, ::testing::Values("127.0.0.1", "::1"),
                         [](const auto& info) {
                           return std::string(info.param[0] == ':' ? "IPv6" : "IPv4");
                         });

TEST_P(ListenSendTest, EachArgumentIsOneDatagramPrintedWithItsSender) {
  auto [listener, port] = StartServer({"listen", "--port", "0", "--count", "3"});
  const std::string host = GetParam();
  const std::string target =
      host[0] == ':' ? absl::StrCat("[", host, "]:", port) : absl::StrCat(host, ":", port);
  auto sender = Udpmsg({"send", target, "hello", "wide world", "tab\there"});
  EXPECT_EQ(RunToEnd(*sender), 0);
  EXPECT_THAT(sender->stderr_text(), HasSubstr("sent 5 bytes to "));
  EXPECT_EQ(RunToEnd(*listener), 0);
  std::vector<std::string> lines = Lines(listener->stdout_text());
  ASSERT_EQ(lines.size(), 3u) << listener->stdout_text();
  const std::string from = host[0] == ':' ? "\\[::1\\]:[0-9]+" : "127\\.0\\.0\\.1:[0-9]+";
  EXPECT_THAT(lines[0], MatchesRegex(from + ": hello"));
  EXPECT_THAT(lines[1], MatchesRegex(from + ": wide world"));
  EXPECT_THAT(lines[2], MatchesRegex(from + ": tab\\\\there"));  // control bytes escaped
}

TEST(ListenSendTest, StdinLinesAreDatagramsWhenNoMessagesAreGiven) {
  auto [listener, port] = StartServer({"listen", "--port", "0", "--count", "2"});
  auto sender = Udpmsg({"send", absl::StrCat("localhost:", port)});
  ASSERT_TRUE(sender->WriteStdin("first line\nsecond line\n").ok());
  sender->CloseStdin();
  EXPECT_EQ(RunToEnd(*sender), 0);
  EXPECT_EQ(RunToEnd(*listener), 0);
  std::vector<std::string> lines = Lines(listener->stdout_text());
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[0], HasSubstr(": first line"));
  EXPECT_THAT(lines[1], HasSubstr(": second line"));
}

TEST(ListenSendTest, BindToOneAddressPrintsIt) {
  auto [listener, port] =
      StartServer({"listen", "--port", "0", "--bind", "127.0.0.1", "--count", "1"});
  EXPECT_THAT(listener->stderr_text(), HasSubstr(absl::StrCat("listening on 127.0.0.1:", port)));
  auto sender = Udpmsg({"send", absl::StrCat("127.0.0.1:", port), "x"});
  EXPECT_EQ(RunToEnd(*sender), 0);
  EXPECT_EQ(RunToEnd(*listener), 0);
}

TEST(ListenSendTest, PortInUseIsAOneLineError) {
  auto [first, port] = StartServer({"listen", "--port", "0", "--bind", "127.0.0.1"});
  auto second = Udpmsg({"listen", "--port", absl::StrCat(port), "--bind", "127.0.0.1"});
  EXPECT_EQ(RunToEnd(*second), 1);
  EXPECT_EQ(second->stderr_text(),
            absl::StrCat("udpmsg: bind 127.0.0.1:", port, ": Address already in use\n"));
}

TEST(ListenSendTest, OversizedMessageIsRefusedBeforeSending) {
  auto sender = Udpmsg({"send", "127.0.0.1:9", std::string(70000, 'x')});
  EXPECT_EQ(RunToEnd(*sender), 2);
  EXPECT_THAT(sender->stderr_text(), HasSubstr("exceeds the UDP maximum of 65507 bytes"));
}

TEST(TcpTest, ServeGreetsManyClientsOverIpv4AndIpv6) {
  auto [server, port] =
      StartServer({"tcp", "serve", "--port", "0", "--count", "3", "--message", "hi there"});
  EXPECT_THAT(server->stderr_text(), HasSubstr("listening on [::]:"));
  // A client that connects and never reads or closes must not hold up others.
  absl::StatusOr<udp::StreamSocket> idle =
      udp::StreamSocket::Connect({udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, port)});
  ASSERT_TRUE(idle.ok()) << idle.status();

  auto v4 = Udpmsg({"tcp", "connect", absl::StrCat("127.0.0.1:", port)});
  auto v6 = Udpmsg({"tcp", "connect", absl::StrCat("[::1]:", port)});
  EXPECT_EQ(RunToEnd(*v4), 0);
  EXPECT_EQ(RunToEnd(*v6), 0);
  // The greeting has no newline of its own; connect ends the line.
  EXPECT_EQ(v4->stdout_text(), "hi there\n");
  EXPECT_EQ(v6->stdout_text(), "hi there\n");
  EXPECT_THAT(v4->stderr_text(), HasSubstr(absl::StrCat("connected to 127.0.0.1:", port)));
  EXPECT_THAT(v6->stderr_text(), HasSubstr(absl::StrCat("connected to [::1]:", port)));
  EXPECT_EQ(RunToEnd(*server), 0);
  EXPECT_THAT(server->stderr_text(), HasSubstr("connection from 127.0.0.1:"));
  EXPECT_THAT(server->stderr_text(), HasSubstr("connection from [::1]:"));
}

TEST(TcpTest, ConnectAddsNoSecondNewlineAndNoneToNothing) {
  auto [server, port] =
      StartServer({"tcp", "serve", "--port", "0", "--count", "2", "--message", "one\ntwo\n"});
  auto client = Udpmsg({"tcp", "connect", absl::StrCat("127.0.0.1:", port)});
  EXPECT_EQ(RunToEnd(*client), 0);
  EXPECT_EQ(client->stdout_text(), "one\ntwo\n");
  auto [quiet, quiet_port] =
      StartServer({"tcp", "serve", "--port", "0", "--count", "1", "--message="});
  auto empty = Udpmsg({"tcp", "connect", absl::StrCat("127.0.0.1:", quiet_port)});
  EXPECT_EQ(RunToEnd(*empty), 0);
  EXPECT_EQ(empty->stdout_text(), "");
}

class TcpServeSignalTest : public ::testing::TestWithParam<int> {};

INSTANTIATE_TEST_SUITE_P(StopSignals, TcpServeSignalTest,
                         ::testing::Values(SIGINT, SIGTERM, SIGHUP), [](const auto& info) {
                           return std::string(info.param == SIGINT    ? "SIGINT"
                                              : info.param == SIGTERM ? "SIGTERM"
                                                                      : "SIGHUP");
                         });

// Like chat serve: a stop signal is the normal end of a server, exit 0.
TEST_P(TcpServeSignalTest, StopSignalEndsServeWithExitZero) {
  auto [server, port] = StartServer({"tcp", "serve", "--port", "0", "--message", "hi"});
  ASSERT_NE(port, 0);
  auto client = Udpmsg({"tcp", "connect", absl::StrCat("127.0.0.1:", port)});
  EXPECT_EQ(RunToEnd(*client), 0);  // serving, not just listening
  server->Kill(GetParam());
  EXPECT_EQ(RunToEnd(*server), 0) << server->stderr_text();
}

TEST(TcpTest, ConnectToClosedPortFailsWithReason) {
  udp::SocketAddress closed;
  {
    absl::StatusOr<udp::StreamListener> temp = udp::StreamListener::Listen(
        udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, 0), 1, {});
    ASSERT_TRUE(temp.ok());
    closed = *temp->LocalAddress();
  }
  auto client = Udpmsg({"tcp", "connect", closed.ToString()});
  EXPECT_EQ(RunToEnd(*client), 1);
  EXPECT_EQ(client->stderr_text(),
            absl::StrCat("udpmsg: connect ", closed.ToString(), ": Connection refused\n"));
}

TEST(DemoTest, RunsOnLoopbackAndPasses) {
  auto demo = Udpmsg({"demo"});
  absl::StatusOr<int> code = demo->Wait(absl::Seconds(90));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << demo->stderr_text();
  EXPECT_THAT(demo->stdout_text(), HasSubstr("64/64 intact and in order"));
  EXPECT_THAT(demo->stdout_text(), HasSubstr("all checks passed"));
  // Through the impaired link, the reliable modes deliver all 200, once each.
  EXPECT_THAT(demo->stdout_text(),
              MatchesRegex("(.|\n)*udpmsg reliable-ordered +200 +200 +0 +0 +0\n(.|\n)*"));
  EXPECT_THAT(demo->stdout_text(),
              MatchesRegex("(.|\n)*udpmsg reliable-unord[.] +200 +200 +0 +0 +[0-9]+\n(.|\n)*"));
  EXPECT_THAT(demo->stdout_text(), HasSubstr("delivered intact in "));
  // The transfer went through the transfer library's receiver, which checked
  // its SHA-256.
  EXPECT_THAT(demo->stdout_text(), HasSubstr("verified by the receiver"));
  // The chat went through a chat server to two members; alice shows both
  // joins and the four lines in the server's order.
  EXPECT_THAT(demo->stdout_text(),
              MatchesRegex("(.|\n)*as alice's client shows it:\n"
                           " +[*]{3} alice joined\n"
                           " +[*]{3} bob joined\n"
                           " +<alice> hi bob, the link drops one packet in ten\n"
                           " +<bob> and yet this arrives in order\n"
                           " +<alice> reliable-ordered: retransmitted in new packets\n"
                           " +<bob> see you in the stats below\n(.|\n)*"));
}

}  // namespace
}  // namespace udpmsg::testing
