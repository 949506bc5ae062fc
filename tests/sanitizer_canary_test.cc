// The canary for udpmsg_cc_test's sanitizer twins (tests/sanitized.bzl).
//
// The plain test must be built without sanitizers and see no
// UDPMSG_SANITIZERS; its `_asan_ubsan` twin must be built with
// AddressSanitizer (GCC defines __SANITIZE_ADDRESS__) and see
// UDPMSG_SANITIZERS=address,undefined. A use after free in this file (test
// sources are built with ASan) and a heap overflow and a use after free in a
// library (sanitizer_canary_lib) must each kill it with AddressSanitizer's
// report, and a signed overflow in the library with UndefinedBehaviorSanitizer's
// (libraries are built with both; test sources skip UBSan, see sanitized.bzl).
// If the configuration transition or the test environment ever stops reaching
// the twins, this test fails instead of the suite silently running
// unsanitized.
#include <cstdlib>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/sanitizer_canary_lib.h"

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kBuiltWithAsan = true;
#else
constexpr bool kBuiltWithAsan = false;
#endif

std::string SanitizersFromEnv() {
  const char* v = std::getenv("UDPMSG_SANITIZERS");
  return v == nullptr ? "" : v;
}

// A load this file's own code makes (no interceptor in between), so only
// ASan's instrumentation of test sources can catch it.
int UseAfterFree() {
  int* p = new int(7);
  delete p;
  return *static_cast<volatile int*>(p);
}

TEST(SanitizerCanaryTest, BuildMatchesEnvironment) {
  const std::string env = SanitizersFromEnv();
  if (env.empty()) {
    EXPECT_FALSE(kBuiltWithAsan) << "a plain test was built with -fsanitize=address";
  } else {
    EXPECT_EQ(env, "address,undefined");
    EXPECT_TRUE(kBuiltWithAsan) << "UDPMSG_SANITIZERS=" << env
                                << " but the test was built without -fsanitize=address";
  }
}

class SanitizedOnly : public ::testing::Test {
 protected:
  void SetUp() override {
    if (SanitizersFromEnv().empty()) {
      GTEST_SKIP() << "plain build; the _asan_ubsan twin runs this";
    }
    GTEST_FLAG_SET(death_test_style, "threadsafe");
  }
};

TEST_F(SanitizedOnly, UseAfterFreeIsFatal) {
  EXPECT_DEATH(UseAfterFree(), "AddressSanitizer: heap-use-after-free");
}

TEST_F(SanitizedOnly, HeapOverflowInALibraryIsFatal) {
  EXPECT_DEATH(udpmsg::canary::LibraryHeapOverflow(), "AddressSanitizer: heap-buffer-overflow");
}

TEST_F(SanitizedOnly, UseAfterFreeInALibraryIsFatal) {
  EXPECT_DEATH(udpmsg::canary::LibraryUseAfterFree(), "AddressSanitizer: heap-use-after-free");
}

TEST_F(SanitizedOnly, SignedOverflowInALibraryIsFatal) {
  EXPECT_DEATH(udpmsg::canary::LibrarySignedOverflow(), "runtime error: signed integer overflow");
}

}  // namespace
