// The command table cannot rot: every flag a command's help lists is a
// registered flag, every flag udpmsg registers is listed by some command,
// and help keeps to one line per flag. Also the did-you-mean suggestions.
#include "cli/command_table.h"

#include <set>
#include <string>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/command_line.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace udpmsg::cli {
namespace {

using ::testing::HasSubstr;

TEST(CommandTableTest, EveryListedFlagIsRegistered) {
  for (const CommandSpec& c : Commands()) {
    for (const CommandMode& m : c.modes) {
      std::set<std::string> seen;
      for (const FlagUse& f : m.flags) {
        SCOPED_TRACE(absl::StrCat(ModeTitle(c, m), " --", f.name));
        const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(f.name);
        ASSERT_NE(flag, nullptr);
        EXPECT_TRUE(seen.insert(f.name).second) << "listed twice";
        EXPECT_FALSE(f.help.empty());
        EXPECT_EQ(f.value.empty(), flag->IsOfType<bool>()) << "bools take no value, others do";
      }
      for (const std::string& name : m.refused) {
        SCOPED_TRACE(absl::StrCat(ModeTitle(c, m), " refuses --", name));
        EXPECT_NE(absl::FindCommandLineFlag(name), nullptr);
        EXPECT_EQ(seen.count(name), 0u) << "both taken and refused";
      }
    }
  }
}

TEST(CommandTableTest, EveryUdpmsgFlagIsListedByACommand) {
  std::set<std::string> listed;
  for (const CommandSpec& c : Commands()) {
    for (const CommandMode& m : c.modes) {
      for (const FlagUse& f : m.flags) listed.insert(f.name);
    }
  }
  int udpmsg_flags = 0;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    // udpmsg's flags are defined under cli/; Abseil's own (--flagfile,
    // --helpfull, ...) are not udpmsg's.
    if (!absl::StartsWith(flag->Filename(), "cli/")) continue;
    ++udpmsg_flags;
    EXPECT_TRUE(listed.count(std::string(name)) == 1)
        << "--" << name << " (" << flag->Filename() << ") is in no command's flags";
  }
  EXPECT_GT(udpmsg_flags, 50);
}

TEST(CommandTableTest, ModesAreWellFormed) {
  for (const CommandSpec& c : Commands()) {
    SCOPED_TRACE(c.name);
    EXPECT_NE(c.run, nullptr);
    ASSERT_FALSE(c.modes.empty());
    if (!c.mode_flag.empty()) {
      ASSERT_EQ(c.modes.size(), 2u);
      const absl::CommandLineFlag* selector = absl::FindCommandLineFlag(c.mode_flag);
      ASSERT_NE(selector, nullptr);
      EXPECT_TRUE(selector->IsOfType<bool>());
      EXPECT_EQ(c.modes[1].name, "--" + c.mode_flag);
    } else if (!c.modes_by_argument) {
      EXPECT_EQ(c.modes.size(), 1u);
    }
    for (const CommandMode& m : c.modes) {
      EXPECT_FALSE(m.synopsis.empty());
      for (const std::string& s : m.synopsis) EXPECT_TRUE(absl::StartsWith(s, c.name)) << s;
    }
  }
}

TEST(CommandTableTest, HelpLinesFitOneLineEach) {
  std::vector<std::string> texts = {GlobalHelp()};
  for (const CommandSpec& c : Commands()) {
    texts.push_back(CommandHelp(c));
    for (const CommandMode& m : c.modes) {
      const std::string help = CommandHelp(c, &m);
      for (const FlagUse& f : m.flags) {
        EXPECT_THAT(help, HasSubstr(absl::StrCat("  --", f.name, f.value.empty() ? "" : " ",
                                                 f.value, " ")));
      }
      texts.push_back(help);
    }
  }
  for (const std::string& text : texts) {
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      EXPECT_LE(line.size(), 100u) << line;
    }
  }
}

TEST(SuggestTest, TyposFindTheirWord) {
  const std::vector<std::string> commands = {"showip", "listen", "send",   "recv",  "chat",
                                             "tcp",    "impair", "keygen", "bench", "demo"};
  EXPECT_EQ(Suggest("sned", commands), "send");     // swapped neighbours
  EXPECT_EQ(Suggest("lisen", commands), "listen");  // a letter missing
  EXPECT_EQ(Suggest("benchh", commands), "bench");  // one too many
  EXPECT_EQ(Suggest("Chat", commands), "chat");     // case
  EXPECT_EQ(Suggest("frobnicate", commands), "");
  EXPECT_EQ(Suggest("send", commands), "");  // not a typo
  EXPECT_EQ(Suggest("relaible", {"reliable", "file", "timeout"}), "reliable");
  EXPECT_EQ(Suggest("rleiabel", {"reliable"}), "reliable");  // two swaps in a long word
  EXPECT_EQ(Suggest("xyz", {"port", "bind", "count"}), "");
}

}  // namespace
}  // namespace udpmsg::cli
