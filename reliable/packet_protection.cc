#include "reliable/packet_protection.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace udpmsg::reliable {
namespace {

static_assert(crypto_kx_PUBLICKEYBYTES == kPublicKeyBytes);
static_assert(crypto_kx_SECRETKEYBYTES == kPublicKeyBytes);
static_assert(crypto_kx_SEEDBYTES == kKeySeedBytes);
static_assert(crypto_kx_SESSIONKEYBYTES == kSessionKeyBytes);
static_assert(crypto_aead_chacha20poly1305_ietf_ABYTES == kAeadTagBytes);
static_assert(crypto_aead_chacha20poly1305_ietf_NPUBBYTES == kAeadNonceBytes);
static_assert(crypto_aead_chacha20poly1305_ietf_KEYBYTES == 32);
static_assert(crypto_kdf_KEYBYTES == kSessionKeyBytes);
static_assert(kPskConfirmationBytes >= crypto_generichash_BYTES_MIN);
static_assert(kReplayWindow % 64 == 0);

constexpr char kKeyLabel[] = "udpmsg key v1";
constexpr char kIdentityKeyLabel[] = "udpmsg key v2 es";
constexpr char kKeyConfirmLabel[] = "udpmsg key confirm v1";
constexpr char kKeyConfirmContext[crypto_kdf_CONTEXTBYTES + 1] = "udpmsgkc";
constexpr char kIdentityFileHeader[] = "# udpmsg server identity (X25519 secret key): keep private";
constexpr char kConfirmLabel[] = "udpmsg psk confirm v1";
constexpr char kTranscriptLabel[] = "udpmsg hs v1";
constexpr char kKdfContext[crypto_kdf_CONTEXTBYTES + 1] = "udpmsgpp";
constexpr size_t kMaxKeyFileBytes = 64 << 10;

void EnsureSodium() {
  if (sodium_init() < 0) std::abort();  // no usable randomness: nothing is safe
}

const uint8_t* Bytes(absl::string_view s) { return reinterpret_cast<const uint8_t*>(s.data()); }

void PutBigEndian64(uint64_t v, uint8_t* out) {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<uint8_t>(v);
    v >>= 8;
  }
}

// BLAKE2b-256(key = psk or none, kKeyLabel || key || transcript), in place;
// with a server identity BLAKE2b-256(key = psk or none, kIdentityKeyLabel ||
// key || es || server static public || transcript).
void BindKey(std::array<uint8_t, kSessionKeyBytes>* key, absl::string_view transcript,
             const std::optional<Psk>& psk, const IdentitySecret* es) {
  crypto_generichash_state state;
  crypto_generichash_init(&state, psk.has_value() ? psk->bytes.data() : nullptr,
                          psk.has_value() ? psk->bytes.size() : 0, key->size());
  if (es == nullptr) {
    crypto_generichash_update(&state, reinterpret_cast<const uint8_t*>(kKeyLabel),
                              sizeof(kKeyLabel) - 1);
    crypto_generichash_update(&state, key->data(), key->size());
  } else {
    crypto_generichash_update(&state, reinterpret_cast<const uint8_t*>(kIdentityKeyLabel),
                              sizeof(kIdentityKeyLabel) - 1);
    crypto_generichash_update(&state, key->data(), key->size());
    crypto_generichash_update(&state, es->shared.data(), es->shared.size());
    crypto_generichash_update(&state, es->server_public.data(), es->server_public.size());
  }
  crypto_generichash_update(&state, Bytes(transcript), transcript.size());
  crypto_generichash_final(&state, key->data(), key->size());
  sodium_memzero(&state, sizeof(state));
}

std::string ErrnoText(int err) { return std::strerror(err); }

}  // namespace

// ---------------------------------------------------------------- KeyPair

KeyPair KeyPair::Generate() {
  EnsureSodium();
  KeyPair pair;
  crypto_kx_keypair(pair.public_.data(), pair.secret_.data());
  return pair;
}

KeyPair KeyPair::FromSeed(const Seed& seed) {
  EnsureSodium();
  KeyPair pair;
  crypto_kx_seed_keypair(pair.public_.data(), pair.secret_.data(), seed.data());
  return pair;
}

absl::StatusOr<KeyPair> KeyPair::FromSecretKey(absl::string_view secret) {
  EnsureSodium();
  if (secret.size() != kPublicKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("secret key of ", secret.size(),
                                                   " bytes (expected ", kPublicKeyBytes, ")"));
  }
  KeyPair pair;
  std::memcpy(pair.secret_.data(), secret.data(), pair.secret_.size());
  crypto_scalarmult_base(pair.public_.data(), pair.secret_.data());
  return pair;
}

KeyPair::~KeyPair() { sodium_memzero(secret_.data(), secret_.size()); }

absl::string_view KeyPair::public_key() const {
  return absl::string_view(reinterpret_cast<const char*>(public_.data()), public_.size());
}

Psk::~Psk() { sodium_memzero(bytes.data(), bytes.size()); }

SessionKeys::~SessionKeys() {
  sodium_memzero(rx.data(), rx.size());
  sodium_memzero(tx.data(), tx.size());
}

// ---------------------------------------------------------- key schedule

std::string HandshakeTranscript(absl::string_view client_public,
                                absl::string_view server_public, uint64_t client_connection_id,
                                uint64_t server_connection_id, absl::string_view extra) {
  uint8_t ids[16];
  PutBigEndian64(client_connection_id, ids);
  PutBigEndian64(server_connection_id, ids + 8);
  return absl::StrCat(kTranscriptLabel, client_public, server_public,
                      absl::string_view(reinterpret_cast<const char*>(ids), sizeof(ids)), extra);
}

absl::StatusOr<SessionKeys> DeriveSessionKeys(Role role, const KeyPair& mine,
                                              absl::string_view peer_public,
                                              absl::string_view transcript,
                                              const std::optional<Psk>& psk,
                                              const IdentitySecret* es) {
  EnsureSodium();
  if (peer_public.size() != kPublicKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("peer public key of ", peer_public.size(),
                                                   " bytes (expected ", kPublicKeyBytes, ")"));
  }
  SessionKeys keys;
  const auto* my_public = Bytes(mine.public_key());
  const int rc =
      role == Role::kClient
          ? crypto_kx_client_session_keys(keys.rx.data(), keys.tx.data(), my_public,
                                          mine.secret_key_data(), Bytes(peer_public))
          : crypto_kx_server_session_keys(keys.rx.data(), keys.tx.data(), my_public,
                                          mine.secret_key_data(), Bytes(peer_public));
  if (rc != 0) {
    return absl::InvalidArgumentError("key exchange failed: invalid peer public key");
  }
  BindKey(&keys.rx, transcript, psk, es);
  BindKey(&keys.tx, transcript, psk, es);
  return keys;
}

std::string PskConfirmation(const Psk& psk, absl::string_view transcript, Role role) {
  EnsureSodium();
  crypto_generichash_state state;
  crypto_generichash_init(&state, psk.bytes.data(), psk.bytes.size(), kPskConfirmationBytes);
  crypto_generichash_update(&state, reinterpret_cast<const uint8_t*>(kConfirmLabel),
                            sizeof(kConfirmLabel) - 1);
  const uint8_t role_byte = role == Role::kClient ? 0 : 1;
  crypto_generichash_update(&state, &role_byte, 1);
  crypto_generichash_update(&state, Bytes(transcript), transcript.size());
  std::string mac(kPskConfirmationBytes, '\0');
  crypto_generichash_final(&state, reinterpret_cast<uint8_t*>(mac.data()), mac.size());
  sodium_memzero(&state, sizeof(state));
  return mac;
}

bool VerifyPskConfirmation(const Psk& psk, absl::string_view transcript, Role role,
                           absl::string_view confirmation) {
  if (confirmation.size() != kPskConfirmationBytes) return false;
  const std::string expected = PskConfirmation(psk, transcript, role);
  return sodium_memcmp(expected.data(), confirmation.data(), kPskConfirmationBytes) == 0;
}

// -------------------------------------------------------- Room-key proofs

namespace {

constexpr char kHelloProofLabel[] = "udpmsg hello proof v1";
constexpr char kChallengeProofLabel[] = "udpmsg challenge proof v1";
constexpr char kCloseAuthLabel[] = "udpmsg close v1";
static_assert(kRoomProofBytes >= crypto_generichash_BYTES_MIN);

// BLAKE2b-128(key = psk, label || fields), each field prefixed by its length
// (8 bytes, big-endian) so that field boundaries are unambiguous.
class RoomMac final {
 public:
  RoomMac(const Psk& psk, absl::string_view label) {
    EnsureSodium();
    crypto_generichash_init(&state_, psk.bytes.data(), psk.bytes.size(), kRoomProofBytes);
    crypto_generichash_update(&state_, Bytes(label), label.size());
  }
  ~RoomMac() { sodium_memzero(&state_, sizeof(state_)); }
  RoomMac(const RoomMac&) = delete;
  RoomMac& operator=(const RoomMac&) = delete;

  RoomMac& Field(absl::string_view bytes) {
    uint8_t length[8];
    PutBigEndian64(bytes.size(), length);
    crypto_generichash_update(&state_, length, sizeof(length));
    crypto_generichash_update(&state_, Bytes(bytes), bytes.size());
    return *this;
  }
  RoomMac& Number(uint64_t v) {
    uint8_t be[8];
    PutBigEndian64(v, be);
    crypto_generichash_update(&state_, be, sizeof(be));
    return *this;
  }
  std::string Final() {
    std::string mac(kRoomProofBytes, '\0');
    crypto_generichash_final(&state_, reinterpret_cast<uint8_t*>(mac.data()), mac.size());
    return mac;
  }

 private:
  crypto_generichash_state state_;
};

bool SameMac(const std::string& expected, absl::string_view got) {
  return got.size() == expected.size() &&
         sodium_memcmp(expected.data(), got.data(), expected.size()) == 0;
}

}  // namespace

std::string HelloKeyProof(const Psk& psk, absl::string_view cookie, uint64_t client_connection_id,
                          absl::string_view client_public) {
  return RoomMac(psk, kHelloProofLabel)
      .Field(cookie)
      .Number(client_connection_id)
      .Field(client_public)
      .Final();
}

bool VerifyHelloKeyProof(const Psk& psk, absl::string_view cookie, uint64_t client_connection_id,
                         absl::string_view client_public, absl::string_view proof) {
  if (proof.size() != kRoomProofBytes) return false;
  return SameMac(HelloKeyProof(psk, cookie, client_connection_id, client_public), proof);
}

std::string ChallengeKeyProof(const Psk& psk, absl::string_view cookie,
                              uint64_t client_connection_id) {
  return RoomMac(psk, kChallengeProofLabel).Field(cookie).Number(client_connection_id).Final();
}

bool VerifyChallengeKeyProof(const Psk& psk, absl::string_view cookie,
                             uint64_t client_connection_id, absl::string_view proof) {
  if (proof.size() != kRoomProofBytes) return false;
  return SameMac(ChallengeKeyProof(psk, cookie, client_connection_id), proof);
}

std::string CloseAuth(const Psk& psk, uint64_t client_connection_id, absl::string_view cookie,
                      uint32_t code, absl::string_view reason) {
  return RoomMac(psk, kCloseAuthLabel)
      .Number(client_connection_id)
      .Field(cookie)
      .Number(code)
      .Field(reason)
      .Final();
}

bool VerifyCloseAuth(const Psk& psk, uint64_t client_connection_id, absl::string_view cookie,
                     uint32_t code, absl::string_view reason, absl::string_view auth) {
  if (auth.size() != kRoomProofBytes) return false;
  return SameMac(CloseAuth(psk, client_connection_id, cookie, code, reason), auth);
}

// ------------------------------------------------------ AEAD negotiation

static_assert(crypto_aead_aes256gcm_ABYTES == kAeadTagBytes);
static_assert(crypto_aead_aes256gcm_NPUBBYTES == kAeadNonceBytes);
static_assert(crypto_aead_aes256gcm_KEYBYTES == 32);

namespace {
constexpr char kAeadLabel[] = "udpmsg aead v1";
constexpr char kFeaturesLabel[] = "udpmsg features v1";
constexpr uint32_t Bit(Aead aead) { return static_cast<uint32_t>(aead); }
}  // namespace

uint32_t LocalAeads() {
  EnsureSodium();
  static const uint32_t aeads =
      Bit(Aead::kChaCha20Poly1305) |
      (crypto_aead_aes256gcm_is_available() ? Bit(Aead::kAes256Gcm) : 0);
  return aeads;
}

Aead ChooseAead(uint32_t offer, uint32_t local) {
  if ((offer & local & Bit(Aead::kAes256Gcm)) != 0) return Aead::kAes256Gcm;
  return Aead::kChaCha20Poly1305;
}

const char* AeadName(Aead aead) {
  return aead == Aead::kAes256Gcm ? "aes-256-gcm" : "chacha20-poly1305";
}

namespace {

// label || first (4, big-endian) || second (4, big-endian).
std::string LabelledPair(absl::string_view label, uint32_t first, uint32_t second) {
  uint8_t be[8];
  for (int i = 0; i < 4; ++i) {
    be[i] = static_cast<uint8_t>(first >> (24 - 8 * i));
    be[4 + i] = static_cast<uint8_t>(second >> (24 - 8 * i));
  }
  return absl::StrCat(label, absl::string_view(reinterpret_cast<const char*>(be), 8));
}

}  // namespace

std::string AeadTranscript(uint32_t offer, uint32_t choice) {
  if (offer == 0) return "";
  return LabelledPair(kAeadLabel, offer, choice);
}

std::string FeaturesTranscript(uint32_t hello_features, uint32_t accept_features) {
  if (hello_features == 0 || accept_features == 0) return "";
  return LabelledPair(kFeaturesLabel, hello_features, accept_features);
}

// -------------------------------------------------------- PacketProtector

struct PacketProtector::AesState {
  crypto_aead_aes256gcm_state tx;
  crypto_aead_aes256gcm_state rx;
};

PacketProtector::PacketProtector(const SessionKeys& keys, Aead aead) : aead_(aead) {
  EnsureSodium();
  if (aead_ == Aead::kAes256Gcm && (LocalAeads() & Bit(Aead::kAes256Gcm)) == 0) {
    aead_ = Aead::kChaCha20Poly1305;
  }
  Expand(keys.tx, aead_, &tx_);
  Expand(keys.rx, aead_, &rx_);
  if (aead_ == Aead::kAes256Gcm) {
    aes_ = std::make_unique<AesState>();
    crypto_aead_aes256gcm_beforenm(&aes_->tx, tx_.key.data());
    crypto_aead_aes256gcm_beforenm(&aes_->rx, rx_.key.data());
  }
}

PacketProtector::~PacketProtector() {
  sodium_memzero(&tx_, sizeof(tx_));
  sodium_memzero(&rx_, sizeof(rx_));
  if (aes_ != nullptr) sodium_memzero(aes_.get(), sizeof(AesState));
}

void PacketProtector::Expand(const std::array<uint8_t, kSessionKeyBytes>& session_key,
                             Aead aead, Direction* out) {
  crypto_kdf_derive_from_key(out->key.data(), out->key.size(), aead == Aead::kAes256Gcm ? 3 : 1,
                             kKdfContext, session_key.data());
  uint8_t iv[16];
  crypto_kdf_derive_from_key(iv, sizeof(iv), 2, kKdfContext, session_key.data());
  std::memcpy(out->iv.data(), iv, out->iv.size());
  sodium_memzero(iv, sizeof(iv));
}

std::array<uint8_t, kAeadNonceBytes> PacketProtector::Nonce(const Direction& d,
                                                            uint64_t packet_number) const {
  std::array<uint8_t, kAeadNonceBytes> nonce = d.iv;
  uint8_t pn[8];
  PutBigEndian64(packet_number, pn);
  for (size_t i = 0; i < 8; ++i) nonce[kAeadNonceBytes - 8 + i] ^= pn[i];
  return nonce;
}

absl::StatusOr<std::string> PacketProtector::Seal(uint64_t packet_number,
                                                  absl::string_view header,
                                                  absl::string_view plaintext) {
  std::string datagram;
  datagram.reserve(header.size() + plaintext.size() + kAeadTagBytes);
  datagram.append(header.data(), header.size());
  datagram.append(plaintext.data(), plaintext.size());
  if (absl::Status s = SealInPlace(packet_number, header.size(), &datagram); !s.ok()) return s;
  return datagram.substr(header.size());
}

absl::Status PacketProtector::SealInPlace(uint64_t packet_number, size_t header_bytes,
                                          std::string* datagram, size_t start) {
  if (packet_number >= kMaxProtectedPacketNumber) {
    return absl::FailedPreconditionError(
        absl::StrCat("packet ", packet_number, " beyond the packet number limit"));
  }
  if (largest_sealed_.has_value() && packet_number <= *largest_sealed_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "packet ", packet_number, " not above the largest sealed ", *largest_sealed_,
        " (a nonce is never reused)"));
  }
  start = std::min(start, datagram->size());
  header_bytes = std::min(header_bytes, datagram->size() - start);
  const size_t plain = datagram->size() - start - header_bytes;
  const std::array<uint8_t, kAeadNonceBytes> nonce = Nonce(tx_, packet_number);
  datagram->resize(datagram->size() + kAeadTagBytes);
  auto* bytes = reinterpret_cast<uint8_t*>(datagram->data()) + start;
  uint8_t* text = bytes + header_bytes;
  uint8_t* tag = text + plain;
  unsigned long long tag_len = 0;  // NOLINT(runtime/int): libsodium's type
  if (aead_ == Aead::kAes256Gcm) {
    crypto_aead_aes256gcm_encrypt_detached_afternm(text, tag, &tag_len, text, plain, bytes,
                                                   header_bytes, nullptr, nonce.data(),
                                                   &aes_->tx);
  } else {
    crypto_aead_chacha20poly1305_ietf_encrypt_detached(text, tag, &tag_len, text, plain, bytes,
                                                       header_bytes, nullptr, nonce.data(),
                                                       tx_.key.data());
  }
  largest_sealed_ = packet_number;
  return absl::OkStatus();
}

bool PacketProtector::Seen(uint64_t packet_number) const {
  if (!largest_opened_.has_value() || packet_number > *largest_opened_) return false;
  if (*largest_opened_ - packet_number >= kReplayWindow) return true;  // forgotten
  const uint64_t bit = packet_number % kReplayWindow;
  return (window_[bit / 64] >> (bit % 64)) & 1;
}

void PacketProtector::MarkSeen(uint64_t packet_number) {
  if (!largest_opened_.has_value() || packet_number > *largest_opened_) {
    if (!largest_opened_.has_value() || packet_number - *largest_opened_ >= kReplayWindow) {
      window_.fill(0);
    } else {
      // Forget the numbers the window slides over (they alias the new ones).
      for (uint64_t n = *largest_opened_ + 1; n < packet_number; ++n) {
        const uint64_t bit = n % kReplayWindow;
        window_[bit / 64] &= ~(uint64_t{1} << (bit % 64));
      }
    }
    largest_opened_ = packet_number;
  }
  const uint64_t bit = packet_number % kReplayWindow;
  window_[bit / 64] |= uint64_t{1} << (bit % 64);
}

absl::Status PacketProtector::CheckOpenable(uint64_t packet_number) const {
  if (packet_number >= kMaxProtectedPacketNumber) {
    return absl::InvalidArgumentError(
        absl::StrCat("packet ", packet_number, " beyond the packet number limit"));
  }
  if (largest_opened_.has_value() && packet_number <= *largest_opened_) {
    if (*largest_opened_ - packet_number >= kReplayWindow) {
      return absl::InvalidArgumentError(absl::StrCat("packet ", packet_number, " too old"));
    }
    if (Seen(packet_number)) {
      return absl::InvalidArgumentError(absl::StrCat("replayed packet ", packet_number));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> PacketProtector::Open(uint64_t packet_number,
                                                  absl::string_view header,
                                                  absl::string_view ciphertext) {
  std::string plain;
  if (absl::Status s = OpenInto(packet_number, header, ciphertext, &plain); !s.ok()) return s;
  return plain;
}

absl::Status PacketProtector::OpenInto(uint64_t packet_number, absl::string_view header,
                                       absl::string_view ciphertext, std::string* plain) {
  if (absl::Status s = CheckOpenable(packet_number); !s.ok()) return s;
  if (ciphertext.size() < kAeadTagBytes) {
    return absl::InvalidArgumentError("authentication failed (shorter than a tag)");
  }
  const std::array<uint8_t, kAeadNonceBytes> nonce = Nonce(rx_, packet_number);
  const size_t length = ciphertext.size() - kAeadTagBytes;
  plain->resize(length);
  auto* out = reinterpret_cast<uint8_t*>(plain->data());
  const uint8_t* tag = Bytes(ciphertext) + length;
  const int rc =
      aead_ == Aead::kAes256Gcm
          ? crypto_aead_aes256gcm_decrypt_detached_afternm(out, nullptr, Bytes(ciphertext), length,
                                                           tag, Bytes(header), header.size(),
                                                           nonce.data(), &aes_->rx)
          : crypto_aead_chacha20poly1305_ietf_decrypt_detached(
                out, nullptr, Bytes(ciphertext), length, tag, Bytes(header), header.size(),
                nonce.data(), rx_.key.data());
  if (rc != 0) {
    plain->clear();
    return absl::InvalidArgumentError("authentication failed");
  }
  MarkSeen(packet_number);  // only now: the packet is genuine
  return absl::OkStatus();
}

// -------------------------------------------------------------- key files

namespace {

// Reads a small secret file (a room key or an identity) into `contents`;
// `what` names it in errors ("key file", "identity file").
absl::Status ReadSecretFile(const std::string& path, absl::string_view what,
                            std::string* out) {
  std::string& contents = *out;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    const std::string message = absl::StrCat(what, " ", path, ": ", ErrnoText(err));
    if (err == ENOENT) return absl::NotFoundError(message);
    if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(message);
    return absl::InvalidArgumentError(message);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(what, " ", path, ": ", ErrnoText(err)));
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(what, " ", path, " is a directory"));
  }
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      sodium_memzero(buffer, sizeof(buffer));
      return absl::InvalidArgumentError(
          absl::StrCat(what, " ", path, ": read failed: ", ErrnoText(err)));
    }
    if (n == 0) break;
    contents.append(buffer, static_cast<size_t>(n));
    if (contents.size() > kMaxKeyFileBytes) {
      ::close(fd);
      sodium_memzero(buffer, sizeof(buffer));
      sodium_memzero(contents.data(), contents.size());
      return absl::InvalidArgumentError(
          absl::StrCat(what, " ", path, " is over ", kMaxKeyFileBytes, " bytes"));
    }
  }
  ::close(fd);
  sodium_memzero(buffer, sizeof(buffer));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Psk> ReadKeyFile(const std::string& path) {
  EnsureSodium();
  std::string contents;
  if (absl::Status s = ReadSecretFile(path, "key file", &contents); !s.ok()) return s;

  const absl::string_view text = absl::StripAsciiWhitespace(contents);
  if (text.empty()) {
    sodium_memzero(contents.data(), contents.size());
    return absl::InvalidArgumentError(absl::StrCat("key file ", path, " is empty"));
  }
  Psk psk;
  size_t decoded = 0;
  const bool is_hex = text.size() == 2 * kPskBytes &&
                      sodium_hex2bin(psk.bytes.data(), psk.bytes.size(), text.data(), text.size(),
                                     nullptr, &decoded, nullptr) == 0 &&
                      decoded == kPskBytes;
  if (!is_hex) {
    crypto_generichash(psk.bytes.data(), psk.bytes.size(), Bytes(text), text.size(), nullptr, 0);
  }
  sodium_memzero(contents.data(), contents.size());
  return psk;
}

std::string GenerateKeyFileContents() {
  EnsureSodium();
  uint8_t key[kPskBytes];
  randombytes_buf(key, sizeof(key));
  char hex[2 * kPskBytes + 1];
  sodium_bin2hex(hex, sizeof(hex), key, sizeof(key));
  std::string out = absl::StrCat(absl::string_view(hex, 2 * kPskBytes), "\n");
  sodium_memzero(key, sizeof(key));
  sodium_memzero(hex, sizeof(hex));
  return out;
}

// -------------------------------------------------------- Server identity

static_assert(crypto_scalarmult_BYTES == 32);
static_assert(crypto_scalarmult_SCALARBYTES == kPublicKeyBytes);
static_assert(kKeyConfirmationBytes >= crypto_generichash_BYTES_MIN);
static_assert(kFingerprintDigestBytes >= crypto_generichash_BYTES_MIN);

IdentitySecret::~IdentitySecret() { sodium_memzero(shared.data(), shared.size()); }

absl::StatusOr<IdentitySecret> IdentityExchange(Role role, const KeyPair& mine,
                                                absl::string_view peer_public) {
  EnsureSodium();
  if (peer_public.size() != kPublicKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("peer public key of ", peer_public.size(),
                                                   " bytes (expected ", kPublicKeyBytes, ")"));
  }
  IdentitySecret es;
  // crypto_scalarmult fails (-1) when the result is all zeros: a low-order
  // point, which would make es public.
  if (crypto_scalarmult(es.shared.data(), mine.secret_key_data(), Bytes(peer_public)) != 0) {
    return absl::InvalidArgumentError("identity key exchange failed: invalid public key");
  }
  const absl::string_view server_public =
      role == Role::kClient ? peer_public : mine.public_key();
  std::memcpy(es.server_public.data(), server_public.data(), es.server_public.size());
  return es;
}

std::string ServerKeyConfirmation(const SessionKeys& keys, Role role,
                                  absl::string_view transcript) {
  EnsureSodium();
  const std::array<uint8_t, kSessionKeyBytes>& server_to_client =
      role == Role::kServer ? keys.tx : keys.rx;
  uint8_t mac_key[crypto_generichash_KEYBYTES];
  crypto_kdf_derive_from_key(mac_key, sizeof(mac_key), 3, kKeyConfirmContext,
                             server_to_client.data());
  crypto_generichash_state state;
  crypto_generichash_init(&state, mac_key, sizeof(mac_key), kKeyConfirmationBytes);
  crypto_generichash_update(&state, reinterpret_cast<const uint8_t*>(kKeyConfirmLabel),
                            sizeof(kKeyConfirmLabel) - 1);
  crypto_generichash_update(&state, Bytes(transcript), transcript.size());
  std::string mac(kKeyConfirmationBytes, '\0');
  crypto_generichash_final(&state, reinterpret_cast<uint8_t*>(mac.data()), mac.size());
  sodium_memzero(&state, sizeof(state));
  sodium_memzero(mac_key, sizeof(mac_key));
  return mac;
}

bool VerifyServerKeyConfirmation(const SessionKeys& keys, Role role,
                                 absl::string_view transcript, absl::string_view confirmation) {
  if (confirmation.size() != kKeyConfirmationBytes) return false;
  return SameMac(ServerKeyConfirmation(keys, role, transcript), confirmation);
}

std::string IdentityFingerprint(absl::string_view public_key) {
  if (public_key.empty()) return absl::StrCat(kFingerprintPrefix, "(none)");
  if (public_key.size() != kPublicKeyBytes) return absl::StrCat(kFingerprintPrefix, "(invalid)");
  EnsureSodium();
  uint8_t digest[kFingerprintDigestBytes];
  crypto_generichash(digest, sizeof(digest), Bytes(public_key), public_key.size(), nullptr, 0);
  char hex[2 * kFingerprintDigestBytes + 1];
  sodium_bin2hex(hex, sizeof(hex), digest, sizeof(digest));
  return absl::StrCat(kFingerprintPrefix, absl::string_view(hex, 2 * kFingerprintDigestBytes));
}

absl::StatusOr<std::string> ParseIdentityFingerprint(absl::string_view text) {
  const absl::string_view t = absl::StripAsciiWhitespace(text);
  const absl::string_view prefix(kFingerprintPrefix);
  const bool shaped = absl::StartsWith(t, prefix) &&
                      t.size() == prefix.size() + 2 * kFingerprintDigestBytes &&
                      std::all_of(t.begin() + prefix.size(), t.end(),
                                  [](char c) { return absl::ascii_isxdigit(c); });
  if (!shaped) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", absl::CHexEscape(t.substr(0, 80)), "\" is not a server fingerprint (expected ",
        kFingerprintPrefix, " and ", 2 * kFingerprintDigestBytes,
        " hex digits, as udpmsg keygen --identity prints)"));
  }
  return absl::AsciiStrToLower(t);
}

absl::StatusOr<KeyPair> ReadIdentityFile(const std::string& path) {
  EnsureSodium();
  std::string contents;
  if (absl::Status s = ReadSecretFile(path, "identity file", &contents); !s.ok()) return s;
  std::string hex;
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    const absl::string_view l = absl::StripAsciiWhitespace(line);
    if (l.empty() || l[0] == '#') continue;
    absl::StrAppend(&hex, l);
  }
  sodium_memzero(contents.data(), contents.size());
  uint8_t secret[kPublicKeyBytes];
  size_t decoded = 0;
  const bool ok = hex.size() == 2 * kPublicKeyBytes &&
                  sodium_hex2bin(secret, sizeof(secret), hex.data(), hex.size(), nullptr,
                                 &decoded, nullptr) == 0 &&
                  decoded == kPublicKeyBytes;
  sodium_memzero(hex.data(), hex.size());
  if (!ok) {
    sodium_memzero(secret, sizeof(secret));
    return absl::InvalidArgumentError(
        absl::StrCat("identity file ", path,
                     " does not hold 64 hex digits (make one with udpmsg keygen --identity)"));
  }
  absl::StatusOr<KeyPair> pair =
      KeyPair::FromSecretKey(absl::string_view(reinterpret_cast<const char*>(secret), sizeof(secret)));
  sodium_memzero(secret, sizeof(secret));
  return pair;
}

std::string GenerateIdentityFileContents(std::string* fingerprint) {
  const KeyPair pair = KeyPair::Generate();
  char hex[2 * kPublicKeyBytes + 1];
  sodium_bin2hex(hex, sizeof(hex), pair.secret_key_data(), kPublicKeyBytes);
  const std::string print = IdentityFingerprint(pair.public_key());
  std::string out = absl::StrCat(kIdentityFileHeader, "\n# public: ", print, "\n",
                                 absl::string_view(hex, 2 * kPublicKeyBytes), "\n");
  sodium_memzero(hex, sizeof(hex));
  if (fingerprint != nullptr) *fingerprint = print;
  return out;
}

}  // namespace udpmsg::reliable
