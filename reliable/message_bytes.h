// MessageBytes: the bytes of a message handed to Send, owned or shared.
//
// A std::string is moved in: the queue owns it, no copy. Bytes that live in
// a buffer the application keeps (a payload it sends many times, a file it
// mapped) are shared instead: `owner` keeps them alive, and the queue holds
// `owner` until the message is acknowledged, given up, or the connection is
// gone, so the application sends a slice without copying it:
//
//   auto buffer = std::make_shared<const std::string>(ReadWholeFile(path));
//   const absl::string_view bytes = *buffer;
//   for (size_t at = 0; at < bytes.size(); at += kChunk) {
//     runtime->Send(id, 0, kReliableOrdered,
//                   MessageBytes(buffer, bytes.substr(at, kChunk))).IgnoreError();
//   }
//
// The shared bytes must not change while a message holds them (they are
// read until acknowledged, for retransmissions). Not thread-safe beyond
// std::shared_ptr's own guarantees; the queue counts a shared message's
// size against its byte budget like an owned one.
#ifndef UDPMSG_RELIABLE_MESSAGE_BYTES_H_
#define UDPMSG_RELIABLE_MESSAGE_BYTES_H_

#include <cstddef>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"

namespace udpmsg::reliable {

class MessageBytes final {
 public:
  MessageBytes() = default;
  // Owned: moved in (copied from an lvalue).
  MessageBytes(std::string bytes) : owned_(std::move(bytes)) {}  // NOLINT: implicit on purpose
  MessageBytes(const char* bytes) : owned_(bytes) {}             // NOLINT
  // Shared: `bytes` must lie in memory `owner` keeps alive (a null owner
  // with non-empty bytes is a caller's bug: Enqueue refuses it).
  MessageBytes(std::shared_ptr<const void> owner, absl::string_view bytes)
      : owner_(std::move(owner)), shared_(bytes) {}

  absl::string_view view() const { return owner_ ? shared_ : absl::string_view(owned_); }
  size_t size() const { return view().size(); }
  bool shared() const { return owner_ != nullptr; }
  // A shared message without an owner (the bytes could vanish under us).
  bool dangling() const { return !owner_ && !shared_.empty(); }

 private:
  std::string owned_;
  std::shared_ptr<const void> owner_;
  absl::string_view shared_;  // within *owner_; never into owned_ (SSO moves)
};

}  // namespace udpmsg::reliable

#endif  // UDPMSG_RELIABLE_MESSAGE_BYTES_H_
