// Shared pieces of the udpmsg subcommands: exit codes, one-line errors,
// the "listening on" line, printable payloads, and address helpers.
#ifndef UDPMSG_CLI_COMMON_H_
#define UDPMSG_CLI_COMMON_H_

#include <initializer_list>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "udpmsg/udpmsg.h"

namespace udpmsg::cli {

// Exit codes: 0 success; 1 a runtime failure (I/O, peer vanished);
// 2 bad input (usage, flag values, unresolvable host); 128 + N when signal N
// (SIGINT, SIGTERM, SIGHUP) stopped a command before it finished its job
// (send --reliable, recv: see SignalExitCode).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// Prints "udpmsg: <message>" on one line to stderr and returns the exit code
// for `status` (kExitUsage for InvalidArgument/NotFound, else kExitFailure).
// The message passes through udpmsg::Displayable, so peer text quoted in a
// status can never garble the terminal or add a line.
int Fail(const absl::Status& status);
// Prints "udpmsg <command>: <message>" (escaped the same way) and returns
// kExitUsage.
int UsageError(absl::string_view command, absl::string_view message);

// Blocks `signals` and returns a signalfd that reports them (watch it with
// Host::Watch). The errno status of sigprocmask or signalfd on failure.
absl::StatusOr<OwnedFd> SignalFd(std::initializer_list<int> signals);

// Reads every pending siginfo from a signalfd; the number of the first
// signal read, 0 when none was pending.
int DrainSignals(int fd);

// "SIGINT", "SIGTERM", "SIGHUP", or "signal N".
std::string SignalName(int signal);

// The exit code of a command that `signal` stopped before it finished its
// job: 128 + the signal's number, what a shell reports for a process the
// signal killed (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP).
inline int SignalExitCode(int signal) { return 128 + signal; }

// The address family --ipv4 / --ipv6 ask for; kUnspecified (either) when
// neither is given.
AddressFamily FamilyFromFlags();

// The first stderr line of every server: "listening on ADDR:PORT".
void PrintListening(const SocketAddress& address);

// `payload` as udpmsg::Displayable shows it (controls, invalid UTF-8, bidi
// and invisible format characters escaped; other UTF-8 kept), but reversible:
// a backslash becomes \\, a newline \n, a carriage return \r and a tab \t,
// so every payload has its own spelling. For datagrams, which may be any
// bytes.
std::string Printable(absl::string_view payload);

// The local address to bind a server to: `bind` (a host or numeric address;
// empty means the dual-stack wildcard "::", or 0.0.0.0 where IPv6 is off)
// with `port`.
absl::StatusOr<std::vector<SocketAddress>> BindAddresses(absl::string_view bind, uint16_t port,
                                                         SocketType type);

// A server's port flag (`name` is "port" for --port, "listen" for impair's
// --listen) with its text `value`, through udpmsg::ParsePort: a local port
// from 0 to 65535, 0 asking for a free one. INVALID_ARGUMENT "--port is
// required" when `value` is empty (the flag was not given), else
// `--port "-5" is not a number from 0 to 65535`.
absl::StatusOr<uint16_t> BindPortFlag(absl::string_view name, absl::string_view value);
// BindPortFlag("port", --port).
absl::StatusOr<uint16_t> PortFromFlag();

// Resolves a destination argument, HOST:PORT or [IPv6]:PORT, for `type`
// with the family of --ipv4/--ipv6 (udpmsg::ResolveHostPort: the port a
// number from 1 to 65535). Errors as ResolveHostPort's; report them with
// AddressError.
absl::StatusOr<std::vector<SocketAddress>> ResolveDestination(absl::string_view host_port,
                                                              SocketType type);
// Reports a failed ResolveDestination (or ResolveHostPort) of `command` and
// returns the exit code: malformed text or a bad port (INVALID_ARGUMENT) as
// a usage error, "udpmsg COMMAND: port "99999" in "localhost:99999" is not a
// number from 1 to 65535"; anything else as Fail does ("udpmsg: resolve
// "nosuch.invalid": Name or service not known", exit 2 for a name that does
// not resolve).
int AddressError(absl::string_view command, const absl::Status& status);

// The --timeout flag as a positive duration of at most 24h (the longest
// connection timeout HostOptions accept); INVALID_ARGUMENT quoting it.
absl::StatusOr<absl::Duration> TimeoutFromFlag();

}  // namespace udpmsg::cli

#endif  // UDPMSG_CLI_COMMON_H_
