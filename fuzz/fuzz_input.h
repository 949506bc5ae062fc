// FuzzInput: reads a fuzzer's input as a stream of choices. Every read is
// total: past the end, Byte() is 0 and Take() returns what is left, so any
// input is a valid (possibly short) script. Shared by the fuzzers that
// decode their input step by step (reassembler, transfer receiver, chat
// server) so each consumes bytes the same way and their corpora stay valid.
//
// Borrows the input, which must outlive it. Not thread-safe.
#ifndef UDPMSG_FUZZ_FUZZ_INPUT_H_
#define UDPMSG_FUZZ_FUZZ_INPUT_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace udpmsg::fuzz {

class FuzzInput final {
 public:
  explicit FuzzInput(absl::string_view data) : data_(data) {}

  bool empty() const { return data_.empty(); }

  // The next byte, or 0 past the end.
  uint8_t Byte() {
    if (data_.empty()) return 0;
    const uint8_t b = static_cast<uint8_t>(data_[0]);
    data_.remove_prefix(1);
    return b;
  }

  // The next `n` bytes (at most 8) as a little-endian number.
  uint64_t Bytes(int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(Byte()) << (8 * i);
    return v;
  }

  // The next `n` bytes, fewer past the end.
  std::string Take(size_t n) {
    std::string s(data_.substr(0, n));
    data_.remove_prefix(s.size());
    return s;
  }

  // Exactly `n` bytes: what is left, then `filler` (so a fuzzer can ask for
  // long payloads cheaply).
  std::string TakePadded(size_t n, char filler) {
    std::string s = Take(n);
    s.resize(n, filler);
    return s;
  }

 private:
  absl::string_view data_;
};

}  // namespace udpmsg::fuzz

#endif  // UDPMSG_FUZZ_FUZZ_INPUT_H_
