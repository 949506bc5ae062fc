// echo_client: connects to an echo server, sends each argument as one
// reliable message, and prints each echo as it returns. On the public API
// only.
//
//   echo_client HOST:PORT MESSAGE...
//
// Prints "echo: MESSAGE" to stdout for every echo (in order: one channel,
// reliable-ordered), then closes and exits 0. Exits 1 on any failure (no
// server, a timeout, the connection closing), saying why on stderr.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "udpmsg/udpmsg.h"

namespace {

absl::Status Run(const std::string& server, const std::vector<std::string>& messages) {
  absl::StatusOr<std::vector<udpmsg::SocketAddress>> to = udpmsg::ResolveHostPort(server);
  if (!to.ok()) return to.status();
  udpmsg::HostOptions options;
  options.bind = udpmsg::SocketAddress::Any(to->front().family(), 0);
  options.handshake_timeout = absl::Seconds(5);
  absl::StatusOr<udpmsg::Host> host = udpmsg::Host::Create(options);
  if (!host.ok()) return host.status();
  absl::StatusOr<udpmsg::ConnectionId> id = host->Connect(to->front());
  if (!id.ok()) return id.status();
  if (absl::Status s = host->AwaitConnected(*id, absl::Seconds(5)); !s.ok()) return s;

  for (const std::string& m : messages) {
    absl::StatusOr<uint64_t> sent =
        host->Send(*id, /*channel=*/0, udpmsg::DeliveryMode::kReliableOrdered, m);
    if (!sent.ok()) return sent.status();
  }
  size_t echoed = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (echoed < messages.size()) {
    if (absl::Now() >= deadline) return absl::DeadlineExceededError("no echo within 10s");
    absl::StatusOr<udpmsg::Host::PollResult> r = host->Poll(absl::Milliseconds(200));
    if (!r.ok()) return r.status();
    for (const udpmsg::Event& e : r->events) {
      if (e.type == udpmsg::Event::Type::kMessage) {
        // Bytes from the network: escaped before they reach the terminal.
        std::printf("echo: %s\n", udpmsg::Displayable(e.message).c_str());
        std::fflush(stdout);
        ++echoed;
      } else if (e.type == udpmsg::Event::Type::kClosed) {
        return absl::UnavailableError(
            absl::StrCat("connection closed: ", udpmsg::CloseReasonName(e.close_reason), ": ",
                         udpmsg::Displayable(e.reason)));
      }
    }
  }
  if (absl::Status s = host->Close(*id, "done"); !s.ok()) return s;
  return host->Flush(absl::Seconds(2));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: echo_client HOST:PORT MESSAGE...\n");
    return 2;
  }
  const absl::Status s = Run(argv[1], std::vector<std::string>(argv + 2, argv + argc));
  if (!s.ok()) {
    std::fprintf(stderr, "echo_client: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
