// Subprocess: runs a program with pipes on stdin, stdout and stderr, for
// tests that drive the udpmsg binary. Every read and wait takes a deadline;
// nothing sleeps. The destructor kills (SIGKILL) and reaps a child that is
// still running, so a failing test leaves no process behind.
//
// Threading: one thread per Subprocess.
#ifndef UDPMSG_TESTS_CLI_SUBPROCESS_H_
#define UDPMSG_TESTS_CLI_SUBPROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace udpmsg::testing {

class Subprocess final {
 public:
  // Starts argv[0] (a path) with the arguments that follow.
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(const std::vector<std::string>& argv);
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  absl::Status WriteStdin(const std::string& data);
  void CloseStdin();

  // The next line (without '\n') of stdout / stderr. DEADLINE_EXCEEDED when
  // none arrives in time, OUT_OF_RANGE at end of stream.
  absl::StatusOr<std::string> ReadStdoutLine(absl::Duration timeout);
  absl::StatusOr<std::string> ReadStderrLine(absl::Duration timeout);

  // Waits until everything stderr has said so far contains `text` (lines
  // stay for ReadStderrLine; text redrawn with '\r' counts too).
  // DEADLINE_EXCEEDED when it does not within `timeout`, OUT_OF_RANGE when
  // stderr ends without it.
  absl::Status WaitForStderr(const std::string& text, absl::Duration timeout);

  // Reads the rest of both streams and reaps the child; returns its exit code
  // (128 + signal for a signal). DEADLINE_EXCEEDED (and the child killed)
  // when it does not exit in time.
  absl::StatusOr<int> Wait(absl::Duration timeout);

  void Kill(int signal);
  pid_t pid() const { return pid_; }

  // Everything read so far, including lines already returned.
  const std::string& stdout_text() const { return out_.all; }
  const std::string& stderr_text() const { return err_.all; }

 private:
  struct Stream {
    int fd = -1;
    std::string all;
    size_t consumed = 0;  // of `all`, returned as lines
    bool eof = false;
  };
  Subprocess() = default;
  absl::StatusOr<std::string> ReadLine(Stream& stream, absl::Duration timeout);
  // Reads what is available from the streams whose fd is ready, up to
  // `deadline`. False when nothing became ready.
  bool Pump(absl::Time deadline);

  pid_t pid_ = -1;
  int stdin_fd_ = -1;
  Stream out_;
  Stream err_;
  bool reaped_ = false;
};

// The udpmsg binary in the test's runfiles.
std::string UdpmsgPath();

// A port P with P (UDP and TCP) and P+1 (UDP) free on every address right
// now, for the split-role benchmarks (0 when none was found). Another process
// may take it before the caller binds: retry on failure.
int FreePortPair();

// From "listening on 127.0.0.1:4321" or "listening on [::]:4321", the port.
absl::StatusOr<int> ParseListeningPort(const std::string& line);

// For tests that run the udpmsg binary (gtest expectations on failure).
// `udpmsg ARGS...`; nullptr (and a failed expectation) when it cannot start.
std::unique_ptr<Subprocess> StartUdpmsg(std::vector<std::string> args);

// A server process and the port from its first stderr line, "listening on".
struct UdpmsgServer {
  std::unique_ptr<Subprocess> process;
  int port = 0;
};
UdpmsgServer StartUdpmsgServer(std::vector<std::string> args,
                              absl::Duration timeout = absl::Seconds(10));

// The exit code of `p` (-1, and a failed expectation, when it did not exit
// within `timeout`).
int ExitCodeWithin(Subprocess& p, absl::Duration timeout);

// A finished run: its exit code (-1 when it did not start or end in time)
// and everything it wrote.
struct RunResult {
  int code = -1;
  std::string out;
  std::string err;
};

// Runs `udpmsg ARGS...` to its end, `stdin_text` on its stdin (then closed);
// expects it to start and to end within `timeout`.
RunResult RunUdpmsg(std::vector<std::string> args, const std::string& stdin_text = "",
                    absl::Duration timeout = absl::Seconds(10));

// The first of `candidates` (paths) that exists and may be executed, or ""
// (a test's PATH may lack /usr/sbin).
std::string FirstExecutable(const std::vector<std::string>& candidates);

// Runs `argv` (argv[0] a path) to its end: OK when it exits 0 within
// `timeout`, else an error naming the command, how it ended and its output.
absl::Status RunToSuccess(const std::vector<std::string>& argv,
                          absl::Duration timeout = absl::Seconds(20));

// `text`'s lines, without the '\n's and without empty lines.
std::vector<std::string> Lines(const std::string& text);

// The counters of one direction ("up" or "down") from `udpmsg impair`'s
// exit lines ("up: forwarded=12 dropped_loss=3 ..."), by name.
std::map<std::string, uint64_t> ImpairCounters(const std::string& stderr_text,
                                               const std::string& direction);

}  // namespace udpmsg::testing

#endif  // UDPMSG_TESTS_CLI_SUBPROCESS_H_
