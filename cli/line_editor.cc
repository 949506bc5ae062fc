#include "cli/line_editor.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "apps/chat/text.h"

namespace udpmsg::cli {
namespace {

// The code point of the valid UTF-8 sequence at s[i] (its length n).
uint32_t DecodeAt(absl::string_view s, size_t i, size_t n) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  if (n <= 1) return byte(i);
  uint32_t cp = byte(i) & (0x7f >> n);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (byte(i + k) & 0x3f);
  return cp;
}

// The full length of a UTF-8 sequence led by `lead`; 0 for a byte that
// cannot lead one.
size_t SequenceLength(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xc2 && lead <= 0xdf) return 2;
  if (lead >= 0xe0 && lead <= 0xef) return 3;
  if (lead >= 0xf0 && lead <= 0xf4) return 4;
  return 0;
}

constexpr size_t kMaxParams = 16;

}  // namespace

int ColumnWidth(uint32_t cp) {
  struct Range {
    uint32_t first, last;
  };
  static constexpr Range kZero[] = {
      {0x0300, 0x036f}, {0x0483, 0x0489}, {0x0591, 0x05bd},   {0x0610, 0x061a},
      {0x064b, 0x065f}, {0x0e31, 0x0e31}, {0x0e34, 0x0e3a},   {0x0e47, 0x0e4e},
      {0x1ab0, 0x1aff}, {0x1dc0, 0x1dff}, {0x200b, 0x200f},   {0x20d0, 0x20ff},
      {0xfe00, 0xfe0f}, {0xfe20, 0xfe2f}, {0x1f3fb, 0x1f3ff}, {0xe0100, 0xe01ef},
  };
  static constexpr Range kWide[] = {
      {0x1100, 0x115f},   {0x231a, 0x231b},   {0x2329, 0x232a},   {0x23e9, 0x23ec},
      {0x23f0, 0x23f0},   {0x23f3, 0x23f3},   {0x25fd, 0x25fe},   {0x2614, 0x2615},
      {0x2648, 0x2653},   {0x267f, 0x267f},   {0x2693, 0x2693},   {0x26a1, 0x26a1},
      {0x26aa, 0x26ab},   {0x26bd, 0x26be},   {0x26c4, 0x26c5},   {0x26ce, 0x26ce},
      {0x26d4, 0x26d4},   {0x26ea, 0x26ea},   {0x26f2, 0x26f3},   {0x26f5, 0x26f5},
      {0x26fa, 0x26fa},   {0x26fd, 0x26fd},   {0x2705, 0x2705},   {0x270a, 0x270b},
      {0x2728, 0x2728},   {0x274c, 0x274c},   {0x274e, 0x274e},   {0x2753, 0x2755},
      {0x2757, 0x2757},   {0x2795, 0x2797},   {0x27b0, 0x27b0},   {0x27bf, 0x27bf},
      {0x2b1b, 0x2b1c},   {0x2b50, 0x2b50},   {0x2b55, 0x2b55},   {0x2e80, 0x303e},
      {0x3041, 0x33ff},   {0x3400, 0x4dbf},   {0x4e00, 0x9fff},   {0xa000, 0xa4cf},
      {0xa960, 0xa97f},   {0xac00, 0xd7a3},   {0xf900, 0xfaff},   {0xfe10, 0xfe19},
      {0xfe30, 0xfe6f},   {0xff00, 0xff60},   {0xffe0, 0xffe6},   {0x16fe0, 0x16fe4},
      {0x17000, 0x18cff}, {0x1b000, 0x1b2ff}, {0x1f004, 0x1f004}, {0x1f0cf, 0x1f0cf},
      {0x1f18e, 0x1f18e}, {0x1f191, 0x1f19a}, {0x1f200, 0x1f251}, {0x1f300, 0x1f64f},
      {0x1f680, 0x1f6ff}, {0x1f7e0, 0x1f7eb}, {0x1f90c, 0x1f9ff}, {0x1fa70, 0x1faff},
      {0x20000, 0x2fffd}, {0x30000, 0x3fffd},
  };
  const auto in = [cp](const auto& ranges) {
    return std::any_of(std::begin(ranges), std::end(ranges),
                       [cp](const Range& r) { return cp >= r.first && cp <= r.last; });
  };
  if (in(kZero)) return 0;
  return in(kWide) ? 2 : 1;
}

// ---- NickCompletions

void NickCompletions::Reset(const std::vector<std::string>& nicks) {
  by_key_.clear();
  for (const std::string& n : nicks) Add(n);
}

void NickCompletions::Add(absl::string_view nick) {
  if (nick.empty()) return;
  std::string key = chat::NickKey(nick);
  auto it = by_key_.find(key);
  if (it != by_key_.end()) {
    it->second = std::string(nick);
    return;
  }
  if (by_key_.size() >= kMaxNicks) return;
  by_key_.emplace(std::move(key), std::string(nick));
}

void NickCompletions::Remove(absl::string_view nick) { by_key_.erase(chat::NickKey(nick)); }

std::vector<std::string> NickCompletions::Matching(absl::string_view prefix) const {
  const std::string key = chat::NickKey(prefix);
  std::vector<std::string> out;
  for (auto it = by_key_.lower_bound(key); it != by_key_.end(); ++it) {
    if (!absl::StartsWith(it->first, key)) break;
    out.push_back(it->second);
  }
  return out;
}

// ---- LineEditor: input

std::vector<LineEditor::Event> LineEditor::Feed(absl::string_view bytes) {
  events_.clear();
  rang_ = false;
  quit_ = false;
  for (const char ch : bytes) {
    Byte(static_cast<unsigned char>(ch));
    if (quit_) break;
  }
  FlushRefused();
  return std::move(events_);
}

void LineEditor::Byte(unsigned char c) {
  if (escape_ != Escape::kNone) {
    completing_ = false;
    EscapeByte(c);
    return;
  }
  if (c >= 0x80 || !utf8_.empty()) {
    completing_ = false;
    Utf8Byte(c);
    return;
  }
  Key(c);
}

// Collects a UTF-8 sequence byte by byte (a read may cut it); inserts it
// when complete and valid, drops it otherwise.
void LineEditor::Utf8Byte(unsigned char c) {
  if (c < 0x80) {  // an unfinished sequence ends: drop it, then the key
    utf8_.clear();
    Key(c);
    return;
  }
  if (chat::IsContinuation(static_cast<char>(c))) {
    if (utf8_.empty()) return;  // a stray continuation byte
    utf8_.push_back(static_cast<char>(c));
  } else {
    utf8_.assign(1, static_cast<char>(c));  // a new lead drops an unfinished one
    utf8_need_ = SequenceLength(c);
    if (utf8_need_ == 0) {
      utf8_.clear();
      return;
    }
  }
  if (utf8_.size() < utf8_need_) return;
  std::string ch = std::exchange(utf8_, "");
  if (chat::Utf8Length(ch, 0) != ch.size()) return;  // overlong, surrogate, ...
  Insert(ch, /*typed=*/true);
}

void LineEditor::Key(unsigned char c) {
  if (c != '\t') completing_ = false;
  if (paste_ && (c < 0x20 || c == 0x7f) && c != '\r' && c != '\n' && c != '\t' && c != 0x03 &&
      c != 0x1b) {
    return;  // control keys inside a paste are text, not commands: dropped
  }
  switch (c) {
    case '\r':
    case '\n':
      Enter();
      break;
    case 0x01:  // Ctrl-A
      cursor_ = 0;
      break;
    case 0x05:  // Ctrl-E
      cursor_ = line_.size();
      break;
    case 0x02:  // Ctrl-B
      cursor_ = CharLeft(cursor_);
      break;
    case 0x06:  // Ctrl-F
      cursor_ = CharRight(cursor_);
      break;
    case 0x03:  // Ctrl-C
      events_.push_back({Event::Type::kQuit});
      quit_ = true;
      break;
    case 0x04:  // Ctrl-D: quit on an empty line, Delete otherwise
      if (line_.empty()) {
        events_.push_back({Event::Type::kQuit});
        quit_ = true;
      } else {
        Erase(cursor_, CharRight(cursor_), /*kill=*/false);
      }
      break;
    case 0x7f:  // Backspace
    case 0x08:  // Ctrl-H (at the start of the line: the bell, from Erase)
      Erase(Prev(cursor_), cursor_, /*kill=*/false);
      break;
    case '\t':
      if (paste_) {
        Insert(" ", /*typed=*/true);
      } else {
        Complete();
      }
      break;
    case 0x0b:  // Ctrl-K
      Erase(cursor_, line_.size(), /*kill=*/true);
      break;
    case 0x15:  // Ctrl-U
      Erase(0, cursor_, /*kill=*/true);
      break;
    case 0x17:  // Ctrl-W
      Erase(WordLeft(cursor_), cursor_, /*kill=*/true);
      break;
    case 0x19:  // Ctrl-Y
      if (kill_.empty()) {
        Bell();
      } else {
        Insert(kill_, /*typed=*/false);
      }
      break;
    case 0x0c:  // Ctrl-L
      events_.push_back({Event::Type::kClearScreen});
      break;
    case 0x10:  // Ctrl-P
      HistoryUp();
      break;
    case 0x0e:  // Ctrl-N
      HistoryDown();
      break;
    case 0x1b:
      escape_ = Escape::kEsc;
      break;
    default:
      if (c >= 0x20 && c < 0x7f) Insert(absl::string_view(reinterpret_cast<char*>(&c), 1), true);
      break;  // other control keys do nothing
  }
}

// Escape sequences: ESC x (Alt-x), CSI (ESC [ params final) and SS3 (ESC O
// params final). A byte that cannot continue a sequence (a control key, a
// non-ASCII byte) ends it unrecognized and counts on its own.
void LineEditor::EscapeByte(unsigned char c) {
  if (escape_ == Escape::kEsc) {
    params_.clear();
    params_overflow_ = false;
    if (c == '[') {
      escape_ = Escape::kCsi;
    } else if (c == 'O') {
      escape_ = Escape::kSs3;
    } else if (c == 0x1b) {
      // ESC ESC: the first was a lone Escape (some terminals send Alt-arrow so).
    } else if (c < 0x20 || c >= 0x80) {
      escape_ = Escape::kNone;
      Byte(c);
    } else {
      escape_ = Escape::kNone;
      AltKey(c);
    }
    return;
  }
  if (c >= 0x20 && c <= 0x3f) {  // parameters and intermediates
    if (params_.size() < kMaxParams) {
      params_.push_back(static_cast<char>(c));
    } else {
      params_overflow_ = true;
    }
    return;
  }
  const char kind = escape_ == Escape::kCsi ? '[' : 'O';
  escape_ = Escape::kNone;
  if (c >= 0x40 && c <= 0x7e) {
    if (!params_overflow_) Sequence(kind, params_, c);
    return;
  }
  Byte(c);  // malformed: the sequence is dropped, and the byte counts alone
}

void LineEditor::AltKey(unsigned char c) {
  if (paste_) return;
  switch (c) {
    case 'b':
    case 'B':
      cursor_ = WordLeft(cursor_);
      break;
    case 'f':
    case 'F':
      cursor_ = WordRight(cursor_);
      break;
    case 'd':
    case 'D':
      Erase(cursor_, WordRight(cursor_), /*kill=*/true);
      break;
    case 0x7f:
    case 0x08:
      Erase(WordLeft(cursor_), cursor_, /*kill=*/true);
      break;
    default:
      break;  // Alt with another key: nothing
  }
}

void LineEditor::Sequence(char kind, absl::string_view params, unsigned char final_byte) {
  // "1;5" (Ctrl), "1;3" (Alt): modifiers on an arrow key.
  const std::vector<absl::string_view> fields = absl::StrSplit(params, ';');
  int number = 0;
  if (!fields.empty() && !fields[0].empty() && !absl::SimpleAtoi(fields[0], &number)) {
    return;  // private ("?", ">") or unparsable: not a key
  }
  int modifier = 1;
  if (fields.size() > 1 && !absl::SimpleAtoi(fields[1], &modifier)) return;
  const bool word = modifier > 1;
  if (final_byte == '~' && kind == '[') {
    switch (number) {
      case 200:
        paste_ = true;
        return;
      case 201:
        paste_ = false;
        return;
      default:
        break;
    }
  }
  if (paste_) return;
  switch (final_byte) {
    case 'A':
      HistoryUp();
      return;
    case 'B':
      HistoryDown();
      return;
    case 'C':
      cursor_ = word ? WordRight(cursor_) : CharRight(cursor_);
      return;
    case 'D':
      cursor_ = word ? WordLeft(cursor_) : CharLeft(cursor_);
      return;
    case 'H':
      cursor_ = 0;
      return;
    case 'F':
      cursor_ = line_.size();
      return;
    case '~':
      if (kind != '[') return;
      if (number == 1 || number == 7) cursor_ = 0;
      if (number == 4 || number == 8) cursor_ = line_.size();
      if (number == 3) Erase(cursor_, CharRight(cursor_), /*kill=*/false);
      return;
    default:
      return;  // another key (F1-F12, Insert, PgUp, focus, mouse): consumed
  }
}

// ---- LineEditor: editing

void LineEditor::Enter() {
  FlushRefused();
  std::string line = std::exchange(line_, "");
  cursor_ = 0;
  view_ = 0;
  told_too_long_ = false;
  completing_ = false;
  if (!absl::StripAsciiWhitespace(line).empty() && (history_.empty() || history_.back() != line)) {
    history_.push_back(line);
    if (history_.size() > kHistoryLimit) history_.pop_front();
  }
  history_pos_ = history_.size();
  draft_.clear();
  events_.push_back({Event::Type::kLine, std::move(line)});
}

// Inserts `text` (valid UTF-8) at the cursor, or as much of it as fits,
// dropping code points the chat would escape.
void LineEditor::Insert(absl::string_view text, bool typed) {
  std::string kept;
  size_t refused = 0;
  for (size_t i = 0; i < text.size();) {
    const size_t n = std::max<size_t>(chat::Utf8Length(text, i), 1);
    const absl::string_view ch = text.substr(i, n);
    i += n;
    if (IsHiddenCodePoint(DecodeAt(ch, 0, n))) continue;
    if (refused > 0 || line_.size() + kept.size() + ch.size() > kMaxLineBytes) {
      ++refused;
      continue;
    }
    kept.append(ch.data(), ch.size());
  }
  line_.insert(cursor_, kept);
  cursor_ += kept.size();
  if (refused == 0) return;
  refused_chars_ += refused;
  if (paste_ || !typed) refused_paste_ = true;
}

// Removes [from, to); a kill keeps it for Ctrl-Y.
void LineEditor::Erase(size_t from, size_t to, bool kill) {
  if (from >= to) {
    Bell();
    return;
  }
  if (kill) kill_ = line_.substr(from, to - from);
  line_.erase(from, to - from);
  cursor_ = from;
  if (line_.empty()) told_too_long_ = false;
}

void LineEditor::Complete() {
  if (completing_) {
    match_ = (match_ + 1) % matches_.size();
  } else {
    word_start_ = cursor_;
    while (word_start_ > 0 && line_[word_start_ - 1] != ' ') --word_start_;
    if (word_start_ == cursor_) {
      Bell();
      return;
    }
    matches_ = nicks_.Matching(absl::string_view(line_).substr(word_start_, cursor_ - word_start_));
    if (matches_.empty()) {
      Bell();
      return;
    }
    match_ = 0;
  }
  const std::string with = absl::StrCat(matches_[match_], word_start_ == 0 ? ": " : " ");
  if (line_.size() - (cursor_ - word_start_) + with.size() > kMaxLineBytes) {
    Bell();
    completing_ = false;
    return;
  }
  line_.replace(word_start_, cursor_ - word_start_, with);
  cursor_ = word_start_ + with.size();
  completing_ = true;
}

void LineEditor::HistoryUp() {
  if (history_pos_ == 0) {
    Bell();
    return;
  }
  if (history_pos_ == history_.size()) draft_ = line_;
  --history_pos_;
  SetLine(history_[history_pos_]);
}

void LineEditor::HistoryDown() {
  if (history_pos_ >= history_.size()) {
    Bell();
    return;
  }
  ++history_pos_;
  SetLine(history_pos_ == history_.size() ? std::exchange(draft_, "") : history_[history_pos_]);
}

bool LineEditor::Restore(absl::string_view line) {
  if (!line_.empty() || line.size() > kMaxLineBytes) return false;
  SetLine(std::string(line));
  return true;
}

void LineEditor::SetLine(std::string line) {
  line_ = std::move(line);
  cursor_ = line_.size();
  told_too_long_ = false;
}

void LineEditor::Bell() {
  if (rang_) return;
  rang_ = true;
  events_.push_back({Event::Type::kBell});
}

// Reports what did not fit since the last report: kTooLong once per line for
// a paste, the bell for a single typed character (or after kTooLong).
void LineEditor::FlushRefused() {
  if (refused_chars_ == 0) return;
  if ((refused_paste_ || refused_chars_ > 1) && !told_too_long_) {
    told_too_long_ = true;
    events_.push_back({Event::Type::kTooLong, "", line_.size()});
  } else {
    Bell();
  }
  refused_chars_ = 0;
  refused_paste_ = false;
}

// ---- LineEditor: positions

size_t LineEditor::Prev(size_t i) const {
  if (i == 0) return 0;
  --i;
  while (i > 0 && chat::IsContinuation(line_[i])) --i;
  return i;
}

size_t LineEditor::Next(size_t i) const {
  if (i >= line_.size()) return line_.size();
  return i + std::max<size_t>(chat::Utf8Length(line_, i), 1);
}

int LineEditor::WidthAt(size_t i) const {
  const size_t n = std::max<size_t>(chat::Utf8Length(line_, i), 1);
  return ColumnWidth(DecodeAt(line_, i, n));
}

size_t LineEditor::CharLeft(size_t i) const {
  if (i == 0) return 0;
  i = Prev(i);
  while (i > 0 && WidthAt(i) == 0) i = Prev(i);
  return i;
}

size_t LineEditor::CharRight(size_t i) const {
  i = Next(i);
  while (i < line_.size() && WidthAt(i) == 0) i = Next(i);
  return i;
}

size_t LineEditor::WordLeft(size_t i) const {
  while (i > 0 && line_[i - 1] == ' ') --i;
  while (i > 0 && line_[i - 1] != ' ') --i;
  return i;
}

size_t LineEditor::WordRight(size_t i) const {
  while (i < line_.size() && line_[i] == ' ') ++i;
  while (i < line_.size() && line_[i] != ' ') ++i;
  return i;
}

// ---- LineEditor: display

std::string LineEditor::Render(absl::string_view prompt, size_t columns) {
  const size_t prompt_width = prompt.size();
  const size_t room = columns > prompt_width + 2 ? columns - prompt_width - 1 : 1;
  // Keep view_ <= cursor_ and the cursor within `room` columns of it,
  // scrolling by half a screen when the cursor leaves on the left, and
  // showing as much of the line as fits.
  size_t total = 0;
  for (size_t i = 0; i < line_.size(); i = Next(i)) total += WidthAt(i);
  if (total <= room || view_ > line_.size()) view_ = 0;
  while (view_ > 0 && view_ < line_.size() && chat::IsContinuation(line_[view_])) --view_;
  if (total > room) {
    if (cursor_ < view_) {
      view_ = cursor_;
      size_t w = 0;
      while (view_ > 0 && w + WidthAt(Prev(view_)) <= room / 2) {
        view_ = Prev(view_);
        w += WidthAt(view_);
      }
    }
    size_t before = 0;  // columns from view_ to the cursor
    for (size_t i = view_; i < cursor_; i = Next(i)) before += WidthAt(i);
    while (before > room) {
      before -= WidthAt(view_);
      view_ = Next(view_);
    }
    size_t shown = 0;  // columns from view_ to the end
    for (size_t i = view_; i < line_.size(); i = Next(i)) shown += WidthAt(i);
    while (view_ > 0 && shown + WidthAt(Prev(view_)) <= room) {
      view_ = Prev(view_);
      shown += WidthAt(view_);
    }
  }
  size_t end = view_;
  size_t width = 0;
  size_t cursor_column = prompt_width;
  while (end < line_.size() && width + WidthAt(end) <= room) {
    if (end == cursor_) cursor_column = prompt_width + width;
    width += WidthAt(end);
    end = Next(end);
  }
  if (cursor_ >= end) cursor_column = prompt_width + width;
  std::string out = absl::StrCat("\r\x1b[K", prompt, line_.substr(view_, end - view_));
  if (cursor_ < end) {
    absl::StrAppend(&out, "\r");
    if (cursor_column > 0) absl::StrAppend(&out, "\x1b[", cursor_column, "C");
  }
  return out;
}

}  // namespace udpmsg::cli
