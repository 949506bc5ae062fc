// DeterministicRng: a small PRNG whose output is fixed by its definition, not
// by a library version: xoshiro256** (Blackman & Vigna) with its 256-bit state
// filled from splitmix64. Use it wherever a seed must reproduce a run exactly:
// the endpoint's connection ids in tests, the impairment model, the simulator.
//
// Usage:
//   DeterministicRng rng(seed, /*stream=*/3);
//   if (rng.Bernoulli(0.1)) Drop();
//   size_t size = 1 + rng.Uniform(1200);
//
// The same (seed, stream) gives the same sequence on every platform and
// compiler; different streams of one seed are statistically independent, so
// each consumer can draw from its own stream without disturbing the others.
//
// Not a cryptographic generator: never use it for keys, cookies or anything a
// peer must not predict.
//
// Thread-compatible value type; copying it copies the state (both copies then
// produce the same sequence). Owns nothing. No method fails.
#ifndef UDPMSG_RELIABLE_DETERMINISTIC_RNG_H_
#define UDPMSG_RELIABLE_DETERMINISTIC_RNG_H_

#include <cstdint>

namespace udpmsg::reliable {

class DeterministicRng final {
 public:
  // Seeds stream `stream` of `seed`.
  explicit DeterministicRng(uint64_t seed, uint64_t stream = 0);

  // The next 64 random bits.
  uint64_t Next();
  // Uniform in [0, 1) with 53 bits of precision.
  double NextDouble();
  // True with probability `p`. p <= 0 and p >= 1 are decided without a draw.
  bool Bernoulli(double p);
  // Uniform in [0, n) without modulo bias; n must be > 0 (returns 0 for 0).
  uint64_t Uniform(uint64_t n);

 private:
  uint64_t s_[4];
};

}  // namespace udpmsg::reliable

#endif  // UDPMSG_RELIABLE_DETERMINISTIC_RNG_H_
