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

namespace udpmsg::chat {

// Length of the valid UTF-8 sequence at s[i] (1 for ASCII), or 0 when it is
// not one (protobuf's definition: no overlongs, surrogates or > U+10FFFF).
// Requires i < s.size().
size_t Utf8Length(absl::string_view s, size_t i);

// True for a UTF-8 continuation byte (10xxxxxx).
inline bool IsContinuation(char c) { return (static_cast<unsigned char>(c) & 0xc0) == 0x80; }

// `s` with every invalid UTF-8 byte replaced by U+FFFD.
std::string ValidUtf8(absl::string_view s);

// `s` safe for a terminal or a log line: control characters (C0, DEL, C1)
// escaped as \xNN or \uNNNN, a tab as a space, invalid UTF-8 bytes as \xNN;
// printable ASCII and other valid UTF-8 kept. Idempotent:
// Displayable(Displayable(s)) == Displayable(s).
std::string Displayable(absl::string_view s);

// "1 member", "2 members".
std::string Plural(size_t n, absl::string_view word);

}  // namespace udpmsg::chat

#endif  // UDPMSG_APPS_CHAT_TEXT_H_
