// CRC32C (Castagnoli), software slice-by-8.
//
// The same functions are declared in codec.h, which is what callers include;
// this header lets the CRC be used (and benchmarked) without the codec.
//
//   uint32_t crc = Crc32c("123456789");           // 0xE3069283
//   crc = Crc32cExtend(Crc32c(a), b);             // == Crc32c(a + b)
#ifndef UDPMSG_PROTO_CRC32C_H_
#define UDPMSG_PROTO_CRC32C_H_

#include <cstdint>

#include "absl/strings/string_view.h"

namespace udpmsg::proto {

// CRC32C (reflected polynomial 0x82F63B78, init and xor-out 0xFFFFFFFF), as in
// RFC 3720 / iSCSI.
uint32_t Crc32c(absl::string_view data);

// Continues a CRC: Crc32c(a + b) == Crc32cExtend(Crc32c(a), b).
uint32_t Crc32cExtend(uint32_t crc, absl::string_view data);

}  // namespace udpmsg::proto

#endif  // UDPMSG_PROTO_CRC32C_H_
