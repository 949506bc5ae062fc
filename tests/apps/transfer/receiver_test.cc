// transfer::Receiver: the strict state machine. Every illegal message order
// and value is a rejection that queues an error Result, aborts the sink
// (nothing committed, partial output discarded) and ends in kFailed.
#include "apps/transfer/receiver.h"

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "apps/transfer/sha256.h"
#include "apps/transfer/sink.h"
#include "apps/transfer/transfer.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace udpmsg::transfer {
namespace {

using ::testing::HasSubstr;

std::string BeginMsg(int64_t size, absl::string_view name = "file") {
  TransferMessage m;
  m.mutable_begin()->set_name(std::string(name));
  m.mutable_begin()->set_size(size);
  return m.SerializeAsString();
}

std::string ChunkMsg(absl::string_view data) {
  TransferMessage m;
  m.set_chunk(std::string(data));
  return m.SerializeAsString();
}

std::string EndMsg(uint64_t size, absl::string_view sha256) {
  TransferMessage m;
  m.mutable_end()->set_size(size);
  m.mutable_end()->set_sha256(std::string(sha256));
  return m.SerializeAsString();
}

std::string EndOf(absl::string_view data) { return EndMsg(data.size(), Sha256::Of(data)); }

std::string ResultMsg(bool ok) {
  TransferMessage m;
  m.mutable_result()->set_ok(ok);
  return m.SerializeAsString();
}

Result ParseResult(const std::string& bytes) {
  TransferMessage m;
  EXPECT_TRUE(m.ParseFromString(bytes));
  EXPECT_TRUE(m.has_result());
  return m.result();
}

TEST(ReceiverTest, BeginChunksEndCommitsAndRepliesOk) {
  MemorySink sink;
  Receiver r(&sink, Receiver::Options{});
  EXPECT_EQ(r.state(), Receiver::State::kAwaitingBegin);
  ASSERT_TRUE(r.OnMessage(BeginMsg(11, "notes.txt")).ok());
  EXPECT_EQ(r.state(), Receiver::State::kReceiving);
  EXPECT_EQ(sink.name(), "notes.txt");
  EXPECT_EQ(sink.declared_size(), 11);
  ASSERT_TRUE(r.OnMessage(ChunkMsg("hello ")).ok());
  ASSERT_TRUE(r.OnMessage(ChunkMsg("")).ok());  // empty chunks are harmless
  ASSERT_TRUE(r.OnMessage(ChunkMsg("world")).ok());
  EXPECT_TRUE(r.TakeReplies().empty());
  ASSERT_TRUE(r.OnMessage(EndOf("hello world")).ok());
  EXPECT_EQ(r.state(), Receiver::State::kComplete);
  EXPECT_TRUE(r.finished());
  EXPECT_TRUE(r.status().ok());
  EXPECT_TRUE(sink.committed());
  EXPECT_EQ(sink.data(), "hello world");
  EXPECT_EQ(sink.aborts(), 0);
  EXPECT_EQ(r.received(), 11u);
  EXPECT_EQ(r.digest(), Sha256::Of("hello world"));
  std::vector<std::string> replies = r.TakeReplies();
  ASSERT_EQ(replies.size(), 1u);
  const Result result = ParseResult(replies[0]);
  EXPECT_TRUE(result.ok());
  EXPECT_EQ(result.size(), 11u);
  EXPECT_TRUE(r.TakeReplies().empty());
}

TEST(ReceiverTest, UnknownSizeAndEmptyTransferComplete) {
  MemorySink sink;
  Receiver r(&sink, Receiver::Options{});
  ASSERT_TRUE(r.OnMessage(BeginMsg(-1)).ok());
  ASSERT_TRUE(r.OnMessage(EndOf("")).ok());
  EXPECT_EQ(r.state(), Receiver::State::kComplete);
  EXPECT_TRUE(sink.committed());
  EXPECT_EQ(sink.data(), "");
}

// One illegal sequence: the messages, which one is rejected, how.
struct IllegalCase {
  std::string name;
  std::vector<std::string> messages;
  size_t rejected;  // index into messages
  absl::StatusCode code;
  std::string error;
  Receiver::Options options;
};

Receiver::Options MaxBytes(uint64_t n) {
  Receiver::Options o;
  o.max_bytes = n;
  return o;
}

std::vector<IllegalCase> IllegalCases() {
  const absl::StatusCode kDataLoss = absl::StatusCode::kDataLoss;
  const absl::StatusCode kExhausted = absl::StatusCode::kResourceExhausted;
  const std::string bad_sha(32, 'x');
  return {
      {"Unparsable", {"\xff\xff\xff"}, 0, kDataLoss, "malformed transfer message", {}},
      {"UnparsableMidTransfer", {BeginMsg(-1), ChunkMsg("ab"), "\x12\x7f"}, 2, kDataLoss,
       "malformed transfer message", {}},
      {"EmptyMessage", {BeginMsg(-1), ""}, 1, kDataLoss, "empty transfer message", {}},
      {"ResultFromTheSender", {BeginMsg(-1), ResultMsg(true)}, 1, kDataLoss,
       "unexpected result from the sender", {}},
      {"ResultBeforeBegin", {ResultMsg(false)}, 0, kDataLoss, "unexpected result", {}},
      // The regression: the receiver used to reopen its output at the second
      // Begin but keep hashing across both, and accepted this End.
      {"SecondBeginMidTransfer",
       {BeginMsg(-1), ChunkMsg("first half "), BeginMsg(-1), ChunkMsg("second half"),
        EndOf("first half second half")},
       2, kDataLoss, "second transfer header after 11 bytes", {}},
      {"SecondBeginRightAway", {BeginMsg(5), BeginMsg(5)}, 1, kDataLoss,
       "second transfer header", {}},
      {"ChunkBeforeBegin", {ChunkMsg("x")}, 0, kDataLoss, "data before the transfer header", {}},
      {"EndBeforeBegin", {EndOf("")}, 0, kDataLoss, "end before the transfer header", {}},
      {"NegativeDeclaredSize", {BeginMsg(-2)}, 0, kDataLoss, "invalid transfer size -2", {}},
      {"ChunkPastDeclaredSize", {BeginMsg(4), ChunkMsg("abc"), ChunkMsg("de")}, 2, kDataLoss,
       "more data than the 4 bytes the transfer header declared", {}},
      {"DeclaredSizeOverMax", {BeginMsg(11)}, 0, kExhausted,
       "transfer of 11 bytes is over the limit of 10 bytes", MaxBytes(10)},
      {"ChunksOverMaxWithUnknownSize", {BeginMsg(-1), ChunkMsg("12345678"), ChunkMsg("abc")}, 2,
       kExhausted, "over the limit of 10 bytes", MaxBytes(10)},
      {"NameTooLong", {BeginMsg(-1, std::string(4097, 'n'))}, 0, kExhausted,
       "name of 4097 bytes is over the limit of 4096", {}},
      {"ShortSha256", {BeginMsg(-1), ChunkMsg("a"), EndMsg(1, Sha256::Of("a").substr(1))}, 2,
       kDataLoss, "sha256 of 31 bytes in the end, want 32", {}},
      {"EmptySha256", {BeginMsg(-1), EndMsg(0, "")}, 1, kDataLoss, "sha256 of 0 bytes", {}},
      {"LongSha256", {BeginMsg(-1), EndMsg(0, Sha256::Of("") + "!")}, 1, kDataLoss,
       "sha256 of 33 bytes", {}},
      {"EndSizeDiffersFromReceived",
       {BeginMsg(-1), ChunkMsg("abc"), EndMsg(4, Sha256::Of("abc"))}, 2, kDataLoss,
       "size mismatch: sender sent 4 bytes, received 3", {}},
      {"EndShortOfDeclaredSize", {BeginMsg(10), ChunkMsg("abc"), EndOf("abc")}, 2, kDataLoss,
       "the transfer header declared 10 bytes, received 3", {}},
      {"Sha256Mismatch", {BeginMsg(3), ChunkMsg("abc"), EndMsg(3, bad_sha)}, 2, kDataLoss,
       "sha256 mismatch: sender 7878", {}},
  };
}

class IllegalSequenceTest : public ::testing::TestWithParam<IllegalCase> {};

TEST_P(IllegalSequenceTest, IsRejectedAndAbortsTheSink) {
  const IllegalCase& c = GetParam();
  MemorySink sink;
  Receiver r(&sink, c.options);
  for (size_t i = 0; i < c.rejected; ++i) {
    ASSERT_TRUE(r.OnMessage(c.messages[i]).ok()) << "message " << i;
  }
  const absl::Status s = r.OnMessage(c.messages[c.rejected]);
  EXPECT_EQ(s.code(), c.code) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(c.error));
  EXPECT_EQ(r.state(), Receiver::State::kFailed);
  EXPECT_TRUE(r.finished());
  EXPECT_EQ(r.status(), s);
  // The output is discarded, never committed.
  EXPECT_TRUE(sink.aborted());
  EXPECT_EQ(sink.commits(), 0);
  EXPECT_EQ(sink.data(), "");
  // The sender is told why, once.
  std::vector<std::string> replies = r.TakeReplies();
  ASSERT_EQ(replies.size(), 1u);
  const Result result = ParseResult(replies[0]);
  EXPECT_FALSE(result.ok());
  EXPECT_EQ(result.error(), s.message());
  // Whatever follows is refused without another reply or sink call.
  for (size_t i = c.rejected + 1; i < c.messages.size(); ++i) {
    EXPECT_EQ(r.OnMessage(c.messages[i]).code(), absl::StatusCode::kDataLoss);
  }
  EXPECT_EQ(r.OnMessage(BeginMsg(-1)).code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(r.TakeReplies().empty());
  EXPECT_EQ(r.status(), s);
  EXPECT_EQ(sink.commits(), 0);
  EXPECT_LE(sink.opens(), 1);
}

INSTANTIATE_TEST_SUITE_P(Cases, IllegalSequenceTest, ::testing::ValuesIn(IllegalCases()),
                         [](const ::testing::TestParamInfo<IllegalCase>& info) {
                           return info.param.name;
                         });

// The bug this state machine fixes, spelled out: the End below matches the
// SHA-256 of every chunk sent, but a receiver that restarted at the second
// Begin would hold only "second half", whose digest differs.
TEST(ReceiverTest, SecondBeginNeverYieldsOkForBytesWithAnotherDigest) {
  MemorySink sink;
  Receiver r(&sink, Receiver::Options{});
  ASSERT_TRUE(r.OnMessage(BeginMsg(-1)).ok());
  ASSERT_TRUE(r.OnMessage(ChunkMsg("first half ")).ok());
  EXPECT_FALSE(r.OnMessage(BeginMsg(-1)).ok());
  EXPECT_FALSE(r.OnMessage(ChunkMsg("second half")).ok());
  EXPECT_FALSE(r.OnMessage(EndOf("first half second half")).ok());
  EXPECT_NE(r.state(), Receiver::State::kComplete);
  EXPECT_TRUE(r.digest().empty());
  EXPECT_EQ(sink.opens(), 1);
  EXPECT_EQ(sink.commits(), 0);
  EXPECT_TRUE(sink.aborted());
  for (const std::string& reply : r.TakeReplies()) EXPECT_FALSE(ParseResult(reply).ok());
}

// After a verified End the output stays committed (the sender was told ok),
// but anything more is still a protocol error.
TEST(ReceiverTest, AnyMessageAfterTheEndIsAnErrorButCommitStands) {
  for (const std::string& extra : {ChunkMsg("more"), BeginMsg(-1), EndOf("abc"), ChunkMsg(""),
                                   ResultMsg(true), std::string("\xff")}) {
    MemorySink sink;
    Receiver r(&sink, Receiver::Options{});
    ASSERT_TRUE(r.OnMessage(BeginMsg(3)).ok());
    ASSERT_TRUE(r.OnMessage(ChunkMsg("abc")).ok());
    ASSERT_TRUE(r.OnMessage(EndOf("abc")).ok());
    const absl::Status s = r.OnMessage(extra);
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
    EXPECT_EQ(r.state(), Receiver::State::kFailed);
    EXPECT_TRUE(sink.committed());
    EXPECT_EQ(sink.data(), "abc");
    EXPECT_EQ(sink.aborts(), 0);
    std::vector<std::string> replies = r.TakeReplies();
    ASSERT_EQ(replies.size(), 2u);
    EXPECT_TRUE(ParseResult(replies[0]).ok());
    EXPECT_FALSE(ParseResult(replies[1]).ok());
  }
}

// A sink that fails at one step.
class FailingSink final : public Sink {
 public:
  explicit FailingSink(int fail_at) : fail_at_(fail_at) {}
  absl::Status Open(absl::string_view, int64_t) override { return Step(0); }
  absl::Status Write(absl::string_view) override { return Step(1); }
  absl::Status Commit() override {
    absl::Status s = Step(2);
    committed_ = s.ok();
    return s;
  }
  void Abort() override { ++aborts_; }
  int aborts() const { return aborts_; }
  bool committed() const { return committed_; }

 private:
  absl::Status Step(int step) {
    if (step == fail_at_) return absl::InternalError(absl::StrCat("disk full at step ", step));
    return absl::OkStatus();
  }
  int fail_at_;
  int aborts_ = 0;
  bool committed_ = false;
};

TEST(ReceiverTest, SinkErrorsRejectWithTheSinkMessageAndAbort) {
  for (int fail_at = 0; fail_at < 3; ++fail_at) {
    SCOPED_TRACE(fail_at);
    FailingSink sink(fail_at);
    Receiver r(&sink, Receiver::Options{});
    const std::vector<std::string> messages = {BeginMsg(2), ChunkMsg("ab"), EndOf("ab")};
    absl::Status s;
    for (size_t i = 0; i < messages.size() && s.ok(); ++i) s = r.OnMessage(messages[i]);
    EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
    EXPECT_EQ(s.message(), absl::StrCat("disk full at step ", fail_at));
    EXPECT_EQ(r.state(), Receiver::State::kFailed);
    EXPECT_EQ(sink.aborts(), 1);
    EXPECT_FALSE(sink.committed());
    std::vector<std::string> replies = r.TakeReplies();
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(ParseResult(replies[0]).error(), s.message());
  }
}

TEST(ReceiverTest, ConnectionClosedMidTransferAbortsWithoutReply) {
  MemorySink sink;
  Receiver r(&sink, Receiver::Options{});
  ASSERT_TRUE(r.OnMessage(BeginMsg(-1)).ok());
  ASSERT_TRUE(r.OnMessage(ChunkMsg("abcd")).ok());
  r.OnConnectionClosed("peer timeout\x1b[2J");
  EXPECT_EQ(r.state(), Receiver::State::kFailed);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(r.status().message(), "connection closed after 4 bytes: peer timeout\\x1b[2J");
  EXPECT_TRUE(sink.aborted());
  EXPECT_EQ(sink.data(), "");
  EXPECT_TRUE(r.TakeReplies().empty());
}

TEST(ReceiverTest, ConnectionClosedAfterCompletionChangesNothing) {
  MemorySink sink;
  Receiver r(&sink, Receiver::Options{});
  ASSERT_TRUE(r.OnMessage(BeginMsg(-1)).ok());
  ASSERT_TRUE(r.OnMessage(EndOf("")).ok());
  r.OnConnectionClosed("closed");
  EXPECT_EQ(r.state(), Receiver::State::kComplete);
  EXPECT_TRUE(sink.committed());
}

TEST(ReceiverTest, DestroyedMidTransferAbortsTheSink) {
  MemorySink sink;
  {
    Receiver r(&sink, Receiver::Options{});
    ASSERT_TRUE(r.OnMessage(BeginMsg(-1)).ok());
    ASSERT_TRUE(r.OnMessage(ChunkMsg("abcd")).ok());
  }
  EXPECT_TRUE(sink.aborted());
  EXPECT_EQ(sink.data(), "");
}

}  // namespace
}  // namespace udpmsg::transfer
