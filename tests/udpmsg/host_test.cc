// udpmsg::Host over loopback: connect, send, echo, close, and the close
// reasons a real socket produces. Two hosts share the test's thread, so
// PumpUntil polls them in turn (short Poll timeouts, a deadline; no sleeps).
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "udpmsg/udpmsg.h"

namespace udpmsg {
namespace {

using ::testing::HasSubstr;

const SocketAddress kLoopbackAny = SocketAddress::Loopback(AddressFamily::kIpv4, 0);

struct Peer {
  Host host;
  std::vector<Event> events;
  size_t Count(Event::Type type) const {
    size_t n = 0;
    for (const Event& e : events) n += e.type == type;
    return n;
  }
  const Event* Find(Event::Type type) const {
    for (const Event& e : events) {
      if (e.type == type) return &e;
    }
    return nullptr;
  }
};

Peer MakePeer(HostOptions options) {
  options.bind = kLoopbackAny;
  absl::StatusOr<Host> host = Host::Create(options);
  EXPECT_TRUE(host.ok()) << host.status();
  return Peer{*std::move(host), {}};
}

HostOptions ServerOptions() {
  HostOptions o;
  o.accept_incoming = true;
  return o;
}

// Polls every peer in turn until `done` or 10 s of wall time (a bound for
// a broken build, never reached when the code works).
bool PumpUntil(std::vector<Peer*> peers, const std::function<bool()>& done) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!done()) {
    if (absl::Now() > deadline) return false;
    for (Peer* p : peers) {
      absl::StatusOr<Host::PollResult> r = p->host.Poll(absl::Milliseconds(5));
      EXPECT_TRUE(r.ok()) << r.status();
      if (!r.ok()) return false;
      for (Event& e : r->events) p->events.push_back(std::move(e));
    }
  }
  return true;
}

// Connects `client` to `server` and pumps both (the server must run too)
// until the client sees the handshake end; an error when it does not.
absl::StatusOr<ConnectionId> ConnectEstablished(Peer& server, Peer& client) {
  absl::StatusOr<ConnectionId> id = client.host.Connect(server.host.local_address());
  if (!id.ok()) return id.status();
  if (!PumpUntil({&server, &client}, [&] { return client.host.IsEstablished(*id); })) {
    return absl::DeadlineExceededError("the handshake did not end within 10 s");
  }
  return id;
}

TEST(HostTest, ConnectSendEchoAndCloseOverLoopback) {
  Peer server = MakePeer(ServerOptions());
  Peer client = MakePeer(HostOptions());
  EXPECT_NE(server.host.local_address().port(), 0);

  absl::StatusOr<ConnectionId> id = client.host.Connect(server.host.local_address());
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_FALSE(client.host.IsEstablished(*id));
  // Not established yet: Send says so.
  EXPECT_EQ(client.host.Send(*id, 0, DeliveryMode::kReliableOrdered, "early").status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(PumpUntil({&client, &server}, [&] {
    return client.Count(Event::Type::kConnected) == 1 && server.Count(Event::Type::kConnected) == 1;
  }));
  EXPECT_TRUE(client.host.IsEstablished(*id));
  EXPECT_EQ(client.Find(Event::Type::kConnected)->connection, *id);
  EXPECT_EQ(client.host.open_connections(), 1u);
  EXPECT_EQ(server.host.open_connections(), 1u);

  absl::StatusOr<uint64_t> seq = client.host.Send(*id, 2, DeliveryMode::kReliableOrdered, "ping");
  ASSERT_TRUE(seq.ok()) << seq.status();
  EXPECT_EQ(*seq, 0u);
  EXPECT_EQ(client.host.QueuedBytes(*id), 4u);
  ASSERT_TRUE(PumpUntil({&client, &server}, [&] { return server.Count(Event::Type::kMessage) == 1; }));
  const Event ping = *server.Find(Event::Type::kMessage);
  EXPECT_EQ(ping.message, "ping");
  EXPECT_EQ(ping.channel, 2u);
  EXPECT_EQ(ping.mode, DeliveryMode::kReliableOrdered);
  absl::StatusOr<SocketAddress> peer = server.host.PeerOf(ping.connection);
  ASSERT_TRUE(peer.ok()) << peer.status();
  EXPECT_EQ(peer->port(), client.host.local_address().port());

  ASSERT_TRUE(server.host.Send(ping.connection, 2, ping.mode, "pong").ok());
  ASSERT_TRUE(PumpUntil({&client, &server}, [&] {
    return client.Count(Event::Type::kMessage) == 1 && client.Count(Event::Type::kAcked) == 1;
  }));
  EXPECT_EQ(client.Find(Event::Type::kMessage)->message, "pong");
  EXPECT_EQ(client.Find(Event::Type::kAcked)->bytes, 4u);
  EXPECT_EQ(client.host.QueuedBytes(*id), 0u);

  absl::StatusOr<ConnectionStats> stats = client.host.Stats(*id);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->messages_sent, 1u);
  EXPECT_EQ(stats->messages_delivered, 1u);
  EXPECT_GT(client.host.stats().datagrams_sent, 0u);
  EXPECT_GT(client.host.io_stats().send_calls, 0u);
  EXPECT_EQ(server.host.stats().accepted, 1u);

  ASSERT_TRUE(client.host.Close(*id, "bye").ok());
  ASSERT_TRUE(PumpUntil({&client, &server}, [&] {
    return client.Count(Event::Type::kClosed) == 1 && server.Count(Event::Type::kClosed) == 1;
  }));
  const Event* own = client.Find(Event::Type::kClosed);
  EXPECT_EQ(own->close_reason, CloseReason::kClosedByApplication);
  EXPECT_FALSE(own->by_peer);
  const Event* theirs = server.Find(Event::Type::kClosed);
  EXPECT_EQ(theirs->close_reason, CloseReason::kClosedByPeer);
  EXPECT_TRUE(theirs->by_peer);
  EXPECT_EQ(theirs->reason, "bye");
  EXPECT_FALSE(client.host.IsEstablished(*id));
  EXPECT_TRUE(client.host.Flush(absl::Seconds(5)).ok());
}

TEST(HostTest, AwaitConnectedAndFlushDeliverEverythingQueued) {
  Peer server = MakePeer(ServerOptions());
  Peer client = MakePeer(HostOptions());
  const absl::StatusOr<ConnectionId> id = ConnectEstablished(server, client);
  ASSERT_TRUE(id.ok()) << id.status();
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(client.host.Send(*id, 0, DeliveryMode::kReliableOrdered, std::string(5000, 'a' + i % 26)).ok());
  }
  ASSERT_TRUE(PumpUntil({&client, &server}, [&] { return server.Count(Event::Type::kMessage) == 100; }));
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(server.events[1 + i].message, std::string(5000, 'a' + i % 26)) << i;
  }
  EXPECT_EQ(client.host.AwaitConnected(*id, absl::Milliseconds(10)).code(), absl::StatusCode::kOk);
  EXPECT_EQ(client.host.AwaitConnected(12345, absl::Milliseconds(10)).code(),
            absl::StatusCode::kNotFound);
}

// Slices of one shared buffer go without a copy: the host holds the buffer
// until the messages are acknowledged, then lets go of it.
TEST(HostTest, SharedBytesAreDeliveredAndTheBufferReleasedWhenAcknowledged) {
  Peer server = MakePeer(ServerOptions());
  Peer client = MakePeer(HostOptions());
  const absl::StatusOr<ConnectionId> id = ConnectEstablished(server, client);
  ASSERT_TRUE(id.ok()) << id.status();
  std::string contents;
  for (int i = 0; i < 40000; ++i) contents += static_cast<char>('a' + i % 23);
  auto buffer = std::make_shared<const std::string>(contents);
  const std::weak_ptr<const std::string> watch = buffer;
  const absl::string_view all = *buffer;
  for (size_t at = 0; at < all.size(); at += 10000) {
    ASSERT_TRUE(
        client.host.Send(*id, 0, DeliveryMode::kReliableOrdered, buffer, all.substr(at, 10000))
            .ok());
  }
  buffer.reset();
  EXPECT_FALSE(watch.expired());  // queued: held
  ASSERT_TRUE(PumpUntil({&client, &server}, [&] {
    return server.Count(Event::Type::kMessage) == 4 && client.Count(Event::Type::kAcked) == 4;
  }));
  std::string got;
  for (const Event& e : server.events) {
    if (e.type == Event::Type::kMessage) got += e.message;
  }
  EXPECT_EQ(got, contents);
  EXPECT_TRUE(watch.expired());  // all acknowledged: released
  EXPECT_EQ(client.host
                .Send(*id, 0, DeliveryMode::kReliableOrdered, nullptr, absl::string_view("x"))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

// Host::SetChannelPriority: its status codes, and an urgent channel's
// message delivered over loopback while bulk data on a less urgent one is
// still queued.
TEST(HostTest, SetChannelPriorityStatusCodesAndUrgentMessageFirst) {
  Peer server = MakePeer(ServerOptions());
  HostOptions client_options;
  client_options.max_channels = 16;
  Peer client = MakePeer(client_options);
  EXPECT_EQ(client.host.SetChannelPriority(99, 0, 0, 1).code(), absl::StatusCode::kNotFound);
  absl::StatusOr<ConnectionId> id = client.host.Connect(server.host.local_address());
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(client.host.SetChannelPriority(*id, 0, 0, 1).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(PumpUntil({&server, &client}, [&] { return client.host.IsEstablished(*id); }));
  EXPECT_EQ(client.host.SetChannelPriority(*id, 16, 0, 1).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client.host.SetChannelPriority(*id, 1, kChannelPriorities, 1).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client.host.SetChannelPriority(*id, 1, 0, 0).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client.host.SetChannelPriority(*id, 1, 0, kMaxChannelWeight + 1).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(client.host.SetChannelPriority(*id, 1, kChannelPriorities - 1, 1).ok());  // bulk
  ASSERT_TRUE(client.host.SetChannelPriority(*id, 2, 0, kMaxChannelWeight).ok());       // urgent
  // Both queued before any Poll: the urgent line, queued second, arrives first.
  ASSERT_TRUE(
      client.host.Send(*id, 1, DeliveryMode::kReliableOrdered, std::string(4 << 20, 'b')).ok());
  ASSERT_TRUE(client.host.Send(*id, 2, DeliveryMode::kReliableOrdered, "urgent").ok());
  ASSERT_TRUE(
      PumpUntil({&client, &server}, [&] { return server.Count(Event::Type::kMessage) == 2; }));
  std::vector<const Event*> got;
  for (const Event& e : server.events) {
    if (e.type == Event::Type::kMessage) got.push_back(&e);
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0]->channel, 2u);
  EXPECT_EQ(got[0]->message, "urgent");
  EXPECT_EQ(got[1]->message.size(), 4u << 20);
}

TEST(HostTest, UnknownConnectionIdsAreNotFound) {
  Peer client = MakePeer(HostOptions());
  EXPECT_EQ(client.host.Send(99, 0, DeliveryMode::kReliableOrdered, "x").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(client.host.Close(99, "x").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client.host.Stats(99).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client.host.PeerOf(99).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client.host.QueuedBytes(99), 0u);
  EXPECT_FALSE(client.host.IsEstablished(99));
}

TEST(HostTest, ClosedPortEndsTheAttemptAsPeerUnreachable) {
  SocketAddress gone;
  {
    Peer closed = MakePeer(HostOptions());
    gone = closed.host.local_address();
  }  // its socket is closed: the kernel answers with ICMP port unreachable
  Peer client = MakePeer(HostOptions());
  absl::StatusOr<ConnectionId> id = client.host.Connect(gone);
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(PumpUntil({&client}, [&] { return client.Count(Event::Type::kClosed) == 1; }));
  EXPECT_EQ(client.Find(Event::Type::kClosed)->close_reason, CloseReason::kPeerUnreachable);
  EXPECT_FALSE(client.Find(Event::Type::kClosed)->by_peer);
}

TEST(HostTest, EncryptionMismatchAndWrongRoomKeyAreTheirOwnReasons) {
  RoomKey one, two;
  one.bytes.fill(1);
  two.bytes.fill(2);
  struct Case {
    const char* name;
    bool server_encrypts, client_encrypts;
    std::optional<RoomKey> server_key, client_key;
    CloseReason want;
    bool by_peer;
  } cases[] = {
      {"server encrypts", true, false, std::nullopt, std::nullopt,
       CloseReason::kEncryptionMismatch, true},
      {"client encrypts", false, true, std::nullopt, std::nullopt,
       CloseReason::kEncryptionMismatch, true},
      {"different keys", false, false, one, two, CloseReason::kWrongRoomKey, false},
      {"only the server has a key", true, true, one, std::nullopt, CloseReason::kWrongRoomKey,
       false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    HostOptions so = ServerOptions();
    so.encrypt = c.server_encrypts;
    so.room_key = c.server_key;
    HostOptions co;
    co.encrypt = c.client_encrypts;
    co.room_key = c.client_key;
    Peer server = MakePeer(so);
    Peer client = MakePeer(co);
    absl::StatusOr<ConnectionId> id = client.host.Connect(server.host.local_address());
    ASSERT_TRUE(id.ok()) << id.status();
    ASSERT_TRUE(PumpUntil({&client, &server}, [&] { return client.Count(Event::Type::kClosed) == 1; }));
    const Event* closed = client.Find(Event::Type::kClosed);
    EXPECT_EQ(closed->close_reason, c.want) << CloseReasonName(closed->close_reason) << ": "
                                            << closed->reason;
    EXPECT_EQ(closed->by_peer, c.by_peer);
    EXPECT_EQ(client.Count(Event::Type::kConnected), 0u);
  }
}

TEST(HostTest, SameRoomKeyConnectsEncrypted) {
  RoomKey key;
  key.bytes.fill(9);
  HostOptions so = ServerOptions();
  so.room_key = key;
  HostOptions co;
  co.room_key = key;
  Peer server = MakePeer(so);
  Peer client = MakePeer(co);
  absl::StatusOr<ConnectionId> id = client.host.Connect(server.host.local_address());
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(client.host.Send(*id, 0, DeliveryMode::kReliableOrdered, "x").status().code() ==
              absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(PumpUntil({&client, &server}, [&] { return client.host.IsEstablished(*id); }));
  ASSERT_TRUE(client.host.Send(*id, 0, DeliveryMode::kReliableOrdered, "secret").ok());
  ASSERT_TRUE(PumpUntil({&client, &server}, [&] { return server.Count(Event::Type::kMessage) == 1; }));
  EXPECT_EQ(server.Find(Event::Type::kMessage)->message, "secret");
}

TEST(HostTest, ConnectSecurityReachesAnEncryptedServerWithoutTheHostsRoomKey) {
  // A NAT-traversal client: its transfers use a room key, its rendezvous
  // server only encrypts, from the same socket.
  RoomKey key;
  key.bytes.fill(9);
  HostOptions so = ServerOptions();
  so.encrypt = true;
  HostOptions co;
  co.room_key = key;
  Peer server = MakePeer(so);
  Peer client = MakePeer(co);
  // With the Host's own security the room key is refused...
  absl::StatusOr<ConnectionId> keyed = client.host.Connect(server.host.local_address());
  ASSERT_TRUE(keyed.ok()) << keyed.status();
  ASSERT_TRUE(
      PumpUntil({&client, &server}, [&] { return client.Count(Event::Type::kClosed) == 1; }));
  EXPECT_EQ(client.Find(Event::Type::kClosed)->close_reason, CloseReason::kWrongRoomKey);
  // ...with ConnectSecurity{encrypt} the same Host connects, encrypted.
  ConnectSecurity security;
  security.encrypt = true;
  absl::StatusOr<ConnectionId> id = client.host.Connect(server.host.local_address(), security);
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(PumpUntil({&client, &server}, [&] { return client.host.IsEstablished(*id); }));
  ASSERT_TRUE(client.host.Send(*id, 0, DeliveryMode::kReliableOrdered, "hi").ok());
  ASSERT_TRUE(
      PumpUntil({&client, &server}, [&] { return server.Count(Event::Type::kMessage) == 1; }));
  EXPECT_GE(client.host.Stats(*id)->packets_sent, 1u);
  // And a plain ConnectSecurity (no encryption) is refused by the encrypting server.
  client.events.clear();
  absl::StatusOr<ConnectionId> plain = client.host.Connect(server.host.local_address(), {});
  ASSERT_TRUE(plain.ok());
  ASSERT_TRUE(
      PumpUntil({&client, &server}, [&] { return client.Count(Event::Type::kClosed) == 1; }));
  EXPECT_EQ(client.Find(Event::Type::kClosed)->close_reason, CloseReason::kEncryptionMismatch);
}

TEST(HostTest, PunchesAreCountedByTheReceivingHostAndNeverAnswered) {
  Peer a = MakePeer(ServerOptions());
  Peer b = MakePeer(HostOptions{});
  ASSERT_TRUE(b.host.SendPunch(a.host.local_address(), "punch").ok());
  ASSERT_TRUE(b.host.SendPunch(a.host.local_address(), "low", /*ttl=*/2).ok());
  ASSERT_TRUE(PumpUntil({&a, &b}, [&] { return a.host.stats().punches == 2; }));
  EXPECT_EQ(a.host.stats().malformed, 0u);
  EXPECT_EQ(a.host.stats().datagrams_sent, 0u);
  EXPECT_EQ(b.host.stats().datagrams_received, 0u);
  // Bounds of the call.
  EXPECT_EQ(b.host.SendPunch(a.host.local_address(), std::string(65, 'x')).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b.host.SendPunch(a.host.local_address(), "", 256).code(),
            absl::StatusCode::kInvalidArgument);
  // The TTL of one punch does not stick to the socket: a connection after
  // it still works (the default TTL is restored).
  absl::StatusOr<ConnectionId> id = b.host.Connect(a.host.local_address());
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(PumpUntil({&a, &b}, [&] { return b.host.IsEstablished(*id); }));
}

TEST(HostTest, AServerIdentityIsPinnedOverTheRealSocket) {
  const ServerIdentity identity = ServerIdentity::FromSeed(ServerIdentity::Seed{1});
  const ServerIdentity other = ServerIdentity::FromSeed(ServerIdentity::Seed{2});
  for (const bool right : {true, false}) {
    SCOPED_TRACE(right ? "right pin" : "wrong pin");
    HostOptions so = ServerOptions();
    so.identity = identity;
    HostOptions co;
    co.server_pin = ServerFingerprint(right ? identity : other);
    Peer server = MakePeer(so);
    Peer client = MakePeer(co);
    absl::StatusOr<ConnectionId> id = client.host.Connect(server.host.local_address());
    ASSERT_TRUE(id.ok()) << id.status();
    ASSERT_TRUE(PumpUntil({&client, &server}, [&] {
      return client.Count(Event::Type::kConnected) + client.Count(Event::Type::kClosed) == 1;
    }));
    if (right) {
      ASSERT_EQ(client.Count(Event::Type::kConnected), 1u);
      EXPECT_EQ(client.Find(Event::Type::kConnected)->server_identity, ServerFingerprint(identity));
    } else {
      const Event* closed = client.Find(Event::Type::kClosed);
      ASSERT_NE(closed, nullptr);
      EXPECT_EQ(closed->close_reason, CloseReason::kServerIdentityMismatch);
      EXPECT_THAT(closed->reason, HasSubstr(absl::StrCat("presented ", ServerFingerprint(identity),
                                                         ", expected ",
                                                         ServerFingerprint(other))));
    }
  }
}

TEST(HostTest, BindFailureNamesTheAddress) {
  Peer first = MakePeer(HostOptions());
  HostOptions o;
  o.bind = first.host.local_address();
  absl::StatusOr<Host> second = Host::Create(o);
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(std::string(second.status().message()),
              HasSubstr(first.host.local_address().ToString()));
}

// Host::Rebind: the client moves to a new socket mid-transfer; the server
// validates the new address, moves the connection and says so; every
// message arrives once, in order. Encrypted and not.
TEST(HostTest, RebindMovesAClientToANewPortAndTheServerFollows) {
  for (bool encrypt : {false, true}) {
    SCOPED_TRACE(absl::StrCat("encrypt=", encrypt));
    HostOptions so = ServerOptions();
    so.encrypt = encrypt;
    HostOptions co;
    co.encrypt = encrypt;
    Peer server = MakePeer(so);
    Peer client = MakePeer(co);
    absl::StatusOr<ConnectionId> id = client.host.Connect(server.host.local_address());
    ASSERT_TRUE(id.ok()) << id.status();
    ASSERT_TRUE(PumpUntil({&client, &server},
                          [&] { return server.Count(Event::Type::kConnected) == 1; }));
    const ConnectionId server_id = server.Find(Event::Type::kConnected)->connection;
    const SocketAddress before = client.host.local_address();
    EXPECT_EQ(*server.host.PeerOf(server_id), before);

    constexpr int kMessages = 200;
    auto payload = [](int i) { return absl::StrCat("message ", i, " ", std::string(1000, 'x')); };
    for (int i = 0; i < kMessages / 2; ++i) {
      ASSERT_TRUE(client.host.Send(*id, 1, DeliveryMode::kReliableOrdered, payload(i)).ok());
    }
    ASSERT_TRUE(PumpUntil({&client, &server},
                          [&] { return server.Count(Event::Type::kMessage) >= 10; }));
    // Move to any new port on the same interface, mid-transfer.
    ASSERT_TRUE(client.host.Rebind(kLoopbackAny).ok());
    const SocketAddress after = client.host.local_address();
    EXPECT_NE(after.port(), before.port());
    for (int i = kMessages / 2; i < kMessages; ++i) {
      ASSERT_TRUE(client.host.Send(*id, 1, DeliveryMode::kReliableOrdered, payload(i)).ok());
    }
    ASSERT_TRUE(PumpUntil({&client, &server}, [&] {
      return server.Count(Event::Type::kMessage) == kMessages &&
             server.Count(Event::Type::kPathChanged) == 1;
    }));
    const Event* moved = server.Find(Event::Type::kPathChanged);
    EXPECT_EQ(moved->connection, server_id);
    EXPECT_EQ(moved->old_peer, before);
    EXPECT_EQ(moved->peer, after);
    EXPECT_EQ(*server.host.PeerOf(server_id), after);
    EXPECT_EQ(server.host.stats().migrations, 1u);
    int i = 0;
    for (const Event& e : server.events) {
      if (e.type == Event::Type::kMessage) {
        EXPECT_EQ(e.message, payload(i++));
      }
    }
    // Both ways still work from the new address.
    ASSERT_TRUE(server.host.Send(server_id, 1, DeliveryMode::kReliableOrdered, "back").ok());
    ASSERT_TRUE(PumpUntil({&client, &server},
                          [&] { return client.Count(Event::Type::kMessage) == 1; }));
    EXPECT_EQ(client.Count(Event::Type::kClosed), 0u);
    EXPECT_EQ(server.Count(Event::Type::kClosed), 0u);
  }
}

TEST(HostTest, RebindErrorsKeepTheOldSocket) {
  Peer server = MakePeer(ServerOptions());
  // A server cannot move: its clients would not follow.
  EXPECT_EQ(server.host.Rebind(kLoopbackAny).code(), absl::StatusCode::kFailedPrecondition);
  Peer client = MakePeer(HostOptions());
  const SocketAddress before = client.host.local_address();
  // A port in use: the errno status names the address; nothing changes.
  const absl::Status taken = client.host.Rebind(server.host.local_address());
  EXPECT_FALSE(taken.ok());
  EXPECT_THAT(std::string(taken.message()), HasSubstr(server.host.local_address().ToString()));
  EXPECT_EQ(client.host.local_address(), before);
  absl::StatusOr<ConnectionId> id = client.host.Connect(server.host.local_address());
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(PumpUntil({&client, &server},
                        [&] { return client.Count(Event::Type::kConnected) == 1; }));
}

}  // namespace
}  // namespace udpmsg
