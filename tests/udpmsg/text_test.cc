// udpmsg/text.h: peer text made safe for terminals and logs.
#include "udpmsg/text.h"

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace udpmsg {
namespace {

// The UTF-8 encoding of `cp`.
std::string Utf8(uint32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
  return out;
}

// True when `s` holds only printable ASCII: nothing a terminal interprets.
bool AllPrintableAscii(const std::string& s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) return false;
  }
  return true;
}

TEST(TextTest, DisplayableEscapesControlsAndInvalidUtf8AndKeepsText) {
  EXPECT_EQ(Displayable("plain text"), "plain text");
  EXPECT_EQ(Displayable("caf\xc3\xa9 \xe2\x9c\x93"), "caf\xc3\xa9 \xe2\x9c\x93");
  EXPECT_EQ(Displayable("a\tb"), "a b");
  EXPECT_EQ(Displayable("\x1b[2J\r\n\x7f"), "\\x1b[2J\\x0d\\x0a\\x7f");
  EXPECT_EQ(Displayable("\xc2\x9b"), "\\u009b");  // C1 CSI
  EXPECT_EQ(Displayable("\xff\xc3"), "\\xff\\xc3");
  EXPECT_EQ(Displayable("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // a surrogate
  EXPECT_EQ(Displayable(std::string("a\0b", 3)), "a\\x00b");
}

TEST(TextTest, DisplayableEscapesEveryC0ControlAndDel) {
  for (uint32_t c = 0; c < 0x20; ++c) {
    if (c == '\t') continue;
    EXPECT_EQ(Displayable(std::string(1, static_cast<char>(c))), absl::StrFormat("\\x%02x", c));
  }
  EXPECT_EQ(Displayable("\x7f"), "\\x7f");
  // An OSC retitle and a forged line: the ESC and the newline are escaped,
  // so what follows is shown, not obeyed, and stays on the same line.
  EXPECT_EQ(Displayable("\x1b]0;pwned\x07\nudpmsg: connected OK"),
            "\\x1b]0;pwned\\x07\\x0audpmsg: connected OK");
}

TEST(TextTest, DisplayableEscapesEveryC1Control) {
  for (uint32_t c = 0x80; c < 0xa0; ++c) {
    EXPECT_EQ(Displayable(Utf8(c)), absl::StrFormat("\\u%04x", c));
  }
  EXPECT_EQ(Displayable(Utf8(0xa0)), Utf8(0xa0));  // no-break space: visible, kept
}

TEST(TextTest, DisplayableEscapesInvalidUtf8ByteByByte) {
  EXPECT_EQ(Displayable("\x80"), "\\x80");                   // lone continuation
  EXPECT_EQ(Displayable("\xc0\xaf"), "\\xc0\\xaf");          // overlong '/'
  EXPECT_EQ(Displayable("\xe0\x80\xaf"), "\\xe0\\x80\\xaf");  // overlong
  EXPECT_EQ(Displayable("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // > U+10FFFF
  EXPECT_EQ(Displayable("ok\xe2\x80"), "ok\\xe2\\x80");      // truncated
  // An invalid lead byte cannot swallow the ESC after it.
  EXPECT_EQ(Displayable("\xc3\x1b[2J"), "\\xc3\\x1b[2J");
}

TEST(TextTest, DisplayableEscapesEveryBidiControl) {
  const std::vector<uint32_t> bidi = {0x061c, 0x200e, 0x200f, 0x202a, 0x202b, 0x202c,
                                      0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069};
  for (uint32_t c : bidi) {
    SCOPED_TRACE(absl::StrFormat("U+%04X", c));
    EXPECT_EQ(Displayable(absl::StrCat("a", Utf8(c), "b")), absl::StrFormat("a\\u%04xb", c));
    EXPECT_TRUE(IsHiddenCodePoint(c));
  }
  // "Trojan Source": an override that would show "txt.exe" as "exe.txt".
  EXPECT_EQ(Displayable("evil\xe2\x80\xaetxt.exe"), "evil\\u202etxt.exe");
}

TEST(TextTest, DisplayableEscapesInvisibleFormatCharactersAndLineSeparators) {
  const std::vector<uint32_t> hidden = {0x00ad, 0x0600, 0x180e, 0x200b, 0x2028, 0x2029,
                                        0x2060, 0x2064, 0x206a, 0x206f, 0xfeff, 0xfff9,
                                        0xfffb};
  for (uint32_t c : hidden) {
    SCOPED_TRACE(absl::StrFormat("U+%04X", c));
    EXPECT_EQ(Displayable(Utf8(c)), absl::StrFormat("\\u%04x", c));
  }
  // Tag characters smuggle invisible ASCII ("hi" here).
  EXPECT_EQ(Displayable(Utf8(0xe0001) + Utf8(0xe0068) + Utf8(0xe0069) + Utf8(0xe007f)),
            "\\U000e0001\\U000e0068\\U000e0069\\U000e007f");
  // Joiners are kept: scripts and emoji sequences need them.
  const std::string family = Utf8(0x1f468) + Utf8(0x200d) + Utf8(0x1f469);
  EXPECT_EQ(Displayable(family), family);
  const std::string persian = Utf8(0x0645) + Utf8(0x200c) + Utf8(0x06cc);
  EXPECT_EQ(Displayable(persian), persian);
  // Visible neighbours are kept.
  for (uint32_t c : {0x2010u, 0x2027u, 0x202fu, 0x2070u, 0xfffdu, 0x1f600u, 0xe0080u}) {
    SCOPED_TRACE(absl::StrFormat("U+%04X", c));
    EXPECT_EQ(Displayable(Utf8(c)), Utf8(c));
    EXPECT_FALSE(IsHiddenCodePoint(c));
  }
}

TEST(TextTest, DisplayableOutputHasNothingATerminalInterprets) {
  // Every code point and a sample of byte junk: the output is printable
  // ASCII and the kept characters, never a control.
  std::string all;
  for (uint32_t c = 0; c < 0x30000; ++c) {
    if (c >= 0xd800 && c < 0xe000) continue;
    all += Utf8(c);
  }
  for (uint32_t c = 0xe0000; c < 0xe0200; ++c) all += Utf8(c);
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  const std::string shown = Displayable(all);
  for (size_t i = 0; i < shown.size();) {
    const size_t n = Utf8Length(shown, i);
    ASSERT_GT(n, 0u) << "invalid UTF-8 at " << i;
    uint32_t cp = static_cast<unsigned char>(shown[i]) & (n == 1 ? 0x7f : (0x7f >> n));
    for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(shown[i + k]) & 0x3f);
    ASSERT_FALSE(IsHiddenCodePoint(cp)) << absl::StrFormat("U+%04X at %d", cp, i);
    i += n;
  }
}

TEST(TextTest, DisplayableIsIdempotent) {
  for (const std::string& s :
       {std::string("\x1b[31mred"), std::string("\xff\xfe"), std::string("\\x1b"),
        std::string("ok"), std::string("\xc2\x85"), std::string("a\xe2\x80\xae" "b"),
        Utf8(0xe0041) + "\xe2\x81\xa6" + "x\ny", std::string("\\u202e\\U000e0041")}) {
    EXPECT_EQ(Displayable(Displayable(s)), Displayable(s)) << s;
    EXPECT_TRUE(AllPrintableAscii(Displayable(s))) << Displayable(s);
  }
}

TEST(TextTest, DisplayablePrefixCutsAtACharacterAndSaysSo) {
  EXPECT_EQ(DisplayablePrefix("short", 10), "short");
  EXPECT_EQ(DisplayablePrefix("exactly10!", 10), "exactly10!");
  EXPECT_EQ(DisplayablePrefix("a longer text", 8), "a longer...");
  // Never half a character: the 2-byte e-acute does not fit in 4 bytes.
  EXPECT_EQ(DisplayablePrefix("caf\xc3\xa9", 4), "caf...");
  EXPECT_EQ(DisplayablePrefix("\x1b[2Jxyz", 4), "\\x1b[2J...");
  EXPECT_EQ(DisplayablePrefix("", 0), "");
  EXPECT_EQ(DisplayablePrefix("x", 0), "...");
}

TEST(TextTest, ValidUtf8ReplacesInvalidBytes) {
  EXPECT_EQ(ValidUtf8("ok \xc3\xa9"), "ok \xc3\xa9");
  EXPECT_EQ(ValidUtf8("a\xff"
                      "b"),
            "a\xef\xbf\xbd"
            "b");
  EXPECT_EQ(ValidUtf8("\xe0\x80\x80"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");  // overlong
}

}  // namespace
}  // namespace udpmsg
