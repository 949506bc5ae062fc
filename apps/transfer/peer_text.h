// EscapePeerText: makes text a peer sent safe to print on a terminal or in a
// log line. Printable ASCII (0x20-0x7e) passes unchanged, every other byte
// becomes \xNN (so no escape sequence, newline or invalid UTF-8 gets
// through), and at most `max_bytes` input bytes are shown, then "...".
//
//   EscapePeerText("bad\x1b[2J")  == "bad\\x1b[2J"
//
// Pure function; thread-safe.
#ifndef UDPMSG_APPS_TRANSFER_PEER_TEXT_H_
#define UDPMSG_APPS_TRANSFER_PEER_TEXT_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace udpmsg::transfer {

inline constexpr size_t kMaxPeerTextBytes = 1024;

std::string EscapePeerText(absl::string_view text, size_t max_bytes = kMaxPeerTextBytes);

}  // namespace udpmsg::transfer

#endif  // UDPMSG_APPS_TRANSFER_PEER_TEXT_H_
