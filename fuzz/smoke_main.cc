// Runs the codec fuzzer's entry without libFuzzer, so CI exercises it: every
// file of fuzz/corpus/codec, then 10,000 seeded inputs (random bytes, and
// mutations of corpus files with and without a repaired CRC). The entry
// aborts on any inconsistency.
//
//   bazel test //fuzz:codec_fuzz_smoke
//   bazel-bin/fuzz/codec_fuzz_smoke [CORPUS_DIR]
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "proto/codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

constexpr uint64_t kSeed = 20240601;
constexpr int kRandomInputs = 10'000;

int Run(const std::string& input) {
  return LLVMFuzzerTestOneInput(
      reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

std::string Mutate(std::mt19937_64& rng, std::string s) {
  auto pick = [&rng](size_t n) {
    return std::uniform_int_distribution<size_t>(0, n - 1)(rng);
  };
  const int n = 1 + static_cast<int>(pick(4));
  for (int i = 0; i < n; ++i) {
    switch (pick(5)) {
      case 0:
        if (!s.empty()) s[pick(s.size())] ^= static_cast<char>(1 << pick(8));
        break;
      case 1:
        if (!s.empty()) s[pick(s.size())] = static_cast<char>(rng());
        break;
      case 2:
        s.resize(pick(s.size() + 1));
        break;
      case 3:
        s.insert(s.begin() + pick(s.size() + 1), static_cast<char>(rng()));
        break;
      case 4:
        if (!s.empty()) s.erase(pick(s.size()), 1 + pick(4));
        break;
    }
  }
  return s;
}

void RepairFraming(std::string& s) {
  if (s.size() < udpmsg::proto::kMinEncodedBytes) return;
  s[0] = static_cast<char>(udpmsg::proto::kProtocolVersion);
  const size_t covered = s.size() - 4;
  const uint32_t crc =
      udpmsg::proto::Crc32c(absl::string_view(s).substr(0, covered));
  for (int i = 0; i < 4; ++i) s[covered + i] = static_cast<char>(crc >> (8 * i));
}

}  // namespace

int main(int argc, char** argv) {
  const std::filesystem::path dir =
      argc > 1 ? argv[1] : "fuzz/corpus/codec";  // runfiles-relative in tests
  std::vector<std::string> corpus;
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.is_regular_file()) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());  // a fixed order: reproducible
  for (const auto& file : files) {
    std::ifstream in(file, std::ios::binary);
    corpus.emplace_back(std::istreambuf_iterator<char>(in),
                        std::istreambuf_iterator<char>());
    Run(corpus.back());
  }
  if (corpus.size() < 10) {
    std::fprintf(stderr, "codec_fuzz_smoke: only %zu corpus files in %s\n",
                 corpus.size(), dir.c_str());
    return 1;
  }
  for (int i = 0; i < kRandomInputs; ++i) {
    std::mt19937_64 rng(kSeed + i);  // per input: rerun one with its seed
    std::string input;
    switch (i % 4) {
      case 0: {  // random bytes, a valid-looking frame half of the time
        input.resize(std::uniform_int_distribution<size_t>(0, 1300)(rng));
        for (char& c : input) c = static_cast<char>(rng());
        if (rng() % 2) RepairFraming(input);
        break;
      }
      case 1:  // a corrupted corpus file
        input = Mutate(rng, corpus[rng() % corpus.size()]);
        break;
      default:  // a mutated corpus file that passes the CRC
        input = Mutate(rng, corpus[rng() % corpus.size()]);
        RepairFraming(input);
        break;
    }
    Run(input);
  }
  std::printf("codec_fuzz_smoke: %zu corpus files and %d seeded inputs OK\n",
              corpus.size(), kRandomInputs);
  return 0;
}
