// ClientCore: the chat client without a terminal. It turns the server's
// messages into display events (every peer string in them already escaped
// with Displayable), keeps the client's nick current across renames, and
// turns what the user typed ("hello", "/me waves", "/msg bob hi", "/nick
// NEW", "/who", "/quit", ...) into ClientMessage bytes to send.
//
// Usage (a driver; the CLI's is cli/chat_client.cc):
//   chat::ClientCore core("alice");
//   // connected:      send core.JoinMessage()
//   // a message:      absl::StatusOr<std::optional<chat::ClientEvent>> e =
//   //                     core.OnServerMessage(bytes);
//   //                 !e.ok(): the session is over (say e.status().message())
//   //                 *e: show it; std::nullopt: nothing to show
//   // a typed line:   chat::UserInput in = chat::ParseInput(line);
//   //                 kSend: send in.message; kError: show in.error; kQuit: leave
//   // leaving:        send chat::LeaveMessage(), then close flushing
//
// Rejections of server input (OnServerMessage):
//   - more than kMaxMessageBytes, or bytes that do not parse as a
//     ServerMessage: DATA_LOSS "malformed server message" (the session
//     cannot go on: the stream is out of step);
//   - an Error with fatal set: FAILED_PRECONDITION with the server's text
//     (escaped);
//   - a message with no known body (a newer server): ignored (std::nullopt);
//   - a Line of an unknown kind: shown as a SYSTEM line.
// Nothing a server sends is trusted for display: nicks, texts, error texts
// and member lists all pass through Displayable; a nick is never longer than
// what the server sent. The core holds only the client's nick (a rename line
// for our nick replaces it: at most kMaxMessageBytes).
//
// Not thread-safe: one driver thread.
#ifndef UDPMSG_APPS_CHAT_CLIENT_CORE_H_
#define UDPMSG_APPS_CHAT_CLIENT_CORE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace udpmsg::chat {

class Line;  // apps/chat/chat.proto

// One delivered line, ready to show: every string escaped.
struct DisplayLine {
  enum class Kind {
    kSay,         // <from> text
    kMe,          // * from text
    kPrivateIn,   // <- from: text (to us)
    kPrivateOut,  // -> to: text (we sent it)
    kJoin,        // *** from joined
    kLeave,       // *** from left (text: why, may be empty)
    kRename,      // *** from is now known as text
    kSystem,      // *** text
  };
  Kind kind = Kind::kSystem;
  uint64_t seq = 0;  // the server's total order
  absl::Time time;   // the server's clock when it delivered the line
  std::string from;
  std::string to;  // kPrivateOut: the target
  std::string text;
};

struct ClientEvent {
  enum class Type {
    kWelcome,   // joined as `nick`; `nicks`, `member_count`: the room
    kLine,      // `line`
    kError,     // a non-fatal error from the server: `text`
    kWhoReply,  // `nicks`, `member_count`: the room
  };
  Type type = Type::kLine;
  std::string nick;
  // kWelcome, kWhoReply: the first members in join order (a server lists at
  // most kMaxListedNicks), and how many the room has (at least nicks.size()).
  std::vector<std::string> nicks;
  uint64_t member_count = 0;
  std::string text;
  DisplayLine line;
  // kWelcome: the server's resume token (raw bytes, never shown), empty
  // when it sent none or one outside kResumeTokenBytes..kMaxResumeTokenBytes.
  std::string resume_token;
};

// What one line of user input asks for.
struct UserInput {
  enum class Type {
    kNothing,  // a blank line
    kSend,     // send `message` (a serialized ClientMessage)
    kQuit,     // /quit, /exit (with an optional `reason`)
    kStats,    // /stats: the driver shows transport statistics
    kHelp,     // /help: the driver shows kHelpText
    kError,    // show `error` (usage, a bad nick, a long text, unknown command)
  };
  Type type = Type::kNothing;
  std::string message;
  std::string error;
  // kQuit: "/quit REASON"'s reason (whitespace trimmed, at most
  // kMaxLeaveReasonBytes, cut at a character); empty without one.
  std::string reason;
};

inline constexpr char kHelpText[] =
    "commands: /who, /nick NEW, /me ACTION, /msg NICK TEXT, /stats, /quit [REASON] "
    "(//text sends a line starting with /)";

// Parses one line the user typed (without its newline; a trailing '\r' is
// dropped, invalid UTF-8 replaced by U+FFFD). A line not starting with '/'
// (or starting with "//", which sends it without the first '/') is a Say.
// Commands are case-insensitive: /quit [REASON] /exit [REASON] /who /nick NEW /me ACTION
// /msg NICK TEXT /stats /help. Texts and nicks are checked with CheckText and
// CheckNick before anything is sent.
UserInput ParseInput(absl::string_view line);

// Serialized ClientMessages. `resume_token`: the Welcome's, on a reconnect;
// `last_seq`: the highest line number received so far (Join.last_seq).
std::string JoinMessage(absl::string_view nick, absl::string_view resume_token = "",
                        uint64_t last_seq = 0);
// `reason` as ParseInput gives it (the server cuts it again).
std::string LeaveMessage(absl::string_view reason = "");

class ClientCore final {
 public:
  // `nick`: the nick to join as (the driver checks it with CheckNick).
  explicit ClientCore(std::string nick) : nick_(std::move(nick)) {}
  ClientCore(const ClientCore&) = delete;
  ClientCore& operator=(const ClientCore&) = delete;

  // The Join for the nick given at construction.
  std::string JoinMessage() const { return chat::JoinMessage(nick_); }

  // One message from the server. See the header comment for the statuses.
  absl::StatusOr<std::optional<ClientEvent>> OnServerMessage(absl::string_view bytes);

  // True once a Welcome arrived.
  bool joined() const { return joined_; }
  // Our nick as the server knows it (unescaped).
  const std::string& nick() const { return nick_; }
  // The highest line number (Line.seq) received, 0 before any.
  uint64_t last_seq() const { return last_seq_; }

 private:
  ClientEvent OnLine(const Line& line);

  std::string nick_;
  bool joined_ = false;
  uint64_t last_seq_ = 0;
};

}  // namespace udpmsg::chat

#endif  // UDPMSG_APPS_CHAT_CLIENT_CORE_H_
