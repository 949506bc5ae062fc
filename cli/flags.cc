#include "cli/flags.h"

#include "absl/flags/flag.h"

ABSL_FLAG(int, port, -1, "local port to listen on (0 picks a free one)");
ABSL_FLAG(std::string, bind, "",
          "local address to bind (default: \"::\", which serves IPv4 and IPv6)");
ABSL_FLAG(int64_t, count, 0, "exit after this many datagrams or clients (0: run until killed)");
ABSL_FLAG(std::string, message, "Hello, world!", "greeting that `tcp serve` sends each client");
ABSL_FLAG(bool, ipv4, false, "use IPv4 only");
ABSL_FLAG(bool, ipv6, false, "use IPv6 only");
