// Chat sessions across lost connections, in virtual time: ServerCore and
// ClientSessions on reliable::Endpoint nodes of the simulator, links losing
// 5% of their datagrams, 20 seeds each (UDPMSG_SIM_SEEDS for fewer). The
// members are driven as `udpmsg chat join` drives them (cli/chat_client.cc):
// a lost connection ends the session's connection and, when the policy says
// so, a new one starts after the backoff with the session's Join.
//
//   - the server is killed and comes back on its address: every member
//     reconnects and rejoins under its nick, and they talk again;
//   - a member's link blacks out longer than its own timeout but not the
//     server's: it reconnects with its resume token and takes its nick back
//     at once (the others see "reconnected", never a leave);
//   - a member's process is killed and restarted on the same host (no
//     token): the server probes the old connection and hands the nick over
//     within the probe timeout and a few round trips;
//   - a live member keeps its nick against a join from its own address, and
//     a dead member's nick cannot be taken from another address.
#include <algorithm>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "apps/chat/chat.pb.h"
#include "apps/chat/client_core.h"
#include "apps/chat/client_session.h"
#include "apps/chat/rules.h"
#include "apps/chat/sequencer.h"
#include "apps/chat/server_core.h"
#include "apps/chat/server_on_host.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "reliable/endpoint.h"
#include "tests/reliable/endpoint_node.h"
#include "tests/reliable/scenario.h"
#include "tests/sim/simulator.h"
#include "tests/sim/seeds.h"

namespace udpmsg::testing {
namespace {

using chat::ClientEvent;
using chat::DisplayLine;
using reliable::ConnectionId;
using reliable::DeliveryMode;
using reliable::Event;

// The client's timeouts (as `chat join --timeout 2s`); the server's are
// longer (10 s), so it still holds a member whose client gave up.
constexpr absl::Duration kClientTimeout = absl::Seconds(2);
constexpr absl::Duration kServerTimeout = absl::Seconds(10);
const udp::SocketAddress kServer = Addr("10.0.0.1:4000");


// A node that can be killed (it drops everything, sends nothing) and
// restarted with a fresh endpoint, as a process is.
class Machine final : public sim::Node {
 public:
  Machine(udp::SocketAddress address, reliable::EndpointOptions options)
      : address_(address), options_(options) {}

  void Start(absl::Time now, std::function<void(const Event&)> on_event) {
    node_ = std::make_unique<EndpointNode>(now, address_, options_);
    node_->set_on_event(std::move(on_event));
  }
  void Kill() { node_.reset(); }
  bool alive() const { return node_ != nullptr; }
  reliable::Endpoint& endpoint() { return node_->endpoint(); }
  const udp::SocketAddress& address() const { return address_; }

  void OnDatagram(absl::Time now, const udp::SocketAddress& from, const udp::SocketAddress& to,
                  absl::string_view bytes) override {
    if (node_) node_->OnDatagram(now, from, to, bytes);
  }
  void OnTimeout(absl::Time now) override {
    if (node_ && now >= node_->NextTimeout()) node_->OnTimeout(now);
  }
  absl::Time NextTimeout() const override {
    return node_ ? node_->NextTimeout() : absl::InfiniteFuture();
  }
  std::vector<sim::Datagram> TakeOutgoing() override {
    return node_ ? node_->TakeOutgoing() : std::vector<sim::Datagram>{};
  }

 private:
  udp::SocketAddress address_;
  reliable::EndpointOptions options_;
  std::unique_ptr<EndpointNode> node_;
};

// A `chat join` process: its machine, its session and what it saw.
struct Client {
  std::string nick;
  std::unique_ptr<Machine> machine;
  std::unique_ptr<chat::ClientSession> session;
  ConnectionId id = 0;
  bool joined = false;
  int welcomes = 0;
  absl::Time welcomed_at = absl::InfinitePast();
  bool over = false;          // the session ended for good
  std::string over_why;       // its last error or close reason
  std::vector<DisplayLine> lines;
  std::vector<std::string> errors;  // non-fatal errors
  int server_timeouts = 0;    // closes by the server with its timeout's code
};

class SessionSim {
 public:
  explicit SessionSim(uint64_t seed) : seed_(seed), sim_(seed, kStart) {
    reliable::EndpointOptions so = ServerOptions(seed);
    so.connection.max_message_bytes = chat::kMaxMessageBytes;
    so.connection.idle_timeout = kServerTimeout;
    so.connection.peer_timeout = kServerTimeout;
    so.connection.handshake_timeout = kServerTimeout;
    server_ = std::make_unique<Machine>(kServer, so);
    EXPECT_TRUE(sim_.AddNode(kServer, server_.get()).ok());
    StartServer();
  }

  sim::Simulator& sim() { return sim_; }
  chat::ServerCore& core() { return *core_; }
  std::vector<std::string>& server_logs() { return logs_; }
  uint64_t seed() const { return seed_; }

  void StartServer() {
    chat::ServerOptions options;
    options.join_timeout = kServerTimeout;
    uint64_t counter = seed_ << 16;
    options.random_token = [counter]() mutable {
      ++counter;
      std::string t(chat::kResumeTokenBytes, '\0');
      for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<char>(counter >> (8 * (i % 8)));
      return t;
    };
    absl::StatusOr<std::unique_ptr<chat::ServerCore>> core =
        chat::ServerCore::Create(options, std::make_unique<chat::LocalSequencer>());
    ASSERT_TRUE(core.ok()) << core.status();
    core_ = *std::move(core);
    server_->Start(sim_.now(), [this](const Event& e) { OnServerEvent(e); });
    sim_.PollAll();
  }
  void KillServer() {
    server_->Kill();
    core_.reset();
  }

  // A new `chat join` process on `address` (a new machine), which gives up
  // on a silent path after `timeout`.
  Client& AddClient(const std::string& nick, const std::string& address,
                    absl::Duration timeout = kClientTimeout) {
    auto c = std::make_unique<Client>();
    c->nick = nick;
    reliable::EndpointOptions o = ClientOptions(seed_ * 100 + clients_.size());
    o.connection.max_message_bytes = chat::kMaxMessageBytes;
    o.connection.idle_timeout = timeout;
    o.connection.peer_timeout = timeout;
    o.connection.handshake_timeout = timeout;
    o.connection.keepalive = kClientTimeout / 4;
    c->machine = std::make_unique<Machine>(Addr(address), o);
    chat::SessionOptions so;
    so.seed = seed_ * 1000 + clients_.size();
    c->session = std::make_unique<chat::ClientSession>(nick, so);
    EXPECT_TRUE(sim_.AddNode(c->machine->address(), c->machine.get()).ok());
    const impairment::ImpairmentConfig link = Lossy(0.05);
    EXPECT_TRUE(sim_.SetLink(c->machine->address(), kServer, link).ok());
    EXPECT_TRUE(sim_.SetLink(kServer, c->machine->address(), link).ok());
    Client* raw = c.get();
    c->machine->Start(sim_.now(), [this, raw](const Event& e) { OnClientEvent(*raw, e); });
    clients_.push_back(std::move(c));
    Connect(*raw);
    return *raw;
  }

  // Kills a client's process (no Leave, no close).
  void KillClient(Client& c) {
    c.machine->Kill();
    c.over = true;
    c.over_why = "killed";
  }

  // Blacks out both directions of `c`'s link during [from, from + length).
  void Blackout(Client& c, absl::Time from, absl::Duration length) {
    impairment::ImpairmentConfig link = Lossy(0.05);
    link.blackouts.push_back({from - sim_.start(), from - sim_.start() + length});
    ASSERT_TRUE(sim_.SetLink(c.machine->address(), kServer, link).ok());
    ASSERT_TRUE(sim_.SetLink(kServer, c.machine->address(), link).ok());
  }

  void Say(Client& c, const std::string& text) {
    chat::UserInput in = chat::ParseInput(text);
    ASSERT_EQ(in.type, chat::UserInput::Type::kSend);
    ASSERT_TRUE(c.joined) << c.nick << " says while disconnected";
    absl::StatusOr<uint64_t> seq = c.machine->endpoint().Send(
        sim_.now(), c.id, chat::kChannel, DeliveryMode::kReliableOrdered, in.message);
    ASSERT_TRUE(seq.ok()) << seq.status();
    c.session->OnSent(*seq, text);
  }

  bool RunUntil(const std::function<bool()>& done, absl::Duration limit) {
    return sim_.RunUntil(done, sim_.now() + limit);
  }

  static bool Saw(const Client& c, DisplayLine::Kind kind, const std::string& from,
                  const std::string& text) {
    return std::any_of(c.lines.begin(), c.lines.end(), [&](const DisplayLine& l) {
      return l.kind == kind && l.from == from && l.text == text;
    });
  }

  std::string Describe(const Client& c) const {
    std::vector<std::string> lines;
    for (const DisplayLine& l : c.lines) lines.push_back(absl::StrCat(l.from, ":", l.text));
    return absl::StrCat("seed=", seed_, " ", c.nick, " joined=", c.joined, " welcomes=",
                        c.welcomes, " over=", c.over, " (", c.over_why, ") lines [",
                        absl::StrJoin(lines, " | "), "] errors [", absl::StrJoin(c.errors, " | "),
                        "] server log [", absl::StrJoin(logs_, " | "), "]");
  }

 private:
  void Connect(Client& c) {
    if (!c.machine->alive()) return;
    absl::StatusOr<ConnectionId> id = c.machine->endpoint().Connect(sim_.now(), kServer);
    ASSERT_TRUE(id.ok()) << id.status();
    c.id = *id;
    sim_.PollAll();
  }

  void Ended(Client& c, chat::EndCause cause, const std::string& why) {
    c.id = 0;
    c.joined = false;
    chat::ClientSession::Ended end = c.session->OnEnded(sim_.now(), cause);
    c.over_why = why;
    if (!end.reconnect) {
      c.over = true;
      return;
    }
    Client* raw = &c;
    sim_.At(sim_.now() + end.delay, [this, raw] { Connect(*raw); });
  }

  void OnClientEvent(Client& c, const Event& e) {
    if (e.connection != c.id || c.id == 0) return;
    switch (e.type) {
      case Event::Type::kConnected:
        (void)c.machine->endpoint().Send(sim_.now(), c.id, chat::kChannel,
                                         DeliveryMode::kReliableOrdered, c.session->JoinMessage());
        break;
      case Event::Type::kMessage: {
        absl::StatusOr<std::optional<ClientEvent>> ce =
            c.session->OnServerMessage(sim_.now(), e.message);
        if (!ce.ok()) {  // fatal: the session is over
          (void)c.machine->endpoint().Close(sim_.now(), c.id, "gave up", false);
          c.id = 0;
          c.joined = false;
          c.over = true;
          c.over_why = std::string(ce.status().message());
          break;
        }
        if (!ce->has_value()) break;
        const ClientEvent& ev = **ce;
        if (ev.type == ClientEvent::Type::kWelcome) {
          c.joined = true;
          ++c.welcomes;
          c.welcomed_at = sim_.now();
        }
        if (ev.type == ClientEvent::Type::kLine) c.lines.push_back(ev.line);
        if (ev.type == ClientEvent::Type::kError) c.errors.push_back(ev.text);
        break;
      }
      case Event::Type::kAcked:
        if (e.channel == chat::kChannel) c.session->OnAcked(e.sequence);
        break;
      case Event::Type::kPathChanged:
        break;
      case Event::Type::kClosed: {
        const bool timed_out = IsTimeout(e.close_reason);
        if (e.by_peer && timed_out) ++c.server_timeouts;
        Ended(c,
              c.joined ? chat::ClassifyClose(e.by_peer, timed_out, e.reason)
                       : chat::EndCause::kAttemptFailed,
              e.reason);
        break;
      }
    }
  }

  void OnServerEvent(const Event& e) {
    const absl::Time now = sim_.now();
    switch (e.type) {
      case Event::Type::kConnected:
        core_->OnConnected(now, e.connection, e.peer.ToString());
        break;
      case Event::Type::kMessage:
        if (e.channel == chat::kChannel) core_->OnMessage(now, e.connection, e.message);
        break;
      case Event::Type::kClosed:
        core_->OnClosed(now, e.connection, chat::CloseCauseFor(e.close_reason, e.by_peer),
                        e.reason);
        break;
      case Event::Type::kAcked:
        if (e.channel == chat::kChannel) core_->OnAcked(now, e.connection, e.bytes);
        break;
      case Event::Type::kPathChanged:
        break;
    }
    Execute();
  }

  void Execute() {
    const absl::Time now = sim_.now();
    for (;;) {
      std::vector<chat::ServerAction> actions = core_->TakeActions();
      if (actions.empty()) break;
      for (chat::ServerAction& a : actions) {
        if (a.type == chat::ServerAction::Type::kSend) {
          chat::ServerMessage m;
          if (m.ParseFromString(a.bytes) && m.has_probe()) ++probes_sent_;
          (void)server_->endpoint().Send(now, a.peer, chat::kChannel,
                                         DeliveryMode::kReliableOrdered, a.bytes);
        } else if (a.type == chat::ServerAction::Type::kClose) {
          (void)server_->endpoint().Close(now, a.peer, a.reason, a.flush);
        } else {
          logs_.push_back(a.text);
        }
      }
    }
    // The core's timers (pending joins, probes), as the CLI's loop ticks.
    const absl::Time next = core_->NextDeadline();
    if (next != absl::InfiniteFuture() && next > now && next != scheduled_) {
      scheduled_ = next;
      chat::ServerCore* core = core_.get();
      sim_.At(next, [this, core] {
        if (core_.get() != core) return;  // a killed server's
        core_->OnTick(sim_.now());
        Execute();
      });
    }
  }

 public:
  uint64_t probes_sent_ = 0;

 private:
  const uint64_t seed_;
  sim::Simulator sim_;
  std::unique_ptr<Machine> server_;
  std::unique_ptr<chat::ServerCore> core_;
  std::vector<std::unique_ptr<Client>> clients_;
  std::vector<std::string> logs_;
  absl::Time scheduled_ = absl::InfinitePast();
};

bool AllJoined(const std::vector<Client*>& clients) {
  return std::all_of(clients.begin(), clients.end(), [](const Client* c) { return c->joined; });
}

class SessionSimTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(SessionSimTest, MembersReconnectToARestartedServerAndRejoinUnderTheirNicks) {
  SessionSim s(GetParam());
  SCOPED_TRACE(absl::StrCat("seed=", s.seed()));
  std::vector<Client*> clients = {&s.AddClient("alice", "10.0.1.1:5000"),
                                  &s.AddClient("bob", "10.0.1.2:5000"),
                                  &s.AddClient("carol", "10.0.1.3:5000")};
  ASSERT_TRUE(s.RunUntil([&] { return AllJoined(clients); }, absl::Seconds(10)))
      << "seed=" << s.seed() << " " << s.Describe(*clients[0]);
  s.KillServer();
  const absl::Time killed = s.sim().now();
  // Everyone notices within its timeout and starts backing off.
  ASSERT_TRUE(s.RunUntil(
      [&] {
        return std::none_of(clients.begin(), clients.end(), [](Client* c) { return c->joined; });
      },
      kClientTimeout + absl::Seconds(2)))
      << "seed=" << s.seed();
  s.sim().RunFor(absl::Seconds(5));  // a few failed attempts
  for (Client* c : clients) ASSERT_FALSE(c->over) << s.Describe(*c);
  s.StartServer();
  const absl::Time restarted = s.sim().now();
  // Back within the backoff then in force (at most 4 s by now) plus an
  // attempt's handshake.
  ASSERT_TRUE(s.RunUntil([&] { return AllJoined(clients); }, absl::Seconds(10)))
      << s.Describe(*clients[0]) << "\n" << s.Describe(*clients[1]) << "\n"
      << s.Describe(*clients[2]);
  EXPECT_LT(s.sim().now() - restarted, absl::Seconds(8)) << "seed=" << s.seed();
  std::printf("seed %llu: all three back %s after the restart (killed %s before it)\n",
              static_cast<unsigned long long>(s.seed()),
              absl::FormatDuration(s.sim().now() - restarted).c_str(),
              absl::FormatDuration(restarted - killed).c_str());
  EXPECT_GT(restarted, killed);
  EXPECT_THAT(s.core().Members(),
              ::testing::UnorderedElementsAre("alice", "bob", "carol"));
  for (Client* c : clients) {
    EXPECT_EQ(c->welcomes, 2) << s.Describe(*c);
    EXPECT_EQ(c->session->nick(), c->nick);
  }
  for (Client* c : clients) s.Say(*c, absl::StrCat(c->nick, " is back"));
  ASSERT_TRUE(s.RunUntil(
      [&] {
        for (Client* reader : clients) {
          for (Client* writer : clients) {
            if (!SessionSim::Saw(*reader, DisplayLine::Kind::kSay, writer->nick,
                                 absl::StrCat(writer->nick, " is back"))) {
              return false;
            }
          }
        }
        return true;
      },
      absl::Seconds(20)))
      << s.Describe(*clients[0]);
  for (Client* c : clients) EXPECT_THAT(c->errors, ::testing::IsEmpty()) << s.Describe(*c);
}

TEST_P(SessionSimTest, AReconnectWithTheResumeTokenTakesTheNickBackAtOnce) {
  SessionSim s(GetParam());
  SCOPED_TRACE(absl::StrCat("seed=", s.seed()));
  Client& alice = s.AddClient("alice", "10.0.1.1:5000");
  Client& bob = s.AddClient("bob", "10.0.1.2:5000");
  ASSERT_TRUE(s.RunUntil([&] { return alice.joined && bob.joined; }, absl::Seconds(10)));
  ASSERT_TRUE(alice.session->has_resume_token());
  // Alice's link goes dark for 3 s: her client gives up after 2 s, the
  // server (10 s) still holds her.
  s.Blackout(alice, s.sim().now() + absl::Milliseconds(1), absl::Seconds(3));
  ASSERT_TRUE(s.RunUntil([&] { return !alice.joined; }, absl::Seconds(4)));
  ASSERT_EQ(s.core().room().member_count(), 2u);
  ASSERT_TRUE(s.RunUntil([&] { return alice.welcomes == 2; }, absl::Seconds(15)))
      << s.Describe(alice);
  EXPECT_EQ(s.core().room().member_count(), 2u);
  ASSERT_TRUE(s.RunUntil(
      [&] { return SessionSim::Saw(bob, DisplayLine::Kind::kSystem, "", "alice reconnected"); },
      absl::Seconds(5)))
      << s.Describe(bob);
  for (const DisplayLine& l : bob.lines) {
    EXPECT_NE(l.kind, DisplayLine::Kind::kLeave) << s.Describe(bob);
  }
  s.Say(alice, "made it");
  ASSERT_TRUE(s.RunUntil(
      [&] { return SessionSim::Saw(bob, DisplayLine::Kind::kSay, "alice", "made it"); },
      absl::Seconds(10)))
      << s.Describe(bob);
  EXPECT_THAT(s.server_logs(), ::testing::Contains(::testing::HasSubstr(
                                   "alice reconnected from 10.0.1.1:5000 (replacing")));
  EXPECT_EQ(s.probes_sent_, 0u) << "a token needs no probe";
}

TEST_P(SessionSimTest, AClientThatOutwaitsTheServersTimeoutRejoinsWhenTheServerAnswersWithIt) {
  SessionSim s(GetParam());
  SCOPED_TRACE(absl::StrCat("seed=", s.seed()));
  // Alice's client waits 20 s on a silent path, the server 10 s.
  Client& alice = s.AddClient("alice", "10.0.1.1:5000", absl::Seconds(20));
  Client& bob = s.AddClient("bob", "10.0.1.2:5000");
  ASSERT_TRUE(s.RunUntil([&] { return alice.joined && bob.joined; }, absl::Seconds(10)));
  // 12 s of dark: the server drops alice at 10 s; her client still waits,
  // and its first packet after the outage (a 0.5 s keepalive ping) meets
  // the server's draining connection, which answers with its idle timeout
  // (the drain lasts the server's keepalive, 5 s by default, and more).
  s.Blackout(alice, s.sim().now() + absl::Milliseconds(1), kServerTimeout + absl::Seconds(2));
  ASSERT_TRUE(s.RunUntil([&] { return alice.server_timeouts > 0; }, absl::Seconds(20)))
      << s.Describe(alice);
  // That is a lost path, not a refusal: she rejoins under her nick (as a
  // new member: the server's own timeout removed her, token and all).
  ASSERT_TRUE(s.RunUntil([&] { return alice.welcomes == 2; }, absl::Seconds(15)))
      << s.Describe(alice);
  EXPECT_FALSE(alice.over) << s.Describe(alice);
  s.Say(alice, "back");
  ASSERT_TRUE(s.RunUntil(
      [&] { return SessionSim::Saw(bob, DisplayLine::Kind::kSay, "alice", "back"); },
      absl::Seconds(10)))
      << s.Describe(bob);
  // Lines arrive in order: before her line, bob saw her leave and join.
  EXPECT_TRUE(SessionSim::Saw(bob, DisplayLine::Kind::kLeave, "alice", "timed out"))
      << s.Describe(bob);
  EXPECT_TRUE(SessionSim::Saw(bob, DisplayLine::Kind::kJoin, "alice", ""))
      << s.Describe(bob);
}

TEST_P(SessionSimTest, AKilledMembersNickIsTakenOverFromItsHostWithinTheProbe) {
  SessionSim s(GetParam());
  SCOPED_TRACE(absl::StrCat("seed=", s.seed()));
  Client& alice = s.AddClient("alice", "10.0.1.1:5000");
  Client& bob = s.AddClient("bob", "10.0.1.2:5000");
  ASSERT_TRUE(s.RunUntil([&] { return alice.joined && bob.joined; }, absl::Seconds(10)));
  s.KillClient(alice);
  s.sim().RunFor(absl::Milliseconds(100));
  const absl::Time restarted = s.sim().now();
  Client& again = s.AddClient("alice", "10.0.1.1:5001");  // same host, new port, no token
  ASSERT_TRUE(s.RunUntil([&] { return again.joined || again.over; }, absl::Seconds(5)))
      << s.Describe(again);
  ASSERT_TRUE(again.joined) << s.Describe(again);
  // The probe's two seconds plus a few round trips on a lossy link, far
  // below the server's 10 s timeout.
  EXPECT_LT(again.welcomed_at - restarted, absl::Seconds(3)) << "seed=" << s.seed();
  EXPECT_GE(again.welcomed_at - restarted, absl::Seconds(2)) << "seed=" << s.seed();
  std::printf("seed %llu: the restarted member had its nick back after %s\n",
              static_cast<unsigned long long>(s.seed()),
              absl::FormatDuration(again.welcomed_at - restarted).c_str());
  EXPECT_GE(s.probes_sent_, 1u);
  ASSERT_TRUE(s.RunUntil(
      [&] { return SessionSim::Saw(bob, DisplayLine::Kind::kSystem, "", "alice reconnected"); },
      absl::Seconds(5)))
      << s.Describe(bob);
  EXPECT_EQ(s.core().room().member_count(), 2u);
}

TEST_P(SessionSimTest, ALiveMemberKeepsItsNickAndAnotherAddressCannotTakeADeadOnes) {
  SessionSim s(GetParam());
  SCOPED_TRACE(absl::StrCat("seed=", s.seed()));
  Client& alice = s.AddClient("alice", "10.0.1.1:5000");
  Client& bob = s.AddClient("bob", "10.0.1.2:5000");
  ASSERT_TRUE(s.RunUntil([&] { return alice.joined && bob.joined; }, absl::Seconds(10)));
  // Same host as bob, bob alive: refused after the probe.
  Client& twin = s.AddClient("bob", "10.0.1.2:5001");
  ASSERT_TRUE(s.RunUntil([&] { return twin.over; }, absl::Seconds(5))) << s.Describe(twin);
  EXPECT_FALSE(twin.joined);
  EXPECT_EQ(twin.over_why, "nick \"bob\" is taken") << s.Describe(twin);
  EXPECT_TRUE(bob.joined) << s.Describe(bob);
  EXPECT_EQ(bob.welcomes, 1);
  EXPECT_EQ(s.probes_sent_, 1u);
  // Alice dies; another host asks for her nick: refused at once, no probe.
  s.KillClient(alice);
  Client& thief = s.AddClient("alice", "10.0.2.9:5000");
  ASSERT_TRUE(s.RunUntil([&] { return thief.over; }, absl::Seconds(5))) << s.Describe(thief);
  EXPECT_FALSE(thief.joined);
  EXPECT_EQ(thief.over_why, "nick \"alice\" is taken") << s.Describe(thief);
  EXPECT_EQ(s.probes_sent_, 1u);
  s.Say(bob, "still me");
  ASSERT_TRUE(s.RunUntil(
      [&] { return SessionSim::Saw(bob, DisplayLine::Kind::kSay, "bob", "still me"); },
      absl::Seconds(10)));
  for (const DisplayLine& l : bob.lines) {
    EXPECT_NE(l.text, "bob reconnected") << s.Describe(bob);
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, SessionSimTest, ::testing::Range<uint64_t>(1, 1 + sim::SeedCount(20)));

}  // namespace
}  // namespace udpmsg::testing
