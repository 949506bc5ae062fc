// The bytes of one `bench bulk` transfer, the same on every transport.
//
// The sender sends a 16-byte header and then deterministic pseudo-random
// data (MakePayload); the receiver (ReceiveState) checksums what arrives and
// answers with a result. Two kinds of transfer:
//   sized: header magic "USMGBULK" and the size (little-endian); the
//          receiver answers when it has `size` bytes.
//   timed: header magic "USMGTIME" and a duration in ns (bench fairness);
//          the sender streams until it gets the answer, the receiver counts
//          the bytes that arrive within `duration` of the first data byte
//          and answers at that deadline (bytes after it are not counted).
// The result: magic "USMGRES3", bytes counted, their checksum (version 2),
// the Unix time in ns of the last byte counted, and the receiving thread's
// CPU time in ns over the transfer (-1: unknown) = 40 bytes. Older receivers'
// results decode too, with checksum version 1: "USMGRES2" (the same layout)
// and the first version "USMGRSLT" (32 bytes, no CPU time: unknown).
// ResultLength tells them apart from the first 8 bytes, so a stream reader
// knows how much to wait for. Only that way round: a client older than
// "USMGRES3" rejects a newer receiver's result as malformed.
//
// ReceiveState::Consume rejects (DATA_LOSS), after which the transfer is
// over: a header whose magic is neither; a size over kMaxTransferSize; a
// duration of zero or over kMaxTimedDuration; more data than a sized header
// announced. It holds at most 16 bytes of its own (a partial header): the
// data itself is only checksummed and counted, never kept. ResultLength and
// DecodeResult reject (DATA_LOSS) an unknown result magic, and DecodeResult
// anything but that version's length. None crashes on any input.
//
// Usage:
//   Payload p = MakePayload(1 << 20, /*seed=*/1);
//   ReceiveState rx;
//   rx.Consume(EncodeHeader(p.data().size()), now);
//   rx.Consume(p.data(), now);          // in any pieces
//   if (rx.complete()) send(rx.EncodedResult(cpu_ns));
//
// Threading: values; no shared state.
#ifndef UDPMSG_BENCH_BULK_WIRE_H_
#define UDPMSG_BENCH_BULK_WIRE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace udpmsg::bench {

inline constexpr size_t kBulkHeaderBytes = 16;
inline constexpr size_t kBulkResultV1Bytes = 32;  // "USMGRSLT": no CPU time
inline constexpr size_t kBulkResultBytes = 40;    // "USMGRES2", "USMGRES3"
// The longest timed transfer a receiver accepts.
inline constexpr absl::Duration kMaxTimedDuration = absl::Hours(1);

// A streaming 64-bit checksum: FNV-1a over little-endian 64-bit words with an
// extra fold, in `kChecksumLanes` independent lanes (word i goes to lane
// i mod lanes, so the multiplications of neighbouring words overlap), the
// trailing bytes zero-padded, then the lanes folded in order and the length.
// A check against corruption, loss and reordering, not an attacker. The
// result does not depend on how the input is split.
//
// Version 2 (4 lanes, result "USMGRES3") takes 0.072 s per GB here, in
// 1,328-byte pieces; version 1 (one lane: every multiplication waits for the
// one before, and words were loaded a byte at a time) took 0.39 s per GB,
// 38% of a udpmsg receiver's samples on the clean veth (perf), all of it
// charged to the receiving thread's CPU per GB. A client checks an older
// receiver's result with version 1.
inline constexpr int kChecksumVersion = 2;

class Checksum final {
 public:
  explicit Checksum(int version = kChecksumVersion);
  void Update(absl::string_view data);
  uint64_t Final() const;

 private:
  static constexpr size_t kMaxLanes = 4;
  void MixWord(size_t lane, uint64_t word);
  size_t lanes_;
  uint64_t h_[kMaxLanes];
  char tail_[8 * kMaxLanes] = {};
  size_t tail_len_ = 0;
  uint64_t total_ = 0;
};

struct Payload {
  // Shared, so that a transport can send slices of it without copying them
  // (Transport::SendShared).
  std::shared_ptr<const std::string> bytes;
  uint64_t checksum = 0;

  absl::string_view data() const { return bytes ? absl::string_view(*bytes) : absl::string_view(); }
};

// `size` pseudo-random bytes from `seed` (the same on every host) and their
// checksum.
Payload MakePayload(uint64_t size, uint64_t seed);

// The checksum (of `version`) of the first `length` bytes of `data` repeated
// end to end (what a timed sender sent, cycling through its payload). `data`
// must not be empty unless `length` is 0.
uint64_t CyclicChecksum(absl::string_view data, uint64_t length,
                        int version = kChecksumVersion);

// A sized transfer's header.
std::string EncodeHeader(uint64_t size);
// A timed transfer's header (`duration` is rounded to ns).
std::string EncodeTimedHeader(absl::Duration duration);

struct BulkResult {
  uint64_t received = 0;
  uint64_t checksum = 0;
  absl::Time last_byte;
  int64_t receiver_cpu_ns = -1;  // -1: unknown (or a version-1 result)
  int checksum_version = kChecksumVersion;  // 1 from receivers before "USMGRES3"
};

// Always the current version (kBulkResultBytes).
std::string EncodeResult(const BulkResult& r);
// The length of the result whose first bytes are `prefix`: 0 while it has
// fewer than 8 bytes, kBulkResultV1Bytes or kBulkResultBytes after.
// DATA_LOSS for an unknown magic.
absl::StatusOr<size_t> ResultLength(absl::string_view prefix);
// Either version, exactly its length.
absl::StatusOr<BulkResult> DecodeResult(absl::string_view in);

// The receiving half of one transfer: the header, then the data.
class ReceiveState final {
 public:
  // `bytes` arrived at `now`. DATA_LOSS for the reasons above. A timed
  // transfer ignores data at or after its deadline (and completes).
  absl::Status Consume(absl::string_view bytes, absl::Time now);
  // A timed transfer completes at its deadline even when no data comes:
  // call this now and then (e.g. after every poll).
  void Tick(absl::Time now);
  // Sized: all `size` bytes arrived. Timed: the deadline passed.
  bool complete() const;
  bool timed() const { return timed_; }
  uint64_t received() const { return received_; }
  // The result, with the receiver's CPU time over the transfer (-1: unknown).
  std::string EncodedResult(int64_t receiver_cpu_ns = -1) const;

 private:
  std::string header_;
  bool have_header_ = false;
  bool timed_ = false;
  uint64_t expected_ = 0;            // sized
  absl::Duration duration_;          // timed
  absl::Time deadline_ = absl::InfiniteFuture();  // timed: first data byte + duration
  bool past_deadline_ = false;
  uint64_t received_ = 0;
  Checksum sum_;
  absl::Time last_;
};

}  // namespace udpmsg::bench

#endif  // UDPMSG_BENCH_BULK_WIRE_H_
