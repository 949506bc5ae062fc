// The encryption flags shared by send/recv --reliable and chat, and
// `udpmsg keygen`.
//
// Server identity (docs/security.md "Server identity"): a server loads
// --identity FILE; a client pins a fingerprint with --server_id, or keeps a
// known-hosts file (--known_hosts FILE, no default) with one
// "HOST:PORT udpmsg-id:..." line per server, as ssh does: a listed server
// must prove the recorded identity (the core refuses any other before
// anything encrypted is sent), and a server not yet listed is recorded after
// its first handshake (trust on first use).
//
// Usage (a client):
//   if (absl::Status s = CheckIdentityFlags(/*serves=*/false); !s.ok())
//     return UsageError("send", s.message());
//   absl::StatusOr<ClientTrust> trust = ApplyClientTrust(&options, "host:4000");
//   ... connect; on kConnected with event.server_identity:
//   if (absl::Status s = trust->Record(event.server_identity); !s.ok()) close, fail;
#ifndef UDPMSG_CLI_SECURITY_H_
#define UDPMSG_CLI_SECURITY_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "udpmsg/udpmsg.h"

namespace udpmsg::cli {

// Applies --encrypt and --key-file to `options` (encrypt, room_key). The key
// file's errors name the path (NOT_FOUND, PERMISSION_DENIED, INVALID_ARGUMENT).
absl::Status ApplySecurityFlags(HostOptions* options);

// INVALID_ARGUMENT naming the flag: --identity on a client command
// (`serves` false), --server_id or --known_hosts on a server, both
// --server_id and --known_hosts, or a --server_id that is not a fingerprint.
absl::Status CheckIdentityFlags(bool serves);

// Server: loads --identity into options->identity (if given) and returns
// its fingerprint ("" without one). The file's errors name the path
// (NOT_FOUND, PERMISSION_DENIED, INVALID_ARGUMENT).
absl::StatusOr<std::string> ApplyServerIdentity(HostOptions* options);

// A client's trust decision for one server.
class ClientTrust final {
 public:
  // After kConnected: `presented` is Event::server_identity. With a pin
  // (--server_id or a known-hosts line) the core already checked it: OK.
  // With a known-hosts file and no line for the server: appends one (the file
  // is created mode 0600) and OK; PERMISSION_DENIED when the server has no
  // identity to record; the write's errno status naming the file.
  // Without either flag: OK.
  absl::Status Record(const std::string& presented) const;
  // A hint for a refused connection when the pin came from the known-hosts
  // file ("" otherwise): which file and line, and how to forget it.
  std::string MismatchHint() const;

 private:
  friend absl::StatusOr<ClientTrust> ApplyClientTrust(HostOptions*, const std::string&);
  std::string file_;       // --known_hosts, or ""
  std::string host_port_;  // as the user typed it
  int line_ = 0;           // the known-hosts line that pinned it, 0 if none
};

// Client: applies --server_id (a pin) or --known_hosts (the pin recorded for
// `host_port`, as typed, if any) to options->server_pin, and --known_hosts
// alone turns encryption on. The known-hosts file may be missing (nothing
// recorded yet). FAILED_PRECONDITION "known-hosts file FILE:LINE: ..." for a
// malformed line; the read's errno status naming the file.
absl::StatusOr<ClientTrust> ApplyClientTrust(HostOptions* options, const std::string& host_port);

}  // namespace udpmsg::cli

#endif  // UDPMSG_CLI_SECURITY_H_
