// ClientCore and the input parser: server bytes in, display events out;
// typed lines in, ClientMessages out. Plus the text rules they rest on.
#include "apps/chat/client_core.h"

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "apps/chat/chat.pb.h"
#include "apps/chat/rules.h"
#include "apps/chat/text.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace udpmsg::chat {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Kind = DisplayLine::Kind;

TEST(RulesTest, NicksAndTexts) {
  EXPECT_TRUE(CheckNick("alice").ok());
  EXPECT_TRUE(CheckNick(std::string(kMaxNickBytes, 'a')).ok());
  EXPECT_FALSE(CheckNick("").ok());
  EXPECT_FALSE(CheckNick(std::string(kMaxNickBytes + 1, 'a')).ok());
  EXPECT_FALSE(CheckNick("a b").ok());
  EXPECT_FALSE(CheckNick("a\x7f").ok());
  EXPECT_THAT(std::string(CheckNick(std::string(50, '\x01')).message()), HasSubstr("\\x01\\x01"));
  EXPECT_THAT(std::string(CheckNick(std::string(50, 'x')).message()), HasSubstr("...\""));
  EXPECT_EQ(NickKey("BoB"), "bob");
  EXPECT_TRUE(CheckText("x").ok());
  EXPECT_TRUE(CheckText(std::string(kMaxTextBytes, 'x')).ok());
  EXPECT_FALSE(CheckText("").ok());
  EXPECT_FALSE(CheckText(std::string(kMaxTextBytes + 1, 'x')).ok());
}

// ---- input

ClientMessage Sent(const UserInput& in) {
  EXPECT_EQ(in.type, UserInput::Type::kSend) << in.error;
  ClientMessage m;
  EXPECT_TRUE(m.ParseFromString(in.message));
  return m;
}

TEST(ParseInputTest, PlainLinesAreSaid) {
  EXPECT_EQ(Sent(ParseInput("hello there")).say().text(), "hello there");
  EXPECT_EQ(Sent(ParseInput("hello\r")).say().text(), "hello");
  EXPECT_EQ(Sent(ParseInput("//etc/passwd")).say().text(), "/etc/passwd");
  EXPECT_EQ(Sent(ParseInput("bad \xff byte")).say().text(), "bad \xef\xbf\xbd byte");
  EXPECT_EQ(ParseInput("").type, UserInput::Type::kNothing);
  EXPECT_EQ(ParseInput("   \t").type, UserInput::Type::kNothing);
  UserInput long_line = ParseInput(std::string(kMaxTextBytes + 1, 'x'));
  EXPECT_EQ(long_line.type, UserInput::Type::kError);
  EXPECT_EQ(long_line.error, "message too long (4097 bytes, at most 4096)");
}

TEST(ParseInputTest, Commands) {
  EXPECT_EQ(ParseInput("/quit").type, UserInput::Type::kQuit);
  EXPECT_EQ(ParseInput("/EXIT").type, UserInput::Type::kQuit);
  EXPECT_EQ(ParseInput("/quit").reason, "");
  EXPECT_EQ(ParseInput("/quit   see you tomorrow  ").reason, "see you tomorrow");
  EXPECT_EQ(ParseInput("/exit bye").reason, "bye");
  // Bounded, cut at a character.
  const UserInput long_reason =
      ParseInput("/quit " + std::string(kMaxLeaveReasonBytes - 1, 'z') + "\xc3\xa9");
  EXPECT_EQ(long_reason.type, UserInput::Type::kQuit);
  EXPECT_EQ(long_reason.reason, std::string(kMaxLeaveReasonBytes - 1, 'z'));
  EXPECT_EQ(ParseInput("/stats").type, UserInput::Type::kStats);
  EXPECT_EQ(ParseInput("/help").type, UserInput::Type::kHelp);
  EXPECT_TRUE(Sent(ParseInput("/who")).has_who());
  EXPECT_EQ(Sent(ParseInput("/nick  bob ")).rename().nick(), "bob");
  EXPECT_EQ(Sent(ParseInput("/me   waves hello")).me().action(), "waves hello");
  ClientMessage m = Sent(ParseInput("/msg bob   psst there"));
  EXPECT_EQ(m.private_message().to(), "bob");
  EXPECT_EQ(m.private_message().text(), "psst there");
}

TEST(ParseInputTest, CommandErrors) {
  const std::pair<std::string, std::string> cases[] = {
      {"/nick", "usage: /nick NEW"},
      {"/nick a\x01", "nick \"a\\x01\" is invalid: use printable ASCII characters without spaces"},
      {"/me", "usage: /me ACTION"},
      {"/msg", "usage: /msg NICK TEXT"},
      {"/msg bob", "usage: /msg NICK TEXT"},
      {"/msg bob " + std::string(kMaxTextBytes + 1, 'x'),
       "message too long (4097 bytes, at most 4096)"},
      {"/frobnicate x", "unknown command /frobnicate (try /help)"},
      {"/\x1b[2J", "unknown command /\\x1b[2j (try /help)"},
  };
  for (const auto& [line, error] : cases) {
    UserInput in = ParseInput(line);
    EXPECT_EQ(in.type, UserInput::Type::kError) << line;
    EXPECT_EQ(in.error, error) << line;
  }
}

TEST(ParseInputTest, JoinAndLeaveMessages) {
  ClientMessage m;
  ASSERT_TRUE(m.ParseFromString(JoinMessage("alice")));
  EXPECT_EQ(m.join().nick(), "alice");
  ASSERT_TRUE(m.ParseFromString(LeaveMessage()));
  EXPECT_TRUE(m.has_leave());
  EXPECT_EQ(m.leave().reason(), "");
  ASSERT_TRUE(m.ParseFromString(LeaveMessage("lunch")));
  EXPECT_EQ(m.leave().reason(), "lunch");
  ASSERT_TRUE(m.ParseFromString(JoinMessage("alice", "0123456789abcdef")));
  EXPECT_EQ(m.join().resume_token(), "0123456789abcdef");
}

// ---- server messages

std::string Bytes(const ServerMessage& m) { return m.SerializeAsString(); }

ServerMessage LineMessage(Line::Kind kind, const std::string& from, const std::string& text,
                          uint64_t seq = 1) {
  ServerMessage m;
  Line* l = m.mutable_line();
  l->set_kind(kind);
  l->set_from(from);
  l->set_text(text);
  l->set_seq(seq);
  l->set_time_ms(1'700'000'000'123);
  return m;
}

ClientEvent Event(ClientCore& core, const ServerMessage& m) {
  absl::StatusOr<std::optional<ClientEvent>> e = core.OnServerMessage(Bytes(m));
  EXPECT_TRUE(e.ok()) << e.status();
  EXPECT_TRUE(e.ok() && e->has_value());
  return e.ok() && e->has_value() ? **e : ClientEvent();
}

TEST(ClientCoreTest, WelcomeSetsNickAndListsEscapedMembers) {
  ClientCore core("alice");
  EXPECT_FALSE(core.joined());
  ServerMessage m;
  m.mutable_welcome()->set_nick("Alice");
  m.mutable_welcome()->add_members("bob\x1b]0;pwned\x07");
  m.mutable_welcome()->add_members("Alice");
  ClientEvent e = Event(core, m);
  EXPECT_EQ(e.type, ClientEvent::Type::kWelcome);
  EXPECT_EQ(e.nick, "Alice");
  EXPECT_THAT(e.nicks, ElementsAre("bob\\x1b]0;pwned\\x07", "Alice"));
  EXPECT_EQ(e.member_count, 2u);  // an older server sends no count
  EXPECT_TRUE(core.joined());
  EXPECT_EQ(core.nick(), "Alice");
}

TEST(ClientCoreTest, ErrorsFatalAndNot) {
  ClientCore core("alice");
  ServerMessage m;
  m.mutable_error()->set_text("slow \x1b[5mdown");
  ClientEvent e = Event(core, m);
  EXPECT_EQ(e.type, ClientEvent::Type::kError);
  EXPECT_EQ(e.text, "slow \\x1b[5mdown");
  m.mutable_error()->set_fatal(true);
  m.mutable_error()->set_text("nick \"alice\" is taken\n");
  absl::StatusOr<std::optional<ClientEvent>> fatal = core.OnServerMessage(Bytes(m));
  EXPECT_TRUE(absl::IsFailedPrecondition(fatal.status()));
  EXPECT_EQ(fatal.status().message(), "nick \"alice\" is taken\\x0a");
}

TEST(ClientCoreTest, MalformedIsDataLossAndUnknownBodiesAreIgnored) {
  ClientCore core("alice");
  EXPECT_TRUE(absl::IsDataLoss(core.OnServerMessage("\x0a\xff\xff\xff").status()));
  EXPECT_TRUE(
      absl::IsDataLoss(core.OnServerMessage(std::string(kMaxMessageBytes + 1, '\0')).status()));
  absl::StatusOr<std::optional<ClientEvent>> e = core.OnServerMessage("");
  ASSERT_TRUE(e.ok());
  EXPECT_FALSE(e->has_value());
  // Field 99: a body this version does not know.
  e = core.OnServerMessage(std::string("\x9a\x06\x00", 3));
  ASSERT_TRUE(e.ok());
  EXPECT_FALSE(e->has_value());
}

TEST(ClientCoreTest, LinesOfEveryKindAreEscaped) {
  ClientCore core("alice");
  ClientEvent e = Event(core, LineMessage(Line::SAY, "b\x1b[1mob", "hi\r\nthere", 7));
  EXPECT_EQ(e.type, ClientEvent::Type::kLine);
  EXPECT_EQ(e.line.kind, Kind::kSay);
  EXPECT_EQ(e.line.seq, 7u);
  EXPECT_EQ(e.line.time, absl::FromUnixMillis(1'700'000'000'123));
  EXPECT_EQ(e.line.from, "b\\x1b[1mob");
  EXPECT_EQ(e.line.text, "hi\\x0d\\x0athere");
  EXPECT_EQ(Event(core, LineMessage(Line::ME, "bob", "waves")).line.kind, Kind::kMe);
  EXPECT_EQ(Event(core, LineMessage(Line::JOIN, "bob", "")).line.kind, Kind::kJoin);
  e = Event(core, LineMessage(Line::LEAVE, "bob", "timed out"));
  EXPECT_EQ(e.line.kind, Kind::kLeave);
  EXPECT_EQ(e.line.text, "timed out");
  e = Event(core, LineMessage(Line::SYSTEM, "", "server shutting down"));
  EXPECT_EQ(e.line.kind, Kind::kSystem);
  e = Event(core, LineMessage(static_cast<Line::Kind>(42), "x", "from the future"));
  EXPECT_EQ(e.line.kind, Kind::kSystem);
  EXPECT_EQ(e.line.text, "from the future");
}

TEST(ClientCoreTest, PrivateLinesKnowTheirDirection) {
  ClientCore core("alice");
  ServerMessage m = LineMessage(Line::PRIVATE, "ALICE", "psst");
  m.mutable_line()->set_to("bob\x07");
  ClientEvent e = Event(core, m);
  EXPECT_EQ(e.line.kind, Kind::kPrivateOut);
  EXPECT_EQ(e.line.to, "bob\\x07");
  m = LineMessage(Line::PRIVATE, "bob", "psst back");
  m.mutable_line()->set_to("alice");
  e = Event(core, m);
  EXPECT_EQ(e.line.kind, Kind::kPrivateIn);
  EXPECT_EQ(e.line.from, "bob");
  EXPECT_EQ(e.line.text, "psst back");
}

TEST(ClientCoreTest, RenameOfOurNickFollows) {
  ClientCore core("alice");
  ClientEvent e = Event(core, LineMessage(Line::RENAME, "bob", "robert"));
  EXPECT_EQ(e.line.kind, Kind::kRename);
  EXPECT_EQ(e.line.from, "bob");
  EXPECT_EQ(e.line.text, "robert");
  EXPECT_EQ(core.nick(), "alice");
  Event(core, LineMessage(Line::RENAME, "alice", "al"));
  EXPECT_EQ(core.nick(), "al");
  // Private lines from "al" are now ours.
  ServerMessage m = LineMessage(Line::PRIVATE, "al", "x");
  m.mutable_line()->set_to("bob");
  EXPECT_EQ(Event(core, m).line.kind, Kind::kPrivateOut);
}

TEST(ClientCoreTest, WhoReplyIsEscaped) {
  ClientCore core("alice");
  ServerMessage m;
  m.mutable_who_reply()->add_nicks("alice");
  m.mutable_who_reply()->add_nicks(
      "\xc2\x9b"
      "6n");
  ClientEvent e = Event(core, m);
  EXPECT_EQ(e.type, ClientEvent::Type::kWhoReply);
  EXPECT_THAT(e.nicks, ElementsAre("alice", "\\u009b6n"));
  EXPECT_EQ(e.member_count, 2u);
}

TEST(ClientCoreTest, WelcomeAndWhoReplyOfALargeRoomCarryItsSize) {
  ClientCore core("alice");
  ServerMessage m;
  m.mutable_welcome()->set_nick("alice");
  m.mutable_welcome()->add_members("bob");
  m.mutable_welcome()->set_member_count(100000);
  EXPECT_EQ(Event(core, m).member_count, 100000u);
  m.Clear();
  m.mutable_who_reply()->add_nicks("bob");
  m.mutable_who_reply()->set_count(5000);
  ClientEvent e = Event(core, m);
  EXPECT_EQ(e.member_count, 5000u);
  EXPECT_THAT(e.nicks, ElementsAre("bob"));
}

}  // namespace
}  // namespace udpmsg::chat
