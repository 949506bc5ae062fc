// LocalRoom alone, ServerCore shards over one LocalRoom (driven by hand, so
// that a shard's wake-up can be held back), and the hand-offs between
// shards on real threads (run it under TSan: ./bazelw test --config=tsan
// //tests/apps/chat:room_test).
#include "apps/chat/local_room.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "apps/chat/chat.pb.h"
#include "apps/chat/room.h"
#include "apps/chat/sequencer.h"
#include "apps/chat/server_core.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace udpmsg::chat {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using Result = Room::Result;

const absl::Time kStart = absl::FromUnixSeconds(1'700'000'000);

std::string Join(const std::string& nick) {
  ClientMessage m;
  m.mutable_join()->set_nick(nick);
  return m.SerializeAsString();
}
std::string Say(const std::string& text) {
  ClientMessage m;
  m.mutable_say()->set_text(text);
  return m.SerializeAsString();
}
std::string Private(const std::string& to, const std::string& text) {
  ClientMessage m;
  m.mutable_private_message()->set_to(to);
  m.mutable_private_message()->set_text(text);
  return m.SerializeAsString();
}
std::string Rename(const std::string& nick) {
  ClientMessage m;
  m.mutable_rename()->set_nick(nick);
  return m.SerializeAsString();
}
std::string Who() {
  ClientMessage m;
  m.mutable_who();
  return m.SerializeAsString();
}

Line LineOf(const RoomEntry& e) {
  ServerMessage m;
  EXPECT_TRUE(m.ParseFromString(*e.bytes));
  return m.line();
}

// ---- LocalRoom --------------------------------------------------------------

TEST(LocalRoomTest, NicksAreUniqueAcrossShardsAndLimitsAreTheRooms) {
  RoomLimits limits;
  limits.max_members = 3;
  limits.max_members_per_address = 2;
  LocalRoom room(limits, std::make_unique<LocalSequencer>());
  const int a = room.AddShard(nullptr);
  const int b = room.AddShard(nullptr);
  EXPECT_EQ(room.Join(a, kStart, "alice", "10.0.0.1").result, Result::kOk);
  EXPECT_EQ(room.Join(b, kStart, "ALICE", "10.0.0.2").result, Result::kNickTaken);
  EXPECT_EQ(room.Join(b, kStart, "bob", "10.0.0.1").result, Result::kOk);
  EXPECT_EQ(room.Join(b, kStart, "carl", "10.0.0.1").result, Result::kAddressFull);
  const Room::Joined c = room.Join(a, kStart, "carol", "10.0.0.3");
  ASSERT_EQ(c.result, Result::kOk);
  EXPECT_EQ(c.roster.count, 3u);
  EXPECT_THAT(c.roster.first, ElementsAre("alice", "bob", "carol"));
  EXPECT_EQ(room.Join(b, kStart, "dave", "10.0.0.4").result, Result::kFull);
  EXPECT_EQ(room.Rename(b, kStart, c.id, "Bob"), Result::kNickTaken);
  EXPECT_EQ(room.Private(b, kStart, c.id, "nobody", "x"), Result::kNoSuchNick);
  EXPECT_EQ(room.Leave(a, kStart, 1, ""), 2u);
  EXPECT_EQ(room.Join(b, kStart, "alice", "10.0.0.9").result, Result::kOk);  // free again
  EXPECT_THAT(room.Members(), ElementsAre("bob", "carol", "alice"));
}

TEST(LocalRoomTest, EveryShardReadsEveryLineInOrderAndTheLogForgetsWhatAllRead) {
  LocalRoom room(RoomLimits(), std::make_unique<LocalSequencer>());
  int woken[2] = {0, 0};
  const int a = room.AddShard([&] { ++woken[0]; });
  const int b = room.AddShard([&] { ++woken[1]; });
  const MemberId alice = room.Join(a, kStart, "alice", "x").id;
  ASSERT_EQ(room.Say(a, kStart, alice, false, "one"), Result::kOk);
  ASSERT_EQ(room.Say(a, kStart, alice, true, "two"), Result::kOk);
  // Shard b is woken once for the three lines; the shard that added them
  // is not woken at all.
  EXPECT_EQ(woken[0], 0);
  EXPECT_EQ(woken[1], 1);
  EXPECT_EQ(room.last_index(), 3u);
  std::vector<RoomEntry> read_b;
  room.Read(b, &read_b);
  ASSERT_EQ(read_b.size(), 3u);
  EXPECT_EQ(LineOf(read_b[0]).kind(), Line::JOIN);
  EXPECT_EQ(LineOf(read_b[1]).text(), "one");
  EXPECT_EQ(LineOf(read_b[2]).kind(), Line::ME);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(read_b[i].index, i + 1);
    EXPECT_EQ(LineOf(read_b[i]).seq(), i + 1);
  }
  EXPECT_GT(room.log_bytes(), 0u);  // shard a has not read them
  std::vector<RoomEntry> read_a;
  room.Read(a, &read_a);
  EXPECT_EQ(read_a.size(), 3u);
  EXPECT_EQ(read_a[1].bytes, read_b[1].bytes);  // encoded once
  EXPECT_EQ(room.log_bytes(), 0u);
  read_b.clear();
  room.Read(b, &read_b);
  EXPECT_THAT(read_b, IsEmpty());
  // Read re-arms the wake-up.
  ASSERT_EQ(room.Say(a, kStart, alice, false, "three"), Result::kOk);
  EXPECT_EQ(woken[1], 2);
}

TEST(LocalRoomTest, ALogNobodyReadsMakesTheRoomBusyButLeavesAndCloseGetThrough) {
  RoomLimits limits;
  limits.max_log_bytes = 1000;
  LocalRoom room(limits, std::make_unique<LocalSequencer>());
  const int a = room.AddShard(nullptr);
  const int b = room.AddShard(nullptr);  // never reads
  const MemberId alice = room.Join(a, kStart, "alice", "x").id;
  const MemberId bob = room.Join(a, kStart, "bob", "y").id;
  Result r = Result::kOk;
  int said = 0;
  while ((r = room.Say(a, kStart, alice, false, std::string(100, 'x'))) == Result::kOk) ++said;
  EXPECT_EQ(r, Result::kBusy);
  EXPECT_LE(room.log_bytes(), 1000u + 200u);
  EXPECT_GT(said, 5);
  EXPECT_EQ(room.Rename(a, kStart, alice, "al"), Result::kBusy);
  const uint64_t before = room.last_index();
  room.Leave(a, kStart, bob, "");
  EXPECT_TRUE(room.Close(a, kStart));
  EXPECT_FALSE(room.Close(b, kStart));  // once
  EXPECT_EQ(room.last_index(), before + 2);
  EXPECT_EQ(room.Say(a, kStart, alice, false, "late"), Result::kClosed);
  std::vector<RoomEntry> all;
  room.Read(b, &all);
  EXPECT_EQ(LineOf(all.back()).text(), "server shutting down");
}

// ---- ServerCore shards over one room -------------------------------------------

class ShardsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RoomLimits limits;
    limits.max_members = 10;
    room_ = std::make_shared<LocalRoom>(limits, std::make_unique<LocalSequencer>());
    for (int k = 0; k < 2; ++k) {
      const int shard = room_->AddShard([this, k] { woken_[k] = true; });
      ServerOptions o;
      o.max_members = 10;
      absl::StatusOr<std::unique_ptr<ServerCore>> core = ServerCore::Create(o, room_, shard);
      ASSERT_TRUE(core.ok()) << core.status();
      cores_[k] = *std::move(core);
    }
  }

  // Joins `id` as `nick` on shard k.
  void Member(int k, PeerId id, const std::string& nick) {
    cores_[k]->OnConnected(now_, id, absl::StrCat("10.0.", k, ".", id, ":5000"));
    cores_[k]->OnMessage(now_, id, Join(nick));
    Collect(k);
  }
  // Runs shard k's wake-up (as its thread would) if it was woken.
  void Wake(int k) {
    if (!woken_[k]) return;
    woken_[k] = false;
    cores_[k]->OnRoom(now_);
    Collect(k);
  }
  void Collect(int k) {
    for (ServerAction& a : cores_[k]->TakeActions()) {
      if (a.type == ServerAction::Type::kClose) closes_[a.peer] = a.reason;
      if (a.type != ServerAction::Type::kSend) continue;
      ServerMessage m;
      ASSERT_TRUE(m.ParseFromString(a.bytes));
      got_[a.peer].push_back(m);
    }
  }
  // "seq:kind:from:text" of every line `peer` received.
  std::vector<std::string> Lines(PeerId peer) {
    std::vector<std::string> out;
    for (const ServerMessage& m : got_[peer]) {
      if (m.has_line()) {
        out.push_back(absl::StrCat(m.line().seq(), ":", Line::Kind_Name(m.line().kind()), ":",
                                   m.line().from(), ":", m.line().text()));
      }
    }
    return out;
  }

  absl::Time now_ = kStart;
  std::shared_ptr<LocalRoom> room_;
  std::unique_ptr<ServerCore> cores_[2];
  bool woken_[2] = {false, false};
  std::map<PeerId, std::vector<ServerMessage>> got_;
  std::map<PeerId, std::string> closes_;  // the reason of each close
};

TEST_F(ShardsTest, MembersOnBothShardsSeeOneOrder) {
  Member(0, 1, "alice");
  Wake(1);
  Member(1, 2, "bob");
  Wake(0);
  cores_[0]->OnMessage(now_, 1, Say("hi from 0"));
  cores_[1]->OnMessage(now_, 2, Say("hi from 1"));
  Collect(0);
  Collect(1);
  Wake(0);
  Wake(1);
  const std::vector<std::string> want = {"2:JOIN:bob:", "3:SAY:alice:hi from 0",
                                         "4:SAY:bob:hi from 1"};
  EXPECT_EQ(Lines(2), want);
  std::vector<std::string> alice = Lines(1);
  ASSERT_EQ(alice.size(), 4u);
  EXPECT_EQ(alice[0], "1:JOIN:alice:");
  EXPECT_EQ(std::vector<std::string>(alice.begin() + 1, alice.end()), want);
  // Bob's Welcome, from the room: both members.
  ASSERT_TRUE(got_[2][0].has_welcome());
  EXPECT_THAT(got_[2][0].welcome().members(), ElementsAre("alice", "bob"));
}

// A shard that has not yet fanned out a line when a member joins it must
// not give that line to the member: it was numbered before the join.
TEST_F(ShardsTest, AMemberJoiningALateShardGetsNothingFromBeforeItsJoin) {
  Member(0, 1, "alice");
  cores_[0]->OnMessage(now_, 1, Say("before carol"));
  Collect(0);
  ASSERT_TRUE(woken_[1]);  // not run yet
  Member(1, 3, "carol");
  Wake(1);
  EXPECT_THAT(Lines(3), ElementsAre("3:JOIN:carol:"));
}

TEST_F(ShardsTest, NicksPrivateLinesRenamesAndWhoSpanShards) {
  Member(0, 1, "alice");
  Member(1, 2, "bob");
  Member(1, 3, "ALICE");  // taken on the other shard
  ASSERT_FALSE(got_[3].empty());
  EXPECT_EQ(got_[3][0].error().text(), "nick \"ALICE\" is taken");
  Wake(0);
  cores_[0]->OnMessage(now_, 1, Private("BOB", "psst"));
  Collect(0);
  Wake(1);
  EXPECT_EQ(Lines(2).back(), "3:PRIVATE:alice:psst");
  EXPECT_EQ(Lines(1).back(), "3:PRIVATE:alice:psst");
  cores_[1]->OnMessage(now_, 2, Rename("alice"));  // taken
  Collect(1);
  EXPECT_EQ(got_[2].back().error().text(), "nick \"alice\" is taken");
  cores_[1]->OnMessage(now_, 2, Rename("robert"));
  Collect(1);
  Wake(0);
  EXPECT_EQ(Lines(1).back(), "4:RENAME:bob:robert");
  cores_[0]->OnMessage(now_, 1, Who());
  Collect(0);
  ASSERT_TRUE(got_[1].back().has_who_reply());
  EXPECT_THAT(got_[1].back().who_reply().nicks(), ElementsAre("alice", "robert"));
  EXPECT_EQ(got_[1].back().who_reply().count(), 2u);
}

// Taking a nick back when the old member is on another shard: the probe
// and the replacement reach the holder's shard as room notices.
TEST_F(ShardsTest, ProbesAndTakeoversCrossShards) {
  Member(0, 1, "alice");  // 10.0.0.1
  Member(0, 2, "bob");    // 10.0.0.2
  Wake(1);
  // Alice's process died; its successor lands on shard 1.
  cores_[1]->OnConnected(now_, 7, "10.0.0.1:7000");
  cores_[1]->OnMessage(now_, 7, Join("alice"));
  Collect(1);
  EXPECT_TRUE(got_[7].empty());
  ASSERT_TRUE(woken_[0]);
  Wake(0);
  ASSERT_FALSE(got_[1].empty());
  EXPECT_TRUE(got_[1].back().has_probe());
  EXPECT_EQ(cores_[1]->NextDeadline(), now_ + ServerOptions().probe_timeout);
  now_ += ServerOptions().probe_timeout;
  cores_[1]->OnTick(now_);
  Collect(1);
  ASSERT_FALSE(got_[7].empty());
  ASSERT_TRUE(got_[7][0].has_welcome());
  const std::string token = got_[7][0].welcome().resume_token();
  EXPECT_EQ(token.size(), kResumeTokenBytes);
  Wake(0);
  EXPECT_EQ(closes_[1], "replaced by a new connection");
  EXPECT_EQ(cores_[0]->member_count(), 1u);  // bob
  EXPECT_EQ(cores_[1]->NickOf(7), "alice");
  EXPECT_EQ(Lines(2).back(), "3:SYSTEM::alice reconnected");
  // Back to shard 0 from another address, with the token.
  cores_[0]->OnConnected(now_, 8, "192.0.2.1:4000");
  ClientMessage resume;
  resume.mutable_join()->set_nick("alice");
  resume.mutable_join()->set_resume_token(token);
  cores_[0]->OnMessage(now_, 8, resume.SerializeAsString());
  Collect(0);
  ASSERT_FALSE(got_[8].empty());
  EXPECT_TRUE(got_[8][0].has_welcome());
  Wake(1);
  EXPECT_EQ(closes_[7], "replaced by a new connection");
  EXPECT_EQ(cores_[1]->member_count(), 0u);
  EXPECT_THAT(room_->Members(), ElementsAre("bob", "alice"));
  // Bob is alive: his transport acknowledges the probe; he keeps his nick.
  cores_[1]->OnConnected(now_, 9, "10.0.0.2:7000");
  cores_[1]->OnMessage(now_, 9, Join("bob"));
  Collect(1);
  std::vector<ServerAction> probe = cores_[0]->TakeActions();  // not yet: not woken
  EXPECT_TRUE(probe.empty());
  woken_[0] = false;
  cores_[0]->OnRoom(now_);
  probe = cores_[0]->TakeActions();
  ASSERT_EQ(probe.size(), 1u);
  EXPECT_EQ(probe[0].peer, 2u);
  cores_[0]->OnAcked(now_ + absl::Milliseconds(20), 2, probe[0].bytes.size());
  Collect(0);
  now_ += ServerOptions().probe_timeout;
  cores_[1]->OnTick(now_);
  Collect(1);
  ASSERT_FALSE(got_[9].empty());
  EXPECT_EQ(got_[9][0].error().text(), "nick \"bob\" is taken");
  EXPECT_EQ(closes_.count(2), 0u);
  EXPECT_EQ(cores_[0]->NickOf(2), "bob");
}

TEST_F(ShardsTest, LeavesAndTheShutdownLineReachEveryShardOnce) {
  Member(0, 1, "alice");
  Member(1, 2, "bob");
  Member(1, 3, "carol");
  Wake(0);
  cores_[1]->OnClosed(now_, 3, CloseCause::kTimedOut, "");
  Collect(1);
  Wake(0);
  EXPECT_EQ(Lines(1).back(), "4:LEAVE:carol:timed out");
  EXPECT_EQ(Lines(2).back(), "4:LEAVE:carol:timed out");
  cores_[0]->Shutdown(now_);
  Collect(0);
  cores_[1]->Shutdown(now_);
  Collect(1);
  EXPECT_EQ(Lines(1).back(), "5:SYSTEM::server shutting down");
  EXPECT_EQ(Lines(2).back(), "5:SYSTEM::server shutting down");
  EXPECT_EQ(room_->member_count(), 0u);
}

// ---- threads ------------------------------------------------------------------

// Each shard on its own thread, as `chat serve --threads N` runs them, with
// members fed directly (no network): every member joins, then says its
// lines; each thread sleeps on a condition variable until the room wakes it.
// Every member must receive the same lines in the same order.
TEST(ShardThreadsTest, ShardsOnThreadsFanOutOneOrder) {
  constexpr int kShards = 4;
  constexpr int kMembersPerShard = 5;
  constexpr int kLinesEach = 40;
  constexpr size_t kTotalLines = kShards * kMembersPerShard * kLinesEach;
  RoomLimits limits;
  limits.max_members = 100;
  limits.max_members_per_address = 100;
  limits.announce_limit = 0;  // only said lines, so every member sees all
  auto room = std::make_shared<LocalRoom>(limits, std::make_unique<LocalSequencer>());
  struct Shard {
    std::mutex mu;
    std::condition_variable cv;
    bool woken = false;
    std::unique_ptr<ServerCore> core;
    std::map<PeerId, std::vector<uint64_t>> seqs;  // this shard's members' lines
  };
  std::vector<std::unique_ptr<Shard>> shards;
  for (int k = 0; k < kShards; ++k) {
    auto s = std::make_unique<Shard>();
    Shard* raw = s.get();
    const int index = room->AddShard([raw] {
      std::lock_guard<std::mutex> lock(raw->mu);
      raw->woken = true;
      raw->cv.notify_one();
    });
    ServerOptions o;
    o.max_members = 100;
    o.max_members_per_address = 100;
    o.line_burst = kLinesEach;
    absl::StatusOr<std::unique_ptr<ServerCore>> core = ServerCore::Create(o, room, index);
    ASSERT_TRUE(core.ok()) << core.status();
    s->core = *std::move(core);
    shards.push_back(std::move(s));
  }
  std::atomic<int> joined{0};
  auto run = [&](int k) {
    Shard& s = *shards[k];
    auto collect = [&s] {
      for (ServerAction& a : s.core->TakeActions()) {
        if (a.type != ServerAction::Type::kSend) continue;
        ServerMessage m;
        if (m.ParseFromString(a.bytes) && m.has_line()) s.seqs[a.peer].push_back(m.line().seq());
        // The transport acknowledges at once: the window stays open.
        s.core->OnAcked(kStart, a.peer, a.bytes.size());
      }
    };
    for (int i = 0; i < kMembersPerShard; ++i) {
      const PeerId id = 100 * (k + 1) + i;
      s.core->OnConnected(kStart, id, absl::StrCat("10.0.0.", k, ":", i));
      s.core->OnMessage(kStart, id, Join(absl::StrCat("m", k, "_", i)));
      s.seqs[id];
    }
    collect();
    ++joined;
    while (joined.load() < kShards) std::this_thread::yield();
    for (int line = 0; line < kLinesEach; ++line) {
      for (int i = 0; i < kMembersPerShard; ++i) {
        s.core->OnMessage(kStart, 100 * (k + 1) + i, Say(absl::StrCat(k, "/", i, "/", line)));
      }
      s.core->OnRoom(kStart);
      collect();
    }
    // Fan out until every member here has every line.
    for (;;) {
      s.core->OnRoom(kStart);
      collect();
      bool done = true;
      for (const auto& [id, seqs] : s.seqs) done = done && seqs.size() == kTotalLines;
      if (done) break;
      std::unique_lock<std::mutex> lock(s.mu);
      s.cv.wait_for(lock, std::chrono::seconds(1), [&s] { return s.woken; });
      s.woken = false;
    }
  };
  std::vector<std::thread> threads;
  for (int k = 0; k < kShards; ++k) threads.emplace_back(run, k);
  for (std::thread& t : threads) t.join();
  const std::vector<uint64_t>& first = shards[0]->seqs.begin()->second;
  ASSERT_EQ(first.size(), kTotalLines);
  for (size_t i = 1; i < first.size(); ++i) ASSERT_LT(first[i - 1], first[i]);
  for (const auto& s : shards) {
    for (const auto& [id, seqs] : s->seqs) EXPECT_EQ(seqs, first) << "member " << id;
  }
  EXPECT_EQ(room->log_bytes(), 0u);  // every shard read everything
}

}  // namespace
}  // namespace udpmsg::chat
