// udpmsg impair --listen P --to HOST:PORT [--loss R ...]: a UDP proxy that
// impairs the traffic passing through it, for testing any UDP program.
//
// Clients send to the listen socket. For each distinct client address the
// proxy opens its own upstream socket, connected to --to (like a NAT mapping):
// the server sees one source address per client, and its replies to that
// source come back on that socket and leave towards the client from the listen
// socket. At most kMaxMappings mappings exist; a new client evicts the least
// recently used one, and a mapping idle (no packet either way) for
// kMappingIdle is closed.
//
// Each direction has its own udp::ImpairmentModel with the same configuration:
//   up   (client -> server) seeded with --seed S,
//   down (server -> client) seeded with S ^ kDownSeedMix (0x9E3779B97F4A7C15),
// so one seed reproduces both directions and the two are independent. Every
// datagram received is fed to its model at its arrival time; the copies the
// model returns wait in a timer heap ordered by (deliver_at, arrival order)
// and are sent when due. At most kMaxScheduledBytes wait at once; copies
// beyond that are dropped and counted (overflow=).
//
// Time is real: absl::Now() at start plus a monotonic offset, so the model's
// `now` never goes backwards even if the wall clock is stepped.
//
// One thread, non-blocking sockets, epoll (udp::Poller). The poll timeout is
// the next scheduled delivery (or mapping expiry, or the end of --duration);
// SIGINT and SIGTERM arrive through a signalfd. On exit one line of counters
// per direction goes to stderr:
//   up:   received=.. delivered=.. dropped_loss=.. ... bytes_out=.. sent=..
//         overflow=.. send_failed=.. pending=..
// where delivered (the model's copies) = sent + overflow + send_failed
// (socket errors, mapping gone) + pending (still scheduled at exit).
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <list>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/flags.h"
#include "udp/datagram_socket.h"
#include "udp/errno_status.h"
#include "udp/impairment.h"
#include "udp/owned_fd.h"
#include "udp/poller.h"
#include "udp/resolve.h"

namespace udpmsg::cli {
namespace {

constexpr absl::string_view kCommand = "impair";

constexpr uint64_t kListenToken = 0;
constexpr uint64_t kSignalToken = 1;
constexpr uint64_t kFirstMappingToken = 2;

constexpr size_t kMaxMappings = 1024;
constexpr absl::Duration kMappingIdle = absl::Minutes(2);
constexpr size_t kMaxScheduledBytes = size_t{64} << 20;
constexpr uint64_t kDownSeedMix = 0x9E3779B97F4A7C15;
// Receive batches per socket per wake-up, so deliveries stay on time under load.
constexpr int kBatchesPerWakeup = 16;
constexpr size_t kSlotBytes = 65536;  // > the largest UDP payload: never truncates
constexpr int kSocketBufferBytes = 4 << 20;

// The real clock, made monotonic.
class Clock {
 public:
  Clock() : wall_(absl::Now()), steady_(std::chrono::steady_clock::now()) {}
  absl::Time Now() const {
    return wall_ + absl::FromChrono(std::chrono::steady_clock::now() - steady_);
  }

 private:
  absl::Time wall_;
  std::chrono::steady_clock::time_point steady_;
};

enum Direction { kUp = 0, kDown = 1 };

struct Mapping {
  udp::SocketAddress client;
  udp::DatagramSocket upstream;  // connected to the target
  uint64_t token;
  absl::Time last_used;
};

// A copy waiting for its delivery time.
struct Scheduled {
  absl::Time at;
  uint64_t order;
  Direction direction;
  uint64_t token;             // kUp: the mapping to send from
  udp::SocketAddress client;  // kDown: where to send (from the listen socket)
  std::string bytes;
};

// Heap order: the earliest (at, order) on top.
struct Later {
  bool operator()(const Scheduled& a, const Scheduled& b) const {
    return a.at != b.at ? a.at > b.at : a.order > b.order;
  }
};

// What happened to the model's copies after the model.
struct ProxyCounters {
  uint64_t sent = 0;
  uint64_t overflow = 0;
  uint64_t send_failed = 0;
};

std::string FormatRate(double p) { return p == 0 ? "0" : absl::StrCat(p * 100, "%"); }

std::string FormatBandwidth(uint64_t bps) {
  if (bps == 0) return "unlimited";
  const std::pair<uint64_t, const char*> units[] = {
      {1000000000, "gbit"}, {1000000, "mbit"}, {1000, "kbit"}};
  for (const auto& [scale, unit] : units) {
    if (bps % scale == 0) return absl::StrCat(bps / scale, unit);
  }
  return absl::StrCat(bps, "bit");
}

std::string Describe(const udp::ImpairmentConfig& c, const udp::SocketAddress& target) {
  std::string text =
      absl::StrCat("impairing both directions: loss=", FormatRate(c.loss),
                   " burst=", FormatRate(c.burst), " delay=", absl::FormatDuration(c.delay),
                   " jitter=", absl::FormatDuration(c.jitter), " reorder=", FormatRate(c.reorder));
  if (c.reorder > 0)
    absl::StrAppend(&text, " reorder_delay=", absl::FormatDuration(c.reorder_delay));
  absl::StrAppend(&text, " dup=", FormatRate(c.duplicate), " corrupt=", FormatRate(c.corrupt),
                  " rate=", FormatBandwidth(c.rate_bps));
  if (c.rate_bps > 0) absl::StrAppend(&text, " queue_limit=", c.queue_limit_bytes, "B");
  absl::StrAppend(&text, " seed=", c.seed, ", forwarding to ", target.ToString());
  return text;
}

class Proxy {
 public:
  Proxy(udp::DatagramSocket listen, udp::Poller poller, udp::OwnedFd signals,
        const udp::SocketAddress& target, udp::ImpairmentModel up, udp::ImpairmentModel down,
        const Clock& clock)
      : listen_(std::move(listen)),
        poller_(std::move(poller)),
        signals_(std::move(signals)),
        target_(target),
        clock_(clock),
        models_{std::move(up), std::move(down)},
        buffers_(udp::DatagramSocket::kMaxBatch * kSlotBytes),
        slots_(udp::DatagramSocket::kMaxBatch) {
    for (size_t i = 0; i < slots_.size(); ++i) {
      slots_[i].buffer = absl::MakeSpan(buffers_.data() + i * kSlotBytes, kSlotBytes);
    }
  }

  // Runs until a signal or `end`. Errors are fatal socket errors.
  absl::Status Run(absl::Time end) {
    while (!stop_) {
      absl::Time now = clock_.Now();
      FlushDue(now);
      ExpireIdle(now);
      if (now >= end) break;
      absl::Time next = end;
      if (!blocked_ && !heap_.empty()) next = std::min(next, heap_.front().at);
      if (!lru_.empty()) next = std::min(next, lru_.back().last_used + kMappingIdle);
      const absl::Duration timeout = next == absl::InfiniteFuture()
                                         ? absl::InfiniteDuration()
                                         : std::max(absl::ZeroDuration(), next - now);
      absl::StatusOr<absl::Span<const udp::Poller::Event>> ready = poller_.Wait(timeout);
      if (!ready.ok()) return ready.status();
      for (const udp::Poller::Event& event : *ready) {
        if (event.token == kSignalToken) {
          signalfd_siginfo info;
          while (::read(signals_.get(), &info, sizeof(info)) == sizeof(info)) stop_ = true;
          continue;
        }
        if (blocked_ && event.token == blocked_token_ && (event.writable || event.error)) {
          Unblock();
        }
        if (event.token == kListenToken) {
          if (absl::Status s = DrainListen(); !s.ok()) return s;
        } else {
          DrainUpstream(event.token);
        }
      }
    }
    return absl::OkStatus();
  }

  void PrintCounters() const {
    uint64_t pending[2] = {0, 0};
    for (const Scheduled& s : heap_) ++pending[s.direction];
    const char* names[2] = {"up:  ", "down:"};
    for (int d : {kUp, kDown}) {
      const ProxyCounters& p = proxy_counters_[d];
      std::fprintf(stderr, "%s %s sent=%llu overflow=%llu send_failed=%llu pending=%llu\n",
                   names[d], models_[d].counters().ToString().c_str(),
                   static_cast<unsigned long long>(p.sent),
                   static_cast<unsigned long long>(p.overflow),
                   static_cast<unsigned long long>(p.send_failed),
                   static_cast<unsigned long long>(pending[d]));
    }
    std::fflush(stderr);
  }

 private:
  using MappingList = std::list<Mapping>;

  // Client -> server: receives from the listen socket.
  absl::Status DrainListen() {
    for (int round = 0; round < kBatchesPerWakeup; ++round) {
      absl::StatusOr<size_t> n = listen_.RecvBatch(absl::MakeSpan(slots_));
      if (!n.ok()) return udp::IsWouldBlock(n.status()) ? absl::OkStatus() : n.status();
      const absl::Time now = clock_.Now();
      for (size_t i = 0; i < *n; ++i) {
        const uint64_t token = MappingFor(slots_[i].from, now);  // 0: none
        Impair(kUp, now, slots_[i], token, udp::SocketAddress());
      }
      if (*n < slots_.size()) break;
    }
    return absl::OkStatus();
  }

  // Server -> client: receives on one mapping's upstream socket. Errors (an
  // ICMP "port unreachable" from a server that is not up yet) are ignored.
  void DrainUpstream(uint64_t token) {
    for (int round = 0; round < kBatchesPerWakeup; ++round) {
      auto it = by_token_.find(token);
      if (it == by_token_.end()) return;
      Mapping& mapping = *it->second;
      absl::StatusOr<size_t> n = mapping.upstream.RecvBatch(absl::MakeSpan(slots_));
      if (!n.ok()) return;
      const absl::Time now = clock_.Now();
      if (*n > 0) Touch(it->second, now);
      const udp::SocketAddress client = mapping.client;
      for (size_t i = 0; i < *n; ++i) Impair(kDown, now, slots_[i], 0, client);
      if (*n < slots_.size()) return;
    }
  }

  // Feeds one datagram to its direction's model and schedules the copies.
  void Impair(Direction d, absl::Time now, const udp::ReceiveSlot& slot, uint64_t token,
              const udp::SocketAddress& client) {
    deliveries_.clear();
    const absl::string_view bytes(reinterpret_cast<const char*>(slot.buffer.data()), slot.size);
    models_[d].OnPacket(now, bytes, &deliveries_);
    for (udp::Delivery& delivery : deliveries_) {
      if (d == kUp && token == 0) {
        ++proxy_counters_[d].send_failed;  // no upstream socket could be opened
        continue;
      }
      if (scheduled_bytes_ + delivery.bytes.size() > kMaxScheduledBytes) {
        ++proxy_counters_[d].overflow;
        continue;
      }
      scheduled_bytes_ += delivery.bytes.size();
      heap_.push_back(Scheduled{delivery.deliver_at, next_order_++, d, token, client,
                                std::move(delivery.bytes)});
      std::push_heap(heap_.begin(), heap_.end(), Later());
    }
  }

  // Sends every copy that is due, in (time, arrival) order. Stops at a socket
  // whose buffer is full until it becomes writable.
  void FlushDue(absl::Time now) {
    while (!blocked_ && !heap_.empty() && heap_.front().at <= now) {
      Scheduled& next = heap_.front();
      absl::StatusOr<size_t> sent;
      uint64_t token = kListenToken;
      int fd = listen_.fd();
      if (next.direction == kDown) {
        sent = listen_.SendTo(next.client, udp::AsBytes(next.bytes));
      } else {
        auto it = by_token_.find(next.token);
        if (it == by_token_.end()) {
          sent = absl::NotFoundError("mapping expired");
        } else {
          token = next.token;
          fd = it->second->upstream.fd();
          sent = it->second->upstream.Send(udp::AsBytes(next.bytes));
          if (sent.ok()) Touch(it->second, now);
        }
      }
      if (!sent.ok() && udp::IsWouldBlock(sent.status())) {
        Block(fd, token);
        return;
      }
      ++(sent.ok() ? proxy_counters_[next.direction].sent
                   : proxy_counters_[next.direction].send_failed);
      scheduled_bytes_ -= next.bytes.size();
      std::pop_heap(heap_.begin(), heap_.end(), Later());
      heap_.pop_back();
    }
  }

  void Block(int fd, uint64_t token) {
    if (poller_.Modify(fd, udp::Poller::kReadable | udp::Poller::kWritable, token).ok()) {
      blocked_ = true;
      blocked_fd_ = fd;
      blocked_token_ = token;
    }
  }

  void Unblock() {
    poller_.Modify(blocked_fd_, udp::Poller::kReadable, blocked_token_).IgnoreError();
    blocked_ = false;
  }

  void Touch(MappingList::iterator it, absl::Time now) {
    it->last_used = now;
    lru_.splice(lru_.begin(), lru_, it);
  }

  // The mapping for `client`, opened on first use; 0 when no socket could be
  // opened (reported once).
  uint64_t MappingFor(const udp::SocketAddress& client, absl::Time now) {
    if (auto it = by_client_.find(client); it != by_client_.end()) {
      Touch(it->second, now);
      return it->second->token;
    }
    if (lru_.size() >= kMaxMappings) Evict(std::prev(lru_.end()));
    absl::StatusOr<udp::DatagramSocket> socket =
        udp::DatagramSocket::Open(target_.family(), {.non_blocking = true,
                                                     .receive_buffer_bytes = kSocketBufferBytes,
                                                     .send_buffer_bytes = kSocketBufferBytes});
    absl::Status status = socket.ok() ? socket->Connect(target_) : socket.status();
    const uint64_t token = next_token_;
    if (status.ok()) status = poller_.Add(socket->fd(), udp::Poller::kReadable, token);
    if (!status.ok()) {
      if (!reported_mapping_error_) {
        std::fprintf(stderr, "udpmsg: cannot open a mapping for %s: %s\n",
                     client.ToString().c_str(), std::string(status.message()).c_str());
        reported_mapping_error_ = true;
      }
      return 0;
    }
    ++next_token_;
    lru_.push_front(Mapping{client, *std::move(socket), token, now});
    by_client_[client] = lru_.begin();
    by_token_[token] = lru_.begin();
    return token;
  }

  void Evict(MappingList::iterator it) {
    poller_.Remove(it->upstream.fd()).IgnoreError();
    if (blocked_ && blocked_token_ == it->token) blocked_ = false;
    by_client_.erase(it->client);
    by_token_.erase(it->token);
    lru_.erase(it);  // closes the socket
  }

  void ExpireIdle(absl::Time now) {
    while (!lru_.empty() && lru_.back().last_used + kMappingIdle <= now) {
      Evict(std::prev(lru_.end()));
    }
  }

  udp::DatagramSocket listen_;
  udp::Poller poller_;
  udp::OwnedFd signals_;
  const udp::SocketAddress target_;
  const Clock& clock_;
  udp::ImpairmentModel models_[2];
  ProxyCounters proxy_counters_[2];

  MappingList lru_;  // most recently used first
  absl::flat_hash_map<udp::SocketAddress, MappingList::iterator> by_client_;
  absl::flat_hash_map<uint64_t, MappingList::iterator> by_token_;
  uint64_t next_token_ = kFirstMappingToken;
  bool reported_mapping_error_ = false;

  std::vector<Scheduled> heap_;  // a heap ordered by Later
  size_t scheduled_bytes_ = 0;
  uint64_t next_order_ = 0;
  bool blocked_ = false;
  int blocked_fd_ = -1;
  uint64_t blocked_token_ = 0;

  std::vector<uint8_t> buffers_;
  std::vector<udp::ReceiveSlot> slots_;
  std::vector<udp::Delivery> deliveries_;
  bool stop_ = false;
};

// Parses the --flag value `text` with `parse`, or explains what is wrong.
template <typename T, typename Parser>
absl::Status ParseFlag(absl::string_view name, const std::string& text, Parser parse, T* out) {
  auto value = parse(text);
  if (!value.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--", name, ": ", value.status().message()));
  }
  *out = *value;
  return absl::OkStatus();
}

absl::StatusOr<udp::ImpairmentConfig> ConfigFromFlags() {
  udp::ImpairmentConfig c;
  const auto rate = [](absl::string_view t) { return udp::ParseRate(t); };
  const auto duration = [](absl::string_view t) { return udp::ParseDuration(t); };
  const auto bandwidth = [](absl::string_view t) { return udp::ParseBandwidth(t); };
  const auto bytes = [](absl::string_view t) -> absl::StatusOr<uint64_t> {
    uint64_t n = 0;
    if (!absl::SimpleAtoi(t, &n)) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid byte count \"", t, "\" (want a whole number of bytes)"));
    }
    return n;
  };
  for (absl::Status s : {
           ParseFlag("loss", absl::GetFlag(FLAGS_loss), rate, &c.loss),
           ParseFlag("burst", absl::GetFlag(FLAGS_burst), rate, &c.burst),
           ParseFlag("delay", absl::GetFlag(FLAGS_delay), duration, &c.delay),
           ParseFlag("jitter", absl::GetFlag(FLAGS_jitter), duration, &c.jitter),
           ParseFlag("reorder", absl::GetFlag(FLAGS_reorder), rate, &c.reorder),
           ParseFlag("reorder_delay", absl::GetFlag(FLAGS_reorder_delay), duration,
                     &c.reorder_delay),
           ParseFlag("dup", absl::GetFlag(FLAGS_dup), rate, &c.duplicate),
           ParseFlag("corrupt", absl::GetFlag(FLAGS_corrupt), rate, &c.corrupt),
           ParseFlag("rate", absl::GetFlag(FLAGS_rate), bandwidth, &c.rate_bps),
           ParseFlag("queue_limit", absl::GetFlag(FLAGS_queue_limit), bytes, &c.queue_limit_bytes),
       }) {
    if (!s.ok()) return s;
  }
  c.seed = absl::GetFlag(FLAGS_seed);
  if (absl::Status s = udp::Validate(c); !s.ok()) return s;
  return c;
}

udp::AddressFamily FamilyFromFlags() {
  if (absl::GetFlag(FLAGS_ipv4)) return udp::AddressFamily::kIpv4;
  if (absl::GetFlag(FLAGS_ipv6)) return udp::AddressFamily::kIpv6;
  return udp::AddressFamily::kUnspecified;
}

}  // namespace

int RunImpair(const Args& args) {
  if (!args.empty()) return UsageError(kCommand, "takes no positional arguments");
  const int listen_port = absl::GetFlag(FLAGS_listen);
  if (listen_port == -1) return UsageError(kCommand, "--listen PORT is required");
  if (listen_port < 0 || listen_port > 65535) {
    return UsageError(kCommand,
                      absl::StrCat("--listen ", listen_port, " is out of range (0 to 65535)"));
  }
  const std::string to = absl::GetFlag(FLAGS_to);
  if (to.empty()) return UsageError(kCommand, "--to HOST:PORT is required");
  absl::StatusOr<udp::ImpairmentConfig> config = ConfigFromFlags();
  if (!config.ok()) return UsageError(kCommand, config.status().message());
  absl::Duration duration;
  if (absl::StatusOr<absl::Duration> d = udp::ParseDuration(absl::GetFlag(FLAGS_duration));
      d.ok()) {
    duration = *d;
  } else {
    return UsageError(kCommand, absl::StrCat("--duration: ", d.status().message()));
  }

  const udp::AddressFamily family = FamilyFromFlags();
  absl::StatusOr<std::vector<udp::SocketAddress>> targets =
      udp::ResolveHostPort(to, family, udp::SocketType::kDatagram);
  if (!targets.ok()) return Fail(targets.status());
  const udp::SocketAddress target = targets->front();

  // The listen address: --bind, else the dual-stack wildcard (or the
  // wildcard of the family --ipv4/--ipv6 asks for).
  std::vector<udp::SocketAddress> locals;
  const std::string bind = absl::GetFlag(FLAGS_bind);
  if (bind.empty() && family != udp::AddressFamily::kUnspecified) {
    locals.push_back(udp::SocketAddress::Any(family, static_cast<uint16_t>(listen_port)));
  } else {
    absl::StatusOr<std::vector<udp::SocketAddress>> resolved =
        BindAddresses(bind, listen_port, udp::SocketType::kDatagram);
    if (!resolved.ok()) return Fail(resolved.status());
    locals = *std::move(resolved);
  }
  absl::StatusOr<udp::DatagramSocket> listen =
      udp::DatagramSocket::Bind(locals.front(), {.non_blocking = true,
                                                 .v6_only = family == udp::AddressFamily::kIpv6,
                                                 .receive_buffer_bytes = kSocketBufferBytes,
                                                 .send_buffer_bytes = kSocketBufferBytes});
  if (!listen.ok()) return Fail(listen.status());
  absl::StatusOr<udp::SocketAddress> local = listen->LocalAddress();
  if (!local.ok()) return Fail(local.status());

  // SIGINT/SIGTERM become readable events on a signalfd.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  if (::sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) {
    return Fail(udp::ErrnoStatus(errno, "sigprocmask"));
  }
  udp::OwnedFd signals(::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!signals) return Fail(udp::ErrnoStatus(errno, "signalfd"));

  absl::StatusOr<udp::Poller> poller = udp::Poller::Create();
  if (!poller.ok()) return Fail(poller.status());
  if (absl::Status s = poller->Add(listen->fd(), udp::Poller::kReadable, kListenToken); !s.ok()) {
    return Fail(s);
  }
  if (absl::Status s = poller->Add(signals.get(), udp::Poller::kReadable, kSignalToken); !s.ok()) {
    return Fail(s);
  }

  const Clock clock;
  const absl::Time start = clock.Now();
  udp::ImpairmentConfig down_config = *config;
  down_config.seed = config->seed ^ kDownSeedMix;
  absl::StatusOr<udp::ImpairmentModel> up = udp::ImpairmentModel::Create(*config, start);
  if (!up.ok()) return UsageError(kCommand, up.status().message());
  absl::StatusOr<udp::ImpairmentModel> down = udp::ImpairmentModel::Create(down_config, start);
  if (!down.ok()) return UsageError(kCommand, down.status().message());

  PrintListening(*local);
  std::fprintf(stderr, "%s\n", Describe(*config, target).c_str());
  std::fflush(stderr);

  Proxy proxy(*std::move(listen), *std::move(poller), std::move(signals), target, *std::move(up),
              *std::move(down), clock);
  const absl::Status status =
      proxy.Run(duration > absl::ZeroDuration() ? start + duration : absl::InfiniteFuture());
  proxy.PrintCounters();
  if (!status.ok()) return Fail(status);
  return kExitOk;
}

}  // namespace udpmsg::cli
