#include "reliable/sent_packets.h"

#include <cstdint>
#include <initializer_list>
#include <set>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/frames.h"
#include "reliable/rtt_estimator.h"

namespace udpmsg::reliable {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using proto::AckRange;

const absl::Time kBase = absl::UnixEpoch() + absl::Hours(24);

absl::Time At(double ms) { return kBase + absl::Microseconds(static_cast<int64_t>(ms * 1000)); }

SentPacket Packet(uint64_t number, absl::Time sent, size_t bytes = 1200, bool eliciting = true) {
  SentPacket p;
  p.number = number;
  p.sent_time = sent;
  p.bytes = bytes;
  p.ack_eliciting = eliciting;
  p.fragments.push_back(FragmentId{number, 0});
  return p;
}

proto::Ack AckOf(std::vector<AckRange> ranges, absl::Duration delay = absl::ZeroDuration()) {
  proto::Ack ack;
  ack.ranges = std::move(ranges);
  ack.ack_delay = delay;
  return ack;
}

// What a receiver would send after receiving `received`: descending ranges.
proto::Ack AckOfSet(const std::set<uint64_t>& received) {
  proto::Ack ack;
  for (auto it = received.rbegin(); it != received.rend(); ++it) {
    if (!ack.ranges.empty() && ack.ranges.back().smallest == *it + 1) {
      ack.ranges.back().smallest = *it;
    } else {
      ack.ranges.push_back(AckRange{*it, *it});
    }
  }
  return ack;
}

std::vector<uint64_t> Numbers(const std::vector<SentPacket>& packets) {
  std::vector<uint64_t> out;
  for (const SentPacket& p : packets) out.push_back(p.number);
  return out;
}

SentPackets::AckResult MustAck(SentPackets& sent, absl::Time now, const proto::Ack& ack,
                               RttEstimator& rtt) {
  absl::StatusOr<SentPackets::AckResult> result = sent.OnAck(now, ack, rtt, true);
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? *std::move(result) : SentPackets::AckResult{};
}

// RFC 9002 5.1: a sample needs the largest acknowledged newly acked and at
// least one newly acked ack-eliciting packet.
TEST(SentPacketsTest, RttSampleOnlyWhenLargestIsNewlyAckedAndAckEliciting) {
  SentPackets sent;
  RttEstimator rtt;
  ASSERT_TRUE(sent.OnSent(Packet(0, At(0))));
  ASSERT_TRUE(sent.OnSent(Packet(1, At(10), 40, /*eliciting=*/false)));
  ASSERT_TRUE(sent.OnSent(Packet(2, At(20))));
  ASSERT_TRUE(sent.OnSent(Packet(3, At(30))));
  ASSERT_TRUE(sent.OnSent(Packet(4, At(40))));
  ASSERT_TRUE(sent.OnSent(Packet(5, At(50), 40, /*eliciting=*/false)));

  // Largest 0 newly acked and ack-eliciting: sample 100 - 0 = 100ms.
  SentPackets::AckResult r = MustAck(sent, At(100), AckOf({{0, 0}}), rtt);
  EXPECT_THAT(Numbers(r.acked), ElementsAre(0));
  ASSERT_TRUE(r.rtt_sample.has_value());
  EXPECT_EQ(*r.rtt_sample, absl::Milliseconds(100));
  EXPECT_EQ(rtt.latest(), absl::Milliseconds(100));
  EXPECT_EQ(sent.largest_acked(), 0u);

  // The same ACK again: nothing new, no sample.
  r = MustAck(sent, At(150), AckOf({{0, 0}}), rtt);
  EXPECT_THAT(r.acked, IsEmpty());
  EXPECT_FALSE(r.rtt_sample.has_value());

  // Largest 1 newly acked, but nothing newly acked is ack-eliciting: no sample.
  r = MustAck(sent, At(160), AckOf({{0, 1}}), rtt);
  EXPECT_THAT(Numbers(r.acked), ElementsAre(1));
  EXPECT_FALSE(r.rtt_sample.has_value());
  EXPECT_EQ(rtt.latest(), absl::Milliseconds(100));

  // Largest 3 newly acked: sample 130 - 30 = 100ms.
  r = MustAck(sent, At(130), AckOf({{3, 3}, {0, 1}}), rtt);
  ASSERT_TRUE(r.rtt_sample.has_value());
  EXPECT_EQ(*r.rtt_sample, absl::Milliseconds(100));

  // 2 newly acked but the largest (3) is not: no sample.
  r = MustAck(sent, At(200), AckOf({{0, 3}}), rtt);
  EXPECT_THAT(Numbers(r.acked), ElementsAre(2));
  EXPECT_FALSE(r.rtt_sample.has_value());
  EXPECT_EQ(rtt.latest(), absl::Milliseconds(100));

  // Largest 5 (ack-only) newly acked together with 4 (ack-eliciting): a
  // sample from the largest, 160 - 50 = 110ms.
  r = MustAck(sent, At(160), AckOf({{0, 5}}), rtt);
  EXPECT_THAT(Numbers(r.acked), ElementsAre(4, 5));
  ASSERT_TRUE(r.rtt_sample.has_value());
  EXPECT_EQ(*r.rtt_sample, absl::Milliseconds(110));
  EXPECT_EQ(rtt.latest(), absl::Milliseconds(110));
  EXPECT_EQ(sent.size(), 0u);
}

TEST(SentPacketsTest, AckDelayReachesTheEstimator) {
  SentPackets sent;
  RttEstimator rtt;
  sent.OnSent(Packet(0, At(0)));
  sent.OnSent(Packet(1, At(0)));
  MustAck(sent, At(100), AckOf({{0, 0}}), rtt);  // srtt 100, var 50, min 100
  // 120 - 20 = 100 >= 100: adjusted 100; srtt = 87.5 + 12.5 = 100.
  MustAck(sent, At(120), AckOf({{0, 1}}, absl::Milliseconds(20)), rtt);
  EXPECT_EQ(rtt.smoothed(), absl::Milliseconds(100));
  EXPECT_EQ(rtt.rttvar(), absl::Microseconds(37500));  // 3/4 * 50
}

TEST(SentPacketsTest, PacketThresholdDeclaresLossAtThreeNewerPacketsAcked) {
  SentPackets sent;
  RttEstimator rtt;
  // All sent at once and acked 100ms later: every sample is 100ms, so the
  // time threshold (9/8 * 100 = 112.5ms) never fires here.
  for (uint64_t n = 0; n < 5; ++n) ASSERT_TRUE(sent.OnSent(Packet(n, At(0))));
  MustAck(sent, At(100), AckOf({{0, 0}}), rtt);
  // Largest 3; 1 and 2 outstanding: 3 - 1 = 2 < 3, not lost.
  SentPackets::AckResult r = MustAck(sent, At(100), AckOf({{3, 3}, {0, 0}}), rtt);
  EXPECT_THAT(r.lost, IsEmpty());
  // 1 and 2 wait on the loss timer: sent at 0 + 112.5ms.
  EXPECT_EQ(sent.Deadline(rtt), At(112.5));
  // Largest 4: 4 - 1 = 3 >= 3: 1 lost; 4 - 2 = 2: 2 is not.
  r = MustAck(sent, At(100), AckOf({{3, 4}, {0, 0}}), rtt);
  EXPECT_THAT(Numbers(r.acked), ElementsAre(4));
  EXPECT_THAT(Numbers(r.lost), ElementsAre(1));
  EXPECT_THAT(r.lost[0].fragments, ElementsAre(FragmentId{1, 0}));
  EXPECT_FALSE(r.persistent_congestion);
  EXPECT_EQ(sent.size(), 1u);  // 2
  EXPECT_EQ(sent.bytes_in_flight(), 1200u);
}

TEST(SentPacketsTest, TwoPacketReorderingCausesNoSpuriousLoss) {
  // Packets sent 1ms apart; each one's ACK arrives 100ms after it was sent,
  // except that the network reorders: 0 1 3 2 4 5 and 6 7 9 10 8 11 (8 is
  // overtaken by two packets). Every arrival triggers its own cumulative ACK.
  const std::vector<uint64_t> arrival = {0, 1, 3, 2, 4, 5, 6, 7, 9, 10, 8, 11};
  SentPackets sent;
  RttEstimator rtt;
  for (uint64_t n = 0; n < 12; ++n) ASSERT_TRUE(sent.OnSent(Packet(n, At(n))));
  std::set<uint64_t> received;
  for (size_t i = 0; i < arrival.size(); ++i) {
    SCOPED_TRACE(testing::Message() << "ack of " << arrival[i]);
    received.insert(arrival[i]);
    // The i-th ACK arrives at 100 + i ms. Samples are 99-100ms, so the loss
    // delay is about 9/8 * 100 = 112.5ms, while an outstanding packet is at
    // most 101ms old (8, sent at 8, when 10's ACK arrives at 109).
    SentPackets::AckResult r = MustAck(sent, At(100 + i), AckOfSet(received), rtt);
    EXPECT_THAT(r.lost, IsEmpty());
    EXPECT_THAT(Numbers(r.acked), ElementsAre(arrival[i]));
  }
  EXPECT_EQ(sent.size(), 0u);
  EXPECT_EQ(sent.bytes_in_flight(), 0u);
}

TEST(SentPacketsTest, ThreePacketReorderingIsDeclaredLost) {
  SentPackets sent;
  RttEstimator rtt;
  for (uint64_t n = 0; n < 6; ++n) sent.OnSent(Packet(n, At(0)));
  MustAck(sent, At(100), AckOf({{0, 1}}), rtt);
  MustAck(sent, At(100), AckOf({{3, 4}, {0, 1}}), rtt);
  // 5 - 2 = 3: 2 is declared lost (RFC 9002's threshold tolerates 2).
  SentPackets::AckResult r = MustAck(sent, At(100), AckOf({{3, 5}, {0, 1}}), rtt);
  EXPECT_THAT(Numbers(r.lost), ElementsAre(2));
}

TEST(SentPacketsTest, SpuriousLossRaisesThePacketThresholdToTheReorderingSeen) {
  // A path that delays one packet in ten behind five newer ones. Packets are
  // sent 1ms apart and acked 100ms later, so only the packet threshold can
  // fire (the loss delay is 112.5ms).
  SentPackets sent;
  RttEstimator rtt;
  EXPECT_EQ(sent.packet_threshold(), 3);
  std::set<uint64_t> received;
  uint64_t spurious = 0;
  uint64_t lost = 0;
  auto round = [&](uint64_t first) {
    for (uint64_t n = first; n < first + 10; ++n) ASSERT_TRUE(sent.OnSent(Packet(n, At(n))));
    // Arrival order: first+1 .. first+5, then first (5 behind), then the rest.
    std::vector<uint64_t> order;
    for (uint64_t n = first + 1; n <= first + 5; ++n) order.push_back(n);
    order.push_back(first);
    for (uint64_t n = first + 6; n < first + 10; ++n) order.push_back(n);
    for (size_t i = 0; i < order.size(); ++i) {
      received.insert(order[i]);
      SentPackets::AckResult r =
          MustAck(sent, At(static_cast<double>(first + 100 + i)), AckOfSet(received), rtt);
      lost += r.lost.size();
      spurious += r.spurious.size();
    }
  };
  round(0);
  // The first time, the late packet is declared lost (5 newer acked), and
  // its acknowledgement then shows the loss was spurious.
  EXPECT_EQ(lost, 1u);
  EXPECT_EQ(spurious, 1u);
  EXPECT_GE(sent.packet_threshold(), 6);
  EXPECT_LE(sent.packet_threshold(), SentPackets::kMaxPacketThreshold);
  // The same reordering again costs nothing.
  for (uint64_t first = 10; first < 100; first += 10) round(first);
  EXPECT_EQ(lost, 1u);
  EXPECT_EQ(spurious, 1u);
  EXPECT_EQ(sent.size(), 0u);
  // A real loss is still found, by the raised threshold or the loss timer.
  for (uint64_t n = 100; n < 120; ++n) ASSERT_TRUE(sent.OnSent(Packet(n, At(n))));
  received.insert(101);
  for (uint64_t n = 102; n < 120; ++n) received.insert(n);
  SentPackets::AckResult r = MustAck(sent, At(220), AckOfSet(received), rtt);
  std::vector<uint64_t> found = Numbers(r.lost);
  if (found.empty()) {
    ASSERT_NE(sent.Deadline(rtt), absl::InfiniteFuture());
    found = Numbers(sent.OnTimeout(sent.Deadline(rtt), rtt).lost);
  }
  EXPECT_THAT(found, ElementsAre(100));
}

TEST(SentPacketsTest, SpuriousLossRaisesTheTimeThresholdAtMostToTwoRtts) {
  SentPackets sent;
  RttEstimator rtt;
  EXPECT_EQ(sent.time_threshold(), 9.0 / 8.0);
  // 0 and 1 sent together; 1 acked at 100ms (the RTT); 0's ack comes only at
  // 150ms. The loss timer (112.5ms) declares 0 lost first.
  ASSERT_TRUE(sent.OnSent(Packet(0, At(0))));
  ASSERT_TRUE(sent.OnSent(Packet(1, At(0))));
  SentPackets::AckResult r = MustAck(sent, At(100), AckOf({{1, 1}}), rtt);
  EXPECT_THAT(r.lost, IsEmpty());
  EXPECT_EQ(sent.Deadline(rtt), At(112.5));
  EXPECT_THAT(Numbers(sent.OnTimeout(At(112.5), rtt).lost), ElementsAre(0));
  r = MustAck(sent, At(150), AckOf({{0, 1}}), rtt);
  EXPECT_EQ(r.spurious.size(), 1u);
  // 150ms / 100ms + 1/8.
  EXPECT_NEAR(sent.time_threshold(), 1.5 + 0.125, 1e-9);
  // A packet 10 RTTs late raises it only to the cap.
  ASSERT_TRUE(sent.OnSent(Packet(2, At(200))));
  ASSERT_TRUE(sent.OnSent(Packet(3, At(200))));
  MustAck(sent, At(300), AckOf({{3, 3}, {0, 1}}), rtt);
  r = {};
  for (int i = 0; i < 5 && sent.size() > 0; ++i) {
    SentPackets::TimeoutResult t = sent.OnTimeout(sent.Deadline(rtt), rtt);
    if (!t.lost.empty()) break;
  }
  r = MustAck(sent, At(1200), AckOf({{0, 3}}), rtt);
  EXPECT_EQ(r.spurious.size(), 1u);
  EXPECT_EQ(sent.time_threshold(), SentPackets::kMaxTimeThreshold);
}

TEST(SentPacketsTest, TimeThresholdLossOnTheLossTimer) {
  SentPackets sent;
  RttEstimator rtt;
  sent.OnSent(Packet(0, At(0)));
  sent.OnSent(Packet(1, At(10)));
  // Ack of 1 at 110: sample 100ms, loss delay 9/8 * 100 = 112.5ms. Packet 0
  // is 110ms old (< 112.5) and only one number older: not lost yet; the loss
  // timer is its send time + 112.5ms.
  SentPackets::AckResult r = MustAck(sent, At(110), AckOf({{1, 1}}), rtt);
  EXPECT_THAT(r.lost, IsEmpty());
  EXPECT_EQ(sent.Deadline(rtt), At(112.5));
  // Early call: nothing happens.
  SentPackets::TimeoutResult t = sent.OnTimeout(At(112.4), rtt);
  EXPECT_THAT(t.lost, IsEmpty());
  EXPECT_FALSE(t.probe);
  // At the deadline 0 is 112.5ms old: lost, and no probe.
  t = sent.OnTimeout(At(112.5), rtt);
  EXPECT_THAT(Numbers(t.lost), ElementsAre(0));
  EXPECT_FALSE(t.probe);
  EXPECT_EQ(sent.pto_count(), 0);
  EXPECT_EQ(sent.bytes_in_flight(), 0u);
  EXPECT_EQ(sent.Deadline(rtt), absl::InfiniteFuture());  // nothing in flight
}

TEST(SentPacketsTest, TimeThresholdLossOnTheAck) {
  SentPackets sent;
  RttEstimator rtt;
  sent.OnSent(Packet(0, At(0)));
  sent.OnSent(Packet(1, At(50)));
  // Sample 150 - 50 = 100ms; loss delay 112.5ms; packet 0 is 150ms old.
  SentPackets::AckResult r = MustAck(sent, At(150), AckOf({{1, 1}}), rtt);
  EXPECT_THAT(Numbers(r.lost), ElementsAre(0));
}

TEST(SentPacketsTest, TimeThresholdUsesTheLargerOfSmoothedAndLatest) {
  SentPackets sent;
  RttEstimator rtt;
  sent.OnSent(Packet(0, At(0)));
  sent.OnSent(Packet(1, At(1)));
  sent.OnSent(Packet(2, At(2)));
  MustAck(sent, At(100), AckOf({{0, 0}}), rtt);  // srtt 100
  // Sample 302 - 2 = 300: srtt = 87.5 + 37.5 = 125, latest 300: loss delay
  // 9/8 * 300 = 337.5ms; packet 1 is 301ms old: not lost.
  SentPackets::AckResult r = MustAck(sent, At(302), AckOf({{2, 2}, {0, 0}}), rtt);
  EXPECT_THAT(r.lost, IsEmpty());
  EXPECT_EQ(sent.Deadline(rtt), At(1 + 337.5));
}

TEST(SentPacketsTest, CustomTimeThreshold) {
  SentPackets sent(SentPackets::Options{3, 1.5, 1 << 16});
  RttEstimator rtt;
  sent.OnSent(Packet(0, At(0)));
  sent.OnSent(Packet(1, At(20)));
  // Sample 100ms; loss delay 1.5 * 100 = 150ms; packet 0 is 120ms old.
  SentPackets::AckResult r = MustAck(sent, At(120), AckOf({{1, 1}}), rtt);
  EXPECT_THAT(r.lost, IsEmpty());
  EXPECT_EQ(sent.Deadline(rtt), At(150));
}

TEST(SentPacketsTest, ProbeTimeoutBacksOffExponentiallyAndResetsOnAck) {
  SentPackets sent;
  RttEstimator rtt;  // no sample: Pto(true) = 333 + 4 * 166.5 + 25 = 1024ms
  EXPECT_EQ(sent.Deadline(rtt), absl::InfiniteFuture());
  sent.OnSent(Packet(0, At(0)));
  sent.OnSent(Packet(1, At(10)));
  // Last ack-eliciting send + PTO: 10 + 1024.
  EXPECT_EQ(sent.Deadline(rtt), At(1034));
  SentPackets::TimeoutResult t = sent.OnTimeout(At(1033), rtt);
  EXPECT_FALSE(t.probe);
  EXPECT_EQ(sent.pto_count(), 0);
  t = sent.OnTimeout(At(1034), rtt);
  EXPECT_TRUE(t.probe);
  EXPECT_THAT(t.lost, IsEmpty());  // a PTO declares nothing lost
  EXPECT_EQ(sent.pto_count(), 1);
  EXPECT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent.Deadline(rtt), At(10 + 2 * 1024));  // 2058
  EXPECT_TRUE(sent.OnTimeout(At(2058), rtt).probe);
  EXPECT_EQ(sent.pto_count(), 2);
  EXPECT_EQ(sent.Deadline(rtt), At(10 + 4 * 1024));  // 4106
  // A probe sent at 4106 restarts from its send time, still backed off.
  sent.OnSent(Packet(2, At(4106)));
  EXPECT_EQ(sent.Deadline(rtt), At(4106 + 4 * 1024));  // 8202
  // Its ACK: sample 100ms (srtt 100, var 50, PTO 100 + 200 + 25 = 325ms),
  // count reset; 0 and 1 are over 9/8 * 100ms old: lost.
  SentPackets::AckResult r = MustAck(sent, At(4206), AckOf({{2, 2}}), rtt);
  EXPECT_EQ(sent.pto_count(), 0);
  EXPECT_THAT(Numbers(r.lost), ElementsAre(0, 1));
  EXPECT_EQ(sent.Deadline(rtt), absl::InfiniteFuture());
  sent.OnSent(Packet(3, At(4300)));
  EXPECT_EQ(sent.Deadline(rtt), At(4300 + 325));
}

TEST(SentPacketsTest, ProbeTimeoutBackoffStopsAtTheCapButNeverBelowOnePto) {
  SentPackets::Options options;
  options.max_pto_period = absl::Milliseconds(3000);
  SentPackets sent(options);
  RttEstimator rtt;  // Pto(true) = 1024ms
  sent.OnSent(Packet(0, At(0)));
  EXPECT_EQ(sent.Deadline(rtt), At(1024));
  EXPECT_TRUE(sent.OnTimeout(At(1024), rtt).probe);
  EXPECT_EQ(sent.Deadline(rtt), At(2048));
  EXPECT_TRUE(sent.OnTimeout(At(2048), rtt).probe);
  // 4 x 1024 would be 4096: capped at 3000 after the last send.
  EXPECT_EQ(sent.Deadline(rtt), At(3000));
  for (int i = 0; i < 20; ++i) EXPECT_TRUE(sent.OnTimeout(sent.Deadline(rtt), rtt).probe);
  EXPECT_EQ(sent.pto_count(), 22);
  sent.OnSent(Packet(1, At(5000)));
  EXPECT_EQ(sent.Deadline(rtt), At(5000 + 3000));
  // A cap below one PTO leaves the PTO itself, unbacked.
  options.max_pto_period = absl::Milliseconds(100);
  SentPackets tight(options);
  tight.OnSent(Packet(0, At(0)));
  EXPECT_TRUE(tight.OnTimeout(At(1024), rtt).probe);
  EXPECT_TRUE(tight.OnTimeout(At(1024), rtt).probe);
  EXPECT_EQ(tight.Deadline(rtt), At(1024));
}

TEST(SentPacketsTest, OnlyAckElicitingPacketsArmTheProbeTimer) {
  SentPackets sent;
  RttEstimator rtt;
  sent.OnSent(Packet(0, At(0), 40, /*eliciting=*/false));
  EXPECT_EQ(sent.Deadline(rtt), absl::InfiniteFuture());
  EXPECT_FALSE(sent.OnTimeout(At(5000), rtt).probe);
  sent.OnSent(Packet(1, At(10)));
  sent.OnSent(Packet(2, At(20), 40, /*eliciting=*/false));
  EXPECT_EQ(sent.Deadline(rtt), At(10 + 1024));
}

TEST(SentPacketsTest, AckOfAnUnsentNumberIsInvalid) {
  SentPackets sent;
  RttEstimator rtt;
  EXPECT_EQ(sent.OnAck(At(0), AckOf({{0, 0}}), rtt, true).status().code(),
            absl::StatusCode::kInvalidArgument);
  for (uint64_t n = 0; n < 3; ++n) sent.OnSent(Packet(n, At(0)));
  EXPECT_EQ(sent.OnAck(At(100), AckOf({{3, 3}}), rtt, true).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sent.OnAck(At(100), AckOf({{0, 5}}), rtt, true).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sent.OnAck(At(100), AckOf({{2, 1}}), rtt, true).status().code(),
            absl::StatusCode::kInvalidArgument);  // inverted
  // Nothing was touched.
  EXPECT_EQ(sent.size(), 3u);
  EXPECT_EQ(sent.bytes_in_flight(), 3600u);
  EXPECT_FALSE(sent.largest_acked().has_value());
  EXPECT_FALSE(rtt.has_sample());
  // The largest sent is fine; an empty ACK is a no-op.
  EXPECT_TRUE(sent.OnAck(At(100), AckOf({}), rtt, true).ok());
  EXPECT_TRUE(sent.OnAck(At(100), AckOf({{2, 2}}), rtt, true).ok());
}

// Persistent congestion fixture: packet 0 sent at 0 and acked at 100 (first
// RTT sample, srtt 100, var 50), then the given packets, then an ACK at 1400
// of `acked` with a 100ms sample (the last packet is sent at 1300), giving
// srtt = 100, var = 3/4 * 50 = 37.5 and a persistent congestion duration of
// (100 + 4 * 37.5 + 25) * 3 = 825ms; loss delay 112.5ms.
SentPackets::AckResult PersistentCongestionCase(const std::vector<double>& send_ms,
                                                const std::set<uint64_t>& acked) {
  SentPackets sent;
  RttEstimator rtt;
  sent.OnSent(Packet(0, At(0)));
  MustAck(sent, At(100), AckOf({{0, 0}}), rtt);
  uint64_t n = 1;
  for (double ms : send_ms) sent.OnSent(Packet(n++, At(ms)));
  std::set<uint64_t> all = acked;
  all.insert(0);
  SentPackets::AckResult r = MustAck(sent, At(1400), AckOfSet(all), rtt);
  EXPECT_EQ(rtt.PersistentCongestionDuration(), absl::Milliseconds(825));
  return r;
}

TEST(SentPacketsTest, PersistentCongestionWhenLossesSpanTheDuration) {
  // 1 at 200, 2 at 700, 3 at 1200 lost (3 is 200ms old > 112.5); 1..3 span
  // 1000ms > 825ms with nothing acked in between.
  SentPackets::AckResult r = PersistentCongestionCase({200, 700, 1200, 1300}, {4});
  EXPECT_THAT(Numbers(r.lost), ElementsAre(1, 2, 3));
  EXPECT_TRUE(r.persistent_congestion);
}

TEST(SentPacketsTest, NoPersistentCongestionWhenTheSpanIsShorter) {
  // 1 at 200 .. 3 at 1000: 800ms < 825ms.
  SentPackets::AckResult r = PersistentCongestionCase({200, 600, 1000, 1300}, {4});
  EXPECT_THAT(Numbers(r.lost), ElementsAre(1, 2, 3));
  EXPECT_FALSE(r.persistent_congestion);
}

TEST(SentPacketsTest, NoPersistentCongestionWhenSomethingInBetweenWasAcked) {
  // As the first case, but 2 (sent between 1 and 3) is acknowledged.
  SentPackets::AckResult r = PersistentCongestionCase({200, 700, 1200, 1300}, {2, 4});
  EXPECT_THAT(Numbers(r.lost), ElementsAre(1, 3));
  EXPECT_FALSE(r.persistent_congestion);
}

TEST(SentPacketsTest, NoPersistentCongestionForNonElicitingEdges) {
  // 1 at 200 is not ack-eliciting: the eliciting losses 2 (700) and 3 (1200)
  // span only 500ms.
  SentPackets sent;
  RttEstimator rtt;
  sent.OnSent(Packet(0, At(0)));
  MustAck(sent, At(100), AckOf({{0, 0}}), rtt);
  sent.OnSent(Packet(1, At(200), 40, /*eliciting=*/false));
  sent.OnSent(Packet(2, At(700)));
  sent.OnSent(Packet(3, At(1200)));
  sent.OnSent(Packet(4, At(1300)));
  SentPackets::AckResult r = MustAck(sent, At(1400), AckOf({{4, 4}, {0, 0}}), rtt);
  EXPECT_THAT(Numbers(r.lost), ElementsAre(1, 2, 3));
  EXPECT_FALSE(r.persistent_congestion);
}

TEST(SentPacketsTest, NoPersistentCongestionFromPathMtuProbes) {
  // As the first case, but 1 and 3 are path MTU probes: the remaining
  // eliciting loss (2) spans nothing.
  SentPackets sent;
  RttEstimator rtt;
  sent.OnSent(Packet(0, At(0)));
  MustAck(sent, At(100), AckOf({{0, 0}}), rtt);
  SentPacket probe1 = Packet(1, At(200));
  probe1.mtu_probe = true;
  sent.OnSent(probe1);
  sent.OnSent(Packet(2, At(700)));
  SentPacket probe3 = Packet(3, At(1200));
  probe3.mtu_probe = true;
  sent.OnSent(probe3);
  sent.OnSent(Packet(4, At(1300)));
  SentPackets::AckResult r = MustAck(sent, At(1400), AckOf({{4, 4}, {0, 0}}), rtt);
  EXPECT_THAT(Numbers(r.lost), ElementsAre(1, 2, 3));
  EXPECT_FALSE(r.persistent_congestion);
}

TEST(SentPacketsTest, NoPersistentCongestionBeforeTheFirstRttSample) {
  SentPackets sent;
  RttEstimator rtt;
  sent.OnSent(Packet(0, At(0)));
  sent.OnSent(Packet(1, At(500)));
  sent.OnSent(Packet(2, At(1500)));
  sent.OnSent(Packet(3, At(2000)));
  // The first sample (100ms) comes with this ACK; 0..2 span 1500ms > the
  // duration (100 + 200 + 25) * 3 = 975ms, but were all sent before it.
  SentPackets::AckResult r = MustAck(sent, At(2100), AckOf({{3, 3}}), rtt);
  EXPECT_THAT(Numbers(r.lost), ElementsAre(0, 1, 2));
  EXPECT_FALSE(r.persistent_congestion);
}

TEST(SentPacketsTest, BytesInFlightCountsAckElicitingPacketsOnly) {
  SentPackets sent;
  RttEstimator rtt;
  sent.OnSent(Packet(0, At(0), 1200));
  sent.OnSent(Packet(1, At(0), 50, /*eliciting=*/false));
  sent.OnSent(Packet(2, At(0), 1000));
  sent.OnSent(Packet(3, At(0), 700));
  sent.OnSent(Packet(4, At(0), 300));
  sent.OnSent(Packet(5, At(0), 500));
  EXPECT_EQ(sent.bytes_in_flight(), 3700u);  // 1200 + 1000 + 700 + 300 + 500
  EXPECT_EQ(sent.size(), 6u);
  MustAck(sent, At(100), AckOf({{1, 1}}), rtt);  // non-eliciting: no change
  EXPECT_EQ(sent.bytes_in_flight(), 3700u);
  MustAck(sent, At(100), AckOf({{0, 1}}), rtt);
  EXPECT_EQ(sent.bytes_in_flight(), 2500u);
  // Acking 5 declares 2 lost (5 - 2 = 3): -500 - 1000.
  SentPackets::AckResult r = MustAck(sent, At(100), AckOf({{5, 5}, {0, 1}}), rtt);
  EXPECT_THAT(Numbers(r.lost), ElementsAre(2));
  EXPECT_EQ(sent.bytes_in_flight(), 1000u);  // 3 and 4
  sent.Clear();
  EXPECT_EQ(sent.bytes_in_flight(), 0u);
  EXPECT_EQ(sent.size(), 0u);
  EXPECT_EQ(sent.Deadline(rtt), absl::InfiniteFuture());
}

// The ring of packets in flight grows with the flight and gives the memory
// back when a burst is over, even if a few packets stay tracked (a quiet
// connection keeps its last ACK-only packet): it held its peak before.
TEST(SentPacketsTest, RingShrinksAfterABurst) {
  SentPackets sent;
  RttEstimator rtt;
  for (uint64_t n = 0; n < 10'000; ++n) ASSERT_TRUE(sent.OnSent(Packet(n, At(0))));
  EXPECT_EQ(sent.slots(), 16384u);
  // Everything but the last two acknowledged.
  MustAck(sent, At(10), AckOf({{0, 9'997}}), rtt);
  EXPECT_EQ(sent.size(), 2u);
  EXPECT_LE(sent.slots(), 256u);
  // It grows again for the next burst, and empties to nothing.
  for (uint64_t n = 10'000; n < 11'000; ++n) ASSERT_TRUE(sent.OnSent(Packet(n, At(20))));
  EXPECT_EQ(sent.size(), 1'002u);
  MustAck(sent, At(30), AckOf({{0, 10'999}}), rtt);
  EXPECT_EQ(sent.size(), 0u);
  EXPECT_EQ(sent.slots(), 0u);
}

TEST(SentPacketsTest, MaxPacketsBound) {
  SentPackets sent(SentPackets::Options{3, 9.0 / 8.0, 4});
  RttEstimator rtt;
  for (uint64_t n = 0; n < 4; ++n) ASSERT_TRUE(sent.OnSent(Packet(n, At(0))));
  EXPECT_FALSE(sent.OnSent(Packet(4, At(0))));
  EXPECT_EQ(sent.size(), 4u);
  EXPECT_EQ(sent.bytes_in_flight(), 4800u);
  MustAck(sent, At(100), AckOf({{0, 0}}), rtt);
  EXPECT_TRUE(sent.OnSent(Packet(5, At(100))));
  EXPECT_EQ(sent.size(), 4u);
  // Numbers must increase.
  EXPECT_FALSE(sent.OnSent(Packet(5, At(100))));
  EXPECT_FALSE(sent.OnSent(Packet(1, At(100))));
}

// A connection that moved to a new path abandons what is in flight: nothing
// stays in flight, no timer is armed, and a late ack of an abandoned packet
// acknowledges nothing, is no spurious loss and raises no threshold.
TEST(SentPacketsTest, AbandonAllEmptiesTheFlightAndLateAcksOfItAreIgnored) {
  SentPackets sent;
  RttEstimator rtt;
  for (uint64_t n = 1; n <= 5; ++n) ASSERT_TRUE(sent.OnSent(Packet(n, At(n))));
  MustAck(sent, At(30), AckOf({AckRange{1, 1}}), rtt);
  const std::vector<SentPacket> abandoned = sent.AbandonAll();
  EXPECT_THAT(Numbers(abandoned), ::testing::ElementsAre(2, 3, 4, 5));
  EXPECT_EQ(sent.bytes_in_flight(), 0u);
  EXPECT_EQ(sent.size(), 0u);
  EXPECT_EQ(sent.Deadline(rtt), absl::InfiniteFuture());
  const int threshold = sent.packet_threshold();
  ASSERT_TRUE(sent.OnSent(Packet(6, At(40))));
  const SentPackets::AckResult r = MustAck(sent, At(60), AckOf({AckRange{2, 6}}), rtt);
  EXPECT_THAT(Numbers(r.acked), ::testing::ElementsAre(6));
  EXPECT_THAT(r.spurious, IsEmpty());
  EXPECT_THAT(r.lost, IsEmpty());
  EXPECT_EQ(sent.packet_threshold(), threshold);
}

}  // namespace
}  // namespace udpmsg::reliable
