#include "reliable/deterministic_rng.h"

#include <cstdint>

#include "absl/numeric/int128.h"

namespace udpmsg::reliable {
namespace {

// The splitmix64 generator (Steele, Lea & Flood), used to expand seeds.
uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

DeterministicRng::DeterministicRng(uint64_t seed, uint64_t stream) {
  // Mix the stream id through splitmix first so that stream k of seed s is not
  // a shifted copy of stream 0 of some nearby seed.
  uint64_t stream_state = stream ^ 0x5EED5EED5EED5EEDULL;
  uint64_t state = seed ^ SplitMix64(&stream_state);
  for (uint64_t& word : s_) word = SplitMix64(&state);
}

uint64_t DeterministicRng::Next() {
  const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = Rotl(s_[3], 45);
  return result;
}

double DeterministicRng::NextDouble() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

bool DeterministicRng::Bernoulli(double p) {
  if (!(p > 0.0)) return false;
  if (p >= 1.0) return true;
  return NextDouble() < p;
}

uint64_t DeterministicRng::Uniform(uint64_t n) {
  if (n == 0) return 0;
  // Lemire's multiply-shift with rejection.
  absl::uint128 m = absl::uint128(Next()) * n;
  uint64_t low = absl::Uint128Low64(m);
  if (low < n) {
    const uint64_t threshold = (0 - n) % n;
    while (low < threshold) {
      m = absl::uint128(Next()) * n;
      low = absl::Uint128Low64(m);
    }
  }
  return absl::Uint128High64(m);
}

}  // namespace udpmsg::reliable
