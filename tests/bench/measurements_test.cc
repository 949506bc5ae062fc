// bench bulk, fairness, latency and rate end to end in this process, small:
// every transfer and flow verified, every reliable ping answered, every
// reliable message delivered. The tables go to stdout (the test log); no figure is asserted.
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "bench/bulk.h"
#include "bench/fairness.h"
#include "bench/latency.h"
#include "bench/rate.h"
#include "gtest/gtest.h"

namespace udpmsg::bench {
namespace {

TEST(BulkTest, EveryTransportVerifiesAtZeroAndFivePercentLoss) {
  BulkConfig c;
  c.size = 256 << 10;
  c.losses = {0, 0.05};
  c.transports = {"udpmsg", "tcp", "enet"};
  c.format = TableFormat::kCsv;
  EXPECT_TRUE(RunBulk(c).ok());
}

TEST(BulkTest, BbrThroughReorderingAndDuplication) {
  BulkConfig c;
  c.size = 128 << 10;
  c.losses = {0.01};
  c.transports = {"udpmsg", "enet"};
  c.cc = reliable::CongestionControl::kBbr;
  c.impairment.reorder = 0.02;
  c.impairment.duplicate = 0.01;
  c.impairs_besides_loss = true;
  c.impairment_description = "reorder 2%, dup 1%";
  c.format = TableFormat::kCsv;
  EXPECT_TRUE(RunBulk(c).ok());
}

TEST(BulkTest, ClientWithoutServerIsDataLoss) {
  BulkConfig c;
  c.role = BenchRole::kClient;
  c.peer = "127.0.0.1:1";  // nothing listens on port 1
  c.transports = {"tcp"};
  c.timeout = absl::Seconds(2);
  c.format = TableFormat::kCsv;
  EXPECT_EQ(RunBulk(c).code(), absl::StatusCode::kDataLoss);
}

TEST(FairnessTest, EveryKindOfFlowAtOnceVerifies) {
  FairnessConfig c;
  c.flows = {"udpmsg", "udpmsg-bbr", "tcp", "enet"};
  c.duration = absl::Milliseconds(200);
  c.format = TableFormat::kCsv;
  EXPECT_TRUE(RunFairness(c).ok());  // DATA_LOSS if a flow failed or did not verify
}

TEST(FairnessTest, NoServerRole) {
  FairnessConfig c;
  c.role = BenchRole::kServer;
  EXPECT_EQ(RunFairness(c).code(), absl::StatusCode::kInvalidArgument);
}

TEST(LatencyTest, ReliableTransportsAnswerEveryPing) {
  LatencyConfig c;
  c.rate = 1000;
  c.count = 100;
  c.duration = absl::Milliseconds(100);
  c.losses = {0, 0.05};
  c.format = TableFormat::kCsv;
  EXPECT_TRUE(RunLatency(c).ok());  // DATA_LOSS if a reliable one missed a ping
}

TEST(RateTest, ReliableDeliversEveryMessage) {
  RateConfig c;
  c.messages = 5000;
  c.format = TableFormat::kCsv;
  EXPECT_TRUE(RunRate(c).ok());  // DATA_LOSS if udpmsg reliable lost one
}

}  // namespace
}  // namespace udpmsg::bench
