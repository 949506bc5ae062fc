// The rendezvous naming rule, shared by the server (which enforces it) and
// clients (which check their arguments before asking): 1 to kMaxNameBytes
// bytes of [A-Za-z0-9._-], starting with a letter or a digit. Names are
// case-sensitive. Pure functions; thread-safe.
#ifndef UDPMSG_APPS_RENDEZVOUS_NAMES_H_
#define UDPMSG_APPS_RENDEZVOUS_NAMES_H_

#include <cstddef>

#include "absl/strings/string_view.h"

namespace udpmsg::rendezvous {

inline constexpr size_t kMaxNameBytes = 64;

inline bool ValidName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes) return false;
  const auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (!alnum(name[0])) return false;
  for (char c : name) {
    if (!alnum(c) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

}  // namespace udpmsg::rendezvous

#endif  // UDPMSG_APPS_RENDEZVOUS_NAMES_H_
