// NAT traversal through real kernel NATs (tests/cli/nat_network.h): a
// `udpmsg rendezvous` on the public side, `udpmsg recv --reliable --via`
// behind one NAT, `udpmsg send --reliable --via` behind the other.
//   - Both NATs endpoint-independent (Linux masquerade keeping ports, the
//     common home router): the two hosts punch through and the transfer runs
//     directly between them; the sender says "path to NAME: direct".
//   - The sender behind a symmetric NAT (masquerade fully-random: a new public
//     port per destination, so the address the rendezvous server saw is not
//     the one the peer would see): punching cannot work and the relay takes
//     over; the sender says "path to NAME: relayed via ...".
// Each checks the file's bytes at the receiver. The NATs are checked to
// behave as built first (the mapping of one socket to two destinations).
// Needs root (network namespaces): skipped, with the reason, otherwise.
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "reliable/deterministic_rng.h"
#include "tests/cli/nat_network.h"
#include "tests/cli/subprocess.h"

namespace udpmsg::testing {
namespace {

using Host = NatNetwork::Host;

constexpr int kRendezvousPort = 7000;
constexpr uint64_t kSeed = 20261203;

std::unique_ptr<NatNetwork> BuildOrSkip(NatKind a, NatKind b, std::string* why) {
  absl::StatusOr<std::unique_ptr<NatNetwork>> n = NatNetwork::Create(a, b);
  if (!n.ok()) {
    *why = std::string(n.status().message());
    return nullptr;
  }
  return std::move(*n);
}

std::string WriteRandomFile(const std::string& name, size_t size) {
  reliable::DeterministicRng rng(kSeed);
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(rng.Next() & 0xff);
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST(NatNetworkTest, NatsMapAsBuilt) {
  std::string why;
  std::unique_ptr<NatNetwork> net =
      BuildOrSkip(NatKind::kEndpointIndependent, NatKind::kSymmetric, &why);
  if (net == nullptr) GTEST_SKIP() << why;
  // Endpoint-independent: one socket, one public port (its own) for both
  // destinations.
  absl::StatusOr<std::pair<int, int>> a = net->MappedPorts(Host::kA, 5555, 9001, 9002);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->first, 5555);
  EXPECT_EQ(a->second, 5555);
  // Symmetric: another public port per destination.
  absl::StatusOr<std::pair<int, int>> b = net->MappedPorts(Host::kB, 6666, 9003, 9004);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_NE(b->first, b->second);
}

// The rendezvous server on the public side, and the transfer of a 2 MiB file
// from host A (`send --via`) to host B (`recv --via --name bob`). Returns
// the sender's stderr.
std::string TransferThroughNats(NatNetwork& net, const std::string& tag) {
  std::unique_ptr<Subprocess> rendezvous =
      StartUdpmsg({"rendezvous", "--bind", NatNetwork::kPublicAddress, "--port",
                   std::to_string(kRendezvousPort)});
  if (rendezvous == nullptr) return "";
  EXPECT_TRUE(rendezvous->WaitForStderr("relay on", absl::Seconds(10)).ok())
      << rendezvous->stderr_text();
  const std::string via = absl::StrCat(NatNetwork::kPublicAddress, ":", kRendezvousPort);

  const std::string input = WriteRandomFile(tag + "_in", 2 << 20);
  const std::string output = ::testing::TempDir() + "/" + tag + "_out";
  absl::StatusOr<std::unique_ptr<Subprocess>> recv = Subprocess::Start(
      net.In(Host::kB, {UdpmsgPath(), "recv", "--reliable", "--via", via, "--name", "bob",
                        "--out", output}));
  EXPECT_TRUE(recv.ok()) << recv.status();
  if (!recv.ok()) return "";
  absl::Status registered = (*recv)->WaitForStderr("registered as bob", absl::Seconds(10));
  EXPECT_TRUE(registered.ok()) << registered << ": " << (*recv)->stderr_text();
  // The receiver is seen from its NAT's public address.
  EXPECT_THAT((*recv)->stderr_text(),
              ::testing::HasSubstr(absl::StrCat("seen as ", NatNetwork::PublicAddressOf(Host::kB))));

  absl::StatusOr<std::unique_ptr<Subprocess>> send = Subprocess::Start(net.In(
      Host::kA, {UdpmsgPath(), "send", "--reliable", "--via", via, "bob", "--file", input}));
  EXPECT_TRUE(send.ok()) << send.status();
  if (!send.ok()) return "";
  EXPECT_EQ(ExitCodeWithin(**send, absl::Seconds(60)), 0)
      << "sender: " << (*send)->stderr_text() << "\nreceiver: " << (*recv)->stderr_text()
      << "\nrendezvous: " << rendezvous->stderr_text();
  EXPECT_EQ(ExitCodeWithin(**recv, absl::Seconds(20)), 0) << (*recv)->stderr_text();
  EXPECT_TRUE(ReadFile(output) == ReadFile(input)) << "the received file differs";
  rendezvous->Kill(SIGTERM);
  ExitCodeWithin(*rendezvous, absl::Seconds(10));
  std::fprintf(stderr, "--- %s: sender ---\n%s--- receiver ---\n%s--- rendezvous ---\n%s", tag.c_str(),
               (*send)->stderr_text().c_str(), (*recv)->stderr_text().c_str(),
               rendezvous->stderr_text().c_str());
  return (*send)->stderr_text();
}

TEST(NatTraversalTest, EndpointIndependentNatsGoDirect) {
  std::string why;
  std::unique_ptr<NatNetwork> net =
      BuildOrSkip(NatKind::kEndpointIndependent, NatKind::kEndpointIndependent, &why);
  if (net == nullptr) GTEST_SKIP() << why;
  const std::string sender = TransferThroughNats(*net, "direct");
  EXPECT_THAT(sender, ::testing::HasSubstr(absl::StrCat(
                          "path to bob: direct (", NatNetwork::PublicAddressOf(Host::kB), ":")));
  EXPECT_THAT(sender, ::testing::Not(::testing::HasSubstr("relayed")));
}

TEST(NatTraversalTest, SymmetricNatFallsBackToTheRelay) {
  std::string why;
  std::unique_ptr<NatNetwork> net =
      BuildOrSkip(NatKind::kSymmetric, NatKind::kEndpointIndependent, &why);
  if (net == nullptr) GTEST_SKIP() << why;
  const std::string sender = TransferThroughNats(*net, "relayed");
  EXPECT_THAT(sender, ::testing::HasSubstr(
                          absl::StrCat("path to bob: relayed via ", NatNetwork::kPublicAddress)));
  EXPECT_THAT(sender, ::testing::Not(::testing::HasSubstr("path to bob: direct")));
}

}  // namespace
}  // namespace udpmsg::testing
