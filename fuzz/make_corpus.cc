// Writes the codec fuzzer's seed corpus: one encoded datagram per sample
// packet (tests/proto/sample_packets.h: every frame type), named after it.
//
//   bazel run //fuzz:make_corpus -- "$PWD/fuzz/corpus/codec"
#include <cstdio>
#include <fstream>
#include <string>

#include "absl/status/statusor.h"
#include "proto/codec.h"
#include "tests/proto/sample_packets.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_corpus OUTPUT_DIR\n");
    return 2;
  }
  const udpmsg::proto::Codec codec(udpmsg::proto::Codec::Limits{});
  for (const auto& sample : udpmsg::proto::testing::SamplePackets()) {
    absl::StatusOr<std::string> bytes = codec.Encode(sample.packet);
    if (!bytes.ok()) {
      std::fprintf(stderr, "make_corpus: %s: %s\n", sample.name.c_str(),
                   bytes.status().ToString().c_str());
      return 1;
    }
    const std::string path = std::string(argv[1]) + "/" + sample.name;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes->data(), static_cast<std::streamsize>(bytes->size()));
    if (!out) {
      std::fprintf(stderr, "make_corpus: cannot write %s\n", path.c_str());
      return 1;
    }
    std::printf("%s (%zu bytes)\n", path.c_str(), bytes->size());
  }
  return 0;
}
