#include "reliable/send_queue.h"

#include <map>
#include <memory>
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

// A shared message sends from the caller's buffer (no copy) and keeps the
// buffer alive until the message is released, not longer.
TEST(SendQueueTest, SharedBytesSendFromTheBufferAndHoldItUntilReleased) {
  auto buffer = std::make_shared<const std::string>(std::string(100, 'x') + std::string(35, 'y'));
  const std::weak_ptr<const std::string> watch = buffer;
  const absl::string_view slice = absl::string_view(*buffer).substr(100, 35);
  SendQueue q({.max_fragment_payload = 10});
  ASSERT_TRUE(q.Enqueue(1, DeliveryMode::kReliableOrdered, MessageBytes(buffer, slice)).ok());
  ASSERT_TRUE(q.Enqueue(2, DeliveryMode::kUnreliable, MessageBytes(buffer, slice)).ok());
  EXPECT_EQ(q.queued_bytes(), 70u);  // counted like owned bytes
  buffer.reset();
  ASSERT_FALSE(watch.expired());
  std::vector<OutgoingFragment> sent = Drain(q);
  ASSERT_EQ(sent.size(), 8u);  // 35 bytes in 4 fragments, twice
  std::string reliable;
  for (const OutgoingFragment& f : sent) {
    if (f.channel != 1) continue;
    const std::shared_ptr<const std::string> alive = watch.lock();
    ASSERT_NE(alive, nullptr);
    // The payload points into the buffer itself: nothing was copied.
    EXPECT_GE(f.payload.data(), alive->data() + 100);
    EXPECT_LE(f.payload.data() + f.payload.size(), alive->data() + alive->size());
    reliable += std::string(f.payload);
  }
  EXPECT_EQ(reliable, std::string(35, 'y'));
  // The reliable message is released when all of it is acked, the
  // unreliable one when a packet carrying it is acked (or lost) once all of
  // it was sent.
  std::vector<MessageReceipt> receipts;
  for (const OutgoingFragment& f : sent) {
    if (f.channel == 1) {
      EXPECT_FALSE(watch.expired());
      q.OnAcked(f.id, &receipts);
    }
  }
  for (const OutgoingFragment& f : sent) {
    if (f.channel == 2) q.OnAcked(f.id, &receipts);
  }
  EXPECT_EQ(receipts.size(), 1u);
  EXPECT_EQ(q.queued_bytes(), 0u);
  EXPECT_TRUE(watch.expired());
}

TEST(SendQueueTest, SharedBytesWithoutAnOwnerAreRefused) {
  static const char kBytes[] = "abc";
  SendQueue q({});
  absl::StatusOr<uint64_t> r =
      q.Enqueue(1, DeliveryMode::kReliableOrdered, MessageBytes(nullptr, kBytes));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("without an owner"));
  // An empty shared message needs no owner.
  EXPECT_TRUE(q.Enqueue(1, DeliveryMode::kReliableOrdered, MessageBytes(nullptr, "")).ok());
}

// The queue (a connection going away) lets go of what it holds.
TEST(SendQueueTest, DestroyingTheQueueReleasesSharedBuffers) {
  auto buffer = std::make_shared<const std::string>(5000, 'z');
  const std::weak_ptr<const std::string> watch = buffer;
  {
    SendQueue q({});
    ASSERT_TRUE(
        q.Enqueue(0, DeliveryMode::kReliableOrdered, MessageBytes(buffer, *buffer)).ok());
    buffer.reset();
    ASSERT_TRUE(q.Next().has_value());
    EXPECT_FALSE(watch.expired());
  }
  EXPECT_TRUE(watch.expired());
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

// Next(max_payload) takes the next fragment only when it fits, so a packet
// being filled checks and takes in one call; a refused fragment stays next,
// lost fragments included, and an empty message fits in no room at all.
TEST(SendQueueTest, NextWithRoomTakesOnlyAFragmentThatFits) {
  SendQueue q({.max_fragment_payload = 10});
  ASSERT_TRUE(q.Enqueue(0, DeliveryMode::kReliableOrdered, std::string(25, 'a')).ok());
  ASSERT_TRUE(q.Enqueue(0, DeliveryMode::kReliableOrdered, "").ok());
  EXPECT_FALSE(q.Next(8).has_value());  // 9 bytes each (25 in 3)
  std::optional<OutgoingFragment> f = q.Next(9);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->header.index, 0u);
  EXPECT_EQ(f->payload.size(), 9u);
  q.OnLost(f->id);
  EXPECT_FALSE(q.Next(5).has_value());
  std::optional<OutgoingFragment> again = q.Next(9);
  ASSERT_TRUE(again.has_value());
  EXPECT_TRUE(again->retransmission);
  EXPECT_EQ(again->header.index, 0u);
  ASSERT_TRUE(q.Next(9).has_value());
  std::optional<OutgoingFragment> last = q.Next(7);  // the last fragment: 7 bytes
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->header.index, 2u);
  EXPECT_EQ(last->payload.size(), 7u);
  std::optional<OutgoingFragment> empty = q.Next(0);
  ASSERT_TRUE(empty.has_value());
  EXPECT_EQ(empty->header.total_size, 0u);
  EXPECT_FALSE(q.Next(100).has_value());
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

// NextIf: the connection checks a fragment's exact frame size before it
// takes it, so the predicate sees the whole fragment, and a refusal takes
// nothing (the same fragment is offered next).
TEST(SendQueueTest, NextIfSeesTheWholeFragmentAndARefusalTakesNothing) {
  SendQueue q({.max_fragment_payload = 10});
  ASSERT_TRUE(q.Enqueue(3, DeliveryMode::kReliableOrdered, std::string(25, 'a')).ok());
  std::vector<OutgoingFragment> seen;
  EXPECT_FALSE(q.NextIf([&](const OutgoingFragment& c) {
                  seen.push_back(c);
                  return false;
                }).has_value());
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].channel, 3u);
  EXPECT_EQ(seen[0].header.index, 0u);
  EXPECT_EQ(seen[0].header.count, 3u);
  EXPECT_EQ(seen[0].payload, std::string(9, 'a'));
  std::optional<OutgoingFragment> f =
      q.NextIf([](const OutgoingFragment& c) { return c.header.index == 0; });
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->header.index, 0u);
  EXPECT_FALSE(q.NextIf([](const OutgoingFragment&) { return false; }).has_value());
  f = q.Next();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->header.index, 1u);
  EXPECT_FALSE(f->retransmission);
  EXPECT_EQ(q.retransmitted_fragments(), 0u);
  // A refused retransmission stays first and is not counted.
  q.OnLost(f->id);
  EXPECT_FALSE(q.NextIf([](const OutgoingFragment&) { return false; }).has_value());
  EXPECT_EQ(q.retransmitted_fragments(), 0u);
  std::optional<OutgoingFragment> again = q.Next();
  ASSERT_TRUE(again.has_value());
  EXPECT_TRUE(again->retransmission);
  EXPECT_EQ(again->header.index, 1u);
  EXPECT_EQ(q.retransmitted_fragments(), 1u);
}

// NextRun (fragment runs): the candidate is the longest run of the front
// message's unsent fragments, `take` chooses how many; the run is in flight
// as its fragments, an ACK of it settles them all, and a lost run comes back
// one fragment at a time (retransmissions are never merged).
TEST(SendQueueTest, NextRunTakesConsecutiveFragmentsAndALostRunComesBackOneByOne) {
  SendQueue q({.max_fragment_payload = 10});
  std::string message;
  for (int i = 0; i < 95; ++i) message.push_back(static_cast<char>('a' + i % 26));
  ASSERT_TRUE(q.Enqueue(4, DeliveryMode::kReliableOrdered, message).ok());  // 10 of 10, 5
  ASSERT_TRUE(q.Enqueue(4, DeliveryMode::kReliableOrdered, std::string(15, 'z')).ok());
  std::vector<OutgoingFragment> offered;
  // A refusal takes nothing.
  EXPECT_FALSE(q.NextRun(UINT32_MAX, [&](const OutgoingFragment& c) -> uint32_t {
                  offered.push_back(c);
                  return 0;
                }).has_value());
  ASSERT_EQ(offered.size(), 1u);
  EXPECT_EQ(offered[0].id.run, 10u);  // the whole message, no further
  EXPECT_EQ(offered[0].payload, message);
  // max_run caps the offer; `take` may take less than offered.
  std::optional<OutgoingFragment> a = q.NextRun(4, [&](const OutgoingFragment& c) -> uint32_t {
    EXPECT_EQ(c.id.run, 4u);
    return 3;
  });
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->header.index, 0u);
  EXPECT_EQ(a->id.run, 3u);
  EXPECT_EQ(a->payload, message.substr(0, 30));
  // The rest of the message: the last fragment is the short one.
  std::optional<OutgoingFragment> b =
      q.NextRun(UINT32_MAX, [](const OutgoingFragment& c) { return c.id.run; });
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->header.index, 3u);
  EXPECT_EQ(b->id.run, 7u);
  EXPECT_EQ(b->payload, message.substr(30));
  // A taker asking for more than offered takes nothing.
  EXPECT_FALSE(q.NextRun(UINT32_MAX, [](const OutgoingFragment& c) { return c.id.run + 1; })
                   .has_value());
  std::optional<OutgoingFragment> c =
      q.NextRun(UINT32_MAX, [](const OutgoingFragment& f) { return f.id.run; });
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->sequence, 1u);
  EXPECT_EQ(c->id.run, 2u);
  EXPECT_FALSE(q.HasSendable());

  std::vector<MessageReceipt> receipts;
  q.OnAcked(a->id, &receipts);
  q.OnLost(b->id);
  // Fragments 3..9 again, one each, in order, marked as retransmissions.
  for (uint32_t index = 3; index < 10; ++index) {
    std::optional<OutgoingFragment> again =
        q.NextRun(UINT32_MAX, [&](const OutgoingFragment& f) { return f.id.run; });
    ASSERT_TRUE(again.has_value()) << index;
    EXPECT_TRUE(again->retransmission);
    EXPECT_EQ(again->header.index, index);
    EXPECT_EQ(again->id.run, 1u);
    EXPECT_EQ(again->payload, message.substr(10 * index, index == 9 ? 5 : 10));
    EXPECT_TRUE(receipts.empty());
    q.OnAcked(again->id, &receipts);
  }
  EXPECT_EQ(q.retransmitted_fragments(), 7u);
  ASSERT_EQ(receipts.size(), 1u);
  EXPECT_EQ(receipts[0].sequence, 0u);
  EXPECT_EQ(receipts[0].bytes, 95u);
  // A late ACK of the lost run changes nothing; the second message's run,
  // acknowledged, releases it.
  q.OnAcked(b->id, &receipts);
  EXPECT_EQ(receipts.size(), 1u);
  q.OnAcked(c->id, &receipts);
  ASSERT_EQ(receipts.size(), 2u);
  EXPECT_TRUE(q.empty());
}

// Lanes charge a run as its fragments one by one: the channels' shares are
// the same whichever way the fragments are taken.
TEST(SendQueueTest, RunsAreChargedToLanesAsTheirFragments) {
  auto bytes = [](bool runs) {
    SendQueue q({.max_fragment_payload = 10});
    EXPECT_TRUE(q.SetChannelLane(1, 0, 1).ok());
    EXPECT_TRUE(q.SetChannelLane(2, 0, 3).ok());
    for (int i = 0; i < 40; ++i) {
      for (uint32_t channel : {1u, 2u}) {
        EXPECT_TRUE(q.Enqueue(channel, DeliveryMode::kReliableOrdered, std::string(40, 'x')).ok());
      }
    }
    // 1,600 bytes while both lanes have plenty: whole messages of 40 as
    // runs, fragments of 10 one by one.
    std::map<uint32_t, size_t> sent;
    for (size_t total = 0; total < 1600;) {
      std::optional<OutgoingFragment> f =
          runs ? q.NextRun(UINT32_MAX, [](const OutgoingFragment& c) { return c.id.run; })
               : q.Next();
      if (!f) break;
      sent[f->channel] += f->payload.size();
      total += f->payload.size();
    }
    return sent;
  };
  const std::map<uint32_t, size_t> runs = bytes(true);
  // Weights 1 and 3: the second channel sends about three times the bytes.
  EXPECT_NEAR(static_cast<double>(runs.at(2)) / static_cast<double>(runs.at(1)), 3.0, 0.6);
  const std::map<uint32_t, size_t> singles = bytes(false);
  EXPECT_NEAR(static_cast<double>(singles.at(2)) / static_cast<double>(singles.at(1)), 3.0, 0.6);
}

// With lanes, a refusal charges no lane: the channels take their turns as
// if it had not been asked.
TEST(SendQueueTest, NextIfRefusalsLeaveTheLanesTurnsAsTheyWere) {
  auto order = [](bool refuse_first) {
    SendQueue q({.max_fragment_payload = 10});
    EXPECT_TRUE(q.SetChannelLane(1, 0, 1).ok());
    EXPECT_TRUE(q.SetChannelLane(2, 0, 2).ok());
    for (uint32_t channel : {1u, 2u}) {
      EXPECT_TRUE(q.Enqueue(channel, DeliveryMode::kReliableOrdered, std::string(60, 'x')).ok());
    }
    std::vector<uint32_t> channels;
    for (int i = 0; i < 9; ++i) {
      if (refuse_first) {
        EXPECT_FALSE(q.NextIf([](const OutgoingFragment&) { return false; }).has_value());
      }
      std::optional<OutgoingFragment> f = q.Next();
      if (!f) break;
      channels.push_back(f->channel);
    }
    return channels;
  };
  const std::vector<uint32_t> plain = order(false);
  EXPECT_EQ(plain.size(), 9u);
  EXPECT_EQ(order(true), plain);
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

// HasSendable keeps what it found for the NextRun that follows; every change
// to the queue in between must make NextRun look again. One case per
// mutator, each asking HasSendable right before the change.
TEST(SendQueueTest, WhatHasSendableFoundIsForgottenWhenTheQueueChanges) {
  // Enqueue: nothing was sendable, now something is.
  {
    SendQueue q({.max_fragment_payload = 10});
    EXPECT_FALSE(q.HasSendable());
    ASSERT_TRUE(q.Enqueue(0, DeliveryMode::kReliableOrdered, "new").ok());
    std::optional<OutgoingFragment> f = q.Next();
    ASSERT_TRUE(f.has_value());
    EXPECT_EQ(f->payload, "new");
  }
  // OnLost: new data was next, a retransmission goes first now.
  {
    SendQueue q({.max_fragment_payload = 10});
    ASSERT_TRUE(q.Enqueue(0, DeliveryMode::kReliableOrdered, std::string(30, 'a')).ok());
    const std::optional<OutgoingFragment> first = q.Next();
    ASSERT_TRUE(first.has_value());
    ASSERT_TRUE(q.HasSendable());  // fragment 1
    q.OnLost(first->id);
    std::optional<OutgoingFragment> f = q.Next();
    ASSERT_TRUE(f.has_value());
    EXPECT_EQ(f->header.index, 0u);
    EXPECT_TRUE(f->retransmission);
  }
  // OnAcked: the window was closed, the ack opens it.
  {
    SendQueue q({.window = 1});
    ASSERT_TRUE(q.Enqueue(0, DeliveryMode::kReliableOrdered, "x").ok());
    ASSERT_TRUE(q.Enqueue(0, DeliveryMode::kReliableOrdered, "y").ok());
    const std::optional<OutgoingFragment> x = q.Next();
    ASSERT_TRUE(x.has_value());
    EXPECT_FALSE(q.HasSendable());
    std::vector<MessageReceipt> receipts;
    q.OnAcked(x->id, &receipts);
    std::optional<OutgoingFragment> f = q.Next();
    ASSERT_TRUE(f.has_value());
    EXPECT_EQ(f->payload, "y");
  }
  // OnAcked releasing the message before the one found (unreliable: released
  // once sent and acknowledged): the found one's node moves.
  {
    SendQueue q({.max_fragment_payload = 10});
    ASSERT_TRUE(q.Enqueue(0, DeliveryMode::kUnreliable, std::string(20, 'u')).ok());
    ASSERT_TRUE(q.Enqueue(0, DeliveryMode::kReliableOrdered, "r").ok());
    const std::optional<OutgoingFragment> u0 = q.Next();
    const std::optional<OutgoingFragment> u1 = q.Next();
    ASSERT_TRUE(u0.has_value() && u1.has_value());
    ASSERT_TRUE(q.HasSendable());  // "r"
    std::vector<MessageReceipt> receipts;
    q.OnAcked(u1->id, &receipts);  // "u" released: the map's nodes move
    std::optional<OutgoingFragment> f = q.Next();
    ASSERT_TRUE(f.has_value());
    EXPECT_EQ(f->payload, "r");
  }
  // SetMaxFragmentPayload: the message found is cut again before it starts.
  // (NextRun reads the cut from the message, so this forget is defensive:
  // the case passes without it.)
  {
    SendQueue q({.max_fragment_payload = 10});
    ASSERT_TRUE(q.Enqueue(0, DeliveryMode::kReliableOrdered, std::string(40, 'c')).ok());
    ASSERT_TRUE(q.HasSendable());
    q.SetMaxFragmentPayload(40);
    std::optional<OutgoingFragment> f = q.Next();
    ASSERT_TRUE(f.has_value());
    EXPECT_EQ(f->header.count, 1u);
    EXPECT_EQ(f->payload.size(), 40u);
  }
  // SetChannelLane: the found message's channel moves to a lane behind a
  // more urgent one that has data.
  {
    SendQueue q({.max_fragment_payload = 10});
    ASSERT_TRUE(q.SetChannelLane(2, 0, 1).ok());
    ASSERT_TRUE(q.Enqueue(1, DeliveryMode::kReliableOrdered, "bulk").ok());
    ASSERT_TRUE(q.HasSendable());  // channel 1, in the shared lane (priority 0)
    ASSERT_TRUE(q.Enqueue(2, DeliveryMode::kReliableOrdered, "chat").ok());
    ASSERT_TRUE(q.HasSendable());
    ASSERT_TRUE(q.SetChannelLane(1, 5, 1).ok());
    std::optional<OutgoingFragment> f = q.Next();
    ASSERT_TRUE(f.has_value());
    EXPECT_EQ(f->channel, 2u);
  }
  // Clear: nothing is left to send.
  {
    SendQueue q({.max_fragment_payload = 10});
    ASSERT_TRUE(q.Enqueue(0, DeliveryMode::kReliableOrdered, "gone").ok());
    ASSERT_TRUE(q.HasSendable());
    q.Clear();
    EXPECT_FALSE(q.Next().has_value());
  }
  // A move: the queue moved to keeps nothing that points into the old one.
  // What was found is a lost fragment in the old queue's lane: taken through
  // a kept pick, it would be popped from that lane, not the new one's, and
  // come back again.
  {
    SendQueue a({.max_fragment_payload = 10});
    ASSERT_TRUE(a.Enqueue(0, DeliveryMode::kReliableOrdered, std::string(30, 'm')).ok());
    const std::optional<OutgoingFragment> first = a.Next();
    ASSERT_TRUE(first.has_value());
    a.OnLost(first->id);
    ASSERT_TRUE(a.HasSendable());  // the lost fragment 0
    SendQueue b = std::move(a);
    std::optional<OutgoingFragment> f = b.Next();
    ASSERT_TRUE(f.has_value());
    EXPECT_EQ(f->header.index, 0u);
    EXPECT_TRUE(f->retransmission);
    f = b.Next();
    ASSERT_TRUE(f.has_value());
    EXPECT_EQ(f->header.index, 1u);
    EXPECT_FALSE(f->retransmission);
  }
}

// --- Lanes: priorities and weights (send_queue.h, "Scheduling by lane") ---

// Sends `n` fragments (or until nothing is sendable) and returns them.
std::vector<OutgoingFragment> Take(SendQueue& q, int n) {
  std::vector<OutgoingFragment> out;
  for (int i = 0; i < n; ++i) {
    std::optional<OutgoingFragment> f = q.Next();
    if (!f) break;
    out.push_back(*f);
  }
  return out;
}

TEST(SendQueueLaneTest, WithoutLanesChannelsShareOneFifo) {
  SendQueue q({.max_fragment_payload = 10});
  ASSERT_TRUE(q.Enqueue(1, DeliveryMode::kReliableOrdered, std::string(100, 'b')).ok());
  ASSERT_TRUE(q.Enqueue(2, DeliveryMode::kReliableOrdered, "chat").ok());
  std::vector<OutgoingFragment> f = Drain(q);
  ASSERT_EQ(f.size(), 11u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(f[i].channel, 1u) << i;
  EXPECT_EQ(f[10].channel, 2u);  // behind the whole bulk message
  EXPECT_EQ(q.ChannelLane(1), std::make_pair(0u, 1u));
}

TEST(SendQueueLaneTest, UrgentChannelOvertakesBulkInTheMiddleOfAMessage) {
  SendQueue q({.max_fragment_payload = 10});
  ASSERT_TRUE(q.SetChannelLane(1, 5, 1).ok());  // bulk
  ASSERT_TRUE(q.SetChannelLane(2, 0, 1).ok());  // chat
  ASSERT_TRUE(q.Enqueue(1, DeliveryMode::kReliableOrdered, std::string(100, 'b')).ok());
  std::vector<OutgoingFragment> first = Take(q, 3);
  ASSERT_EQ(first.size(), 3u);
  ASSERT_TRUE(q.Enqueue(2, DeliveryMode::kReliableOrdered, std::string(25, 'c')).ok());
  ASSERT_TRUE(q.Enqueue(2, DeliveryMode::kUnreliable, "u").ok());
  // 25 bytes in fragments of at most 10: 9 bytes each. A bulk fragment
  // would be 10; one of at most 9 is the chat's, taken before the bulk's.
  const std::optional<OutgoingFragment> chat = q.Next(9);
  ASSERT_TRUE(chat.has_value());
  EXPECT_EQ(chat->channel, 2u);
  EXPECT_EQ(chat->header.index, 0u);
  std::vector<OutgoingFragment> next = {*chat};
  for (OutgoingFragment& f : Take(q, 3)) next.push_back(f);
  ASSERT_EQ(next.size(), 4u);
  // Strict: both chat messages (3 fragments + 1), in their order, before
  // the bulk message's fourth fragment.
  EXPECT_EQ(next[0].channel, 2u);
  EXPECT_EQ(next[0].header.index, 0u);
  EXPECT_EQ(next[1].header.index, 1u);
  EXPECT_EQ(next[2].header.index, 2u);
  EXPECT_EQ(next[3].channel, 2u);
  EXPECT_EQ(next[3].mode, DeliveryMode::kUnreliable);
  std::vector<OutgoingFragment> rest = Drain(q);
  ASSERT_EQ(rest.size(), 7u);
  for (size_t i = 0; i < rest.size(); ++i) {
    EXPECT_EQ(rest[i].channel, 1u);
    EXPECT_EQ(rest[i].header.index, 3 + i);
  }
}

TEST(SendQueueLaneTest, EqualPriorityLanesShareBytesByWeight) {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    std::mt19937_64 rng(seed);
    SendQueue q({.max_fragment_payload = 100});
    ASSERT_TRUE(q.SetChannelLane(1, 2, 3).ok());
    ASSERT_TRUE(q.SetChannelLane(2, 2, 1).ok());
    // Messages of random sizes on both: the share is in bytes, not
    // messages or fragments.
    for (int i = 0; i < 1200; ++i) {
      ASSERT_TRUE(
          q.Enqueue(1, DeliveryMode::kReliableOrdered, std::string(1 + rng() % 700, 'a')).ok());
      ASSERT_TRUE(q.Enqueue(2, DeliveryMode::kUnreliable, std::string(1 + rng() % 90, 'b')).ok());
    }
    uint64_t bytes[3] = {0, 0, 0};
    std::map<uint32_t, uint64_t> last_sequence;
    // Both lanes stay backlogged throughout (channel 2 has ~90 KB queued).
    for (const OutgoingFragment& f : Take(q, 1000)) {
      bytes[f.channel] += f.payload.size() + SendQueue::kFragmentCostBytes;
      // Order within a channel: sequences never go back.
      EXPECT_GE(f.sequence, last_sequence[f.channel]);
      last_sequence[f.channel] = f.sequence;
    }
    const double ratio = static_cast<double>(bytes[1]) / static_cast<double>(bytes[2]);
    EXPECT_NEAR(ratio, 3.0, 0.05) << bytes[1] << " vs " << bytes[2];
  }
}

// Tags grow by about 2^16 per byte at weight 1; they are rebased long
// before 2^64. Started 20 fragments short of overflow, the shares still
// hold: without the rebase the tags wrap and one lane takes everything.
TEST(SendQueueLaneTest, TagsNearOverflowAreRebasedAndSharesHold) {
  const uint64_t fragment_cost = (100 + SendQueue::kFragmentCostBytes) * SendQueue::kTagScale;
  SendQueue q(
      {.max_fragment_payload = 100, .initial_virtual_time = ~uint64_t{0} - 20 * fragment_cost});
  ASSERT_TRUE(q.SetChannelLane(1, 3, 3).ok());
  ASSERT_TRUE(q.SetChannelLane(2, 3, 1).ok());
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(q.Enqueue(1, DeliveryMode::kReliableOrdered, std::string(10000, 'a')).ok());
    ASSERT_TRUE(q.Enqueue(2, DeliveryMode::kReliableOrdered, std::string(10000, 'b')).ok());
  }
  int fragments[3] = {0, 0, 0};
  for (const OutgoingFragment& f : Take(q, 400)) ++fragments[f.channel];
  EXPECT_EQ(fragments[1], 300);
  EXPECT_EQ(fragments[2], 100);
}

TEST(SendQueueLaneTest, IdleLaneGetsNoCreditForItsIdleTime) {
  SendQueue q({.max_fragment_payload = 10});
  ASSERT_TRUE(q.SetChannelLane(1, 0, 1).ok());
  ASSERT_TRUE(q.SetChannelLane(2, 0, 1).ok());
  ASSERT_TRUE(q.Enqueue(2, DeliveryMode::kReliableOrdered, std::string(1000, 'x')).ok());
  ASSERT_EQ(Take(q, 50).size(), 50u);  // lane 1 idle meanwhile
  ASSERT_TRUE(q.Enqueue(1, DeliveryMode::kReliableOrdered, std::string(1000, 'y')).ok());
  // From now on they alternate (start-time fair queueing: lane 1 may be
  // one fragment ahead); lane 1 does not send 50 in a row.
  std::vector<OutgoingFragment> f = Take(q, 20);
  int ones = 0;
  for (const OutgoingFragment& x : f) ones += x.channel == 1;
  EXPECT_GE(ones, 10);
  EXPECT_LE(ones, 11);
}

TEST(SendQueueLaneTest, LostFragmentsGoFirstWithinTheirLaneAfterMoreUrgentData) {
  SendQueue q({.max_fragment_payload = 10});
  ASSERT_TRUE(q.SetChannelLane(1, 3, 1).ok());
  ASSERT_TRUE(q.SetChannelLane(2, 0, 1).ok());
  ASSERT_TRUE(q.Enqueue(1, DeliveryMode::kReliableOrdered, std::string(50, 'b')).ok());
  std::vector<OutgoingFragment> sent = Take(q, 2);
  ASSERT_EQ(sent.size(), 2u);
  q.OnLost(sent[0].id);
  ASSERT_TRUE(q.Enqueue(2, DeliveryMode::kReliableOrdered, std::string(15, 'c')).ok());
  std::vector<OutgoingFragment> f = Drain(q);
  ASSERT_EQ(f.size(), 6u);
  EXPECT_EQ(f[0].channel, 2u);  // the urgent lane's new data first
  EXPECT_EQ(f[1].channel, 2u);
  EXPECT_EQ(f[2].channel, 1u);  // then the bulk lane's retransmission
  EXPECT_TRUE(f[2].retransmission);
  EXPECT_EQ(f[2].id, sent[0].id);
  EXPECT_FALSE(f[3].retransmission);  // before its own new data
  EXPECT_EQ(f[3].header.index, 2u);
  EXPECT_EQ(q.retransmitted_fragments(), 1u);
}

TEST(SendQueueLaneTest, LostFragmentSettledMeanwhileIsSkipped) {
  SendQueue q({.max_fragment_payload = 10});
  ASSERT_TRUE(q.SetChannelLane(1, 1, 1).ok());
  ASSERT_TRUE(q.Enqueue(1, DeliveryMode::kReliableOrdered, std::string(20, 'b')).ok());
  std::vector<OutgoingFragment> sent = Drain(q);
  ASSERT_EQ(sent.size(), 2u);
  q.OnLost(sent[0].id);
  EXPECT_TRUE(q.HasSendable());
  std::vector<MessageReceipt> receipts;
  q.OnAcked(sent[0].id, &receipts);  // a late ack
  EXPECT_FALSE(q.HasSendable());
  EXPECT_FALSE(q.Next(100).has_value());
  EXPECT_FALSE(q.Next().has_value());
}

TEST(SendQueueLaneTest, WindowBlocksOnlyItsOwnLane) {
  SendQueue q({.window = 2});
  ASSERT_TRUE(q.SetChannelLane(1, 0, 1).ok());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(q.Enqueue(1, DeliveryMode::kReliableOrdered, "w").ok());
  ASSERT_TRUE(q.Enqueue(3, DeliveryMode::kReliableOrdered, "s").ok());  // shared lane
  std::vector<OutgoingFragment> f = Drain(q);
  ASSERT_EQ(f.size(), 3u);  // lane 1: sequences 0 and 1 (window 2); shared: 1
  int ones = 0;
  for (const OutgoingFragment& x : f) ones += x.channel == 1;
  EXPECT_EQ(ones, 2);
  EXPECT_FALSE(q.HasSendable());
  std::vector<MessageReceipt> receipts;
  for (const OutgoingFragment& x : f) {
    if (x.channel == 1 && x.sequence == 0) q.OnAcked(x.id, &receipts);
  }
  // The window moved: lane 1 is sendable again.
  std::optional<OutgoingFragment> next = q.Next();
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->channel, 1u);
  EXPECT_EQ(next->sequence, 2u);
}

TEST(SendQueueLaneTest, ConfiguringAChannelMovesItsQueueInOrder) {
  SendQueue q({.max_fragment_payload = 10});
  ASSERT_TRUE(q.Enqueue(1, DeliveryMode::kReliableOrdered, std::string(30, 'a')).ok());  // m0
  ASSERT_TRUE(q.Enqueue(2, DeliveryMode::kReliableOrdered, std::string(10, 'x')).ok());  // m1
  ASSERT_TRUE(q.Enqueue(1, DeliveryMode::kReliableOrdered, std::string(10, 'b')).ok());  // m2
  std::vector<OutgoingFragment> sent = Take(q, 2);  // m0 fragments 0, 1
  ASSERT_EQ(sent.size(), 2u);
  q.OnLost(sent[0].id);
  ASSERT_TRUE(q.SetChannelLane(2, 0, 1).ok());  // channel 2 leaves the shared lane
  ASSERT_TRUE(q.SetChannelLane(1, 7, 1).ok());  // channel 1 too, least urgent
  EXPECT_EQ(q.ChannelLane(1), std::make_pair(7u, 1u));
  std::vector<OutgoingFragment> f = Drain(q);
  ASSERT_EQ(f.size(), 4u);
  EXPECT_EQ(f[0].channel, 2u);
  EXPECT_EQ(f[1].channel, 1u);  // channel 1's lane: its loss, then m0's rest, then m2
  EXPECT_TRUE(f[1].retransmission);
  EXPECT_EQ(f[1].id, sent[0].id);
  EXPECT_EQ(f[2].header.index, 2u);
  EXPECT_EQ(f[2].sequence, 0u);
  EXPECT_EQ(f[3].sequence, 1u);
  // Reconfigured (the same lane): its priority changes, nothing is lost.
  ASSERT_TRUE(q.SetChannelLane(1, 1, 5).ok());
  EXPECT_EQ(q.ChannelLane(1), std::make_pair(1u, 5u));
}

TEST(SendQueueLaneTest, NewFragmentSizeAppliesToEveryLane) {
  SendQueue q({.max_fragment_payload = 100});
  ASSERT_TRUE(q.SetChannelLane(4, 2, 1).ok());
  ASSERT_TRUE(q.Enqueue(4, DeliveryMode::kReliableOrdered, std::string(250, 'a')).ok());
  ASSERT_TRUE(q.Enqueue(0, DeliveryMode::kReliableOrdered, std::string(250, 'b')).ok());
  q.SetMaxFragmentPayload(250);
  std::vector<OutgoingFragment> f = Drain(q);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].header.count, 1u);
  EXPECT_EQ(f[1].header.count, 1u);
}

TEST(SendQueueLaneTest, BadPriorityOrWeightIsRefused) {
  SendQueue q({});
  EXPECT_EQ(q.SetChannelLane(0, SendQueue::kPriorities, 1).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(q.SetChannelLane(0, 0, 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(q.SetChannelLane(0, 0, SendQueue::kMaxWeight + 1).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(q.SetChannelLane(0, 0, 0).message(), HasSubstr("weight 0 out of range"));
  EXPECT_TRUE(q.SetChannelLane(0, SendQueue::kPriorities - 1, SendQueue::kMaxWeight).ok());
}

// A bulk sender filled the queue at a less urgent priority: a more urgent
// message still goes in, from a reserve of max_queued_bytes / 8; the bulk
// channel and channels as urgent as it get RESOURCE_EXHAUSTED as before.
TEST(SendQueueLaneTest, UrgentReserveAdmitsMoreUrgentMessagesWhenBulkFilledTheQueue) {
  SendQueue q({.max_queued_bytes = 800});
  ASSERT_TRUE(q.SetChannelLane(1, 4, 1).ok());  // bulk
  ASSERT_TRUE(q.SetChannelLane(2, 0, 1).ok());  // urgent
  ASSERT_TRUE(q.SetChannelLane(3, 4, 9).ok());  // as urgent as the bulk
  ASSERT_TRUE(q.Enqueue(1, DeliveryMode::kReliableOrdered, std::string(800, 'b')).ok());
  EXPECT_EQ(q.Enqueue(1, DeliveryMode::kReliableOrdered, "b").status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(q.Enqueue(3, DeliveryMode::kReliableOrdered, "b").status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(q.Enqueue(2, DeliveryMode::kReliableOrdered, std::string(60, 'u')).ok());
  EXPECT_TRUE(q.Enqueue(2, DeliveryMode::kReliableOrdered, std::string(40, 'u')).ok());
  EXPECT_EQ(q.queued_bytes(), 900u);  // 800 + the whole reserve (800 / 8)
  absl::StatusOr<uint64_t> over = q.Enqueue(2, DeliveryMode::kReliableOrdered, "u");
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  // The shared lane (priority 0) is as urgent as channel 2: the reserve is
  // used up for it too.
  EXPECT_FALSE(q.Enqueue(9, DeliveryMode::kReliableOrdered, "s").ok());
  // Acknowledged urgent data gives the reserve back.
  std::vector<OutgoingFragment> f = Take(q, 2);
  ASSERT_EQ(f.size(), 2u);
  ASSERT_EQ(f[0].channel, 2u);
  std::vector<MessageReceipt> receipts;
  q.OnAcked(f[0].id, &receipts);
  EXPECT_TRUE(q.Enqueue(2, DeliveryMode::kReliableOrdered, std::string(60, 'u')).ok());
}

TEST(SendQueueLaneTest, WithoutLanesTheReserveNeverApplies) {
  SendQueue q({.max_queued_bytes = 800});
  ASSERT_TRUE(q.Enqueue(1, DeliveryMode::kReliableOrdered, std::string(800, 'b')).ok());
  EXPECT_EQ(q.Enqueue(2, DeliveryMode::kReliableOrdered, "u").status().code(),
            absl::StatusCode::kResourceExhausted);
  // Lanes at priority 0 only: everything is as urgent as everything else.
  ASSERT_TRUE(q.SetChannelLane(2, 0, 4).ok());
  EXPECT_EQ(q.Enqueue(2, DeliveryMode::kReliableOrdered, "u").status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(SendQueueLaneTest, RandomLossAndAckWithLanesSettlesEverythingInOrder) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    std::mt19937_64 rng(seed);
    SendQueue q({.max_fragment_payload = 50, .window = 8});
    for (uint32_t c = 0; c < 6; ++c) {
      if (c != 0) {
        ASSERT_TRUE(q.SetChannelLane(c, rng() % 3, 1 + rng() % 5).ok());
      }
    }
    std::map<std::pair<uint32_t, uint64_t>, uint64_t> sizes;
    for (int i = 0; i < 300; ++i) {
      const uint32_t channel = rng() % 7;  // 6: in the shared lane with 0
      const uint64_t size = rng() % 300;
      absl::StatusOr<uint64_t> seq =
          q.Enqueue(channel, DeliveryMode::kReliableOrdered, std::string(size, 'q'));
      ASSERT_TRUE(seq.ok());
      sizes[{channel, *seq}] = size;
    }
    std::vector<MessageReceipt> receipts;
    std::map<uint32_t, std::pair<uint64_t, uint32_t>> last_new;  // first sends per channel
    for (int round = 0; round < 100000 && !q.empty(); ++round) {
      if (round == 500) q.SetMaxFragmentPayload(80);
      std::optional<OutgoingFragment> f = q.Next();
      ASSERT_TRUE(f.has_value()) << "stalled with " << q.messages() << " messages";
      if (!f->retransmission) {
        // New fragments of a channel go in (sequence, index) order.
        auto [it, fresh] = last_new.try_emplace(f->channel, f->sequence, f->header.index);
        if (!fresh) {
          EXPECT_LT(it->second, std::make_pair(f->sequence, f->header.index));
          it->second = {f->sequence, f->header.index};
        }
      }
      if (rng() % 10 < 3) {
        q.OnLost(f->id);
      } else {
        q.OnAcked(f->id, &receipts);
      }
    }
    ASSERT_TRUE(q.empty());
    ASSERT_EQ(receipts.size(), 300u);
    for (const MessageReceipt& r : receipts) EXPECT_EQ(r.bytes, (sizes[{r.channel, r.sequence}]));
    EXPECT_EQ(q.queued_bytes(), 0u);
  }
}

TEST(SendQueueLaneTest, ClearKeepsLaneSettings) {
  SendQueue q({.max_fragment_payload = 10});
  ASSERT_TRUE(q.SetChannelLane(1, 6, 2).ok());
  ASSERT_TRUE(q.Enqueue(1, DeliveryMode::kReliableOrdered, std::string(30, 'a')).ok());
  ASSERT_TRUE(q.Next().has_value());
  q.Clear();
  EXPECT_TRUE(q.empty());
  EXPECT_FALSE(q.HasSendable());
  EXPECT_EQ(q.ChannelLane(1), std::make_pair(6u, 2u));
  ASSERT_TRUE(q.Enqueue(1, DeliveryMode::kReliableOrdered, "again").ok());
  EXPECT_EQ(Drain(q).size(), 1u);
}

}  // namespace
}  // namespace udpmsg::reliable
