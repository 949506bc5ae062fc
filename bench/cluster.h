// bench cluster: one chat room over several servers through Redis
// (apps/chat/redis_room.h), measured on one machine: how many lines per
// second the room takes and delivers with 1, 2, 3 servers, and what the
// Redis hop adds to a line's latency against the in-process hop between two
// shards of a LocalRoom (apps/chat/local_room.h).
//
// Each "server" is a RedisRoom in this process, as `chat serve --cluster`
// makes one: its own two Redis connections (the shards' calls, the reader's
// XREAD BLOCK) and its own reader thread, so Redis sees N servers exactly as
// it would see N processes. Its shards are threads calling the Room as a
// ServerCore would (Say, then Read). No UDP members: the room is measured,
// not the transport (`udpmsg bench connections` measures that), and on a
// small machine members and their acknowledgements would take the CPUs the
// servers and Redis need. All times come from one steady clock.
//
// Throughput (RunThroughput, one run per server count): every shard of every
// server says lines (`line_bytes` of text, from its `members` in turn) as
// fast as the room accepts them for `duration`, reading its own shard after
// each Say. Each Say is one Redis round trip (an EVAL that numbers the line
// and XADDs it), serialized per server. Then drain: until every shard of
// every server has read every accepted line (or `drain_timeout`).
//   accepted/s     lines Say answered kOk, / the duration
//   delivered/s    lines the fewest-reading server's reader took from the
//                  stream during the window, / the duration
//   deliveries/s   the same summed over servers (= accepted/s x N when every
//                  server keeps up)
//   lost           accepted lines some shard never read
//   order          every shard's sequence of line numbers and bytes (hashed)
//                  is the same: "one", else "DIFFERS"
// plus Say()'s time (p50/p99), CPU from /proc: redis-server's (and the time
// it waited for a CPU), this process's, and the Say threads'; and Redis's
// own time inside commands per line (INFO commandstats before and after),
// which against its CPU tells the commands from the I/O around them.
//
// Latency (RunLatency): server 0 says `latency_rate` lines per second from
// one shard for `latency_duration`, each at its scheduled time; one reader
// shard per server (server 0 too) waits for its wake (as a shard's Host
// does) and Reads. Latency = the Read that returned the line - the moment
// Say was called, in microseconds, nearest-rank percentiles; "own server"
// is server 0's reader (the line still goes through Redis), "other server"
// the others'. The LocalRoom run is the same with a sender shard and one
// reader shard in one room: the in-process hop, the baseline.
//
// Threading: the Run functions block the calling thread (which started the
// Redis, if any: see redis::ServerProcess) and join every thread they start.
#ifndef UDPMSG_BENCH_CLUSTER_H_
#define UDPMSG_BENCH_CLUSTER_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "bench/report.h"
#include "redis/client.h"

namespace udpmsg::bench {

struct ClusterConfig {
  redis::Endpoint redis;          // the Redis the rooms live in (rooms "bench-PID-N")
  pid_t redis_pid = -1;           // its process, for CPU from /proc; -1: not measured
  std::string redis_description;  // for the notes (version, persistence)

  std::vector<int> servers = {1, 2, 3};        // one throughput run per count (1..16)
  int shards = 1;                              // Say threads per server (1..16)
  int members = 4;                             // members per shard (1..64)
  size_t line_bytes = 64;                      // text per line (16..4096)
  absl::Duration duration = absl::Seconds(5);  // each throughput run
  absl::Duration drain_timeout = absl::Seconds(30);

  double latency_rate = 1000;  // lines/s of the latency runs (1..100000); 0: none
  absl::Duration latency_duration = absl::Seconds(5);

  TableFormat format = TableFormat::kText;
};

// INVALID_ARGUMENT naming the first setting out of range.
absl::Status ValidateClusterConfig(const ClusterConfig& config);

struct ThroughputResult {
  int servers = 0;
  int shards = 0;
  double seconds = 0;  // the window, measured
  uint64_t accepted = 0;
  uint64_t busy = 0;    // Say answered kBusy (the log full: shards behind)
  uint64_t failed = 0;  // any other answer (kUnavailable: Redis lost)
  // Lines each server's reader took from the stream during the window.
  std::vector<uint64_t> delivered_in_window;
  // Per server, per shard: the line numbers of this run's lines in the order
  // Read gave them, and an FNV-1a hash of (number, bytes) over them.
  std::vector<std::vector<std::vector<uint64_t>>> sequences;
  std::vector<std::vector<uint64_t>> hashes;
  bool drained = false;
  double drain_seconds = 0;
  uint64_t lost = 0;  // the most accepted lines any shard is short of
  bool one_order = false;
  double say_p50_us = 0;
  double say_p99_us = 0;
  // Fractions of one core over the window; -1 when not measured.
  double redis_cpu = -1;
  double redis_wait = -1;  // runnable, waiting for a CPU (schedstat)
  double process_cpu = -1;
  double process_wait = -1;
  double say_threads_cpu = -1;
  // Redis's own time in commands over the window (INFO commandstats, after
  // - before), by command ("evalsha", "xread", ...): calls and microseconds.
  struct CommandTime {
    std::string command;
    uint64_t calls = 0;
    uint64_t usec = 0;
  };
  std::vector<CommandTime> redis_commands;  // most time first; empty: unknown
  uint64_t redis_in_bytes = 0;              // Redis read and wrote over the window
  uint64_t redis_out_bytes = 0;             // (INFO stats total_net_*_bytes)
  std::vector<std::string> notices;         // room announcements (lines missed, Redis lost)
};

// One throughput run with `servers` RedisRooms. Errors: Redis unreachable
// (UNAVAILABLE from RedisRoom::Create), a join refused (INTERNAL).
absl::StatusOr<ThroughputResult> RunThroughput(const ClusterConfig& config, int servers);

struct LatencyResult {
  std::string room;      // "LocalRoom" or "RedisRoom"
  int servers = 0;       // RedisRoom servers; 0 for the LocalRoom
  std::string hop;       // "other shard", "own server", "other server"
  uint64_t lines = 0;    // said (accepted)
  uint64_t samples = 0;  // deliveries measured on this hop
  uint64_t lost = 0;     // lines some reader of this hop never read
  double p50_us = 0, p99_us = 0, max_us = 0;
  double say_p50_us = 0, say_p99_us = 0;
  uint64_t late = 0;  // sends that began over 1 ms after their scheduled time
};

// One latency run (config.latency_rate > 0, else INVALID_ARGUMENT):
// `servers` RedisRooms, or with servers == 0 a LocalRoom;
// one result per hop (LocalRoom: other shard; one server: own server; more:
// own server and other server).
absl::StatusOr<std::vector<LatencyResult>> RunLatency(const ClusterConfig& config, int servers);

// Every throughput run, the latency runs (LocalRoom, then 1, 2, 3 servers
// as config.servers lists them), and prints both tables in config.format.
absl::Status RunCluster(const ClusterConfig& config);

// The tables as RunCluster prints them (tests).
BenchTable ThroughputTable(const ClusterConfig& config, const std::vector<ThroughputResult>& runs);
BenchTable LatencyTable(const ClusterConfig& config, const std::vector<LatencyResult>& runs);

}  // namespace udpmsg::bench

#endif  // UDPMSG_BENCH_CLUSTER_H_
