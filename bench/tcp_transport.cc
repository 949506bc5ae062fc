#include "bench/tcp_transport.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "udp/errno_status.h"

namespace udpmsg::bench {
namespace {

absl::Span<const uint8_t> Bytes(absl::string_view s) {
  return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

// ppoll(2) with nanosecond precision; EINTR counts as nothing ready.
absl::StatusOr<int> PollFds(std::vector<pollfd>& fds, absl::Duration timeout) {
  const int64_t ns = std::max<int64_t>(0, absl::ToInt64Nanoseconds(timeout));
  timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
  const int n = ::ppoll(fds.data(), fds.size(), &ts, nullptr);
  if (n < 0) {
    if (errno == EINTR) return 0;
    return udp::ErrnoStatus(errno, "ppoll");
  }
  return n;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TcpTransport>> TcpTransport::Create(const Options& options,
                                                                    const udp::SocketAddress& bind,
                                                                    bool listen) {
  if (!listen) {
    return std::unique_ptr<TcpTransport>(new TcpTransport(options, std::nullopt, bind));
  }
  absl::StatusOr<udp::StreamListener> listener =
      udp::StreamListener::Listen(bind, 16, {.non_blocking = true});
  if (!listener.ok()) return listener.status();
  absl::StatusOr<udp::SocketAddress> local = listener->LocalAddress();
  if (!local.ok()) return local.status();
  return std::unique_ptr<TcpTransport>(new TcpTransport(options, *std::move(listener), *local));
}

TcpTransport::~TcpTransport() = default;

PeerId TcpTransport::Add(udp::StreamSocket socket, std::string name) {
  const PeerId id = next_id_++;
  connections_.emplace(id, Connection{std::move(socket), std::move(name), {}, 0, {}});
  return id;
}

absl::StatusOr<PeerId> TcpTransport::Connect(absl::Span<const udp::SocketAddress> to,
                                             absl::Duration /*timeout: the kernel's*/) {
  if (to.empty()) return absl::InvalidArgumentError("tcp: no address to connect to");
  absl::StatusOr<udp::StreamSocket> socket = udp::StreamSocket::Connect(to);
  if (!socket.ok()) return socket.status();
  if (!options_.congestion.empty()) {
    const std::string& cc = options_.congestion;
    if (::setsockopt(socket->fd(), IPPROTO_TCP, TCP_CONGESTION, cc.data(),
                     static_cast<socklen_t>(cc.size())) != 0) {
      const int e = errno;
      return udp::ErrnoStatus(
          e, absl::StrCat("setsockopt(TCP_CONGESTION, ", cc, ")",
                          e == EPERM ? " (not in net.ipv4.tcp_allowed_congestion_control; "
                                       "root may use any loaded one)"
                                     : e == ENOENT ? " (not available in this kernel)" : ""));
    }
  }
  if (options_.no_delay) {
    if (absl::Status s = socket->SetNoDelay(true); !s.ok()) return s;
  }
  if (absl::Status s = socket->SetNonBlocking(true); !s.ok()) return s;
  return Add(*std::move(socket), to.front().ToString());
}

void TcpTransport::WriteOut(Connection& c) {
  while (c.error.empty() && c.out_sent < c.out.size()) {
    absl::StatusOr<size_t> n =
        c.socket.Send(Bytes(absl::string_view(c.out).substr(c.out_sent)));
    if (!n.ok()) {
      if (!absl::IsUnavailable(n.status())) c.error = std::string(n.status().message());
      break;
    }
    c.out_sent += *n;
  }
  if (c.out_sent == c.out.size()) {
    c.out.clear();
    c.out_sent = 0;
  } else if (c.out_sent > (1 << 20)) {
    c.out.erase(0, c.out_sent);
    c.out_sent = 0;
  }
}

absl::Status TcpTransport::Send(PeerId peer, absl::string_view bytes) {
  auto it = connections_.find(peer);
  if (it == connections_.end()) return absl::NotFoundError(absl::StrCat("tcp: no peer ", peer));
  Connection& c = it->second;
  if (!c.error.empty()) return absl::UnavailableError(absl::StrCat("tcp: ", c.error));
  if (c.out.size() - c.out_sent > 4 * options_.send_window + bytes.size()) {
    return absl::ResourceExhaustedError("tcp: send buffer full");
  }
  c.out.append(bytes.data(), bytes.size());
  WriteOut(c);
  if (!c.error.empty()) return absl::UnavailableError(absl::StrCat("tcp: ", c.error));
  return absl::OkStatus();
}

uint64_t TcpTransport::QueuedBytes(PeerId peer) const {
  auto it = connections_.find(peer);
  return it == connections_.end() ? 0 : it->second.out.size() - it->second.out_sent;
}

absl::Status TcpTransport::Poll(absl::Duration timeout, Handler& handler) {
  std::vector<pollfd> fds;
  std::vector<PeerId> ids;
  if (listener_.has_value()) fds.push_back(pollfd{listener_->fd(), POLLIN, 0});
  for (auto& [id, c] : connections_) {
    const bool failed = !c.error.empty();
    const short events = POLLIN | (c.out.size() > c.out_sent ? POLLOUT : 0);
    // A failed connection is reported at once: poll nothing for it.
    fds.push_back(pollfd{failed ? -1 : c.socket.fd(), events, 0});
    ids.push_back(id);
    if (failed) timeout = absl::ZeroDuration();
  }
  absl::StatusOr<int> ready = PollFds(fds, timeout);
  if (!ready.ok()) return ready.status();
  size_t f = 0;
  if (listener_.has_value()) {
    if (fds[f++].revents & POLLIN) {
      absl::StatusOr<udp::AcceptedStream> client = listener_->Accept(/*non_blocking_client=*/true);
      if (client.ok() && connections_.size() < kMaxConnections) {
        if (options_.no_delay) client->socket.SetNoDelay(true).IgnoreError();
        const std::string name = client->peer.ToString();
        handler.OnConnected(Add(std::move(client->socket), name), name);
      }
    }
  }
  for (size_t i = 0; i < ids.size(); ++i, ++f) {
    auto it = connections_.find(ids[i]);
    if (it == connections_.end()) continue;  // closed by the handler
    Connection& c = it->second;
    const short revents = fds[f].revents;
    if (c.error.empty() && (revents & POLLOUT)) WriteOut(c);
    // Read what is there (a bounded number of times, then let others in).
    for (int reads = 0; c.error.empty() && (revents & (POLLIN | POLLHUP | POLLERR)) &&
                        reads < 16;
         ++reads) {
      absl::StatusOr<size_t> n = c.socket.Recv(absl::MakeSpan(buffer_));
      if (!n.ok()) {
        if (!absl::IsUnavailable(n.status())) c.error = std::string(n.status().message());
        break;
      }
      if (*n == 0) {
        c.error = "closed by the peer";
        break;
      }
      handler.OnReceived(ids[i],
                         absl::string_view(reinterpret_cast<const char*>(buffer_.data()), *n));
      if (connections_.find(ids[i]) == connections_.end()) break;  // closed by the handler
    }
    it = connections_.find(ids[i]);
    if (it != connections_.end() && !it->second.error.empty()) {
      const std::string reason = it->second.error;
      connections_.erase(it);
      handler.OnClosed(ids[i], reason);
    }
  }
  return absl::OkStatus();
}

absl::Status TcpTransport::Drain(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    std::vector<pollfd> fds;
    for (auto& [id, c] : connections_) {
      WriteOut(c);
      if (c.error.empty() && c.out.size() > c.out_sent) {
        fds.push_back(pollfd{c.socket.fd(), POLLOUT, 0});
      }
    }
    if (fds.empty()) return absl::OkStatus();
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError("tcp: the send buffers did not drain");
    }
    if (absl::StatusOr<int> r = PollFds(fds, left); !r.ok()) return r.status();
  }
}

void TcpTransport::Close(PeerId peer, absl::string_view /*reason*/, absl::Duration linger) {
  auto it = connections_.find(peer);
  if (it == connections_.end()) return;
  if (linger > absl::ZeroDuration()) {
    Connection& c = it->second;
    const absl::Time deadline = absl::Now() + linger;
    while (c.error.empty() && c.out.size() > c.out_sent && absl::Now() < deadline) {
      std::vector<pollfd> fds = {pollfd{c.socket.fd(), POLLOUT, 0}};
      if (!PollFds(fds, deadline - absl::Now()).ok()) break;
      WriteOut(c);
    }
    c.socket.Shutdown(udp::ShutdownHow::kWrite).IgnoreError();
  }
  connections_.erase(it);
}

absl::StatusOr<TransportStats> TcpTransport::Stats(PeerId peer) const {
  auto it = connections_.find(peer);
  if (it == connections_.end()) return absl::NotFoundError(absl::StrCat("tcp: no peer ", peer));
  TransportStats out;
  tcp_info info;
  std::memset(&info, 0, sizeof(info));
  socklen_t len = sizeof(info);
  if (::getsockopt(it->second.socket.fd(), IPPROTO_TCP, TCP_INFO, &info, &len) == 0) {
    out.retransmits = info.tcpi_total_retrans;
  }
  return out;
}

}  // namespace udpmsg::bench
