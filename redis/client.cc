#include "redis/client.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <algorithm>
#include <climits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "redis/tls_pump.h"

namespace udpmsg::redis {
namespace {

constexpr size_t kMaxCommandNameInErrors = 32;

std::string ErrnoText(int error) {
  char buffer[256];
  // GNU strerror_r returns a pointer that may or may not be `buffer`.
  return ::strerror_r(error, buffer, sizeof(buffer));
}

// The timeout as a timeval for hiredis (SO_RCVTIMEO/SO_SNDTIMEO and the
// connect poll). Zero would mean "no timeout" to the kernel, so anything
// shorter than a microsecond becomes one.
timeval HiredisTimeval(absl::Duration timeout) {
  timeval tv = absl::ToTimeval(timeout);
  if (tv.tv_sec == 0 && tv.tv_usec == 0) tv.tv_usec = 1;
  return tv;
}

absl::Status CheckTimeout(absl::Duration timeout) {
  if (timeout <= absl::ZeroDuration() || timeout == absl::InfiniteDuration() ||
      timeout > absl::Hours(24 * 365)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Redis timeout must be positive and finite (at most a year), got ",
                     absl::FormatDuration(timeout)));
  }
  return absl::OkStatus();
}

absl::Status CheckCommand(const std::vector<std::string>& argv) {
  if (argv.empty()) return absl::InvalidArgumentError("empty Redis command");
  if (argv.size() > static_cast<size_t>(INT_MAX)) {
    return absl::InvalidArgumentError("Redis command with more than INT_MAX arguments");
  }
  return absl::OkStatus();
}

// The command's name for error messages: never its arguments (AUTH, or a
// value that is nobody else's business), escaped and bounded.
std::string CommandName(const std::vector<std::string>& argv) {
  if (argv.empty()) return "(empty command)";
  std::string name = absl::CHexEscape(argv[0].substr(0, kMaxCommandNameInErrors));
  if (argv[0].size() > kMaxCommandNameInErrors) name += "...";
  return name;
}

// hiredis 0.14 writes with write(2), so a write to a connection the server
// has reset raises SIGPIPE, whose default action ends the process. While
// one is alive, SIGPIPE is blocked in the calling thread and a SIGPIPE the
// call raised is consumed before the mask is restored (libpq does the
// same); the write itself then fails with EPIPE, which breaks the
// Connection like any other I/O error.
class SigpipeGuard final {
 public:
  SigpipeGuard() {
    sigemptyset(&sigpipe_);
    sigaddset(&sigpipe_, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    ::sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    ::pthread_sigmask(SIG_BLOCK, &sigpipe_, &saved_);
  }
  ~SigpipeGuard() {
    if (!was_pending_) {
      sigset_t pending;
      sigemptyset(&pending);
      ::sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        const timespec zero{};
        while (::sigtimedwait(&sigpipe_, nullptr, &zero) < 0 && errno == EINTR) {
        }
      }
    }
    ::pthread_sigmask(SIG_SETMASK, &saved_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t sigpipe_;
  sigset_t saved_;
  bool was_pending_ = false;
};

Reply CopyReply(const redisReply& r) {
  Reply reply;
  switch (r.type) {
    case REDIS_REPLY_STRING:
      reply.type = Reply::Type::kString;
      if (r.str != nullptr) reply.str.assign(r.str, r.len);
      break;
    case REDIS_REPLY_STATUS:
      reply.type = Reply::Type::kStatus;
      if (r.str != nullptr) reply.str.assign(r.str, r.len);
      break;
    case REDIS_REPLY_ERROR:
      reply.type = Reply::Type::kError;
      if (r.str != nullptr) reply.str.assign(r.str, r.len);
      break;
    case REDIS_REPLY_INTEGER:
      reply.type = Reply::Type::kInteger;
      reply.integer = r.integer;
      break;
    case REDIS_REPLY_ARRAY:
      reply.type = Reply::Type::kArray;
      reply.elements.reserve(r.elements);
      for (size_t i = 0; i < r.elements; ++i) {
        reply.elements.push_back(r.element[i] != nullptr ? CopyReply(*r.element[i]) : Reply{});
      }
      break;
    case REDIS_REPLY_NIL:
    default:
      reply.type = Reply::Type::kNil;
      break;
  }
  return reply;
}

// Owns a reply hiredis allocated.
struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using OwnedReply = std::unique_ptr<redisReply, ReplyDeleter>;

// The argv/argvlen arrays hiredis wants, borrowing `argv`'s strings.
struct ArgvView {
  explicit ArgvView(const std::vector<std::string>& argv) {
    pointers.reserve(argv.size());
    lengths.reserve(argv.size());
    for (const std::string& a : argv) {
      pointers.push_back(a.data());
      lengths.push_back(a.size());
    }
  }
  int argc() const { return static_cast<int>(pointers.size()); }
  std::vector<const char*> pointers;
  std::vector<size_t> lengths;
};

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes %XX escapes; false on a malformed one. Callers never echo the
// input: it may be a password.
bool PercentDecode(absl::string_view in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out->push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    const int hi = HexValue(in[i + 1]);
    const int lo = HexValue(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

bool IsHostNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
}

bool IsIpv6LiteralChar(char c) {
  return absl::ascii_isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.';
}

}  // namespace

std::string Endpoint::ToString() const {
  if (absl::StrContains(host, ':')) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

absl::StatusOr<Url> ParseUrl(absl::string_view url) {
  // Messages name the part that is wrong and never echo the URL: it may
  // carry a password.
  const size_t scheme_end = url.find("://");
  if (scheme_end == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        "not a Redis URL: expected redis://[[USER]:PASSWORD@]HOST[:PORT][/PATH]");
  }
  const std::string scheme = absl::AsciiStrToLower(url.substr(0, scheme_end));
  if (scheme != "redis" && scheme != "rediss") {
    return absl::InvalidArgumentError(
        absl::StrCat("not a Redis URL: scheme \"", absl::CHexEscape(scheme.substr(0, 16)),
                     "\" instead of redis:// (redis://[[USER]:PASSWORD@]HOST[:PORT][/PATH])"));
  }
  absl::string_view rest = url.substr(scheme_end + 3);
  Url result;
  result.endpoint.tls = scheme == "rediss";
  const size_t slash = rest.find('/');
  absl::string_view authority = rest.substr(0, slash);
  if (slash != absl::string_view::npos) result.path = std::string(rest.substr(slash + 1));

  const size_t at = authority.rfind('@');
  if (at != absl::string_view::npos) {
    absl::string_view userinfo = authority.substr(0, at);
    authority = authority.substr(at + 1);
    const size_t colon = userinfo.find(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          "Redis URL has credentials without a ':': write redis://:PASSWORD@HOST for a "
          "password alone, redis://USER:PASSWORD@HOST for an ACL user");
    }
    if (!PercentDecode(userinfo.substr(0, colon), &result.endpoint.username)) {
      return absl::InvalidArgumentError("Redis URL: malformed %-escape in the user name");
    }
    if (!PercentDecode(userinfo.substr(colon + 1), &result.endpoint.password)) {
      return absl::InvalidArgumentError("Redis URL: malformed %-escape in the password");
    }
    if (result.endpoint.password.empty()) {
      return absl::InvalidArgumentError(
          result.endpoint.username.empty()
              ? "Redis URL has an empty password (leave out ':@' for no AUTH)"
              : "Redis URL has a user but an empty password");
    }
  }

  absl::string_view host;
  absl::string_view port_text;
  bool has_port = false;
  if (absl::StartsWith(authority, "[")) {
    const size_t close = authority.find(']');
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError("Redis URL: IPv6 address without its closing ']'");
    }
    host = authority.substr(1, close - 1);
    if (host.empty() || !absl::StrContains(host, ':') ||
        !std::all_of(host.begin(), host.end(), IsIpv6LiteralChar)) {
      return absl::InvalidArgumentError(absl::StrCat("Redis URL: \"",
                                                     absl::CHexEscape(host.substr(0, 64)),
                                                     "\" in brackets is not an IPv6 address"));
    }
    absl::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') {
        return absl::InvalidArgumentError("Redis URL: expected ':PORT' or '/' after ']'");
      }
      has_port = true;
      port_text = after.substr(1);
    }
  } else {
    const size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != absl::string_view::npos) {
      has_port = true;
      port_text = authority.substr(colon + 1);
      if (absl::StrContains(port_text, ':')) {
        return absl::InvalidArgumentError(
            "Redis URL: an IPv6 address goes in brackets (redis://[::1]:6379)");
      }
    }
    if (host.empty()) return absl::InvalidArgumentError("Redis URL has no host");
    if (!std::all_of(host.begin(), host.end(), IsHostNameChar)) {
      return absl::InvalidArgumentError(absl::StrCat("Redis URL: \"",
                                                     absl::CHexEscape(host.substr(0, 64)),
                                                     "\" is not a host name or address"));
    }
  }
  result.endpoint.host = std::string(host);
  if (has_port) {
    int port = 0;
    if (port_text.empty() || port_text.size() > 5 ||
        !std::all_of(port_text.begin(), port_text.end(),
                     [](char c) { return c >= '0' && c <= '9'; }) ||
        !absl::SimpleAtoi(port_text, &port) || port < 1 || port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("Redis URL: the port must be 1..65535, got \"",
                                                     absl::CHexEscape(port_text.substr(0, 16)),
                                                     "\""));
    }
    result.endpoint.port = port;
  }
  return result;
}

Connection::Connection(const Endpoint& endpoint, redisContext* context)
    : endpoint_(endpoint), context_(context) {}

Connection::~Connection() {
  if (context_ != nullptr) redisFree(context_);
}

absl::StatusOr<std::unique_ptr<Connection>> Connection::Connect(const Endpoint& endpoint,
                                                                absl::Duration timeout) {
  if (absl::Status s = CheckTimeout(timeout); !s.ok()) return s;
  if (endpoint.port < 1 || endpoint.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("Redis port must be 1..65535, got ", endpoint.port));
  }
  if (endpoint.host.empty()) return absl::InvalidArgumentError("Redis endpoint has no host");
  const absl::Time deadline = absl::Now() + timeout;
  std::unique_ptr<TlsPump> tls;
  if (endpoint.tls) {
    absl::StatusOr<std::unique_ptr<TlsPump>> pump = TlsPump::Open(endpoint, timeout);
    if (!pump.ok()) return pump.status();
    tls = *std::move(pump);
  }
  redisContext* context =
      tls != nullptr
          ? redisConnectFd(tls->TakeLocalFd())
          : redisConnectWithTimeout(endpoint.host.c_str(), endpoint.port, HiredisTimeval(timeout));
  if (context == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate a hiredis context for Redis at ", endpoint.ToString()));
  }
  std::unique_ptr<Connection> connection(new Connection(endpoint, context));
  connection->tls_ = std::move(tls);
  connection->timeout_ = timeout;
  if (context->err != 0) {
    std::string reason = context->errstr[0] != '\0' ? context->errstr : "unknown error";
    if (context->err == REDIS_ERR_IO && absl::StrContains(reason, ErrnoText(ETIMEDOUT))) {
      absl::StrAppend(&reason, " (no answer within ", absl::FormatDuration(timeout), ")");
    }
    return absl::UnavailableError(
        absl::StrCat("cannot reach Redis at ", endpoint.ToString(), ": ", reason));
  }
  if (endpoint.password.empty()) {
    if (absl::Status s = connection->SetTimeout(timeout); !s.ok()) return s;
    return connection;
  }

  // AUTH within what is left of `timeout`, then `timeout` for what follows.
  if (absl::Status s =
          connection->SetTimeout(std::max(deadline - absl::Now(), absl::Microseconds(1)));
      !s.ok()) {
    return s;
  }
  std::vector<std::string> auth = {"AUTH"};
  if (!endpoint.username.empty()) auth.push_back(endpoint.username);
  auth.push_back(endpoint.password);
  absl::StatusOr<Reply> reply = connection->Command(auth);
  if (!reply.ok()) return reply.status();
  if (reply->is_error()) {
    // Redis does not echo the password; this makes sure of it.
    const std::string text = absl::StrReplaceAll(reply->str, {{endpoint.password, "<password>"}});
    return absl::PermissionDeniedError(
        absl::StrCat("Redis at ", endpoint.ToString(), " refused AUTH",
                     endpoint.username.empty()
                         ? ""
                         : absl::StrCat(" as user \"", absl::CHexEscape(endpoint.username), "\""),
                     ": ", text));
  }
  if (absl::Status s = connection->SetTimeout(timeout); !s.ok()) return s;
  return connection;
}

absl::Status Connection::Broke(absl::string_view doing) {
  std::string reason = context_->errstr[0] != '\0' ? context_->errstr : "unknown error";
  if (context_->err == REDIS_ERR_IO &&
      (reason == ErrnoText(EAGAIN) || reason == ErrnoText(EWOULDBLOCK))) {
    // SO_RCVTIMEO/SO_SNDTIMEO expired: hiredis reports EAGAIN.
    reason = absl::StrCat("timed out after ", absl::FormatDuration(timeout_));
  }
  broken_ = true;
  broken_reason_ = absl::StrCat(doing, ": ", reason);
  return absl::UnavailableError(
      absl::StrCat("Redis at ", endpoint_.ToString(), ": ", broken_reason_));
}

absl::Status Connection::CheckUsable() const {
  if (!broken_) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat("connection to Redis at ", endpoint_.ToString(),
                                             " is broken (", broken_reason_,
                                             "); make a new Connection"));
}

absl::StatusOr<Reply> Connection::Command(const std::vector<std::string>& argv) {
  if (absl::Status s = CheckUsable(); !s.ok()) return s;
  if (absl::Status s = CheckCommand(argv); !s.ok()) return s;
  ArgvView view(argv);
  OwnedReply reply;
  {
    SigpipeGuard guard;
    reply.reset(static_cast<redisReply*>(
        redisCommandArgv(context_, view.argc(), view.pointers.data(), view.lengths.data())));
  }
  if (reply == nullptr) return Broke(CommandName(argv));
  return CopyReply(*reply);
}

absl::StatusOr<std::vector<Reply>> Connection::Pipeline(
    const std::vector<std::vector<std::string>>& commands) {
  if (absl::Status s = CheckUsable(); !s.ok()) return s;
  for (const std::vector<std::string>& argv : commands) {
    if (absl::Status s = CheckCommand(argv); !s.ok()) return s;
  }
  std::vector<Reply> replies;
  if (commands.empty()) return replies;
  for (const std::vector<std::string>& argv : commands) {
    ArgvView view(argv);
    // Only appends to hiredis's output buffer: fails on memory alone, and
    // then the buffer holds part of the pipeline, so the Connection is done.
    if (redisAppendCommandArgv(context_, view.argc(), view.pointers.data(), view.lengths.data()) !=
        REDIS_OK) {
      return Broke(absl::StrCat("pipeline (queueing ", CommandName(argv), ")"));
    }
  }
  replies.reserve(commands.size());
  SigpipeGuard guard;
  for (size_t i = 0; i < commands.size(); ++i) {
    void* raw = nullptr;
    const int rc = redisGetReply(context_, &raw);
    OwnedReply reply(static_cast<redisReply*>(raw));
    if (rc != REDIS_OK || reply == nullptr) {
      return Broke(absl::StrCat("pipeline of ", commands.size(), " commands, at reply ", i + 1,
                                " (", CommandName(commands[i]), ")"));
    }
    replies.push_back(CopyReply(*reply));
  }
  return replies;
}

absl::Status Connection::SetTimeout(absl::Duration timeout) {
  if (absl::Status s = CheckUsable(); !s.ok()) return s;
  if (absl::Status s = CheckTimeout(timeout); !s.ok()) return s;
  if (redisSetTimeout(context_, HiredisTimeval(timeout)) != REDIS_OK) {
    return Broke("setting the timeout");
  }
  timeout_ = timeout;
  return absl::OkStatus();
}

}  // namespace udpmsg::redis
