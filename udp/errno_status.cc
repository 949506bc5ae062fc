#include "udp/errno_status.h"

#include <errno.h>
#include <string.h>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace udpmsg::udp {
namespace {
constexpr absl::string_view kErrnoPayload = "udpmsg.errno";
}  // namespace

std::string ErrnoText(int error) {
  char buffer[256];
  // GNU strerror_r returns a pointer that may or may not be `buffer`.
  const char* text = ::strerror_r(error, buffer, sizeof(buffer));
  return text;
}

absl::Status ErrnoStatus(int error, absl::string_view what) {
  absl::StatusCode code;
  if (error == EAGAIN || error == EWOULDBLOCK) {
    code = absl::StatusCode::kUnavailable;
  } else {
    code = absl::ErrnoToStatusCode(error);
    if (code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kOk) {
      code = absl::StatusCode::kFailedPrecondition;
    }
  }
  absl::Status status(code, absl::StrCat(what, ": ", ErrnoText(error)));
  // "Would block" is the common case on non-blocking sockets and its code
  // says it all: no payload to allocate.
  if (code != absl::StatusCode::kUnavailable) {
    status.SetPayload(kErrnoPayload, absl::Cord(absl::StrCat(error)));
  }
  return status;
}

int ErrnoOf(const absl::Status& status) {
  if (absl::IsUnavailable(status)) return EAGAIN;
  const absl::optional<absl::Cord> payload = status.GetPayload(kErrnoPayload);
  int error = 0;
  if (!payload.has_value() || !absl::SimpleAtoi(std::string(*payload), &error)) return 0;
  return error;
}

}  // namespace udpmsg::udp
