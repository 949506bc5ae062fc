#include "apps/chat/text.h"

#include "absl/strings/str_cat.h"

namespace udpmsg::chat {

std::string Plural(size_t n, absl::string_view word) {
  return absl::StrCat(n, " ", word, n == 1 ? "" : "s");
}

}  // namespace udpmsg::chat
