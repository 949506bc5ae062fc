// Simulator: a deterministic discrete-event network simulator for sans-I/O
// participants (e.g. adapters around reliable::Endpoint).
//
// Nodes are registered under a SocketAddress. Whatever a node sends travels
// the directed path (from, to), which is a impairment::ImpairmentModel (loss, delay,
// jitter, reorder, duplicate, corrupt, bottleneck, blackouts), and arrives at
// the node registered under `to` at the model's deliver_at. Time is virtual:
// there is no wall clock and no thread, and events run in (time, insertion
// order), so a run is reproducible bit for bit from the simulator seed, the
// link configurations and the nodes' own (deterministic) behaviour.
//
// Usage:
//   sim::Simulator sim(/*seed=*/42);
//   udp::SocketAddress a = *udp::SocketAddress::Parse("10.0.0.1:4000");
//   udp::SocketAddress b = *udp::SocketAddress::Parse("[fd00::1]:4000");
//   MyNode alice(...), bob(...);               // implement sim::Node
//   CHECK_OK(sim.AddNode(a, &alice));
//   CHECK_OK(sim.AddNode(b, &bob));
//   impairment::ImpairmentConfig lossy;
//   lossy.loss = 0.05;
//   lossy.delay = absl::Milliseconds(20);
//   CHECK_OK(sim.SetLink(a, b, lossy));
//   sim.At(sim.now() + absl::Seconds(1), [&] { alice.Send("hello"); });
//   bool ok = sim.RunUntil([&] { return bob.received() == 1; },
//                          sim.now() + absl::Seconds(10));
//
// Node protocol. After every call into a node (OnDatagram, OnTimeout, an At()
// action, AddNode, PollAll) the simulator
//   1. drains TakeOutgoing() and sends each datagram through its path; a
//      datagram whose `from` is empty (!valid()) gets the node's address, and
//   2. reads NextTimeout() and, if it differs from the deadline last seen,
//      schedules a timer at max(NextTimeout(), now()); the previous timer
//      becomes stale and is skipped when it comes up.
// OnTimeout(now) is only ever called with now >= NextTimeout() (re-checked
// when the timer fires). A deadline not after now() is scheduled at now() and
// counted in overdue_timers(); a node that keeps returning one after
// OnTimeout livelocks at one instant, which set_max_events() catches.
//
// Links. Each directed path gets its own ImpairmentModel, created when the
// path is configured (SetLink) or first used (with the default config). The
// model's seed is derived from (simulator seed, from, to); the `seed` field of
// the given config is ignored. Blackout windows are measured from the
// simulator's start time. SetDefaultLink() only affects paths that have no
// model yet. Calling SetLink() on a used path replaces its model (fresh state,
// same derived seed); path_stats() keeps accumulating.
//
// Path MTU. Every path carries datagrams of at most kDefaultPathMtu bytes
// (1472: the UDP payload of a 1500-byte IPv4 Ethernet link), as the paths
// most traffic crosses. SetPathMtu(from, to, n) makes the path drop every
// datagram larger than n bytes before its model sees it, counted in
// path_stats().mtu_dropped; 0 removes the limit. It takes effect for
// datagrams sent from then on, so lowering it mid-run is a black hole (a
// route change to a smaller MTU that sends no ICMP "too big").
//
// NAT rebinding. Rebind(node, public_address) puts the node registered
// under `node` behind a NAT whose mapping changes now: from then on what the
// node sends leaves from `public_address` (the receiver sees it as `from`,
// and it travels the paths from `public_address`, configured with SetLink
// like any, else the default link), datagrams to `public_address` reach the
// node, and datagrams to the addresses it had before (its own, or an
// earlier public one) are dropped, counted in nat_dropped(): the old
// mapping is gone. Call it again to rebind again (back to `node` itself
// works too). Deterministic like everything else: call it from an At().
// INVALID_ARGUMENT for an unknown node, ALREADY_EXISTS when another node
// has `public_address`.
//
// Receive batching. By default a datagram reaches its node the instant it
// arrives, alone. SetReceiveBatching(node, interval) models a receiver that
// reads its socket in batches, as the runtime does (recvmmsg, GRO): a
// datagram arriving while the node has none waiting is held, and
// `interval` later everything that arrived meanwhile (at most
// kMaxReceiveBatch; the rest follows at once) is handed over in arrival
// order in one OnDatagrams call. Path stats count a datagram when it
// arrives. An interval of zero turns batching off again for datagrams
// arriving from then on, once the read already due has taken what waits
// (later arrivals join it: nothing overtakes).
//
// Ownership: nodes are borrowed and must outlive the simulator (or at least
// its last Run call). Thread-compatible; nodes are only called from the thread
// running the simulator.
#ifndef UDPMSG_TESTS_SIM_SIMULATOR_H_
#define UDPMSG_TESTS_SIM_SIMULATOR_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "impairment/model.h"
#include "udp/socket_address.h"

namespace udpmsg::sim {

struct Datagram {
  udp::SocketAddress from;
  udp::SocketAddress to;
  std::string bytes;
};

// A sans-I/O participant. The simulator calls it, then collects what it wants
// to send and when it next wants to be woken up.
class Node {
 public:
  virtual ~Node() = default;
  // A datagram addressed to this node (`to`) arrived at `now`.
  virtual void OnDatagram(absl::Time now, const udp::SocketAddress& from,
                          const udp::SocketAddress& to, absl::string_view bytes) = 0;
  // Datagrams read together (see "Receive batching"), in arrival order. By
  // default each goes to OnDatagram.
  virtual void OnDatagrams(absl::Time now, const std::vector<Datagram>& batch) {
    for (const Datagram& d : batch) OnDatagram(now, d.from, d.to, d.bytes);
  }
  // Called when now >= NextTimeout().
  virtual void OnTimeout(absl::Time now) = 0;
  // When the node next wants OnTimeout; absl::InfiniteFuture() if never.
  virtual absl::Time NextTimeout() const = 0;
  // Datagrams to send; drained after every call into the node.
  virtual std::vector<Datagram> TakeOutgoing() = 0;
};

// The start time used when none is given: 2001-09-09T01:46:40Z.
absl::Time DefaultStart();

// See "Path MTU" above.
inline constexpr size_t kDefaultPathMtu = 1472;
// See "Receive batching" above (the runtime's bound per receive round).
inline constexpr size_t kMaxReceiveBatch = 512;

class Simulator final {
 public:
  // Default bound on events_processed(); see set_max_events().
  static constexpr uint64_t kDefaultMaxEvents = 10'000'000;

  explicit Simulator(uint64_t seed, absl::Time start = DefaultStart());

  Simulator(const Simulator&) = delete;
  Simulator& operator=(const Simulator&) = delete;

  // Registers `node` (borrowed) under `address` and polls it once.
  // ALREADY_EXISTS if the address is taken, INVALID_ARGUMENT for an empty
  // address or a null node.
  absl::Status AddNode(const udp::SocketAddress& address, Node* node);

  // Configures the directed path from -> to. INVALID_ARGUMENT if the config
  // fails impairment::Validate().
  absl::Status SetLink(const udp::SocketAddress& from, const udp::SocketAddress& to,
                       const impairment::ImpairmentConfig& config);
  // The config of paths without SetLink. Initially perfect with 1 ms delay.
  absl::Status SetDefaultLink(const impairment::ImpairmentConfig& config);
  // The largest datagram the directed path from -> to carries (0: any); see
  // "Path MTU" above.
  void SetPathMtu(const udp::SocketAddress& from, const udp::SocketAddress& to,
                  size_t max_payload);
  // See "Receive batching" above. INVALID_ARGUMENT for an unknown node or a
  // negative interval.
  absl::Status SetReceiveBatching(const udp::SocketAddress& node, absl::Duration interval);
  // See "NAT rebinding" above.
  absl::Status Rebind(const udp::SocketAddress& node, const udp::SocketAddress& public_address);
  // The address the node registered under `node` is seen from now.
  udp::SocketAddress PublicAddress(const udp::SocketAddress& node) const;

  // Delivers `d` to d.to's node at max(at, now()), bypassing all links (for
  // spoofing tests). Path stats are not touched.
  void Inject(absl::Time at, Datagram d);
  // Runs `action` at max(at, now()), then polls every node.
  void At(absl::Time at, std::function<void()> action);
  // Drains outgoing datagrams and reschedules the timers of every node, in
  // AddNode order. Call after touching nodes directly.
  void PollAll();

  // Processes events in (time, insertion order) until done() (checked before
  // the first and after each event) or until no event is left at or before
  // `deadline`; then, if not done, advances now() to `deadline` (unless it is
  // InfiniteFuture). Returns done(), or false if the max_events bound is hit
  // (status() then holds RESOURCE_EXHAUSTED).
  bool RunUntil(const std::function<bool()>& done, absl::Time deadline);
  // Runs every event up to now() + d and sets now() to now() + d (unless the
  // max_events bound stops it first).
  void RunFor(absl::Duration d);

  absl::Time now() const { return now_; }
  absl::Time start() const { return start_; }
  uint64_t seed() const { return seed_; }

  struct PathStats {
    impairment::ImpairmentCounters counters;  // of the path's model(s)
    uint64_t bytes_sent = 0;           // handed to the path by the sender
    uint64_t packets_sent = 0;
    uint64_t bytes_delivered = 0;      // handed to the receiving node
    uint64_t packets_delivered = 0;    // (duplicates included)
    uint64_t mtu_dropped = 0;          // larger than the path MTU (dropped)
  };
  // Zeros if the path never carried a packet.
  PathStats path_stats(const udp::SocketAddress& from, const udp::SocketAddress& to) const;

  // Events run so far (deliveries, live timers, actions; stale timers
  // excluded).
  uint64_t events_processed() const { return events_processed_; }
  // Datagrams that arrived at an address with no node (dropped).
  uint64_t undeliverable() const { return undeliverable_; }
  // Datagrams that arrived at an address a NAT rebinding retired (dropped).
  uint64_t nat_dropped() const { return nat_dropped_; }
  // Timer events skipped because the node's deadline changed after they were
  // scheduled.
  uint64_t stale_timers() const { return stale_timers_; }
  // Timers scheduled for a deadline that was not after now() (run at now()).
  uint64_t overdue_timers() const { return overdue_timers_; }
  // Events waiting in the queue.
  size_t pending_events() const { return queue_.size(); }

  // Bounds events_processed(); once reached, RunUntil() returns false without
  // processing anything and status() is RESOURCE_EXHAUSTED.
  void set_max_events(uint64_t n) { max_events_ = n; }
  // OK, or the first error recorded (the max_events bound).
  const absl::Status& status() const { return status_; }

 private:
  struct NodeState {
    udp::SocketAddress address;
    udp::SocketAddress public_address;  // == address until Rebind
    Node* node;
    absl::Time deadline;     // NextTimeout() when last polled
    bool armed;              // a live timer event for `deadline` is queued
    uint64_t generation;     // bumped whenever the queued timer is replaced
    absl::Duration batch_interval = absl::ZeroDuration();  // SetReceiveBatching
    std::vector<Datagram> inbox;                           // arrived, waiting for the kRead event
  };
  struct Path {
    explicit Path(impairment::ImpairmentModel m) : model(std::move(m)) {}
    impairment::ImpairmentModel model;
    impairment::ImpairmentCounters past;  // counters of replaced models
    PathStats stats;
    size_t max_payload = kDefaultPathMtu;  // SetPathMtu; 0: no limit
  };
  enum class EventKind { kDeliver, kTimer, kAction, kRead };
  struct Event {
    EventKind kind;
    Datagram datagram;             // kDeliver
    bool via_path = false;         // kDeliver: count in path stats
    size_t node = 0;               // kTimer, kRead
    uint64_t generation = 0;       // kTimer
    std::function<void()> action;  // kAction
  };
  using PathKey = std::pair<udp::SocketAddress, udp::SocketAddress>;
  using EventKey = std::pair<absl::Time, uint64_t>;  // (time, sequence)

  void Push(absl::Time at, Event event);
  // Runs `event` at now(); false if it was a stale timer (nothing ran).
  bool RunEvent(Event& event);
  void Poll(size_t index);
  void Send(Datagram d);
  Path& GetPath(const PathKey& key);
  absl::StatusOr<impairment::ImpairmentModel> MakeModel(const PathKey& key,
                                                 const impairment::ImpairmentConfig& config) const;

  const uint64_t seed_;
  const absl::Time start_;
  absl::Time now_;
  uint64_t next_sequence_ = 0;
  std::map<EventKey, Event> queue_;
  std::vector<NodeState> nodes_;
  absl::flat_hash_map<udp::SocketAddress, size_t> node_index_;
  // Rebind: public address -> node, and addresses whose mapping is gone.
  absl::flat_hash_map<udp::SocketAddress, size_t> public_index_;
  absl::flat_hash_map<udp::SocketAddress, size_t> retired_;
  absl::flat_hash_map<PathKey, Path> paths_;
  impairment::ImpairmentConfig default_link_;
  uint64_t events_processed_ = 0;
  uint64_t undeliverable_ = 0;
  uint64_t nat_dropped_ = 0;
  uint64_t stale_timers_ = 0;
  uint64_t overdue_timers_ = 0;
  uint64_t max_events_ = kDefaultMaxEvents;
  absl::Status status_;
};

}  // namespace udpmsg::sim

#endif  // UDPMSG_TESTS_SIM_SIMULATOR_H_
