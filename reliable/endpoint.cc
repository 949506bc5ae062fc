#include "reliable/endpoint.h"

#include <sodium.h>

#include <algorithm>
#include <optional>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"

namespace udpmsg::reliable {
namespace {

uint64_t RandomSeed() {
  uint64_t seed = 0;
  if (sodium_init() < 0) return 0x9E3779B97F4A7C15ull;  // libsodium unusable
  randombytes_buf(&seed, sizeof(seed));
  return seed;
}

proto::Codec::Limits CodecLimits(const EndpointOptions& options) {
  proto::Codec::Limits limits;
  limits.max_datagram = options.connection.max_datagram;
  limits.max_message_bytes = options.connection.max_message_bytes;
  return limits;
}

}  // namespace

std::string EndpointStats::ToString() const {
  return absl::StrCat("received=", datagrams_received, "/", bytes_received, "B sent=", datagrams_sent,
                      "/", bytes_sent, "B malformed=", malformed,
                      " unknown_connection=", unknown_connection, " wrong_address=", wrong_address,
                      " hellos=", hellos, " challenges=", challenges_sent,
                      " bad_cookies=", bad_cookies, " short_hellos=", short_hellos,
                      " accepted=", accepted, " refused_full=", refused_full,
                      " unauthenticated=", unauthenticated, " unreachable=", unreachable);
}

Endpoint::Endpoint(absl::Time now, const EndpointOptions& options)
    : options_(options),
      codec_(CodecLimits(options)),
      cookies_(options.cookie_secret
                   ? CookieJar(now, *options.cookie_secret, options.cookie_lifetime)
                   : CookieJar(now, options.cookie_lifetime)),
      rng_(options.seed != 0 ? options.seed : RandomSeed(), /*stream=*/7) {}

KeyPair Endpoint::NewKeyPair() {
  if (options_.seed == 0) return KeyPair::Generate();
  KeyPair::Seed seed;
  for (size_t i = 0; i < seed.size(); i += 8) {
    const uint64_t r = rng_.Next();
    for (size_t j = 0; j < 8 && i + j < seed.size(); ++j) seed[i + j] = static_cast<uint8_t>(r >> (8 * j));
  }
  return KeyPair::FromSeed(seed);
}

ConnectionId Endpoint::NewId() {
  for (;;) {
    const ConnectionId id = rng_.Next();
    if (id != 0 && !connections_.contains(id)) return id;
  }
}

void Endpoint::SendStateless(const udp::SocketAddress& to, const proto::Packet& packet,
                             size_t received_size) {
  absl::StatusOr<std::string> bytes = codec_.Encode(packet);
  if (!bytes.ok()) return;
  // Anti-amplification (RFC 9000 8.1): to an unvalidated address, at most
  // three times what it sent us. Our answers are far smaller; this is the
  // guarantee, not the common case.
  if (bytes->size() > 3 * received_size) return;
  ++stats_.datagrams_sent;
  stats_.bytes_sent += bytes->size();
  outgoing_.push_back(Outgoing{to, *std::move(bytes)});
}

void Endpoint::Flush(absl::Time now, Connection& c) {
  scratch_.clear();
  c.Poll(now, &scratch_);
  for (std::string& bytes : scratch_) {
    ++stats_.datagrams_sent;
    stats_.bytes_sent += bytes.size();
    outgoing_.push_back(Outgoing{c.peer(), std::move(bytes)});
  }
}

void Endpoint::OnDatagram(absl::Time now, const udp::SocketAddress& from,
                          absl::string_view bytes) {
  ++stats_.datagrams_received;
  stats_.bytes_received += bytes.size();
  if (!bytes.empty() && static_cast<uint8_t>(bytes[0]) == proto::kSealedVersion) {
    const std::optional<proto::SealedHeader> header =
        proto::ParseSealedHeader(std::string_view(bytes.data(), bytes.size()));
    if (!header) {
      ++stats_.malformed;
      return;
    }
    Connection* c = Route(header->connection_id, from);
    if (c == nullptr) return;
    if (!c->OnSealed(now, bytes)) {
      ++stats_.unauthenticated;
      return;
    }
    Flush(now, *c);
    return;
  }
  absl::StatusOr<proto::Packet> packet = codec_.Decode(bytes);
  if (!packet.ok()) {
    ++stats_.malformed;
    return;
  }
  if (packet->hello) {
    OnHello(now, from, *packet->hello, bytes.size());
    return;
  }
  Connection* c = Route(packet->connection_id, from);
  if (c == nullptr) return;
  if (c->encrypted()) {  // after an encrypted handshake only sealed packets count
    ++stats_.unauthenticated;
    return;
  }
  c->OnPacket(now, *packet, bytes.size());
  Flush(now, *c);
}

Connection* Endpoint::Route(ConnectionId id, const udp::SocketAddress& from) {
  auto it = connections_.find(id);
  if (it == connections_.end()) {
    ++stats_.unknown_connection;
    return nullptr;
  }
  if (!(it->second->peer() == from)) {
    ++stats_.wrong_address;
    return nullptr;
  }
  return it->second.get();
}

void Endpoint::OnHello(absl::Time now, const udp::SocketAddress& from, const proto::Hello& hello,
                       size_t size) {
  ++stats_.hellos;
  if (!options_.accept_incoming) {
    ++stats_.ignored_hellos;
    return;
  }
  if (size < proto::kMinDatagram) {
    ++stats_.short_hellos;
    return;
  }
  const std::string address = from.ToString();
  auto known = by_client_.find(ClientKey{address, hello.client_connection_id});
  if (known != by_client_.end()) {
    auto it = connections_.find(known->second);
    if (it != connections_.end()) {
      it->second->OnRepeatedHello(now);
      Flush(now, *it->second);
      return;
    }
    by_client_.erase(known);
  }
  if (hello.cookie.empty() ||
      !cookies_.Verify(now, address, hello.client_connection_id, hello.cookie).ok()) {
    if (!hello.cookie.empty()) ++stats_.bad_cookies;
    proto::Packet challenge;
    challenge.connection_id = hello.client_connection_id;
    challenge.challenge =
        proto::Challenge{hello.client_connection_id,
                         cookies_.Mint(now, address, hello.client_connection_id)};
    ++stats_.challenges_sent;
    SendStateless(from, challenge, size);
    return;
  }
  // The address is validated: from here on the connection may send freely.
  if (open_connections() >= options_.max_connections) {
    Reap(now);
  }
  if (connections_.size() >= options_.max_connections) {
    ++stats_.refused_full;
    proto::Packet refuse;
    refuse.connection_id = hello.client_connection_id;
    refuse.close = proto::Close{proto::kCloseServerFull,
                                absl::StrCat("server full (", options_.max_connections,
                                             " connections)")};
    SendStateless(from, refuse, size);
    return;
  }
  const ConnectionId id = NewId();
  std::unique_ptr<PacketProtector> protector;
  std::string public_key;
  std::string confirmation;
  const bool encrypt = options_.encrypt || options_.psk.has_value();
  if (encrypt || !hello.public_key.empty()) {
    std::string refusal;
    uint32_t code = proto::kCloseEncryptionMismatch;
    if (!encrypt) {
      refusal = "this server does not encrypt; connect without encryption";
    } else if (hello.public_key.empty()) {
      refusal = "this server requires encryption";
    } else {
      const KeyPair key = NewKeyPair();
      const std::string transcript = HandshakeTranscript(hello.public_key, key.public_key(),
                                                         hello.client_connection_id, id);
      absl::StatusOr<SessionKeys> keys =
          DeriveSessionKeys(Role::kServer, key, hello.public_key, transcript, options_.psk);
      if (!keys.ok()) {
        refusal = std::string(keys.status().message());
        code = proto::kCloseProtocolError;  // a malformed client key
      } else {
        protector = std::make_unique<PacketProtector>(*keys);
        public_key = std::string(key.public_key());
        if (options_.psk) confirmation = PskConfirmation(*options_.psk, transcript, Role::kServer);
      }
    }
    if (!refusal.empty()) {
      proto::Packet refuse;
      refuse.connection_id = hello.client_connection_id;
      refuse.close = proto::Close{code, refusal};
      SendStateless(from, refuse, size);
      return;
    }
  }
  std::unique_ptr<Connection> c =
      Connection::Server(now, id, hello.client_connection_id, from, hello, options_.connection,
                         &codec_, std::move(protector), public_key, confirmation, hooks_);
  Connection& ref = *c;
  connections_.emplace(id, std::move(c));
  by_client_[ClientKey{address, hello.client_connection_id}] = id;
  ++stats_.accepted;
  Flush(now, ref);
}

absl::StatusOr<ConnectionId> Endpoint::Connect(absl::Time now, const udp::SocketAddress& peer) {
  if (connections_.size() >= options_.max_connections) Reap(now);
  if (connections_.size() >= options_.max_connections) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot connect to ", peer.ToString(), ": ", options_.max_connections,
                     " connections open"));
  }
  const ConnectionId id = NewId();
  Security security;
  security.encrypt = options_.encrypt || options_.psk.has_value();
  security.psk = options_.psk;
  if (security.encrypt) security.key = NewKeyPair();
  std::unique_ptr<Connection> c =
      Connection::Client(now, id, peer, options_.connection, &codec_, std::move(security), hooks_);
  Connection& ref = *c;
  connections_.emplace(id, std::move(c));
  Flush(now, ref);
  return id;
}

absl::StatusOr<uint64_t> Endpoint::Send(absl::Time now, ConnectionId id, uint32_t channel,
                                        DeliveryMode mode, std::string message) {
  auto it = connections_.find(id);
  if (it == connections_.end()) {
    return absl::NotFoundError(absl::StrCat("no connection ", id));
  }
  absl::StatusOr<uint64_t> seq = it->second->Send(now, channel, mode, std::move(message));
  // Corked: the packets are built in TakeOutgoing(), so messages sent back
  // to back share packets instead of taking one datagram each.
  if (seq.ok()) {
    dirty_.insert(id);
    cork_time_ = now;
  }
  return seq;
}

absl::Status Endpoint::Close(absl::Time now, ConnectionId id, std::string reason, bool flush) {
  auto it = connections_.find(id);
  if (it == connections_.end()) {
    return absl::NotFoundError(absl::StrCat("no connection ", id));
  }
  it->second->Close(now, CloseReason::kClosedByApplication, std::move(reason), flush);
  Flush(now, *it->second);
  return absl::OkStatus();
}

int Endpoint::OnPeerUnreachable(absl::Time now, const udp::SocketAddress& peer,
                                absl::string_view why) {
  int closed = 0;
  for (auto& [id, c] : connections_) {
    if (!c->is_client() || c->state() != Connection::State::kConnecting || c->peer().Unmapped() != peer.Unmapped()) {
      continue;
    }
    // A client still connecting has no server id: Close sends nothing.
    c->Close(now, CloseReason::kPeerUnreachable,
             absl::StrCat("unreachable: ", why), /*flush=*/false);
    Flush(now, *c);
    ++stats_.unreachable;
    ++closed;
  }
  return closed;
}

void Endpoint::CloseAll(absl::Time now, std::string reason, bool flush) {
  for (auto& [id, c] : connections_) {
    c->Close(now, CloseReason::kClosedByApplication, reason, flush);
    Flush(now, *c);
  }
}

void Endpoint::OnTimeout(absl::Time now) {
  for (auto& [id, c] : connections_) {
    if (c->NextTimeout() <= now) {
      c->OnTimeout(now);
      Flush(now, *c);
    }
  }
  Reap(now);
}

void Endpoint::Reap(absl::Time now) {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if (it->second->Finished(now)) {
      if (!it->second->is_client()) {
        by_client_.erase(ClientKey{it->second->peer().ToString(), it->second->peer_id()});
      }
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

absl::Time Endpoint::NextTimeout() const {
  absl::Time t = absl::InfiniteFuture();
  for (const auto& [id, c] : connections_) {
    t = std::min(t, c->NextTimeout());
    if (c->closed() && !c->has_events()) t = std::min(t, c->drain_until());
  }
  return t;
}

std::vector<Outgoing> Endpoint::TakeOutgoing() {
  for (ConnectionId id : dirty_) {
    auto it = connections_.find(id);
    if (it != connections_.end()) Flush(cork_time_, *it->second);
  }
  dirty_.clear();
  std::vector<Outgoing> out;
  out.swap(outgoing_);
  return out;
}

std::vector<Event> Endpoint::TakeEvents() {
  std::vector<Event> out;
  for (auto& [id, c] : connections_) c->TakeEvents(&out);
  return out;
}

absl::StatusOr<ConnectionStats> Endpoint::Stats(ConnectionId id) const {
  auto it = connections_.find(id);
  if (it == connections_.end()) return absl::NotFoundError(absl::StrCat("no connection ", id));
  return it->second->stats();
}

absl::StatusOr<udp::SocketAddress> Endpoint::PeerOf(ConnectionId id) const {
  auto it = connections_.find(id);
  if (it == connections_.end()) return absl::NotFoundError(absl::StrCat("no connection ", id));
  return it->second->peer();
}

bool Endpoint::IsEstablished(ConnectionId id) const {
  auto it = connections_.find(id);
  return it != connections_.end() && it->second->state() == Connection::State::kEstablished;
}

uint64_t Endpoint::QueuedBytes(ConnectionId id) const {
  auto it = connections_.find(id);
  return it == connections_.end() ? 0 : it->second->queued_bytes();
}

bool Endpoint::HasUnfinishedWork(uint64_t* queued) const {
  bool busy = false;
  *queued = 0;
  for (const auto& [id, c] : connections_) {
    if (c->HasUnfinishedWork()) {
      busy = true;
      *queued += c->queued_bytes();
    }
  }
  return busy;
}

size_t Endpoint::open_connections() const {
  size_t n = 0;
  for (const auto& [id, c] : connections_) n += !c->closed();
  return n;
}

}  // namespace udpmsg::reliable
