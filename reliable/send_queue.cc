#include "reliable/send_queue.h"

#include "absl/strings/str_cat.h"

namespace udpmsg::reliable {

absl::StatusOr<uint64_t> SendQueue::Enqueue(uint32_t channel, DeliveryMode mode,
                                            std::string message) {
  if (message.size() > limits_.max_message_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("message of ", message.size(),
                                                   " bytes exceeds the limit of ",
                                                   limits_.max_message_bytes));
  }
  if (queued_bytes_ + message.size() > limits_.max_queued_bytes && !messages_.empty()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "send queue full: ", queued_bytes_, " bytes queued (limit ", limits_.max_queued_bytes,
        "); wait for acknowledgements"));
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
  queued_bytes_ += message.size();
  Message m{channel, mode, sequence, std::move(message), count, 0, 0, {}};
  if (IsReliable(mode)) {
    m.acked.assign(count, false);
    space.unacked.emplace(sequence, number);
  }
  messages_.emplace(number, std::move(m));
  return sequence;
}

bool SendQueue::WindowAllows(const Message& m) const {
  if (!IsReliable(m.mode)) return true;
  auto it = spaces_.find(SpaceKey{m.channel, m.mode});
  // The message itself is in `unacked`, so the map is not empty.
  const uint64_t oldest = it->second.unacked.begin()->first;
  return m.sequence - oldest < limits_.window;
}

OutgoingFragment SendQueue::Make(uint64_t number, Message& m, uint32_t index,
                                 bool retransmission) {
  // The layout is valid by construction (FragmentCountFor).
  const FragmentLayout layout = *LayoutOf(index, m.count, m.bytes.size());
  OutgoingFragment f;
  f.id = FragmentId{number, index};
  f.channel = m.channel;
  f.mode = m.mode;
  f.sequence = m.sequence;
  f.header = FragmentHeader{index, m.count, m.bytes.size()};
  f.payload = absl::string_view(m.bytes).substr(layout.offset, layout.length);
  f.retransmission = retransmission;
  return f;
}

SendQueue::Message* SendQueue::FirstUnsent() {
  for (auto it = messages_.lower_bound(cursor_); it != messages_.end(); ++it) {
    cursor_ = it->first;
    if (it->second.next_unsent < it->second.count) return &it->second;
  }
  cursor_ = next_number_;
  return nullptr;
}

bool SendQueue::HasSendable() {
  if (!LostEmpty()) return true;
  const Message* m = FirstUnsent();
  return m != nullptr && WindowAllows(*m);
}

std::optional<size_t> SendQueue::PeekPayloadSize() {
  while (!LostEmpty()) {
    const FragmentId id = lost_[lost_head_];
    auto it = messages_.find(id.message);
    if (it == messages_.end() || it->second.acked[id.index]) {
      PopLost();  // settled meanwhile
      continue;
    }
    return LayoutOf(id.index, it->second.count, it->second.bytes.size())->length;
  }
  const Message* m = FirstUnsent();
  if (m == nullptr || !WindowAllows(*m)) return std::nullopt;
  return LayoutOf(m->next_unsent, m->count, m->bytes.size())->length;
}

std::optional<OutgoingFragment> SendQueue::Next() {
  while (!LostEmpty()) {
    const FragmentId id = lost_[lost_head_];
    PopLost();
    auto it = messages_.find(id.message);
    if (it == messages_.end() || it->second.acked[id.index]) continue;  // settled meanwhile
    ++retransmitted_;
    return Make(id.message, it->second, id.index, /*retransmission=*/true);
  }
  // New data in queue order. A message blocked by its window blocks those
  // behind it too: that keeps channels from overtaking in the queue, which
  // is what an application that interleaves them expects.
  Message* m = FirstUnsent();
  if (m == nullptr || !WindowAllows(*m)) return std::nullopt;
  const uint32_t index = m->next_unsent++;
  // Unreliable fragments settle when sent; the bytes stay until the packet
  // that carries the last one is acknowledged or lost.
  if (!IsReliable(m->mode)) ++m->settled;
  return Make(cursor_, *m, index, /*retransmission=*/false);
}

void SendQueue::OnAcked(const FragmentId& id, std::vector<MessageReceipt>* receipts) {
  auto it = messages_.find(id.message);
  if (it == messages_.end()) return;
  Message& m = it->second;
  if (!IsReliable(m.mode)) {
    if (m.settled == m.count) Release(id.message);
    return;
  }
  if (id.index >= m.count || m.acked[id.index]) return;
  m.acked[id.index] = true;
  if (++m.settled < m.count) return;
  receipts->push_back(MessageReceipt{m.channel, m.mode, m.sequence, m.bytes.size()});
  Release(id.message);
}

void SendQueue::OnLost(const FragmentId& id) {
  auto it = messages_.find(id.message);
  if (it == messages_.end()) return;
  Message& m = it->second;
  if (!IsReliable(m.mode)) {
    if (m.settled == m.count) Release(id.message);
    return;
  }
  if (id.index >= m.count || m.acked[id.index]) return;
  // Drop what was sent again once it is most of the vector (amortised
  // O(1) per fragment).
  if (lost_head_ >= 64 && lost_head_ * 2 >= lost_.size()) {
    lost_.erase(lost_.begin(), lost_.begin() + static_cast<std::ptrdiff_t>(lost_head_));
    lost_head_ = 0;
  }
  lost_.push_back(id);
}

void SendQueue::PopLost() {
  if (++lost_head_ < lost_.size()) return;
  // Drained: give the memory back (a loss episode can queue thousands).
  std::vector<FragmentId>().swap(lost_);
  lost_head_ = 0;
}

void SendQueue::Release(uint64_t number) {
  auto it = messages_.find(number);
  if (it == messages_.end()) return;
  Message& m = it->second;
  if (IsReliable(m.mode)) spaces_[SpaceKey{m.channel, m.mode}].unacked.erase(m.sequence);
  queued_bytes_ -= m.bytes.size();
  messages_.erase(it);
}

void SendQueue::SetMaxFragmentPayload(uint64_t size) {
  if (size == 0 || size == limits_.max_fragment_payload) return;
  limits_.max_fragment_payload = size;
  for (auto it = messages_.lower_bound(cursor_); it != messages_.end(); ++it) {
    Message& m = it->second;
    if (m.next_unsent != 0) continue;  // started: its count is on the wire
    m.count = FragmentCountFor(m.bytes.size(), size);
    if (IsReliable(m.mode)) m.acked.assign(m.count, false);
  }
}

void SendQueue::Clear() {
  messages_.clear();
  std::vector<FragmentId>().swap(lost_);
  lost_head_ = 0;
  for (auto& [key, space] : spaces_) space.unacked.clear();
  queued_bytes_ = 0;
}

}  // namespace udpmsg::reliable
