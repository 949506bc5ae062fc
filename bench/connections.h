// bench connections: how one chat server (`udpmsg chat serve`, another
// process) holds many connections. N chat members live in this process,
// spread over client threads; each thread drives its share of udpmsg::Hosts,
// one UDP socket each with a few connections, every socket on its own
// loopback address (127.X.Y.Z) so the server's per-address caps (the
// transport's 64 connections, chat's max_members_per_address) are met
// without raising them.
//
// Phases, each measured from outside the server through /proc/PID:
//   1. connect: every member connects and joins (at most connect_window
//      attempts in flight: the server keeps only 64 unconfirmed handshakes).
//      Connect time = Connect() to the transport's kConnected; join time =
//      Connect() to the Welcome. Failed = refused, closed or never welcomed.
//   2. settle: until no line has reached any member for a second (chat
//      announces each join to every member up to chat serve's
//      --announce_limit: N joins are then N(N+1)/2 deliveries), so the idle
//      phase is idle.
//   3. idle: nothing but keepalives for `idle`; server RSS per connection
//      (VmRSS now - VmRSS before any client, / members) and server CPU
//      (utime+stime) per second.
//   4. load: lines at line_rate per second in total, each from the next
//      member in turn, for `load`; every member receives every line. Then
//      drain: until every member has every accepted line (or a timeout).
//      Deliveries/s, server CPU, lost connections (closed while members),
//      and order: each member hashes the ids of the lines it received in
//      arrival order (and checks the server's seq only increases); members
//      whose (count, hash) differ from the most common one are mismatches.
// The client's own CPU (getrusage) and RSS are shown beside the server's,
// so a run can tell when the client, not the server, is the limit.
//
// The server is spawned (`/proc/self/exe chat serve --port 0 --bind
// 127.0.0.1 --max_members N --max_members_per_address K ...`, its stderr in
// a temporary file) unless `server` names an external one, whose pid then
// comes in `server_pid` (same machine: /proc).
//
// One thread drives many Hosts: it waits in its own epoll on the Hosts'
// epoll descriptors (found by probing /proc/self/fd right after each
// Host::Create, which runs on one thread; udpmsg::Host does not expose them)
// and polls every Host at least every kSweepInterval for its timers.
//
// Threading: RunConnections blocks the calling thread; it starts and joins
// the client threads. Tables go to stdout, progress to stderr.
#ifndef UDPMSG_BENCH_CONNECTIONS_H_
#define UDPMSG_BENCH_CONNECTIONS_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "bench/report.h"
#include "udp/socket_address.h"

namespace udpmsg::bench {

struct ConnectionsConfig {
  int connections = 1000;   // chat members
  int threads = 2;          // client threads
  int per_socket = 8;       // connections per client socket (one Host each)
  int connect_window = 64;  // connection attempts in flight, all threads
  absl::Duration idle = absl::Seconds(10);
  absl::Duration load = absl::Seconds(10);
  double line_rate = 10;  // lines per second into the room, in total
  // The chat timeout of both sides (keepalive = timeout / 4, as chat join).
  absl::Duration timeout = absl::Seconds(10);
  // Longest wait for the join lines to reach everyone.
  absl::Duration settle_timeout = absl::Seconds(300);
  int socket_buffer_bytes = 256 << 10;  // SO_RCVBUF/SO_SNDBUF per client socket

  // The server: spawn `server_binary chat serve` (empty `server`), or the
  // external server at `server` whose pid is `server_pid`.
  udp::SocketAddress server;
  bool external = false;
  pid_t server_pid = 0;
  std::string server_binary = "/proc/self/exe";
  // Extra arguments for the spawned server (e.g. {"--threads", "2"}).
  std::vector<std::string> server_args;
  std::string server_description;  // for the title

  TableFormat format = TableFormat::kText;
  bool json = false;
};

// INVALID_ARGUMENT naming the first setting out of range.
absl::Status ValidateConnectionsConfig(const ConnectionsConfig& config);

// Runs the phases and prints the table (or JSON). INVALID_ARGUMENT for a
// config out of range; the errors of spawning the server, of /proc, or of
// the client sockets (EMFILE names the descriptor limit).
absl::Status RunConnections(const ConnectionsConfig& config);

// ---- /proc readers and statistics (tested on their own)

// One process's resident memory and CPU time so far.
struct ProcSample {
  int64_t rss_kib = 0;     // VmRSS
  double cpu_seconds = 0;  // utime + stime
  // Time its threads were runnable but waiting for a CPU (the sum of
  // /proc/PID/task/*/schedstat's second field); -1 when unknown.
  double run_delay_seconds = -1;
};
// /proc/PID/status, /proc/PID/stat and /proc/PID/task/*/schedstat.
// NOT_FOUND when the process is gone.
absl::StatusOr<ProcSample> ReadProcSample(pid_t pid);
// VmRSS in KiB from the text of /proc/PID/status; INVALID_ARGUMENT without it.
absl::StatusOr<int64_t> ParseVmRssKib(absl::string_view status);
// utime + stime in seconds from the text of /proc/PID/stat (the command
// name in parentheses may hold spaces and parentheses); INVALID_ARGUMENT
// when it does not parse.
absl::StatusOr<double> ParseStatCpuSeconds(absl::string_view stat, long ticks_per_second);

// The nearest-rank percentile `p` (0..100) of `values` (sorted in place);
// 0 for none.
double Percentile(std::vector<double>& values, double p);

// The loopback address of client socket `i`: 127.X.Y.Z counting up from
// 127.1.0.1, skipping Z = 0 and Z = 255 (253 per /24, about 4 million in
// all). INVALID_ARGUMENT beyond 127.255.255.254.
absl::StatusOr<udp::SocketAddress> ClientAddress(int64_t i);

}  // namespace udpmsg::bench

#endif  // UDPMSG_BENCH_CONNECTIONS_H_
