// ServerOnHost: a ServerCore on a real udpmsg::Host over loopback, and the
// close-cause mapping shared by `udpmsg chat serve`, the demo and the
// simulator test.
#include "apps/chat/server_on_host.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "apps/chat/client_core.h"
#include "apps/chat/rules.h"
#include "apps/chat/sequencer.h"
#include "apps/chat/server_core.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "udpmsg/udpmsg.h"

namespace udpmsg::chat {
namespace {

using ::testing::HasSubstr;

TEST(CloseCauseForTest, TimeoutsOnOurSideReadTimedOutAndThePeersCloseReadsClosed) {
  EXPECT_EQ(CloseCauseFor(CloseReason::kIdleTimeout, false), CloseCause::kTimedOut);
  EXPECT_EQ(CloseCauseFor(CloseReason::kHandshakeTimeout, false), CloseCause::kTimedOut);
  EXPECT_EQ(CloseCauseFor(CloseReason::kPeerTimeout, false), CloseCause::kTimedOut);
  EXPECT_EQ(CloseCauseFor(CloseReason::kClosedByPeer, true), CloseCause::kClosedByPeer);
  // The peer's own timeouts: its client lost the path (held for its resume
  // token); any other reason of the peer's reads as a close by the peer.
  EXPECT_EQ(CloseCauseFor(CloseReason::kIdleTimeout, true), CloseCause::kPeerTimedOut);
  EXPECT_EQ(CloseCauseFor(CloseReason::kPeerTimeout, true), CloseCause::kPeerTimedOut);
  // (Never seen by_peer: the wire carries a handshake timeout as an idle one.)
  EXPECT_EQ(CloseCauseFor(CloseReason::kHandshakeTimeout, true), CloseCause::kPeerTimedOut);
  EXPECT_EQ(CloseCauseFor(CloseReason::kProtocolError, true), CloseCause::kClosedByPeer);
  EXPECT_EQ(CloseCauseFor(CloseReason::kProtocolError, false), CloseCause::kLost);
  EXPECT_EQ(CloseCauseFor(CloseReason::kClosedByApplication, false), CloseCause::kLost);
}

Host MakeHost(bool server) {
  HostOptions options;
  options.bind = SocketAddress::Loopback(AddressFamily::kIpv4, 0);
  options.accept_incoming = server;
  absl::StatusOr<Host> host = Host::Create(options);
  EXPECT_TRUE(host.ok()) << host.status();
  return *std::move(host);
}

TEST(ServerOnHostTest, AMemberJoinsSpeaksAndIsLoggedOverLoopback) {
  Host server_host = MakeHost(/*server=*/true);
  Host client_host = MakeHost(/*server=*/false);
  absl::StatusOr<std::unique_ptr<ServerCore>> core =
      ServerCore::Create(ServerOptions{}, std::make_unique<LocalSequencer>());
  ASSERT_TRUE(core.ok()) << core.status();
  std::vector<std::string> log;
  ServerOnHost server(&server_host, core->get(), [&](std::string line) { log.push_back(line); });

  absl::StatusOr<ConnectionId> id = client_host.Connect(server_host.local_address());
  ASSERT_TRUE(id.ok()) << id.status();
  ClientCore client("alice");
  std::vector<ClientEvent> seen;
  bool joined = false;
  bool said = false;
  // Bounded: every Poll returns within 10 ms, and 2000 turns is 20 s at most.
  for (int turn = 0; turn < 2000 && seen.size() < 3; ++turn) {
    absl::StatusOr<Host::PollResult> s = server_host.Poll(absl::Milliseconds(5));
    ASSERT_TRUE(s.ok()) << s.status();
    for (const Event& e : s->events) server.OnEvent(absl::Now(), e);
    server.OnTick(absl::Now());
    absl::StatusOr<Host::PollResult> c = client_host.Poll(absl::Milliseconds(5));
    ASSERT_TRUE(c.ok()) << c.status();
    for (const Event& e : c->events) {
      if (e.type == Event::Type::kConnected && !joined) {
        ASSERT_TRUE(
            client_host.Send(*id, kChannel, DeliveryMode::kReliableOrdered, client.JoinMessage())
                .ok());
        joined = true;
      }
      if (e.type == Event::Type::kMessage) {
        absl::StatusOr<std::optional<ClientEvent>> ev = client.OnServerMessage(e.message);
        ASSERT_TRUE(ev.ok()) << ev.status();
        if (ev->has_value()) seen.push_back(**ev);
      }
    }
    if (seen.size() == 2 && !said) {  // welcome and our join line: say something
      const UserInput say = ParseInput("hello over loopback");
      ASSERT_EQ(say.type, UserInput::Type::kSend);
      ASSERT_TRUE(
          client_host.Send(*id, kChannel, DeliveryMode::kReliableOrdered, say.message).ok());
      said = true;
    }
  }
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].type, ClientEvent::Type::kWelcome);
  EXPECT_EQ(seen[2].type, ClientEvent::Type::kLine);
  EXPECT_EQ(seen[2].line.kind, DisplayLine::Kind::kSay);
  EXPECT_EQ(seen[2].line.from, "alice");
  EXPECT_THAT(seen[2].line.text, HasSubstr("hello over loopback"));
  EXPECT_EQ(core->get()->member_count(), 1u);
  ASSERT_FALSE(log.empty());
  EXPECT_THAT(log.front(), HasSubstr("alice joined"));

  // Shutdown tells the member and closes its connection: the client sees
  // the server close it (bounded like the loop above).
  server.Shutdown(absl::Now());
  std::optional<Event> closed;
  for (int turn = 0; turn < 2000 && !closed; ++turn) {
    ASSERT_TRUE(server_host.Poll(absl::Milliseconds(5)).ok());
    absl::StatusOr<Host::PollResult> c = client_host.Poll(absl::Milliseconds(5));
    ASSERT_TRUE(c.ok()) << c.status();
    for (const Event& e : c->events) {
      if (e.type == Event::Type::kClosed) closed = e;
    }
  }
  ASSERT_TRUE(closed.has_value());
  EXPECT_TRUE(closed->by_peer);
  EXPECT_EQ(closed->close_reason, CloseReason::kClosedByPeer);
  EXPECT_THAT(closed->reason, HasSubstr("shutting down"));
}

}  // namespace
}  // namespace udpmsg::chat
