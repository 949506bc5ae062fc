#include "reliable/datagram_batch.h"

#include <algorithm>
#include <cstddef>
#include <utility>

namespace udpmsg::reliable {

const udp::SocketAddress& DatagramBatch::peer(size_t i) const {
  static const udp::SocketAddress* const kNone = new udp::SocketAddress();
  const uint32_t index = entries_[first_ + i].peer;
  return index == kNoPeer ? *kNone : peers_[index];
}

void DatagramBatch::Commit() {
  entries_.push_back(Entry{committed_, static_cast<uint32_t>(bytes_.size() - committed_), kNoPeer});
  committed_ = bytes_.size();
}

uint32_t DatagramBatch::PeerIndex(const udp::SocketAddress& to) {
  if (peers_.empty() || !(peers_.back() == to)) peers_.push_back(to);
  return static_cast<uint32_t>(peers_.size() - 1);
}

void DatagramBatch::SetPeer(size_t from, const udp::SocketAddress& to) {
  if (from >= size()) return;
  const uint32_t index = PeerIndex(to);
  for (size_t i = first_ + from; i < entries_.size(); ++i) entries_[i].peer = index;
}

void DatagramBatch::Add(const udp::SocketAddress& to, absl::string_view bytes) {
  Abandon();
  bytes_.append(bytes.data(), bytes.size());
  Commit();
  entries_.back().peer = PeerIndex(to);
}

void DatagramBatch::Append(const DatagramBatch& other) {
  for (size_t i = 0; i < other.size(); ++i) Add(other.peer(i), other[i]);
}

void DatagramBatch::DropFront(size_t n) {
  first_ += std::min(n, size());
  if (first_ == entries_.size()) {
    if (committed_ == bytes_.size()) Clear();
    return;
  }
  // A batch that never empties (a socket that stays backed up while more
  // is appended) would otherwise keep every byte ever sent: once the
  // dropped front is as large as what is left, what is left moves to the
  // start.
  if (entries_[first_].offset >= bytes_.size() - entries_[first_].offset) Compact();
}

void DatagramBatch::Compact() {
  const size_t base = entries_[first_].offset;
  bytes_.erase(0, base);
  committed_ -= base;
  entries_.erase(entries_.begin(), entries_.begin() + static_cast<std::ptrdiff_t>(first_));
  first_ = 0;
  // Only the addresses still used, renumbered in order.
  std::vector<uint32_t> renumbered(peers_.size(), kNoPeer);
  std::vector<udp::SocketAddress> kept;
  for (Entry& e : entries_) {
    e.offset -= base;
    if (e.peer == kNoPeer) continue;
    if (renumbered[e.peer] == kNoPeer) {
      renumbered[e.peer] = static_cast<uint32_t>(kept.size());
      kept.push_back(peers_[e.peer]);
    }
    e.peer = renumbered[e.peer];
  }
  peers_.swap(kept);
}

void DatagramBatch::Clear() {
  bytes_.clear();
  if (bytes_.capacity() > kKeptCapacity) std::string().swap(bytes_);
  committed_ = 0;
  entries_.clear();
  if (entries_.capacity() > kKeptEntries) std::vector<Entry>().swap(entries_);
  first_ = 0;
  peers_.clear();
  if (peers_.capacity() > kKeptEntries) std::vector<udp::SocketAddress>().swap(peers_);
}

void DatagramBatch::swap(DatagramBatch& other) noexcept {
  bytes_.swap(other.bytes_);
  std::swap(committed_, other.committed_);
  entries_.swap(other.entries_);
  std::swap(first_, other.first_);
  peers_.swap(other.peers_);
}

}  // namespace udpmsg::reliable
