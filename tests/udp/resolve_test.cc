#include "udp/resolve.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace udpmsg::udp {
namespace {

using ::testing::HasSubstr;

TEST(ResolveTest, NumericAddressesResolveWithoutDns) {
  absl::StatusOr<std::vector<SocketAddress>> v4 =
      Resolve("127.0.0.1", "9000", AddressFamily::kUnspecified, SocketType::kDatagram);
  ASSERT_TRUE(v4.ok()) << v4.status();
  ASSERT_EQ(v4->size(), 1u);
  EXPECT_EQ((*v4)[0].ToString(), "127.0.0.1:9000");

  absl::StatusOr<std::vector<SocketAddress>> v6 =
      Resolve("::1", "53", AddressFamily::kIpv6, SocketType::kStream);
  ASSERT_TRUE(v6.ok()) << v6.status();
  ASSERT_EQ(v6->size(), 1u);
  EXPECT_EQ((*v6)[0].ToString(), "[::1]:53");
}

TEST(ResolveTest, LocalhostGivesOnlyTheRequestedFamily) {
  for (AddressFamily family : {AddressFamily::kIpv4, AddressFamily::kIpv6}) {
    absl::StatusOr<std::vector<SocketAddress>> addrs =
        Resolve("localhost", "1", family, SocketType::kDatagram);
    if (!addrs.ok()) {
      // Some hosts have no "::1 localhost" line; that is a NOT_FOUND, not a crash.
      EXPECT_EQ(addrs.status().code(), absl::StatusCode::kNotFound) << addrs.status();
      continue;
    }
    for (const SocketAddress& a : *addrs) {
      EXPECT_EQ(a.family(), family) << a;
      EXPECT_TRUE(a.IsLoopback()) << a;
    }
  }
}

TEST(ResolveTest, EmptyHostIsTheWildcard) {
  absl::StatusOr<std::vector<SocketAddress>> addrs =
      Resolve("", "", AddressFamily::kIpv4, SocketType::kDatagram);
  ASSERT_TRUE(addrs.ok()) << addrs.status();
  EXPECT_TRUE((*addrs)[0].IsAny());
  EXPECT_EQ((*addrs)[0].port(), 0);
}

TEST(ResolveTest, UnknownHostIsNotFoundWithResolverText) {
  // .invalid is reserved (RFC 6761) and never resolves.
  absl::StatusOr<std::vector<SocketAddress>> addrs =
      Resolve("no-such-host.invalid", "80", AddressFamily::kUnspecified, SocketType::kStream);
  ASSERT_FALSE(addrs.ok());
  EXPECT_EQ(addrs.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(addrs.status().message(), HasSubstr("no-such-host.invalid"));
  // gai_strerror's text follows the name, e.g. "Name or service not known".
  EXPECT_THAT(std::string(addrs.status().message()),
              ::testing::MatchesRegex("resolve \"no-such-host.invalid\" port 80: .+"));
}

TEST(ResolveTest, UnknownServiceIsInvalidArgument) {
  absl::StatusOr<std::vector<SocketAddress>> addrs =
      Resolve("127.0.0.1", "no-such-service", AddressFamily::kIpv4, SocketType::kStream);
  ASSERT_FALSE(addrs.ok());
  EXPECT_THAT(addrs.status().message(), HasSubstr("no-such-service"));
}

TEST(ResolveTest, WrongFamilyForNumericAddressFails) {
  absl::StatusOr<std::vector<SocketAddress>> addrs =
      Resolve("127.0.0.1", "80", AddressFamily::kIpv6, SocketType::kStream);
  EXPECT_FALSE(addrs.ok());
}

TEST(ResolveTest, HostPortFormsAreSplit) {
  absl::StatusOr<std::vector<SocketAddress>> addrs =
      ResolveHostPort("[::1]:7", AddressFamily::kUnspecified, SocketType::kDatagram);
  ASSERT_TRUE(addrs.ok()) << addrs.status();
  EXPECT_EQ((*addrs)[0].ToString(), "[::1]:7");
  absl::StatusOr<std::vector<SocketAddress>> missing =
      ResolveHostPort("127.0.0.1", AddressFamily::kUnspecified, SocketType::kDatagram);
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("missing port"));
}

TEST(ResolveTest, HostPortPortsNeverWrapAndMustBeNumbers) {
  // getaddrinfo takes "99999" as port 34463 (99999 mod 65536): the port is
  // checked before the resolver sees it.
  for (const char* text : {"localhost:99999", "127.0.0.1:65536", "[::1]:131072", "localhost:0",
                           "localhost:-1", "localhost:abc", "127.0.0.1:domain"}) {
    SCOPED_TRACE(text);
    absl::StatusOr<std::vector<SocketAddress>> addrs =
        ResolveHostPort(text, AddressFamily::kUnspecified, SocketType::kDatagram);
    ASSERT_FALSE(addrs.ok()) << (*addrs)[0];
    EXPECT_EQ(addrs.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(addrs.status().message(),
                HasSubstr(absl::StrCat("in \"", text, "\" is not a number from 1 to 65535")));
  }
  absl::StatusOr<std::vector<SocketAddress>> highest =
      ResolveHostPort("127.0.0.1:65535", AddressFamily::kUnspecified, SocketType::kStream);
  ASSERT_TRUE(highest.ok()) << highest.status();
  EXPECT_EQ((*highest)[0].ToString(), "127.0.0.1:65535");
}

TEST(ResolveTest, NumericAddressOfTheOtherFamilySaysSo) {
  absl::StatusOr<std::vector<SocketAddress>> v4 =
      Resolve("127.0.0.1", "80", AddressFamily::kIpv6, SocketType::kStream);
  ASSERT_FALSE(v4.ok());
  EXPECT_EQ(v4.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(v4.status().message(), "127.0.0.1 is an IPv4 address, not IPv6");
  absl::StatusOr<std::vector<SocketAddress>> v6 =
      Resolve("::1", "", AddressFamily::kIpv4, SocketType::kDatagram);
  ASSERT_FALSE(v6.ok());
  EXPECT_EQ(v6.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(v6.status().message(), "::1 is an IPv6 address, not IPv4");
}

TEST(ResolveTest, NameWithoutTheFamilySaysWhichAddressesItHas) {
  // localhost has 127.0.0.1 everywhere, ::1 only where /etc/hosts says so.
  absl::StatusOr<std::vector<SocketAddress>> all =
      Resolve("localhost", "", AddressFamily::kUnspecified, SocketType::kDatagram);
  ASSERT_TRUE(all.ok()) << all.status();
  std::vector<std::string> v4;
  bool has_v6 = false;
  for (const SocketAddress& a : *all) {
    if (a.family() == AddressFamily::kIpv4) v4.push_back(a.IpString());
    has_v6 = has_v6 || a.family() == AddressFamily::kIpv6;
  }
  if (has_v6 || v4.empty()) GTEST_SKIP() << "localhost has an IPv6 address here";
  absl::StatusOr<std::vector<SocketAddress>> addrs =
      Resolve("localhost", "9000", AddressFamily::kIpv6, SocketType::kDatagram);
  ASSERT_FALSE(addrs.ok()) << (*addrs)[0];
  EXPECT_EQ(addrs.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(
      addrs.status().message(),
      absl::StrCat("localhost has no IPv6 address (it has IPv4: ", absl::StrJoin(v4, ", "), ")"));
}

TEST(ResolveTest, HostNameIsNotEmpty) {
  absl::StatusOr<std::string> name = HostName();
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_FALSE(name->empty());
}

}  // namespace
}  // namespace udpmsg::udp
