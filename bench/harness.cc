#include "bench/harness.h"

#include <cstdio>
#include <utility>

#include "absl/time/clock.h"

namespace udpmsg::bench {

void Log(const std::string& line) {
  static absl::Mutex mu(absl::kConstInit);
  absl::MutexLock lock(&mu);
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

PollThread::PollThread(Transport& transport, Transport::Handler& handler, absl::Duration step,
                       std::function<void()> after_poll)
    : transport_(transport) {
  thread_ = std::thread([this, &handler, step, after_poll = std::move(after_poll)] {
    while (!stop_.load()) {
      absl::Status s = transport_.Poll(step, handler);
      if (!s.ok()) {
        absl::MutexLock lock(&mu_);
        status_ = std::move(s);
        return;
      }
      if (after_poll) after_poll();
    }
  });
}

PollThread::~PollThread() { Stop(); }

void PollThread::Stop() {
  stop_.store(true);
  transport_.Wake();
  if (thread_.joinable()) thread_.join();
}

bool PollThread::failed() const {
  absl::MutexLock lock(&mu_);
  return !status_.ok();
}

absl::Status PollThread::status() const {
  absl::MutexLock lock(&mu_);
  return status_;
}

absl::Status ServeFor(absl::Duration duration, const std::vector<PollThread*>& threads) {
  const absl::Time end =
      duration > absl::ZeroDuration() ? absl::Now() + duration : absl::InfiniteFuture();
  while (absl::Now() < end) {
    absl::SleepFor(std::min(absl::Milliseconds(100), end - absl::Now()));
    for (PollThread* t : threads) {
      if (t->failed()) return t->status();
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<LossyPath>> LossyPath::Create(
    const udp::SocketAddress& target, const impairment::ImpairmentConfig& config) {
  absl::StatusOr<std::unique_ptr<impairment::ImpairProxy>> proxy =
      impairment::ImpairProxy::Create(
          {.listen = udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, 0),
           .target = target,
           .config = config});
  if (!proxy.ok()) return proxy.status();
  return std::unique_ptr<LossyPath>(new LossyPath(*std::move(proxy)));
}

LossyPath::LossyPath(std::unique_ptr<impairment::ImpairProxy> proxy) : proxy_(std::move(proxy)) {
  impairment::ImpairProxy* p = proxy_.get();
  thread_ = std::thread([p] { p->Run(absl::ZeroDuration()).IgnoreError(); });
}

LossyPath::~LossyPath() {
  proxy_->Stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace udpmsg::bench
