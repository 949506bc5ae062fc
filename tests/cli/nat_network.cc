#include "tests/cli/nat_network.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"

namespace udpmsg::testing {
namespace {

const std::string& Tool(const char* name) {
  static const auto* tools = new std::vector<std::pair<std::string, std::string>>{
      {"ip", FirstExecutable({"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"})},
      {"nft", FirstExecutable({"/usr/sbin/nft", "/sbin/nft"})},
      {"nsenter", FirstExecutable({"/usr/bin/nsenter", "/bin/nsenter"})},
      {"unshare", FirstExecutable({"/usr/bin/unshare", "/bin/unshare"})},
      {"sh", FirstExecutable({"/bin/sh", "/usr/bin/sh"})},
  };
  for (const auto& [n, path] : *tools) {
    if (n == name) return path;
  }
  static const std::string none;
  return none;
}

// A UDP socket bound to ADDR:PORT in the calling thread's namespace.
int BoundUdp(const std::string& address, int port) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, address.c_str(), &a.sin_addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// The source port of the next datagram on `fd`, within `timeout`.
absl::StatusOr<int> SourcePortOfNext(int fd, absl::Duration timeout) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) <= 0) {
    return absl::DeadlineExceededError("no datagram reached the public side");
  }
  char buf[64];
  sockaddr_in from{};
  socklen_t len = sizeof(from);
  if (::recvfrom(fd, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &len) < 0) {
    return absl::ErrnoToStatus(errno, "recvfrom");
  }
  return ntohs(from.sin_port);
}

}  // namespace

absl::StatusOr<std::unique_ptr<NatNetwork>> NatNetwork::Create(NatKind nat_a, NatKind nat_b) {
  if (::geteuid() != 0) return absl::UnavailableError("not root");
  for (const char* tool : {"ip", "nft", "nsenter", "unshare", "sh"}) {
    if (Tool(tool).empty()) return absl::UnavailableError(absl::StrCat("no ", tool, " here"));
  }
  if (::unshare(CLONE_NEWNET) != 0) {
    return absl::UnavailableError(absl::StrCat("unshare(CLONE_NEWNET): ", std::strerror(errno)));
  }
  std::unique_ptr<NatNetwork> n(new NatNetwork());
  if (absl::Status s = n->Build(nat_a, nat_b); !s.ok()) {
    return absl::UnavailableError(absl::StrCat("cannot build the NAT network: ", s.message()));
  }
  return n;
}

NatNetwork::~NatNetwork() = default;  // the holders' destructors kill them

absl::StatusOr<std::unique_ptr<Subprocess>> HoldNetworkNamespace() {
  if (Tool("unshare").empty() || Tool("sh").empty()) {
    return absl::UnavailableError("no unshare or sh here");
  }
  // The holder says "ready" once it is in its new namespace.
  absl::StatusOr<std::unique_ptr<Subprocess>> p =
      Subprocess::Start({Tool("unshare"), "-n", Tool("sh"), "-c", "echo ready; exec sleep 3600"});
  if (!p.ok()) return p.status();
  absl::StatusOr<std::string> line = (*p)->ReadStdoutLine(absl::Seconds(10));
  if (!line.ok() || *line != "ready") {
    return absl::UnavailableError(absl::StrCat("unshare -n: ", (*p)->stderr_text()));
  }
  return p;
}

absl::StatusOr<int> NatNetwork::Hold() {
  absl::StatusOr<std::unique_ptr<Subprocess>> p = HoldNetworkNamespace();
  if (!p.ok()) return p.status();
  const int pid = (*p)->pid();
  holders_.push_back(std::move(*p));
  return pid;
}

std::vector<std::string> NatNetwork::In(Host host, std::vector<std::string> argv) const {
  std::vector<std::string> full = {Tool("nsenter"), "-t",
                                   std::to_string(host_[host == Host::kA ? 0 : 1]), "-n"};
  full.insert(full.end(), argv.begin(), argv.end());
  return full;
}

std::string NatNetwork::PublicAddressOf(Host host) {
  return host == Host::kA ? "198.51.100.2" : "203.0.113.2";
}

std::string NatNetwork::LocalAddressOf(Host host) {
  return host == Host::kA ? "10.0.1.2" : "10.0.2.2";
}

absl::Status NatNetwork::Build(NatKind nat_a, NatKind nat_b) {
  const std::string& ip = Tool("ip");
  auto in = [](int pid, std::vector<std::string> argv) {
    std::vector<std::string> full = {Tool("nsenter"), "-t", std::to_string(pid), "-n"};
    full.insert(full.end(), argv.begin(), argv.end());
    return full;
  };
  // The internet: this process's fresh namespace.
  for (const std::vector<std::string>& c : std::vector<std::vector<std::string>>{
           {ip, "link", "set", "lo", "up"},
           {ip, "addr", "add", absl::StrCat(kPublicAddress, "/32"), "dev", "lo"},
           {Tool("sh"), "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"}}) {
    if (absl::Status s = RunToSuccess(c); !s.ok()) return s;
  }
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<int> nat = Hold();
    if (!nat.ok()) return nat.status();
    absl::StatusOr<int> host = Hold();
    if (!host.ok()) return host.status();
    nat_[i] = *nat;
    host_[i] = *host;
    const std::string wan = i == 0 ? "198.51.100" : "203.0.113";
    const std::string lan = i == 0 ? "10.0.1" : "10.0.2";
    const std::string up = i == 0 ? "upA" : "upB";  // the internet's side of the WAN link
    const std::string nat_pid = std::to_string(*nat);
    const std::string host_pid = std::to_string(*host);
    const bool symmetric = (i == 0 ? nat_a : nat_b) == NatKind::kSymmetric;
    const std::string rules = absl::StrCat(
        "table ip nat {\n  chain post {\n    type nat hook postrouting priority 100;\n"
        "    oifname \"wan\" masquerade",
        symmetric ? " fully-random" : "",
        "\n  }\n}\n"
        "table inet filter {\n  chain input {\n    type filter hook input priority 0;\n"
        "    iifname \"wan\" ct state new drop\n  }\n}\n");
    const char* tmp = std::getenv("TEST_TMPDIR");
    const std::string rules_path = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/nat", i, "_",
                                                ::getpid(), ".nft");
    if (FILE* f = std::fopen(rules_path.c_str(), "w")) {
      std::fputs(rules.c_str(), f);
      std::fclose(f);
    } else {
      return absl::ErrnoToStatus(errno, absl::StrCat("write ", rules_path));
    }
    const std::vector<std::vector<std::string>> commands = {
        {ip, "link", "add", up, "type", "veth", "peer", "name", "wan", "netns", nat_pid},
        {ip, "addr", "add", wan + ".1/24", "dev", up},
        {ip, "link", "set", up, "up"},
        in(*nat, {ip, "link", "set", "lo", "up"}),
        in(*nat, {ip, "addr", "add", wan + ".2/24", "dev", "wan"}),
        in(*nat, {ip, "link", "set", "wan", "up"}),
        in(*nat, {ip, "route", "add", "default", "via", wan + ".1"}),
        in(*nat, {Tool("sh"), "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"}),
        in(*nat, {ip, "link", "add", "lan", "type", "veth", "peer", "name", "lan", "netns",
                  host_pid}),
        in(*nat, {ip, "addr", "add", lan + ".1/24", "dev", "lan"}),
        in(*nat, {ip, "link", "set", "lan", "up"}),
        in(*nat, {Tool("nft"), "-f", rules_path}),
        in(*host, {ip, "link", "set", "lo", "up"}),
        in(*host, {ip, "addr", "add", lan + ".2/24", "dev", "lan"}),
        in(*host, {ip, "link", "set", "lan", "up"}),
        in(*host, {ip, "route", "add", "default", "via", lan + ".1"}),
    };
    for (const std::vector<std::string>& c : commands) {
      if (absl::Status s = RunToSuccess(c); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::pair<int, int>> NatNetwork::MappedPorts(Host host, int local_port,
                                                            int to_port, int to_port2) const {
  const int a = BoundUdp(kPublicAddress, to_port);
  const int b = BoundUdp(kPublicAddress, to_port2);
  // The sending socket is made in `host`'s namespace by a thread that moves
  // there (setns changes only the calling thread); it stays in that
  // namespace when used from this one.
  int sender = -1;
  int error = 0;
  std::thread([&] {
    const int ns = ::open(absl::StrCat("/proc/", host_[host == Host::kA ? 0 : 1], "/ns/net").c_str(),
                          O_RDONLY | O_CLOEXEC);
    if (ns < 0 || ::setns(ns, CLONE_NEWNET) != 0) {
      error = errno;
    } else {
      sender = BoundUdp("0.0.0.0", local_port);
      if (sender < 0) error = errno;
    }
    if (ns >= 0) ::close(ns);
  }).join();
  absl::StatusOr<std::pair<int, int>> result = absl::InternalError("unset");
  if (a < 0 || b < 0 || sender < 0) {
    result = absl::ErrnoToStatus(error != 0 ? error : errno, "MappedPorts sockets");
  } else {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    ::inet_pton(AF_INET, kPublicAddress, &to.sin_addr);
    to.sin_port = htons(static_cast<uint16_t>(to_port));
    ::sendto(sender, "x", 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof(to));
    to.sin_port = htons(static_cast<uint16_t>(to_port2));
    ::sendto(sender, "y", 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof(to));
    absl::StatusOr<int> pa = SourcePortOfNext(a, absl::Seconds(5));
    absl::StatusOr<int> pb = SourcePortOfNext(b, absl::Seconds(5));
    if (!pa.ok()) {
      result = pa.status();
    } else if (!pb.ok()) {
      result = pb.status();
    } else {
      result = std::make_pair(*pa, *pb);
    }
  }
  for (int fd : {a, b, sender}) {
    if (fd >= 0) ::close(fd);
  }
  return result;
}

}  // namespace udpmsg::testing
