// udpmsg keygen, and the --encrypt / --key-file flags.
#include "cli/security.h"

#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/flags.h"

namespace udpmsg::cli {

absl::Status ApplySecurityFlags(HostOptions* options) {
  options->encrypt = absl::GetFlag(FLAGS_encrypt);
  const std::string path = absl::GetFlag(FLAGS_key_file);
  if (path.empty()) return absl::OkStatus();
  if (sodium_init() < 0) return absl::InternalError("libsodium failed to initialise");
  absl::StatusOr<RoomKey> key = ReadRoomKeyFile(path);
  if (!key.ok()) return key.status();
  options->room_key = *key;
  options->encrypt = true;
  return absl::OkStatus();
}

absl::Status CheckIdentityFlags(bool serves) {
  const bool identity = !absl::GetFlag(FLAGS_identity).empty();
  const std::string server_id = absl::GetFlag(FLAGS_server_id);
  const bool known_hosts = !absl::GetFlag(FLAGS_known_hosts).empty();
  if (serves) {
    if (!server_id.empty() || known_hosts) {
      return absl::InvalidArgumentError(
          "--server_id and --known_hosts are for clients (send --reliable, chat join); a server "
          "proves its own identity with --identity FILE");
    }
    return absl::OkStatus();
  }
  if (identity) {
    return absl::InvalidArgumentError(
        "--identity is for servers (recv, chat serve); a client pins the server with "
        "--server_id or --known_hosts");
  }
  if (!server_id.empty() && known_hosts) {
    return absl::InvalidArgumentError("--server_id and --known_hosts: give one of them");
  }
  if (!server_id.empty()) {
    absl::StatusOr<std::string> pin = ParseServerFingerprint(server_id);
    if (!pin.ok()) return absl::InvalidArgumentError(absl::StrCat("--server_id: ", pin.status().message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ApplyServerIdentity(HostOptions* options) {
  const std::string path = absl::GetFlag(FLAGS_identity);
  if (path.empty()) return std::string();
  if (sodium_init() < 0) return absl::InternalError("libsodium failed to initialise");
  absl::StatusOr<ServerIdentity> identity = ReadServerIdentityFile(path);
  if (!identity.ok()) return identity.status();
  options->identity = *identity;
  options->encrypt = true;
  return ServerFingerprint(*identity);
}

absl::StatusOr<ClientTrust> ApplyClientTrust(HostOptions* options, const std::string& host_port) {
  ClientTrust trust;
  const std::string server_id = absl::GetFlag(FLAGS_server_id);
  if (!server_id.empty()) {
    absl::StatusOr<std::string> pin = ParseServerFingerprint(server_id);
    if (!pin.ok()) return absl::InvalidArgumentError(absl::StrCat("--server_id: ", pin.status().message()));
    options->server_pin = *pin;
    options->encrypt = true;
    return trust;
  }
  const std::string file = absl::GetFlag(FLAGS_known_hosts);
  if (file.empty()) return trust;
  trust.file_ = file;
  trust.host_port_ = host_port;
  options->encrypt = true;
  std::ifstream in(file);
  if (!in.is_open()) {
    if (errno == ENOENT) return trust;  // nothing recorded yet
    return absl::ErrnoToStatus(errno, absl::StrCat("known-hosts file ", file));
  }
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    const absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty() || text[0] == '#') continue;
    const std::vector<absl::string_view> fields =
        absl::StrSplit(text, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    absl::StatusOr<std::string> fingerprint =
        fields.size() == 2 ? ParseServerFingerprint(fields[1])
                           : absl::InvalidArgumentError("expected HOST:PORT and a fingerprint");
    if (!fingerprint.ok()) {
      return absl::FailedPreconditionError(absl::StrCat("known-hosts file ", file, ":", number,
                                                        ": ", fingerprint.status().message()));
    }
    if (fields[0] == host_port) {
      options->server_pin = *fingerprint;
      trust.line_ = number;
      return trust;
    }
  }
  return trust;
}

absl::Status ClientTrust::Record(const std::string& presented) const {
  if (file_.empty() || line_ != 0) return absl::OkStatus();
  if (presented.empty()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "server ", host_port_, " has no identity (start it with --identity FILE), so --known_hosts ",
        file_, " cannot authenticate it"));
  }
  const int fd = ::open(file_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("known-hosts file ", file_));
  const std::string entry = absl::StrCat(host_port_, " ", presented, "\n");
  const ssize_t n = ::write(fd, entry.data(), entry.size());
  const int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(entry.size())) {
    return absl::ErrnoToStatus(n < 0 ? err : EIO, absl::StrCat("known-hosts file ", file_));
  }
  std::fprintf(stderr, "udpmsg: recorded %s %s in %s (first connection: trust on first use)\n",
               host_port_.c_str(), presented.c_str(), file_.c_str());
  return absl::OkStatus();
}

std::string ClientTrust::MismatchHint() const {
  if (line_ == 0) return "";
  return absl::StrCat(" (recorded in ", file_, " line ", line_,
                      "; if the server's identity changed on purpose, delete that line)");
}

// udpmsg keygen: a fresh random room key (64 hex digits) on stdout; with
// --identity FILE, a new server identity in FILE (mode 0600, never over an
// existing file) and its fingerprint on stdout.
int RunKeygen(const Args& args) {
  if (!args.empty()) return UsageError("keygen", "takes no arguments (redirect stdout to a file)");
  if (sodium_init() < 0) return Fail(absl::InternalError("libsodium failed to initialise"));
  const std::string path = absl::GetFlag(FLAGS_identity);
  if (path.empty()) {
    std::fputs(GenerateRoomKeyFileContents().c_str(), stdout);
    return kExitOk;
  }
  std::string fingerprint;
  std::string contents = GenerateServerIdentityFileContents(&fingerprint);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    const int err = errno;
    sodium_memzero(contents.data(), contents.size());
    return Fail(absl::ErrnoToStatus(
        err, absl::StrCat("cannot create identity file ", path,
                          err == EEXIST ? " (it exists: an identity is never overwritten)" : "")));
  }
  const ssize_t n = ::write(fd, contents.data(), contents.size());
  const int err = errno;
  sodium_memzero(contents.data(), contents.size());
  if (::close(fd) != 0 || n != static_cast<ssize_t>(contents.size())) {
    ::unlink(path.c_str());
    return Fail(absl::ErrnoToStatus(n < 0 ? err : EIO,
                                    absl::StrCat("cannot write identity file ", path)));
  }
  std::printf("%s\n", fingerprint.c_str());
  return kExitOk;
}

}  // namespace udpmsg::cli
