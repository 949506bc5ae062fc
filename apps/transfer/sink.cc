#include "apps/transfer/sink.h"

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace udpmsg::transfer {

absl::Status MemorySink::Open(absl::string_view name, int64_t size) {
  ++opens_;
  if (state_ != State::kNew) return absl::FailedPreconditionError("memory sink opened twice");
  state_ = State::kOpen;
  name_ = std::string(name);
  declared_size_ = size;
  return absl::OkStatus();
}

absl::Status MemorySink::Write(absl::string_view data) {
  if (state_ != State::kOpen) return absl::FailedPreconditionError("memory sink is not open");
  data_.append(data.data(), data.size());
  return absl::OkStatus();
}

absl::Status MemorySink::Commit() {
  ++commits_;
  if (state_ != State::kOpen) return absl::FailedPreconditionError("memory sink is not open");
  state_ = State::kCommitted;
  return absl::OkStatus();
}

void MemorySink::Abort() {
  ++aborts_;
  if (state_ == State::kCommitted) return;  // the contract says never; keep the data
  state_ = State::kAborted;
  data_.clear();
  data_.shrink_to_fit();
}

}  // namespace udpmsg::transfer
