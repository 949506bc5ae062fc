// udpmsg demo: a self-contained tour on loopback. It sends datagrams over
// IPv4 and IPv6, a batch of 64 with sendmmsg/recvmmsg, and a TCP greeting,
// then runs messages, a chat (the chat libraries: a server core and two
// client cores) and a transfer (the transfer libraries' sender and receiver)
// through an impaired link (demo_link.cc), and checks that everything
// reliable arrived intact.
#include <poll.h>

#include <array>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/demo_link.h"
#include "cli/flags.h"
#include "absl/flags/flag.h"
#include "udpmsg/udpmsg.h"

namespace udpmsg::cli {
namespace {

constexpr int kWaitMs = 2000;

absl::Status WaitReadable(int fd, absl::string_view what) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, kWaitMs) != 1) {
    return absl::DeadlineExceededError(absl::StrCat("timed out waiting for ", what));
  }
  return absl::OkStatus();
}

// One datagram each way between two sockets of `family`.
absl::Status PingPong(AddressFamily family) {
  absl::StatusOr<DatagramSocket> a =
      DatagramSocket::Bind(SocketAddress::Loopback(family, 0), {});
  if (!a.ok()) return a.status();
  absl::StatusOr<DatagramSocket> b =
      DatagramSocket::Bind(SocketAddress::Loopback(family, 0), {});
  if (!b.ok()) return b.status();
  const SocketAddress b_addr = *b->LocalAddress();
  const std::string ping = absl::StrCat("ping over ", FamilyName(family));
  absl::StatusOr<size_t> sent = a->SendTo(b_addr, AsBytes(ping));
  if (!sent.ok()) return sent.status();
  if (absl::Status s = WaitReadable(b->fd(), "ping"); !s.ok()) return s;
  std::array<uint8_t, 1500> buffer;
  absl::StatusOr<Datagram> got = b->RecvFrom(absl::MakeSpan(buffer));
  if (!got.ok()) return got.status();
  const std::string text(reinterpret_cast<char*>(buffer.data()), got->size);
  // Any local process may send to the port first: show the payload escaped.
  std::printf("  %-5s %s -> %s  \"%s\" (%zu bytes)\n", std::string(FamilyName(family)).c_str(),
              got->from.ToString().c_str(), b_addr.ToString().c_str(),
              Displayable(text).c_str(), got->size);
  if (text != ping) return absl::DataLossError("ping payload changed in flight");
  return absl::OkStatus();
}

absl::Status Batch() {
  constexpr size_t kCount = 64;
  const auto loopback = SocketAddress::Loopback(AddressFamily::kIpv4, 0);
  absl::StatusOr<DatagramSocket> a = DatagramSocket::Bind(loopback, {});
  if (!a.ok()) return a.status();
  absl::StatusOr<DatagramSocket> b =
      DatagramSocket::Bind(loopback, {.non_blocking = true, .receive_buffer_bytes = 1 << 20});
  if (!b.ok()) return b.status();
  std::vector<std::string> payloads;
  std::vector<OutgoingDatagram> batch;
  for (size_t i = 0; i < kCount; ++i) payloads.push_back(absl::StrCat("message ", i));
  for (const std::string& p : payloads) batch.push_back({*b->LocalAddress(), AsBytes(p)});

  const absl::Time start = absl::Now();
  absl::StatusOr<size_t> sent = a->SendBatch(batch);
  if (!sent.ok()) return sent.status();
  std::vector<std::array<uint8_t, 256>> buffers(kCount);
  std::vector<ReceiveSlot> slots(kCount);
  for (size_t i = 0; i < kCount; ++i) slots[i].buffer = absl::MakeSpan(buffers[i]);
  size_t received = 0;
  size_t calls = 0;
  while (received < *sent) {
    if (absl::Status s = WaitReadable(b->fd(), "batch"); !s.ok()) return s;
    absl::StatusOr<size_t> n = b->RecvBatch(absl::MakeSpan(slots).subspan(received));
    if (!n.ok()) return n.status();
    received += *n;
    ++calls;
  }
  const absl::Duration elapsed = absl::Now() - start;
  size_t intact = 0;
  for (size_t i = 0; i < received; ++i) {
    intact += std::string(reinterpret_cast<char*>(buffers[i].data()), slots[i].size) == payloads[i];
  }
  std::printf("  batch: %zu datagrams in 1 sendmmsg call, received with %zu recvmmsg call(s), "
              "%zu/%zu intact and in order, %s\n",
              *sent, calls, intact, kCount, absl::FormatDuration(elapsed).c_str());
  if (intact != kCount) return absl::DataLossError("batch datagrams lost or changed on loopback");
  return absl::OkStatus();
}

absl::Status TcpGreeting() {
  absl::StatusOr<StreamListener> listener = StreamListener::Listen(
      SocketAddress::Loopback(AddressFamily::kIpv4, 0), 4, {});
  if (!listener.ok()) return listener.status();
  absl::StatusOr<StreamSocket> client = StreamSocket::Connect({*listener->LocalAddress()});
  if (!client.ok()) return client.status();
  absl::StatusOr<AcceptedStream> server = listener->Accept();
  if (!server.ok()) return server.status();
  if (absl::Status s = server->socket.SendAll(AsBytes("Hello, world!")); !s.ok()) return s;
  if (absl::Status s = server->socket.Shutdown(ShutdownHow::kWrite); !s.ok()) return s;
  std::string text;
  std::array<uint8_t, 256> buffer;
  for (;;) {
    absl::StatusOr<size_t> n = client->Recv(absl::MakeSpan(buffer));
    if (!n.ok()) return n.status();
    if (*n == 0) break;
    text.append(reinterpret_cast<char*>(buffer.data()), *n);
  }
  std::printf("  tcp:  %s greeted %s: \"%s\"\n", listener->LocalAddress()->ToString().c_str(),
              server->peer.ToString().c_str(), Displayable(text).c_str());
  if (text != "Hello, world!") return absl::DataLossError("TCP greeting changed in flight");
  return absl::OkStatus();
}

}  // namespace

int RunDemo(const Args& args) {
  if (!args.empty()) return UsageError("demo", "takes no arguments");
  std::printf("udpmsg demo (loopback)\n");
  std::printf("datagrams:\n");
  for (AddressFamily family : {AddressFamily::kIpv4, AddressFamily::kIpv6}) {
    if (absl::Status s = PingPong(family); !s.ok()) return Fail(s);
  }
  if (absl::Status s = Batch(); !s.ok()) return Fail(s);
  std::printf("stream (for comparison):\n");
  if (absl::Status s = TcpGreeting(); !s.ok()) return Fail(s);
  std::fflush(stdout);
  if (absl::Status s = RunLinkDemo(absl::GetFlag(FLAGS_seed)); !s.ok()) return Fail(s);
  std::printf("\nall checks passed\n");
  return kExitOk;
}

}  // namespace udpmsg::cli
