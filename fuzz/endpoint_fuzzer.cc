// libFuzzer entry for reliable::Endpoint's datagram path: a server endpoint
// with one established connection gets a sequence of datagrams from eight
// source addresses, and application sends/closes, with the clock moving
// between them (input format and invariants: fuzz/endpoint_harness.h).
// Aborts when an invariant breaks; the sanitizers catch the rest.
//
// Built with libFuzzer by `fuzz/run.sh endpoint`, and with the normal
// toolchain into //fuzz:endpoint_fuzz_smoke, which calls the entry directly.
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "fuzz/endpoint_harness.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  udpmsg::fuzz::EndpointHarness harness;
  harness.DropClient();
  harness.Run(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
