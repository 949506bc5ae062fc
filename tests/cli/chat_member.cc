#include "tests/cli/chat_member.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"

namespace udpmsg::testing {

ChatMember::ChatMember(const std::vector<std::string>& servers, const std::string& nick,
                       std::vector<std::string> flags)
    : nick_(nick) {
  std::vector<std::string> args = {"chat", "join"};
  args.insert(args.end(), servers.begin(), servers.end());
  args.insert(args.end(), {"--nick", nick});
  args.insert(args.end(), flags.begin(), flags.end());
  process_ = StartUdpmsg(std::move(args));
}

void ChatMember::Send(const std::string& line) {
  absl::Status s = process_->WriteStdin(line + "\n");
  EXPECT_TRUE(s.ok()) << nick_ << ": " << s;
}

bool ChatMember::WaitUntil(const std::function<bool(const std::string&)>& done,
                           const std::string& what, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    absl::StatusOr<std::string> line =
        process_->ReadStdoutLine(std::max(absl::ZeroDuration(), deadline - absl::Now()));
    if (!line.ok()) {
      ADD_FAILURE() << nick_ << " waited for " << what << ": " << line.status()
                    << "\nlines so far:\n"
                    << absl::StrJoin(lines_, "\n");
      return false;
    }
    lines_.push_back(*line);
    if (done(*line)) return true;
  }
}

bool ChatMember::WaitFor(const std::string& want, absl::Duration timeout) {
  return WaitUntil([&](const std::string& l) { return l == want; }, "\"" + want + "\"", timeout);
}

bool ChatMember::WaitForPrefix(const std::string& prefix, absl::Duration timeout) {
  return WaitUntil([&](const std::string& l) { return absl::StartsWith(l, prefix); },
                   "\"" + prefix + "...\"", timeout);
}

std::vector<std::string> ChatMember::SayLines() const {
  std::vector<std::string> says;
  for (const std::string& l : lines_) {
    if (absl::StartsWith(l, "<")) says.push_back(l);
  }
  return says;
}

}  // namespace udpmsg::testing
