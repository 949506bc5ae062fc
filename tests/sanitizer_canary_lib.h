// Faults the sanitizer canary (tests/sanitizer_canary_test.cc) triggers from
// library code: the twins instrument every library with ASan and UBSan, and
// test sources with ASan only (tests/sanitized.bzl), so the undefined
// behaviour has to live in a library to prove the libraries are covered.
#ifndef UDPMSG_TESTS_SANITIZER_CANARY_LIB_H_
#define UDPMSG_TESTS_SANITIZER_CANARY_LIB_H_

namespace udpmsg::canary {

// Reads one byte past a 16-byte heap block (through memcpy).
int LibraryHeapOverflow();
// Reads an int after deleting it.
int LibraryUseAfterFree();
// INT_MAX + 1 on a value the optimiser cannot see through.
int LibrarySignedOverflow();

}  // namespace udpmsg::canary

#endif  // UDPMSG_TESTS_SANITIZER_CANARY_LIB_H_
