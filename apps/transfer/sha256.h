// Sha256: incremental SHA-256 (libsodium's crypto_hash_sha256), the digest
// the transfer protocol carries in End and the receiver checks.
//
//   Sha256 sha;
//   sha.Update("hello ");
//   sha.Update("world");
//   std::string digest = sha.Final();  // 32 raw bytes
//
// Copyable (the state is plain data). Thread-compatible. Final() ends the
// object's use: Update() after it starts nothing new.
#ifndef UDPMSG_APPS_TRANSFER_SHA256_H_
#define UDPMSG_APPS_TRANSFER_SHA256_H_

#include <sodium.h>

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace udpmsg::transfer {

inline constexpr size_t kSha256Bytes = crypto_hash_sha256_BYTES;  // 32

class Sha256 final {
 public:
  Sha256();
  void Update(absl::string_view data);
  // The 32-byte digest of everything passed to Update().
  std::string Final();

  // The digest of `data` in one call.
  static std::string Of(absl::string_view data);

 private:
  crypto_hash_sha256_state state_;
};

}  // namespace udpmsg::transfer

#endif  // UDPMSG_APPS_TRANSFER_SHA256_H_
