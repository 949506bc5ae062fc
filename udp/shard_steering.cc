#include "udp/shard_steering.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>

#include <array>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "udp/errno_status.h"
#include "udp/socket_options.h"

namespace udpmsg::udp {
namespace {

// Wire facts (proto/frames.h, proto/codec.h) the program relies on.
constexpr uint32_t kPlainVersion = 1;
constexpr uint32_t kSealedVersion = 2;
constexpr uint32_t kConnectionIdTag = 0x09;  // field 1, wire type 1 (fixed64)
constexpr uint32_t kPlainIdLowByte = 2;      // little-endian id after the tag
constexpr uint32_t kSealedIdLowByte = 8;     // big-endian id after the version

sock_filter Stmt(uint16_t code, uint32_t k) { return sock_filter{code, 0, 0, k}; }
sock_filter Jump(uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) {
  return sock_filter{code, jt, jf, k};
}

// How long BindShardGroup waits for its probes on loopback.
constexpr absl::Duration kProbeWait = absl::Seconds(1);
// Probe: a sealed-looking datagram for shard i, then this magic and a nonce.
constexpr char kProbeMagic[8] = {'u', 'd', 'p', 'm', 's', 'g', 'S', 'H'};
constexpr size_t kProbeBytes = 1 + 8 + sizeof(kProbeMagic) + 8;

std::array<uint8_t, kProbeBytes> Probe(int shard, uint64_t nonce) {
  std::array<uint8_t, kProbeBytes> p{};
  p[0] = kSealedVersion;
  // Connection id bytes 1..8, big-endian; only the low byte (8) matters.
  p[kSealedIdLowByte] = static_cast<uint8_t>(shard);
  std::memcpy(&p[9], kProbeMagic, sizeof(kProbeMagic));
  std::memcpy(&p[9 + sizeof(kProbeMagic)], &nonce, sizeof(nonce));
  return p;
}

// The shard a received probe was meant for, or -1 when `d` is no probe of
// ours (stray traffic at start-up: dropped).
int ProbeShard(absl::Span<const uint8_t> d, uint64_t nonce) {
  if (d.size() != kProbeBytes || d[0] != kSealedVersion) return -1;
  if (std::memcmp(&d[9], kProbeMagic, sizeof(kProbeMagic)) != 0) return -1;
  uint64_t got = 0;
  std::memcpy(&got, &d[9 + sizeof(kProbeMagic)], sizeof(got));
  return got == nonce ? d[kSealedIdLowByte] : -1;
}

absl::Status Detach(const DatagramSocket& socket) {
  return SetIntOption(socket.fd(), SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, 0,
                      "SO_DETACH_REUSEPORT_BPF");
}

// Sends one probe per shard to the group and checks each comes back on its
// socket. OK when all did; otherwise why not.
absl::Status CheckNumbering(const std::vector<DatagramSocket>& sockets) {
  absl::StatusOr<SocketAddress> local = sockets[0].LocalAddress();
  if (!local.ok()) return local.status();
  std::vector<SocketAddress> targets;
  if (local->IsAny()) {
    targets.push_back(SocketAddress::Loopback(local->family(), local->port()));
    if (local->family() == AddressFamily::kIpv6) {
      targets.push_back(SocketAddress::Loopback(AddressFamily::kIpv4, local->port()));
    }
  } else {
    targets.push_back(local->Unmapped());
  }
  uint64_t nonce = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())) ^
                   (reinterpret_cast<uintptr_t>(&sockets) << 16);
  absl::Status sent = absl::UnavailableError("no probe target");
  for (const SocketAddress& target : targets) {
    absl::StatusOr<DatagramSocket> prober =
        DatagramSocket::Bind(SocketAddress::Any(target.family(), 0), {});
    if (!prober.ok()) {
      sent = prober.status();
      continue;
    }
    sent = absl::OkStatus();
    for (size_t i = 0; i < sockets.size() && sent.ok(); ++i) {
      const std::array<uint8_t, kProbeBytes> p = Probe(static_cast<int>(i), nonce);
      absl::StatusOr<size_t> n = prober->SendTo(target, absl::MakeConstSpan(p));
      if (!n.ok()) sent = n.status();
    }
    if (sent.ok()) break;
  }
  if (!sent.ok()) return sent;
  std::vector<bool> seen(sockets.size(), false);
  size_t left = sockets.size();
  std::vector<pollfd> fds(sockets.size());
  for (size_t i = 0; i < sockets.size(); ++i) fds[i] = pollfd{sockets[i].fd(), POLLIN, 0};
  const absl::Time deadline = absl::Now() + kProbeWait;
  std::array<uint8_t, 64> buffer;
  while (left > 0) {
    const absl::Duration wait = deadline - absl::Now();
    if (wait <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(absl::StrCat(
          left, " of ", sockets.size(), " steering probes did not arrive within ",
          absl::FormatDuration(kProbeWait)));
    }
    const int ready = ::poll(fds.data(), fds.size(),
                             static_cast<int>(absl::ToInt64Milliseconds(wait)) + 1);
    if (ready < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "poll (steering probes)");
    }
    for (size_t j = 0; j < sockets.size(); ++j) {
      if ((fds[j].revents & POLLIN) == 0) continue;
      for (;;) {
        const ssize_t n = ::recv(sockets[j].fd(), buffer.data(), buffer.size(), MSG_DONTWAIT);
        if (n < 0) break;  // drained (EAGAIN), or an ICMP report: nothing of ours
        const int shard =
            ProbeShard(absl::MakeConstSpan(buffer.data(), static_cast<size_t>(n)), nonce);
        if (shard < 0) continue;
        if (static_cast<size_t>(shard) != j) {
          return absl::FailedPreconditionError(absl::StrCat(
              "the probe for shard ", shard, " arrived at socket ", j,
              " of the reuseport group (another socket holds a place in it?)"));
        }
        if (!seen[j]) {
          seen[j] = true;
          --left;
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

int ShardByteOf(absl::string_view d) {
  if (d.size() > kPlainIdLowByte && static_cast<uint8_t>(d[0]) == kPlainVersion &&
      static_cast<uint8_t>(d[1]) == kConnectionIdTag) {
    return static_cast<uint8_t>(d[kPlainIdLowByte]);
  }
  if (d.size() > kSealedIdLowByte && static_cast<uint8_t>(d[0]) == kSealedVersion) {
    return static_cast<uint8_t>(d[kSealedIdLowByte]);
  }
  return -1;
}

std::vector<sock_filter> ShardSteeringProgram(int shard_count) {
  constexpr uint16_t kLdLen = BPF_LD | BPF_W | BPF_LEN;
  constexpr uint16_t kLdb = BPF_LD | BPF_B | BPF_ABS;
  constexpr uint16_t kJeq = BPF_JMP | BPF_JEQ | BPF_K;
  constexpr uint16_t kJge = BPF_JMP | BPF_JGE | BPF_K;
  // Instruction indices; a conditional jump's offsets count from the next
  // instruction.
  constexpr uint8_t kPlainCheck = 8;   // "jeq #2" of the sealed branch
  constexpr uint8_t kRange = 12;       // "jge #count"
  constexpr uint8_t kFallback = 14;    // "ret #kNoShard"
  auto to = [](uint8_t from, uint8_t target) { return static_cast<uint8_t>(target - from - 1); };
  std::vector<sock_filter> p = {
      /* 0 */ Stmt(kLdLen, 0),
      /* 1 */ Jump(kJge, 3, 0, to(1, kFallback)),
      /* 2 */ Stmt(kLdb, 0),
      /* 3 */ Jump(kJeq, kPlainVersion, 0, to(3, kPlainCheck)),
      /* 4 */ Stmt(kLdb, 1),
      /* 5 */ Jump(kJeq, kConnectionIdTag, 0, to(5, kFallback)),
      /* 6 */ Stmt(kLdb, kPlainIdLowByte),
      /* 7 */ Stmt(BPF_JMP | BPF_JA, to(7, kRange)),
      /* 8 */ Jump(kJeq, kSealedVersion, 0, to(8, kFallback)),
      /* 9 */ Stmt(kLdLen, 0),
      /* 10 */ Jump(kJge, kSealedIdLowByte + 1, 0, to(10, kFallback)),
      /* 11 */ Stmt(kLdb, kSealedIdLowByte),
      /* 12 */ Jump(kJge, static_cast<uint32_t>(shard_count), to(12, kFallback), 0),
      /* 13 */ Stmt(BPF_RET | BPF_A, 0),
      /* 14 */ Stmt(BPF_RET | BPF_K, kNoShard),
  };
  return p;
}

absl::StatusOr<uint32_t> RunSteeringProgram(absl::Span<const sock_filter> program,
                                            absl::Span<const uint8_t> datagram) {
  uint32_t a = 0;
  for (size_t pc = 0; pc < program.size(); ++pc) {
    const sock_filter& f = program[pc];
    size_t target = pc;  // jumps: offsets from the next instruction
    switch (f.code) {
      case BPF_LD | BPF_W | BPF_LEN:
        a = static_cast<uint32_t>(datagram.size());
        continue;
      case BPF_LD | BPF_B | BPF_ABS:
        if (f.k >= datagram.size()) return 0;  // as the kernel: abort with 0
        a = datagram[f.k];
        continue;
      case BPF_JMP | BPF_JA:
        target = pc + f.k;
        break;
      case BPF_JMP | BPF_JEQ | BPF_K:
        target = pc + (a == f.k ? f.jt : f.jf);
        break;
      case BPF_JMP | BPF_JGE | BPF_K:
        target = pc + (a >= f.k ? f.jt : f.jf);
        break;
      case BPF_RET | BPF_A:
        return a;
      case BPF_RET | BPF_K:
        return f.k;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("steering program: unsupported instruction ", f.code, " at ", pc));
    }
    if (target + 1 >= program.size()) {
      return absl::InvalidArgumentError(absl::StrCat("steering program: jump out at ", pc));
    }
    pc = target;  // the loop's ++pc steps past it
  }
  return absl::InvalidArgumentError("steering program: ran off the end");
}

absl::Status AttachSteeringProgram(const DatagramSocket& socket,
                                   absl::Span<const sock_filter> program) {
  sock_fprog fprog{static_cast<unsigned short>(program.size()),
                   const_cast<sock_filter*>(program.data())};
  if (::setsockopt(socket.fd(), SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &fprog, sizeof(fprog)) !=
      0) {
    return ErrnoStatus(errno, "setsockopt SO_ATTACH_REUSEPORT_CBPF");
  }
  return absl::OkStatus();
}

absl::StatusOr<ShardGroup> BindShardGroup(const SocketAddress& local,
                                          const DatagramSocket::Options& options, int count) {
  if (count < 1 || count > kMaxShards) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard count ", count, " outside [1, ", kMaxShards, "]"));
  }
  ShardGroup group;
  if (count == 1) {
    absl::StatusOr<DatagramSocket> socket = DatagramSocket::Bind(local, options);
    if (!socket.ok()) return socket.status();
    group.sockets.push_back(*std::move(socket));
    return group;
  }
  DatagramSocket::Options o = options;
  o.reuse_port = true;
  SocketAddress address = local;
  for (int i = 0; i < count; ++i) {
    absl::StatusOr<DatagramSocket> socket = DatagramSocket::Bind(address, o);
    if (!socket.ok()) return socket.status();
    if (i == 0) {
      absl::StatusOr<SocketAddress> bound = socket->LocalAddress();
      if (!bound.ok()) return bound.status();
      address.set_port(bound->port());
    }
    group.sockets.push_back(*std::move(socket));
  }
  const std::vector<sock_filter> program = ShardSteeringProgram(count);
  if (absl::Status s = AttachSteeringProgram(group.sockets[0], program); !s.ok()) {
    group.steering_error = absl::StrCat(s.message(), " (the kernel's 4-tuple hash picks shards)");
    return group;
  }
  if (absl::Status s = CheckNumbering(group.sockets); !s.ok()) {
    group.steering_error = absl::StrCat("steering check failed: ", s.message(),
                                        "; detached (the kernel's 4-tuple hash picks shards)");
    if (absl::Status d = Detach(group.sockets[0]); !d.ok()) {
      // A program that cannot be detached sends connections to the wrong
      // shards: refuse to serve.
      return absl::InternalError(absl::StrCat(group.steering_error, "; ", d.message()));
    }
    return group;
  }
  group.steered = true;
  return group;
}

}  // namespace udpmsg::udp
