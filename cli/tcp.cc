// udpmsg tcp serve / tcp connect: the stream-socket programs, for comparison
// with the datagram ones.
//
// `serve` greets every client with --message and closes the connection,
// until --count clients or SIGINT, SIGTERM or SIGHUP (exit 0). `connect`
// prints what the server sends, ending the line if the server did not. One
// thread, non-blocking sockets and epoll: a client that does not read never
// holds up another, and no child processes are forked (so none can become
// zombies).
#include <signal.h>

#include <array>
#include <cstdio>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/flags.h"
#include "udpmsg/udpmsg.h"

namespace udpmsg::cli {
namespace {

constexpr uint64_t kListenerToken = 0;
constexpr uint64_t kSignalToken = 1;
// Clients being greeted at once; further connections wait in the backlog.
constexpr size_t kMaxClients = 1024;

struct Client {
  StreamSocket socket;
  SocketAddress peer;
  size_t sent = 0;
};

int Serve(const Args& args) {
  if (!args.empty()) return UsageError("tcp serve", "takes no positional arguments");
  absl::StatusOr<uint16_t> port = PortFromFlag();
  if (!port.ok()) return UsageError("tcp serve", port.status().message());
  const int64_t count = absl::GetFlag(FLAGS_count);
  if (count < 0) return UsageError("tcp serve", "--count must be >= 0");
  const std::string message = absl::GetFlag(FLAGS_message);

  absl::StatusOr<std::vector<SocketAddress>> locals =
      BindAddresses(absl::GetFlag(FLAGS_bind), *port, SocketType::kStream);
  if (!locals.ok()) return Fail(locals.status());
  absl::StatusOr<StreamListener> listener =
      StreamListener::Listen(locals->front(), /*backlog=*/64, {.non_blocking = true});
  if (!listener.ok()) return Fail(listener.status());
  absl::StatusOr<SocketAddress> local = listener->LocalAddress();
  if (!local.ok()) return Fail(local.status());
  absl::StatusOr<Poller> poller = Poller::Create();
  if (!poller.ok()) return Fail(poller.status());
  if (absl::Status s = poller->Add(listener->fd(), Poller::kReadable, kListenerToken);
      !s.ok()) {
    return Fail(s);
  }
  // SIGINT, SIGTERM and SIGHUP end the server normally (exit 0), as they
  // end chat serve; blocked before "listening on", so none is missed.
  absl::StatusOr<OwnedFd> signals = SignalFd({SIGINT, SIGTERM, SIGHUP});
  if (!signals.ok()) return Fail(signals.status());
  if (absl::Status s = poller->Add(signals->get(), Poller::kReadable, kSignalToken); !s.ok()) {
    return Fail(s);
  }
  PrintListening(*local);

  absl::flat_hash_map<uint64_t, Client> clients;
  uint64_t next_token = kSignalToken + 1;
  bool stopped = false;
  int64_t served = 0;

  // Sends what is left of the greeting; true when the client is finished
  // (greeted or failed) and can be dropped.
  const auto progress = [&](Client& client) {
    const absl::Span<const uint8_t> rest = AsBytes(message).subspan(client.sent);
    absl::StatusOr<size_t> n = rest.empty() ? absl::StatusOr<size_t>(0) : client.socket.Send(rest);
    if (!n.ok()) {
      if (IsWouldBlock(n.status())) return false;
      std::fprintf(stderr, "udpmsg: %s\n", std::string(n.status().message()).c_str());
      return true;
    }
    client.sent += *n;
    if (client.sent < message.size()) return false;
    client.socket.Shutdown(ShutdownHow::kWrite).IgnoreError();  // peer may be gone
    ++served;
    return true;
  };

  while (!stopped && (count == 0 || served < count)) {
    absl::StatusOr<absl::Span<const Poller::Event>> ready =
        poller->Wait(absl::InfiniteDuration());
    if (!ready.ok()) return Fail(ready.status());
    for (const Poller::Event& event : *ready) {
      if (event.token == kSignalToken) {
        DrainSignals(signals->get());
        stopped = true;
        break;
      }
      if (event.token == kListenerToken) {
        while (clients.size() < kMaxClients) {
          absl::StatusOr<AcceptedStream> accepted =
              listener->Accept(/*non_blocking_client=*/true);
          if (!accepted.ok()) {
            if (!IsWouldBlock(accepted.status())) {
              // EMFILE and friends: report and keep serving the others.
              std::fprintf(stderr, "udpmsg: %s\n",
                           std::string(accepted.status().message()).c_str());
            }
            break;
          }
          std::fprintf(stderr, "connection from %s\n", accepted->peer.ToString().c_str());
          Client client{std::move(accepted->socket), accepted->peer};
          if (progress(client)) continue;
          const uint64_t token = next_token++;
          if (absl::Status s = poller->Add(client.socket.fd(), Poller::kWritable, token);
              !s.ok()) {
            return Fail(s);
          }
          clients.emplace(token, std::move(client));
        }
        continue;
      }
      auto it = clients.find(event.token);
      if (it == clients.end()) continue;
      if (progress(it->second) || event.error) {
        poller->Remove(it->second.socket.fd()).IgnoreError();
        clients.erase(it);
      }
    }
  }
  std::fflush(stdout);
  return kExitOk;
}

int Connect(const Args& args) {
  if (args.size() != 1) return UsageError("tcp connect", "expects exactly one HOST:PORT");
  absl::StatusOr<std::vector<SocketAddress>> peers =
      ResolveDestination(args[0], SocketType::kStream);
  if (!peers.ok()) return AddressError("tcp connect", peers.status());
  absl::StatusOr<StreamSocket> socket = StreamSocket::Connect(*peers);
  if (!socket.ok()) return Fail(socket.status());
  absl::StatusOr<SocketAddress> peer = socket->PeerAddress();
  std::fprintf(stderr, "connected to %s\n", peer.ok() ? peer->ToString().c_str() : args[0].c_str());

  std::array<uint8_t, 16384> buffer;
  uint8_t last = '\n';  // of what was printed; nothing needs no newline
  for (;;) {
    absl::StatusOr<size_t> n = socket->Recv(absl::MakeSpan(buffer));
    if (!n.ok()) return Fail(n.status());
    if (*n == 0) break;
    if (std::fwrite(buffer.data(), 1, *n, stdout) != *n) {
      return Fail(ErrnoStatus(errno, "write to stdout"));
    }
    last = buffer[*n - 1];
  }
  // The greeting ends the line (the shell prompt then starts its own).
  if (last != '\n' && std::fputc('\n', stdout) == EOF) {
    return Fail(ErrnoStatus(errno, "write to stdout"));
  }
  if (std::fflush(stdout) != 0) return Fail(ErrnoStatus(errno, "write to stdout"));
  return kExitOk;
}

}  // namespace

int RunTcp(const Args& args) {
  if (args.empty()) return UsageError("tcp", "expects `serve` or `connect HOST:PORT`");
  const Args rest(args.begin() + 1, args.end());
  if (args[0] == "serve") return Serve(rest);
  if (args[0] == "connect") return Connect(rest);
  return UsageError("tcp", absl::StrCat("unknown mode \"", args[0], "\""));
}

}  // namespace udpmsg::cli
