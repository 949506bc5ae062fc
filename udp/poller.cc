#include "udp/poller.h"

#include <errno.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <array>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "udp/errno_status.h"

namespace udpmsg::udp {
namespace {
constexpr uint64_t kWakeToken = Poller::kReservedToken;
}  // namespace

absl::StatusOr<Poller> Poller::Create() {
  OwnedFd epoll(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll) return ErrnoStatus(errno, "epoll_create1");
  OwnedFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) return ErrnoStatus(errno, "eventfd");
  Poller poller(std::move(epoll), std::move(wake));
  absl::Status s = poller.Add(poller.wake_.get(), kReadable, kWakeToken);
  if (!s.ok()) return s;
  return poller;
}

absl::Status Poller::Add(int fd, uint32_t interest, uint64_t token) {
  if (token == kWakeToken && fd != wake_.get()) {
    return absl::InvalidArgumentError("poller token ~0 is reserved for Wake()");
  }
  epoll_event event{};
  event.events = interest;
  event.data.u64 = token;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event) != 0) {
    return ErrnoStatus(errno, absl::StrCat("epoll_ctl add fd ", fd));
  }
  return absl::OkStatus();
}

absl::Status Poller::Modify(int fd, uint32_t interest, uint64_t token) {
  epoll_event event{};
  event.events = interest;
  event.data.u64 = token;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &event) != 0) {
    return ErrnoStatus(errno, absl::StrCat("epoll_ctl modify fd ", fd));
  }
  return absl::OkStatus();
}

absl::Status Poller::Remove(int fd) {
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr) != 0) {
    return ErrnoStatus(errno, absl::StrCat("epoll_ctl remove fd ", fd));
  }
  return absl::OkStatus();
}

absl::StatusOr<absl::Span<const Poller::Event>> Poller::Wait(absl::Duration timeout) {
  std::array<epoll_event, kMaxEvents> raw;
  int n = -1;
  if (timeout < absl::ZeroDuration()) timeout = absl::ZeroDuration();
  // epoll_pwait2 (Linux 5.11) takes a timespec: timers and pacing keep their
  // sub-millisecond precision. Older kernels fall back to epoll_wait.
  static std::atomic<bool> have_pwait2{true};
  if (have_pwait2.load(std::memory_order_relaxed)) {
    timespec ts{};
    timespec* tsp = nullptr;
    if (timeout != absl::InfiniteDuration()) {
      ts = absl::ToTimespec(std::min(timeout, absl::Hours(24)));
      tsp = &ts;
    }
    do {
      n = ::epoll_pwait2(epoll_.get(), raw.data(), static_cast<int>(raw.size()), tsp, nullptr);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno == ENOSYS) have_pwait2.store(false, std::memory_order_relaxed);
  }
  if (!have_pwait2.load(std::memory_order_relaxed)) {
    int timeout_ms = -1;
    if (timeout != absl::InfiniteDuration()) {
      double ms = std::ceil(absl::ToDoubleMilliseconds(timeout));
      timeout_ms = ms > std::numeric_limits<int>::max() ? std::numeric_limits<int>::max()
                                                        : static_cast<int>(ms);
    }
    do {
      n = ::epoll_wait(epoll_.get(), raw.data(), static_cast<int>(raw.size()), timeout_ms);
    } while (n < 0 && errno == EINTR);
  }
  if (n < 0) return ErrnoStatus(errno, "epoll_wait");
  size_t count = 0;
  for (int i = 0; i < n; ++i) {
    if (raw[i].data.u64 == kWakeToken) {
      uint64_t value;
      while (::read(wake_.get(), &value, sizeof(value)) > 0) {
      }
      continue;
    }
    Event& e = ready_[count++];
    e.token = raw[i].data.u64;
    e.readable = (raw[i].events & EPOLLIN) != 0;
    e.writable = (raw[i].events & EPOLLOUT) != 0;
    e.error = (raw[i].events & (EPOLLERR | EPOLLHUP)) != 0;
  }
  return absl::MakeConstSpan(ready_.data(), count);
}

void Poller::Wake() {
  uint64_t one = 1;
  // EAGAIN means the counter is already non-zero: a wake-up is pending.
  [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof(one));
}

}  // namespace udpmsg::udp
