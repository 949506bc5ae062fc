#include "apps/chat/rules.h"

#include <arpa/inet.h>

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "apps/chat/text.h"

namespace udpmsg::chat {

std::string NickKey(absl::string_view nick) { return absl::AsciiStrToLower(nick); }

absl::Status CheckNick(absl::string_view nick) {
  if (nick.empty()) return absl::InvalidArgumentError("a nick must not be empty");
  if (nick.size() > kMaxNickBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("nick \"", Displayable(nick.substr(0, 40)), nick.size() > 40 ? "..." : "",
                     "\" is too long (", nick.size(), " characters, at most ", kMaxNickBytes, ")"));
  }
  for (char c : nick) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(
          absl::StrCat("nick \"", Displayable(nick),
                       "\" is invalid: use printable ASCII characters without spaces"));
    }
  }
  return absl::OkStatus();
}

std::string AddressKey(absl::string_view address) {
  absl::string_view host = address;
  if (!host.empty() && host.front() == '[') {
    const size_t close = host.find(']');
    if (close == absl::string_view::npos) return std::string(address);
    host = host.substr(1, close - 1);
  } else if (const size_t colon = host.rfind(':');
             colon != absl::string_view::npos && host.find(':') == colon) {
    host = host.substr(0, colon);  // "a.b.c.d:port" (a bare IPv6 has several colons)
  }
  const std::string text(host.substr(0, 64));
  in_addr v4;
  if (::inet_pton(AF_INET, text.c_str(), &v4) == 1) return text;
  in6_addr v6;
  if (::inet_pton(AF_INET6, text.c_str(), &v6) != 1) return std::string(address);
  static constexpr unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(v6.s6_addr, kMapped, sizeof(kMapped)) == 0) {
    char out[INET_ADDRSTRLEN];
    if (::inet_ntop(AF_INET, v6.s6_addr + 12, out, sizeof(out)) != nullptr) return out;
  }
  std::string key;
  for (int i = 0; i < 8; i += 2) {
    const unsigned group = (unsigned{v6.s6_addr[i]} << 8) | v6.s6_addr[i + 1];
    absl::StrAppend(&key, absl::Hex(group), ":");
  }
  return absl::StrCat(key, ":/64");
}

absl::Status CheckText(absl::string_view text) {
  if (text.empty()) return absl::InvalidArgumentError("empty message");
  if (text.size() > kMaxTextBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("message too long (", text.size(), " bytes, at most ", kMaxTextBytes, ")"));
  }
  return absl::OkStatus();
}

}  // namespace udpmsg::chat
