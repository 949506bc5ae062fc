#include "reliable/delivery.h"

namespace udpmsg::reliable {

absl::string_view ModeName(DeliveryMode mode) {
  switch (mode) {
    case DeliveryMode::kUnreliable:
      return "unreliable";
    case DeliveryMode::kUnreliableSequenced:
      return "unreliable-sequenced";
    case DeliveryMode::kReliableUnordered:
      return "reliable-unordered";
    case DeliveryMode::kReliableOrdered:
      return "reliable-ordered";
  }
  return "unknown";
}

bool ReceiveChannel::Wanted(uint64_t sequence) const {
  switch (mode_) {
    case DeliveryMode::kUnreliable:
      return true;
    case DeliveryMode::kUnreliableSequenced:
      return sequence >= next_;
    case DeliveryMode::kReliableUnordered:
      return sequence >= next_ && sequence - next_ < window_ &&
             !delivered_ahead_.contains(sequence);
    case DeliveryMode::kReliableOrdered:
      return sequence >= next_ && sequence - next_ < window_ && !waiting_.contains(sequence);
  }
  return false;
}

void ReceiveChannel::OnComplete(uint64_t sequence, std::string message,
                                std::vector<std::string>* out) {
  if (!Wanted(sequence)) {
    if (mode_ == DeliveryMode::kUnreliableSequenced) {
      ++stats_.stale;
    } else if (sequence >= next_ && sequence - next_ >= window_) {
      ++stats_.out_of_window;
    } else {
      ++stats_.duplicates;
    }
    return;
  }
  switch (mode_) {
    case DeliveryMode::kUnreliable:
      break;
    case DeliveryMode::kUnreliableSequenced:
      next_ = sequence + 1;
      break;
    case DeliveryMode::kReliableUnordered:
      delivered_ahead_.insert(sequence);
      held_bytes_ += kDeliveredAheadBytes;
      Advance();
      break;
    case DeliveryMode::kReliableOrdered:
      if (sequence != next_) {
        held_bytes_ += message.size() + kParkedMessageBytes;
        waiting_.emplace(sequence, std::move(message));
        return;
      }
      out->push_back(std::move(message));
      ++stats_.delivered;
      ++next_;
      for (auto it = waiting_.begin(); it != waiting_.end() && it->first == next_;) {
        held_bytes_ -= it->second.size() + kParkedMessageBytes;
        out->push_back(std::move(it->second));
        ++stats_.delivered;
        ++next_;
        it = waiting_.erase(it);
      }
      return;
  }
  out->push_back(std::move(message));
  ++stats_.delivered;
}

static_assert(sizeof(ReceiveChannel) + 2 * (16 + 1) * 3 <= kChannelBytes,
              "kChannelBytes must cover a ReceiveChannel and its table slots");

void ReceiveChannel::Advance() {
  while (!delivered_ahead_.empty() && *delivered_ahead_.begin() == next_) {
    delivered_ahead_.erase(delivered_ahead_.begin());
    held_bytes_ -= kDeliveredAheadBytes;
    ++next_;
  }
}

}  // namespace udpmsg::reliable
