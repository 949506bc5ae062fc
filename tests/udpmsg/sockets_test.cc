// The plain sockets of the public API (udpmsg/datagram.h, stream.h, io.h,
// and the typed Resolve of address.h), reached through udpmsg/udpmsg.h alone:
// what the CLI's send/listen/tcp/showip commands and the benchmarks' raw UDP
// and TCP rely on. Loopback only; blocking calls on data already sent.
#include <array>
#include <cerrno>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "udpmsg/udpmsg.h"

namespace udpmsg {
namespace {

const SocketAddress kLoopback = SocketAddress::Loopback(AddressFamily::kIpv4, 0);

TEST(SocketsTest, DatagramRoundTripAndPollerReadiness) {
  absl::StatusOr<DatagramSocket> a = DatagramSocket::Bind(kLoopback, {});
  absl::StatusOr<DatagramSocket> b = DatagramSocket::Bind(kLoopback, {.non_blocking = true});
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  absl::StatusOr<SocketAddress> b_addr = b->LocalAddress();
  ASSERT_TRUE(b_addr.ok()) << b_addr.status();

  std::array<uint8_t, kMaxUdpPayloadIpv4> buffer;
  absl::StatusOr<Datagram> none = b->RecvFrom(absl::MakeSpan(buffer));
  ASSERT_FALSE(none.ok());
  EXPECT_TRUE(IsWouldBlock(none.status())) << none.status();

  absl::StatusOr<Poller> poller = Poller::Create();
  ASSERT_TRUE(poller.ok()) << poller.status();
  ASSERT_TRUE(poller->Add(b->fd(), Poller::kReadable, /*token=*/7).ok());

  absl::StatusOr<size_t> sent = a->SendTo(*b_addr, AsBytes("hello"));
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(*sent, 5u);
  absl::StatusOr<absl::Span<const Poller::Event>> ready = poller->Wait(absl::Seconds(5));
  ASSERT_TRUE(ready.ok()) << ready.status();
  ASSERT_EQ(ready->size(), 1u);
  EXPECT_EQ((*ready)[0].token, 7u);
  EXPECT_TRUE((*ready)[0].readable);

  absl::StatusOr<Datagram> got = b->RecvFrom(absl::MakeSpan(buffer));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(buffer.data()), got->size), "hello");
  EXPECT_EQ(got->from, *a->LocalAddress());
  EXPECT_FALSE(got->truncated);
}

TEST(SocketsTest, StreamListenerAcceptsAndBytesArriveInOrder) {
  absl::StatusOr<StreamListener> listener = StreamListener::Listen(kLoopback, /*backlog=*/4, {});
  ASSERT_TRUE(listener.ok()) << listener.status();
  absl::StatusOr<SocketAddress> at = listener->LocalAddress();
  ASSERT_TRUE(at.ok()) << at.status();
  absl::StatusOr<StreamSocket> client = StreamSocket::Connect(std::vector<SocketAddress>{*at});
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<AcceptedStream> accepted = listener->Accept();
  ASSERT_TRUE(accepted.ok()) << accepted.status();

  ASSERT_TRUE(client->SendAll(AsBytes("Hello, world!")).ok());
  ASSERT_TRUE(client->Shutdown(ShutdownHow::kWrite).ok());
  std::string received;
  std::array<uint8_t, 64> buffer;
  for (;;) {
    absl::StatusOr<size_t> n = accepted->socket.Recv(absl::MakeSpan(buffer));
    ASSERT_TRUE(n.ok()) << n.status();
    if (*n == 0) break;  // the client's orderly shutdown
    received.append(reinterpret_cast<const char*>(buffer.data()), *n);
  }
  EXPECT_EQ(received, "Hello, world!");
}

TEST(SocketsTest, StreamConnectToNothingNamesTheAddress) {
  EXPECT_EQ(StreamSocket::Connect({}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SocketsTest, ResolveTakesASocketTypeForTcp) {
  absl::StatusOr<std::vector<SocketAddress>> tcp =
      ResolveHostPort("127.0.0.1:80", AddressFamily::kIpv4, SocketType::kStream);
  ASSERT_TRUE(tcp.ok()) << tcp.status();
  ASSERT_EQ(tcp->size(), 1u);
  EXPECT_EQ(tcp->front().ToString(), "127.0.0.1:80");
  absl::StatusOr<std::vector<SocketAddress>> udp = ResolveHostPort("127.0.0.1:80");
  ASSERT_TRUE(udp.ok()) << udp.status();
  EXPECT_EQ(udp->front(), tcp->front());
  EXPECT_EQ(FamilyName(AddressFamily::kIpv6), "IPv6");
  EXPECT_FALSE(ResolveHostPort("127.0.0.1", AddressFamily::kIpv4, SocketType::kStream).ok());
}

TEST(SocketsTest, HostPortPortsAreCheckedNotWrapped) {
  // What the public header offers: one parser for HOST:PORT, destinations
  // 1..65535, and ResolveHostPort built on it.
  absl::StatusOr<HostPort> parsed = ParseHostPort("[::1]:9000");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->host, "::1");
  EXPECT_EQ(parsed->port, 9000);
  absl::StatusOr<std::vector<SocketAddress>> wrapped = ResolveHostPort("localhost:99999");
  ASSERT_FALSE(wrapped.ok()) << wrapped->front();
  EXPECT_EQ(wrapped.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(wrapped.status().message(),
            "port \"99999\" in \"localhost:99999\" is not a number from 1 to 65535");
  EXPECT_FALSE(ResolveHostPort("127.0.0.1:0").ok());
  EXPECT_EQ(*ParsePort("0"), 0);  // a local port: 0 picks a free one
  EXPECT_FALSE(ParsePort("0", PortRange::kDestination).ok());
}

TEST(SocketsTest, ErrnoStatusKeepsUnavailableForWouldBlock) {
  EXPECT_TRUE(IsWouldBlock(ErrnoStatus(EAGAIN, "recv")));
  const absl::Status refused = ErrnoStatus(ECONNREFUSED, "sendto 127.0.0.1:9");
  EXPECT_FALSE(IsWouldBlock(refused));
  EXPECT_THAT(std::string(refused.message()), ::testing::HasSubstr("sendto 127.0.0.1:9"));
  OwnedFd none;
  EXPECT_FALSE(none);
}

}  // namespace
}  // namespace udpmsg
