// How many seeded runs a scenario test makes. The sanitizer twins
// (tests/sanitized.bzl) and .bazelrc's asan/ubsan/tsan configs set
// UDPMSG_SIM_SEEDS=8: their builds run 5-20x slower, so they run fewer.
//
//   INSTANTIATE_TEST_SUITE_P(Seeds, MyTest,
//                            ::testing::Range<uint64_t>(1, 1 + sim::SeedCount(200)));
//   for (uint64_t seed : sim::ReducedSeeds() ? {61} : {61, 62, 63}) ...
#ifndef UDPMSG_TESTS_SIM_SEEDS_H_
#define UDPMSG_TESTS_SIM_SEEDS_H_

#include <cstdint>
#include <cstdlib>

#include "absl/strings/numbers.h"

namespace udpmsg::sim {

// Whether UDPMSG_SIM_SEEDS is set (a sanitizer run): tests with a fixed list
// of seeds or repeats run fewer then.
inline bool ReducedSeeds() { return std::getenv("UDPMSG_SIM_SEEDS") != nullptr; }

// Seeds 1..N to run of a test's `all`: UDPMSG_SIM_SEEDS when it is a number
// in [1, all], else all.
inline uint64_t SeedCount(uint64_t all) {
  const char* env = std::getenv("UDPMSG_SIM_SEEDS");
  uint64_t n = 0;
  if (env == nullptr || !absl::SimpleAtoi(env, &n) || n == 0 || n > all) return all;
  return n;
}

}  // namespace udpmsg::sim

#endif  // UDPMSG_TESTS_SIM_SEEDS_H_
