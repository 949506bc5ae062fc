// udpmsg options: everything a Host is configured with, checked by
// Validate() before anything is created.
//
// HostOptions is a plain struct with working defaults (a client bound to
// [::]:0, NewReno, 1200-byte datagrams, 30 s idle timeout). A server sets
// `accept_incoming` and a known port. Every numeric field has a documented
// range; Validate() returns INVALID_ARGUMENT naming the first field outside
// its range and the range itself, e.g.
//   "HostOptions.max_datagram 100 outside [512, 65507]".
// Host::Create calls Validate(), so a bad value never reaches the network.
//
// Usage:
//   udpmsg::HostOptions options;
//   options.bind = udpmsg::SocketAddress::Any(udpmsg::AddressFamily::kIpv6, 9000);
//   options.accept_incoming = true;
//   absl::StatusOr<udpmsg::CongestionControl> cc = udpmsg::ParseCongestionControl(flag);
//   if (!cc.ok()) return cc.status();          // "unknown congestion controller ..."
//   options.congestion_control = *cc;
//   if (absl::Status s = options.Validate(); !s.ok()) return s;
//
// Also here: the delivery modes (how a message is delivered) and room keys
// (pre-shared keys for encrypted rooms), re-exported from the core.
//
// Threading: values; the functions are thread-safe.
#ifndef UDPMSG_UDPMSG_OPTIONS_H_
#define UDPMSG_UDPMSG_OPTIONS_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "proto/frames.h"
#include "reliable/connection.h"
#include "reliable/delivery.h"
#include "reliable/packet_protection.h"
#include "udpmsg/address.h"

namespace udpmsg {

// How a message is delivered (per channel and mode, each its own sequence):
//   kUnreliable           when complete, in arrival order, may be lost
//   kUnreliableSequenced  only if newer than every one delivered before
//   kReliableUnordered    exactly once, as soon as complete
//   kReliableOrdered      exactly once, in the order sent
using reliable::DeliveryMode;
// "reliable-ordered", ...
inline absl::string_view DeliveryModeName(DeliveryMode mode) { return reliable::ModeName(mode); }

// The congestion controller: kNewReno (RFC 9002, the default) or kBbr
// (rate-based, keeps its rate through random loss).
using reliable::CongestionControl;
// "newreno" / "bbr".
using reliable::CongestionControlName;
// The controller named `name` (case-insensitive); INVALID_ARGUMENT listing
// the valid names otherwise. Never falls back to a default.
using reliable::ParseCongestionControl;

// A room's pre-shared key (32 bytes, wiped on destruction): only peers
// holding the same key can connect. Read one from a key file with
// ReadRoomKeyFile; make a file's contents with GenerateRoomKeyFileContents.
using RoomKey = reliable::Psk;
// NOT_FOUND, PERMISSION_DENIED, INVALID_ARGUMENT (empty, a directory, over
// 64 KiB); each message names the path. See reliable/packet_protection.h for
// the format (64 hex digits, or a passphrase hashed with BLAKE2b).
inline absl::StatusOr<RoomKey> ReadRoomKeyFile(const std::string& path) {
  return reliable::ReadKeyFile(path);
}
// 64 random hex digits and a newline.
inline std::string GenerateRoomKeyFileContents() { return reliable::GenerateKeyFileContents(); }

// A server's long-term identity: an X25519 key pair (secret wiped on
// destruction). Clients pin its fingerprint, "udpmsg-id:" and 40 hex digits
// (ServerFingerprint). See reliable/packet_protection.h, "Server identity".
using ServerIdentity = reliable::KeyPair;
// NOT_FOUND, PERMISSION_DENIED, INVALID_ARGUMENT (a directory, over 64 KiB,
// not 64 hex digits); each message names the path.
inline absl::StatusOr<ServerIdentity> ReadServerIdentityFile(const std::string& path) {
  return reliable::ReadIdentityFile(path);
}
// A new identity file's contents; `fingerprint` gets its fingerprint.
inline std::string GenerateServerIdentityFileContents(std::string* fingerprint) {
  return reliable::GenerateIdentityFileContents(fingerprint);
}
// The fingerprint of an identity (of its public key).
inline std::string ServerFingerprint(const ServerIdentity& identity) {
  return reliable::IdentityFingerprint(identity.public_key());
}
// The canonical form of a fingerprint a user typed; INVALID_ARGUMENT
// otherwise.
inline absl::StatusOr<std::string> ParseServerFingerprint(absl::string_view text) {
  return reliable::ParseIdentityFingerprint(text);
}

// The largest datagram budget HostOptions accepts: the IPv4 UDP payload
// maximum (65535 - 20 - 8), so the value works on every socket.
inline constexpr size_t kMaxDatagram = 65507;
using proto::kDefaultMaxDatagram;  // 1200
using proto::kMinDatagram;         // 512

struct HostOptions {
  // ---- The host ----
  // Local address; [::]:0 (any port, IPv4 and IPv6) by default.
  SocketAddress bind = SocketAddress::Any(AddressFamily::kIpv6, 0);
  // Accept incoming connections (a server). Any host may Connect().
  bool accept_incoming = false;
  // Connections at once, incoming and outgoing: [1, 1048576]. A server's
  // accepted connections count from the client's confirmation (its first
  // packet after the Accept); a closed one stops counting at once.
  size_t max_connections = 1024;
  // Handshake budgets of a server (see reliable/endpoint.h):
  // Accepted connections not yet confirmed by the client, apart from
  // max_connections (a new one beyond it replaces the oldest): [1, 1048576].
  size_t max_unconfirmed_connections = 64;
  // How long an accepted connection waits for its confirmation (at least
  // three initial probe timeouts; a repeated hello restarts it): (0, 24h].
  absl::Duration unconfirmed_timeout = absl::Seconds(10);
  // Open incoming connections per IPv4 address or IPv6 /64 (an IPv4-mapped
  // address counts as IPv4); a hello beyond it gets CloseReason::kServerFull
  // "too many connections from ...": [1, 1048576].
  size_t max_connections_per_address = 64;
  // SO_RCVBUF / SO_SNDBUF requested; 0 keeps the system's: [0, 1 GiB].
  int socket_buffer_bytes = 4 << 20;
  // How long a server's handshake cookie stays valid: (0, 1h].
  absl::Duration cookie_lifetime = absl::Seconds(10);

  // ---- Security ----
  // Encrypt every connection (X25519 handshake; AES-256-GCM where both
  // CPUs have it, ChaCha20-Poly1305 otherwise). Both sides must agree: a
  // mismatch closes with CloseReason::kEncryptionMismatch.
  bool encrypt = false;
  // A room key (implies encrypt): peers without the same key are refused
  // (CloseReason::kWrongRoomKey). A server checks the client's proof of the
  // key before it allocates anything, and a client ignores a close that
  // arrives before the handshake completes unless it is authenticated with
  // the key.
  std::optional<RoomKey> room_key;
  // Server: a long-term identity (implies encrypt). Each Accept carries its
  // public key and proves the host holds the secret; clients see the
  // fingerprint in Event::server_identity.
  std::optional<ServerIdentity> identity;
  // Client: the fingerprint (ParseServerFingerprint form) every server this
  // host connects to must prove (implies encrypt). Another identity, or
  // none, closes the attempt with CloseReason::kServerIdentityMismatch
  // naming both fingerprints, before anything encrypted is sent.
  std::optional<std::string> server_pin;

  // ---- Every connection ----
  // Largest datagram sent: [kMinDatagram (512), kMaxDatagram (65507)]. The
  // peer's budget can only lower it.
  size_t max_datagram = kDefaultMaxDatagram;
  // Path MTU discovery (RFC 8899): every connection starts at max_datagram
  // and probes larger datagrams up to what both sides accept (16 KiB by
  // default), settling at what the path carries (1472 bytes on a 1500-byte
  // Ethernet path) and falling back on a black hole. Off: max_datagram only.
  bool path_mtu_discovery = true;
  // Ack frequency: the largest number of packets the peer may wait for
  // before acknowledging (the sender asks for one ACK per quarter window,
  // one per packet while the window is under 8 packets): [2, 64]; 2 turns
  // the requests off (every second packet, whatever the window).
  uint32_t max_ack_threshold = 32;
  // Largest message sent or accepted: [1, 256 MiB].
  uint64_t max_message_bytes = 16 << 20;
  // Reliable messages in flight per (channel, mode): [1, 65536].
  uint32_t window = 4096;
  // Bytes queued by Send and not yet acknowledged (Send returns
  // RESOURCE_EXHAUSTED beyond it): [1, 16 GiB]. A channel made more urgent
  // than queued data (Host::SetChannelPriority) may add up to 1/8 more.
  uint64_t max_queued_bytes = 64 << 20;
  // Bytes of partly received or out-of-order messages held: [1, 16 GiB].
  uint64_t max_reassembly_bytes = 64 << 20;
  // Bytes of delivered messages waiting for Poll before the sender is
  // stalled: [1, 16 GiB].
  uint64_t max_undelivered_bytes = 64 << 20;
  // Channel ids accepted are [0, max_channels); max_channels in [1, 65536].
  uint32_t max_channels = 256;
  // Durations, each in (0, 24h]:
  absl::Duration idle_timeout = absl::Seconds(30);       // nothing received
  absl::Duration keepalive = absl::Seconds(5);           // ping after silence
  absl::Duration handshake_timeout = absl::Seconds(20);  // connecting
  absl::Duration peer_timeout = absl::Seconds(10);       // nothing acknowledged
  absl::Duration reassembly_timeout = absl::Seconds(30); // unreliable partials
  // Consecutive unanswered probes before giving up: [1, 100]. The probe
  // interval stops doubling at peer_timeout / 8, so with the defaults the
  // peer timeout decides first.
  int max_probes = 16;
  // Longest a receiver delays an acknowledgement: [0, 1s].
  absl::Duration max_ack_delay = absl::Milliseconds(25);
  // RTT assumed before the first sample: [1ms, 60s].
  absl::Duration initial_rtt = absl::Milliseconds(333);
  CongestionControl congestion_control = CongestionControl::kNewReno;
  // Spread packets over the RTT instead of sending bursts.
  bool pacing = true;

  // OK, or INVALID_ARGUMENT naming the first field out of range, its value
  // and the allowed range.
  absl::Status Validate() const;
};

}  // namespace udpmsg

#endif  // UDPMSG_UDPMSG_OPTIONS_H_
