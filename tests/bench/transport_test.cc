// Every bench::Transport (udpmsg, TCP, ENet, raw UDP) over loopback through
// the interface alone: a client connects to a listening echo server, sends
// messages of several sizes, and gets every byte back intact; the server
// names the client and, on the connected transports, sees it leave.
//
// No timing is asserted: the loops below only give up (and fail) after a
// generous deadline instead of hanging.
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/harness.h"
#include "bench/transports.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace udpmsg::bench {
namespace {

constexpr absl::Duration kGiveUp = absl::Seconds(30);

// Echoes everything back, and records who came and went.
class RecordingEcho final : public Transport::Handler {
 public:
  explicit RecordingEcho(Transport& t) : t_(t) {}
  void OnConnected(PeerId, const std::string& name) override {
    absl::MutexLock lock(&mu_);
    connected_.push_back(name);
  }
  void OnReceived(PeerId peer, absl::string_view bytes) override {
    EXPECT_TRUE(t_.Send(peer, bytes).ok());
  }
  void OnClosed(PeerId, const std::string&) override {
    absl::MutexLock lock(&mu_);
    ++closed_;
  }
  std::vector<std::string> connected() const {
    absl::MutexLock lock(&mu_);
    return connected_;
  }
  int closed() const {
    absl::MutexLock lock(&mu_);
    return closed_;
  }
  // Blocks until a connection closed (or `timeout`: a hang guard).
  bool AwaitClosed(absl::Duration timeout) const {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(
                                    +[](const int* closed) { return *closed > 0; }, &closed_),
                                timeout);
  }

 private:
  Transport& t_;
  mutable absl::Mutex mu_;
  std::vector<std::string> connected_ ABSL_GUARDED_BY(mu_);
  int closed_ ABSL_GUARDED_BY(mu_) = 0;
};

class Collect final : public Transport::Handler {
 public:
  void OnReceived(PeerId, absl::string_view bytes) override {
    chunks.emplace_back(bytes);
    bytes_.append(bytes.data(), bytes.size());
  }
  void OnClosed(PeerId, const std::string& reason) override { closed = reason; }
  const std::string& bytes() const { return bytes_; }
  std::vector<std::string> chunks;
  std::string closed;

 private:
  std::string bytes_;
};

struct Case {
  std::string name;
  TransportSpec spec;
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

std::vector<Case> Cases() {
  TransportSpec udpmsg{.kind = TransportKind::kUdpmsg};
  TransportSpec bbr = udpmsg;
  bbr.udpmsg.congestion = reliable::CongestionControl::kBbr;
  TransportSpec unreliable = udpmsg;
  unreliable.udpmsg.delivery = UdpmsgTransport::Delivery::kUnreliable;
  TransportSpec tcp{.kind = TransportKind::kTcp};
  TransportSpec tcp_reno = tcp;
  tcp_reno.tcp.congestion = "reno";  // in every kernel's allowed list
  tcp_reno.tcp.no_delay = true;
  TransportSpec enet{.kind = TransportKind::kEnet};
  TransportSpec raw{.kind = TransportKind::kRawUdp};
  TransportSpec raw_batch = raw;
  raw_batch.raw.batch = true;
  raw_batch.raw.drop_when_full = false;
  return {{"udpmsg", udpmsg},   {"udpmsg_bbr", bbr}, {"udpmsg_unreliable", unreliable},
          {"tcp", tcp},         {"tcp_reno", tcp_reno}, {"enet", enet},
          {"raw_udp", raw},     {"raw_udp_batch", raw_batch}};
}

class TransportTest : public ::testing::TestWithParam<Case> {};

TEST_P(TransportTest, EchoesEveryByteIntact) {
  const TransportSpec& spec = GetParam().spec;
  const udp::SocketAddress loopback = udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, 0);
  absl::StatusOr<std::unique_ptr<Transport>> server = MakeTransport(spec, loopback, true);
  ASSERT_TRUE(server.ok()) << server.status();
  RecordingEcho echo(**server);
  PollThread thread(**server, echo, absl::Milliseconds(5));
  absl::StatusOr<std::unique_ptr<Transport>> client = MakeTransport(spec, loopback, false);
  ASSERT_TRUE(client.ok()) << client.status();
  Transport& t = **client;

  const udp::SocketAddress to = (*server)->local_address();
  absl::StatusOr<PeerId> peer = t.Connect({to}, absl::Seconds(10));
  ASSERT_TRUE(peer.ok()) << peer.status();

  std::vector<std::string> sent = {"a", std::string(100, 'b'), std::string(1000, 'c')};
  for (size_t i = 0; i < sent.size(); ++i) sent[i][0] = static_cast<char>('0' + i);
  std::string all;
  for (const std::string& m : sent) {
    ASSERT_TRUE(t.Send(*peer, m).ok());
    all += m;
  }
  Collect got;
  const absl::Time give_up = absl::Now() + kGiveUp;
  while (got.bytes().size() < all.size() && absl::Now() < give_up) {
    ASSERT_TRUE(t.Poll(absl::Milliseconds(5), got).ok());
    ASSERT_TRUE(got.closed.empty()) << got.closed;
  }
  EXPECT_EQ(got.bytes().size(), all.size());
  if (t.is_stream()) {
    EXPECT_EQ(got.bytes(), all);
  } else if (spec.kind == TransportKind::kUdpmsg &&
             spec.udpmsg.delivery == UdpmsgTransport::Delivery::kUnreliable) {
    EXPECT_THAT(got.chunks, ::testing::UnorderedElementsAreArray(sent));
  } else {
    EXPECT_EQ(got.chunks, sent);  // one message per Send, in order
  }

  ASSERT_TRUE(t.Drain(absl::Seconds(10)).ok());
  EXPECT_EQ(t.QueuedBytes(*peer), 0u);
  absl::StatusOr<TransportStats> stats = t.Stats(*peer);
  ASSERT_TRUE(stats.ok()) << stats.status();
  if (spec.kind == TransportKind::kRawUdp) {
    EXPECT_EQ(stats->datagrams_sent, 3);
  } else {
    EXPECT_GE(stats->retransmits, 0);
  }
  if (spec.kind == TransportKind::kUdpmsg) {
    EXPECT_GE(stats->datagrams_sent, 3);
  }

  ASSERT_THAT(echo.connected(), ::testing::SizeIs(1));
  EXPECT_THAT(echo.connected()[0], ::testing::StartsWith("127.0.0.1:"));
  if (spec.kind != TransportKind::kRawUdp) {  // raw UDP has no end to see
    t.Close(*peer, "test done", absl::Seconds(5));
    EXPECT_TRUE(echo.AwaitClosed(kGiveUp));  // the server's thread sees it
    EXPECT_EQ(echo.closed(), 1);
  }
  if (spec.kind == TransportKind::kTcp || spec.kind == TransportKind::kEnet) {
    // (udpmsg keeps a closing connection's state a while; raw UDP never ends.)
    EXPECT_EQ(t.Stats(*peer).status().code(), absl::StatusCode::kNotFound);
  }
  thread.Stop();
  EXPECT_TRUE(thread.status().ok()) << thread.status();
}

TEST_P(TransportTest, UnknownPeerIsNotFound) {
  absl::StatusOr<std::unique_ptr<Transport>> t = MakeTransport(
      GetParam().spec, udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, 0), false);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_FALSE((*t)->Send(424242, "x").ok());
  EXPECT_EQ((*t)->QueuedBytes(424242), 0u);
  EXPECT_FALSE((*t)->Stats(424242).ok());
  (*t)->Close(424242, "nothing", absl::ZeroDuration());  // harmless
}

INSTANTIATE_TEST_SUITE_P(AllTransports, TransportTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& i) { return i.param.name; });

TEST(RawUdpTransportTest, ClientIgnoresStrangers) {
  const udp::SocketAddress loopback = udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, 0);
  absl::StatusOr<std::unique_ptr<RawUdpTransport>> a = RawUdpTransport::Create({}, loopback, false);
  absl::StatusOr<std::unique_ptr<RawUdpTransport>> b = RawUdpTransport::Create({}, loopback, false);
  absl::StatusOr<std::unique_ptr<RawUdpTransport>> stranger =
      RawUdpTransport::Create({}, loopback, false);
  ASSERT_TRUE(a.ok() && b.ok() && stranger.ok());
  absl::StatusOr<PeerId> a_to_b = (*a)->Connect({(*b)->local_address()}, absl::ZeroDuration());
  absl::StatusOr<PeerId> s_to_a =
      (*stranger)->Connect({(*a)->local_address()}, absl::ZeroDuration());
  absl::StatusOr<PeerId> b_to_a = (*b)->Connect({(*a)->local_address()}, absl::ZeroDuration());
  ASSERT_TRUE(a_to_b.ok() && s_to_a.ok() && b_to_a.ok());
  ASSERT_TRUE((*stranger)->Send(*s_to_a, "spoof").ok());
  ASSERT_TRUE((*b)->Send(*b_to_a, "real").ok());
  Collect got;
  const absl::Time give_up = absl::Now() + kGiveUp;
  while (got.chunks.empty() && absl::Now() < give_up) {
    ASSERT_TRUE((*a)->Poll(absl::Milliseconds(5), got).ok());
  }
  // Both datagrams were queued before any Poll: the stranger's is dropped.
  ASSERT_TRUE((*a)->Poll(absl::ZeroDuration(), got).ok());
  EXPECT_THAT(got.chunks, ::testing::ElementsAre("real"));
}

TEST(EnetTransportTest, RefusesIpv6) {
  absl::StatusOr<std::unique_ptr<EnetTransport>> t =
      EnetTransport::Create({}, udp::SocketAddress::Any(udp::AddressFamily::kIpv4, 0), false);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->Connect({udp::SocketAddress::Loopback(udp::AddressFamily::kIpv6, 9)},
                          absl::Seconds(1))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace udpmsg::bench
