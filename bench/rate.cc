#include "bench/rate.h"

#include <sys/resource.h>
#include <sys/time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/transports.h"

namespace udpmsg::bench {
namespace {

constexpr size_t kPayloadBytes = 64;
constexpr int kRateRuns = 3;
constexpr int64_t kBatch = RawUdpTransport::kBatch;
// Senders of unpaced transports run at most this many messages ahead.
constexpr int64_t kRawWindow = 4096;
// SO_RCVBUF asked for the raw receiver: holds kRawWindow small datagrams.
constexpr int kRawReceiveBuffer = 32 << 20;
// Paced senders wait for acknowledgements above this many queued bytes.
constexpr uint64_t kQueueHighWater = 1 << 20;
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
  int64_t wall_ns = 0;         // first send to last receive
  int64_t cpu_ns = 0;          // sender + receiver threads
  int64_t datagrams = 0;       // sent by the sender (udpmsg: packets)
  int64_t back_datagrams = 0;  // sent by the receiver (udpmsg: acks)
  int64_t receive_buffer = 0;  // the receiver's SO_RCVBUF (raw)
  double rate() const {
    return wall_ns > 0 ? static_cast<double>(received) * 1e9 / static_cast<double>(wall_ns) : 0;
  }
  double cpu_per_message() const {
    return received > 0 ? static_cast<double>(cpu_ns) / static_cast<double>(received) : 0;
  }
};

// What the two threads of one run share. Over-aligned (cache lines), so
// always on the heap: ASan's fake stack aligns frames to 32 bytes only.
struct Shared {
  std::atomic<int64_t> start_ns{0};  // just before the first send
  std::atomic<bool> sender_done{false};
  alignas(64) std::atomic<int64_t> received{0};  // published by the receiver
  alignas(64) std::atomic<bool> failed{false};
  absl::Mutex mu;
  absl::Status error ABSL_GUARDED_BY(mu);

  void Fail(absl::Status s) {
    absl::MutexLock lock(&mu);
    if (error.ok()) error = std::move(s);
    failed.store(true);
  }
};

// Counts what arrives (and drops it).
class Counter final : public Transport::Handler {
 public:
  void OnConnected(PeerId p, const std::string&) override { peer = p; }
  void OnReceived(PeerId p, absl::string_view) override {
    peer = p;
    ++count;
  }
  PeerId peer = 0;
  int64_t count = 0;
};

struct ThreadResult {
  int64_t cpu_ns = 0;
  int64_t count = 0;      // sent / received
  int64_t last_ns = 0;    // receiver: time of the last receive
  int64_t datagrams = 0;  // datagrams sent
  int64_t receive_buffer = 0;
};

ThreadResult Sender(Transport& t, const udp::SocketAddress& to, int64_t n, Shared& shared) {
  ThreadResult r;
  absl::StatusOr<PeerId> peer = t.Connect({to}, absl::Seconds(10));
  if (!peer.ok()) {
    shared.Fail(peer.status());
    return r;
  }
  const std::string payload(kPayloadBytes, 'u');
  Counter ignore;
  const int64_t cpu0 = ThreadCpuNs();
  shared.start_ns.store(NowNs());
  for (int64_t i = 0; i < n; ++i) {
    if (!t.paced() && i % kBatch == 0) {
      // Stay at most kRawWindow ahead of the receiver (sleeping, not spinning).
      while (i - shared.received.load(std::memory_order_acquire) > kRawWindow &&
             !shared.failed.load(std::memory_order_relaxed)) {
        std::this_thread::sleep_for(std::chrono::microseconds(20));
      }
    }
    for (;;) {
      absl::Status s = t.Send(*peer, payload);
      if (s.ok()) break;
      if (!absl::IsResourceExhausted(s) || shared.failed.load()) {
        shared.Fail(s);
        return r;
      }
      if (absl::Status p = t.Poll(absl::Milliseconds(1), ignore); !p.ok()) {
        shared.Fail(p);
        return r;
      }
    }
    ++r.count;
    if (t.paced() && t.QueuedBytes(*peer) > kQueueHighWater) {
      // Let acknowledgements in (and more data out) until half is gone.
      while (t.QueuedBytes(*peer) > kQueueHighWater / 2) {
        if (shared.failed.load()) return r;
        if (absl::Status p = t.Poll(absl::Microseconds(200), ignore); !p.ok()) {
          shared.Fail(p);
          return r;
        }
      }
    }
  }
  // Everything sent and acknowledged (or, unreliable, declared lost).
  if (absl::Status s = t.Drain(absl::Seconds(60)); !s.ok()) {
    shared.Fail(s);
    return r;
  }
  r.cpu_ns = ThreadCpuNs() - cpu0;
  if (absl::StatusOr<TransportStats> st = t.Stats(*peer); st.ok()) {
    r.datagrams = st->datagrams_sent;
  }
  return r;
}

ThreadResult Receiver(Transport& t, int64_t n, Shared& shared) {
  ThreadResult r;
  Counter counter;
  const int64_t cpu0 = ThreadCpuNs();
  const absl::Time give_up = absl::Now() + kRunDeadline;
  bool finished = false;
  // Keeps polling after the last message until the sender is done: a paced
  // sender's Drain waits for our acknowledgements.
  for (;;) {
    const bool done_before = shared.sender_done.load(std::memory_order_acquire);
    if ((done_before && finished) || shared.failed.load()) break;
    const int64_t before = counter.count;
    if (absl::Status s = t.Poll(kIdle, counter); !s.ok()) {
      shared.Fail(s);
      break;
    }
    shared.received.store(counter.count, std::memory_order_release);
    if (counter.count > before && !finished) {
      r.count = counter.count;
      r.last_ns = NowNs();
      if (r.count >= n) {
        finished = true;
        r.cpu_ns = ThreadCpuNs() - cpu0;
      }
    } else if (counter.count == before && done_before && !finished) {
      finished = true;  // messages were lost
      r.cpu_ns = ThreadCpuNs() - cpu0;
    }
    if (absl::Now() > give_up) {
      shared.Fail(absl::DeadlineExceededError(absl::StrCat(
          t.name(), " receiver timed out with ", r.count, " of ", n, " messages")));
      break;
    }
  }
  if (absl::StatusOr<TransportStats> st = t.Stats(counter.peer); st.ok()) {
    r.datagrams = std::max<int64_t>(0, st->datagrams_sent);
    r.receive_buffer = st->receive_buffer;
  }
  return r;
}

absl::StatusOr<RunResult> RunOnce(const TransportSpec& spec, int64_t n) {
  const udp::SocketAddress loopback = udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, 0);
  absl::StatusOr<std::unique_ptr<Transport>> rx = MakeTransport(spec, loopback, true);
  if (!rx.ok()) return rx.status();
  absl::StatusOr<std::unique_ptr<Transport>> tx = MakeTransport(spec, loopback, false);
  if (!tx.ok()) return tx.status();
  const udp::SocketAddress to = (*rx)->local_address();
  const std::unique_ptr<Shared> shared = std::make_unique<Shared>();
  ThreadResult sent;
  ThreadResult got;
  std::thread receiver([&] { got = Receiver(**rx, n, *shared); });
  std::thread sender([&] {
    sent = Sender(**tx, to, n, *shared);
    shared->sender_done.store(true, std::memory_order_release);
  });
  sender.join();
  receiver.join();
  {
    absl::MutexLock lock(&shared->mu);
    if (!shared->error.ok()) return shared->error;
  }
  RunResult r;
  r.sent = sent.count;
  r.received = got.count;
  r.wall_ns = got.last_ns - shared->start_ns.load();
  r.cpu_ns = sent.cpu_ns + got.cpu_ns;
  r.datagrams = sent.datagrams > 0 ? sent.datagrams : sent.count;
  r.back_datagrams = got.datagrams;
  r.receive_buffer = got.receive_buffer;
  if (r.received > r.sent) {
    return absl::InternalError(
        absl::StrCat("received ", r.received, " messages but sent only ", r.sent));
  }
  return r;
}

// The median of `runs` by msgs/s.
RunResult Median(std::vector<RunResult> runs) {
  std::sort(runs.begin(), runs.end(),
            [](const RunResult& a, const RunResult& b) { return a.rate() < b.rate(); });
  return runs[runs.size() / 2];
}

}  // namespace

absl::Status RunRate(const RateConfig& c) {
  struct Variant {
    std::string name;
    TransportSpec spec;
    std::vector<RunResult> runs;
  };
  TransportSpec raw{.kind = TransportKind::kRawUdp};
  raw.raw.drop_when_full = false;
  raw.raw.receive_buffer = kRawReceiveBuffer;
  TransportSpec mmsg = raw;
  mmsg.raw.batch = true;
  TransportSpec unreliable{.kind = TransportKind::kUdpmsg};
  unreliable.udpmsg.congestion = c.cc;
  unreliable.udpmsg.delivery = UdpmsgTransport::Delivery::kUnreliable;
  TransportSpec reliable = unreliable;
  reliable.udpmsg.delivery = UdpmsgTransport::Delivery::kReliable;
  std::vector<Variant> variants = {{"raw sendto/recvfrom", raw, {}},
                                   {"raw sendmmsg/recvmmsg", mmsg, {}},
                                   {"udpmsg unreliable", unreliable, {}},
                                   {"udpmsg reliable", reliable, {}}};
  // Interleaved, so a burst of background load hits every transport alike.
  for (int run = 0; run < kRateRuns; ++run) {
    for (Variant& v : variants) {
      absl::StatusOr<RunResult> r = RunOnce(v.spec, c.messages);
      if (!r.ok()) {
        return absl::Status(r.status().code(), absl::StrCat(v.name, ": ", r.status().message()));
      }
      v.runs.push_back(*r);
    }
  }
  for (const RunResult& r : variants[3].runs) {
    if (r.received != r.sent) {
      return absl::DataLossError(
          absl::StrCat("udpmsg reliable delivered ", r.received, " of ", r.sent, " messages"));
    }
  }

  BenchTable table;
  table.title = absl::StrCat("bench rate: ", kPayloadBytes, "-byte messages, ", c.messages,
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
  const RunResult u = Median(variants[2].runs);
  const RunResult r = Median(variants[3].runs);
  const auto per_message = [](int64_t datagrams, const RunResult& x) {
    return x.sent > 0 ? static_cast<double>(datagrams) / static_cast<double>(x.sent) : 0;
  };
  table.notes = {
      absl::StrCat("median of ", kRateRuns, " runs by msgs/s; msgs/s = received / (last receive - "
                   "first send); ns CPU/msg = user+sys CPU of both threads / received; "
                   "messages = sent, lost = sent - received"),
      absl::StrCat("raw: blocking sockets, SO_RCVBUF ", variants[0].runs.back().receive_buffer >> 10,
                   " KiB granted; the raw sender stays <= ", kRawWindow,
                   " messages ahead of the receiver (shared counter, no syscalls)"),
      absl::StrCat("udpmsg: reliable::Runtime, channel 0, --cc ",
                   reliable::CongestionControlName(c.cc), ", sender waits for acks above ",
                   kQueueHighWater >> 10, " KiB queued; reliable counts delivered messages"),
      absl::StrFormat("udpmsg datagrams per message sent (data / acks back): unreliable "
                      "%.2f / %.2f, reliable %.2f / %.2f (raw: 1 / 0)",
                      per_message(u.datagrams, u), per_message(u.back_datagrams, u),
                      per_message(r.datagrams, r), per_message(r.back_datagrams, r)),
      absl::StrFormat("target: udpmsg unreliable >= 80%% of raw sendto/recvfrom msgs/s: "
                      "%.0f%% -> %s",
                      unreliable_ratio * 100, unreliable_ratio >= 0.8 ? "met" : "NOT met"),
  };
  PrintTable(table, c.format);
  return absl::OkStatus();
}

}  // namespace udpmsg::bench
