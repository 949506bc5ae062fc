// chat_minimal: a chat room in one file, on the public API only.
//
//   chat_minimal serve PORT            a room (0 picks a free port); prints
//                                      "listening on ADDRESS:PORT" to stderr
//   chat_minimal join HOST:PORT NICK   joins; each stdin line is said to the
//                                      room, each room line printed to stdout
//
// The protocol is plain messages on channel 0, reliable and ordered: a
// member's first message is its nick, every later one a line. The server
// sends each member "* NICK joined", "NICK: LINE" and "* NICK left", in one
// order for everyone. Every byte from the network is cleaned of control
// characters before it is shown or relayed, and bounded (nick 32 bytes,
// line 1000); HostOptions bounds everything else. It does not encrypt: set
// HostOptions::room_key on both sides for that.
#include <unistd.h>

#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "udpmsg/udpmsg.h"

namespace {

constexpr udpmsg::DeliveryMode kOrdered = udpmsg::DeliveryMode::kReliableOrdered;

// At most `limit` bytes, control characters replaced: safe for a terminal.
std::string Clean(std::string text, size_t limit) {
  if (text.size() > limit) text.resize(limit);
  for (char& c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) c = '?';
  }
  return text;
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "chat_minimal: %s\n", std::string(s.message()).c_str());
  return 1;
}

udpmsg::HostOptions Options() {
  udpmsg::HostOptions options;
  options.max_message_bytes = 4096;
  options.max_channels = 1;
  return options;
}

int Serve(uint16_t port) {
  udpmsg::HostOptions options = Options();
  options.bind = udpmsg::SocketAddress::Any(udpmsg::AddressFamily::kIpv6, port);
  options.accept_incoming = true;
  absl::StatusOr<udpmsg::Host> host = udpmsg::Host::Create(options);
  if (!host.ok()) return Fail(host.status());
  std::fprintf(stderr, "listening on %s\n", host->local_address().ToString().c_str());
  std::map<udpmsg::ConnectionId, std::string> nicks;  // members who said their nick
  auto broadcast = [&](const std::string& line) {
    // A member whose queue is full misses the line rather than stalling the room.
    for (const auto& [id, nick] : nicks) host->Send(id, 0, kOrdered, line).IgnoreError();
  };
  for (;;) {
    absl::StatusOr<udpmsg::Host::PollResult> r = host->Poll(absl::Seconds(1));
    if (!r.ok()) return Fail(r.status());
    for (udpmsg::Event& e : r->events) {
      if (e.type == udpmsg::Event::Type::kMessage) {
        auto it = nicks.find(e.connection);
        if (it != nicks.end()) {
          broadcast(absl::StrCat(it->second, ": ", Clean(std::move(e.message), 1000)));
          continue;
        }
        std::string nick = Clean(std::move(e.message), 32);
        if (nick.empty()) nick = "anonymous";
        nicks[e.connection] = nick;
        broadcast(absl::StrCat("* ", nick, " joined"));
      } else if (e.type == udpmsg::Event::Type::kClosed) {
        auto it = nicks.find(e.connection);
        if (it == nicks.end()) continue;
        const std::string nick = it->second;
        nicks.erase(it);
        broadcast(absl::StrCat("* ", nick, " left"));
      }
    }
  }
}

int Join(const std::string& server, const std::string& nick) {
  absl::StatusOr<std::vector<udpmsg::SocketAddress>> to = udpmsg::ResolveHostPort(server);
  if (!to.ok()) return Fail(to.status());
  udpmsg::HostOptions options = Options();
  options.bind = udpmsg::SocketAddress::Any(to->front().family(), 0);
  absl::StatusOr<udpmsg::Host> host = udpmsg::Host::Create(options);
  if (!host.ok()) return Fail(host.status());
  absl::StatusOr<udpmsg::ConnectionId> id = host->Connect(to->front());
  if (!id.ok()) return Fail(id.status());
  if (absl::Status s = host->AwaitConnected(*id, absl::Seconds(10)); !s.ok()) return Fail(s);
  if (absl::Status s = host->Send(*id, 0, kOrdered, nick).status(); !s.ok()) return Fail(s);
  if (absl::Status s = host->Watch(STDIN_FILENO, /*token=*/1); !s.ok()) return Fail(s);

  std::string pending;  // stdin bytes not yet ending in a newline
  for (;;) {
    absl::StatusOr<udpmsg::Host::PollResult> r = host->Poll(absl::Seconds(1));
    if (!r.ok()) return Fail(r.status());
    for (const udpmsg::Event& e : r->events) {
      if (e.type == udpmsg::Event::Type::kMessage) {
        std::printf("%s\n", Clean(e.message, 4096).c_str());
        std::fflush(stdout);
      } else if (e.type == udpmsg::Event::Type::kClosed) {
        std::fprintf(stderr, "chat_minimal: room closed: %s: %s\n",
                     std::string(udpmsg::CloseReasonName(e.close_reason)).c_str(),
                     Clean(e.reason, 200).c_str());
        return 1;
      }
    }
    if (r->ready.empty()) continue;
    char buffer[4096];
    const ssize_t n = ::read(STDIN_FILENO, buffer, sizeof(buffer));
    if (n <= 0) {  // end of input (or an error): leave after the last line arrives
      if (!pending.empty()) host->Send(*id, 0, kOrdered, pending).IgnoreError();
      host->Unwatch(STDIN_FILENO).IgnoreError();
      host->Close(*id, "bye").IgnoreError();
      absl::Status flushed = host->Flush(absl::Seconds(5));
      return flushed.ok() ? 0 : Fail(flushed);
    }
    pending.append(buffer, static_cast<size_t>(n));
    for (;;) {  // each complete line, and overlong ones in 1000-byte pieces
      size_t end = pending.find('\n');
      size_t newline = 1;
      if (end == std::string::npos) {
        if (pending.size() <= 1000) break;
        end = 1000;
        newline = 0;
      }
      const std::string line = pending.substr(0, end);
      pending.erase(0, end + newline);
      if (absl::Status s = host->Send(*id, 0, kOrdered, line).status(); !s.ok()) return Fail(s);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string command = argc > 1 ? argv[1] : "";
  if (command == "serve" && argc == 3) {
    absl::StatusOr<uint16_t> port = udpmsg::ParsePort(argv[2]);
    if (!port.ok()) return Fail(port.status());
    return Serve(*port);
  }
  if (command == "join" && argc == 4) return Join(argv[2], argv[3]);
  std::fprintf(stderr, "usage: chat_minimal serve PORT | chat_minimal join HOST:PORT NICK\n");
  return 2;
}
