#include "apps/chat/rules.h"

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "apps/chat/text.h"
#include "udp/address_prefix.h"
#include "udp/socket_address.h"

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
  absl::StatusOr<udp::SocketAddress> a = udp::SocketAddress::Parse(address);
  if (!a.ok()) a = udp::SocketAddress::FromIp(address, 0);  // an address without a port
  return a.ok() ? udp::AddressPrefix(*a) : std::string(address);
}

std::string CutUtf8(absl::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  size_t end = max_bytes;
  while (end > 0 && IsContinuation(text[end])) --end;
  return std::string(text.substr(0, end));
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
