// echo_server: sends every message back to whoever sent it, on the same
// channel and delivery mode. The whole server, on the public API only.
//
//   echo_server [PORT]      (default 9000; 0 picks a free port)
//
// Prints "listening on ADDRESS:PORT" to stderr once bound, then one line per
// connection opened or closed. Runs until killed.
#include <cstdio>
#include <string>
#include <utility>

#include "absl/time/time.h"
#include "udpmsg/udpmsg.h"

int main(int argc, char** argv) {
  if (argc > 2) {
    std::fprintf(stderr, "usage: echo_server [PORT]\n");
    return 2;
  }
  absl::StatusOr<uint16_t> port = udpmsg::ParsePort(argc == 2 ? argv[1] : "9000");
  if (!port.ok()) {
    std::fprintf(stderr, "echo_server: %s\n", std::string(port.status().message()).c_str());
    return 2;
  }

  udpmsg::HostOptions options;
  options.bind = udpmsg::SocketAddress::Any(udpmsg::AddressFamily::kIpv6, *port);
  options.accept_incoming = true;
  options.max_message_bytes = 64 << 10;  // an echo needs no more
  absl::StatusOr<udpmsg::Host> host = udpmsg::Host::Create(options);
  if (!host.ok()) {
    std::fprintf(stderr, "echo_server: %s\n", std::string(host.status().message()).c_str());
    return 1;
  }
  std::fprintf(stderr, "listening on %s\n", host->local_address().ToString().c_str());

  for (;;) {
    absl::StatusOr<udpmsg::Host::PollResult> result = host->Poll(absl::Seconds(1));
    if (!result.ok()) {
      std::fprintf(stderr, "echo_server: %s\n", std::string(result.status().message()).c_str());
      return 1;
    }
    for (udpmsg::Event& e : result->events) {
      switch (e.type) {
        case udpmsg::Event::Type::kConnected:
          std::fprintf(stderr, "%s connected\n", e.peer.ToString().c_str());
          break;
        case udpmsg::Event::Type::kMessage:
          // Back on the same channel and mode. A full send queue drops the
          // echo: this server never blocks on one slow client.
          if (absl::Status s =
                  host->Send(e.connection, e.channel, e.mode, std::move(e.message)).status();
              !s.ok()) {
            std::fprintf(stderr, "%s: %s\n", e.peer.ToString().c_str(),
                         std::string(s.message()).c_str());
          }
          break;
        case udpmsg::Event::Type::kAcked:
          break;
        case udpmsg::Event::Type::kPathChanged:  // a NAT rebinding: already followed
          std::fprintf(stderr, "%s moved to %s\n", e.old_peer.ToString().c_str(),
                       e.peer.ToString().c_str());
          break;
        case udpmsg::Event::Type::kClosed:
          // The reason may be the peer's text: escape it.
          std::fprintf(stderr, "%s closed: %s (%s)\n", e.peer.ToString().c_str(),
                       std::string(udpmsg::CloseReasonName(e.close_reason)).c_str(),
                       udpmsg::Displayable(e.reason).c_str());
          break;
      }
    }
  }
}
