// `udpmsg chat join`'s client: a chat::ClientCore driven by a udpmsg::Host,
// with stdin and the terminal around it.
//
// One Poll loop serves the network, stdin (Host::Watch) and signals (a
// signalfd). On a TTY (stdin and stdout) it edits a line in raw mode under a
// "> " prompt and prints incoming lines above it; otherwise each stdin line
// is a message and each delivered line one stdout line. Everything the
// server sends reaches the terminal through ClientCore, already escaped.
//
// A connection lost after the first Welcome is reconnected (unless
// config.session.reconnect is false): "*** connection lost: REASON;
// reconnecting in 2s (Ctrl-C to quit)", attempts with bounded exponential
// backoff (chat::ClientSession), the Join carrying the resume token, then
// "*** reconnected ...". With several servers (config.servers, the servers
// of one room) each attempt goes to the next address, round robin
// ("reconnecting to HOST:PORT in 2s"), and a first connection that fails
// tries the next at once ("*** cannot connect to A: ...; trying B") until
// every address failed once; every message names the server in use.
// Lines never vanish silently: a line the transport
// took but never acknowledged is reported as "*** maybe not sent
// (connection lost): LINE" when the connection ends; a line typed while
// disconnected is reported as "*** not sent (not connected): LINE" (in
// both modes: /quit and EOF keep working while disconnected) and, on a
// TTY, put back in the prompt when that is empty. Nothing is resent
// automatically, so nothing arrives twice.
//
// Usage (cli/chat.cc):
//   ChatClient client(&host, config);
//   absl::Status s = client.Run();   // until /quit, EOF, a signal or an error
//   client.RestoreTerminal();        // before printing s
//
// Borrows the host; owns the terminal modes it sets (restored by
// RestoreTerminal or the destructor). Single-threaded.
#ifndef UDPMSG_CLI_CHAT_CLIENT_H_
#define UDPMSG_CLI_CHAT_CLIENT_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "apps/chat/client_core.h"
#include "apps/chat/client_session.h"
#include "cli/chat_terminal.h"
#include "udpmsg/udpmsg.h"

namespace udpmsg::cli {

// The host options of both chat sides: a silent peer is dropped after
// `timeout`; keepalives every quarter of it keep a live but quiet connection
// well clear of that, even under loss.
HostOptions ChatOptions(absl::Duration timeout);

struct ChatClientConfig {
  // The room's servers (at least one): the first connection goes to the
  // first; see chat::ClientSession for the rotation.
  std::vector<SocketAddress> servers;
  std::string nick;
  absl::Duration timeout;
  bool interactive = false;  // stdin and stdout are a terminal
  bool color = false;        // ANSI colours (interactive only)
  int signal_fd = -1;        // a signalfd for SIGINT/SIGTERM/SIGHUP (borrowed)
  chat::SessionOptions session;  // reconnect policy (--reconnect)
  // Called with Event::server_identity when the handshake completes, before
  // the join is sent (trust on first use, cli/security.h); an error ends Run
  // with it.
  std::function<absl::Status(const std::string&)> on_connected;
};

class ChatClient final {
 public:
  ChatClient(Host* host, ChatClientConfig config);
  ChatClient(const ChatClient&) = delete;
  ChatClient& operator=(const ChatClient&) = delete;
  ~ChatClient() { RestoreTerminal(); }

  // Joins and chats until /quit, EOF, a signal or an error. DEADLINE_EXCEEDED
  // when no connection or Welcome comes within the timeout the first time
  // (from the last server tried: each was tried once);
  // UNAVAILABLE when the connection is refused (by every server the first
  // time), or lost and not reconnected
  // (--reconnect=false, or the server closed it on purpose);
  // FAILED_PRECONDITION with the server's text on a fatal Error (a reconnect
  // refused too); DATA_LOSS for a malformed server message; the errno status
  // of a failed read of stdin or write of stdout.
  absl::Status Run();

  // Clears the prompt and gives the terminal back. Idempotent.
  void RestoreTerminal();

 private:
  // kWaiting: disconnected, the next attempt at next_attempt_.
  enum class State { kConnecting, kJoining, kChatting, kWaiting };
  enum class StdinMode { kNone, kWatched, kAlwaysReady, kClosed };

  // The address of the current attempt or connection.
  const SocketAddress& server() const { return config_.servers[session_.server()]; }
  // Starts a connection attempt (the first, or a reconnect).
  absl::Status Connect();
  // The connection or attempt ended: reports unconfirmed lines, then either
  // waits for a reconnect or returns `error`.
  absl::Status Ended(chat::EndCause cause, const std::string& reason, absl::Status error);
  absl::Status OnEvent(const Event& e);
  absl::Status OnServerMessage(const std::string& bytes);
  void Show(const chat::ClientEvent& e);
  void ShowLine(const chat::DisplayLine& line);

  absl::Status StartInput();
  void UpdateStdinPause();
  void ReadStdin();
  void OnScripted(absl::string_view data);
  void OnKeys(absl::string_view data);
  void HandleInput(absl::string_view line);
  // A typed `line` as `message`; says so when the transport refuses it.
  void Send(const std::string& message, absl::string_view line);
  void Stats();
  absl::Status Leave();

  std::string Color(absl::string_view code, absl::string_view text) const;
  std::string Nick(absl::string_view nick) const;
  // "N members: a, b, ... and M more" (the server lists the first few).
  std::string Roster(uint64_t count, const std::vector<std::string>& listed) const;
  std::string Stars() const;
  void Notice(const std::string& text);
  void Error(const std::string& text);
  void Print(absl::Time at, const std::string& line);
  std::string PromptText();
  void Redraw();
  void Write(const std::string& out);

  Host* host_;
  const ChatClientConfig config_;
  chat::ClientSession session_;
  ConnectionId id_ = 0;
  State state_ = State::kConnecting;
  absl::Time attempt_deadline_;  // kConnecting, kJoining: give up on the attempt
  absl::Time next_attempt_;      // kWaiting
  StdinMode stdin_ = StdinMode::kNone;
  bool paused_ = false;
  bool quit_ = false;
  std::string leave_reason_;  // "/quit REASON"
  absl::Status failure_;
  std::string partial_;      // scripted: the line read so far
  bool discarding_ = false;  // scripted: skipping an overlong line
  LineEditor editor_;        // interactive: the line being edited
  bool prompt_shown_ = false;
  RawTerminal raw_;
  BracketedPaste paste_;
  NonBlocking nonblocking_;
};

}  // namespace udpmsg::cli

#endif  // UDPMSG_CLI_CHAT_CLIENT_H_
