// A running server under a flood of hostile datagrams: 1,000,000 random,
// truncated and valid-but-spoofable hellos from 200 source addresses (the
// whole 127/8 is loopback). The server must create no state, answer within
// the amplification bound, keep its memory flat and its log quiet, and a
// real member must keep chatting meanwhile.
#include <poll.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "impairment/model.h"
#include "proto/codec.h"
#include "reliable/deterministic_rng.h"
#include "tests/cli/subprocess.h"
#include "udp/datagram_socket.h"
#include "udp/socket_address.h"

namespace udpmsg::testing {
namespace {

constexpr absl::Duration kTimeout = absl::Seconds(30);
constexpr int kSources = 200;
constexpr int kPerSource = 5000;  // 1,000,000 in all

// Resident memory of `pid` in KiB (VmRSS).
int64_t RssKiB(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      std::vector<std::string> parts = absl::StrSplit(line, ' ', absl::SkipWhitespace());
      int64_t kib = 0;
      if (parts.size() >= 2 && absl::SimpleAtoi(parts[1], &kib)) return kib;
    }
  }
  return -1;
}

std::unique_ptr<Subprocess> Udpmsg(std::vector<std::string> args) {
  args.insert(args.begin(), UdpmsgPath());
  absl::StatusOr<std::unique_ptr<Subprocess>> p = Subprocess::Start(args);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *std::move(p) : nullptr;
}

absl::StatusOr<std::string> WaitForLine(Subprocess& p, const std::string& wanted) {
  for (;;) {
    absl::StatusOr<std::string> line = p.ReadStdoutLine(kTimeout);
    if (!line.ok()) return line.status();
    if (*line == wanted) return line;
  }
}

TEST(HostileTest, MillionHostileDatagramsLeaveTheServerUnchanged) {
  auto server = Udpmsg({"chat", "serve", "--port", "0", "--bind", "127.0.0.1"});
  absl::StatusOr<std::string> first = server->ReadStderrLine(kTimeout);
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<int> port = ParseListeningPort(*first);
  ASSERT_TRUE(port.ok()) << port.status();
  const udp::SocketAddress target = udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, *port);

  auto alice = Udpmsg({"chat", "join", absl::StrCat("127.0.0.1:", *port), "--nick", "alice"});
  ASSERT_TRUE(WaitForLine(*alice, "*** alice joined").ok()) << alice->stderr_text();
  const int64_t rss_before = RssKiB(server->pid());
  ASSERT_GT(rss_before, 0);

  // The flood: per source, a mix of random junk, truncated hellos and
  // complete padded hellos (each of which earns at most a small challenge).
  const proto::Codec codec(proto::Codec::Limits{});
  proto::Packet hello;
  hello.hello.emplace();
  hello.hello->max_datagram = proto::kDefaultMaxDatagram;
  reliable::DeterministicRng rng(2026);
  uint64_t sent_bytes = 0;
  uint64_t hello_bytes = 0;
  std::vector<udp::DatagramSocket> sockets;
  for (int s = 0; s < kSources; ++s) {
    const uint32_t ip = (127u << 24) | (1u << 16) | static_cast<uint32_t>(s + 2);
    absl::StatusOr<udp::DatagramSocket> socket = udp::DatagramSocket::Bind(
        udp::SocketAddress::Ipv4(ip, 0), {.non_blocking = true, .receive_buffer_bytes = 1 << 20});
    ASSERT_TRUE(socket.ok()) << socket.status();
    sockets.push_back(*std::move(socket));
  }
  std::vector<std::string> payloads(udp::DatagramSocket::kMaxBatch);
  std::vector<udp::OutgoingDatagram> batch(udp::DatagramSocket::kMaxBatch);
  for (int round = 0; round < kPerSource / 50; ++round) {
    for (int s = 0; s < kSources; ++s) {
      for (int i = 0; i < 50; ++i) {
        std::string& p = payloads[i];
        const uint64_t kind = rng.Uniform(10);
        if (kind < 2) {  // a complete hello: a challenge may come back
          hello.hello->client_connection_id = rng.Next() | 1;
          p = *codec.Encode(hello);
          hello_bytes += p.size();
        } else if (kind < 4) {  // a truncated hello
          hello.hello->client_connection_id = rng.Next() | 1;
          p = codec.Encode(hello)->substr(0, 1 + rng.Uniform(1100));
        } else {  // junk, sometimes with our version byte in front
          p.assign(1 + rng.Uniform(300), '\0');
          for (char& c : p) c = static_cast<char>(rng.Next());
          if (kind == 9) p[0] = 1;
        }
        sent_bytes += p.size();
        batch[i] = udp::OutgoingDatagram{target, udp::AsBytes(p)};
      }
      size_t done = 0;
      while (done < 50) {
        absl::StatusOr<size_t> n =
            sockets[s].SendBatch(absl::MakeConstSpan(batch.data() + done, 50 - done));
        if (n.ok()) {
          done += *n;
        } else {
          ASSERT_TRUE(absl::IsUnavailable(n.status())) << n.status();
          pollfd writable{sockets[s].fd(), POLLOUT, 0};  // our own buffer is full
          ASSERT_EQ(::poll(&writable, 1, 10'000), 1);
        }
      }
    }
  }
  // Replies (challenges) to the spoofable sources: within 3x of the hellos.
  uint64_t reply_bytes = 0;
  std::array<uint8_t, 2048> buffer;
  for (udp::DatagramSocket& s : sockets) {
    for (;;) {
      absl::StatusOr<udp::Datagram> got = s.RecvFrom(absl::MakeSpan(buffer));
      if (!got.ok()) break;
      reply_bytes += got->size;
    }
  }
  EXPECT_GT(reply_bytes, 0u) << "the server answered no hello: did the flood reach it?";
  EXPECT_LE(reply_bytes, 3 * hello_bytes);

  // The real member still chats.
  ASSERT_TRUE(alice->WriteStdin("after the storm\n").ok());
  ASSERT_TRUE(WaitForLine(*alice, "<alice> after the storm").ok()) << alice->stderr_text();
  // Memory flat (no per-source state): within 8 MiB of where it started.
  // Not under ASan/TSan: ASan's quarantine keeps up to 256 MiB of freed
  // memory resident by design (+420 MiB here; +20 MiB with a 4 MiB
  // quarantine), so there the bound only catches gross growth and
  // LeakSanitizer checks for leaks.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  constexpr int64_t kRssSlackKiB = 1024 * 1024;
#else
  constexpr int64_t kRssSlackKiB = 8 * 1024;
#endif
  EXPECT_LT(RssKiB(server->pid()) - rss_before, kRssSlackKiB)
      << "RSS before " << rss_before << " KiB";
  alice->CloseStdin();
  absl::StatusOr<int> code = alice->Wait(kTimeout);
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 0);
  server->Kill(15);
  ASSERT_TRUE(server->Wait(kTimeout).ok());
  // A quiet log: the join, the leave, the shutdown; nothing per datagram.
  std::vector<std::string> log = absl::StrSplit(server->stderr_text(), '\n', absl::SkipEmpty());
  EXPECT_LE(log.size(), 10u) << server->stderr_text();
  (void)sent_bytes;
}

}  // namespace
}  // namespace udpmsg::testing
