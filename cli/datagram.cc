// udpmsg send HOST:PORT MESSAGE... and udpmsg listen --port P: plain
// datagrams, one per message, no reliability.
#include <array>
#include <cstdio>
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/transfer.h"
#include "cli/flags.h"
#include "udpmsg/udpmsg.h"

namespace udpmsg::cli {
namespace {


// A socket for the first resolved address whose family this host supports.
absl::StatusOr<std::pair<DatagramSocket, SocketAddress>> OpenFor(
    const std::vector<SocketAddress>& candidates) {
  absl::Status last;
  for (const SocketAddress& peer : candidates) {
    absl::StatusOr<DatagramSocket> socket = DatagramSocket::Open(peer.family(), {});
    if (socket.ok()) return std::make_pair(*std::move(socket), peer);
    last = socket.status();
  }
  return last;
}

}  // namespace

int RunSend(const Args& args) {
  if (absl::GetFlag(FLAGS_reliable)) return RunReliableSend(args);
  if (args.empty()) return UsageError("send", "expects HOST:PORT and then messages (or stdin)");
  absl::StatusOr<std::vector<SocketAddress>> peers =
      ResolveDestination(args[0], SocketType::kDatagram);
  if (!peers.ok()) return AddressError("send", peers.status());
  auto opened = OpenFor(*peers);
  if (!opened.ok()) return Fail(opened.status());
  auto& [socket, peer] = *opened;

  const auto send_one = [&](absl::string_view message) -> absl::Status {
    const size_t limit = peer.family() == AddressFamily::kIpv4 ? kMaxUdpPayloadIpv4
                                                                     : kMaxUdpPayloadIpv6;
    if (message.size() > limit) {
      return absl::InvalidArgumentError(absl::StrCat("message of ", message.size(),
                                                     " bytes exceeds the UDP maximum of ", limit,
                                                     " bytes (use --reliable for large data)"));
    }
    absl::StatusOr<size_t> sent = socket.SendTo(peer, AsBytes(message));
    if (!sent.ok()) return sent.status();
    std::fprintf(stderr, "sent %zu bytes to %s\n", *sent, peer.ToString().c_str());
    return absl::OkStatus();
  };

  if (args.size() > 1) {
    for (size_t i = 1; i < args.size(); ++i) {
      if (absl::Status s = send_one(args[i]); !s.ok()) return Fail(s);
    }
    return kExitOk;
  }
  std::string line;
  while (std::getline(std::cin, line)) {
    if (absl::Status s = send_one(line); !s.ok()) return Fail(s);
  }
  return kExitOk;
}

int RunListen(const Args& args) {
  if (!args.empty()) return UsageError("listen", "takes no positional arguments");
  absl::StatusOr<uint16_t> port = PortFromFlag();
  if (!port.ok()) return UsageError("listen", port.status().message());
  const int64_t count = absl::GetFlag(FLAGS_count);
  if (count < 0) return UsageError("listen", "--count must be >= 0");

  absl::StatusOr<std::vector<SocketAddress>> locals =
      BindAddresses(absl::GetFlag(FLAGS_bind), *port, SocketType::kDatagram);
  if (!locals.ok()) return Fail(locals.status());
  absl::StatusOr<DatagramSocket> socket = DatagramSocket::Bind(locals->front(), {});
  if (!socket.ok()) return Fail(socket.status());
  absl::StatusOr<SocketAddress> local = socket->LocalAddress();
  if (!local.ok()) return Fail(local.status());
  PrintListening(*local);

  std::array<uint8_t, kMaxUdpPayloadIpv6> buffer;
  for (int64_t received = 0; count == 0 || received < count; ++received) {
    absl::StatusOr<Datagram> got = socket->RecvFrom(absl::MakeSpan(buffer));
    if (!got.ok()) return Fail(got.status());
    const absl::string_view payload(reinterpret_cast<const char*>(buffer.data()), got->size);
    std::printf("%s: %s\n", got->from.ToString().c_str(), Printable(payload).c_str());
    std::fflush(stdout);
  }
  return kExitOk;
}

}  // namespace udpmsg::cli
