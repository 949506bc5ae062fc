// udpmsg bench rate: how many 64-byte messages per second one sender thread
// gets to one receiver thread over loopback IPv4, and the CPU each costs.
//
// Four transports, each run kRuns times (the median run by msgs/s is shown):
//   raw sendto/recvfrom   blocking sockets, one syscall per datagram
//   raw sendmmsg/recvmmsg batches of 64 datagrams per syscall
//   udpmsg unreliable     reliable::Runtime, DeliveryMode::kUnreliable
//   udpmsg reliable       reliable::Runtime, kReliableOrdered (counted when
//                         delivered; all must arrive)
//
// Figures: msgs/s = messages received / (last receive - first send);
// ns CPU/msg = user+sys time of both threads (getrusage RUSAGE_THREAD) /
// messages received; lost = sent - received.
//
// Raw UDP has no flow control: a sender that outruns its receiver on
// loopback just overflows the receive buffer. So the raw receive socket gets
// a big SO_RCVBUF, and the raw sender stays at most kRawWindow messages ahead
// of the receiver through a shared in-process counter (no syscalls; it sleeps
// when it is that far ahead). udpmsg senders keep their send queue under
// kQueueHighWater and otherwise rely on udpmsg's own congestion control.
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "cli/bench.h"
#include "cli/flags.h"
#include "reliable/runtime.h"
#include "udp/datagram_socket.h"
#include "udp/errno_status.h"
#include "udp/socket_address.h"

namespace udpmsg::cli {
namespace {

using reliable::DeliveryMode;
using reliable::Event;
using reliable::Runtime;

constexpr size_t kPayloadBytes = 64;
constexpr int kRuns = 3;
constexpr size_t kBatch = udp::DatagramSocket::kMaxBatch;  // 64
// Raw senders run at most this many messages ahead of their receiver.
constexpr int64_t kRawWindow = 4096;
// Requested SO_RCVBUF of the raw receive socket (SO_RCVBUFFORCE when allowed,
// else capped by net.core.rmem_max). Holds kRawWindow small datagrams.
constexpr int kRawReceiveBuffer = 32 << 20;
// udpmsg senders wait for acknowledgements above this many queued bytes.
constexpr uint64_t kQueueHighWater = 1 << 20;
constexpr uint64_t kQueueLowWater = kQueueHighWater / 2;
// After the sender finished, a receiver that sees nothing for this long stops.
constexpr absl::Duration kIdle = absl::Milliseconds(50);
// A run that takes longer than this failed.
constexpr absl::Duration kRunDeadline = absl::Seconds(120);

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// User + system CPU time of the calling thread.
int64_t ThreadCpuNs() {
  rusage ru;
  if (getrusage(RUSAGE_THREAD, &ru) != 0) return 0;
  const auto ns = [](const timeval& tv) {
    return static_cast<int64_t>(tv.tv_sec) * 1000000000 + static_cast<int64_t>(tv.tv_usec) * 1000;
  };
  return ns(ru.ru_utime) + ns(ru.ru_stime);
}

struct RunResult {
  int64_t sent = 0;
  int64_t received = 0;
  int64_t wall_ns = 0;  // first send to last receive
  int64_t cpu_ns = 0;   // sender + receiver threads
  int64_t datagrams = 0;       // sent by the sender (udpmsg: packets incl. acks)
  int64_t back_datagrams = 0;  // sent by the receiver (udpmsg: acks)
  double rate() const {
    return wall_ns > 0 ? static_cast<double>(received) * 1e9 / static_cast<double>(wall_ns) : 0;
  }
  double cpu_per_message() const {
    return received > 0 ? static_cast<double>(cpu_ns) / static_cast<double>(received) : 0;
  }
};

// What the two threads of one run share.
// Over-aligned (cache lines), so always on the heap: ASan's fake stack
// (detect_stack_use_after_return) aligns frames to 32 bytes only, and UBSan
// then rightly reports the misaligned member access.
struct Shared {
  std::atomic<int64_t> start_ns{0};  // just before the first send
  std::atomic<bool> sender_done{false};
  // Published by the raw receivers every kBatch messages (flow control).
  alignas(64) std::atomic<int64_t> received{0};
  alignas(64) std::atomic<bool> failed{false};
  absl::Mutex mu;
  absl::Status error ABSL_GUARDED_BY(mu);

  void Fail(absl::Status s) {
    absl::MutexLock lock(&mu);
    if (error.ok()) error = std::move(s);
    failed.store(true);
  }
};

absl::Status ErrnoError(absl::string_view what) { return udp::ErrnoStatus(errno, what); }

// Opens the raw pair: a receive socket with a big buffer and a 50 ms receive
// timeout (blocking), and a blocking send socket.
struct RawPair {
  udp::DatagramSocket rx;
  udp::DatagramSocket tx;
  udp::SocketAddress to;
  int receive_buffer = 0;  // what the kernel granted
};

absl::StatusOr<RawPair> OpenRawPair() {
  const udp::SocketAddress loopback = udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, 0);
  absl::StatusOr<udp::DatagramSocket> rx = udp::DatagramSocket::Bind(loopback, {});
  if (!rx.ok()) return rx.status();
  int want = kRawReceiveBuffer;
  if (setsockopt(rx->fd(), SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof(want)) != 0) {
    if (absl::Status s = rx->SetReceiveBufferSize(kRawReceiveBuffer); !s.ok()) return s;
  }
  timeval tv{0, static_cast<suseconds_t>(absl::ToInt64Microseconds(kIdle))};
  if (setsockopt(rx->fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0) {
    return ErrnoError("setsockopt SO_RCVTIMEO");
  }
  absl::StatusOr<udp::DatagramSocket> tx = udp::DatagramSocket::Bind(loopback, {});
  if (!tx.ok()) return tx.status();
  absl::StatusOr<udp::SocketAddress> to = rx->LocalAddress();
  if (!to.ok()) return to.status();
  absl::StatusOr<int> granted = rx->ReceiveBufferSize();
  return RawPair{*std::move(rx), *std::move(tx), *to, granted.ok() ? *granted : 0};
}

// Raw senders: wait (sleeping, not spinning) while `sent` is more than
// kRawWindow ahead of what the receiver has published.
void RawFlowControl(Shared& shared, int64_t sent) {
  while (sent - shared.received.load(std::memory_order_acquire) > kRawWindow &&
         !shared.failed.load(std::memory_order_relaxed)) {
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

// Runs `sender` and `receiver` on their own threads; each returns its CPU
// time and the receiver also the time of its last receive.
struct ThreadResult {
  int64_t cpu_ns = 0;
  int64_t count = 0;    // sent / received
  int64_t last_ns = 0;  // receiver: time of the last receive
  int64_t datagrams = 0;  // sender: datagrams sent
};

template <typename Sender, typename Receiver>
absl::StatusOr<RunResult> RunPair(Shared& shared, Sender sender, Receiver receiver) {
  ThreadResult sent;
  ThreadResult got;
  std::thread rx([&] { got = receiver(); });
  std::thread tx([&] {
    sent = sender();
    shared.sender_done.store(true, std::memory_order_release);
  });
  tx.join();
  rx.join();
  {
    absl::MutexLock lock(&shared.mu);
    if (!shared.error.ok()) return shared.error;
  }
  RunResult r;
  r.sent = sent.count;
  r.received = got.count;
  r.wall_ns = got.last_ns - shared.start_ns.load();
  r.cpu_ns = sent.cpu_ns + got.cpu_ns;
  r.datagrams = sent.datagrams > 0 ? sent.datagrams : sent.count;
  r.back_datagrams = got.datagrams;
  if (r.received > r.sent) {
    return absl::InternalError(
        absl::StrCat("received ", r.received, " messages but sent only ", r.sent));
  }
  return r;
}

// 1. sendto / recvfrom, one datagram per syscall.
absl::StatusOr<RunResult> RunRawSendto(int64_t n, int* receive_buffer) {
  absl::StatusOr<RawPair> pair = OpenRawPair();
  if (!pair.ok()) return pair.status();
  *receive_buffer = pair->receive_buffer;
  const std::unique_ptr<Shared> shared_owner = std::make_unique<Shared>();
  Shared& shared = *shared_owner;
  auto sender = [&]() -> ThreadResult {
    std::array<char, kPayloadBytes> payload;
    payload.fill('r');
    const int fd = pair->tx.fd();
    const sockaddr* to = pair->to.data();
    const socklen_t to_len = pair->to.size();
    ThreadResult t;
    const int64_t cpu0 = ThreadCpuNs();
    shared.start_ns.store(NowNs());
    for (int64_t i = 0; i < n; ++i) {
      if ((i & (kBatch - 1)) == 0) RawFlowControl(shared, i);
      while (::sendto(fd, payload.data(), payload.size(), 0, to, to_len) < 0) {
        if (errno == EINTR || errno == ENOBUFS) continue;
        shared.Fail(ErrnoError("sendto"));
        return t;
      }
      ++t.count;
    }
    t.cpu_ns = ThreadCpuNs() - cpu0;
    return t;
  };
  auto receiver = [&]() -> ThreadResult {
    std::array<char, 2048> buffer;
    sockaddr_storage from;
    const int fd = pair->rx.fd();
    ThreadResult t;
    const int64_t cpu0 = ThreadCpuNs();
    const int64_t give_up = NowNs() + absl::ToInt64Nanoseconds(kRunDeadline);
    int64_t idle_since = 0;  // when the socket was last seen empty
    int flags = MSG_DONTWAIT;
    for (;;) {
      const bool done_before = shared.sender_done.load(std::memory_order_acquire);
      socklen_t from_len = sizeof(from);
      const ssize_t got = ::recvfrom(fd, buffer.data(), buffer.size(), flags,
                                     reinterpret_cast<sockaddr*>(&from), &from_len);
      if (got >= 0) {
        flags = MSG_DONTWAIT;
        if ((++t.count & (kBatch - 1)) == 0) shared.received.store(t.count);
        if (t.count == n) {
          t.last_ns = NowNs();
          break;
        }
        continue;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        shared.Fail(ErrnoError("recvfrom"));
        break;
      }
      if (flags == MSG_DONTWAIT) {
        // Empty: the last datagram came just before now. Block (up to kIdle).
        idle_since = NowNs();
        shared.received.store(t.count, std::memory_order_release);
        flags = 0;
        continue;
      }
      // A blocking receive timed out.
      if (done_before) {
        t.last_ns = idle_since;
        break;
      }
      if (NowNs() > give_up) {
        shared.Fail(absl::DeadlineExceededError("raw receiver timed out"));
        break;
      }
    }
    t.cpu_ns = ThreadCpuNs() - cpu0;
    return t;
  };
  return RunPair(shared, sender, receiver);
}

// 2. sendmmsg / recvmmsg, kBatch datagrams per syscall.
absl::StatusOr<RunResult> RunRawMmsg(int64_t n) {
  absl::StatusOr<RawPair> pair = OpenRawPair();
  if (!pair.ok()) return pair.status();
  const std::unique_ptr<Shared> shared_owner = std::make_unique<Shared>();
  Shared& shared = *shared_owner;
  auto sender = [&]() -> ThreadResult {
    std::array<char, kPayloadBytes> payload;
    payload.fill('m');
    iovec iov{payload.data(), payload.size()};
    std::array<mmsghdr, kBatch> msgs;
    for (mmsghdr& m : msgs) {
      std::memset(&m, 0, sizeof(m));
      m.msg_hdr.msg_name = const_cast<sockaddr*>(pair->to.data());
      m.msg_hdr.msg_namelen = pair->to.size();
      m.msg_hdr.msg_iov = &iov;
      m.msg_hdr.msg_iovlen = 1;
    }
    const int fd = pair->tx.fd();
    ThreadResult t;
    const int64_t cpu0 = ThreadCpuNs();
    shared.start_ns.store(NowNs());
    while (t.count < n) {
      RawFlowControl(shared, t.count);
      const unsigned want = static_cast<unsigned>(std::min<int64_t>(kBatch, n - t.count));
      const int sent = ::sendmmsg(fd, msgs.data(), want, 0);
      if (sent < 0) {
        if (errno == EINTR || errno == ENOBUFS) continue;
        shared.Fail(ErrnoError("sendmmsg"));
        return t;
      }
      t.count += sent;
    }
    t.cpu_ns = ThreadCpuNs() - cpu0;
    return t;
  };
  auto receiver = [&]() -> ThreadResult {
    std::vector<char> buffers(kBatch * 2048);
    std::array<iovec, kBatch> iovs;
    std::array<sockaddr_storage, kBatch> from;
    std::array<mmsghdr, kBatch> msgs;
    for (size_t i = 0; i < kBatch; ++i) {
      iovs[i] = iovec{buffers.data() + i * 2048, 2048};
      std::memset(&msgs[i], 0, sizeof(msgs[i]));
      msgs[i].msg_hdr.msg_iov = &iovs[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_hdr.msg_name = &from[i];
    }
    const int fd = pair->rx.fd();
    ThreadResult t;
    const int64_t cpu0 = ThreadCpuNs();
    const int64_t give_up = NowNs() + absl::ToInt64Nanoseconds(kRunDeadline);
    int64_t idle_since = 0;
    int flags = MSG_DONTWAIT;
    for (;;) {
      const bool done_before = shared.sender_done.load(std::memory_order_acquire);
      for (mmsghdr& m : msgs) m.msg_hdr.msg_namelen = sizeof(sockaddr_storage);
      const int got = ::recvmmsg(fd, msgs.data(), kBatch, flags, nullptr);
      if (got > 0) {
        flags = MSG_DONTWAIT;
        t.count += got;
        shared.received.store(t.count, std::memory_order_release);
        if (t.count >= n) {
          t.last_ns = NowNs();
          break;
        }
        continue;
      }
      if (got < 0 && errno == EINTR) continue;
      if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        shared.Fail(ErrnoError("recvmmsg"));
        break;
      }
      if (flags == MSG_DONTWAIT) {
        idle_since = NowNs();
        flags = MSG_WAITFORONE;  // blocks for the first datagram (up to kIdle)
        continue;
      }
      if (done_before) {
        t.last_ns = idle_since;
        break;
      }
      if (NowNs() > give_up) {
        shared.Fail(absl::DeadlineExceededError("raw receiver timed out"));
        break;
      }
    }
    t.cpu_ns = ThreadCpuNs() - cpu0;
    return t;
  };
  return RunPair(shared, sender, receiver);
}

// 3 and 4. udpmsg: a server runtime on the receiver thread, a client runtime
// on the sender thread, messages of `mode` on channel 0.
absl::StatusOr<RunResult> RunUdpmsg(DeliveryMode mode, int64_t n, const std::string& cc) {
  const udp::SocketAddress loopback = udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, 0);
  Runtime::Options server_options;
  server_options.bind = loopback;
  server_options.endpoint.accept_incoming = true;
  server_options.endpoint.connection.congestion = cc;
  absl::StatusOr<std::unique_ptr<Runtime>> server = Runtime::Create(server_options);
  if (!server.ok()) return server.status();
  Runtime::Options client_options;
  client_options.bind = loopback;
  client_options.endpoint.connection.congestion = cc;
  absl::StatusOr<std::unique_ptr<Runtime>> client = Runtime::Create(client_options);
  if (!client.ok()) return client.status();
  Runtime& srv = **server;
  Runtime& cli = **client;
  const udp::SocketAddress to = srv.local_address();

  const std::unique_ptr<Shared> shared_owner = std::make_unique<Shared>();
  Shared& shared = *shared_owner;
  auto sender = [&]() -> ThreadResult {
    ThreadResult t;
    absl::StatusOr<reliable::ConnectionId> id = cli.Connect(to);
    if (!id.ok()) {
      shared.Fail(id.status());
      return t;
    }
    const absl::Time handshake_deadline = absl::Now() + absl::Seconds(10);
    for (bool connected = false; !connected;) {
      if (absl::Now() > handshake_deadline) {
        shared.Fail(absl::DeadlineExceededError("udpmsg handshake did not complete"));
        return t;
      }
      absl::StatusOr<Runtime::PollResult> r = cli.Poll(absl::Milliseconds(100));
      if (!r.ok()) {
        shared.Fail(r.status());
        return t;
      }
      for (const Event& e : r->events) {
        if (e.type == Event::Type::kConnected) connected = true;
        if (e.type == Event::Type::kClosed) {
          shared.Fail(absl::UnavailableError(absl::StrCat("connection closed: ", e.reason)));
          return t;
        }
      }
    }
    const std::string payload(kPayloadBytes, 'u');
    const int64_t cpu0 = ThreadCpuNs();
    shared.start_ns.store(NowNs());
    for (int64_t i = 0; i < n; ++i) {
      for (;;) {
        absl::StatusOr<uint64_t> s = cli.Send(*id, 0, mode, payload);
        if (s.ok()) break;
        if (!absl::IsResourceExhausted(s.status()) || shared.failed.load()) {
          shared.Fail(s.status());
          return t;
        }
        if (absl::Status p = cli.Poll(absl::Milliseconds(1)).status(); !p.ok()) {
          shared.Fail(p);
          return t;
        }
      }
      ++t.count;
      if (cli.endpoint().QueuedBytes(*id) > kQueueHighWater) {
        // Let acknowledgements in (and more data out) until half is gone.
        while (cli.endpoint().QueuedBytes(*id) > kQueueLowWater) {
          if (shared.failed.load()) return t;
          if (absl::Status p = cli.Poll(absl::Microseconds(200)).status(); !p.ok()) {
            shared.Fail(p);
            return t;
          }
        }
      }
    }
    // Everything sent and acknowledged (or, unreliable, declared lost).
    if (absl::Status s = cli.Flush(absl::Seconds(60)); !s.ok()) {
      shared.Fail(s);
      return t;
    }
    t.cpu_ns = ThreadCpuNs() - cpu0;
    if (absl::StatusOr<reliable::ConnectionStats> st = cli.Stats(*id); st.ok()) {
      t.datagrams = static_cast<int64_t>(st->packets_sent);
    }
    return t;
  };
  auto receiver = [&]() -> ThreadResult {
    ThreadResult t;
    const int64_t cpu0 = ThreadCpuNs();
    const absl::Time give_up = absl::Now() + kRunDeadline;
    bool finished = false;
    reliable::ConnectionId connection = 0;
    // Keeps polling after the last message until the sender is done: the
    // sender's Flush waits for our acknowledgements.
    for (;;) {
      const bool done_before = shared.sender_done.load(std::memory_order_acquire);
      if (done_before && finished) break;
      if (shared.failed.load()) break;
      absl::StatusOr<Runtime::PollResult> r = srv.Poll(kIdle);
      if (!r.ok()) {
        shared.Fail(r.status());
        break;
      }
      int64_t messages = 0;
      for (const Event& e : r->events) {
        if (e.type == Event::Type::kMessage) {
          ++messages;
          connection = e.connection;
        }
      }
      if (messages > 0 && !finished) {
        t.count += messages;
        t.last_ns = NowNs();
        if (t.count >= n) {
          finished = true;
          t.cpu_ns = ThreadCpuNs() - cpu0;
        }
      } else if (r->events.empty() && done_before && !finished) {
        finished = true;  // messages were lost (unreliable)
        t.cpu_ns = ThreadCpuNs() - cpu0;
      }
      if (absl::Now() > give_up) {
        shared.Fail(absl::DeadlineExceededError(absl::StrCat(
            "udpmsg receiver timed out with ", t.count, " of ", n, " messages")));
        break;
      }
    }
    if (absl::StatusOr<reliable::ConnectionStats> st = srv.Stats(connection); st.ok()) {
      t.datagrams = static_cast<int64_t>(st->packets_sent);
    }
    return t;
  };
  return RunPair(shared, sender, receiver);
}

// The median of `runs` by msgs/s.
RunResult Median(std::vector<RunResult> runs) {
  std::sort(runs.begin(), runs.end(),
            [](const RunResult& a, const RunResult& b) { return a.rate() < b.rate(); });
  return runs[runs.size() / 2];
}

}  // namespace

absl::Status RunBenchRate(const std::vector<std::string>& args) {
  if (!args.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("bench rate takes no arguments (got \"", args[0], "\")"));
  }
  const int64_t n = absl::GetFlag(FLAGS_bench_messages);
  if (n < 1 || n > 1000000000) {
    return absl::InvalidArgumentError(
        absl::StrCat("--bench_messages ", n, " is out of range (1 to 1000000000)"));
  }
  const std::string cc = absl::AsciiStrToLower(absl::GetFlag(FLAGS_cc));
  if (cc != "newreno" && cc != "bbr") {
    return absl::InvalidArgumentError(
        absl::StrCat("--cc \"", absl::GetFlag(FLAGS_cc), "\" must be newreno or bbr"));
  }

  struct Variant {
    std::string name;
    std::vector<RunResult> runs;
  };
  std::vector<Variant> variants = {{"raw sendto/recvfrom", {}},
                                   {"raw sendmmsg/recvmmsg", {}},
                                   {"udpmsg unreliable", {}},
                                   {"udpmsg reliable", {}}};
  int receive_buffer = 0;
  // Interleaved, so a burst of background load hits every transport alike.
  for (int run = 0; run < kRuns; ++run) {
    for (size_t v = 0; v < variants.size(); ++v) {
      absl::StatusOr<RunResult> r;
      switch (v) {
        case 0:
          r = RunRawSendto(n, &receive_buffer);
          break;
        case 1:
          r = RunRawMmsg(n);
          break;
        case 2:
          r = RunUdpmsg(DeliveryMode::kUnreliable, n, cc);
          break;
        default:
          r = RunUdpmsg(DeliveryMode::kReliableOrdered, n, cc);
          break;
      }
      if (!r.ok()) {
        return absl::Status(r.status().code(),
                            absl::StrCat(variants[v].name, ": ", r.status().message()));
      }
      variants[v].runs.push_back(*r);
    }
  }

  BenchTable table;
  table.title = absl::StrCat("bench rate: ", kPayloadBytes, "-byte messages, ", n,
                             " per run, loopback IPv4, 1 sender + 1 receiver thread");
  table.columns = {"transport", "messages", "msgs/s", "ns CPU/msg", "lost", "ratio vs sendto"};
  const RunResult base = Median(variants[0].runs);
  double unreliable_ratio = 0;
  for (size_t v = 0; v < variants.size(); ++v) {
    const RunResult m = Median(variants[v].runs);
    const double ratio = base.rate() > 0 ? m.rate() / base.rate() : 0;
    if (v == 2) unreliable_ratio = ratio;
    table.rows.push_back({variants[v].name, absl::StrCat(m.sent),
                          absl::StrFormat("%.0f", m.rate()),
                          absl::StrFormat("%.0f", m.cpu_per_message()),
                          absl::StrCat(m.sent - m.received), absl::StrFormat("%.2f", ratio)});
  }
  for (const RunResult& r : variants[3].runs) {
    if (r.received != r.sent) {
      return absl::DataLossError(
          absl::StrCat("udpmsg reliable delivered ", r.received, " of ", r.sent, " messages"));
    }
  }
  const RunResult unreliable = Median(variants[2].runs);
  const RunResult reliable = Median(variants[3].runs);
  const auto per_message = [](int64_t datagrams, const RunResult& r) {
    return r.sent > 0 ? static_cast<double>(datagrams) / static_cast<double>(r.sent) : 0;
  };
  table.notes = {
      absl::StrCat("median of ", kRuns, " runs by msgs/s; msgs/s = received / (last receive - "
                   "first send); ns CPU/msg = user+sys CPU of both threads / received; "
                   "messages = sent, lost = sent - received"),
      absl::StrCat("raw: blocking sockets, SO_RCVBUF ", receive_buffer >> 10,
                   " KiB granted; the raw sender stays <= ", kRawWindow,
                   " messages ahead of the receiver (shared counter, no syscalls)"),
      absl::StrCat("udpmsg: reliable::Runtime, channel 0, --cc ", cc,
                   ", sender waits for acks above ", kQueueHighWater >> 10,
                   " KiB queued; reliable counts delivered messages"),
      absl::StrFormat("udpmsg datagrams per message sent (data / acks back): unreliable "
                      "%.2f / %.2f, reliable %.2f / %.2f (raw: 1 / 0)",
                      per_message(unreliable.datagrams, unreliable),
                      per_message(unreliable.back_datagrams, unreliable),
                      per_message(reliable.datagrams, reliable),
                      per_message(reliable.back_datagrams, reliable)),
      absl::StrFormat("target: udpmsg unreliable >= 80%% of raw sendto/recvfrom msgs/s: "
                      "%.0f%% -> %s",
                      unreliable_ratio * 100, unreliable_ratio >= 0.8 ? "met" : "NOT met"),
  };
  PrintTable(table);
  return absl::OkStatus();
}

}  // namespace udpmsg::cli
