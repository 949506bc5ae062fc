#include "reliable/datagram_batch.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "udp/socket_address.h"

namespace udpmsg::reliable {
namespace {

udp::SocketAddress Address(const char* text) { return *udp::SocketAddress::Parse(text); }

// Writes one datagram the way a connection does: appended, then committed.
void Write(DatagramBatch& batch, const std::string& bytes) {
  batch.buffer()->append(bytes);
  batch.Commit();
}

TEST(DatagramBatchTest, DatagramsLieBackToBackInCommitOrder) {
  DatagramBatch batch;
  Write(batch, "first");
  Write(batch, "second!");
  Write(batch, "3");
  ASSERT_EQ(batch.size(), 3u);
  EXPECT_EQ(batch[0], "first");
  EXPECT_EQ(batch[1], "second!");
  EXPECT_EQ(batch.back(), "3");
  // What lets a GSO train go as one iovec without a copy.
  for (size_t i = 1; i < batch.size(); ++i) {
    EXPECT_EQ(batch.Bytes(i).data(), batch.Bytes(i - 1).data() + batch.Bytes(i - 1).size());
  }
}

TEST(DatagramBatchTest, AbandonForgetsOnlyTheUncommittedBytes) {
  DatagramBatch batch;
  Write(batch, "kept");
  batch.buffer()->append("half-written");
  batch.Abandon();
  Write(batch, "next");
  ASSERT_EQ(batch.size(), 2u);
  EXPECT_EQ(batch[0], "kept");
  EXPECT_EQ(batch[1], "next");
  EXPECT_EQ(*batch.buffer(), "keptnext");
}

TEST(DatagramBatchTest, PeersAreSetPerRun) {
  const udp::SocketAddress a = Address("10.0.0.1:1");
  const udp::SocketAddress b = Address("[::1]:2");
  DatagramBatch batch;
  Write(batch, "a1");
  Write(batch, "a2");
  batch.SetPeer(0, a);
  const size_t before = batch.size();
  Write(batch, "b1");
  EXPECT_FALSE(batch.peer(2).valid());  // not set yet
  batch.SetPeer(before, b);
  batch.Add(a, "a3");
  ASSERT_EQ(batch.size(), 4u);
  EXPECT_EQ(batch.peer(0), a);
  EXPECT_EQ(batch.peer(1), a);
  EXPECT_EQ(batch.peer(2), b);
  EXPECT_EQ(batch.peer(3), a);
  EXPECT_TRUE(batch.SamePeer(0, 1));
  EXPECT_FALSE(batch.SamePeer(1, 2));
  EXPECT_EQ(batch[3], "a3");
}

TEST(DatagramBatchTest, DropFrontThenAppendKeepsOrderAndAddresses) {
  const udp::SocketAddress a = Address("10.0.0.1:1");
  const udp::SocketAddress b = Address("10.0.0.2:2");
  DatagramBatch pending;
  Write(pending, "p1");
  Write(pending, "p2");
  Write(pending, "p3");
  pending.SetPeer(0, a);
  pending.DropFront(2);
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0], "p3");
  EXPECT_EQ(pending.peer(0), a);

  DatagramBatch more;
  Write(more, "m1");
  more.SetPeer(0, b);
  Write(more, "m2");
  more.SetPeer(1, a);
  pending.Append(more);
  ASSERT_EQ(pending.size(), 3u);
  EXPECT_EQ(pending[1], "m1");
  EXPECT_EQ(pending.peer(1), b);
  EXPECT_EQ(pending[2], "m2");
  EXPECT_EQ(pending.peer(2), a);

  // Dropping the last one empties the batch, and the buffer starts over.
  pending.DropFront(5);
  EXPECT_TRUE(pending.empty());
  EXPECT_TRUE(pending.buffer()->empty());
}

// A runtime whose socket stays backed up sends part of its batch, and more
// is appended behind the rest before it ever empties: what was sent must
// not stay in the buffer.
TEST(DatagramBatchTest, ABatchThatNeverEmptiesHoldsOnlyWhatIsLeft) {
  const udp::SocketAddress a = Address("10.0.0.1:1");
  const udp::SocketAddress b = Address("10.0.0.2:2");
  DatagramBatch pending;
  size_t next = 0;  // datagrams appended so far
  size_t sent = 0;
  for (int round = 0; round < 2000; ++round) {
    DatagramBatch more;
    for (int k = 0; k < 4; ++k) {
      Write(more, absl::StrCat(next++, std::string(1000, '.')));
      more.SetPeer(more.size() - 1, round % 2 == 0 ? a : b);
    }
    pending.Append(more);
    ASSERT_EQ(pending[0].substr(0, absl::StrCat(sent).size()), absl::StrCat(sent));
    pending.DropFront(3);  // one of four stays behind every round
    sent += 3;
    ASSERT_LE(pending.buffer()->size(), 2 * pending.size() * 1010 + 1010) << "round " << round;
  }
  // The 2,000 left, in order, each with its address.
  ASSERT_EQ(pending.size(), 2000u);
  for (size_t i = 0; i < pending.size(); ++i) {
    const size_t n = sent + i;
    ASSERT_EQ(pending[i].substr(0, absl::StrCat(n).size()), absl::StrCat(n));
    ASSERT_EQ(pending.peer(i), (n / 4) % 2 == 0 ? a : b) << n;
  }
  EXPECT_LE(pending.buffer()->capacity(), 8 * pending.size() * 1010);
}

TEST(DatagramBatchTest, ClearKeepsABoundedBuffer) {
  DatagramBatch batch;
  Write(batch, std::string(4096, 'x'));
  const size_t small = batch.buffer()->capacity();
  batch.Clear();
  EXPECT_TRUE(batch.empty());
  EXPECT_EQ(batch.buffer()->capacity(), small);  // reused
  Write(batch, std::string(DatagramBatch::kKeptCapacity + 1, 'y'));
  batch.Clear();
  EXPECT_LE(batch.buffer()->capacity(), DatagramBatch::kKeptCapacity);  // given back
}

TEST(DatagramBatchTest, SwapExchangesEverything) {
  const udp::SocketAddress a = Address("10.0.0.1:1");
  DatagramBatch one;
  Write(one, "x");
  one.SetPeer(0, a);
  DatagramBatch two;
  one.swap(two);
  EXPECT_TRUE(one.empty());
  ASSERT_EQ(two.size(), 1u);
  EXPECT_EQ(two[0], "x");
  EXPECT_EQ(two.peer(0), a);
}

}  // namespace
}  // namespace udpmsg::reliable
