#include "udp/owned_fd.h"

#include <unistd.h>

namespace udpmsg::udp {

void OwnedFd::reset(int fd) {
  if (fd_ >= 0 && fd_ != fd) ::close(fd_);
  fd_ = fd;
}

}  // namespace udpmsg::udp
