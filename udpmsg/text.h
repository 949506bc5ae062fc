// udpmsg text: peer text made safe to show. Every byte a peer sends (a
// message, a close reason, a nick) may hold terminal escape sequences,
// newlines or invalid UTF-8; pass it through Displayable() before it reaches
// a terminal or a log line, and user input through ValidUtf8() before it goes
// into a protobuf string field (which must be valid UTF-8).
//
// Usage:
//   std::printf("%s: %s\n", e.peer.ToString().c_str(),
//               udpmsg::Displayable(e.message).c_str());
//
// Pure functions; thread-safe. Output size is O(input size) (at most 6 bytes
// out per byte in).
#ifndef UDPMSG_UDPMSG_TEXT_H_
#define UDPMSG_UDPMSG_TEXT_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace udpmsg {

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

}  // namespace udpmsg

#endif  // UDPMSG_UDPMSG_TEXT_H_
