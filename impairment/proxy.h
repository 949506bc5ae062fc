// ImpairProxy: the engine of `udpmsg impair`, usable in-process (the demo
// runs one on a thread).
//
// A UDP proxy: clients send to the listen socket; each distinct client gets
// its own upstream socket connected to the target (a NAT-like mapping), and
// the target's replies go back to that client from the listen socket. Each
// direction passes through its own ImpairmentModel: up (client ->
// target) seeded with config.seed, down with config.seed ^ 0x9E3779B97F4A7C15.
// Bounded: at most 1024 mappings (LRU, 2 min idle expiry) and 64 MiB of
// scheduled copies.
//
// Usage:
//   ImpairProxy::Options o{.listen = ..., .target = server, .config = config};
//   absl::StatusOr<std::unique_ptr<ImpairProxy>> proxy = ImpairProxy::Create(o);
//   std::thread t([&] { (*proxy)->Run(absl::ZeroDuration()).IgnoreError(); });
//   ... send to (*proxy)->local_address() ...
//   (*proxy)->Stop(); t.join();
//
// Threading: Run() on one thread; Stop() from any thread; counters() and
// PrintCounters() after Run() returned. Owns its sockets.
#ifndef UDPMSG_IMPAIRMENT_PROXY_H_
#define UDPMSG_IMPAIRMENT_PROXY_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "impairment/model.h"
#include "udp/socket_address.h"

namespace udpmsg::impairment {

class ImpairProxy final {
 public:
  struct Options {
    udp::SocketAddress listen;
    bool v6_only = false;
    udp::SocketAddress target;
    ImpairmentConfig config;
    // A descriptor (e.g. a signalfd) whose readability stops Run(); owned by
    // the proxy from Create on. -1 for none.
    int stop_fd = -1;
  };

  // Binds the listen socket. Errors: the bind's errno status (with the
  // address); INVALID_ARGUMENT for a config ImpairmentModel rejects.
  static absl::StatusOr<std::unique_ptr<ImpairProxy>> Create(const Options& options);
  ~ImpairProxy();
  ImpairProxy(const ImpairProxy&) = delete;
  ImpairProxy& operator=(const ImpairProxy&) = delete;

  const udp::SocketAddress& local_address() const { return local_; }

  // Forwards until Stop(), the stop descriptor, or `duration` (zero: no
  // limit). Returns fatal socket errors.
  absl::Status Run(absl::Duration duration);
  void Stop();

  // Per direction: "up:   received=.. ... pending=.." and "down: ...".
  void PrintCounters() const;
  ImpairmentCounters counters(bool up) const;

 private:
  class Impl;
  ImpairProxy();

  absl::Time start_;
  udp::SocketAddress local_;
  std::unique_ptr<Impl> impl_;
};

// "impairing both directions: loss=10% ... seed=1, forwarding to ADDR".
std::string DescribeImpairment(const ImpairmentConfig& config,
                               const udp::SocketAddress& target);

}  // namespace udpmsg::impairment

#endif  // UDPMSG_IMPAIRMENT_PROXY_H_
