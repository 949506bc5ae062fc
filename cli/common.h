// Shared pieces of the udpmsg subcommands: exit codes, one-line errors,
// the "listening on" line, printable payloads, and address helpers.
#ifndef UDPMSG_CLI_COMMON_H_
#define UDPMSG_CLI_COMMON_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "udpmsg/udpmsg.h"

namespace udpmsg::cli {

// Exit codes: 0 success; 1 a runtime failure (I/O, peer vanished);
// 2 bad input (usage, flag values, unresolvable host).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// Prints "udpmsg: <message>" on one line to stderr and returns the exit code
// for `status` (kExitUsage for InvalidArgument/NotFound, else kExitFailure).
int Fail(const absl::Status& status);
// Prints "udpmsg <command>: <message>" and returns kExitUsage.
int UsageError(absl::string_view command, absl::string_view message);

// The address family --ipv4 / --ipv6 ask for; kUnspecified (either) when
// neither is given.
AddressFamily FamilyFromFlags();

// The first stderr line of every server: "listening on ADDR:PORT".
void PrintListening(const SocketAddress& address);

// `payload` with control bytes and invalid UTF-8 escaped (\n, \x01, ...), so
// a datagram can never garble the terminal. Valid UTF-8 text is kept.
std::string Printable(absl::string_view payload);

// The local address to bind a server to: `bind` (a host or numeric address;
// empty means the dual-stack wildcard "::", or 0.0.0.0 where IPv6 is off)
// with `port`.
absl::StatusOr<std::vector<SocketAddress>> BindAddresses(absl::string_view bind, int port,
                                                              SocketType type);

// The --timeout flag as a positive duration of at most 24h (the longest
// connection timeout HostOptions accept); INVALID_ARGUMENT quoting it.
absl::StatusOr<absl::Duration> TimeoutFromFlag();

// Checks a --port value (0..65535).
absl::Status CheckPort(int port);

}  // namespace udpmsg::cli

#endif  // UDPMSG_CLI_COMMON_H_
