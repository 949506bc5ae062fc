#include "reliable/congestion.h"

#include <cstdint>
#include <iterator>
#include <memory>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace udpmsg::reliable {
namespace {

const absl::Time kBase = absl::UnixEpoch() + absl::Hours(24);

absl::Time At(int64_t ms) { return kBase + absl::Milliseconds(ms); }

PacketInfo Info(uint64_t number, absl::Time sent, size_t bytes = 1200) {
  return PacketInfo{number, sent, bytes};
}

TEST(NewRenoTest, InitialWindow) {
  // min(10 * 1200, max(2 * 1200, 14720)) = min(12000, 14720) = 12000.
  NewReno cc(1200);
  EXPECT_EQ(cc.name(), "newreno");
  EXPECT_EQ(cc.initial_window(), 12000u);
  EXPECT_EQ(cc.window(), 12000u);
  EXPECT_EQ(cc.minimum_window(), 2400u);
  EXPECT_TRUE(cc.InSlowStart());
  EXPECT_FALSE(cc.InRecovery());
  EXPECT_EQ(cc.reductions(), 0u);
  // min(15000, max(3000, 14720)) = 14720.
  EXPECT_EQ(NewReno(1500).window(), 14720u);
  // min(5000, max(1000, 14720)) = 5000.
  EXPECT_EQ(NewReno(500).window(), 5000u);
}

TEST(NewRenoTest, CanSendWhileBytesInFlightAreBelowTheWindow) {
  NewReno cc(1200);
  EXPECT_TRUE(cc.CanSend(0));
  EXPECT_TRUE(cc.CanSend(11999));
  EXPECT_FALSE(cc.CanSend(12000));
}

TEST(NewRenoTest, SlowStartGrowsByTheBytesAcked) {
  NewReno cc(1200);
  for (uint64_t n = 0; n < 10; ++n) cc.OnPacketSent(At(0), Info(n, At(0)), (n + 1) * 1200);
  cc.OnPacketAcked(At(100), Info(0, At(0)));
  EXPECT_EQ(cc.window(), 13200u);  // 12000 + 1200
  for (uint64_t n = 1; n < 10; ++n) cc.OnPacketAcked(At(100), Info(n, At(0)));
  EXPECT_EQ(cc.window(), 24000u);  // doubled after a window's worth of acks
  cc.OnPacketAcked(At(100), Info(10, At(0), 500));
  EXPECT_EQ(cc.window(), 24500u);
  EXPECT_TRUE(cc.InSlowStart());
}

TEST(NewRenoTest, LossesInOneWindowCutOnce) {
  NewReno cc(1200);
  // Packets 0..9 sent at 0; three of them are lost in separate events.
  cc.OnPacketsLost(At(100), Info(2, At(0)), 1200, false);
  EXPECT_EQ(cc.window(), 6000u);  // 12000 * 0.5
  EXPECT_EQ(cc.ssthresh(), 6000u);
  EXPECT_TRUE(cc.InRecovery());
  EXPECT_FALSE(cc.InSlowStart());
  cc.OnPacketsLost(At(101), Info(5, At(0)), 1200, false);
  cc.OnPacketsLost(At(102), Info(7, At(0)), 2400, false);
  EXPECT_EQ(cc.window(), 6000u);
  EXPECT_EQ(cc.reductions(), 1u);
}

TEST(NewRenoTest, LossOfAPacketSentAfterRecoveryStartedCutsAgain) {
  NewReno cc(1200);
  cc.OnPacketsLost(At(100), Info(2, At(0)), 1200, false);  // recovery starts at 100
  EXPECT_EQ(cc.window(), 6000u);
  // Sent at 100 exactly: still part of the episode (sent_time <= start).
  cc.OnPacketsLost(At(150), Info(10, At(100)), 1200, false);
  EXPECT_EQ(cc.window(), 6000u);
  // Sent at 110, after recovery began: a new episode.
  cc.OnPacketsLost(At(200), Info(11, At(110)), 1200, false);
  EXPECT_EQ(cc.window(), 3000u);  // 6000 * 0.5
  EXPECT_EQ(cc.reductions(), 2u);
  // Again: 3000 / 2 = 1500 < minimum 2400.
  cc.OnPacketsLost(At(300), Info(12, At(210)), 1200, false);
  EXPECT_EQ(cc.ssthresh(), 1500u);
  EXPECT_EQ(cc.window(), 2400u);
  EXPECT_EQ(cc.reductions(), 3u);
}

TEST(NewRenoTest, AnEpisodeWhollySpuriousIsUndone) {
  NewReno cc(1200);
  // 2 and 5 (sent at 0) are declared lost in one episode ...
  cc.OnPacketsLost(At(100), Info(2, At(0)), 1200, false);
  cc.OnPacketsLost(At(101), Info(5, At(0)), 1200, false);
  EXPECT_EQ(cc.window(), 6000u);
  // ... and both are acknowledged later: only reordered. After the first
  // nothing changes (5 may still be a real loss); after the second the cut
  // is undone.
  cc.OnSpuriousLoss(At(120), Info(2, At(0)));
  EXPECT_EQ(cc.window(), 6000u);
  EXPECT_TRUE(cc.InRecovery());
  cc.OnSpuriousLoss(At(121), Info(5, At(0)));
  EXPECT_EQ(cc.window(), 12000u);
  EXPECT_EQ(cc.ssthresh(), UINT64_MAX);
  EXPECT_TRUE(cc.InSlowStart());
  EXPECT_FALSE(cc.InRecovery());
  EXPECT_EQ(cc.reductions(), 1u);
  EXPECT_EQ(cc.undos(), 1u);
  // Once undone, more spurious reports change nothing.
  cc.OnSpuriousLoss(At(122), Info(5, At(0)));
  EXPECT_EQ(cc.undos(), 1u);
}

TEST(NewRenoTest, AnEpisodeWithARealLossIsNotUndone) {
  NewReno cc(1200);
  cc.OnPacketsLost(At(100), Info(2, At(0)), 2400, false);  // 2 and 3
  cc.OnSpuriousLoss(At(120), Info(2, At(0)));             // 3 stays lost
  EXPECT_EQ(cc.window(), 6000u);
  EXPECT_EQ(cc.undos(), 0u);
  // A packet from an older episode, or one sent after this episode began,
  // does not count toward it.
  cc.OnPacketsLost(At(200), Info(20, At(150)), 1200, false);  // a new episode at 200
  EXPECT_EQ(cc.window(), 3000u);
  cc.OnSpuriousLoss(At(210), Info(3, At(0)));     // sent before the old episode began
  cc.OnSpuriousLoss(At(211), Info(30, At(205)));  // sent after this one began
  EXPECT_EQ(cc.window(), 3000u);
  EXPECT_EQ(cc.undos(), 0u);
  // Persistent congestion is never undone.
  cc.OnPacketsLost(At(300), Info(40, At(250)), 1200, true);
  cc.OnSpuriousLoss(At(310), Info(40, At(250)));
  EXPECT_EQ(cc.window(), cc.minimum_window());
  EXPECT_EQ(cc.undos(), 0u);
}

TEST(NewRenoTest, WindowNeverDropsBelowTwoDatagrams) {
  NewReno cc(1200);
  for (int64_t i = 0; i < 20; ++i) {
    // Each loss is of a packet sent after the previous episode began.
    cc.OnPacketsLost(At(100 * i + 50), Info(i, At(100 * i + 1)), 1200, false);
    EXPECT_GE(cc.window(), 2400u);
  }
  EXPECT_EQ(cc.window(), 2400u);
  EXPECT_EQ(cc.reductions(), 20u);
  cc.OnPacketsLost(At(5000), Info(100, At(4000)), 1200, true);
  EXPECT_EQ(cc.window(), 2400u);
}

TEST(NewRenoTest, CongestionAvoidanceAddsOneDatagramPerWindowAcked) {
  NewReno cc(1200);
  cc.OnPacketsLost(At(100), Info(0, At(0)), 1200, false);  // window = ssthresh = 6000
  ASSERT_FALSE(cc.InSlowStart());
  // 1200 * 1200 / 6000 = 240 bytes per ACK: 4 ACKs (4800 bytes) are not yet
  // a window, the 5th (6000) adds 1200.
  uint64_t n = 100;
  for (int i = 0; i < 4; ++i) cc.OnPacketAcked(At(300), Info(n++, At(200)));
  EXPECT_EQ(cc.window(), 6000u);
  EXPECT_FALSE(cc.InRecovery());  // acked a packet sent after recovery began
  cc.OnPacketAcked(At(300), Info(n++, At(200)));
  EXPECT_EQ(cc.window(), 7200u);
  // The next increase takes a full 7200-byte window: 6 ACKs.
  for (int i = 0; i < 5; ++i) cc.OnPacketAcked(At(400), Info(n++, At(300)));
  EXPECT_EQ(cc.window(), 7200u);
  cc.OnPacketAcked(At(400), Info(n++, At(300)));
  EXPECT_EQ(cc.window(), 8400u);
  EXPECT_FALSE(cc.InSlowStart());
}

TEST(NewRenoTest, AcksOfPacketsSentBeforeRecoveryDoNotGrowTheWindow) {
  NewReno cc(1200);
  cc.OnPacketsLost(At(100), Info(3, At(0)), 1200, false);
  for (uint64_t n = 4; n < 10; ++n) cc.OnPacketAcked(At(120), Info(n, At(0)));
  EXPECT_EQ(cc.window(), 6000u);
  EXPECT_TRUE(cc.InRecovery());
  // The first packet sent after recovery began ends it.
  cc.OnPacketAcked(At(250), Info(10, At(150)));
  EXPECT_FALSE(cc.InRecovery());
}

TEST(NewRenoTest, PersistentCongestionCollapsesToTheMinimumWindow) {
  NewReno cc(1200);
  cc.OnPacketsLost(At(3000), Info(5, At(0)), 6000, true);
  EXPECT_EQ(cc.window(), 2400u);
  EXPECT_EQ(cc.ssthresh(), 6000u);  // 12000 * 0.5
  EXPECT_FALSE(cc.InRecovery());
  EXPECT_EQ(cc.reductions(), 1u);
  EXPECT_TRUE(cc.InSlowStart());  // 2400 < 6000
  // The recovery period was reset, so even an older packet's ACK grows it.
  cc.OnPacketAcked(At(3100), Info(6, At(0)));
  EXPECT_EQ(cc.window(), 3600u);
}

TEST(NewRenoTest, FactoryByName) {
  std::unique_ptr<CongestionController> cc = MakeCongestionController("newreno", 1200);
  ASSERT_NE(cc, nullptr);
  EXPECT_EQ(cc->name(), "newreno");
  EXPECT_EQ(cc->window(), 12000u);
  EXPECT_EQ(MakeCongestionController("cubic", 1200), nullptr);
  EXPECT_EQ(MakeCongestionController("", 1200), nullptr);
}

// Pacing rate with window 12000 and srtt 100ms:
//   1.25 * 12000 B / 0.1 s = 150000 B/s, so one 1200-byte datagram per
//   1200 / 150000 s = 8ms once the 10-datagram (12000-byte) burst is spent.
TEST(PacerTest, BurstThenOneDatagramPerInterval) {
  Pacer pacer(1200);
  const uint64_t window = 12000;
  const absl::Duration srtt = absl::Milliseconds(100);
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(pacer.NextSendTime(At(0), 1200, window, srtt), At(0)) << i;
    pacer.OnSent(At(0), 1200, window, srtt);
  }
  EXPECT_EQ(pacer.NextSendTime(At(0), 1200, window, srtt), At(8));
  // Halfway: 4ms * 150000 B/s = 600 bytes refilled, 600 missing = 4ms more.
  EXPECT_EQ(pacer.NextSendTime(At(4), 1200, window, srtt), At(8));
  EXPECT_EQ(pacer.NextSendTime(At(8), 1200, window, srtt), At(8));
  pacer.OnSent(At(8), 1200, window, srtt);
  EXPECT_EQ(pacer.NextSendTime(At(8), 1200, window, srtt), At(16));
  // A smaller datagram needs less: 600 B / 150000 B/s = 4ms.
  EXPECT_EQ(pacer.NextSendTime(At(8), 600, window, srtt), At(12));
}

// The burst allowance is what the rate sends in 1 ms, at least ten
// datagrams and at most four full GSO trains (4 x 54 datagrams of 1200
// bytes): a fast path sends long trains, several per wake-up, a slow one
// keeps the ten-datagram burst.
TEST(PacerTest, BurstAllowanceIsOneMillisecondOfTheRateWithinItsBounds) {
  struct Case {
    double bytes_per_second;
    int at_once;  // 1200-byte datagrams sent back to back after an idle second
  };
  for (const Case& c : {Case{1e6, 10}, Case{20e6, 16}, Case{40e6, 33}, Case{200e6, 166},
                        Case{1e9, 216}, Case{10e9, 216}}) {
    Pacer pacer(1200);
    pacer.OnSentAtRate(At(0), 0, c.bytes_per_second);
    int sent = 0;
    while (pacer.NextSendTimeAtRate(At(1000), 1200, c.bytes_per_second, absl::Seconds(1)) ==
           At(1000)) {
      pacer.OnSentAtRate(At(1000), 1200, c.bytes_per_second);
      ASSERT_LT(++sent, 1000);
    }
    EXPECT_EQ(sent, c.at_once) << c.bytes_per_second << " B/s";
  }
}

// The cap is whole trains of whole datagrams, so a burst never ends in a
// short train of its own.
TEST(PacerTest, TheBurstCapIsFourTrainsOfWholeDatagrams) {
  EXPECT_EQ(Pacer::MaxBurstBytes(1472), 4.0 * 44 * 1472);
  EXPECT_EQ(Pacer::MaxBurstBytes(1200), 4.0 * 54 * 1200);
  EXPECT_EQ(Pacer::MaxBurstBytes(16384), 4.0 * 3 * 16384);
  EXPECT_EQ(Pacer::MaxBurstBytes(65507), 4.0 * 65507);
  EXPECT_EQ(Pacer::MaxBurstBytes(70000), 4.0 * 70000);  // one datagram per train
}

TEST(PacerTest, RateScalesWithTheWindowAndRtt) {
  Pacer pacer(1200);
  for (int i = 0; i < 10; ++i) pacer.OnSent(At(0), 1200, 12000, absl::Milliseconds(100));
  // 1.25 * 24000 / 0.1 = 300000 B/s: 1200 B in 4ms.
  EXPECT_EQ(pacer.NextSendTime(At(0), 1200, 24000, absl::Milliseconds(100)), At(4));
  // 1.25 * 12000 / 0.05 = 300000 B/s as well.
  EXPECT_EQ(pacer.NextSendTime(At(0), 1200, 12000, absl::Milliseconds(50)), At(4));
}

TEST(PacerTest, IdleTimeRefillsOnlyOneBurst) {
  Pacer pacer(1200);
  const absl::Duration srtt = absl::Milliseconds(100);
  pacer.OnSent(At(0), 1200, 12000, srtt);
  // A second of idleness refills 150000 bytes, capped at the 12000 burst.
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(pacer.NextSendTime(At(1000), 1200, 12000, srtt), At(1000)) << i;
    pacer.OnSent(At(1000), 1200, 12000, srtt);
  }
  EXPECT_EQ(pacer.NextSendTime(At(1000), 1200, 12000, srtt), At(1008));
}

TEST(PacerTest, NeverLaterThanOneRtt) {
  Pacer pacer(1200);
  const absl::Duration srtt = absl::Milliseconds(10);
  // Window 2400, srtt 10ms: 1.25 * 2400 / 0.01 = 300000 B/s. Twenty sends at
  // once leave a debt (tokens clamp at -12000): 1200 + 12000 = 13200 bytes
  // would take 44ms, but the wait is capped at srtt.
  for (int i = 0; i < 20; ++i) pacer.OnSent(At(0), 1200, 2400, srtt);
  EXPECT_EQ(pacer.NextSendTime(At(0), 1200, 2400, srtt), At(10));
  for (int64_t ms = 0; ms < 100; ++ms) {
    EXPECT_LE(pacer.NextSendTime(At(ms), 1200, 2400, srtt), At(ms) + srtt) << ms;
  }
}

TEST(PacerTest, NoRttMeansNoPacing) {
  Pacer pacer(1200);
  for (int i = 0; i < 20; ++i) pacer.OnSent(At(0), 1200, 12000, absl::ZeroDuration());
  EXPECT_EQ(pacer.NextSendTime(At(0), 1200, 12000, absl::ZeroDuration()), At(0));
}

TEST(PacerTest, IsCopyAssignable) {
  Pacer pacer(1200);
  for (int i = 0; i < 10; ++i) pacer.OnSent(At(0), 1200, 12000, absl::Milliseconds(100));
  pacer = Pacer(1200);  // a fresh bucket
  EXPECT_EQ(pacer.NextSendTime(At(0), 1200, 12000, absl::Milliseconds(100)), At(0));
}

// Path MTU discovery raised (or lowered) the datagram size: the window and
// its growth state stay, the minimum window follows the new size.
TEST(NewRenoTest, DatagramSizeChangeKeepsTheWindow) {
  NewReno cc(1200);
  for (uint64_t n = 0; n < 10; ++n) cc.OnPacketSent(At(0), Info(n, At(0)), (n + 1) * 1200);
  for (uint64_t n = 0; n < 10; ++n) cc.OnPacketAcked(At(100), Info(n, At(0)));
  ASSERT_EQ(cc.window(), 24000u);
  cc.OnDatagramSizeChanged(1472);
  EXPECT_EQ(cc.window(), 24000u);
  EXPECT_EQ(cc.minimum_window(), 2944u);
  EXPECT_TRUE(cc.InSlowStart());
  cc.OnPacketsLost(At(200), Info(20, At(150), 1472), 1472, false);
  EXPECT_EQ(cc.window(), 12000u);
  // Persistent congestion collapses to the new minimum window.
  cc.OnPacketsLost(At(400), Info(30, At(300), 1472), 1472, true);
  EXPECT_EQ(cc.window(), 2944u);
  // A size so large that the window is below its minimum raises it.
  cc.OnDatagramSizeChanged(16384);
  EXPECT_EQ(cc.window(), 32768u);
  cc.OnDatagramSizeChanged(1200);
  EXPECT_EQ(cc.window(), 32768u);
}

TEST(PacerTest, BurstAllowanceFollowsTheDatagramSize) {
  Pacer pacer(1200);
  pacer.OnSent(At(0), 1200, 1'000'000, absl::Milliseconds(10));  // 9 datagrams left
  // The tokens saved are counted in datagrams: 9 of the new size may go at
  // once (10800 bytes' worth would hold a 16384-byte datagram back).
  pacer.SetMaxDatagram(16384);
  EXPECT_EQ(pacer.NextSendTime(At(0), 16384, 1'000'000, absl::Milliseconds(10)), At(0));
}

// A burst decided at once (Pacer::BurstAt) says, packet by packet, what
// NextSendTime and OnSent say for the same packets at the same instant:
// paced and not, datagrams of several sizes, from a bucket drained, full,
// and in debt, at rates whose burst allowance is the floor, the ceiling or
// between.
TEST(PacerTest, ABurstDecidedAtOnceMatchesPacketByPacket) {
  const Pacer::Rate rates[] = {
      Pacer::Rate::OfWindow(12'000, absl::Milliseconds(100)),
      Pacer::Rate::OfWindow(2'000'000, absl::Milliseconds(1)),
      Pacer::Rate::Fixed(5e8, absl::Milliseconds(1)),
      Pacer::Rate::OfWindow(0, absl::Milliseconds(10)),  // no pacing information
  };
  const size_t sizes[] = {1200, 1472, 9000, 300};
  for (size_t r = 0; r < std::size(rates); ++r) {
    for (int debt = 0; debt < 3; ++debt) {
      SCOPED_TRACE(testing::Message() << "rate " << r << " start " << debt);
      Pacer pacer(1472);
      // Drained and refilled a while (0), drained now (1), or in debt (2).
      for (int i = 0; i < 400; ++i) pacer.OnSent(At(0), 1472, rates[r]);
      const absl::Time now = debt == 0 ? At(3) : At(0);
      if (debt == 2) pacer.OnSent(now, 20'000, rates[r]);
      Pacer reference = pacer;
      Pacer::Burst burst = pacer.BurstAt(now, rates[r]);
      for (int i = 0; i < 300; ++i) {
        const size_t bytes = sizes[i % std::size(sizes)];
        const bool allows = reference.NextSendTime(now, bytes, rates[r]) == now;
        ASSERT_EQ(burst.Allows(bytes), allows) << "packet " << i;
        if (!allows) break;
        burst.Spend(bytes);
        reference.OnSent(now, bytes, rates[r]);
      }
    }
  }
}

}  // namespace
}  // namespace udpmsg::reliable
