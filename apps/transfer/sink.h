// Sink: where a transfer::Receiver puts the bytes it receives. The receiver
// calls, in order:
//
//   Open(name, size)   once, at the sender's Begin
//   Write(data)        for each chunk, in order
//   Commit()           once, after size and SHA-256 matched the sender's End
//   Abort()            instead of Commit, on any error: discard the output
//
// and never calls anything after Commit or Abort. Abort may come before Open
// (a protocol error before Begin) and must then do nothing. A sink that holds
// a file writes it under a temporary name and puts it in place only in
// Commit, so a rejected or interrupted transfer leaves nothing behind (the
// CLI's file sink in cli/transfer.cc does exactly this).
//
// MemorySink, below, keeps the bytes in memory: for tests, fuzzers and
// applications that want the data rather than a file.
//
// Status codes: a sink's errors are its own (e.g. INTERNAL with the errno
// text); the receiver sends their message to the sender as the reason and
// aborts the sink.
//
// Threading: a sink is used by one receiver on one thread.
#ifndef UDPMSG_APPS_TRANSFER_SINK_H_
#define UDPMSG_APPS_TRANSFER_SINK_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace udpmsg::transfer {

class Sink {
 public:
  virtual ~Sink() = default;
  // `name` and `size` are the sender's (untrusted, informational): the name
  // it gave (never a path to use), the size it announced, -1 when unknown.
  virtual absl::Status Open(absl::string_view name, int64_t size) = 0;
  virtual absl::Status Write(absl::string_view data) = 0;
  virtual absl::Status Commit() = 0;
  virtual void Abort() = 0;
};

// The bytes in memory. data() is what was written so far (cleared by Abort);
// committed() says whether the receiver verified it. Owns its buffer.
class MemorySink final : public Sink {
 public:
  enum class State { kNew, kOpen, kCommitted, kAborted };

  absl::Status Open(absl::string_view name, int64_t size) override;
  absl::Status Write(absl::string_view data) override;
  absl::Status Commit() override;
  void Abort() override;

  State state() const { return state_; }
  bool committed() const { return state_ == State::kCommitted; }
  bool aborted() const { return state_ == State::kAborted; }
  const std::string& data() const { return data_; }
  const std::string& name() const { return name_; }
  int64_t declared_size() const { return declared_size_; }
  // Calls of each method, for tests that check the receiver's use of a sink.
  int opens() const { return opens_; }
  int commits() const { return commits_; }
  int aborts() const { return aborts_; }

 private:
  State state_ = State::kNew;
  std::string data_;
  std::string name_;
  int64_t declared_size_ = -1;
  int opens_ = 0;
  int commits_ = 0;
  int aborts_ = 0;
};

}  // namespace udpmsg::transfer

#endif  // UDPMSG_APPS_TRANSFER_SINK_H_
