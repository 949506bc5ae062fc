// NatNetwork: two hosts, each behind its own NAT, and a public address, built
// from network namespaces, veth pairs and nftables masquerade, for tests
// that run the udpmsg binary through real kernel NATs (tests/cli/nat_test.cc).
//
//   hostA 10.0.1.2 ── natA ── 198.51.100.0/24 ──┐
//                                              "internet" (the test's own
//   hostB 10.0.2.2 ── natB ── 203.0.113.0/24 ──┘  namespace), which holds
//                                                  kPublicAddress on lo
//
// The "internet" is the calling process's network namespace, which Create
// replaces with a fresh one (unshare(CLONE_NEWNET)): a server the test starts
// itself binds kPublicAddress and both hosts reach it through their NATs.
// natA and natB (each a namespace) forward between their LAN and WAN veths
// and masquerade what leaves the WAN side:
//   - kEndpointIndependent: plain `masquerade`, which keeps the host's source
//     port, so one local socket has one public address whatever the
//     destination (RFC 4787 endpoint-independent mapping), and
//   - kSymmetric: `masquerade fully-random`, a fresh random public port per
//     destination (address- and port-dependent mapping).
// Both filter like a home router: a datagram from the WAN side that matches
// no mapping is dropped silently (no ICMP, and no conntrack entry that would
// collide with a later mapping); a mapping admits replies only from the
// address and port it was made for (port-dependent filtering, conntrack's).
//
// Each namespace is held by a child (`unshare -n sleep`) that the destructor
// kills, and the test's namespace goes with the process: nothing outlives
// the test. Commands run in a namespace through `nsenter -t PID -n`.
//
// Needs root, unshare(2), ip, nft, nsenter and the kernel's veth and nf_nat:
// Create returns UNAVAILABLE naming what is missing, for the test to skip.
//
// Threading: one thread. Create changes the calling thread's namespace (the
// whole process's when it has one thread, as a test's main thread does).
#ifndef UDPMSG_TESTS_CLI_NAT_NETWORK_H_
#define UDPMSG_TESTS_CLI_NAT_NETWORK_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tests/cli/subprocess.h"

namespace udpmsg::testing {

enum class NatKind { kEndpointIndependent, kSymmetric };

// A child that holds a new network namespace (`unshare -n sleep`), in it
// once this returns: /proc/PID/ns/net names the namespace, which ends when
// the child is killed (as its Subprocess's destructor does). UNAVAILABLE,
// with the reason, where that cannot be done (not root, no unshare).
absl::StatusOr<std::unique_ptr<Subprocess>> HoldNetworkNamespace();

class NatNetwork final {
 public:
  enum class Host { kA, kB };
  // The address a public server binds in the test's own namespace.
  static constexpr const char* kPublicAddress = "192.0.2.1";

  static absl::StatusOr<std::unique_ptr<NatNetwork>> Create(NatKind nat_a, NatKind nat_b);
  ~NatNetwork();
  NatNetwork(const NatNetwork&) = delete;
  NatNetwork& operator=(const NatNetwork&) = delete;

  // `argv` run inside `host`'s namespace (argv[0] a path).
  std::vector<std::string> In(Host host, std::vector<std::string> argv) const;
  // The NAT's public (WAN) address of `host`: 198.51.100.2 or 203.0.113.2.
  static std::string PublicAddressOf(Host host);
  // `host`'s own (LAN) address: 10.0.1.2 or 10.0.2.2.
  static std::string LocalAddressOf(Host host);

  // Sends one datagram from `host`'s UDP port `local_port` to `to_port` and
  // `to_port2` on kPublicAddress and returns the two source ports the public
  // side saw (what its NAT mapped the one socket to, per destination).
  absl::StatusOr<std::pair<int, int>> MappedPorts(Host host, int local_port, int to_port,
                                                  int to_port2) const;

 private:
  NatNetwork() = default;
  absl::StatusOr<int> Hold();  // a new namespace's holder; its pid
  absl::Status Build(NatKind nat_a, NatKind nat_b);

  std::vector<std::unique_ptr<Subprocess>> holders_;
  int nat_[2] = {0, 0};   // holder pids of natA, natB
  int host_[2] = {0, 0};  // holder pids of hostA, hostB
};

}  // namespace udpmsg::testing

#endif  // UDPMSG_TESTS_CLI_NAT_NETWORK_H_
