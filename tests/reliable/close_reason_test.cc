// CloseReason and CongestionControl: the library's names for why a
// connection closed and which controller it runs, and their mapping to and
// from the wire.
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/frames.h"
#include "reliable/connection.h"
#include "reliable/endpoint.h"
#include "udp/socket_address.h"

namespace udpmsg::reliable {
namespace {

using ::testing::HasSubstr;

const absl::Time kStart = absl::FromUnixSeconds(1700000000);

TEST(CloseReasonTest, EveryReasonHasADistinctName) {
  std::set<std::string> names;
  for (CloseReason r : kAllCloseReasons) {
    const std::string name(CloseReasonName(r));
    EXPECT_NE(name, "?") << static_cast<int>(r);
    EXPECT_TRUE(names.insert(name).second) << "duplicate name " << name;
  }
  EXPECT_EQ(names.size(), static_cast<size_t>(CloseReason::kServerIdentityMismatch) + 1);
}

TEST(CloseReasonTest, EveryWireCodeMapsToItsReason) {
  struct Case {
    uint32_t code;
    CloseReason reason;
  } cases[] = {
      {proto::kCloseNormal, CloseReason::kClosedByPeer},
      {proto::kCloseIdleTimeout, CloseReason::kIdleTimeout},
      {proto::kCloseProtocolError, CloseReason::kProtocolError},
      {proto::kCloseTooManyRetransmissions, CloseReason::kPeerTimeout},
      {proto::kCloseApplication, CloseReason::kClosedByPeer},
      {proto::kCloseServerFull, CloseReason::kServerFull},
      {proto::kCloseNumberSpaceExhausted, CloseReason::kNumberSpaceExhausted},
      {proto::kClosePeerUnreachable, CloseReason::kClosedByPeer},  // never sent
      {proto::kCloseEncryptionMismatch, CloseReason::kEncryptionMismatch},
  };
  // Every code up to the largest defined one is listed.
  ASSERT_EQ(std::size(cases), size_t{proto::kCloseEncryptionMismatch} + 1);
  for (const Case& c : cases) {
    EXPECT_EQ(CloseReasonFromWire(c.code), c.reason) << "code " << c.code;
  }
  // A code this version does not know is the peer closing, not a crash.
  for (uint32_t unknown : {9u, 100u, 0xFFFFFFFFu}) {
    EXPECT_EQ(CloseReasonFromWire(unknown), CloseReason::kClosedByPeer) << unknown;
  }
}

TEST(CloseReasonTest, LocalReasonsSendCodesThatReadBackAsTheSameKindOfReason) {
  for (CloseReason r : kAllCloseReasons) {
    const uint32_t code = WireCloseCode(r);
    const CloseReason back = CloseReasonFromWire(code);
    switch (r) {
      case CloseReason::kClosedByApplication:
        EXPECT_EQ(back, CloseReason::kClosedByPeer);  // our application is their peer's
        break;
      case CloseReason::kHandshakeTimeout:
        EXPECT_EQ(back, CloseReason::kIdleTimeout);
        break;
      case CloseReason::kWrongRoomKey:  // detected by the client, never sent
      case CloseReason::kServerIdentityMismatch:
      case CloseReason::kInternalError:
        EXPECT_EQ(back, CloseReason::kProtocolError);
        break;
      case CloseReason::kPeerUnreachable:  // local only
        EXPECT_EQ(code, proto::kClosePeerUnreachable);
        break;
      default:
        EXPECT_EQ(back, r) << CloseReasonName(r);
    }
  }
}

TEST(CloseReasonTest, UnansweredHandshakeClosesWithHandshakeTimeout) {
  EndpointOptions options;
  options.seed = 5;
  options.connection.handshake_timeout = absl::Seconds(3);
  Endpoint client(kStart, options);
  absl::StatusOr<ConnectionId> id =
      client.Connect(kStart, udp::SocketAddress::Ipv4(0x0A000063u, 4000));
  ASSERT_TRUE(id.ok()) << id.status();
  client.TakeOutgoing();
  for (absl::Time t = kStart; t <= kStart + absl::Seconds(4); t += absl::Milliseconds(100)) {
    if (client.NextTimeout() <= t) client.OnTimeout(t);
    client.TakeOutgoing();
  }
  std::vector<Event> events = client.TakeEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, Event::Type::kClosed);
  EXPECT_EQ(events[0].close_reason, CloseReason::kHandshakeTimeout);
  EXPECT_FALSE(events[0].by_peer);
  EXPECT_THAT(events[0].reason, HasSubstr("timed out"));
}

TEST(CongestionControlTest, ParsesItsOwnNamesInAnyCase) {
  for (CongestionControl cc : {CongestionControl::kNewReno, CongestionControl::kBbr}) {
    absl::StatusOr<CongestionControl> parsed = ParseCongestionControl(CongestionControlName(cc));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, cc);
  }
  EXPECT_EQ(*ParseCongestionControl("BBR"), CongestionControl::kBbr);
  EXPECT_EQ(*ParseCongestionControl("NewReno"), CongestionControl::kNewReno);
}

TEST(CongestionControlTest, UnknownNameIsAnErrorListingTheValidOnes) {
  for (const char* bad : {"", "cubic", "newreno ", "bbr2"}) {
    absl::StatusOr<CongestionControl> parsed = ParseCongestionControl(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("newreno, bbr"));
  }
}

}  // namespace
}  // namespace udpmsg::reliable
