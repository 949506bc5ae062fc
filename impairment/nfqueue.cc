#include "impairment/nfqueue.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/netfilter.h>
#include <sys/socket.h>
#include <unistd.h>

extern "C" {
#include <libnetfilter_queue/libnetfilter_queue.h>
}

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <queue>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "impairment/model.h"
#include "reliable/clock.h"
#include "udp/errno_status.h"
#include "udp/owned_fd.h"
#include "udp/poller.h"

namespace udpmsg::impairment {
namespace {

constexpr uint64_t kNetlinkToken = 1;
constexpr uint64_t kStopToken = 2;
// Enough of each packet to read its IP header's length field.
constexpr uint32_t kCopyRange = 64;
constexpr int kReceiveBufferBytes = 8 << 20;

// The real clock, made monotonic (see reliable/clock.h).
using Clock = reliable::RealClock;

// The packet's length from its IPv4/IPv6 header (the copy is truncated to
// kCopyRange bytes); `copied` when the header is unreadable.
size_t PacketLength(const unsigned char* data, int copied) {
  if (copied < 1) return 0;
  const int version = data[0] >> 4;
  if (version == 4 && copied >= 4) return (size_t{data[2]} << 8) | data[3];
  if (version == 6 && copied >= 6) return 40 + ((size_t{data[4]} << 8) | data[5]);
  return static_cast<size_t>(copied);
}

struct Held {
  absl::Time due;
  uint64_t order;  // FIFO among equal due times
  uint32_t id;
  absl::Time arrived;
  bool operator>(const Held& o) const { return due != o.due ? due > o.due : order > o.order; }
};

// /proc/net/netfilter/nfnetlink_queue, the line for `queue`:
// queue portid waiting copy_mode copy_range queue_dropped user_dropped id 1
std::string KernelCounters(uint16_t queue) {
  std::ifstream in("/proc/net/netfilter/nfnetlink_queue");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    uint64_t number = 0, portid = 0, waiting = 0, mode = 0, range = 0, qdropped = 0, udropped = 0;
    if (!(fields >> number >> portid >> waiting >> mode >> range >> qdropped >> udropped)) {
      continue;
    }
    if (number != queue) continue;
    return absl::StrCat(" kernel_queue_dropped=", qdropped, " kernel_user_dropped=", udropped);
  }
  return "";
}

}  // namespace

std::string DescribeNfqueue(uint16_t queue, const ImpairmentConfig& c) {
  std::string text =
      absl::StrCat("queue ", queue, ": impairing loss=", FormatRate(c.loss),
                   " burst=", FormatRate(c.burst), " delay=", absl::FormatDuration(c.delay),
                   " jitter=", absl::FormatDuration(c.jitter), " reorder=", FormatRate(c.reorder));
  if (c.reorder > 0) {
    absl::StrAppend(&text, " reorder_delay=", absl::FormatDuration(c.reorder_delay));
  }
  absl::StrAppend(&text, " rate=", FormatBandwidth(c.rate_bps));
  if (c.rate_bps > 0) absl::StrAppend(&text, " queue_limit=", c.queue_limit_bytes, "B");
  absl::StrAppend(&text, " seed=", c.seed);
  return text;
}

class NfqueueImpairer::Impl {
 public:
  Impl(const Options& options, ImpairmentModel model, udp::Poller poller, udp::OwnedFd stop)
      : options_(options),
        model_(std::move(model)),
        poller_(std::move(poller)),
        stop_(std::move(stop)),
        zeros_(65536 + 40, '\0') {}

  ~Impl() {
    if (queue_ != nullptr) nfq_destroy_queue(queue_);
    if (handle_ != nullptr) nfq_close(handle_);
  }

  absl::Status Open() {
    errno = 0;
    handle_ = nfq_open();
    if (handle_ == nullptr) {
      if (errno == EPERM || errno == EACCES) {
        return absl::PermissionDeniedError("--nfqueue needs root (CAP_NET_ADMIN)");
      }
      return udp::ErrnoStatus(errno, "nfq_open (netlink)");
    }
    // Kernels since 3.8 ignore these; older ones need them. Errors are harmless.
    nfq_unbind_pf(handle_, AF_INET);
    nfq_bind_pf(handle_, AF_INET);
    nfq_unbind_pf(handle_, AF_INET6);
    nfq_bind_pf(handle_, AF_INET6);
    errno = 0;
    queue_ = nfq_create_queue(handle_, options_.queue, &Impl::OnPacketThunk, this);
    if (queue_ == nullptr) {
      const int error = errno;
      // The kernel answers EPERM both when another process holds the queue
      // and when this one lacks CAP_NET_ADMIN (root was checked already).
      return absl::UnavailableError(absl::StrCat(
          "queue ", options_.queue, ": cannot bind (", error ? std::strerror(error) : "unknown",
          error == EPERM ? "): another process is probably bound to it already"
                         : "): is NFQUEUE (nfnetlink_queue) missing from this kernel?"));
    }
    if (nfq_set_mode(queue_, NFQNL_COPY_PACKET, kCopyRange) < 0) {
      return udp::ErrnoStatus(errno, absl::StrCat("queue ", options_.queue, ": nfq_set_mode"));
    }
    if (nfq_set_queue_maxlen(queue_, options_.max_held) < 0) {
      return udp::ErrnoStatus(errno,
                              absl::StrCat("queue ", options_.queue, ": nfq_set_queue_maxlen"));
    }
    // Don't let ENOBUFS tear the socket down; we count it instead.
    nfnl_rcvbufsiz(nfq_nfnlh(handle_), kReceiveBufferBytes);
    fd_ = nfq_fd(handle_);
    int one = 1;
    ::setsockopt(fd_, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof(one));
    ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
    if (absl::Status s = poller_.Add(fd_, udp::Poller::kReadable, kNetlinkToken); !s.ok()) {
      return s;
    }
    if (stop_) {
      if (absl::Status s = poller_.Add(stop_.get(), udp::Poller::kReadable, kStopToken); !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }

  absl::Status Run(absl::Duration duration) {
    const absl::Time start = clock_.Now();
    const absl::Time end =
        duration == absl::ZeroDuration() ? absl::InfiniteFuture() : start + duration;
    std::vector<char> buffer(256 * 1024);
    absl::Status result = absl::OkStatus();
    bool stop = false;
    // A queue no rule feeds stays silent: say so once, after a while, so a
    // missing iptables/nft rule is not mistaken for a quiet network.
    absl::Time silence_warning =
        options_.on_no_traffic ? start + absl::Seconds(5) : absl::InfiniteFuture();
    while (!stop) {
      absl::Time now = clock_.Now();
      ReleaseDue(now);
      if (now >= end) break;
      if (now >= silence_warning) {
        if (counters_.received == 0 && options_.on_no_traffic) {
          options_.on_no_traffic(absl::FailedPreconditionError(absl::StrCat(
              "queue ", options_.queue, ": no packet in ",
              absl::FormatDuration(absl::Trunc(now - start, absl::Seconds(1))),
              "; is there a rule sending packets to it (iptables -j NFQUEUE --queue-num ",
              options_.queue, ")?")));
        }
        silence_warning = absl::InfiniteFuture();
      }
      absl::Time wake = std::min(end, silence_warning);
      if (!held_.empty()) wake = std::min(wake, held_.top().due);
      absl::StatusOr<absl::Span<const udp::Poller::Event>> ready =
          poller_.Wait(std::max(absl::ZeroDuration(), wake - now));
      if (!ready.ok()) {
        result = ready.status();
        break;
      }
      for (const udp::Poller::Event& e : *ready) {
        if (e.token == kStopToken) stop = true;
        if (e.token != kNetlinkToken) continue;
        for (;;) {
          const ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), MSG_DONTWAIT);
          if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == ENOBUFS) {
              ++counters_.recv_enobufs;
              continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
              result = udp::ErrnoStatus(errno, absl::StrCat("queue ", options_.queue, ": recv"));
              stop = true;
            }
            break;
          }
          nfq_handle_packet(handle_, buffer.data(), static_cast<int>(n));
        }
      }
    }
    // Issue every held verdict so no packet stays stuck in the kernel.
    const absl::Time now = clock_.Now();
    while (!held_.empty()) {
      Held h = held_.top();
      held_.pop();
      ++counters_.flushed;
      Verdict(h.id, NF_ACCEPT);
      ++counters_.accepted;
      counters_.total_added += now - h.arrived;
    }
    return result;
  }

  const NfqueueCounters& counters() const { return counters_; }
  const ImpairmentCounters& model_counters() const { return model_.counters(); }

  std::string CountersLine() const {
    const NfqueueCounters& c = counters_;
    const ImpairmentCounters& m = model_.counters();
    const absl::Duration mean =
        c.accepted ? c.total_added / static_cast<double>(c.accepted) : absl::ZeroDuration();
    return absl::StrCat(
        "queue ", options_.queue, ": received=", c.received, " accepted=", c.accepted,
        " delayed=", c.delayed, " dropped=", c.dropped, " dropped_loss=", m.dropped_loss,
        " dropped_queue=", m.dropped_queue, " reordered=", m.reordered, " overflow=", c.overflow,
        " flushed=", c.flushed, " max_held=", c.max_held_seen, " enobufs=", c.recv_enobufs,
        " verdict_failed=", c.verdict_failed,
        " mean_added=", absl::FormatDuration(absl::Trunc(mean, absl::Microseconds(1))),
        KernelCounters(options_.queue));
  }

 private:
  static int OnPacketThunk(nfq_q_handle* /*queue*/, nfgenmsg* /*msg*/, nfq_data* data, void* self) {
    static_cast<Impl*>(self)->OnPacket(data);
    return 0;
  }

  void OnPacket(nfq_data* data) {
    const nfqnl_msg_packet_hdr* header = nfq_get_msg_packet_hdr(data);
    if (header == nullptr) return;
    const uint32_t id = ntohl(header->packet_id);
    unsigned char* payload = nullptr;
    const int copied = nfq_get_payload(data, &payload);
    const size_t length = std::min(PacketLength(payload, copied), zeros_.size());
    ++counters_.received;
    const absl::Time now = clock_.Now();
    deliveries_.clear();
    // The model never looks at the contents (dup and corrupt are off), only
    // at the length, so a run of zeros of the packet's length stands in.
    model_.OnPacket(now, absl::string_view(zeros_.data(), length), &deliveries_);
    if (deliveries_.empty()) {
      ++counters_.dropped;
      Verdict(id, NF_DROP);
      return;
    }
    const absl::Time due = deliveries_.front().deliver_at;
    if (due <= now) {
      ++counters_.accepted;
      Verdict(id, NF_ACCEPT);
      return;
    }
    if (held_.size() >= options_.max_held) {
      ++counters_.overflow;
      Verdict(id, NF_DROP);
      return;
    }
    held_.push(Held{due, order_++, id, now});
    counters_.max_held_seen = std::max<uint64_t>(counters_.max_held_seen, held_.size());
  }

  void ReleaseDue(absl::Time now) {
    while (!held_.empty() && held_.top().due <= now) {
      const Held h = held_.top();
      held_.pop();
      ++counters_.accepted;
      ++counters_.delayed;
      counters_.total_added += now - h.arrived;
      Verdict(h.id, NF_ACCEPT);
    }
  }

  void Verdict(uint32_t id, uint32_t verdict) {
    if (nfq_set_verdict(queue_, id, verdict, 0, nullptr) < 0) ++counters_.verdict_failed;
  }

  Options options_;
  ImpairmentModel model_;
  udp::Poller poller_;
  udp::OwnedFd stop_;
  const Clock clock_;
  const std::string zeros_;
  nfq_handle* handle_ = nullptr;
  nfq_q_handle* queue_ = nullptr;
  int fd_ = -1;
  std::priority_queue<Held, std::vector<Held>, std::greater<Held>> held_;
  uint64_t order_ = 0;
  std::vector<Delivery> deliveries_;
  NfqueueCounters counters_;
};

absl::StatusOr<std::unique_ptr<NfqueueImpairer>> NfqueueImpairer::Create(const Options& options) {
  udp::OwnedFd stop(options.stop_fd);
  if (options.config.duplicate > 0 || options.config.corrupt > 0) {
    return absl::InvalidArgumentError(
        "--dup and --corrupt cannot be applied with --nfqueue (a verdict can only accept or "
        "drop the original packet)");
  }
  if (options.max_held == 0) return absl::InvalidArgumentError("max_held must be positive");
  if (absl::Status s = Validate(options.config); !s.ok()) return s;
  if (::geteuid() != 0) {
    return absl::PermissionDeniedError("--nfqueue needs root (CAP_NET_ADMIN)");
  }
  absl::StatusOr<ImpairmentModel> model = ImpairmentModel::Create(options.config, absl::Now());
  if (!model.ok()) return model.status();
  absl::StatusOr<udp::Poller> poller = udp::Poller::Create();
  if (!poller.ok()) return poller.status();
  auto impl =
      std::make_unique<Impl>(options, *std::move(model), *std::move(poller), std::move(stop));
  if (absl::Status s = impl->Open(); !s.ok()) return s;
  return std::unique_ptr<NfqueueImpairer>(new NfqueueImpairer(std::move(impl)));
}

NfqueueImpairer::NfqueueImpairer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
NfqueueImpairer::~NfqueueImpairer() = default;
absl::Status NfqueueImpairer::Run(absl::Duration duration) { return impl_->Run(duration); }
const NfqueueCounters& NfqueueImpairer::counters() const { return impl_->counters(); }
const ImpairmentCounters& NfqueueImpairer::model_counters() const {
  return impl_->model_counters();
}
std::string NfqueueImpairer::CountersLine() const { return impl_->CountersLine(); }

}  // namespace udpmsg::impairment
