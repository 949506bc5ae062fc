// The terminal pieces of `udpmsg chat join`: raw mode for line editing,
// O_NONBLOCK on stdin, full writes to a non-blocking descriptor, the width
// of the terminal. All of them restore what they changed when destroyed.
// (The signalfd helpers are in cli/common.h.)
//
// Usage:
//   RawTerminal raw;
//   if (absl::Status s = raw.Enter(STDIN_FILENO); !s.ok()) return s;
//   ...                                    // keys arrive one by one
//   raw.Restore();                         // or let it go out of scope
//
// Not thread-safe; each object owns the settings it saved, not the fd.
#ifndef UDPMSG_CLI_CHAT_TERMINAL_H_
#define UDPMSG_CLI_CHAT_TERMINAL_H_

#include <termios.h>

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "udpmsg/udpmsg.h"

namespace udpmsg::cli {

// Writes all of `data`, waiting while a non-blocking descriptor is full.
// False on a write error (errno says which).
bool WriteAll(int fd, absl::string_view data);

// Columns of the terminal on stdout; 80 when it has none.
size_t TerminalColumns();

// The end of `s` that fits in `columns` (one column per code point).
absl::string_view Tail(absl::string_view s, size_t columns);

// Raw mode for line editing (no echo, no canonical mode, no signals from
// keys; output processing stays on, so "\n" still starts a new line).
// Restores the saved settings when destroyed.
class RawTerminal final {
 public:
  RawTerminal() = default;
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;
  ~RawTerminal() { Restore(); }

  // The errno status of tcgetattr/tcsetattr on failure.
  absl::Status Enter(int fd);
  // Idempotent.
  void Restore();

 private:
  int fd_ = -1;
  termios saved_{};
};

// O_NONBLOCK on a descriptor, undone when destroyed (stdin may share its
// file description with the shell's terminal).
class NonBlocking final {
 public:
  NonBlocking() = default;
  NonBlocking(const NonBlocking&) = delete;
  NonBlocking& operator=(const NonBlocking&) = delete;
  ~NonBlocking() { Restore(); }

  // The errno status of fcntl on failure.
  absl::Status Set(int fd);
  // Idempotent.
  void Restore();

 private:
  int fd_ = -1;
  int saved_ = 0;
};

}  // namespace udpmsg::cli

#endif  // UDPMSG_CLI_CHAT_TERMINAL_H_
