// udpmsg::Host::CreateShards over loopback: N shards on one port, one
// thread each (an echo server), 64 client Hosts (64 sockets) in the test's
// thread. Every datagram must reach the shard that owns its connection:
// no shard ever sees an unknown connection id, every echo comes back, and a
// datagram from a new source port (a client whose address changed) reaches
// the owner shard, which judges it: a clear ping newer than anything
// received starts a path validation (a challenge to the new port, which
// never answers), sealed garbage does not open; neither moves a connection.
// Bounded by deadlines, never by sleeps; runs under TSan (the shards'
// threads share only the mutex-guarded snapshots below).
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/codec.h"
#include "proto/frames.h"
#include "reliable/endpoint.h"
#include "udp/datagram_socket.h"
#include "udpmsg/udpmsg.h"

namespace udpmsg {
namespace {

using ::testing::HasSubstr;

constexpr int kClients = 64;
constexpr int kMessagesPerClient = 4;

// One shard's echo loop on its own thread. The test thread reads what the
// loop publishes only through snapshot().
class EchoShard {
 public:
  explicit EchoShard(Host host) : host_(std::move(host)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~EchoShard() {
    stop_.store(true);
    host_.Wake();
    thread_.join();
  }

  struct Snapshot {
    HostStats stats;
    std::vector<ConnectionId> connections;
    std::string error;
  };
  Snapshot snapshot() const {
    std::lock_guard<std::mutex> lock(mu_);
    return snapshot_;
  }

 private:
  void Run() {
    std::vector<ConnectionId> connections;
    while (!stop_.load()) {
      absl::StatusOr<Host::PollResult> r = host_.Poll(absl::Milliseconds(20));
      if (!r.ok()) {
        std::lock_guard<std::mutex> lock(mu_);
        snapshot_.error = std::string(r.status().message());
        return;
      }
      for (Event& e : r->events) {
        if (e.type == Event::Type::kConnected) connections.push_back(e.connection);
        if (e.type == Event::Type::kMessage) {
          (void)host_.Send(e.connection, e.channel, e.mode, std::move(e.message));
        }
      }
      std::lock_guard<std::mutex> lock(mu_);
      snapshot_.stats = host_.stats();
      snapshot_.connections = connections;
    }
  }

  Host host_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  Snapshot snapshot_;
  std::thread thread_;
};

struct Client {
  Host host;
  ConnectionId id = 0;
  bool connected = false;
  std::vector<std::string> echoes;
};

HostOptions ServerOptions() {
  HostOptions o;
  o.bind = SocketAddress::Loopback(AddressFamily::kIpv4, 0);
  o.accept_incoming = true;
  o.max_connections_per_address = kClients;  // every client is 127.0.0.1
  o.max_unconfirmed_connections = kClients;
  return o;
}

// Polls every client once (non-blocking) until `done` or 20 s pass.
template <typename Done>
bool PumpClients(std::vector<Client>& clients, Done done) {
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (!done()) {
    if (absl::Now() > deadline) return false;
    for (Client& c : clients) {
      absl::StatusOr<Host::PollResult> r = c.host.Poll(absl::ZeroDuration());
      EXPECT_TRUE(r.ok()) << r.status();
      if (!r.ok()) return false;
      for (Event& e : r->events) {
        if (e.type == Event::Type::kConnected) c.connected = true;
        if (e.type == Event::Type::kMessage) c.echoes.push_back(std::move(e.message));
      }
    }
  }
  return true;
}

std::string PlainPing(uint64_t id) {
  proto::Codec codec(proto::Codec::Limits{});
  proto::Packet p;
  p.connection_id = id;
  p.packet_number = 1000;
  p.ping = proto::Ping{};
  absl::StatusOr<std::string> bytes = codec.Encode(p);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  return bytes.ok() ? *bytes : std::string();
}

std::string SealedGarbage(uint64_t id) {
  proto::SealedHeader h;
  h.connection_id = id;
  return proto::EncodeSealedHeader(h) + std::string(32, '\x33');
}

TEST(ShardsTest, RejectsShardCountsOutOfRange) {
  for (int count : {0, -3, 257}) {
    absl::StatusOr<std::vector<Host>> shards = Host::CreateShards(ServerOptions(), count);
    ASSERT_FALSE(shards.ok());
    EXPECT_EQ(shards.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(shards.status().message(), HasSubstr("outside [1, 256]"));
  }
  HostOptions bad = ServerOptions();
  bad.max_datagram = 100;
  EXPECT_EQ(Host::CreateShards(bad, 2).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ShardsTest, OneShardIsAPlainHost) {
  absl::StatusOr<std::vector<Host>> shards = Host::CreateShards(ServerOptions(), 1);
  ASSERT_TRUE(shards.ok()) << shards.status();
  ASSERT_EQ(shards->size(), 1u);
  EXPECT_EQ((*shards)[0].shard().count, 1);
  EXPECT_FALSE((*shards)[0].shard().steered);
}

void RunShards(int count) {
  absl::StatusOr<std::vector<Host>> hosts = Host::CreateShards(ServerOptions(), count);
  ASSERT_TRUE(hosts.ok()) << hosts.status();
  ASSERT_EQ(hosts->size(), static_cast<size_t>(count));
  const SocketAddress server = (*hosts)[0].local_address();
  for (int i = 0; i < count; ++i) {
    const Host& h = (*hosts)[i];
    EXPECT_EQ(h.local_address(), server);
    EXPECT_EQ(h.shard().index, i);
    EXPECT_EQ(h.shard().count, count);
    ASSERT_TRUE(h.shard().steered) << h.shard().steering_error;
  }
  std::vector<std::unique_ptr<EchoShard>> shards;
  for (Host& h : *hosts) shards.push_back(std::make_unique<EchoShard>(std::move(h)));

  std::vector<Client> clients;
  for (int i = 0; i < kClients; ++i) {
    HostOptions o;
    o.bind = SocketAddress::Loopback(AddressFamily::kIpv4, 0);
    absl::StatusOr<Host> host = Host::Create(o);
    ASSERT_TRUE(host.ok()) << host.status();
    clients.push_back(Client{*std::move(host)});
    absl::StatusOr<ConnectionId> id = clients.back().host.Connect(server);
    ASSERT_TRUE(id.ok()) << id.status();
    clients.back().id = *id;
  }
  ASSERT_TRUE(PumpClients(clients, [&] {
    for (const Client& c : clients) {
      if (!c.connected) return false;
    }
    return true;
  })) << "not every client connected";
  for (int i = 0; i < kClients; ++i) {
    for (int m = 0; m < kMessagesPerClient; ++m) {
      ASSERT_TRUE(clients[i].host.Send(clients[i].id, 0, DeliveryMode::kReliableOrdered,
                                       absl::StrCat("client ", i, " message ", m))
                      .ok());
    }
  }
  ASSERT_TRUE(PumpClients(clients, [&] {
    for (const Client& c : clients) {
      if (c.echoes.size() < kMessagesPerClient) return false;
    }
    return true;
  })) << "not every echo came back";
  for (int i = 0; i < kClients; ++i) {
    for (int m = 0; m < kMessagesPerClient; ++m) {
      EXPECT_EQ(clients[i].echoes[m], absl::StrCat("client ", i, " message ", m));
    }
  }

  // Every shard served some clients (64 hellos hashed over 2-4 sockets),
  // minted ids carrying its index, and never saw a foreign id.
  size_t total = 0;
  std::vector<EchoShard::Snapshot> before;
  for (int i = 0; i < count; ++i) {
    EchoShard::Snapshot s = shards[i]->snapshot();
    EXPECT_EQ(s.error, "");
    EXPECT_EQ(s.stats.unknown_connection, 0u) << "shard " << i;
    EXPECT_EQ(s.stats.wrong_address, 0u) << "shard " << i;
    EXPECT_GT(s.stats.datagrams_received, 0u) << "shard " << i;
    EXPECT_FALSE(s.connections.empty()) << "shard " << i;
    for (ConnectionId id : s.connections) {
      EXPECT_EQ(reliable::ShardOfConnectionId(id), static_cast<uint32_t>(i));
    }
    total += s.connections.size();
    before.push_back(std::move(s));
  }
  EXPECT_EQ(total, static_cast<size_t>(kClients));

  // A client "moves": its datagrams (plain and sealed form) now come from a
  // socket with another port. Each must reach the shard owning the id: the
  // owner challenges the new port (reliable/connection.h "Path validation")
  // and counts the garbage as unauthenticated; another shard would have
  // counted unknown_connection. Nobody answers the challenges, so no
  // connection moves.
  absl::StatusOr<udp::DatagramSocket> moved =
      udp::DatagramSocket::Bind(SocketAddress::Loopback(AddressFamily::kIpv4, 0), {});
  ASSERT_TRUE(moved.ok()) << moved.status();
  for (int i = 0; i < count; ++i) {
    for (ConnectionId id : before[i].connections) {
      ASSERT_TRUE(moved->SendTo(server, udp::AsBytes(PlainPing(id))).ok());
      ASSERT_TRUE(moved->SendTo(server, udp::AsBytes(SealedGarbage(id))).ok());
    }
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  for (;;) {
    bool all = true;
    for (int i = 0; i < count; ++i) {
      const EchoShard::Snapshot s = shards[i]->snapshot();
      all = all && s.stats.path_challenges_sent >= before[i].connections.size() &&
            s.stats.unauthenticated >= before[i].connections.size();
    }
    if (all || absl::Now() > deadline) break;
    std::this_thread::yield();
  }
  for (int i = 0; i < count; ++i) {
    const EchoShard::Snapshot s = shards[i]->snapshot();
    const size_t n = before[i].connections.size();
    // One validation per connection, each at most kMaxPathChallenges.
    EXPECT_GE(s.stats.path_challenges_sent, n) << "shard " << i;
    EXPECT_LE(s.stats.path_challenges_sent, reliable::kMaxPathChallenges * n) << "shard " << i;
    EXPECT_EQ(s.stats.unauthenticated, n) << "shard " << i;
    EXPECT_EQ(s.stats.wrong_address, 0u) << "shard " << i;
    EXPECT_EQ(s.stats.migrations, 0u) << "shard " << i;
    EXPECT_EQ(s.stats.unknown_connection, 0u) << "shard " << i;
  }
}

TEST(ShardsTest, TwoShardsKeepEveryConnectionOnItsShard) { RunShards(2); }
TEST(ShardsTest, FourShardsKeepEveryConnectionOnItsShard) { RunShards(4); }

}  // namespace
}  // namespace udpmsg
