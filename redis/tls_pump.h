// TlsPump: Redis over TLS for hiredis 0.14, which has no TLS of its own.
// It connects to the server over TCP, completes a TLS handshake (OpenSSL:
// TLS 1.2 or later, the server's certificate verified against a CA file or
// the system's store, and its name or address checked), then pumps bytes
// between that TLS session and one end of a local socket pair on a thread
// of its own; hiredis talks plain RESP on the other end (redisConnectFd).
// When either side closes, the pump closes the other, so a lost server
// breaks the hiredis connection like a plain one.
//
// Usage (redis/client.cc):
//   absl::StatusOr<std::unique_ptr<TlsPump>> pump = TlsPump::Open(endpoint, timeout);
//   redisContext* c = redisConnectFd((*pump)->TakeLocalFd());
//   ... // keep the pump as long as the context
//
// Errors: UNAVAILABLE naming HOST:PORT and the reason (the system's for TCP,
// OpenSSL's or the verification result for TLS).
// Threading: Open and the destructor from one thread; the pump's thread
// touches only its own sockets and TLS session.
#ifndef UDPMSG_REDIS_TLS_PUMP_H_
#define UDPMSG_REDIS_TLS_PUMP_H_

#include <memory>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "redis/client.h"

namespace udpmsg::redis {

class TlsPump final {
 public:
  static absl::StatusOr<std::unique_ptr<TlsPump>> Open(const Endpoint& endpoint,
                                                       absl::Duration timeout);
  ~TlsPump();
  TlsPump(const TlsPump&) = delete;
  TlsPump& operator=(const TlsPump&) = delete;

  // The local end for hiredis (once; the caller owns it).
  int TakeLocalFd();

 private:
  TlsPump() = default;
  void Run();

  int tcp_ = -1;
  int inner_ = -1;       // the pump's end of the pair
  int local_ = -1;       // hiredis's end, until taken
  void* ctx_ = nullptr;  // SSL_CTX
  void* ssl_ = nullptr;  // SSL
  std::thread thread_;
};

}  // namespace udpmsg::redis

#endif  // UDPMSG_REDIS_TLS_PUMP_H_
