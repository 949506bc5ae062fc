// Runs `udpmsg impair` between real loopback sockets owned by the test: a
// client socket sends to the proxy, a server socket (bound to port 0) gets
// what the proxy forwards and answers, and the answers come back through the
// proxy. Everything is paced by the test (one datagram or one small batch in
// flight), so only the impairment model decides what is lost; every wait has
// a deadline and nothing sleeps.
#include <poll.h>
#include <signal.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "impairment/model.h"
#include "tests/cli/subprocess.h"
#include "udp/datagram_socket.h"
#include "udp/socket_address.h"

namespace udpmsg::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;
using ::testing::StartsWith;

constexpr absl::Duration kTimeout = absl::Seconds(10);

struct Proxy {
  std::unique_ptr<Subprocess> process;
  int port = 0;
  std::string config_line;  // the second stderr line
};

// Starts `udpmsg impair --listen 0 FLAGS...` and reads its two header lines.
Proxy StartProxy(const std::vector<std::string>& flags) {
  std::vector<std::string> argv = {UdpmsgPath(), "impair", "--listen", "0"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  Proxy proxy;
  absl::StatusOr<std::unique_ptr<Subprocess>> p = Subprocess::Start(argv);
  EXPECT_TRUE(p.ok()) << p.status();
  if (!p.ok()) return proxy;
  proxy.process = *std::move(p);
  absl::StatusOr<std::string> line = proxy.process->ReadStderrLine(kTimeout);
  EXPECT_TRUE(line.ok()) << line.status();
  absl::StatusOr<int> port = ParseListeningPort(line.ok() ? *line : "");
  EXPECT_TRUE(port.ok()) << port.status();
  proxy.port = port.ok() ? *port : 0;
  absl::StatusOr<std::string> config = proxy.process->ReadStderrLine(kTimeout);
  EXPECT_TRUE(config.ok()) << config.status();
  proxy.config_line = config.ok() ? *config : "";
  return proxy;
}

// SIGTERMs the proxy; returns its exit code.
int Stop(Proxy& proxy) {
  proxy.process->Kill(SIGTERM);
  absl::StatusOr<int> code = proxy.process->Wait(kTimeout);
  EXPECT_TRUE(code.ok()) << code.status();
  return code.ok() ? *code : -1;
}

udp::DatagramSocket LoopbackSocket(udp::AddressFamily family) {
  absl::StatusOr<udp::DatagramSocket> socket =
      udp::DatagramSocket::Bind(udp::SocketAddress::Loopback(family, 0), {});
  EXPECT_TRUE(socket.ok()) << socket.status();
  return *std::move(socket);
}

udp::SocketAddress LocalOf(const udp::DatagramSocket& socket) {
  absl::StatusOr<udp::SocketAddress> local = socket.LocalAddress();
  EXPECT_TRUE(local.ok()) << local.status();
  return local.ok() ? *local : udp::SocketAddress();
}

struct Received {
  std::string payload;
  udp::SocketAddress from;
};

// The next datagram on `socket`, waiting at most `timeout`.
absl::StatusOr<Received> RecvWithin(udp::DatagramSocket& socket, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    pollfd p{socket.fd(), POLLIN, 0};
    const absl::Duration left = std::max(absl::ZeroDuration(), deadline - absl::Now());
    const int n = ::poll(&p, 1, static_cast<int>(std::ceil(absl::ToDoubleMilliseconds(left))));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::InternalError("poll failed");
    if (n == 0) return absl::DeadlineExceededError("no datagram in time");
    break;
  }
  std::array<uint8_t, 65536> buffer;
  absl::StatusOr<udp::Datagram> got = socket.RecvFrom(absl::MakeSpan(buffer));
  if (!got.ok()) return got.status();
  return Received{std::string(reinterpret_cast<const char*>(buffer.data()), got->size), got->from};
}

// Everything already waiting on `socket`.
std::vector<Received> DrainNow(udp::DatagramSocket& socket) {
  std::vector<Received> all;
  for (;;) {
    absl::StatusOr<Received> got = RecvWithin(socket, absl::ZeroDuration());
    if (!got.ok()) return all;
    all.push_back(*std::move(got));
  }
}

void SendTo(udp::DatagramSocket& socket, const udp::SocketAddress& to, const std::string& data) {
  absl::StatusOr<size_t> sent = socket.SendTo(to, udp::AsBytes(data));
  ASSERT_TRUE(sent.ok()) << sent.status();
}

// Datagram `i`: numbered, of varying length and content.
std::string Numbered(int i) {
  return absl::StrCat("seq ", i, " ", std::string((i * 37) % 1400, static_cast<char>(i)));
}

int SeqOf(const std::string& payload) {
  std::vector<std::string> parts = absl::StrSplit(payload, absl::MaxSplits(' ', 2));
  int seq = -1;
  if (parts.size() < 2 || !absl::SimpleAtoi(parts[1], &seq)) return -1;
  return seq;
}

class ImpairFamilyTest : public ::testing::TestWithParam<udp::AddressFamily> {};

INSTANTIATE_TEST_SUITE_P(Loopbacks, ImpairFamilyTest,
                         ::testing::Values(udp::AddressFamily::kIpv4, udp::AddressFamily::kIpv6),
                         [](const auto& info) {
                           return std::string(info.param == udp::AddressFamily::kIpv4 ? "IPv4"
                                                                                      : "IPv6");
                         });

// Two clients through one unimpaired proxy: every datagram arrives intact,
// each client has its own source address at the server, and the server's
// answers reach the right client from the proxy's address.
TEST_P(ImpairFamilyTest, ForwardsBothWaysIntactWithOneMappingPerClient) {
  const udp::AddressFamily family = GetParam();
  udp::DatagramSocket server = LoopbackSocket(family);
  const udp::SocketAddress server_address = LocalOf(server);
  std::vector<std::string> flags = {"--to", server_address.ToString()};
  // IPv4 clients use the default dual-stack listener; IPv6 a bound one.
  if (family == udp::AddressFamily::kIpv6) flags.insert(flags.end(), {"--bind", "::1"});
  Proxy proxy = StartProxy(flags);
  ASSERT_NE(proxy.port, 0);
  EXPECT_EQ(proxy.config_line,
            absl::StrCat("impairing both directions: loss=0 burst=0 delay=0 jitter=0 reorder=0 "
                         "dup=0 corrupt=0 rate=unlimited seed=1, forwarding to ",
                         server_address.ToString()));
  const udp::SocketAddress proxy_address =
      udp::SocketAddress::Loopback(family, static_cast<uint16_t>(proxy.port));

  udp::DatagramSocket clients[2] = {LoopbackSocket(family), LoopbackSocket(family)};
  udp::SocketAddress seen_as[2];
  constexpr int kCount = 200;
  for (int i = 0; i < kCount; ++i) {
    udp::DatagramSocket& client = clients[i % 2];
    const std::string payload = Numbered(i);
    ASSERT_NO_FATAL_FAILURE(SendTo(client, proxy_address, payload));
    absl::StatusOr<Received> at_server = RecvWithin(server, kTimeout);
    ASSERT_TRUE(at_server.ok()) << "datagram " << i << ": " << at_server.status();
    ASSERT_EQ(at_server->payload, payload) << "datagram " << i;
    if (i < 2) {
      seen_as[i] = at_server->from;
    } else {
      EXPECT_EQ(at_server->from, seen_as[i % 2]) << "datagram " << i;
    }
    const std::string reply = absl::StrCat("echo ", payload);
    ASSERT_NO_FATAL_FAILURE(SendTo(server, at_server->from, reply));
    absl::StatusOr<Received> back = RecvWithin(client, kTimeout);
    ASSERT_TRUE(back.ok()) << "reply " << i << ": " << back.status();
    EXPECT_EQ(back->payload, reply) << "reply " << i;
    EXPECT_EQ(back->from, proxy_address);
  }
  EXPECT_NE(seen_as[0], seen_as[1]);
  EXPECT_NE(seen_as[0], LocalOf(clients[0]));
  EXPECT_NE(seen_as[1], LocalOf(clients[1]));

  EXPECT_EQ(Stop(proxy), 0);
  const std::string err = proxy.process->stderr_text();
  std::vector<std::string> lines = Lines(err);
  ASSERT_THAT(lines, SizeIs(4)) << err;
  EXPECT_THAT(lines[2], StartsWith("up:   received=200 delivered=200 dropped_loss=0 "));
  EXPECT_THAT(lines[3], StartsWith("down: received=200 delivered=200 dropped_loss=0 "));
  for (const char* direction : {"up", "down"}) {
    std::map<std::string, uint64_t> c = ImpairCounters(err, direction);
    EXPECT_EQ(c["sent"], 200u) << direction;
    EXPECT_EQ(c["bytes_in"], c["bytes_out"]) << direction;
  }
}

// Which of `count` Numbered() datagrams the up direction (seed S) keeps,
// straight from the model the proxy documents it uses.
std::vector<int> PredictedSurvivors(double loss, uint64_t seed, int count) {
  impairment::ImpairmentConfig config;
  config.loss = loss;
  config.seed = seed;
  absl::StatusOr<impairment::ImpairmentModel> model =
      impairment::ImpairmentModel::Create(config, absl::UnixEpoch());
  EXPECT_TRUE(model.ok()) << model.status();
  std::vector<int> survivors;
  for (int i = 0; model.ok() && i < count; ++i) {
    if (!model->OnPacket(absl::UnixEpoch(), Numbered(i)).empty()) survivors.push_back(i);
  }
  return survivors;
}

// Sends `count` numbered datagrams through a --loss 30% --seed 7 proxy in
// batches of 50, waiting for each batch's survivors (as many as the model
// predicts) before the next, so no socket buffer ever overflows. Returns the
// sequence numbers the server got, in order.
std::vector<int> RunLossy(int count, const std::vector<int>& predicted) {
  udp::DatagramSocket server = LoopbackSocket(udp::AddressFamily::kIpv4);
  Proxy proxy = StartProxy({"--to", LocalOf(server).ToString(), "--loss", "30%", "--seed", "7"});
  EXPECT_THAT(proxy.config_line, StartsWith("impairing both directions: loss=30% burst=0 "));
  EXPECT_THAT(proxy.config_line, HasSubstr(" seed=7, forwarding to "));
  const udp::SocketAddress proxy_address =
      udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, static_cast<uint16_t>(proxy.port));
  udp::DatagramSocket client = LoopbackSocket(udp::AddressFamily::kIpv4);

  std::vector<int> got;
  constexpr int kBatch = 50;
  for (int start = 0; start < count; start += kBatch) {
    const int end = std::min(count, start + kBatch);
    for (int i = start; i < end; ++i) SendTo(client, proxy_address, Numbered(i));
    const size_t expected = std::count_if(predicted.begin(), predicted.end(),
                                          [&](int seq) { return seq >= start && seq < end; });
    for (size_t k = 0; k < expected; ++k) {
      absl::StatusOr<Received> at_server = RecvWithin(server, kTimeout);
      if (!at_server.ok()) {
        ADD_FAILURE() << "batch at " << start << ": " << at_server.status();
        return got;
      }
      got.push_back(SeqOf(at_server->payload));
      EXPECT_EQ(at_server->payload, Numbered(got.back()));
    }
  }
  EXPECT_EQ(Stop(proxy), 0);
  // The proxy has exited: whatever it forwarded is already queued here.
  for (const Received& extra : DrainNow(server)) got.push_back(SeqOf(extra.payload));
  std::map<std::string, uint64_t> up = ImpairCounters(proxy.process->stderr_text(), "up");
  EXPECT_EQ(up["received"], static_cast<uint64_t>(count)) << proxy.process->stderr_text();
  EXPECT_EQ(up["delivered"], got.size());
  EXPECT_EQ(up["sent"], got.size());
  EXPECT_EQ(up["dropped_loss"], count - got.size());
  return got;
}

TEST(ImpairTest, LossMatchesTheRateAndTheSeedReproducesTheSameLosses) {
  constexpr int kCount = 2000;
  const std::vector<int> predicted = PredictedSurvivors(0.3, 7, kCount);
  const std::vector<int> first = RunLossy(kCount, predicted);
  // Binomial(2000, 0.7): mean 1400, sigma ~20.5; allow 5 sigma.
  const double sigma = std::sqrt(kCount * 0.3 * 0.7);
  EXPECT_GE(first.size(), 1400 - 5 * sigma);
  EXPECT_LE(first.size(), 1400 + 5 * sigma);
  EXPECT_EQ(first, predicted);
  const std::vector<int> second = RunLossy(kCount, predicted);
  EXPECT_EQ(first, second);
}

TEST(ImpairTest, DelayAppliesToBothDirections) {
  udp::DatagramSocket server = LoopbackSocket(udp::AddressFamily::kIpv4);
  Proxy proxy = StartProxy({"--to", LocalOf(server).ToString(), "--delay", "50ms"});
  EXPECT_THAT(proxy.config_line, HasSubstr(" delay=50ms "));
  const udp::SocketAddress proxy_address =
      udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, static_cast<uint16_t>(proxy.port));
  udp::DatagramSocket client = LoopbackSocket(udp::AddressFamily::kIpv4);
  for (int i = 0; i < 10; ++i) {
    const auto sent_at = std::chrono::steady_clock::now();
    ASSERT_NO_FATAL_FAILURE(SendTo(client, proxy_address, Numbered(i)));
    absl::StatusOr<Received> at_server = RecvWithin(server, kTimeout);
    ASSERT_TRUE(at_server.ok()) << at_server.status();
    ASSERT_NO_FATAL_FAILURE(SendTo(server, at_server->from, at_server->payload));
    absl::StatusOr<Received> back = RecvWithin(client, kTimeout);
    ASSERT_TRUE(back.ok()) << back.status();
    const auto rtt = std::chrono::steady_clock::now() - sent_at;
    EXPECT_GE(rtt, std::chrono::milliseconds(100)) << "round trip " << i;
    EXPECT_EQ(back->payload, Numbered(i));
  }
  EXPECT_EQ(Stop(proxy), 0);
}

TEST(ImpairTest, DuplicateEverythingDoublesArrivals) {
  udp::DatagramSocket server = LoopbackSocket(udp::AddressFamily::kIpv4);
  Proxy proxy = StartProxy({"--to", LocalOf(server).ToString(), "--dup", "100%"});
  const udp::SocketAddress proxy_address =
      udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, static_cast<uint16_t>(proxy.port));
  udp::DatagramSocket client = LoopbackSocket(udp::AddressFamily::kIpv4);
  constexpr int kCount = 100;
  for (int i = 0; i < kCount; ++i) {
    ASSERT_NO_FATAL_FAILURE(SendTo(client, proxy_address, Numbered(i)));
    for (int copy = 0; copy < 2; ++copy) {
      absl::StatusOr<Received> at_server = RecvWithin(server, kTimeout);
      ASSERT_TRUE(at_server.ok()) << "datagram " << i << " copy " << copy << ": "
                                  << at_server.status();
      EXPECT_EQ(at_server->payload, Numbered(i));
    }
  }
  EXPECT_EQ(Stop(proxy), 0);
  EXPECT_THAT(DrainNow(server), SizeIs(0));
  std::map<std::string, uint64_t> up = ImpairCounters(proxy.process->stderr_text(), "up");
  EXPECT_EQ(up["received"], 100u);
  EXPECT_EQ(up["delivered"], 200u);
  EXPECT_EQ(up["duplicated"], 100u);
  EXPECT_EQ(up["sent"], 200u);
}

TEST(ImpairTest, CorruptFlipsBitsButKeepsTheLength) {
  udp::DatagramSocket server = LoopbackSocket(udp::AddressFamily::kIpv4);
  Proxy proxy = StartProxy({"--to", LocalOf(server).ToString(), "--corrupt", "100%"});
  const udp::SocketAddress proxy_address =
      udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, static_cast<uint16_t>(proxy.port));
  udp::DatagramSocket client = LoopbackSocket(udp::AddressFamily::kIpv4);
  for (int i = 0; i < 20; ++i) {
    ASSERT_NO_FATAL_FAILURE(SendTo(client, proxy_address, Numbered(i)));
    absl::StatusOr<Received> at_server = RecvWithin(server, kTimeout);
    ASSERT_TRUE(at_server.ok()) << at_server.status();
    EXPECT_EQ(at_server->payload.size(), Numbered(i).size());
    EXPECT_NE(at_server->payload, Numbered(i));
  }
  EXPECT_EQ(Stop(proxy), 0);
  EXPECT_EQ(ImpairCounters(proxy.process->stderr_text(), "up")["corrupted"], 20u);
}

TEST(ImpairTest, DurationEndsTheRunWithCounters) {
  udp::DatagramSocket server = LoopbackSocket(udp::AddressFamily::kIpv4);
  Proxy proxy = StartProxy({"--to", LocalOf(server).ToString(), "--duration", "200ms"});
  absl::StatusOr<int> code = proxy.process->Wait(kTimeout);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
  EXPECT_THAT(proxy.process->stderr_text(), HasSubstr("\nup:   received=0 delivered=0 "));
  EXPECT_THAT(proxy.process->stderr_text(), HasSubstr("\ndown: received=0 delivered=0 "));
}

TEST(ImpairTest, SigintAlsoPrintsCounters) {
  udp::DatagramSocket server = LoopbackSocket(udp::AddressFamily::kIpv4);
  Proxy proxy = StartProxy({"--to", LocalOf(server).ToString()});
  proxy.process->Kill(SIGINT);
  absl::StatusOr<int> code = proxy.process->Wait(kTimeout);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
  EXPECT_THAT(proxy.process->stderr_text(), HasSubstr("\nup:   received=0 "));
}

// A target with nothing listening answers with ICMP port unreachable; the
// proxy says so (once a second at most) instead of forwarding into silence.
TEST(ImpairTest, ClosedTargetIsReportedNotSilent) {
  udp::SocketAddress closed;
  {
    udp::DatagramSocket gone = LoopbackSocket(udp::AddressFamily::kIpv4);
    closed = LocalOf(gone);
  }
  Proxy proxy = StartProxy({"--to", closed.ToString()});
  udp::DatagramSocket client = LoopbackSocket(udp::AddressFamily::kIpv4);
  const udp::SocketAddress to = udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, proxy.port);
  SendTo(client, to, "ping");
  absl::StatusOr<std::string> line = proxy.process->ReadStderrLine(kTimeout);
  ASSERT_TRUE(line.ok()) << line.status() << ": " << proxy.process->stderr_text();
  EXPECT_EQ(*line, absl::StrCat("impair: ", closed.ToString(),
                                ": Connection refused (nothing listens there)"));
  // More refusals within the second add no line each.
  const absl::Time start = absl::Now();
  for (int i = 0; i < 50; ++i) SendTo(client, to, absl::StrCat("ping ", i));
  const absl::Duration elapsed = absl::Now() - start;
  EXPECT_EQ(Stop(proxy), 0);
  int refusals = 0;
  for (const std::string& l : Lines(proxy.process->stderr_text())) {
    if (absl::StrContains(l, "Connection refused")) ++refusals;
  }
  EXPECT_LE(refusals, 2 + absl::ToInt64Seconds(elapsed)) << proxy.process->stderr_text();
  std::map<std::string, uint64_t> up = ImpairCounters(proxy.process->stderr_text(), "up");
  EXPECT_GE(up["unreachable"], 1u) << proxy.process->stderr_text();
  EXPECT_EQ(up["received"], 51u);
  EXPECT_EQ(up["sent"], 51u) << "a refusal must not cost the next datagram";
}

struct BadFlags {
  std::vector<std::string> args;
  std::string message;
};

TEST(ImpairTest, BadFlagsAreOneLineErrorsWithExitTwo) {
  const BadFlags cases[] = {
      {{"--listen", "0", "--to", "127.0.0.1:9", "--rate", "abc"}, "--rate"},
      {{"--listen", "0"}, "--to HOST:PORT is required"},
      {{"--to", "127.0.0.1:9"}, "--listen PORT is required"},
      {{"--listen", "70000", "--to", "127.0.0.1:9"},
       "--listen \"70000\" is not a number from 0 to 65535"},
      {{"--listen", "0", "--to", "no-such-host.invalid:9"}, "resolve \"no-such-host.invalid\""},
      {{"--listen", "0", "--to", "127.0.0.1"}, "port"},
      {{"--listen", "0", "--to", "127.0.0.1:9", "--loss", "150%"}, "--loss"},
      {{"--listen", "0", "--to", "127.0.0.1:9", "--delay", "soon"}, "--delay"},
      {{"--listen", "0", "--to", "127.0.0.1:9", "--queue_limit", "lots"}, "--queue_limit"},
      {{"--listen", "0", "--to", "127.0.0.1:9", "--duration", "-1s"}, "--duration"},
      {{"--listen", "0", "--to", "127.0.0.1:9", "extra"}, "no positional arguments"},
  };
  for (const BadFlags& c : cases) {
    std::vector<std::string> argv = {UdpmsgPath(), "impair"};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    const std::string what = absl::StrJoin(c.args, " ");
    absl::StatusOr<std::unique_ptr<Subprocess>> p = Subprocess::Start(argv);
    ASSERT_TRUE(p.ok()) << p.status();
    absl::StatusOr<int> code = (*p)->Wait(kTimeout);
    ASSERT_TRUE(code.ok()) << what << ": " << code.status();
    EXPECT_EQ(*code, 2) << what << ": " << (*p)->stderr_text();
    EXPECT_EQ((*p)->stdout_text(), "") << what;
    std::vector<std::string> lines = Lines((*p)->stderr_text());
    ASSERT_THAT(lines, SizeIs(1)) << what << ": " << (*p)->stderr_text();
    EXPECT_THAT(lines[0], StartsWith("udpmsg")) << what;
    EXPECT_THAT(lines[0], HasSubstr(c.message)) << what;
  }
}

TEST(ImpairTest, ListenPortInUseIsAOneLineErrorWithExitOne) {
  udp::DatagramSocket taken = LoopbackSocket(udp::AddressFamily::kIpv4);
  const udp::SocketAddress address = LocalOf(taken);
  absl::StatusOr<std::unique_ptr<Subprocess>> p =
      Subprocess::Start({UdpmsgPath(), "impair", "--listen", absl::StrCat(address.port()), "--bind",
                         "127.0.0.1", "--to", "127.0.0.1:9"});
  ASSERT_TRUE(p.ok()) << p.status();
  absl::StatusOr<int> code = (*p)->Wait(kTimeout);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 1);
  EXPECT_EQ((*p)->stderr_text(),
            absl::StrCat("udpmsg: bind ", address.ToString(), ": Address already in use\n"));
}

}  // namespace
}  // namespace udpmsg::testing
