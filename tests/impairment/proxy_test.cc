// ImpairProxy driven in-process on loopback: a client socket, the proxy and a
// server socket in one thread. The test calls Poll() until what it waits for
// has arrived (every wait is on sockets, with a 10 s guard; nothing sleeps)
// and checks what crossed against the proxy's stats and, for seeded loss,
// against an ImpairmentModel fed the same datagrams.
#include "impairment/proxy.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "impairment/model.h"
#include "udp/datagram_socket.h"
#include "udp/errno_status.h"
#include "udp/socket_address.h"
#include "tests/sim/seeds.h"

namespace udpmsg::impairment {
namespace {

using udp::AddressFamily;
using udp::DatagramSocket;
using udp::SocketAddress;

struct Received {
  std::string bytes;
  SocketAddress from;
};

DatagramSocket BindLoopback() {
  absl::StatusOr<DatagramSocket> socket = DatagramSocket::Bind(
      SocketAddress::Loopback(AddressFamily::kIpv4, 0),
      {.non_blocking = true, .receive_buffer_bytes = 4 << 20});
  EXPECT_TRUE(socket.ok()) << socket.status();
  return *std::move(socket);
}

// Everything waiting on non-blocking `socket`, appended to `*out`.
void Drain(DatagramSocket& socket, std::vector<Received>* out) {
  std::vector<uint8_t> buffer(65536);
  for (;;) {
    absl::StatusOr<udp::Datagram> d = socket.RecvFrom(absl::MakeSpan(buffer));
    if (!d.ok()) {
      EXPECT_TRUE(udp::IsWouldBlock(d.status())) << d.status();
      return;
    }
    out->push_back({std::string(reinterpret_cast<const char*>(buffer.data()), d->size), d->from});
  }
}

// A client and a server on loopback with a proxy between them.
class Rig {
 public:
  explicit Rig(const ImpairmentConfig& config, int stop_fd = -1)
      : server_(BindLoopback()), client_(BindLoopback()) {
    absl::StatusOr<std::unique_ptr<ImpairProxy>> proxy =
        ImpairProxy::Create({.listen = SocketAddress::Loopback(AddressFamily::kIpv4, 0),
                             .target = *server_.LocalAddress(),
                             .config = config,
                             .stop_fd = stop_fd});
    EXPECT_TRUE(proxy.ok()) << proxy.status();
    if (proxy.ok()) proxy_ = *std::move(proxy);
  }

  ImpairProxy& proxy() { return *proxy_; }
  DatagramSocket& client() { return client_; }
  DatagramSocket& server() { return server_; }
  const std::vector<Received>& at_server() const { return at_server_; }
  const std::vector<Received>& at_client() const { return at_client_; }

  // Sends "<tag>-<i>" for i in [0, n) from `from` to the proxy; returns them.
  std::vector<std::string> Send(DatagramSocket& from, absl::string_view tag, int n) {
    std::vector<std::string> sent;
    for (int i = 0; i < n; ++i) {
      sent.push_back(absl::StrCat(tag, "-", i));
      absl::StatusOr<size_t> s = from.SendTo(proxy_->local_address(), udp::AsBytes(sent.back()));
      EXPECT_TRUE(s.ok()) << s.status();
    }
    return sent;
  }

  // Polls the proxy and collects what reaches the server and the client until
  // `done()`. False (with a test failure) after a 10 s guard.
  bool PumpUntil(const std::function<bool()>& done) {
    const absl::Time guard = absl::Now() + absl::Seconds(10);
    for (;;) {
      Drain(server_, &at_server_);
      Drain(client_, &at_client_);
      if (done()) return true;
      if (absl::Now() > guard) {
        ADD_FAILURE() << "timed out; proxy stats:\n" << FormatProxyStats(proxy_->stats());
        return false;
      }
      const absl::Status s = proxy_->Poll(absl::Milliseconds(5));
      if (!s.ok()) {
        ADD_FAILURE() << s;
        return false;
      }
    }
  }

  // Until the model has seen `n` datagrams going up and none waits to be sent.
  bool PumpUntilUpSettled(uint64_t n) {
    return PumpUntil([&] {
      const ProxyStats s = proxy_->stats();
      return s.up.model.received == n && s.up.pending == 0;
    });
  }

 private:
  DatagramSocket server_;
  DatagramSocket client_;
  std::unique_ptr<ImpairProxy> proxy_;
  std::vector<Received> at_server_;
  std::vector<Received> at_client_;
};

std::vector<std::string> Bytes(const std::vector<Received>& received) {
  std::vector<std::string> out;
  for (const Received& r : received) out.push_back(r.bytes);
  return out;
}

TEST(ImpairProxyTest, WithoutImpairmentEveryDatagramArrivesOnceInOrder) {
  Rig rig(ImpairmentConfig{});
  const std::vector<std::string> sent = rig.Send(rig.client(), "up", 200);
  ASSERT_TRUE(rig.PumpUntil([&] { return rig.at_server().size() >= sent.size(); }));
  ASSERT_TRUE(rig.PumpUntilUpSettled(sent.size()));
  EXPECT_EQ(Bytes(rig.at_server()), sent);
  // All of them from the client's one mapping, not from the client itself.
  for (const Received& r : rig.at_server()) {
    EXPECT_EQ(r.from, rig.at_server().front().from);
    EXPECT_NE(r.from, *rig.client().LocalAddress());
  }
  const ProxyStats stats = rig.proxy().stats();
  EXPECT_EQ(stats.up.model.delivered, 200u);
  EXPECT_EQ(stats.up.sent, 200u);
  EXPECT_EQ(stats.up.overflow, 0u);
  EXPECT_EQ(stats.up.send_failed, 0u);
  EXPECT_EQ(stats.up.model.bytes_in, stats.up.model.bytes_out);
  EXPECT_EQ(stats.down.model.received, 0u);
  EXPECT_EQ(stats.mappings, 1u);
}

TEST(ImpairProxyTest, RepliesReachEachClientFromTheListenAddress) {
  Rig rig(ImpairmentConfig{});
  DatagramSocket other = BindLoopback();
  rig.Send(rig.client(), "a", 1);
  rig.Send(other, "b", 1);
  ASSERT_TRUE(rig.PumpUntil([&] { return rig.at_server().size() == 2; }));
  ASSERT_NE(rig.at_server()[0].from, rig.at_server()[1].from);  // one mapping each
  EXPECT_EQ(rig.proxy().stats().mappings, 2u);

  // The server answers each mapping with "re:" and the payload it got.
  for (const Received& r : rig.at_server()) {
    const std::string reply = "re:" + r.bytes;
    ASSERT_TRUE(rig.server().SendTo(r.from, udp::AsBytes(reply)).ok());
  }
  std::vector<Received> at_other;
  ASSERT_TRUE(rig.PumpUntil([&] {
    Drain(other, &at_other);
    return !rig.at_client().empty() && !at_other.empty();
  }));
  ASSERT_EQ(rig.at_client().size(), 1u);
  ASSERT_EQ(at_other.size(), 1u);
  EXPECT_EQ(rig.at_client()[0].bytes, "re:a-0");
  EXPECT_EQ(at_other[0].bytes, "re:b-0");
  EXPECT_EQ(rig.at_client()[0].from, rig.proxy().local_address());
  EXPECT_EQ(at_other[0].from, rig.proxy().local_address());
  const ProxyStats stats = rig.proxy().stats();
  EXPECT_EQ(stats.down.model.received, 2u);
  EXPECT_EQ(stats.down.sent, 2u);
}

TEST(ImpairProxyTest, LossOfOneDropsEveryDatagram) {
  ImpairmentConfig config;
  config.loss = 1.0;
  Rig rig(config);
  rig.Send(rig.client(), "up", 100);
  ASSERT_TRUE(rig.PumpUntilUpSettled(100));
  // Nothing was ever scheduled, so nothing can still be on its way.
  ASSERT_TRUE(rig.PumpUntil([] { return true; }));  // one more look at the server
  EXPECT_TRUE(rig.at_server().empty());
  const ProxyStats stats = rig.proxy().stats();
  EXPECT_EQ(stats.up.model.dropped_loss, 100u);
  EXPECT_EQ(stats.up.model.delivered, 0u);
  EXPECT_EQ(stats.up.sent, 0u);
}

TEST(ImpairProxyTest, DuplicateOfOneDeliversEveryDatagramTwice) {
  ImpairmentConfig config;
  config.duplicate = 1.0;
  Rig rig(config);
  const std::vector<std::string> sent = rig.Send(rig.client(), "up", 100);
  ASSERT_TRUE(rig.PumpUntil([&] { return rig.at_server().size() >= 2 * sent.size(); }));
  ASSERT_TRUE(rig.PumpUntilUpSettled(sent.size()));
  std::map<std::string, int> copies;
  for (const Received& r : rig.at_server()) ++copies[r.bytes];
  ASSERT_EQ(copies.size(), sent.size());
  for (const std::string& s : sent) EXPECT_EQ(copies[s], 2) << s;
  const ProxyStats stats = rig.proxy().stats();
  EXPECT_EQ(stats.up.model.duplicated, 100u);
  EXPECT_EQ(stats.up.sent, 200u);
}

TEST(ImpairProxyTest, DelayedCopiesWaitAsPendingAndStopDoesNotSendThem) {
  ImpairmentConfig config;
  config.delay = absl::Hours(1);
  Rig rig(config);
  rig.Send(rig.client(), "up", 10);
  ASSERT_TRUE(rig.PumpUntil([&] { return rig.proxy().stats().up.model.received == 10; }));
  const ProxyStats stats = rig.proxy().stats();
  EXPECT_EQ(stats.up.pending, 10u);
  EXPECT_EQ(stats.up.sent, 0u);
  EXPECT_TRUE(rig.at_server().empty());
  EXPECT_EQ(FormatProxyStats(stats).substr(0, 6), "up:   ");
}

// The same seeded loss as an ImpairmentModel fed the same datagrams: the
// proxy drops exactly the datagrams the model drops, and keeps the order.
TEST(ImpairProxyTest, SeededLossDropsExactlyWhatTheModelDrops) {
  for (uint64_t seed = 1; seed <= sim::SeedCount(200); ++seed) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    ImpairmentConfig config;
    config.loss = 0.3;
    config.burst = 0.4;
    config.seed = seed;
    Rig rig(config);
    const std::vector<std::string> sent = rig.Send(rig.client(), "up", 100);
    ASSERT_TRUE(rig.PumpUntilUpSettled(sent.size()));

    absl::StatusOr<ImpairmentModel> model = ImpairmentModel::Create(config, absl::UnixEpoch());
    ASSERT_TRUE(model.ok()) << model.status();
    std::vector<std::string> expected;
    for (const std::string& s : sent) {
      for (Delivery& d : model->OnPacket(absl::UnixEpoch(), s)) expected.push_back(d.bytes);
    }
    ASSERT_EQ(Bytes(rig.at_server()), expected);
    const ProxyStats stats = rig.proxy().stats();
    EXPECT_EQ(stats.up.model.ToString(), model->counters().ToString());
    EXPECT_EQ(stats.up.sent, expected.size());
  }
}

TEST(ImpairProxyTest, StopDescriptorEndsRun) {
  const int stop = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  ASSERT_GE(stop, 0);
  Rig rig(ImpairmentConfig{}, stop);  // the proxy owns `stop` from here on
  const uint64_t one = 1;
  ASSERT_EQ(::write(stop, &one, sizeof(one)), static_cast<ssize_t>(sizeof(one)));
  EXPECT_TRUE(rig.proxy().Run(absl::ZeroDuration()).ok());
  EXPECT_TRUE(rig.proxy().stopped());
}

TEST(ImpairProxyTest, StopBeforeRunMakesRunAndPollReturnAtOnce) {
  Rig rig(ImpairmentConfig{});
  EXPECT_FALSE(rig.proxy().stopped());
  rig.proxy().Stop();
  EXPECT_TRUE(rig.proxy().Run(absl::ZeroDuration()).ok());
  EXPECT_TRUE(rig.proxy().Poll(absl::InfiniteDuration()).ok());
  EXPECT_TRUE(rig.proxy().stopped());
}

TEST(ImpairProxyTest, CreateRejectsAnInvalidConfig) {
  ImpairmentConfig config;
  config.loss = 1.5;
  absl::StatusOr<std::unique_ptr<ImpairProxy>> proxy =
      ImpairProxy::Create({.listen = SocketAddress::Loopback(AddressFamily::kIpv4, 0),
                           .target = SocketAddress::Loopback(AddressFamily::kIpv4, 9),
                           .config = config});
  ASSERT_FALSE(proxy.ok());
  EXPECT_EQ(proxy.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(proxy.status().message().find("loss"), absl::string_view::npos) << proxy.status();
}

TEST(ImpairProxyTest, CreateOnABusyPortNamesTheAddress) {
  DatagramSocket taken = BindLoopback();
  const SocketAddress busy = *taken.LocalAddress();
  absl::StatusOr<std::unique_ptr<ImpairProxy>> proxy = ImpairProxy::Create(
      {.listen = busy, .target = SocketAddress::Loopback(AddressFamily::kIpv4, 9)});
  ASSERT_FALSE(proxy.ok());
  EXPECT_NE(proxy.status().message().find(busy.ToString()), absl::string_view::npos)
      << proxy.status();
}

}  // namespace
}  // namespace udpmsg::impairment
