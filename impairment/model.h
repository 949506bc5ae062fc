// ImpairmentModel: a pure, seeded, deterministic model of one direction of a
// network path (loss incl. bursts, delay, jitter, reorder, duplicate, corrupt,
// a rate-limited bottleneck with a byte-bounded tail-drop queue, blackouts).
//
// The model does no I/O and never reads a clock: the caller passes the arrival
// time of each packet and gets back the copies that leave the path and when.
// The same code therefore drives the UDP proxy (impairment/proxy.h) and the
// NFQUEUE engine (impairment/nfqueue.h) on real sockets and a real clock, and
// the discrete-event simulator in tests/sim in virtual time.
//
// Usage:
//   ImpairmentConfig config;
//   config.loss = 0.02;
//   config.delay = absl::Milliseconds(20);
//   config.jitter = absl::Milliseconds(5);
//   config.seed = 42;
//   absl::StatusOr<ImpairmentModel> model = ImpairmentModel::Create(config, start);
//   if (!model.ok()) return model.status();
//   for (Delivery& d : model->OnPacket(now, bytes)) {
//     ScheduleSend(d.deliver_at, std::move(d.bytes));
//   }
//
// Exact semantics, applied to each packet in this order:
//
//  1. Blackout. If `now - origin` lies in any window [start, end) the packet is
//     dropped (counters.dropped_blackout). Blacked-out packets consume no
//     randomness and do not advance the loss chain.
//  2. Loss. `burst == 0`: each packet is lost independently with probability
//     `loss` (so loss runs have mean length 1/(1-loss)). `burst > 0`: a
//     two-state Gilbert-Elliott chain with a lossless Good state and an
//     always-lossy Bad state. Before each packet the chain steps:
//       Bad  -> Bad   with probability r_stay = burst
//       Good -> Bad   with probability p_enter = loss * (1 - burst) / (1 - loss)
//     and the packet is lost iff the chain is then in Bad. The stationary
//     probability of Bad is p_enter / (p_enter + 1 - burst) = loss, so the
//     long-run loss rate is exactly `loss`, and loss runs are geometric with
//     mean length 1 / (1 - burst). The initial state is drawn from the
//     stationary distribution. p_enter must be <= 1, i.e. when loss > 1/2 the
//     burst must be at least 2 - 1/loss (Validate() says so). loss == 0 and
//     loss == 1 are exact (never / always) for any burst.
//     (counters.dropped_loss)
//  3. Bottleneck. With `rate_bps > 0` the packet joins a FIFO served at
//     `rate_bps`. The backlog is the number of bytes not yet serialized at
//     `now` (a fluid queue: ceil((link_free_at - now) * rate / 8)). If
//     backlog + size > queue_limit_bytes the packet is tail-dropped
//     (counters.dropped_queue). Otherwise it departs at
//       max(now, link_free_at) + size * 8 / rate_bps
//     and link_free_at becomes that time. With rate_bps == 0 it departs at
//     `now` and there is no queue.
//  4. Delay and jitter. arrival = departure + delay + U, with U uniform over
//     [0, jitter] in whole nanoseconds. Jitter never reorders: an in-order
//     packet is never delivered before the previous in-order packet (its time
//     is raised to that one's), so every in-order delivery lies in
//     [departure + delay, departure + delay + jitter].
//  5. Reorder. With probability `reorder` the packet is held back by an extra
//     `reorder_delay` after step 4 (counters.reordered); it does not take part
//     in the in-order clamp, so packets sent within `reorder_delay` after it
//     overtake it.
//  6. Duplicate. With probability `duplicate` a second copy leaves with the
//     same deliver_at, listed after the original (counters.duplicated). The
//     copy does not occupy the bottleneck.
//  7. Corrupt. Each copy independently, with probability `corrupt`, gets 1, 2
//     or 3 (uniformly) distinct bits flipped at uniformly random positions;
//     the length never changes and a corrupted copy always differs from the
//     input. Empty packets cannot be corrupted. (counters.corrupted)
//
// Randomness: every impairment draws from its own reliable::DeterministicRng
// stream derived from `seed`, so (a) a seed reproduces a run bit for bit on
// every platform and compiler, and (b) turning one impairment on or off does not
// change the decisions of the others (e.g. the same packets are lost with and
// without duplication).
//
// Errors: Create() and Validate() return INVALID_ARGUMENT naming the field and
// the bad value; the parsers at the end of this file return INVALID_ARGUMENT
// quoting their input. OnPacket() cannot fail.
//
// Thread-compatible value type: copying a model copies its state (both copies
// then make identical future decisions). Owns nothing but its state.
#ifndef UDPMSG_IMPAIRMENT_MODEL_H_
#define UDPMSG_IMPAIRMENT_MODEL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "reliable/deterministic_rng.h"

namespace udpmsg::impairment {

// A blackout: everything arriving in [start, end), measured from the model's
// origin, is dropped. `end` may be absl::InfiniteDuration().
struct BlackoutWindow {
  absl::Duration start;
  absl::Duration end;
};

// One direction of a path. Defaults describe a perfect, instant link.
struct ImpairmentConfig {
  double loss = 0.0;   // long-run loss probability, [0, 1]
  double burst = 0.0;  // P(stay in loss state), [0, 1); 0 = independent loss
  absl::Duration delay = absl::ZeroDuration();            // minimum one-way latency
  absl::Duration jitter = absl::ZeroDuration();           // extra latency, U[0, jitter]
  double reorder = 0.0;                                   // P(packet held back)
  absl::Duration reorder_delay = absl::Milliseconds(10);  // how far back
  double duplicate = 0.0;                                 // P(second copy)
  double corrupt = 0.0;                                   // P(1..3 bits flipped), per copy
  uint64_t rate_bps = 0;                                  // bottleneck bits/s; 0 = unlimited
  uint64_t queue_limit_bytes = 64 * 1024;                 // bottleneck queue bound
  std::vector<BlackoutWindow> blackouts;                  // relative to the origin
  uint64_t seed = 1;
};

// Checks `config`. Returns InvalidArgument naming the field and the bad value
// for: a probability outside [0, 1] or NaN; burst == 1 with 0 < loss < 1 (a
// burst that never ends); loss/burst pairs the chain cannot reach (see above);
// a negative or infinite delay, jitter or reorder_delay; rate_bps > 2^62;
// queue_limit_bytes == 0 with a rate; a blackout with negative or infinite
// start, or end <= start. OK otherwise.
absl::Status Validate(const ImpairmentConfig& config);

// What the model has done so far. `delivered` and `bytes_out` count every
// copy handed out, duplicates included.
struct ImpairmentCounters {
  uint64_t received = 0;
  uint64_t delivered = 0;
  uint64_t dropped_loss = 0;
  uint64_t dropped_queue = 0;
  uint64_t dropped_blackout = 0;
  uint64_t duplicated = 0;
  uint64_t reordered = 0;
  uint64_t corrupted = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;

  ImpairmentCounters& operator+=(const ImpairmentCounters& other);
  // "received=10 delivered=9 dropped_loss=1 ..." for logs and test messages.
  std::string ToString() const;
  friend bool operator==(const ImpairmentCounters& a, const ImpairmentCounters& b);
  friend bool operator!=(const ImpairmentCounters& a, const ImpairmentCounters& b) {
    return !(a == b);
  }
};

// One copy of a packet leaving the path.
struct Delivery {
  absl::Time deliver_at;
  std::string bytes;       // possibly corrupted; same length as the input
  bool duplicate = false;  // the second copy made by step 6
  bool reordered = false;  // held back by step 5
  bool corrupted = false;  // bits flipped by step 7
};

class ImpairmentModel final {
 public:
  using Counters = ImpairmentCounters;

  // Validates `config` (see Validate(); InvalidArgument) and builds a model
  // whose blackout windows are measured from `origin`.
  static absl::StatusOr<ImpairmentModel> Create(const ImpairmentConfig& config, absl::Time origin);

  // Feeds one packet arriving at `now`. Returns its copies (zero, one or two),
  // each with deliver_at >= now. Calls should come in non-decreasing `now`.
  std::vector<Delivery> OnPacket(absl::Time now, absl::string_view bytes);
  std::vector<Delivery> OnPacket(absl::Time now, absl::Span<const uint8_t> bytes);
  // The same, appending to `*out` (not cleared) so a caller can reuse one
  // vector. Returns how many copies were appended.
  int OnPacket(absl::Time now, absl::string_view bytes, std::vector<Delivery>* out);

  const Counters& counters() const { return counters_; }
  const ImpairmentConfig& config() const { return config_; }
  absl::Time origin() const { return origin_; }

 private:
  ImpairmentModel(const ImpairmentConfig& config, absl::Time origin);

  bool InBlackout(absl::Time now) const;
  bool DrawLoss();
  void Corrupt(std::string* bytes);

  ImpairmentConfig config_;
  absl::Time origin_;
  double enter_bad_ = 0.0;  // Gilbert-Elliott P(Good -> Bad)
  bool bad_ = false;        // Gilbert-Elliott state
  absl::Time link_free_at_ = absl::InfinitePast();
  absl::Time last_in_order_at_ = absl::InfinitePast();
  reliable::DeterministicRng loss_rng_;
  reliable::DeterministicRng jitter_rng_;
  reliable::DeterministicRng reorder_rng_;
  reliable::DeterministicRng duplicate_rng_;
  reliable::DeterministicRng corrupt_rng_;
  Counters counters_;
};

// CLI-friendly parsers. Each returns InvalidArgument quoting the input.

// A probability: "10%", "0.5%", "0.1", "1". Must lie in [0, 1] (0%..100%).
absl::StatusOr<double> ParseRate(absl::string_view text);

// A non-negative finite duration with a unit: "20ms", "1.5s", "250us", "0".
// Units as absl::ParseDuration: ns, us, ms, s, m, h.
absl::StatusOr<absl::Duration> ParseDuration(absl::string_view text);

// A bandwidth in bits per second, rounded to the nearest bit:
//   "1000000"          bits/s (a bare number)
//   "20mbit", "512kbit", "1gbit", "64bit"         bits/s, 1000-based, any case
//   "20Mbps", "20Mb/s", "100kbps", "1Gbps", "8bps" bits/s, 1000-based, any case
//   "2.5MB/s", "800kB/s", "1GB/s", "100B/s"       bytes/s, 1000-based
//   "1MiB/s", "64KiB/s", "1GiB/s"                 bytes/s, 1024-based
// Note "bps" means bits here (unlike tc, where it means bytes); bytes need an
// upper-case "B/s", and any other unit containing "B" is rejected. "0" is
// accepted and means unlimited in ImpairmentConfig.
// Values above 2^62 bits/s are rejected.
absl::StatusOr<uint64_t> ParseBandwidth(absl::string_view text);

// The inverses, for messages: a rate as "10%" (or "0"), a bandwidth as
// "20mbit", "512kbit", "1gbit", "1234bit" (or "unlimited" for 0). Both
// parse back with ParseRate / ParseBandwidth (but "unlimited").
std::string FormatRate(double rate);
std::string FormatBandwidth(uint64_t bits_per_second);

// A blackout window "START-END" of two ParseDuration values: "5s-8s",
// "1500ms-2s". END must be after START.
absl::StatusOr<BlackoutWindow> ParseBlackoutWindow(absl::string_view text);

// Whether `config` does anything besides dropping packets (delay, jitter,
// reordering, duplication, corruption, a rate limit, blackouts).
bool ImpairsBesidesLoss(const ImpairmentConfig& config);

// "delay 20ms, jitter 5ms, reorder 2% by 10ms, dup 1%": what `config` does
// besides loss (blackouts aside), for table notes; empty when nothing.
std::string DescribeBesidesLoss(const ImpairmentConfig& config);

}  // namespace udpmsg::impairment

#endif  // UDPMSG_IMPAIRMENT_MODEL_H_
