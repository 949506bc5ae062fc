#include "redis/tls_pump.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace udpmsg::redis {
namespace {

std::string ErrnoText(int error) {
  char buffer[256];
  return ::strerror_r(error, buffer, sizeof(buffer));
}

// OpenSSL's queued errors as one line (and the queue emptied).
std::string SslErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(e, buffer, sizeof buffer);
    if (!out.empty()) out += "; ";
    out += buffer;
  }
  return out.empty() ? "unknown TLS error" : out;
}

bool IsAddress(const std::string& host) {
  unsigned char buffer[16];
  return inet_pton(AF_INET, host.c_str(), buffer) == 1 ||
         inet_pton(AF_INET6, host.c_str(), buffer) == 1;
}

// A connected TCP socket within `timeout`, or UNAVAILABLE.
absl::StatusOr<int> ConnectTcp(const Endpoint& endpoint, absl::Duration timeout) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string port = absl::StrCat(endpoint.port);
  if (int rc = getaddrinfo(endpoint.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot reach Redis at ", endpoint.ToString(), ": ", gai_strerror(rc)));
  }
  std::string last = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const int fd =
        socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) {
      last = ErrnoText(errno);
      continue;
    }
    int rc = connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      rc = poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
      int error = 0;
      socklen_t len = sizeof error;
      if (rc == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) == 0 && error == 0) {
        rc = 0;
      } else {
        last = rc == 0 ? absl::StrCat("no answer within ", absl::FormatDuration(timeout))
                       : ErrnoText(error != 0 ? error : errno);
        rc = -1;
      }
    } else if (rc != 0) {
      last = ErrnoText(errno);
    }
    if (rc == 0) {
      freeaddrinfo(found);
      // Blocking from here on, each read and write bounded by `timeout`.
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
      const timeval tv = absl::ToTimeval(timeout);
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      return fd;
    }
    close(fd);
  }
  freeaddrinfo(found);
  return absl::UnavailableError(
      absl::StrCat("cannot reach Redis at ", endpoint.ToString(), ": ", last));
}

// SSL_write of all of `data` on a non-blocking socket: OpenSSL wants the
// same arguments again after WANT_READ/WANT_WRITE.
bool SslWriteAll(SSL* ssl, int fd, const char* data, int size) {
  for (;;) {
    const int n = SSL_write(ssl, data, size);
    if (n > 0) return true;  // the whole buffer (no partial writes)
    const int e = SSL_get_error(ssl, n);
    if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ) return false;
    pollfd p{fd, static_cast<short>(e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN), 0};
    if (poll(&p, 1, -1) < 0 && errno != EINTR) return false;
  }
}

bool WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TlsPump>> TlsPump::Open(const Endpoint& endpoint,
                                                       absl::Duration timeout) {
  std::unique_ptr<TlsPump> pump(new TlsPump());
  absl::StatusOr<int> tcp = ConnectTcp(endpoint, timeout);
  if (!tcp.ok()) return tcp.status();
  pump->tcp_ = *tcp;
  const std::string where = absl::StrCat("Redis at ", endpoint.ToString());
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  pump->ctx_ = ctx;
  if (ctx == nullptr)
    return absl::InternalError(absl::StrCat("TLS for ", where, ": ", SslErrors()));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  const bool loaded =
      endpoint.tls_ca_file.empty()
          ? SSL_CTX_set_default_verify_paths(ctx) == 1
          : SSL_CTX_load_verify_locations(ctx, endpoint.tls_ca_file.c_str(), nullptr) == 1;
  if (!loaded) {
    return absl::FailedPreconditionError(absl::StrCat(
        "TLS for ", where, ": cannot load the CA certificates",
        endpoint.tls_ca_file.empty() ? "" : " from ", endpoint.tls_ca_file, ": ", SslErrors()));
  }
  if (!endpoint.tls_cert_file.empty() &&
      (SSL_CTX_use_certificate_chain_file(ctx, endpoint.tls_cert_file.c_str()) != 1 ||
       SSL_CTX_use_PrivateKey_file(ctx, endpoint.tls_key_file.c_str(), SSL_FILETYPE_PEM) != 1)) {
    return absl::FailedPreconditionError(
        absl::StrCat("TLS for ", where, ": cannot load the client certificate ",
                     endpoint.tls_cert_file, " or its key: ", SslErrors()));
  }
  SSL* ssl = SSL_new(ctx);
  pump->ssl_ = ssl;
  SSL_set_fd(ssl, pump->tcp_);
  const std::string& name = endpoint.host;
  if (IsAddress(name)) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl, name.c_str());
    SSL_set1_host(ssl, name.c_str());
  }
  if (SSL_connect(ssl) != 1) {
    const long verify = SSL_get_verify_result(ssl);
    const std::string why =
        verify != X509_V_OK ? X509_verify_cert_error_string(verify) : SslErrors();
    return absl::UnavailableError(absl::StrCat("TLS handshake with ", where, " failed: ", why));
  }
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    return absl::ResourceExhaustedError(absl::StrCat("socketpair: ", ErrnoText(errno)));
  }
  pump->inner_ = pair[0];
  pump->local_ = pair[1];
  // The pump waits with poll on a non-blocking socket: a read that finds
  // only a TLS record without data (a TLS 1.3 session ticket) must not
  // block while hiredis waits for its command to go out.
  fcntl(pump->tcp_, F_SETFL, fcntl(pump->tcp_, F_GETFL) | O_NONBLOCK);
  pump->thread_ = std::thread([p = pump.get()] { p->Run(); });
  return pump;
}

int TlsPump::TakeLocalFd() {
  const int fd = local_;
  local_ = -1;
  return fd;
}

void TlsPump::Run() {
  // OpenSSL writes with write(2): a reset server must not end the process.
  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &block, nullptr);
  SSL* ssl = static_cast<SSL*>(ssl_);
  char buffer[16384];
  for (;;) {
    if (SSL_pending(ssl) == 0) {
      pollfd p[2] = {{tcp_, POLLIN, 0}, {inner_, POLLIN, 0}};
      if (poll(p, 2, -1) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      if (p[1].revents != 0) {  // hiredis sent a command (or closed)
        const ssize_t n = read(inner_, buffer, sizeof buffer);
        if (n <= 0) break;
        if (!SslWriteAll(ssl, tcp_, buffer, static_cast<int>(n))) break;
      }
      if (p[0].revents == 0) continue;
    }
    const int n = SSL_read(ssl, buffer, sizeof buffer);
    if (n <= 0) {
      const int e = SSL_get_error(ssl, n);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) continue;
      break;  // closed or failed
    }
    if (!WriteAll(inner_, buffer, static_cast<size_t>(n))) break;
  }
  // Either side ended: hiredis sees its end close.
  shutdown(inner_, SHUT_RDWR);
}

TlsPump::~TlsPump() {
  if (tcp_ >= 0) shutdown(tcp_, SHUT_RDWR);      // ends a blocked SSL_read
  if (inner_ >= 0) shutdown(inner_, SHUT_RDWR);  // ends a blocked poll/read
  if (thread_.joinable()) thread_.join();
  if (ssl_ != nullptr) SSL_free(static_cast<SSL*>(ssl_));
  if (ctx_ != nullptr) SSL_CTX_free(static_cast<SSL_CTX*>(ctx_));
  if (inner_ >= 0) close(inner_);
  if (local_ >= 0) close(local_);
  if (tcp_ >= 0) close(tcp_);
}

}  // namespace udpmsg::redis
