#include "apps/transfer/receiver.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "apps/transfer/peer_text.h"
#include "apps/transfer/sha256.h"
#include "apps/transfer/sink.h"
#include "apps/transfer/transfer.pb.h"

namespace udpmsg::transfer {

Receiver::Receiver(Sink* sink, const Options& options) : sink_(sink), options_(options) {}

Receiver::~Receiver() {
  if (!finished()) sink_->Abort();
}

absl::Status Receiver::OnMessage(absl::string_view message) {
  if (state_ == State::kFailed) {
    return absl::DataLossError("transfer message after the transfer failed");
  }
  const bool was_complete = state_ == State::kComplete;
  absl::Status s = Accept(message);
  if (s.ok()) return s;
  // A rejection: tell the sender, discard the output (unless committed).
  if (!was_complete) sink_->Abort();
  state_ = State::kFailed;
  status_ = s;
  Reply(false, s.message());
  return s;
}

absl::Status Receiver::Accept(absl::string_view message) {
  TransferMessage m;
  if (!m.ParseFromArray(message.data(), static_cast<int>(message.size()))) {
    return absl::DataLossError("malformed transfer message");
  }
  if (state_ == State::kComplete) {
    return absl::DataLossError("transfer message after the end of the transfer");
  }
  switch (m.body_case()) {
    case TransferMessage::kBegin:
      return OnBegin(m.begin().name(), m.begin().size());
    case TransferMessage::kChunk:
      return OnChunk(m.chunk());
    case TransferMessage::kEnd:
      return OnEnd(m.end().size(), m.end().sha256());
    case TransferMessage::kResult:
      return absl::DataLossError("unexpected result from the sender");
    case TransferMessage::BODY_NOT_SET:
      break;
  }
  return absl::DataLossError("empty transfer message");
}

absl::Status Receiver::OnBegin(absl::string_view name, int64_t size) {
  if (state_ != State::kAwaitingBegin) {
    return absl::DataLossError(
        absl::StrCat("second transfer header after ", received_, " bytes"));
  }
  if (size < -1) return absl::DataLossError(absl::StrCat("invalid transfer size ", size));
  if (size >= 0 && static_cast<uint64_t>(size) > options_.max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "transfer of ", size, " bytes is over the limit of ", options_.max_bytes, " bytes"));
  }
  if (name.size() > options_.max_name_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("transfer name of ", name.size(),
                                                     " bytes is over the limit of ",
                                                     options_.max_name_bytes, " bytes"));
  }
  if (absl::Status s = sink_->Open(name, size); !s.ok()) return s;
  name_ = std::string(name);
  declared_size_ = size;
  state_ = State::kReceiving;
  return absl::OkStatus();
}

absl::Status Receiver::OnChunk(absl::string_view data) {
  if (state_ != State::kReceiving) {
    return absl::DataLossError("data before the transfer header");
  }
  // received_ <= max_bytes and, when declared, <= declared_size_ hold
  // before the chunk, so these subtractions do not wrap.
  if (declared_size_ >= 0 && data.size() > static_cast<uint64_t>(declared_size_) - received_) {
    return absl::DataLossError(absl::StrCat("more data than the ", declared_size_,
                                            " bytes the transfer header declared"));
  }
  if (data.size() > options_.max_bytes - received_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("transfer is over the limit of ", options_.max_bytes, " bytes"));
  }
  if (absl::Status s = sink_->Write(data); !s.ok()) return s;
  sha_.Update(data);
  received_ += data.size();
  return absl::OkStatus();
}

absl::Status Receiver::OnEnd(uint64_t size, absl::string_view sha256) {
  if (state_ != State::kReceiving) {
    return absl::DataLossError("end before the transfer header");
  }
  if (sha256.size() != kSha256Bytes) {
    return absl::DataLossError(
        absl::StrCat("sha256 of ", sha256.size(), " bytes in the end, want ", kSha256Bytes));
  }
  if (size != received_) {
    return absl::DataLossError(
        absl::StrCat("size mismatch: sender sent ", size, " bytes, received ", received_));
  }
  if (declared_size_ >= 0 && received_ != static_cast<uint64_t>(declared_size_)) {
    return absl::DataLossError(absl::StrCat("size mismatch: the transfer header declared ",
                                            declared_size_, " bytes, received ", received_));
  }
  std::string digest = sha_.Final();
  if (sha256 != digest) {
    return absl::DataLossError(absl::StrCat("sha256 mismatch: sender ",
                                            absl::BytesToHexString(sha256), ", received ",
                                            absl::BytesToHexString(digest)));
  }
  if (absl::Status s = sink_->Commit(); !s.ok()) return s;
  digest_ = std::move(digest);
  state_ = State::kComplete;
  Reply(true, "");
  return absl::OkStatus();
}

void Receiver::OnConnectionClosed(absl::string_view reason) {
  if (finished()) return;
  sink_->Abort();
  state_ = State::kFailed;
  status_ = absl::UnavailableError(
      absl::StrCat("connection closed after ", received_, " bytes: ", EscapePeerText(reason)));
}

void Receiver::Reply(bool ok, absl::string_view error) {
  TransferMessage m;
  m.mutable_result()->set_ok(ok);
  if (ok) {
    m.mutable_result()->set_size(received_);
  } else {
    m.mutable_result()->set_error(std::string(error));
  }
  replies_.push_back(m.SerializeAsString());
}

std::vector<std::string> Receiver::TakeReplies() {
  std::vector<std::string> out;
  out.swap(replies_);
  return out;
}

}  // namespace udpmsg::transfer
