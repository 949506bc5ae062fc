// Stateless handshake cookies (the idea of DTLS HelloVerifyRequest and QUIC
// Retry tokens).
//
// A server answers a client's first hello with a cookie instead of creating
// state. The cookie is HMAC-SHA-256, keyed by a server secret, over the
// client's address, the client's connection id and the minting time; it
// carries the time in clear. When the hello comes back with the cookie, the
// server recomputes the MAC: a match proves the client can receive at the
// address it claims (no spoofing) within `lifetime`. The secret rotates; the
// previous one stays valid for one more period so no client is cut off at the
// boundary.
//
// Wire form: 8 bytes minting time (milliseconds since the epoch, big-endian)
// followed by 16 bytes of truncated HMAC = 24 bytes.
//
// Usage:
//   CookieJar jar(now);                     // random secret from libsodium
//   std::string cookie = jar.Mint(now, peer_bytes, client_cid);
//   absl::Status ok = jar.Verify(now, peer_bytes, client_cid, cookie);
//
// Not thread-safe. Owns its secrets (wiped on destruction).
#ifndef UDPMSG_RELIABLE_COOKIE_H_
#define UDPMSG_RELIABLE_COOKIE_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace udpmsg::reliable {

class CookieJar final {
 public:
  static constexpr size_t kCookieBytes = 24;
  using Secret = std::array<uint8_t, 32>;

  // A random secret (libsodium's CSPRNG).
  explicit CookieJar(absl::Time now, absl::Duration lifetime = absl::Seconds(10),
                     absl::Duration rotation = absl::Minutes(2));
  // A fixed secret, for deterministic tests.
  CookieJar(absl::Time now, const Secret& secret, absl::Duration lifetime = absl::Seconds(10),
            absl::Duration rotation = absl::Minutes(2));
  ~CookieJar();
  CookieJar(const CookieJar&) = delete;
  CookieJar& operator=(const CookieJar&) = delete;

  std::string Mint(absl::Time now, absl::string_view peer, uint64_t connection_id);

  // OK for a cookie this jar minted for (peer, connection_id) no longer than
  // `lifetime` ago. INVALID_ARGUMENT with the reason otherwise: wrong length,
  // expired, from the future, or forged (MAC mismatch).
  absl::Status Verify(absl::Time now, absl::string_view peer, uint64_t connection_id,
                      absl::string_view cookie);

 private:
  void MaybeRotate(absl::Time now);
  std::array<uint8_t, 16> Mac(const Secret& secret, uint64_t millis, absl::string_view peer,
                              uint64_t connection_id) const;

  absl::Duration lifetime_;
  absl::Duration rotation_;
  absl::Time rotated_at_;
  bool random_ = true;
  Secret current_{};
  Secret previous_{};
};

}  // namespace udpmsg::reliable

#endif  // UDPMSG_RELIABLE_COOKIE_H_
