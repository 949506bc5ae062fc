// ClientSession: what a chat client keeps across its connections, without
// I/O. It owns the ClientCore (the nick, renames included, survives a
// reconnect), the Welcome's resume token (in memory only), the lines handed
// to the transport and not yet acknowledged, and the reconnect policy:
// whether an ended connection is worth another, and after how long
// (bounded exponential backoff with jitter), and which of the room's servers
// (options.servers addresses, all serving one room) the next attempt goes to.
//
// Usage (a driver; the CLI's is cli/chat_client.cc):
//   chat::ClientSession session("alice", options);
//   // connected:       send session.JoinMessage()  (the current nick and token)
//   // a message:       session.OnServerMessage(now, bytes)   (as ClientCore's)
//   // a typed line the transport took as message `seq`:
//   //                  session.OnSent(seq, line)
//   // its acknowledgement (the transport's kAcked):  session.OnAcked(seq)
//   // the connection ended, or an attempt got no Welcome in time:
//   //   chat::ClientSession::Ended end = session.OnEnded(now, cause);
//   //   tell the user about end.unconfirmed (they may not have been sent);
//   //   end.reconnect: connect again after end.delay; otherwise stop.
//   // every attempt goes to address number session.server() of the list.
//
// The policy: a connection that ended because it was lost (timed out, the
// server killed) or because the server shut down is reconnected, as is a
// reconnect attempt that failed; one the server ended deliberately (a fatal
// Error such as a taken nick, or a close for flooding, a protocol error or
// falling behind) is not, and neither is the first connection (no Welcome
// yet: a wrong address or port should fail, not loop; with several servers
// it tries each of them once first, below). The n-th attempt in a
// row waits a uniformly random time in [d/2, d] with d = min(max_delay,
// first_delay * 2^n); a connection that stayed joined for stable_after
// starts the count again.
//
// Several servers (options.servers > 1, the servers of one room): the first
// connection goes to the first; every end that is reconnected moves the
// next attempt to the next address, round robin, after the same backoff, so
// a member whose server died lands on another one (its resume token takes
// its nick back there). A first connection whose attempt fails (refused,
// timed out) moves on to the next address at once (delay zero, whatever
// `reconnect` says): only when every address failed once does it stop.
//
// Bounds: the text of at most max_unconfirmed lines is kept (each at most
// what one typed line holds); beyond that only their numbers (the
// transport's send queue, which the driver bounds, limits how many). The token is at
// most kMaxResumeTokenBytes (a longer one from a server is ignored).
//
// Not thread-safe: one driver thread.
#ifndef UDPMSG_APPS_CHAT_CLIENT_SESSION_H_
#define UDPMSG_APPS_CHAT_CLIENT_SESSION_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "apps/chat/client_core.h"

namespace udpmsg::chat {

// How a connection ended, as the reconnect policy sees it.
enum class EndCause {
  kLost,            // timed out or lost (the network, a killed server)
  kServerShutdown,  // the server closed it: "server shutting down"
  kRefused,         // the server ended it on purpose (fatal Error, kick)
  kAttemptFailed,   // a reconnect attempt got no connection or Welcome in time
};

// The cause of a transport close. Any close on our side (our timeouts
// among them) is kLost. By the server: for its own timeout (`timed_out`, udpmsg::IsTimeout of the
// close's reason: it gave up on the path during an outage and answers our
// first packet after it with that code) kLost too; with the reason "server
// shutting down" kServerShutdown; otherwise kRefused.
EndCause ClassifyClose(bool by_peer, bool timed_out, absl::string_view reason);

struct SessionOptions {
  bool reconnect = true;
  absl::Duration first_delay = absl::Milliseconds(500);
  absl::Duration max_delay = absl::Seconds(30);
  // Joined this long: the next loss starts the backoff from first_delay.
  absl::Duration stable_after = absl::Seconds(30);
  uint64_t seed = 1;  // the jitter's
  size_t max_unconfirmed = 256;
  // The addresses to rotate through (at least 1; 0 counts as 1).
  size_t servers = 1;
};

class ClientSession final {
 public:
  ClientSession(std::string nick, const SessionOptions& options);
  ClientSession(const ClientSession&) = delete;
  ClientSession& operator=(const ClientSession&) = delete;

  // The Join for the current nick, with the resume token once there is one
  // and the highest line number received (a room spanning servers then
  // sends a reconnect only the recent lines it has not had).
  std::string JoinMessage() const;
  // ClientCore::OnServerMessage; a Welcome also marks the connection joined
  // and keeps its resume token (16..kMaxResumeTokenBytes bytes; otherwise
  // none).
  absl::StatusOr<std::optional<ClientEvent>> OnServerMessage(absl::Time now,
                                                             absl::string_view bytes);

  // A line the user typed went to the transport as message `seq`.
  void OnSent(uint64_t seq, absl::string_view line);
  // The transport acknowledged message `seq` (unknown ones are ignored).
  void OnAcked(uint64_t seq);

  struct Ended {
    bool reconnect = false;
    absl::Duration delay;  // reconnect: wait this long
    // Lines handed to the transport and never acknowledged: the server may
    // or may not have them. Escaped (Displayable), oldest first.
    std::vector<std::string> unconfirmed;
    uint64_t unconfirmed_more = 0;  // beyond max_unconfirmed: counted only
  };
  // The current connection (or attempt) is over; see the header comment.
  Ended OnEnded(absl::Time now, EndCause cause);

  // The current connection has its Welcome.
  bool joined() const { return joined_; }
  // Some connection had a Welcome.
  bool ever_joined() const { return ever_joined_; }
  const std::string& nick() const { return core_.nick(); }
  bool has_resume_token() const { return !token_.empty(); }
  size_t unconfirmed_count() const { return unconfirmed_.size(); }
  // Reconnect attempts since the last stable connection.
  int attempts() const { return attempts_; }
  // The address (0 .. servers - 1) of the current attempt or connection,
  // and of the next one after OnEnded.
  size_t server() const { return server_; }

 private:
  uint64_t NextRandom();

  const SessionOptions options_;
  ClientCore core_;
  std::string token_;
  bool joined_ = false;
  bool ever_joined_ = false;
  absl::Time joined_at_;
  int attempts_ = 0;
  size_t server_ = 0;
  size_t first_failures_ = 0;  // failed first attempts (before any Welcome)
  uint64_t rng_;
  // seq -> the line, escaped ("" beyond max_unconfirmed kept texts).
  std::map<uint64_t, std::string> unconfirmed_;
  size_t texts_ = 0;  // non-empty entries in unconfirmed_
};

}  // namespace udpmsg::chat

#endif  // UDPMSG_APPS_CHAT_CLIENT_SESSION_H_
