// PathMtuProber: Datagram Packetization Layer Path MTU Discovery (RFC 8899,
// as QUIC uses it, RFC 9000 section 14.3), sans-I/O.
//
// Decides the largest datagram a connection sends (the PLPMTU). It starts at
// the base size the handshake proved (the client's hello is padded to it)
// and searches upwards with probe packets: a ping padded to exactly the
// probe size, sent by the connection when ProbeSize() says so. A probe
// acknowledged raises the PLPMTU to its size; a probe size lost max_probes
// times (MAX_PROBES) is too big. The connection never reports a probe's loss
// to its congestion controller: a probe lost to the path MTU says nothing
// about congestion.
//
// States (RFC 8899 section 5.2):
//   kDisabled        the ceiling is not above the base (PMTUD off, or a peer
//                    that announced no larger receive size): base forever
//   kBase            confirming the base size after a black hole
//   kSearching       probing sizes between the largest acknowledged and the
//                    smallest failed
//   kSearchComplete  done; searches again raise_interval later
//                    (PMTU_RAISE_TIMER) with the failures forgotten
//   kError           even the base size was lost max_probes times: the
//                    connection keeps the base (nothing smaller may be sent)
//                    and confirms it again raise_interval later
//
// Search order: the common sizes in kCommonSizes above the PLPMTU, smallest
// first (the ceiling itself after them), until one fails; then one byte
// above the largest acknowledged (a common size is usually the path's
// exact limit, and then this ends the search), then a binary search between
// the largest acknowledged and the smallest failed. The result is exact
// (1472 on a 1500-byte IPv4 path, 1372 at MTU 1400) and costs max_probes
// losses per failed size: 6 on those two paths.
//
// Black-hole detection: the path may stop carrying large datagrams while
// small ones get through (a route change, a tunnel). Every ack-eliciting
// packet larger than the base that is declared lost counts, unless a larger
// than base packet sent after it was acknowledged (then the path still
// carries large datagrams and the loss was congestion). black_hole_losses
// such losses in a row drop the PLPMTU to the base and start over from
// kBase. Losses are only declared after a later packet was acknowledged, so
// the small packets (acks, pings) are known to get through.
//
// Usage (Connection does this):
//   PathMtuProber pmtud(now, {.base = 1200, .ceiling = 9000});
//   if (std::optional<size_t> size = pmtud.ProbeSize(now)) {
//     send a ping padded to *size as packet n; pmtud.OnProbeSent(now, n, *size);
//   }
//   on ack of n:  pmtud.OnProbeAcked(now, n)   (others: OnPacketAcked)
//   on loss of n: pmtud.OnProbeLost(now, n)    (others: OnPacketLost)
//   send buffer refused it as too big (EMSGSIZE): pmtud.OnProbeTooBig(now, n)
//   fill datagrams up to pmtud.plpmtu(); when now >= NextTimeout(): OnTimeout
//
// Sizes are whole UDP payloads (sealed datagrams included). Bounds: one
// probe outstanding at a time; the ceiling is the caller's min(own maximum,
// the peer's announced receive size), both already capped to kMaxDatagram.
// Not thread-safe; owns nothing but its numbers.
#ifndef UDPMSG_RELIABLE_PMTUD_H_
#define UDPMSG_RELIABLE_PMTUD_H_

#include <cstddef>
#include <cstdint>
#include <optional>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace udpmsg::reliable {

// Sizes tried first, in order (UDP payloads): IPv6 minimum MTU, IPv4 at MTU
// 1400 (tunnels), 1400, Ethernet for IPv6 and IPv4, pages, jumbo frames for
// IPv6 and IPv4.
inline constexpr size_t kCommonSizes[] = {1280, 1372, 1400, 1452, 1472, 4096, 8192, 8952, 8972};

class PathMtuProber final {
 public:
  enum class State { kDisabled, kBase, kSearching, kSearchComplete, kError };

  struct Options {
    // BASE_PLPMTU: the size the handshake proved; never sent above ceiling.
    size_t base = 1200;
    // MAX_PLPMTU: the largest size worth probing. At most base disables.
    size_t ceiling = 1200;
    // MAX_PROBES: losses of one size before it counts as too big.
    int max_probes = 3;
    // PMTU_RAISE_TIMER: how long a completed search (or kError) rests.
    absl::Duration raise_interval = absl::Seconds(600);
    // Consecutive losses of larger-than-base packets that mean a black hole.
    int black_hole_losses = 6;
  };

  struct Stats {
    uint64_t probes_sent = 0;
    uint64_t probes_acked = 0;
    uint64_t probes_lost = 0;       // including local "too big" refusals
    uint64_t black_holes = 0;       // fallbacks to the base size
    uint64_t searches = 0;          // searches started (the first included)
  };

  PathMtuProber(absl::Time now, const Options& options);

  State state() const { return state_; }
  // The largest datagram to send now (PLPMTU), in [base, ceiling].
  size_t plpmtu() const { return plpmtu_; }
  const Options& options() const { return options_; }
  const Stats& stats() const { return stats_; }

  // The size of the probe to send now, or nullopt (none due, or one is
  // outstanding already).
  std::optional<size_t> ProbeSize(absl::Time now) const;
  // The probe of `size` bytes left as packet `number`.
  void OnProbeSent(absl::Time now, uint64_t number, size_t size);
  // Whether `number` is the outstanding probe.
  bool IsProbe(uint64_t number) const { return probe_number_ && *probe_number_ == number; }
  // The outstanding probe `number` was acknowledged / declared lost / refused
  // by the local stack as larger than the interface MTU (counts as lost
  // max_probes times at once). Other numbers are ignored.
  void OnProbeAcked(absl::Time now, uint64_t number);
  void OnProbeLost(absl::Time now, uint64_t number);
  void OnProbeTooBig(absl::Time now, uint64_t number);

  // Any other ack-eliciting packet of `size` bytes sent at `sent_time` was
  // acknowledged / declared lost (black-hole detection). True from
  // OnPacketLost when this loss makes a black hole (plpmtu() is the base).
  void OnPacketAcked(absl::Time sent_time, size_t size);
  bool OnPacketLost(absl::Time now, absl::Time sent_time, size_t size);

  // When the raise timer fires (InfiniteFuture when none is armed).
  absl::Time NextTimeout() const { return raise_at_; }
  void OnTimeout(absl::Time now);

 private:
  void StartSearch(absl::Time now);
  // The probe to try next in kSearching, or completes the search.
  void Advance(absl::Time now);
  // `size` failed max_probes times.
  void Failed(absl::Time now, size_t size);
  // Forgets `number` when it is a probe sent before a black hole.
  bool SettleStale(uint64_t number);

  Options options_;
  State state_;
  size_t plpmtu_;
  Stats stats_;
  // Search bounds: largest acknowledged (== plpmtu_) and smallest failed.
  size_t smallest_failed_;
  bool failed_once_ = false;     // binary search from the first failure on
  bool edge_tried_ = false;      // probed one byte above the largest acked
  size_t next_size_ = 0;         // the size being probed; 0 when none
  int losses_at_size_ = 0;
  std::optional<uint64_t> probe_number_;  // the probe in flight
  bool probe_stale_ = false;              // sent before a black hole
  absl::Time raise_at_ = absl::InfiniteFuture();
  // Black-hole detection.
  absl::Time last_large_acked_sent_ = absl::InfinitePast();
  int large_losses_ = 0;
};

absl::string_view PmtudStateName(PathMtuProber::State state);

}  // namespace udpmsg::reliable

#endif  // UDPMSG_RELIABLE_PMTUD_H_
