#include "udp/datagram_socket.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sys/socket.h>

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "udp/errno_status.h"
#include "udp/socket_options.h"

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

// `count` datagrams of `size` bytes (the last `last` bytes), each filled
// with its own pattern, so a misplaced byte shows.
std::vector<std::string> TrainPayloads(size_t count, size_t size, size_t last) {
  std::vector<std::string> payloads;
  for (size_t i = 0; i < count; ++i) {
    std::string p(i + 1 == count ? last : size, '\0');
    for (size_t j = 0; j < p.size(); ++j) p[j] = static_cast<char>(i * 31 + j * 7);
    payloads.push_back(std::move(p));
  }
  return payloads;
}

// `count` non-blocking loopback sockets with receive buffers asked for 4 MiB
// (the kernel caps them at net.core.rmem_max).
void BindReceivers(AddressFamily family, int count, std::vector<DatagramSocket>* out) {
  DatagramSocket::Options options;
  options.non_blocking = true;
  options.receive_buffer_bytes = 4 << 20;
  for (int i = 0; i < count; ++i) {
    absl::StatusOr<DatagramSocket> r =
        DatagramSocket::Bind(SocketAddress::Loopback(family, 0), options);
    ASSERT_TRUE(r.ok()) << r.status();
    out->push_back(*std::move(r));
  }
}

std::vector<absl::Span<const uint8_t>> Spans(const std::vector<std::string>& payloads) {
  std::vector<absl::Span<const uint8_t>> spans;
  for (const std::string& p : payloads) spans.push_back(AsBytes(p));
  return spans;
}

// What RecvBatch hands over until `expected` datagrams are in, split with
// SplitSegments; `coalesced` counts the buffers that held several.
struct Received {
  std::vector<std::string> datagrams;
  std::vector<SocketAddress> from;
  size_t coalesced = 0;
};
Received ReceiveDatagrams(DatagramSocket& socket, size_t expected) {
  Received r;
  std::vector<uint8_t> memory(4 * DatagramSocket::kCoalescedBufferBytes);
  std::vector<ReceiveSlot> slots(4);
  for (size_t i = 0; i < slots.size(); ++i) {
    slots[i].buffer = absl::MakeSpan(memory).subspan(i * DatagramSocket::kCoalescedBufferBytes,
                                                     DatagramSocket::kCoalescedBufferBytes);
  }
  while (r.datagrams.size() < expected) {
    if (!WaitReadable(socket.fd())) {
      ADD_FAILURE() << "only " << r.datagrams.size() << " of " << expected << " datagrams";
      break;
    }
    absl::StatusOr<size_t> n = socket.RecvBatch(absl::MakeSpan(slots));
    if (!n.ok()) {
      ADD_FAILURE() << n.status();
      break;
    }
    for (size_t i = 0; i < *n; ++i) {
      EXPECT_FALSE(slots[i].truncated);
      if (slots[i].segment_size != 0) ++r.coalesced;
      SplitSegments(slots[i], [&](absl::Span<const uint8_t> d) {
        r.datagrams.emplace_back(reinterpret_cast<const char*>(d.data()), d.size());
        r.from.push_back(slots[i].from);
      });
    }
  }
  return r;
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

TEST_P(DatagramSocketTest, GsoTrainArrivesAsSeparateDatagramsAtAPlainSocket) {
  absl::StatusOr<DatagramSocket> a = BoundLoopback(GetParam());
  absl::StatusOr<DatagramSocket> b = BoundLoopback(GetParam());
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(a->EnableSegmentation().ok()) << "UDP GSO is available on the kernels we test on";
  const std::vector<std::string> payloads = TrainPayloads(11, 1000, 300);
  const std::vector<absl::Span<const uint8_t>> spans = Spans(payloads);
  const OutgoingTrain train{*b->LocalAddress(), spans};
  absl::StatusOr<size_t> sent = a->SendTrains(absl::MakeConstSpan(&train, 1));
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(*sent, payloads.size());
  EXPECT_TRUE(a->segmentation_enabled());

  // b reads one datagram per call (no GRO): the kernel cut the train.
  std::array<uint8_t, 2048> buffer;
  for (size_t i = 0; i < payloads.size(); ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(WaitReadable(b->fd()));
    absl::StatusOr<Datagram> got = b->RecvFrom(absl::MakeSpan(buffer));
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(std::string(reinterpret_cast<char*>(buffer.data()), got->size), payloads[i]);
  }
  absl::StatusOr<Datagram> extra = b->RecvFrom(absl::MakeSpan(buffer));
  EXPECT_TRUE(IsWouldBlock(extra.status())) << "nothing more";
}

TEST_P(DatagramSocketTest, GroSocketGetsTheTrainCoalescedAndSplitsItBack) {
  absl::StatusOr<DatagramSocket> a = BoundLoopback(GetParam());
  absl::StatusOr<DatagramSocket> b = BoundLoopback(GetParam());
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(a->EnableSegmentation().ok());
  ASSERT_TRUE(b->EnableCoalescing().ok());
  // The largest train: 64 datagrams within the family's payload limit.
  const size_t segment = (DatagramSocket::MaxTrainBytes(*b->LocalAddress()) - 17) / 64;
  const std::vector<std::string> payloads = TrainPayloads(64, segment, 17);
  const std::vector<absl::Span<const uint8_t>> spans = Spans(payloads);
  const OutgoingTrain train{*b->LocalAddress(), spans};
  absl::StatusOr<size_t> sent = a->SendTrains(absl::MakeConstSpan(&train, 1));
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(*sent, 64u);

  Received r = ReceiveDatagrams(*b, payloads.size());
  EXPECT_EQ(r.datagrams, payloads);
  for (const SocketAddress& from : r.from) EXPECT_EQ(from, *a->LocalAddress());
  // Loopback hands a GSO train to a GRO socket as it was sent.
  EXPECT_EQ(r.coalesced, 1u);
}

TEST_P(DatagramSocketTest, TrainsToSeveralPeersGoInOneCall) {
  absl::StatusOr<DatagramSocket> a = BoundLoopback(GetParam());
  absl::StatusOr<DatagramSocket> b = BoundLoopback(GetParam());
  absl::StatusOr<DatagramSocket> c = BoundLoopback(GetParam());
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  ASSERT_TRUE(a->EnableSegmentation().ok());
  ASSERT_TRUE(c->EnableCoalescing().ok());
  const std::vector<std::string> to_b1 = TrainPayloads(5, 1200, 1200);
  const std::vector<std::string> to_c = TrainPayloads(3, 700, 2);
  const std::vector<std::string> to_b2 = TrainPayloads(1, 90, 90);
  const std::vector<absl::Span<const uint8_t>> s1 = Spans(to_b1), s2 = Spans(to_c),
                                               s3 = Spans(to_b2);
  const std::vector<OutgoingTrain> trains = {
      {*b->LocalAddress(), s1}, {*c->LocalAddress(), s2}, {*b->LocalAddress(), s3}};
  absl::StatusOr<size_t> sent = a->SendTrains(trains);
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(*sent, 9u);

  std::vector<std::string> want_b = to_b1;
  want_b.push_back(to_b2[0]);
  EXPECT_EQ(ReceiveDatagrams(*b, want_b.size()).datagrams, want_b);
  EXPECT_EQ(ReceiveDatagrams(*c, to_c.size()).datagrams, to_c);
}

// Trains are copied into the socket's contiguous buffer until kGatherBytes
// of them; the rest wait for the next call. Each datagram arrives whole,
// in order.
TEST_P(DatagramSocketTest, ACallTakesTrainsUpToTheGatherBudgetAndTheNextCallTheRest) {
  absl::StatusOr<DatagramSocket> a = BoundLoopback(GetParam());
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(a->EnableSegmentation().ok());
  // Three receivers, two trains each, so that what one call sends waits
  // unread within a default receive buffer (net.core.rmem_max 208 KiB).
  std::vector<DatagramSocket> receivers;
  ASSERT_NO_FATAL_FAILURE(BindReceivers(GetParam(), 3, &receivers));
  // Six trains of 40 x 1,400 bytes (56,000 each; four fit in 256 KiB), the
  // last datagram of each a little shorter, and a lone datagram (never
  // gathered) after the second.
  std::vector<std::vector<std::string>> payloads;
  std::vector<size_t> to;
  for (int t = 0; t < 6; ++t) {
    payloads.push_back(TrainPayloads(40, 1400, 1400 - 10 * t));
    for (std::string& p : payloads.back()) p[0] = static_cast<char>('A' + t);
    to.push_back(t / 2);
    if (t == 1) {
      payloads.push_back({std::string(300, 'z')});
      to.push_back(0);
    }
  }
  ASSERT_GT(5 * 56000u, DatagramSocket::kGatherBytes);
  ASSERT_LE(4 * 56000u, DatagramSocket::kGatherBytes);
  std::vector<std::vector<absl::Span<const uint8_t>>> spans;
  for (const std::vector<std::string>& p : payloads) spans.push_back(Spans(p));
  std::vector<OutgoingTrain> trains;
  std::vector<std::vector<std::string>> want(3);
  size_t total = 0;
  for (size_t t = 0; t < payloads.size(); ++t) {
    trains.push_back({*receivers[to[t]].LocalAddress(), spans[t]});
    want[to[t]].insert(want[to[t]].end(), payloads[t].begin(), payloads[t].end());
    total += payloads[t].size();
  }
  // Four trains and the lone datagram; the fifth train would not fit.
  absl::StatusOr<size_t> sent = a->SendTrains(trains);
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(*sent, 4 * 40 + 1u);
  EXPECT_EQ(a->gathered_trains(), 4u);
  EXPECT_EQ(a->copied_trains(), 4u);  // separate strings: copied
  for (size_t i = 0; i < 2; ++i) {
    SCOPED_TRACE(absl::StrCat("receiver ", i));
    EXPECT_EQ(ReceiveDatagrams(receivers[i], want[i].size()).datagrams, want[i]);
  }
  // The next call has the whole buffer again: the last two trains.
  sent = a->SendTrains(absl::MakeConstSpan(trains).subspan(5));
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(*sent, 80u);
  EXPECT_EQ(a->gathered_trains(), 6u);
  EXPECT_EQ(ReceiveDatagrams(receivers[2], 80).datagrams, want[2]);
  EXPECT_EQ(total, 4 * 40 + 1 + 80u);
}

// Trains whose datagrams lie back to back in the caller's memory go from
// there: nothing is copied, so the gather budget does not cut the call.
TEST_P(DatagramSocketTest, BackToBackTrainsGoUncopiedAndPastTheGatherBudget) {
  absl::StatusOr<DatagramSocket> a = BoundLoopback(GetParam());
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(a->EnableSegmentation().ok());
  // Three receivers, two trains each, so that what one call sends waits
  // unread within a default receive buffer (net.core.rmem_max 208 KiB).
  std::vector<DatagramSocket> receivers;
  ASSERT_NO_FATAL_FAILURE(BindReceivers(GetParam(), 3, &receivers));
  // Six trains of 40 x 1,400 bytes in one buffer (336,000 bytes, past
  // kGatherBytes), each datagram marked with its train and index.
  constexpr size_t kTrains = 6, kPerTrain = 40, kSize = 1400;
  ASSERT_GT(kTrains * kPerTrain * kSize, DatagramSocket::kGatherBytes);
  std::string buffer;
  std::vector<std::vector<std::string>> want(3);
  for (size_t t = 0; t < kTrains; ++t) {
    for (size_t i = 0; i < kPerTrain; ++i) {
      std::string d(kSize, static_cast<char>('a' + i % 26));
      d[0] = static_cast<char>('A' + t);
      buffer += d;
      want[t / 2].push_back(d);
    }
  }
  std::vector<absl::Span<const uint8_t>> spans;
  for (size_t k = 0; k < kTrains * kPerTrain; ++k) {
    spans.push_back(absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(buffer.data()) + k * kSize,
                                        kSize));
  }
  std::vector<OutgoingTrain> trains;
  for (size_t t = 0; t < kTrains; ++t) {
    trains.push_back({*receivers[t / 2].LocalAddress(),
                      absl::MakeConstSpan(spans).subspan(t * kPerTrain, kPerTrain)});
  }
  absl::StatusOr<size_t> sent = a->SendTrains(trains);
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(*sent, kTrains * kPerTrain);
  EXPECT_EQ(a->gathered_trains(), kTrains);
  EXPECT_EQ(a->copied_trains(), 0u);
  for (size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE(absl::StrCat("receiver ", i));
    EXPECT_EQ(ReceiveDatagrams(receivers[i], want[i].size()).datagrams, want[i]);
  }
}

TEST_P(DatagramSocketTest, RefusedSegmentationFallsBackToPlainDatagramsAndLosesNone) {
  absl::StatusOr<DatagramSocket> a = BoundLoopback(GetParam());
  absl::StatusOr<DatagramSocket> b = BoundLoopback(GetParam());
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(a->EnableSegmentation().ok());
  // Without UDP checksums the kernel refuses to segment (EINVAL at send), as
  // a device without checksum offload does (EIO).
  int one = 1;
  if (GetParam() == AddressFamily::kIpv4) {
    ASSERT_EQ(::setsockopt(a->fd(), SOL_SOCKET, SO_NO_CHECK, &one, sizeof(one)), 0);
  } else {
    ASSERT_EQ(::setsockopt(a->fd(), SOL_UDP, UDP_NO_CHECK6_TX, &one, sizeof(one)), 0);
    // IPv6 receivers drop zero checksums unless told otherwise.
    ASSERT_EQ(::setsockopt(b->fd(), SOL_UDP, UDP_NO_CHECK6_RX, &one, sizeof(one)), 0);
  }
  const std::vector<std::string> first = TrainPayloads(8, 1100, 1100);
  const std::vector<std::string> second = TrainPayloads(4, 1100, 5);
  const std::vector<absl::Span<const uint8_t>> s1 = Spans(first), s2 = Spans(second);
  const std::vector<OutgoingTrain> trains = {{*b->LocalAddress(), s1}, {*b->LocalAddress(), s2}};
  // EINVAL may be a passing thing (a segment over a shrunken route's MTU):
  // every refused call resends its trains as plain datagrams, and only
  // kMaxInvalidTrains refusals in a row turn segmentation off.
  std::vector<std::string> want;
  for (int call = 1; call <= DatagramSocket::kMaxInvalidTrains; ++call) {
    SCOPED_TRACE(absl::StrCat("call ", call));
    absl::StatusOr<size_t> sent = a->SendTrains(trains);
    ASSERT_TRUE(sent.ok()) << sent.status();
    EXPECT_EQ(*sent, 12u);
    EXPECT_EQ(a->segmentation_enabled(), call < DatagramSocket::kMaxInvalidTrains);
    EXPECT_EQ(a->refused_train_calls(), static_cast<uint64_t>(call));
    want.insert(want.end(), first.begin(), first.end());
    want.insert(want.end(), second.begin(), second.end());
    EXPECT_EQ(ReceiveDatagrams(*b, 12).datagrams,
              std::vector<std::string>(want.end() - 12, want.end()));
  }
  EXPECT_EQ(a->segmentation_refused_errno(), EINVAL);
  // And plain from then on.
  absl::StatusOr<size_t> sent = a->SendTrains(absl::MakeConstSpan(trains).subspan(1));
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(*sent, 4u);
  EXPECT_EQ(ReceiveDatagrams(*b, second.size()).datagrams, second);
}

TEST_P(DatagramSocketTest, WithoutSegmentationTrainsGoAsPlainDatagrams) {
  absl::StatusOr<DatagramSocket> a = BoundLoopback(GetParam());
  absl::StatusOr<DatagramSocket> b = BoundLoopback(GetParam());
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(b->EnableCoalescing().ok());
  const std::vector<std::string> payloads = TrainPayloads(6, 500, 500);
  const std::vector<absl::Span<const uint8_t>> spans = Spans(payloads);
  const OutgoingTrain train{*b->LocalAddress(), spans};
  absl::StatusOr<size_t> sent = a->SendTrains(absl::MakeConstSpan(&train, 1));
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(*sent, 6u);
  Received r = ReceiveDatagrams(*b, payloads.size());
  EXPECT_EQ(r.datagrams, payloads);
  EXPECT_EQ(r.coalesced, 0u);  // loopback coalesces only what was sent as a train
}

TEST_P(DatagramSocketTest, MalformedTrainsAreInvalidArguments) {
  absl::StatusOr<DatagramSocket> a = BoundLoopback(GetParam());
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(a->EnableSegmentation().ok());
  const SocketAddress to = DeadPort(GetParam());
  const std::vector<std::string> uneven = {"abcd", "ab", "abcd"};
  const std::vector<std::string> longer_last = {"abcd", "abcde"};
  const std::vector<std::string> too_many = TrainPayloads(65, 10, 10);
  const std::vector<std::string> too_big = TrainPayloads(2, 40000, 40000);
  for (const std::vector<std::string>* p : {&uneven, &longer_last, &too_many, &too_big}) {
    const std::vector<absl::Span<const uint8_t>> spans = Spans(*p);
    const OutgoingTrain train{to, spans};
    absl::StatusOr<size_t> sent = a->SendTrains(absl::MakeConstSpan(&train, 1));
    EXPECT_EQ(sent.status().code(), absl::StatusCode::kInvalidArgument) << sent.status();
  }
  const OutgoingTrain empty{to, {}};
  EXPECT_EQ(a->SendTrains(absl::MakeConstSpan(&empty, 1)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(a->segmentation_enabled());
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

TEST(DatagramSocketDualStackTest, Ipv6SocketSendsTrainsToIpv4Peers) {
  absl::StatusOr<DatagramSocket> server = DatagramSocket::Bind(
      SocketAddress::Any(AddressFamily::kIpv6, 0), {.non_blocking = true});
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE(server->EnableSegmentation().ok());
  absl::StatusOr<DatagramSocket> client = BoundLoopback(AddressFamily::kIpv4);
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE(client->EnableCoalescing().ok());
  EXPECT_EQ(DatagramSocket::MaxTrainBytes(*client->LocalAddress()), kMaxUdpPayloadIpv4);
  EXPECT_EQ(DatagramSocket::MaxTrainBytes(client->LocalAddress()->V4Mapped()), kMaxUdpPayloadIpv4);
  const std::vector<std::string> payloads = TrainPayloads(7, 1300, 1299);
  const std::vector<absl::Span<const uint8_t>> spans = Spans(payloads);
  const OutgoingTrain train{*client->LocalAddress(), spans};
  absl::StatusOr<size_t> sent = server->SendTrains(absl::MakeConstSpan(&train, 1));
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(*sent, 7u);
  Received r = ReceiveDatagrams(*client, payloads.size());
  EXPECT_EQ(r.datagrams, payloads);
  EXPECT_EQ(r.coalesced, 1u);
}

TEST(DatagramSocketOpenTest, UnspecifiedFamilyIsInvalid) {
  absl::StatusOr<DatagramSocket> socket = DatagramSocket::Open(AddressFamily::kUnspecified, {});
  ASSERT_FALSE(socket.ok());
  EXPECT_EQ(socket.status().code(), absl::StatusCode::kInvalidArgument);
}

// Path MTU probing (socket_options.h EnablePathMtuProbing): DF set, never
// fragmented locally, the kernel's PMTU cache ignored; loopback (MTU 65536)
// still carries the largest datagram.
TEST(DatagramSocketTest, PathMtuProbingIsSetForEachFamilyAndLoopbackCarriesTheLargest) {
  for (AddressFamily family : {AddressFamily::kIpv4, AddressFamily::kIpv6}) {
    SCOPED_TRACE(family == AddressFamily::kIpv4 ? "ipv4" : "ipv6");
    absl::StatusOr<DatagramSocket> a = BoundLoopback(family, /*non_blocking=*/false);
    if (!a.ok() && family == AddressFamily::kIpv6) GTEST_SKIP() << "no IPv6: " << a.status();
    ASSERT_TRUE(a.ok()) << a.status();
    absl::StatusOr<DatagramSocket> b = BoundLoopback(family, /*non_blocking=*/false);
    ASSERT_TRUE(b.ok()) << b.status();
    ASSERT_TRUE(EnablePathMtuProbing(a->fd()).ok());
    if (family == AddressFamily::kIpv6) {
      EXPECT_EQ(*GetIntOption(a->fd(), IPPROTO_IPV6, IPV6_MTU_DISCOVER, "IPV6_MTU_DISCOVER"),
                IPV6_PMTUDISC_PROBE);
    } else {
      EXPECT_EQ(*GetIntOption(a->fd(), IPPROTO_IP, IP_MTU_DISCOVER, "IP_MTU_DISCOVER"),
                IP_PMTUDISC_PROBE);
    }
    // IPv4: the 16-bit total length; IPv6 without fragmentation: the
    // loopback MTU (65536) less 48 header bytes. One byte more is refused
    // at once (EMSGSIZE) instead of being fragmented.
    const size_t largest = family == AddressFamily::kIpv4 ? 65507 : 65488;
    const std::string big(largest, 'm');
    absl::StatusOr<SocketAddress> to = b->LocalAddress();
    ASSERT_TRUE(to.ok());
    if (family == AddressFamily::kIpv6) {
      absl::StatusOr<size_t> too_big = a->SendTo(*to, AsBytes(big + "x"));
      EXPECT_FALSE(too_big.ok());
      EXPECT_THAT(std::string(too_big.status().message()), HasSubstr("Message too long"));
    }
    absl::StatusOr<size_t> sent = a->SendTo(*to, AsBytes(big));
    ASSERT_TRUE(sent.ok()) << sent.status();
    EXPECT_EQ(*sent, largest);
    std::vector<uint8_t> buffer(70000);
    ASSERT_TRUE(WaitReadable(b->fd()));
    absl::StatusOr<Datagram> got = b->RecvFrom(absl::MakeSpan(buffer));
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->size, largest);
  }
  EXPECT_FALSE(EnablePathMtuProbing(-1).ok());
}

}  // namespace
}  // namespace udpmsg::udp
