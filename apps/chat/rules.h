// The chat protocol's limits and the rules for nicks and text, shared by the
// server core (which enforces them on peer input), the client core (which
// checks user input before sending) and the CLI (which checks --nick).
//
// Usage:
//   if (absl::Status s = chat::CheckNick(nick); !s.ok()) return s;
//   by_nick[chat::NickKey(nick)] = id;
//
// Pure functions; thread-safe.
#ifndef UDPMSG_APPS_CHAT_RULES_H_
#define UDPMSG_APPS_CHAT_RULES_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace udpmsg::chat {

// The reliable channel every chat message travels on (reliable-ordered).
inline constexpr uint32_t kChannel = 0;
// Longest Say/Me/Private text.
inline constexpr size_t kMaxTextBytes = 4096;
// Longest nick.
inline constexpr size_t kMaxNickBytes = 32;
// Largest room a server can be configured for (a server's connections stay
// within the transport's 1048576).
inline constexpr size_t kMaxMembersLimit = 1'000'000;
// Nicks a Welcome or WhoReply lists at most (the first members in join
// order; the message carries the room's size beside them), so the answer to
// a join or /who is at most ~3.5 KB whatever the room's size.
inline constexpr size_t kMaxListedNicks = 100;
// Largest protobuf accepted from a peer (either direction): a Line, a
// Welcome or a WhoReply fits with room to spare. Drivers set the
// transport's message limit to it.
inline constexpr uint64_t kMaxMessageBytes = 256 << 10;
// Longest "/quit REASON" the server keeps (longer ones are cut at a
// character boundary, never refused: a Leave always succeeds).
inline constexpr size_t kMaxLeaveReasonBytes = 200;
// A Welcome's resume token: random bytes a server makes per membership.
inline constexpr size_t kResumeTokenBytes = 16;
// Longest token either side accepts (a longer one is ignored: no match).
inline constexpr size_t kMaxResumeTokenBytes = 64;

// Nicks compare case-insensitively (ASCII): "Bob" and "bob" are one nick.
std::string NickKey(absl::string_view nick);

// OK for 1..kMaxNickBytes printable ASCII characters without spaces
// (0x21..0x7e). INVALID_ARGUMENT otherwise: "a nick must not be empty",
// "nick "..." is too long (N characters, at most 32)", "nick "..." is
// invalid: use printable ASCII characters without spaces" (the nick quoted
// through Displayable, a long one cut at 40 bytes).
absl::Status CheckNick(absl::string_view nick);

// The key per-address limits count under, from a peer's address text as
// SocketAddress::ToString writes it ("1.2.3.4:5", "[2001:db8::1]:5") or a
// bare IP: udp::AddressPrefix, the transport's own per-address key (an IPv4
// address is itself, and so is an IPv4-mapped IPv6 one; an IPv6 address
// counts by its /64, "2001:db8::/64"). Text that is neither (a test's
// label) is its own key, port included.
std::string AddressKey(absl::string_view address);

// The first `max_bytes` of `text` at most, cut before a UTF-8 character
// that would not fit whole.
std::string CutUtf8(absl::string_view text, size_t max_bytes);

// OK for 1..kMaxTextBytes bytes. INVALID_ARGUMENT otherwise: "empty
// message", "message too long (N bytes, at most 4096)".
absl::Status CheckText(absl::string_view text);

}  // namespace udpmsg::chat

#endif  // UDPMSG_APPS_CHAT_RULES_H_
