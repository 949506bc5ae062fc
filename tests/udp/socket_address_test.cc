#include "udp/socket_address.h"

#include <arpa/inet.h>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace udpmsg::udp {
namespace {

using ::testing::HasSubstr;

TEST(SocketAddressTest, ParsesAndPrintsIpv4) {
  absl::StatusOr<SocketAddress> a = SocketAddress::Parse("1.2.3.4:80");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->family(), AddressFamily::kIpv4);
  EXPECT_EQ(a->port(), 80);
  EXPECT_EQ(a->IpString(), "1.2.3.4");
  EXPECT_EQ(a->ToString(), "1.2.3.4:80");
  EXPECT_EQ(a->size(), sizeof(sockaddr_in));
}

TEST(SocketAddressTest, ParsesAndPrintsIpv6) {
  absl::StatusOr<SocketAddress> a = SocketAddress::Parse("[::1]:80");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->family(), AddressFamily::kIpv6);
  EXPECT_EQ(a->ToString(), "[::1]:80");
  EXPECT_TRUE(a->IsLoopback());

  absl::StatusOr<SocketAddress> b = SocketAddress::Parse("[2001:DB8:0:0::1]:65535");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->ToString(), "[2001:db8::1]:65535");  // inet_ntop's canonical form
}

TEST(SocketAddressTest, RoundTripsThroughText) {
  for (const char* text : {"0.0.0.0:0", "255.255.255.255:65535", "127.0.0.1:9000", "[::]:0",
                           "[::1]:1", "[fe80::1:2]:443", "[::ffff:10.1.2.3]:53"}) {
    SCOPED_TRACE(text);
    absl::StatusOr<SocketAddress> a = SocketAddress::Parse(text);
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ(a->ToString(), text);
    absl::StatusOr<SocketAddress> b = SocketAddress::Parse(a->ToString());
    ASSERT_TRUE(b.ok());
    EXPECT_EQ(*a, *b);
  }
}

TEST(SocketAddressTest, PortIsNetworkOrderInSockaddr) {
  SocketAddress a = SocketAddress::Ipv4(0x7f000001, 0x1234);
  const auto* in = reinterpret_cast<const sockaddr_in*>(a.data());
  EXPECT_EQ(in->sin_port, htons(0x1234));
  EXPECT_EQ(in->sin_addr.s_addr, htonl(0x7f000001));
  EXPECT_EQ(a.ToString(), "127.0.0.1:4660");
  a.set_port(7);
  EXPECT_EQ(a.port(), 7);
}

TEST(SocketAddressTest, V4MappedConvertsBothWays) {
  absl::StatusOr<SocketAddress> mapped = SocketAddress::Parse("[::ffff:192.0.2.1]:5000");
  ASSERT_TRUE(mapped.ok());
  EXPECT_TRUE(mapped->IsV4Mapped());
  SocketAddress plain = mapped->Unmapped();
  EXPECT_EQ(plain.family(), AddressFamily::kIpv4);
  EXPECT_EQ(plain.ToString(), "192.0.2.1:5000");
  EXPECT_EQ(plain.V4Mapped(), *mapped);
  EXPECT_FALSE(plain.IsV4Mapped());
  // Unmapped() of anything else is the same address.
  SocketAddress v6 = SocketAddress::Loopback(AddressFamily::kIpv6, 1);
  EXPECT_EQ(v6.Unmapped(), v6);
}

TEST(SocketAddressTest, EqualityAndHashSeparateFamiliesPortsAndIps) {
  absl::flat_hash_set<SocketAddress> set;
  set.insert(SocketAddress::Loopback(AddressFamily::kIpv4, 1));
  set.insert(SocketAddress::Loopback(AddressFamily::kIpv4, 2));
  set.insert(SocketAddress::Loopback(AddressFamily::kIpv6, 1));
  set.insert(SocketAddress::Any(AddressFamily::kIpv4, 1));
  set.insert(SocketAddress::Loopback(AddressFamily::kIpv4, 1));  // duplicate
  EXPECT_EQ(set.size(), 4u);
  EXPECT_TRUE(set.contains(*SocketAddress::Parse("127.0.0.1:2")));
  EXPECT_FALSE(set.contains(*SocketAddress::Parse("127.0.0.2:2")));
}

TEST(SocketAddressTest, AnyAndLoopbackAreRecognised) {
  EXPECT_TRUE(SocketAddress::Any(AddressFamily::kIpv6, 0).IsAny());
  EXPECT_TRUE(SocketAddress::Any(AddressFamily::kIpv4, 0).IsAny());
  EXPECT_TRUE(SocketAddress::Parse("127.8.9.10:1")->IsLoopback());
  EXPECT_FALSE(SocketAddress::Parse("128.0.0.1:1")->IsLoopback());
  EXPECT_EQ(SocketAddress().ToString(), "(none)");
  EXPECT_FALSE(SocketAddress().valid());
}

TEST(SocketAddressTest, ParseErrorsSayWhatIsWrong) {
  struct Case {
    const char* text;
    const char* reason;
  } cases[] = {
      {"1.2.3.4", "missing port"},
      {"1.2.3.4:", "empty port"},
      {"1.2.3.4:65536", "port \"65536\" in \"1.2.3.4:65536\" is not a number from 0 to 65535"},
      {"1.2.3.4:-1", "port \"-1\" in \"1.2.3.4:-1\" is not a number"},
      {"1.2.3.4:8o", "port \"8o\" in"},
      {"1.2.3.4:000080", "port \"000080\" in"},
      {":80", "empty host"},
      {"[::1:80", "missing ']'"},
      {"[::1]80", "expected ':'"},
      {"::1:80", "needs brackets"},
      {"1.2.3.256:80", "not a numeric IP"},
      {"localhost:80", "not a numeric IP"},
      {"[1.2.3.4.5]:80", "not a numeric IP"},
      {"[fe80::1%nosuchif0]:80", "unknown IPv6 scope"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    absl::StatusOr<SocketAddress> a = SocketAddress::Parse(c.text);
    ASSERT_FALSE(a.ok()) << *a;
    EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(a.status().message(), HasSubstr(c.reason));
  }
}

TEST(SocketAddressTest, SplitHostPortHandlesNamesAndBrackets) {
  auto parts = SplitHostPort("example.com:http");
  ASSERT_TRUE(parts.ok());
  EXPECT_EQ(parts->first, "example.com");
  EXPECT_EQ(parts->second, "http");
  parts = SplitHostPort("[::1]");
  ASSERT_TRUE(parts.ok());
  EXPECT_EQ(parts->first, "::1");
  EXPECT_EQ(parts->second, "");
  parts = SplitHostPort("localhost");
  ASSERT_TRUE(parts.ok());
  EXPECT_EQ(parts->second, "");
}

TEST(ParsePortTest, DestinationsAreOneTo65535AndBindsMayBeZero) {
  EXPECT_EQ(*ParsePort("1", PortRange::kDestination), 1);
  EXPECT_EQ(*ParsePort("65535", PortRange::kDestination), 65535);
  EXPECT_EQ(*ParsePort("0", PortRange::kBind), 0);
  EXPECT_EQ(*ParsePort("65535", PortRange::kBind), 65535);
  EXPECT_EQ(*ParsePort("0"), 0);  // kBind is the default

  absl::StatusOr<uint16_t> zero = ParsePort("0", PortRange::kDestination);
  ASSERT_FALSE(zero.ok());
  EXPECT_EQ(zero.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(zero.status().message(), "port \"0\" is not a number from 1 to 65535");
}

TEST(ParsePortTest, OutOfRangeNeverWrapsAndOnlyDigitsCount) {
  // 99999 and 65536 + 9000 would be 34463 and 9000 modulo 65536.
  for (const char* text : {"65536", "99999", "74536", "4294967297", "-1", "-5", "+80", " 80", "80 ",
                           "abc", "8o", "http", "", "0x50", "000080", "1e3"}) {
    SCOPED_TRACE(text);
    for (PortRange range : {PortRange::kBind, PortRange::kDestination}) {
      absl::StatusOr<uint16_t> port = ParsePort(text, range);
      ASSERT_FALSE(port.ok()) << *port;
      EXPECT_EQ(port.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_EQ(port.status().message(),
                absl::StrCat("port \"", text, "\" is not a number from ",
                             range == PortRange::kBind ? "0" : "1", " to 65535"));
    }
  }
}

TEST(ParseHostPortTest, SplitsNamesAddressesAndBracketedIpv6) {
  struct Case {
    const char* text;
    const char* host;
    uint16_t port;
  } cases[] = {
      {"localhost:9000", "localhost", 9000}, {"127.0.0.1:1", "127.0.0.1", 1},
      {"[::1]:65535", "::1", 65535},         {"example.com:443", "example.com", 443},
      {"[fe80::1%lo]:80", "fe80::1%lo", 80},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    absl::StatusOr<HostPort> hp = ParseHostPort(c.text);
    ASSERT_TRUE(hp.ok()) << hp.status();
    EXPECT_EQ(hp->host, c.host);
    EXPECT_EQ(hp->port, c.port);
  }
  absl::StatusOr<HostPort> any = ParseHostPort("[::]:0", PortRange::kBind);
  ASSERT_TRUE(any.ok()) << any.status();
  EXPECT_EQ(any->host, "::");
  EXPECT_EQ(any->port, 0);
}

TEST(ParseHostPortTest, BadPortsAreNamedWithTheirAddress) {
  struct Case {
    const char* text;
    const char* message;
  } cases[] = {
      {"localhost:99999", "port \"99999\" in \"localhost:99999\" is not a number from 1 to 65535"},
      {"localhost:65536", "port \"65536\" in \"localhost:65536\" is not a number from 1 to 65535"},
      {"localhost:0", "port \"0\" in \"localhost:0\" is not a number from 1 to 65535"},
      {"localhost:-1", "port \"-1\" in \"localhost:-1\" is not a number from 1 to 65535"},
      {"localhost:abc", "port \"abc\" in \"localhost:abc\" is not a number from 1 to 65535"},
      {"example.com:http", "port \"http\" in \"example.com:http\" is not a number from 1 to 65535"},
      {"[::1]:70000", "port \"70000\" in \"[::1]:70000\" is not a number from 1 to 65535"},
      {"localhost", "missing port in \"localhost\" (expected HOST:PORT or [IPv6]:PORT)"},
      {"[::1]", "missing port in \"[::1]\" (expected HOST:PORT or [IPv6]:PORT)"},
      {"localhost:", "empty port in address \"localhost:\""},
      {":80", "empty host in address \":80\""},
      {"::1:80", "IPv6 address needs brackets when a port follows"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    absl::StatusOr<HostPort> hp = ParseHostPort(c.text);
    ASSERT_FALSE(hp.ok()) << hp->host << " " << hp->port;
    EXPECT_EQ(hp.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(hp.status().message(), HasSubstr(c.message));
  }
  // A local port may be 0 (a free one); the same text is no destination.
  EXPECT_TRUE(ParseHostPort("127.0.0.1:0", PortRange::kBind).ok());
  EXPECT_FALSE(ParseHostPort("127.0.0.1:0", PortRange::kDestination).ok());
  EXPECT_FALSE(ParseHostPort("127.0.0.1:65536", PortRange::kBind).ok());
}

TEST(SocketAddressTest, FromSockaddrRejectsShortAndForeignAddresses) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  EXPECT_FALSE(SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&in), 4).ok());
  sockaddr unix_addr{};
  unix_addr.sa_family = AF_UNIX;
  absl::StatusOr<SocketAddress> a = SocketAddress::FromSockaddr(&unix_addr, sizeof(unix_addr));
  ASSERT_FALSE(a.ok());
  EXPECT_THAT(a.status().message(), HasSubstr("unsupported socket address family"));
}

}  // namespace
}  // namespace udpmsg::udp
