// Connection: one reliable session with one peer, sans-I/O.
//
// Owns the sender (SendQueue, SentPackets, RttEstimator, congestion
// controller, pacer) and the receiver (AckTracker, Reassembler, one
// ReceiveChannel per (channel, mode)) of a session, and the session's state
// machine. It is driven by its Endpoint, which owns the socket-facing side
// (codec, demultiplexing, the stateless part of the handshake):
//
//   endpoint -> OnPacket(now, packet, size)   a decoded packet for us
//   endpoint -> Poll(now, &out)              datagrams to send now
//   endpoint -> OnTimeout(now)               when now >= NextTimeout()
//   app      -> Send / Close (through the endpoint)
//   endpoint <- TakeEvents()                 connected, message, acked, closed
//
// Handshake (client side; the server side starts established-pending):
//   client: Hello (padded to the datagram budget), repeated with backoff
//   server: Challenge{cookie}        (stateless, see Endpoint)
//   client: Hello{cookie}            (padded), repeated with backoff
//   server: Accept{server cid}       (creates this Connection)
//   client: established; its first packets carry the server's cid, which
//           confirms the handshake on the server (within
//           unconfirmed_timeout, or the server closes it).
//
// With a room key (Security::psk) the clear handshake packets carry MACs
// with the key (packet_protection.h): the Challenge a ChallengeKeyProof, the
// client's Hello{cookie} a HelloKeyProof, a server's Close before the Accept
// a CloseAuth. A keyed client ignores (counts) a Close without a valid auth:
// it cannot end the attempt; its text shows only in the handshake timeout's
// reason, marked unauthenticated. A Challenge whose key proof is wrong is
// ignored too, but when no Challenge with a right proof arrives within a
// short grace (max(1s, 3 x initial_rtt), at most the handshake timeout) the
// attempt ends with CloseReason::kWrongRoomKey: the server holds another
// key. A keyless client that encrypts ends at once with kWrongRoomKey on a
// Challenge that carries a key proof (the server requires a room key).
//
// Loss recovery follows RFC 9002 (see sent_packets.h, congestion.h); every
// packet gets a new number, retransmitted fragments included. Liveness:
// keepalive pings after `keepalive` of sending nothing (the accepting side
// waits half a keepalive longer, at most half the way to its idle timeout, so
// that between two udpmsg peers the client's pings, answered by acks, keep
// both alive: one exchange per interval, where the two racing would cost the
// server a timer wake-up and an extra receive per ping); a peer that acknowledges
// nothing for `peer_timeout` while data or a probe is outstanding, or after
// `max_probes` consecutive probe timeouts, closes the connection with
// CloseReason::kPeerTimeout (wire kCloseTooManyRetransmissions); the probe
// timeout backs off to at most max(PTO, peer_timeout / 8), so that a peer
// timeout spans many probe rounds (unlike RFC 9002, which always doubles);
// `idle_timeout` without receiving anything closes it with kIdleTimeout.
//
// Flow control: the sender keeps at most `window` reliable messages per
// sequence space in flight (the receiver's ReceiveChannel window) and at most
// `max_queued_bytes` queued (plus the urgent reserve of send_queue.h when
// channels have priorities); the receiver stops acknowledging packets with
// data while more than `max_undelivered_bytes` of delivered messages wait in
// the event queue for the application, so a slow application stalls its
// sender instead of growing memory.
//
// Memory per connection (docs/security.md): everything the peer can make
// the receiver hold is charged, with honest per-item overheads, to one of
// two budgets. max_reassembly_bytes: partial messages (payload +
// kFragmentOverheadBytes per fragment + kPartialMessageBytes per message, in
// both reassemblers), parked reliable-ordered messages (payload +
// kParkedMessageBytes) and sequence numbers delivered ahead by
// reliable-unordered spaces (kDeliveredAheadBytes each). A fragment that
// would exceed it is refused (not acknowledged, so the sender retries;
// acknowledged reliable data is never dropped), keeping headroom for the
// message each space needs next so its head never deadlocks.
// max_undelivered_bytes: message events not yet taken (payload +
// kEventOverheadBytes each). Besides: kChannelBytes per (channel, mode)
// space opened (at most 4 x max_channels) and kAckRangeBytes per received
// range (at most 1024). MaxPeerHeldBytes(options) is the sum, and
// ConnectionStats::peer_held_bytes the current figure.
//
// What a connection holds besides what the peer makes it hold: its object
// and its congestion controller, a ReceiveChannel per (channel, mode) it
// received on and a SendQueue space per one it sent on; everything else
// (send queue entries, lost fragments, packets in flight, reassemblers,
// event blocks) is allocated on first use and released when drained, and
// the datagram-sized scratch buffers belong to the thread, not to each
// connection. tests/reliable/connection_memory_test.cc measures it (about
// 3 KB per idle server connection, endpoint included; docs/scale.md).
//
// Path validation and migration (RFC 9000 8.2 and 9, adapted): a server
// connection follows its client to a new address (a NAT rebinding, or the
// client's Runtime::Rebind) only after proving the client receives there.
//   - Trigger: a packet for our id from an address other than peer() that
//     (a) authenticates: sealed and opens (an encrypted connection), or, on
//     an unencrypted one, decodes with a valid CRC: with no key nothing
//     else can tell the peer from an on-path attacker (docs/security.md);
//     (b) is not a duplicate (AckTracker::Contains), and
//     (c) has the highest packet number received so far.
//     Such a packet starts a validation of its address. When it is sealed
//     it is also processed like any other (its acks and data count); a
//     clear one (unencrypted connection) is read for its PATH_RESPONSE only
//     and otherwise dropped unacknowledged (the peer retransmits), so that
//     a clear packet from an address not validated never delivers data nor
//     closes the connection. A sealed packet that passes (a) and (b) but
//     not (c) (reordered around a rebinding) is processed without starting
//     anything; anything else from another address is dropped unread
//     (PathVerdict::kRefusedAddress; the endpoint counts it as
//     wrong_address). Clients, and connections not established, never
//     follow another address.
//   - One validation at a time: a trigger from a third address replaces the
//     running one. A packet from peer() numbered above the trigger abandons
//     it (the peer is still there: someone replayed or forwarded its
//     packet, RFC 9000 9.3.3); so does a trigger that is not answered in
//     time (below).
//   - Challenge: a numbered (sealed when encrypted) packet with a
//     PATH_CHALLENGE of 8 bytes from the endpoint's CSPRNG (a seeded
//     generator in tests), padded to min(1200, the base datagram size) when
//     the budget below allows it (RFC 9000 8.2.1), unpadded when only that
//     fits, not sent otherwise. It goes to the new address only (data keeps
//     going to peer() until the move), outside the congestion window. Sent
//     up to kMaxPathChallenges times, every PathValidationTimeout() / 3;
//     the validation fails (counted, the connection stays where it is)
//     PathValidationTimeout() after it started: 3 x max(PTO, the PTO of a
//     new path with initial_rtt), as RFC 9000 8.2.4 suggests.
//   - Amplification limit: the bytes sent to an address being validated
//     never exceed 3x the bytes received from it (RFC 9000 8.1).
//   - Response: a PATH_RESPONSE echoing the challenge's data, in a packet
//     that passes (a) from the address being validated, completes the
//     validation: peer() becomes that address, the congestion controller,
//     pacer and RTT estimator restart from their initial state, path MTU
//     discovery falls back to the base size and probes again, packets in
//     flight on the old path are declared lost without telling the new
//     controller (their fragments go out again on the new path), and an
//     Event::kPathChanged (old_peer, peer) tells the application.
//   - Answering: any established connection answers a PATH_CHALLENGE with a
//     PATH_RESPONSE in its next packet to peer() (the only address a client
//     accepts packets from), sent at once.
// A spoofed packet (does not open), a replayed one (a duplicate number) or
// an old one from another address therefore never moves a connection, nor
// makes it send anything there. Clients never validate paths: a server does
// not move. Nothing unauthenticated (ICMP, a forged clear packet on an
// encrypted connection) closes a connection, as before.
//
// Not thread-safe (connections driven on one thread share its scratch
// buffers). Copies the endpoint's codec limits.
#ifndef UDPMSG_RELIABLE_CONNECTION_H_
#define UDPMSG_RELIABLE_CONNECTION_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "proto/codec.h"
#include "proto/frames.h"
#include "reliable/ack_tracker.h"
#include "reliable/congestion.h"
#include "reliable/datagram_batch.h"
#include "reliable/delivery.h"
#include "reliable/message_bytes.h"
#include "reliable/packet_protection.h"
#include "reliable/pmtud.h"
#include "reliable/reassembler.h"
#include "reliable/rtt_estimator.h"
#include "reliable/send_queue.h"
#include "reliable/sent_packets.h"
#include "udp/socket_address.h"

namespace udpmsg::reliable {

using ConnectionId = uint64_t;

// The congestion controller a connection uses (see congestion.h).
enum class CongestionControl {
  kNewReno,  // RFC 9002 (the default)
  kBbr,      // rate-based, tolerant of random loss
};

// "newreno" / "bbr".
absl::string_view CongestionControlName(CongestionControl cc);
// The controller named `name` (case-insensitive). INVALID_ARGUMENT, listing
// the valid names, for anything else: there is no fallback.
absl::StatusOr<CongestionControl> ParseCongestionControl(absl::string_view name);

// The default ceiling of path MTU discovery (ConnectionOptions::
// max_udp_payload). Measured with `udpmsg bench bulk --bench_size 64MiB
// --bench_loss 0,1%` on loopback (opt build, two runs each, PMTUD on):
// 16384 gave 0.34-0.38x TCP at 0% loss and 2.9-3.0 Gbit/s at 1% against
// 1200's 0.21-0.22x and 0.45 Gbit/s, while 65507 (loopback's largest) fell
// back to 0.16-0.21x at 0%: a lost or dropped 64 KiB datagram costs 64
// fragments and the receiver's socket buffer holds few of them. Real paths
// stop far below it (1472 on Ethernet), so it matters on loopback and jumbo
// frames only; 16 KiB also bounds what one datagram makes a peer buffer.
inline constexpr size_t kDefaultMaxUdpPayload = 16384;

struct ConnectionOptions {
  // Largest datagram we send (the peer's announced budget can only lower it).
  // With path MTU discovery it is the base size every connection starts at
  // and falls back to.
  size_t max_datagram = proto::kDefaultMaxDatagram;
  // Path MTU discovery (reliable/pmtud.h, RFC 8899): probe datagrams larger
  // than max_datagram up to min(max_udp_payload, what the peer announces it
  // accepts) and send the largest size acknowledged. max_udp_payload is also
  // what this side announces and accepts (its codec's decode limit), capped
  // at proto::kMaxDatagram; at or below max_datagram nothing is announced.
  // Off (or a peer that announces nothing, as older versions): max_datagram
  // only. With it on the runtime's socket sets IP_PMTUDISC_PROBE.
  bool pmtud = true;
  size_t max_udp_payload = kDefaultMaxUdpPayload;
  absl::Duration pmtu_raise_interval = absl::Seconds(600);  // PMTU_RAISE_TIMER
  // Fragment runs (proto::kFeatureFragmentRuns): announce in the handshake
  // that we receive data frames carrying several consecutive fragments of a
  // message, and send such frames when the peer announces it too. A
  // datagram larger than the base size then carries its fragments under one
  // frame header (one per message it holds) instead of one each. Off (or a
  // peer that announces nothing, as older versions): one fragment per frame,
  // and a run received is dropped as an older receiver drops it.
  bool fragment_runs = true;
  uint64_t max_message_bytes = 16 << 20;
  uint32_t window = 4096;                 // reliable messages in flight per space
  uint64_t max_queued_bytes = 64 << 20;   // sender back-pressure
  // What partial, parked and delivered-ahead messages may hold, overheads
  // included (see "Memory per connection" above).
  uint64_t max_reassembly_bytes = 64 << 20;
  // What delivered messages the application has not taken may hold (payload
  // + kEventOverheadBytes each) before packets with data are refused.
  uint64_t max_undelivered_bytes = 64 << 20;
  uint32_t max_channels = 256;            // channel ids accepted: [0, max_channels)
  absl::Duration idle_timeout = absl::Seconds(30);
  absl::Duration keepalive = absl::Seconds(5);
  absl::Duration handshake_timeout = absl::Seconds(20);
  // Server: how long an accepted connection waits for the client's first
  // numbered packet (its confirmation) before it is closed, counted from the
  // Accept or the client's latest repeated hello (it did not get the
  // Accept): this, or three initial probe timeouts if longer, and never
  // longer than the handshake or idle timeout. An unconfirmed connection
  // holds a slot of the endpoint's small unconfirmed table (see
  // EndpointOptions), where a flood evicts the oldest long before this; 10 s
  // lets a client on a path losing 30% each way confirm (3 s did not).
  absl::Duration unconfirmed_timeout = absl::Seconds(10);
  absl::Duration peer_timeout = absl::Seconds(10);
  // 16: with the probe timeout's backoff capped at peer_timeout / 8, ten
  // probes came before the peer timeout on most paths (a 26 ms PTO gave up
  // after 7.9 s of 10).
  int max_probes = 16;
  absl::Duration max_ack_delay = absl::Milliseconds(25);
  // Ack frequency (the idea of QUIC's ACK_FREQUENCY extension): with a
  // congestion window of W packets the sender asks the peer to acknowledge
  // every clamp(W / 4, 1, max_ack_threshold) ack-eliciting packets instead
  // of every second one, so a fast path carries a few acks per window, not
  // half a window of them. Out-of-order arrivals are still acknowledged at
  // once (loss detection is unchanged), and so is the packet that fills the
  // window. 2 (or less) turns the requests off; peers that predate the frame
  // ignore it and keep acknowledging every second packet. 32 (10 before):
  // 3-5% more goodput on a clean 1500-byte veth, where each ACK ends a GSO
  // train (docs/performance.md). Under 8 packets it asks for an ACK per
  // packet (every second one before 2026-12-05): with a window of a few
  // packets, a packet waiting for the next one before it is acknowledged
  // holds a slot of the window that long, and the bottleneck ran dry
  // (20 Mbit/s at 5% loss, a 50 us RTT: the link was busy 90-94% of the
  // transfer in the simulator; SmallWindowSimTest).
  uint32_t max_ack_threshold = 32;
  absl::Duration initial_rtt = absl::Milliseconds(333);
  absl::Duration reassembly_timeout = absl::Seconds(30);
  // From a name: ParseCongestionControl (an unknown name is an error).
  CongestionControl congestion_control = CongestionControl::kNewReno;
  bool pacing = true;
};

// Test-only knobs kept out of ConnectionOptions so that production code
// cannot set them: set through Endpoint::SetTestHooksForTesting.
struct TestHooks {
  // The first packet number this side uses (to test behaviour near
  // proto::kMaxSequenceNumber); 0 means 1, the normal start.
  uint64_t initial_packet_number = 0;
  // The first message sequence number of every (channel, mode) space, on
  // both sides (the peers must agree).
  uint64_t initial_message_sequence = 0;
  // The AEADs this side offers (client) or accepts (server) instead of
  // LocalAeads(), to test the negotiation; 0 acts as a peer that predates
  // it (a client sends no offer, a server ignores one and names no choice).
  std::optional<uint32_t> aeads;
  // Sends every packet through SendOne, never a burst (SendBurst): the
  // reference a burst's datagrams are compared with, byte for byte.
  bool no_bursts = false;
};

// Why a connection closed: the library's own reasons, not wire codes.
// Local closes get the reason of the rule that fired; a peer's Close frame
// is mapped by CloseReasonFromWire (Event::by_peer tells which side).
enum class CloseReason {
  kClosedByApplication,  // this side's application called Close
  kClosedByPeer,         // the peer's application closed (or sent a code this
                         // version does not know; the reason text says why)
  kIdleTimeout,          // nothing received for idle_timeout
  kHandshakeTimeout,     // no answer within handshake_timeout (client), or
                         // the client never confirmed its handshake (server)
  kPeerTimeout,          // the peer stopped acknowledging: peer_timeout,
                         // max_probes, or too many packets unacknowledged
  kServerFull,           // refused: the server holds max_connections
  kEncryptionMismatch,   // one side encrypts and the other does not
  kWrongRoomKey,         // room keys differ, or only one side has one
  kPeerUnreachable,      // ICMP port/host unreachable while connecting
  kProtocolError,        // the peer broke the protocol (or refused the
                         // handshake for a malformed key)
  kNumberSpaceExhausted, // 2^62 packet numbers used up
  kInternalError,        // our own packet failed to encode (a bug)
  kServerIdentityMismatch,  // the client pinned a server identity and the
                            // server presented another one, or none
};
inline constexpr CloseReason kAllCloseReasons[] = {
    CloseReason::kClosedByApplication, CloseReason::kClosedByPeer,
    CloseReason::kIdleTimeout,         CloseReason::kHandshakeTimeout,
    CloseReason::kPeerTimeout,         CloseReason::kServerFull,
    CloseReason::kEncryptionMismatch,  CloseReason::kWrongRoomKey,
    CloseReason::kPeerUnreachable,     CloseReason::kProtocolError,
    CloseReason::kNumberSpaceExhausted, CloseReason::kInternalError,
    CloseReason::kServerIdentityMismatch,
};

// A short stable name: "closed by application", "idle timeout", ...
absl::string_view CloseReasonName(CloseReason reason);
// What a peer's Close frame code means here. Every proto::CloseCode maps to
// one reason; an unknown code (or kClosePeerUnreachable, which is never
// sent) is kClosedByPeer.
CloseReason CloseReasonFromWire(uint32_t code);
// The proto::CloseCode a local close with `reason` sends (or would send).
uint32_t WireCloseCode(CloseReason reason);

// Encryption settings of one connection (see EndpointOptions).
struct Security {
  bool encrypt = false;
  std::optional<Psk> psk;          // a room key; implies encrypt
  std::optional<KeyPair> key;      // our X25519 key pair when encrypting
  // Client: the server's identity fingerprint it must present
  // (IdentityFingerprint form; implies encrypt). Another identity, or none,
  // closes the attempt with CloseReason::kServerIdentityMismatch before
  // anything sealed is sent.
  std::optional<std::string> server_pin;
};

// What happened, for the application.
struct Event {
  enum class Type {
    kConnected,    // handshake done; Send may be used
    kMessage,      // a message arrived (message, channel, mode, sequence)
    kAcked,        // a reliable message we sent is fully acknowledged
    kClosed,       // the connection is gone (close_reason, reason, by_peer)
    kPathChanged,  // the peer moved (validated): old_peer -> peer
  };
  Type type = Type::kMessage;
  ConnectionId connection = 0;
  udp::SocketAddress peer;
  uint32_t channel = 0;
  DeliveryMode mode = DeliveryMode::kReliableOrdered;
  uint64_t sequence = 0;
  std::string message;  // kMessage only
  uint64_t bytes = 0;   // kAcked: message size
  CloseReason close_reason = CloseReason::kClosedByApplication;  // kClosed
  std::string reason;   // kClosed: human-readable detail (peer text is raw)
  bool by_peer = false; // kClosed: the peer closed (or refused) the connection
  // kConnected on a client: the fingerprint of the identity the server proved
  // (packet_protection.h IdentityFingerprint); empty when it has none.
  std::string server_identity;
  // kPathChanged: the address the peer left (`peer` is the new one).
  udp::SocketAddress old_peer;
};

absl::string_view EventTypeName(Event::Type type);

// Path validation (see "Path validation and migration" above).
inline constexpr int kMaxPathChallenges = 3;
// A challenge datagram is padded to this (or the base datagram size if
// smaller) when the amplification budget allows.
inline constexpr size_t kPathChallengeDatagram = 1200;

// One datagram for an address other than the connection's peer (a path
// challenge).
struct AddressedDatagram {
  udp::SocketAddress to;
  std::string bytes;
};

// What a connection made of a datagram from a given address.
enum class PathVerdict {
  kAccepted,         // processed (from peer(), or a trigger/reordered packet)
  kUnauthenticated,  // did not open or decode: dropped
  kRefusedAddress,   // from another address and not acceptable: dropped unread
};

// An upper bound of the heap one queued message event holds besides its
// payload: its share of the event deque's 512-byte blocks and their map,
// and the rounding of its message's allocation.
inline constexpr uint64_t kEventOverheadBytes =
    (sizeof(Event) < 512 ? 512 / (512 / sizeof(Event)) : sizeof(Event)) + 64;

// The most heap the peer of a connection with `options` can make it hold
// (docs/security.md, "Memory per connection"): max_reassembly_bytes +
// max_undelivered_bytes + what one packet may deliver past the undelivered
// check (max_data_frames messages of a datagram each) + kChannelBytes for
// each of the 4 x max_channels sequence spaces + 1024 ack ranges + the
// tables of partial messages at their largest (they keep their capacity).
uint64_t MaxPeerHeldBytes(const ConnectionOptions& options);

// The largest datagram a connection with `options` accepts: max_datagram,
// or with path MTU discovery what it announces (max_udp_payload, at most
// proto::kMaxDatagram) when that is larger. The endpoint's decode limit.
size_t AcceptedDatagramSize(const ConnectionOptions& options);

struct ConnectionStats {
  absl::Duration srtt;
  absl::Duration rttvar;
  absl::Duration min_rtt;
  absl::Duration latest_rtt;
  uint64_t cwnd = 0;
  uint64_t bytes_in_flight = 0;
  uint64_t packets_sent = 0;
  uint64_t bytes_sent = 0;
  uint64_t packets_received = 0;
  uint64_t acks_sent = 0;              // packets that carried an ACK frame
  // Data packets sent as part of a burst: packets decided at once for a
  // run of one message's fragments (Connection::SendBurst), which the
  // pacer's burst allowance and the window bound; the rest of packets_sent
  // went one by one.
  uint64_t burst_packets = 0;
  // The ack-eliciting threshold the peer applies for us (2 until it
  // acknowledged an AckFrequency request; see max_ack_threshold).
  uint32_t peer_ack_threshold = 2;
  uint64_t bytes_received = 0;
  uint64_t packets_lost = 0;           // declared lost by loss detection
  uint64_t spurious_losses = 0;        // of those, acknowledged later (reordered)
  uint64_t fragments_retransmitted = 0;
  uint64_t duplicate_packets = 0;      // received again (dropped)
  uint64_t duplicate_messages = 0;     // reliable messages received again
  uint64_t messages_sent = 0;          // queued by the application
  uint64_t messages_delivered = 0;     // handed to the application
  uint64_t messages_acked = 0;
  uint64_t probes = 0;                 // PTO expirations
  // Cuts of the congestion controller for loss: NewReno's window halvings
  // (one per loss episode), BBR's excessive-loss rounds and collapses; over
  // the connection's life (a path change's new controller adds to it).
  uint64_t congestion_reductions = 0;
  uint64_t refused_packets = 0;        // not acked: receiver out of buffer
  // Path MTU discovery: the datagram size sent now (sealed bytes included),
  // probes sent and lost (never counted as congestion), black holes seen.
  uint64_t datagram_size = 0;
  uint64_t mtu_probes = 0;
  uint64_t mtu_probes_lost = 0;
  uint64_t mtu_black_holes = 0;
  // Heap the peer makes this connection hold now, as charged (see "Memory
  // per connection" above): never over MaxPeerHeldBytes(options).
  uint64_t peer_held_bytes = 0;
  // Client with a room key: clear handshake packets ignored for lacking a
  // valid room-key MAC (challenges with a wrong key proof, closes without a
  // valid auth; see packet_protection.h CloseAuth).
  uint64_t unauthenticated_handshake = 0;
  // The AEAD sealing the connection's packets ("aes-256-gcm",
  // "chacha20-poly1305"), empty while it is not encrypted.
  std::string aead;
  // Path validation: challenges sent, validations that moved the
  // connection, validations abandoned (unanswered in time, or the peer
  // showed up at its old address), packets from other addresses dropped
  // unread, and challenges held back by the amplification limit.
  uint64_t path_challenges = 0;
  uint64_t migrations = 0;
  uint64_t path_validation_failures = 0;
  uint64_t wrong_address = 0;
  uint64_t path_amplification_blocked = 0;
  std::string ToString() const;        // one line, for logs and the CLI
};

class Connection final {
 public:
  enum class State { kConnecting, kAccepted, kEstablished, kClosing, kClosed };

  // A client connection: sends hellos to `peer` until accepted.
  static std::unique_ptr<Connection> Client(absl::Time now, ConnectionId local_id,
                                            const udp::SocketAddress& peer,
                                            const ConnectionOptions& options,
                                            const proto::Codec* codec,
                                            Security security = {},
                                            const TestHooks& hooks = {});
  // A server connection created for a validated hello; sends an Accept.
  static std::unique_ptr<Connection> Server(absl::Time now, ConnectionId local_id,
                                            ConnectionId peer_id,
                                            const udp::SocketAddress& peer,
                                            const proto::Hello& hello,
                                            const ConnectionOptions& options,
                                            const proto::Codec* codec,
                                            std::unique_ptr<PacketProtector> protector = nullptr,
                                            const std::string& public_key = "",
                                            const std::string& psk_confirmation = "",
                                            const TestHooks& hooks = {},
                                            const std::string& server_identity = "",
                                            const std::string& identity_confirmation = "");
  // The features an end with these options announces (Hello::features as a
  // client, Accept::features as a server): a bit set of proto::kFeature*.
  // An encrypted handshake binds them (FeaturesTranscript).
  static uint32_t AnnouncedFeatures(const ConnectionOptions& options);

  // A decoded packet whose connection id is ours, from our peer's address.
  // `size` is the datagram size.
  void OnPacket(absl::Time now, const proto::Packet& packet, size_t size);
  // A sealed datagram (proto::kSealedVersion) whose connection id is ours.
  // False when it does not authenticate or does not decode (dropped).
  bool OnSealed(absl::Time now, absl::string_view datagram);
  // The same from `from`, which may differ from peer() (see "Path
  // validation and migration"). An unencrypted connection's plain packets
  // go to OnPacketFrom; an encrypted one's sealed datagrams to OnSealedFrom.
  PathVerdict OnPacketFrom(absl::Time now, const proto::Packet& packet, size_t size,
                           const udp::SocketAddress& from);
  PathVerdict OnSealedFrom(absl::Time now, absl::string_view datagram,
                           const udp::SocketAddress& from);
  // Appends datagrams for an address other than peer() to send now (path
  // challenges, within the amplification limit). Call after Poll.
  void PollPath(absl::Time now, std::vector<AddressedDatagram>* out);
  // What the latest path validation came to, once: the address the
  // connection left when it moved (`*moved_from`), or a failure. The
  // endpoint calls it after every call into the connection.
  enum class PathOutcome { kNone, kMoved, kFailed };
  PathOutcome TakePathOutcome(udp::SocketAddress* moved_from);
  // Whether a path validation is running, and the address it validates.
  bool validating_path() const { return path_ != nullptr && path_->running; }
  // Whether a validation runs or its outcome waits for TakePathOutcome.
  bool path_pending() const { return path_ != nullptr; }
  // Whether the next Poll at `now` sends an ACK whatever else is due: the
  // ack policy wants one at once (the threshold reached, a gap, a ping) or
  // the delayed ACK's deadline has passed.
  bool AckDue(absl::Time now) const { return acks_.AckNow() || now >= acks_.AckDeadline(); }
  const udp::SocketAddress* validating_address() const {
    return validating_path() ? &path_->address : nullptr;
  }
  // How long a path validation may take (see the class comment).
  absl::Duration PathValidationTimeout() const;
  // Test hook: the data of the next path challenges (0: random).
  void set_path_challenge_data_for_testing(uint64_t data) { test_challenge_data_ = data; }
  bool encrypted() const { return protector_ != nullptr; }

  // The server saw the client's hello again (its Accept was lost): answer it.
  void OnRepeatedHello(absl::Time now);

  // Queues a message. FAILED_PRECONDITION when not established or closing;
  // INVALID_ARGUMENT for a bad channel or a message over the limit;
  // RESOURCE_EXHAUSTED when the queue is full. Returns its sequence number.
  absl::StatusOr<uint64_t> Send(absl::Time now, uint32_t channel, DeliveryMode mode,
                                MessageBytes message);
  // Gives `channel` its own send lane with `priority` (0 most urgent, up
  // to SendQueue::kPriorities - 1) and `weight` (share of bytes within its
  // priority, [1, SendQueue::kMaxWeight]); see send_queue.h. Sender-side
  // only: nothing changes on the wire. FAILED_PRECONDITION when not
  // established (closing is fine: the flush follows it); INVALID_ARGUMENT
  // for a channel out of range, a priority or a weight out of range.
  absl::Status SetChannelPriority(uint32_t channel, uint32_t priority, uint32_t weight);
  // Starts closing for `why` (its WireCloseCode goes in the Close frame).
  // With `flush`, sends what is queued first (reliable data acknowledged)
  // and then a Close frame; otherwise the Close goes now and queued data is
  // dropped. Idempotent.
  void Close(absl::Time now, CloseReason why, std::string reason, bool flush);

  // Appends datagrams to send now, all for peer() (the caller sets their
  // address: DatagramBatch::SetPeer).
  void Poll(absl::Time now, DatagramBatch* out);
  void OnTimeout(absl::Time now);
  absl::Time NextTimeout() const;

  // Moves pending events to `out`.
  void TakeEvents(std::vector<Event>* out);

  ConnectionId local_id() const { return local_id_; }
  ConnectionId peer_id() const { return peer_id_; }
  const udp::SocketAddress& peer() const { return peer_; }
  State state() const { return state_; }
  bool closed() const { return state_ == State::kClosed; }
  bool is_client() const { return client_; }
  // A server connection accepted but not confirmed by the client yet.
  bool unconfirmed() const { return !client_ && state_ == State::kAccepted; }
  ConnectionStats stats() const;
  // Payload bytes a fragment carries at most at the base datagram size (from
  // the codec's budget); messages are cut into fragments no larger, so any
  // fragment fits a base-size datagram after a path MTU fallback.
  size_t max_fragment_payload() const { return max_fragment_payload_; }
  // The datagram size sent now (path MTU discovery), sealed bytes included.
  size_t datagram_size() const { return max_datagram_ + SealOverhead(); }
  // The path MTU prober, when path MTU discovery runs on this connection.
  const PathMtuProber* pmtud() const { return pmtud_ ? &*pmtud_ : nullptr; }
  // The local stack refused to send a datagram of `size` bytes to the peer
  // as larger than the interface MTU (EMSGSIZE): when it is the outstanding
  // path MTU probe's size, that size fails at once.
  void OnDatagramTooBig(absl::Time now, size_t size);
  // This side moved to another local address (Runtime::Rebind): an
  // established connection restarts its path estimates as a migration
  // does and sends a ping at once, so the peer sees the new address.
  void OnLocalRebind(absl::Time now);
  uint64_t queued_bytes() const { return queue_.queued_bytes(); }
  bool has_events() const { return events_ && !events_->empty(); }
  // Messages queued, data unacknowledged, or a Close not yet sent.
  bool HasUnfinishedWork() const {
    if (close_due_) return true;
    if (state_ == State::kClosed) return false;
    if (client_ && state_ == State::kConnecting) return false;
    return !queue_.empty() || sent_.bytes_in_flight() > 0;
  }
  // Closed and done answering stray packets: the endpoint may forget it.
  bool Finished(absl::Time now) const {
    return state_ == State::kClosed && !close_due_ && !has_events() && now >= drain_until_;
  }
  absl::Time drain_until() const { return drain_until_; }

 private:
  Connection(absl::Time now, bool client, ConnectionId local_id, const udp::SocketAddress& peer,
             const ConnectionOptions& options, const proto::Codec* codec,
             const TestHooks& hooks);

  void OnAck(absl::Time now, const proto::Ack& ack);
  // Returns false if the packet must not be acknowledged (out of buffer).
  bool OnData(absl::Time now, const proto::DataFragment& fragment);
  // What is charged to max_reassembly_bytes now.
  uint64_t ReassemblyHeldBytes() const {
    return (reassembler_ ? reassembler_->held_bytes() : 0) +
           (unreliable_reassembler_ ? unreliable_reassembler_->held_bytes() : 0) +
           channel_held_bytes_;
  }
  void Established(absl::Time now);
  // Closes now for `why`, sending (when `send_close`) its WireCloseCode.
  void CloseNow(absl::Time now, CloseReason why, std::string reason, bool by_peer,
                bool send_close);
  void Emit(Event event);
  void SendHandshake(absl::Time now, DatagramBatch* out);
  // Client: the AEADs its hello offers (0 without encryption).
  uint32_t AeadOffer() const;
  // Whether an end with `options` sends runs to a peer that announced
  // `peer_features`: only when both announce them.
  static bool SendsRuns(const ConnectionOptions& options, uint32_t peer_features);
  // Builds and encodes one packet; false when there was nothing to say.
  // `sendable`: the send queue's HasSendable(), as Poll just asked it;
  // `pacing`: the pacer's rate as Poll read it (PacerRate), updated here
  // when sending may change it.
  bool SendOne(absl::Time now, bool probe, bool keepalive, bool sendable, Pacer::Rate* pacing,
               DatagramBatch* out);
  // A burst of plain data packets: what SendOne would send one by one,
  // decided at once. Poll calls it when the next packet carries only data
  // (no probe, ACK, ping, keepalive, AckFrequency or PATH_RESPONSE due, no
  // ACK to piggyback). It takes one run of the queue's next message for as
  // many packets as the window, the pacer (Pacer::Burst), `most` and the
  // message allow, each packet one frame of as many fragments as fit, then
  // writes them: one question to the queue for the burst instead of one or
  // two per packet, and no per-packet decision about frames it cannot carry.
  // Only where that is SendOne's own outcome: fragment runs negotiated, no
  // lanes (HasLanes), a controller whose window and pacing rate sending
  // cannot change, not a retransmission; it stops before a packet SendOne
  // would give a second frame or a ping (a message's last fragments, the
  // window's edge). Returns the packets sent (0: none, SendOne's turn); the
  // connection may have closed (Encode or RecordSent failing).
  int SendBurst(absl::Time now, const Pacer::Rate& pacing, int most, DatagramBatch* out);
  // SendBurst's decision, changing nothing: the packets SendOne would fill
  // from the queue's offered run `c` (at most `most`) into `*plan`; returns
  // how many of the run's fragments they take (0: none, SendOne's turn).
  struct BurstPlan;
  uint32_t PlanBurst(absl::Time now, const Pacer::Rate& pacing, int most,
                     const OutgoingFragment& c, BurstPlan* plan) const;
  // A packet numbered `number` of `bytes` (sealed) went out: its record
  // (`record` brings the fragments and frames it carried), the peer
  // timeout's start, the controller and the pacer (`*pacing` read again when
  // sending may change it). False: the connection closed (too many packets
  // unacknowledged).
  bool RecordSent(absl::Time now, uint64_t number, size_t bytes, bool eliciting,
                  SentPacket record, Pacer::Rate* pacing);
  // Whether a data packet now would carry an ACK of packets that only
  // carried ACKs (at most once per max(srtt, max_ack_delay)).
  bool PiggybackWanted(absl::Time now) const;
  // Whether a data packet sent with `in_flight` bytes in flight before it
  // asks for an immediate ACK (a ping): the window's edge, one request at a
  // time (see SendOne).
  bool AsksImmediateAck(uint64_t in_flight) const;
  // When a keepalive ping is due (see the class comment).
  absl::Time KeepaliveDeadline() const;
  // How long after the last packet sent that is (the server's grace
  // included): fixed by the options, computed once (absl::Duration division
  // is a 128-bit one, and the deadline is asked for on every datagram).
  static absl::Duration KeepaliveAfter(const ConnectionOptions& options, bool client);
  // `size`, when not 0, is the packet's EncodedSize as SendOne kept it while
  // filling a data packet (proto::Codec::EncodeAppendSized).
  void Encode(absl::Time now, const proto::Packet& packet, DatagramBatch* out, size_t size = 0);
  // The datagram for `packet`: sealed when the connection is encrypted and
  // the packet is numbered, plain otherwise.
  absl::StatusOr<std::string> EncodeDatagram(const proto::Packet& packet);
  // The same datagram appended to `*buffer`; on an error `*buffer` may have
  // grown by bytes the caller cuts off (DatagramBatch::Abandon).
  absl::Status AppendDatagram(const proto::Packet& packet, std::string* buffer, size_t size = 0);
  // The ack-eliciting threshold to ask the peer for now (see
  // ConnectionOptions::max_ack_threshold).
  uint32_t WantedAckThreshold() const;
  // Lost packets: their fragments go back to the queue, the controller hears
  // of the loss.
  void OnLost(absl::Time now, const std::vector<SentPacket>& lost, bool persistent_congestion);
  // Queues an AckFrequency frame for the next packet (which then carries a
  // ping, so the peer acknowledges it at once, and no data) when the wanted
  // threshold differs from the last one asked for, at most once per smoothed
  // RTT, or when the last request was lost.
  void MaybeQueueAckFrequency(absl::Time now);
  // Applies a (smaller) datagram budget before any data is queued.
  void SetBudget(size_t max_datagram);
  // Path MTU discovery: starts it once the peer's announced receive size is
  // known (0: none announced, it stays off); sends a due probe; applies the
  // prober's size to the sender (fragment size of new messages, controller,
  // pacer) without recreating anything.
  void StartPmtud(absl::Time now, uint32_t peer_max_udp_payload);
  void SendMtuProbe(absl::Time now, size_t size, DatagramBatch* out);
  void ApplyPathMtu();
  // Pads a data packet up to the size of the one before it when it is a few
  // bytes shorter (a ping, varint widths, a message's shorter last
  // fragment): the runtime sends a burst as GSO trains, which need datagrams
  // of one size (all but the last), and a packet two bytes short used to cut
  // the train. At most kMaxTrainPadding bytes in a full-size train,
  // kMaxSmallTrainPadding in a smaller one; never past `fill_limit`. A
  // packet with an ACK frame is neither padded nor sets the size. `size`:
  // the packet's encoded size, as SendOne counted it while filling
  // (computing it again was ~3% of a clean-veth sender).
  void PadToTrain(proto::Packet& p, size_t fill_limit, size_t size);
  // The same rule for a packet of `size` bytes: the size to pad it to (0:
  // none), updating `*train_datagram` (train_datagram_ or a plan's copy).
  static size_t TrainPadding(size_t fill_limit, size_t size, size_t* train_datagram);
  // What this side announces it accepts (0 when path MTU discovery is off).
  uint32_t AnnouncedUdpPayload() const;
  size_t SealOverhead() const { return protector_ != nullptr ? proto::kSealedOverhead : 0; }
  // Client: derives the session keys from the server's Accept. On failure
  // `*why` says which close reason it is.
  absl::Status StartProtection(const proto::Accept& accept, CloseReason* why);
  // Client: a Challenge or Close arrived while connecting (see the file
  // comment for the rules with a room key).
  void OnChallenge(absl::Time now, const proto::Challenge& challenge, bool unambiguous,
                   absl::Duration sample);
  void OnHandshakeClose(absl::Time now, const proto::Close& close);
  // Server: how long an accepted connection waits for its confirmation.
  absl::Duration UnconfirmedTimeout() const;
  // Client with a room key: when a wrong-key verdict becomes final.
  absl::Time WrongKeyDeadline() const;
  // The pacer's rate now: the controller's own (BBR) or one derived from
  // its window and the smoothed RTT.
  Pacer::Rate PacerRate() const;

  // Path validation (see the class comment): whether a packet from `from`
  // (not peer()) numbered `number` may be processed, starting or updating a
  // validation; `authenticated` when it opened.
  enum class Admission { kRefuse, kPathOnly, kProcess };
  Admission AdmitFromOtherAddress(absl::Time now, uint64_t number, size_t size,
                                  const udp::SocketAddress& from, bool authenticated);
  // A packet from peer() numbered `number`: abandons a validation it
  // proves stale.
  void OnPacketFromPeer(uint64_t number);
  void OnPathResponse(absl::Time now, const proto::PathResponse& response,
                      const udp::SocketAddress& from);
  void AbandonPath();
  // Everything OnPacket does, for a packet from `from` (admitted).
  void Process(absl::Time now, const proto::Packet& packet, size_t size,
               const udp::SocketAddress& from);
  // Moves to the validated address and restarts the path's estimates.
  void Migrate(absl::Time now);
  // Restarts congestion control, RTT and path MTU for a new path; packets
  // in flight are lost without telling the new controller.
  void ResetPathState(absl::Time now);
  // The datagram size a fresh path starts at (sealed bytes included).
  size_t BaseDatagramSize() const {
    return pmtud_ ? pmtud_->options().base : max_datagram_ + SealOverhead();
  }

  // Our own codec: the endpoint's limits with the negotiated datagram budget.
  proto::Codec codec_;
  ConnectionOptions options_;
  bool client_;
  State state_;
  ConnectionId local_id_;
  ConnectionId peer_id_ = 0;
  udp::SocketAddress peer_;
  size_t max_datagram_;
  size_t max_fragment_payload_;
  // The peer announced kFeatureFragmentRuns and so do we (SendsRuns): data
  // frames may carry runs (SendOne), and fragments are cut to fill a
  // datagram under one frame header (FragmentPayloadFor).
  bool send_runs_ = false;
  const absl::Duration keepalive_after_;  // KeepaliveAfter(options_, client_)
  // The (unsealed) size of the last data packet: see PadToTrain.
  size_t train_datagram_ = 0;

  // Handshake.
  absl::Time started_;
  // Client: what only the handshake needs, from Client() until established
  // or closed (then released: it holds the ephemeral key pair).
  struct ClientHandshake {
    Security security;
    std::string cookie;
    int hello_count = 0;
    absl::Time next_hello = absl::InfinitePast();
    absl::Time last_hello_sent = absl::InfinitePast();
    // With a room key: the first Challenge whose key proof failed (no right
    // one seen since), and the text of the first unauthenticated Close.
    absl::Time wrong_key_since = absl::InfiniteFuture();
    bool key_confirmed = false;
    std::string unauthenticated_close;
    // The fingerprint of the identity the server proved, if any (for the
    // kConnected event).
    std::string server_identity;
  };
  std::unique_ptr<ClientHandshake> handshake_;
  bool accept_due_ = false;
  int accepts_sent_ = 0;
  absl::Time accept_sent_at_ = absl::InfinitePast();
  // Server: the Accept, sent (again) until the client confirms; released
  // then (it holds the handshake's keys and proofs).
  std::unique_ptr<proto::Accept> accept_;
  // Server: the Accept or the latest repeated hello; the unconfirmed timeout
  // counts from it.
  absl::Time client_seen_;

  // Sender.
  uint64_t next_packet_number_;
  SendQueue queue_;
  SentPackets sent_;
  RttEstimator rtt_;
  std::unique_ptr<CongestionController> cc_;
  Pacer pacer_;
  int probes_due_ = 0;
  absl::Time last_sent_;
  absl::Time last_eliciting_sent_ = absl::InfinitePast();
  absl::Time last_progress_;  // last time the peer acknowledged something new
  absl::Time pacing_wakeup_ = absl::InfiniteFuture();  // data waits for the pacer
  // Path MTU discovery (nullopt when off for this connection) and the number
  // of the latest probe sent (0: none). Probes are marked in their
  // SentPacket (mtu_probe): their acks and losses never reach the
  // congestion controller.
  std::optional<PathMtuProber> pmtud_;
  uint64_t last_probe_ = 0;
  // Ack frequency: the latest request (what the peer applies once it
  // acknowledged it: stats_.peer_ack_threshold), whether it must be sent
  // again, and the frame waiting for the next packet.
  uint32_t ack_threshold_requested_ = 2;
  uint64_t ack_frequency_sequence_ = 0;
  bool ack_frequency_lost_ = false;
  std::optional<proto::AckFrequency> ack_frequency_due_;
  // The packet that asked for an immediate ACK at the window edge, until it
  // is acknowledged or lost; 0 when none.
  uint64_t immediate_ack_requested_ = 0;
  absl::Time ack_frequency_sent_ = absl::InfinitePast();

  // Receiver.
  AckTracker acks_;
  // Reliable messages are never expired: their fragments were acknowledged,
  // so the sender will not send them again. Their memory is bounded by the
  // flow-control window and max_reassembly_bytes instead. Unreliable partial
  // messages expire after reassembly_timeout. Each is created for the first
  // fragmented message and dropped once no message is partial (a
  // single-fragment message never needs one): an idle connection holds
  // neither, nor the table of partial messages a peer once filled.
  std::unique_ptr<Reassembler> reassembler_;
  std::unique_ptr<Reassembler> unreliable_reassembler_;
  struct SpaceKey {
    uint32_t channel;
    uint32_t mode;
    friend bool operator==(const SpaceKey& a, const SpaceKey& b) {
      return a.channel == b.channel && a.mode == b.mode;
    }
    template <typename H>
    friend H AbslHashValue(H h, const SpaceKey& k) {
      return H::combine(std::move(h), k.channel, k.mode);
    }
  };
  absl::flat_hash_map<SpaceKey, std::unique_ptr<ReceiveChannel>> channels_;
  // Sum of channels_' held_bytes() (parked messages, numbers delivered
  // ahead); with the reassemblers' held_bytes() it is ReassemblyHeldBytes(),
  // charged to max_reassembly_bytes (see OnData).
  uint64_t channel_held_bytes_ = 0;
  absl::Time last_received_;
  absl::Time next_expire_;

  // Closing.
  bool flush_then_close_ = false;
  bool close_due_ = false;
  std::unique_ptr<proto::Close> close_;  // the Close frame to send, once decided
  CloseReason close_reason_ = CloseReason::kClosedByApplication;
  absl::Time drain_until_ = absl::InfinitePast();

  std::unique_ptr<PacketProtector> protector_;
  uint64_t unauthenticated_ = 0;

  // Path validation: allocated for a trigger (an authenticated packet from
  // another address), released when the endpoint takes its outcome.
  struct PathValidation {
    udp::SocketAddress address;
    uint64_t data = 0;
    uint64_t trigger = 0;  // the packet number that started or renewed it
    absl::Time deadline;
    absl::Time next_send;
    int challenges_sent = 0;
    uint64_t bytes_received = 0;  // from `address`
    uint64_t bytes_sent = 0;      // to `address`
    bool running = true;
    bool blocked = false;  // a challenge waits for amplification budget
    PathOutcome outcome = PathOutcome::kNone;
    udp::SocketAddress moved_from;
  };
  std::unique_ptr<PathValidation> path_;
  // A PATH_CHALLENGE to answer in the next packet.
  std::optional<uint64_t> path_response_due_;
  // A ping to send at once (after OnLocalRebind).
  bool ping_due_ = false;
  // The first packet number sent on the current path: acks and losses of
  // older packets never reach its (fresh) congestion controller.
  uint64_t path_first_number_ = 0;
  uint64_t test_challenge_data_ = 0;

  // Created by the first event and dropped when the events are taken: an
  // idle connection holds no block of it (std::deque allocates at
  // construction).
  std::unique_ptr<std::deque<Event>> events_;
  uint64_t undelivered_bytes_ = 0;
  // What stats() reports that nothing else keeps (the rest is read from
  // the components when asked): half the size of a ConnectionStats.
  struct Counters {
    uint64_t packets_sent = 0;
    uint64_t bytes_sent = 0;
    uint64_t packets_received = 0;
    uint64_t acks_sent = 0;
    uint64_t burst_packets = 0;
    uint64_t bytes_received = 0;
    uint64_t packets_lost = 0;
    uint64_t spurious_losses = 0;
    uint64_t duplicate_packets = 0;
    uint64_t duplicate_messages = 0;
    uint64_t messages_sent = 0;
    uint64_t messages_delivered = 0;
    uint64_t messages_acked = 0;
    uint64_t probes = 0;
    // Cuts of the controllers a path change replaced (a new path starts a
    // new controller; stats() adds the present one's).
    uint64_t congestion_reductions = 0;
    uint64_t refused_packets = 0;
    uint64_t mtu_probes_lost = 0;
    uint64_t mtu_black_holes = 0;
    uint64_t unauthenticated_handshake = 0;
    uint64_t path_challenges = 0;
    uint64_t migrations = 0;
    uint64_t path_validation_failures = 0;
    uint64_t wrong_address = 0;
    uint64_t path_amplification_blocked = 0;
    uint32_t peer_ack_threshold = 2;
  };
  Counters stats_;
  TestHooks hooks_;
};

}  // namespace udpmsg::reliable

#endif  // UDPMSG_RELIABLE_CONNECTION_H_
