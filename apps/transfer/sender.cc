#include "apps/transfer/sender.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "apps/transfer/peer_text.h"
#include "apps/transfer/transfer.pb.h"

namespace udpmsg::transfer {

Sender::Sender(std::string name, int64_t size, const Options& options)
    : name_(std::move(name)), size_(size < 0 ? -1 : size), options_(options) {
  options_.chunk_bytes = std::max<size_t>(options_.chunk_bytes, 1);
}

absl::StatusOr<std::string> Sender::Begin() {
  if (state_ != State::kNew) return absl::FailedPreconditionError("transfer already begun");
  TransferMessage m;
  m.mutable_begin()->set_name(name_);
  m.mutable_begin()->set_size(size_);
  state_ = State::kSending;
  return m.SerializeAsString();
}

absl::StatusOr<std::vector<std::string>> Sender::Data(absl::string_view data) {
  if (state_ != State::kSending) {
    return absl::FailedPreconditionError("data outside the transfer (before Begin or after End)");
  }
  if (size_ >= 0 && data.size() > static_cast<uint64_t>(size_) - sent_) {
    return absl::FailedPreconditionError(
        absl::StrCat("the source grew past the ", size_, " bytes it had when the transfer began"));
  }
  std::vector<std::string> out;
  out.reserve(data.size() / options_.chunk_bytes + 1);
  while (!data.empty()) {
    const absl::string_view piece = data.substr(0, options_.chunk_bytes);
    TransferMessage m;
    m.set_chunk(std::string(piece));
    out.push_back(m.SerializeAsString());
    sha_.Update(piece);
    sent_ += piece.size();
    data.remove_prefix(piece.size());
  }
  return out;
}

absl::StatusOr<std::string> Sender::End() {
  if (state_ != State::kSending) {
    return absl::FailedPreconditionError("end outside the transfer (before Begin or twice)");
  }
  if (size_ >= 0 && sent_ != static_cast<uint64_t>(size_)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the source ended after ", sent_, " bytes, ", size_, " when the transfer began"));
  }
  digest_ = sha_.Final();
  TransferMessage m;
  m.mutable_end()->set_size(sent_);
  m.mutable_end()->set_sha256(digest_);
  state_ = State::kEnded;
  return m.SerializeAsString();
}

absl::Status Sender::OnMessage(absl::string_view message) {
  if (finished()) return absl::DataLossError("receiver sent an unexpected message");
  TransferMessage m;
  if (!m.ParseFromArray(message.data(), static_cast<int>(message.size())) || !m.has_result()) {
    return Fail(State::kFailed, absl::DataLossError("receiver sent an unexpected message"));
  }
  const Result& r = m.result();
  if (!r.ok()) {
    rejection_ = EscapePeerText(r.error());
    return Fail(State::kRejected,
                absl::DataLossError(absl::StrCat("rejected the transfer: ", rejection_)));
  }
  if (state_ != State::kEnded) {
    return Fail(State::kFailed,
                absl::DataLossError("receiver reported success before the end of the transfer"));
  }
  if (r.size() != sent_) {
    return Fail(State::kFailed, absl::DataLossError(absl::StrCat(
                                    "receiver confirmed ", r.size(), " bytes, sent ", sent_)));
  }
  state_ = State::kVerified;
  return absl::OkStatus();
}

absl::Status Sender::Fail(State state, absl::Status status) {
  state_ = state;
  status_ = status;
  return status;
}

}  // namespace udpmsg::transfer
