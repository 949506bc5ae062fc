// ImpairProxy: a UDP proxy that passes each direction of every flow through
// its own seeded ImpairmentModel (impairment/model.h). It is the engine of
// `udpmsg impair`, and bench and demo run one in-process to put a lossy,
// delayed, reordering path between two programs on loopback.
//
// Clients send to the listen socket; each distinct client address gets its
// own upstream socket connected to the target (a NAT-like mapping), and the
// target's replies go back to that client from the listen socket. Direction
// "up" (client -> target) uses a model seeded with config.seed, "down" one
// seeded with config.seed ^ 0x9E3779B97F4A7C15, both with the proxy's
// creation time as their origin (blackout windows count from there). The
// model decides, per datagram, which copies leave and when; the proxy holds
// each copy until its time and then sends it.
//
// Usage, on a thread of its own:
//   absl::StatusOr<std::unique_ptr<ImpairProxy>> proxy = ImpairProxy::Create(
//       {.listen = udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, 0),
//        .target = server,
//        .config = config});
//   if (!proxy.ok()) return proxy.status();
//   std::thread t([p = proxy->get()] { p->Run(absl::ZeroDuration()).IgnoreError(); });
//   ... clients send to (*proxy)->local_address() ...
//   (*proxy)->Stop();
//   t.join();
//   ProxyStats stats = (*proxy)->stats();
// or driven by the caller's own loop (a test, a single-threaded tool):
//   while (!done) RETURN_IF_ERROR((*proxy)->Poll(absl::Milliseconds(10)));
//
// NAT rebinding (Options::rebind_every): every `rebind_every` the proxy
// gives each mapping a new upstream socket (a new source port toward the
// target) and closes the old one, as a NAT whose mappings time out does:
// the target sees the client's datagrams arrive from a new address, and
// what it still sends to the old one is refused by the kernel (ICMP port
// unreachable, which the target should ignore). Copies waiting to go up
// leave from the new socket. Counted in ProxyStats::rebinds.
//
// Bounds: at most 1024 mappings (least recently used evicted first; a mapping
// idle for 2 minutes is closed) and 64 MiB of copies waiting for their time
// (a copy beyond that is dropped and counted as `overflow`). Each receive
// buffer holds any UDP payload, so datagrams are never truncated.
//
// Ownership: owns its sockets, its poller and the stop descriptor handed to
// Create. Threading: Run()/Poll() from one thread at a time; Stop() from any
// thread; stats(), counters() and local_address() from the thread that runs
// the proxy, or from any thread once Run() has returned.
#ifndef UDPMSG_IMPAIRMENT_PROXY_H_
#define UDPMSG_IMPAIRMENT_PROXY_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "impairment/model.h"
#include "udp/socket_address.h"

namespace udpmsg::impairment {

// One direction of the proxy. model.delivered (the model's copies) =
// sent + overflow + send_failed + pending.
struct ProxyDirectionStats {
  ImpairmentCounters model;  // what the model decided
  uint64_t sent = 0;         // copies written to a socket
  uint64_t overflow = 0;     // copies dropped: 64 MiB already waiting
  uint64_t send_failed = 0;  // socket errors, mapping expired or never opened
  uint64_t pending = 0;      // copies still waiting for their time
  // ICMP errors (port unreachable, ...) that came back for copies sent: up
  // only, where each mapping's socket is connected to the target. Not part
  // of the sum above: those copies were sent.
  uint64_t unreachable = 0;
};

struct ProxyStats {
  ProxyDirectionStats up;    // client -> target
  ProxyDirectionStats down;  // target -> client
  uint64_t mappings = 0;     // open client mappings
  // Mappings moved to a new upstream socket (Options::rebind_every), and
  // moves that failed (the mapping kept its socket).
  uint64_t rebinds = 0;
  uint64_t rebind_failures = 0;
};

// "up:   received=.. delivered=.. ... sent=.. overflow=.. send_failed=.. pending=..
// unreachable=.."
// and the same for "down:", one line each, separated by '\n' (no trailing
// newline): what `udpmsg impair` prints when it stops.
std::string FormatProxyStats(const ProxyStats& stats);

// "impairing both directions: loss=10% ... seed=1, forwarding to ADDR".
std::string DescribeImpairment(const ImpairmentConfig& config, const udp::SocketAddress& target);

class ImpairProxy final {
 public:
  struct Options {
    udp::SocketAddress listen;  // port 0 picks a free port (see local_address())
    bool v6_only = false;       // IPV6_V6ONLY on an IPv6 listen socket
    udp::SocketAddress target;
    ImpairmentConfig config;
    // A descriptor (e.g. a signalfd for SIGINT/SIGTERM, an eventfd, a pipe)
    // whose readability stops Run(); owned by the proxy from Create on, even
    // when Create fails. -1 for none.
    int stop_fd = -1;
    // Called (on the running thread) the first time a client's mapping socket
    // cannot be opened, with an error naming the client; that client's
    // datagrams then count as send_failed. Null: counted only.
    std::function<void(const absl::Status&)> on_mapping_error;
    // Called (on the running thread) when the target answers forwarded
    // datagrams with an ICMP error, at most once per kTargetErrorInterval:
    // the errno status naming the target, e.g. UNAVAILABLE "127.0.0.1:9:
    // Connection refused (nothing listens there)", ending "; N more since
    // the last report" when some went unreported. Every one counts in
    // stats().up.unreachable. The clients hear nothing of it (a UDP proxy
    // cannot pass an ICMP error on): they see silence. Null: counted only.
    std::function<void(const absl::Status&)> on_target_error;
    // Every this long, each mapping moves to a new upstream socket (see
    // "NAT rebinding" above); zero: never. At least 1 ms (INVALID_ARGUMENT
    // from Create otherwise).
    absl::Duration rebind_every = absl::ZeroDuration();
  };

  // The least time between two on_target_error calls.
  static constexpr absl::Duration kTargetErrorInterval = absl::Seconds(1);

  // Binds the listen socket. Errors: INVALID_ARGUMENT for a config Validate()
  // rejects; the bind's errno status naming the address ("bind
  // 127.0.0.1:9000: Address already in use"); errno statuses of epoll.
  static absl::StatusOr<std::unique_ptr<ImpairProxy>> Create(const Options& options);
  ~ImpairProxy();
  ImpairProxy(const ImpairProxy&) = delete;
  ImpairProxy& operator=(const ImpairProxy&) = delete;

  // The bound listen address, with the port the kernel chose.
  const udp::SocketAddress& local_address() const { return local_; }

  // Forwards until Stop(), the stop descriptor, or `duration` after Create
  // (zero: no limit). Copies still waiting when it returns stay `pending`.
  // Returns OK, or a fatal error of the listen socket or the poller (errno
  // statuses); errors of single mappings are counted, never fatal.
  absl::Status Run(absl::Duration duration);

  // One round of Run(): sends the copies that are due, waits up to `max_wait`
  // (less when a copy falls due sooner; zero: does not block) for datagrams,
  // impairs what arrived and sends what is then due. Errors as Run(). Returns
  // at once, doing nothing, once stopped().
  absl::Status Poll(absl::Duration max_wait);

  // Makes Run() return soon (and Poll() do nothing from then on).
  void Stop();
  // Whether Stop() was called or the stop descriptor became readable.
  bool stopped() const;

  ProxyStats stats() const;
  // The model's counters of one direction (up: client -> target).
  ImpairmentCounters counters(bool up) const;

 private:
  class Impl;
  ImpairProxy();

  absl::Time start_;
  udp::SocketAddress local_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace udpmsg::impairment

#endif  // UDPMSG_IMPAIRMENT_PROXY_H_
