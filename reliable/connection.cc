#include "reliable/connection.h"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <optional>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace udpmsg::reliable {
namespace {

proto::Codec CodecFor(const proto::Codec* codec, size_t max_datagram) {
  proto::Codec::Limits limits = codec->limits();
  limits.max_datagram = std::min(limits.max_datagram, max_datagram);
  return proto::Codec(limits);
}

// `codec`'s limits with exactly `max_datagram` (clamped by the codec).
proto::Codec CodecWithBudget(const proto::Codec& codec, size_t max_datagram) {
  proto::Codec::Limits limits = codec.limits();
  limits.max_datagram = max_datagram;
  return proto::Codec(limits);
}

// Most packets one Poll() emits; the pacer and the window normally stop it
// much earlier. Keeps one connection from monopolising an endpoint's turn.
constexpr int kMaxPacketsPerPoll = 256;
// Most padding PadToTrain adds to a packet of a full-size train (one within
// a data frame's longest header of the datagram limit): what a ping and
// varint widths change (full packets on a clean veth are 1,433-1,437 bytes),
// and the shorter last fragment of a message in the datagram it shares with
// the next message's first (14 bytes for 64 KiB messages in fragments of
// 690). Smaller packets (a small message each) get at most
// kMaxSmallTrainPadding: a 60-byte packet padded by 32 would be half
// padding, on the wire and in the window. A larger gap starts a new train.
// Packets with an ACK frame go by their own size and leave the train as it
// was: padding every packet up to a rare larger one would cost bytes on
// every datagram.
constexpr size_t kMaxTrainPadding = 32;
constexpr size_t kMaxSmallTrainPadding = 4;

// Receiver bounds that are not options: ack ranges kept, and messages in
// progress per reassembler (reliable, unreliable).
constexpr size_t kMaxAckRanges = 1024;
constexpr size_t kMaxPartialMessages = 1024;
// The two reassemblers' tables of partial messages at their largest: a
// flat_hash_map keeps its capacity (2047 slots of under 128 bytes for 1024
// messages) after its messages complete, so this is held once a peer had
// that many in progress, charged or not.
constexpr uint64_t kPartialTablesBytes = 2 * 2048 * 128;

// What a ping frame adds to a packet (SendOne may add one after the data).
size_t PingFrameBytes() {
  static const size_t bytes = [] {
    const proto::Codec codec{proto::Codec::Limits{}};
    proto::Packet p;
    const size_t without = codec.EncodedSize(p);
    p.ping = proto::Ping{};
    return codec.EncodedSize(p) - without;
  }();
  return bytes;
}

// The fragment size for datagrams of `inner` bytes (before sealing) when a
// base-size datagram carries fragments of up to `base_fragment` bytes: the
// size that puts the most payload in one datagram with k fragments of at
// most `base_fragment` each, so a fragment cut for a large datagram still
// fits a base-size one and retransmissions after a black-hole fallback get
// through (the receiver knows a started message's fragment count: its
// fragments can never be cut again). SendOne adds a fragment after the
// first when its frame, at its exact size, fits (and at least
// kMaxDataFrameHeaderBytes are left); k fit when the packet's header
// (kPacketBytes), a ping and each frame's header (kFrameHeaderBytes) are no
// longer than allowed here. A frame's header is 15-20 bytes for 64 KiB
// messages with sequence numbers below 2^21, about 25 for 16 MiB ones; 32
// leaves room for larger sequence numbers and channel ids. A packet with an
// ACK frame (at most once per round trip with data) carries one fragment
// fewer when the ACK does not fit in the slack. 1472 bytes: two of 690
// (1,380 per datagram, in 1,435-byte datagrams), against two of 664 when
// each frame was allowed 56 bytes, the most a data frame's header can take
// (1,328, in 1,377-byte datagrams), and 978 at 1200.
constexpr size_t kPacketBytes = 24;
// The longest header a data frame can have (tags, lengths and 64-bit
// varints).
constexpr size_t kMaxDataFrameHeaderBytes = 56;
constexpr size_t kFrameHeaderBytes = 32;
//
// With fragment runs (ConnectionOptions::fragment_runs) the k fragments
// share one frame header, so a larger k costs nothing on the wire and only
// the division's remainder decides; but smaller fragments cost a
// retransmission after a fallback (a lost run is sent again a fragment per
// frame) and a receiver kept-apart bookkeeping per fragment, and the
// receiver's headroom for its head message assumes fragments of at least
// half its base payload. So k grows only while fragments stay at least half
// of `base_fragment`, and only for a gain of more than a frame header:
// 1472 bytes carry two of 707 (1,414 per datagram), 8,972 ten of 891,
// 16,384 (loopback) 17 of 960 in one frame where 16 frames of 978 went.
size_t FragmentPayloadFor(size_t inner, size_t base_fragment, size_t max_frames, bool runs) {
  size_t best = base_fragment;
  size_t best_total = base_fragment;
  for (size_t k = 2; runs || k <= max_frames; ++k) {
    const size_t fixed = kPacketBytes + PingFrameBytes() + (runs ? 1 : k) * kFrameHeaderBytes;
    if (inner <= fixed + k) break;
    const size_t each = std::min((inner - fixed) / k, base_fragment);
    if (runs && each < base_fragment / 2) break;
    if (k * each > best_total + (runs ? kFrameHeaderBytes : 0)) {
      best = each;
      best_total = k * each;
    }
  }
  return best;
}

// The probe timeout backs off only up to max(PTO, peer_timeout /
// kPeerTimeoutProbePeriods), a deliberate departure from RFC 9002 6.2.1
// (which doubles it on every expiry) so that a peer timeout spans many probe
// rounds. Uncapped, a 55 ms PTO had backed off to 3.5 s by the seventh
// probe, the eighth fell after the 10 s, and a connection losing 20% each
// way closed with "acknowledged nothing for 10s" after eight of the peer's
// acks in a row were lost (the simulator's seed 76 with other fragment
// sizes): each round of two probes fails with about 13% there, and seven
// rounds were all the timeout allowed. Capped (1.25 s by default) that path
// probes eleven times in the 10 s; a PTO over the cap (an srtt above about
// 400 ms) is not backed off at all. max_probes (16 by default) leaves the
// peer timeout to decide on paths with a PTO of 1 ms or more.
constexpr int kPeerTimeoutProbePeriods = 8;

SentPackets::Options SentPacketsOptions(const ConnectionOptions& options) {
  SentPackets::Options o;
  o.max_pto_period = options.peer_timeout / kPeerTimeoutProbePeriods;
  return o;
}

// The controller the options ask for.
std::unique_ptr<CongestionController> MakeController(const ConnectionOptions& options,
                                                     size_t max_datagram) {
  switch (options.congestion_control) {
    case CongestionControl::kNewReno:
      return std::make_unique<NewReno>(max_datagram);
    case CongestionControl::kBbr:
      return std::make_unique<Bbr>(max_datagram);
  }
  return std::make_unique<NewReno>(max_datagram);  // not an enumerator: Validate refuses it
}

// Per-thread scratch buffers shared by every connection driven on the
// thread (an endpoint and its connections run on one thread), instead of one
// per connection: an encrypted connection's opened plaintext grew to its
// largest datagram (16 KiB with path MTU discovery on loopback) and a
// sender's fragment vector to max_data_frames entries, each held for the
// connection's lifetime. Borrowed by swapping (Borrowed below), so a nested
// use would get an empty buffer, never a clobbered one.
std::string& OpenedScratch() {
  thread_local std::string opened;
  return opened;
}
std::vector<proto::DataFragment>& FragmentScratch() {
  thread_local std::vector<proto::DataFragment> fragments;
  return fragments;
}
// The fragment vector an opened (sealed) datagram decodes into; the plain
// ones decode into the endpoint's reused Packet.
std::vector<proto::DataFragment>& DecodedScratch() {
  thread_local std::vector<proto::DataFragment> fragments;
  return fragments;
}

// Moves a scratch buffer into `local` for a scope and back (cleared).
template <typename T>
class Borrowed {
 public:
  Borrowed(T& scratch, T& local) : scratch_(scratch), local_(local) { local_.swap(scratch_); }
  ~Borrowed() {
    local_.clear();
    local_.swap(scratch_);
  }
  Borrowed(const Borrowed&) = delete;
  Borrowed& operator=(const Borrowed&) = delete;

 private:
  T& scratch_;
  T& local_;
};

// A data frame for queued fragment (run) `c`, its payload borrowed from the
// send queue (valid until the queue next changes: nothing between taking a
// fragment and encoding its packet enqueues, acknowledges or loses
// anything, and a sender returns at once after a CloseNow, which clears the
// queue; the codec copies the payload once, into the datagram).
void Describe(const OutgoingFragment& c, proto::DataFragment* d) {
  d->channel = c.channel;
  d->mode = static_cast<uint32_t>(c.mode);
  d->sequence = c.sequence;
  d->index = c.header.index;
  d->count = c.header.count;
  d->total_size = c.header.total_size;
  d->run = 1;
  d->payload_ref = std::string_view(c.payload.data(), c.payload.size());
}

// How many of the `available` fragments from d.index (payload `all`, cut in
// `chunk`-byte pieces) one frame takes when `used` of a packet's
// `data_limit` bytes are filled: as many as fit at the frame's exact size;
// a packet's first frame (`first`) at least one, a later one none (0) when
// even one does not fit. Leaves d's run and payload at the count returned
// (or 1) and its size in `*frame`.
uint32_t FitRun(proto::DataFragment& d, std::string_view all, uint64_t chunk,
                uint32_t available, size_t used, size_t data_limit, bool first, size_t* frame) {
  auto size_of = [&](uint32_t n) {
    d.run = n;
    // (substr cuts at the message's end: its last fragment is shorter.)
    d.payload_ref = all.substr(0, chunk * n);
    return proto::Codec::DataFrameSize(d);
  };
  const size_t room = data_limit > used ? data_limit - used : 0;
  // (Fragments are cut larger than kMinRunFragmentBytes; a message that is
  // not is sent a fragment per frame.)
  uint32_t n = chunk < proto::kMinRunFragmentBytes
                   ? 1
                   : static_cast<uint32_t>(
                         std::min<uint64_t>(available, std::max<uint64_t>(room / chunk, 1)));
  *frame = size_of(n);
  while (n > 1 && used + *frame > data_limit) *frame = size_of(--n);
  if (n == 1 && !first && used + *frame > data_limit) return 0;
  return n;
}

std::string Ms(absl::Duration d) {
  if (d == absl::InfiniteDuration()) return "-";
  return absl::StrFormat("%.1fms", absl::ToDoubleMilliseconds(d));
}

}  // namespace

absl::string_view CongestionControlName(CongestionControl cc) {
  switch (cc) {
    case CongestionControl::kNewReno:
      return "newreno";
    case CongestionControl::kBbr:
      return "bbr";
  }
  return "?";
}

absl::StatusOr<CongestionControl> ParseCongestionControl(absl::string_view name) {
  for (CongestionControl cc : {CongestionControl::kNewReno, CongestionControl::kBbr}) {
    if (absl::EqualsIgnoreCase(name, CongestionControlName(cc))) return cc;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown congestion controller \"", absl::CHexEscape(name), "\" (valid: newreno, bbr)"));
}

absl::string_view CloseReasonName(CloseReason reason) {
  switch (reason) {
    case CloseReason::kClosedByApplication:
      return "closed by application";
    case CloseReason::kClosedByPeer:
      return "closed by peer";
    case CloseReason::kIdleTimeout:
      return "idle timeout";
    case CloseReason::kHandshakeTimeout:
      return "handshake timeout";
    case CloseReason::kPeerTimeout:
      return "peer timeout";
    case CloseReason::kServerFull:
      return "server full";
    case CloseReason::kEncryptionMismatch:
      return "encryption mismatch";
    case CloseReason::kWrongRoomKey:
      return "wrong room key";
    case CloseReason::kPeerUnreachable:
      return "peer unreachable";
    case CloseReason::kProtocolError:
      return "protocol error";
    case CloseReason::kNumberSpaceExhausted:
      return "number space exhausted";
    case CloseReason::kInternalError:
      return "internal error";
    case CloseReason::kServerIdentityMismatch:
      return "server identity mismatch";
  }
  return "?";
}

CloseReason CloseReasonFromWire(uint32_t code) {
  switch (code) {
    case proto::kCloseNormal:
    case proto::kCloseApplication:
      return CloseReason::kClosedByPeer;
    case proto::kCloseIdleTimeout:
      return CloseReason::kIdleTimeout;
    case proto::kCloseProtocolError:
      return CloseReason::kProtocolError;
    case proto::kCloseTooManyRetransmissions:
      return CloseReason::kPeerTimeout;
    case proto::kCloseServerFull:
      return CloseReason::kServerFull;
    case proto::kCloseNumberSpaceExhausted:
      return CloseReason::kNumberSpaceExhausted;
    case proto::kCloseEncryptionMismatch:
      return CloseReason::kEncryptionMismatch;
    case proto::kClosePeerUnreachable:  // local only: a peer never sends it
    default:
      return CloseReason::kClosedByPeer;
  }
}

uint32_t WireCloseCode(CloseReason reason) {
  switch (reason) {
    case CloseReason::kClosedByApplication:
    case CloseReason::kClosedByPeer:
      return proto::kCloseApplication;
    case CloseReason::kIdleTimeout:
    case CloseReason::kHandshakeTimeout:
      return proto::kCloseIdleTimeout;
    case CloseReason::kPeerTimeout:
      return proto::kCloseTooManyRetransmissions;
    case CloseReason::kServerFull:
      return proto::kCloseServerFull;
    case CloseReason::kEncryptionMismatch:
      return proto::kCloseEncryptionMismatch;
    case CloseReason::kPeerUnreachable:
      return proto::kClosePeerUnreachable;
    case CloseReason::kNumberSpaceExhausted:
      return proto::kCloseNumberSpaceExhausted;
    case CloseReason::kWrongRoomKey:
    case CloseReason::kProtocolError:
    case CloseReason::kInternalError:
    case CloseReason::kServerIdentityMismatch:
      return proto::kCloseProtocolError;
  }
  return proto::kCloseProtocolError;
}

size_t AcceptedDatagramSize(const ConnectionOptions& options) {
  if (!options.pmtud) return options.max_datagram;
  return std::max(options.max_datagram, std::min(options.max_udp_payload, proto::kMaxDatagram));
}

uint64_t MaxPeerHeldBytes(const ConnectionOptions& options) {
  const proto::Codec::Limits codec;  // max_data_frames per packet
  // Path MTU discovery lets the peer's datagrams grow to max_udp_payload.
  const size_t datagram = AcceptedDatagramSize(options);
  const uint64_t one_packet = codec.max_data_frames * (datagram + kEventOverheadBytes);
  const uint64_t spaces = uint64_t{4} * options.max_channels * kChannelBytes;
  const uint64_t ack_ranges = uint64_t{kMaxAckRanges} * kAckRangeBytes;
  return options.max_reassembly_bytes + options.max_undelivered_bytes + one_packet + spaces +
         ack_ranges + kPartialTablesBytes;
}

absl::string_view EventTypeName(Event::Type type) {
  switch (type) {
    case Event::Type::kConnected:
      return "connected";
    case Event::Type::kMessage:
      return "message";
    case Event::Type::kAcked:
      return "acked";
    case Event::Type::kClosed:
      return "closed";
    case Event::Type::kPathChanged:
      return "path changed";
  }
  return "?";
}

std::string ConnectionStats::ToString() const {
  return absl::StrCat("rtt=", Ms(srtt), " rttvar=", Ms(rttvar), " min_rtt=", Ms(min_rtt),
                      " cwnd=", cwnd, " sent=", packets_sent, "pkts/", bytes_sent,
                      "B in_bursts=", burst_packets, "pkts recv=", packets_received, "pkts/",
                      bytes_received,
                      "B lost=", packets_lost, " spurious=", spurious_losses,
                      " retransmitted=", fragments_retransmitted,
                      " dup_pkts=", duplicate_packets, " dup_msgs=", duplicate_messages,
                      " msgs_sent=", messages_sent, " msgs_delivered=", messages_delivered,
                      " msgs_acked=", messages_acked, " probes=", probes,
                      " cwnd_cuts=", congestion_reductions, " datagram=", datagram_size,
                      " mtu_probes=", mtu_probes, "/", mtu_probes_lost, "lost",
                      " black_holes=", mtu_black_holes, " path_challenges=", path_challenges,
                      " migrations=", migrations, " path_failures=", path_validation_failures,
                      " wrong_address=", wrong_address,
                      " path_amplification_blocked=", path_amplification_blocked);
}

Connection::Connection(absl::Time now, bool client, ConnectionId local_id,
                       const udp::SocketAddress& peer, const ConnectionOptions& options,
                       const proto::Codec* codec, const TestHooks& hooks)
    : codec_(CodecFor(codec, options.max_datagram)),
      options_(options),
      client_(client),
      state_(client ? State::kConnecting : State::kAccepted),
      local_id_(local_id),
      peer_(peer),
      max_datagram_(codec_.limits().max_datagram),
      max_fragment_payload_(codec_.MaxFragmentPayload()),
      keepalive_after_(KeepaliveAfter(options, client)),
      started_(now),
      next_packet_number_(std::max<uint64_t>(hooks.initial_packet_number, 1)),
      queue_(SendQueue::Limits{max_fragment_payload_, options.max_queued_bytes,
                               options.max_message_bytes, options.window,
                               hooks.initial_message_sequence}),
      sent_(SentPacketsOptions(options)),
      rtt_(RttEstimator::Options{options.initial_rtt, options.max_ack_delay,
                                 absl::Milliseconds(1)}),
      cc_(MakeController(options, max_datagram_)),
      pacer_(max_datagram_),
      last_sent_(now),
      last_progress_(now),
      acks_(AckTracker::Options{2, options.max_ack_delay, kMaxAckRanges}),
      last_received_(now),
      next_expire_(now + options.reassembly_timeout),
      hooks_(hooks) {}

std::unique_ptr<Connection> Connection::Client(absl::Time now, ConnectionId local_id,
                                               const udp::SocketAddress& peer,
                                               const ConnectionOptions& options,
                                               const proto::Codec* codec, Security security,
                                               const TestHooks& hooks) {
  auto c = std::unique_ptr<Connection>(
      new Connection(now, true, local_id, peer, options, codec, hooks));
  if (security.psk || security.server_pin) security.encrypt = true;
  if (security.encrypt && !security.key) security.key = KeyPair::Generate();
  c->handshake_ = std::make_unique<ClientHandshake>();
  c->handshake_->security = std::move(security);
  return c;
}

std::unique_ptr<Connection> Connection::Server(absl::Time now, ConnectionId local_id,
                                               ConnectionId peer_id,
                                               const udp::SocketAddress& peer,
                                               const proto::Hello& hello,
                                               const ConnectionOptions& options,
                                               const proto::Codec* codec,
                                               std::unique_ptr<PacketProtector> protector,
                                               const std::string& public_key,
                                               const std::string& psk_confirmation,
                                               const TestHooks& hooks,
                                               const std::string& server_identity,
                                               const std::string& identity_confirmation) {
  ConnectionOptions o = options;
  o.max_datagram = std::min<size_t>(o.max_datagram, hello.max_datagram);
  auto c =
      std::unique_ptr<Connection>(new Connection(now, false, local_id, peer, o, codec, hooks));
  c->peer_id_ = peer_id;
  c->accept_ = std::make_unique<proto::Accept>();
  proto::Accept& accept = *c->accept_;
  accept.client_connection_id = peer_id;
  accept.server_connection_id = local_id;
  accept.max_datagram = static_cast<uint32_t>(c->max_datagram_);
  accept.max_message_bytes = o.max_message_bytes;
  accept.window = o.window;
  accept.public_key = public_key;
  accept.psk_confirmation = psk_confirmation;
  accept.server_identity = server_identity;
  accept.identity_confirmation = identity_confirmation;
  accept.max_udp_payload = c->AnnouncedUdpPayload();
  // (Bound into the transcript with the hello's: Endpoint::Accept.)
  accept.features = AnnouncedFeatures(o);
  c->send_runs_ = SendsRuns(o, hello.features);
  c->accept_due_ = true;
  c->client_seen_ = now;
  if (protector != nullptr) {
    // The AEAD the endpoint chose (hooks.aeads == 0: a server that predates
    // the negotiation names none).
    if (hooks.aeads.value_or(1) != 0) accept.aead = static_cast<uint32_t>(protector->aead());
    c->protector_ = std::move(protector);
    c->SetBudget(c->max_datagram_);
  }
  c->StartPmtud(now, hello.max_udp_payload);
  return c;
}

void Connection::Emit(Event event) {
  event.connection = local_id_;
  event.peer = peer_;
  if (event.type == Event::Type::kMessage) {
    undelivered_bytes_ += event.message.size() + kEventOverheadBytes;
  }
  if (!events_) events_ = std::make_unique<std::deque<Event>>();
  events_->push_back(std::move(event));
}

void Connection::TakeEvents(std::vector<Event>* out) {
  if (!events_) return;
  for (Event& e : *events_) out->push_back(std::move(e));
  events_.reset();
  undelivered_bytes_ = 0;
}

void Connection::Established(absl::Time now) {
  state_ = State::kEstablished;
  last_progress_ = now;
  Event e;
  e.type = Event::Type::kConnected;
  if (handshake_) e.server_identity = std::move(handshake_->server_identity);
  Emit(std::move(e));
  // The handshake's state is not needed any more.
  accept_.reset();
  handshake_.reset();
}

void Connection::CloseNow(absl::Time now, CloseReason why, std::string reason, bool by_peer,
                          bool send_close) {
  if (state_ == State::kClosed) return;
  // A client still connecting has no server id to address a Close to. A
  // timeout of ours sends nothing now (the path is silent), but answers
  // the peer's later packets while draining with its code, not an empty
  // Close: the peer learns that we gave up on the path, not that our
  // application closed.
  // (A Close(flush=true) under way keeps its own frame.)
  const bool timed_out =
      !by_peer && close_ == nullptr &&
      (why == CloseReason::kIdleTimeout || why == CloseReason::kHandshakeTimeout);
  if ((send_close || timed_out) && peer_id_ != 0) {
    close_due_ = send_close;
    close_ = std::make_unique<proto::Close>();
    close_->code = WireCloseCode(why);
    close_->reason = reason.substr(0, proto::kMaxReasonBytes);
  }
  state_ = State::kClosed;
  accept_.reset();
  handshake_.reset();
  path_.reset();
  path_response_due_.reset();
  // Linger to answer the peer's packets with our Close, in case it was lost:
  // 3 PTOs (RFC 9000 10.2), and at least until the peer's next keepalive
  // and its probes. The accepting side pings later than the client
  // (KeepaliveAfter), counting from its own last packet (an ack may trail
  // ours by a few hundred ms on a lossy path): a client that drained for
  // its own keepalive and two PTOs had stopped answering when the server's
  // ping came, and a lost Close ended the server with a peer timeout
  // instead of the reason (4 of 60 seeds of
  // EndpointSimTest.GracefulClose... under 10% loss). A probe period (the
  // probe timeout's cap, at most 2 s here) covers the trailing ack and the
  // first probes. The peer's keepalive is taken to be ours: a peer
  // configured to ping later than this side would find it gone.
  drain_until_ =
      now + std::max(3 * rtt_.Pto(true),
                     KeepaliveAfter(options_, /*client=*/false) +
                         std::min(options_.peer_timeout / kPeerTimeoutProbePeriods,
                                  absl::Seconds(2)) +
                         2 * rtt_.Pto(true));
  reassembler_.reset();
  unreliable_reassembler_.reset();
  channels_.clear();
  channel_held_bytes_ = 0;
  queue_.Clear();
  sent_.Clear();
  Event e;
  e.type = Event::Type::kClosed;
  e.close_reason = why;
  e.reason = std::move(reason);
  e.by_peer = by_peer;
  Emit(std::move(e));
}

void Connection::OnChallenge(absl::Time now, const proto::Challenge& challenge,
                             bool unambiguous, absl::Duration sample) {
  if (handshake_->security.psk && !challenge.key_proof.empty()) {
    if (!VerifyChallengeKeyProof(*handshake_->security.psk, challenge.cookie, local_id_,
                                 challenge.key_proof)) {
      // The server holds another key, or someone forged this challenge: a
      // right one within the grace wins (OnTimeout decides).
      ++stats_.unauthenticated_handshake;
      if (!handshake_->key_confirmed) {
        handshake_->wrong_key_since = std::min(handshake_->wrong_key_since, now);
      }
      return;
    }
    handshake_->key_confirmed = true;
    handshake_->wrong_key_since = absl::InfiniteFuture();
  } else if (!handshake_->security.psk && handshake_->security.encrypt &&
             !challenge.key_proof.empty()) {
    // Nothing authenticates a keyless client's handshake anyway.
    CloseNow(now, CloseReason::kWrongRoomKey,
             absl::StrCat("server ", peer_.ToString(), " requires a room key (--key-file)"),
             /*by_peer=*/false, /*send_close=*/false);
    return;
  }
  // Without a proof the server has no room key, or is an older version: the
  // Accept's PskConfirmation decides (StartProtection).
  if (unambiguous) rtt_.OnSample(sample, absl::ZeroDuration(), false);
  handshake_->cookie = challenge.cookie;
  handshake_->next_hello = now;  // answer at once
  handshake_->hello_count = 0;
}

void Connection::OnHandshakeClose(absl::Time now, const proto::Close& close) {
  const Security& security = handshake_->security;
  if (security.psk && !VerifyCloseAuth(*security.psk, local_id_, handshake_->cookie, close.code,
                                       close.reason, close.auth)) {
    // Anyone on the path can send a clear close: with a room key only an
    // authenticated one ends the attempt. Its text is kept for the timeout.
    ++stats_.unauthenticated_handshake;
    if (handshake_->unauthenticated_close.empty()) {
      handshake_->unauthenticated_close = close.reason.empty() ? "(no reason)" : close.reason;
    }
    return;
  }
  CloseNow(now, CloseReasonFromWire(close.code), close.reason, /*by_peer=*/true, false);
}

absl::Duration Connection::UnconfirmedTimeout() const {
  const absl::Duration wait = std::max(options_.unconfirmed_timeout, 3 * rtt_.Pto(false));
  return std::min(wait, std::max(options_.handshake_timeout, options_.idle_timeout));
}

absl::Time Connection::WrongKeyDeadline() const {
  if (handshake_->wrong_key_since == absl::InfiniteFuture()) return absl::InfiniteFuture();
  const absl::Duration grace =
      std::min(options_.handshake_timeout, std::max(absl::Seconds(1), 3 * options_.initial_rtt));
  return handshake_->wrong_key_since + grace;
}

void Connection::OnRepeatedHello(absl::Time now) {
  if (state_ == State::kAccepted) {
    accept_due_ = true;
    client_seen_ = now;  // alive, and our Accept was lost: wait again
  }
}

void Connection::OnPacket(absl::Time now, const proto::Packet& packet, size_t size) {
  Process(now, packet, size, peer_);
}

PathVerdict Connection::OnPacketFrom(absl::Time now, const proto::Packet& packet, size_t size,
                                     const udp::SocketAddress& from) {
  if (!(from == peer_)) {
    switch (AdmitFromOtherAddress(now, packet.packet_number, size, from,
                                  /*authenticated=*/false)) {
      case Admission::kRefuse:
        return PathVerdict::kRefusedAddress;
      case Admission::kPathOnly:
        // Unauthenticated: only the path validation reads it.
        if (packet.path_response) OnPathResponse(now, *packet.path_response, from);
        return PathVerdict::kAccepted;
      case Admission::kProcess:
        break;
    }
  } else {
    OnPacketFromPeer(packet.packet_number);
  }
  Process(now, packet, size, from);
  return PathVerdict::kAccepted;
}

absl::Duration Connection::PathValidationTimeout() const {
  // RFC 9000 8.2.4: three times the larger of the current PTO and that of a
  // new path (initial_rtt).
  RttEstimator fresh(RttEstimator::Options{options_.initial_rtt, options_.max_ack_delay,
                                           absl::Milliseconds(1)});
  return 3 * std::max(rtt_.Pto(true), fresh.Pto(true));
}

Connection::Admission Connection::AdmitFromOtherAddress(absl::Time now, uint64_t number,
                                                        size_t size,
                                                        const udp::SocketAddress& from,
                                                        bool authenticated) {
  // Clients never follow another address (a server does not move), nor
  // does anything not established (no number space proven yet). A
  // duplicate number is a replay: never processed, never answered.
  if (client_ || state_ != State::kEstablished || acks_.Contains(number)) {
    ++stats_.wrong_address;
    return Admission::kRefuse;
  }
  const bool validating_this = path_ != nullptr && path_->running && path_->address == from;
  if (number <= acks_.largest()) {
    // Older than the newest packet: reordered around a rebinding (or
    // replayed past our ack memory). Its frames count when it is
    // authenticated; it moves nothing.
    if (!authenticated) {
      ++stats_.wrong_address;
      return Admission::kRefuse;
    }
    if (validating_this) path_->bytes_received += size;
    return Admission::kProcess;
  }
  if (validating_this && path_->blocked) {  // more budget: try again now
    path_->blocked = false;
    path_->next_send = now;
  }
  if (!validating_this) {
    // A new validation, replacing any running one (one at a time).
    if (path_ == nullptr) path_ = std::make_unique<PathValidation>();
    *path_ = PathValidation();
    path_->address = from;
    if (test_challenge_data_ != 0) {
      path_->data = test_challenge_data_++;
    } else {
      randombytes_buf(&path_->data, sizeof(path_->data));
    }
    path_->deadline = now + PathValidationTimeout();
    path_->next_send = now;
  }
  path_->trigger = number;
  path_->bytes_received += size;
  return authenticated ? Admission::kProcess : Admission::kPathOnly;
}

void Connection::OnPacketFromPeer(uint64_t number) {
  // The peer is still at its address: whoever sent the trigger replayed or
  // forwarded its packet (RFC 9000 9.3.3). Duplicates prove nothing.
  if (path_ != nullptr && path_->running && number > path_->trigger &&
      !acks_.Contains(number)) {
    AbandonPath();
  }
}

void Connection::AbandonPath() {
  path_->running = false;
  path_->outcome = PathOutcome::kFailed;
  ++stats_.path_validation_failures;
}

void Connection::OnPathResponse(absl::Time now, const proto::PathResponse& response,
                                const udp::SocketAddress& from) {
  if (path_ == nullptr || !path_->running || response.data != path_->data ||
      !(from == path_->address)) {
    return;  // stale, or not for the path being validated
  }
  Migrate(now);
}

void Connection::Migrate(absl::Time now) {
  const udp::SocketAddress old = peer_;
  peer_ = path_->address;
  path_->running = false;
  path_->outcome = PathOutcome::kMoved;
  path_->moved_from = old;
  ++stats_.migrations;
  ResetPathState(now);
  Event e;
  e.type = Event::Type::kPathChanged;
  e.old_peer = old;
  Emit(std::move(e));
}

void Connection::OnLocalRebind(absl::Time now) {
  if (state_ != State::kEstablished) return;
  ResetPathState(now);
  ping_due_ = true;
}

void Connection::ResetPathState(absl::Time now) {
  // Packets in flight went to the old address: their fragments go out
  // again on the new path, and the new path's controller never hears of
  // them (RFC 9002 9.4 resets it; a late ack of one is ignored).
  for (const SentPacket& p : sent_.AbandonAll()) {
    for (const FragmentId& id : p.fragments) queue_.OnLost(id);
    if (p.ack_frequency_sequence != 0 && p.ack_frequency_sequence == ack_frequency_sequence_) {
      ack_frequency_lost_ = true;
    }
  }
  immediate_ack_requested_ = 0;
  path_first_number_ = next_packet_number_;
  probes_due_ = 0;
  last_progress_ = now;
  rtt_ = RttEstimator(RttEstimator::Options{options_.initial_rtt, options_.max_ack_delay,
                                            absl::Milliseconds(1)});
  if (pmtud_) {  // back to the base size, probing again
    const PathMtuProber::Options o = pmtud_->options();
    pmtud_.emplace(now, o);
    last_probe_ = 0;
    ApplyPathMtu();
  }
  stats_.congestion_reductions += cc_->reductions();
  cc_ = MakeController(options_, max_datagram_);
  pacer_ = Pacer(max_datagram_);
}

void Connection::PollPath(absl::Time now, std::vector<AddressedDatagram>* out) {
  if (path_ == nullptr || !path_->running || state_ != State::kEstablished) return;
  if (now < path_->next_send || path_->challenges_sent >= kMaxPathChallenges) return;
  if (next_packet_number_ >= proto::kMaxSequenceNumber) return;  // SendOne closes
  proto::Packet p;
  p.connection_id = peer_id_;
  p.packet_number = next_packet_number_;
  p.path_challenge = proto::PathChallenge{path_->data};
  // Saturating: an estimate off by a byte must never wrap into no limit.
  const uint64_t allowed = 3 * path_->bytes_received;
  const uint64_t budget = allowed > path_->bytes_sent ? allowed - path_->bytes_sent : 0;
  const size_t padded = std::min(kPathChallengeDatagram, BaseDatagramSize());
  const size_t unpadded = codec_.EncodedSize(p) + SealOverhead();
  if (padded <= budget && padded > unpadded) {
    p.pad_to = padded - SealOverhead();
  } else if (unpadded > budget) {
    // Held back until the address sends more (or the validation times out).
    ++stats_.path_amplification_blocked;
    path_->blocked = true;
    path_->next_send = path_->deadline;
    return;
  }
  absl::StatusOr<std::string> bytes = EncodeDatagram(p);
  if (!bytes.ok() && p.pad_to != 0) {  // a size padding cannot reach exactly
    p.pad_to = 0;
    if (unpadded <= budget) bytes = EncodeDatagram(p);
  }
  if (!bytes.ok()) {  // never expected (our own small packet); never a loop
    AbandonPath();
    return;
  }
  if (bytes->size() > budget) {  // the size estimate fell short: hold it back
    ++stats_.path_amplification_blocked;
    path_->blocked = true;
    path_->next_send = path_->deadline;
    return;
  }
  ++next_packet_number_;
  // Recorded (not ack-eliciting, never in flight) so that the peer's ack of
  // its number is an ack of a number we sent.
  SentPacket record;
  record.number = p.packet_number;
  record.sent_time = now;
  record.bytes = bytes->size();
  if (!sent_.OnSent(std::move(record))) {  // as for any packet (SendOne)
    CloseNow(now, CloseReason::kPeerTimeout,
             "too many unacknowledged packets: peer not acknowledging", false, true);
    return;
  }
  ++stats_.packets_sent;
  stats_.bytes_sent += bytes->size();
  ++stats_.path_challenges;
  path_->bytes_sent += bytes->size();
  ++path_->challenges_sent;
  path_->next_send = now + PathValidationTimeout() / kMaxPathChallenges;
  out->push_back(AddressedDatagram{path_->address, *std::move(bytes)});
}

Connection::PathOutcome Connection::TakePathOutcome(udp::SocketAddress* moved_from) {
  if (path_ == nullptr || path_->running) return PathOutcome::kNone;
  const PathOutcome outcome = path_->outcome;
  if (outcome == PathOutcome::kMoved) *moved_from = path_->moved_from;
  path_.reset();
  return outcome;
}

void Connection::Process(absl::Time now, const proto::Packet& packet, size_t size,
                         const udp::SocketAddress& from) {
  if (state_ == State::kClosed) {
    // Draining: answer a live peer's packets with our Close once more each.
    if (now < drain_until_ && peer_id_ != 0 && !packet.close) close_due_ = true;
    return;
  }
  ++stats_.packets_received;
  stats_.bytes_received += size;
  last_received_ = now;

  if (client_ && state_ == State::kConnecting) {
    // An answer to the only hello sent so far is an unambiguous RTT sample
    // (RFC 9002 takes samples from handshake packets too); it sizes the
    // probe timeout long before data flows.
    const bool unambiguous = handshake_->hello_count == 1;
    const absl::Duration sample = now - handshake_->last_hello_sent;
    if (packet.challenge && packet.challenge->client_connection_id == local_id_) {
      OnChallenge(now, *packet.challenge, unambiguous, sample);
      return;
    }
    if (packet.accept && packet.accept->client_connection_id == local_id_) {
      if (unambiguous) rtt_.OnSample(sample, absl::ZeroDuration(), false);
      peer_id_ = packet.accept->server_connection_id;
      CloseReason why = CloseReason::kProtocolError;
      if (absl::Status s = StartProtection(*packet.accept, &why); !s.ok()) {
        CloseNow(now, why, std::string(s.message()), /*by_peer=*/false, /*send_close=*/false);
        return;
      }
      // Nothing is queued yet (Send needs an established connection), so
      // the budget may still change: the server's may be smaller, and
      // sealing takes proto::kSealedOverhead of it.
      SetBudget(std::min<size_t>(max_datagram_, packet.accept->max_datagram));
      send_runs_ = SendsRuns(options_, packet.accept->features);
      StartPmtud(now, packet.accept->max_udp_payload);
      // The first packet (an ack-eliciting ping) confirms the handshake on
      // the server.
      probes_due_ = std::max(probes_due_, 1);
      Established(now);
      return;
    }
    if (packet.close) OnHandshakeClose(now, *packet.close);
    return;  // nothing else is meaningful before the handshake
  }
  if (packet.hello || packet.challenge || packet.accept) return;  // stray handshake

  if (packet.close) {
    CloseNow(now, CloseReasonFromWire(packet.close->code), packet.close->reason,
             /*by_peer=*/true, false);
    return;
  }
  if (state_ == State::kAccepted) {
    accept_due_ = false;
    if (accepts_sent_ == 1) rtt_.OnSample(now - accept_sent_at_, absl::ZeroDuration(), false);
    Established(now);
  }
  if (acks_.Contains(packet.packet_number)) {
    ++stats_.duplicate_packets;
    acks_.OnPacket(now, packet.packet_number, packet.AckEliciting());  // arranges a re-ack
    return;
  }
  if (packet.ack) OnAck(now, *packet.ack);
  if (state_ == State::kClosed) return;  // the ack was a protocol violation
  if (packet.path_challenge && state_ == State::kEstablished) {
    path_response_due_ = packet.path_challenge->data;  // the latest one wins
  }
  if (packet.path_response) OnPathResponse(now, *packet.path_response, from);

  bool accept = true;
  if (!packet.data.empty() && undelivered_bytes_ > options_.max_undelivered_bytes) {
    accept = false;  // the application is not keeping up: do not acknowledge
  } else {
    for (const proto::DataFragment& f : packet.data) {
      if (!OnData(now, f)) accept = false;
      if (state_ == State::kClosed) return;
    }
  }
  if (accept) {
    if (packet.ack_frequency) {
      acks_.OnAckFrequency(packet.ack_frequency->sequence, packet.ack_frequency->threshold);
    }
    acks_.OnPacket(now, packet.packet_number, packet.AckEliciting());
    if (packet.ping) acks_.RequestImmediateAck();
  } else {
    ++stats_.refused_packets;
  }
}

void Connection::OnAck(absl::Time now, const proto::Ack& ack) {
  if (ack.ranges.empty()) return;
  absl::StatusOr<SentPackets::AckResult> result =
      sent_.OnAck(now, ack, rtt_, state_ == State::kEstablished);
  if (!result.ok()) {
    CloseNow(now, CloseReason::kProtocolError, std::string(result.status().message()),
             /*by_peer=*/false, /*send_close=*/true);
    return;
  }
  stats_.spurious_losses += result->spurious.size();
  for (const SentPacket& p : result->spurious) {
    // Packets of a path left behind never reach its successor's controller.
    if (p.ack_eliciting && !p.mtu_probe && p.number >= path_first_number_) {
      cc_->OnSpuriousLoss(now, PacketInfo{p.number, p.sent_time, p.bytes});
    }
  }
  if (!result->acked.empty()) {
    last_progress_ = now;
    probes_due_ = 0;
  }
  std::vector<MessageReceipt> receipts;
  for (const SentPacket& p : result->acked) {
    for (const FragmentId& id : p.fragments) queue_.OnAcked(id, &receipts);
    if (p.largest_acked_in_ack) acks_.OnAckAcknowledged(*p.largest_acked_in_ack);
    if (p.number == immediate_ack_requested_) immediate_ack_requested_ = 0;
    if (p.ack_frequency_sequence != 0 && p.ack_frequency_sequence == ack_frequency_sequence_) {
      stats_.peer_ack_threshold = ack_threshold_requested_;
    }
    if (!p.ack_eliciting) continue;
    if (p.mtu_probe) {  // not congestion-controlled data
      if (pmtud_) pmtud_->OnProbeAcked(now, p.number);
      continue;
    }
    if (pmtud_) pmtud_->OnPacketAcked(p.sent_time, p.bytes);
    cc_->OnPacketAcked(now, PacketInfo{p.number, p.sent_time, p.bytes});
  }
  OnLost(now, result->lost, result->persistent_congestion);
  ApplyPathMtu();
  for (const MessageReceipt& r : receipts) {
    ++stats_.messages_acked;
    Event e;
    e.type = Event::Type::kAcked;
    e.channel = r.channel;
    e.mode = r.mode;
    e.sequence = r.sequence;
    e.bytes = r.bytes;
    Emit(std::move(e));
  }
  if (flush_then_close_ && queue_.empty() && sent_.bytes_in_flight() == 0) {
    CloseNow(now, close_reason_, close_->reason, false, true);
  }
}

void Connection::OnLost(absl::Time now, const std::vector<SentPacket>& lost,
                        bool persistent_congestion) {
  if (lost.empty()) return;
  uint64_t bytes = 0;
  const SentPacket* largest_counted = nullptr;
  for (const SentPacket& p : lost) {
    for (const FragmentId& id : p.fragments) queue_.OnLost(id);
    if (p.ack_frequency_sequence != 0 && p.ack_frequency_sequence == ack_frequency_sequence_) {
      ack_frequency_lost_ = true;
    }
    if (p.number == immediate_ack_requested_) immediate_ack_requested_ = 0;
    if (!p.ack_eliciting) continue;
    // A path MTU probe's loss says the size is too big, not that the path
    // is congested: the controller never hears of it (RFC 9000 14.4).
    if (p.mtu_probe) {
      ++stats_.mtu_probes_lost;
      if (pmtud_) pmtud_->OnProbeLost(now, p.number);
      continue;
    }
    if (pmtud_ && pmtud_->OnPacketLost(now, p.sent_time, p.bytes)) ++stats_.mtu_black_holes;
    bytes += p.bytes;
    largest_counted = &p;
  }
  stats_.packets_lost += lost.size();
  if (bytes > 0) {
    const SentPacket& largest = *largest_counted;
    cc_->OnPacketsLost(now, PacketInfo{largest.number, largest.sent_time, largest.bytes}, bytes,
                       persistent_congestion);
  }
  ApplyPathMtu();
}

bool Connection::OnData(absl::Time now, const proto::DataFragment& f) {
  if (f.channel >= options_.max_channels) {
    CloseNow(now, CloseReason::kProtocolError, absl::StrCat("channel ", f.channel, " out of range"),
             false, true);
    return false;
  }
  const DeliveryMode mode = static_cast<DeliveryMode>(f.mode);
  const bool reliable = IsReliable(mode);
  // A run of fragments without having announced them: dropped as a
  // receiver that predates runs drops it (the payload is the wrong length
  // for fragment `index`).
  if (f.run != 1 && !options_.fragment_runs) return !reliable;
  // A new space costs kChannelBytes for the connection's lifetime: bounded
  // by max_channels (4 spaces per channel), not by the byte budget, so that
  // a full budget never keeps a channel's first message out.
  std::unique_ptr<ReceiveChannel>& channel = channels_[SpaceKey{f.channel, f.mode}];
  if (channel == nullptr) {
    channel = std::make_unique<ReceiveChannel>(mode, options_.window,
                                               hooks_.initial_message_sequence);
  }
  if (!channel->Wanted(f.sequence)) {
    if (reliable) ++stats_.duplicate_messages;
    return true;  // already delivered (or stale): acknowledge and drop
  }
  // Admission. Everything the peer makes us hold until delivery is charged
  // to max_reassembly_bytes (ReassemblyHeldBytes()) with its overheads:
  // partial messages in both reassemblers, reliable-ordered messages parked
  // behind a missing one, sequence numbers a reliable-unordered space
  // delivered ahead. Reliable data may never be dropped once acknowledged
  // (the sender does not send it again), so a fragment that does not fit is
  // refused (not acknowledged; the sender retries), and unreliable fragments
  // are dropped. A fragment of a space's next undelivered message (its head)
  // only has to fit in the budget; any other fragment must also leave
  // headroom for a head message of up to min(max_message_bytes,
  // max_reassembly_bytes / 2) in fragments of at least half our payload size,
  // and for reliable data a partial-message slot, so later messages can
  // never fill the budget and keep the head from completing (a deadlock). A
  // single-fragment head (and any single-fragment unreliable message) is
  // delivered at once and costs only its event (max_undelivered_bytes).
  // Before this accounting, parked zero-byte messages cost nothing (255
  // channels x 4095 of them grew a server by 45 MB), nor did fragment
  // bookkeeping or numbers delivered ahead.
  const bool head = reliable && f.sequence == channel->next();
  // What the reassembler may reserve ahead for the message's in-order
  // buffer (Reassembler::Add): the budget left after this fragment's cost
  // and the head's headroom, so the buffer never takes what the rules above
  // keep for the head.
  uint64_t growth_allowance = 0;
  // The head's next fragment in order, landing in what its buffer already
  // reserved, adds nothing to hold (Reassembler::FitsReserved): admitted
  // whatever the budget, or a buffer that reserved the room the head needs
  // would keep its own missing fragment out (a deadlock).
  const MessageKey key{f.channel, f.mode, f.sequence};
  const FragmentHeader header{f.index, f.count, f.total_size, f.run};
  const bool head_fits_reserved = head && reassembler_ != nullptr &&
                                  reassembler_->FitsReserved(key, header, f.bytes().size());
  if (!head_fits_reserved && (f.count != 1 || (reliable && !head))) {
    const uint64_t budget = options_.max_reassembly_bytes;
    // An upper bound of what admitting `f` adds: as a fragment (or a run of
    // them, each kept apart) of a new partial message, which, complete, is
    // parked (kParkedMessageBytes >=
    // kDeliveredAheadBytes).
    uint64_t cost = f.bytes().size() + kParkedMessageBytes;
    if (f.count != 1) cost += f.run * kFragmentOverheadBytes + kPartialMessageBytes;
    uint64_t reserve = 0;
    if (!head) {
      reserve = Reassembler::PartialCost(std::min<uint64_t>(options_.max_message_bytes, budget / 2),
                                         std::max<size_t>(max_fragment_payload_ / 2, 1));
    }
    const uint64_t held = ReassemblyHeldBytes();
    if (held + cost + reserve > budget ||
        (reliable && !head &&
         (reassembler_ ? reassembler_->partial_messages() : 0) + 1 >= kMaxPartialMessages)) {
      return !reliable;
    }
    growth_allowance = budget - (held + cost + reserve);
  }
  // Reliable messages are never expired: their fragments were acknowledged,
  // so the sender will not send them again (see reassembler_).
  std::unique_ptr<Reassembler>& reassembler = reliable ? reassembler_ : unreliable_reassembler_;
  const absl::string_view payload(f.bytes().data(), f.bytes().size());
  std::optional<std::string> whole;  // a single-fragment message, nothing partial
  if (reassembler == nullptr) {
    whole = Reassembler::Whole(options_.max_message_bytes, header, payload);
  }
  absl::StatusOr<std::optional<std::string>> done = std::optional<std::string>();
  if (whole) {
    done = std::move(whole);
  } else {
    if (reassembler == nullptr) {
      reassembler = std::make_unique<Reassembler>(Reassembler::Limits{
          options_.max_message_bytes, options_.max_reassembly_bytes, kMaxPartialMessages,
          reliable ? absl::InfiniteDuration() : options_.reassembly_timeout});
    }
    done = reassembler->Add(now, key, header, payload, growth_allowance);
    if (reassembler->partial_messages() == 0) reassembler.reset();
  }
  if (!done.ok()) {
    // RESOURCE_EXHAUSTED: out of reassembly space; the sender will retry.
    // INVALID_ARGUMENT: inconsistent with earlier fragments; dropped, and
    // for reliable data not acknowledged so a correct copy can come.
    return !reliable;
  }
  if (!done->has_value()) return true;
  std::vector<std::string> ready;
  const ReceiveChannel::Stats prev = channel->stats();
  const uint64_t channel_held_before = channel->held_bytes();
  channel->OnComplete(f.sequence, std::move(**done), &ready);
  channel_held_bytes_ = channel_held_bytes_ - channel_held_before + channel->held_bytes();
  if (channel->stats().duplicates > prev.duplicates) ++stats_.duplicate_messages;
  // Sequence numbers of what was delivered: unordered/unreliable modes
  // deliver just this one; ordered mode delivers a contiguous run ending
  // below next().
  uint64_t first = f.sequence;
  if (mode == DeliveryMode::kReliableOrdered && !ready.empty()) first = channel->next() - ready.size();
  for (size_t i = 0; i < ready.size(); ++i) {
    ++stats_.messages_delivered;
    Event e;
    e.type = Event::Type::kMessage;
    e.channel = f.channel;
    e.mode = mode;
    e.sequence = first + i;
    e.message = std::move(ready[i]);
    Emit(std::move(e));
  }
  return true;
}

absl::StatusOr<uint64_t> Connection::Send(absl::Time now, uint32_t channel, DeliveryMode mode,
                                          MessageBytes message) {
  (void)now;
  if (state_ != State::kEstablished || flush_then_close_) {
    return absl::FailedPreconditionError(
        absl::StrCat("connection to ", peer_.ToString(), " is not established"));
  }
  if (channel >= options_.max_channels) {
    return absl::InvalidArgumentError(
        absl::StrCat("channel ", channel, " out of range [0, ", options_.max_channels, ")"));
  }
  absl::StatusOr<uint64_t> seq = queue_.Enqueue(channel, mode, std::move(message));
  if (seq.ok()) ++stats_.messages_sent;
  return seq;
}

absl::Status Connection::SetChannelPriority(uint32_t channel, uint32_t priority, uint32_t weight) {
  // Not before: SetBudget replaces the queue until the handshake is done.
  if (state_ != State::kEstablished && state_ != State::kClosing) {
    return absl::FailedPreconditionError(
        absl::StrCat("connection to ", peer_.ToString(), " is not established"));
  }
  if (channel >= options_.max_channels) {
    return absl::InvalidArgumentError(
        absl::StrCat("channel ", channel, " out of range [0, ", options_.max_channels, ")"));
  }
  return queue_.SetChannelLane(channel, priority, weight);
}

void Connection::Close(absl::Time now, CloseReason why, std::string reason, bool flush) {
  if (state_ == State::kClosed || flush_then_close_) return;
  if (state_ != State::kEstablished || !flush ||
      (queue_.empty() && sent_.bytes_in_flight() == 0)) {
    CloseNow(now, why, std::move(reason), false, true);
    return;
  }
  flush_then_close_ = true;
  close_reason_ = why;
  close_ = std::make_unique<proto::Close>();
  close_->code = WireCloseCode(why);
  close_->reason = reason.substr(0, proto::kMaxReasonBytes);
  state_ = State::kClosing;
}

void Connection::SetBudget(size_t max_datagram) {
  const size_t inner = protector_ != nullptr ? max_datagram - proto::kSealedOverhead : max_datagram;
  codec_ = CodecFor(&codec_, inner);
  max_datagram_ = codec_.limits().max_datagram;
  max_fragment_payload_ = codec_.MaxFragmentPayload();
  queue_ = SendQueue(SendQueue::Limits{max_fragment_payload_, options_.max_queued_bytes,
                                       options_.max_message_bytes, options_.window,
                                       hooks_.initial_message_sequence});
  cc_ = MakeController(options_, max_datagram_);
  pacer_ = Pacer(max_datagram_);
}

uint32_t Connection::AnnouncedUdpPayload() const {
  const size_t size = AcceptedDatagramSize(options_);
  // Off, or nothing above the base: announce nothing (the peer stays at the
  // base).
  return size > options_.max_datagram ? static_cast<uint32_t>(size) : 0;
}

void Connection::StartPmtud(absl::Time now, uint32_t peer_max_udp_payload) {
  const size_t ours = AnnouncedUdpPayload();
  if (ours == 0 || peer_max_udp_payload == 0) return;  // off, or an older peer
  // The peer's figure only ever lowers ours: announcing a huge size makes us
  // hold nothing more.
  const size_t ceiling = std::min<size_t>(ours, peer_max_udp_payload);
  const size_t base = max_datagram_ + SealOverhead();
  if (ceiling <= base) return;
  PathMtuProber::Options o;
  o.base = base;
  o.ceiling = ceiling;
  o.raise_interval = options_.pmtu_raise_interval;
  pmtud_.emplace(now, o);
  // Probes and packets up to the ceiling encode; the sender fills them only
  // up to max_datagram_ (the prober's size).
  codec_ = CodecWithBudget(codec_, ceiling - SealOverhead());
}

void Connection::SendMtuProbe(absl::Time now, size_t size, DatagramBatch* out) {
  if (next_packet_number_ >= proto::kMaxSequenceNumber) return;  // SendOne closes
  proto::Packet p;
  p.connection_id = peer_id_;
  p.packet_number = next_packet_number_;
  p.ping = proto::Ping{};  // ack-eliciting, no data: its loss loses nothing
  p.pad_to = size - SealOverhead();
  const size_t before = out->size();
  Encode(now, p, out);
  if (out->size() == before) return;
  ++next_packet_number_;
  SentPacket record;
  record.number = p.packet_number;
  record.sent_time = now;
  record.bytes = out->back().size();
  record.ack_eliciting = true;
  record.mtu_probe = true;
  // Counted in flight (it is in the network) but never shown to the
  // congestion controller or the pacer.
  if (sent_.bytes_in_flight() == 0) last_progress_ = now;
  last_eliciting_sent_ = now;
  last_probe_ = record.number;
  pmtud_->OnProbeSent(now, record.number, size);
  if (!sent_.OnSent(std::move(record))) {
    CloseNow(now, CloseReason::kPeerTimeout,
             "too many unacknowledged packets: peer not acknowledging", false, true);
  }
}

void Connection::OnDatagramTooBig(absl::Time now, size_t size) {
  if (!pmtud_ || last_probe_ == 0) return;
  // Only the outstanding probe is larger than the datagram size, and it is
  // the latest probe sent.
  if (!pmtud_->IsProbe(last_probe_) || size <= datagram_size()) return;
  pmtud_->OnProbeTooBig(now, last_probe_);
  ApplyPathMtu();
}

void Connection::ApplyPathMtu() {
  if (!pmtud_) return;
  const size_t inner = pmtud_->plpmtu() - SealOverhead();
  if (inner == max_datagram_) return;
  max_datagram_ = inner;
  // New messages are cut for the new size; started ones keep their
  // fragments, each small enough for a base-size datagram.
  queue_.SetMaxFragmentPayload(FragmentPayloadFor(inner, max_fragment_payload_,
                                                 codec_.limits().max_data_frames, send_runs_));
  cc_->OnDatagramSizeChanged(inner);
  pacer_.SetMaxDatagram(inner);
}

absl::Status Connection::StartProtection(const proto::Accept& accept, CloseReason* why) {
  const bool server_encrypts = !accept.public_key.empty();
  const bool has_identity = !accept.server_identity.empty();
  // The fingerprint of the identity the server shows (computed once: the pin
  // check, the proof's error and the kConnected event all name it).
  const std::string presented = handshake_->security.server_pin || has_identity
                                    ? IdentityFingerprint(accept.server_identity)
                                    : std::string();
  if (handshake_->security.server_pin) {
    if (presented != *handshake_->security.server_pin || !server_encrypts) {
      *why = CloseReason::kServerIdentityMismatch;
      return absl::PermissionDeniedError(absl::StrCat(
          "server ", peer_.ToString(), " presented ", presented, ", expected ",
          *handshake_->security.server_pin));
    }
  }
  *why = CloseReason::kEncryptionMismatch;
  if (!handshake_->security.encrypt) {
    if (server_encrypts) {
      return absl::FailedPreconditionError(
          absl::StrCat("server ", peer_.ToString(), " requires encryption"));
    }
    return absl::OkStatus();
  }
  if (!server_encrypts) {
    return absl::FailedPreconditionError(absl::StrCat(
        "server ", peer_.ToString(), " does not encrypt and this client requires it"));
  }
  // The AEAD the server chose from our offer (packet_protection.h, "AEAD
  // negotiation"): none from a server that predates the negotiation.
  // Without an offer of ours (a client acting as an older one, in tests)
  // the choice is ignored, as older clients do.
  const uint32_t offer = AeadOffer();
  const uint32_t choice = offer == 0 ? 0 : accept.aead;
  if (choice != 0 && ((choice != static_cast<uint32_t>(Aead::kAes256Gcm) &&
                       choice != static_cast<uint32_t>(Aead::kChaCha20Poly1305)) ||
                      (choice & offer) == 0)) {
    *why = CloseReason::kProtocolError;
    return absl::PermissionDeniedError(absl::StrCat("server ", peer_.ToString(), " chose AEAD ",
                                                    choice, ", not one offered (", offer, ")"));
  }
  const Aead aead = choice == 0 ? Aead::kChaCha20Poly1305 : static_cast<Aead>(choice);
  // The server's static key, when it has one, is part of the transcript, and
  // so are our offer and its choice, and the features we announced and it
  // did: tampering with any changes the keys.
  const std::string transcript = HandshakeTranscript(
      handshake_->security.key->public_key(), accept.public_key, local_id_,
      accept.server_connection_id,
      absl::StrCat(accept.server_identity,
                   choice == 0 ? std::string() : AeadTranscript(offer, choice),
                   FeaturesTranscript(AnnouncedFeatures(options_), accept.features)));
  *why = CloseReason::kWrongRoomKey;
  if (handshake_->security.psk) {
    if (accept.psk_confirmation.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("server ", peer_.ToString(), " does not use a room key"));
    }
    if (!VerifyPskConfirmation(*handshake_->security.psk, transcript, Role::kServer,
                               accept.psk_confirmation)) {
      return absl::PermissionDeniedError(absl::StrCat(
          "wrong room key: server ", peer_.ToString(), " holds a different key"));
    }
  } else if (!accept.psk_confirmation.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "server ", peer_.ToString(), " requires a room key (--key-file)"));
  }
  *why = CloseReason::kProtocolError;  // e.g. a malformed server key
  std::optional<IdentitySecret> es;
  if (has_identity) {  // Noise NK's es: our ephemeral key with its static key
    absl::StatusOr<IdentitySecret> shared =
        IdentityExchange(Role::kClient, *handshake_->security.key, accept.server_identity);
    if (!shared.ok()) return shared.status();
    es = *std::move(shared);
  }
  absl::StatusOr<SessionKeys> keys =
      DeriveSessionKeys(Role::kClient, *handshake_->security.key, accept.public_key, transcript,
                        handshake_->security.psk, es ? &*es : nullptr);
  if (!keys.ok()) return keys.status();
  if (has_identity) {
    // Only the holder of the static secret could derive these keys.
    if (!VerifyServerKeyConfirmation(*keys, Role::kClient, transcript,
                                     accept.identity_confirmation)) {
      *why = CloseReason::kServerIdentityMismatch;
      return absl::PermissionDeniedError(absl::StrCat(
          "server ", peer_.ToString(), " presented ", presented,
          " but could not prove it holds that identity's secret key"));
    }
    handshake_->server_identity = presented;
  }
  protector_ = std::make_unique<PacketProtector>(*keys, aead);
  return absl::OkStatus();
}

absl::StatusOr<std::string> Connection::EncodeDatagram(const proto::Packet& packet) {
  std::string datagram;
  if (absl::Status s = AppendDatagram(packet, &datagram); !s.ok()) return s;
  return datagram;
}

absl::Status Connection::AppendDatagram(const proto::Packet& packet, std::string* buffer,
                                        size_t size) {
  // The codec writes after room for the sealed header and leaves capacity
  // for the tag, and sealing works in place: no buffer of its own.
  const bool seal = protector_ != nullptr && packet.packet_number != 0;
  const size_t header = seal ? proto::kSealedHeaderBytes : 0;
  const size_t start = buffer->size();
  const size_t tail = seal ? kAeadTagBytes : 0;
  absl::Status s = size != 0 ? codec_.EncodeAppendSized(packet, size, header, tail, buffer)
                             : codec_.EncodeAppend(packet, header, tail, buffer);
  if (s.ok() && seal) {
    proto::PutSealedHeader({packet.connection_id, packet.packet_number}, buffer->data() + start);
    s = protector_->SealInPlace(packet.packet_number, header, buffer, start);
  }
  return s;
}

bool Connection::OnSealed(absl::Time now, absl::string_view datagram) {
  return OnSealedFrom(now, datagram, peer_) == PathVerdict::kAccepted;
}

PathVerdict Connection::OnSealedFrom(absl::Time now, absl::string_view datagram,
                                     const udp::SocketAddress& from) {
  const std::optional<proto::SealedHeader> header =
      proto::ParseSealedHeader(std::string_view(datagram.data(), datagram.size()));
  if (protector_ == nullptr || !header) return PathVerdict::kUnauthenticated;
  const uint64_t number = header->packet_number;
  // A connection that never follows another address refuses a packet from
  // one before opening it: opening advances the replay window, so a copy
  // of the peer's packet injected from elsewhere and arriving first would
  // otherwise make the genuine one a "replay" (and cost an AEAD open).
  if (!(from == peer_) && (client_ || state_ != State::kEstablished)) {
    ++stats_.wrong_address;
    return PathVerdict::kRefusedAddress;
  }
  // Opened into the thread's scratch buffer; the decoded fragments borrow
  // from it, so each payload is copied once more, into the reassembler.
  std::string opened;
  Borrowed<std::string> borrow(OpenedScratch(), opened);
  if (!protector_
           ->OpenInto(number, datagram.substr(0, proto::kSealedHeaderBytes),
                      datagram.substr(proto::kSealedHeaderBytes), &opened)
           .ok()) {
    ++unauthenticated_;
    return PathVerdict::kUnauthenticated;
  }
  // The inner packet must repeat the authenticated header. Its fragments
  // go in the thread's vector, which keeps its capacity: no allocation per
  // datagram (a new Packet's was one).
  proto::Packet packet;
  Borrowed<std::vector<proto::DataFragment>> frames(DecodedScratch(), packet.data);
  if (!codec_.DecodeViewInto(opened, &packet).ok() || packet.packet_number != number ||
      packet.connection_id != local_id_) {
    ++unauthenticated_;
    return PathVerdict::kUnauthenticated;
  }
  if (!(from == peer_)) {
    if (AdmitFromOtherAddress(now, number, datagram.size(), from, /*authenticated=*/true) ==
        Admission::kRefuse) {
      return PathVerdict::kRefusedAddress;
    }
  } else {
    OnPacketFromPeer(number);
  }
  Process(now, packet, datagram.size(), from);
  return PathVerdict::kAccepted;
}

void Connection::Encode(absl::Time now, const proto::Packet& packet, DatagramBatch* out,
                        size_t size) {
  if (absl::Status s = AppendDatagram(packet, out->buffer(), size); !s.ok()) {
    out->Abandon();
    // Our own packet breaks a codec rule: a bug, but never a crash.
    CloseNow(now, CloseReason::kInternalError,
             absl::StrCat("internal: cannot encode packet: ", s.message()), false, false);
    return;
  }
  out->Commit();
  ++stats_.packets_sent;
  stats_.bytes_sent += out->back().size();
  last_sent_ = now;
}

uint32_t Connection::AeadOffer() const {
  return handshake_ != nullptr && handshake_->security.encrypt
             ? hooks_.aeads.value_or(LocalAeads())
             : 0;
}

void Connection::SendHandshake(absl::Time now, DatagramBatch* out) {
  if (now < handshake_->next_hello) return;
  proto::Packet p;
  proto::Hello hello;
  hello.client_connection_id = local_id_;
  hello.cookie = handshake_->cookie;
  hello.max_datagram = static_cast<uint32_t>(max_datagram_);
  hello.max_udp_payload = AnnouncedUdpPayload();
  hello.features = AnnouncedFeatures(options_);
  if (handshake_->security.encrypt) {
    hello.public_key = std::string(handshake_->security.key->public_key());
    hello.aead_offer = AeadOffer();
  }
  if (handshake_->security.psk && !handshake_->cookie.empty()) {
    hello.key_proof =
        HelloKeyProof(*handshake_->security.psk, handshake_->cookie, local_id_,
                      handshake_->security.key->public_key());
  }
  p.hello = std::move(hello);
  Encode(now, p, out);
  handshake_->last_hello_sent = now;
  // Retry with exponential backoff from the initial RTT, capped at 1 s so a
  // lossy path gets many tries within the handshake timeout.
  const int shift = std::min(handshake_->hello_count, 6);
  handshake_->next_hello = now + std::min(options_.initial_rtt * (1 << shift), absl::Seconds(1));
  ++handshake_->hello_count;
}

Pacer::Rate Connection::PacerRate() const {
  // A controller with its own pacing rate (BBR) sets it; otherwise (NewReno)
  // the pacer derives 1.25 * cwnd / srtt.
  if (const std::optional<double> rate = cc_->PacingRate()) {
    return Pacer::Rate::Fixed(*rate, rtt_.smoothed());
  }
  return Pacer::Rate::OfWindow(cc_->window(), rtt_.smoothed());
}

uint32_t Connection::AnnouncedFeatures(const ConnectionOptions& options) {
  return options.fragment_runs ? proto::kFeatureFragmentRuns : 0;
}

bool Connection::SendsRuns(const ConnectionOptions& options, uint32_t peer_features) {
  return (AnnouncedFeatures(options) & peer_features & proto::kFeatureFragmentRuns) != 0;
}

absl::Duration Connection::KeepaliveAfter(const ConnectionOptions& options, bool client) {
  const absl::Duration k = options.keepalive;
  absl::Duration grace = absl::ZeroDuration();
  if (!client && options.idle_timeout > k) grace = std::min(k / 2, (options.idle_timeout - k) / 2);
  return k + grace;
}

absl::Time Connection::KeepaliveDeadline() const {
  return std::max(last_sent_, last_eliciting_sent_) + keepalive_after_;
}

bool Connection::SendOne(absl::Time now, bool probe, bool keepalive, bool sendable,
                         Pacer::Rate* pacing, DatagramBatch* out) {
  if (next_packet_number_ >= proto::kMaxSequenceNumber) {
    CloseNow(now, CloseReason::kNumberSpaceExhausted, "packet number space exhausted", false,
             false);
    return false;
  }
  proto::Packet p;
  // The fragment vector is the thread's, reused from packet to packet: no
  // allocation per packet for it (the fragments themselves borrow their
  // payloads), and none held by each connection.
  Borrowed<std::vector<proto::DataFragment>> borrow(FragmentScratch(), p.data);
  p.connection_id = peer_id_;
  p.packet_number = next_packet_number_;
  SentPacket record;
  const bool window_open = probe || cc_->CanSend(sent_.bytes_in_flight());
  // The second probe of a PTO carries a ping and no data (RFC 9002 allows
  // any ack-eliciting probe). A receiver whose application is not reading
  // refuses (does not acknowledge) packets with data, but acknowledges a
  // ping: without a data-free probe a flow-controlled sender saw nothing
  // acknowledged and closed a live connection with "acknowledged nothing"
  // after peer_timeout (or max_probes). A dead peer acknowledges nothing
  // either way.
  const bool ping_probe = probe && probes_due_ == 1 && sent_.pto_count() > 0;
  // A packet with an AckFrequency frame carries no data (the fragment
  // budget has no room reserved for it).
  // Nor does one with a PATH_RESPONSE (rare).
  const bool with_data = window_open && !ping_probe && !ack_frequency_due_ &&
                         !path_response_due_ && sendable;
  // Packets that only carried ACKs are acknowledged at most once per
  // max(srtt, max_ack_delay). Piggybacked on every burst, an ACK of them made
  // each burst's first datagram 7-10 bytes longer than the rest, a GSO train
  // of its own: 11,300 of 28,700 trains per GiB on the clean veth (17,300
  // since, nearly all of the 47 datagrams that fit).
  if (PiggybackWanted(now) || AckDue(now)) {
    // With data, the ack is held to the size the fragment budget reserves.
    proto::Ack ack = acks_.BuildAck(
        now, with_data ? proto::kMaxAckRangesWithData : proto::kMaxAckRanges);
    if (!ack.ranges.empty()) {
      record.largest_acked_in_ack = ack.ranges.front().largest;
      p.ack = std::move(ack);
    }
  }
  size_t fill_limit = max_datagram_;
  size_t used = 0;  // the packet's size so far, once data is added
  if (with_data) {
    // A probe timeout's probe is base-sized (RFC 9002 allows any size): it
    // gets through a black hole, and a sender whose peer stopped reading
    // probes with a trickle however large its datagrams have grown.
    if (probe && pmtud_) fill_limit = pmtud_->options().base - SealOverhead();
    used = codec_.EncodedSize(p);
    // What data may fill: the ping below may still be added.
    const size_t data_limit = fill_limit - PingFrameBytes();
    // With less room left than a data frame's longest header, no fragment
    // is asked for: a full packet's last question to the queue (a whole
    // NextIf, refused) was 4% of a clean-veth sender's samples.
    while (p.data.size() < codec_.limits().max_data_frames &&
           (p.data.empty() || used + kMaxDataFrameHeaderBytes <= data_limit)) {
      proto::DataFragment d;
      size_t frame = 0;
      // Each fragment after the first goes only if its frame, at its exact
      // size, fits; the first always fits (MaxFragmentPayload's guarantee).
      std::optional<OutgoingFragment> f;
      if (send_runs_) {
        // As many of the offered run's fragments as fit, at the frame's
        // exact size; the first frame takes at least one.
        f = queue_.NextRun(UINT32_MAX, [&](const OutgoingFragment& c) -> uint32_t {
          Describe(c, &d);
          return FitRun(d, *d.payload_ref, FragmentChunk(d.count, d.total_size), c.id.run, used,
                        data_limit, p.data.empty(), &frame);
        });
      } else {
        f = queue_.NextIf([&](const OutgoingFragment& c) {
          Describe(c, &d);
          frame = proto::Codec::DataFrameSize(d);
          return p.data.empty() || used + frame <= data_limit;
        });
      }
      if (!f) break;
      used += frame;
      record.fragments.push_back(f->id);
      p.data.push_back(std::move(d));
    }
  }
  if (p.data.empty() && (probe || keepalive)) p.ping = proto::Ping{};
  if (ack_frequency_due_) {
    p.ack_frequency = ack_frequency_due_;
    p.ping = proto::Ping{};
    record.ack_frequency_sequence = ack_frequency_due_->sequence;
  }
  // The packet that fills the window asks for an immediate ACK, so a small
  // window never waits out the peer's max_ack_delay (the idea of QUIC's
  // IMMEDIATE_ACK frame). Not when the queue merely ran dry: a stream of
  // small messages would then draw one ACK per packet. One request at a
  // time: a sender held at the window edge would otherwise ask on every
  // packet and draw an ACK per packet whatever the ack frequency. Every
  // probe asks too, so each probe of a PTO draws its own ACK: on a lossy
  // path one lost ACK then does not cost a whole (backed-off) probe round.
  if (!p.data.empty() && (probe || AsksImmediateAck(sent_.bytes_in_flight()))) {
    p.ping = proto::Ping{};
    if (!probe) immediate_ack_requested_ = p.packet_number;
  }
  if (path_response_due_) p.path_response = proto::PathResponse{*path_response_due_};
  if (!p.ack && p.data.empty() && !p.ping && !p.path_response) return false;  // nothing to say
  // Data packets carry nothing after the data but a ping.
  if (!probe && !p.data.empty()) PadToTrain(p, fill_limit, used + (p.ping ? PingFrameBytes() : 0));
  // A data packet's size was kept while filling it: not measured again (an
  // ack, an AckFrequency or a PATH_RESPONSE frame is added after `used`).
  size_t size = 0;
  if (!p.data.empty() && !p.ack && !p.ack_frequency && !p.path_response) {
    size = p.pad_to != 0 ? p.pad_to : used + (p.ping ? PingFrameBytes() : 0);
  }
  const bool eliciting = p.AckEliciting();
  const size_t before = out->size();
  Encode(now, p, out, size);
  if (out->size() == before) return false;
  ++next_packet_number_;
  if (p.ack) ++stats_.acks_sent;
  if (p.path_response) path_response_due_.reset();
  if (p.ack_frequency) {
    ack_frequency_due_.reset();
    ack_frequency_lost_ = false;
    ack_frequency_sent_ = now;
  }
  return RecordSent(now, p.packet_number, out->back().size(), eliciting, std::move(record),
                    pacing);
}

// What SendBurst decided: each packet as SendOne fills it, its header then
// one frame.
struct Connection::BurstPlan {
  struct Packet {
    uint32_t start;  // the first fragment, counted from the run's
    uint32_t run;
    size_t size;    // encoded (before sealing), padding included
    size_t pad_to;  // size when padded (TrainPadding), else 0
  };
  std::array<Packet, kMaxPacketsPerPoll> packets;
  int count = 0;
  proto::DataFragment frame;  // the run's message (Describe)
  uint64_t chunk = 0;         // its fragments' size (FragmentChunk)
  size_t train = 0;           // train_datagram_ after the packets
};

int Connection::SendBurst(absl::Time now, const Pacer::Rate& pacing, int most,
                          DatagramBatch* out) {
  most = std::min(most, kMaxPacketsPerPoll);
  if (hooks_.no_bursts || !send_runs_ || state_ != State::kEstablished || queue_.HasLanes() ||
      cc_->SendingMayChangePacing() || most <= 0 ||
      next_packet_number_ + static_cast<uint64_t>(most) >= proto::kMaxSequenceNumber ||
      PiggybackWanted(now)) {
    return 0;
  }
  BurstPlan plan;
  std::optional<OutgoingFragment> f = queue_.NextRun(
      UINT32_MAX,
      [&](const OutgoingFragment& c) { return PlanBurst(now, pacing, most, c, &plan); },
      /*fetch_ahead=*/false);
  if (!f) return 0;
  train_datagram_ = plan.train;
  const int planned = plan.count;
  const uint64_t chunk = plan.chunk;
  proto::Packet p;
  Borrowed<std::vector<proto::DataFragment>> borrow(FragmentScratch(), p.data);
  p.connection_id = peer_id_;
  p.data.assign(1, plan.frame);
  proto::DataFragment& frame = p.data[0];
  const std::string_view all(f->payload.data(), f->payload.size());
  const uint32_t index = f->header.index;
  // The encoder reads each payload once, from the application's buffer,
  // usually cold: two packets ahead is fetched while one is written (as
  // SendQueue::NextRun does for a packet's run), and after the burst the
  // message's next two packets' worth (where the next packet starts).
  auto fetch = [&](const char* from, size_t bytes) {
    for (size_t at = 0; at < bytes; at += 64) __builtin_prefetch(from + at);
  };
  const size_t packet_bytes = chunk * plan.packets[0].run;
  fetch(all.data(), std::min(all.size(), 2 * packet_bytes));
  // (A burst never takes a message's last fragment: bytes follow the run.)
  const size_t after = f->header.total_size - chunk * index - all.size();
  Pacer::Rate rate = pacing;  // (unchanged: the controller's sending cannot change it)
  for (int sent = 0; sent < planned; ++sent) {
    const BurstPlan::Packet& packet = plan.packets[sent];
    if (const int ahead = sent + 2; ahead < planned) {
      fetch(all.data() + chunk * plan.packets[ahead].start, chunk * plan.packets[ahead].run);
    } else if (ahead == std::max(planned, 2)) {
      fetch(all.data() + all.size(), std::min(after, 2 * packet_bytes));
    }
    p.packet_number = next_packet_number_;
    frame.index = index + packet.start;
    frame.run = packet.run;
    frame.payload_ref = all.substr(chunk * packet.start, chunk * packet.run);
    p.pad_to = packet.pad_to;
    const size_t before = out->size();
    Encode(now, p, out, packet.size);
    if (out->size() == before) return sent;  // closed (a bug, see Encode)
    ++next_packet_number_;
    ++stats_.burst_packets;
    SentPacket record;
    record.fragments.push_back(FragmentId{f->id.message, frame.index, packet.run});
    // (Closed when it fails: nothing taken for the packets after is sent.)
    if (!RecordSent(now, p.packet_number, out->back().size(), true, std::move(record), &rate)) {
      return sent + 1;
    }
  }
  return planned;
}

uint32_t Connection::PlanBurst(absl::Time now, const Pacer::Rate& pacing, int most,
                               const OutgoingFragment& c, BurstPlan* plan) const {
  // A retransmission goes alone, and so does a message's last fragment (it
  // may share its packet with another message's).
  if (c.retransmission || c.id.run <= 1) return 0;
  proto::DataFragment& d = plan->frame;
  Describe(c, &d);
  const uint64_t chunk = FragmentChunk(d.count, d.total_size);
  plan->chunk = chunk;
  // (Such small fragments go a fragment per frame: SendOne.)
  if (chunk < proto::kMinRunFragmentBytes) return 0;
  const size_t fill_limit = max_datagram_;
  const size_t data_limit = fill_limit - PingFrameBytes();
  const size_t max_frames = codec_.limits().max_data_frames;
  const size_t seal = SealOverhead();
  const std::string_view all = *d.payload_ref;
  const uint32_t index = d.index;
  uint64_t in_flight = sent_.bytes_in_flight();
  Pacer::Burst burst;
  if (options_.pacing) burst = pacer_.BurstAt(now, pacing);
  plan->train = train_datagram_;  // the GSO train's datagram size (PadToTrain)
  uint32_t start = 0;
  // The last packet's FitRun answers, which hold for the next while its
  // header is as long, its fragment indexes (its own and the next
  // fragment's) stay below the same varint width's end, and the message's
  // end is further than one packet reaches.
  size_t cached_used = 0;
  uint32_t cached_n = 0;
  size_t cached_frame = 0;
  uint64_t width_end = 0;
  const uint64_t reach = data_limit / chunk + 2;
  int& planned = plan->count;
  for (; planned < most; ++planned) {
    if (!cc_->CanSend(in_flight)) break;
    if (options_.pacing && !burst.Allows(max_datagram_)) break;
    if (AsksImmediateAck(in_flight)) break;  // SendOne adds a ping
    const uint32_t left = c.id.run - start;
    const size_t used = proto::Codec::HeaderSize(peer_id_, next_packet_number_ + planned);
    const std::string_view rest = all.substr(std::min<uint64_t>(chunk * start, all.size()));
    d.index = index + start;
    uint32_t n = cached_n;
    size_t frame = cached_frame;
    if (used != cached_used || d.index + n >= width_end || left <= n + reach) {
      n = FitRun(d, rest, chunk, left, used, data_limit, true, &frame);
      // The message's end: SendOne may add another message's frame.
      if (n >= left) break;
      // SendOne asks for another frame while a frame header fits: the same
      // message's next fragment, which then must not fit (a message's last
      // fragment can be as short as a byte).
      if (max_frames > 1 && used + frame + kMaxDataFrameHeaderBytes <= data_limit) {
        proto::DataFragment next = d;
        next.index = d.index + n;
        size_t next_frame = 0;
        if (FitRun(next, rest.substr(chunk * n), chunk, left - n, used + frame, data_limit,
                   false, &next_frame) != 0) {
          break;
        }
      }
      cached_used = used;
      cached_n = n;
      cached_frame = frame;
      // (An index of 0 takes no bytes at all: a width of its own.)
      for (width_end = 1; width_end <= d.index; width_end *= 128) {
      }
    }
    const size_t pad = TrainPadding(fill_limit, used + frame, &plan->train);
    const size_t size = pad != 0 ? pad : used + frame;
    plan->packets[planned] = BurstPlan::Packet{start, n, size, pad};
    in_flight += size + seal;
    if (options_.pacing) burst.Spend(size + seal);
    start += n;
  }
  return start;
}

bool Connection::RecordSent(absl::Time now, uint64_t number, size_t bytes, bool eliciting,
                            SentPacket record, Pacer::Rate* pacing) {
  record.number = number;
  record.sent_time = now;
  record.bytes = bytes;
  record.ack_eliciting = eliciting;
  if (eliciting) {
    // The peer timeout counts from the oldest unacknowledged packet.
    if (sent_.bytes_in_flight() == 0) last_progress_ = now;
    last_eliciting_sent_ = now;
    cc_->OnPacketSent(now, PacketInfo{number, now, bytes}, sent_.bytes_in_flight() + bytes);
    if (options_.pacing) {
      if (cc_->SendingMayChangePacing()) *pacing = PacerRate();
      pacer_.OnSent(now, bytes, *pacing);
    }
  }
  if (!sent_.OnSent(std::move(record))) {
    CloseNow(now, CloseReason::kPeerTimeout,
             "too many unacknowledged packets: peer not acknowledging", false, true);
    return false;
  }
  return true;
}

bool Connection::PiggybackWanted(absl::Time now) const {
  return acks_.PiggybackWanted(now, std::max(rtt_.smoothed(), options_.max_ack_delay));
}

bool Connection::AsksImmediateAck(uint64_t in_flight) const {
  return immediate_ack_requested_ == 0 && in_flight + 2 * max_datagram_ >= cc_->window();
}

void Connection::PadToTrain(proto::Packet& p, size_t fill_limit, size_t size) {
  if (p.ack) return;
  p.pad_to = TrainPadding(fill_limit, size, &train_datagram_);
}

size_t Connection::TrainPadding(size_t fill_limit, size_t size, size_t* train_datagram) {
  const size_t train = *train_datagram;
  const size_t most =
      train + kMaxDataFrameHeaderBytes > fill_limit ? kMaxTrainPadding : kMaxSmallTrainPadding;
  // One byte short cannot be padded (no field is that short): that packet
  // ends its train, the next ones join the same size again.
  if (size < train && train - size >= 2 && train - size <= most && train <= fill_limit) {
    return train;
  }
  if (size != train && size + 1 != train) *train_datagram = size;
  return 0;
}

void Connection::Poll(absl::Time now, DatagramBatch* out) {
  if (close_due_) {
    close_due_ = false;
    proto::Packet p;
    p.connection_id = peer_id_;
    p.packet_number = next_packet_number_++;
    // A close without a frame of its own (the peer's, or an error of ours
    // that sends none) answers with an empty one.
    p.close = close_ != nullptr ? *close_ : proto::Close{};
    Encode(now, p, out);  // already closed: a failure only drops the Close
    return;
  }
  if (state_ == State::kClosed) return;
  if (client_ && state_ == State::kConnecting) {
    SendHandshake(now, out);
    return;
  }
  if (state_ == State::kAccepted) {
    if (accept_due_) {
      accept_due_ = false;
      proto::Packet p;
      p.connection_id = peer_id_;
      p.accept = *accept_;
      Encode(now, p, out);
      ++accepts_sent_;
      accept_sent_at_ = now;
    }
    return;
  }
  pacing_wakeup_ = absl::InfiniteFuture();
  MaybeQueueAckFrequency(now);
  if (pmtud_ && state_ == State::kEstablished && cc_->CanSend(sent_.bytes_in_flight())) {
    if (const std::optional<size_t> size = pmtud_->ProbeSize(now)) SendMtuProbe(now, *size, out);
  }
  // Read once for the packets below: nothing here changes the window or
  // the RTT (no ACK is processed), and RecordSent reads a rate again where
  // sending may change it. Read per packet, twice, they cost about 200
  // instructions of Poll's 4,100 per data packet then (bench/endpoint_bench.cc
  // BM_BulkInMemory under callgrind, docs/performance.md; 2,360 since bursts).
  Pacer::Rate pacing = PacerRate();
  int packets = 0;
  for (; packets < kMaxPacketsPerPoll && state_ != State::kClosed; ++packets) {
    const bool probe = probes_due_ > 0;
    const bool ack_due = AckDue(now);
    const bool keepalive = ping_due_ || now >= KeepaliveDeadline();
    bool data = false;
    const bool sendable = queue_.HasSendable();
    if (sendable) {
      if (probe) {
        data = true;
      } else if (cc_->CanSend(sent_.bytes_in_flight())) {
        const absl::Time at =
            options_.pacing ? pacer_.NextSendTime(now, max_datagram_, pacing) : now;
        data = at <= now;
        if (!data) pacing_wakeup_ = at;
      }
    }
    if (!probe && !ack_due && !data && !keepalive && !ack_frequency_due_ &&
        !path_response_due_) {
      break;
    }
    if (data && !probe && !ack_due && !keepalive && !ack_frequency_due_ && !path_response_due_) {
      const int sent = SendBurst(now, pacing, kMaxPacketsPerPoll - packets, out);
      if (state_ == State::kClosed) break;
      if (sent > 0) {
        packets += sent - 1;  // and the loop's one
        ping_due_ = false;
        continue;
      }
    }
    if (!SendOne(now, probe, keepalive, sendable, &pacing, out)) break;
    ping_due_ = false;
    if (probe) --probes_due_;
  }
  // Cut by the per-call cap (a burst allowance of more than 256 packets:
  // small datagrams) with data still sendable: poll again at once rather
  // than wait for the next acknowledgement.
  if (packets == kMaxPacketsPerPoll && state_ != State::kClosed && queue_.HasSendable()) {
    pacing_wakeup_ = now;
  }
  // Nothing to send with the window open: the controller's rate samples
  // measure the application until what is in flight now is acknowledged.
  if (state_ != State::kClosed && !queue_.HasSendable() && cc_->CanSend(sent_.bytes_in_flight())) {
    cc_->OnAppLimited();
  }
}

uint32_t Connection::WantedAckThreshold() const {
  const uint32_t most =
      std::min<uint32_t>(options_.max_ack_threshold, proto::kMaxAckFrequencyThreshold);
  if (most <= 2) return 2;
  const uint64_t window_packets = cc_->window() / std::max<size_t>(max_datagram_, 1);
  return static_cast<uint32_t>(std::clamp<uint64_t>(window_packets / 4, 1, most));
}

void Connection::MaybeQueueAckFrequency(absl::Time now) {
  if (ack_frequency_due_ || state_ != State::kEstablished) return;
  const uint32_t want = WantedAckThreshold();
  if (!ack_frequency_lost_) {
    if (want == ack_threshold_requested_) return;
    // At most one request per round trip: the window moves on every ack.
    if (now - ack_frequency_sent_ < rtt_.smoothed()) return;
  }
  ack_threshold_requested_ = want;
  ack_frequency_due_ = proto::AckFrequency{++ack_frequency_sequence_, want};
}

void Connection::OnTimeout(absl::Time now) {
  if (state_ == State::kClosed) return;
  if (client_ && state_ == State::kConnecting) {
    if (now >= WrongKeyDeadline()) {
      CloseNow(now, CloseReason::kWrongRoomKey,
               absl::StrCat("wrong room key: server ", peer_.ToString(),
                            " holds a different key"),
               false, false);
    } else if (now - started_ >= options_.handshake_timeout) {
      std::string reason = absl::StrCat("handshake with ", peer_.ToString(), " timed out after ",
                                        absl::FormatDuration(options_.handshake_timeout));
      if (!handshake_->unauthenticated_close.empty()) {
        absl::StrAppend(&reason, " (ignored an unauthenticated close: \"",
                        handshake_->unauthenticated_close, "\")");
      }
      CloseNow(now, CloseReason::kHandshakeTimeout, std::move(reason), false, false);
    }
    return;
  }
  // The server waits a short while for the client's first packet: an
  // unconfirmed connection holds a slot of a small table.
  if (state_ == State::kAccepted && now - client_seen_ >= UnconfirmedTimeout()) {
    CloseNow(now, CloseReason::kHandshakeTimeout,
             absl::StrCat("handshake not confirmed within ",
                          absl::FormatDuration(UnconfirmedTimeout())),
             false, /*send_close=*/true);
    return;
  }
  if (now - last_received_ >= options_.idle_timeout) {
    CloseNow(now, CloseReason::kIdleTimeout,
             absl::StrCat("no packets from ", peer_.ToString(), " for ",
                          absl::FormatDuration(options_.idle_timeout)),
             false, false);
    return;
  }
  if (sent_.bytes_in_flight() > 0 && now - last_progress_ >= options_.peer_timeout) {
    CloseNow(now, CloseReason::kPeerTimeout,
             absl::StrCat("peer ", peer_.ToString(), " acknowledged nothing for ",
                          absl::FormatDuration(options_.peer_timeout)),
             false, true);
    return;
  }
  if (now >= sent_.Deadline(rtt_)) {
    SentPackets::TimeoutResult r = sent_.OnTimeout(now, rtt_);
    OnLost(now, r.lost, /*persistent_congestion=*/false);
    if (r.probe) {
      ++stats_.probes;
      if (sent_.pto_count() > options_.max_probes) {
        CloseNow(now, CloseReason::kPeerTimeout,
                 absl::StrCat("peer ", peer_.ToString(), " did not answer ", options_.max_probes,
                              " probes"),
                 false, true);
        return;
      }
      probes_due_ = 2;  // RFC 9002 6.2.4: up to two probes
    }
  }
  if (pmtud_ && now >= pmtud_->NextTimeout()) pmtud_->OnTimeout(now);  // PMTU_RAISE_TIMER
  if (path_ != nullptr && path_->running && now >= path_->deadline) AbandonPath();
  if (now >= next_expire_) {
    if (unreliable_reassembler_) {
      unreliable_reassembler_->Expire(now);
      if (unreliable_reassembler_->partial_messages() == 0) unreliable_reassembler_.reset();
    }
    next_expire_ = now + std::max(absl::Seconds(1), options_.reassembly_timeout / 4);
  }
}

absl::Time Connection::NextTimeout() const {
  if (close_due_) return absl::InfinitePast();
  if (state_ == State::kClosed) return absl::InfiniteFuture();
  if (client_ && state_ == State::kConnecting) {
    return std::min(
        {handshake_->next_hello, started_ + options_.handshake_timeout, WrongKeyDeadline()});
  }
  if (state_ == State::kAccepted) {
    return accept_due_ ? absl::InfinitePast() : client_seen_ + UnconfirmedTimeout();
  }
  absl::Time t = last_received_ + options_.idle_timeout;
  t = std::min(t, sent_.Deadline(rtt_));
  if (sent_.bytes_in_flight() > 0) t = std::min(t, last_progress_ + options_.peer_timeout);
  t = std::min(t, acks_.AckDeadline());
  if (acks_.AckNow() || probes_due_ > 0 || path_response_due_ || ping_due_) {
    t = absl::InfinitePast();
  }
  if (path_ != nullptr && path_->running) {
    t = std::min(t, path_->deadline);
    if (path_->challenges_sent < kMaxPathChallenges) t = std::min(t, path_->next_send);
  }
  t = std::min(t, KeepaliveDeadline());
  if (unreliable_reassembler_ && unreliable_reassembler_->partial_messages() > 0) {
    t = std::min(t, next_expire_);
  }
  if (pmtud_) {
    t = std::min(t, pmtud_->NextTimeout());
    // A probe waits only for the window.
    if (state_ == State::kEstablished && pmtud_->ProbeSize(t).has_value() &&
        cc_->CanSend(sent_.bytes_in_flight())) {
      t = absl::InfinitePast();
    }
  }
  // Data waiting for the pacer (a closed window is opened by acks, not time).
  return std::min(t, pacing_wakeup_);
}

ConnectionStats Connection::stats() const {
  ConnectionStats s;
  s.packets_sent = stats_.packets_sent;
  s.bytes_sent = stats_.bytes_sent;
  s.packets_received = stats_.packets_received;
  s.acks_sent = stats_.acks_sent;
  s.burst_packets = stats_.burst_packets;
  s.peer_ack_threshold = stats_.peer_ack_threshold;
  s.bytes_received = stats_.bytes_received;
  s.packets_lost = stats_.packets_lost;
  s.spurious_losses = stats_.spurious_losses;
  s.duplicate_packets = stats_.duplicate_packets;
  s.duplicate_messages = stats_.duplicate_messages;
  s.messages_sent = stats_.messages_sent;
  s.messages_delivered = stats_.messages_delivered;
  s.messages_acked = stats_.messages_acked;
  s.probes = stats_.probes;
  s.refused_packets = stats_.refused_packets;
  s.mtu_probes_lost = stats_.mtu_probes_lost;
  s.mtu_black_holes = stats_.mtu_black_holes;
  s.unauthenticated_handshake = stats_.unauthenticated_handshake;
  s.path_challenges = stats_.path_challenges;
  s.migrations = stats_.migrations;
  s.path_validation_failures = stats_.path_validation_failures;
  s.wrong_address = stats_.wrong_address;
  s.path_amplification_blocked = stats_.path_amplification_blocked;
  s.srtt = rtt_.smoothed();
  s.rttvar = rtt_.rttvar();
  s.min_rtt = rtt_.min_rtt();
  s.latest_rtt = rtt_.latest();
  s.cwnd = cc_->window();
  s.congestion_reductions = stats_.congestion_reductions + cc_->reductions();
  s.bytes_in_flight = sent_.bytes_in_flight();
  s.fragments_retransmitted = queue_.retransmitted_fragments();
  s.datagram_size = datagram_size();
  if (pmtud_) s.mtu_probes = pmtud_->stats().probes_sent;
  if (protector_ != nullptr) s.aead = AeadName(protector_->aead());
  s.peer_held_bytes = ReassemblyHeldBytes() + undelivered_bytes_ +
                      channels_.size() * kChannelBytes + acks_.range_count() * kAckRangeBytes;
  return s;
}

}  // namespace udpmsg::reliable
