// transfer::Sender: the messages it produces, its order rules, and how it
// judges the receiver's answer; plus a Sender feeding a Receiver directly.
#include "apps/transfer/sender.h"

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "apps/transfer/receiver.h"
#include "apps/transfer/sha256.h"
#include "apps/transfer/sink.h"
#include "apps/transfer/transfer.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace udpmsg::transfer {
namespace {

using ::testing::HasSubstr;

TransferMessage Parse(const std::string& bytes) {
  TransferMessage m;
  EXPECT_TRUE(m.ParseFromString(bytes));
  return m;
}

std::string ResultMsg(bool ok, uint64_t size, absl::string_view error = "") {
  TransferMessage m;
  m.mutable_result()->set_ok(ok);
  m.mutable_result()->set_size(size);
  m.mutable_result()->set_error(std::string(error));
  return m.SerializeAsString();
}

Sender::Options Chunks(size_t n) {
  Sender::Options o;
  o.chunk_bytes = n;
  return o;
}

TEST(SenderTest, BeginDataEndCarryNameSizeChunksAndDigest) {
  Sender s("notes.txt", 10, Chunks(4));
  const TransferMessage begin = Parse(*s.Begin());
  EXPECT_EQ(begin.begin().name(), "notes.txt");
  EXPECT_EQ(begin.begin().size(), 10);
  absl::StatusOr<std::vector<std::string>> data = s.Data("0123456789");
  ASSERT_TRUE(data.ok()) << data.status();
  ASSERT_EQ(data->size(), 3u);
  EXPECT_EQ(Parse((*data)[0]).chunk(), "0123");
  EXPECT_EQ(Parse((*data)[2]).chunk(), "89");
  EXPECT_EQ(s.sent(), 10u);
  const TransferMessage end = Parse(*s.End());
  EXPECT_EQ(end.end().size(), 10u);
  EXPECT_EQ(end.end().sha256(), Sha256::Of("0123456789"));
  EXPECT_EQ(s.digest(), Sha256::Of("0123456789"));
  EXPECT_EQ(s.state(), Sender::State::kEnded);
  EXPECT_TRUE(s.OnMessage(ResultMsg(true, 10)).ok());
  EXPECT_EQ(s.state(), Sender::State::kVerified);
  EXPECT_TRUE(s.finished());
}

TEST(SenderTest, CallsOutOfOrderFailWithoutChangingState) {
  Sender s("x", -1, Sender::Options{});
  EXPECT_EQ(s.Data("a").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.End().status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(s.Begin().ok());
  EXPECT_EQ(s.Begin().status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(s.End().ok());
  EXPECT_EQ(s.End().status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.Data("a").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.state(), Sender::State::kEnded);
}

TEST(SenderTest, DataMustMatchTheDeclaredSize) {
  Sender grew("x", 3, Sender::Options{});
  ASSERT_TRUE(grew.Begin().ok());
  ASSERT_TRUE(grew.Data("ab").ok());
  absl::Status s = grew.Data("cd").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("grew past the 3 bytes"));
  EXPECT_EQ(grew.sent(), 2u);

  Sender shrank("x", 3, Sender::Options{});
  ASSERT_TRUE(shrank.Begin().ok());
  ASSERT_TRUE(shrank.Data("ab").ok());
  s = shrank.End().status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("ended after 2 bytes, 3 when"));
}

TEST(SenderTest, RejectionIsReportedWithTheReasonEscaped) {
  Sender s("x", -1, Sender::Options{});
  ASSERT_TRUE(s.Begin().ok());
  const absl::Status st = s.OnMessage(ResultMsg(false, 0, "disk full\n\x1b[31mred"));
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(s.state(), Sender::State::kRejected);
  EXPECT_EQ(s.rejection(), "disk full\\x0a\\x1b[31mred");
  EXPECT_EQ(st.message(), "rejected the transfer: disk full\\x0a\\x1b[31mred");
  EXPECT_EQ(s.status(), st);
  // A huge reason is cut.
  Sender t("x", -1, Sender::Options{});
  ASSERT_TRUE(t.Begin().ok());
  (void)t.OnMessage(ResultMsg(false, 0, std::string(100000, 'e')));
  EXPECT_LE(t.rejection().size(), 1100u);
}

TEST(SenderTest, ProtocolErrorsFromTheReceiverFail) {
  struct Case {
    const char* name;
    std::string message;
    bool ended;
    const char* error;
  } cases[] = {
      {"garbage", "\xff", true, "receiver sent an unexpected message"},
      {"not a result", Parse("").SerializeAsString(), true, "unexpected message"},
      {"ok before end", ResultMsg(true, 0), false, "success before the end"},
      {"ok for another size", ResultMsg(true, 5), true, "receiver confirmed 5 bytes, sent 3"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Sender s("x", -1, Sender::Options{});
    ASSERT_TRUE(s.Begin().ok());
    ASSERT_TRUE(s.Data("abc").ok());
    if (c.ended) {
      ASSERT_TRUE(s.End().ok());
    }
    const absl::Status st = s.OnMessage(c.message);
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(std::string(st.message()), HasSubstr(c.error));
    EXPECT_EQ(s.state(), Sender::State::kFailed);
    // After the verdict, everything is unexpected and the verdict stands.
    EXPECT_FALSE(s.OnMessage(ResultMsg(true, 3)).ok());
    EXPECT_EQ(s.state(), Sender::State::kFailed);
  }
}

TEST(SenderTest, FeedsAReceiverDirectly) {
  std::string data;
  for (int i = 0; i < 100000; ++i) data.push_back(static_cast<char>(i * 7919));
  Sender s("blob", static_cast<int64_t>(data.size()), Chunks(1000));
  MemorySink sink;
  Receiver r(&sink, Receiver::Options{});
  ASSERT_TRUE(r.OnMessage(*s.Begin()).ok());
  for (size_t at = 0; at < data.size(); at += 3333) {
    absl::StatusOr<std::vector<std::string>> messages =
        s.Data(absl::string_view(data).substr(at, 3333));
    ASSERT_TRUE(messages.ok()) << messages.status();
    for (const std::string& m : *messages) ASSERT_TRUE(r.OnMessage(m).ok());
  }
  ASSERT_TRUE(r.OnMessage(*s.End()).ok());
  for (const std::string& reply : r.TakeReplies()) ASSERT_TRUE(s.OnMessage(reply).ok());
  EXPECT_EQ(s.state(), Sender::State::kVerified);
  EXPECT_EQ(r.state(), Receiver::State::kComplete);
  EXPECT_EQ(r.digest(), s.digest());
  EXPECT_TRUE(sink.data() == data);
}

}  // namespace
}  // namespace udpmsg::transfer
