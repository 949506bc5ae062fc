// Runs the programs in examples/ the way a user would: the echo server and
// client, and two members of the minimal chat room. Every wait reads a pipe
// with a timeout; nothing sleeps.
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/cli/subprocess.h"

namespace udpmsg::testing {
namespace {

constexpr absl::Duration kTimeout = absl::Seconds(20);

std::unique_ptr<Subprocess> Start(const std::vector<std::string>& argv) {
  absl::StatusOr<std::unique_ptr<Subprocess>> p = Subprocess::Start(argv);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *std::move(p) : nullptr;
}

// Reads the server's "listening on ADDR:PORT" line; 0 on failure.
int ListeningPort(Subprocess& server) {
  absl::StatusOr<std::string> line = server.ReadStderrLine(kTimeout);
  EXPECT_TRUE(line.ok()) << line.status() << "\nstderr: " << server.stderr_text();
  absl::StatusOr<int> port = ParseListeningPort(line.ok() ? *line : "");
  EXPECT_TRUE(port.ok()) << port.status();
  return port.ok() ? *port : 0;
}

// Reads stdout lines until `want` (true) or the stream ends or times out.
bool ReadUntilLine(Subprocess& p, const std::string& want) {
  for (;;) {
    absl::StatusOr<std::string> line = p.ReadStdoutLine(kTimeout);
    if (!line.ok()) {
      ADD_FAILURE() << "waiting for \"" << want << "\": " << line.status()
                    << "\nstdout: " << p.stdout_text() << "\nstderr: " << p.stderr_text();
      return false;
    }
    if (*line == want) return true;
  }
}

TEST(ExamplesTest, EchoClientGetsEveryMessageBackInOrder) {
  std::unique_ptr<Subprocess> server = Start({"examples/echo_server", "0"});
  ASSERT_NE(server, nullptr);
  const int port = ListeningPort(*server);
  ASSERT_NE(port, 0);

  std::unique_ptr<Subprocess> client = Start({"examples/echo_client",
                                              absl::StrCat("127.0.0.1:", port), "hello",
                                              "udpmsg world", "third"});
  ASSERT_NE(client, nullptr);
  absl::StatusOr<int> code = client->Wait(kTimeout);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << client->stderr_text();
  EXPECT_EQ(client->stdout_text(), "echo: hello\necho: udpmsg world\necho: third\n");

  // The server saw the client come and go, and said why it went.
  absl::StatusOr<std::string> line = server->ReadStderrLine(kTimeout);
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_THAT(*line, ::testing::HasSubstr("connected"));
  line = server->ReadStderrLine(kTimeout);
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_THAT(*line, ::testing::HasSubstr("closed: closed by peer (done)"));
}

TEST(ExamplesTest, EchoClientWithoutServerFailsWithAReason) {
  // A port nobody listens on: find one by starting and stopping a server.
  std::unique_ptr<Subprocess> server = Start({"examples/echo_server", "0"});
  ASSERT_NE(server, nullptr);
  const int port = ListeningPort(*server);
  ASSERT_NE(port, 0);
  server.reset();  // killed and reaped: the port is closed

  std::unique_ptr<Subprocess> client =
      Start({"examples/echo_client", absl::StrCat("127.0.0.1:", port), "anyone?"});
  ASSERT_NE(client, nullptr);
  absl::StatusOr<int> code = client->Wait(kTimeout);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 1);
  EXPECT_THAT(client->stderr_text(), ::testing::HasSubstr("cannot connect to 127.0.0.1:"));
  EXPECT_EQ(client->stdout_text(), "");
}

TEST(ExamplesTest, UsageErrorsExitTwo) {
  for (const std::vector<std::string>& argv :
       {std::vector<std::string>{"examples/echo_server", "notaport"},
        std::vector<std::string>{"examples/echo_client", "127.0.0.1:1"},
        std::vector<std::string>{"examples/chat_minimal", "serve"},
        std::vector<std::string>{"examples/chat_minimal", "dance", "1", "2"}}) {
    std::unique_ptr<Subprocess> p = Start(argv);
    ASSERT_NE(p, nullptr);
    absl::StatusOr<int> code = p->Wait(kTimeout);
    ASSERT_TRUE(code.ok()) << code.status();
    EXPECT_EQ(*code, 2) << argv[0] << " " << argv[1];
  }
}

TEST(ExamplesTest, TwoChatMembersSeeEachOthersLines) {
  std::unique_ptr<Subprocess> server = Start({"examples/chat_minimal", "serve", "0"});
  ASSERT_NE(server, nullptr);
  const int port = ListeningPort(*server);
  ASSERT_NE(port, 0);
  const std::string address = absl::StrCat("127.0.0.1:", port);

  std::unique_ptr<Subprocess> alice = Start({"examples/chat_minimal", "join", address, "alice"});
  ASSERT_NE(alice, nullptr);
  ASSERT_TRUE(ReadUntilLine(*alice, "* alice joined"));
  std::unique_ptr<Subprocess> bob = Start({"examples/chat_minimal", "join", address, "bob"});
  ASSERT_NE(bob, nullptr);
  ASSERT_TRUE(ReadUntilLine(*bob, "* bob joined"));
  ASSERT_TRUE(ReadUntilLine(*alice, "* bob joined"));

  ASSERT_TRUE(alice->WriteStdin("hello bob\n").ok());
  ASSERT_TRUE(ReadUntilLine(*bob, "alice: hello bob"));
  ASSERT_TRUE(ReadUntilLine(*alice, "alice: hello bob"));  // one order for everyone
  // Control characters from a member never reach another's terminal.
  ASSERT_TRUE(bob->WriteStdin("hi alice \x1b[2J\n").ok());
  ASSERT_TRUE(ReadUntilLine(*alice, "bob: hi alice ?[2J"));

  // End of input: bob's last line arrives, then he leaves cleanly.
  ASSERT_TRUE(bob->WriteStdin("bye").ok());
  bob->CloseStdin();
  absl::StatusOr<int> code = bob->Wait(kTimeout);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << bob->stderr_text();
  ASSERT_TRUE(ReadUntilLine(*alice, "bob: bye"));
  ASSERT_TRUE(ReadUntilLine(*alice, "* bob left"));
  alice->CloseStdin();
  code = alice->Wait(kTimeout);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << alice->stderr_text();
}

}  // namespace
}  // namespace udpmsg::testing
