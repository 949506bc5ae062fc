#include "apps/transfer/peer_text.h"

#include <cstddef>
#include <string>

#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace udpmsg::transfer {

std::string EscapePeerText(absl::string_view text, size_t max_bytes) {
  std::string out;
  const absl::string_view shown = text.substr(0, max_bytes);
  out.reserve(shown.size());
  for (const char c : shown) {
    const auto b = static_cast<unsigned char>(c);
    if (b >= 0x20 && b <= 0x7e) {
      out.push_back(c);
    } else {
      absl::StrAppendFormat(&out, "\\x%02x", b);
    }
  }
  if (shown.size() < text.size()) out += "...";
  return out;
}

}  // namespace udpmsg::transfer
