#include "proto/crc32c.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace udpmsg::proto {
namespace {

constexpr uint32_t kPolynomial = 0x82F63B78;  // reflected Castagnoli

// kTables[0] is the classic byte-at-a-time table; kTables[k][b] is the CRC of
// byte b followed by k zero bytes, which lets eight bytes fold in at once.
struct Tables {
  uint32_t t[8][256];
};

constexpr Tables MakeTables() {
  Tables tables{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t crc = b;
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 1) ? (crc >> 1) ^ kPolynomial : crc >> 1;
    }
    tables.t[0][b] = crc;
  }
  for (int k = 1; k < 8; ++k) {
    for (uint32_t b = 0; b < 256; ++b) {
      const uint32_t prev = tables.t[k - 1][b];
      tables.t[k][b] = (prev >> 8) ^ tables.t[0][prev & 0xFF];
    }
  }
  return tables;
}

constexpr Tables kTables = MakeTables();

inline uint32_t LoadLittleEndian32(const unsigned char* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 |
         uint32_t{p[3]} << 24;
}

}  // namespace

uint32_t crc32c_internal::ExtendPortable(uint32_t crc, absl::string_view data) {
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  size_t n = data.size();
  const auto& t = kTables.t;
  uint32_t c = ~crc;
  while (n >= 8) {
    const uint32_t lo = LoadLittleEndian32(p) ^ c;
    const uint32_t hi = LoadLittleEndian32(p + 4);
    c = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^
        t[4][lo >> 24] ^ t[3][hi & 0xFF] ^ t[2][(hi >> 8) & 0xFF] ^
        t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n > 0) {
    c = (c >> 8) ^ t[0][(c ^ *p) & 0xFF];
    ++p;
    --n;
  }
  return ~c;
}


#if defined(__x86_64__)
bool crc32c_internal::HardwareAvailable() {
  static const bool available = __builtin_cpu_supports("sse4.2");
  return available;
}

bool crc32c_internal::InterleavedAvailable() {
  static const bool available =
      __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("pclmul");
  return available;
}

namespace {

// One stream of crc32 instructions over n bytes from register value c
// (not inverted): eight bytes per instruction (latency 3 cycles, one per
// cycle throughput on current cores), about 8x the table version per byte,
// and no table lookups to evict cache lines the codec needs.
__attribute__((target("sse4.2"))) inline uint32_t OneStream(uint32_t c, const unsigned char* p,
                                                             size_t n) {
  uint64_t c64 = c;
  while (n >= 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    c64 = _mm_crc32_u64(c64, word);
    p += 8;
    n -= 8;
  }
  uint32_t c32 = static_cast<uint32_t>(c64);
  while (n > 0) {
    c32 = _mm_crc32_u8(c32, *p);
    ++p;
    --n;
  }
  return c32;
}

}  // namespace

__attribute__((target("sse4.2"))) uint32_t crc32c_internal::ExtendHardware(
    uint32_t crc, absl::string_view data) {
  return ~OneStream(~crc, reinterpret_cast<const unsigned char*>(data.data()), data.size());
}

namespace {

// Three interleaved streams. One crc32 instruction's 3-cycle latency leaves
// the unit idle two cycles in three on a single stream; three independent
// streams over three consecutive blocks of `kStride[i]` bytes keep it busy,
// and the three register values are then combined.
//
// Combining: the CRC register is linear in (register, data), so the register
// after blocks A B C, started from r, is
//   shift(regA, 2L) ^ shift(regB, L) ^ regC
// where regA is A's register from r, regB and regC start from 0, and
// shift(v, L) is v * x^(8L) mod P (what L zero bytes do to a register).
// In the reflected representation, a carry-less product of two 32-bit values
// is A*B*x as a 64-bit value, and crc32_u64(0, w) is W*x^32 mod P, so
//   shift(v, L) = crc32_u64(0, clmul(v, K)),  K = x^(8L - 33) mod P.
constexpr size_t kStrides[] = {2048, 512, 128, 32};

// x^m mod P, reflected (bit 31 is x^0): 1, multiplied by x m times.
constexpr uint32_t XPowModP(uint64_t m) {
  uint32_t v = 0x80000000u;
  for (uint64_t i = 0; i < m; ++i) v = (v & 1) ? (v >> 1) ^ kPolynomial : v >> 1;
  return v;
}

struct ShiftConstants {
  uint64_t by_stride[4];      // K for shifting by L
  uint64_t by_two_strides[4];  // K for shifting by 2L
};

constexpr ShiftConstants MakeShiftConstants() {
  ShiftConstants k{};
  for (int i = 0; i < 4; ++i) {
    k.by_stride[i] = XPowModP(8 * kStrides[i] - 33);
    k.by_two_strides[i] = XPowModP(16 * kStrides[i] - 33);
  }
  return k;
}

constexpr ShiftConstants kShift = MakeShiftConstants();

__attribute__((target("sse4.2,pclmul"))) inline uint32_t Shift(uint32_t v, uint64_t k) {
  const __m128i product =
      _mm_clmulepi64_si128(_mm_cvtsi32_si128(static_cast<int>(v)), _mm_cvtsi64_si128(static_cast<long long>(k)), 0);
  return static_cast<uint32_t>(_mm_crc32_u64(0, static_cast<uint64_t>(_mm_cvtsi128_si64(product))));
}

}  // namespace

__attribute__((target("sse4.2,pclmul"))) uint32_t crc32c_internal::ExtendInterleaved(
    uint32_t crc, absl::string_view data) {
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  size_t n = data.size();
  uint32_t c = ~crc;
  for (int s = 0; s < 4; ++s) {
    const size_t stride = kStrides[s];
    while (n >= 3 * stride) {
      uint64_t a = c;
      uint64_t b = 0;
      uint64_t d = 0;
      for (size_t i = 0; i < stride; i += 8) {
        uint64_t wa;
        uint64_t wb;
        uint64_t wd;
        std::memcpy(&wa, p + i, 8);
        std::memcpy(&wb, p + stride + i, 8);
        std::memcpy(&wd, p + 2 * stride + i, 8);
        a = _mm_crc32_u64(a, wa);
        b = _mm_crc32_u64(b, wb);
        d = _mm_crc32_u64(d, wd);
      }
      c = Shift(static_cast<uint32_t>(a), kShift.by_two_strides[s]) ^
          Shift(static_cast<uint32_t>(b), kShift.by_stride[s]) ^ static_cast<uint32_t>(d);
      p += 3 * stride;
      n -= 3 * stride;
    }
  }
  return ~OneStream(c, p, n);
}

bool crc32c_internal::FoldingAvailable() {
  static const bool available =
      __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("pclmul") &&
      __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("vpclmulqdq");
  return available;
}

namespace {

// Folding (the method of Intel's "Fast CRC Computation for Generic
// Polynomials Using PCLMULQDQ", derived here for the crc32 instruction's
// register): a 16-byte block X of the message, read little-endian, is the
// reflected 128-bit polynomial L*x^64 + H (L its first eight bytes, H the
// next eight). Moving it F bits later in the message multiplies it by x^F,
// and mod P
//   X*x^F = L*x^(64+F) + H*x^F = clmul(L, x^(F+31) mod P) ^ clmul(H, x^(F-33) mod P)
// (a carry-less product of reflected values is A*B*x, and a 32-bit constant
// in the low half of a 64-bit lane is K*x^32), a 128-bit value that is XORed
// into the block F bits later. The message's CRC register is unchanged by
// that (register = M(x)*x^32 mod P, from a zero register, whatever the
// length), so once fewer than 16 bytes follow the one block left, the crc32
// instruction finishes it. The initial register goes into the first four
// bytes. VPCLMULQDQ folds four 16-byte lanes per instruction: four 64-byte
// accumulators fold by 2,048 bits while 256 bytes remain, two by 1,024 after.
struct FoldConstant {
  uint64_t lo;  // x^(F+31) mod P: multiplies the first eight bytes
  uint64_t hi;  // x^(F-33) mod P: multiplies the next eight
};

constexpr FoldConstant MakeFold(uint64_t bits) {
  return FoldConstant{XPowModP(bits + 31), XPowModP(bits - 33)};
}

constexpr FoldConstant kFold128 = MakeFold(128);
constexpr FoldConstant kFold512 = MakeFold(512);
constexpr FoldConstant kFold1024 = MakeFold(1024);
constexpr FoldConstant kFold2048 = MakeFold(2048);

__attribute__((target("sse4.2,pclmul"))) inline __m128i Fold128(__m128i x, __m128i k) {
  return _mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11));
}

// x folded by k, XORed with y, in one ternary-logic instruction (0x96: a^b^c).
__attribute__((target("avx512f,vpclmulqdq"))) inline __m512i Fold512(__m512i x, __m512i k,
                                                                       __m512i y) {
  return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(x, k, 0x00),
                                   _mm512_clmulepi64_epi128(x, k, 0x11), y, 0x96);
}

__attribute__((target("avx512f"))) inline __m512i Broadcast(FoldConstant k) {
  const auto lo = static_cast<long long>(k.lo);
  const auto hi = static_cast<long long>(k.hi);
  return _mm512_set_epi64(hi, lo, hi, lo, hi, lo, hi, lo);
}

}  // namespace

__attribute__((target("sse4.2,pclmul,avx512f,vpclmulqdq"))) uint32_t
crc32c_internal::ExtendFolding(uint32_t crc, absl::string_view data) {
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  size_t n = data.size();
  if (n < kMinFoldingBytes) return ExtendInterleaved(crc, data);
  __m512i a = _mm512_xor_si512(_mm512_loadu_si512(p),
                               _mm512_zextsi128_si512(_mm_cvtsi32_si128(static_cast<int>(~crc))));
  __m512i b = _mm512_loadu_si512(p + 64);
  p += 128;
  n -= 128;
  const __m512i k1024 = Broadcast(kFold1024);
  if (n >= 256) {
    // Four accumulators while 256 bytes remain (the multiplier's latency
    // would leave it idle with two), folded into two after.
    __m512i c = _mm512_loadu_si512(p);
    __m512i d = _mm512_loadu_si512(p + 64);
    p += 128;
    n -= 128;
    const __m512i k2048 = Broadcast(kFold2048);
    while (n >= 256) {
      a = Fold512(a, k2048, _mm512_loadu_si512(p));
      b = Fold512(b, k2048, _mm512_loadu_si512(p + 64));
      c = Fold512(c, k2048, _mm512_loadu_si512(p + 128));
      d = Fold512(d, k2048, _mm512_loadu_si512(p + 192));
      p += 256;
      n -= 256;
    }
    a = Fold512(a, k1024, c);
    b = Fold512(b, k1024, d);
  }
  if (n >= 128) {
    a = Fold512(a, k1024, _mm512_loadu_si512(p));
    b = Fold512(b, k1024, _mm512_loadu_si512(p + 64));
    p += 128;
    n -= 128;
  }
  const __m512i k512 = Broadcast(kFold512);
  a = Fold512(a, k512, b);
  if (n >= 64) {
    a = Fold512(a, k512, _mm512_loadu_si512(p));
    p += 64;
    n -= 64;
  }
  // Four lanes to one, then 16 bytes at a time.
  const __m128i k128 = _mm_set_epi64x(static_cast<long long>(kFold128.hi),
                                      static_cast<long long>(kFold128.lo));
  __m128i x = _mm512_maskz_extracti32x4_epi32(0xF, a, 0);
  x = _mm_xor_si128(Fold128(x, k128), _mm512_maskz_extracti32x4_epi32(0xF, a, 1));
  x = _mm_xor_si128(Fold128(x, k128), _mm512_maskz_extracti32x4_epi32(0xF, a, 2));
  x = _mm_xor_si128(Fold128(x, k128), _mm512_maskz_extracti32x4_epi32(0xF, a, 3));
  while (n >= 16) {
    x = _mm_xor_si128(Fold128(x, k128), _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    p += 16;
    n -= 16;
  }
  uint64_t reg = _mm_crc32_u64(0, static_cast<uint64_t>(_mm_cvtsi128_si64(x)));
  reg = _mm_crc32_u64(reg, static_cast<uint64_t>(_mm_extract_epi64(x, 1)));
  return ~OneStream(static_cast<uint32_t>(reg), p, n);
}
#else
bool crc32c_internal::HardwareAvailable() { return false; }
bool crc32c_internal::InterleavedAvailable() { return false; }
uint32_t crc32c_internal::ExtendHardware(uint32_t crc, absl::string_view data) {
  return ExtendPortable(crc, data);
}
uint32_t crc32c_internal::ExtendInterleaved(uint32_t crc, absl::string_view data) {
  return ExtendPortable(crc, data);
}
bool crc32c_internal::FoldingAvailable() { return false; }
uint32_t crc32c_internal::ExtendFolding(uint32_t crc, absl::string_view data) {
  return ExtendPortable(crc, data);
}
#endif

uint32_t Crc32cExtend(uint32_t crc, absl::string_view data) {
  static const int best = crc32c_internal::FoldingAvailable()       ? 3
                          : crc32c_internal::InterleavedAvailable() ? 2
                          : crc32c_internal::HardwareAvailable()    ? 1
                                                                    : 0;
  if (best == 3 && data.size() >= crc32c_internal::kMinFoldingBytes) {
    return crc32c_internal::ExtendFolding(crc, data);
  }
  if (best >= 2) return crc32c_internal::ExtendInterleaved(crc, data);
  if (best == 1) return crc32c_internal::ExtendHardware(crc, data);
  return crc32c_internal::ExtendPortable(crc, data);
}

uint32_t Crc32c(absl::string_view data) { return Crc32cExtend(0, data); }

}  // namespace udpmsg::proto
