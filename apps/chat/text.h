// Text safety for the chat application: every string a peer sent (a nick, a
// line, an error text, a close reason) passes through Displayable() before it
// reaches a terminal or a log line, and user input through ValidUtf8() before
// it goes into a protobuf string (which must be valid UTF-8).
//
// Usage:
//   std::printf("<%s> %s\n", Displayable(line.from()).c_str(),
//               Displayable(line.text()).c_str());
//
// Pure functions; thread-safe. Output size is O(input size) (at most 6 bytes
// out per byte in).
#ifndef UDPMSG_APPS_CHAT_TEXT_H_
#define UDPMSG_APPS_CHAT_TEXT_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"
#include "udpmsg/text.h"

namespace udpmsg::chat {

// Utf8Length, IsContinuation, ValidUtf8 and Displayable live in the public
// API (udpmsg/text.h), where every application finds them; the chat code
// names them as chat:: too.
using ::udpmsg::Displayable;
using ::udpmsg::IsContinuation;
using ::udpmsg::Utf8Length;
using ::udpmsg::ValidUtf8;

// "1 member", "2 members".
std::string Plural(size_t n, absl::string_view word);

}  // namespace udpmsg::chat

#endif  // UDPMSG_APPS_CHAT_TEXT_H_
