#include "udp/errno_status.h"

#include <errno.h>
#include <string.h>

#include "absl/strings/str_cat.h"

namespace udpmsg::udp {

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
  return absl::Status(code, absl::StrCat(what, ": ", ErrnoText(error)));
}

}  // namespace udpmsg::udp
