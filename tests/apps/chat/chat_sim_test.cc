// The whole chat in virtual time: one ServerCore and 50 ClientCores, each on
// a reliable::Endpoint node of the simulator, every link losing 20% of its
// datagrams, reordering and duplicating others. Members connect at seeded
// times, join, say and act several lines each at seeded times, some send
// private lines, some rename, some leave. Over 200 seeds (UDPMSG_SIM_SEEDS
// for fewer) every member must see one total order (line numbers strictly
// increasing, the same line under the same number everywhere), every line
// meant for it exactly once, and a roster (Welcome, then joins, leaves and
// renames) that ends equal to the server's.
//
// The same scenario runs with the server split in 3 shards (ShardedChatSim):
// three ServerCores on three endpoints over one LocalRoom, the members
// spread over them; the room's wake-ups are simulator events. Every member,
// on whichever shard, must see the same one order.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "apps/chat/chat.pb.h"
#include "apps/chat/client_core.h"
#include "apps/chat/local_room.h"
#include "apps/chat/rules.h"
#include "apps/chat/sequencer.h"
#include "apps/chat/server_core.h"
#include "apps/chat/server_on_host.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "reliable/deterministic_rng.h"
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

constexpr int kMembers = 50;
constexpr int kSaysEach = 3;  // plus one /me each
constexpr absl::Duration kLimit = absl::Minutes(10);

// One line as the server numbered it.
struct ServerLine {
  chat::Line::Kind kind;
  std::string from;
  std::string to;
  std::string text;
  std::vector<ConnectionId> recipients;
};

struct Member {
  int index = 0;
  std::string nick;
  std::unique_ptr<EndpointNode> node;
  std::unique_ptr<chat::ClientCore> core;
  ConnectionId id = 0;         // the member's connection id
  ConnectionId server_id = 0;  // the server's id for the same connection
  bool welcomed = false;
  bool leaves = false;    // sends Leave after its lines
  bool renames = false;   // renames after its lines
  int pending_sends = 0;  // scheduled, not yet sent
  bool closed = false;
  std::vector<std::string> welcome_members;
  std::vector<DisplayLine> lines;
  std::vector<std::string> errors;  // non-fatal errors and failures
};

// Member `m` sends `bytes` to the server on the chat channel; a refused
// send is recorded as one of its errors.
void MemberSends(absl::Time now, Member& m, const std::string& bytes) {
  absl::StatusOr<uint64_t> seq =
      m.node->endpoint().Send(now, m.id, chat::kChannel, DeliveryMode::kReliableOrdered, bytes);
  if (!seq.ok()) m.errors.push_back(absl::StrCat("send: ", seq.status().message()));
}

// What the server's message `e` means to member `m`'s client core, if
// anything; a message the core rejects is recorded as one of its errors.
std::optional<ClientEvent> MemberReceives(Member& m, const Event& e) {
  absl::StatusOr<std::optional<ClientEvent>> ce = m.core->OnServerMessage(e.message);
  if (!ce.ok()) {
    m.errors.push_back(std::string(ce.status().message()));
    return std::nullopt;
  }
  return *std::move(ce);
}

// Feeds the server endpoint's event `e` to the chat core as `udpmsg chat
// serve` does (ServerOnHost), noting each member's server-side connection id.
void ServerSees(chat::ServerCore& core, std::vector<std::unique_ptr<Member>>& members,
                absl::Time now, const Event& e) {
  switch (e.type) {
    case Event::Type::kConnected:
      for (auto& m : members) {
        if (m->node->address() == e.peer) m->server_id = e.connection;
      }
      core.OnConnected(now, e.connection, e.peer.ToString());
      break;
    case Event::Type::kMessage:
      if (e.channel == chat::kChannel) core.OnMessage(now, e.connection, e.message);
      break;
    case Event::Type::kClosed:
      core.OnClosed(now, e.connection, chat::CloseCauseFor(e.close_reason, e.by_peer), e.reason);
      break;
    case Event::Type::kAcked:
      if (e.channel == chat::kChannel) core.OnAcked(now, e.connection, e.bytes);
      break;
    case Event::Type::kPathChanged:
      break;
  }
}

class ChatSim {
 public:
  // `shards` ServerCores over one room (1: a core with its own room, as
  // `chat serve --threads 1` runs it).
  explicit ChatSim(uint64_t seed, int shards = 1) : seed_(seed), sim_(seed, kStart), rng_(seed, 7) {
    chat::ServerOptions options;
    options.join_timeout = absl::Seconds(30);
    options.max_members = kMembers;
    chat::RoomLimits limits;
    limits.max_members = options.max_members;
    limits.max_members_per_address = options.max_members_per_address;
    auto room = std::make_shared<chat::LocalRoom>(limits, std::make_unique<chat::LocalSequencer>());
    for (int k = 0; k < shards; ++k) {
      servers_.push_back(std::make_unique<EndpointNode>(
          kStart, Addr(absl::StrCat("10.0.0.", 1 + k, ":4000")), ServerEndpointOptions(seed * 16 + k)));
      EndpointNode& server = *servers_.back();
      absl::StatusOr<std::unique_ptr<chat::ServerCore>> core;
      if (shards == 1) {
        core = chat::ServerCore::Create(options, std::make_unique<chat::LocalSequencer>());
      } else {
        // The room wakes a shard with a simulator event, as a thread's
        // Host::Wake makes its Poll return.
        const int shard = room->AddShard([this, k] {
          sim_.At(sim_.now(), [this, k] {
            cores_[k]->OnRoom(sim_.now());
            Execute(k);
          });
        });
        core = chat::ServerCore::Create(options, room, shard);
      }
      EXPECT_TRUE(core.ok()) << core.status();
      cores_.push_back(*std::move(core));
      EXPECT_TRUE(sim_.AddNode(server.address(), &server).ok());
      server.set_on_event([this, k](const Event& e) { OnServerEvent(k, e); });
    }
    core_ = cores_[0].get();
    const impairment::ImpairmentConfig link = Lossy(0.20, 0.10, 0.05);
    for (int i = 0; i < kMembers; ++i) {
      auto m = std::make_unique<Member>();
      m->index = i;
      m->nick = absl::StrCat("m", i);
      m->leaves = i % 5 == 4;
      m->renames = i % 10 == 3;
      m->core = std::make_unique<chat::ClientCore>(m->nick);
      reliable::EndpointOptions o = ClientOptions(seed * 100 + i);
      o.connection.max_message_bytes = chat::kMaxMessageBytes;
      m->node = std::make_unique<EndpointNode>(
          kStart, Addr(absl::StrCat("10.0.", 1 + i / 200, ".", 1 + i % 200, ":5000")), o);
      Member* raw = m.get();
      m->node->set_on_event([this, raw](const Event& e) { OnMemberEvent(*raw, e); });
      EXPECT_TRUE(sim_.AddNode(m->node->address(), m->node.get()).ok());
      EndpointNode& server = ServerOf(*m);
      EXPECT_TRUE(sim_.SetLink(m->node->address(), server.address(), link).ok());
      EXPECT_TRUE(sim_.SetLink(server.address(), m->node->address(), link).ok());
      members_.push_back(std::move(m));
    }
  }

  // Member `m`'s shard: members are dealt out in turn.
  EndpointNode& ServerOf(const Member& m) { return *servers_[m.index % servers_.size()]; }

  static reliable::EndpointOptions ServerEndpointOptions(uint64_t seed) {
    reliable::EndpointOptions o = ServerOptions(seed);
    o.connection.max_message_bytes = chat::kMaxMessageBytes;
    return o;
  }

  // Runs the scenario; false (with the reason in `why`) if it did not end.
  bool Run(std::string* why) {
    for (auto& m : members_) {
      Member* raw = m.get();
      const absl::Time at = kStart + absl::Milliseconds(rng_.Uniform(2000));
      sim_.At(at, [this, raw] {
        absl::StatusOr<ConnectionId> id =
            raw->node->endpoint().Connect(sim_.now(), ServerOf(*raw).address());
        ASSERT_TRUE(id.ok()) << id.status();
        raw->id = *id;
      });
    }
    const bool done = sim_.RunUntil([this] { return Done(); }, kStart + kLimit);
    if (!done) {
      size_t welcomed = 0, busy = 0, closed = 0;
      std::string failures;
      for (auto& m : members_) {
        welcomed += m->welcomed;
        busy += m->pending_sends > 0;
        closed += m->closed;
        if (!m->errors.empty()) absl::StrAppend(&failures, " ", m->nick, ": ", m->errors.back());
      }
      *why = absl::StrCat("not done after ", absl::FormatDuration(sim_.now() - kStart),
                          ": welcomed ", welcomed, ", sending ", busy, ", closed ", closed,
                          ", server members ", core_->room().member_count(), ", lines delivered ",
                          said_lines_, " of ", expected_said_, ", sim ", sim_.status().ToString(), ";", failures);
    }
    return done;
  }

  void Check() {
    // The server's own order: every number once, increasing.
    uint64_t previous = 0;
    for (const auto& [seq, line] : lines_) {
      ASSERT_GT(seq, previous);
      previous = seq;
    }
    ASSERT_EQ(said_lines_, expected_said_);
    // Every line a member sent was numbered exactly once.
    std::map<std::string, int> said;
    for (const auto& [seq, line] : lines_) {
      if (line.kind == chat::Line::SAY || line.kind == chat::Line::ME ||
          line.kind == chat::Line::PRIVATE) {
        ++said[line.text];
      }
    }
    for (const auto& m : members_) {
      for (int k = 0; k <= kSaysEach; ++k) EXPECT_EQ(said[LineText(*m, k)], 1) << m->nick;
    }

    std::vector<std::string> server_roster = core_->room().Members();
    for (const auto& m : members_) {
      SCOPED_TRACE(m->nick);
      EXPECT_TRUE(m->welcomed);
      EXPECT_THAT(m->errors, ::testing::IsEmpty());
      // One total order: strictly increasing numbers, each the server's line.
      std::vector<uint64_t> got;
      for (const DisplayLine& l : m->lines) {
        if (!got.empty()) {
          ASSERT_GT(l.seq, got.back()) << "order broken or duplicate";
        }
        got.push_back(l.seq);
        auto it = lines_.find(l.seq);
        ASSERT_NE(it, lines_.end()) << "line " << l.seq << " the server never sent";
        ASSERT_EQ(l.text, it->second.text) << "line " << l.seq;
        ASSERT_EQ(l.from, it->second.from) << "line " << l.seq;
      }
      // Exactly the lines the server sent this member: all of them for those
      // who stayed, a prefix for those who left.
      std::vector<uint64_t> sent = sent_to_[m->server_id];
      if (m->leaves) {
        ASSERT_LE(got.size(), sent.size());
        sent.resize(got.size());
        EXPECT_TRUE(m->closed);
      }
      ASSERT_EQ(got, sent);
      if (m->leaves) continue;
      // Independently of the server's bookkeeping: a member who stayed saw
      // every public line numbered after its own join, and the private lines
      // to or from it, and no other private line.
      uint64_t joined_at = 0;
      for (const DisplayLine& l : m->lines) {
        if (l.kind == DisplayLine::Kind::kJoin && l.from == m->nick) joined_at = l.seq;
      }
      ASSERT_NE(joined_at, 0u);
      ASSERT_EQ(got.front(), joined_at) << "a line from before its join";
      std::set<uint64_t> have(got.begin(), got.end());
      for (const auto& [seq, line] : lines_) {
        if (seq < joined_at) continue;
        const bool mine = line.kind == chat::Line::PRIVATE &&
                          (line.from == NickAt(*m, seq) || line.to == NickAt(*m, seq));
        const bool meant = line.kind != chat::Line::PRIVATE || mine;
        EXPECT_EQ(have.count(seq), meant ? 1u : 0u) << "line " << seq << " " << line.text;
      }
      // The roster a member can rebuild ends equal to the server's.
      std::vector<std::string> roster = m->welcome_members;
      for (const DisplayLine& l : m->lines) {
        if (l.seq <= joined_at) continue;
        if (l.kind == DisplayLine::Kind::kJoin) roster.push_back(l.from);
        if (l.kind == DisplayLine::Kind::kLeave) {
          auto it = std::find(roster.begin(), roster.end(), l.from);
          ASSERT_NE(it, roster.end()) << l.from << " left without being in";
          roster.erase(it);
        }
        if (l.kind == DisplayLine::Kind::kRename) {
          auto it = std::find(roster.begin(), roster.end(), l.from);
          ASSERT_NE(it, roster.end()) << l.from << " renamed without being in";
          *it = l.text;
        }
      }
      EXPECT_EQ(roster, server_roster);
    }
  }

 private:
  static std::string LineText(const Member& m, int k) { return absl::StrCat(m.nick, " line ", k); }

  // The nick member `m` had when line `seq` was numbered (members rename
  // at most once).
  std::string NickAt(const Member& m, uint64_t seq) const {
    for (const auto& [s, line] : lines_) {
      if (s >= seq) break;
      if (line.kind == chat::Line::RENAME && line.from == m.nick) return line.text;
    }
    return m.nick;
  }

  bool Done() const {
    if (said_lines_ < expected_said_) return false;
    for (const auto& m : members_) {
      if (!m->welcomed || m->pending_sends > 0) return false;
      if (m->leaves) {
        if (!m->closed) return false;
        continue;
      }
      auto it = sent_to_.find(m->server_id);
      if (it == sent_to_.end() || it->second.size() != m->lines.size()) return false;
    }
    return core_->room().member_count() == static_cast<size_t>(kMembers - kMembers / 5);
  }

  void OnServerEvent(int k, const Event& e) {
    ServerSees(*cores_[k], members_, sim_.now(), e);
    Execute(k);
  }

  // Carries out shard k's actions on its endpoint.
  void Execute(int k) {
    const absl::Time now = sim_.now();
    EndpointNode& server = *servers_[k];
    chat::ServerCore& core = *cores_[k];
    for (;;) {
      std::vector<chat::ServerAction> actions = core.TakeActions();
      if (actions.empty()) break;
      for (chat::ServerAction& a : actions) {
        if (a.type == chat::ServerAction::Type::kSend) {
          Record(a);
          absl::StatusOr<uint64_t> seq = server.endpoint().Send(
              now, a.peer, chat::kChannel, DeliveryMode::kReliableOrdered, a.bytes);
          if (!seq.ok() && server.endpoint().IsEstablished(a.peer)) {
            ADD_FAILURE() << "server send failed: " << seq.status();
            core.OnSendFailed(now, a.peer, seq.status().message());
          }
        } else if (a.type == chat::ServerAction::Type::kClose) {
          (void)server.endpoint().Close(now, a.peer, a.reason, a.flush);
        }
      }
    }
  }

  // Keeps the server's numbering and who each line went to.
  void Record(const chat::ServerAction& a) {
    chat::ServerMessage m;
    ASSERT_TRUE(m.ParseFromString(a.bytes));
    if (!m.has_line()) return;
    const chat::Line& l = m.line();
    auto [it, fresh] = lines_.try_emplace(l.seq());
    if (fresh) {
      it->second = ServerLine{l.kind(), l.from(), l.to(), l.text(), {}};
      if (l.kind() == chat::Line::SAY || l.kind() == chat::Line::ME ||
          l.kind() == chat::Line::PRIVATE) {
        ++said_lines_;
      }
    }
    it->second.recipients.push_back(a.peer);
    sent_to_[a.peer].push_back(l.seq());
  }

  void OnMemberEvent(Member& m, const Event& e) {
    switch (e.type) {
      case Event::Type::kConnected:
        Send(m, m.core->JoinMessage());
        break;
      case Event::Type::kMessage: {
        const std::optional<ClientEvent> ce = MemberReceives(m, e);
        if (!ce.has_value()) break;
        const ClientEvent& ev = *ce;
        if (ev.type == ClientEvent::Type::kWelcome) OnWelcome(m, ev);
        if (ev.type == ClientEvent::Type::kLine) m.lines.push_back(ev.line);
        if (ev.type == ClientEvent::Type::kError) m.errors.push_back(ev.text);
        break;
      }
      case Event::Type::kClosed:
        m.closed = true;
        if (!m.leaves) m.errors.push_back(absl::StrCat("closed: ", e.reason));
        break;
      case Event::Type::kAcked:
      case Event::Type::kPathChanged:
        break;
    }
  }

  // Schedules the member's lines from now on, then its rename or leave.
  void OnWelcome(Member& m, const ClientEvent& ev) {
    m.welcomed = true;
    m.welcome_members = ev.nicks;
    Member* raw = &m;
    absl::Time last = sim_.now();
    for (int k = 0; k <= kSaysEach; ++k) {
      const absl::Time at = sim_.now() + absl::Milliseconds(rng_.Uniform(4000));
      last = std::max(last, at);
      std::string input = k == kSaysEach ? absl::StrCat("/me ", LineText(m, k)) : LineText(m, k);
      // Every fifth member's second line is private to the next member.
      if (k == 1 && m.index % 5 == 0) {
        input = absl::StrCat("/msg m", (m.index + 1) % kMembers, " ", LineText(m, k));
      }
      ++m.pending_sends;
      sim_.At(at, [this, raw, input] { Type(*raw, input); });
    }
    if (m.renames || m.leaves) {
      ++m.pending_sends;
      sim_.At(last + absl::Milliseconds(1 + rng_.Uniform(500)), [this, raw] {
        if (raw->renames) {
          Type(*raw, absl::StrCat("/nick ", raw->nick, "_r"));
        } else {
          --raw->pending_sends;
          Send(*raw, chat::LeaveMessage());
          (void)raw->node->endpoint().Close(sim_.now(), raw->id, "left", /*flush=*/true);
        }
      });
    }
  }

  void Type(Member& m, const std::string& input) {
    // A private line waits until its target is in the room.
    if (absl::StartsWith(input, "/msg ")) {
      const std::string target = input.substr(5, input.find(' ', 5) - 5);
      const std::vector<std::string> room = core_->room().Members();
      if (std::find(room.begin(), room.end(), target) == room.end()) {
        Member* raw = &m;
        sim_.At(sim_.now() + absl::Milliseconds(500), [this, raw, input] { Type(*raw, input); });
        return;
      }
    }
    --m.pending_sends;
    chat::UserInput in = chat::ParseInput(input);
    ASSERT_EQ(in.type, chat::UserInput::Type::kSend) << input << ": " << in.error;
    Send(m, in.message);
  }

  void Send(Member& m, const std::string& bytes) { MemberSends(sim_.now(), m, bytes); }

  const uint64_t seed_;
  sim::Simulator sim_;
  reliable::DeterministicRng rng_;
  std::vector<std::unique_ptr<EndpointNode>> servers_;     // one per shard
  std::vector<std::unique_ptr<chat::ServerCore>> cores_;  // one per shard
  chat::ServerCore* core_ = nullptr;                      // cores_[0]
  std::vector<std::unique_ptr<Member>> members_;
  std::map<uint64_t, ServerLine> lines_;  // by number
  absl::flat_hash_map<ConnectionId, std::vector<uint64_t>> sent_to_;
  size_t said_lines_ = 0;
  const size_t expected_said_ = kMembers * (kSaysEach + 1);
};

class ChatSimTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(ChatSimTest, FiftyMembersAtTwentyPercentLossSeeOneOrderEveryLineOnce) {
  const uint64_t seed = GetParam();
  SCOPED_TRACE(absl::StrCat("seed=", seed));
  ChatSim chat(seed);
  std::string why;
  ASSERT_TRUE(chat.Run(&why)) << "seed=" << seed << ": " << why;
  chat.Check();
}

INSTANTIATE_TEST_SUITE_P(Seeds, ChatSimTest, ::testing::Range<uint64_t>(1, 1 + sim::SeedCount(200)));

// The server in 3 shards over one room: the members on each shard see the
// same one order as everyone else. An eighth of the seeds (the scenario is
// the same; the shards' hand-offs are what is new).
class ShardedChatSimTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(ShardedChatSimTest, FiftyMembersOnThreeShardsAtTwentyPercentLossSeeOneOrder) {
  const uint64_t seed = GetParam();
  SCOPED_TRACE(absl::StrCat("seed=", seed));
  ChatSim chat(seed, /*shards=*/3);
  std::string why;
  ASSERT_TRUE(chat.Run(&why)) << "seed=" << seed << ": " << why;
  chat.Check();
}

INSTANTIATE_TEST_SUITE_P(Seeds, ShardedChatSimTest,
                         ::testing::Range<uint64_t>(1, 1 + std::max<uint64_t>(1, sim::SeedCount(200) / 8)));

// Issue 15, the fan-out figure: one member floods the room at full speed
// (4000-byte lines, its own send queue kept at 1 MiB, over a 50 Mbit/s link)
// for 5 s (1.5 s in the sanitized twin) while three members behind 4 Mbit/s
// links chat normally. The
// server's rate limit refuses most of the flood before fan-out, so what the
// server holds for the room (the core's shared backlogs plus every chat
// connection's transport send queue) stays small, the 4 Mbit/s members stay
// connected, and each receives every line the server accepted. Prints the
// figure for docs/security.md. With the default flood_tolerance the flooder
// is closed for flooding at once; with an unbounded one it keeps flooding
// for the whole 5 s, and the bound must hold all the same.
constexpr int kHonest = 3;
constexpr size_t kFloodLine = 4000;
// The stated bound on what the server holds for the room during the flood.
constexpr uint64_t kHeldBound = 1 << 20;

struct FloodResult {
  uint64_t max_held = 0;          // core held_bytes + transport queues, peak
  uint64_t max_core_held = 0;     // core held_bytes, peak
  uint64_t flood_lines_sent = 0;  // by the flooder's application
  uint64_t flood_lines_accepted = 0;
  bool flooder_closed_for_flooding = false;
};

class FloodSim {
 public:
  FloodSim(uint64_t seed, size_t flood_tolerance, absl::Duration flood_for)
      : flood_for_(flood_for),
        sim_(seed, kStart),
        rng_(seed, 11),
        server_(kStart, Addr("10.0.0.1:4000"), ChatSim::ServerEndpointOptions(seed)) {
    chat::ServerOptions options;
    options.flood_tolerance = flood_tolerance;
    absl::StatusOr<std::unique_ptr<chat::ServerCore>> core =
        chat::ServerCore::Create(options, std::make_unique<chat::LocalSequencer>());
    EXPECT_TRUE(core.ok()) << core.status();
    core_ = *std::move(core);
    EXPECT_TRUE(sim_.AddNode(server_.address(), &server_).ok());
    server_.set_on_event([this](const Event& e) { OnServerEvent(e); });
    for (int i = 0; i <= kHonest; ++i) {
      auto m = std::make_unique<Member>();
      m->index = i;
      m->nick = i == 0 ? "flooder" : absl::StrCat("h", i);
      m->core = std::make_unique<chat::ClientCore>(m->nick);
      reliable::EndpointOptions o = ClientOptions(seed * 100 + i);
      o.connection.max_message_bytes = chat::kMaxMessageBytes;
      m->node = std::make_unique<EndpointNode>(kStart, Addr(absl::StrCat("10.0.1.", 1 + i, ":5000")),
                                               o);
      Member* raw = m.get();
      m->node->set_on_event([this, raw](const Event& e) { OnMemberEvent(*raw, e); });
      EXPECT_TRUE(sim_.AddNode(m->node->address(), m->node.get()).ok());
      // The flooder's path is clean (loss would slow its flood down).
      impairment::ImpairmentConfig link = Lossy(i == 0 ? 0.0 : 0.01);
      link.delay = absl::Milliseconds(20);
      link.rate_bps = i == 0 ? 50'000'000 : 4'000'000;
      link.queue_limit_bytes = i == 0 ? 256 << 10 : 64 << 10;
      EXPECT_TRUE(sim_.SetLink(m->node->address(), server_.address(), link).ok());
      EXPECT_TRUE(sim_.SetLink(server_.address(), m->node->address(), link).ok());
      members_.push_back(std::move(m));
    }
  }

  FloodResult Run() {
    for (auto& m : members_) {
      Member* raw = m.get();
      sim_.At(kStart + absl::Milliseconds(rng_.Uniform(200)), [this, raw] {
        absl::StatusOr<ConnectionId> id =
            raw->node->endpoint().Connect(sim_.now(), server_.address());
        ASSERT_TRUE(id.ok()) << id.status();
        raw->id = *id;
      });
    }
    // Everyone is in before the flood starts at 1 s.
    EXPECT_TRUE(sim_.RunUntil([this] { return core_->member_count() == kHonest + 1; },
                              kStart + absl::Seconds(1)));
    flood_from_ = sim_.now();
    for (int i = 1; i <= kHonest; ++i) {
      for (int k = 0; k < 5; ++k) {
        Member* raw = members_[i].get();
        const std::string text = absl::StrCat(raw->nick, " says ", k);
        const absl::Duration at =
            absl::Milliseconds(rng_.Uniform(absl::ToInt64Milliseconds(flood_for_)));
        sim_.At(flood_from_ + at, [this, raw, text] {
          Send(*raw, chat::ParseInput(text).message);
        });
      }
    }
    Flood();
    Sample();
    // The flood ends at 5 s; then every member drains what it was sent.
    const bool drained = sim_.RunUntil(
        [this] {
          if (sim_.now() < flood_from_ + flood_for_) return false;
          for (int i = 1; i <= kHonest; ++i) {
            const Member& m = *members_[i];
            if (m.lines.size() != sent_to_[m.server_id].size()) return false;
          }
          return true;
        },
        flood_from_ + flood_for_ + absl::Seconds(60));
    EXPECT_TRUE(drained) << sim_.status();
    for (int i = 1; i <= kHonest; ++i) {
      const Member& m = *members_[i];
      SCOPED_TRACE(m.nick);
      EXPECT_FALSE(m.closed) << "an honest member was closed";
      EXPECT_THAT(m.errors, ::testing::IsEmpty());
      // Every line the server numbered after this member joined, in order.
      std::vector<uint64_t> got;
      for (const DisplayLine& l : m.lines) got.push_back(l.seq);
      EXPECT_EQ(got, sent_to_[m.server_id]);
      uint64_t joined_at = 0;
      for (const DisplayLine& l : m.lines) {
        if (l.kind == DisplayLine::Kind::kJoin && l.from == m.nick) joined_at = l.seq;
      }
      std::vector<uint64_t> meant;
      for (uint64_t seq : numbered_) {
        if (seq >= joined_at) meant.push_back(seq);
      }
      EXPECT_EQ(got, meant);
      size_t own = 0;
      for (const DisplayLine& l : m.lines) own += l.from == m.nick && l.kind == DisplayLine::Kind::kSay;
      EXPECT_EQ(own, 5u);
    }
    result_.flooder_closed_for_flooding = members_[0]->closed && flooder_flooding_close_;
    return result_;
  }

 private:
  // Keeps the flooder's own send queue at 1 MiB, every millisecond.
  void Flood() {
    Member& f = *members_[0];
    if (sim_.now() >= flood_from_ + flood_for_ || f.closed) return;
    const std::string line =
        chat::ParseInput(std::string(kFloodLine, static_cast<char>('a' + sent_ % 26))).message;
    while (f.node->endpoint().QueuedBytes(f.id) < (1 << 20)) {
      absl::StatusOr<uint64_t> seq = f.node->endpoint().Send(
          sim_.now(), f.id, chat::kChannel, DeliveryMode::kReliableOrdered, line);
      if (!seq.ok()) break;
      ++result_.flood_lines_sent;
      ++sent_;
    }
    sim_.At(sim_.now() + absl::Milliseconds(1), [this] { Flood(); });
  }

  void Sample() {
    uint64_t queued = 0;
    for (const auto& m : members_) {
      if (m->server_id != 0) queued += server_.endpoint().QueuedBytes(m->server_id);
    }
    result_.max_core_held = std::max(result_.max_core_held, core_->held_bytes());
    result_.max_held = std::max(result_.max_held, core_->held_bytes() + queued);
    if (sim_.now() < flood_from_ + flood_for_ + absl::Seconds(1)) {
      sim_.At(sim_.now() + absl::Milliseconds(10), [this] { Sample(); });
    }
  }

  void OnServerEvent(const Event& e) {
    const absl::Time now = sim_.now();
    ServerSees(*core_, members_, now, e);
    for (;;) {
      std::vector<chat::ServerAction> actions = core_->TakeActions();
      if (actions.empty()) break;
      for (chat::ServerAction& a : actions) {
        if (a.type == chat::ServerAction::Type::kSend) {
          chat::ServerMessage m;
          ASSERT_TRUE(m.ParseFromString(a.bytes));
          if (m.has_line()) {
            if (numbered_.empty() || numbered_.back() < m.line().seq()) {
              numbered_.push_back(m.line().seq());
              if (m.line().from() == "flooder" && m.line().kind() == chat::Line::SAY) {
                ++result_.flood_lines_accepted;
              }
            }
            sent_to_[a.peer].push_back(m.line().seq());
          }
          absl::StatusOr<uint64_t> seq = server_.endpoint().Send(
              now, a.peer, chat::kChannel, DeliveryMode::kReliableOrdered, a.bytes);
          if (!seq.ok() && server_.endpoint().IsEstablished(a.peer)) {
            core_->OnSendFailed(now, a.peer, seq.status().message());
          }
        } else if (a.type == chat::ServerAction::Type::kClose) {
          if (a.peer == members_[0]->server_id && absl::StrContains(a.reason, "flooding")) {
            flooder_flooding_close_ = true;
          }
          (void)server_.endpoint().Close(now, a.peer, a.reason, a.flush);
        }
      }
    }
  }

  void OnMemberEvent(Member& m, const Event& e) {
    switch (e.type) {
      case Event::Type::kConnected:
        Send(m, m.core->JoinMessage());
        break;
      case Event::Type::kMessage: {
        const std::optional<ClientEvent> ce = MemberReceives(m, e);
        if (!ce.has_value()) break;
        const ClientEvent& ev = *ce;
        if (ev.type == ClientEvent::Type::kWelcome) m.welcomed = true;
        if (ev.type == ClientEvent::Type::kLine) m.lines.push_back(ev.line);
        // The flooder's "slow down" errors are expected; nobody else's.
        if (ev.type == ClientEvent::Type::kError && m.index != 0) m.errors.push_back(ev.text);
        break;
      }
      case Event::Type::kClosed:
        m.closed = true;
        break;
      case Event::Type::kAcked:
      case Event::Type::kPathChanged:
        break;
    }
  }

  void Send(Member& m, const std::string& bytes) { MemberSends(sim_.now(), m, bytes); }

  const absl::Duration flood_for_;
  sim::Simulator sim_;
  reliable::DeterministicRng rng_;
  EndpointNode server_;
  std::unique_ptr<chat::ServerCore> core_;
  std::vector<std::unique_ptr<Member>> members_;  // [0] floods
  absl::Time flood_from_;
  uint64_t sent_ = 0;
  std::vector<uint64_t> numbered_;  // every line number the server used
  absl::flat_hash_map<ConnectionId, std::vector<uint64_t>> sent_to_;
  bool flooder_flooding_close_ = false;
  FloodResult result_;
};

TEST(ChatFloodTest, AFlooderIsRateLimitedBeforeFanOutAndFourMbitMembersGetEveryLine) {
  // The figure (plain build): 2 seeds, a 5 s flood. The sanitized twin
  // (fewer seeds asked for) checks the same with 1 seed and a 1.5 s flood:
  // the flood is most of the cost, and ASan makes it 30 times dearer.
  const bool full = sim::SeedCount(200) >= 200;
  const uint64_t seeds = full ? 2 : 1;
  const absl::Duration flood_for = full ? absl::Seconds(5) : absl::Milliseconds(1500);
  for (uint64_t seed = 1; seed <= seeds; ++seed) {
    for (const size_t tolerance : {chat::ServerOptions().flood_tolerance, size_t{1} << 40}) {
      SCOPED_TRACE(absl::StrCat("seed=", seed, " flood_tolerance=", tolerance));
      FloodSim sim(seed, tolerance, flood_for);
      const FloodResult r = sim.Run();
      std::printf(
          "flood figure (seed %llu, flood_tolerance %zu): flooder sent %llu lines of %zu bytes "
          "(%llu bytes) in %s, server accepted %llu; server held at most %llu bytes for the room "
          "(core backlogs at most %llu), bound %llu\n",
          static_cast<unsigned long long>(seed), tolerance,
          static_cast<unsigned long long>(r.flood_lines_sent), kFloodLine,
          static_cast<unsigned long long>(r.flood_lines_sent * kFloodLine),
          absl::FormatDuration(flood_for).c_str(),
          static_cast<unsigned long long>(r.flood_lines_accepted),
          static_cast<unsigned long long>(r.max_held),
          static_cast<unsigned long long>(r.max_core_held),
          static_cast<unsigned long long>(kHeldBound));
      EXPECT_LE(r.max_held, kHeldBound);
      EXPECT_GT(r.flood_lines_sent, 100u) << "the flood did not happen";
      const chat::ServerOptions d;
      // At most one burst plus the sustained rate over the flood.
      EXPECT_LE(r.flood_lines_accepted,
                d.line_burst + static_cast<uint64_t>(d.line_rate * 6 + 1));
      if (tolerance == d.flood_tolerance) {
        EXPECT_TRUE(r.flooder_closed_for_flooding);
      } else {
        EXPECT_FALSE(r.flooder_closed_for_flooding);
        EXPECT_GT(r.flood_lines_sent, 1000u);
      }
    }
  }
}

}  // namespace
}  // namespace udpmsg::testing
