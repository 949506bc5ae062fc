// ChatMember: a scripted `udpmsg chat join` for the CLI chat tests (pipes on
// stdin and stdout, so one line per message each way): its process and
// every stdout line read so far. Waits take a deadline and fail the test
// (with the lines so far) when it passes.
//
// Usage:
//   ChatMember alice({"127.0.0.1:9200"}, "alice");
//   ASSERT_TRUE(alice.WaitFor("*** alice joined"));
//   alice.Send("hello");
//
// Threading: one thread.
#ifndef UDPMSG_TESTS_CLI_CHAT_MEMBER_H_
#define UDPMSG_TESTS_CLI_CHAT_MEMBER_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "tests/cli/subprocess.h"

namespace udpmsg::testing {

// How long a member waits for an expected line by default.
inline constexpr absl::Duration kChatWait = absl::Seconds(20);

class ChatMember {
 public:
  // `udpmsg chat join SERVERS... --nick NICK FLAGS...`.
  ChatMember(const std::vector<std::string>& servers, const std::string& nick,
             std::vector<std::string> flags = {});

  Subprocess& process() { return *process_; }
  const std::vector<std::string>& lines() const { return lines_; }
  const std::string& nick() const { return nick_; }

  // Types `line` and Enter.
  void Send(const std::string& line);
  // Reads stdout until a line satisfies `done`; false (with a test failure
  // naming `what`) when none does in time.
  bool WaitUntil(const std::function<bool(const std::string&)>& done, const std::string& what,
                 absl::Duration timeout = kChatWait);
  bool WaitFor(const std::string& want, absl::Duration timeout = kChatWait);
  bool WaitForPrefix(const std::string& prefix, absl::Duration timeout = kChatWait);
  // The "<nick> text" lines seen so far.
  std::vector<std::string> SayLines() const;

 private:
  std::string nick_;
  std::unique_ptr<Subprocess> process_;
  std::vector<std::string> lines_;
};

}  // namespace udpmsg::testing

#endif  // UDPMSG_TESTS_CLI_CHAT_MEMBER_H_
