// What the benchmarks run around their transports: a transport served on
// its own thread (PollThread), an in-process impaired path for the UDP
// transports (LossyPath), and one-line logs to stderr.
//
// Usage:
//   PollThread server(*transport, handler);            // polls until destroyed
//   absl::StatusOr<std::unique_ptr<LossyPath>> path =
//       LossyPath::Create(transport->local_address(), config);
//   ... clients send to (*path)->address() ...
//
// Threading: Log from any thread. A PollThread owns its thread and borrows
// the transport and handler, which must outlive it; nothing else may use
// the transport meanwhile. A LossyPath owns its proxy and thread.
#ifndef UDPMSG_BENCH_HARNESS_H_
#define UDPMSG_BENCH_HARNESS_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "bench/transport.h"
#include "impairment/model.h"
#include "impairment/proxy.h"
#include "udp/socket_address.h"

namespace udpmsg::bench {

// `line` and a newline to stderr, flushed; lines from threads do not mix.
void Log(const std::string& line);

// Polls `transport` with `handler` in steps of `step` on its own thread until
// Stop() or destruction; `after_poll` (may be empty) runs after every step
// on that thread. A Poll error ends the thread (status()).
class PollThread final {
 public:
  PollThread(Transport& transport, Transport::Handler& handler,
             absl::Duration step = absl::Milliseconds(50),
             std::function<void()> after_poll = nullptr);
  ~PollThread();
  PollThread(const PollThread&) = delete;
  PollThread& operator=(const PollThread&) = delete;

  void Stop();
  // Whether the thread ended on its own (a Poll error), and that error.
  bool failed() const;
  absl::Status status() const;

 private:
  Transport& transport_;
  std::atomic<bool> stop_{false};
  mutable absl::Mutex mu_;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// Serves until `duration` passes (zero: until the process is killed) or one
// of `threads` fails (its error).
absl::Status ServeFor(absl::Duration duration, const std::vector<PollThread*>& threads);

// An in-process impaired path to a UDP server: an ImpairProxy on its own
// thread, listening on an IPv4 loopback port.
class LossyPath final {
 public:
  // Errors: ImpairProxy::Create's.
  static absl::StatusOr<std::unique_ptr<LossyPath>> Create(
      const udp::SocketAddress& target, const impairment::ImpairmentConfig& config);
  ~LossyPath();
  LossyPath(const LossyPath&) = delete;
  LossyPath& operator=(const LossyPath&) = delete;

  // Where clients send to reach the target through the impairment.
  const udp::SocketAddress& address() const { return proxy_->local_address(); }

 private:
  explicit LossyPath(std::unique_ptr<impairment::ImpairProxy> proxy);
  std::unique_ptr<impairment::ImpairProxy> proxy_;
  std::thread thread_;
};

}  // namespace udpmsg::bench

#endif  // UDPMSG_BENCH_HARNESS_H_
