#include "apps/transfer/sha256.h"

#include <sodium.h>

#include <string>

#include "absl/strings/string_view.h"

namespace udpmsg::transfer {

Sha256::Sha256() {
  // Idempotent and cheap after the first call; SHA-256 needs no more.
  static const bool initialised = sodium_init() >= 0;
  (void)initialised;
  crypto_hash_sha256_init(&state_);
}

void Sha256::Update(absl::string_view data) {
  crypto_hash_sha256_update(&state_, reinterpret_cast<const unsigned char*>(data.data()),
                            data.size());
}

std::string Sha256::Final() {
  unsigned char out[kSha256Bytes];
  crypto_hash_sha256_final(&state_, out);
  return std::string(reinterpret_cast<char*>(out), sizeof(out));
}

std::string Sha256::Of(absl::string_view data) {
  Sha256 sha;
  sha.Update(data);
  return sha.Final();
}

}  // namespace udpmsg::transfer
