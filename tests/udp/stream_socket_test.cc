#include "udp/stream_socket.h"

#include <errno.h>
#include <poll.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "udp/datagram_socket.h"

namespace udpmsg::udp {
namespace {

using ::testing::HasSubstr;

class StreamSocketTest : public ::testing::TestWithParam<AddressFamily> {
 protected:
  void SetUp() override {
    absl::StatusOr<StreamListener> listener =
        StreamListener::Listen(SocketAddress::Loopback(GetParam(), 0), 16, {});
    ASSERT_TRUE(listener.ok()) << listener.status();
    listener_.emplace(*std::move(listener));
    address_ = *listener_->LocalAddress();
  }

  // Connects a client and accepts it; both ends.
  std::pair<StreamSocket, AcceptedStream> Pair() {
    absl::StatusOr<StreamSocket> client = StreamSocket::Connect({address_});
    EXPECT_TRUE(client.ok()) << client.status();
    absl::StatusOr<AcceptedStream> server = listener_->Accept();
    EXPECT_TRUE(server.ok()) << server.status();
    return {*std::move(client), *std::move(server)};
  }

  std::optional<StreamListener> listener_;
  SocketAddress address_;
};

INSTANTIATE_TEST_SUITE_P(Families, StreamSocketTest,
                         ::testing::Values(AddressFamily::kIpv4, AddressFamily::kIpv6),
                         [](const auto& info) { return std::string(FamilyName(info.param)); });

std::string ReadAll(StreamSocket& socket) {
  std::string result;
  char buffer[65536];
  for (;;) {
    absl::StatusOr<size_t> n =
        socket.Recv(absl::MakeSpan(reinterpret_cast<uint8_t*>(buffer), sizeof(buffer)));
    if (!n.ok()) {
      ADD_FAILURE() << n.status();
      return result;
    }
    if (*n == 0) return result;
    result.append(buffer, *n);
  }
}

TEST_P(StreamSocketTest, AcceptReportsThePeerAddressThatGetpeernameSees) {
  auto [client, server] = Pair();
  EXPECT_EQ(server.peer, *client.LocalAddress());
  EXPECT_EQ(*server.socket.PeerAddress(), server.peer);
  EXPECT_EQ(*client.PeerAddress(), address_);
}

TEST_P(StreamSocketTest, RecvReturnsZeroWhenPeerCloses) {
  auto [client, server] = Pair();
  ASSERT_TRUE(server.socket.SendAll(AsBytes("bye")).ok());
  { StreamSocket closing = std::move(server.socket); }
  EXPECT_EQ(ReadAll(client), "bye");
}

TEST_P(StreamSocketTest, ShutdownWriteSignalsEofButStillReads) {
  auto [client, server] = Pair();
  ASSERT_TRUE(client.SendAll(AsBytes("request")).ok());
  ASSERT_TRUE(client.Shutdown(ShutdownHow::kWrite).ok());
  EXPECT_EQ(ReadAll(server.socket), "request");  // EOF seen after the data
  ASSERT_TRUE(server.socket.SendAll(AsBytes("response")).ok());
  ASSERT_TRUE(server.socket.Shutdown(ShutdownHow::kBoth).ok());
  EXPECT_EQ(ReadAll(client), "response");
}

TEST_P(StreamSocketTest, SendAfterPeerShutdownReadAndCloseFailsWithBrokenPipe) {
  auto [client, server] = Pair();
  { StreamSocket closing = std::move(server.socket); }
  std::string big(1 << 20, 'z');
  absl::Status status = absl::OkStatus();
  // The first send may be buffered; the RST then fails a later one.
  for (int i = 0; i < 64 && status.ok(); ++i) status = client.SendAll(AsBytes(big));
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("send "));
  EXPECT_THAT(status.message(), HasSubstr(" of "));
}

TEST_P(StreamSocketTest, SendAllLoopsOverPartialSends) {
  auto [client, server] = Pair();
  ASSERT_TRUE(client.SetSendBufferSize(16 * 1024).ok());
  ASSERT_TRUE(server.socket.SetReceiveBufferSize(16 * 1024).ok());
  ASSERT_TRUE(client.SetNonBlocking(true).ok());

  std::string data(8 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 2654435761u) >> 13);

  // Nobody reads yet, so one send(2) cannot take 8 MiB: a partial send.
  absl::StatusOr<size_t> first = client.Send(AsBytes(data));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_GT(*first, 0u);
  EXPECT_LT(*first, data.size());

  std::string received;
  std::thread reader([&] { received = ReadAll(server.socket); });
  absl::Status sent = client.SendAll(AsBytes(data).subspan(*first));
  ASSERT_TRUE(client.Shutdown(ShutdownHow::kWrite).ok());
  reader.join();
  ASSERT_TRUE(sent.ok()) << sent;
  ASSERT_EQ(received.size(), data.size());
  EXPECT_TRUE(received == data) << "stream content differs";
}

TEST_P(StreamSocketTest, NonBlockingAcceptWithNothingPendingIsUnavailable) {
  absl::StatusOr<StreamListener> listener = StreamListener::Listen(
      SocketAddress::Loopback(GetParam(), 0), 4, {.non_blocking = true});
  ASSERT_TRUE(listener.ok());
  absl::StatusOr<AcceptedStream> accepted = listener->Accept();
  ASSERT_FALSE(accepted.ok());
  EXPECT_EQ(accepted.status().code(), absl::StatusCode::kUnavailable);
}

TEST_P(StreamSocketTest, ListenConflictNamesTheAddress) {
  absl::StatusOr<StreamListener> second =
      StreamListener::Listen(address_, 4, {.reuse_address = false});
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(second.status().message(), HasSubstr(address_.ToString()));
  EXPECT_THAT(second.status().message(), HasSubstr(std::strerror(EADDRINUSE)));
}

SocketAddress ClosedPort(AddressFamily family) {
  absl::StatusOr<StreamListener> temp =
      StreamListener::Listen(SocketAddress::Loopback(family, 0), 1, {});
  return *temp->LocalAddress();  // closed when `temp` goes out of scope
}

TEST_P(StreamSocketTest, ConnectTriesEveryAddressInOrder) {
  SocketAddress closed = ClosedPort(GetParam());
  absl::StatusOr<StreamSocket> client = StreamSocket::Connect({closed, address_});
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ(*client->PeerAddress(), address_);
}

TEST_P(StreamSocketTest, ConnectFailureListsEveryAttempt) {
  SocketAddress closed_a = ClosedPort(GetParam());
  SocketAddress closed_b = ClosedPort(GetParam());
  absl::StatusOr<StreamSocket> client = StreamSocket::Connect({closed_a, closed_b});
  ASSERT_FALSE(client.ok());
  EXPECT_THAT(client.status().message(), HasSubstr("connect " + closed_a.ToString()));
  EXPECT_THAT(client.status().message(), HasSubstr("connect " + closed_b.ToString()));
  EXPECT_THAT(client.status().message(), HasSubstr(std::strerror(ECONNREFUSED)));
}

TEST(StreamSocketConnectTest, EmptyAddressListIsInvalid) {
  absl::StatusOr<StreamSocket> client = StreamSocket::Connect({});
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(StreamSocketDualStackTest, Ipv6WildcardListenerAcceptsIpv4) {
  absl::StatusOr<StreamListener> listener =
      StreamListener::Listen(SocketAddress::Any(AddressFamily::kIpv6, 0), 4, {});
  ASSERT_TRUE(listener.ok());
  const uint16_t port = listener->LocalAddress()->port();
  absl::StatusOr<StreamSocket> client =
      StreamSocket::Connect({SocketAddress::Loopback(AddressFamily::kIpv4, port)});
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<AcceptedStream> accepted = listener->Accept();
  ASSERT_TRUE(accepted.ok());
  EXPECT_EQ(accepted->peer.family(), AddressFamily::kIpv4);
  EXPECT_EQ(accepted->peer, *client->LocalAddress());
}

}  // namespace
}  // namespace udpmsg::udp
