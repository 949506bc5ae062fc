// DatagramBatch: datagrams to send, written back to back into one buffer
// that is kept and reused, each with the address it goes to.
//
// A connection encodes (and seals) its packets straight into the batch
// (Connection::Poll), the endpoint gathers every connection's into its own
// (Endpoint::TakeOutgoing), and the runtime hands runs of equal datagrams to
// the kernel as GSO trains: a run lies contiguous in the buffer, so a train
// goes as one iovec with no copy (udp::DatagramSocket::SendTrains). Before,
// each datagram was a std::string of its own (an allocation and a free per
// datagram) that the socket then copied into a gather buffer (5.5% of a
// clean-veth sender's samples).
//
// Writing one datagram: append its bytes to *buffer() (past what is there;
// the codec's EncodeAppend does), then Commit() it or Abandon() it. Peers are
// set per run with SetPeer (the endpoint knows a connection's address, the
// connection need not). Holds what its writers put in it and nothing they
// dropped: DropFront moves the rest to the start once the dropped part is
// as large as it (a batch that never empties stays within about twice what
// it holds); Clear() keeps at most kKeptCapacity bytes and kKeptEntries
// datagrams of capacity.
#ifndef UDPMSG_RELIABLE_DATAGRAM_BATCH_H_
#define UDPMSG_RELIABLE_DATAGRAM_BATCH_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "udp/socket_address.h"

namespace udpmsg::reliable {

class DatagramBatch final {
 public:
  // Capacity kept across Clear(): a burst of 256 datagrams of 1,472 bytes
  // (a connection's most per Poll) plus a few others' fits; a larger one's
  // buffer (loopback's 16 KiB datagrams) is given back.
  static constexpr size_t kKeptCapacity = 1 << 20;
  // Entries (and addresses) kept across Clear().
  static constexpr size_t kKeptEntries = 4096;

  // Datagrams not yet dropped (DropFront), in the order committed.
  size_t size() const { return entries_.size() - first_; }
  bool empty() const { return size() == 0; }

  absl::string_view operator[](size_t i) const {
    const Entry& e = entries_[first_ + i];
    return absl::string_view(bytes_.data() + e.offset, e.size);
  }
  absl::Span<const uint8_t> Bytes(size_t i) const {
    const Entry& e = entries_[first_ + i];
    return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(bytes_.data()) + e.offset,
                               e.size);
  }
  absl::string_view back() const { return (*this)[size() - 1]; }
  // The address of datagram i (an empty one until SetPeer covers it).
  const udp::SocketAddress& peer(size_t i) const;
  // Whether datagrams i and j go to the same address (cheap: one index).
  bool SamePeer(size_t i, size_t j) const {
    return entries_[first_ + i].peer == entries_[first_ + j].peer;
  }

  // The buffer a writer appends one datagram to (past its current end).
  std::string* buffer() { return &bytes_; }
  // The bytes appended since the last Commit/Abandon are one datagram.
  void Commit();
  // Forgets the bytes appended since the last Commit/Abandon.
  void Abandon() { bytes_.resize(committed_); }

  // Datagrams from index `from` (as size() counted then) to the end go to
  // `to`.
  void SetPeer(size_t from, const udp::SocketAddress& to);
  // Copies one whole datagram in (rare paths: path challenges, Append).
  // Bytes a writer appended without committing are dropped first (Abandon).
  void Add(const udp::SocketAddress& to, absl::string_view bytes);
  // Copies every datagram of `other` in, after these, by Add (a datagram
  // whose address was never set gets the empty one).
  void Append(const DatagramBatch& other);

  // The first `n` datagrams are sent: they leave the batch. Once none is
  // left the buffer is reused from its start.
  void DropFront(size_t n);
  void Clear();

  void swap(DatagramBatch& other) noexcept;

 private:
  struct Entry {
    size_t offset;
    uint32_t size;
    uint32_t peer;  // index into peers_; kNoPeer until SetPeer
  };
  static constexpr uint32_t kNoPeer = UINT32_MAX;
  uint32_t PeerIndex(const udp::SocketAddress& to);
  // Moves the datagrams not dropped to the start of the buffer and forgets
  // the dropped entries and the addresses only they used.
  void Compact();

  std::string bytes_;
  size_t committed_ = 0;  // bytes_ up to here belong to committed datagrams
  std::vector<Entry> entries_;
  size_t first_ = 0;  // entries_ before this one were dropped
  // Distinct addresses, in order of first use; a run of datagrams to one
  // address adds it once.
  std::vector<udp::SocketAddress> peers_;
};

}  // namespace udpmsg::reliable

#endif  // UDPMSG_RELIABLE_DATAGRAM_BATCH_H_
