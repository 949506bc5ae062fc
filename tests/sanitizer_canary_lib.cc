#include "tests/sanitizer_canary_lib.h"

#include <climits>
#include <cstddef>
#include <cstring>

namespace udpmsg::canary {
namespace {

// Values the optimiser cannot see through.
volatile int g_index = 16;
volatile int g_addend = 1;
volatile int g_sink = 0;

}  // namespace

int LibraryHeapOverflow() {
  char* p = new char[16];
  std::memset(p, 0, 16);
  char copy[32];
  std::memcpy(copy, p, static_cast<size_t>(g_index) + 1);
  delete[] p;
  g_sink = copy[0];
  return copy[0];
}

int LibraryUseAfterFree() {
  int* p = new int(7);
  delete p;
  return *static_cast<volatile int*>(p);
}

int LibrarySignedOverflow() {
  int x = INT_MAX;
  x += g_addend;
  g_sink = x;
  return x;
}

}  // namespace udpmsg::canary
