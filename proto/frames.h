// Typed frames: what one udpmsg datagram carries, as plain C++ values.
//
// The reliability core builds and reads these; only the codec (codec.h) knows
// protobuf. A datagram carries exactly one Packet: a header and any number of
// frames. Which frames may be combined:
//
//   handshake packets (connection_id == 0 for a hello):  exactly one of
//       hello, challenge or accept, optionally with close; no data, no ack
//   established packets: optional ack, any number of data fragments,
//       optional ping, optional close (close ends the connection), optional
//       path challenge and path response (never in a handshake packet)
//
// The codec enforces the structural rules (ranges, counts, sizes); the
// connection enforces the state rules (a data frame before the handshake is
// ignored, etc.).
//
// Numbers are 64-bit on the wire (protobuf varints: small numbers stay small)
// and never wrap: a connection closes before a number space reaches
// kMaxSequenceNumber (as QUIC does at 2^62).
#ifndef UDPMSG_PROTO_FRAMES_H_
#define UDPMSG_PROTO_FRAMES_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"

namespace udpmsg::proto {

// The first byte of every datagram. A peer that sees another value drops the
// datagram before parsing.
inline constexpr uint8_t kProtocolVersion = 1;

// Default largest UDP payload we send (fits every IPv6 path: 1280 - 40 - 8,
// with room to spare, as QUIC's 1200).
inline constexpr size_t kDefaultMaxDatagram = 1200;
// Smallest budget the codec accepts: a padded hello must fit.
inline constexpr size_t kMinDatagram = 512;
// UDP payload maximum over IPv6 (65535 - 8); IPv4's is 65507.
inline constexpr size_t kMaxDatagram = 65527;

// Sequence numbers (packet numbers, message sequences) stay below this.
inline constexpr uint64_t kMaxSequenceNumber = uint64_t{1} << 62;

// Delivery modes on the wire (values of reliable::DeliveryMode).
inline constexpr uint32_t kMaxDeliveryMode = 3;

// Features a peer announces it can receive (Hello::features,
// Accept::features); each side uses one only when the other announced it.
// A data frame may carry a run of consecutive fragments (DataFragment::run).
inline constexpr uint32_t kFeatureFragmentRuns = 1;
// The smallest fragment (ceil(total_size / count)) a run may be made of. A
// sender's fragment payload is at least half its base one (reliable/
// connection.cc FragmentPayloadFor: 489 at 1200 bytes, 145 at the smallest
// budget) and a message in two or more fragments is cut into fragments of
// more than half that, so this costs it nothing; a
// run of 1-byte fragments would have the receiver keep (and look up) a
// fragment per byte received when they come out of order.
inline constexpr uint64_t kMinRunFragmentBytes = 128;

// Client's first packet. Sent padded to the full datagram budget so a server
// answering with at most 3x the bytes received can always reply.
struct Hello {
  uint64_t client_connection_id = 0;  // non-zero, chosen by the client
  std::string cookie;                 // empty on the first try
  uint32_t max_datagram = kDefaultMaxDatagram;  // client's budget
  // X25519 public key (kPublicKeyBytes) when the client wants encryption;
  // empty otherwise.
  std::string public_key;
  // With a room key, on a hello that carries a cookie: the proof that the
  // client holds the key (reliable::HelloKeyProof), at most
  // kMaxConfirmationBytes; empty otherwise.
  std::string key_proof;
  // The largest datagram the client accepts (path MTU discovery), in
  // [kMinDatagram, kMaxDatagram]; 0 (absent): max_datagram only.
  uint32_t max_udp_payload = 0;
  // The AEADs the client offers (a bit set of reliable::Aead values) when
  // it encrypts; 0 (older clients): ChaCha20-Poly1305 only.
  uint32_t aead_offer = 0;
  // What the client can receive beyond the base protocol (kFeature* bits);
  // 0 (older clients): none.
  uint32_t features = 0;
};

// Server's stateless answer to a hello without a valid cookie.
struct Challenge {
  uint64_t client_connection_id = 0;
  std::string cookie;  // at most kMaxCookieBytes
  // With a room key: the server's proof that it holds the key
  // (reliable::ChallengeKeyProof), at most kMaxConfirmationBytes.
  std::string key_proof;
};

// Server accepted: from now on the client sends to server_connection_id and
// the server to client_connection_id.
struct Accept {
  uint64_t client_connection_id = 0;
  uint64_t server_connection_id = 0;
  uint32_t max_datagram = kDefaultMaxDatagram;  // server's budget
  uint64_t max_message_bytes = 16 << 20;        // largest message it accepts
  uint32_t window = 4096;                       // messages per reliable space
  // The server's X25519 public key when the connection is encrypted, and,
  // when a pre-shared room key is used, a MAC proving the server has it
  // (at most kMaxConfirmationBytes).
  std::string public_key;
  std::string psk_confirmation;
  // When the server has a long-term identity: its static X25519 public key
  // (kPublicKeyBytes) and reliable::KeyConfirmation from the session keys,
  // proving it holds the static secret (at most kMaxConfirmationBytes).
  std::string server_identity;
  std::string identity_confirmation;
  // The largest datagram the server accepts (path MTU discovery), in
  // [kMinDatagram, kMaxDatagram]; 0 (absent): max_datagram only.
  uint32_t max_udp_payload = 0;
  // The AEAD the server chose from the hello's aead_offer (a
  // reliable::Aead value); 0 when the hello had no offer (or an older server).
  uint32_t aead = 0;
  // What the server can receive beyond the base protocol (kFeature* bits);
  // 0 (older servers): none.
  uint32_t features = 0;
};

// One fragment of one message.
struct DataFragment {
  // User-provided, so that value-initialization (`emplace_back()` in the
  // decoder, once per fragment) runs the member initializers alone: with an
  // implicit constructor it zero-fills all 88 bytes first (a `rep stos`,
  // 1.7% of the veth receiver's samples).
  DataFragment() noexcept {}

  uint32_t channel = 0;
  uint32_t mode = 3;         // a reliable::DeliveryMode value, <= kMaxDeliveryMode
  uint64_t sequence = 0;     // message number within (channel, mode)
  uint32_t index = 0;        // fragment index, < count
  uint32_t count = 1;        // fragments in the message, >= 1
  uint64_t total_size = 0;   // message size in bytes
  // The frame carries fragments [index, index + run) of the message, back
  // to back in the payload: >= 1, index + run <= count. Only to a peer that
  // announced kFeatureFragmentRuns; 1 is not written on the wire.
  uint32_t run = 1;
  std::string payload;
  // When set, the payload's bytes are borrowed from elsewhere instead of
  // held in `payload` (which is then empty): the sender points it into its
  // send queue so that encoding copies nothing first, and Codec::DecodeView
  // into the datagram it decodes. The owner must outlive the fragment.
  std::optional<std::string_view> payload_ref;

  // The fragment's bytes, wherever they are.
  std::string_view bytes() const { return payload_ref ? *payload_ref : std::string_view(payload); }
};

// A range of packet numbers [smallest, largest], both inclusive.
struct AckRange {
  uint64_t smallest = 0;
  uint64_t largest = 0;
  friend bool operator==(const AckRange& a, const AckRange& b) {
    return a.smallest == b.smallest && a.largest == b.largest;
  }
};

// Acknowledges received packets. `ranges` are sorted descending, disjoint and
// not adjacent (a gap of at least one packet between them); ranges[0].largest
// is the largest packet number received. `ack_delay` is how long the receiver
// held the ack after receiving that largest packet.
struct Ack {
  std::vector<AckRange> ranges;
  absl::Duration ack_delay = absl::ZeroDuration();
};

// Asks the peer to acknowledge (keepalive, probe). Carries nothing.
struct Ping {};

// The largest ack-eliciting threshold an AckFrequency frame may ask for.
inline constexpr uint32_t kMaxAckFrequencyThreshold = 64;

// Asks the receiver to acknowledge every `threshold` ack-eliciting packets
// (1..kMaxAckFrequencyThreshold) instead of every second one; out-of-order
// packets are still acknowledged at once. Frames whose `sequence` is not
// above the last applied one are ignored. Ack-eliciting.
struct AckFrequency {
  uint64_t sequence = 0;
  uint32_t threshold = 2;
};

// Path validation (RFC 9000 8.2; reliable/connection.h "Path validation"):
// a challenge carries 8 unpredictable bytes, the answer echoes them. Neither
// is ack-eliciting here (a challenge's packet travels outside the congestion
// window, to an address not validated yet; the answer goes in the next
// packet at once).
struct PathChallenge {
  uint64_t data = 0;
};
struct PathResponse {
  uint64_t data = 0;
};

// Ends the connection. The receiver answers nothing and closes too.
struct Close {
  uint32_t code = 0;   // CloseCode
  std::string reason;  // human-readable, at most kMaxReasonBytes
  // Before the handshake completes, with a room key: a MAC authenticating
  // this close (reliable::CloseAuth), at most kMaxConfirmationBytes.
  std::string auth;
};

enum CloseCode : uint32_t {
  kCloseNormal = 0,
  kCloseIdleTimeout = 1,
  kCloseProtocolError = 2,
  kCloseTooManyRetransmissions = 3,
  kCloseApplication = 4,
  kCloseServerFull = 5,
  kCloseNumberSpaceExhausted = 6,
  // Local only (never sent): the network reported the peer unreachable
  // (ICMP port/host unreachable) while connecting.
  kClosePeerUnreachable = 7,
  // A server refuses a hello whose encryption does not match its own (it
  // encrypts and the client does not, or the other way round). Older peers
  // sent kCloseProtocolError for this; the reason text is the same.
  kCloseEncryptionMismatch = 8,
};
// Applications never see these codes: reliable::CloseReason (and
// udpmsg::CloseReason) map them, see reliable::CloseReasonFromWire.

inline constexpr size_t kMaxCookieBytes = 64;
inline constexpr size_t kPublicKeyBytes = 32;
inline constexpr size_t kMaxConfirmationBytes = 32;

// Sealed (encrypted) datagrams, after an encrypted handshake:
//   kSealedVersion (1 byte) | connection id (8, big-endian) |
//   packet number (8, big-endian) | AEAD(a whole version-1 datagram) + 16-byte tag
// The clear header is the AEAD's associated data.
inline constexpr uint8_t kSealedVersion = 2;
inline constexpr size_t kSealedHeaderBytes = 17;
inline constexpr size_t kSealedOverhead = kSealedHeaderBytes + 16;

// The clear header of a sealed datagram.
struct SealedHeader {
  uint64_t connection_id = 0;
  uint64_t packet_number = 0;
};

// Writes the kSealedHeaderBytes of `h` at `out`.
inline void PutSealedHeader(const SealedHeader& h, char* out) {
  out[0] = static_cast<char>(kSealedVersion);
  for (int i = 0; i < 8; ++i) {
    out[1 + i] = static_cast<char>(h.connection_id >> (56 - 8 * i));
    out[9 + i] = static_cast<char>(h.packet_number >> (56 - 8 * i));
  }
}

inline std::string EncodeSealedHeader(const SealedHeader& h) {
  std::string out(kSealedHeaderBytes, '\0');
  PutSealedHeader(h, out.data());
  return out;
}

// The header of `datagram` if it is long enough to be a sealed datagram and
// starts with kSealedVersion; nullopt otherwise.
inline std::optional<SealedHeader> ParseSealedHeader(std::string_view datagram) {
  if (datagram.size() < kSealedOverhead ||
      static_cast<uint8_t>(datagram[0]) != kSealedVersion) {
    return std::nullopt;
  }
  SealedHeader h;
  for (int i = 0; i < 8; ++i) {
    h.connection_id = (h.connection_id << 8) | static_cast<uint8_t>(datagram[1 + i]);
    h.packet_number = (h.packet_number << 8) | static_cast<uint8_t>(datagram[9 + i]);
  }
  return h;
}
// Punch datagrams: not udpmsg packets, and never answered. A NAT-traversal
// client (apps/rendezvous) sends them from its Host's socket to open its NAT
// toward a peer and to bind a relay: kPunchVersion (1 byte) then at most
// kMaxPunchPayload bytes the receiver interprets (a relay reads a bind token;
// an endpoint ignores the payload). An Endpoint counts each one
// (EndpointStats::punches) and drops it: it is neither malformed nor a
// connection's packet.
inline constexpr uint8_t kPunchVersion = 3;
inline constexpr size_t kMaxPunchPayload = 64;

inline constexpr size_t kMaxReasonBytes = 256;
// At most this many ack ranges in one packet.
inline constexpr size_t kMaxAckRanges = 32;
// At most this many ack ranges in a packet that also carries data: the
// encoder's payload budget (Codec::MaxFragmentPayload) reserves room for an
// ack this large with every number at its longest encoding. Ack-only packets
// may carry up to kMaxAckRanges.
inline constexpr size_t kMaxAckRangesWithData = 8;

// One datagram.
struct Packet {
  // The receiver's connection id: 0 on a hello (the client has no server id
  // yet); on a challenge, the client's id from its hello, echoed back.
  uint64_t connection_id = 0;
  // Never reused within a connection, retransmissions included. Handshake
  // packets carry 0.
  uint64_t packet_number = 0;

  std::optional<Hello> hello;
  std::optional<Challenge> challenge;
  std::optional<Accept> accept;
  std::optional<Ack> ack;
  std::vector<DataFragment> data;
  std::optional<Ping> ping;
  std::optional<Close> close;
  std::optional<AckFrequency> ack_frequency;
  std::optional<PathChallenge> path_challenge;
  std::optional<PathResponse> path_response;

  // Not on the wire: when non-zero, Encode pads the datagram with padding
  // fields to exactly this many bytes (a path MTU probe, a path challenge, a
  // data packet kept at its GSO train's size). A hello is padded to the
  // codec's max_datagram regardless.
  size_t pad_to = 0;

  // Empties the packet, as a fresh one, except that `data` keeps its
  // capacity (Codec::DecodeViewInto reuses one Packet per datagram; building
  // and moving a fresh one would touch every optional frame, strings
  // included). Every field above must be reset here: codec_test and the
  // codec fuzzer decode every frame type into one reused Packet.
  void Clear() {
    connection_id = 0;
    packet_number = 0;
    hello.reset();
    challenge.reset();
    accept.reset();
    ack.reset();
    data.clear();
    ping.reset();
    close.reset();
    ack_frequency.reset();
    path_challenge.reset();
    path_response.reset();
    pad_to = 0;
  }

  // True when the packet asks to be acknowledged (RFC 9002 "ack-eliciting"):
  // anything but a packet with only an ack and/or close.
  bool AckEliciting() const {
    return !data.empty() || ping.has_value() || ack_frequency.has_value();
  }
};

}  // namespace udpmsg::proto

#endif  // UDPMSG_PROTO_FRAMES_H_
