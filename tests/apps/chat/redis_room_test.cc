// RedisRoom against a real redis-server (started on a free port in a
// temporary directory): one order across servers, nicks unique across
// servers, private lines to another server, /who of the room, history for a
// late joiner, a dead server's members reaped (and a stalled one's taken
// back), Redis lost and back without a line missed or repeated, and the
// ServerCore's answers while it is lost.
//
// Redis keeps real time (key expiry), so waits here are bounded polls for a
// condition, never a fixed sleep.
#include "apps/chat/redis_room.h"

#include <signal.h>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "apps/chat/chat.pb.h"
#include "apps/chat/room_state.h"
#include "apps/chat/server_core.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "redis/client.h"
#include "tests/redis/redis_server.h"

namespace udpmsg::chat {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::udpmsg::testing::RedisServer;

// Polls `done` every 5 ms until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& done, absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

struct Seen {
  uint64_t index;
  RoomEntry entry;
  Line line;
};

// One server's view: its room, one shard, and the lines it has read.
class Server {
 public:
  // `read`: start the room's reader (without it the server never learns
  // what the others wrote).
  static std::unique_ptr<Server> Start(const RedisServer& redis, const std::string& room,
                                       const std::string& id,
                                       std::function<void(RedisRoomOptions*)> tweak = {},
                                       bool read = true) {
    RedisRoomOptions o;
    o.endpoint = redis.endpoint();
    o.room = room;
    o.server_id = id;
    o.heartbeat = absl::Milliseconds(100);
    o.alive_ttl = absl::Seconds(1);
    o.max_backoff = absl::Milliseconds(200);
    o.log = [id](std::string line) { std::fprintf(stderr, "[%s] %s\n", id.c_str(), line.c_str()); };
    if (tweak) tweak(&o);
    absl::StatusOr<std::shared_ptr<RedisRoom>> r = RedisRoom::Create(o);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return nullptr;
    auto s = std::make_unique<Server>();
    s->room = *r;
    s->shard = s->room->AddShard({});
    if (read) s->room->Start();
    return s;
  }

  // Reads what the room has for this shard.
  void Pump() {
    std::vector<RoomEntry> entries;
    room->Read(shard, &entries);
    for (RoomEntry& e : entries) {
      ServerMessage m;
      EXPECT_TRUE(m.ParseFromString(*e.bytes));
      seen.push_back({e.index, e, m.line()});
    }
    room->TakeNotices(shard, &notices);
  }
  // Waits until a line satisfying `match` has been read.
  bool WaitLine(const std::function<bool(const Line&)>& match) {
    return WaitFor([&] {
      Pump();
      for (const Seen& s : seen) {
        if (match(s.line)) return true;
      }
      return false;
    });
  }
  bool WaitNotice(const std::string& text_part) {
    return WaitFor([&] {
      Pump();
      for (const RoomNotice& n : notices) {
        if (n.type == RoomNotice::Type::kAnnounce && n.text.find(text_part) != std::string::npos) {
          return true;
        }
      }
      return false;
    });
  }
  MemberId Join(const std::string& nick, absl::Time now = absl::Now()) {
    Room::Joined j = room->Join(shard, now, nick, "10.0.0.1");
    EXPECT_EQ(j.result, Room::Result::kOk) << nick;
    return j.id;
  }
  // "from: text" of every SAY line read, in order.
  std::vector<std::string> Says() const {
    std::vector<std::string> out;
    for (const Seen& s : seen) {
      if (s.line.kind() == Line::SAY)
        out.push_back(absl::StrCat(s.line.from(), ": ", s.line.text()));
    }
    return out;
  }

  std::shared_ptr<RedisRoom> room;
  int shard = 0;
  std::vector<Seen> seen;
  std::vector<RoomNotice> notices;
};

std::unique_ptr<RedisServer> StartRedis() {
  absl::StatusOr<std::unique_ptr<RedisServer>> r = RedisServer::Start({});
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *std::move(r) : nullptr;
}

// alice's Join from 10.0.0.1, given `token` as her resume token.
JoinRequest AliceJoin(const std::string& token) {
  JoinRequest r;
  r.nick = "alice";
  r.address_key = "10.0.0.1";
  r.new_token = token;
  return r;
}

// alice back (on any server) with `token`, given a new one.
JoinRequest AliceBack(const std::string& token) {
  JoinRequest r = AliceJoin(std::string(kResumeTokenBytes, 'U'));
  r.resume_token = token;
  return r;
}

// alice back on `server` with `token`: a takeover of member `was` (0: a
// plain join, her old member being gone). Her new member's number (0 if the
// join failed).
MemberId AliceComesBack(const Server& server, const std::string& token, MemberId was) {
  const Room::Joined j = server.room->Join(server.shard, absl::Now(), AliceBack(token));
  EXPECT_EQ(j.result, Room::Result::kOk);
  EXPECT_EQ(j.replaced, was);
  return j.result == Room::Result::kOk ? j.id : 0;
}

// Matches NICK's leave line with reason WHY ("server lost": a reaper's).
std::function<bool(const Line&)> Left(const std::string& nick, const std::string& why) {
  return [nick, why](const Line& l) {
    return l.kind() == Line::LEAVE && l.from() == nick && l.text() == why;
  };
}

// A server without a reader that stays alive for a test's length: it never
// reaps, and nobody reaps it.
void AliveWithoutHeartbeat(RedisRoomOptions* o) {
  o->alive_ttl = absl::Seconds(30);
  o->heartbeat = absl::Seconds(5);
}

// Server `id` of "lobby" stalled from the start: it does not read (no
// heartbeat), so its alive key expires 1 s after Create; Start resumes it.
std::unique_ptr<Server> Stalled(const RedisServer& redis, const std::string& id) {
  return Server::Start(redis, "lobby", id, {}, /*read=*/false);
}

// The room "lobby"'s keys, read straight from Redis, and commands an
// administrator would run against that Redis.
class LobbyKeys {
 public:
  explicit LobbyKeys(const RedisServer& redis) {
    absl::StatusOr<std::unique_ptr<redis::Connection>> c =
        redis::Connection::Connect(redis.endpoint(), absl::Seconds(2));
    EXPECT_TRUE(c.ok()) << c.status();
    if (c.ok()) conn_ = *std::move(c);
  }
  bool ok() const { return conn_ != nullptr; }
  // Runs one command (an administrator's: FLUSHALL, CONFIG SET, DEL); true
  // if Redis answered without an error.
  bool Run(const std::vector<std::string>& argv) {
    absl::StatusOr<redis::Reply> r = conn_->Command(argv);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && !r->is_error();
  }
  bool Exists(const std::string& key) {
    absl::StatusOr<redis::Reply> r = conn_->Command({"EXISTS", "udpmsg:chat:{lobby}:" + key});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && r->integer == 1;
  }
  // Waits until server `id`'s alive key is gone: the room takes it for dead.
  bool WaitTakenForDead(const std::string& id) {
    return WaitFor([&] { return !Exists("alive:" + id); });
  }

 private:
  std::unique_ptr<redis::Connection> conn_;
};

TEST(RedisRoomTest, UnreachableRedisIsAClearError) {
  std::unique_ptr<RedisServer> redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  RedisRoomOptions o;
  o.endpoint = redis->endpoint();
  o.room = "lobby";
  redis->Kill(SIGKILL);
  absl::StatusOr<std::shared_ptr<RedisRoom>> r = RedisRoom::Create(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(r.status().message(), HasSubstr(absl::StrCat("127.0.0.1:", redis->port())));
  EXPECT_THAT(r.status().message(), HasSubstr("refused"));

  o.room = "no spaces";
  EXPECT_EQ(RedisRoom::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RedisRoomTest, ThreeServersSeeOneOrderWithTheSameNumbers) {
  std::unique_ptr<RedisServer> redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  std::vector<std::unique_ptr<Server>> servers;
  for (const char* id : {"a", "b", "c"}) {
    servers.push_back(Server::Start(*redis, "lobby", id));
    ASSERT_NE(servers.back(), nullptr);
  }
  std::vector<MemberId> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(servers[i]->Join(absl::StrCat("m", i)));
  // Each server says from its own thread at once: the stream orders them.
  std::vector<std::thread> threads;
  constexpr int kLines = 40;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] {
      for (int k = 0; k < kLines; ++k) {
        EXPECT_EQ(servers[i]->room->Say(0, absl::Now(), ids[i], false, absl::StrCat("line ", k)),
                  Room::Result::kOk);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (auto& s : servers) {
    ASSERT_TRUE(WaitFor([&] {
      s->Pump();
      return s->Says().size() == 3 * kLines;
    })) << s->room->server_id()
        << " read " << s->Says().size();
  }
  // The same lines, the same numbers, in the same order, numbered by one.
  auto numbered = [](const Server& s) {
    std::vector<std::string> out;
    for (const Seen& x : s.seen)
      out.push_back(absl::StrCat(x.line.seq(), " ", x.line.from(), " ", x.line.text()));
    return out;
  };
  EXPECT_EQ(numbered(*servers[0]), numbered(*servers[1]));
  EXPECT_EQ(numbered(*servers[0]), numbered(*servers[2]));
  for (size_t i = 1; i < servers[0]->seen.size(); ++i) {
    EXPECT_EQ(servers[0]->seen[i].line.seq(), servers[0]->seen[i - 1].line.seq() + 1);
    EXPECT_GT(servers[0]->seen[i].index, servers[0]->seen[i - 1].index);
  }
  // Each member's own lines keep its order.
  for (int i = 0; i < 3; ++i) {
    int next = 0;
    for (const std::string& say : servers[1]->Says()) {
      if (say.rfind(absl::StrCat("m", i, ": "), 0) == 0) {
        EXPECT_EQ(say, absl::StrCat("m", i, ": line ", next));
        ++next;
      }
    }
    EXPECT_EQ(next, kLines);
  }
}

TEST(RedisRoomTest, NicksAreUniqueAcrossServersAndWhoListsTheRoom) {
  std::unique_ptr<RedisServer> redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  auto a = Server::Start(*redis, "lobby", "a");
  auto b = Server::Start(*redis, "lobby", "b");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const MemberId alice = a->Join("alice");
  const MemberId bob = b->Join("bob");
  a->Join("carol");
  EXPECT_EQ(b->room->Join(0, absl::Now(), "ALICE", "10.0.0.2").result, Room::Result::kNickTaken);
  EXPECT_EQ(b->room->Rename(0, absl::Now(), bob, "Carol"), Room::Result::kNickTaken);
  Roster who = b->room->Who();
  EXPECT_EQ(who.count, 3u);
  EXPECT_THAT(who.first, ElementsAre("alice", "bob", "carol"));
  EXPECT_EQ(b->room->Rename(0, absl::Now(), bob, "Bobby"), Room::Result::kOk);
  EXPECT_THAT(a->room->Who().first, ElementsAre("alice", "Bobby", "carol"));
  // A leave frees the nick for any server.
  a->room->Leave(0, absl::Now(), alice, "");
  EXPECT_EQ(b->room->Join(0, absl::Now(), "Alice", "10.0.0.2").result, Room::Result::kOk);
  EXPECT_TRUE(
      a->WaitLine([](const Line& l) { return l.kind() == Line::JOIN && l.from() == "Alice"; }));
  std::vector<std::string> kinds;
  for (const Seen& s : a->seen)
    kinds.push_back(absl::StrCat(Line::Kind_Name(s.line.kind()), " ", s.line.from()));
  EXPECT_THAT(kinds, ElementsAre("JOIN alice", "JOIN bob", "JOIN carol", "RENAME bob",
                                 "LEAVE alice", "JOIN Alice"));
}

TEST(RedisRoomTest, PrivateLinesReachTheTargetOnAnotherServer) {
  std::unique_ptr<RedisServer> redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  auto a = Server::Start(*redis, "lobby", "a");
  auto b = Server::Start(*redis, "lobby", "b");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const MemberId alice = a->Join("alice");
  const MemberId bob = b->Join("bob");
  EXPECT_EQ(a->room->Private(0, absl::Now(), alice, "BOB", "psst"), Room::Result::kOk);
  EXPECT_EQ(a->room->Private(0, absl::Now(), alice, "nobody", "hello?"), Room::Result::kNoSuchNick);
  ASSERT_TRUE(b->WaitLine([](const Line& l) { return l.kind() == Line::PRIVATE; }));
  ASSERT_TRUE(a->WaitLine([](const Line& l) { return l.kind() == Line::PRIVATE; }));
  for (Server* s : {a.get(), b.get()}) {
    const Seen& p = s->seen.back();
    EXPECT_EQ(p.line.text(), "psst");
    EXPECT_EQ(p.line.from(), "alice");
    EXPECT_EQ(p.line.to(), "bob");
  }
  // Each server's entry names only its own members: on b bob gets it, on a
  // alice gets her copy (to and from both her: once).
  EXPECT_EQ(b->seen.back().entry.to, bob);
  EXPECT_EQ(b->seen.back().entry.from, 0u);
  EXPECT_EQ(a->seen.back().entry.to, alice);
  EXPECT_EQ(a->seen.back().entry.from, alice);
}

TEST(RedisRoomTest, ALateJoinerGetsTheLastPublicLinesOnly) {
  std::unique_ptr<RedisServer> redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  auto a = Server::Start(*redis, "lobby", "a", [](RedisRoomOptions* o) { o->history_lines = 100; });
  auto b = Server::Start(*redis, "lobby", "b", [](RedisRoomOptions* o) { o->history_lines = 100; });
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const MemberId alice = a->Join("alice");
  b->Join("bob");
  for (int k = 0; k < 150; ++k) {
    ASSERT_EQ(a->room->Say(0, absl::Now(), alice, false, absl::StrCat("line ", k)),
              Room::Result::kOk);
    ASSERT_EQ(a->room->Private(0, absl::Now(), alice, "bob", "secret"), Room::Result::kOk);
  }
  Room::Joined j = b->room->Join(0, absl::Now(), "carol", "10.0.0.3");
  ASSERT_EQ(j.result, Room::Result::kOk);
  ASSERT_EQ(j.history.size(), 100u);
  uint64_t last = 0;
  for (size_t i = 0; i < j.history.size(); ++i) {
    ServerMessage m;
    ASSERT_TRUE(m.ParseFromString(*j.history[i].bytes));
    EXPECT_EQ(m.line().text(), absl::StrCat("line ", 50 + i));
    EXPECT_EQ(j.history[i].to, 0u);
    EXPECT_GT(m.line().seq(), last);
    EXPECT_LT(j.history[i].index, j.start);
    last = m.line().seq();
  }
}

// A member moving to another server (its resume token, and the last line it
// received) gets the lines it missed, not the room's history again: before
// Join.last_seq it was sent the last 100 public lines a second time, its own
// join and everything it had already shown.
TEST(RedisRoomTest, AReconnectGetsOnlyTheLinesItMissed) {
  std::unique_ptr<RedisServer> redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  auto a = Server::Start(*redis, "lobby", "a");
  auto b = Server::Start(*redis, "lobby", "b");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const std::string token(kResumeTokenBytes, 'T');
  const JoinRequest first = AliceJoin(token);
  Room::Joined j1 = a->room->Join(0, absl::Now(), first);
  ASSERT_EQ(j1.result, Room::Result::kOk);
  const MemberId bob = b->Join("bob");
  for (int k = 0; k < 3; ++k) {
    ASSERT_EQ(b->room->Say(0, absl::Now(), bob, false, absl::StrCat("seen ", k)),
              Room::Result::kOk);
  }
  ASSERT_TRUE(a->WaitLine([](const Line& l) { return l.text() == "seen 2"; }));
  uint64_t last_seen = 0;
  for (const Seen& s : a->seen) last_seen = std::max(last_seen, s.line.seq());
  // alice's connection is lost here; bob goes on.
  for (int k = 0; k < 2; ++k) {
    ASSERT_EQ(b->room->Say(0, absl::Now(), bob, false, absl::StrCat("missed ", k)),
              Room::Result::kOk);
  }
  JoinRequest again = first;
  again.resume_token = token;
  again.new_token = std::string(kResumeTokenBytes, 'U');
  again.last_seq = last_seen;
  Room::Joined j2 = b->room->Join(0, absl::Now(), again);
  ASSERT_EQ(j2.result, Room::Result::kOk);
  EXPECT_EQ(j2.replaced, j1.id);
  std::vector<std::string> history;
  for (const RoomEntry& e : j2.history) {
    ServerMessage m;
    ASSERT_TRUE(m.ParseFromString(*e.bytes));
    EXPECT_GT(m.line().seq(), last_seen);
    history.push_back(m.line().text());
  }
  EXPECT_THAT(history, ElementsAre("missed 0", "missed 1"));
  // A first join (last_seq 0) still gets everything public before it.
  Room::Joined carol = a->room->Join(0, absl::Now(), "carol", "10.0.0.3");
  ASSERT_EQ(carol.result, Room::Result::kOk);
  EXPECT_EQ(carol.history.size(), 8u);  // 2 joins, 5 lines, "alice reconnected"
}

TEST(RedisRoomTest, ASilentServersMembersLeaveAndFreeTheirNicks) {
  std::unique_ptr<RedisServer> redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  auto b = Server::Start(*redis, "lobby", "b");
  ASSERT_NE(b, nullptr);
  b->Join("bob");
  // Server "dead" as RedisRoom writes one (redis_room.h, Keys), whose
  // process is gone: its alive key expires and nobody refreshes it.
  absl::StatusOr<std::unique_ptr<redis::Connection>> c =
      redis::Connection::Connect(redis->endpoint(), absl::Seconds(2));
  ASSERT_TRUE(c.ok()) << c.status();
  const std::string p = "udpmsg:chat:{lobby}:";
  absl::StatusOr<std::vector<redis::Reply>> put = (*c)->Pipeline({
      {"SET", p + "nick:ghost", "dead 9999 - Ghost"},
      {"ZADD", p + "who:dead", "9999", "Ghost"},
      {"SADD", p + "servers", "dead"},
      {"SET", p + "alive:dead", "1", "PX", "300"},
  });
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(b->room->Who().count, 2u);
  EXPECT_EQ(b->room->Join(0, absl::Now(), "ghost", "10.0.0.9").result, Room::Result::kNickTaken);
  ASSERT_TRUE(b->WaitLine(Left("Ghost", "server lost")));
  EXPECT_EQ(b->room->Who().count, 1u);
  EXPECT_EQ(b->room->Join(0, absl::Now(), "ghost", "10.0.0.9").result, Room::Result::kOk);
  // Reaped once, by one server.
  int leaves = 0;
  b->Pump();
  for (const Seen& s : b->seen) leaves += s.line.kind() == Line::LEAVE ? 1 : 0;
  EXPECT_EQ(leaves, 1);
}

// "KIND FROM TEXT" of every line in the room's stream, oldest first.
std::vector<std::string> StreamLines(const RedisServer& redis, const std::string& room) {
  std::vector<std::string> out;
  absl::StatusOr<std::unique_ptr<redis::Connection>> c =
      redis::Connection::Connect(redis.endpoint(), absl::Seconds(2));
  EXPECT_TRUE(c.ok()) << c.status();
  if (!c.ok()) return out;
  absl::StatusOr<redis::Reply> r =
      (*c)->Command({"XRANGE", absl::StrCat("udpmsg:chat:{", room, "}:log"), "-", "+"});
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return out;
  for (const redis::Reply& e : r->elements) {
    std::map<std::string, std::string> f;
    const std::vector<redis::Reply>& kv = e.elements.at(1).elements;
    for (size_t i = 0; i + 1 < kv.size(); i += 2) f[kv[i].str] = kv[i + 1].str;
    int kind = 0;
    EXPECT_TRUE(absl::SimpleAtoi(f["k"], &kind));
    out.push_back(
        absl::StrCat(Line::Kind_Name(static_cast<Line::Kind>(kind)), " ", f["f"], " ", f["t"]));
  }
  return out;
}

// A server that died (its alive key expired) keeps its roster until a live
// server reaps it, a heartbeat later. A nick taken in between was announced
// wrongly: the member back with its token got a second "NICK joined" (not
// "reconnected"), and a holder replaced by a newcomer or a rename was never
// said to have left. Now the join or rename settles the dead holder: its
// own token makes it "NICK reconnected", anything else first writes the old
// holder's leave, and the reaper has nobody left to announce.
TEST(RedisRoomTest, ANickOfADeadServerNotYetReapedIsTakenOverCleanly) {
  std::unique_ptr<RedisServer> redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  RedisRoomOptions o;
  o.endpoint = redis->endpoint();
  o.room = "lobby";
  o.heartbeat = absl::Milliseconds(100);
  o.alive_ttl = absl::Milliseconds(300);
  // Server d is never started: nothing refreshes its alive key, so it dies
  // 300 ms after Create, members and all, as a killed server does.
  o.server_id = "d";
  absl::StatusOr<std::shared_ptr<RedisRoom>> d = RedisRoom::Create(o);
  ASSERT_TRUE(d.ok()) << d.status();
  (*d)->AddShard({});
  // Server b takes the nicks, and runs no reaper either (not started).
  o.server_id = "b";
  o.alive_ttl = absl::Seconds(30);
  o.heartbeat = absl::Seconds(5);
  absl::StatusOr<std::shared_ptr<RedisRoom>> b = RedisRoom::Create(o);
  ASSERT_TRUE(b.ok()) << b.status();
  (*b)->AddShard({});

  const std::string token(kResumeTokenBytes, 'T');
  JoinRequest alice;
  alice.nick = "alice";
  alice.address_key = "10.0.0.1";
  alice.new_token = token;
  Room::Joined j1 = (*d)->Join(0, absl::Now(), alice);
  ASSERT_EQ(j1.result, Room::Result::kOk);
  JoinRequest ghost = alice;
  ghost.nick = "Ghost";
  ghost.new_token = std::string(kResumeTokenBytes, 'G');
  ASSERT_EQ((*d)->Join(0, absl::Now(), ghost).result, Room::Result::kOk);
  ASSERT_EQ((*d)->Join(0, absl::Now(), "Zed", "10.0.0.3").id, j1.id + 2);
  const MemberId bob = (*b)->Join(0, absl::Now(), "bob", "10.0.0.4").id;
  ASSERT_EQ((*b)->Who().count, 4u);
  ASSERT_TRUE(WaitFor([&] { return (*b)->Who().count == 1; })) << "d never died";

  JoinRequest back = alice;
  back.resume_token = token;
  back.new_token = std::string(kResumeTokenBytes, 'U');
  Room::Joined j2 = (*b)->Join(0, absl::Now(), back);
  ASSERT_EQ(j2.result, Room::Result::kOk);
  EXPECT_EQ(j2.replaced, j1.id);
  Room::Joined j3 = (*b)->Join(0, absl::Now(), "ghost", "10.0.0.2");
  ASSERT_EQ(j3.result, Room::Result::kOk);
  EXPECT_EQ(j3.replaced, 0u);
  EXPECT_EQ((*b)->Rename(0, absl::Now(), bob, "zed"), Room::Result::kOk);
  EXPECT_EQ((*b)->Who().count, 3u);

  // A live server reaps d: nobody of d's is left to announce.
  auto c = Server::Start(*redis, "lobby", "c");
  ASSERT_NE(c, nullptr);
  absl::StatusOr<std::unique_ptr<redis::Connection>> raw =
      redis::Connection::Connect(redis->endpoint(), absl::Seconds(2));
  ASSERT_TRUE(raw.ok()) << raw.status();
  ASSERT_TRUE(WaitFor([&] {
    absl::StatusOr<redis::Reply> r =
        (*raw)->Command({"SISMEMBER", "udpmsg:chat:{lobby}:servers", "d"});
    return r.ok() && r->integer == 0;
  })) << "d was never reaped";
  EXPECT_THAT(StreamLines(*redis, "lobby"),
              ElementsAre("JOIN alice ", "JOIN Ghost ", "JOIN Zed ", "JOIN bob ",
                          "SYSTEM  alice reconnected", "LEAVE Ghost server lost", "JOIN ghost ",
                          "LEAVE Zed server lost", "RENAME bob zed"));
  EXPECT_EQ((*b)->Who().count, 3u);

  // d was only stalled and resumes: every nick of its members is someone
  // else's now, so they are closed without a line, and their tombstones go.
  (*d)->Start();
  ASSERT_TRUE(WaitFor([&] { return (*d)->member_count() == 0; }));
  EXPECT_EQ(StreamLines(*redis, "lobby").size(), 9u);
  LobbyKeys keys(*redis);
  ASSERT_TRUE(keys.ok());
  EXPECT_FALSE(keys.Exists("gone:d"));
  EXPECT_EQ((*b)->Who().count, 3u);
  (*b)->Stop();
  (*d)->Stop();
}

// A server that stalls (paused, or cut off from Redis) past its alive key's
// expiry is reaped like a dead one: a live server writes "NICK left (server
// lost)" for each of its members. When it resumes, a member that left in
// the meantime was said to have left already (no second leave line), and
// the members still there come back into the room with "NICK reconnected"
// (or the room would see lines, and later a second leave, from members it
// was told had gone).
TEST(RedisRoomTest, AStalledServersMembersAreReapedOnceAndComeBackWhenItResumes) {
  std::unique_ptr<RedisServer> redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  // s does not read (no heartbeat): the stall. Its alive key expires 1 s
  // after Create (and, once it resumes, 1 s after its last heartbeat, as
  // b's: 10 heartbeats of slack against b reaping it again).
  auto s = Stalled(*redis, "s");
  ASSERT_NE(s, nullptr);
  const MemberId alice = s->Join("alice");
  const MemberId carol = s->Join("carol");
  auto b = Server::Start(*redis, "lobby", "b");
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(b->WaitLine(Left("alice", "server lost")));
  ASSERT_TRUE(b->WaitLine(Left("carol", "server lost")));
  EXPECT_EQ(b->room->Who().count, 0u);

  // alice's connection ended during the stall; s lets her go first thing.
  s->room->Leave(s->shard, absl::Now(), alice, "timed out");
  // s resumes: its heartbeat finds it unregistered and writes carol back.
  s->room->Start();
  ASSERT_TRUE(b->WaitLine([](const Line& l) {
    return l.kind() == Line::SYSTEM && l.text() == "carol reconnected";
  })) << ::testing::PrintToString(StreamLines(*redis, "lobby"));
  EXPECT_THAT(b->room->Who().first, ElementsAre("carol"));
  s->room->Leave(s->shard, absl::Now(), carol, "quit");
  ASSERT_TRUE(b->WaitLine(Left("carol", "quit")));
  EXPECT_THAT(StreamLines(*redis, "lobby"),
              ElementsAre("JOIN alice ", "JOIN carol ", "LEAVE alice server lost",
                          "LEAVE carol server lost", "SYSTEM  carol reconnected",
                          "LEAVE carol quit"));
  // Both tombstones were taken back: nothing of the stall is left in Redis.
  LobbyKeys keys(*redis);
  ASSERT_TRUE(keys.ok());
  EXPECT_FALSE(keys.Exists("gone:s"));
  s->room->Stop();
}

// A stalled server's nick taken before any reaper came: the join settles
// the old holder ("Ghost left (server lost)") and leaves its tombstone, and
// the server was never unregistered. When it resumes, its heartbeat finds
// the tombstone and closes that member (its nick is someone else's now)
// without a line, and writes its other member back without one (the room
// was never told it left).
TEST(RedisRoomTest, AStalledServerWhoseNickWasTakenBeforeAReaperClosesThatMember) {
  std::unique_ptr<RedisServer> redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  // Its alive key expires 1 s after Create, and once it resumes, 1 s
  // after its last heartbeat.
  auto s = Stalled(*redis, "s");
  ASSERT_NE(s, nullptr);
  const MemberId ghost = s->Join("Ghost");
  const MemberId carol = s->Join("carol");
  auto b = Server::Start(*redis, "lobby", "b", AliveWithoutHeartbeat, /*read=*/false);
  ASSERT_NE(b, nullptr);
  LobbyKeys keys(*redis);
  ASSERT_TRUE(keys.ok());
  ASSERT_TRUE(keys.WaitTakenForDead("s"));
  ASSERT_EQ(b->room->Join(b->shard, absl::Now(), "ghost", "10.0.0.2").result, Room::Result::kOk);
  ASSERT_TRUE(keys.Exists("gone:s"));

  s->room->Start();
  ASSERT_TRUE(WaitFor([&] { return s->room->member_count() == 1; }));
  s->Pump();
  bool replaced = false;
  for (const RoomNotice& n : s->notices) {
    replaced |= n.type == RoomNotice::Type::kReplaced && n.member == ghost;
  }
  EXPECT_TRUE(replaced);
  EXPECT_FALSE(keys.Exists("gone:s"));
  EXPECT_THAT(StreamLines(*redis, "lobby"),
              ElementsAre("JOIN Ghost ", "JOIN carol ", "LEAVE Ghost server lost", "JOIN ghost "));
  // carol is still s's, in the room and holding her nick.
  EXPECT_EQ(b->room->Join(b->shard, absl::Now(), "carol", "10.0.0.3").result,
            Room::Result::kNickTaken);
  EXPECT_EQ(b->room->Who().count, 2u);
  s->room->Leave(s->shard, absl::Now(), carol, "quit");
  EXPECT_EQ(StreamLines(*redis, "lobby").back(), "LEAVE carol quit");
  s->room->Stop();
  b->room->Stop();
}

// A stalled server's member whose client came back through another
// server b with its resume token, and then quit there: its nick is free
// again, but the member on the stalled server is done. When that server
// resumes it must close the member without writing it back. Before the
// reaper (b does not reap): a takeover, "alice reconnected" on b; before
// the fix the stalled server took the nick again, then read that line and
// closed the member, leaving its nick and roster entry behind (nobody else
// could take "alice", and /who listed her). After the reaper (b reaps; the
// client's own timeout was longer than the TTL and a heartbeat): the nick
// was free, a plain join; before the fix the stalled server wrote the
// member back ("alice reconnected"), a ghost holding the nick until its
// connection timed out there.
void TokenMovesOnWhileStalled(bool after_reaper, const std::vector<std::string>& lines) {
  std::unique_ptr<RedisServer> redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  auto s = Stalled(*redis, "s");
  ASSERT_NE(s, nullptr);
  const std::string token(kResumeTokenBytes, 'T');
  const Room::Joined j1 = s->room->Join(s->shard, absl::Now(), AliceJoin(token));
  ASSERT_EQ(j1.result, Room::Result::kOk);
  auto b = after_reaper ? Server::Start(*redis, "lobby", "b")
                        : Server::Start(*redis, "lobby", "b", AliveWithoutHeartbeat,
                                        /*read=*/false);
  ASSERT_NE(b, nullptr);
  LobbyKeys keys(*redis);
  ASSERT_TRUE(keys.ok());
  ASSERT_TRUE(keys.WaitTakenForDead("s"));
  const std::string lent = "tok:" + RoomState::TokenHash(token);
  if (after_reaper) {
    ASSERT_TRUE(b->WaitLine(Left("alice", "server lost")));
    EXPECT_TRUE(keys.Exists(lent));  // the reaper's
  }
  const MemberId back = AliceComesBack(*b, token, after_reaper ? 0 : j1.id);
  ASSERT_NE(back, 0u);
  EXPECT_FALSE(keys.Exists(lent));
  b->room->Leave(b->shard, absl::Now(), back, "quit");
  ASSERT_FALSE(keys.Exists("nick:alice"));

  s->room->Start();
  ASSERT_TRUE(WaitFor([&] { return s->room->member_count() == 0; }));
  // Its reader has read the lines too: the last that could have closed it.
  ASSERT_TRUE(s->WaitLine([](const Line& l) { return l.text() == "quit"; }));
  EXPECT_TRUE(WaitFor([&] { return !keys.Exists("gone:s"); }));
  EXPECT_FALSE(keys.Exists("nick:alice"));
  EXPECT_FALSE(keys.Exists("who:s"));
  EXPECT_EQ(b->room->Who().count, 0u);
  EXPECT_EQ(StreamLines(*redis, "lobby"), lines);
  EXPECT_EQ(b->room->Join(b->shard, absl::Now(), "alice", "10.0.0.7").result, Room::Result::kOk);
  s->room->Stop();
  b->room->Stop();
}

TEST(RedisRoomTest, AStalledServersMemberWhoseTokenMovedOnIsClosedNotWrittenBack) {
  TokenMovesOnWhileStalled(/*after_reaper=*/false,
                           {"JOIN alice ", "SYSTEM  alice reconnected", "LEAVE alice quit"});
}

TEST(RedisRoomTest, AStalledServersMemberBackElsewhereAfterTheReaperIsClosedNotWrittenBack) {
  TokenMovesOnWhileStalled(/*after_reaper=*/true, {"JOIN alice ", "LEAVE alice server lost",
                                                   "JOIN alice ", "LEAVE alice quit"});
}

// A stalled server's shards run before its reader once it resumes (they
// answer what queued in their sockets first). The room was told alice left
// ("server lost"), so her line waits until the heartbeat has written her
// back: refused, and her shard told why, until then.
TEST(RedisRoomTest, AStalledServerRefusesLinesUntilItsHeartbeatIsBack) {
  std::unique_ptr<RedisServer> redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  auto s = Stalled(*redis, "s");
  ASSERT_NE(s, nullptr);
  const MemberId alice = s->Join("alice");
  auto b = Server::Start(*redis, "lobby", "b");
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(b->WaitLine(Left("alice", "server lost")));
  EXPECT_EQ(s->room->Say(s->shard, absl::Now(), alice, false, "early"),
            Room::Result::kUnavailable);
  EXPECT_TRUE(s->WaitNotice("lines are refused until it is back"));
  s->room->Start();
  ASSERT_TRUE(s->WaitNotice("lines flow again"));
  EXPECT_EQ(s->room->Say(s->shard, absl::Now(), alice, false, "back"), Room::Result::kOk);
  EXPECT_THAT(StreamLines(*redis, "lobby"),
              ElementsAre("JOIN alice ", "LEAVE alice server lost", "SYSTEM  alice reconnected",
                          "SAY alice back"));
  EXPECT_THAT(b->room->Who().first, ElementsAre("alice"));
  s->room->Stop();
  b->room->Stop();
}

// The clock check aside (s's alive key is removed by hand while s thinks
// it is alive: a partition that delays its calls, a clock that drifts),
// Redis itself refuses the lines of a member the room was told had left.
TEST(RedisRoomTest, AReapedMembersLinesAreRefusedByRedisItself) {
  std::unique_ptr<RedisServer> redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  auto s = Server::Start(*redis, "lobby", "s", AliveWithoutHeartbeat, /*read=*/false);
  ASSERT_NE(s, nullptr);
  const MemberId alice = s->Join("alice");
  auto b = Server::Start(*redis, "lobby", "b");
  ASSERT_NE(b, nullptr);
  LobbyKeys admin(*redis);
  ASSERT_TRUE(admin.ok());
  ASSERT_TRUE(admin.Run({"DEL", "udpmsg:chat:{lobby}:alive:s"}));
  ASSERT_TRUE(b->WaitLine(Left("alice", "server lost")));
  EXPECT_EQ(s->room->Say(s->shard, absl::Now(), alice, false, "late"),
            Room::Result::kUnavailable);
  EXPECT_EQ(s->room->Private(s->shard, absl::Now(), alice, "alice", "late"),
            Room::Result::kUnavailable);
  EXPECT_EQ(s->room->Rename(s->shard, absl::Now(), alice, "alice2"), Room::Result::kUnavailable);
  EXPECT_THAT(StreamLines(*redis, "lobby"), ElementsAre("JOIN alice ", "LEAVE alice server lost"));
  s->room->Stop();
  b->room->Stop();
}

// A leave that Redis refuses (it takes no writes: NOREPLICAS) is not lost:
// the server counts Redis as lost, tells its members, and writes the leave
// once Redis takes writes again.
TEST(RedisRoomTest, ALeaveRedisRefusesIsWrittenOnceItTakesWritesAgain) {
  std::unique_ptr<RedisServer> redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  auto a = Server::Start(*redis, "lobby", "a", AliveWithoutHeartbeat, /*read=*/false);
  ASSERT_NE(a, nullptr);
  a->Join("alice");
  const MemberId bob = a->Join("bob");
  LobbyKeys admin(*redis);
  ASSERT_TRUE(admin.ok());
  ASSERT_TRUE(admin.Run({"CONFIG", "SET", "min-replicas-to-write", "1"}));
  a->room->Leave(a->shard, absl::Now(), bob, "quit");
  EXPECT_TRUE(a->WaitNotice("lines are refused until it is back"));
  ASSERT_TRUE(admin.Run({"CONFIG", "SET", "min-replicas-to-write", "0"}));
  a->room->Start();
  ASSERT_TRUE(a->WaitNotice("lines flow again"));
  EXPECT_THAT(StreamLines(*redis, "lobby"),
              ElementsAre("JOIN alice ", "JOIN bob ", "LEAVE bob quit"));
  a->room->Stop();
}

// A heartbeat Redis answers with an error (here NOREPLICAS: it refuses
// writes) did not refresh the alive key: the server is lost until Redis
// takes writes again, and says so, instead of being reaped unawares.
TEST(RedisRoomTest, AHeartbeatRedisRefusesCountsAsLost) {
  std::unique_ptr<RedisServer> redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  auto a = Server::Start(*redis, "lobby", "a");
  ASSERT_NE(a, nullptr);
  const MemberId alice = a->Join("alice");
  LobbyKeys admin(*redis);
  ASSERT_TRUE(admin.ok());
  ASSERT_TRUE(admin.Run({"CONFIG", "SET", "min-replicas-to-write", "1"}));
  EXPECT_TRUE(a->WaitNotice("lines are refused until it is back"));
  EXPECT_FALSE(a->room->available());
  ASSERT_TRUE(admin.Run({"CONFIG", "SET", "min-replicas-to-write", "0"}));
  ASSERT_TRUE(a->WaitNotice("lines flow again"));
  EXPECT_EQ(a->room->Say(a->shard, absl::Now(), alice, false, "hi"), Room::Result::kOk);
  EXPECT_THAT(StreamLines(*redis, "lobby"), ElementsAre("JOIN alice ", "SAY alice hi"));
  a->room->Stop();
}

TEST(RedisRoomTest, AResumeTokenTakesANickOverFromAnotherServer) {
  std::unique_ptr<RedisServer> redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  auto a = Server::Start(*redis, "lobby", "a");
  auto b = Server::Start(*redis, "lobby", "b");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const std::string token(kResumeTokenBytes, 'T');
  const JoinRequest first = AliceJoin(token);
  Room::Joined j1 = a->room->Join(0, absl::Now(), first);
  ASSERT_EQ(j1.result, Room::Result::kOk);
  JoinRequest wrong = first;
  wrong.resume_token = std::string(kResumeTokenBytes, 'X');
  wrong.new_token = std::string(kResumeTokenBytes, 'U');
  EXPECT_EQ(b->room->Join(0, absl::Now(), wrong).result, Room::Result::kNickTaken);
  JoinRequest again = wrong;
  again.resume_token = token;
  Room::Joined j2 = b->room->Join(0, absl::Now(), again);
  ASSERT_EQ(j2.result, Room::Result::kOk);
  EXPECT_EQ(j2.replaced, j1.id);
  // Server a learns it from the stream and closes its member.
  ASSERT_TRUE(WaitFor([&] {
    a->Pump();
    for (const RoomNotice& n : a->notices) {
      if (n.type == RoomNotice::Type::kReplaced && n.member == j1.id) return true;
    }
    return false;
  }));
  EXPECT_EQ(a->room->member_count(), 0u);
  EXPECT_TRUE(a->WaitLine([](const Line& l) { return l.text() == "alice reconnected"; }));
  EXPECT_THAT(a->room->Who().first, ElementsAre("alice"));
}

// Server a's member leaves (its resume grace ended, say) after server b
// took its nick with the token, before a's reader learned of it: the nick
// is b's member's now, so the leave writes no line ("alice reconnected",
// then "alice left" would be false) and touches nothing of b's.
TEST(RedisRoomTest, ALeaveAfterTheNickWentToAnotherServerWritesNoLine) {
  std::unique_ptr<RedisServer> redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  // a does not read: the race's window, held open (and it does not beat
  // its heart either: it stays alive for the test's length, or b would
  // reap it as a dead server).
  auto a = Server::Start(*redis, "lobby", "a", AliveWithoutHeartbeat, /*read=*/false);
  auto b = Server::Start(*redis, "lobby", "b");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const std::string token(kResumeTokenBytes, 'T');
  const Room::Joined j1 = a->room->Join(0, absl::Now(), AliceJoin(token));
  ASSERT_EQ(j1.result, Room::Result::kOk);
  // alice's client comes back through b with her token.
  JoinRequest again = AliceJoin(token);
  again.resume_token = token;
  again.new_token = std::string(kResumeTokenBytes, 'U');
  Room::Joined j2 = b->room->Join(0, absl::Now(), again);
  ASSERT_EQ(j2.result, Room::Result::kOk);
  ASSERT_EQ(j2.replaced, j1.id);
  a->room->Leave(0, absl::Now(), j1.id, "timed out");
  ASSERT_EQ(b->room->Say(0, absl::Now(), j2.id, false, "still here"), Room::Result::kOk);
  ASSERT_TRUE(b->WaitLine([](const Line& l) { return l.text() == "still here"; }));
  for (const Seen& s : b->seen) {
    EXPECT_NE(s.line.kind(), Line::LEAVE) << s.line.ShortDebugString();
  }
  EXPECT_THAT(b->room->Who().first, ElementsAre("alice"));
}

// The same takeover, then alice quits on b before a lets its member go: the
// nick is free, and a's leave must still write no line (the room has
// "alice reconnected" and "alice left" already). The takeover left a
// tombstone on a, which the leave takes.
TEST(RedisRoomTest, ALeaveAfterTheNickWentElsewhereAndLeftThereWritesNoLine) {
  std::unique_ptr<RedisServer> redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  auto a = Server::Start(*redis, "lobby", "a", AliveWithoutHeartbeat, /*read=*/false);
  auto b = Server::Start(*redis, "lobby", "b", AliveWithoutHeartbeat, /*read=*/false);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const std::string token(kResumeTokenBytes, 'T');
  const Room::Joined j1 = a->room->Join(a->shard, absl::Now(), AliceJoin(token));
  ASSERT_EQ(j1.result, Room::Result::kOk);
  const MemberId back = AliceComesBack(*b, token, j1.id);
  ASSERT_NE(back, 0u);
  b->room->Leave(b->shard, absl::Now(), back, "quit");
  a->room->Leave(a->shard, absl::Now(), j1.id, "timed out");
  EXPECT_THAT(StreamLines(*redis, "lobby"),
              ElementsAre("JOIN alice ", "SYSTEM  alice reconnected", "LEAVE alice quit"));
  LobbyKeys keys(*redis);
  ASSERT_TRUE(keys.ok());
  EXPECT_FALSE(keys.Exists("gone:a"));
}

// A member renames after its nick went to another server with its token,
// before its server read the line that says so. Redis refuses the rename
// (the takeover took the member off the roster): before, it wrote a nick
// key and a roster entry for a member that was done, and nobody else could
// take "alice2". When the server reads the reconnected line and closes the
// member, the takeover's tombstone goes too (ForgetReplaced).
TEST(RedisRoomTest, AMemberClosedAsReplacedLeavesNoNickBehind) {
  std::unique_ptr<RedisServer> redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  auto a = Server::Start(*redis, "lobby", "a", AliveWithoutHeartbeat, /*read=*/false);
  auto b = Server::Start(*redis, "lobby", "b");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const std::string token(kResumeTokenBytes, 'T');
  const Room::Joined j1 = a->room->Join(a->shard, absl::Now(), AliceJoin(token));
  ASSERT_EQ(j1.result, Room::Result::kOk);
  ASSERT_NE(AliceComesBack(*b, token, j1.id), 0u);
  EXPECT_EQ(a->room->Rename(a->shard, absl::Now(), j1.id, "alice2"), Room::Result::kUnavailable);
  LobbyKeys keys(*redis);
  ASSERT_TRUE(keys.ok());
  EXPECT_FALSE(keys.Exists("nick:alice2"));
  ASSERT_TRUE(keys.Exists("gone:a"));

  a->room->Start();
  ASSERT_TRUE(WaitFor([&] { return a->room->member_count() == 0; }));
  EXPECT_TRUE(WaitFor([&] { return !keys.Exists("nick:alice2") && !keys.Exists("gone:a"); }));
  EXPECT_FALSE(keys.Exists("who:a"));
  EXPECT_EQ(b->room->Join(b->shard, absl::Now(), "alice2", "10.0.0.8").result, Room::Result::kOk);
  a->room->Stop();
}

TEST(RedisRoomTest, RedisLostAndBackLosesAndRepeatsNoLine) {
  std::unique_ptr<RedisServer> redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  auto a = Server::Start(*redis, "lobby", "a");
  auto b = Server::Start(*redis, "lobby", "b");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const MemberId alice = a->Join("alice");
  const MemberId bob = b->Join("bob");
  std::vector<std::string> sent;
  for (int k = 0; k < 10; ++k) {
    ASSERT_EQ(a->room->Say(0, absl::Now(), alice, false, absl::StrCat("before ", k)),
              Room::Result::kOk);
    sent.push_back(absl::StrCat("alice: before ", k));
  }
  ASSERT_TRUE(a->WaitLine([](const Line& l) { return l.text() == "before 9"; }));
  redis->Kill(SIGKILL);
  // Refused aloud, never dropped silently: kUnavailable at once or after
  // the reader noticed.
  EXPECT_EQ(a->room->Say(0, absl::Now(), alice, false, "lost?"), Room::Result::kUnavailable);
  ASSERT_TRUE(a->WaitNotice("lost the room's store"));
  ASSERT_TRUE(b->WaitNotice("lost the room's store"));
  EXPECT_EQ(b->room->Say(0, absl::Now(), bob, false, "lost too?"), Room::Result::kUnavailable);
  EXPECT_EQ(b->room->Join(0, absl::Now(), "carol", "10.0.0.3").result, Room::Result::kUnavailable);
  ASSERT_TRUE(redis->Restart().ok());
  ASSERT_TRUE(a->WaitNotice("again"));
  ASSERT_TRUE(b->WaitNotice("again"));
  for (int k = 0; k < 10; ++k) {
    ASSERT_EQ(b->room->Say(0, absl::Now(), bob, false, absl::StrCat("after ", k)),
              Room::Result::kOk);
    sent.push_back(absl::StrCat("bob: after ", k));
  }
  for (Server* s : {a.get(), b.get()}) {
    ASSERT_TRUE(s->WaitLine([](const Line& l) { return l.text() == "after 9"; }));
    EXPECT_EQ(s->Says(), sent) << s->room->server_id();
    for (size_t i = 1; i < s->seen.size(); ++i) {
      EXPECT_EQ(s->seen[i].line.seq(), s->seen[i - 1].line.seq() + 1);
    }
  }
  EXPECT_EQ(a->room->Who().count, 2u);  // both re-registered
}

// A Redis that lost its data while the servers stayed connected (here
// FLUSHALL; a restart without persistence is the same): the next heartbeat
// restores the counters above what the servers have seen and writes the
// roster back; numbers never repeat, and members are told.
TEST(RedisRoomTest, ARedisThatLostItsDataIsHealedAndAnnounced) {
  std::unique_ptr<RedisServer> redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  auto a = Server::Start(*redis, "lobby", "a");
  auto b = Server::Start(*redis, "lobby", "b");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const MemberId alice = a->Join("alice");
  b->Join("bob");
  ASSERT_EQ(a->room->Say(0, absl::Now(), alice, false, "before"), Room::Result::kOk);
  ASSERT_TRUE(b->WaitLine([](const Line& l) { return l.text() == "before"; }));
  const uint64_t before = b->seen.back().line.seq();
  LobbyKeys admin(*redis);
  ASSERT_TRUE(admin.ok());
  ASSERT_TRUE(admin.Run({"FLUSHALL"}));
  // One SYSTEM line in the room's order tells everyone, on every server.
  for (Server* s : {a.get(), b.get()}) {
    ASSERT_TRUE(s->WaitLine([](const Line& l) {
      return l.kind() == Line::SYSTEM && l.text().find("lost recent lines") != std::string::npos;
    }));
  }
  ASSERT_TRUE(WaitFor([&] { return a->room->Who().count == 2; }));
  EXPECT_EQ(b->room->Join(0, absl::Now(), "Alice", "10.0.0.2").result, Room::Result::kNickTaken);
  ASSERT_EQ(a->room->Say(0, absl::Now(), alice, false, "after"), Room::Result::kOk);
  ASSERT_TRUE(b->WaitLine([](const Line& l) { return l.text() == "after"; }));
  EXPECT_GT(b->seen.back().line.seq(), before);
  EXPECT_THAT(b->Says(), ElementsAre("alice: before", "alice: after"));
  int told = 0;
  for (const Seen& s : b->seen)
    told += s.line.text().find("lost recent lines") != std::string::npos;
  EXPECT_EQ(told, 1);
}

// The same, with a join on the server before its next heartbeat. The join
// must not get a member number again (the counter was lost too: before,
// carol got alice's number and replaced her in the server's own state),
// and it registers the server again and starts a roster of one, so only the
// roster's size tells the heartbeat that its older members are missing
// (before, they were never written back and Redis refused their lines for
// good).
TEST(RedisRoomTest, AJoinAfterRedisLostItsDataLeavesNoMemberMuted) {
  std::unique_ptr<RedisServer> redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  auto a = Server::Start(*redis, "lobby", "a", AliveWithoutHeartbeat, /*read=*/false);
  ASSERT_NE(a, nullptr);
  const MemberId alice = a->Join("alice");
  LobbyKeys admin(*redis);
  ASSERT_TRUE(admin.ok());
  ASSERT_TRUE(admin.Run({"FLUSHALL"}));
  const MemberId carol = a->Join("carol");
  EXPECT_GT(carol, alice);
  EXPECT_EQ(a->room->Say(a->shard, absl::Now(), alice, false, "muted"),
            Room::Result::kUnavailable);
  a->room->Start();  // its heartbeat
  ASSERT_TRUE(WaitFor([&] { return a->room->Who().count == 2; }));
  EXPECT_EQ(a->room->Say(a->shard, absl::Now(), alice, false, "back"), Room::Result::kOk);
  EXPECT_EQ(a->room->Say(a->shard, absl::Now(), carol, false, "hi"), Room::Result::kOk);
  ASSERT_TRUE(a->WaitLine([](const Line& l) { return l.text() == "hi"; }));
  EXPECT_THAT(a->Says(), ElementsAre("alice: back", "carol: hi"));
  a->room->Stop();
}

// After Redis lost its data, two servers can hand out one member number
// before they heal the counter (each only keeps it above its own). A
// private line to bob (b's member 1) must not reach alice (a's member 1),
// nor its sender's copy a member of that number on another server.
TEST(RedisRoomTest, APrivateLineReachesTheMemberOfItsServerOnly) {
  std::unique_ptr<RedisServer> redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  // a's reader starts once the numbers are handed out: its first heartbeat
  // would heal the counter above alice's number.
  auto a = Server::Start(*redis, "lobby", "a", AliveWithoutHeartbeat, /*read=*/false);
  auto b = Server::Start(*redis, "lobby", "b", AliveWithoutHeartbeat);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const MemberId alice = a->Join("alice");
  LobbyKeys admin(*redis);
  ASSERT_TRUE(admin.ok());
  ASSERT_TRUE(admin.Run({"FLUSHALL"}));
  const MemberId bob = b->Join("bob");
  const MemberId carol = b->Join("carol");
  ASSERT_EQ(bob, alice);  // the collision this test is about
  ASSERT_EQ(b->room->Private(b->shard, absl::Now(), carol, "bob", "for bob"),
            Room::Result::kOk);
  ASSERT_EQ(b->room->Say(b->shard, absl::Now(), carol, false, "after"), Room::Result::kOk);
  a->room->Start();
  for (Server* s : {a.get(), b.get()}) {
    ASSERT_TRUE(s->WaitLine([](const Line& l) { return l.text() == "after"; }));
  }
  int read_on_a = 0;
  for (const Seen& seen : a->seen) {
    if (seen.line.kind() != Line::PRIVATE) continue;
    ++read_on_a;
    EXPECT_NE(seen.entry.to, alice);
    EXPECT_NE(seen.entry.from, alice);
  }
  EXPECT_EQ(read_on_a, 1);
  bool delivered = false;
  for (const Seen& seen : b->seen) {
    if (seen.line.kind() != Line::PRIVATE) continue;
    delivered = true;
    EXPECT_EQ(seen.entry.to, bob);
    EXPECT_EQ(seen.entry.from, carol);
  }
  EXPECT_TRUE(delivered);
  a->room->Stop();
  b->room->Stop();
}

// The ServerCore's side: a member whose line the room cannot take is told.
TEST(RedisRoomTest, TheCoreTellsAMemberItsLineWasNotSent) {
  std::unique_ptr<RedisServer> redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  RedisRoomOptions o;
  o.endpoint = redis->endpoint();
  o.room = "lobby";
  o.heartbeat = absl::Milliseconds(100);
  o.alive_ttl = absl::Milliseconds(500);
  absl::StatusOr<std::shared_ptr<RedisRoom>> room = RedisRoom::Create(o);
  ASSERT_TRUE(room.ok()) << room.status();
  const int shard = (*room)->AddShard({});
  (*room)->Start();
  absl::StatusOr<std::unique_ptr<ServerCore>> core =
      ServerCore::Create(ServerOptions(), *room, shard);
  ASSERT_TRUE(core.ok()) << core.status();
  const absl::Time t0 = absl::Now();
  (*core)->OnConnected(t0, 7, "10.0.0.1:5000");
  ClientMessage join;
  join.mutable_join()->set_nick("alice");
  (*core)->OnMessage(t0, 7, join.SerializeAsString());
  ASSERT_EQ((*core)->member_count(), 1u);
  (*core)->TakeActions();
  redis->Kill(SIGKILL);
  ClientMessage say;
  say.mutable_say()->set_text("hello");
  (*core)->OnMessage(t0 + absl::Seconds(1), 7, say.SerializeAsString());
  // The member hears both: its line was refused, and the store is gone (a
  // SYSTEM line outside the order, seq 0), in this batch or a later one.
  std::vector<std::string> errors;
  bool told = false;
  ASSERT_TRUE(WaitFor([&] {
    for (const ServerAction& act : (*core)->TakeActions()) {
      ServerMessage m;
      if (act.type != ServerAction::Type::kSend || !m.ParseFromString(act.bytes)) continue;
      if (m.has_error()) {
        errors.push_back(m.error().text());
        EXPECT_FALSE(m.error().fatal());
      }
      if (m.has_line() && m.line().kind() == Line::SYSTEM && m.line().seq() == 0 &&
          m.line().text().find("lost the room's store") != std::string::npos) {
        told = true;
      }
    }
    (*core)->OnRoom(absl::Now());
    return told;
  }));
  EXPECT_THAT(errors, ElementsAre(HasSubstr("that message was not sent")));
}

}  // namespace
}  // namespace udpmsg::chat
