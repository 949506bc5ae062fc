// LineEditor: the line editor of `udpmsg chat join` in a terminal, without
// the terminal. Bytes read from a terminal in raw mode go in (keys, escape
// sequences, pasted text, in chunks cut anywhere); the edited line, the
// cursor, and the events the driver acts on (a line to send, quit, clear
// the screen, ring the bell, a line cut short) come out; Render() gives the
// bytes that redraw the prompt line. Readline and IRC-client habits:
//
//   Enter                      the line is done (an empty one too)
//   Left/Right, Ctrl-B/Ctrl-F  one character (a code point, with the
//                              combining marks after it)
//   Alt-B/Alt-F, Ctrl-Left/Right  one word (words are split by spaces)
//   Home/End, Ctrl-A/Ctrl-E    start/end of the line
//   Backspace, Ctrl-H          delete the code point before the cursor
//   Delete                     delete the character under the cursor
//   Ctrl-D                     on an empty line: quit; otherwise Delete
//   Ctrl-C                     quit (also inside a paste)
//   Ctrl-K / Ctrl-U / Ctrl-W / Alt-D / Alt-Backspace
//                              kill to the end / to the start / the word
//                              before the cursor / the word after it / the
//                              word before it; Ctrl-Y yanks the last kill
//   Up/Down, Ctrl-P/Ctrl-N     the lines entered this session (the last
//                              kHistoryLimit, without repeats in a row); the
//                              line being typed is kept when you go up and
//                              comes back at the bottom; edits to a recalled
//                              line are not saved into the history
//   Tab                        completes the nick before the cursor (a
//                              case-insensitive prefix of a nick in nicks()):
//                              "nick: " at the start of the line, "nick "
//                              elsewhere; Tab again right away replaces it
//                              with the next match (sorted, wrapping round);
//                              no match or an empty prefix rings the bell
//   Ctrl-L                     clear the screen
// Bracketed paste (ESC[200~ ... ESC[201~, when the driver turned it on):
// inside it a Tab is a space and control keys other than Enter and Ctrl-C
// are dropped; each pasted line is entered as if typed with Enter. Every
// other escape sequence (CSI and SS3 with any parameters, Alt plus an
// unbound key) is consumed whole and never inserted, even when a read cuts
// it in two; a lone Escape followed by a printable key is Alt plus that key
// (and does nothing unless bound), followed by a control key that key.
//
// The line holds valid UTF-8 only, never more than kMaxLineBytes (the
// server's limit on a message text, chat::kMaxTextBytes: a line that fits
// the editor always fits a message). Bytes that are not valid UTF-8 and code
// points the chat escapes for display (C0/C1 controls, bidi controls,
// invisible format characters: udpmsg::IsHiddenCodePoint) are dropped. What
// does not fit is dropped at a character boundary and reported: once per
// line as kTooLong when a paste (or a chunk of more than one character, or a
// yank or completion) overflows, otherwise (one typed character too many)
// as kBell.
//
// Usage (the driver, cli/chat_client.cc):
//   LineEditor editor;
//   for (const LineEditor::Event& e : editor.Feed(bytes_read)) {
//     kLine: send e.text; kQuit: leave; kClearScreen: "\x1b[H\x1b[2J";
//     kBell: "\a"; kTooLong: "*** line too long: kept the first N bytes"
//   }
//   write(editor.Render("> ", TerminalColumns()));
//
// Display: Render scrolls the line horizontally so that the cursor stays on
// the screen (one line, never wrapped). Columns per code point follow a
// small built-in table (East Asian wide characters and most emoji take two,
// combining marks and joiners none, everything else one).
//
// Bounds: the line, the draft and the kill buffer kMaxLineBytes each, the
// history kHistoryLimit lines, an escape sequence's stored parameters 16
// bytes (longer ones are still consumed, and ignored), the nicks
// NickCompletions::kMaxNicks. Not thread-safe; owns all its state.
#ifndef UDPMSG_CLI_LINE_EDITOR_H_
#define UDPMSG_CLI_LINE_EDITOR_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "apps/chat/rules.h"

namespace udpmsg::cli {

// Columns a code point takes on a terminal: 0 (combining marks, variation
// selectors, zero-width joiners), 2 (East Asian wide and fullwidth, most
// emoji) or 1. An approximation of wcwidth() that needs no locale.
int ColumnWidth(uint32_t code_point);

// The nicks Tab completes, case-insensitively unique (chat::NickKey). Holds
// at most kMaxNicks; Add ignores new nicks beyond that.
class NickCompletions final {
 public:
  static constexpr size_t kMaxNicks = 1024;

  // Replaces the set (a Welcome's list).
  void Reset(const std::vector<std::string>& nicks);
  void Add(absl::string_view nick);
  void Remove(absl::string_view nick);
  // The nicks starting with `prefix` (ignoring ASCII case), sorted by
  // chat::NickKey.
  std::vector<std::string> Matching(absl::string_view prefix) const;
  size_t size() const { return by_key_.size(); }

 private:
  std::map<std::string, std::string> by_key_;  // NickKey -> the nick as sent
};

class LineEditor final {
 public:
  static constexpr size_t kMaxLineBytes = chat::kMaxTextBytes;
  static constexpr size_t kHistoryLimit = 100;

  struct Event {
    enum class Type {
      kLine,         // Enter: `text` is the line (maybe empty)
      kQuit,         // Ctrl-C, or Ctrl-D on an empty line
      kClearScreen,  // Ctrl-L
      kBell,         // a key that could do nothing (at most one per Feed)
      kTooLong,      // a paste overflowed: the line kept its first `kept` bytes
    };
    Type type = Type::kLine;
    std::string text;
    size_t kept = 0;
  };

  LineEditor() = default;
  LineEditor(const LineEditor&) = delete;
  LineEditor& operator=(const LineEditor&) = delete;

  // Edits with `bytes` and returns the events, in order. After kQuit the
  // rest of `bytes` is ignored.
  std::vector<Event> Feed(absl::string_view bytes);

  // "\r", erase the line, `prompt` (printable ASCII) and the part of the
  // line that fits in `columns` (less one, so the terminal never wraps),
  // then the cursor put back where it belongs.
  std::string Render(absl::string_view prompt, size_t columns);

  // Puts `line` (one the application took from a kLine and could not use,
  // say a line typed while disconnected) back under the prompt, cursor at
  // its end, when the prompt is empty; false (nothing changed) otherwise.
  bool Restore(absl::string_view line);

  const std::string& line() const { return line_; }
  // A byte offset into line(), always at a character boundary.
  size_t cursor() const { return cursor_; }
  // Inside a bracketed paste.
  bool pasting() const { return paste_; }
  const std::deque<std::string>& history() const { return history_; }
  NickCompletions& nicks() { return nicks_; }

 private:
  enum class Escape { kNone, kEsc, kCsi, kSs3 };

  void Byte(unsigned char c);
  void Key(unsigned char c);
  void Utf8Byte(unsigned char c);
  void EscapeByte(unsigned char c);
  void Sequence(char kind, absl::string_view params, unsigned char final_byte);
  void AltKey(unsigned char c);

  void Enter();
  void Insert(absl::string_view text, bool typed);
  void Erase(size_t from, size_t to, bool kill);
  void Complete();
  void HistoryUp();
  void HistoryDown();
  void SetLine(std::string line);
  void Bell();
  void FlushRefused();

  size_t Prev(size_t i) const;       // start of the code point before i
  size_t Next(size_t i) const;       // end of the code point at i
  size_t CharLeft(size_t i) const;   // Left: back over zero-width marks too
  size_t CharRight(size_t i) const;  // Right: forward over zero-width marks
  size_t WordLeft(size_t i) const;
  size_t WordRight(size_t i) const;
  int WidthAt(size_t i) const;  // columns of the code point at i

  std::string line_;
  size_t cursor_ = 0;
  size_t view_ = 0;  // first byte shown (horizontal scrolling)

  std::string utf8_;      // an incomplete UTF-8 sequence
  size_t utf8_need_ = 0;  // its full length
  Escape escape_ = Escape::kNone;
  std::string params_;  // of the CSI/SS3 sequence being read
  bool params_overflow_ = false;
  bool paste_ = false;

  std::deque<std::string> history_;
  size_t history_pos_ = 0;  // history_.size(): the draft
  std::string draft_;
  std::string kill_;

  NickCompletions nicks_;
  bool completing_ = false;  // the last key was a Tab that completed
  std::vector<std::string> matches_;
  size_t match_ = 0;
  size_t word_start_ = 0;

  // Per Feed: the events so far, refused input, whether a bell rang.
  std::vector<Event> events_;
  size_t refused_chars_ = 0;
  bool refused_paste_ = false;
  bool told_too_long_ = false;  // this line already got its kTooLong
  bool rang_ = false;
  bool quit_ = false;
};

}  // namespace udpmsg::cli

#endif  // UDPMSG_CLI_LINE_EDITOR_H_
