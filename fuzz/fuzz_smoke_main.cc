// Runs a fuzzer's entry without libFuzzer, so CI exercises it (the endpoint
// and reassembler fuzzers; the codec one has its own smoke_main.cc): every
// file of CORPUS_DIR, then RANDOM_INPUTS seeded inputs (random bytes, and
// corpus files mutated: bit flips, overwrites, truncations, insertions,
// erasures, splices of two files). The entry aborts on any inconsistency.
//
//   bazel test //fuzz:endpoint_fuzz_smoke //fuzz:reassembler_fuzz_smoke
//   bazel-bin/fuzz/endpoint_fuzz_smoke CORPUS_DIR RANDOM_INPUTS
// Input i uses seed kSeed + i, so a failure names the seed to rerun.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

constexpr uint64_t kSeed = 20240917;

int Run(const std::string& input) {
  return LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

std::string Mutate(std::mt19937_64& rng, std::string s, const std::vector<std::string>& corpus) {
  auto pick = [&rng](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
  const int n = 1 + static_cast<int>(pick(6));
  for (int i = 0; i < n; ++i) {
    switch (pick(7)) {
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
        if (!s.empty()) s.erase(pick(s.size()), 1 + pick(16));
        break;
      case 5: {  // splice: a piece of another file
        const std::string& other = corpus[pick(corpus.size())];
        if (other.empty()) break;
        const size_t from = pick(other.size());
        s.insert(pick(s.size() + 1), other.substr(from, 1 + pick(other.size() - from)));
        break;
      }
      case 6:  // a small byte value somewhere (lengths, counts, flags)
        if (!s.empty()) s[pick(s.size())] = static_cast<char>(pick(8));
        break;
    }
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR RANDOM_INPUTS\n", argv[0]);
    return 2;
  }
  const std::filesystem::path dir = argv[1];  // runfiles-relative in tests
  const int random_inputs = std::atoi(argv[2]);
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.is_regular_file()) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());  // a fixed order: reproducible
  std::vector<std::string> corpus;
  for (const auto& file : files) {
    std::ifstream in(file, std::ios::binary);
    corpus.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    Run(corpus.back());
  }
  if (corpus.size() < 5) {
    std::fprintf(stderr, "fuzz_smoke: only %zu corpus files in %s\n", corpus.size(), dir.c_str());
    return 1;
  }
  for (int i = 0; i < random_inputs; ++i) {
    std::mt19937_64 rng(kSeed + i);  // per input: rerun one with its seed
    std::string input;
    if (i % 8 == 0) {
      input.resize(std::uniform_int_distribution<size_t>(0, 2000)(rng));
      for (char& c : input) c = static_cast<char>(rng());
    } else {
      input = Mutate(rng, corpus[rng() % corpus.size()], corpus);
    }
    Run(input);
  }
  std::printf("fuzz_smoke: %zu corpus files and %d seeded inputs OK\n", corpus.size(),
              random_inputs);
  return 0;
}
