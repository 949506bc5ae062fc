// EscapePeerText: the transfer protocol's name for udpmsg::DisplayablePrefix
// (udpmsg/text.h), the project's one escaping function, cut to a bounded
// length. Text a peer sent (a close reason, a rejection) passes through it
// before it reaches a terminal or a log line: controls (C0, DEL, C1), ESC,
// invalid UTF-8, bidi controls and invisible format characters are escaped,
// other UTF-8 is kept, and at most `max_bytes` input bytes are shown (cut at
// a character boundary), then "...".
//
//   EscapePeerText("bad\x1b[2J")  == "bad\\x1b[2J"
//
// Pure function; thread-safe.
#ifndef UDPMSG_APPS_TRANSFER_PEER_TEXT_H_
#define UDPMSG_APPS_TRANSFER_PEER_TEXT_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"
#include "udpmsg/text.h"

namespace udpmsg::transfer {

inline constexpr size_t kMaxPeerTextBytes = 1024;

inline std::string EscapePeerText(absl::string_view text, size_t max_bytes = kMaxPeerTextBytes) {
  return ::udpmsg::DisplayablePrefix(text, max_bytes);
}

}  // namespace udpmsg::transfer

#endif  // UDPMSG_APPS_TRANSFER_PEER_TEXT_H_
