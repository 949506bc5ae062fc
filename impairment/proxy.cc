#include "impairment/proxy.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <functional>
#include <iterator>
#include <list>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "impairment/model.h"
#include "reliable/clock.h"
#include "udp/datagram_socket.h"
#include "udp/errno_status.h"
#include "udp/owned_fd.h"
#include "udp/poller.h"

namespace udpmsg::impairment {
namespace {

constexpr uint64_t kListenToken = 0;
constexpr uint64_t kStopToken = 1;
constexpr uint64_t kFirstMappingToken = 2;

constexpr size_t kMaxMappings = 1024;
constexpr absl::Duration kMappingIdle = absl::Minutes(2);
constexpr size_t kMaxScheduledBytes = size_t{64} << 20;
constexpr uint64_t kDownSeedMix = 0x9E3779B97F4A7C15;
// Receive batches per socket per wake-up, so deliveries stay on time under load.
constexpr int kBatchesPerWakeup = 16;
constexpr size_t kSlotBytes = 65536;
constexpr int kSocketBufferBytes = 4 << 20;  // > the largest UDP payload: never truncates

// The real clock, made monotonic (see reliable/clock.h).
using Clock = reliable::RealClock;

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

}  // namespace

std::string DescribeImpairment(const ImpairmentConfig& c, const udp::SocketAddress& target) {
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

std::string FormatProxyStats(const ProxyStats& stats) {
  std::string text;
  for (const auto& [name, d] :
       {std::pair<absl::string_view, const ProxyDirectionStats&>{"up:  ", stats.up},
        {"down:", stats.down}}) {
    if (!text.empty()) text += '\n';
    absl::StrAppend(&text, name, " ", d.model.ToString(), " sent=", d.sent,
                    " overflow=", d.overflow, " send_failed=", d.send_failed,
                    " pending=", d.pending, " unreachable=", d.unreachable);
  }
  return text;
}

class ImpairProxy::Impl {
 public:
  Impl(udp::DatagramSocket listen, udp::Poller poller, udp::OwnedFd stop_fd,
       const udp::SocketAddress& target, ImpairmentModel up, ImpairmentModel down,
       const Clock& clock, std::function<void(const absl::Status&)> on_mapping_error,
       std::function<void(const absl::Status&)> on_target_error, absl::Duration rebind_every)
      : listen_(std::move(listen)),
        poller_(std::move(poller)),
        stop_fd_(std::move(stop_fd)),
        target_(target),
        clock_(clock),
        on_mapping_error_(std::move(on_mapping_error)),
        on_target_error_(std::move(on_target_error)),
        models_{std::move(up), std::move(down)},
        rebind_every_(rebind_every),
        next_rebind_(rebind_every > absl::ZeroDuration() ? clock.Now() + rebind_every
                                                        : absl::InfiniteFuture()),
        buffers_(udp::DatagramSocket::kMaxBatch * kSlotBytes),
        slots_(udp::DatagramSocket::kMaxBatch) {
    for (size_t i = 0; i < slots_.size(); ++i) {
      slots_[i].buffer = absl::MakeSpan(buffers_.data() + i * kSlotBytes, kSlotBytes);
    }
  }

  // Runs until stopped or `end`. Errors are fatal socket errors.
  absl::Status Run(absl::Time end) {
    while (!stop_) {
      const absl::Time now = clock_.Now();
      if (now >= end) {
        FlushDue(now);
        break;
      }
      if (absl::Status s = Round(end); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  absl::Status Poll(absl::Duration max_wait) {
    if (stop_) return absl::OkStatus();
    const absl::Time now = clock_.Now();
    return Round(max_wait == absl::InfiniteDuration() ? absl::InfiniteFuture() : now + max_wait);
  }

  // Thread-safe: makes Run() return soon.
  void Stop() {
    stop_ = true;
    poller_.Wake();
  }

  bool stopped() const { return stop_; }

  ImpairmentCounters counters(bool up) const { return models_[up ? kUp : kDown].counters(); }

  ProxyStats stats() const {
    ProxyStats stats;
    ProxyDirectionStats* out[2] = {&stats.up, &stats.down};
    for (int d : {kUp, kDown}) {
      *out[d] = sent_[d];
      out[d]->model = models_[d].counters();
    }
    for (const Scheduled& s : heap_) ++out[s.direction]->pending;
    stats.mappings = lru_.size();
    stats.rebinds = rebinds_;
    stats.rebind_failures = rebind_failures_;
    return stats;
  }

 private:
  using MappingList = std::list<Mapping>;

  // Sends what is due, waits for datagrams until `until` (or sooner, when a
  // copy falls due or a mapping expires), impairs them, sends what is due.
  absl::Status Round(absl::Time until) {
    absl::Time now = clock_.Now();
    FlushDue(now);
    ExpireIdle(now);
    if (now >= next_rebind_) {
      RebindAll();
      next_rebind_ = now + rebind_every_;
    }
    absl::Time next = std::min(until, next_rebind_);
    if (!blocked_ && !heap_.empty()) next = std::min(next, heap_.front().at);
    if (!lru_.empty()) next = std::min(next, lru_.back().last_used + kMappingIdle);
    const absl::Duration timeout = next == absl::InfiniteFuture()
                                       ? absl::InfiniteDuration()
                                       : std::max(absl::ZeroDuration(), next - now);
    absl::StatusOr<absl::Span<const udp::Poller::Event>> ready = poller_.Wait(timeout);
    if (!ready.ok()) return ready.status();
    for (const udp::Poller::Event& event : *ready) {
      if (event.token == kStopToken) {
        // Readable means stop; one read keeps a signalfd or eventfd from
        // staying readable and never blocks.
        char drain[512];
        (void)!::read(stop_fd_.get(), drain, sizeof(drain));
        stop_ = true;
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
    FlushDue(clock_.Now());
    return absl::OkStatus();
  }

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

  // Server -> client: receives on one mapping's upstream socket. An ICMP
  // error (a "port unreachable" from a server that is not up yet) fails one
  // receive: it is reported (TargetError), and receiving goes on.
  void DrainUpstream(uint64_t token) {
    for (int round = 0; round < kBatchesPerWakeup; ++round) {
      auto it = by_token_.find(token);
      if (it == by_token_.end()) return;
      Mapping& mapping = *it->second;
      absl::StatusOr<size_t> n = mapping.upstream.RecvBatch(absl::MakeSpan(slots_));
      if (!n.ok()) {
        const int error = udp::ErrnoOf(n.status());
        if (!udp::IsIcmpReportErrno(error)) return;
        TargetError(error, clock_.Now());
        continue;
      }
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
    for (Delivery& delivery : deliveries_) {
      if (d == kUp && token == 0) {
        ++sent_[d].send_failed;  // no upstream socket could be opened
        continue;
      }
      if (scheduled_bytes_ + delivery.bytes.size() > kMaxScheduledBytes) {
        ++sent_[d].overflow;
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
          // An ICMP error for an earlier copy fails the next send once
          // (the kernel reports it on a connected socket): report it and
          // send this copy all the same, as the network would.
          if (!sent.ok() && IsPendingIcmpError(udp::ErrnoOf(sent.status()))) {
            TargetError(udp::ErrnoOf(sent.status()), now);
            sent = it->second->upstream.Send(udp::AsBytes(next.bytes));
          }
          if (sent.ok()) Touch(it->second, now);
        }
      }
      if (!sent.ok() && udp::IsWouldBlock(sent.status())) {
        Block(fd, token);
        return;
      }
      ++(sent.ok() ? sent_[next.direction].sent : sent_[next.direction].send_failed);
      scheduled_bytes_ -= next.bytes.size();
      std::pop_heap(heap_.begin(), heap_.end(), Later());
      heap_.pop_back();
    }
  }

  // Errors a send on a connected socket returns for an earlier datagram's
  // ICMP report (the ones udp::IsIcmpReportErrno lists that a send cannot
  // also mean for itself, like EMSGSIZE).
  static bool IsPendingIcmpError(int error) {
    return error == ECONNREFUSED || error == EHOSTUNREACH || error == ENETUNREACH ||
           error == EHOSTDOWN;
  }

  // Counts an ICMP error from the target and reports it, at most once per
  // kTargetErrorInterval.
  void TargetError(int error, absl::Time now) {
    ++sent_[kUp].unreachable;
    if (!on_target_error_) return;
    if (reported_target_error_ && now - last_target_report_ < kTargetErrorInterval) {
      ++unreported_target_errors_;
      return;
    }
    std::string what = target_.ToString();
    absl::Status status = udp::ErrnoStatus(error, what);
    std::string message(status.message());
    if (error == ECONNREFUSED) message += " (nothing listens there)";
    if (unreported_target_errors_ > 0) {
      absl::StrAppend(&message, "; ", unreported_target_errors_, " more since the last report");
    }
    reported_target_error_ = true;
    last_target_report_ = now;
    unreported_target_errors_ = 0;
    on_target_error_(absl::Status(status.code(), message));
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
      if (!reported_mapping_error_ && on_mapping_error_) {
        on_mapping_error_(absl::Status(
            status.code(),
            absl::StrCat("cannot open a mapping for ", client.ToString(), ": ", status.message())));
      }
      reported_mapping_error_ = true;
      return 0;
    }
    ++next_token_;
    lru_.push_front(Mapping{client, *std::move(socket), token, now});
    by_client_[client] = lru_.begin();
    by_token_[token] = lru_.begin();
    return token;
  }

  // Moves every mapping to a new upstream socket (a NAT rebinding); a
  // mapping whose new socket cannot be opened keeps its old one.
  void RebindAll() {
    for (Mapping& m : lru_) {
      absl::StatusOr<udp::DatagramSocket> socket = udp::DatagramSocket::Open(
          target_.family(), {.non_blocking = true,
                             .receive_buffer_bytes = kSocketBufferBytes,
                             .send_buffer_bytes = kSocketBufferBytes});
      absl::Status status = socket.ok() ? socket->Connect(target_) : socket.status();
      if (status.ok()) status = poller_.Remove(m.upstream.fd());
      if (!status.ok()) {
        ++rebind_failures_;
        continue;
      }
      if (!poller_.Add(socket->fd(), udp::Poller::kReadable, m.token).ok()) {
        // Keep the old socket, registered again.
        poller_.Add(m.upstream.fd(), udp::Poller::kReadable, m.token).IgnoreError();
        ++rebind_failures_;
        continue;
      }
      if (blocked_ && blocked_token_ == m.token) blocked_ = false;  // the old socket's wait
      m.upstream = *std::move(socket);  // closes the old one
      ++rebinds_;
    }
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
  udp::OwnedFd stop_fd_;
  const udp::SocketAddress target_;
  const Clock clock_;  // a copy: same origin as the proxy's start time
  const std::function<void(const absl::Status&)> on_mapping_error_;
  const std::function<void(const absl::Status&)> on_target_error_;
  ImpairmentModel models_[2];
  ProxyDirectionStats sent_[2];  // sent, overflow, send_failed (not model, pending)
  const absl::Duration rebind_every_;
  absl::Time next_rebind_;  // InfiniteFuture: never
  uint64_t rebinds_ = 0;
  uint64_t rebind_failures_ = 0;

  MappingList lru_;  // most recently used first
  absl::flat_hash_map<udp::SocketAddress, MappingList::iterator> by_client_;
  absl::flat_hash_map<uint64_t, MappingList::iterator> by_token_;
  uint64_t next_token_ = kFirstMappingToken;
  bool reported_mapping_error_ = false;
  bool reported_target_error_ = false;
  absl::Time last_target_report_;
  uint64_t unreported_target_errors_ = 0;

  std::vector<Scheduled> heap_;  // a heap ordered by Later
  size_t scheduled_bytes_ = 0;
  uint64_t next_order_ = 0;
  bool blocked_ = false;
  int blocked_fd_ = -1;
  uint64_t blocked_token_ = 0;

  std::vector<uint8_t> buffers_;
  std::vector<udp::ReceiveSlot> slots_;
  std::vector<Delivery> deliveries_;
  std::atomic<bool> stop_{false};
};

absl::StatusOr<std::unique_ptr<ImpairProxy>> ImpairProxy::Create(const Options& options) {
  udp::OwnedFd stop_fd(options.stop_fd);
  if (absl::Status s = Validate(options.config); !s.ok()) return s;
  if (options.rebind_every != absl::ZeroDuration() &&
      options.rebind_every < absl::Milliseconds(1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rebind interval ", absl::FormatDuration(options.rebind_every), " under 1ms"));
  }
  absl::StatusOr<udp::DatagramSocket> listen =
      udp::DatagramSocket::Bind(options.listen, {.non_blocking = true,
                                                 .v6_only = options.v6_only,
                                                 .receive_buffer_bytes = kSocketBufferBytes,
                                                 .send_buffer_bytes = kSocketBufferBytes});
  if (!listen.ok()) return listen.status();
  absl::StatusOr<udp::SocketAddress> local = listen->LocalAddress();
  if (!local.ok()) return local.status();
  absl::StatusOr<udp::Poller> poller = udp::Poller::Create();
  if (!poller.ok()) return poller.status();
  if (absl::Status s = poller->Add(listen->fd(), udp::Poller::kReadable, kListenToken); !s.ok()) {
    return s;
  }
  if (stop_fd) {
    if (absl::Status s = poller->Add(stop_fd.get(), udp::Poller::kReadable, kStopToken); !s.ok()) {
      return s;
    }
  }
  auto proxy = std::unique_ptr<ImpairProxy>(new ImpairProxy);
  const Clock clock;
  proxy->start_ = clock.Now();
  proxy->local_ = *local;
  ImpairmentConfig down_config = options.config;
  down_config.seed = options.config.seed ^ kDownSeedMix;
  absl::StatusOr<ImpairmentModel> up = ImpairmentModel::Create(options.config, proxy->start_);
  if (!up.ok()) return up.status();
  absl::StatusOr<ImpairmentModel> down = ImpairmentModel::Create(down_config, proxy->start_);
  if (!down.ok()) return down.status();
  proxy->impl_ = std::make_unique<Impl>(*std::move(listen), *std::move(poller), std::move(stop_fd),
                                        options.target, *std::move(up), *std::move(down), clock,
                                        options.on_mapping_error, options.on_target_error,
                                        options.rebind_every);
  return proxy;
}

ImpairProxy::ImpairProxy() = default;
ImpairProxy::~ImpairProxy() = default;

absl::Status ImpairProxy::Run(absl::Duration duration) {
  return impl_->Run(duration > absl::ZeroDuration() ? start_ + duration : absl::InfiniteFuture());
}

absl::Status ImpairProxy::Poll(absl::Duration max_wait) { return impl_->Poll(max_wait); }

void ImpairProxy::Stop() { impl_->Stop(); }

bool ImpairProxy::stopped() const { return impl_->stopped(); }

ProxyStats ImpairProxy::stats() const { return impl_->stats(); }

ImpairmentCounters ImpairProxy::counters(bool up) const { return impl_->counters(up); }

}  // namespace udpmsg::impairment
