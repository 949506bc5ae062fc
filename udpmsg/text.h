// udpmsg text: peer text made safe to show. Every byte a peer sends (a
// message, a close reason, a nick, an error text, a file name) may hold
// terminal escape sequences, newlines, invalid UTF-8 or invisible Unicode
// controls; pass it through Displayable() (or DisplayablePrefix() for a
// bounded excerpt) before it reaches a terminal or a log line, and user input
// through ValidUtf8() before it goes into a protobuf string field (which must
// be valid UTF-8). Displayable is the one escaping function of the project:
// the CLI, the applications and the logs all use it.
//
// Usage:
//   std::printf("%s: %s\n", e.peer.ToString().c_str(),
//               udpmsg::Displayable(e.message).c_str());
//
// What Displayable escapes, and why (each is a way for a peer to garble a
// terminal, forge a line in a log, or make text read other than it is):
//   - C0 controls U+0000-U+001F (ESC starts escape sequences that clear the
//     screen or retitle the terminal; CR and LF forge new lines), DEL (0x7f):
//     \xNN. A tab becomes a space.
//   - C1 controls U+0080-U+009F (U+009B is CSI, U+0085 NEL a newline on some
//     terminals): \u00NN.
//   - Invalid UTF-8 (stray continuation bytes, overlongs, surrogates, past
//     U+10FFFF, truncated sequences): each byte \xNN.
//   - Unicode bidirectional controls U+061C, U+200E, U+200F, U+202A-U+202E,
//     U+2066-U+2069 (they reorder what follows, "Trojan Source"): \uNNNN.
//   - The other invisible format characters (general category Cf: soft
//     hyphen, zero-width space, word joiner, invisible operators, BOM, the
//     deprecated format controls U+206A-U+206F, interlinear annotation, tag
//     characters U+E0000-U+E007F that smuggle hidden ASCII, ...) and the
//     line and paragraph separators U+2028/U+2029: \uNNNN or \UNNNNNNNN.
//     Zero-width joiner and non-joiner (U+200D, U+200C) are kept: scripts
//     such as Persian and Devanagari and emoji sequences need them, and
//     they move nothing.
// Printable ASCII and every other valid UTF-8 character are kept as they are.
// The escapes are printable ASCII, so Displayable is idempotent:
// Displayable(Displayable(s)) == Displayable(s). It is not reversible (a
// backslash in `s` is kept as is); see cli::Printable for a reversible form.
//
// Pure functions; thread-safe. Output size is O(input size) (at most 10 bytes
// out per byte in).
#ifndef UDPMSG_UDPMSG_TEXT_H_
#define UDPMSG_UDPMSG_TEXT_H_

#include <cstddef>
#include <cstdint>
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

// True for a code point Displayable escapes although it is valid UTF-8: C0,
// DEL, C1, the bidi controls, the other format characters (except ZWJ and
// ZWNJ), and U+2028/U+2029. (A tab, though escaped, counts here too.)
bool IsHiddenCodePoint(uint32_t code_point);

// `s` safe for a terminal or a log line (see the file comment for exactly
// what is escaped). Idempotent.
std::string Displayable(absl::string_view s);

// Displayable of at most the first `max_bytes` bytes of `s`, cut at a
// character boundary, followed by "..." when anything was cut: for quoting
// a peer's text of any length in one bounded line.
std::string DisplayablePrefix(absl::string_view s, size_t max_bytes);

}  // namespace udpmsg

#endif  // UDPMSG_UDPMSG_TEXT_H_
