#include "reliable/runtime.h"

#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "udp/errno_status.h"
#include "udp/shard_steering.h"
#include "udp/socket_options.h"

namespace udpmsg::reliable {
namespace {

constexpr uint64_t kSocketToken = udp::Poller::kReservedToken - 1;
// Receive buffers: a full-size datagram or a coalesced (GRO) run per batch
// slot, so an oversized datagram is seen whole (and rejected by the codec),
// never half-read, and a coalesced run never truncated.
constexpr size_t kSlotBytes = udp::DatagramSocket::kCoalescedBufferBytes;
static_assert(kSlotBytes > udp::kMaxUdpPayloadIpv6);
constexpr size_t kSlots = 8;
// Most datagrams one Receive() feeds the endpoint (64 rounds of 8 without
// coalescing, as before GRO).
constexpr uint64_t kMaxDatagramsPerReceive = 512;

}  // namespace

udp::DatagramSocket::Options Runtime::SocketOptions(const Options& options) {
  udp::DatagramSocket::Options socket_options;
  socket_options.non_blocking = true;
  socket_options.receive_buffer_bytes = options.socket_buffer_bytes;
  socket_options.send_buffer_bytes = options.socket_buffer_bytes;
  return socket_options;
}

absl::StatusOr<std::unique_ptr<Runtime>> Runtime::Create(const Options& options) {
  absl::StatusOr<udp::DatagramSocket> socket =
      udp::DatagramSocket::Bind(options.bind, SocketOptions(options));
  if (!socket.ok()) return socket.status();
  return CreateOnSocket(options, *std::move(socket));
}

namespace {

// What every runtime socket gets, from CreateOnSocket and Rebind.
absl::Status PrepareSocket(const Runtime::Options& options, udp::DatagramSocket* socket) {
  if (absl::Status s = socket->SetNonBlocking(true); !s.ok()) return s;
  // ICMP port/host unreachable for a peer still connecting ends the attempt
  // at once (Endpoint::OnPeerUnreachable) instead of after the handshake
  // timeout.
  if (absl::Status s = socket->EnableErrorQueue(); !s.ok()) return s;
  // Path MTU discovery (reliable/pmtud.h): probes leave with DF set and are
  // never fragmented here; the prober, not ICMP, decides the size. Only with
  // discovery on: otherwise the kernel's default (learn the MTU from ICMP,
  // fragment locally) keeps a max_datagram above the path's MTU working.
  if (options.endpoint.connection.pmtud) {
    if (absl::Status s = udp::EnablePathMtuProbing(socket->fd()); !s.ok()) return s;
  }
  if (options.segmentation_offload) {
    // Either may be missing (an old kernel): plain datagrams then, which
    // always work, so the errors only mean "not here".
    socket->EnableSegmentation().IgnoreError();
    socket->EnableCoalescing().IgnoreError();
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Runtime>> Runtime::CreateOnSocket(const Options& options,
                                                                  udp::DatagramSocket socket_in) {
  udp::DatagramSocket* socket = &socket_in;
  if (absl::Status s = PrepareSocket(options, socket); !s.ok()) return s;
  absl::StatusOr<udp::SocketAddress> local = socket->LocalAddress();
  if (!local.ok()) return local.status();
  absl::StatusOr<udp::Poller> poller = udp::Poller::Create();
  if (!poller.ok()) return poller.status();
  if (absl::Status s = poller->Add(socket->fd(), udp::Poller::kReadable, kSocketToken); !s.ok()) {
    return s;
  }
  return std::unique_ptr<Runtime>(
      new Runtime(options, std::move(socket_in), *std::move(poller), *local));
}

Runtime::Runtime(const Options& options, udp::DatagramSocket socket, udp::Poller poller,
                 const udp::SocketAddress& local)
    : options_(options),
      clock_(options.clock != nullptr ? options.clock : &real_clock_),
      socket_(std::move(socket)),
      poller_(std::move(poller)),
      local_(local),
      endpoint_(std::make_unique<Endpoint>(clock_->Now(), options.endpoint)),
      buffers_(kSlotBytes * kSlots),
      trains_(udp::DatagramSocket::kMaxBatch),
      segments_(udp::DatagramSocket::kMaxDatagramsPerCall),
      slots_(kSlots) {
  for (size_t i = 0; i < slots_.size(); ++i) {
    slots_[i].buffer = absl::MakeSpan(buffers_.data() + i * kSlotBytes, kSlotBytes);
  }
}

Runtime::~Runtime() = default;

Runtime::IoStats Runtime::io_stats() const {
  IoStats io = io_;
  io.gso_enabled = socket_.segmentation_enabled();
  io.gro_enabled = socket_.coalescing_enabled();
  io.gso_refused_errno = socket_.segmentation_refused_errno();
  return io;
}

absl::StatusOr<ConnectionId> Runtime::Connect(const udp::SocketAddress& peer) {
  absl::StatusOr<ConnectionId> id = endpoint_->Connect(clock_->Now(), peer);
  if (id.ok()) {
    if (absl::Status s = SendPending(); !s.ok()) return s;
  }
  return id;
}

absl::StatusOr<ConnectionId> Runtime::Connect(const udp::SocketAddress& peer,
                                              const ConnectSecurity& security) {
  absl::StatusOr<ConnectionId> id = endpoint_->Connect(clock_->Now(), peer, security);
  if (id.ok()) {
    if (absl::Status s = SendPending(); !s.ok()) return s;
  }
  return id;
}

absl::Status Runtime::SendPunch(const udp::SocketAddress& peer, absl::string_view payload,
                                int ttl) {
  if (payload.size() > proto::kMaxPunchPayload) {
    return absl::InvalidArgumentError(absl::StrCat("punch payload of ", payload.size(),
                                                   " bytes; at most ", proto::kMaxPunchPayload));
  }
  if (ttl < 0 || ttl > 255) {
    return absl::InvalidArgumentError(absl::StrCat("punch ttl ", ttl, " outside [0, 255]"));
  }
  std::string bytes(1, static_cast<char>(proto::kPunchVersion));
  bytes.append(payload.data(), payload.size());
  // IP_TTL also covers IPv4 (v4-mapped) traffic of a dual-stack socket.
  const bool v6 = socket_.family() == udp::AddressFamily::kIpv6;
  const auto set_ttl = [&](int value) -> absl::Status {
    if (absl::Status s = udp::SetIntOption(socket_.fd(), IPPROTO_IP, IP_TTL, value, "IP_TTL");
        !s.ok()) {
      return s;
    }
    if (v6) {
      return udp::SetIntOption(socket_.fd(), IPPROTO_IPV6, IPV6_UNICAST_HOPS, value,
                               "IPV6_UNICAST_HOPS");
    }
    return absl::OkStatus();
  };
  if (ttl > 0) {
    if (absl::Status s = set_ttl(ttl); !s.ok()) {
      // IP_TTL may have been set before IPV6_UNICAST_HOPS failed: restore
      // it, or every later datagram would leave with the punch's TTL.
      set_ttl(-1).IgnoreError();
      return s;
    }
  }
  absl::StatusOr<size_t> sent = socket_.SendTo(
      peer, absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  if (ttl > 0) {
    if (absl::Status s = set_ttl(-1); !s.ok()) return s;  // -1: the route's default again
  }
  ++io_.send_calls;
  if (sent.ok()) {
    ++io_.datagrams_sent;
    return absl::OkStatus();
  }
  if (absl::IsUnavailable(sent.status())) {
    ++io_.send_would_block;
    return absl::OkStatus();  // best effort: the schedule sends more
  }
  ++io_.send_errors;
  return sent.status();
}

absl::StatusOr<uint64_t> Runtime::Send(ConnectionId id, uint32_t channel, DeliveryMode mode,
                                       MessageBytes message) {
  // Corked: the datagrams leave in the next Poll() or Flush(), so messages
  // sent back to back share packets.
  return endpoint_->Send(clock_->Now(), id, channel, mode, std::move(message));
}

absl::Status Runtime::SetChannelPriority(ConnectionId id, uint32_t channel, uint32_t priority,
                                         uint32_t weight) {
  return endpoint_->SetChannelPriority(clock_->Now(), id, channel, priority, weight);
}

absl::Status Runtime::Close(ConnectionId id, std::string reason, bool flush) {
  absl::Status s = endpoint_->Close(clock_->Now(), id, std::move(reason), flush);
  if (!s.ok()) return s;
  return SendPending();
}

absl::Status Runtime::Rebind(const udp::SocketAddress& bind) {
  if (options_.endpoint.accept_incoming) {
    return absl::FailedPreconditionError(
        absl::StrCat("rebind to ", bind.ToString(),
                     ": a server cannot move (its clients would not follow)"));
  }
  absl::StatusOr<udp::DatagramSocket> socket =
      udp::DatagramSocket::Bind(bind, SocketOptions(options_));
  if (!socket.ok()) return socket.status();
  if (absl::Status s = PrepareSocket(options_, &*socket); !s.ok()) return s;
  absl::StatusOr<udp::SocketAddress> local = socket->LocalAddress();
  if (!local.ok()) return local.status();
  // The old socket leaves the poller and the new one joins it; if the new
  // one cannot, the old one is put back: on an error here the runtime keeps
  // its old socket, unchanged.
  if (absl::Status s = poller_.Remove(socket_.fd()); !s.ok()) return s;
  if (absl::Status s = poller_.Add(socket->fd(), udp::Poller::kReadable, kSocketToken); !s.ok()) {
    // As it was, writable events too when a full buffer holds datagrams
    // back: only they retry those (SendPending).
    poller_
        .Add(socket_.fd(),
             udp::Poller::kReadable | (want_writable_ ? udp::Poller::kWritable : 0),
             kSocketToken)
        .IgnoreError();
    return s;
  }
  socket_ = *std::move(socket);  // closes the old one
  local_ = *local;
  want_writable_ = false;
  endpoint_->OnLocalAddressChanged(clock_->Now());
  return SendPending();
}

absl::Status Runtime::Watch(int fd, uint64_t token) {
  if (token >= kSocketToken) {
    return absl::InvalidArgumentError(absl::StrCat("watch token ", token, " is reserved"));
  }
  return poller_.Add(fd, udp::Poller::kReadable, token);
}

absl::Status Runtime::Unwatch(int fd) { return poller_.Remove(fd); }

void Runtime::Wake() { poller_.Wake(); }

size_t Runtime::BuildTrains() {
  // Without GSO every datagram is its own message: no more than one
  // sendmmsg takes.
  const bool gso = socket_.segmentation_enabled();
  const size_t max_datagrams =
      gso ? udp::DatagramSocket::kMaxDatagramsPerCall : udp::DatagramSocket::kMaxBatch;
  size_t trains = 0;
  size_t used = 0;
  size_t i = 0;
  while (i < pending_.size() && trains < trains_.size() && used < max_datagrams) {
    const size_t start = used;
    const size_t first = i;
    const udp::SocketAddress& peer = pending_.peer(first);
    const size_t segment = pending_[first].size();
    const size_t max_bytes = udp::DatagramSocket::MaxTrainBytes(peer);
    size_t bytes = 0;
    int first_shard = -2;  // the first datagram's shard byte, once needed
    for (;;) {
      const size_t size = pending_[i].size();
      segments_[used++] = pending_.Bytes(i);
      bytes += size;
      ++i;
      if (!gso || size < segment || segment == 0) break;  // a shorter datagram ends a train
      if (i == pending_.size() || used == max_datagrams ||
          used - start == udp::DatagramSocket::kMaxTrainSegments) {
        break;
      }
      const size_t next = pending_[i].size();
      if (next > segment || bytes + next > max_bytes) break;
      // A shorter datagram ends only a train of equal ones: a lone larger
      // datagram (a path MTU probe) goes alone, so a probe the device cannot
      // carry fails by itself (EMSGSIZE) instead of having a train refused.
      if (next < segment && used - start < 2) break;
      if (!pending_.SamePeer(i, first) && !(pending_.peer(i) == peer)) break;
      // A train reaches one socket of a sharded peer whole (steered by its
      // first datagram): never two shards' datagrams in one.
      if (first_shard == -2) first_shard = udp::ShardByteOf(pending_[first]);
      if (udp::ShardByteOf(pending_[i]) != first_shard) break;
    }
    trains_[trains++] = udp::OutgoingTrain{peer, absl::MakeConstSpan(&segments_[start], used - start)};
  }
  return trains;
}

absl::Status Runtime::SendPending(bool writable) {
  endpoint_->TakeOutgoing(&pending_);
  // Refused for a full socket buffer: only the socket's writable event
  // tries again. Each try before it is a sendmmsg the kernel refuses, one
  // per turn (a loop polling without blocking made tens of thousands per
  // megabyte); what the endpoint produces meanwhile waits behind the rest.
  if (want_writable_ && !writable) return absl::OkStatus();
  while (!pending_.empty()) {
    const size_t n = BuildTrains();
    ++io_.send_calls;
    const uint64_t refused_before = socket_.refused_train_calls();
    const uint64_t copied_before = socket_.copied_trains();
    absl::StatusOr<size_t> sent = socket_.SendTrains(absl::MakeConstSpan(trains_.data(), n));
    io_.gso_copied_trains += socket_.copied_trains() - copied_before;
    if (sent.ok()) {
      io_.datagrams_sent += *sent;
      // Trains sent whole went as one message each, unless the kernel
      // refused this call's trains (then it all went as plain datagrams).
      if (socket_.segmentation_enabled() && socket_.refused_train_calls() == refused_before) {
        size_t counted = 0;
        for (size_t i = 0; i < n && counted + trains_[i].datagrams.size() <= *sent; ++i) {
          counted += trains_[i].datagrams.size();
          if (trains_[i].datagrams.size() > 1) {
            ++io_.gso_trains;
            io_.gso_segments += trains_[i].datagrams.size();
          }
        }
      }
      pending_.DropFront(*sent);
      continue;
    }
    if (absl::IsUnavailable(sent.status())) {
      // Socket buffer full: wait until writable.
      ++io_.send_would_block;
      if (!want_writable_) {
        // Set once the poller watches for writability: the flag stops
        // every other try until that event.
        absl::Status s = poller_.Modify(socket_.fd(), udp::Poller::kReadable | udp::Poller::kWritable,
                                        kSocketToken);
        if (!s.ok()) return s;
        want_writable_ = true;
      }
      return absl::OkStatus();
    }
    // Any other error concerns the first datagram (an unreachable address,
    // say): UDP gives no delivery promise, loss recovery copes. Drop it. One
    // too big for the interface (a path MTU probe, EMSGSIZE) tells its
    // connection that size fails.
    ++io_.send_errors;
    if (udp::ErrnoOf(sent.status()) == EMSGSIZE) {
      endpoint_->OnDatagramTooBig(clock_->Now(), pending_.peer(0), pending_[0].size());
    }
    pending_.DropFront(1);
  }
  if (want_writable_) {
    want_writable_ = false;
    return poller_.Modify(socket_.fd(), udp::Poller::kReadable, kSocketToken);
  }
  return absl::OkStatus();
}

absl::Status Runtime::Receive() {
  std::vector<udp::ReceiveSlot>& slots = slots_;
  // Bounded, in datagrams (a coalesced buffer holds up to 64): timers, the
  // application and its events get their turn at least every 512.
  uint64_t datagrams = 0;
  for (int round = 0; round < 64 && datagrams < kMaxDatagramsPerReceive; ++round) {
    ++io_.recv_calls;
    absl::StatusOr<size_t> n = socket_.RecvBatch(absl::MakeSpan(slots));
    if (!n.ok()) {
      if (absl::IsUnavailable(n.status())) return absl::OkStatus();
      // An ICMP report fails one receive (its details wait in the error
      // queue, read on EPOLLERR): not fatal for a multi-peer socket.
      if (udp::IsIcmpReportErrno(udp::ErrnoOf(n.status()))) continue;
      return n.status();
    }
    const absl::Time now = clock_->Now();
    batch_.clear();
    for (size_t i = 0; i < *n; ++i) {
      if (slots[i].truncated) {
        ++io_.truncated;
        continue;
      }
      size_t in_slot = 0;
      udp::SplitSegments(slots[i], [&](absl::Span<const uint8_t> d) {
        ++in_slot;
        batch_.push_back(ReceivedDatagram{
            &slots[i].from,
            absl::string_view(reinterpret_cast<const char*>(d.data()), d.size())});
      });
      datagrams += in_slot;
      io_.datagrams_received += in_slot;
      if (in_slot > 1) {
        ++io_.gro_buffers;
        io_.gro_segments += in_slot;
      }
    }
    // One call: a connection's other work waits for the end of the batch;
    // its ACKs do not (Endpoint::OnDatagrams).
    endpoint_->OnDatagrams(now, batch_);
    if (absl::Status s = SendPending(); !s.ok()) return s;
    if (*n < slots.size()) return absl::OkStatus();
  }
  return absl::OkStatus();
}

absl::Status Runtime::ReadSocketErrors() {
  absl::StatusOr<std::vector<udp::SocketError>> errors = socket_.ReadErrors(64);
  if (!errors.ok()) return errors.status();
  const absl::Time now = clock_->Now();
  for (const udp::SocketError& e : *errors) {
    ++io_.icmp_errors;
    std::string why = udp::ErrnoText(e.error);
    // A router's report names the router; the host's own names the host.
    if (e.reporter.valid() && e.reporter.Unmapped().IpString() != e.destination.IpString()) {
      absl::StrAppend(&why, " (reported by ", e.reporter.IpString(), ")");
    }
    endpoint_->OnPeerUnreachable(now, e.destination, why);
  }
  return absl::OkStatus();
}

absl::Status Runtime::Turn(absl::Time deadline, PollResult* result) {
  absl::Time now = clock_->Now();
  if (endpoint_->NextTimeout() <= now) endpoint_->OnTimeout(now);
  if (absl::Status s = SendPending(); !s.ok()) return s;
  for (Event& e : endpoint_->TakeEvents()) result->events.push_back(std::move(e));
  if (!result->events.empty() || !result->ready.empty()) return absl::OkStatus();
  now = clock_->Now();
  // Past the deadline this still polls once without blocking, so
  // Poll(ZeroDuration()) reads what has arrived.
  const absl::Time wake = std::min(deadline, endpoint_->NextTimeout());
  absl::StatusOr<absl::Span<const udp::Poller::Event>> ready =
      poller_.Wait(std::max(wake - now, absl::ZeroDuration()));
  if (!ready.ok()) return ready.status();
  for (const udp::Poller::Event& e : *ready) {
    if (e.token == kSocketToken) {
      if (e.writable) {
        if (absl::Status s = SendPending(/*writable=*/true); !s.ok()) return s;
      }
      if (e.error) {
        if (absl::Status s = ReadSocketErrors(); !s.ok()) return s;
      }
      if (e.readable || e.error) {
        if (absl::Status s = Receive(); !s.ok()) return s;
      }
    } else {
      result->ready.push_back(e.token);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Runtime::PollResult> Runtime::Poll(absl::Duration timeout) {
  const absl::Time deadline = clock_->Now() + timeout;
  PollResult result;
  result.events = std::move(held_events_);
  held_events_.clear();
  for (;;) {
    if (absl::Status s = Turn(deadline, &result); !s.ok()) return s;
    if (!result.events.empty() || !result.ready.empty() || clock_->Now() >= deadline) {
      // Hand over what the turn's input produced (acks, events) at once.
      for (Event& e : endpoint_->TakeEvents()) result.events.push_back(std::move(e));
      if (absl::Status s = SendPending(); !s.ok()) return s;
      return result;
    }
  }
}

absl::Status Runtime::AwaitConnected(ConnectionId id, absl::Duration timeout) {
  const absl::Time deadline = clock_->Now() + timeout;
  absl::StatusOr<udp::SocketAddress> peer = endpoint_->PeerOf(id);
  if (!peer.ok()) return peer.status();
  size_t scanned = 0;  // held_events_ before this index concern others
  for (;;) {
    for (; scanned < held_events_.size(); ++scanned) {
      const Event& e = held_events_[scanned];
      if (e.connection != id) continue;
      if (e.type == Event::Type::kConnected) {
        held_events_.erase(held_events_.begin() + static_cast<long>(scanned));
        return absl::OkStatus();
      }
      if (e.type == Event::Type::kClosed) {
        absl::Status closed = absl::UnavailableError(absl::StrCat(
            "cannot connect to ", peer->ToString(), ": ", e.by_peer ? "refused: " : "", e.reason));
        held_events_.erase(held_events_.begin() + static_cast<long>(scanned));
        return closed;
      }
    }
    // Established, and its kConnected is not held: the application already
    // had it from Poll.
    if (endpoint_->IsEstablished(id)) return absl::OkStatus();
    if (clock_->Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("cannot connect to ", peer->ToString(),
                                                      ": no answer within ",
                                                      absl::FormatDuration(timeout)));
    }
    PollResult r;
    if (absl::Status s = Turn(deadline, &r); !s.ok()) return s;
    for (Event& e : r.events) held_events_.push_back(std::move(e));
  }
}

absl::Status Runtime::Flush(absl::Duration timeout) {
  const absl::Time deadline = clock_->Now() + timeout;
  for (;;) {
    // Open connections with anything queued or unacknowledged keep us here.
    uint64_t queued = 0;
    const bool busy = endpoint_->HasUnfinishedWork(&queued);
    if (!busy && pending_.empty()) return absl::OkStatus();
    if (clock_->Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("flush timed out after ", absl::FormatDuration(timeout), " with ", queued,
                       " bytes not yet acknowledged"));
    }
    PollResult r;
    if (absl::Status s = Turn(deadline, &r); !s.ok()) return s;
    for (Event& e : r.events) held_events_.push_back(std::move(e));
  }
}

}  // namespace udpmsg::reliable
