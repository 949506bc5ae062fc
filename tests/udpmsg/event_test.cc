// udpmsg::Event and CloseReason: the public view of the core's events.
#include <set>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "reliable/connection.h"
#include "udpmsg/core_bridge.h"
#include "udpmsg/udpmsg.h"

namespace udpmsg {
namespace {

TEST(CloseReasonTest, EveryReasonHasADistinctStableName) {
  std::set<std::string> names;
  for (CloseReason r : kAllCloseReasons) {
    const std::string name(CloseReasonName(r));
    EXPECT_FALSE(name.empty());
    EXPECT_NE(name, "?");
    EXPECT_TRUE(names.insert(name).second) << name;
  }
  EXPECT_EQ(names.size(), std::size(kAllCloseReasons));
  // The names applications may log or match on.
  EXPECT_EQ(CloseReasonName(CloseReason::kClosedByApplication), "closed by application");
  EXPECT_EQ(CloseReasonName(CloseReason::kClosedByPeer), "closed by peer");
  EXPECT_EQ(CloseReasonName(CloseReason::kIdleTimeout), "idle timeout");
  EXPECT_EQ(CloseReasonName(CloseReason::kHandshakeTimeout), "handshake timeout");
  EXPECT_EQ(CloseReasonName(CloseReason::kPeerTimeout), "peer timeout");
  EXPECT_EQ(CloseReasonName(CloseReason::kServerFull), "server full");
  EXPECT_EQ(CloseReasonName(CloseReason::kEncryptionMismatch), "encryption mismatch");
  EXPECT_EQ(CloseReasonName(CloseReason::kWrongRoomKey), "wrong room key");
  EXPECT_EQ(CloseReasonName(CloseReason::kPeerUnreachable), "peer unreachable");
  EXPECT_EQ(CloseReasonName(CloseReason::kProtocolError), "protocol error");
  EXPECT_EQ(CloseReasonName(CloseReason::kNumberSpaceExhausted), "number space exhausted");
  EXPECT_EQ(CloseReasonName(CloseReason::kInternalError), "internal error");
}

TEST(CloseReasonTest, EveryWireCodeAPeerCanSendMapsToAReasonNeverToACode) {
  // All 2^32 codes would take long; every defined one and a spread of others.
  for (uint32_t code = 0; code < 1000; ++code) {
    const CloseReason r = reliable::CloseReasonFromWire(code);
    EXPECT_NE(CloseReasonName(r), "?") << code;
  }
  EXPECT_EQ(reliable::CloseReasonFromWire(0xFFFFFFFFu), CloseReason::kClosedByPeer);
}

TEST(EventTest, EveryTypeAndFieldCarriesOver) {
  const reliable::Event::Type types[] = {
      reliable::Event::Type::kConnected, reliable::Event::Type::kMessage,
      reliable::Event::Type::kAcked, reliable::Event::Type::kClosed,
      reliable::Event::Type::kPathChanged};
  const Event::Type expected[] = {Event::Type::kConnected, Event::Type::kMessage,
                                  Event::Type::kAcked, Event::Type::kClosed,
                                  Event::Type::kPathChanged};
  const char* names[] = {"connected", "message", "acked", "closed", "path changed"};
  for (int i = 0; i < 5; ++i) {
    reliable::Event e;
    e.type = types[i];
    e.connection = 42;
    e.peer = SocketAddress::Loopback(AddressFamily::kIpv4, 9000);
    e.channel = 3;
    e.mode = DeliveryMode::kUnreliableSequenced;
    e.sequence = 77;
    e.message = "payload";
    e.bytes = 7;
    e.close_reason = CloseReason::kWrongRoomKey;
    e.reason = "why";
    e.by_peer = true;
    e.old_peer = SocketAddress::Loopback(AddressFamily::kIpv4, 8000);
    const Event out = FromReliableEvent(std::move(e));
    EXPECT_EQ(out.type, expected[i]);
    EXPECT_EQ(EventTypeName(out.type), names[i]);
    EXPECT_EQ(out.connection, 42u);
    EXPECT_EQ(out.peer.ToString(), "127.0.0.1:9000");
    EXPECT_EQ(out.channel, 3u);
    EXPECT_EQ(out.mode, DeliveryMode::kUnreliableSequenced);
    EXPECT_EQ(out.sequence, 77u);
    EXPECT_EQ(out.message, "payload");
    EXPECT_EQ(out.bytes, 7u);
    EXPECT_EQ(out.close_reason, CloseReason::kWrongRoomKey);
    EXPECT_EQ(out.reason, "why");
    EXPECT_TRUE(out.by_peer);
    EXPECT_EQ(out.old_peer.ToString(), "127.0.0.1:8000");
    EXPECT_EQ(reliable::EventTypeName(types[i]), names[i]);
  }
}

}  // namespace
}  // namespace udpmsg
