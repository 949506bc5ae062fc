#include "udp/poller.h"

#include <thread>

#include "gtest/gtest.h"
#include "udp/datagram_socket.h"

namespace udpmsg::udp {
namespace {

TEST(PollerTest, ReportsReadableSocketWithItsToken) {
  absl::StatusOr<Poller> poller = Poller::Create();
  ASSERT_TRUE(poller.ok()) << poller.status();
  absl::StatusOr<DatagramSocket> a =
      DatagramSocket::Bind(SocketAddress::Loopback(AddressFamily::kIpv4, 0), {});
  absl::StatusOr<DatagramSocket> b =
      DatagramSocket::Bind(SocketAddress::Loopback(AddressFamily::kIpv4, 0), {});
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(poller->Add(b->fd(), Poller::kReadable, 42).ok());

  absl::StatusOr<absl::Span<const Poller::Event>> ready = poller->Wait(absl::ZeroDuration());
  ASSERT_TRUE(ready.ok());
  EXPECT_TRUE(ready->empty());

  ASSERT_TRUE(a->SendTo(*b->LocalAddress(), AsBytes("x")).ok());
  ready = poller->Wait(absl::Seconds(5));
  ASSERT_TRUE(ready.ok());
  ASSERT_EQ(ready->size(), 1u);
  EXPECT_EQ((*ready)[0].token, 42u);
  EXPECT_TRUE((*ready)[0].readable);

  ASSERT_TRUE(poller->Remove(b->fd()).ok());
  ready = poller->Wait(absl::ZeroDuration());
  ASSERT_TRUE(ready.ok());
  EXPECT_TRUE(ready->empty());
}

TEST(PollerTest, WakeFromAnotherThreadEndsAnInfiniteWait) {
  absl::StatusOr<Poller> poller = Poller::Create();
  ASSERT_TRUE(poller.ok());
  std::thread waker([&] { poller->Wake(); });
  absl::StatusOr<absl::Span<const Poller::Event>> ready = poller->Wait(absl::InfiniteDuration());
  waker.join();
  ASSERT_TRUE(ready.ok());
  EXPECT_TRUE(ready->empty());  // the wake-up itself is not an event
}

TEST(PollerTest, RemovingAnUnknownDescriptorIsAnError) {
  absl::StatusOr<Poller> poller = Poller::Create();
  ASSERT_TRUE(poller.ok());
  EXPECT_FALSE(poller->Remove(0).ok());
}

}  // namespace
}  // namespace udpmsg::udp
