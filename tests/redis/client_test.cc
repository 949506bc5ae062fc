// redis::Connection against a real redis-server (RedisServer), and ParseUrl.
#include "redis/client.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/redis/redis_server.h"

namespace udpmsg::redis {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using ::udpmsg::testing::RedisServer;

// Generous: the machine is shared and the twin runs under ASan.
constexpr absl::Duration kTimeout = absl::Seconds(10);

std::unique_ptr<RedisServer> StartServer(const std::string& password = "") {
  RedisServer::Options options;
  options.password = password;
  absl::StatusOr<std::unique_ptr<RedisServer>> server = RedisServer::Start(options);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

std::unique_ptr<Connection> ConnectTo(const Endpoint& endpoint) {
  absl::StatusOr<std::unique_ptr<Connection>> c = Connection::Connect(endpoint, kTimeout);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *std::move(c) : nullptr;
}

// A TCP port of 127.0.0.1 nobody listens on (bound, never listened, closed).
int UnusedPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  ::close(fd);
  return ntohs(a.sin_port);
}

MATCHER_P2(IsReply, type, str, "") { return arg.type == type && arg.str == str; }
MATCHER_P(IsInteger, value, "") {
  return arg.type == Reply::Type::kInteger && arg.integer == value;
}
MATCHER(IsNil, "") { return arg.type == Reply::Type::kNil; }

class ConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = StartServer();
    ASSERT_NE(server_, nullptr);
    c_ = ConnectTo(server_->endpoint());
    ASSERT_NE(c_, nullptr);
  }

  // The reply to `argv`, which must not fail.
  Reply Run(const std::vector<std::string>& argv) {
    absl::StatusOr<Reply> r = c_->Command(argv);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *std::move(r) : Reply{};
  }

  std::unique_ptr<RedisServer> server_;
  std::unique_ptr<Connection> c_;
};

TEST_F(ConnectionTest, SetGetIncrRoundTrip) {
  EXPECT_THAT(Run({"SET", "greeting", "hello"}), IsReply(Reply::Type::kStatus, "OK"));
  EXPECT_THAT(Run({"GET", "greeting"}), IsReply(Reply::Type::kString, "hello"));
  EXPECT_THAT(Run({"INCR", "counter"}), IsInteger(1));
  EXPECT_THAT(Run({"INCRBY", "counter", "41"}), IsInteger(42));
  EXPECT_THAT(Run({"INCRBY", "counter", "-9223372036854775807"}),
              IsInteger(42 - 9223372036854775807LL));
  EXPECT_THAT(Run({"PING"}), IsReply(Reply::Type::kStatus, "PONG"));
  EXPECT_FALSE(c_->broken());
  EXPECT_EQ(c_->endpoint().ToString(), absl::StrCat("127.0.0.1:", server_->port()));
}

TEST_F(ConnectionTest, ArgumentsAndRepliesAreBinarySafe) {
  const std::string key("k\0ey", 4);
  const std::string value("a\0b\r\n\xff", 6);
  EXPECT_THAT(Run({"SET", key, value}), IsReply(Reply::Type::kStatus, "OK"));
  const Reply got = Run({"GET", key});
  EXPECT_EQ(got.type, Reply::Type::kString);
  EXPECT_EQ(got.str, value);
  EXPECT_EQ(got.str.size(), 6u);
  EXPECT_THAT(Run({"STRLEN", key}), IsInteger(6));
  // The key without its NUL is another key.
  EXPECT_THAT(Run({"EXISTS", "k"}), IsInteger(0));
  EXPECT_THAT(Run({"SET", "empty", ""}), IsReply(Reply::Type::kStatus, "OK"));
  EXPECT_THAT(Run({"GET", "empty"}), IsReply(Reply::Type::kString, ""));
}

TEST_F(ConnectionTest, MissingKeyIsNil) {
  EXPECT_THAT(Run({"GET", "nobody"}), IsNil());
  // A nil array (a BLPOP that timed out) is nil too.
  EXPECT_THAT(Run({"BLPOP", "empty-list", "0.01"}), IsNil());
}

TEST_F(ConnectionTest, ErrorReplyIsAReplyNotAFailedCall) {
  Run({"SET", "text", "not a number"});
  absl::StatusOr<Reply> r = c_->Command({"INCR", "text"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->is_error());
  EXPECT_THAT(r->str, StartsWith("ERR value is not an integer"));

  r = c_->Command({"NO-SUCH-COMMAND", "x"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->type, Reply::Type::kError);
  EXPECT_THAT(r->str, StartsWith("ERR unknown command"));

  r = c_->Command({"LPUSH", "text", "x"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->str, StartsWith("WRONGTYPE"));

  // The connection is fine afterwards.
  EXPECT_FALSE(c_->broken());
  EXPECT_THAT(Run({"GET", "text"}), IsReply(Reply::Type::kString, "not a number"));
}

TEST_F(ConnectionTest, ArrayRepliesNest) {
  EXPECT_THAT(Run({"XADD", "room", "1-1", "from", "ann", "text", "hi"}),
              IsReply(Reply::Type::kString, "1-1"));
  EXPECT_THAT(Run({"XADD", "room", "2-1", "from", "bob", "text", "hello"}),
              IsReply(Reply::Type::kString, "2-1"));
  const Reply range = Run({"XRANGE", "room", "-", "+"});
  ASSERT_EQ(range.type, Reply::Type::kArray);
  ASSERT_EQ(range.elements.size(), 2u);
  const Reply& first = range.elements[0];
  ASSERT_EQ(first.type, Reply::Type::kArray);
  ASSERT_EQ(first.elements.size(), 2u);
  EXPECT_THAT(first.elements[0], IsReply(Reply::Type::kString, "1-1"));
  EXPECT_EQ(first.elements[1].type, Reply::Type::kArray);
  EXPECT_THAT(
      first.elements[1].elements,
      ElementsAre(IsReply(Reply::Type::kString, "from"), IsReply(Reply::Type::kString, "ann"),
                  IsReply(Reply::Type::kString, "text"), IsReply(Reply::Type::kString, "hi")));
  EXPECT_THAT(range.elements[1].elements[1].elements[3], IsReply(Reply::Type::kString, "hello"));

  // An empty array is an array, not nil; mixed element types keep theirs.
  const Reply none = Run({"XRANGE", "room", "3", "+"});
  EXPECT_EQ(none.type, Reply::Type::kArray);
  EXPECT_TRUE(none.elements.empty());
  Run({"SET", "a", "1"});
  EXPECT_THAT(Run({"MGET", "a", "missing"}).elements,
              ElementsAre(IsReply(Reply::Type::kString, "1"), IsNil()));
}

TEST_F(ConnectionTest, PipelineRepliesComeInOrder) {
  absl::StatusOr<std::vector<Reply>> replies = c_->Pipeline({
      {"SET", "n", "1"},
      {"INCR", "n"},
      {"GET", "n"},
      {"INCR", "no", "such", "arity"},  // an error reply answers its own command only
      {"INCR", "n"},
      {"GET", "missing"},
  });
  ASSERT_TRUE(replies.ok()) << replies.status();
  ASSERT_EQ(replies->size(), 6u);
  EXPECT_THAT((*replies)[0], IsReply(Reply::Type::kStatus, "OK"));
  EXPECT_THAT((*replies)[1], IsInteger(2));
  EXPECT_THAT((*replies)[2], IsReply(Reply::Type::kString, "2"));
  EXPECT_TRUE((*replies)[3].is_error());
  EXPECT_THAT((*replies)[4], IsInteger(3));
  EXPECT_THAT((*replies)[5], IsNil());
  EXPECT_FALSE(c_->broken());
}

TEST_F(ConnectionTest, LongPipelineKeepsOrder) {
  std::vector<std::vector<std::string>> commands;
  for (int i = 0; i < 1000; ++i) commands.push_back({"RPUSH", "list", absl::StrCat(i)});
  absl::StatusOr<std::vector<Reply>> replies = c_->Pipeline(commands);
  ASSERT_TRUE(replies.ok()) << replies.status();
  ASSERT_EQ(replies->size(), 1000u);
  for (int i = 0; i < 1000; ++i) EXPECT_THAT((*replies)[i], IsInteger(i + 1));
}

TEST_F(ConnectionTest, EmptyCommandsAreInvalidAndLeaveTheConnectionUsable) {
  EXPECT_EQ(c_->Command({}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c_->Pipeline({{"PING"}, {}}).status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::vector<Reply>> none = c_->Pipeline({});
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(c_->SetTimeout(absl::ZeroDuration()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c_->SetTimeout(absl::InfiniteDuration()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(c_->broken());
  // Nothing half-sent is left on the wire: the next reply is the next command's.
  EXPECT_THAT(Run({"PING"}), IsReply(Reply::Type::kStatus, "PONG"));
}

TEST_F(ConnectionTest, ReadTimeoutBreaksTheConnection) {
  ASSERT_TRUE(c_->SetTimeout(absl::Milliseconds(200)).ok());
  const absl::Time start = absl::Now();
  // Blocks for 30 s on the server; the client gives up after 200 ms.
  absl::StatusOr<Reply> r = c_->Command({"BLPOP", "never-filled", "30"});
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("timed out after 200ms"));
  EXPECT_THAT(r.status().message(), HasSubstr(absl::StrCat("127.0.0.1:", server_->port())));
  EXPECT_THAT(r.status().message(), HasSubstr("BLPOP"));
  EXPECT_GE(took, absl::Milliseconds(150));
  EXPECT_LT(took, kTimeout);
  EXPECT_TRUE(c_->broken());
  EXPECT_EQ(c_->Command({"PING"}).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(ConnectionTest, KilledServerBreaksTheConnectionAndLaterCallsFailFast) {
  Run({"SET", "k", "v"});
  server_->Kill(SIGKILL);
  EXPECT_FALSE(server_->running());

  absl::StatusOr<Reply> r = c_->Command({"GET", "k"});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr(absl::StrCat("127.0.0.1:", server_->port())));
  EXPECT_TRUE(c_->broken());

  // Every later call fails at once, without touching the socket (whose
  // peer reset it: a write would be EPIPE, and SIGPIPE must not kill us).
  const absl::Time start = absl::Now();
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<Reply> again = c_->Command({"GET", "k"});
    ASSERT_EQ(again.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(again.status().message(), HasSubstr("broken"));
    EXPECT_EQ(c_->Pipeline({{"PING"}, {"PING"}}).status().code(), absl::StatusCode::kUnavailable);
    EXPECT_EQ(c_->SetTimeout(absl::Seconds(1)).code(), absl::StatusCode::kUnavailable);
  }
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
}

TEST_F(ConnectionTest, WritesAfterAResetAreErrorsNotSigpipe) {
  // A pipeline large enough to keep writing after the server is gone.
  server_->Kill(SIGKILL);
  std::vector<std::vector<std::string>> commands(64, {"SET", "big", std::string(256 * 1024, 'x')});
  absl::StatusOr<std::vector<Reply>> replies = c_->Pipeline(commands);
  EXPECT_EQ(replies.status().code(), absl::StatusCode::kUnavailable) << replies.status();
  EXPECT_TRUE(c_->broken());
}

TEST_F(ConnectionTest, RestartedServerHasTheDataWrittenBeforeTheKill) {
  Run({"SET", "kept", "yes"});
  Run({"XADD", "room", "5-1", "text", "before the crash"});
  ASSERT_THAT(Run({"INCR", "seq"}), IsInteger(1));
  server_->Kill(SIGKILL);
  ASSERT_FALSE(server_->running());
  const int port = server_->port();

  absl::Status restarted = server_->Restart();
  ASSERT_TRUE(restarted.ok()) << restarted;
  EXPECT_TRUE(server_->running());
  EXPECT_EQ(server_->port(), port);
  // The old connection stays broken; a new one sees everything.
  EXPECT_EQ(c_->Command({"GET", "kept"}).status().code(), absl::StatusCode::kUnavailable);
  c_ = ConnectTo(server_->endpoint());
  ASSERT_NE(c_, nullptr);
  EXPECT_THAT(Run({"GET", "kept"}), IsReply(Reply::Type::kString, "yes"));
  EXPECT_THAT(Run({"INCR", "seq"}), IsInteger(2));
  const Reply range = Run({"XRANGE", "room", "-", "+"});
  ASSERT_EQ(range.elements.size(), 1u);
  EXPECT_THAT(range.elements[0].elements[1].elements[1],
              IsReply(Reply::Type::kString, "before the crash"));
}

TEST_F(ConnectionTest, RestartOfARunningServerIsRefused) {
  EXPECT_EQ(server_->Restart().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(server_->running());
}

TEST(RedisServerTest, UrlNamesPortRoomAndEscapedPassword) {
  std::unique_ptr<RedisServer> server = StartServer("p@ss/w:rd");
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->url("lobby"),
            absl::StrCat("redis://:p%40ss%2Fw%3Ard@127.0.0.1:", server->port(), "/lobby"));
  absl::StatusOr<Url> url = ParseUrl(server->url("lobby"));
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->endpoint.password, "p@ss/w:rd");
  EXPECT_EQ(url->path, "lobby");
  std::unique_ptr<Connection> c = ConnectTo(url->endpoint);
  ASSERT_NE(c, nullptr);
  absl::StatusOr<Reply> pong = c->Command({"PING"});
  ASSERT_TRUE(pong.ok()) << pong.status();
  EXPECT_EQ(pong->str, "PONG");
}

TEST(RedisServerTest, RestartOnAPortSomeoneElseTookFailsWithTheLog) {
  std::unique_ptr<RedisServer> server = StartServer();
  ASSERT_NE(server, nullptr);
  server->Kill(SIGKILL);
  // A listener that never answers holds the port now.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(server->port()));
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(::listen(fd, 16), 0);
  absl::Status restarted = server->Restart();
  ::close(fd);
  EXPECT_EQ(restarted.code(), absl::StatusCode::kUnavailable) << restarted;
  EXPECT_THAT(restarted.message(), HasSubstr("exited while starting"));
  EXPECT_THAT(restarted.message(), HasSubstr("Address already in use"));  // from the log
  EXPECT_FALSE(server->running());
  // Once the port is free again, so is the way back.
  restarted = server->Restart();
  ASSERT_TRUE(restarted.ok()) << restarted;
  EXPECT_TRUE(server->running());
}

TEST(RedisServerTest, TwoServersGetTwoPortsAndDirectories) {
  std::unique_ptr<RedisServer> a = StartServer();
  std::unique_ptr<RedisServer> b = StartServer();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a->port(), b->port());
  EXPECT_NE(a->dir(), b->dir());
}

class PasswordTest : public ::testing::Test {
 protected:
  static constexpr char kPassword[] = "correct-horse-7f3a";
  void SetUp() override {
    server_ = StartServer(kPassword);
    ASSERT_NE(server_, nullptr);
  }
  Endpoint WithPassword(const std::string& user, const std::string& password) {
    Endpoint e = server_->endpoint();
    e.username = user;
    e.password = password;
    return e;
  }
  std::unique_ptr<RedisServer> server_;
};

TEST_F(PasswordTest, WithoutPasswordCommandsGetNoauthErrorReplies) {
  std::unique_ptr<Connection> c = ConnectTo(WithPassword("", ""));
  ASSERT_NE(c, nullptr);
  absl::StatusOr<Reply> r = c->Command({"GET", "k"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->is_error());
  EXPECT_THAT(r->str, StartsWith("NOAUTH"));
  EXPECT_FALSE(c->broken());
}

TEST_F(PasswordTest, WrongPasswordIsPermissionDeniedWithoutThePassword) {
  const std::string wrong = "wrong-battery-91c2";
  absl::StatusOr<std::unique_ptr<Connection>> c =
      Connection::Connect(WithPassword("", wrong), kTimeout);
  ASSERT_EQ(c.status().code(), absl::StatusCode::kPermissionDenied) << c.status();
  EXPECT_THAT(c.status().message(), HasSubstr(absl::StrCat("127.0.0.1:", server_->port())));
  EXPECT_THAT(c.status().message(), HasSubstr("WRONGPASS"));
  EXPECT_THAT(c.status().message(), Not(HasSubstr(wrong)));
  EXPECT_THAT(c.status().message(), Not(HasSubstr(kPassword)));

  // An ACL user that does not exist, or the right password for another user.
  c = Connection::Connect(WithPassword("mallory", kPassword), kTimeout);
  ASSERT_EQ(c.status().code(), absl::StatusCode::kPermissionDenied) << c.status();
  EXPECT_THAT(c.status().message(), HasSubstr("mallory"));
  EXPECT_THAT(c.status().message(), Not(HasSubstr(kPassword)));
}

TEST_F(PasswordTest, RightPasswordWorksAloneAndAsTheDefaultUser) {
  for (const std::string user : {"", "default"}) {
    std::unique_ptr<Connection> c = ConnectTo(WithPassword(user, kPassword));
    ASSERT_NE(c, nullptr) << "user \"" << user << "\"";
    absl::StatusOr<Reply> r = c->Command({"INCR", "counter"});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->type, Reply::Type::kInteger) << r->str;
  }
}

TEST(ConnectErrorTest, NobodyListeningIsUnavailableNamingTheEndpoint) {
  const int port = UnusedPort();
  Endpoint e;
  e.host = "127.0.0.1";
  e.port = port;
  e.password = "never-printed-5d1e";
  absl::StatusOr<std::unique_ptr<Connection>> c = Connection::Connect(e, kTimeout);
  ASSERT_EQ(c.status().code(), absl::StatusCode::kUnavailable) << c.status();
  EXPECT_THAT(c.status().message(), HasSubstr(absl::StrCat("127.0.0.1:", port)));
  EXPECT_THAT(c.status().message(), HasSubstr("Connection refused"));
  EXPECT_THAT(c.status().message(), Not(HasSubstr(e.password)));
}

TEST(ConnectErrorTest, Ipv6EndpointIsNamedInBrackets) {
  Endpoint e;
  e.host = "::1";
  e.port = UnusedPort();
  EXPECT_EQ(e.ToString(), absl::StrCat("[::1]:", e.port));
  absl::StatusOr<std::unique_ptr<Connection>> c = Connection::Connect(e, kTimeout);
  // Refused, or no IPv6 loopback at all: either way, unreachable and named.
  ASSERT_EQ(c.status().code(), absl::StatusCode::kUnavailable) << c.status();
  EXPECT_THAT(c.status().message(), HasSubstr(absl::StrCat("[::1]:", e.port)));
}

TEST(ConnectErrorTest, BadArgumentsAreInvalid) {
  Endpoint e;
  e.host = "127.0.0.1";
  e.port = 0;
  EXPECT_EQ(Connection::Connect(e, kTimeout).status().code(), absl::StatusCode::kInvalidArgument);
  e.port = 6379;
  EXPECT_EQ(Connection::Connect(e, absl::ZeroDuration()).status().code(),
            absl::StatusCode::kInvalidArgument);
  e.host = "";
  EXPECT_EQ(Connection::Connect(e, kTimeout).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ParseUrlTest, HostPortAndPath) {
  absl::StatusOr<Url> u = ParseUrl("redis://127.0.0.1:6390/lobby");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->endpoint.host, "127.0.0.1");
  EXPECT_EQ(u->endpoint.port, 6390);
  EXPECT_EQ(u->endpoint.username, "");
  EXPECT_EQ(u->endpoint.password, "");
  EXPECT_EQ(u->path, "lobby");

  u = ParseUrl("redis://cache.example.net");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->endpoint.host, "cache.example.net");
  EXPECT_EQ(u->endpoint.port, 6379);
  EXPECT_EQ(u->path, "");

  u = ParseUrl("REDIS://localhost/a/b");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->endpoint.host, "localhost");
  EXPECT_EQ(u->path, "a/b");

  u = ParseUrl("redis://localhost:65535/");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->endpoint.port, 65535);
  EXPECT_EQ(u->path, "");
}

TEST(ParseUrlTest, Ipv6HostInBrackets) {
  absl::StatusOr<Url> u = ParseUrl("redis://[::1]:7000/room");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->endpoint.host, "::1");
  EXPECT_EQ(u->endpoint.port, 7000);
  EXPECT_EQ(u->path, "room");
  EXPECT_EQ(u->endpoint.ToString(), "[::1]:7000");

  u = ParseUrl("redis://:pw@[2001:db8::7]");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->endpoint.host, "2001:db8::7");
  EXPECT_EQ(u->endpoint.port, 6379);
  EXPECT_EQ(u->endpoint.password, "pw");

  u = ParseUrl("redis://[::ffff:127.0.0.1]:1/");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->endpoint.host, "::ffff:127.0.0.1");
  EXPECT_EQ(u->endpoint.port, 1);
}

TEST(ParseUrlTest, CredentialsArePercentDecoded) {
  absl::StatusOr<Url> u = ParseUrl("redis://:secret@host/r");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->endpoint.username, "");
  EXPECT_EQ(u->endpoint.password, "secret");

  u = ParseUrl("redis://al%69ce:p%40ss%3Aw%2Fd%25@host:1234/r");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->endpoint.username, "alice");
  EXPECT_EQ(u->endpoint.password, "p@ss:w/d%");
  EXPECT_EQ(u->endpoint.host, "host");
  EXPECT_EQ(u->endpoint.port, 1234);
  EXPECT_EQ(u->endpoint.ToString(), "host:1234");  // no password

  // A raw ':' after the first belongs to the password; the last '@' ends it.
  u = ParseUrl("redis://bob:a:b@c@host");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->endpoint.username, "bob");
  EXPECT_EQ(u->endpoint.password, "a:b@c");
  EXPECT_EQ(u->endpoint.host, "host");
}

TEST(ParseUrlTest, RedissIsRedisOverTls) {
  absl::StatusOr<Url> u = ParseUrl("rediss://:secret@host:6380/room");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_TRUE(u->endpoint.tls);
  EXPECT_EQ(u->endpoint.host, "host");
  EXPECT_EQ(u->endpoint.port, 6380);
  EXPECT_EQ(u->endpoint.password, "secret");
  EXPECT_EQ(u->path, "room");
  EXPECT_FALSE(ParseUrl("redis://host/room")->endpoint.tls);
}

// Redis over TLS against a real redis-server listening with TLS only, its
// certificate signed by a CA the test made.
class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RedisServer::Options o;
    o.tls = true;
    o.password = "pw";
    absl::StatusOr<std::unique_ptr<RedisServer>> s = RedisServer::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
  }
  std::unique_ptr<RedisServer> server_;
};

TEST_F(TlsTest, CommandsPipelinesAndAuthGoOverTls) {
  EXPECT_THAT(server_->url("room"), ::testing::StartsWith("rediss://:pw@127.0.0.1:"));
  absl::StatusOr<std::unique_ptr<Connection>> c =
      Connection::Connect(server_->endpoint(), absl::Seconds(5));
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE((*c)->Command({"SET", "k", std::string("v\0w", 3)}).ok());
  absl::StatusOr<Reply> got = (*c)->Command({"GET", "k"});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->str, std::string("v\0w", 3));
  // Larger than one TLS record both ways.
  const std::string big(100000, 'x');
  std::vector<std::vector<std::string>> calls;
  for (int i = 0; i < 20; ++i) calls.push_back({"SET", absl::StrCat("big", i), big});
  calls.push_back({"GET", "big7"});
  absl::StatusOr<std::vector<Reply>> replies = (*c)->Pipeline(calls);
  ASSERT_TRUE(replies.ok()) << replies.status();
  ASSERT_EQ(replies->size(), 21u);
  EXPECT_EQ(replies->back().str, big);
}

TEST_F(TlsTest, PlainRedisToATlsPortFails) {
  Endpoint plain = server_->endpoint();
  plain.tls = false;
  absl::StatusOr<std::unique_ptr<Connection>> c = Connection::Connect(plain, absl::Seconds(2));
  EXPECT_FALSE(c.ok());
}

TEST_F(TlsTest, AServerNotSignedByTheTrustedCaIsRefused) {
  Endpoint e = server_->endpoint();
  e.tls_ca_file = "/etc/ssl/certs/ca-certificates.crt";  // the system's CAs: not ours
  absl::StatusOr<std::unique_ptr<Connection>> c = Connection::Connect(e, absl::Seconds(5));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(c.status().message(), HasSubstr(absl::StrCat("127.0.0.1:", server_->port())));
  EXPECT_THAT(c.status().message(), HasSubstr("TLS handshake"));
  EXPECT_THAT(c.status().message(), HasSubstr("certificate"));
  e.tls_ca_file = "/nonexistent/ca.pem";
  c = Connection::Connect(e, absl::Seconds(5));
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("CA certificates"));
}

TEST_F(TlsTest, ANameTheCertificateDoesNotCarryIsRefused) {
  Endpoint e = server_->endpoint();
  e.host = "localhost";  // the certificate names IP 127.0.0.1 only
  absl::StatusOr<std::unique_ptr<Connection>> c = Connection::Connect(e, absl::Seconds(5));
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("TLS handshake"));
}

TEST_F(TlsTest, AKilledTlsServerBreaksTheConnection) {
  absl::StatusOr<std::unique_ptr<Connection>> c =
      Connection::Connect(server_->endpoint(), absl::Seconds(2));
  ASSERT_TRUE(c.ok()) << c.status();
  server_->Kill(SIGKILL);
  absl::StatusOr<Reply> r = (*c)->Command({"PING"});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE((*c)->broken());
  ASSERT_TRUE(server_->Restart().ok());
  c = Connection::Connect(server_->endpoint(), absl::Seconds(5));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->Command({"GET", "k"})->type, Reply::Type::kNil);
}

TEST(ParseUrlTest, BadUrlsAreInvalidAndNameTheProblem) {
  struct Case {
    const char* url;
    const char* says;
  };
  for (const Case& c : std::vector<Case>{
           {"", "not a Redis URL"},
           {"127.0.0.1:6379", "not a Redis URL"},
           {"http://host/", "scheme \"http\""},
           {"redis://", "no host"},
           {"redis:///room", "no host"},
           {"redis://:6379", "no host"},
           {"redis://host:0", "1..65535, got \"0\""},
           {"redis://host:70000", "1..65535, got \"70000\""},
           {"redis://host:", "1..65535, got \"\""},
           {"redis://host:+80", "1..65535"},
           {"redis://host:80x/", "1..65535"},
           {"redis://host:0080000", "1..65535"},
           {"redis://::1:6379", "brackets"},
           {"redis://[::1", "closing ']'"},
           {"redis://[]:6379", "not an IPv6 address"},
           {"redis://[host]:6379", "not an IPv6 address"},
           {"redis://[::1]6379", "after ']'"},
           {"redis://[::1]:0", "1..65535"},
           {"redis://ho st", "not a host name"},
           {"redis://secret@host", "without a ':'"},
           {"redis://:@host", "empty password"},
           {"redis://user:@host", "empty password"},
           {"redis://:sec%zzret@host", "%-escape in the password"},
           {"redis://:secret%4@host", "%-escape in the password"},
           {"redis://us%er:secret@host", "%-escape in the user"},
       }) {
    absl::StatusOr<Url> u = ParseUrl(c.url);
    EXPECT_EQ(u.status().code(), absl::StatusCode::kInvalidArgument) << c.url;
    EXPECT_THAT(u.status().message(), HasSubstr(c.says)) << c.url;
    EXPECT_THAT(u.status().message(), Not(HasSubstr("secret"))) << c.url;
  }
}

}  // namespace
}  // namespace udpmsg::redis
