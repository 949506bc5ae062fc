// ServerCore without a network: events in, actions checked one by one.
#include "apps/chat/server_core.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "apps/chat/chat.pb.h"
#include "apps/chat/rules.h"
#include "apps/chat/sequencer.h"
#include "apps/chat/token_bucket.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace udpmsg::chat {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using Type = ServerAction::Type;

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
std::string Me(const std::string& text) {
  ClientMessage m;
  m.mutable_me()->set_action(text);
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
std::string Leave(const std::string& reason = "") {
  ClientMessage m;
  m.mutable_leave()->set_reason(reason);
  return m.SerializeAsString();
}

ServerMessage Parse(const ServerAction& a) {
  ServerMessage m;
  EXPECT_EQ(a.type, Type::kSend);
  EXPECT_TRUE(m.ParseFromString(a.bytes));
  return m;
}

class ServerCoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Make(ServerOptions()); }

  void Make(const ServerOptions& options, uint64_t first_seq = 1) {
    absl::StatusOr<std::unique_ptr<ServerCore>> core =
        ServerCore::Create(options, std::make_unique<LocalSequencer>(first_seq));
    ASSERT_TRUE(core.ok()) << core.status();
    core_ = *std::move(core);
  }

  // Connects peer `id` and joins it as `nick`; returns the actions.
  std::vector<ServerAction> Member(PeerId id, const std::string& nick) {
    core_->OnConnected(now_, id, absl::StrCat("10.0.0.", id, ":5000"));
    core_->OnMessage(now_, id, Join(nick));
    return core_->TakeActions();
  }

  // The messages sent to `peer` among `actions`.
  static std::vector<ServerMessage> To(const std::vector<ServerAction>& actions, PeerId peer) {
    std::vector<ServerMessage> out;
    for (const ServerAction& a : actions) {
      if (a.type == Type::kSend && a.peer == peer) out.push_back(Parse(a));
    }
    return out;
  }
  static std::vector<std::string> Logs(const std::vector<ServerAction>& actions) {
    std::vector<std::string> out;
    for (const ServerAction& a : actions) {
      if (a.type == Type::kLog) out.push_back(a.text);
    }
    return out;
  }
  static const ServerAction* FindClose(const std::vector<ServerAction>& actions, PeerId peer) {
    for (const ServerAction& a : actions) {
      if (a.type == Type::kClose && a.peer == peer) return &a;
    }
    return nullptr;
  }

  absl::Time now_ = kStart;
  std::unique_ptr<ServerCore> core_;
};

TEST_F(ServerCoreTest, CreateRejectsBadOptionsAndNoSequencer) {
  ServerOptions o;
  o.max_members = 0;
  EXPECT_FALSE(ServerCore::Create(o, std::make_unique<LocalSequencer>()).ok());
  o.max_members = kMaxMembersLimit + 1;
  EXPECT_FALSE(ServerCore::Create(o, std::make_unique<LocalSequencer>()).ok());
  o = ServerOptions();
  o.join_timeout = absl::ZeroDuration();
  EXPECT_FALSE(ServerCore::Create(o, std::make_unique<LocalSequencer>()).ok());
  o = ServerOptions();
  o.max_pending = 0;
  EXPECT_FALSE(ServerCore::Create(o, std::make_unique<LocalSequencer>()).ok());
  EXPECT_FALSE(ServerCore::Create(ServerOptions(), nullptr).ok());
}

TEST_F(ServerCoreTest, JoinGetsWelcomeWithMembersThenJoinLineToEveryone) {
  Member(1, "alice");
  std::vector<ServerAction> a = Member(2, "bob");
  std::vector<ServerMessage> bob = To(a, 2);
  ASSERT_EQ(bob.size(), 2u);
  ASSERT_TRUE(bob[0].has_welcome());
  EXPECT_EQ(bob[0].welcome().nick(), "bob");
  EXPECT_THAT(bob[0].welcome().members(), ElementsAre("alice", "bob"));
  EXPECT_EQ(bob[0].welcome().member_count(), 2u);
  ASSERT_TRUE(bob[1].has_line());
  EXPECT_EQ(bob[1].line().kind(), Line::JOIN);
  EXPECT_EQ(bob[1].line().from(), "bob");
  std::vector<ServerMessage> alice = To(a, 1);
  ASSERT_EQ(alice.size(), 1u);
  EXPECT_EQ(alice[0].line().seq(), bob[1].line().seq());
  EXPECT_EQ(alice[0].line().seq(), 2u);  // alice's join was 1
  EXPECT_EQ(alice[0].line().time_ms(), absl::ToUnixMillis(kStart));
  EXPECT_THAT(Logs(a), ElementsAre("bob joined from 10.0.0.2:5000 (2 members)"));
  EXPECT_THAT(core_->Members(), ElementsAre("alice", "bob"));
}

TEST_F(ServerCoreTest, TakenNickIsRefusedCaseInsensitivelyWithAFatalError) {
  Member(1, "alice");
  std::vector<ServerAction> a = Member(2, "ALICE");
  std::vector<ServerMessage> to = To(a, 2);
  ASSERT_EQ(to.size(), 1u);
  EXPECT_TRUE(to[0].error().fatal());
  EXPECT_EQ(to[0].error().text(), "nick \"ALICE\" is taken");
  const ServerAction* close = FindClose(a, 2);
  ASSERT_NE(close, nullptr);
  EXPECT_TRUE(close->flush);
  EXPECT_THAT(Logs(a), ElementsAre("refused 10.0.0.2:5000: nick \"ALICE\" is taken"));
  EXPECT_TRUE(To(a, 1).empty());
  EXPECT_EQ(core_->member_count(), 1u);
  EXPECT_EQ(core_->pending_count(), 0u);
  // Whatever the refused peer sends next is ignored.
  core_->OnMessage(now_, 2, Join("carol"));
  EXPECT_THAT(core_->TakeActions(), IsEmpty());
}

TEST_F(ServerCoreTest, InvalidNicksAreRefusedAndEscaped) {
  struct Case {
    std::string nick;
    std::string error;
  };
  const std::vector<Case> cases = {
      {"", "a nick must not be empty"},
      {"two words", "nick \"two words\" is invalid"},
      {std::string(33, 'x'), "is too long (33 characters, at most 32)"},
      {"evil\x1b[2J", "nick \"evil\\x1b[2J\" is invalid"},
      {"caf\xc3\xa9", "is invalid"},
  };
  PeerId id = 10;
  for (const Case& c : cases) {
    std::vector<ServerAction> a = Member(++id, c.nick);
    std::vector<ServerMessage> to = To(a, id);
    ASSERT_EQ(to.size(), 1u) << c.nick;
    EXPECT_TRUE(to[0].error().fatal());
    EXPECT_THAT(to[0].error().text(), HasSubstr(c.error));
    ASSERT_NE(FindClose(a, id), nullptr);
    for (const std::string& log : Logs(a)) EXPECT_THAT(log, Not(HasSubstr("\x1b")));
  }
  EXPECT_EQ(core_->member_count(), 0u);
}

TEST_F(ServerCoreTest, AnythingButJoinFirstIsAProtocolError) {
  core_->OnConnected(now_, 1, "10.0.0.1:5000");
  core_->OnMessage(now_, 1, Say("hi"));
  std::vector<ServerAction> a = core_->TakeActions();
  std::vector<ServerMessage> to = To(a, 1);
  ASSERT_EQ(to.size(), 1u);
  EXPECT_TRUE(to[0].error().fatal());
  EXPECT_EQ(to[0].error().text(), "protocol error: expected Join");
  ASSERT_NE(FindClose(a, 1), nullptr);

  core_->OnConnected(now_, 2, "10.0.0.2:5000");
  core_->OnMessage(now_, 2, "\xff\xff\xff garbage");
  to = To(core_->TakeActions(), 2);
  ASSERT_EQ(to.size(), 1u);
  EXPECT_EQ(to[0].error().text(), "protocol error: expected Join");

  core_->OnConnected(now_, 3, "10.0.0.3:5000");
  core_->OnMessage(now_, 3, std::string(kMaxMessageBytes + 1, '\0'));
  to = To(core_->TakeActions(), 3);
  ASSERT_EQ(to.size(), 1u);
  EXPECT_EQ(to[0].error().text(), "protocol error: expected Join");
}

TEST_F(ServerCoreTest, UnknownPeersAreIgnored) {
  core_->OnMessage(now_, 99, Join("ghost"));
  core_->OnClosed(now_, 99, CloseCause::kLost, "x");
  core_->OnSendFailed(now_, 99, "x");
  EXPECT_THAT(core_->TakeActions(), IsEmpty());
}

TEST_F(ServerCoreTest, FullRoomIsRefused) {
  ServerOptions o;
  o.max_members = 2;
  Make(o);
  Member(1, "a");
  Member(2, "b");
  std::vector<ServerAction> a = Member(3, "c");
  std::vector<ServerMessage> to = To(a, 3);
  ASSERT_EQ(to.size(), 1u);
  EXPECT_TRUE(to[0].error().fatal());
  EXPECT_EQ(to[0].error().text(), "the chat is full (2 members)");
  EXPECT_EQ(core_->member_count(), 2u);
}

TEST_F(ServerCoreTest, PendingJoinsAreBoundedAndExpire) {
  ServerOptions o;
  o.max_pending = 2;
  o.join_timeout = absl::Seconds(10);
  Make(o);
  EXPECT_EQ(core_->NextDeadline(), absl::InfiniteFuture());
  core_->OnConnected(now_, 1, "10.0.0.1:5000");
  core_->OnConnected(now_ + absl::Seconds(1), 2, "10.0.0.2:5000");
  core_->OnConnected(now_ + absl::Seconds(1), 3, "10.0.0.3:5000");
  std::vector<ServerAction> a = core_->TakeActions();
  const ServerAction* close = FindClose(a, 3);
  ASSERT_NE(close, nullptr);
  EXPECT_EQ(close->reason, "too many connections waiting to join");
  EXPECT_FALSE(close->flush);
  EXPECT_EQ(core_->pending_count(), 2u);
  EXPECT_EQ(core_->NextDeadline(), now_ + absl::Seconds(10));

  core_->OnTick(now_ + absl::Seconds(9));
  EXPECT_THAT(core_->TakeActions(), IsEmpty());
  core_->OnTick(now_ + absl::Seconds(10));
  a = core_->TakeActions();
  close = FindClose(a, 1);
  ASSERT_NE(close, nullptr);
  EXPECT_EQ(close->reason, "no Join");
  EXPECT_THAT(Logs(a), ElementsAre("closing 10.0.0.1:5000: no Join within 10s"));
  EXPECT_EQ(core_->pending_count(), 1u);
  EXPECT_EQ(core_->NextDeadline(), now_ + absl::Seconds(11));
  // Joining in time keeps a connection from expiring.
  core_->OnMessage(now_ + absl::Seconds(10), 2, Join("bob"));
  core_->TakeActions();
  core_->OnTick(now_ + absl::Minutes(5));
  EXPECT_THAT(core_->TakeActions(), IsEmpty());
  EXPECT_EQ(core_->member_count(), 1u);
}

TEST_F(ServerCoreTest, LinesGoToEveryMemberInOneIncreasingOrder) {
  Make(ServerOptions(), /*first_seq=*/1000);
  Member(1, "alice");
  Member(2, "bob");
  core_->OnMessage(now_, 1, Say("hello"));
  core_->OnMessage(now_ + absl::Seconds(1), 2, Me("waves"));
  std::vector<ServerAction> a = core_->TakeActions();
  for (PeerId p : {1, 2}) {
    std::vector<ServerMessage> to = To(a, p);
    ASSERT_EQ(to.size(), 2u);
    EXPECT_EQ(to[0].line().kind(), Line::SAY);
    EXPECT_EQ(to[0].line().from(), "alice");
    EXPECT_EQ(to[0].line().text(), "hello");
    EXPECT_EQ(to[0].line().seq(), 1002u);  // after the two joins
    EXPECT_EQ(to[1].line().kind(), Line::ME);
    EXPECT_EQ(to[1].line().from(), "bob");
    EXPECT_EQ(to[1].line().seq(), 1003u);
    EXPECT_EQ(to[1].line().time_ms(), absl::ToUnixMillis(now_ + absl::Seconds(1)));
  }
}

TEST_F(ServerCoreTest, BadTextIsANonFatalError) {
  Member(1, "alice");
  core_->OnMessage(now_, 1, Say(""));
  core_->OnMessage(now_, 1, Me(std::string(kMaxTextBytes + 1, 'x')));
  core_->OnMessage(now_, 1, Private("alice", ""));
  std::vector<ServerMessage> to = To(core_->TakeActions(), 1);
  ASSERT_EQ(to.size(), 3u);
  EXPECT_EQ(to[0].error().text(), "empty message");
  EXPECT_FALSE(to[0].error().fatal());
  EXPECT_EQ(to[1].error().text(), "message too long (4097 bytes, at most 4096)");
  EXPECT_EQ(to[2].error().text(), "empty message");
  // A text of exactly the limit is fine.
  core_->OnMessage(now_, 1, Say(std::string(kMaxTextBytes, 'x')));
  to = To(core_->TakeActions(), 1);
  ASSERT_EQ(to.size(), 1u);
  EXPECT_TRUE(to[0].has_line());
}

TEST_F(ServerCoreTest, PrivateLineReachesOnlyTargetAndSender) {
  Member(1, "alice");
  Member(2, "bob");
  Member(3, "carol");
  core_->OnMessage(now_, 1, Private("BOB", "secret"));
  std::vector<ServerAction> a = core_->TakeActions();
  EXPECT_TRUE(To(a, 3).empty());
  for (PeerId p : {1, 2}) {
    std::vector<ServerMessage> to = To(a, p);
    ASSERT_EQ(to.size(), 1u);
    EXPECT_EQ(to[0].line().kind(), Line::PRIVATE);
    EXPECT_EQ(to[0].line().from(), "alice");
    EXPECT_EQ(to[0].line().to(), "bob");
    EXPECT_EQ(to[0].line().text(), "secret");
  }
  // To oneself: one copy.
  core_->OnMessage(now_, 1, Private("alice", "note"));
  EXPECT_EQ(To(core_->TakeActions(), 1).size(), 1u);
  // To nobody: an error quoting the (escaped) name.
  core_->OnMessage(now_, 1, Private("no\x07one", "x"));
  std::vector<ServerMessage> to = To(core_->TakeActions(), 1);
  ASSERT_EQ(to.size(), 1u);
  EXPECT_EQ(to[0].error().text(), "no member named \"no\\x07one\"");
}

TEST_F(ServerCoreTest, RenameRules) {
  Member(1, "alice");
  Member(2, "bob");
  core_->OnMessage(now_, 1, Rename("Bob"));
  core_->OnMessage(now_, 1, Rename("alice"));
  core_->OnMessage(now_, 1, Rename("bad nick"));
  std::vector<ServerAction> a = core_->TakeActions();
  std::vector<ServerMessage> to = To(a, 1);
  ASSERT_EQ(to.size(), 3u);
  EXPECT_EQ(to[0].error().text(), "nick \"Bob\" is taken");
  EXPECT_EQ(to[1].error().text(), "you are already alice");
  EXPECT_THAT(to[2].error().text(), HasSubstr("is invalid"));
  EXPECT_TRUE(To(a, 2).empty());

  core_->OnMessage(now_, 1, Rename("ALICE"));  // a change of case is a rename
  core_->OnMessage(now_, 1, Rename("al"));
  a = core_->TakeActions();
  to = To(a, 2);
  ASSERT_EQ(to.size(), 2u);
  EXPECT_EQ(to[0].line().kind(), Line::RENAME);
  EXPECT_EQ(to[0].line().from(), "alice");
  EXPECT_EQ(to[0].line().text(), "ALICE");
  EXPECT_EQ(to[1].line().from(), "ALICE");
  EXPECT_EQ(to[1].line().text(), "al");
  EXPECT_THAT(Logs(a), ElementsAre("alice is now known as ALICE", "ALICE is now known as al"));
  EXPECT_EQ(core_->NickOf(1), "al");
  // The old nick is free again.
  std::vector<ServerAction> c = Member(3, "alice");
  ASSERT_FALSE(To(c, 3).empty());
  EXPECT_TRUE(To(c, 3)[0].has_welcome());
}

TEST_F(ServerCoreTest, WhoListsMembersInJoinOrder) {
  Member(2, "zed");
  Member(1, "amy");
  core_->OnMessage(now_, 1, Who());
  std::vector<ServerMessage> to = To(core_->TakeActions(), 1);
  ASSERT_EQ(to.size(), 1u);
  EXPECT_THAT(to[0].who_reply().nicks(), ElementsAre("zed", "amy"));
  EXPECT_EQ(to[0].who_reply().count(), 2u);
}

// A room larger than the old 1024 cap, whose Welcome and /who answer stay
// small: the first kMaxListedNicks nicks in join order beside the count.
TEST_F(ServerCoreTest, WelcomeAndWhoListTheFirstNicksAndCountTheRoom) {
  ServerOptions o;
  o.max_members = 1500;
  o.max_pending = 1500;
  o.max_members_per_address = 1500;
  o.announce_limit = 0;  // keeps 1500 joins linear
  Make(o);
  ASSERT_EQ(o.max_members, 1500u);
  for (PeerId id = 1; id <= 1500; ++id) {
    core_->OnConnected(now_, id, "10.0.0.1:5000");
    core_->OnMessage(now_, id, Join(absl::StrCat("n", id)));
  }
  std::vector<ServerAction> a = core_->TakeActions();
  std::vector<ServerMessage> last = To(a, 1500);
  ASSERT_EQ(last.size(), 1u);  // the Welcome, no join lines (announce_limit 0)
  EXPECT_EQ(last[0].welcome().member_count(), 1500u);
  ASSERT_EQ(static_cast<size_t>(last[0].welcome().members_size()), kMaxListedNicks);
  EXPECT_EQ(last[0].welcome().members(0), "n1");
  EXPECT_EQ(last[0].welcome().members(kMaxListedNicks - 1), absl::StrCat("n", kMaxListedNicks));
  EXPECT_LT(a.back().bytes.size(), 4096u);
  core_->OnMessage(now_, 7, Leave());
  core_->OnMessage(now_, 1500, Who());
  std::vector<ServerMessage> who = To(core_->TakeActions(), 1500);
  ASSERT_EQ(who.size(), 1u);
  EXPECT_EQ(who[0].who_reply().count(), 1499u);
  ASSERT_EQ(static_cast<size_t>(who[0].who_reply().nicks_size()), kMaxListedNicks);
  EXPECT_EQ(who[0].who_reply().nicks(6), "n8");  // n7 left
}

TEST_F(ServerCoreTest, JoinsAndLeavesAreAnnouncedUpToTheAnnounceLimit) {
  ServerOptions o;
  o.announce_limit = 2;
  Make(o);
  Member(1, "a");
  std::vector<ServerAction> b = Member(2, "b");  // the room has 2: announced
  ASSERT_EQ(To(b, 1).size(), 1u);
  EXPECT_EQ(To(b, 1)[0].line().kind(), Line::JOIN);
  std::vector<ServerAction> c = Member(3, "c");  // 3: only c's Welcome
  EXPECT_THAT(To(c, 1), IsEmpty());
  ASSERT_EQ(To(c, 3).size(), 1u);
  EXPECT_EQ(To(c, 3)[0].welcome().member_count(), 3u);
  EXPECT_THAT(Logs(c), ElementsAre("c joined from 10.0.0.3:5000 (3 members)"));
  core_->OnMessage(now_, 3, Leave());  // 3 before it leaves: not announced
  EXPECT_THAT(To(core_->TakeActions(), 1), IsEmpty());
  core_->OnMessage(now_, 2, Leave());  // 2: announced
  std::vector<ServerMessage> to_a = To(core_->TakeActions(), 1);
  ASSERT_EQ(to_a.size(), 1u);
  EXPECT_EQ(to_a[0].line().kind(), Line::LEAVE);
  EXPECT_EQ(to_a[0].line().from(), "b");
  // Lines still reach everyone, numbered in one order.
  core_->OnMessage(now_, 1, Say("hi"));
  std::vector<ServerMessage> said = To(core_->TakeActions(), 1);
  ASSERT_EQ(said.size(), 1u);
  EXPECT_EQ(said[0].line().text(), "hi");
}

// Pending connections expire in deadline order, each exactly once, and one
// that joined in time is not touched.
TEST_F(ServerCoreTest, PendingConnectionsExpireInDeadlineOrder) {
  core_->OnConnected(now_, 5, "10.0.0.5:1");
  now_ += absl::Seconds(1);
  core_->OnConnected(now_, 3, "10.0.0.3:1");
  core_->OnConnected(now_, 4, "10.0.0.4:1");
  core_->OnMessage(now_, 4, Join("d"));
  (void)core_->TakeActions();
  EXPECT_EQ(core_->NextDeadline(), kStart + absl::Seconds(10));
  core_->OnTick(kStart + absl::Seconds(10));
  std::vector<ServerAction> a = core_->TakeActions();
  ASSERT_NE(FindClose(a, 5), nullptr);
  EXPECT_EQ(FindClose(a, 3), nullptr);
  EXPECT_EQ(core_->NextDeadline(), kStart + absl::Seconds(11));
  core_->OnTick(kStart + absl::Seconds(11));
  a = core_->TakeActions();
  ASSERT_NE(FindClose(a, 3), nullptr);
  EXPECT_EQ(FindClose(a, 4), nullptr);
  EXPECT_EQ(core_->NextDeadline(), absl::InfiniteFuture());
  EXPECT_EQ(core_->pending_count(), 0u);
  EXPECT_EQ(core_->member_count(), 1u);
}

TEST_F(ServerCoreTest, LeaveClosesFlushingAndTellsTheOthers) {
  Member(1, "alice");
  Member(2, "bob");
  core_->OnMessage(now_, 2, Leave());
  std::vector<ServerAction> a = core_->TakeActions();
  const ServerAction* close = FindClose(a, 2);
  ASSERT_NE(close, nullptr);
  EXPECT_EQ(close->reason, "left");
  EXPECT_TRUE(close->flush);
  std::vector<ServerMessage> to = To(a, 1);
  ASSERT_EQ(to.size(), 1u);
  EXPECT_EQ(to[0].line().kind(), Line::LEAVE);
  EXPECT_EQ(to[0].line().from(), "bob");
  EXPECT_EQ(to[0].line().text(), "");
  EXPECT_TRUE(To(a, 2).empty());
  EXPECT_THAT(Logs(a), ElementsAre("bob left (1 member)"));
  // The connection's own close afterwards changes nothing.
  core_->OnClosed(now_, 2, CloseCause::kClosedByPeer, "left");
  EXPECT_THAT(core_->TakeActions(), IsEmpty());
}

// "/quit REASON": the others get the reason on the leave line, trimmed and
// cut to kMaxLeaveReasonBytes at a character; the log escapes it.
TEST_F(ServerCoreTest, LeaveReasonReachesTheOthersCutAndTheLogEscaped) {
  Member(1, "alice");
  Member(2, "bob");
  core_->OnMessage(now_, 2, Leave("  gone fishing\x1b[2J "));
  std::vector<ServerAction> a = core_->TakeActions();
  std::vector<ServerMessage> to = To(a, 1);
  ASSERT_EQ(to.size(), 1u);
  EXPECT_EQ(to[0].line().kind(), Line::LEAVE);
  EXPECT_EQ(to[0].line().text(), "gone fishing\x1b[2J");
  EXPECT_THAT(Logs(a), ElementsAre("bob left (gone fishing\\x1b[2J) (1 member)"));
  // 199 ASCII bytes then a 2-byte character: cut before it, never refused.
  Member(3, "carol");
  core_->TakeActions();
  const std::string reason = std::string(kMaxLeaveReasonBytes - 1, 'r') + "\xc3\xa9" + "tail";
  core_->OnMessage(now_, 3, Leave(reason));
  to = To(core_->TakeActions(), 1);
  ASSERT_EQ(to.size(), 1u);
  EXPECT_EQ(to[0].line().text(), std::string(kMaxLeaveReasonBytes - 1, 'r'));
  EXPECT_EQ(core_->member_count(), 1u);
}

TEST_F(ServerCoreTest, ClosedConnectionsLeaveWithTheirCauseAndAnEscapedDetail) {
  Member(1, "alice");
  Member(2, "bob");
  Member(3, "carol");
  Member(4, "dave");
  core_->OnClosed(now_, 2, CloseCause::kTimedOut, "peer timeout");
  core_->OnClosed(now_, 3, CloseCause::kClosedByPeer, "bye\x1b[31m\n");
  core_->OnClosed(now_, 4, CloseCause::kLost, "");
  std::vector<ServerAction> a = core_->TakeActions();
  std::vector<ServerMessage> to = To(a, 1);
  ASSERT_EQ(to.size(), 3u);
  EXPECT_EQ(to[0].line().text(), "timed out");
  EXPECT_EQ(to[1].line().text(), "connection closed");
  EXPECT_EQ(to[2].line().text(), "connection lost");
  EXPECT_THAT(Logs(a), ElementsAre("bob left (timed out: peer timeout) (3 members)",
                                   "carol left (connection closed: bye\\x1b[31m\\x0a) (2 members)",
                                   "dave left (connection lost) (1 member)"));
}

TEST_F(ServerCoreTest, MalformedMessageFromAMemberClosesIt) {
  Member(1, "alice");
  Member(2, "bob");
  core_->OnMessage(now_, 2, "\x0a\xff\xff\xff\xff\xff");
  std::vector<ServerAction> a = core_->TakeActions();
  const ServerAction* close = FindClose(a, 2);
  ASSERT_NE(close, nullptr);
  EXPECT_EQ(close->reason, "protocol error: malformed chat message");
  std::vector<ServerMessage> to = To(a, 1);
  ASSERT_EQ(to.size(), 1u);
  EXPECT_EQ(to[0].line().kind(), Line::LEAVE);
  EXPECT_EQ(to[0].line().text(), "protocol error");
  EXPECT_EQ(core_->member_count(), 1u);
}

TEST_F(ServerCoreTest, SecondJoinAndEmptyMessagesAreNonFatalErrors) {
  Member(1, "alice");
  core_->OnMessage(now_, 1, Join("other"));
  core_->OnMessage(now_, 1, "");
  std::vector<ServerAction> a = core_->TakeActions();
  std::vector<ServerMessage> to = To(a, 1);
  ASSERT_EQ(to.size(), 2u);
  EXPECT_EQ(to[0].error().text(), "already joined as alice");
  EXPECT_FALSE(to[0].error().fatal());
  EXPECT_EQ(to[1].error().text(),
            "empty or unknown message (is the client newer than the server?)");
  EXPECT_EQ(FindClose(a, 1), nullptr);
}

TEST_F(ServerCoreTest, SendFailureDropsTheMember) {
  Member(1, "alice");
  Member(2, "bob");
  core_->OnSendFailed(now_, 2, "send queue full");
  std::vector<ServerAction> a = core_->TakeActions();
  const ServerAction* close = FindClose(a, 2);
  ASSERT_NE(close, nullptr);
  EXPECT_EQ(close->reason, "dropped: cannot keep up");
  EXPECT_FALSE(close->flush);
  EXPECT_EQ(To(a, 1).at(0).line().text(), "dropped");
  EXPECT_THAT(Logs(a), ElementsAre("bob left (dropped: send queue full) (1 member)"));
}

TEST_F(ServerCoreTest, ShutdownSaysGoodbyeAndClosesEveryone) {
  Member(1, "alice");
  core_->OnConnected(now_, 2, "10.0.0.2:5000");
  core_->TakeActions();
  core_->Shutdown(now_);
  std::vector<ServerAction> a = core_->TakeActions();
  EXPECT_THAT(Logs(a), ElementsAre("shutting down (1 member)"));
  std::vector<ServerMessage> to = To(a, 1);
  ASSERT_EQ(to.size(), 1u);
  EXPECT_EQ(to[0].line().kind(), Line::SYSTEM);
  EXPECT_EQ(to[0].line().text(), "server shutting down");
  ASSERT_NE(FindClose(a, 1), nullptr);
  EXPECT_TRUE(FindClose(a, 1)->flush);
  ASSERT_NE(FindClose(a, 2), nullptr);
  EXPECT_FALSE(FindClose(a, 2)->flush);
  EXPECT_EQ(core_->member_count(), 0u);
  EXPECT_EQ(core_->pending_count(), 0u);
}

// A sequencer that is not a local counter (as a shared one would be).
class EvenSequencer final : public Sequencer {
 public:
  uint64_t Next() override { return next_ += 2; }

 private:
  uint64_t next_ = 0;
};

TEST_F(ServerCoreTest, LineNumbersComeFromTheSequencer) {
  absl::StatusOr<std::unique_ptr<ServerCore>> core =
      ServerCore::Create(ServerOptions(), std::make_unique<EvenSequencer>());
  ASSERT_TRUE(core.ok());
  core_ = *std::move(core);
  Member(1, "alice");
  core_->OnMessage(now_, 1, Say("one"));
  core_->OnMessage(now_, 1, Say("two"));
  std::vector<ServerMessage> to = To(core_->TakeActions(), 1);
  ASSERT_EQ(to.size(), 2u);
  EXPECT_EQ(to[0].line().seq(), 4u);
  EXPECT_EQ(to[1].line().seq(), 6u);
}

// Issue 15: fan-out, fairness and per-address limits.

TEST(TokenBucketTest, SpendsItsBurstThenRefillsAtItsRate) {
  TokenBucket b(/*rate=*/2, /*burst=*/3, kStart);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(b.Has(kStart, 1)) << i;
    b.Take(1);
  }
  EXPECT_FALSE(b.Has(kStart, 1));
  EXPECT_FALSE(b.Has(kStart + absl::Milliseconds(499), 1));
  EXPECT_TRUE(b.Has(kStart + absl::Milliseconds(500), 1));
  EXPECT_TRUE(b.Has(kStart + absl::Hours(1), 3));
  EXPECT_FALSE(b.Has(kStart + absl::Hours(1), 3.5));  // never above the burst
  EXPECT_TRUE(b.Has(kStart, 3));                      // time never goes back
}

TEST(AddressKeyTest, Ipv4IsItselfAndIpv6CountsByItsSlash64) {
  EXPECT_EQ(AddressKey("10.1.2.3:5000"), "10.1.2.3");
  EXPECT_EQ(AddressKey("10.1.2.3:6000"), "10.1.2.3");
  EXPECT_EQ(AddressKey("[2001:db8::1]:5000"), "2001:db8::/64");
  EXPECT_EQ(AddressKey("[2001:db8::ffff:1]:5001"), "2001:db8::/64");
  EXPECT_EQ(AddressKey("[2001:db8:0:1::1]:5000"), "2001:db8:0:1::/64");
  EXPECT_EQ(AddressKey("[::ffff:10.1.2.3]:5000"), "10.1.2.3");
  EXPECT_EQ(AddressKey("2001:db8::7"), "2001:db8::/64");
  EXPECT_EQ(AddressKey("peer-1"), "peer-1");
  EXPECT_EQ(AddressKey("[oops"), "[oops");
}

TEST_F(ServerCoreTest, CreateRejectsBadFanOutAndRateOptions) {
  const std::vector<void (*)(ServerOptions&)> bad = {
      [](ServerOptions& o) { o.max_members_per_address = 0; },
      [](ServerOptions& o) { o.line_rate = 0; },
      [](ServerOptions& o) { o.line_burst = 0; },
      [](ServerOptions& o) { o.byte_rate = 0; },
      [](ServerOptions& o) { o.byte_burst = kMinByteBurst - 1; },
      [](ServerOptions& o) { o.send_window_bytes = 0; },
      [](ServerOptions& o) { o.max_backlog_bytes = kMinBacklogBytes - 1; },
      [](ServerOptions& o) { o.max_backlog_lines = 15; },
      [](ServerOptions& o) { o.max_held_bytes = o.max_backlog_bytes - 1; },
  };
  for (size_t i = 0; i < bad.size(); ++i) {
    ServerOptions o;
    bad[i](o);
    EXPECT_FALSE(o.Validate().ok()) << i;
  }
  EXPECT_TRUE(ServerOptions().Validate().ok());
}

// Today a line is copied into every member's send queue; now the core holds
// it once for all the members whose window is full, and hands each its copy
// as the member's acknowledgements open the window.
TEST_F(ServerCoreTest, ALineWaitingForFiftyMembersIsHeldOnce) {
  ServerOptions o;
  o.send_window_bytes = 1;  // one message in flight per member
  Make(o);
  constexpr int kMembers = 50;
  for (PeerId id = 1; id <= kMembers; ++id) Member(id, absl::StrCat("m", id));
  // Every member has its Welcome or a join line in flight: the window is full.
  const std::string text(4000, 'x');
  const uint64_t held_before = core_->held_bytes();  // join lines waiting
  core_->OnMessage(now_, 1, Say(text));
  EXPECT_THAT(To(core_->TakeActions(), 2), IsEmpty());
  // The big line is held once, not 50 times: the room's held bytes grow by
  // its size and one backlog entry per member.
  const uint64_t grew = core_->held_bytes() - held_before;
  EXPECT_GE(grew, text.size());
  EXPECT_LE(grew, text.size() + 64 + kMembers * kBacklogEntryBytes);
  // Acknowledgements release the backlog in order; the line arrives last.
  for (PeerId id = 1; id <= kMembers; ++id) {
    for (int k = 0; k < kMembers + 2; ++k) core_->OnAcked(now_, id, 1 << 20);
  }
  std::vector<ServerAction> a = core_->TakeActions();
  for (PeerId id = 1; id <= kMembers; ++id) {
    std::vector<ServerMessage> to = To(a, id);
    ASSERT_FALSE(to.empty()) << id;
    EXPECT_EQ(to.back().line().text(), text) << id;
    for (size_t k = 1; k < to.size(); ++k) {
      EXPECT_GT(to[k].line().seq(), to[k - 1].line().seq()) << id;
    }
  }
  EXPECT_EQ(core_->held_bytes(), 0u);
  EXPECT_EQ(core_->member_count(), static_cast<size_t>(kMembers));
}

TEST_F(ServerCoreTest, LinesBeyondTheRateLimitGetSlowDownAndGoNowhere) {
  ServerOptions o;
  o.line_rate = 2;
  o.line_burst = 5;
  Make(o);
  Member(1, "alice");
  Member(2, "bob");
  for (int i = 0; i < 8; ++i) core_->OnMessage(now_, 1, Say(absl::StrCat("line ", i)));
  std::vector<ServerAction> a = core_->TakeActions();
  EXPECT_EQ(To(a, 2).size(), 5u);  // the burst reaches bob
  std::vector<ServerMessage> alice = To(a, 1);
  ASSERT_EQ(alice.size(), 8u);  // five lines back and three refusals
  for (size_t k = 5; k < 8; ++k) {
    ASSERT_TRUE(alice[k].has_error()) << k;
    EXPECT_FALSE(alice[k].error().fatal());
    EXPECT_THAT(alice[k].error().text(), HasSubstr("slow down"));
  }
  // Half a second later one more line is allowed (2 per second).
  now_ += absl::Milliseconds(500);
  core_->OnMessage(now_, 1, Say("later"));
  a = core_->TakeActions();
  ASSERT_EQ(To(a, 2).size(), 1u);
  EXPECT_EQ(To(a, 2)[0].line().text(), "later");
  // The byte bucket limits too: 8 KiB burst, 1 KiB per second.
  o = ServerOptions();
  o.byte_rate = 1024;
  o.byte_burst = kMinByteBurst;
  Make(o);
  Member(1, "alice");
  core_->OnMessage(now_, 1, Say(std::string(4000, 'a')));
  core_->OnMessage(now_, 1, Say(std::string(4000, 'b')));
  core_->OnMessage(now_, 1, Say(std::string(4000, 'c')));
  alice = To(core_->TakeActions(), 1);
  ASSERT_EQ(alice.size(), 3u);
  EXPECT_TRUE(alice[0].has_line());
  EXPECT_TRUE(alice[1].has_line());
  EXPECT_THAT(alice[2].error().text(), HasSubstr("slow down"));
}

TEST_F(ServerCoreTest, FloodingFarBeyondTheLimitClosesTheMember) {
  ServerOptions o;
  o.line_burst = 5;
  o.flood_tolerance = 20;
  Make(o);
  Member(1, "alice");
  Member(2, "bob");
  for (int i = 0; i < 5 + 20; ++i) core_->OnMessage(now_, 1, Say("x"));
  std::vector<ServerAction> a = core_->TakeActions();
  EXPECT_EQ(FindClose(a, 1), nullptr);
  core_->OnMessage(now_, 1, Say("x"));
  a = core_->TakeActions();
  const ServerAction* close = FindClose(a, 1);
  ASSERT_NE(close, nullptr);
  EXPECT_THAT(close->reason, HasSubstr("flooding"));
  EXPECT_EQ(core_->member_count(), 1u);
  ASSERT_EQ(To(a, 2).size(), 1u);
  EXPECT_EQ(To(a, 2)[0].line().kind(), Line::LEAVE);
  EXPECT_EQ(To(a, 2)[0].line().text(), "flooding");
}

TEST_F(ServerCoreTest, AMemberWhoseBacklogOverflowsIsDroppedAndTheOthersStay) {
  ServerOptions o;
  o.send_window_bytes = 16 << 10;
  o.max_backlog_bytes = kMinBacklogBytes;
  o.line_burst = 1000;
  o.byte_burst = 1 << 20;
  Make(o);
  Member(1, "talker");
  Member(2, "fast");
  Member(3, "stuck");
  for (int i = 0; i < 40; ++i) {
    core_->OnMessage(now_, 1, Say(std::string(3000, 'a' + i % 26)));
    std::vector<ServerAction> a = core_->TakeActions();
    // talker and fast acknowledge all they get; stuck never does.
    for (const ServerAction& s : a) {
      if (s.type == Type::kSend && s.peer != 3) core_->OnAcked(now_, s.peer, s.bytes.size());
    }
    std::vector<ServerAction> more = core_->TakeActions();
    a.insert(a.end(), more.begin(), more.end());
    if (const ServerAction* close = FindClose(a, 3)) {
      EXPECT_EQ(close->reason, "dropped: cannot keep up");
      EXPECT_GT(i, 20);  // 16 KiB in flight + 64 KiB of backlog, 3 KB each
      EXPECT_THAT(Logs(a), Contains(HasSubstr("stuck left (dropped: backlog over")));
      break;
    }
    EXPECT_LE(core_->held_bytes(), o.max_backlog_bytes + 40 * kBacklogEntryBytes) << i;
  }
  EXPECT_THAT(core_->Members(), ElementsAre("talker", "fast"));
  EXPECT_EQ(core_->held_bytes(), 0u);
}

TEST_F(ServerCoreTest, TheRoomsHeldBytesHaveACap) {
  ServerOptions o;
  o.send_window_bytes = 1;
  o.max_backlog_bytes = kMinBacklogBytes;
  o.max_held_bytes = kMinBacklogBytes;
  o.line_burst = 1000;
  o.byte_burst = 1 << 20;
  Make(o);
  // Four members, each stuck, each getting private lines only: the lines
  // are not shared, so only the room cap bounds their sum.
  for (PeerId id = 1; id <= 4; ++id) Member(id, absl::StrCat("m", id));
  core_->TakeActions();
  for (int i = 0; i < 60; ++i) {
    const PeerId from = 1 + i % 4;
    const std::string to = absl::StrCat("m", 1 + (i + 1) % 4);
    core_->OnMessage(now_, from, Private(to, std::string(2000, 'p')));
    EXPECT_LE(core_->held_bytes(), o.max_held_bytes) << i;
  }
  EXPECT_LT(core_->member_count(), 4u);
}

TEST_F(ServerCoreTest, OneAddressCannotTakeEveryMemberSlot) {
  ServerOptions o;
  o.max_members_per_address = 2;
  Make(o);
  for (PeerId id = 1; id <= 3; ++id) {
    core_->OnConnected(now_, id, absl::StrCat("192.0.2.7:", 5000 + id));
    if (id < 3) core_->OnMessage(now_, id, Join(absl::StrCat("a", id)));
  }
  core_->TakeActions();
  core_->OnMessage(now_, 3, Join("a3"));
  std::vector<ServerAction> a = core_->TakeActions();
  std::vector<ServerMessage> to = To(a, 3);
  ASSERT_EQ(to.size(), 1u);
  EXPECT_TRUE(to[0].error().fatal());
  EXPECT_EQ(to[0].error().text(), "too many members from your address (at most 2)");
  ASSERT_NE(FindClose(a, 3), nullptr);
  // Another address still joins; IPv6 counts by /64.
  EXPECT_THAT(To(Member(4, "b"), 4).at(0).has_welcome(), true);
  a.clear();
  for (PeerId id = 5; id <= 7; ++id) {
    core_->OnConnected(now_, id, absl::StrCat("[2001:db8::", id, "]:1"));
    core_->OnMessage(now_, id, Join(absl::StrCat("v", id - 4)));
    std::vector<ServerAction> more = core_->TakeActions();
    a.insert(a.end(), more.begin(), more.end());
  }
  EXPECT_EQ(FindClose(a, 5), nullptr);
  EXPECT_EQ(FindClose(a, 6), nullptr);
  ASSERT_NE(FindClose(a, 7), nullptr);
  // A member leaving frees its address's slot.
  core_->OnClosed(now_, 1, CloseCause::kClosedByPeer, "");
  core_->OnConnected(now_, 8, "192.0.2.7:6000");
  core_->OnMessage(now_, 8, Join("a4"));
  EXPECT_TRUE(To(core_->TakeActions(), 8).at(0).has_welcome());
  EXPECT_THAT(core_->Members(), ElementsAre("a2", "b", "v1", "v2", "a4"));
}

TEST_F(ServerCoreTest, OneAddressCannotTakeEveryPendingSlot) {
  ServerOptions o;
  o.max_members_per_address = 2;
  o.max_pending = 10;
  Make(o);
  for (PeerId id = 1; id <= 3; ++id) core_->OnConnected(now_, id, "192.0.2.7:5000");
  std::vector<ServerAction> a = core_->TakeActions();
  EXPECT_EQ(FindClose(a, 1), nullptr);
  EXPECT_EQ(FindClose(a, 2), nullptr);
  ASSERT_NE(FindClose(a, 3), nullptr);
  EXPECT_EQ(FindClose(a, 3)->reason, "too many connections from your address waiting to join");
  EXPECT_EQ(core_->pending_count(), 2u);
  core_->OnConnected(now_, 4, "192.0.2.8:5000");
  EXPECT_EQ(core_->pending_count(), 3u);
}

}  // namespace
}  // namespace udpmsg::chat

// ---- taking a nick back (docs/security.md "Taking a nick back")

namespace udpmsg::chat {
namespace {

std::string JoinWithToken(const std::string& nick, const std::string& token) {
  ClientMessage m;
  m.mutable_join()->set_nick(nick);
  m.mutable_join()->set_resume_token(token);
  return m.SerializeAsString();
}

class TakeoverTest : public ServerCoreTest {
 protected:
  void SetUp() override {
    ServerOptions o;
    o.random_token = [this] { return std::string(kResumeTokenBytes, static_cast<char>('A' + tokens_++)); };
    Make(o);
  }
  // The resume token in `peer`'s Welcome among `actions`.
  static std::string TokenOf(const std::vector<ServerAction>& actions, PeerId peer) {
    for (const ServerMessage& m : To(actions, peer)) {
      if (m.has_welcome()) return m.welcome().resume_token();
    }
    return "";
  }
  static bool Welcomed(const std::vector<ServerAction>& actions, PeerId peer) {
    for (const ServerMessage& m : To(actions, peer)) {
      if (m.has_welcome()) return true;
    }
    return false;
  }
  static std::vector<std::string> LineTexts(const std::vector<ServerAction>& actions, PeerId peer) {
    std::vector<std::string> out;
    for (const ServerMessage& m : To(actions, peer)) {
      if (m.has_line()) {
        out.push_back(absl::StrCat(Line::Kind_Name(m.line().kind()), " ", m.line().from(), " ",
                                   m.line().text()));
      }
    }
    return out;
  }
  int tokens_ = 0;
};

TEST_F(TakeoverTest, TheWelcomeCarriesAFreshTokenThatTakesTheNickOverAtOnceFromAnyAddress) {
  const std::string token = TokenOf(Member(1, "alice"), 1);
  ASSERT_EQ(token.size(), kResumeTokenBytes);
  const std::string bob_token = TokenOf(Member(2, "bob"), 2);
  EXPECT_NE(bob_token, token);
  // A reconnect from another address (a new network) with alice's token.
  core_->OnConnected(now_, 3, "192.0.2.7:4000");
  core_->OnMessage(now_, 3, JoinWithToken("alice", token));
  std::vector<ServerAction> a = core_->TakeActions();
  ASSERT_TRUE(Welcomed(a, 3));
  EXPECT_NE(TokenOf(a, 3), token);  // a new one per membership
  const ServerAction* close = FindClose(a, 1);
  ASSERT_NE(close, nullptr);
  EXPECT_EQ(close->reason, "replaced by a new connection");
  EXPECT_THAT(LineTexts(a, 2), ElementsAre("SYSTEM  alice reconnected"));  // no leave, no join
  EXPECT_THAT(core_->Members(), ElementsAre("bob", "alice"));
  EXPECT_THAT(Logs(a), ElementsAre("alice reconnected from 192.0.2.7:4000 (replacing its old "
                                   "connection) (2 members)"));
  // The old connection's own end changes nothing; its token is spent.
  core_->OnClosed(now_, 1, CloseCause::kTimedOut, "");
  EXPECT_THAT(core_->TakeActions(), IsEmpty());
  core_->OnConnected(now_, 4, "192.0.2.8:4000");
  core_->OnMessage(now_, 4, JoinWithToken("alice", token));
  a = core_->TakeActions();
  EXPECT_FALSE(Welcomed(a, 4));
  ASSERT_EQ(To(a, 4).size(), 1u);
  EXPECT_EQ(To(a, 4)[0].error().text(), "nick \"alice\" is taken");
  EXPECT_EQ(core_->room().member_count(), 2u);
}

// A client that lost the path gave up on its connection and told the server
// so (CloseCause::kPeerTimedOut): the member is held, silent, for its token
// (resume_grace); the token within it is a reconnect, not a leave and a
// join; without it the member leaves with "timed out" when the grace ends.
TEST_F(TakeoverTest, AMemberWhoseClientTimedOutIsHeldForItsTokenThenLeaves) {
  const std::string token = TokenOf(Member(1, "alice"), 1);
  Member(2, "bob");
  Member(3, "carol");
  core_->TakeActions();
  const absl::Duration grace = ServerOptions().resume_grace;
  // Nothing is acknowledged here: alice's Welcome and lines are in flight,
  // and the hold releases them.
  const uint64_t before = core_->in_flight_bytes();
  core_->OnClosed(now_, 1, CloseCause::kPeerTimedOut, "no packets from 10.0.0.9:4000 for 2s");
  EXPECT_LT(core_->in_flight_bytes(), before);
  std::vector<ServerAction> a = core_->TakeActions();
  EXPECT_THAT(LineTexts(a, 2), IsEmpty());  // no leave line
  EXPECT_THAT(Logs(a), ElementsAre("alice's client timed out (no packets from 10.0.0.9:4000 "
                                   "for 2s): holding its nick for 10s for its resume token"));
  EXPECT_THAT(core_->Members(), ElementsAre("alice", "bob", "carol"));
  EXPECT_EQ(core_->NextDeadline(), now_ + grace);
  // Nothing goes to the held member, nor is counted in flight for it.
  const uint64_t in_flight = core_->in_flight_bytes();
  core_->OnMessage(now_, 2, Say("anyone there?"));
  a = core_->TakeActions();
  EXPECT_THAT(To(a, 1), IsEmpty());
  EXPECT_THAT(LineTexts(a, 3), ElementsAre("SAY bob anyone there?"));
  uint64_t sent = 0;  // to bob (his own line back) and carol
  for (const ServerAction& x : a) {
    if (x.type == Type::kSend) sent += x.bytes.size();
  }
  EXPECT_EQ(To(a, 2).size() + To(a, 3).size(), 2u);
  EXPECT_EQ(core_->in_flight_bytes(), in_flight + sent);
  // Its token within the grace: a reconnect; the dead connection gets no Close.
  core_->OnConnected(now_ + grace / 2, 4, "192.0.2.7:4000");
  core_->OnMessage(now_ + grace / 2, 4, JoinWithToken("alice", token));
  a = core_->TakeActions();
  ASSERT_TRUE(Welcomed(a, 4));
  EXPECT_EQ(FindClose(a, 1), nullptr);
  EXPECT_THAT(LineTexts(a, 2), ElementsAre("SYSTEM  alice reconnected"));
  EXPECT_THAT(core_->Members(), ElementsAre("bob", "carol", "alice"));
  EXPECT_EQ(core_->NextDeadline(), absl::InfiniteFuture());
  // bob's token never comes: he leaves when the grace ends, not before.
  const absl::Time later = now_ + grace / 2;
  // The detail is the peer's text: kept escaped in both log lines.
  core_->OnClosed(later, 2, CloseCause::kPeerTimedOut, "peer timeout\x1b[2J");
  EXPECT_THAT(Logs(core_->TakeActions()),
              ElementsAre("bob's client timed out (peer timeout\\x1b[2J): holding its nick "
                          "for 10s for its resume token"));
  core_->OnTick(later + grace - absl::Milliseconds(1));
  EXPECT_THAT(LineTexts(core_->TakeActions(), 3), IsEmpty());
  core_->OnTick(later + grace);
  a = core_->TakeActions();
  EXPECT_THAT(LineTexts(a, 3), ElementsAre("LEAVE bob timed out"));
  EXPECT_THAT(Logs(a), ElementsAre("bob left (timed out: peer timeout\\x1b[2J) (2 members)"));
  EXPECT_THAT(core_->Members(), ElementsAre("carol", "alice"));
  EXPECT_EQ(core_->NextDeadline(), absl::InfiniteFuture());
}

TEST_F(TakeoverTest, WithoutAResumeGraceATimedOutClientLeavesAtOnce) {
  ServerOptions o;
  o.resume_grace = absl::ZeroDuration();
  Make(o);
  Member(1, "alice");
  Member(2, "bob");
  core_->TakeActions();
  core_->OnClosed(now_, 1, CloseCause::kPeerTimedOut, "");
  EXPECT_THAT(LineTexts(core_->TakeActions(), 2), ElementsAre("LEAVE alice timed out"));
  o.resume_grace = -absl::Seconds(1);
  EXPECT_THAT(o.Validate().message(), HasSubstr("resume_grace"));
}

TEST_F(TakeoverTest, AnotherAddressWithoutTheTokenCannotTakeANickNorMakeAProbe) {
  Member(1, "alice");
  for (const std::string& token : {std::string(), std::string(kResumeTokenBytes, 'Z'),
                                   std::string(kMaxResumeTokenBytes + 1, 'A')}) {
    core_->OnConnected(now_, 9, "192.0.2.9:4000");
    core_->OnMessage(now_, 9, JoinWithToken("alice", token));
    std::vector<ServerAction> a = core_->TakeActions();
    ASSERT_EQ(To(a, 9).size(), 1u);
    EXPECT_TRUE(To(a, 9)[0].error().fatal());
    EXPECT_EQ(To(a, 9)[0].error().text(), "nick \"alice\" is taken");
    EXPECT_TRUE(To(a, 1).empty()) << "the holder was probed";
    EXPECT_EQ(core_->NextDeadline(), absl::InfiniteFuture());
    core_->OnClosed(now_, 9, CloseCause::kLost, "");
  }
}

TEST_F(TakeoverTest, ASilentHolderFromTheSameAddressIsProbedThenReplacedAfterTheProbeTimeout) {
  Member(1, "alice");  // 10.0.0.1
  Member(2, "bob");
  // alice's process was killed; a new one on the same host asks for alice.
  core_->OnConnected(now_, 5, "10.0.0.1:6000");
  core_->OnMessage(now_, 5, Join("alice"));
  std::vector<ServerAction> a = core_->TakeActions();
  EXPECT_FALSE(Welcomed(a, 5));
  std::vector<ServerMessage> to_alice = To(a, 1);
  ASSERT_EQ(to_alice.size(), 1u);
  EXPECT_TRUE(to_alice[0].has_probe());
  EXPECT_THAT(Logs(a), ElementsAre("10.0.0.1:6000 asks for the nick alice of a member from its "
                                   "address: probing that member"));
  const absl::Duration probe = ServerOptions().probe_timeout;
  EXPECT_EQ(core_->NextDeadline(), now_ + probe);
  // Whatever else the joiner sends meanwhile is ignored.
  core_->OnMessage(now_, 5, Join("alice"));
  EXPECT_THAT(core_->TakeActions(), IsEmpty());
  core_->OnTick(now_ + probe - absl::Milliseconds(1));
  EXPECT_THAT(core_->TakeActions(), IsEmpty());
  core_->OnTick(now_ + probe);
  a = core_->TakeActions();
  ASSERT_TRUE(Welcomed(a, 5));
  ASSERT_NE(FindClose(a, 1), nullptr);
  EXPECT_EQ(FindClose(a, 1)->reason, "replaced by a new connection");
  EXPECT_THAT(LineTexts(a, 2), ElementsAre("SYSTEM  alice reconnected"));
  EXPECT_THAT(core_->Members(), ElementsAre("bob", "alice"));
  EXPECT_EQ(core_->NickOf(5), "alice");
  EXPECT_EQ(core_->NextDeadline(), absl::InfiniteFuture());
}

TEST_F(TakeoverTest, ALiveHolderAnswersTheProbeAndKeepsItsNick) {
  for (const bool by_message : {false, true}) {
    SCOPED_TRACE(by_message ? "a message" : "an acknowledgement");
    Make(ServerOptions());
    Member(1, "alice");
    core_->OnConnected(now_, 5, "10.0.0.1:6000");
    core_->OnMessage(now_, 5, Join("alice"));
    std::vector<ServerAction> a = core_->TakeActions();
    ASSERT_EQ(To(a, 1).size(), 1u);
    const absl::Time answered = now_ + absl::Milliseconds(30);
    if (by_message) {
      core_->OnMessage(answered, 1, Say("still here"));
    } else {
      core_->OnAcked(answered, 1, a.front().bytes.size());
    }
    core_->TakeActions();
    core_->OnTick(now_ + ServerOptions().probe_timeout);
    a = core_->TakeActions();
    EXPECT_FALSE(Welcomed(a, 5));
    ASSERT_EQ(To(a, 5).size(), 1u);
    EXPECT_EQ(To(a, 5)[0].error().text(), "nick \"alice\" is taken");
    EXPECT_EQ(FindClose(a, 1), nullptr);
    EXPECT_EQ(core_->NickOf(1), "alice");
  }
}

// A held member's connection is gone: the probe a same-address join
// starts reaches nobody (nothing is sent to it), so the joiner takes the
// nick when the probe times out, and the dead connection gets no Close.
// The wait is on purpose: a tokenless joiner from the same address (a
// neighbour behind the same NAT) must not beat the token's owner, whose
// reconnect typically comes within a second of the hold.
TEST_F(TakeoverTest, ASameAddressJoinTakesAHeldMemberOverWhenTheProbeTimesOut) {
  Member(1, "alice");  // 10.0.0.1
  Member(2, "bob");
  core_->TakeActions();
  core_->OnClosed(now_, 1, CloseCause::kPeerTimedOut, "");
  core_->TakeActions();
  core_->OnConnected(now_, 5, "10.0.0.1:6000");
  core_->OnMessage(now_, 5, Join("alice"));
  std::vector<ServerAction> a = core_->TakeActions();
  EXPECT_THAT(To(a, 1), IsEmpty());
  EXPECT_FALSE(Welcomed(a, 5));
  const absl::Duration probe = ServerOptions().probe_timeout;
  ASSERT_LT(probe, ServerOptions().resume_grace);
  EXPECT_EQ(core_->NextDeadline(), now_ + probe);
  core_->OnTick(now_ + probe);
  a = core_->TakeActions();
  ASSERT_TRUE(Welcomed(a, 5));
  EXPECT_EQ(FindClose(a, 1), nullptr);
  EXPECT_THAT(LineTexts(a, 2), ElementsAre("SYSTEM  alice reconnected"));
  EXPECT_THAT(core_->Members(), ElementsAre("bob", "alice"));
  EXPECT_EQ(core_->NickOf(5), "alice");
  // The hold is over with it: its grace ends without a leave.
  EXPECT_EQ(core_->NextDeadline(), absl::InfiniteFuture());
  core_->OnTick(now_ + ServerOptions().resume_grace);
  EXPECT_THAT(core_->TakeActions(), IsEmpty());
}

// Shutdown tells every member with a connection and closes it; a held one
// has none and gets nothing, and its grace timer is gone.
TEST_F(TakeoverTest, ShutdownClosesTheLiveMembersAndSkipsAHeldOne) {
  Member(1, "alice");
  Member(2, "bob");
  core_->TakeActions();
  core_->OnClosed(now_, 1, CloseCause::kPeerTimedOut, "");
  core_->TakeActions();
  core_->Shutdown(now_);
  std::vector<ServerAction> a = core_->TakeActions();
  EXPECT_THAT(To(a, 1), IsEmpty());
  EXPECT_EQ(FindClose(a, 1), nullptr);
  ASSERT_NE(FindClose(a, 2), nullptr);
  EXPECT_EQ(FindClose(a, 2)->reason, "server shutting down");
  EXPECT_THAT(core_->Members(), IsEmpty());
  EXPECT_EQ(core_->NextDeadline(), absl::InfiniteFuture());
}

TEST_F(TakeoverTest, AJoinerThatLeavesDuringItsProbeTakesNothing) {
  Member(1, "alice");
  core_->OnConnected(now_, 5, "10.0.0.1:6000");
  core_->OnMessage(now_, 5, Join("alice"));
  core_->TakeActions();
  core_->OnClosed(now_, 5, CloseCause::kClosedByPeer, "");
  EXPECT_EQ(core_->NextDeadline(), absl::InfiniteFuture());
  core_->OnTick(now_ + 2 * ServerOptions().probe_timeout);
  std::vector<ServerAction> a = core_->TakeActions();
  EXPECT_EQ(FindClose(a, 1), nullptr);
  EXPECT_EQ(core_->NickOf(1), "alice");
  EXPECT_EQ(core_->pending_count(), 0u);
}

}  // namespace
}  // namespace udpmsg::chat
