#include "reliable/send_queue.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace udpmsg::reliable {
namespace {

// Tags are rebased when a priority's virtual time reaches this: far from
// 2^64, so no tag overflows in between (a fragment, or a run of them in one
// datagram, costs at most (2^17 + kFragmentCostBytes * 2^16) * kTagScale
// units, under 2^39).
constexpr uint64_t kRebaseTag = uint64_t{1} << 62;

// Drops entries [0, head) once they are most of the vector (amortised O(1)
// per entry).
template <typename T>
void Compact(std::vector<T>& v, size_t& head) {
  if (head >= 64 && head * 2 >= v.size()) {
    v.erase(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(head));
    head = 0;
  }
}

}  // namespace

SendQueue::Message* SendQueue::Find(uint64_t number) {
  if (found_.valid && found_.value.number == number) return found_.value.message;
  auto it = messages_.find(number);
  if (it == messages_.end()) return nullptr;
  found_.value = FoundMessage{number, &it->second};
  found_.valid = true;
  return found_.value.message;
}

SendQueue::Lane& SendQueue::LaneOf(uint32_t channel, uint64_t* key) {
  if (lanes_ != nullptr) {
    auto it = lanes_->by_channel.find(channel);
    if (it != lanes_->by_channel.end()) {
      *key = uint64_t{channel} + 1;
      return it->second;
    }
  }
  *key = 0;
  return shared_;
}

SendQueue::Lane& SendQueue::LaneByKey(uint64_t key) {
  if (key == 0) return shared_;
  return lanes_->by_channel.find(static_cast<uint32_t>(key - 1))->second;
}

uint64_t& SendQueue::QueuedAt(uint8_t priority) { return lanes_->queued_by_priority[priority]; }

absl::StatusOr<uint64_t> SendQueue::Enqueue(uint32_t channel, DeliveryMode mode,
                                            MessageBytes message) {
  ForgetCandidate();
  if (message.dangling()) {
    return absl::InvalidArgumentError("shared message bytes without an owner to keep them alive");
  }
  if (message.size() > limits_.max_message_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("message of ", message.size(),
                                                   " bytes exceeds the limit of ",
                                                   limits_.max_message_bytes));
  }
  uint64_t key = 0;
  Lane& lane = LaneOf(channel, &key);
  const uint64_t size = message.size();
  if (queued_bytes_ + size > limits_.max_queued_bytes && !messages_.empty()) {
    // The urgent reserve (see the header): only bytes as urgent as this
    // message or more count against it.
    bool reserve = false;
    if (lanes_ != nullptr) {
      const uint64_t limit = limits_.max_queued_bytes / kUrgentReserveDivisor;
      uint64_t urgent = 0;
      for (uint8_t p = 0; p <= lane.priority; ++p) urgent += QueuedAt(p);
      reserve = urgent + size <= limit && queued_bytes_ + size <= limits_.max_queued_bytes + limit;
    }
    if (!reserve) {
      return absl::ResourceExhaustedError(
          absl::StrCat("send queue full: ", queued_bytes_, " bytes queued (limit ",
                       limits_.max_queued_bytes, "); wait for acknowledgements"));
    }
  }
  auto [it, created] = spaces_.try_emplace(SpaceKey{channel, mode});
  Space& space = it->second;
  if (created) space.next_sequence = limits_.initial_sequence;
  if (space.next_sequence >= limits_.sequence_limit) {
    return absl::ResourceExhaustedError(
        absl::StrCat("message sequence space of channel ", channel, " (", ModeName(mode),
                     ") is exhausted at ", space.next_sequence, "; open a new connection"));
  }
  const uint64_t sequence = space.next_sequence++;
  const uint32_t count = FragmentCountFor(message.size(), limits_.max_fragment_payload);
  const uint64_t number = next_number_++;
  queued_bytes_ += size;
  Message m{channel, mode, sequence, std::move(message), count, lane.priority, 0, 0, {}, &space};
  if (IsReliable(mode)) {
    m.acked.assign(count, false);
    space.unacked.emplace(sequence, number);
  }
  messages_.emplace(number, std::move(m));
  ForgetFound();
  Compact(lane.pending, lane.pending_head);
  lane.pending.push_back(number);
  if (lanes_ != nullptr) {
    QueuedAt(lane.priority) += size;
    if (!lane.ready) Refresh(key, lane);
  }
  return sequence;
}

bool SendQueue::WindowAllows(const Message& m) const {
  if (!IsReliable(m.mode)) return true;
  // The message itself is in `unacked`, so the map is not empty.
  const uint64_t oldest = m.space->unacked.begin()->first;
  return m.sequence - oldest < limits_.window;
}

void SendQueue::Fill(uint64_t number, const Message& m, uint32_t index,
                     const FragmentLayout& layout, bool retransmission, OutgoingFragment& f) {
  f.id = FragmentId{number, index};
  f.channel = m.channel;
  f.mode = m.mode;
  f.sequence = m.sequence;
  f.header = FragmentHeader{index, m.count, m.bytes.size()};
  f.payload = m.bytes.view().substr(layout.offset, layout.length);
  f.retransmission = retransmission;
}

void SendQueue::PopLost(Lane& lane) {
  if (++lane.lost_head < lane.lost.size()) return;
  // Drained: give the memory back (a loss episode can queue thousands).
  std::vector<FragmentId>().swap(lane.lost);
  lane.lost_head = 0;
}

void SendQueue::PopPending(Lane& lane) {
  if (++lane.pending_head < lane.pending.size()) return;
  std::vector<uint64_t>().swap(lane.pending);
  lane.pending_head = 0;
}

void SendQueue::PushLost(Lane& lane, const FragmentId& id) {
  Compact(lane.lost, lane.lost_head);
  lane.lost.push_back(id);
}

void SendQueue::SkipSettledLost(Lane& lane) {
  while (lane.lost_head < lane.lost.size()) {
    const FragmentId& id = lane.lost[lane.lost_head];
    const Message* m = Find(id.message);
    if (m != nullptr && !m->acked[id.index]) return;
    PopLost(lane);  // settled meanwhile
  }
}

SendQueue::Message* SendQueue::FrontPending(Lane& lane, uint64_t* number) {
  while (lane.pending_head < lane.pending.size()) {
    const uint64_t n = lane.pending[lane.pending_head];
    Message* m = Find(n);
    if (m != nullptr && m->next_unsent < m->count) {
      *number = n;
      return m;
    }
    PopPending(lane);  // fully sent (or released)
  }
  return nullptr;
}

bool SendQueue::Sendable(Lane& lane) {
  SkipSettledLost(lane);
  if (lane.lost_head < lane.lost.size()) return true;
  // A message blocked by its window blocks those behind it in its lane too:
  // that keeps a lane's messages in queue order, which is what an
  // application that interleaves channels in one lane expects.
  uint64_t number = 0;
  const Message* m = FrontPending(lane, &number);
  return m != nullptr && WindowAllows(*m);
}

void SendQueue::Refresh(uint64_t key, Lane& lane) {
  const bool sendable = Sendable(lane);
  if (sendable == lane.ready) return;
  if (sendable) {
    // No credit for the time it had nothing to send.
    lane.tag = std::max(lane.tag, lanes_->virtual_time[lane.priority]);
    lanes_->ready.insert(ReadyKey{lane.priority, lane.tag, key});
  } else {
    lanes_->ready.erase(ReadyKey{lane.priority, lane.tag, key});
  }
  lane.ready = sendable;
}

SendQueue::Lane* SendQueue::Top(uint64_t* key) {
  if (lanes_ == nullptr) {
    *key = 0;
    return Sendable(shared_) ? &shared_ : nullptr;
  }
  // Ready lanes are sendable except for lost entries settled meanwhile.
  while (!lanes_->ready.empty()) {
    const uint64_t k = std::get<2>(*lanes_->ready.begin());
    Lane& lane = LaneByKey(k);
    if (Sendable(lane)) {
      *key = k;
      return &lane;
    }
    lanes_->ready.erase(lanes_->ready.begin());
    lane.ready = false;
  }
  return nullptr;
}

void SendQueue::Charge(uint64_t key, Lane& lane, size_t bytes) {
  lanes_->ready.erase(ReadyKey{lane.priority, lane.tag, key});
  lane.ready = false;
  lanes_->virtual_time[lane.priority] = lane.tag;
  lane.tag += (bytes + kFragmentCostBytes) * kTagScale / lane.weight;
  Refresh(key, lane);
  if (lanes_->virtual_time[lane.priority] >= kRebaseTag) Rebase(lane.priority);
}

void SendQueue::Rebase(uint8_t priority) {
  // Ready lanes of the priority have tags >= its virtual time; others get
  // max(tag, virtual time) when they become ready, so clamping them at the
  // new zero changes nothing.
  const uint64_t base = lanes_->virtual_time[priority];
  auto shift = [&](uint64_t key, Lane& lane) {
    if (lane.priority != priority) return;
    if (lane.ready) lanes_->ready.erase(ReadyKey{lane.priority, lane.tag, key});
    lane.tag = lane.tag > base ? lane.tag - base : 0;
    if (lane.ready) lanes_->ready.insert(ReadyKey{lane.priority, lane.tag, key});
  };
  shift(0, shared_);
  for (auto& [channel, lane] : lanes_->by_channel) shift(uint64_t{channel} + 1, lane);
  lanes_->virtual_time[priority] = 0;
}

bool SendQueue::HasSendable() {
  candidate_.value = Candidate();
  candidate_.valid = true;
  return candidate_.value.lane != nullptr;
}

SendQueue::Pick SendQueue::Candidate() {
  Pick pick;
  pick.lane = Top(&pick.key);
  if (pick.lane == nullptr) return pick;
  Lane& lane = *pick.lane;
  if (lane.lost_head < lane.lost.size()) {
    const FragmentId id = lane.lost[lane.lost_head];
    pick.number = id.message;
    pick.message = Find(id.message);  // Sendable skipped settled entries
    pick.index = id.index;
    pick.lost = true;
  } else {
    pick.message = FrontPending(lane, &pick.number);
    pick.index = pick.message->next_unsent;
  }
  return pick;
}

std::optional<OutgoingFragment> SendQueue::Next() { return Next(UINT64_MAX); }

std::optional<OutgoingFragment> SendQueue::Next(uint64_t max_payload) {
  return NextIf([max_payload](const OutgoingFragment& f) { return f.payload.size() <= max_payload; });
}

std::optional<OutgoingFragment> SendQueue::NextIf(
    absl::FunctionRef<bool(const OutgoingFragment&)> fits) {
  return NextRun(1, [&](const OutgoingFragment& c) -> uint32_t { return fits(c) ? 1 : 0; });
}

std::optional<OutgoingFragment> SendQueue::NextRun(
    uint32_t max_run, absl::FunctionRef<uint32_t(const OutgoingFragment&)> take,
    bool fetch_ahead) {
  // Every return returns `f`, so it is built where the caller's optional
  // lives: assembling the fragment in locals and copying it out stalled
  // store forwarding (Next was 6.3% of a clean-veth sender's samples, 2.5%
  // built in place).
  std::optional<OutgoingFragment> f;
  const Pick pick = candidate_.valid ? candidate_.value : Candidate();
  ForgetCandidate();
  if (pick.lane == nullptr) return f;
  Message& m = *pick.message;
  const uint32_t available =
      pick.lost ? 1 : std::max<uint32_t>(1, std::min(max_run, m.count - pick.index));
  // Valid by construction (FragmentCountFor).
  Fill(pick.number, m, pick.index,
       RunLayoutOfValid(pick.index, available, m.count, m.bytes.size()), pick.lost, f.emplace());
  f->id.run = available;
  const uint32_t run = take(*f);
  if (run == 0 || run > available) {
    f.reset();
    // Nothing changed: the next question finds the same fragment.
    candidate_.value = pick;
    candidate_.valid = true;
    return f;
  }
  const FragmentLayout taken = RunLayoutOfValid(pick.index, run, m.count, m.bytes.size());
  if (run != available) {
    f->id.run = run;
    f->payload = f->payload.substr(0, taken.length);
  }
  if (pick.lost) {
    PopLost(*pick.lane);
    ++retransmitted_;
  } else {
    m.next_unsent += run;
    // Unreliable fragments settle when sent; the bytes stay until the packet
    // that carries the last one is acknowledged or lost.
    if (!IsReliable(m.mode)) m.settled += run;
  }
  // A run is charged as its fragments one by one would have been.
  if (lanes_ != nullptr) {
    Charge(pick.key, *pick.lane, taken.length + (run - 1) * kFragmentCostBytes);
  }
  if (!pick.lost && fetch_ahead) {
    // The encoder reads each payload once, from the application's buffer,
    // usually cold. Two datagrams ahead is fetched now, while this one is
    // encoded: one at a time of single fragments the fragment four ahead
    // (two datagrams of two fragments on a 1500-byte path), of runs the
    // run after next (as long as this one); at a message's start, all of
    // that. Clean veth, six alternating rounds: sender 0.885 to 0.742 CPU
    // s/GB, goodput +18% (docs/performance.md). One fragment ahead gained
    // about half of that. The loop stays here: GCC drops a call to a
    // function whose only effect is a prefetch.
    const uint64_t length = taken.length;
    const uint64_t end = taken.offset + length;
    const uint64_t ahead = run == 1 ? 3 * length : length;
    const uint64_t from = pick.index == 0 ? end : end + ahead;
    const uint64_t to = std::min<uint64_t>(end + ahead + length, m.bytes.size());
    const char* bytes = m.bytes.view().data();
    for (uint64_t at = from; at < to; at += 64) __builtin_prefetch(bytes + at);
  }
  return f;
}

void SendQueue::OnAcked(const FragmentId& id, std::vector<MessageReceipt>* receipts) {
  ForgetCandidate();
  Message* found = Find(id.message);
  if (found == nullptr) return;
  Message& m = *found;
  if (!IsReliable(m.mode)) {
    if (m.settled == m.count) Release(id.message);
    return;
  }
  for (uint32_t i = id.index, end = RunEnd(id, m); i < end; ++i) {
    if (m.acked[i]) continue;
    m.acked[i] = true;
    ++m.settled;
  }
  if (m.settled < m.count) return;
  receipts->push_back(MessageReceipt{m.channel, m.mode, m.sequence, m.bytes.size()});
  Release(id.message);
}

void SendQueue::OnLost(const FragmentId& id) {
  ForgetCandidate();
  Message* found = Find(id.message);
  if (found == nullptr) return;
  Message& m = *found;
  if (!IsReliable(m.mode)) {
    if (m.settled == m.count) Release(id.message);
    return;
  }
  uint64_t key = 0;
  Lane* lane = nullptr;
  for (uint32_t i = id.index, end = RunEnd(id, m); i < end; ++i) {
    if (m.acked[i]) continue;
    if (lane == nullptr) lane = &LaneOf(m.channel, &key);
    PushLost(*lane, FragmentId{id.message, i, 1});
  }
  if (lane != nullptr && lanes_ != nullptr && !lane->ready) Refresh(key, *lane);
}

void SendQueue::Release(uint64_t number) {
  auto it = messages_.find(number);
  if (it == messages_.end()) return;
  Message& m = it->second;
  if (IsReliable(m.mode)) m.space->unacked.erase(m.sequence);
  queued_bytes_ -= m.bytes.size();
  const uint32_t channel = m.channel;
  if (lanes_ != nullptr) QueuedAt(m.priority) -= m.bytes.size();
  messages_.erase(it);
  ForgetFound();
  if (lanes_ != nullptr) {
    // The window of the channel's lane may have opened.
    uint64_t key = 0;
    Lane& lane = LaneOf(channel, &key);
    if (!lane.ready) Refresh(key, lane);
  }
}

void SendQueue::SetMaxFragmentPayload(uint64_t size) {
  ForgetCandidate();
  if (size == 0 || size == limits_.max_fragment_payload) return;
  limits_.max_fragment_payload = size;
  // Every message with fragments never sent is in its lane's pending list.
  auto recut = [&](Lane& lane) {
    for (size_t i = lane.pending_head; i < lane.pending.size(); ++i) {
      auto it = messages_.find(lane.pending[i]);
      if (it == messages_.end()) continue;
      Message& m = it->second;
      if (m.next_unsent != 0) continue;  // started: its count is on the wire
      m.count = FragmentCountFor(m.bytes.size(), size);
      if (IsReliable(m.mode)) m.acked.assign(m.count, false);
    }
  };
  recut(shared_);
  if (lanes_ != nullptr) {
    for (auto& [channel, lane] : lanes_->by_channel) recut(lane);
  }
}

absl::Status SendQueue::SetChannelLane(uint32_t channel, uint32_t priority, uint32_t weight) {
  ForgetCandidate();
  if (priority >= kPriorities) {
    return absl::InvalidArgumentError(
        absl::StrCat("priority ", priority, " out of range [0, ", kPriorities, ")"));
  }
  if (weight < 1 || weight > kMaxWeight) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight ", weight, " out of range [1, ", kMaxWeight, "]"));
  }
  if (lanes_ == nullptr) {
    lanes_ = std::make_unique<Lanes>();
    for (uint64_t& v : lanes_->virtual_time) v = limits_.initial_virtual_time;
    lanes_->queued_by_priority[0] = queued_bytes_;  // all of it was in the shared lane
    Refresh(0, shared_);
  }
  auto [it, created] = lanes_->by_channel.try_emplace(channel);
  Lane& lane = it->second;
  const uint64_t key = uint64_t{channel} + 1;
  if (lane.ready) {
    lanes_->ready.erase(ReadyKey{lane.priority, lane.tag, key});
    lane.ready = false;
  }
  // At another priority the old tag means nothing: start at its clock.
  if (lane.priority != priority) lane.tag = lanes_->virtual_time[priority];
  lane.priority = static_cast<uint8_t>(priority);
  lane.weight = weight;
  if (created) {
    // Move the channel's entries out of the shared lane, keeping the order
    // of both.
    auto mine = [&](uint64_t number, bool* alive) {
      auto m = messages_.find(number);
      *alive = m != messages_.end();
      return *alive && m->second.channel == channel;
    };
    std::vector<uint64_t> pending;
    for (size_t i = shared_.pending_head; i < shared_.pending.size(); ++i) {
      bool alive = false;
      const uint64_t n = shared_.pending[i];
      if (mine(n, &alive)) {
        lane.pending.push_back(n);
      } else if (alive) {
        pending.push_back(n);
      }
    }
    shared_.pending.swap(pending);
    shared_.pending_head = 0;
    std::vector<FragmentId> lost;
    for (size_t i = shared_.lost_head; i < shared_.lost.size(); ++i) {
      bool alive = false;
      const FragmentId id = shared_.lost[i];
      if (mine(id.message, &alive)) {
        lane.lost.push_back(id);
      } else if (alive) {
        lost.push_back(id);
      }
    }
    shared_.lost.swap(lost);
    shared_.lost_head = 0;
    if (shared_.ready) {
      lanes_->ready.erase(ReadyKey{shared_.priority, shared_.tag, 0});
      shared_.ready = false;
    }
    Refresh(0, shared_);
  }
  // The bytes the channel has queued count at its new priority.
  for (auto& [number, m] : messages_) {
    if (m.channel != channel) continue;
    QueuedAt(m.priority) -= m.bytes.size();
    m.priority = lane.priority;
    QueuedAt(m.priority) += m.bytes.size();
  }
  Refresh(key, lane);
  return absl::OkStatus();
}

std::pair<uint32_t, uint32_t> SendQueue::ChannelLane(uint32_t channel) const {
  if (lanes_ != nullptr) {
    auto it = lanes_->by_channel.find(channel);
    if (it != lanes_->by_channel.end()) return {it->second.priority, it->second.weight};
  }
  return {shared_.priority, shared_.weight};
}

void SendQueue::Clear() {
  ForgetCandidate();
  messages_.clear();
  ForgetFound();
  auto drop = [](Lane& lane) {
    std::vector<uint64_t>().swap(lane.pending);
    lane.pending_head = 0;
    std::vector<FragmentId>().swap(lane.lost);
    lane.lost_head = 0;
    lane.ready = false;
  };
  drop(shared_);
  if (lanes_ != nullptr) {
    for (auto& [channel, lane] : lanes_->by_channel) drop(lane);
    lanes_->ready.clear();
    for (uint64_t& q : lanes_->queued_by_priority) q = 0;
  }
  for (auto& [key, space] : spaces_) space.unacked.clear();
  queued_bytes_ = 0;
}

}  // namespace udpmsg::reliable
