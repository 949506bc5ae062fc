// LineEditor without a terminal: keys and escape sequences in (whole, or cut
// across Feed calls as reads cut them), the line, the cursor, the events and
// the redraw bytes out.
#include "cli/line_editor.h"

#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace udpmsg::cli {
namespace {

using Type = LineEditor::Event::Type;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr char kLeft[] = "\x1b[D";
constexpr char kRight[] = "\x1b[C";
constexpr char kUp[] = "\x1b[A";
constexpr char kDown[] = "\x1b[B";

std::vector<Type> Types(const std::vector<LineEditor::Event>& events) {
  std::vector<Type> types;
  for (const auto& e : events) types.push_back(e.type);
  return types;
}

// The lines Enter produced.
std::vector<std::string> Lines(const std::vector<LineEditor::Event>& events) {
  std::vector<std::string> lines;
  for (const auto& e : events) {
    if (e.type == Type::kLine) lines.push_back(e.text);
  }
  return lines;
}

std::string Repeat(absl::string_view s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out.append(s.data(), s.size());
  return out;
}

// The line with a '|' where the cursor is.
std::string Shown(const LineEditor& e) {
  std::string s = e.line();
  s.insert(e.cursor(), "|");
  return s;
}

TEST(LineEditorTest, TypingAndEnterGiveTheLine) {
  LineEditor e;
  EXPECT_THAT(e.Feed("hello"), IsEmpty());
  EXPECT_EQ(Shown(e), "hello|");
  EXPECT_THAT(Lines(e.Feed("\r")), ElementsAre("hello"));
  EXPECT_EQ(Shown(e), "|");
  EXPECT_THAT(Lines(e.Feed("\r")), ElementsAre(""));  // an empty line is the driver's to ignore
}

// A line the application could not use goes back under an empty prompt,
// and never over a draft.
TEST(LineEditorTest, RestorePutsALineBackOnlyUnderAnEmptyPrompt) {
  LineEditor e;
  EXPECT_THAT(Lines(e.Feed("hello?\r")), ElementsAre("hello?"));
  EXPECT_TRUE(e.Restore("hello?"));
  EXPECT_EQ(Shown(e), "hello?|");
  e.Feed("x");
  EXPECT_FALSE(e.Restore("other"));
  EXPECT_EQ(Shown(e), "hello?x|");
  EXPECT_THAT(Lines(e.Feed("\r")), ElementsAre("hello?x"));
}

// The case: "helo world", seven Lefts, "l" sends "hello world".
TEST(LineEditorTest, SevenLeftsThenInsertFixesTheTypo) {
  LineEditor e;
  e.Feed("helo world");
  e.Feed(Repeat(kLeft, 7));
  EXPECT_EQ(Shown(e), "hel|o world");
  e.Feed("l");
  EXPECT_THAT(Lines(e.Feed("\r")), ElementsAre("hello world"));
}

TEST(LineEditorTest, ArrowsInCsiAndSs3FormsAndCtrlBF) {
  LineEditor e;
  e.Feed("abcd");
  e.Feed("\x1bOD");  // SS3 Left
  EXPECT_EQ(Shown(e), "abc|d");
  e.Feed("\x02");  // Ctrl-B
  EXPECT_EQ(Shown(e), "ab|cd");
  e.Feed("\x1bOC");  // SS3 Right
  EXPECT_EQ(Shown(e), "abc|d");
  e.Feed("\x06\x06");  // Ctrl-F twice: the second stops at the end
  EXPECT_EQ(Shown(e), "abcd|");
  e.Feed(kRight);
  EXPECT_EQ(Shown(e), "abcd|");
}

TEST(LineEditorTest, EveryHomeAndEndForm) {
  for (const char* home : {"\x1b[H", "\x1b[1~", "\x1b[7~", "\x1bOH", "\x01"}) {
    LineEditor e;
    e.Feed("abc");
    e.Feed(home);
    EXPECT_EQ(Shown(e), "|abc") << absl::CEscape(home);
  }
  for (const char* end : {"\x1b[F", "\x1b[4~", "\x1b[8~", "\x1bOF", "\x05"}) {
    LineEditor e;
    e.Feed("abc\x01");
    e.Feed(end);
    EXPECT_EQ(Shown(e), "abc|") << absl::CEscape(end);
  }
}

TEST(LineEditorTest, DeleteAndCtrlDDeleteUnderTheCursor) {
  LineEditor e;
  e.Feed("abcd\x01");
  e.Feed("\x1b[3~");
  EXPECT_EQ(Shown(e), "|bcd");
  EXPECT_THAT(e.Feed("\x04"), IsEmpty());  // a draft: Ctrl-D deletes, no quit
  EXPECT_EQ(Shown(e), "|cd");
  EXPECT_THAT(Types(e.Feed("\x05\x04")), ElementsAre(Type::kBell));  // at the end: nothing
  EXPECT_EQ(Shown(e), "cd|");
}

TEST(LineEditorTest, CtrlDOnAnEmptyLineAndCtrlCQuit) {
  LineEditor e;
  // Bytes after the quit are not used.
  EXPECT_THAT(Types(e.Feed("\x04more\r")), ElementsAre(Type::kQuit));
  LineEditor f;
  EXPECT_THAT(Types(f.Feed("draft\x03")), ElementsAre(Type::kQuit));
}

TEST(LineEditorTest, BackspaceAndKillsWorkRelativeToTheCursor) {
  LineEditor e;
  e.Feed("one two three");
  e.Feed(Repeat(kLeft, 5));  // one two |three
  e.Feed("\x17");            // Ctrl-W: "two " goes
  EXPECT_EQ(Shown(e), "one |three");
  e.Feed("\x7f");  // Backspace
  EXPECT_EQ(Shown(e), "one|three");
  e.Feed("\x0b");  // Ctrl-K: to the end
  EXPECT_EQ(Shown(e), "one|");
  e.Feed("\x01\x19");  // Ctrl-Y at the start: "three" back
  EXPECT_EQ(Shown(e), "three|one");
  e.Feed("\x15");  // Ctrl-U: to the start
  EXPECT_EQ(Shown(e), "|one");
  e.Feed("\x08");  // Ctrl-H at the start: nothing
  EXPECT_EQ(Shown(e), "|one");
}

TEST(LineEditorTest, WordMovesWithAltAndCtrlArrows) {
  LineEditor e;
  e.Feed("one two  three");
  e.Feed(
      "\x1b"
      "b");
  EXPECT_EQ(Shown(e), "one two  |three");
  e.Feed("\x1b[1;5D");  // Ctrl-Left
  EXPECT_EQ(Shown(e), "one |two  three");
  e.Feed(
      "\x1b"
      "f");
  EXPECT_EQ(Shown(e), "one two|  three");
  e.Feed("\x1b[1;3C");  // Alt-Right
  EXPECT_EQ(Shown(e), "one two  three|");
  e.Feed(
      "\x01\x1b"
      "d");  // Alt-D: the word after the cursor
  EXPECT_EQ(Shown(e), "| two  three");
  e.Feed("\x05\x1b\x7f");  // Alt-Backspace: the word before
  EXPECT_EQ(Shown(e), " two  |");
}

TEST(LineEditorTest, UnknownSequencesAreConsumedWhole) {
  LineEditor e;
  // F5, F12, Insert, PgUp, a focus report, an SGR mouse report, Alt-x, ESC ESC [ D.
  e.Feed(
      "a\x1b[15~\x1b[24~\x1b[2~\x1b[5~\x1b[I\x1b[<0;12;5M\x1bx\x1bOP"
      "b");
  EXPECT_EQ(Shown(e), "ab|");
  e.Feed("\x1b\x1b[D");
  EXPECT_EQ(Shown(e), "a|b");
  // Parameters beyond the stored 16 bytes: still one sequence, ignored.
  e.Feed("\x1b[" + Repeat("1;", 40) + "D");
  EXPECT_EQ(Shown(e), "a|b");
}

TEST(LineEditorTest, SequencesSplitAcrossReads) {
  const std::string input = "helo world" + Repeat(kLeft, 7) + "l\x1b[1~\x1b[3~H\x1b[F!";
  // Every cut point, and one byte per read.
  for (size_t cut = 0; cut <= input.size(); ++cut) {
    LineEditor e;
    e.Feed(input.substr(0, cut));
    e.Feed(input.substr(cut));
    EXPECT_EQ(e.line(), "Hello world!") << "cut at " << cut;
  }
  LineEditor e;
  for (char c : input) e.Feed(std::string(1, c));
  EXPECT_EQ(e.line(), "Hello world!");
}

TEST(LineEditorTest, ControlKeyEndsAnUnfinishedSequence) {
  LineEditor e;
  e.Feed("ab\x1b[1");
  EXPECT_THAT(Types(e.Feed("\x03")), ElementsAre(Type::kQuit));
  LineEditor f;
  f.Feed("ab\x1b");
  EXPECT_THAT(Lines(f.Feed("\r")), ElementsAre("ab"));
}

TEST(LineEditorTest, Utf8MovesByCodePointAndNeverSplitsOne) {
  LineEditor e;
  const std::string text = "h\xc3\xa9llo \xe4\xb8\x96\xf0\x9f\x98\x80";  // héllo 世😀
  for (char c : text) e.Feed(std::string(1, c));                         // one byte per read
  EXPECT_EQ(e.line(), text);
  e.Feed(kLeft);
  EXPECT_EQ(Shown(e), "h\xc3\xa9llo \xe4\xb8\x96|\xf0\x9f\x98\x80");
  e.Feed(kLeft);
  e.Feed(kLeft);
  e.Feed("\x7f");  // deletes the 'o', two bytes before the cursor stay whole
  EXPECT_EQ(Shown(e), "h\xc3\xa9ll| \xe4\xb8\x96\xf0\x9f\x98\x80");
  e.Feed("\x01\x06");  // after 'h'
  e.Feed("\x1b[3~");   // Delete: the whole é
  EXPECT_EQ(Shown(e), "h|ll \xe4\xb8\x96\xf0\x9f\x98\x80");
  // A combining mark moves with its base.
  LineEditor c;
  c.Feed("ae\xcc\x81x");  // a, e + U+0301, x
  c.Feed(kLeft);
  c.Feed(kLeft);
  EXPECT_EQ(Shown(c), "a|e\xcc\x81x");
  c.Feed(kRight);
  EXPECT_EQ(Shown(c), "ae\xcc\x81|x");
}

TEST(LineEditorTest, InvalidUtf8AndHiddenCodePointsAreDropped) {
  LineEditor e;
  // Stray continuation, invalid lead, overlong, truncated then ASCII, C1 (U+009B), RLO.
  e.Feed(
      "a\x80"
      "b\xff"
      "c\xc0\xaf"
      "d\xe4\xb8"
      "e\xc2\x9b"
      "f\xe2\x80\xae"
      "g");
  EXPECT_EQ(e.line(), "abcdefg");
}

TEST(LineEditorTest, HistoryKeepsTheDraft) {
  LineEditor e;
  e.Feed("first\rsecond\rsecond\r  \r");
  EXPECT_THAT(e.history(), ElementsAre("first", "second"));  // no repeats, no blanks
  e.Feed("draft");
  e.Feed(kUp);
  EXPECT_EQ(Shown(e), "second|");
  e.Feed("\x10");  // Ctrl-P
  EXPECT_EQ(Shown(e), "first|");
  EXPECT_THAT(Types(e.Feed(kUp)), ElementsAre(Type::kBell));  // the oldest
  e.Feed("!");  // edits a recalled line; not saved into the history
  e.Feed(kDown);
  EXPECT_EQ(Shown(e), "second|");
  e.Feed("\x0e");  // Ctrl-N
  EXPECT_EQ(Shown(e), "draft|");
  EXPECT_THAT(Types(e.Feed(kDown)), ElementsAre(Type::kBell));
  e.Feed(kUp);
  EXPECT_THAT(Lines(e.Feed("\r")), ElementsAre("second"));
  EXPECT_THAT(e.history(), ElementsAre("first", "second"));
}

TEST(LineEditorTest, HistoryIsBounded) {
  LineEditor e;
  for (size_t i = 0; i < LineEditor::kHistoryLimit + 20; ++i)
    e.Feed(absl::StrCat("line ", i, "\r"));
  ASSERT_EQ(e.history().size(), LineEditor::kHistoryLimit);
  EXPECT_EQ(e.history().front(), "line 20");
  for (size_t i = 0; i < LineEditor::kHistoryLimit; ++i) e.Feed(kUp);
  EXPECT_EQ(e.line(), "line 20");
}

TEST(LineEditorTest, TabCompletesANickAndCyclesThroughMatches) {
  LineEditor e;
  e.nicks().Reset({"bob", "Alice", "alfred", "carol"});
  e.Feed("al\t");
  EXPECT_EQ(Shown(e), "alfred: |");  // line start: "nick: ", sorted ignoring case
  e.Feed("\t");
  EXPECT_EQ(Shown(e), "Alice: |");
  e.Feed("\t");
  EXPECT_EQ(Shown(e), "alfred: |");  // wraps round
  e.Feed("hi CA\t");
  EXPECT_EQ(Shown(e), "alfred: hi carol |");                     // elsewhere: "nick "
  EXPECT_THAT(Types(e.Feed("zz\t")), ElementsAre(Type::kBell));  // no match
  EXPECT_THAT(Types(e.Feed(" \t")), ElementsAre(Type::kBell));   // empty prefix
  EXPECT_EQ(e.line(), "alfred: hi carol zz ");
  // In the middle of a line: the prefix before the cursor.
  LineEditor m;
  m.nicks().Reset({"bob"});
  m.Feed("say b there");
  m.Feed(Repeat(kLeft, 6));
  m.Feed("\t");
  EXPECT_EQ(Shown(m), "say bob | there");
}

TEST(LineEditorTest, NickCompletionsFollowJoinsLeavesAndStayBounded) {
  NickCompletions n;
  n.Reset({"bob", "alice"});
  n.Add("BOB");  // the same nick: replaced, not doubled
  n.Add("carol");
  n.Remove("Alice");
  EXPECT_THAT(n.Matching(""), ElementsAre("BOB", "carol"));
  for (size_t i = 0; i < NickCompletions::kMaxNicks + 10; ++i) n.Add(absl::StrCat("m", i));
  EXPECT_EQ(n.size(), NickCompletions::kMaxNicks);
}

TEST(LineEditorTest, TypingPastTheLimitRingsTheBell) {
  LineEditor e;
  e.Feed(std::string(LineEditor::kMaxLineBytes - 1, 'x'));
  EXPECT_THAT(e.Feed("y"), IsEmpty());
  EXPECT_THAT(Types(e.Feed("z")), ElementsAre(Type::kBell));
  EXPECT_EQ(e.line().size(), LineEditor::kMaxLineBytes);
  EXPECT_EQ(e.line().back(), 'y');
}

TEST(LineEditorTest, OverlongPasteKeepsWhatFitsAndSaysSoOnce) {
  LineEditor e;
  // Without bracketed paste: a chunk of 5000 bytes.
  std::vector<LineEditor::Event> ev = e.Feed(std::string(5000, 'x'));
  ASSERT_THAT(Types(ev), ElementsAre(Type::kTooLong));
  EXPECT_EQ(ev[0].kept, LineEditor::kMaxLineBytes);
  // The rest of the same paste in the next read: the bell, not a second notice.
  EXPECT_THAT(Types(e.Feed(std::string(100, 'x'))), ElementsAre(Type::kBell));
  EXPECT_THAT(Lines(e.Feed("\r")), ElementsAre(std::string(LineEditor::kMaxLineBytes, 'x')));
  // A new line may be told again; a multi-byte character never splits.
  ev = e.Feed("a" + Repeat("\xc3\xa9", 3000));
  ASSERT_THAT(Types(ev), ElementsAre(Type::kTooLong));
  EXPECT_EQ(ev[0].kept, LineEditor::kMaxLineBytes - 1);
  EXPECT_EQ(e.line(), "a" + Repeat("\xc3\xa9", 2047));
}

TEST(LineEditorTest, BracketedPasteEntersEachLineAndKeepsTabsAsText) {
  LineEditor e;
  e.nicks().Reset({"bob"});
  std::vector<LineEditor::Event> ev = e.Feed("\x1b[200~b\tone\r\ntwo\x04\x1b[D\rthr");
  EXPECT_TRUE(e.pasting());
  EXPECT_THAT(Lines(ev), ElementsAre("b one", "", "two"));  // CR LF: an empty second line
  ev = e.Feed("ee\x1b[201~");
  EXPECT_FALSE(e.pasting());
  EXPECT_EQ(Shown(e), "three|");
  e.Feed("\x1b[D");  // after the paste, keys are keys again
  EXPECT_EQ(Shown(e), "thre|e");
}

TEST(LineEditorTest, OverlongBracketedPasteIsToldPerLine) {
  LineEditor e;
  const std::string big(LineEditor::kMaxLineBytes + 1, 'x');
  std::vector<LineEditor::Event> ev = e.Feed("\x1b[200~" + big + "\r" + big + "\x1b[201~");
  EXPECT_THAT(Types(ev), ElementsAre(Type::kTooLong, Type::kLine, Type::kTooLong));
  // Even one character too many is a notice inside a paste.
  LineEditor f;
  f.Feed(std::string(LineEditor::kMaxLineBytes, 'x'));
  EXPECT_THAT(Types(f.Feed("\x1b[200~y\x1b[201~")), ElementsAre(Type::kTooLong));
}

TEST(LineEditorTest, CtrlLClearsTheScreen) {
  LineEditor e;
  e.Feed("abc");
  EXPECT_THAT(Types(e.Feed("\x0c")), ElementsAre(Type::kClearScreen));
  EXPECT_EQ(e.line(), "abc");
}

TEST(LineEditorTest, RenderPutsTheCursorBackInPlace) {
  LineEditor e;
  EXPECT_EQ(e.Render("> ", 80), "\r\x1b[K> ");
  e.Feed("hello");
  EXPECT_EQ(e.Render("> ", 80), "\r\x1b[K> hello");  // the cursor is where the text ends
  e.Feed(Repeat(kLeft, 2));
  EXPECT_EQ(e.Render("> ", 80), "\r\x1b[K> hello\r\x1b[5C");
  e.Feed("\x01");
  EXPECT_EQ(e.Render("> ", 80), "\r\x1b[K> hello\r\x1b[2C");
}

TEST(LineEditorTest, RenderCountsWideCharactersAsTwoColumns) {
  LineEditor e;
  e.Feed("\xe4\xb8\x96\xe7\x95\x8c!");  // 世界!
  e.Feed(kLeft);
  EXPECT_EQ(e.Render("> ", 80), "\r\x1b[K> \xe4\xb8\x96\xe7\x95\x8c!\r\x1b[6C");
}

TEST(LineEditorTest, RenderScrollsALongLineToKeepTheCursorOnScreen) {
  // 20 columns: the prompt and 17 columns of text (the last column stays free).
  LineEditor e;
  e.Feed("abcdefghijklmnopqrstuvwxyz");
  EXPECT_EQ(e.Render("> ", 20), "\r\x1b[K> jklmnopqrstuvwxyz");
  e.Feed("\x01");
  EXPECT_EQ(e.Render("> ", 20), "\r\x1b[K> abcdefghijklmnopq\r\x1b[2C");
  e.Feed("\x05");
  EXPECT_EQ(e.Render("> ", 20), "\r\x1b[K> jklmnopqrstuvwxyz");
  // Going left past the first shown column scrolls back by half a screen.
  e.Feed(Repeat(kLeft, 18));  // cursor before 'i'
  EXPECT_EQ(e.Render("> ", 20), "\r\x1b[K> abcdefghijklmnopq\r\x1b[10C");
  // Wide characters: never cut in half at the right edge.
  LineEditor w;
  w.Feed("a" + Repeat("\xe4\xb8\x96", 10));  // 21 columns
  EXPECT_EQ(w.Render("> ", 20), "\r\x1b[K> " + Repeat("\xe4\xb8\x96", 8));
  w.Feed("\x01");
  EXPECT_EQ(w.Render("> ", 20), "\r\x1b[K> a" + Repeat("\xe4\xb8\x96", 8) + "\r\x1b[2C");
  // A terminal narrower than the prompt still gets a cursor column.
  EXPECT_EQ(w.Render("> ", 2), "\r\x1b[K> a\r\x1b[2C");
}

TEST(ColumnWidthTest, NarrowWideAndZero) {
  EXPECT_EQ(ColumnWidth('a'), 1);
  EXPECT_EQ(ColumnWidth(0xe9), 1);     // é
  EXPECT_EQ(ColumnWidth(0x301), 0);    // combining acute
  EXPECT_EQ(ColumnWidth(0x200d), 0);   // ZWJ
  EXPECT_EQ(ColumnWidth(0x4e16), 2);   // 世
  EXPECT_EQ(ColumnWidth(0xac00), 2);   // 가
  EXPECT_EQ(ColumnWidth(0x1f600), 2);  // 😀
}

}  // namespace
}  // namespace udpmsg::cli
