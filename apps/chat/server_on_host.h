// ServerOnHost: runs a chat::ServerCore on a udpmsg::Host. The core is
// sans-I/O; this is the glue every real server needs (`udpmsg chat serve`,
// the demo): Host events of chat connections go into the core, and the
// core's actions (send, close, log) are carried out on the Host.
//
// Usage (the caller owns the loop, the clock and the host):
//   chat::ServerOnHost server(&host, core.get(), [](std::string line) { Log(line); });
//   for (;;) {
//     absl::StatusOr<udpmsg::Host::PollResult> r = host.Poll(absl::Seconds(1));
//     for (const udpmsg::Event& e : r->events) server.OnEvent(absl::Now(), e);
//     server.OnRoom(absl::Now());   // a shard of a shared room
//     server.OnTick(absl::Now());
//   }
//   server.Shutdown(absl::Now());       // tells everyone; then host.Flush(...)
//
// Acknowledgements (kAcked on kChannel) go to the core, which hands each
// member its backlog only as they come (ServerOptions::send_window_bytes),
// so the Host's send queues hold at most a window per member.
// A send the Host refuses on a live connection (its queue is full) is
// reported to the core with OnSendFailed once the batch is done, which drops
// that member; a connection already closed reports its own kClosed.
//
// Ownership: borrows the host and the core, which must outlive it.
// Threading: the thread that drives the host.
#ifndef UDPMSG_APPS_CHAT_SERVER_ON_HOST_H_
#define UDPMSG_APPS_CHAT_SERVER_ON_HOST_H_

#include <functional>
#include <string>

#include "absl/time/time.h"
#include "apps/chat/server_core.h"
#include "udpmsg/udpmsg.h"

namespace udpmsg::chat {

// How the chat tells its members why someone left, from why the transport
// closed the connection: timeouts on our side read "timed out", a close by
// the peer "connection closed", anything else "connection lost". A close
// by the peer for its own timeout (its client lost the path) is
// kPeerTimedOut: the member is held for its resume token first
// (ServerOptions::resume_grace).
CloseCause CloseCauseFor(CloseReason reason, bool by_peer);

class ServerOnHost final {
 public:
  // Receives each of the core's log lines (already escaped by the core).
  using LogSink = std::function<void(std::string line)>;

  ServerOnHost(Host* host, ServerCore* core, LogSink log)
      : host_(host), core_(core), log_(std::move(log)) {}
  ServerOnHost(const ServerOnHost&) = delete;
  ServerOnHost& operator=(const ServerOnHost&) = delete;

  // Feeds one event of a chat connection to the core (messages on other
  // channels are ignored) and carries out what the core does about it.
  void OnEvent(absl::Time now, const Event& e);
  // Runs the core's timers (pending joins) and carries out its actions.
  void OnTick(absl::Time now);
  // A shard of a shared room (ServerCore::Create(options, room, shard)):
  // fans out the lines other shards added; call it on every loop turn (the
  // room's wake-up, Host::Wake, ends the shard's Poll early).
  void OnRoom(absl::Time now);
  // Says goodbye to every member and closes their connections; the caller
  // then flushes the host.
  void Shutdown(absl::Time now);

 private:
  void Execute(absl::Time now);

  Host* host_;
  ServerCore* core_;
  LogSink log_;
};

}  // namespace udpmsg::chat

#endif  // UDPMSG_APPS_CHAT_SERVER_ON_HOST_H_
