#include "reliable/endpoint.h"

#include <sodium.h>

#include <algorithm>
#include <optional>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "udp/address_prefix.h"

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
  // With path MTU discovery a peer may send up to what we announce.
  limits.max_datagram = AcceptedDatagramSize(options.connection);
  limits.max_message_bytes = options.connection.max_message_bytes;
  return limits;
}

}  // namespace

std::string EndpointStats::ToString() const {
  return absl::StrCat(
      "received=", datagrams_received, "/", bytes_received, "B sent=", datagrams_sent, "/",
      bytes_sent, "B malformed=", malformed, " unknown_connection=", unknown_connection,
      " wrong_address=", wrong_address, " hellos=", hellos, " challenges=", challenges_sent,
      " bad_cookies=", bad_cookies, " short_hellos=", short_hellos, " accepted=", accepted,
      " refused_full=", refused_full, " refused_per_address=", refused_per_address,
      " refused_key_proof=", refused_key_proof, " evicted_unconfirmed=", evicted_unconfirmed,
      " refused_late_full=", refused_late_full, " drained_early=", drained_early,
      " key_exchanges=", key_exchanges, " unauthenticated=", unauthenticated,
      " unreachable=", unreachable, " punches=", punches, " timer_wakeups=", timer_wakeups,
      " timers_fired=", timers_fired, " received_flushes=", received_flushes,
      " path_challenges=", path_challenges_sent, " migrations=", migrations,
      " path_failures=", path_validation_failures);
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
    ConnectionId id = rng_.Next();
    if (options_.shard_count > 1) id = (id & ~ConnectionId{0xff}) | (options_.shard_index & 0xff);
    if (id != 0 && !connections_.contains(id)) return id;
  }
}

void Endpoint::SendStateless(const udp::SocketAddress& to, const proto::Packet& packet,
                             size_t received_size) {
  // Written straight into the batch, as a connection's packets are.
  std::string* buffer = outgoing_.buffer();
  const size_t start = buffer->size();
  // Anti-amplification (RFC 9000 8.1): to an unvalidated address, at most
  // three times what it sent us. Our answers are far smaller; this is the
  // guarantee, not the common case.
  if (!codec_.EncodeAppend(packet, 0, 0, buffer).ok() ||
      buffer->size() - start > 3 * received_size) {
    outgoing_.Abandon();
    return;
  }
  ++stats_.datagrams_sent;
  stats_.bytes_sent += buffer->size() - start;
  outgoing_.Commit();
  outgoing_.SetPeer(outgoing_.size() - 1, to);
}

size_t Endpoint::ConnectionsFromAddress(const udp::SocketAddress& peer) const {
  auto it = per_address_.find(udp::AddressPrefix(peer));
  return it == per_address_.end() ? 0 : it->second;
}

Endpoint::SlotKind Endpoint::KindOf(const Connection& c) {
  if (c.closed()) return SlotKind::kClosed;
  return c.unconfirmed() ? SlotKind::kUnconfirmed : SlotKind::kMember;
}

void Endpoint::Count(ConnectionId id, const Slot& slot, int delta) {
  switch (slot.kind) {
    case SlotKind::kMember:
      members_ += delta;
      break;
    case SlotKind::kUnconfirmed:
      unconfirmed_ += delta;
      if (delta > 0) {
        unconfirmed_order_.insert({slot.since, id});
      } else {
        unconfirmed_order_.erase({slot.since, id});
      }
      break;
    case SlotKind::kClosed:
      closed_ += delta;
      if (delta > 0) {
        closed_ids_.insert(id);
      } else {
        closed_ids_.erase(id);
      }
      return;  // closed connections count against no address
  }
  if (slot.prefix.empty()) return;
  size_t& n = per_address_[slot.prefix];
  n += delta;
  if (n == 0) per_address_.erase(slot.prefix);
}

bool Endpoint::Sync(absl::Time now, ConnectionId id, Entry& e) {
  Connection& c = *e.connection;
  Slot& slot = e.slot;
  const SlotKind kind = KindOf(c);
  if (kind == slot.kind) return false;
  const SlotKind was = slot.kind;
  Count(id, slot, -1);
  slot.kind = kind;
  Count(id, slot, +1);
  if (was == SlotKind::kUnconfirmed && kind == SlotKind::kMember &&
      members_ > options_.max_connections) {
    // Admitted while members had room, confirmed after they filled up.
    ++stats_.refused_late_full;
    c.Close(now, CloseReason::kServerFull,
            absl::StrCat("server full (", options_.max_connections, " connections)"),
            /*flush=*/false);
    Sync(now, id, e);
    return true;
  }
  return false;
}

void Endpoint::Flush(absl::Time now, Entry& e) {
  Connection& c = *e.connection;
  const size_t before = outgoing_.size();
  c.Poll(now, &outgoing_);
  if (Sync(now, c.local_id(), e)) c.Poll(now, &outgoing_);  // send the Close Sync decided
  for (size_t i = before; i < outgoing_.size(); ++i) {
    ++stats_.datagrams_sent;
    stats_.bytes_sent += outgoing_[i].size();
  }
  outgoing_.SetPeer(before, c.peer());
  path_scratch_.clear();
  c.PollPath(now, &path_scratch_);
  for (AddressedDatagram& d : path_scratch_) {
    ++stats_.datagrams_sent;
    ++stats_.path_challenges_sent;
    stats_.bytes_sent += d.bytes.size();
    outgoing_.Add(d.to, d.bytes);
  }
  udp::SocketAddress moved_from;
  switch (c.TakePathOutcome(&moved_from)) {
    case Connection::PathOutcome::kMoved:
      OnMigrated(e, moved_from);
      break;
    case Connection::PathOutcome::kFailed:
      ++stats_.path_validation_failures;
      break;
    case Connection::PathOutcome::kNone:
      break;
  }
  Reschedule(e);
}

absl::Time Endpoint::TimerKey(absl::Time deadline) const {
  if (deadline == absl::InfiniteFuture() || deadline - last_now_ < kCoalesceAfter) {
    return deadline;
  }
  // Round up to the grid (a multiple of kTimerGranularity since the Unix
  // epoch), so deadlines of quiet connections share wakeups.
  const int64_t grid = absl::ToInt64Nanoseconds(kTimerGranularity);
  const int64_t ns = absl::ToUnixNanos(deadline);  // rounds down
  int64_t rem = ns % grid;
  if (rem < 0) rem += grid;
  const absl::Time floor = absl::FromUnixNanos(ns - rem);
  return floor == deadline ? deadline : floor + kTimerGranularity;
}

void Endpoint::Reschedule(Entry& e) {
  const Connection& c = *e.connection;
  const ConnectionId id = c.local_id();
  absl::Time deadline = c.NextTimeout();
  if (c.closed() && !c.has_events()) deadline = std::min(deadline, c.drain_until());
  const absl::Time key = TimerKey(deadline);
  if (key != e.due) {
    // Inserted before the old key is erased: a tree left empty in between
    // frees its root node and the insert allocates another (an allocation
    // per run of a server's only busy connection).
    if (key != absl::InfiniteFuture()) timers_.insert({key, id});
    if (e.due != absl::InfiniteFuture()) timers_.erase({e.due, id});
    e.due = key;
  }
  if (c.has_events()) with_events_.insert(id);
}

Endpoint::Entry& Endpoint::Admit(absl::Time now, std::unique_ptr<Connection> c,
                                 std::string prefix) {
  const ConnectionId id = c->local_id();
  Entry entry;
  entry.slot = Slot{KindOf(*c), std::move(prefix), now};
  if (c->is_client()) clients_.insert(id);
  entry.connection = std::move(c);
  Count(id, entry.slot, +1);
  routed_ = Routed{};  // an insert may move every entry
  return connections_.emplace(id, std::move(entry)).first->second;
}

void Endpoint::OnDatagram(absl::Time now, const udp::SocketAddress& from,
                          absl::string_view bytes) {
  last_now_ = std::max(last_now_, now);
  if (Entry* e = Deliver(now, from, bytes)) {
    ++stats_.received_flushes;
    Flush(now, *e);
  }
}

void Endpoint::OnDatagrams(absl::Time now, absl::Span<const ReceivedDatagram> batch) {
  last_now_ = std::max(last_now_, now);
  for (const ReceivedDatagram& d : batch) {
    Entry* e = Deliver(now, *d.from, d.bytes);
    if (e == nullptr) continue;
    const Connection& c = *e->connection;
    // Deferred only when Flush would do nothing the rest of the batch can
    // change: no slot to move (Sync), no path outcome to take, nothing from
    // another address, and no ACK due. An ACK the ack policy calls for
    // (every `threshold` packets, a gap, a ping) goes now, as one by one:
    // the sender's loss detection and window see it at the same point.
    if (e->slot.kind == SlotKind::kMember && KindOf(c) == SlotKind::kMember && !c.path_pending() &&
        *d.from == c.peer() && !c.AckDue(now)) {
      if (deferred_.empty() || deferred_.back() != c.local_id()) {
        deferred_.push_back(c.local_id());
      }
    } else {
      // Runs now: no second run for its earlier datagrams at the end.
      deferred_.erase(std::remove(deferred_.begin(), deferred_.end(), c.local_id()),
                      deferred_.end());
      ++stats_.received_flushes;
      Flush(now, *e);
    }
  }
  FlushDeferred(now);
}

void Endpoint::FlushDeferred(absl::Time now) {
  if (deferred_.empty()) return;
  std::sort(deferred_.begin(), deferred_.end());
  deferred_.erase(std::unique(deferred_.begin(), deferred_.end()), deferred_.end());
  for (ConnectionId id : deferred_) {
    auto it = connections_.find(id);
    if (it == connections_.end()) continue;
    ++stats_.received_flushes;
    Flush(now, it->second);
  }
  deferred_.clear();
}

Endpoint::Entry* Endpoint::Deliver(absl::Time now, const udp::SocketAddress& from,
                                   absl::string_view bytes) {
  ++stats_.datagrams_received;
  stats_.bytes_received += bytes.size();
  if (!bytes.empty() && static_cast<uint8_t>(bytes[0]) == proto::kPunchVersion) {
    ++stats_.punches;  // a NAT-traversal punch (proto/frames.h): never answered
    return nullptr;
  }
  if (!bytes.empty() && static_cast<uint8_t>(bytes[0]) == proto::kSealedVersion) {
    const std::optional<proto::SealedHeader> header =
        proto::ParseSealedHeader(std::string_view(bytes.data(), bytes.size()));
    // Larger than anything we accept: dropped before the connection spends
    // AEAD work on it or grows its open buffer (the connection id travels
    // in clear, so anyone could send it).
    if (!header || bytes.size() > codec_.limits().max_datagram) {
      ++stats_.malformed;
      return nullptr;
    }
    Entry* e = Route(header->connection_id);
    if (e == nullptr) return nullptr;
    switch (e->connection->OnSealedFrom(now, bytes, from)) {
      case PathVerdict::kAccepted:
        return e;
      case PathVerdict::kUnauthenticated:
        ++stats_.unauthenticated;
        return nullptr;
      case PathVerdict::kRefusedAddress:
        ++stats_.wrong_address;
        return nullptr;
    }
    return nullptr;
  }
  // Data payloads stay views into `bytes` (alive for this call): each is
  // copied once, into the reassembler. Decoded into the endpoint's one
  // Packet, which keeps its frame vector's allocation from datagram to
  // datagram (a malloc and a free per datagram were ~3% of a clean-veth
  // receiver's samples).
  proto::Packet* const packet = &decoded_;
  if (!codec_.DecodeViewInto(bytes, packet).ok()) {
    ++stats_.malformed;
    return nullptr;
  }
  if (packet->hello) {
    FlushDeferred(now);  // its caps see the counters of the packets before it
    OnHello(now, from, *packet->hello, bytes.size());
    return nullptr;
  }
  Entry* e = Route(packet->connection_id);
  if (e == nullptr) return nullptr;
  if (e->connection->encrypted()) {  // after an encrypted handshake only sealed packets count
    ++stats_.unauthenticated;
    return nullptr;
  }
  if (e->connection->OnPacketFrom(now, *packet, bytes.size(), from) ==
      PathVerdict::kRefusedAddress) {
    ++stats_.wrong_address;
    return nullptr;
  }
  return e;
}

Endpoint::Entry* Endpoint::Route(ConnectionId id) {
  if (routed_.entry != nullptr && routed_.id == id) return routed_.entry;
  auto it = connections_.find(id);
  if (it == connections_.end()) {
    ++stats_.unknown_connection;
    return nullptr;
  }
  routed_ = Routed{id, &it->second};
  return routed_.entry;
}

void Endpoint::OnMigrated(Entry& e, const udp::SocketAddress& moved_from) {
  ++stats_.migrations;
  Connection& c = *e.connection;
  if (c.is_client()) return;  // clients never move (connection.h)
  // The repeated-hello key follows the connection (a late hello from the
  // old address then starts a new handshake, as from any address).
  auto known = by_client_.find(ClientKey{moved_from.ToString(), c.peer_id()});
  if (known != by_client_.end() && known->second == c.local_id()) by_client_.erase(known);
  // Another connection may hold that key (the same client id from that
  // address, a new handshake): it keeps it; this one is then found by id.
  by_client_.try_emplace(ClientKey{c.peer().ToString(), c.peer_id()}, c.local_id());
  // The per-address count moves with it. Not capped: the move is validated,
  // and refusing it would strand a live connection on a dead address.
  const std::string prefix = udp::AddressPrefix(c.peer());
  if (prefix != e.slot.prefix) {
    Count(c.local_id(), e.slot, -1);
    e.slot.prefix = prefix;
    Count(c.local_id(), e.slot, +1);
  }
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
      it->second.connection->OnRepeatedHello(now);
      Flush(now, it->second);
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
                         cookies_.Mint(now, address, hello.client_connection_id), ""};
    if (options_.psk) {
      challenge.challenge->key_proof = ChallengeKeyProof(
          *options_.psk, challenge.challenge->cookie, hello.client_connection_id);
    }
    ++stats_.challenges_sent;
    SendStateless(from, challenge, size);
    return;
  }
  // The address is validated: from here on the connection may send freely.
  // Checks, cheapest and stateless first; nothing is allocated and no X25519
  // is done before all pass.
  const bool encrypt =
      options_.encrypt || options_.psk.has_value() || options_.identity.has_value();
  if (!encrypt && !hello.public_key.empty()) {
    Refuse(from, hello, size, proto::kCloseEncryptionMismatch,
           "this server does not encrypt; connect without encryption", false);
    return;
  }
  if (encrypt && hello.public_key.empty()) {
    Refuse(from, hello, size, proto::kCloseEncryptionMismatch, "this server requires encryption",
           true);
    return;
  }
  if (options_.psk && !VerifyHelloKeyProof(*options_.psk, hello.cookie,
                                           hello.client_connection_id, hello.public_key,
                                           hello.key_proof)) {
    // Nothing the client can check: it has another key or none (an older
    // client sends none). Costs us one BLAKE2b, like the cookie.
    ++stats_.refused_key_proof;
    Refuse(from, hello, size, proto::kCloseProtocolError,
           "wrong room key: the hello carries no valid proof of this room's key", false);
    return;
  }
  if (members_ >= options_.max_connections) {
    ++stats_.refused_full;
    Refuse(from, hello, size, proto::kCloseServerFull,
           absl::StrCat("server full (", options_.max_connections, " connections)"), true);
    return;
  }
  const std::string prefix = udp::AddressPrefix(from);
  if (auto n = per_address_.find(prefix);
      n != per_address_.end() && n->second >= options_.max_connections_per_address) {
    ++stats_.refused_per_address;
    Refuse(from, hello, size, proto::kCloseServerFull,
           absl::StrCat("server full: too many connections from ", prefix, " (",
                        options_.max_connections_per_address, ")"),
           true);
    return;
  }
  while (unconfirmed_ >= options_.max_unconfirmed_connections && !unconfirmed_order_.empty()) {
    // The oldest has had the longest to confirm; an honest client confirms
    // within one round trip, so under a flood the newest get their chance.
    auto oldest = connections_.find(unconfirmed_order_.begin()->second);
    if (oldest == connections_.end()) {  // cannot happen: slots follow connections_
      unconfirmed_order_.erase(unconfirmed_order_.begin());
      continue;
    }
    ++stats_.evicted_unconfirmed;
    oldest->second.connection->Close(now, CloseReason::kHandshakeTimeout,
                                     "handshake not confirmed: a newer one took its place",
                                     /*flush=*/false);
    Flush(now, oldest->second);
  }
  if (closed_ >= options_.max_draining_connections) ReapDraining();
  const ConnectionId id = NewId();
  std::unique_ptr<PacketProtector> protector;
  std::string public_key;
  std::string confirmation;
  std::string identity;
  std::string identity_confirmation;
  Aead aead = Aead::kChaCha20Poly1305;
  if (encrypt) {
    const KeyPair key = NewKeyPair();
    if (options_.identity) identity = std::string(options_.identity->public_key());
    // The AEAD for the client's offer (packet_protection.h, "AEAD
    // negotiation"); the offer and the choice join the transcript, after the
    // static key when we have one, and then the features the hello and our
    // accept announce (FeaturesTranscript). No offer (an older client):
    // ChaCha20-Poly1305 and the transcript as before.
    const uint32_t local = hooks_.aeads.value_or(LocalAeads());
    const uint32_t offer = local == 0 ? 0 : hello.aead_offer;
    aead = ChooseAead(offer, local);
    const std::string transcript =
        HandshakeTranscript(hello.public_key, key.public_key(), hello.client_connection_id, id,
                            absl::StrCat(identity,
                                         AeadTranscript(offer, static_cast<uint32_t>(aead)),
                                         FeaturesTranscript(hello.features,
                                                            Connection::AnnouncedFeatures(
                                                                options_.connection))));
    ++stats_.key_exchanges;
    std::optional<IdentitySecret> es;
    if (options_.identity) {  // Noise NK's es: our static key, its ephemeral
      absl::StatusOr<IdentitySecret> shared =
          IdentityExchange(Role::kServer, *options_.identity, hello.public_key);
      if (!shared.ok()) {  // a malformed client key
        Refuse(from, hello, size, proto::kCloseProtocolError,
               std::string(shared.status().message()), true);
        return;
      }
      es = *std::move(shared);
    }
    absl::StatusOr<SessionKeys> keys = DeriveSessionKeys(
        Role::kServer, key, hello.public_key, transcript, options_.psk, es ? &*es : nullptr);
    if (!keys.ok()) {  // a malformed client key
      Refuse(from, hello, size, proto::kCloseProtocolError, std::string(keys.status().message()),
             true);
      return;
    }
    protector = std::make_unique<PacketProtector>(*keys, aead);
    public_key = std::string(key.public_key());
    if (options_.psk) confirmation = PskConfirmation(*options_.psk, transcript, Role::kServer);
    if (options_.identity) {
      identity_confirmation = ServerKeyConfirmation(*keys, Role::kServer, transcript);
    }
  }
  std::unique_ptr<Connection> c = Connection::Server(
      now, id, hello.client_connection_id, from, hello, options_.connection, &codec_,
      std::move(protector), public_key, confirmation, hooks_, identity, identity_confirmation);
  if (options_.seed != 0) c->set_path_challenge_data_for_testing(rng_.Next() | 1);
  Entry& entry = Admit(now, std::move(c), prefix);
  by_client_[ClientKey{address, hello.client_connection_id}] = id;
  ++stats_.accepted;
  Flush(now, entry);
}

void Endpoint::Refuse(const udp::SocketAddress& to, const proto::Hello& hello,
                      size_t received_size, uint32_t code, std::string reason,
                      bool authenticate) {
  proto::Packet refuse;
  refuse.connection_id = hello.client_connection_id;
  refuse.close = proto::Close{code, std::move(reason), ""};
  if (authenticate && options_.psk) {
    refuse.close->auth = CloseAuth(*options_.psk, hello.client_connection_id, hello.cookie, code,
                                   refuse.close->reason);
  }
  SendStateless(to, refuse, received_size);
}

absl::StatusOr<ConnectionId> Endpoint::Connect(absl::Time now, const udp::SocketAddress& peer) {
  return ConnectWith(
      now, peer, options_.encrypt || options_.psk.has_value() || options_.server_pin.has_value(),
      options_.psk, options_.server_pin);
}

absl::StatusOr<ConnectionId> Endpoint::Connect(absl::Time now, const udp::SocketAddress& peer,
                                               const ConnectSecurity& security) {
  return ConnectWith(now, peer, security.encrypt || security.server_pin.has_value(), std::nullopt,
                     security.server_pin);
}

absl::StatusOr<ConnectionId> Endpoint::ConnectWith(absl::Time now, const udp::SocketAddress& peer,
                                                   bool encrypt, std::optional<Psk> psk,
                                                   std::optional<std::string> server_pin) {
  last_now_ = std::max(last_now_, now);
  if (members_ >= options_.max_connections) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot connect to ", peer.ToString(), ": ", options_.max_connections,
                     " connections open"));
  }
  const ConnectionId id = NewId();
  Security security;
  security.encrypt = encrypt;
  security.psk = std::move(psk);
  security.server_pin = std::move(server_pin);
  if (security.encrypt) security.key = NewKeyPair();
  std::unique_ptr<Connection> c =
      Connection::Client(now, id, peer, options_.connection, &codec_, std::move(security), hooks_);
  Admit(now, std::move(c), "");
  if (closed_ >= options_.max_draining_connections) ReapDraining();
  Flush(now, connections_.find(id)->second);
  return id;
}

absl::StatusOr<uint64_t> Endpoint::Send(absl::Time now, ConnectionId id, uint32_t channel,
                                        DeliveryMode mode, MessageBytes message) {
  last_now_ = std::max(last_now_, now);
  auto it = connections_.find(id);
  if (it == connections_.end()) {
    return absl::NotFoundError(absl::StrCat("no connection ", id));
  }
  absl::StatusOr<uint64_t> seq =
      it->second.connection->Send(now, channel, mode, std::move(message));
  // Corked: the packets are built in TakeOutgoing(), so messages sent back
  // to back share packets instead of taking one datagram each.
  if (seq.ok()) {
    dirty_.insert(id);
    cork_time_ = now;
  }
  Reschedule(it->second);
  return seq;
}

absl::Status Endpoint::Close(absl::Time now, ConnectionId id, std::string reason, bool flush) {
  last_now_ = std::max(last_now_, now);
  auto it = connections_.find(id);
  if (it == connections_.end()) {
    return absl::NotFoundError(absl::StrCat("no connection ", id));
  }
  it->second.connection->Close(now, CloseReason::kClosedByApplication, std::move(reason), flush);
  Flush(now, it->second);
  return absl::OkStatus();
}

int Endpoint::OnPeerUnreachable(absl::Time now, const udp::SocketAddress& peer,
                                absl::string_view why) {
  last_now_ = std::max(last_now_, now);
  int closed = 0;
  for (ConnectionId id : clients_) {  // only clients connect
    Entry& e = connections_.find(id)->second;
    Connection& c = *e.connection;
    if (c.state() != Connection::State::kConnecting || c.peer().Unmapped() != peer.Unmapped()) {
      continue;
    }
    // A client still connecting has no server id: Close sends nothing.
    c.Close(now, CloseReason::kPeerUnreachable, absl::StrCat("unreachable: ", why),
            /*flush=*/false);
    Flush(now, e);
    ++stats_.unreachable;
    ++closed;
  }
  return closed;
}

void Endpoint::OnDatagramTooBig(absl::Time now, const udp::SocketAddress& peer, size_t size) {
  last_now_ = std::max(last_now_, now);
  std::vector<ConnectionId> ids;  // local information, rare: a scan is fine
  for (auto& [id, e] : connections_) {
    if (e.connection->peer().Unmapped() == peer.Unmapped()) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());  // deterministic order of what they send
  for (ConnectionId id : ids) {
    Entry& e = connections_.find(id)->second;
    e.connection->OnDatagramTooBig(now, size);
    Flush(now, e);
  }
}

void Endpoint::OnLocalAddressChanged(absl::Time now) {
  last_now_ = std::max(last_now_, now);
  for (ConnectionId id : clients_) {  // ascending: a deterministic order
    Entry& e = connections_.find(id)->second;
    e.connection->OnLocalRebind(now);
    Flush(now, e);
  }
}

void Endpoint::CloseAll(absl::Time now, std::string reason, bool flush) {
  last_now_ = std::max(last_now_, now);
  std::vector<ConnectionId> ids;
  ids.reserve(connections_.size());
  for (const auto& [id, e] : connections_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  for (ConnectionId id : ids) {
    Entry& e = connections_.find(id)->second;
    e.connection->Close(now, CloseReason::kClosedByApplication, reason, flush);
    Flush(now, e);
  }
}

void Endpoint::OnTimeout(absl::Time now) {
  last_now_ = std::max(last_now_, now);
  std::vector<ConnectionId> due;
  for (auto it = timers_.begin(); it != timers_.end() && it->first <= now; ++it) {
    due.push_back(it->second);
  }
  if (!due.empty()) ++stats_.timer_wakeups;
  for (ConnectionId id : due) {
    auto it = connections_.find(id);
    if (it == connections_.end()) continue;
    ++stats_.timers_fired;
    Connection& c = *it->second.connection;
    if (c.NextTimeout() <= now) c.OnTimeout(now);
    Flush(now, it->second);
    ReapIfFinished(now, id);
  }
  if (closed_ > options_.max_draining_connections) ReapDraining();
}

bool Endpoint::ReapIfFinished(absl::Time now, ConnectionId id) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return false;
  Entry& e = it->second;
  const Connection& c = *e.connection;
  if (!c.Finished(now)) return false;
  if (!c.is_client()) {
    auto known = by_client_.find(ClientKey{c.peer().ToString(), c.peer_id()});
    if (known != by_client_.end() && known->second == id) by_client_.erase(known);
  }
  Count(id, e.slot, -1);
  if (e.due != absl::InfiniteFuture()) timers_.erase({e.due, id});
  with_events_.erase(id);
  clients_.erase(id);
  dirty_.erase(id);
  routed_ = Routed{};
  connections_.erase(it);
  return true;
}

void Endpoint::ReapDraining() {
  const std::vector<ConnectionId> closed(closed_ids_.begin(), closed_ids_.end());
  for (ConnectionId id : closed) {
    if (ReapIfFinished(absl::InfiniteFuture(), id)) ++stats_.drained_early;
  }
}

absl::Time Endpoint::NextTimeout() const {
  return timers_.empty() ? absl::InfiniteFuture() : timers_.begin()->first;
}

void Endpoint::FlushDirty() {
  for (ConnectionId id : dirty_) {
    auto it = connections_.find(id);
    if (it != connections_.end()) Flush(cork_time_, it->second);
  }
  dirty_.clear();
}

std::vector<Outgoing> Endpoint::TakeOutgoing() {
  FlushDirty();
  std::vector<Outgoing> out;
  out.reserve(outgoing_.size());
  for (size_t i = 0; i < outgoing_.size(); ++i) {
    out.push_back(Outgoing{outgoing_.peer(i), std::string(outgoing_[i])});
  }
  outgoing_.Clear();
  return out;
}

void Endpoint::TakeOutgoing(DatagramBatch* out) {
  FlushDirty();
  if (out->empty()) {
    out->Clear();
    out->swap(outgoing_);
  } else {
    out->Append(outgoing_);
    outgoing_.Clear();
  }
}

std::vector<Event> Endpoint::TakeEvents() {
  std::vector<Event> out;
  const std::vector<ConnectionId> ids(with_events_.begin(), with_events_.end());
  with_events_.clear();
  for (ConnectionId id : ids) {
    auto it = connections_.find(id);
    if (it == connections_.end()) continue;
    it->second.connection->TakeEvents(&out);
    Reschedule(it->second);  // a closed one may now drain
  }
  return out;
}

absl::StatusOr<ConnectionStats> Endpoint::Stats(ConnectionId id) const {
  auto it = connections_.find(id);
  if (it == connections_.end()) return absl::NotFoundError(absl::StrCat("no connection ", id));
  return it->second.connection->stats();
}

absl::StatusOr<udp::SocketAddress> Endpoint::PeerOf(ConnectionId id) const {
  auto it = connections_.find(id);
  if (it == connections_.end()) return absl::NotFoundError(absl::StrCat("no connection ", id));
  return it->second.connection->peer();
}

bool Endpoint::IsEstablished(ConnectionId id) const {
  auto it = connections_.find(id);
  return it != connections_.end() &&
         it->second.connection->state() == Connection::State::kEstablished;
}

absl::Status Endpoint::SetChannelPriority(absl::Time now, ConnectionId id, uint32_t channel,
                                          uint32_t priority, uint32_t weight) {
  last_now_ = std::max(last_now_, now);
  auto it = connections_.find(id);
  if (it == connections_.end()) {
    return absl::NotFoundError(absl::StrCat("no connection ", id));
  }
  absl::Status s = it->second.connection->SetChannelPriority(channel, priority, weight);
  // A lane of its own may make data sendable that waited behind a window
  // in the shared lane: build packets in the next TakeOutgoing().
  if (s.ok()) {
    dirty_.insert(id);
    cork_time_ = now;
  }
  Reschedule(it->second);
  return s;
}

uint64_t Endpoint::QueuedBytes(ConnectionId id) const {
  auto it = connections_.find(id);
  return it == connections_.end() ? 0 : it->second.connection->queued_bytes();
}

bool Endpoint::HasUnfinishedWork(uint64_t* queued) const {
  bool busy = false;
  *queued = 0;
  for (const auto& [id, e] : connections_) {  // a flush before exit: a scan is fine
    if (e.connection->HasUnfinishedWork()) {
      busy = true;
      *queued += e.connection->queued_bytes();
    }
  }
  return busy;
}

}  // namespace udpmsg::reliable
