// CRC32C (Castagnoli): on x86-64 CPUs with AVX-512 and VPCLMULQDQ,
// carry-less multiplies fold 64 bytes per instruction (from 256 bytes up);
// with SSE4.2 and PCLMULQDQ, three interleaved streams of the crc32
// instruction combined with carry-less multiplies; the crc32 instruction
// alone with SSE4.2 only; software slice-by-8 elsewhere (checked once, at
// the first call).
//
// The same functions are declared in codec.h, which is what callers include;
// this header lets the CRC be used (and benchmarked) without the codec.
//
//   uint32_t crc = Crc32c("123456789");           // 0xE3069283
//   crc = Crc32cExtend(Crc32c(a), b);             // == Crc32c(a + b)
#ifndef UDPMSG_PROTO_CRC32C_H_
#define UDPMSG_PROTO_CRC32C_H_

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"

namespace udpmsg::proto {

// CRC32C (reflected polynomial 0x82F63B78, init and xor-out 0xFFFFFFFF), as in
// RFC 3720 / iSCSI.
uint32_t Crc32c(absl::string_view data);

// Continues a CRC: Crc32c(a + b) == Crc32cExtend(Crc32c(a), b).
uint32_t Crc32cExtend(uint32_t crc, absl::string_view data);

// The implementations behind Crc32cExtend, for tests and benchmarks.
namespace crc32c_internal {
uint32_t ExtendPortable(uint32_t crc, absl::string_view data);
// Whether this CPU runs ExtendHardware (x86-64 with SSE4.2).
bool HardwareAvailable();
// Requires HardwareAvailable(). One stream of crc32 instructions.
uint32_t ExtendHardware(uint32_t crc, absl::string_view data);
// Whether this CPU runs ExtendInterleaved (SSE4.2 and PCLMULQDQ).
bool InterleavedAvailable();
// Requires InterleavedAvailable(). Three streams at once over blocks of
// 3 x 2048, 512, 128 or 32 bytes, then one stream for the rest.
uint32_t ExtendInterleaved(uint32_t crc, absl::string_view data);
// Whether this CPU runs ExtendFolding (SSE4.2, PCLMULQDQ, AVX-512F and
// VPCLMULQDQ).
bool FoldingAvailable();
// Requires FoldingAvailable(). Carry-less multiplies fold 64-byte blocks
// (four 16-byte lanes each; four accumulators from 384 bytes, two below),
// 16-byte blocks after them, the crc32 instruction for the last 0-15 bytes;
// ExtendInterleaved below kMinFoldingBytes.
inline constexpr size_t kMinFoldingBytes = 256;
uint32_t ExtendFolding(uint32_t crc, absl::string_view data);
}  // namespace crc32c_internal

}  // namespace udpmsg::proto

#endif  // UDPMSG_PROTO_CRC32C_H_
