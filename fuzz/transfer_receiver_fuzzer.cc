// libFuzzer entry for transfer::Receiver: options from the first bytes, then
// a sequence of operations, each fed to the receiver and to a small model of
// the protocol (apps/transfer/receiver.h), checked after every step:
//   - OnMessage accepts exactly what the model accepts (one Begin, chunks
//     within the declared size and max_bytes, one End with the right size and
//     SHA-256, sink calls succeeding), and a rejection leaves kFailed with
//     one error Result queued (none after a first rejection)
//   - the sink contract holds: Open at most once and first, Write only while
//     open, Commit at most once and only after a verified End, Abort on every
//     failure before completion, nothing after Commit or Abort
//   - a committed output is exactly the chunks' bytes, its digest the
//     receiver's digest(); every reply parses as a Result
// Aborts on a violation.
//
// Input: byte 0 picks max_bytes (bit 0: unlimited, else 0..255 * 64) and
// which sink call fails (bits 1-3: never, or the Nth call 1..7); byte 1 is
// max_name_bytes. Then records of [op][len: 2 bytes little-endian][len bytes]:
//   op % 8 == 0: the bytes as a raw message (anything, usually garbage)
//             1: Begin{name = bytes, size from the first 2 bytes - 2}
//             2: a chunk of the bytes
//             3: End{size received, sha256 of the chunks so far} (valid)
//             4: End{size from the first byte, sha256 = the rest}
//             5: Result{ok = len odd}
//             6: OnConnectionClosed(bytes)
//             7: an empty message
//
// Built with libFuzzer by `fuzz/run.sh transfer_receiver`, and with the normal
// toolchain into //fuzz:transfer_receiver_fuzz_smoke, which calls the entry.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "apps/transfer/receiver.h"
#include "apps/transfer/sha256.h"
#include "apps/transfer/sink.h"
#include "apps/transfer/transfer.pb.h"
#include "fuzz/fuzz_input.h"

namespace {

using udpmsg::transfer::Receiver;
using udpmsg::transfer::Sha256;
using udpmsg::transfer::TransferMessage;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "transfer_receiver_fuzzer: %s\n", what.c_str());
  std::abort();
}

// Enforces the Sink contract; fails its `fail_at`th call (1-based; 0 never).
class CheckingSink final : public udpmsg::transfer::Sink {
 public:
  enum class State { kNew, kOpen, kCommitted, kAborted };
  explicit CheckingSink(int fail_at) : fail_at_(fail_at) {}

  absl::Status Open(absl::string_view, int64_t) override {
    if (state_ != State::kNew) Die("Open on a sink already used");
    state_ = State::kOpen;
    return Call();
  }
  absl::Status Write(absl::string_view data) override {
    if (state_ != State::kOpen) Die("Write on a sink that is not open");
    data_.append(data.data(), data.size());
    return Call();
  }
  absl::Status Commit() override {
    if (state_ != State::kOpen) Die("Commit on a sink that is not open");
    absl::Status s = Call();
    if (s.ok()) state_ = State::kCommitted;
    return s;
  }
  void Abort() override {
    if (state_ == State::kCommitted) Die("Abort after Commit");
    if (state_ == State::kAborted) Die("Abort twice");
    state_ = State::kAborted;
    data_.clear();
  }

  // Whether the next sink call will fail.
  bool NextFails() const { return calls_ + 1 == fail_at_; }
  State state() const { return state_; }
  const std::string& data() const { return data_; }

 private:
  absl::Status Call() {
    return ++calls_ == fail_at_ ? absl::InternalError("sink failure") : absl::OkStatus();
  }
  int fail_at_;
  int calls_ = 0;
  State state_ = State::kNew;
  std::string data_;
};

using Input = ::udpmsg::fuzz::FuzzInput;

// What the receiver must do, phase by phase.
struct Model {
  enum class Phase { kAwaitingBegin, kReceiving, kComplete, kFailed } phase = Phase::kAwaitingBegin;
  int64_t declared = -1;
  std::string data;  // the chunks accepted
  bool committed = false;
};

// Whether the receiver must accept `bytes` in `model`'s state (and, when it
// does, advances the model).
bool Expect(Model& m, const Receiver::Options& o, const CheckingSink& sink,
            absl::string_view bytes) {
  using Phase = Model::Phase;
  if (m.phase == Phase::kFailed || m.phase == Phase::kComplete) return false;
  TransferMessage msg;
  if (!msg.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return false;
  switch (msg.body_case()) {
    case TransferMessage::kBegin: {
      const int64_t size = msg.begin().size();
      if (m.phase != Phase::kAwaitingBegin || size < -1) return false;
      if (size >= 0 && static_cast<uint64_t>(size) > o.max_bytes) return false;
      if (msg.begin().name().size() > o.max_name_bytes || sink.NextFails()) return false;
      m.phase = Phase::kReceiving;
      m.declared = size;
      return true;
    }
    case TransferMessage::kChunk: {
      const uint64_t total = m.data.size() + msg.chunk().size();
      if (m.phase != Phase::kReceiving) return false;
      if (m.declared >= 0 && total > static_cast<uint64_t>(m.declared)) return false;
      if (total > o.max_bytes || sink.NextFails()) return false;
      m.data += msg.chunk();
      return true;
    }
    case TransferMessage::kEnd: {
      if (m.phase != Phase::kReceiving || msg.end().size() != m.data.size()) return false;
      if (m.declared >= 0 && m.data.size() != static_cast<uint64_t>(m.declared)) return false;
      if (msg.end().sha256() != Sha256::Of(m.data) || sink.NextFails()) return false;
      m.phase = Phase::kComplete;
      m.committed = true;
      return true;
    }
    default:
      return false;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(absl::string_view(reinterpret_cast<const char*>(data), size));
  const uint8_t config = in.Byte();
  Receiver::Options options;
  options.max_bytes = (config & 1) ? std::numeric_limits<uint64_t>::max()
                                   : static_cast<uint64_t>(in.Byte()) * 64;
  options.max_name_bytes = in.Byte();
  CheckingSink sink((config >> 1) & 7);
  Model model;
  size_t replies = 0;
  {
    Receiver r(&sink, options);
    for (int steps = 0; !in.empty() && steps < 4096; ++steps) {
      const uint8_t op = in.Byte();
      const size_t len = in.Byte() | (static_cast<size_t>(in.Byte()) << 8);
      const std::string bytes = in.Take(len);
      TransferMessage m;
      switch (op % 8) {
        case 0:
          break;
        case 1:
          m.mutable_begin()->set_name(bytes);
          m.mutable_begin()->set_size(
              bytes.size() < 2 ? -1
                               : (static_cast<uint8_t>(bytes[0]) |
                                  static_cast<int64_t>(static_cast<uint8_t>(bytes[1])) << 8) -
                                     2);
          break;
        case 2:
          m.set_chunk(bytes);
          break;
        case 3:
          m.mutable_end()->set_size(model.data.size());
          m.mutable_end()->set_sha256(Sha256::Of(model.data));
          break;
        case 4:
          m.mutable_end()->set_size(bytes.empty() ? 0 : static_cast<uint8_t>(bytes[0]));
          m.mutable_end()->set_sha256(bytes.empty() ? "" : bytes.substr(1));
          break;
        case 5:
          m.mutable_result()->set_ok(len % 2 == 1);
          break;
        case 6: {
          const bool was_finished = r.finished();
          r.OnConnectionClosed(bytes);
          if (!r.finished()) Die("OnConnectionClosed left the receiver running");
          if (!was_finished) {
            model.phase = Model::Phase::kFailed;
            if (sink.state() != CheckingSink::State::kAborted) Die("close did not abort the sink");
            if (r.status().code() != absl::StatusCode::kUnavailable) Die("close status");
          }
          continue;
        }
        case 7:
          break;
      }
      const std::string message = op % 8 == 0 ? bytes : m.SerializeAsString();
      const bool was_failed = r.state() == Receiver::State::kFailed;
      const bool was_complete = r.state() == Receiver::State::kComplete;
      const bool expect_ok = Expect(model, options, sink, message);
      const absl::Status s = r.OnMessage(message);
      if (s.ok() != expect_ok) {
        Die(absl::StrCat("op ", op % 8, ": receiver said ", s.ToString(), ", model ",
                         expect_ok ? "accept" : "reject"));
      }
      if (!s.ok()) {
        if (r.state() != Receiver::State::kFailed || r.status().ok()) Die("rejected but not failed");
        if (!was_failed && !was_complete && sink.state() != CheckingSink::State::kAborted) {
          Die("rejected without aborting the sink");
        }
        model.phase = Model::Phase::kFailed;
        if (!was_failed) ++replies;
      } else if (r.state() == Receiver::State::kComplete) {
        ++replies;
      }
      for (const std::string& reply : r.TakeReplies()) {
        TransferMessage res;
        if (!res.ParseFromString(reply) || !res.has_result()) Die("a reply is not a Result");
        if (res.result().ok() && r.digest().empty()) Die("ok before completion");
        if (replies == 0) Die("more replies than rejections and completions");
        --replies;
      }
      if (replies != 0) Die("a verdict queued no reply");
      if (r.received() != model.data.size() && model.phase != Model::Phase::kFailed) {
        Die(absl::StrCat("received ", r.received(), ", model ", model.data.size()));
      }
      if (model.committed != (sink.state() == CheckingSink::State::kCommitted)) {
        Die("commit differs from the model");
      }
      if (model.committed && (sink.data() != model.data || r.digest() != Sha256::Of(sink.data()))) {
        Die("committed output is not the chunks");
      }
    }
  }
  // Destroying an unfinished receiver aborts; nothing stays open.
  if (sink.state() == CheckingSink::State::kOpen) Die("sink left open");
  return 0;
}
