#include "reliable/reassembler.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace udpmsg::reliable {

uint32_t FragmentCountFor(uint64_t total_size, uint64_t max_fragment_payload) {
  if (total_size == 0) return 1;
  return static_cast<uint32_t>((total_size + max_fragment_payload - 1) / max_fragment_payload);
}

absl::StatusOr<FragmentLayout> LayoutOf(uint32_t index, uint32_t count, uint64_t total_size) {
  if (count == 0) return absl::InvalidArgumentError("fragment count 0");
  if (index >= count) {
    return absl::InvalidArgumentError(
        absl::StrCat("fragment index ", index, " not below count ", count));
  }
  if (total_size == 0) {
    if (count != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("empty message in ", count, " fragments"));
    }
    return FragmentLayout{0, 0};
  }
  if (count > total_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(count, " fragments for ", total_size, " bytes"));
  }
  const uint64_t chunk = FragmentChunk(count, total_size);
  const uint64_t last_offset = chunk * (count - 1);
  if (last_offset >= total_size) {
    return absl::InvalidArgumentError(absl::StrCat("no layout puts ", total_size, " bytes in ",
                                                   count, " fragments of ", chunk));
  }
  return LayoutOfValid(index, count, total_size);
}

uint64_t Reassembler::PartialCost(uint64_t size, uint64_t min_fragment) {
  const uint64_t fragments = size / std::max<uint64_t>(min_fragment, 1) + 1;
  return size + fragments * kFragmentOverheadBytes + kPartialMessageBytes;
}

std::optional<std::string> Reassembler::Whole(uint64_t max_message_bytes,
                                              const FragmentHeader& header,
                                              absl::string_view payload) {
  // Add's checks for a single fragment: within the size limit, a valid
  // layout (index 0 of 1), and the payload it announces.
  if (header.count != header.run || header.index != 0 || header.total_size > max_message_bytes ||
      payload.size() != header.total_size) {
    return std::nullopt;
  }
  // A run: its fragments' layout must be valid (their sizes then add up to
  // total_size).
  if (header.count != 1 && !LayoutOf(0, header.count, header.total_size).ok()) return std::nullopt;
  return std::string(payload);
}

void Reassembler::ReserveExactly(std::string& prefix, uint64_t size) {
  std::string grown;
  grown.reserve(size);  // from an empty string: exactly `size` (at least 30)
  grown.append(prefix);
  prefix.swap(grown);
}

Reassembler::Partial* Reassembler::Lookup(const MessageKey& key) const {
  if (last_ != nullptr && last_key_ == key) return last_;
  auto it = partial_.find(key);
  if (it == partial_.end()) return nullptr;
  Remember(key, const_cast<Partial*>(&it->second));
  return last_;
}

bool Reassembler::FitsReserved(const MessageKey& key, const FragmentHeader& header,
                               size_t payload_size) const {
  const Partial* partial = Lookup(key);
  if (partial == nullptr) return false;
  return partial->header.count == header.count &&
         partial->header.total_size == header.total_size &&
         header.index == partial->contiguous && !KeptApart(*partial, header.index, header.run) &&
         partial->prefix.size() + payload_size <= partial->reserved;
}

bool Reassembler::TryAppend(Partial& partial, absl::string_view payload,
                            uint64_t growth_allowance, uint64_t* grown, uint32_t run) {
  *grown = 0;
  const uint64_t needed = partial.prefix.size() + payload.size();
  if (needed > partial.reserved) {
    // Double what is reserved (at least what is needed, at most the whole
    // message), or else exactly what is needed. Either ends on a fragment
    // boundary: the prefix holds whole fragments of `chunk` bytes, all but
    // the last fragment are that long, and doubling keeps the multiple.
    uint64_t target = std::min<uint64_t>(partial.header.total_size,
                                         std::max<uint64_t>(needed, 2 * partial.reserved));
    const uint64_t overhead = partial.reserved == 0 ? kPrefixOverheadBytes : 0;
    auto fits = [&](uint64_t t) {
      const uint64_t step = t - partial.reserved + overhead;
      return step <= growth_allowance && held_bytes_ + step <= limits_.max_buffered_bytes;
    };
    if (!fits(target)) {
      target = needed;
      if (!fits(target)) return false;
    }
    ReserveExactly(partial.prefix, target);
    *grown = target - partial.reserved + overhead;
    partial.reserved = target;
  }
  partial.prefix.append(payload.data(), payload.size());
  partial.contiguous += run;
  return true;
}

absl::StatusOr<std::optional<std::string>> Reassembler::Add(absl::Time now,
                                                             const MessageKey& key,
                                                             const FragmentHeader& header,
                                                             absl::string_view payload,
                                                             uint64_t growth_allowance) {
  if (header.total_size > limits_.max_message_bytes) {
    ++stats_.rejected_fragments;
    return absl::InvalidArgumentError(absl::StrCat("message of ", header.total_size,
                                                   " bytes exceeds the limit of ",
                                                   limits_.max_message_bytes));
  }
  absl::StatusOr<FragmentLayout> layout = LayoutOf(header.index, header.count, header.total_size);
  if (!layout.ok()) {
    ++stats_.rejected_fragments;
    return layout.status();
  }
  uint64_t length = layout->length;
  if (header.run != 1) {
    if (header.run == 0 || header.run > header.count - header.index) {
      ++stats_.rejected_fragments;
      return absl::InvalidArgumentError(absl::StrCat("fragment run ", header.run, " from ",
                                                     header.index, " outside count ",
                                                     header.count));
    }
    length = RunLayoutOfValid(header.index, header.run, header.count, header.total_size).length;
  }
  if (payload.size() != length) {
    ++stats_.rejected_fragments;
    return absl::InvalidArgumentError(absl::StrCat("fragment ", header.index, "/", header.count,
                                                   " (run ", header.run, ") carries ",
                                                   payload.size(), " bytes; its layout needs ",
                                                   length));
  }
  Partial* found = Lookup(key);
  // Checked before the single-fragment shortcut: a 1-fragment header for a
  // key with fragments buffered used to complete a message while leaving the
  // partial one behind, never completed (that sequence was delivered) nor
  // freed, holding bytes and a slot (found by fuzz/reassembler_fuzzer).
  if (found != nullptr && (found->header.count != header.count ||
                           found->header.total_size != header.total_size)) {
    ++stats_.rejected_fragments;
    return absl::InvalidArgumentError(
        absl::StrCat("fragment ", header.index, " says ", header.count, " fragments / ",
                     header.total_size, " bytes; earlier ones said ", found->header.count,
                     " / ", found->header.total_size));
  }
  if (header.count == header.run && found == nullptr) {  // the whole message
    ++stats_.completed;
    return std::optional<std::string>(std::string(payload));
  }
  if (header.run != 1) {
    // In one piece only into the in-order buffer, with none of its
    // fragments held already (they are all at or past `contiguous`).
    const bool in_order =
        found == nullptr ? header.index == 0
                         : header.index == found->contiguous &&
                               !KeptApart(*found, header.index, header.run);
    if (!in_order) return AddOneByOne(now, key, header, payload, growth_allowance);
  }

  if (found == nullptr) {
    if (partial_.size() >= limits_.max_partial_messages) {
      ++stats_.refused_for_space;
      return absl::ResourceExhaustedError(absl::StrCat(
          "reassembly: ", partial_.size(), " messages already in progress (limit)"));
    }
  } else if (header.index < found->contiguous || KeptApart(*found, header.index)) {
    ++stats_.duplicate_fragments;
    return std::optional<std::string>();
  }
  auto refuse_for_space = [&] {
    ++stats_.refused_for_space;
    return absl::ResourceExhaustedError(absl::StrCat("reassembly buffer full (", held_bytes_,
                                                     " bytes held for ", buffered_bytes_,
                                                     " bytes of payload)"));
  };
  const bool created = found == nullptr;
  // Undoes the creation below when what created it is not kept.
  auto forget_created = [&] {
    if (!created) return;
    Forget();
    partial_.erase(key);
    held_bytes_ -= kPartialMessageBytes;
  };
  if (created) {
    if (held_bytes_ + kPartialMessageBytes > limits_.max_buffered_bytes) return refuse_for_space();
    // Remembered, replacing what the insertion may have moved: the
    // message's next fragment finds it without hashing.
    found = &partial_.emplace(key, Partial{header, now}).first->second;
    Remember(key, found);
    held_bytes_ += kPartialMessageBytes;
  }
  Partial& partial = *found;
  uint64_t grown = 0;
  // (Without an allowance only into what is already reserved; with nothing
  // reserved, as without the buffer.)
  const bool appended = header.index == partial.contiguous &&
                        TryAppend(partial, payload, growth_allowance, &grown, header.run);
  if (!appended && header.run != 1) {
    // The buffer cannot take the run in one piece: one by one, some may
    // still fit (or be kept apart), as separate frames would.
    forget_created();
    return AddOneByOne(now, key, header, payload, growth_allowance);
  }
  if (appended) {
    held_bytes_ += grown;
    uint64_t allowance = growth_allowance - grown;
    // The gap before fragments kept one by one may have closed: move them
    // into the buffer while they fit (each frees its own overhead).
    for (auto next = partial.fragments.begin();
         next != partial.fragments.end() && next->first == partial.contiguous;
         next = partial.fragments.begin()) {
      if (!TryAppend(partial, next->second, allowance, &grown)) break;
      allowance -= grown;
      held_bytes_ = held_bytes_ + grown - next->second.size() - kFragmentOverheadBytes;
      partial.fragments.erase(next);
    }
  } else {
    const uint64_t cost = payload.size() + kFragmentOverheadBytes;
    if (held_bytes_ + cost > limits_.max_buffered_bytes) {
      forget_created();
      return refuse_for_space();
    }
    partial.fragments.emplace(header.index, std::string(payload));
    held_bytes_ += cost;
  }
  partial.received_bytes += payload.size();
  buffered_bytes_ += payload.size();
  if (partial.contiguous + partial.fragments.size() < header.count) {
    return std::optional<std::string>();
  }

  // All bytes are here: the size is real. In-order fragments are already
  // in place; the others follow them (all their indices are >= contiguous).
  held_bytes_ -= Held(partial);
  buffered_bytes_ -= partial.received_bytes;
  std::string message;
  if (partial.prefix.size() == header.total_size) {
    message = std::move(partial.prefix);  // reserved exactly the message
  } else {
    message.reserve(header.total_size);
    message.append(partial.prefix);
    for (const auto& [index, bytes] : partial.fragments) message.append(bytes);
  }
  Forget();
  partial_.erase(key);
  ++stats_.completed;
  return std::optional<std::string>(std::move(message));
}

absl::StatusOr<std::optional<std::string>> Reassembler::AddOneByOne(
    absl::Time now, const MessageKey& key, const FragmentHeader& header,
    absl::string_view payload, uint64_t growth_allowance) {
  FragmentHeader one = header;
  one.run = 1;
  uint64_t at = 0;
  for (uint32_t i = 0; i < header.run; ++i) {
    one.index = header.index + i;
    const uint64_t length = LayoutOfValid(one.index, header.count, header.total_size).length;
    const uint64_t held = held_bytes_;
    absl::StatusOr<std::optional<std::string>> done =
        Add(now, key, one, payload.substr(at, length), growth_allowance);
    at += length;
    // Whatever the buffer grew by, or what was kept, is no longer there to
    // grow into: the allowance was for the whole run.
    if (held_bytes_ > held) growth_allowance -= std::min(growth_allowance, held_bytes_ - held);
    // Complete: the rest of the run was held already (the message is gone;
    // adding them again would start it anew).
    if (!done.ok() || done->has_value()) return done;
  }
  return std::optional<std::string>();
}

size_t Reassembler::Expire(absl::Time now) {
  Forget();
  size_t dropped = 0;
  for (auto it = partial_.begin(); it != partial_.end();) {
    if (now - it->second.started >= limits_.timeout) {
      buffered_bytes_ -= it->second.received_bytes;
      held_bytes_ -= Held(it->second);
      partial_.erase(it++);
      ++dropped;
    } else {
      ++it;
    }
  }
  stats_.expired_messages += dropped;
  return dropped;
}

void Reassembler::Discard(const MessageKey& key) {
  auto it = partial_.find(key);
  if (it == partial_.end()) return;
  buffered_bytes_ -= it->second.received_bytes;
  held_bytes_ -= Held(it->second);
  Forget();
  partial_.erase(it);
}

}  // namespace udpmsg::reliable
