#include "bench/bulk_wire.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "bench/report.h"

namespace udpmsg::bench {
namespace {

constexpr uint64_t kHeaderMagic = 0x4b4c5542474d5355;  // "USMGBULK", little-endian
constexpr uint64_t kTimedMagic = 0x454d4954474d5355;     // "USMGTIME"
constexpr uint64_t kResultV1Magic = 0x544c5352474d5355;  // "USMGRSLT"
constexpr uint64_t kResultV2Magic = 0x32534552474d5355;  // "USMGRES2"
constexpr uint64_t kResultMagic = 0x33534552474d5355;    // "USMGRES3"

// Little-endian 64-bit load (one instruction here; a loop of byte shifts
// was 0.39 s per GB of checksum, most of it).
uint64_t Load(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

void PutU64(std::string* out, uint64_t v) {
  for (int b = 0; b < 8; ++b) out->push_back(static_cast<char>(v >> (8 * b)));
}

uint64_t GetU64(absl::string_view in, size_t at) { return Load(in.data() + at); }

uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

constexpr uint64_t kFnvBasis = 0xCBF29CE484222325ULL;
constexpr uint64_t kFnvPrime = 0x100000001B3ULL;

uint64_t Fold(uint64_t h, uint64_t word) {
  h = (h ^ word) * kFnvPrime;
  return h ^ (h >> 32);
}

}  // namespace

Checksum::Checksum(int version) : lanes_(version >= 2 ? kMaxLanes : 1) {
  for (size_t i = 0; i < kMaxLanes; ++i) h_[i] = kFnvBasis + i * 0x9E3779B97F4A7C15ULL;
}

void Checksum::MixWord(size_t lane, uint64_t word) { h_[lane] = Fold(h_[lane], word); }

void Checksum::Update(absl::string_view data) {
  total_ += data.size();
  const size_t block = 8 * lanes_;
  size_t i = 0;
  if (tail_len_ > 0) {
    const size_t take = std::min(block - tail_len_, data.size());
    std::memcpy(tail_ + tail_len_, data.data(), take);
    tail_len_ += take;
    i = take;
    if (tail_len_ < block) return;
    for (size_t l = 0; l < lanes_; ++l) MixWord(l, Load(tail_ + 8 * l));
    tail_len_ = 0;
  }
  const char* p = data.data();
  if (lanes_ == kMaxLanes) {
    uint64_t a = h_[0], b = h_[1], c = h_[2], d = h_[3];
    for (; i + 32 <= data.size(); i += 32) {
      a = Fold(a, Load(p + i));
      b = Fold(b, Load(p + i + 8));
      c = Fold(c, Load(p + i + 16));
      d = Fold(d, Load(p + i + 24));
    }
    h_[0] = a, h_[1] = b, h_[2] = c, h_[3] = d;
  } else {
    for (; i + 8 <= data.size(); i += 8) MixWord(0, Load(p + i));
  }
  std::memcpy(tail_, p + i, data.size() - i);
  tail_len_ = data.size() - i;
}

uint64_t Checksum::Final() const {
  Checksum c = *this;
  if (c.tail_len_ > 0) {
    std::memset(c.tail_ + c.tail_len_, 0, sizeof(c.tail_) - c.tail_len_);
    for (size_t w = 0; w * 8 < c.tail_len_; ++w) c.MixWord(w, Load(c.tail_ + 8 * w));
  }
  uint64_t r = c.h_[0];
  for (size_t l = 1; l < c.lanes_; ++l) r = Fold(r, c.h_[l]);
  return Fold(r, c.total_);
}

Payload MakePayload(uint64_t size, uint64_t seed) {
  std::string data(size, '\0');
  for (uint64_t i = 0; i < size; i += 8) {
    const uint64_t word = SplitMix64(seed * 0x2545F4914F6CDD1DULL + i / 8);
    for (uint64_t b = 0; b < 8 && i + b < size; ++b) {
      data[i + b] = static_cast<char>(word >> (8 * b));
    }
  }
  Checksum c;
  c.Update(data);
  Payload p;
  p.checksum = c.Final();
  p.bytes = std::make_shared<const std::string>(std::move(data));
  return p;
}

std::string EncodeHeader(uint64_t size) {
  std::string out;
  PutU64(&out, kHeaderMagic);
  PutU64(&out, size);
  return out;
}

std::string EncodeTimedHeader(absl::Duration duration) {
  std::string out;
  PutU64(&out, kTimedMagic);
  PutU64(&out, static_cast<uint64_t>(absl::ToInt64Nanoseconds(duration)));
  return out;
}

uint64_t CyclicChecksum(absl::string_view data, uint64_t length, int version) {
  Checksum c(version);
  for (; length >= data.size() && !data.empty(); length -= data.size()) c.Update(data);
  c.Update(data.substr(0, length));
  return c.Final();
}

std::string EncodeResult(const BulkResult& r) {
  std::string out;
  PutU64(&out, kResultMagic);
  PutU64(&out, r.received);
  PutU64(&out, r.checksum);
  PutU64(&out, static_cast<uint64_t>(absl::ToUnixNanos(r.last_byte)));
  PutU64(&out, static_cast<uint64_t>(r.receiver_cpu_ns));
  return out;
}

absl::StatusOr<size_t> ResultLength(absl::string_view prefix) {
  if (prefix.size() < 8) return 0;
  const uint64_t magic = GetU64(prefix, 0);
  if (magic == kResultMagic || magic == kResultV2Magic) return kBulkResultBytes;
  if (magic == kResultV1Magic) return kBulkResultV1Bytes;
  return absl::DataLossError(
      "the receiver's result is malformed (unknown magic; a receiver newer than this udpmsg "
      "answers in a version it does not know: run the same version on both hosts)");
}

absl::StatusOr<BulkResult> DecodeResult(absl::string_view in) {
  absl::StatusOr<size_t> length = ResultLength(in);
  if (!length.ok()) return length.status();
  if (*length == 0 || in.size() != *length) {
    return absl::DataLossError("the receiver's result is malformed (wrong length)");
  }
  BulkResult r;
  r.received = GetU64(in, 8);
  r.checksum = GetU64(in, 16);
  r.checksum_version = GetU64(in, 0) == kResultMagic ? kChecksumVersion : 1;
  r.last_byte = absl::FromUnixNanos(static_cast<int64_t>(GetU64(in, 24)));
  if (*length == kBulkResultBytes) {
    r.receiver_cpu_ns = static_cast<int64_t>(GetU64(in, 32));
    if (r.receiver_cpu_ns < -1) return absl::DataLossError("the receiver's CPU time is negative");
  }
  return r;
}

absl::Status ReceiveState::Consume(absl::string_view bytes, absl::Time now) {
  if (!have_header_) {
    const size_t take = std::min(bytes.size(), kBulkHeaderBytes - header_.size());
    header_.append(bytes.data(), take);
    bytes.remove_prefix(take);
    if (header_.size() < kBulkHeaderBytes) return absl::OkStatus();
    const uint64_t magic = GetU64(header_, 0);
    if (magic == kTimedMagic) {
      const uint64_t ns = GetU64(header_, 8);
      if (ns == 0 || ns > static_cast<uint64_t>(absl::ToInt64Nanoseconds(kMaxTimedDuration))) {
        return absl::DataLossError("timed transfer of zero or over an hour");
      }
      timed_ = true;
      duration_ = absl::Nanoseconds(static_cast<int64_t>(ns));
    } else if (magic == kHeaderMagic) {
      expected_ = GetU64(header_, 8);
      if (expected_ > kMaxTransferSize) return absl::DataLossError("transfer size over 1GiB");
    } else {
      return absl::DataLossError("not a bench bulk transfer (bad header)");
    }
    have_header_ = true;
  }
  if (bytes.empty()) return absl::OkStatus();
  if (timed_) {
    if (deadline_ == absl::InfiniteFuture()) deadline_ = now + duration_;
    Tick(now);
    if (past_deadline_) return absl::OkStatus();
    sum_.Update(bytes);
    received_ += bytes.size();
    last_ = now;
    return absl::OkStatus();
  }
  if (bytes.size() > expected_ - received_) {
    return absl::DataLossError(absl::StrCat("more data than the ", expected_, " bytes announced"));
  }
  sum_.Update(bytes);
  received_ += bytes.size();
  last_ = now;
  return absl::OkStatus();
}

void ReceiveState::Tick(absl::Time now) {
  if (timed_ && now >= deadline_) past_deadline_ = true;
}

bool ReceiveState::complete() const {
  if (!have_header_) return false;
  return timed_ ? past_deadline_ : received_ == expected_;
}

std::string ReceiveState::EncodedResult(int64_t receiver_cpu_ns) const {
  return EncodeResult(BulkResult{received_, sum_.Final(), last_, receiver_cpu_ns});
}

}  // namespace udpmsg::bench
