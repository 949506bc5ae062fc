// udpmsg: UDP datagram messaging, one binary. main() only parses flags and
// dispatches to the subcommand; each lives in its own file.
#include <malloc.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "cli/commands.h"
#include "cli/common.h"

namespace {

struct Command {
  const char* name;
  int (*run)(const udpmsg::cli::Args&);
  const char* usage;
};

constexpr Command kCommands[] = {
    {"showip", udpmsg::cli::RunShowIp, "showip HOST              list HOST's IPv4/IPv6 addresses"},
    {"send", udpmsg::cli::RunSend,
     "send HOST:PORT [MSG...]  one datagram per MSG (or stdin line);\n"
     "         udpmsg send --reliable HOST:PORT [--file F | MSG...]   reliable transfer"},
    {"listen", udpmsg::cli::RunListen, "listen --port P          print each datagram received"},
    {"tcp", udpmsg::cli::RunTcp,
     "tcp serve --port P | tcp connect HOST:PORT   stream sockets, for comparison"},
    {"recv", udpmsg::cli::RunRecv,
     "recv --reliable --port P --out FILE   receive one reliable transfer;\n"
     "         udpmsg recv --reliable --port P --out DIR [--threads N]   one file per sender, until stopped"},
    {"chat", udpmsg::cli::RunChat,
     "chat serve --port P | chat join HOST:PORT --nick NAME   multi-party chat"},
    {"impair", udpmsg::cli::RunImpair,
     "impair --listen P --to HOST:PORT [--loss R ...]   lossy UDP proxy;\n"
     "         udpmsg impair --nfqueue N [--loss R --delay D ...]   (root) TCP+UDP emulator"},
    {"keygen", udpmsg::cli::RunKeygen,
     "keygen > room.key          a random room key for --key-file\n"
     "         udpmsg keygen --identity FILE   a server identity; prints its fingerprint"},
    {"bench", udpmsg::cli::RunBench,
     "bench rate|latency|bulk|fairness   measure udpmsg against raw UDP, TCP and ENet;\n"
     "         udpmsg bench connections [--bench_connections N]   one chat server under N members"},
    {"demo", udpmsg::cli::RunDemo, "demo                     a tour on loopback"},
};

std::string Usage() {
  std::string text =
      "UDP datagram messaging.\n\nusage: udpmsg COMMAND [flags] [args]\n\ncommands:\n";
  for (const Command& c : kCommands) text += std::string("  udpmsg ") + c.usage + "\n";
  text += "\nflags: see udpmsg --helpfull";
  return text;
}

// Flag names are identifiers (`--key_file`); accept the dashed spelling
// users expect (`--key-file`) by rewriting the name part of `--a-b[=v]`.
void NormalizeFlagNames(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    char* arg = argv[i];
    if (arg[0] != '-' || arg[1] != '-' || arg[2] == '\0') continue;
    for (char* c = arg + 2; *c != '\0' && *c != '='; ++c) {
      if (*c == '-') *c = '_';
    }
  }
}

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
  absl::SetProgramUsageMessage(Usage());
  NormalizeFlagNames(argc, argv);
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() < 2) {
    std::fprintf(stderr, "%s\n", Usage().c_str());
    return udpmsg::cli::kExitUsage;
  }
  const std::string name = positional[1];
  const udpmsg::cli::Args args(positional.begin() + 2, positional.end());
  for (const Command& c : kCommands) {
    if (name == c.name) return c.run(args);
  }
  std::fprintf(stderr, "udpmsg: unknown command \"%s\"\n\n%s\n", name.c_str(), Usage().c_str());
  return udpmsg::cli::kExitUsage;
}
