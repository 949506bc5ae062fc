// Packet protection: optional authenticated encryption of udpmsg datagrams
// (libsodium), the building block a codec/endpoint change wires in.
//
// Pieces, in the order a connection uses them:
//
//   1. KeyPair: an ephemeral X25519 key pair per connection attempt
//      (crypto_kx). Hello carries the client's public key, Accept the
//      server's.
//   2. HandshakeTranscript + DeriveSessionKeys: crypto_kx session keys (one
//      per direction), each then bound to the handshake transcript (both
//      public keys, both connection ids) and, for a chat room, to the room's
//      pre-shared key:
//          key' = BLAKE2b-256(key = psk (or no key), "udpmsg key v1" || key
//                             || transcript)
//      Without a PSK this is opportunistic encryption: it stops passive
//      eavesdroppers, not an active man in the middle. With a PSK, someone
//      without the key can neither read nor inject, nor complete a handshake.
//   3. PskConfirmation / VerifyPskConfirmation: the server puts
//      PskConfirmation(psk, transcript, Role::kServer) in its Accept; the
//      client checks it with VerifyPskConfirmation(psk, transcript,
//      Role::kServer, received) before sending anything sealed, and on false
//      reports "wrong room key" and closes (instead of timing out in
//      silence). The server learns that the client holds the key earlier,
//      before it allocates anything: from the HelloKeyProof in the hello
//      that returns the cookie (see "Room-key proofs" below); after the
//      handshake a sealed packet that does not open is dropped (counted),
//      never answered.
//   4. PacketProtector: an AEAD on every datagram after the handshake,
//      with the clear header as associated data, nonces made from packet
//      numbers, and a 1024-packet replay window. The AEAD is AES-256-GCM
//      when both ends have it in hardware, ChaCha20-Poly1305 (IETF)
//      otherwise (see "AEAD negotiation" below).
//   5. ReadKeyFile / GenerateKeyFileContents: the `--key-file` format.
//
// Usage:
//   KeyPair mine = KeyPair::Generate();
//   ... Hello/Accept exchange public keys and connection ids ...
//   std::string transcript = HandshakeTranscript(client_pk, server_pk,
//                                                client_cid, server_cid);
//   absl::StatusOr<SessionKeys> keys =
//       DeriveSessionKeys(Role::kClient, mine, server_pk, transcript, psk);
//   PacketProtector protector(*keys);
//   absl::StatusOr<std::string> sealed = protector.Seal(pn, header, payload);
//   datagram = header + *sealed;
//   ...
//   absl::StatusOr<std::string> plain = protector.Open(pn, header, sealed);
//
// Wire overhead of a sealed packet: kAeadTagBytes (16) bytes. The nonce is
// not sent: both sides compute it from the packet number, which the caller
// already carries in the clear header.
//
// Threading/ownership: free functions are thread-safe. KeyPair, Psk and
// SessionKeys are values that wipe their secrets on destruction. A
// PacketProtector is not thread-safe (one thread drives a connection), owns
// copies of its keys, and can be neither copied nor moved (a copy could seal
// the same packet number twice); hold it in a std::optional or unique_ptr.
#ifndef UDPMSG_RELIABLE_PACKET_PROTECTION_H_
#define UDPMSG_RELIABLE_PACKET_PROTECTION_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace udpmsg::reliable {

inline constexpr size_t kPublicKeyBytes = 32;    // X25519 public key
inline constexpr size_t kKeySeedBytes = 32;      // crypto_kx_SEEDBYTES
inline constexpr size_t kSessionKeyBytes = 32;   // one direction's key
inline constexpr size_t kPskBytes = 32;          // a room key
inline constexpr size_t kPskConfirmationBytes = 16;
inline constexpr size_t kAeadTagBytes = 16;      // Poly1305 tag
inline constexpr size_t kAeadNonceBytes = 12;    // IETF ChaCha20-Poly1305
// Per-packet bytes Seal adds to the plaintext.
inline constexpr size_t kSealOverheadBytes = kAeadTagBytes;
// Packet numbers the replay window remembers below the largest opened one.
inline constexpr uint64_t kReplayWindow = 1024;
// Seal and Open refuse packet numbers at or above this (QUIC's 2^62, the
// same bound as proto::kMaxSequenceNumber).
inline constexpr uint64_t kMaxProtectedPacketNumber = uint64_t{1} << 62;

// Which side of the handshake we are.
enum class Role { kClient, kServer };

// An ephemeral X25519 key pair (crypto_kx). Copyable value; the secret half
// is wiped on destruction.
class KeyPair final {
 public:
  using Seed = std::array<uint8_t, kKeySeedBytes>;

  // Fresh random key pair (libsodium's CSPRNG).
  static KeyPair Generate();
  // The key pair crypto_kx_seed_keypair derives from `seed`: for
  // deterministic tests only.
  static KeyPair FromSeed(const Seed& seed);
  // The key pair of an X25519 secret key (kPublicKeyBytes bytes): the public
  // half is crypto_scalarmult_base(secret), as crypto_kx_keypair makes it.
  // INVALID_ARGUMENT: `secret` is not kPublicKeyBytes long.
  static absl::StatusOr<KeyPair> FromSecretKey(absl::string_view secret);

  KeyPair(const KeyPair&) = default;
  KeyPair& operator=(const KeyPair&) = default;
  ~KeyPair();

  // kPublicKeyBytes bytes, to send to the peer.
  absl::string_view public_key() const;
  const uint8_t* secret_key_data() const { return secret_.data(); }

 private:
  KeyPair() = default;

  std::array<uint8_t, kPublicKeyBytes> public_{};
  std::array<uint8_t, kPublicKeyBytes> secret_{};
};

// A room's pre-shared key. Wiped on destruction.
struct Psk {
  std::array<uint8_t, kPskBytes> bytes{};

  Psk() = default;
  Psk(const Psk&) = default;
  Psk& operator=(const Psk&) = default;
  ~Psk();
};

// The two directional keys of one connection, after transcript/PSK binding:
// `tx` seals what we send, `rx` opens what we receive. The client's tx equals
// the server's rx and vice versa. Wiped on destruction.
struct SessionKeys {
  std::array<uint8_t, kSessionKeyBytes> rx{};
  std::array<uint8_t, kSessionKeyBytes> tx{};

  SessionKeys() = default;
  SessionKeys(const SessionKeys&) = default;
  SessionKeys& operator=(const SessionKeys&) = default;
  ~SessionKeys();
};

// The canonical handshake transcript both sides pass to DeriveSessionKeys and
// PskConfirmation: "udpmsg hs v1" || client_public (32) || server_public (32)
// || client_connection_id (8, big-endian) || server_connection_id (8,
// big-endian) || extra. `extra` is for handshake parameters that travel in
// clear and must not be tampered with (e.g. the Accept's encoded limits);
// both sides must pass the same bytes.
std::string HandshakeTranscript(absl::string_view client_public,
                                absl::string_view server_public, uint64_t client_connection_id,
                                uint64_t server_connection_id, absl::string_view extra = "");

// Derives this side's SessionKeys from our key pair, the peer's public key,
// the transcript and, for a room, the PSK (see the file comment).
// INVALID_ARGUMENT: `peer_public` is not kPublicKeyBytes long, or the key
//   exchange fails (a low-order point such as all zeros: no shared secret).
struct IdentitySecret;
absl::StatusOr<SessionKeys> DeriveSessionKeys(Role role, const KeyPair& mine,
                                              absl::string_view peer_public,
                                              absl::string_view transcript,
                                              const std::optional<Psk>& psk,
                                              const IdentitySecret* es = nullptr);

// ------------------------------------------------------- Server identity
//
// A server may hold a long-term X25519 key pair (a KeyPair, kept in a file
// `udpmsg keygen --identity FILE` writes). The handshake then follows Noise's
// NK pattern on top of the ephemeral exchange above:
//   - the Accept carries the server's static public key S;
//   - both sides compute es = X25519(client ephemeral, S) (IdentityExchange:
//     the client with its ephemeral secret and S, the server with its static
//     secret and the client's ephemeral public key);
//   - the transcript gets S as its `extra` (HandshakeTranscript), and each
//     session key is derived with es mixed in:
//         key' = BLAKE2b-256(key = psk (or no key), "udpmsg key v2 es" || key
//                            || es || S || transcript)
//     (DeriveSessionKeys with `es`); the label differs from v1's, so keys
//     with and without an identity never coincide;
//   - the Accept carries ServerKeyConfirmation: a MAC under a key derived
//     (crypto_kdf) from the server-to-client session key, over the
//     transcript. Only a server holding S's secret can compute es, hence the
//     session keys, hence the MAC: the client checks it before it sends
//     anything sealed, and a man in the middle that swaps S for its own key
//     changes the transcript, so the MAC fails too.
// A client that pins a fingerprint compares IdentityFingerprint(S) with it
// before anything else (reliable::Connection, CloseReason::
// kServerIdentityMismatch). Without a pin the client still learns S and can
// record it (trust on first use); the server is then authenticated only from
// the second connection on.
inline constexpr size_t kKeyConfirmationBytes = 16;
// Raw bytes of the fingerprint's digest (BLAKE2b-160 of the public key).
inline constexpr size_t kFingerprintDigestBytes = 20;
inline constexpr char kFingerprintPrefix[] = "udpmsg-id:";

// The es Diffie-Hellman output and the server's static public key it was
// made with. Wiped on destruction.
struct IdentitySecret {
  std::array<uint8_t, 32> shared{};
  std::array<uint8_t, kPublicKeyBytes> server_public{};

  IdentitySecret() = default;
  IdentitySecret(const IdentitySecret&) = default;
  IdentitySecret& operator=(const IdentitySecret&) = default;
  ~IdentitySecret();
};

// Client: IdentityExchange(Role::kClient, ephemeral, server_static_public).
// Server: IdentityExchange(Role::kServer, static_identity, client_ephemeral_public).
// Both yield the same IdentitySecret (crypto_scalarmult).
// INVALID_ARGUMENT: `peer_public` is not kPublicKeyBytes long, or a
//   low-order point (the shared secret would be all zeros).
absl::StatusOr<IdentitySecret> IdentityExchange(Role role, const KeyPair& mine,
                                                absl::string_view peer_public);

// The server's proof that it derived `keys` (so that it holds the static
// secret): BLAKE2b-128(key = crypto_kdf subkey 3, context "udpmsgkc", of the
// server-to-client session key, "udpmsg key confirm v1" || transcript).
// `role` is the side holding `keys` (the server's tx key is the client's rx
// key). Verify is constant time and false for a wrong length.
std::string ServerKeyConfirmation(const SessionKeys& keys, Role role,
                                  absl::string_view transcript);
bool VerifyServerKeyConfirmation(const SessionKeys& keys, Role role,
                                 absl::string_view transcript, absl::string_view confirmation);

// "udpmsg-id:" and 40 lowercase hex digits: BLAKE2b-160 of the public key.
// For a wrong-length key, "udpmsg-id:(none)" when empty, else
// "udpmsg-id:(invalid)".
std::string IdentityFingerprint(absl::string_view public_key);
// Accepts what IdentityFingerprint prints (hex in either case, surrounding
// ASCII whitespace ignored) and returns it in canonical form.
// INVALID_ARGUMENT: anything else, with the expected shape in the message.
absl::StatusOr<std::string> ParseIdentityFingerprint(absl::string_view text);

// Reads an identity file: lines starting with '#' are comments; the rest,
// without ASCII whitespace, must be 64 hex digits (the X25519 secret key).
// NOT_FOUND, PERMISSION_DENIED, INVALID_ARGUMENT (a directory, over 64 KiB,
// not 64 hex digits); every message names the path.
absl::StatusOr<KeyPair> ReadIdentityFile(const std::string& path);
// A fresh identity file's contents (a comment line with the fingerprint, then
// the secret key as 64 hex digits), and the new key's fingerprint.
std::string GenerateIdentityFileContents(std::string* fingerprint);

// A kPskConfirmationBytes MAC proving that `role`'s side holds `psk` for this
// transcript: BLAKE2b-128(key = psk, "udpmsg psk confirm v1" || role byte
// (0 client, 1 server) || transcript). It reveals nothing about the key
// beyond what the sealed packets already do (see ReadKeyFile about
// passphrases). Use: the server sends PskConfirmation(psk, transcript,
// Role::kServer) in Accept; the client verifies it as below and, on false,
// fails the connect with "wrong room key".
std::string PskConfirmation(const Psk& psk, absl::string_view transcript, Role role);

// True when `confirmation` equals PskConfirmation(psk, transcript, role).
// Constant time in the contents (sodium_memcmp); false for a wrong length.
bool VerifyPskConfirmation(const Psk& psk, absl::string_view transcript, Role role,
                           absl::string_view confirmation);

// Room-key proofs for the handshake's clear packets (a room key, hence a
// PSK, is configured on both sides). Each is a kRoomProofBytes MAC,
// BLAKE2b-128 keyed with the room key (crypto_generichash), over a label of
// its own (domain separation: a MAC of one kind never verifies as another)
// followed by length-prefixed fields, so that no two inputs share an
// encoding:
//   HelloKeyProof:     "udpmsg hello proof v1" || cookie || client cid ||
//                      client public key.
//       The client holds the key: the server checks it before it allocates a
//       connection or does any X25519. Bound to the cookie (so to the
//       client's address and the time: no replay from elsewhere or later),
//       the client's connection id and its public key (no splicing onto
//       another key exchange). The server's connection id does not exist yet
//       when the hello is sent; the Accept's PskConfirmation binds it.
//   ChallengeKeyProof: "udpmsg challenge proof v1" || cookie || client cid.
//       The server holds the key: a client with another key learns "wrong
//       room key" from the (stateless) Challenge.
//   CloseAuth:         "udpmsg close v1" || client cid || cookie || code ||
//       reason. A close the server sends before the handshake completes
//       (in clear): a keyed client ignores one that does not verify, so
//       nobody without the key can end an attempt or show it a reason.
// Verify* compare in constant time (sodium_memcmp) and are false for a wrong
// length. Thread-safe.
inline constexpr size_t kRoomProofBytes = 16;
std::string HelloKeyProof(const Psk& psk, absl::string_view cookie, uint64_t client_connection_id,
                          absl::string_view client_public);
bool VerifyHelloKeyProof(const Psk& psk, absl::string_view cookie, uint64_t client_connection_id,
                         absl::string_view client_public, absl::string_view proof);
std::string ChallengeKeyProof(const Psk& psk, absl::string_view cookie,
                              uint64_t client_connection_id);
bool VerifyChallengeKeyProof(const Psk& psk, absl::string_view cookie,
                             uint64_t client_connection_id, absl::string_view proof);
std::string CloseAuth(const Psk& psk, uint64_t client_connection_id, absl::string_view cookie,
                      uint32_t code, absl::string_view reason);
bool VerifyCloseAuth(const Psk& psk, uint64_t client_connection_id, absl::string_view cookie,
                     uint32_t code, absl::string_view reason, absl::string_view auth);

// ------------------------------------------------------ AEAD negotiation
//
// The client's Hello lists the AEADs it can run fast (aead_offer, a bit set
// of Aead values: LocalAeads()); the server picks one with ChooseAead and
// names it in its Accept (aead). Both then append AeadTranscript(offer,
// choice) to the handshake transcript's `extra`, so the offer and the
// choice are bound into the session keys, the PSK confirmation and the
// identity confirmation: an attacker who edits either field (to force
// ChaCha20-Poly1305, say) leaves the two ends with different keys, and the
// handshake fails (a keyed or identified server's confirmation does not
// verify; otherwise no sealed packet opens), never silently. Peers that
// predate the fields send neither: no offer (or no choice) means
// ChaCha20-Poly1305 and an unchanged transcript, as before. Stripping both
// fields at once is indistinguishable from two such old peers and yields
// ChaCha20-Poly1305: a loss of speed, not of security (both AEADs take a
// 256-bit key and a 128-bit tag).
enum class Aead : uint32_t {
  kChaCha20Poly1305 = 1,  // crypto_aead_chacha20poly1305_ietf
  kAes256Gcm = 2,         // crypto_aead_aes256gcm (AES-NI + PCLMULQDQ only)
};
// The AEADs this machine runs: ChaCha20-Poly1305 always, AES-256-GCM when
// crypto_aead_aes256gcm_is_available() (libsodium implements it only with
// the AES-NI and CLMUL instructions). A bit set of Aead values.
uint32_t LocalAeads();
// The server's choice for a client's offer: AES-256-GCM when the offer and
// `local` (LocalAeads() by default) both have it, else ChaCha20-Poly1305.
Aead ChooseAead(uint32_t offer, uint32_t local = LocalAeads());
// "chacha20-poly1305" or "aes-256-gcm".
const char* AeadName(Aead aead);
// The transcript bytes that bind a negotiation: empty when `offer` is 0 (an
// old client: no negotiation happened), else "udpmsg aead v1" || offer (4,
// big-endian) || choice (4, big-endian).
std::string AeadTranscript(uint32_t offer, uint32_t choice);

// The transcript bytes that bind the features each end announced
// (Hello::features, Accept::features; proto/frames.h): empty when either is
// 0 (an end that announces none, as older versions: nothing to bind, and
// the transcript stays as theirs), else "udpmsg features v1" || hello (4,
// big-endian) || accept (4, big-endian). Each end appends it after
// AeadTranscript with the hello as it sent or received it and the accept
// as it sent or received it, so an attacker who sets, clears or strips a
// feature bit in either leaves the ends with different keys: a client that
// turned fragment runs off cannot be made to receive them.
std::string FeaturesTranscript(uint32_t hello_features, uint32_t accept_features);

// Seals and opens the packets of one connection, both directions.
//
// AEAD: crypto_aead_chacha20poly1305_ietf, or crypto_aead_aes256gcm (with
// its key schedule precomputed once, crypto_aead_aes256gcm_beforenm) when
// negotiated; both take a 12-byte nonce and add a 16-byte tag, so the wire
// overhead is the same. Each direction's session key is
// expanded with crypto_kdf (context "udpmsgpp") into a 32-byte AEAD key
// (subkey 1 for ChaCha20-Poly1305, subkey 3 for AES-256-GCM) and a 12-byte
// IV (first 12 bytes of subkey 2). The nonce of
// packet number N is the IV with its last 8 bytes XORed with N big-endian
// (QUIC's construction): the first 4 IV bytes are fixed, the rest never
// repeat because a packet number is sealed at most once. The associated data
// is `header`: the clear bytes the caller puts before the ciphertext
// (version, connection id, packet number), so tampering with them fails
// authentication too.
class PacketProtector final {
 public:
  // `aead` must be in LocalAeads() (AES-256-GCM only where available: it
  // falls back to ChaCha20-Poly1305 otherwise, which no peer that negotiated
  // AES can open; Connection never asks for what it did not offer).
  explicit PacketProtector(const SessionKeys& keys, Aead aead = Aead::kChaCha20Poly1305);
  ~PacketProtector();
  PacketProtector(const PacketProtector&) = delete;
  PacketProtector& operator=(const PacketProtector&) = delete;

  // Returns ciphertext || 16-byte tag (plaintext.size() + kSealOverheadBytes
  // bytes); the caller sends header || result.
  // FAILED_PRECONDITION: packet_number >= kMaxProtectedPacketNumber, or not
  //   greater than every number sealed before (packet numbers only grow, so
  //   this refuses reusing a nonce). Nothing is sealed then.
  absl::StatusOr<std::string> Seal(uint64_t packet_number, absl::string_view header,
                                   absl::string_view plaintext);

  // Seal without another buffer: `datagram` holds the clear header (its
  // first `header_bytes` bytes, the associated data) and the plaintext;
  // the plaintext is encrypted where it lies and the tag appended (reserve
  // kAeadTagBytes of capacity to avoid a reallocation). Same results as
  // Seal(packet_number, header, plaintext) appended to the header; on an
  // error `datagram` is unchanged. With `start`, the datagram is the bytes
  // of `*datagram` from `start` to its end (the last of a batch written
  // back to back); the ones before it stay as they are.
  absl::Status SealInPlace(uint64_t packet_number, size_t header_bytes, std::string* datagram,
                           size_t start = 0);

  // Authenticates and decrypts what Seal produced. INVALID_ARGUMENT:
  //   "packet N beyond the packet number limit" (N >= 2^62),
  //   "packet N too old" (more than kReplayWindow - 1 below the largest
  //     opened number), "replayed packet N" (already opened),
  //   "authentication failed" (wrong key, wrong header or packet number, any
  //     flipped bit, or shorter than a tag).
  // The replay window advances only after the tag verifies: a rejected
  // packet changes nothing. Never crashes on any input.
  absl::StatusOr<std::string> Open(uint64_t packet_number, absl::string_view header,
                                   absl::string_view ciphertext);
  // As Open, decrypting into `*plain` (resized; a buffer the caller reuses,
  // so opening allocates nothing once it has grown). Same errors; `*plain`
  // holds nothing meaningful after one.
  absl::Status OpenInto(uint64_t packet_number, absl::string_view header,
                        absl::string_view ciphertext, std::string* plain);

  Aead aead() const { return aead_; }

  // Largest packet number opened so far, if any.
  std::optional<uint64_t> largest_opened() const { return largest_opened_; }
  // Largest packet number sealed so far, if any.
  std::optional<uint64_t> largest_sealed() const { return largest_sealed_; }

 private:
  struct Direction {
    std::array<uint8_t, 32> key{};
    std::array<uint8_t, kAeadNonceBytes> iv{};
  };
  struct AesState;  // crypto_aead_aes256gcm_state, both directions
  static void Expand(const std::array<uint8_t, kSessionKeyBytes>& session_key, Aead aead,
                     Direction* out);
  // Checks the number against the limit and the replay window.
  absl::Status CheckOpenable(uint64_t packet_number) const;
  std::array<uint8_t, kAeadNonceBytes> Nonce(const Direction& d, uint64_t packet_number) const;
  bool Seen(uint64_t packet_number) const;
  void MarkSeen(uint64_t packet_number);

  Aead aead_;
  Direction tx_;
  Direction rx_;
  std::unique_ptr<AesState> aes_;  // the expanded AES keys, when aead_ is AES
  std::optional<uint64_t> largest_sealed_;
  std::optional<uint64_t> largest_opened_;
  // Bit (n % kReplayWindow) is set when n was opened, for n in
  // (largest_opened_ - kReplayWindow, largest_opened_].
  std::array<uint64_t, kReplayWindow / 64> window_{};
};

// Reads a `--key-file`. After removing leading and trailing ASCII whitespace,
// the contents are either
//   - exactly 64 hex digits (either case): the 32 key bytes themselves, as
//     GenerateKeyFileContents writes; or
//   - any other text (a passphrase): the key is BLAKE2b-256 of that text
//     (crypto_generichash, no key, 32-byte output).
// A passphrase can be guessed offline by anyone who records a handshake;
// prefer generated keys.
// NOT_FOUND: no such file. PERMISSION_DENIED: not readable.
// INVALID_ARGUMENT: a directory, empty (or only whitespace), over 64 KiB.
// Every message names the path.
absl::StatusOr<Psk> ReadKeyFile(const std::string& path);

// 32 random bytes as 64 lowercase hex digits and a newline.
std::string GenerateKeyFileContents();

}  // namespace udpmsg::reliable

#endif  // UDPMSG_RELIABLE_PACKET_PROTECTION_H_
