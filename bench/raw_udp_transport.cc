#include "bench/raw_udp_transport.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "udp/errno_status.h"

namespace udpmsg::bench {

RawUdpTransport::RawUdpTransport(const Options& options, udp::DatagramSocket socket,
                                 const udp::SocketAddress& local, int receive_buffer,
                                 bool listen)
    : options_(options),
      socket_(std::move(socket)),
      local_(local),
      receive_buffer_(receive_buffer),
      listen_(listen),
      out_(options.batch ? kBatch * kMaxDatagram : 0),
      in_((options.batch ? kBatch : 1) * kMaxDatagram) {}

absl::StatusOr<std::unique_ptr<RawUdpTransport>> RawUdpTransport::Create(
    const Options& options, const udp::SocketAddress& bind, bool listen) {
  // Blocking: sends block unless drop_when_full; receives never do (MSG_DONTWAIT).
  absl::StatusOr<udp::DatagramSocket> socket = udp::DatagramSocket::Bind(bind, {});
  if (!socket.ok()) return socket.status();
  if (options.receive_buffer > 0) {
    int want = options.receive_buffer;
    if (setsockopt(socket->fd(), SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof(want)) != 0) {
      if (absl::Status s = socket->SetReceiveBufferSize(want); !s.ok()) return s;
    }
  }
  absl::StatusOr<udp::SocketAddress> local = socket->LocalAddress();
  if (!local.ok()) return local.status();
  absl::StatusOr<int> granted = socket->ReceiveBufferSize();
  return std::unique_ptr<RawUdpTransport>(new RawUdpTransport(
      options, *std::move(socket), *local, granted.ok() ? *granted : 0, listen));
}

PeerId RawUdpTransport::AddPeer(const udp::SocketAddress& address) {
  if (order_.size() >= kMaxPeers) {
    const PeerId oldest = order_.front();
    order_.pop_front();
    if (auto it = peers_.find(oldest); it != peers_.end()) {
      by_address_.erase(it->second.address);
      peers_.erase(it);
    }
    if (last_peer_ == oldest) last_peer_ = 0;
  }
  const PeerId id = next_id_++;
  peers_[id] = Peer{address, 0};
  by_address_[address] = id;
  order_.push_back(id);
  return id;
}

absl::StatusOr<PeerId> RawUdpTransport::Connect(absl::Span<const udp::SocketAddress> to,
                                                absl::Duration /*timeout*/) {
  if (to.empty()) return absl::InvalidArgumentError("raw UDP: no address to send to");
  if (auto it = by_address_.find(to.front()); it != by_address_.end()) return it->second;
  return AddPeer(to.front());
}

absl::Status RawUdpTransport::FlushBatch() {
  std::array<iovec, kBatch> iov;
  std::array<mmsghdr, kBatch> msgs;
  for (size_t i = 0; i < out_count_; ++i) {
    iov[i] = iovec{out_.data() + i * kMaxDatagram, out_size_[i]};
    std::memset(&msgs[i], 0, sizeof(msgs[i]));
    msgs[i].msg_hdr.msg_name = const_cast<sockaddr*>(out_to_[i].data());
    msgs[i].msg_hdr.msg_namelen = out_to_[i].size();
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  const int flags = options_.drop_when_full ? MSG_DONTWAIT : 0;
  size_t done = 0;
  while (done < out_count_) {
    const int sent = ::sendmmsg(socket_.fd(), msgs.data() + done,
                                static_cast<unsigned>(out_count_ - done), flags);
    if (sent < 0) {
      if (errno == EINTR || errno == ENOBUFS) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {  // dropped, as a network would
        ++done;
        continue;
      }
      out_count_ = 0;
      return udp::ErrnoStatus(errno, "sendmmsg");
    }
    for (int i = 0; i < sent; ++i) {
      if (auto it = peers_.find(out_peer_[done + i]); it != peers_.end()) {
        ++it->second.datagrams_sent;
      }
    }
    done += static_cast<size_t>(sent);
  }
  out_count_ = 0;
  return absl::OkStatus();
}

absl::Status RawUdpTransport::Send(PeerId peer, absl::string_view bytes) {
  auto it = peers_.find(peer);
  if (it == peers_.end()) return absl::NotFoundError(absl::StrCat("raw UDP: no peer ", peer));
  if (bytes.size() > kMaxDatagram) {
    return absl::InvalidArgumentError(
        absl::StrCat("raw UDP: ", bytes.size(), " bytes do not fit one datagram"));
  }
  if (options_.batch) {
    std::memcpy(out_.data() + out_count_ * kMaxDatagram, bytes.data(), bytes.size());
    out_size_[out_count_] = bytes.size();
    out_to_[out_count_] = it->second.address;
    out_peer_[out_count_] = peer;
    if (++out_count_ == kBatch) return FlushBatch();
    return absl::OkStatus();
  }
  const udp::SocketAddress& to = it->second.address;
  const int flags = options_.drop_when_full ? MSG_DONTWAIT : 0;
  while (::sendto(socket_.fd(), bytes.data(), bytes.size(), flags, to.data(), to.size()) < 0) {
    if (errno == EINTR || errno == ENOBUFS) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return absl::OkStatus();  // dropped
    return udp::ErrnoStatus(errno, absl::StrCat("sendto ", to.ToString()));
  }
  ++it->second.datagrams_sent;
  return absl::OkStatus();
}

uint64_t RawUdpTransport::QueuedBytes(PeerId peer) const {
  uint64_t bytes = 0;
  for (size_t i = 0; i < out_count_; ++i) {
    if (out_peer_[i] == peer) bytes += out_size_[i];
  }
  return bytes;
}

PeerId RawUdpTransport::PeerOf(const udp::SocketAddress& from, Handler& handler) {
  if (last_peer_ != 0 && from == last_from_) return last_peer_;
  PeerId id = 0;
  if (auto it = by_address_.find(from); it != by_address_.end()) {
    id = it->second;
  } else if (listen_) {
    id = AddPeer(from);
    handler.OnConnected(id, from.ToString());
  }
  if (id != 0) {
    last_from_ = from;
    last_peer_ = id;
  }
  return id;
}

absl::StatusOr<int> RawUdpTransport::ReceiveOnce(Handler& handler) {
  const auto deliver = [&](const sockaddr_storage& from, socklen_t from_len, const char* data,
                           size_t size) {
    // The common case, the same sender as last time: no address to build.
    if (last_peer_ != 0 && from_len == last_from_.size() &&
        std::memcmp(&from, last_from_.data(), from_len) == 0) {
      handler.OnReceived(last_peer_, absl::string_view(data, size));
      return;
    }
    absl::StatusOr<udp::SocketAddress> address =
        udp::SocketAddress::FromSockaddr(reinterpret_cast<const sockaddr*>(&from), from_len);
    if (!address.ok()) return;
    const PeerId peer = PeerOf(*address, handler);
    if (peer != 0) handler.OnReceived(peer, absl::string_view(data, size));
  };
  if (!options_.batch) {
    socklen_t from_len = sizeof(in_from_[0]);
    for (;;) {
      const ssize_t got = ::recvfrom(socket_.fd(), in_.data(), in_.size(), MSG_DONTWAIT,
                                     reinterpret_cast<sockaddr*>(&in_from_[0]), &from_len);
      if (got >= 0) {
        deliver(in_from_[0], from_len, in_.data(), static_cast<size_t>(got));
        return 1;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return udp::ErrnoStatus(errno, "recvfrom");
    }
  }
  std::array<iovec, kBatch> iov;
  std::array<mmsghdr, kBatch> msgs;
  for (size_t i = 0; i < kBatch; ++i) {
    iov[i] = iovec{in_.data() + i * kMaxDatagram, kMaxDatagram};
    std::memset(&msgs[i], 0, sizeof(msgs[i]));
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    msgs[i].msg_hdr.msg_name = &in_from_[i];
    msgs[i].msg_hdr.msg_namelen = sizeof(in_from_[i]);
  }
  for (;;) {
    const int got = ::recvmmsg(socket_.fd(), msgs.data(), kBatch, MSG_DONTWAIT, nullptr);
    if (got >= 0) {
      for (int i = 0; i < got; ++i) {
        deliver(in_from_[i], msgs[i].msg_hdr.msg_namelen, in_.data() + i * kMaxDatagram,
                msgs[i].msg_len);
      }
      return got;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return udp::ErrnoStatus(errno, "recvmmsg");
  }
}

absl::Status RawUdpTransport::Poll(absl::Duration timeout, Handler& handler) {
  if (out_count_ > 0) {
    if (absl::Status s = FlushBatch(); !s.ok()) return s;
  }
  absl::StatusOr<int> got = ReceiveOnce(handler);
  if (!got.ok() || *got > 0) return got.status();
  const int64_t ns = std::max<int64_t>(0, absl::ToInt64Nanoseconds(timeout));
  timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
  pollfd p{socket_.fd(), POLLIN, 0};
  const int n = ::ppoll(&p, 1, &ts, nullptr);
  if (n < 0) return errno == EINTR ? absl::OkStatus() : udp::ErrnoStatus(errno, "ppoll");
  if (n == 0) return absl::OkStatus();
  return ReceiveOnce(handler).status();
}

absl::Status RawUdpTransport::Drain(absl::Duration /*timeout*/) {
  return out_count_ > 0 ? FlushBatch() : absl::OkStatus();
}

void RawUdpTransport::Close(PeerId peer, absl::string_view /*reason*/, absl::Duration linger) {
  if (linger > absl::ZeroDuration()) Drain(linger).IgnoreError();
  auto it = peers_.find(peer);
  if (it == peers_.end()) return;
  by_address_.erase(it->second.address);
  peers_.erase(it);
  if (last_peer_ == peer) last_peer_ = 0;
  // Batched datagrams to `peer` still leave; their count is simply not kept.
}

absl::StatusOr<TransportStats> RawUdpTransport::Stats(PeerId peer) const {
  auto it = peers_.find(peer);
  if (it == peers_.end()) return absl::NotFoundError(absl::StrCat("raw UDP: no peer ", peer));
  TransportStats out;
  out.datagrams_sent = it->second.datagrams_sent;
  out.receive_buffer = receive_buffer_;
  return out;
}

}  // namespace udpmsg::bench
