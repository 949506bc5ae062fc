#include "reliable/send_queue.h"

#include <map>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "reliable/reassembler.h"

namespace udpmsg::reliable {
namespace {

using ::testing::HasSubstr;

std::vector<OutgoingFragment> Drain(SendQueue& q) {
  std::vector<OutgoingFragment> out;
  while (std::optional<OutgoingFragment> f = q.Next()) out.push_back(*f);
  return out;
}

TEST(SendQueueTest, SequenceNumbersCountPerChannelAndMode) {
  SendQueue q({});
  EXPECT_EQ(*q.Enqueue(1, DeliveryMode::kReliableOrdered, "a"), 0u);
  EXPECT_EQ(*q.Enqueue(1, DeliveryMode::kReliableOrdered, "b"), 1u);
  EXPECT_EQ(*q.Enqueue(2, DeliveryMode::kReliableOrdered, "c"), 0u);
  EXPECT_EQ(*q.Enqueue(1, DeliveryMode::kUnreliable, "d"), 0u);
}

TEST(SendQueueTest, FragmentsFollowTheSharedLayoutAndReassemble) {
  SendQueue q({.max_fragment_payload = 100});
  std::string message(1234, '\0');
  for (size_t i = 0; i < message.size(); ++i) message[i] = static_cast<char>(i * 7);
  ASSERT_TRUE(q.Enqueue(0, DeliveryMode::kReliableOrdered, message).ok());
  std::vector<OutgoingFragment> fragments = Drain(q);
  ASSERT_EQ(fragments.size(), 13u);
  Reassembler r({});
  std::optional<std::string> whole;
  for (const OutgoingFragment& f : fragments) {
    EXPECT_LE(f.payload.size(), 100u);
    auto got = r.Add(absl::UnixEpoch(), {f.channel, 3, f.sequence}, f.header, f.payload);
    ASSERT_TRUE(got.ok()) << got.status();
    if (got->has_value()) whole = **got;
  }
  ASSERT_TRUE(whole.has_value());
  EXPECT_TRUE(*whole == message);
}

TEST(SendQueueTest, ReceiptComesOnlyWhenEveryFragmentIsAcked) {
  SendQueue q({.max_fragment_payload = 10});
  ASSERT_TRUE(q.Enqueue(4, DeliveryMode::kReliableUnordered, std::string(25, 'x')).ok());
  std::vector<OutgoingFragment> f = Drain(q);
  ASSERT_EQ(f.size(), 3u);
  std::vector<MessageReceipt> receipts;
  q.OnAcked(f[0].id, &receipts);
  q.OnAcked(f[0].id, &receipts);  // repeated ack
  q.OnAcked(f[2].id, &receipts);
  EXPECT_TRUE(receipts.empty());
  EXPECT_EQ(q.queued_bytes(), 25u);
  q.OnAcked(f[1].id, &receipts);
  ASSERT_EQ(receipts.size(), 1u);
  EXPECT_EQ(receipts[0].channel, 4u);
  EXPECT_EQ(receipts[0].bytes, 25u);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.queued_bytes(), 0u);
}

TEST(SendQueueTest, LostFragmentsGoFirstAndOnlyUntilAcked) {
  SendQueue q({.max_fragment_payload = 10});
  ASSERT_TRUE(q.Enqueue(0, DeliveryMode::kReliableOrdered, std::string(30, 'a')).ok());
  std::optional<OutgoingFragment> first = q.Next();
  std::optional<OutgoingFragment> second = q.Next();
  ASSERT_TRUE(first && second);
  q.OnLost(first->id);
  q.OnLost(second->id);
  std::vector<MessageReceipt> receipts;
  q.OnAcked(second->id, &receipts);  // a late ack settles it after all
  std::optional<OutgoingFragment> again = q.Next();
  ASSERT_TRUE(again.has_value());
  EXPECT_TRUE(again->retransmission);
  EXPECT_EQ(again->id, first->id);
  std::optional<OutgoingFragment> fresh = q.Next();
  ASSERT_TRUE(fresh.has_value());
  EXPECT_FALSE(fresh->retransmission);
  EXPECT_EQ(fresh->id.index, 2u);
  EXPECT_EQ(q.retransmitted_fragments(), 1u);
}

TEST(SendQueueTest, UnreliableFragmentsAreNeverResent) {
  SendQueue q({.max_fragment_payload = 10});
  ASSERT_TRUE(q.Enqueue(0, DeliveryMode::kUnreliable, std::string(20, 'u')).ok());
  std::vector<OutgoingFragment> f = Drain(q);
  ASSERT_EQ(f.size(), 2u);
  q.OnLost(f[0].id);
  q.OnLost(f[1].id);
  EXPECT_FALSE(q.Next().has_value());
  EXPECT_TRUE(q.empty());
}

TEST(SendQueueTest, WindowLimitsHowFarAheadReliableMessagesGo) {
  SendQueue q({.window = 3});
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(q.Enqueue(0, DeliveryMode::kReliableOrdered, "m").ok());
  std::vector<OutgoingFragment> sent = Drain(q);
  ASSERT_EQ(sent.size(), 3u);  // sequences 0, 1, 2
  EXPECT_FALSE(q.HasSendable());
  std::vector<MessageReceipt> receipts;
  q.OnAcked(sent[1].id, &receipts);  // acking 1 does not move the window: 0 is oldest
  EXPECT_FALSE(q.HasSendable());
  q.OnAcked(sent[0].id, &receipts);  // now the oldest unacked is 2: 3 and 4 fit
  std::vector<OutgoingFragment> more = Drain(q);
  ASSERT_EQ(more.size(), 2u);
  EXPECT_EQ(more[0].sequence, 3u);
  EXPECT_EQ(more[1].sequence, 4u);
}

TEST(SendQueueTest, QueueByteLimitPushesBack) {
  SendQueue q({.max_queued_bytes = 100});
  ASSERT_TRUE(q.Enqueue(0, DeliveryMode::kReliableOrdered, std::string(60, 'x')).ok());
  absl::StatusOr<uint64_t> full = q.Enqueue(0, DeliveryMode::kReliableOrdered, std::string(60, 'y'));
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  // A message larger than the queue still goes alone into an empty queue.
  SendQueue empty({.max_queued_bytes = 10});
  EXPECT_TRUE(empty.Enqueue(0, DeliveryMode::kReliableOrdered, std::string(60, 'x')).ok());
  absl::StatusOr<uint64_t> huge = SendQueue({.max_message_bytes = 50})
                                      .Enqueue(0, DeliveryMode::kReliableOrdered,
                                               std::string(51, 'z'));
  ASSERT_FALSE(huge.ok());
  EXPECT_THAT(huge.status().message(), HasSubstr("exceeds the limit of 50"));
}

TEST(SendQueueTest, RandomLossAndAckEventuallySettlesEverything) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    std::mt19937_64 rng(seed);
    SendQueue q({.max_fragment_payload = 50, .window = 16});
    std::map<uint64_t, uint64_t> sizes;
    for (int i = 0; i < 200; ++i) {
      const uint64_t size = rng() % 400;
      absl::StatusOr<uint64_t> seq = q.Enqueue(0, DeliveryMode::kReliableOrdered,
                                               std::string(size, 'q'));
      ASSERT_TRUE(seq.ok());
      sizes[*seq] = size;
    }
    std::vector<MessageReceipt> receipts;
    for (int round = 0; round < 100000 && !q.empty(); ++round) {
      std::optional<OutgoingFragment> f = q.Next();
      ASSERT_TRUE(f.has_value()) << "stalled with " << q.messages() << " messages";
      if (rng() % 10 < 3) {
        q.OnLost(f->id);
      } else {
        q.OnAcked(f->id, &receipts);
      }
    }
    ASSERT_TRUE(q.empty());
    ASSERT_EQ(receipts.size(), 200u);
    for (const MessageReceipt& r : receipts) EXPECT_EQ(r.bytes, sizes[r.sequence]);
  }
}

// Path MTU discovery changed the datagram size: messages not started yet
// are cut for it, a started one keeps its fragments (the receiver knows
// their count), retransmissions included.
TEST(SendQueueTest, NewFragmentSizeAppliesOnlyToMessagesNotStarted) {
  SendQueue q({.max_fragment_payload = 100});
  ASSERT_TRUE(q.Enqueue(0, DeliveryMode::kReliableOrdered, std::string(250, 'a')).ok());
  ASSERT_TRUE(q.Enqueue(0, DeliveryMode::kReliableOrdered, std::string(250, 'b')).ok());
  ASSERT_TRUE(q.Enqueue(0, DeliveryMode::kUnreliable, std::string(250, 'c')).ok());
  std::optional<OutgoingFragment> first = q.Next();  // message a started
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->header.count, 3u);
  q.SetMaxFragmentPayload(250);
  EXPECT_EQ(q.max_fragment_payload(), 250u);
  q.OnLost(first->id);
  std::vector<OutgoingFragment> rest = Drain(q);
  ASSERT_EQ(rest.size(), 5u);  // a: 3 (one resent), b: 1, c: 1
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(rest[i].sequence, 0u);
    EXPECT_EQ(rest[i].header.count, 3u);  // cut at 100 before the change
    EXPECT_LE(rest[i].payload.size(), 100u);
  }
  EXPECT_EQ(rest[3].header.count, 1u);
  EXPECT_EQ(rest[3].payload.size(), 250u);
  EXPECT_EQ(rest[4].mode, DeliveryMode::kUnreliable);
  EXPECT_EQ(rest[4].header.count, 1u);
  // Every fragment acknowledged: both reliable messages complete.
  std::vector<MessageReceipt> receipts;
  q.OnAcked(rest[0].id, &receipts);
  for (const OutgoingFragment& f : rest) q.OnAcked(f.id, &receipts);
  EXPECT_EQ(receipts.size(), 2u);
  EXPECT_TRUE(q.empty());
}

}  // namespace
}  // namespace udpmsg::reliable
