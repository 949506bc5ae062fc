// OwnedFd: sole owner of a POSIX file descriptor.
//
// It closes the descriptor when destroyed or reset. Move-only: copying a
// descriptor owner would close the descriptor twice. An OwnedFd holding -1 is
// empty.
//
// Usage:
//   int raw = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
//   if (raw < 0) return ErrnoStatus(errno, "socket");
//   OwnedFd fd(raw);   // closed at end of scope
//
// Threading: not synchronised; one owner at a time.
#ifndef UDPMSG_UDP_OWNED_FD_H_
#define UDPMSG_UDP_OWNED_FD_H_

namespace udpmsg::udp {

class OwnedFd final {
 public:
  OwnedFd() = default;
  explicit OwnedFd(int fd) : fd_(fd) {}
  ~OwnedFd() { reset(); }

  OwnedFd(const OwnedFd&) = delete;
  OwnedFd& operator=(const OwnedFd&) = delete;
  OwnedFd(OwnedFd&& other) noexcept : fd_(other.release()) {}
  OwnedFd& operator=(OwnedFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }

  // Gives up ownership without closing; returns the descriptor.
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

  // Closes the held descriptor (if any) and takes `fd`. close() errors are
  // ignored: the descriptor is released either way (Linux semantics), and
  // EINTR must not be retried.
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

}  // namespace udpmsg::udp

#endif  // UDPMSG_UDP_OWNED_FD_H_
