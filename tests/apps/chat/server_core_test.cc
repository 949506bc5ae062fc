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
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace udpmsg::chat {
namespace {

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
std::string Leave() {
  ClientMessage m;
  m.mutable_leave();
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

}  // namespace
}  // namespace udpmsg::chat
