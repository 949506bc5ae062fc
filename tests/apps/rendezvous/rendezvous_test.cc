// apps/rendezvous cores in virtual time: the naming and ownership rules, the
// caps, the relay's binding and forwarding rules (never a reflector), its
// budget, rate limit and expiry, the client's punch schedule, and an
// Endpoint dropping punch datagrams as punches (not malformed).
#include <array>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "apps/rendezvous/client_core.h"
#include "apps/rendezvous/names.h"
#include "apps/rendezvous/relay_core.h"
#include "apps/rendezvous/rendezvous.pb.h"
#include "apps/rendezvous/server_core.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/frames.h"
#include "reliable/endpoint.h"
#include "udp/socket_address.h"

namespace udpmsg::rendezvous {
namespace {

using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1'000'000);

udp::SocketAddress Addr(const std::string& text) { return *udp::SocketAddress::Parse(text); }

std::string Bind(const Token& t) {
  return std::string(1, static_cast<char>(proto::kPunchVersion)) + BindPayload(t);
}

wire::ServerMessage Parse(const std::string& bytes) {
  wire::ServerMessage m;
  EXPECT_TRUE(m.ParseFromString(bytes));
  return m;
}

std::string RegisterMsg(const std::string& name) {
  wire::ClientMessage m;
  m.mutable_register_()->set_name(name);
  return m.SerializeAsString();
}

std::string LookupMsg(uint64_t request, const std::string& name) {
  wire::ClientMessage m;
  m.mutable_lookup()->set_request(request);
  m.mutable_lookup()->set_name(name);
  return m.SerializeAsString();
}

// ---- names ----

TEST(NamesTest, RuleAcceptsLettersDigitsDotUnderscoreDash) {
  EXPECT_TRUE(ValidName("alice"));
  EXPECT_TRUE(ValidName("a.b_c-9"));
  EXPECT_TRUE(ValidName(std::string(kMaxNameBytes, 'x')));
  EXPECT_FALSE(ValidName(""));
  EXPECT_FALSE(ValidName(std::string(kMaxNameBytes + 1, 'x')));
  EXPECT_FALSE(ValidName("-lead"));
  EXPECT_FALSE(ValidName(".hidden"));
  EXPECT_FALSE(ValidName("bad\x1b[2J"));
  EXPECT_FALSE(ValidName("sp ace"));
  EXPECT_FALSE(ValidName("caf\xc3\xa9"));
}

// ---- server core ----

struct ServerFixture {
  explicit ServerFixture(ServerOptions o = {}, RelayOptions r = {})
      : relay(kT0, WithSeed(r)), core(WithPort(o), &relay) {}
  static RelayOptions WithSeed(RelayOptions r) {
    r.seed = 7;
    return r;
  }
  static ServerOptions WithPort(ServerOptions o) {
    o.relay_port = 7001;
    return o;
  }
  // The replies to `conn` since the last call.
  std::vector<wire::ServerMessage> To(uint64_t conn) {
    for (auto& r : core.TakeReplies()) pending.push_back(std::move(r));
    std::vector<wire::ServerMessage> out;
    std::vector<ServerCore::Reply> keep;
    for (auto& r : pending) {
      if (r.connection == conn) {
        out.push_back(Parse(r.bytes));
      } else {
        keep.push_back(std::move(r));
      }
    }
    pending = std::move(keep);
    return out;
  }
  void Pump() {
    for (auto& e : relay.TakeEvents()) core.OnRelayEvent(kT0, e);
  }
  RelayCore relay;
  ServerCore core;
  std::vector<ServerCore::Reply> pending;
};

TEST(ServerCoreTest, RegisterAnswersWithTheReflexiveAddress) {
  ServerFixture f;
  f.core.OnConnected(kT0, 1, Addr("198.51.100.7:40000"));
  f.core.OnMessage(kT0, 1, RegisterMsg("alice"));
  auto m = f.To(1);
  ASSERT_EQ(m.size(), 1u);
  ASSERT_TRUE(m[0].has_registered());
  EXPECT_EQ(m[0].registered().reflexive(), "198.51.100.7:40000");
  EXPECT_EQ(f.core.names(), 1u);
}

TEST(ServerCoreTest, AnotherConnectionCannotTakeARegisteredName) {
  ServerFixture f;
  f.core.OnConnected(kT0, 1, Addr("198.51.100.7:40000"));
  f.core.OnConnected(kT0, 2, Addr("203.0.113.9:5000"));
  f.core.OnMessage(kT0, 1, RegisterMsg("alice"));
  f.core.OnMessage(kT0, 2, RegisterMsg("alice"));
  auto m = f.To(2);
  ASSERT_EQ(m.size(), 1u);
  ASSERT_TRUE(m[0].has_refused());
  EXPECT_EQ(m[0].refused().code(), wire::Refused::NAME_TAKEN);
  EXPECT_EQ(f.core.stats().refused_taken, 1u);
  // Once the owner's connection closes, the name is free.
  f.core.OnClosed(kT0, 1);
  f.core.OnMessage(kT0, 2, RegisterMsg("alice"));
  m = f.To(2);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_TRUE(m[0].has_registered());
}

TEST(ServerCoreTest, BadNamesAreRefusedAndNotEchoedRaw) {
  ServerFixture f;
  f.core.OnConnected(kT0, 1, Addr("198.51.100.7:40000"));
  f.core.OnMessage(kT0, 1, RegisterMsg("evil\x1b[2J"));
  auto m = f.To(1);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].refused().code(), wire::Refused::BAD_NAME);
  EXPECT_THAT(m[0].refused().reason(), HasSubstr("evil\\x1b[2J"));
  EXPECT_EQ(m[0].refused().reason().find('\x1b'), std::string::npos);
  EXPECT_EQ(f.core.names(), 0u);
}

TEST(ServerCoreTest, NamesPerAddressAndInTotalAreCapped) {
  ServerOptions o;
  o.max_names = 3;
  o.max_names_per_address = 2;
  ServerFixture f(o);
  for (uint64_t c = 1; c <= 3; ++c) {
    f.core.OnConnected(kT0, c, Addr(absl::StrCat("198.51.100.7:", 40000 + c)));
    f.core.OnMessage(kT0, c, RegisterMsg(absl::StrCat("n", c)));
  }
  auto m = f.To(3);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].refused().code(), wire::Refused::LIMIT);
  EXPECT_THAT(m[0].refused().reason(), HasSubstr("too many names from 198.51.100.7"));
  f.core.OnConnected(kT0, 4, Addr("203.0.113.1:1"));
  f.core.OnMessage(kT0, 4, RegisterMsg("n4"));
  f.core.OnConnected(kT0, 5, Addr("203.0.113.2:1"));
  f.core.OnMessage(kT0, 5, RegisterMsg("n5"));
  m = f.To(5);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_THAT(m[0].refused().reason(), HasSubstr("server full"));
  EXPECT_EQ(f.core.names(), 3u);
  EXPECT_EQ(f.core.stats().refused_limit, 2u);
}

TEST(ServerCoreTest, LookupIntroducesBothSidesWithTheirOwnTokens) {
  ServerFixture f;
  f.core.OnConnected(kT0, 1, Addr("198.51.100.7:40000"));
  f.core.OnConnected(kT0, 2, Addr("203.0.113.9:5000"));
  f.core.OnMessage(kT0, 1, RegisterMsg("alice"));
  f.To(1);
  f.core.OnMessage(kT0, 2, LookupMsg(42, "alice"));
  auto to_sender = f.To(2);
  auto to_receiver = f.To(1);
  ASSERT_EQ(to_sender.size(), 1u);
  ASSERT_EQ(to_receiver.size(), 1u);
  const wire::Introduction& a = to_sender[0].introduction();
  const wire::Introduction& b = to_receiver[0].introduction();
  EXPECT_EQ(a.request(), 42u);
  EXPECT_EQ(a.peer(), "198.51.100.7:40000");
  EXPECT_EQ(b.peer(), "203.0.113.9:5000");
  EXPECT_EQ(a.introduction(), b.introduction());
  EXPECT_EQ(a.relay_port(), 7001u);
  EXPECT_EQ(a.token().size(), kTokenBytes);
  EXPECT_NE(a.token(), b.token());
  EXPECT_EQ(f.relay.live(), 1u);
}

TEST(ServerCoreTest, IntroductionsFollowARegisteredClientThatMoved) {
  ServerFixture f;
  f.core.OnConnected(kT0, 1, Addr("198.51.100.7:40000"));
  f.core.OnConnected(kT0, 2, Addr("203.0.113.9:5000"));
  f.core.OnMessage(kT0, 1, RegisterMsg("alice"));
  f.To(1);
  // alice's NAT rebound; the connection validated and followed it.
  f.core.OnPathChanged(kT0, 1, Addr("198.51.100.7:41234"));
  f.core.OnMessage(kT0, 2, LookupMsg(7, "alice"));
  auto to_sender = f.To(2);
  ASSERT_EQ(to_sender.size(), 1u);
  ASSERT_TRUE(to_sender[0].has_introduction());
  EXPECT_EQ(to_sender[0].introduction().peer(), "198.51.100.7:41234");
  EXPECT_THAT(f.core.TakeLog(), ::testing::Contains(::testing::HasSubstr(
                                    "alice moved from 198.51.100.7:40000 to 198.51.100.7:41234")));
  // Still one name under its registration prefix: closing frees it.
  f.core.OnClosed(kT0, 1);
  EXPECT_EQ(f.core.names(), 0u);
}

TEST(ServerCoreTest, RelaysPerRequesterAddressAreCapped) {
  ServerOptions o;
  o.max_relays_per_address = 2;
  o.lookup_burst = 100;
  ServerFixture f(o);
  f.core.OnConnected(kT0, 1, Addr("198.51.100.7:40000"));
  f.core.OnMessage(kT0, 1, RegisterMsg("alice"));
  f.To(1);
  // Three connections from one address each ask once: the third
  // introduction comes without a relay.
  for (uint64_t conn = 2; conn <= 4; ++conn) {
    f.core.OnConnected(kT0, conn, Addr(absl::StrCat("203.0.113.9:", 5000 + conn)));
    f.core.OnMessage(kT0, conn, LookupMsg(conn, "alice"));
    auto m = f.To(conn);
    ASSERT_EQ(m.size(), 1u);
    ASSERT_TRUE(m[0].has_introduction());
    EXPECT_EQ(m[0].introduction().token().empty(), conn == 4) << "connection " << conn;
  }
  EXPECT_EQ(f.relay.live(), 2u);
  // One closes: its relay ends (after the close grace) and the address may
  // have one again.
  f.core.OnClosed(kT0, 2);
  const absl::Time later = kT0 + kRelayCloseGrace + 2 * kSweepInterval;
  f.relay.OnTimeout(later);
  for (auto& e : f.relay.TakeEvents()) f.core.OnRelayEvent(later, e);
  EXPECT_EQ(f.relay.live(), 1u);
  f.core.OnConnected(later, 5, Addr("203.0.113.9:5005"));
  f.core.OnMessage(later, 5, LookupMsg(5, "alice"));
  auto m = f.To(5);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_FALSE(m[0].introduction().token().empty());
}

TEST(ServerCoreTest, IntroductionsToOneNameAreRateLimitedWhoeverAsks) {
  ServerOptions o;
  o.introduction_burst = 4;
  o.introductions_per_second = 0.5;
  ServerFixture f(o, RelayOptions{});
  f.core.OnConnected(kT0, 1, Addr("198.51.100.7:40000"));
  f.core.OnMessage(kT0, 1, RegisterMsg("alice"));
  f.To(1);
  // Six connections (each within its own lookup rate) ask at once: four
  // introductions reach alice, the others are refused as busy.
  int introduced = 0;
  for (uint64_t conn = 2; conn <= 7; ++conn) {
    f.core.OnConnected(kT0, conn, Addr(absl::StrCat("203.0.113.", conn, ":5000")));
    f.core.OnMessage(kT0, conn, LookupMsg(conn, "alice"));
    auto m = f.To(conn);
    ASSERT_EQ(m.size(), 1u);
    if (m[0].has_introduction()) {
      ++introduced;
    } else {
      ASSERT_TRUE(m[0].has_refused());
      EXPECT_EQ(m[0].refused().code(), wire::Refused::LIMIT);
      EXPECT_THAT(m[0].refused().reason(), HasSubstr("alice is busy"));
    }
  }
  EXPECT_EQ(introduced, 4);
  EXPECT_EQ(f.To(1).size(), 4u);  // alice holds no more than the burst
  // Two seconds later one more gets through.
  const absl::Time later = kT0 + absl::Seconds(2);
  f.core.OnMessage(later, 7, LookupMsg(8, "alice"));
  auto m = f.To(7);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_TRUE(m[0].has_introduction());
}

TEST(ServerCoreTest, UnknownNameIsNotRegistered) {
  ServerFixture f;
  f.core.OnConnected(kT0, 2, Addr("203.0.113.9:5000"));
  f.core.OnMessage(kT0, 2, LookupMsg(1, "nobody"));
  auto m = f.To(2);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].refused().code(), wire::Refused::NOT_REGISTERED);
  EXPECT_EQ(m[0].refused().request(), 1u);
  EXPECT_EQ(f.relay.live(), 0u);
}

TEST(ServerCoreTest, IntroductionsPerConnectionAreCappedAndFreedWithTheRelay) {
  ServerOptions o;
  o.max_introductions_per_connection = 2;
  ServerFixture f(o);
  f.core.OnConnected(kT0, 1, Addr("198.51.100.7:40000"));
  f.core.OnConnected(kT0, 2, Addr("203.0.113.9:5000"));
  f.core.OnMessage(kT0, 1, RegisterMsg("alice"));
  for (uint64_t r = 1; r <= 3; ++r) f.core.OnMessage(kT0, 2, LookupMsg(r, "alice"));
  auto m = f.To(2);
  ASSERT_EQ(m.size(), 3u);
  EXPECT_TRUE(m[0].has_introduction());
  EXPECT_TRUE(m[1].has_introduction());
  EXPECT_EQ(m[2].refused().code(), wire::Refused::LIMIT);
  EXPECT_EQ(f.relay.live(), 2u);
  // The sender reports the direct path for the first: its relay is freed,
  // and a new lookup fits again.
  wire::ClientMessage chosen;
  chosen.mutable_path_chosen()->set_introduction(m[0].introduction().introduction());
  chosen.mutable_path_chosen()->set_direct(true);
  f.core.OnMessage(kT0, 2, chosen.SerializeAsString());
  f.Pump();
  EXPECT_EQ(f.relay.live(), 1u);
  EXPECT_EQ(f.core.introductions(), 1u);
  f.core.OnMessage(kT0, 2, LookupMsg(4, "alice"));
  m = f.To(2);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_TRUE(m[0].has_introduction());
}

TEST(ServerCoreTest, LookupsAreRateLimitedPerConnection) {
  ServerOptions o;
  o.lookup_burst = 3;
  o.lookups_per_second = 2;
  ServerFixture f(o);
  f.core.OnConnected(kT0, 2, Addr("203.0.113.9:5000"));
  for (uint64_t r = 1; r <= 4; ++r) f.core.OnMessage(kT0, 2, LookupMsg(r, "nobody"));
  auto m = f.To(2);
  ASSERT_EQ(m.size(), 4u);
  EXPECT_EQ(m[2].refused().code(), wire::Refused::NOT_REGISTERED);
  EXPECT_EQ(m[3].refused().code(), wire::Refused::LIMIT);
  EXPECT_THAT(m[3].refused().reason(), HasSubstr("too many lookups"));
  // Half a second later, one more token.
  f.core.OnMessage(kT0 + absl::Milliseconds(500), 2, LookupMsg(5, "nobody"));
  f.core.OnMessage(kT0 + absl::Milliseconds(500), 2, LookupMsg(6, "nobody"));
  m = f.To(2);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].refused().code(), wire::Refused::NOT_REGISTERED);
  EXPECT_EQ(m[1].refused().code(), wire::Refused::LIMIT);
}

TEST(ServerCoreTest, OnlyTheRequesterMayReleaseItsRelay) {
  ServerFixture f;
  f.core.OnConnected(kT0, 1, Addr("198.51.100.7:40000"));
  f.core.OnConnected(kT0, 2, Addr("203.0.113.9:5000"));
  f.core.OnConnected(kT0, 3, Addr("192.0.2.1:1"));
  f.core.OnMessage(kT0, 1, RegisterMsg("alice"));
  f.core.OnMessage(kT0, 2, LookupMsg(1, "alice"));
  const uint64_t intro = f.To(2)[0].introduction().introduction();
  wire::ClientMessage chosen;
  chosen.mutable_path_chosen()->set_introduction(intro);
  chosen.mutable_path_chosen()->set_direct(true);
  f.core.OnMessage(kT0, 3, chosen.SerializeAsString());
  f.Pump();
  EXPECT_EQ(f.relay.live(), 1u);
}

TEST(ServerCoreTest, ClosingAConnectionEndsItsRelaysAndName) {
  ServerFixture f;
  f.core.OnConnected(kT0, 1, Addr("198.51.100.7:40000"));
  f.core.OnConnected(kT0, 2, Addr("203.0.113.9:5000"));
  f.core.OnMessage(kT0, 1, RegisterMsg("alice"));
  f.core.OnMessage(kT0, 2, LookupMsg(1, "alice"));
  EXPECT_EQ(f.relay.live(), 1u);
  f.core.OnClosed(kT0, 1);
  f.Pump();
  EXPECT_EQ(f.core.names(), 0u);
  // The relay forwards for a grace period (the side's last datagrams), then ends.
  EXPECT_EQ(f.relay.live(), 1u);
  absl::Time now = kT0;
  while (f.relay.live() > 0 && now < kT0 + kRelayCloseGrace + 2 * kSweepInterval) {
    now = f.relay.NextTimeout();
    f.relay.OnTimeout(now);
    f.Pump();
  }
  EXPECT_EQ(f.relay.live(), 0u);
  EXPECT_GE(now, kT0 + kRelayCloseGrace);
  EXPECT_EQ(f.core.introductions(), 0u);
}

TEST(ServerCoreTest, GarbageIsRefusedAndCounted) {
  ServerFixture f;
  f.core.OnConnected(kT0, 1, Addr("198.51.100.7:40000"));
  f.core.OnMessage(kT0, 1, std::string("\xff\xff\xff\xff", 4));
  auto m = f.To(1);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].refused().code(), wire::Refused::BAD_MESSAGE);
  EXPECT_EQ(f.core.stats().bad_messages, 1u);
  // A connection the core never saw connect gets nothing.
  f.core.OnMessage(kT0, 99, RegisterMsg("x"));
  EXPECT_TRUE(f.To(99).empty());
}

TEST(ServerCoreTest, RelayReadyGoesToBothSidesOnceBound) {
  ServerFixture f;
  const udp::SocketAddress rx = Addr("198.51.100.7:40000");
  const udp::SocketAddress tx = Addr("203.0.113.9:5000");
  f.core.OnConnected(kT0, 1, rx);
  f.core.OnConnected(kT0, 2, tx);
  f.core.OnMessage(kT0, 1, RegisterMsg("alice"));
  f.To(1);
  f.core.OnMessage(kT0, 2, LookupMsg(1, "alice"));
  const wire::Introduction a = f.To(2)[0].introduction();
  const wire::Introduction b = f.To(1)[0].introduction();
  // Symmetric NATs: the relay sees other ports than the server did.
  f.relay.OnDatagram(kT0, Addr("203.0.113.9:5999"),
                     std::string(1, static_cast<char>(proto::kPunchVersion)) + "bind" + a.token());
  f.relay.OnDatagram(kT0, Addr("198.51.100.7:40999"),
                     std::string(1, static_cast<char>(proto::kPunchVersion)) + "bind" + b.token());
  f.Pump();
  auto ra = f.To(2);
  auto rb = f.To(1);
  ASSERT_EQ(ra.size(), 1u);
  ASSERT_EQ(rb.size(), 1u);
  EXPECT_EQ(ra[0].relay_ready().introduction(), a.introduction());
  EXPECT_EQ(f.core.stats().relays_bound, 1u);
}

// ---- relay core ----

struct RelayFixture {
  explicit RelayFixture(RelayOptions o = {}) : relay(kT0, Seeded(o)) {
    alloc = *relay.Allocate(kT0);
  }
  static RelayOptions Seeded(RelayOptions o) {
    o.seed = 3;
    return o;
  }
  void BindBoth(absl::Time now) {
    relay.OnDatagram(now, a, Bind(alloc.token[0]));
    relay.OnDatagram(now, b, Bind(alloc.token[1]));
  }
  RelayCore relay;
  RelayCore::Allocation alloc;
  udp::SocketAddress a = Addr("198.51.100.7:40000");
  udp::SocketAddress b = Addr("203.0.113.9:5000");
};

TEST(RelayCoreTest, ForwardsVerbatimBetweenTheTwoBoundAddressesOnly) {
  RelayFixture f;
  f.BindBoth(kT0);
  auto events = f.relay.TakeEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, RelayCore::Event::Type::kBound);
  f.relay.OnDatagram(kT0, f.a, "hello b");
  f.relay.OnDatagram(kT0, f.b, "hello a");
  auto out = f.relay.TakeOutgoing();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].peer, f.b);
  EXPECT_EQ(out[0].bytes, "hello b");
  EXPECT_EQ(out[1].peer, f.a);
  EXPECT_EQ(f.relay.stats().forwarded, 2u);
}

TEST(RelayCoreTest, NeverAnswersUnboundSourcesOrBinds) {
  RelayFixture f;
  // Nothing is sent for binds, bad binds or strangers: not a reflector.
  f.relay.OnDatagram(kT0, Addr("192.0.2.66:1"), "spoofed victim traffic");
  f.relay.OnDatagram(kT0, Addr("192.0.2.66:1"), Bind(Token{}));
  f.relay.OnDatagram(kT0, f.a, Bind(f.alloc.token[0]));
  // Half bound: a's datagrams have nowhere to go.
  f.relay.OnDatagram(kT0, f.a, "early");
  EXPECT_TRUE(f.relay.TakeOutgoing().empty());
  EXPECT_EQ(f.relay.stats().unbound_dropped, 2u);
  EXPECT_EQ(f.relay.stats().bad_binds, 1u);
}

TEST(RelayCoreTest, OnlySideOneBoundDropsItsDatagrams) {
  RelayFixture f;
  f.relay.OnDatagram(kT0, f.b, Bind(f.alloc.token[1]));
  // Side 0 is unbound: b's datagrams have nowhere to go (and reading side
  // 0's address, which does not exist, must not happen).
  f.relay.OnDatagram(kT0, f.b, "early");
  EXPECT_TRUE(f.relay.TakeOutgoing().empty());
  EXPECT_EQ(f.relay.stats().unbound_dropped, 1u);
}

TEST(RelayCoreTest, ASideBindsOnlyFromItsControlConnectionsAddress) {
  RelayCore relay(kT0, RelayFixture::Seeded({}));
  const udp::SocketAddress a = Addr("198.51.100.7:40000");
  const udp::SocketAddress b = Addr("203.0.113.9:5000");
  RelayCore::Allocation alloc =
      *relay.Allocate(kT0, std::array<udp::SocketAddress, 2>{a, b});
  // The holder of b's token binds b with a victim's (spoofed) address: the
  // relay would send a's traffic there. Refused, counted.
  const udp::SocketAddress victim = Addr("192.0.2.66:53");
  relay.OnDatagram(kT0, victim, Bind(alloc.token[1]));
  EXPECT_EQ(relay.stats().bind_wrong_address, 1u);
  EXPECT_EQ(relay.stats().binds, 0u);
  // Another port of the same address binds (a symmetric NAT's new mapping).
  relay.OnDatagram(kT0, Addr("198.51.100.7:31938"), Bind(alloc.token[0]));
  relay.OnDatagram(kT0, Addr("203.0.113.9:7423"), Bind(alloc.token[1]));
  EXPECT_EQ(relay.stats().binds, 2u);
  relay.OnDatagram(kT0, Addr("198.51.100.7:31938"), "to b");
  auto out = relay.TakeOutgoing();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].peer, Addr("203.0.113.9:7423"));
}

TEST(RelayCoreTest, ABoundSideCannotBeStolenWithItsToken) {
  RelayFixture f;
  f.BindBoth(kT0);
  const udp::SocketAddress thief = Addr("192.0.2.66:1");
  f.relay.OnDatagram(kT0, thief, Bind(f.alloc.token[0]));
  EXPECT_EQ(f.relay.stats().bind_conflicts, 1u);
  f.relay.OnDatagram(kT0, thief, "let me in");
  f.relay.OnDatagram(kT0, f.b, "to a");
  auto out = f.relay.TakeOutgoing();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].peer, f.a);
}

TEST(RelayCoreTest, PunchesAreNeverForwarded) {
  RelayFixture f;
  f.BindBoth(kT0);
  f.relay.OnDatagram(kT0, f.a, std::string(1, static_cast<char>(proto::kPunchVersion)) + "punch");
  EXPECT_TRUE(f.relay.TakeOutgoing().empty());
}

TEST(RelayCoreTest, AnAddressIsBoundToOneAllocationAtATime) {
  RelayFixture f;
  f.BindBoth(kT0);
  absl::StatusOr<RelayCore::Allocation> second = f.relay.Allocate(kT0);
  ASSERT_TRUE(second.ok());
  f.relay.OnDatagram(kT0, f.a, Bind(second->token[0]));
  EXPECT_EQ(f.relay.stats().busy_address, 1u);
}

TEST(RelayCoreTest, AllocationsAreCapped) {
  RelayOptions o;
  o.max_relays = 2;
  RelayFixture f(o);
  EXPECT_TRUE(f.relay.Allocate(kT0).ok());
  absl::StatusOr<RelayCore::Allocation> third = f.relay.Allocate(kT0);
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(f.relay.stats().refused_full, 1u);
}

TEST(RelayCoreTest, ByteBudgetEndsTheAllocation) {
  RelayOptions o;
  o.byte_budget = 1000;
  RelayFixture f(o);
  f.BindBoth(kT0);
  f.relay.TakeEvents();
  const std::string chunk(400, 'x');
  f.relay.OnDatagram(kT0, f.a, chunk);
  f.relay.OnDatagram(kT0, f.a, chunk);
  f.relay.OnDatagram(kT0, f.a, chunk);  // would pass 1000
  EXPECT_EQ(f.relay.TakeOutgoing().size(), 2u);
  auto events = f.relay.TakeEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, RelayCore::Event::Type::kEnded);
  EXPECT_THAT(events[0].reason, HasSubstr("byte budget"));
  EXPECT_EQ(events[0].bytes, 800u);
  EXPECT_EQ(f.relay.live(), 0u);
  f.relay.OnDatagram(kT0, f.a, "after");
  EXPECT_TRUE(f.relay.TakeOutgoing().empty());
}

TEST(RelayCoreTest, RateLimitDropsTheExcessAndRefillsWithTime) {
  RelayOptions o;
  o.rate_bytes_per_second = 10'000;
  o.burst_bytes = 2'000;
  RelayFixture f(o);
  f.BindBoth(kT0);
  const std::string chunk(1000, 'x');
  for (int i = 0; i < 5; ++i) f.relay.OnDatagram(kT0, f.a, chunk);
  EXPECT_EQ(f.relay.TakeOutgoing().size(), 2u);
  EXPECT_EQ(f.relay.stats().rate_dropped, 3u);
  // 100 ms later: 1000 more bytes of allowance.
  f.relay.OnDatagram(kT0 + absl::Milliseconds(100), f.a, chunk);
  f.relay.OnDatagram(kT0 + absl::Milliseconds(100), f.a, chunk);
  EXPECT_EQ(f.relay.TakeOutgoing().size(), 1u);
}

TEST(RelayCoreTest, UnboundAndIdleAllocationsExpire) {
  RelayOptions o;
  o.bind_timeout = absl::Seconds(5);
  o.idle_timeout = absl::Seconds(10);
  RelayFixture f(o);
  absl::StatusOr<RelayCore::Allocation> unbound = f.relay.Allocate(kT0);
  ASSERT_TRUE(unbound.ok());
  f.BindBoth(kT0);
  f.relay.TakeEvents();
  absl::Time now = kT0;
  while (now < kT0 + absl::Seconds(6)) {
    now = f.relay.NextTimeout();
    f.relay.OnTimeout(now);
  }
  auto events = f.relay.TakeEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].id, unbound->id);
  EXPECT_THAT(events[0].reason, HasSubstr("not bound"));
  while (now < kT0 + absl::Seconds(11)) {
    now = f.relay.NextTimeout();
    f.relay.OnTimeout(now);
  }
  events = f.relay.TakeEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_THAT(events[0].reason, HasSubstr("idle"));
  EXPECT_EQ(f.relay.live(), 0u);
  EXPECT_EQ(f.relay.NextTimeout(), absl::InfiniteFuture());
}

// ---- client core ----

std::string Introduction(uint64_t id, uint64_t request, const std::string& peer, uint32_t port,
                         const std::string& token) {
  wire::ServerMessage m;
  wire::Introduction* in = m.mutable_introduction();
  in->set_introduction(id);
  in->set_request(request);
  in->set_peer(peer);
  in->set_relay_port(port);
  in->set_token(token);
  return m.SerializeAsString();
}

TEST(ClientCoreTest, IntroductionSchedulesBoundedPunchesAndBinds) {
  ClientOptions o;
  o.server = Addr("192.0.2.1:7000");
  o.punch_interval = absl::Milliseconds(100);
  o.punch_for = absl::Seconds(1);
  o.bind_interval = absl::Milliseconds(200);
  o.bind_for = absl::Seconds(2);
  ClientCore c(kT0, o);
  c.OnMessage(kT0, Introduction(5, 1, "198.51.100.7:40000", 7001, std::string(16, 'k')));
  auto events = c.TakeEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, ClientEvent::Type::kIntroduced);
  ASSERT_TRUE(events[0].relay.has_value());
  EXPECT_EQ(*events[0].relay, Addr("192.0.2.1:7001"));
  int opening = 0, punches = 0, binds = 0;
  absl::Time now = kT0;
  for (int turn = 0; turn < 1000 && c.NextTimeout() != absl::InfiniteFuture(); ++turn) {
    for (const Punch& p : c.TakePunches()) {
      if (p.peer == Addr("192.0.2.1:7001")) {
        EXPECT_EQ(p.payload, "bind" + std::string(16, 'k'));
        ++binds;
      } else {
        EXPECT_EQ(p.peer, Addr("198.51.100.7:40000"));
        // Low TTL first (they must not reach the peer's NAT), then full.
        if (now < kT0 + o.open_for) {
          EXPECT_EQ(p.ttl, kOpeningTtl);
          ++opening;
        } else {
          EXPECT_EQ(p.ttl, 0);
          ++punches;
        }
      }
    }
    now = c.NextTimeout();
    c.OnTimeout(now);
  }
  EXPECT_EQ(opening, 5);  // open_for / open_interval
  EXPECT_EQ(punches, 10);
  EXPECT_EQ(binds, 10);
  EXPECT_EQ(c.DirectAttemptStart(kT0), kT0 + o.open_for);
  EXPECT_EQ(c.punching(), 0u);
}

TEST(ClientCoreTest, RelayReadyStopsTheBinds) {
  ClientOptions o;
  o.server = Addr("192.0.2.1:7000");
  ClientCore c(kT0, o);
  c.OnMessage(kT0, Introduction(5, 1, "198.51.100.7:40000", 7001, std::string(16, 'k')));
  c.TakePunches();
  wire::ServerMessage ready;
  ready.mutable_relay_ready()->set_introduction(5);
  c.OnMessage(kT0, ready.SerializeAsString());
  c.OnTimeout(kT0 + absl::Seconds(1));
  for (const Punch& p : c.TakePunches()) EXPECT_EQ(p.payload, "punch");
}

TEST(ClientCoreTest, BadServerInputIsCountedNotActedOn) {
  ClientOptions o;
  o.server = Addr("192.0.2.1:7000");
  ClientCore c(kT0, o);
  c.OnMessage(kT0, "\xff\xff");
  c.OnMessage(kT0, Introduction(5, 1, "not an address", 7001, std::string(16, 'k')));
  c.OnMessage(kT0, Introduction(6, 1, "[2001:db8::1]:5", 7001, std::string(16, 'k')));  // family
  c.OnMessage(kT0, Introduction(0, 1, "198.51.100.7:1", 7001, std::string(16, 'k')));
  EXPECT_EQ(c.bad_messages(), 4u);
  EXPECT_TRUE(c.TakeEvents().empty());
  EXPECT_TRUE(c.TakePunches().empty());
  // A short token: introduced, but without a relay.
  c.OnMessage(kT0, Introduction(7, 1, "198.51.100.7:1", 7001, "short"));
  auto events = c.TakeEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_FALSE(events[0].relay.has_value());
  // A refusal's reason is escaped.
  wire::ServerMessage refused;
  refused.mutable_refused()->set_reason("no\x1b[2J");
  c.OnMessage(kT0, refused.SerializeAsString());
  events = c.TakeEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].reason, "no\\x1b[2J");
}

TEST(ClientCoreTest, IntroductionsPunchedAtOnceAreCapped) {
  ClientOptions o;
  o.server = Addr("192.0.2.1:7000");
  o.max_introductions = 3;
  ClientCore c(kT0, o);
  for (uint64_t id = 1; id <= 10; ++id) {
    c.OnMessage(kT0, Introduction(id, 0, absl::StrCat("198.51.100.7:", id), 0, ""));
  }
  EXPECT_EQ(c.punching(), 3u);
}

// ---- the endpoint and punch datagrams ----

TEST(PunchTest, EndpointCountsPunchesAndNeverAnswersThem) {
  reliable::EndpointOptions o;
  o.accept_incoming = true;
  o.seed = 1;
  reliable::Endpoint endpoint(kT0, o);
  const std::string punch = std::string(1, static_cast<char>(proto::kPunchVersion)) + "punch";
  endpoint.OnDatagram(kT0, Addr("198.51.100.7:1"), punch);
  endpoint.OnDatagram(kT0, Addr("198.51.100.7:1"), Bind(Token{}));
  EXPECT_EQ(endpoint.stats().punches, 2u);
  EXPECT_EQ(endpoint.stats().malformed, 0u);
  EXPECT_TRUE(endpoint.TakeOutgoing().empty());
  EXPECT_EQ(endpoint.connection_count(), 0u);
}

}  // namespace
}  // namespace udpmsg::rendezvous
