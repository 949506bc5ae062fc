// redis::Connection: a small synchronous Redis client over hiredis (Debian's
// libhiredis 0.14), for the chat room that spans servers (apps/chat/
// redis_room.h). One TCP connection, one command (or one pipeline) at a
// time, every read and write bounded by a timeout; replies are copied into
// plain values (Reply) so hiredis types never leave this library.
//
// Usage:
//   absl::StatusOr<redis::Url> url = redis::ParseUrl("redis://:secret@127.0.0.1:6379/lobby");
//   absl::StatusOr<std::unique_ptr<redis::Connection>> c =
//       redis::Connection::Connect(url->endpoint, absl::Seconds(1));
//   absl::StatusOr<redis::Reply> r = (*c)->Command({"INCR", "counter"});
//   // r->type == Reply::Type::kInteger, r->integer == 1
//
// Errors: Connect and Command return UNAVAILABLE for a connection that
// cannot be made or broke (the text names HOST:PORT and the system's
// reason, e.g. "Connection refused"); after one, broken() is true and every
// later call fails at once: make a new Connection. A Redis error reply
// (-ERR ...) is not a failed call: it is a Reply of type kError. A refused
// AUTH is PERMISSION_DENIED from Connect (with Redis's text, never the
// password). INVALID_ARGUMENT, which leaves a Connection usable, is for an
// empty command, an endpoint without a host or with a port outside
// 1..65535, and a timeout that is not positive and finite (at most a year).
//
// Timeouts: hiredis's connect timeout bounds only the TCP connect; Connect
// then sets the same timeout on every read and write (SO_RCVTIMEO and
// SO_SNDTIMEO), so a reply that does not come in time is UNAVAILABLE
// "... timed out after 1s" and breaks the Connection (the reply may still
// be on its way: the stream is out of step).
//
// SIGPIPE: hiredis writes with write(2); while a call writes, SIGPIPE is
// blocked in the calling thread and one the write raised is discarded, so a
// server that reset the connection is an EPIPE error, not the end of the
// process.
//
// TLS (rediss://, Endpoint::tls): hiredis 0.14 has none, so the connection
// runs through a TlsPump (redis/tls_pump.h): OpenSSL on the TCP side, a
// local socket pair to hiredis, one thread per TLS connection. A failed
// verification is UNAVAILABLE naming the reason ("certificate verify
// failed", "self-signed certificate", ...).
//
// Threading: a Connection is used by one thread at a time.
#ifndef UDPMSG_REDIS_CLIENT_H_
#define UDPMSG_REDIS_CLIENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

struct redisContext;

namespace udpmsg::redis {

class TlsPump;

struct Endpoint {
  std::string host;  // a name or an address (IPv6 without brackets)
  int port = 6379;
  std::string username;  // Redis 6 ACL user; empty: AUTH with the password only
  std::string password;  // empty: no AUTH
  // TLS (rediss://): the server's certificate is verified against
  // tls_ca_file (PEM; empty: the system's store) and must name `host` (a
  // DNS name, or an IP address in its subjectAltName); tls_cert_file and
  // tls_key_file (PEM) give a client certificate when the server asks.
  bool tls = false;
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string ToString() const;  // HOST:PORT ([HOST]:PORT for IPv6), no password
};

// redis://[[USER]:PASSWORD@]HOST[:PORT][/PATH]: PATH (without the leading
// '/') is the rest; percent-escapes in USER and PASSWORD are decoded.
// The scheme is case-insensitive; PORT defaults to 6379; an IPv6 HOST goes
// in brackets (redis://[::1]:6379/room, host "::1"). Credentials need the
// ':' (redis://:PASSWORD@HOST or redis://USER:PASSWORD@HOST); an empty
// PASSWORD after it is refused.
struct Url {
  Endpoint endpoint;
  std::string path;
};
// rediss://... is the same with Endpoint::tls set.
// INVALID_ARGUMENT naming what is wrong (not redis:// or rediss://, no
// host, a bad port). Messages never repeat the
// URL, which may hold a password.
absl::StatusOr<Url> ParseUrl(absl::string_view url);

struct Reply {
  enum class Type { kNil, kInteger, kString, kStatus, kError, kArray };
  Type type = Type::kNil;
  int64_t integer = 0;          // kInteger
  std::string str;              // kString, kStatus, kError
  std::vector<Reply> elements;  // kArray
  bool is_error() const { return type == Type::kError; }
};

class Connection final {
 public:
  // Connects (and AUTHs when the endpoint has a password) within `timeout`,
  // which then bounds every later read and write too.
  static absl::StatusOr<std::unique_ptr<Connection>> Connect(const Endpoint& endpoint,
                                                             absl::Duration timeout);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Sends one command (binary-safe arguments) and reads its reply.
  absl::StatusOr<Reply> Command(const std::vector<std::string>& argv);
  // Sends every command, then reads their replies, in order (one round trip).
  // An error reply answers its own command only; an I/O error breaks the
  // Connection and the replies read before it are lost.
  absl::StatusOr<std::vector<Reply>> Pipeline(
      const std::vector<std::vector<std::string>>& commands);
  // Bounds later reads and writes (e.g. longer than an XREAD BLOCK).
  absl::Status SetTimeout(absl::Duration timeout);

  bool broken() const { return broken_; }
  const Endpoint& endpoint() const { return endpoint_; }

 private:
  Connection(const Endpoint& endpoint, redisContext* context);
  // Marks the Connection broken after hiredis failed `doing`; the
  // UNAVAILABLE status that says why.
  absl::Status Broke(absl::string_view doing);
  // UNAVAILABLE (with the first failure) once broken.
  absl::Status CheckUsable() const;

  Endpoint endpoint_;
  std::unique_ptr<TlsPump> tls_;  // rediss://: outlives context_ (declared first)
  redisContext* context_;         // owned; redisFree'd by the destructor
  absl::Duration timeout_;
  bool broken_ = false;
  std::string broken_reason_;
};

}  // namespace udpmsg::redis

#endif  // UDPMSG_REDIS_CLIENT_H_
