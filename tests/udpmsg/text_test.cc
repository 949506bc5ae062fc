// udpmsg/text.h: peer text made safe for terminals and logs.
#include "udpmsg/text.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace udpmsg {
namespace {

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

TEST(TextTest, DisplayableIsIdempotent) {
  for (const std::string s : {"\x1b[31mred", "\xff\xfe", "\\x1b", "ok", "\xc2\x85"}) {
    EXPECT_EQ(Displayable(Displayable(s)), Displayable(s)) << s;
  }
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
