// Sender: the sending half of the transfer protocol (transfer.proto),
// sans-I/O. It turns the data the driver reads from its source into the
// messages to send on channel 0 (reliable-ordered) — Begin, chunks, End with
// the size and SHA-256 — and judges the receiver's answer. It never touches a
// socket, a file, a clock or the terminal: `udpmsg send --reliable`
// (cli/transfer.cc) reads a file or stdin and drives it with
// reliable::Runtime; tests/apps/transfer drive it in virtual time.
//
//   Sender sender("notes.txt", /*size=*/1234, Sender::Options{});
//   Send(*sender.Begin());
//   while (the transport wants more && (data = source.Read()) is not empty)
//     for (std::string& m : *sender.Data(data)) Send(m);
//   Send(*sender.End());                      // at the end of the source
//   // for each kMessage event of the receiver's connection:
//   absl::Status verdict = sender.OnMessage(event.message);
//   // kVerified: done. kRejected: rejection() says why. kFailed: status().
//
// The size given at construction is declared in the Begin (-1: unknown),
// and the receiver holds the sender to it, so Data() past it and an End short
// of it are refused here first (FAILED_PRECONDITION, naming both numbers).
//
// Status codes:
//   Begin, Data, End: FAILED_PRECONDITION when called out of order (Begin
//     once first, Data between Begin and End, End once) or when the data
//     breaks the declared size; the sender's state does not change then.
//   OnMessage: OK when the receiver confirmed the whole transfer (kVerified).
//     DATA_LOSS when it rejected it (kRejected; rejection() is its reason,
//     escaped with EscapePeerText), or broke the protocol (kFailed): a
//     message that is not a Result, a Result{ok} before the End or naming
//     another size than was sent, any message after the verdict.
//
// Peer input: only OnMessage takes the receiver's bytes; it holds at most
// kMaxPeerTextBytes of them (the escaped reason).
//
// Threading: thread-compatible; one thread drives a sender.
#ifndef UDPMSG_APPS_TRANSFER_SENDER_H_
#define UDPMSG_APPS_TRANSFER_SENDER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "apps/transfer/sha256.h"

namespace udpmsg::transfer {

class Sender final {
 public:
  struct Options {
    // Data() cuts its input into chunks of at most this many bytes (>= 1).
    size_t chunk_bytes = 64 * 1024;
  };

  enum class State {
    kNew,        // nothing sent yet
    kSending,    // Begin sent; Data until End
    kEnded,      // End sent; waiting for the receiver's verdict
    kVerified,   // the receiver confirmed size and SHA-256: success
    kRejected,   // the receiver refused the transfer (rejection())
    kFailed,     // the receiver broke the protocol (status())
  };

  // `name` is informational (the receiver never uses it as a path); `size`
  // is the total the source will give, or -1 when unknown.
  Sender(std::string name, int64_t size, const Options& options);
  Sender(const Sender&) = delete;
  Sender& operator=(const Sender&) = delete;

  absl::StatusOr<std::string> Begin();
  absl::StatusOr<std::vector<std::string>> Data(absl::string_view data);
  absl::StatusOr<std::string> End();

  absl::Status OnMessage(absl::string_view message);

  State state() const { return state_; }
  // kVerified, kRejected or kFailed.
  bool finished() const { return state_ >= State::kVerified; }
  // OK unless kRejected or kFailed; then why.
  const absl::Status& status() const { return status_; }
  // The receiver's reason for refusing (escaped), when kRejected.
  const std::string& rejection() const { return rejection_; }

  // Data bytes handed to Data() so far.
  uint64_t sent() const { return sent_; }
  int64_t declared_size() const { return size_; }
  // The 32-byte SHA-256 sent in the End; empty before.
  const std::string& digest() const { return digest_; }

 private:
  absl::Status Fail(State state, absl::Status status);

  std::string name_;
  int64_t size_;
  Options options_;
  State state_ = State::kNew;
  absl::Status status_;
  std::string rejection_;
  Sha256 sha_;
  uint64_t sent_ = 0;
  std::string digest_;
};

}  // namespace udpmsg::transfer

#endif  // UDPMSG_APPS_TRANSFER_SENDER_H_
