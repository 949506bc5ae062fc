// udpmsg: UDP datagram messaging, one binary. main() hands the command line
// to cli/command_line.h, which parses the flags, prints help or dispatches to
// the subcommand; each lives in its own file.
#include <malloc.h>

#include "cli/command_line.h"

namespace {

// Keeps freed memory for reuse instead of returning it to the kernel. Every
// message the library delivers is a fresh std::string: with glibc's defaults
// a large one is an mmap, or the top of a thread's heap that free() hands back
// with madvise, so the next message page-faults every page again. perf put
// that at a third of a bulk receiver's CPU on a veth (5.9 s/GB of receiver
// CPU, 1.5 s/GB with these settings: docs/performance.md). The process keeps
// at most what it once used. An application's choice, not the library's.
void KeepFreedMemory() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's largest accepted value
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

}  // namespace

int main(int argc, char** argv) {
  KeepFreedMemory();
  return udpmsg::cli::RunCommandLine(argc, argv);
}
