#include "tests/sim/simulator.h"

#include <malloc.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "impairment/model.h"
#include "reliable/deterministic_rng.h"
#include "udp/socket_address.h"

namespace udpmsg::sim {
namespace {

// Simulated transfers move gigabytes through multi-megabyte strings (the
// test's data, a reassembled message, a sink) that glibc serves with mmap and
// gives back to the kernel on free, so every seed page-faults them in again:
// measured with `perf record -e page-faults`, that was over half the run time
// of endpoint_sim_test (6.7 s -> 2.8 s for 10 seeds once kept) and a third
// of transfer_sim_test's. Keeping freed memory in the process changes no
// behaviour under test, only how fast the test's process gets its pages.
// (ASan's allocator ignores these settings; the twins are unaffected.)
const bool kKeepFreedMemory = [] {
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
  mallopt(M_TOP_PAD, 64 << 20);
  return true;
}();

// FNV-1a, 64 bit: a hash fixed by its definition (absl::Hash is salted per
// process, so it must not feed seeds).
uint64_t Fnv1a(absl::string_view text) {
  uint64_t h = 0xCBF29CE484222325ULL;
  for (char c : text) {
    h ^= static_cast<uint8_t>(c);
    h *= 0x100000001B3ULL;
  }
  return h;
}

// The seed of the path from -> to in a simulation seeded with `seed`.
uint64_t PathSeed(uint64_t seed, const udp::SocketAddress& from, const udp::SocketAddress& to) {
  reliable::DeterministicRng rng(seed, Fnv1a(absl::StrCat(from.ToString(), ">", to.ToString())));
  return rng.Next();
}

}  // namespace

absl::Time DefaultStart() { return absl::FromUnixSeconds(1'000'000'000); }

Simulator::Simulator(uint64_t seed, absl::Time start)
    : seed_(seed), start_(start), now_(start) {
  default_link_.delay = absl::Milliseconds(1);
}

absl::Status Simulator::AddNode(const udp::SocketAddress& address, Node* node) {
  if (!address.valid()) return absl::InvalidArgumentError("sim: node address is empty");
  if (node == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("sim: null node for ", address.ToString()));
  }
  if (!node_index_.try_emplace(address, nodes_.size()).second) {
    return absl::AlreadyExistsError(absl::StrCat("sim: a node already has ", address.ToString()));
  }
  if (public_index_.contains(address)) {
    return absl::AlreadyExistsError(
        absl::StrCat("sim: ", address.ToString(), " is a node's public address"));
  }
  nodes_.push_back(NodeState{address, address, node, absl::InfiniteFuture(), false, 0, {}, {}});
  Poll(nodes_.size() - 1);
  return absl::OkStatus();
}

absl::StatusOr<impairment::ImpairmentModel> Simulator::MakeModel(
    const PathKey& key, const impairment::ImpairmentConfig& config) const {
  impairment::ImpairmentConfig seeded = config;
  seeded.seed = PathSeed(seed_, key.first, key.second);
  absl::StatusOr<impairment::ImpairmentModel> model = impairment::ImpairmentModel::Create(seeded, start_);
  if (!model.ok()) {
    return absl::Status(model.status().code(),
                        absl::StrCat("sim: link ", key.first.ToString(), " -> ",
                                     key.second.ToString(), ": ", model.status().message()));
  }
  return model;
}

absl::Status Simulator::SetLink(const udp::SocketAddress& from, const udp::SocketAddress& to,
                                const impairment::ImpairmentConfig& config) {
  PathKey key(from, to);
  absl::StatusOr<impairment::ImpairmentModel> model = MakeModel(key, config);
  if (!model.ok()) return model.status();
  auto it = paths_.find(key);
  if (it == paths_.end()) {
    paths_.emplace(key, Path(*std::move(model)));
  } else {
    it->second.past += it->second.model.counters();
    it->second.model = *std::move(model);
  }
  return absl::OkStatus();
}

absl::Status Simulator::SetDefaultLink(const impairment::ImpairmentConfig& config) {
  absl::Status status = impairment::Validate(config);
  if (!status.ok()) return status;
  default_link_ = config;
  return absl::OkStatus();
}

void Simulator::SetPathMtu(const udp::SocketAddress& from, const udp::SocketAddress& to,
                           size_t max_payload) {
  GetPath(PathKey(from, to)).max_payload = max_payload;
}

absl::Status Simulator::SetReceiveBatching(const udp::SocketAddress& node,
                                           absl::Duration interval) {
  auto it = node_index_.find(node);
  if (it == node_index_.end()) {
    return absl::InvalidArgumentError(absl::StrCat("sim: no node ", node.ToString()));
  }
  if (interval < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("sim: negative receive batching interval ", absl::FormatDuration(interval)));
  }
  nodes_[it->second].batch_interval = interval;
  return absl::OkStatus();
}

absl::Status Simulator::Rebind(const udp::SocketAddress& node,
                              const udp::SocketAddress& public_address) {
  auto it = node_index_.find(node);
  if (it == node_index_.end()) {
    return absl::InvalidArgumentError(absl::StrCat("sim: no node ", node.ToString()));
  }
  const size_t index = it->second;
  auto owner = node_index_.find(public_address);
  auto pub = public_index_.find(public_address);
  if ((owner != node_index_.end() && owner->second != index) ||
      (pub != public_index_.end() && pub->second != index)) {
    return absl::AlreadyExistsError(
        absl::StrCat("sim: another node has ", public_address.ToString()));
  }
  NodeState& state = nodes_[index];
  if (state.public_address == public_address) return absl::OkStatus();
  // The old mapping is gone: what is sent to it from now on is dropped.
  retired_[state.public_address] = index;
  public_index_.erase(state.public_address);
  retired_.erase(public_address);
  if (!(public_address == state.address)) public_index_[public_address] = index;
  state.public_address = public_address;
  return absl::OkStatus();
}

udp::SocketAddress Simulator::PublicAddress(const udp::SocketAddress& node) const {
  auto it = node_index_.find(node);
  return it == node_index_.end() ? node : nodes_[it->second].public_address;
}

Simulator::Path& Simulator::GetPath(const PathKey& key) {
  auto it = paths_.find(key);
  if (it == paths_.end()) {
    // default_link_ was validated by SetDefaultLink (or is the built-in one).
    it = paths_.emplace(key, Path(*MakeModel(key, default_link_))).first;
  }
  return it->second;
}

void Simulator::Push(absl::Time at, Event event) {
  queue_.emplace(EventKey(std::max(at, now_), next_sequence_++), std::move(event));
}

void Simulator::Inject(absl::Time at, Datagram d) {
  Event event;
  event.kind = EventKind::kDeliver;
  event.datagram = std::move(d);
  event.via_path = false;
  Push(at, std::move(event));
}

void Simulator::At(absl::Time at, std::function<void()> action) {
  Event event;
  event.kind = EventKind::kAction;
  event.action = std::move(action);
  Push(at, std::move(event));
}

void Simulator::Send(Datagram d) {
  Path& path = GetPath(PathKey(d.from, d.to));
  path.stats.bytes_sent += d.bytes.size();
  ++path.stats.packets_sent;
  if (path.max_payload != 0 && d.bytes.size() > path.max_payload) {
    ++path.stats.mtu_dropped;
    return;
  }
  for (impairment::Delivery& delivery : path.model.OnPacket(now_, d.bytes)) {
    Event event;
    event.kind = EventKind::kDeliver;
    event.datagram = Datagram{d.from, d.to, std::move(delivery.bytes)};
    event.via_path = true;
    Push(delivery.deliver_at, std::move(event));
  }
}

void Simulator::Poll(size_t index) {
  Node* node = nodes_[index].node;
  for (Datagram& d : node->TakeOutgoing()) {
    if (!d.from.valid()) d.from = nodes_[index].address;
    // Behind a rebound NAT, the node's datagrams leave from its public address.
    if (d.from == nodes_[index].address) d.from = nodes_[index].public_address;
    Send(std::move(d));
  }
  NodeState& state = nodes_[index];
  const absl::Time deadline = node->NextTimeout();
  if (state.armed && deadline == state.deadline) return;  // already queued
  if (!state.armed && deadline == absl::InfiniteFuture()) return;
  ++state.generation;  // whatever is queued for this node is now stale
  state.deadline = deadline;
  state.armed = deadline != absl::InfiniteFuture();
  if (!state.armed) return;
  if (deadline <= now_) ++overdue_timers_;
  Event event;
  event.kind = EventKind::kTimer;
  event.node = index;
  event.generation = state.generation;
  Push(deadline, std::move(event));  // Push clamps to now_
}

void Simulator::PollAll() {
  for (size_t i = 0; i < nodes_.size(); ++i) Poll(i);
}

bool Simulator::RunEvent(Event& event) {
  switch (event.kind) {
    case EventKind::kDeliver: {
      const Datagram& d = event.datagram;
      size_t index = 0;
      if (auto r = retired_.find(d.to); r != retired_.end()) {
        ++nat_dropped_;  // a mapping a rebinding retired
        return true;
      }
      if (auto it = node_index_.find(d.to); it != node_index_.end()) {
        index = it->second;
      } else if (auto p = public_index_.find(d.to); p != public_index_.end()) {
        index = p->second;
      } else {
        ++undeliverable_;
        return true;
      }
      if (event.via_path) {
        PathStats& stats = GetPath(PathKey(d.from, d.to)).stats;
        stats.bytes_delivered += d.bytes.size();
        ++stats.packets_delivered;
      }
      NodeState& state = nodes_[index];
      // Held for the node's next read (see "Receive batching"); also when
      // batching was turned off after the read was due, so that nothing
      // overtakes what waits.
      if (state.batch_interval > absl::ZeroDuration() || !state.inbox.empty()) {
        if (state.inbox.empty()) {
          Event read;
          read.kind = EventKind::kRead;
          read.node = index;
          Push(now_ + state.batch_interval, std::move(read));
        }
        state.inbox.push_back(std::move(event.datagram));
        return true;
      }
      state.node->OnDatagram(now_, d.from, d.to, d.bytes);
      Poll(index);
      return true;
    }
    case EventKind::kRead: {
      NodeState& state = nodes_[event.node];
      std::vector<Datagram> batch;
      if (state.inbox.size() <= kMaxReceiveBatch) {
        batch.swap(state.inbox);
      } else {
        const auto cut = state.inbox.begin() + static_cast<std::ptrdiff_t>(kMaxReceiveBatch);
        batch.assign(std::make_move_iterator(state.inbox.begin()), std::make_move_iterator(cut));
        state.inbox.erase(state.inbox.begin(), cut);
        Event more;
        more.kind = EventKind::kRead;
        more.node = event.node;
        Push(now_, std::move(more));  // the next read, at once
      }
      state.node->OnDatagrams(now_, batch);
      Poll(event.node);
      return true;
    }
    case EventKind::kTimer: {
      NodeState& state = nodes_[event.node];
      if (event.generation != state.generation) {
        ++stale_timers_;
        return false;
      }
      state.armed = false;
      // Never early: the node may have moved its deadline without a poll.
      if (state.node->NextTimeout() <= now_) state.node->OnTimeout(now_);
      Poll(event.node);
      return true;
    }
    case EventKind::kAction:
      event.action();
      PollAll();
      return true;
  }
  return false;
}

bool Simulator::RunUntil(const std::function<bool()>& done, absl::Time deadline) {
  if (done()) return true;
  while (!queue_.empty() && queue_.begin()->first.first <= deadline) {
    if (events_processed_ >= max_events_) {
      if (status_.ok()) {
        status_ = absl::ResourceExhaustedError(absl::StrCat(
            "sim: max_events (", max_events_, ") reached at ", absl::FormatTime(now_),
            "; livelock? overdue_timers=", overdue_timers_));
      }
      return false;
    }
    auto handle = queue_.extract(queue_.begin());
    now_ = handle.key().first;
    if (!RunEvent(handle.mapped())) continue;
    ++events_processed_;
    if (done()) return true;
  }
  if (deadline != absl::InfiniteFuture() && deadline > now_) now_ = deadline;
  return false;
}

void Simulator::RunFor(absl::Duration d) {
  RunUntil([] { return false; }, now_ + d);
}

Simulator::PathStats Simulator::path_stats(const udp::SocketAddress& from,
                                           const udp::SocketAddress& to) const {
  auto it = paths_.find(PathKey(from, to));
  if (it == paths_.end()) return PathStats{};
  PathStats stats = it->second.stats;
  stats.counters = it->second.past;
  stats.counters += it->second.model.counters();
  return stats;
}

}  // namespace udpmsg::sim
