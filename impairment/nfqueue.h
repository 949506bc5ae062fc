// NfqueueImpairer: applies the seeded ImpairmentModel (impairment/model.h) to
// whatever the kernel's netfilter queues to NFQUEUE number N: TCP, UDP,
// anything, so that different transports can cross the same impaired path.
// It is the engine of `udpmsg impair --nfqueue N` and needs root
// (CAP_NET_ADMIN).
//
// For each queued packet it asks the model what happens to it, then:
//   lost (loss/burst, bottleneck queue)  -> NF_DROP at once
//   delivered at deliver_at <= now       -> NF_ACCEPT at once
//   delivered later                      -> the verdict is held in a timer
//                                           heap and NF_ACCEPT issued when due
// Verdicts may be issued out of order, so delay, jitter, reorder and the rate
// bottleneck all work. Duplication and corruption cannot be expressed as a
// verdict on the original packet (that would need re-injection), so Create
// rejects them. The model sees only each packet's length (from its IP
// header), never its contents.
//
// Usage:
//   NfqueueImpairer::Options options;
//   options.queue = 7;
//   options.config = config;          // delay, loss, rate, ...
//   options.stop_fd = signalfd_for_sigint;
//   absl::StatusOr<std::unique_ptr<NfqueueImpairer>> impairer =
//       NfqueueImpairer::Create(options);
//   if (!impairer.ok()) return impairer.status();
//   absl::Status s = (*impairer)->Run(absl::ZeroDuration());  // until stop_fd
//   std::puts((*impairer)->CountersLine().c_str());
//
// Which packets reach queue N is the caller's business: a rule such as
//   iptables -A INPUT -i ub0 -j NFQUEUE --queue-num N
// (the nft `queue` expression needs CONFIG_NFT_QUEUE, which some kernels lack;
// iptables-nft's xt NFQUEUE target works with CONFIG_NETFILTER_XT_TARGET_NFQUEUE).
// The queue lives in the network namespace of the calling process.
//
// Bounds: at most `max_held` verdicts are held; a packet arriving beyond that
// is dropped (counted as `overflow`). The kernel's queue is capped at the
// same length (nfq_set_queue_maxlen); packets the kernel cannot queue are
// dropped by the kernel (no FAIL_OPEN: an emulator that silently stops
// impairing under load would bias the benchmark). The kernel's own drop
// counters (/proc/net/netfilter/nfnetlink_queue) are part of CountersLine().
// When Run() returns, every held verdict has been issued (NF_ACCEPT), so no
// packet stays stuck in the kernel.
//
// Ownership: owns its netlink socket, its poller and the stop descriptor.
// Threading: one thread; counters() and CountersLine() between or after Run().
#ifndef UDPMSG_IMPAIRMENT_NFQUEUE_H_
#define UDPMSG_IMPAIRMENT_NFQUEUE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "impairment/model.h"

namespace udpmsg::impairment {

struct NfqueueCounters {
  uint64_t received = 0;       // packets the kernel queued to us
  uint64_t accepted = 0;       // NF_ACCEPT verdicts (immediate + delayed)
  uint64_t delayed = 0;        // of accepted, held for a while first
  uint64_t dropped = 0;        // NF_DROP verdicts by the model (loss/burst/queue)
  uint64_t overflow = 0;       // NF_DROP because max_held verdicts were pending
  uint64_t flushed = 0;        // held verdicts accepted early at exit
  uint64_t max_held_seen = 0;  // high-water mark of held verdicts
  uint64_t recv_enobufs = 0;   // netlink socket overruns (kernel-side drops)
  uint64_t verdict_failed = 0;
  absl::Duration total_added = absl::ZeroDuration();  // sum of (verdict - arrival)
};

class NfqueueImpairer final {
 public:
  struct Options {
    uint16_t queue = 0;
    ImpairmentConfig config;  // duplicate and corrupt must be 0
    uint32_t max_held = 4096;
    // A descriptor (e.g. a signalfd) whose readability stops Run(); owned
    // from Create on, even when Create fails. -1 for none.
    int stop_fd = -1;
    // Called once if no packet has arrived 5 s after Run() started, with a
    // message naming the queue and the rule that feeds it, so a missing
    // iptables rule is not mistaken for a quiet network. Null: silent.
    std::function<void(const absl::Status&)> on_no_traffic;
  };

  // Opens netlink and binds queue N. Errors: INVALID_ARGUMENT for a config
  // Validate() rejects, one that asks for dup/corrupt, or max_held == 0;
  // PERMISSION_DENIED when not root ("--nfqueue needs root (CAP_NET_ADMIN)");
  // UNAVAILABLE naming the queue when it cannot be bound (e.g. held by
  // another process, or nfnetlink_queue missing); errno statuses of netlink
  // and epoll otherwise.
  static absl::StatusOr<std::unique_ptr<NfqueueImpairer>> Create(const Options& options);
  ~NfqueueImpairer();
  NfqueueImpairer(const NfqueueImpairer&) = delete;
  NfqueueImpairer& operator=(const NfqueueImpairer&) = delete;

  // Issues verdicts until the stop descriptor or `duration` (zero: no limit).
  // On return every held verdict has been issued (NF_ACCEPT). Errors: the
  // errno status of a failed netlink receive (naming the queue) or of epoll.
  absl::Status Run(absl::Duration duration);

  const NfqueueCounters& counters() const;
  const ImpairmentCounters& model_counters() const;
  // "queue N: received=.. accepted=.. ..." (one line) plus the kernel's view.
  std::string CountersLine() const;

 private:
  class Impl;
  explicit NfqueueImpairer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// "queue N: impairing loss=5% burst=0 delay=10ms jitter=0 ... seed=1".
std::string DescribeNfqueue(uint16_t queue, const ImpairmentConfig& config);

}  // namespace udpmsg::impairment

#endif  // UDPMSG_IMPAIRMENT_NFQUEUE_H_
