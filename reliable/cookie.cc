#include "reliable/cookie.h"

#include <sodium.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace udpmsg::reliable {
namespace {

void PutBigEndian64(uint64_t v, uint8_t* out) {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<uint8_t>(v);
    v >>= 8;
  }
}

uint64_t GetBigEndian64(const uint8_t* in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | in[i];
  return v;
}

}  // namespace

CookieJar::CookieJar(absl::Time now, absl::Duration lifetime, absl::Duration rotation)
    : lifetime_(lifetime), rotation_(rotation), rotated_at_(now) {
  if (sodium_init() < 0) std::abort();  // no usable randomness: nothing is safe
  randombytes_buf(current_.data(), current_.size());
  previous_ = current_;
}

CookieJar::CookieJar(absl::Time now, const Secret& secret, absl::Duration lifetime,
                     absl::Duration rotation)
    : lifetime_(lifetime), rotation_(rotation), rotated_at_(now), random_(false),
      current_(secret), previous_(secret) {}

CookieJar::~CookieJar() {
  sodium_memzero(current_.data(), current_.size());
  sodium_memzero(previous_.data(), previous_.size());
}

void CookieJar::MaybeRotate(absl::Time now) {
  if (now - rotated_at_ < rotation_) return;
  previous_ = current_;
  if (random_) {
    randombytes_buf(current_.data(), current_.size());
  } else {
    // Deterministic jars derive the next secret from the current one.
    crypto_hash_sha256(current_.data(), previous_.data(), previous_.size());
  }
  rotated_at_ = now;
}

std::array<uint8_t, 16> CookieJar::Mac(const Secret& secret, uint64_t millis,
                                       absl::string_view peer, uint64_t connection_id) const {
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(&state, secret.data(), secret.size());
  uint8_t fixed[16];
  PutBigEndian64(millis, fixed);
  PutBigEndian64(connection_id, fixed + 8);
  crypto_auth_hmacsha256_update(&state, fixed, sizeof(fixed));
  crypto_auth_hmacsha256_update(&state, reinterpret_cast<const uint8_t*>(peer.data()),
                                peer.size());
  uint8_t full[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_final(&state, full);
  std::array<uint8_t, 16> out;
  std::memcpy(out.data(), full, out.size());
  return out;
}

std::string CookieJar::Mint(absl::Time now, absl::string_view peer, uint64_t connection_id) {
  MaybeRotate(now);
  const uint64_t millis = static_cast<uint64_t>(absl::ToUnixMillis(now));
  std::string cookie(kCookieBytes, '\0');
  auto* out = reinterpret_cast<uint8_t*>(cookie.data());
  PutBigEndian64(millis, out);
  const std::array<uint8_t, 16> mac = Mac(current_, millis, peer, connection_id);
  std::memcpy(out + 8, mac.data(), mac.size());
  return cookie;
}

absl::Status CookieJar::Verify(absl::Time now, absl::string_view peer, uint64_t connection_id,
                               absl::string_view cookie) {
  MaybeRotate(now);
  if (cookie.size() != kCookieBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("cookie of ", cookie.size(), " bytes (expected ", kCookieBytes, ")"));
  }
  const auto* in = reinterpret_cast<const uint8_t*>(cookie.data());
  const uint64_t millis = GetBigEndian64(in);
  const absl::Time minted = absl::FromUnixMillis(static_cast<int64_t>(millis));
  if (minted > now + absl::Seconds(1)) return absl::InvalidArgumentError("cookie from the future");
  if (now - minted > lifetime_) return absl::InvalidArgumentError("cookie expired");
  for (const Secret* secret : {&current_, &previous_}) {
    const std::array<uint8_t, 16> mac = Mac(*secret, millis, peer, connection_id);
    if (sodium_memcmp(mac.data(), in + 8, mac.size()) == 0) return absl::OkStatus();
  }
  return absl::InvalidArgumentError("cookie forged or for another address");
}

}  // namespace udpmsg::reliable
