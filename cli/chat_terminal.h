// The terminal pieces of `udpmsg chat join`: raw mode for line editing,
// O_NONBLOCK on stdin, bracketed paste, full writes to a non-blocking
// descriptor, the width of the terminal, and the nicks the line editor
// completes (cli/line_editor.h). All of them restore what they changed when
// destroyed. (The signalfd helpers are in cli/common.h.)
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
#include "apps/chat/client_core.h"
#include "cli/line_editor.h"
#include "udpmsg/udpmsg.h"

namespace udpmsg::cli {

// Writes all of `data`, waiting while a non-blocking descriptor is full.
// False on a write error (errno says which).
bool WriteAll(int fd, absl::string_view data);

// Columns of the terminal on stdout; 80 when it has none.
size_t TerminalColumns();

// Keeps `nicks` to the room as `e` tells it: a Welcome's list, or a /who
// answer listing the whole room, replaces it (a partial /who list only
// adds); joins add, leaves remove, renames do both.
void NoteMembers(const chat::ClientEvent& e, NickCompletions* nicks);

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

// Bracketed paste: the terminal marks pasted text with ESC[200~ ... ESC[201~
// (LineEditor then keeps a paste's control keys from acting). Turned off
// again when destroyed.
class BracketedPaste final {
 public:
  BracketedPaste() = default;
  BracketedPaste(const BracketedPaste&) = delete;
  BracketedPaste& operator=(const BracketedPaste&) = delete;
  ~BracketedPaste() { Restore(); }

  // Writes ESC[?2004h to `fd` (a terminal without the mode ignores it).
  void Enable(int fd);
  // Writes ESC[?2004l. Idempotent.
  void Restore();

 private:
  int fd_ = -1;
};

}  // namespace udpmsg::cli

#endif  // UDPMSG_CLI_CHAT_TERMINAL_H_
