// Receiver: the receiving half of the transfer protocol (transfer.proto),
// sans-I/O. The driver hands it each message the sender sent on channel 0
// (reliable-ordered) and sends back what TakeReplies() returns on the same
// channel; the receiver writes the data through a Sink and verifies it. It
// never touches a socket, a file, a clock or the terminal: `udpmsg recv
// --reliable` (cli/transfer.cc) drives it with reliable::Runtime and a file
// sink, tests/apps/transfer drive it in virtual time with a MemorySink.
//
//   MemorySink sink;
//   Receiver receiver(&sink, Receiver::Options{});
//   // for each kMessage event of the sender's connection:
//   absl::Status s = receiver.OnMessage(event.message);
//   for (std::string& reply : receiver.TakeReplies()) Send(0, kReliableOrdered, reply);
//   if (receiver.finished()) { deliver the replies, then close the connection; }
//   // kClosed before finished(): receiver.OnConnectionClosed(reason);
//
// A strict state machine: exactly one Begin, then chunks, then one End, then
// nothing. OnMessage rejects (returns the error, queues a Result{ok=false,
// error} for the sender, aborts the sink so the partial output is discarded,
// and enters kFailed, after which the driver closes the connection):
//   DATA_LOSS
//     - a message that does not parse as a TransferMessage
//     - a message with no body (none of begin, chunk, end, result)
//     - a Result (only the receiver sends those)
//     - a second Begin
//     - a Begin declaring a size below -1 (-1 means unknown)
//     - a chunk before Begin; an End before Begin
//     - a chunk taking the total past the size Begin declared
//     - an End whose sha256 is not 32 bytes
//     - an End whose size differs from the bytes received, or from the size
//       Begin declared
//     - an End whose sha256 differs from the SHA-256 of the bytes received
//     - any message after the End (the transfer is complete) or after a
//       rejection (kFailed)
//   RESOURCE_EXHAUSTED
//     - a Begin whose name is over options.max_name_bytes
//     - a Begin declaring, or chunks reaching, more than options.max_bytes
//   any code: the sink's own error from Open, Write or Commit (its message
//     is sent to the sender)
// A message after the End is rejected like the rest (Result{error} queued,
// kFailed), but the output was already committed and the sender told "ok"
// (the End settles the transfer), so the sink is not aborted then: Commit is
// final. A message after a rejection only returns DATA_LOSS again: nothing
// more is queued and status() keeps the first error.
//
// The sender's bytes are untrusted. The receiver holds only the Begin's name
// (at most max_name_bytes), counters and a hash state; every chunk goes
// straight to the sink. It never crashes on any input sequence (fuzzed by
// //fuzz:transfer_receiver_fuzz_smoke). Error texts it builds contain numbers
// and hex only, never the sender's bytes (OnConnectionClosed's reason is
// escaped with EscapePeerText).
//
// Ownership: borrows the sink, which must outlive the receiver. Threading:
// one thread drives a receiver (thread-compatible).
#ifndef UDPMSG_APPS_TRANSFER_RECEIVER_H_
#define UDPMSG_APPS_TRANSFER_RECEIVER_H_

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "apps/transfer/sha256.h"
#include "apps/transfer/sink.h"

namespace udpmsg::transfer {

class Receiver final {
 public:
  struct Options {
    // Most bytes accepted in one transfer. Unlimited by default (the CLI's
    // output goes to a file the user chose).
    uint64_t max_bytes = std::numeric_limits<uint64_t>::max();
    // Longest Begin.name accepted.
    size_t max_name_bytes = 4096;
  };

  enum class State {
    kAwaitingBegin,  // nothing yet
    kReceiving,      // Begin accepted; chunks until End
    kComplete,       // End verified, sink committed, Result{ok} queued
    kFailed,         // rejected (Result{error} queued) or connection closed
  };

  Receiver(Sink* sink, const Options& options);
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;
  // Aborts the sink if the transfer is neither complete nor failed.
  ~Receiver();

  // One message from the sender. OK when accepted (check state(): the End
  // makes it kComplete). An error is a rejection (see the class comment):
  // state() is then kFailed and status() returns the same error.
  absl::Status OnMessage(absl::string_view message);

  // The connection went away. Before completion: kFailed with UNAVAILABLE
  // naming `reason` and the bytes received, and the sink aborted; nothing is
  // queued (there is nobody to tell). After completion or failure: nothing.
  void OnConnectionClosed(absl::string_view reason);

  // Serialized TransferMessages (Results) to send to the sender, oldest
  // first: one when the transfer completes or is rejected (two when a
  // message follows a completed End).
  std::vector<std::string> TakeReplies();

  State state() const { return state_; }
  // kComplete or kFailed: deliver the replies, then close the connection.
  bool finished() const { return state_ == State::kComplete || state_ == State::kFailed; }
  // OK unless kFailed; then why.
  const absl::Status& status() const { return status_; }

  // Chunk bytes accepted (and written to the sink).
  uint64_t received() const { return received_; }
  // From the Begin: the sender's name for the data (untrusted; escape it
  // before showing it) and the size it declared, -1 when unknown.
  const std::string& name() const { return name_; }
  int64_t declared_size() const { return declared_size_; }
  // The verified 32-byte SHA-256; empty until kComplete.
  const std::string& digest() const { return digest_; }

 private:
  absl::Status Accept(absl::string_view message);
  absl::Status OnBegin(absl::string_view name, int64_t size);
  absl::Status OnChunk(absl::string_view data);
  absl::Status OnEnd(uint64_t size, absl::string_view sha256);
  void Reply(bool ok, absl::string_view error);

  Sink* sink_;
  Options options_;
  State state_ = State::kAwaitingBegin;
  absl::Status status_;
  Sha256 sha_;
  uint64_t received_ = 0;
  std::string name_;
  int64_t declared_size_ = -1;
  std::string digest_;
  std::vector<std::string> replies_;
};

}  // namespace udpmsg::transfer

#endif  // UDPMSG_APPS_TRANSFER_RECEIVER_H_
