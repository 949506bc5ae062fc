// The bytes of one `bench bulk` transfer, the same on every transport.
//
// The sender sends a 16-byte header (magic "USMGBULK", size, little-endian)
// and then `size` bytes of deterministic pseudo-random data (MakePayload);
// the receiver (ReceiveState) checksums what arrives and, when it has `size`
// bytes, answers with a 32-byte result (magic "USMGRSLT", bytes, checksum,
// the Unix time in ns at which it received the last byte).
//
// ReceiveState::Consume rejects (DATA_LOSS), after which the transfer is
// over: a header whose magic is wrong; a size over kMaxTransferSize; more
// data than the header announced. It holds at most 16 bytes of its own
// (a partial header): the data itself is only checksummed, never kept.
// DecodeResult rejects (DATA_LOSS) anything but 32 bytes with the result
// magic. Neither crashes on any input.
//
// Usage:
//   Payload p = MakePayload(1 << 20, /*seed=*/1);
//   ReceiveState rx;
//   rx.Consume(EncodeHeader(p.data.size()), now);
//   rx.Consume(p.data, now);            // in any pieces
//   if (rx.complete()) send(rx.EncodedResult());
//
// Threading: values; no shared state.
#ifndef UDPMSG_BENCH_BULK_WIRE_H_
#define UDPMSG_BENCH_BULK_WIRE_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace udpmsg::bench {

inline constexpr size_t kBulkHeaderBytes = 16;
inline constexpr size_t kBulkResultBytes = 32;

// A streaming 64-bit checksum: FNV-1a over little-endian 64-bit words with an
// extra fold, the trailing bytes zero-padded, then the length. About 1 ns per
// 8 bytes; a check against corruption, loss and reordering, not an attacker.
// The result does not depend on how the input is split.
class Checksum final {
 public:
  void Update(absl::string_view data);
  uint64_t Final() const;

 private:
  void Mix(uint64_t word);
  uint64_t h_ = 0xCBF29CE484222325ULL;
  char tail_[8] = {};
  size_t tail_len_ = 0;
  uint64_t total_ = 0;
};

struct Payload {
  std::string data;
  uint64_t checksum = 0;
};

// `size` pseudo-random bytes from `seed` (the same on every host) and their
// checksum.
Payload MakePayload(uint64_t size, uint64_t seed);

std::string EncodeHeader(uint64_t size);

struct BulkResult {
  uint64_t received = 0;
  uint64_t checksum = 0;
  absl::Time last_byte;
};

std::string EncodeResult(const BulkResult& r);
absl::StatusOr<BulkResult> DecodeResult(absl::string_view in);

// The receiving half of one transfer: the header, then the data.
class ReceiveState final {
 public:
  // `bytes` arrived at `now`. DATA_LOSS for the reasons above.
  absl::Status Consume(absl::string_view bytes, absl::Time now);
  bool complete() const { return have_header_ && received_ == expected_; }
  uint64_t received() const { return received_; }
  std::string EncodedResult() const;

 private:
  std::string header_;
  bool have_header_ = false;
  uint64_t expected_ = 0;
  uint64_t received_ = 0;
  Checksum sum_;
  absl::Time last_;
};

}  // namespace udpmsg::bench

#endif  // UDPMSG_BENCH_BULK_WIRE_H_
