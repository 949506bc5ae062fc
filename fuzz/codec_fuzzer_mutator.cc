// libFuzzer custom mutator for codec_fuzzer (fuzz/run.sh only; the smoke test
// has no libFuzzer): after libFuzzer's own mutation, most inputs get the
// version byte and CRC32C repaired so that they reach the protobuf parser and
// the range checks instead of stopping at "checksum mismatch".
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "proto/codec.h"

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size,
                                   size_t max_size);

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size,
                                          size_t max_size, unsigned int seed) {
  size = LLVMFuzzerMutate(data, size, max_size);
  if (seed % 8 == 0 || size < udpmsg::proto::kMinEncodedBytes) return size;
  data[0] = udpmsg::proto::kProtocolVersion;
  const size_t covered = size - 4;
  const uint32_t crc = udpmsg::proto::Crc32c(
      absl::string_view(reinterpret_cast<const char*>(data), covered));
  for (int i = 0; i < 4; ++i) data[covered + i] = static_cast<uint8_t>(crc >> (8 * i));
  return size;
}
