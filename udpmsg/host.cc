#include "udpmsg/host.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "udp/shard_steering.h"
#include "udpmsg/core_bridge.h"

namespace udpmsg {

absl::StatusOr<Host> Host::Create(const HostOptions& options) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  absl::StatusOr<std::unique_ptr<reliable::Runtime>> runtime =
      reliable::Runtime::Create(ToRuntimeOptions(options));
  if (!runtime.ok()) return runtime.status();
  return Host(*std::move(runtime));
}

absl::StatusOr<std::vector<Host>> Host::CreateShards(const HostOptions& options, int count) {
  if (count < 1 || count > udp::kMaxShards) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard count ", count, " outside [1, ", udp::kMaxShards, "]"));
  }
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  std::vector<Host> hosts;
  if (count == 1) {
    absl::StatusOr<Host> host = Create(options);
    if (!host.ok()) return host.status();
    hosts.push_back(*std::move(host));
    return hosts;
  }
  reliable::Runtime::Options runtime_options = ToRuntimeOptions(options);
  absl::StatusOr<udp::ShardGroup> group = udp::BindShardGroup(
      options.bind, reliable::Runtime::SocketOptions(runtime_options), count);
  if (!group.ok()) return group.status();
  hosts.reserve(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    runtime_options.endpoint.shard_index = static_cast<uint32_t>(i);
    runtime_options.endpoint.shard_count = static_cast<uint32_t>(count);
    absl::StatusOr<std::unique_ptr<reliable::Runtime>> runtime =
        reliable::Runtime::CreateOnSocket(runtime_options, std::move(group->sockets[i]));
    if (!runtime.ok()) return runtime.status();
    Host host(*std::move(runtime));
    host.shard_ = ShardInfo{i, count, group->steered, group->steering_error};
    hosts.push_back(std::move(host));
  }
  return hosts;
}

Host::Host(std::unique_ptr<reliable::Runtime> runtime) : runtime_(std::move(runtime)) {}

Host::~Host() = default;

const SocketAddress& Host::local_address() const { return runtime_->local_address(); }

absl::StatusOr<ConnectionId> Host::Connect(const SocketAddress& peer) {
  return runtime_->Connect(peer);
}

absl::StatusOr<ConnectionId> Host::Connect(const SocketAddress& peer,
                                           const ConnectSecurity& security) {
  return runtime_->Connect(peer, security);
}

absl::Status Host::SendPunch(const SocketAddress& peer, absl::string_view payload, int ttl) {
  return runtime_->SendPunch(peer, payload, ttl);
}

absl::StatusOr<uint64_t> Host::Send(ConnectionId id, uint32_t channel, DeliveryMode mode,
                                    std::string message) {
  return runtime_->Send(id, channel, mode, std::move(message));
}

absl::StatusOr<uint64_t> Host::Send(ConnectionId id, uint32_t channel, DeliveryMode mode,
                                    std::shared_ptr<const void> owner, absl::string_view bytes) {
  return runtime_->Send(id, channel, mode, reliable::MessageBytes(std::move(owner), bytes));
}

absl::Status Host::SetChannelPriority(ConnectionId id, uint32_t channel, uint32_t priority,
                                      uint32_t weight) {
  return runtime_->SetChannelPriority(id, channel, priority, weight);
}

absl::Status Host::Close(ConnectionId id, std::string reason, bool flush) {
  return runtime_->Close(id, std::move(reason), flush);
}

absl::Status Host::Rebind(const SocketAddress& bind) { return runtime_->Rebind(bind); }

absl::StatusOr<Host::PollResult> Host::Poll(absl::Duration timeout) {
  absl::StatusOr<reliable::Runtime::PollResult> r = runtime_->Poll(timeout);
  if (!r.ok()) return r.status();
  PollResult out;
  out.events.reserve(r->events.size());
  for (reliable::Event& e : r->events) out.events.push_back(FromReliableEvent(std::move(e)));
  out.ready = std::move(r->ready);
  return out;
}

absl::Status Host::Watch(int fd, uint64_t token) { return runtime_->Watch(fd, token); }
absl::Status Host::Unwatch(int fd) { return runtime_->Unwatch(fd); }

absl::Status Host::AwaitConnected(ConnectionId id, absl::Duration timeout) {
  return runtime_->AwaitConnected(id, timeout);
}

absl::Status Host::Flush(absl::Duration timeout) { return runtime_->Flush(timeout); }

void Host::Wake() { runtime_->Wake(); }

absl::StatusOr<ConnectionStats> Host::Stats(ConnectionId id) const { return runtime_->Stats(id); }
absl::StatusOr<SocketAddress> Host::PeerOf(ConnectionId id) const { return runtime_->PeerOf(id); }
uint64_t Host::QueuedBytes(ConnectionId id) const { return runtime_->QueuedBytes(id); }
bool Host::IsEstablished(ConnectionId id) const { return runtime_->IsEstablished(id); }
size_t Host::open_connections() const { return runtime_->open_connections(); }
IoStats Host::io_stats() const { return runtime_->io_stats(); }
HostStats Host::stats() const { return runtime_->endpoint_stats(); }

}  // namespace udpmsg
