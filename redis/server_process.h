// ServerProcess: a real redis-server child process, on a free TCP port of
// 127.0.0.1, in a fresh directory of its own, for the tests
// (tests/redis/redis_server.h names it RedisServer) and the benchmarks
// (bench/cluster.h) of the room that spans servers. By default it keeps every
// write through a kill (append-only file, fsync on every write, no RDB
// snapshots); Options::persistence chooses Redis's usual trade-offs instead.
//
// Usage:
//   absl::StatusOr<std::unique_ptr<ServerProcess>> server = ServerProcess::Start({});
//   ASSERT_TRUE(server.ok()) << server.status();
//   auto c = redis::Connection::Connect((*server)->endpoint(), absl::Seconds(5));
//   ...
//   (*server)->Kill(SIGKILL);              // a crash: the AOF has every write
//   ASSERT_TRUE((*server)->Restart().ok());  // same port, same directory
//
// The server runs `redis-server --port P --bind 127.0.0.1 --dir DIR
// --appendonly yes --appendfsync always --save "" --daemonize no
// --protected-mode no [--requirepass PASSWORD]` (kAofEverySec:
// --appendfsync everysec; kNone: --appendonly no), its stdout and stderr
// appended to DIR/redis.log. DIR is a new directory under $TEST_TMPDIR (or
// /tmp outside Bazel, removed by the destructor). The port comes from
// binding a socket to port 0 and closing it; when another process takes it
// first, Start notices (redis-server exits, or the server that answers is
// not ours) and tries a new port, a few times.
//
// Errors: Start returns FAILED_PRECONDITION when there is no redis-server
// (/usr/bin/redis-server or on PATH; ./bazelw installs it), INTERNAL when it
// cannot be started, and UNAVAILABLE / DEADLINE_EXCEEDED when it does not
// come up (exits, or does not answer PING within the startup bound); the
// message then ends with the last lines of its log. Restart returns the same
// codes.
//
// The child is killed (SIGKILL) if the starting process dies first (Linux
// PR_SET_PDEATHSIG), and by the destructor, which reaps it. Every wait is
// bounded and polls; nothing sleeps a fixed time in the hope it is enough.
//
// Threading: one thread per ServerProcess (the one that started it: the
// parent-death signal follows that thread).
#ifndef UDPMSG_REDIS_SERVER_PROCESS_H_
#define UDPMSG_REDIS_SERVER_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "redis/client.h"

namespace udpmsg::redis {

class ServerProcess final {
 public:
  // What the server writes to disk (none of them RDB snapshots).
  enum class Persistence {
    kAofAlways,    // append-only file, fsync before answering each write
    kAofEverySec,  // append-only file, fsync once a second (Redis's default for AOF)
    kNone,         // nothing: a restart starts empty
  };
  struct Options {
    std::string password;  // empty: no requirepass
    Persistence persistence = Persistence::kAofAlways;
    // TLS only (--tls-port, the plain port closed), with a test CA and a
    // certificate for 127.0.0.1 made in its directory by `openssl`;
    // endpoint() then has tls set and tls_ca_file pointing at the CA.
    bool tls = false;
    // How long a start (or restart) may take until the server answers PING.
    absl::Duration startup_timeout = absl::Seconds(20);
  };

  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(Options options);
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  int port() const { return port_; }
  // The server's process id while running (for /proc), -1 otherwise.
  pid_t pid() const { return pid_; }
  // "redis://127.0.0.1:P/ROOM", "redis://:PASSWORD@127.0.0.1:P/ROOM" with a
  // password (percent-escaped); rediss:// with tls.
  std::string url(const std::string& room) const;
  // 127.0.0.1:P, with the password when there is one.
  Endpoint endpoint() const;
  // The server's directory (its append-only files and redis.log).
  const std::string& dir() const { return dir_; }

  // Sends `signal` and reaps the server (SIGKILL after 30 s if the signal
  // did not end it). Nothing when it is not running.
  void Kill(int signal);
  // Starts the server again after Kill (or after it exited), with the same
  // port, directory and options, and returns once it answers PING, which
  // Redis does only after it has loaded its append-only file.
  // FAILED_PRECONDITION when it is still running.
  absl::Status Restart();
  // True until Kill, or until the server exited (then reaps it).
  bool running();

  // The last `lines` lines of redis.log.
  std::string LogTail(int lines = 20) const;

 private:
  explicit ServerProcess(Options options) : options_(std::move(options)) {}
  // Starts redis-server on port_ and waits until it answers. UNAVAILABLE
  // with `*port_taken` set when it could not bind port_.
  absl::Status Launch(bool* port_taken);
  // Waits (bounded) for the child to exit and reaps it; false on timeout.
  bool Reap(absl::Duration timeout);

  Options options_;
  std::string binary_;
  std::string dir_;
  bool remove_dir_ = false;  // made outside $TEST_TMPDIR: the destructor removes it
  int port_ = 0;
  pid_t pid_ = -1;  // -1: not running (reaped)
};

}  // namespace udpmsg::redis

#endif  // UDPMSG_REDIS_SERVER_PROCESS_H_
