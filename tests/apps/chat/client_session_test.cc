// ClientSession without a network: the reconnect policy, the backoff's
// bounds, the resume token and the lines never acknowledged.
#include "apps/chat/client_session.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "apps/chat/chat.pb.h"
#include "apps/chat/rules.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace udpmsg::chat {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

const absl::Time kStart = absl::FromUnixSeconds(1'700'000'000);

std::string Welcome(const std::string& nick, const std::string& token) {
  ServerMessage m;
  m.mutable_welcome()->set_nick(nick);
  m.mutable_welcome()->add_members(nick);
  m.mutable_welcome()->set_member_count(1);
  m.mutable_welcome()->set_resume_token(token);
  return m.SerializeAsString();
}

Join SentJoin(const ClientSession& s) {
  ClientMessage m;
  EXPECT_TRUE(m.ParseFromString(s.JoinMessage()));
  return m.join();
}

TEST(ClassifyCloseTest, ShutdownIsReconnectedOtherServerClosesAreDeliberate) {
  EXPECT_EQ(ClassifyClose(false, true, "no packets for 10s"), EndCause::kLost);
  EXPECT_EQ(ClassifyClose(true, false, "server shutting down"), EndCause::kServerShutdown);
  EXPECT_EQ(ClassifyClose(true, false, "flooding: too many messages over the rate limit"),
            EndCause::kRefused);
  EXPECT_EQ(ClassifyClose(true, false, "replaced by a new connection"), EndCause::kRefused);
}

TEST(ClassifyCloseTest, TheServersTimeoutIsALostPathNotARefusal) {
  // The server gave up on us during an outage and says so when our next
  // packet reaches it: reconnect, as after our own timeout.
  EXPECT_EQ(ClassifyClose(true, true, "idle timeout: nothing received for 10s"),
            EndCause::kLost);
}

TEST(ClientSessionTest, TheFirstConnectionIsNeverRetried) {
  ClientSession s("alice", SessionOptions());
  EXPECT_FALSE(s.OnEnded(kStart, EndCause::kLost).reconnect);
  EXPECT_FALSE(s.OnEnded(kStart, EndCause::kAttemptFailed).reconnect);
}

TEST(ClientSessionTest, BackoffDoublesFromHalfASecondToThirtyWithJitterAndResetsWhenStable) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE(absl::StrCat("seed=", seed));
    SessionOptions o;
    o.seed = seed;
    ClientSession s("alice", o);
    absl::Time now = kStart;
    ASSERT_TRUE(s.OnServerMessage(now, Welcome("alice", std::string(16, 't'))).ok());
    ASSERT_TRUE(s.joined());
    absl::Duration d = absl::Milliseconds(500);
    for (int attempt = 0; attempt < 12; ++attempt) {
      ClientSession::Ended end =
          s.OnEnded(now, attempt == 0 ? EndCause::kLost : EndCause::kAttemptFailed);
      ASSERT_TRUE(end.reconnect);
      EXPECT_GE(end.delay, d / 2) << attempt;
      EXPECT_LE(end.delay, d) << attempt;
      now += end.delay;
      d = std::min(d * 2, absl::Seconds(30));
    }
    // Back in for 30 s: the next loss starts from half a second again.
    ASSERT_TRUE(s.OnServerMessage(now, Welcome("alice", std::string(16, 'u'))).ok());
    ClientSession::Ended end = s.OnEnded(now + absl::Seconds(30), EndCause::kServerShutdown);
    ASSERT_TRUE(end.reconnect);
    EXPECT_LE(end.delay, absl::Milliseconds(500));
    // A flapping connection (back in briefly) keeps backing off.
    ASSERT_TRUE(s.OnServerMessage(now, Welcome("alice", std::string(16, 'u'))).ok());
    end = s.OnEnded(now + absl::Seconds(1), EndCause::kLost);
    EXPECT_GE(end.delay, absl::Milliseconds(500));
  }
}

TEST(ClientSessionTest, DeliberateEndsAndReconnectFalseStop) {
  SessionOptions o;
  ClientSession s("alice", o);
  ASSERT_TRUE(s.OnServerMessage(kStart, Welcome("alice", "")).ok());
  EXPECT_FALSE(s.OnEnded(kStart, EndCause::kRefused).reconnect);
  o.reconnect = false;
  ClientSession off("bob", o);
  ASSERT_TRUE(off.OnServerMessage(kStart, Welcome("bob", "")).ok());
  EXPECT_FALSE(off.OnEnded(kStart, EndCause::kLost).reconnect);
  EXPECT_FALSE(off.OnEnded(kStart, EndCause::kServerShutdown).reconnect);
}

TEST(ClientSessionTest, RejoinsUnderTheCurrentNickWithTheWelcomesToken) {
  ClientSession s("alice", SessionOptions());
  EXPECT_EQ(SentJoin(s).nick(), "alice");
  EXPECT_EQ(SentJoin(s).resume_token(), "");
  const std::string token(16, '\x07');
  ASSERT_TRUE(s.OnServerMessage(kStart, Welcome("alice", token)).ok());
  EXPECT_TRUE(s.has_resume_token());
  ServerMessage rename;
  rename.mutable_line()->set_kind(Line::RENAME);
  rename.mutable_line()->set_from("alice");
  rename.mutable_line()->set_text("alicia");
  ASSERT_TRUE(s.OnServerMessage(kStart, rename.SerializeAsString()).ok());
  (void)s.OnEnded(kStart, EndCause::kLost);
  EXPECT_EQ(SentJoin(s).nick(), "alicia");
  EXPECT_EQ(SentJoin(s).resume_token(), token);
  // Tokens of the wrong size from a server are not kept.
  for (const std::string& bad : {std::string(15, 'x'), std::string(kMaxResumeTokenBytes + 1, 'x')}) {
    ClientSession t("carol", SessionOptions());
    ASSERT_TRUE(t.OnServerMessage(kStart, Welcome("carol", bad)).ok());
    EXPECT_FALSE(t.has_resume_token());
    EXPECT_EQ(SentJoin(t).resume_token(), "");
  }
}

TEST(ClientSessionTest, TheJoinCarriesTheLastLineNumberReceived) {
  ClientSession s("alice", SessionOptions());
  EXPECT_EQ(SentJoin(s).last_seq(), 0u);
  ASSERT_TRUE(s.OnServerMessage(kStart, Welcome("alice", std::string(16, 't'))).ok());
  for (uint64_t seq : {7, 9, 0, 8}) {  // 0: a notice outside the order
    ServerMessage line;
    line.mutable_line()->set_seq(seq);
    line.mutable_line()->set_from("bob");
    line.mutable_line()->set_text("hi");
    ASSERT_TRUE(s.OnServerMessage(kStart, line.SerializeAsString()).ok());
  }
  (void)s.OnEnded(kStart, EndCause::kLost);
  EXPECT_EQ(SentJoin(s).last_seq(), 9u);
}

TEST(ClientSessionTest, LinesNeverAcknowledgedAreReportedOnceEscapedAndBounded) {
  SessionOptions o;
  o.max_unconfirmed = 3;
  ClientSession s("alice", o);
  ASSERT_TRUE(s.OnServerMessage(kStart, Welcome("alice", "")).ok());
  s.OnSent(1, "one");
  s.OnSent(2, "two \x1b[2J");
  s.OnSent(3, "three");
  s.OnAcked(1);
  s.OnAcked(99);  // unknown: ignored
  s.OnSent(4, "four");
  s.OnSent(5, "five");  // beyond 3 kept texts: counted
  EXPECT_EQ(s.unconfirmed_count(), 4u);
  ClientSession::Ended end = s.OnEnded(kStart, EndCause::kLost);
  EXPECT_THAT(end.unconfirmed, ElementsAre("two \\x1b[2J", "three", "four"));
  EXPECT_EQ(end.unconfirmed_more, 1u);
  end = s.OnEnded(kStart, EndCause::kAttemptFailed);
  EXPECT_THAT(end.unconfirmed, IsEmpty());
  EXPECT_EQ(end.unconfirmed_more, 0u);
}

TEST(ClientSessionTest, OneServerAlwaysReconnectsToIt) {
  ClientSession s("alice", SessionOptions());
  EXPECT_EQ(s.server(), 0u);
  ASSERT_TRUE(s.OnServerMessage(kStart, Welcome("alice", std::string(16, 't'))).ok());
  for (EndCause cause : {EndCause::kLost, EndCause::kAttemptFailed, EndCause::kServerShutdown}) {
    EXPECT_TRUE(s.OnEnded(kStart, cause).reconnect);
    EXPECT_EQ(s.server(), 0u);
  }
}

TEST(ClientSessionTest, SeveralServersAreTriedRoundRobinWithTheBackoffAndTheToken) {
  SessionOptions o;
  o.servers = 3;
  ClientSession s("alice", o);
  EXPECT_EQ(s.server(), 0u);
  const std::string token(16, '\x05');
  ASSERT_TRUE(s.OnServerMessage(kStart, Welcome("alice", token)).ok());
  // Lost on server 0: the next attempt goes to 1, after the usual backoff.
  ClientSession::Ended end = s.OnEnded(kStart, EndCause::kLost);
  ASSERT_TRUE(end.reconnect);
  EXPECT_GE(end.delay, absl::Milliseconds(250));
  EXPECT_LE(end.delay, absl::Milliseconds(500));
  EXPECT_EQ(s.server(), 1u);
  // 1 refuses: 2, then around to 0, each after a longer wait.
  end = s.OnEnded(kStart, EndCause::kAttemptFailed);
  ASSERT_TRUE(end.reconnect);
  EXPECT_GE(end.delay, absl::Milliseconds(500));
  EXPECT_EQ(s.server(), 2u);
  end = s.OnEnded(kStart, EndCause::kAttemptFailed);
  ASSERT_TRUE(end.reconnect);
  EXPECT_GE(end.delay, absl::Seconds(1));
  EXPECT_EQ(s.server(), 0u);
  // Welcomed there: the join carries the token; a shutdown moves on too.
  EXPECT_EQ(SentJoin(s).resume_token(), token);
  ASSERT_TRUE(s.OnServerMessage(kStart, Welcome("alice", token)).ok());
  EXPECT_TRUE(s.OnEnded(kStart, EndCause::kServerShutdown).reconnect);
  EXPECT_EQ(s.server(), 1u);
  // A deliberate close stays where it is and stops.
  ASSERT_TRUE(s.OnServerMessage(kStart, Welcome("alice", token)).ok());
  EXPECT_FALSE(s.OnEnded(kStart, EndCause::kRefused).reconnect);
  EXPECT_EQ(s.server(), 1u);
}

TEST(ClientSessionTest, AFailedFirstConnectionTriesEveryServerOnceAtOnceThenStops) {
  for (bool reconnect : {true, false}) {
    SCOPED_TRACE(reconnect ? "reconnect" : "--reconnect=false");
    SessionOptions o;
    o.servers = 3;
    o.reconnect = reconnect;
    ClientSession s("alice", o);
    for (size_t next = 1; next < 3; ++next) {
      ClientSession::Ended end = s.OnEnded(kStart, EndCause::kAttemptFailed);
      ASSERT_TRUE(end.reconnect);
      EXPECT_EQ(end.delay, absl::ZeroDuration());
      EXPECT_EQ(s.server(), next);
    }
    EXPECT_FALSE(s.OnEnded(kStart, EndCause::kAttemptFailed).reconnect);
    EXPECT_EQ(s.attempts(), 0);
  }
  // A first connection that got in but lost (no Welcome), or was refused
  // on purpose, is not retried elsewhere.
  SessionOptions o;
  o.servers = 3;
  for (EndCause cause : {EndCause::kLost, EndCause::kRefused, EndCause::kServerShutdown}) {
    ClientSession s("alice", o);
    EXPECT_FALSE(s.OnEnded(kStart, cause).reconnect);
    EXPECT_EQ(s.server(), 0u);
  }
  // The second server welcomes: later losses go round from there.
  ClientSession s("alice", o);
  ASSERT_TRUE(s.OnEnded(kStart, EndCause::kAttemptFailed).reconnect);
  ASSERT_TRUE(s.OnServerMessage(kStart, Welcome("alice", std::string(16, 't'))).ok());
  ClientSession::Ended end = s.OnEnded(kStart, EndCause::kLost);
  ASSERT_TRUE(end.reconnect);
  EXPECT_GT(end.delay, absl::ZeroDuration());
  EXPECT_EQ(s.server(), 2u);
}

}  // namespace
}  // namespace udpmsg::chat
