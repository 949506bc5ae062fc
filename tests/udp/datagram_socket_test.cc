#include "udp/datagram_socket.h"

#include <errno.h>
#include <poll.h>

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "udp/errno_status.h"

namespace udpmsg::udp {
namespace {

using ::testing::HasSubstr;

// Waits (bounded) until `fd` is readable; returns false on timeout.
bool WaitReadable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 5000) == 1;
}

absl::StatusOr<DatagramSocket> BoundLoopback(AddressFamily family, bool non_blocking = true) {
  DatagramSocket::Options options;
  options.non_blocking = non_blocking;
  return DatagramSocket::Bind(SocketAddress::Loopback(family, 0), options);
}

// A loopback port nobody listens on (bound, noted, closed); empty on failure.
SocketAddress DeadPort(AddressFamily family) {
  absl::StatusOr<DatagramSocket> temp = BoundLoopback(family);
  if (!temp.ok()) return SocketAddress();
  absl::StatusOr<SocketAddress> local = temp->LocalAddress();
  return local.ok() ? *local : SocketAddress();
}

class DatagramSocketTest : public ::testing::TestWithParam<AddressFamily> {};

INSTANTIATE_TEST_SUITE_P(Families, DatagramSocketTest,
                         ::testing::Values(AddressFamily::kIpv4, AddressFamily::kIpv6),
                         [](const auto& info) { return std::string(FamilyName(info.param)); });

TEST_P(DatagramSocketTest, BindToPortZeroPicksAFreePort) {
  absl::StatusOr<DatagramSocket> socket = BoundLoopback(GetParam());
  ASSERT_TRUE(socket.ok()) << socket.status();
  absl::StatusOr<SocketAddress> local = socket->LocalAddress();
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_NE(local->port(), 0);
  EXPECT_EQ(local->family(), GetParam());
  EXPECT_TRUE(local->IsLoopback());
}

TEST_P(DatagramSocketTest, SendToAndRecvFromRoundTrip) {
  absl::StatusOr<DatagramSocket> a = BoundLoopback(GetParam());
  absl::StatusOr<DatagramSocket> b = BoundLoopback(GetParam());
  ASSERT_TRUE(a.ok() && b.ok());
  SocketAddress a_addr = *a->LocalAddress();
  SocketAddress b_addr = *b->LocalAddress();

  absl::StatusOr<size_t> sent = a->SendTo(b_addr, AsBytes("hello, datagram"));
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(*sent, 15u);

  ASSERT_TRUE(WaitReadable(b->fd()));
  std::array<uint8_t, 1500> buffer;
  absl::StatusOr<Datagram> got = b->RecvFrom(absl::MakeSpan(buffer));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(std::string(reinterpret_cast<char*>(buffer.data()), got->size), "hello, datagram");
  EXPECT_EQ(got->from, a_addr);
  EXPECT_FALSE(got->truncated);
}

TEST_P(DatagramSocketTest, EmptyDatagramIsDelivered) {
  absl::StatusOr<DatagramSocket> a = BoundLoopback(GetParam());
  absl::StatusOr<DatagramSocket> b = BoundLoopback(GetParam());
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(a->SendTo(*b->LocalAddress(), {}).ok());
  ASSERT_TRUE(WaitReadable(b->fd()));
  std::array<uint8_t, 16> buffer;
  absl::StatusOr<Datagram> got = b->RecvFrom(absl::MakeSpan(buffer));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->size, 0u);
}

TEST_P(DatagramSocketTest, RecvOnEmptyNonBlockingIsUnavailable) {
  absl::StatusOr<DatagramSocket> socket = BoundLoopback(GetParam());
  ASSERT_TRUE(socket.ok());
  std::array<uint8_t, 64> buffer;
  absl::StatusOr<Datagram> got = socket->RecvFrom(absl::MakeSpan(buffer));
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(got.status().message(), HasSubstr(socket->LocalAddress()->ToString()));
  EXPECT_EQ(ErrnoOf(got.status()), EAGAIN);
  EXPECT_FALSE(IsIcmpReportErrno(ErrnoOf(got.status())));
}

TEST_P(DatagramSocketTest, OversizedDatagramIsReportedTruncated) {
  absl::StatusOr<DatagramSocket> a = BoundLoopback(GetParam());
  absl::StatusOr<DatagramSocket> b = BoundLoopback(GetParam());
  ASSERT_TRUE(a.ok() && b.ok());
  std::string payload(100, 'x');
  ASSERT_TRUE(a->SendTo(*b->LocalAddress(), AsBytes(payload)).ok());
  ASSERT_TRUE(WaitReadable(b->fd()));
  std::array<uint8_t, 10> small;
  absl::StatusOr<Datagram> got = b->RecvFrom(absl::MakeSpan(small));
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->truncated);
  EXPECT_EQ(got->size, small.size());
}

TEST_P(DatagramSocketTest, BindConflictNamesTheAddressAndErrno) {
  absl::StatusOr<DatagramSocket> first = BoundLoopback(GetParam());
  ASSERT_TRUE(first.ok());
  SocketAddress taken = *first->LocalAddress();
  absl::StatusOr<DatagramSocket> second = DatagramSocket::Bind(taken, {});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(), HasSubstr(taken.ToString()));
  EXPECT_THAT(second.status().message(), HasSubstr(std::strerror(EADDRINUSE)));
}

TEST_P(DatagramSocketTest, ConnectedSocketSeesPortUnreachableAsRefused) {
  const SocketAddress dead = DeadPort(GetParam());
  ASSERT_TRUE(dead.valid());
  absl::StatusOr<DatagramSocket> socket = BoundLoopback(GetParam());
  ASSERT_TRUE(socket.ok());
  ASSERT_TRUE(socket->Connect(dead).ok());
  ASSERT_TRUE(socket->Send(AsBytes("anyone?")).ok());
  // The ICMP port-unreachable arrives as a socket error: readable, then ECONNREFUSED.
  ASSERT_TRUE(WaitReadable(socket->fd()));
  std::array<uint8_t, 64> buffer;
  absl::StatusOr<Datagram> got = socket->RecvFrom(absl::MakeSpan(buffer));
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(got.status().message(), HasSubstr(std::strerror(ECONNREFUSED)));
}

TEST_P(DatagramSocketTest, ErrorQueueNamesTheUnreachableDestination) {
  const SocketAddress dead = DeadPort(GetParam());
  ASSERT_TRUE(dead.valid());
  absl::StatusOr<DatagramSocket> socket = BoundLoopback(GetParam());
  ASSERT_TRUE(socket.ok());
  ASSERT_TRUE(socket->EnableErrorQueue().ok());
  // Nothing queued yet: an empty list, not an error.
  absl::StatusOr<std::vector<SocketError>> none = socket->ReadErrors(8);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->empty());
  // Unconnected: without the error queue this ICMP report would be lost.
  ASSERT_TRUE(socket->SendTo(dead, AsBytes("anyone?")).ok());
  pollfd p{socket->fd(), 0, 0};  // POLLERR is always reported
  ASSERT_EQ(::poll(&p, 1, 5000), 1);
  ASSERT_NE(p.revents & POLLERR, 0);
  // The report fails one receive, with an errno that IsIcmpReportErrno
  // recognises (a multi-peer socket carries on) ...
  std::array<uint8_t, 64> buffer;
  absl::StatusOr<Datagram> got = socket->RecvFrom(absl::MakeSpan(buffer));
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(ErrnoOf(got.status()), ECONNREFUSED) << got.status();
  EXPECT_TRUE(IsIcmpReportErrno(ErrnoOf(got.status())));
  // ... and waits in the error queue with the destination it concerns.
  absl::StatusOr<std::vector<SocketError>> errors = socket->ReadErrors(8);
  ASSERT_TRUE(errors.ok()) << errors.status();
  ASSERT_EQ(errors->size(), 1u);
  EXPECT_EQ((*errors)[0].destination, dead);
  EXPECT_EQ((*errors)[0].error, ECONNREFUSED);
  EXPECT_TRUE((*errors)[0].reporter.IsLoopback()) << (*errors)[0].reporter.ToString();
  // Then the socket is plainly empty, its queue too.
  got = socket->RecvFrom(absl::MakeSpan(buffer));
  EXPECT_TRUE(IsWouldBlock(got.status())) << got.status();
  errors = socket->ReadErrors(8);
  ASSERT_TRUE(errors.ok()) << errors.status();
  EXPECT_TRUE(errors->empty());
}

TEST_P(DatagramSocketTest, BatchOf64DatagramsArrivesIntactAndInOrder) {
  absl::StatusOr<DatagramSocket> a = BoundLoopback(GetParam());
  absl::StatusOr<DatagramSocket> b = BoundLoopback(GetParam());
  ASSERT_TRUE(a.ok() && b.ok());
  const SocketAddress to = *b->LocalAddress();
  constexpr size_t kCount = 64;
  std::vector<std::string> payloads;
  std::vector<OutgoingDatagram> batch;
  for (size_t i = 0; i < kCount; ++i) {
    payloads.push_back(absl::StrCat("datagram #", i, " ", std::string(i * 7, 'a' + i % 26)));
  }
  for (const std::string& p : payloads) batch.push_back({to, AsBytes(p)});

  absl::StatusOr<size_t> sent = a->SendBatch(batch);
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(*sent, kCount);

  std::vector<std::array<uint8_t, 2048>> buffers(kCount);
  std::vector<ReceiveSlot> slots(kCount);
  for (size_t i = 0; i < kCount; ++i) slots[i].buffer = absl::MakeSpan(buffers[i]);
  size_t received = 0;
  while (received < kCount) {
    ASSERT_TRUE(WaitReadable(b->fd())) << "after " << received;
    absl::StatusOr<size_t> n = b->RecvBatch(absl::MakeSpan(slots).subspan(received));
    ASSERT_TRUE(n.ok()) << n.status();
    received += *n;
  }
  for (size_t i = 0; i < kCount; ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(std::string(reinterpret_cast<char*>(buffers[i].data()), slots[i].size), payloads[i]);
    EXPECT_EQ(slots[i].from, *a->LocalAddress());
    EXPECT_FALSE(slots[i].truncated);
  }
}

TEST_P(DatagramSocketTest, BufferSizesCanBeSetAndRead) {
  absl::StatusOr<DatagramSocket> socket = BoundLoopback(GetParam());
  ASSERT_TRUE(socket.ok());
  ASSERT_TRUE(socket->SetReceiveBufferSize(64 * 1024).ok());
  ASSERT_TRUE(socket->SetSendBufferSize(32 * 1024).ok());
  // Linux doubles the request to account for bookkeeping overhead.
  EXPECT_GE(*socket->ReceiveBufferSize(), 64 * 1024);
  EXPECT_GE(*socket->SendBufferSize(), 32 * 1024);
}

TEST(DatagramSocketDualStackTest, Ipv6WildcardServesIpv4PeersAsPlainIpv4) {
  absl::StatusOr<DatagramSocket> server = DatagramSocket::Bind(
      SocketAddress::Any(AddressFamily::kIpv6, 0), {.non_blocking = true});
  ASSERT_TRUE(server.ok()) << server.status();
  const uint16_t port = server->LocalAddress()->port();
  absl::StatusOr<DatagramSocket> client = BoundLoopback(AddressFamily::kIpv4);
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE(client->SendTo(SocketAddress::Loopback(AddressFamily::kIpv4, port), AsBytes("v4"))
                  .ok());
  ASSERT_TRUE(WaitReadable(server->fd()));
  std::array<uint8_t, 64> buffer;
  absl::StatusOr<Datagram> got = server->RecvFrom(absl::MakeSpan(buffer));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->from.family(), AddressFamily::kIpv4);
  EXPECT_EQ(got->from, *client->LocalAddress());
  // The reply goes to the plain IPv4 address through the IPv6 socket.
  ASSERT_TRUE(server->SendTo(got->from, AsBytes("back")).ok());
  ASSERT_TRUE(WaitReadable(client->fd()));
  got = client->RecvFrom(absl::MakeSpan(buffer));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(std::string(reinterpret_cast<char*>(buffer.data()), got->size), "back");
}

TEST(DatagramSocketOpenTest, UnspecifiedFamilyIsInvalid) {
  absl::StatusOr<DatagramSocket> socket = DatagramSocket::Open(AddressFamily::kUnspecified, {});
  ASSERT_FALSE(socket.ok());
  EXPECT_EQ(socket.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace udpmsg::udp
