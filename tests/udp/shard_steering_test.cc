#include "udp/shard_steering.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/codec.h"
#include "proto/frames.h"

namespace udpmsg::udp {
namespace {

using ::testing::HasSubstr;

absl::Span<const uint8_t> Bytes(const std::string& s) { return AsBytes(s); }

// A plain datagram (version 1, protobuf, CRC) for connection `id`, as the
// codec writes it.
std::string Plain(uint64_t id) {
  proto::Codec codec(proto::Codec::Limits{});
  proto::Packet p;
  p.connection_id = id;
  p.packet_number = 7;
  p.ping = proto::Ping{};
  absl::StatusOr<std::string> bytes = codec.Encode(p);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  return bytes.ok() ? *bytes : std::string();
}

// A sealed datagram's header (and a tag's worth of bytes) for `id`.
std::string Sealed(uint64_t id) {
  proto::SealedHeader h;
  h.connection_id = id;
  return proto::EncodeSealedHeader(h) + std::string(16, '\x5a');
}

std::string Hello() {
  proto::Codec codec(proto::Codec::Limits{});
  proto::Packet p;
  p.hello = proto::Hello{};
  p.hello->client_connection_id = 0x1234;
  absl::StatusOr<std::string> bytes = codec.Encode(p);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  return bytes.ok() ? *bytes : std::string();
}

uint32_t Steer(int shards, const std::string& datagram) {
  const std::vector<sock_filter> program = ShardSteeringProgram(shards);
  absl::StatusOr<uint32_t> r = RunSteeringProgram(program, Bytes(datagram));
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : 0xdead;
}

TEST(ShardSteeringProgramTest, PlainDatagramGoesToTheIdsLowByte) {
  EXPECT_EQ(Plain(0x0123456789abcd02)[1], '\x09');  // the wire fact relied on
  for (int shard = 0; shard < 4; ++shard) {
    EXPECT_EQ(Steer(4, Plain(0xfedcba9876543200ull | shard)), static_cast<uint32_t>(shard));
  }
  EXPECT_EQ(Steer(256, Plain(0x12345678900000ffull)), 255u);
}

TEST(ShardSteeringProgramTest, SealedDatagramGoesToTheIdsLowByte) {
  for (int shard = 0; shard < 3; ++shard) {
    EXPECT_EQ(Steer(3, Sealed(0x0102030405060700ull | shard)), static_cast<uint32_t>(shard));
  }
}

TEST(ShardSteeringProgramTest, HelloAndGarbageFallBackToTheHash) {
  EXPECT_NE(Hello()[1], '\x09');
  EXPECT_EQ(Steer(4, Hello()), kNoShard);
  EXPECT_EQ(Steer(4, ""), kNoShard);
  EXPECT_EQ(Steer(4, std::string("\x01", 1)), kNoShard);
  EXPECT_EQ(Steer(4, std::string("\x01\x09", 2)), kNoShard);
  EXPECT_EQ(Steer(4, std::string("\x03\x09\x01garbage", 10)), kNoShard);
  EXPECT_EQ(Steer(4, std::string("\x02\x00\x00\x00", 4)), kNoShard);   // short sealed
  EXPECT_EQ(Steer(4, std::string("\x01\x0a\x01\x00", 4)), kNoShard);   // another tag
  // An id byte naming no shard (a forged id): the hash, not a foreign socket.
  EXPECT_EQ(Steer(4, Plain(0x1111111111111104ull)), kNoShard);
  EXPECT_EQ(Steer(4, Sealed(0x11111111111111ffull)), kNoShard);
}

// ShardByteOf (what senders use) reads what the program reads, on every
// datagram of the tests above and on every short prefix of them.
TEST(ShardSteeringProgramTest, ShardByteOfAgreesWithTheProgram) {
  std::vector<std::string> datagrams = {Plain(0x1234567890abcd05ull), Sealed(0x77ull << 8 | 0xfe),
                                        Hello(), std::string("\x01\x09\x07", 3),
                                        std::string("\x02\x00\x00\x00\x00\x00\x00\x00\x09", 9)};
  for (const std::string& whole : datagrams) {
    for (size_t n = 0; n <= std::min<size_t>(whole.size(), 40); ++n) {
      const std::string d = whole.substr(0, n);
      const int byte = ShardByteOf(d);
      EXPECT_EQ(Steer(256, d), byte < 0 ? kNoShard : static_cast<uint32_t>(byte)) << n;
    }
  }
  EXPECT_EQ(ShardByteOf(Plain(0x1234567890abcd05ull)), 5);
  EXPECT_EQ(ShardByteOf(Sealed(0x77ull << 8 | 0xfe)), 0xfe);
  EXPECT_EQ(ShardByteOf(Hello()), -1);
}

TEST(ShardSteeringProgramTest, InterpreterRejectsUnknownInstructions) {
  std::vector<sock_filter> bad = {sock_filter{BPF_LD | BPF_H | BPF_IND, 0, 0, 0}};
  EXPECT_FALSE(RunSteeringProgram(bad, Bytes("abc")).ok());
}

// Waits (bounded) for a datagram on any of `group`'s sockets; returns the
// index of the socket that got it, -1 on timeout.
int ReceivingSocket(ShardGroup& group) {
  std::vector<pollfd> fds;
  for (DatagramSocket& s : group.sockets) fds.push_back(pollfd{s.fd(), POLLIN, 0});
  if (::poll(fds.data(), fds.size(), 5000) < 1) return -1;
  for (size_t i = 0; i < fds.size(); ++i) {
    if (fds[i].revents & POLLIN) {
      std::array<uint8_t, 2048> buffer;
      EXPECT_TRUE(group.sockets[i].RecvFrom(absl::MakeSpan(buffer)).ok());
      return static_cast<int>(i);
    }
  }
  return -1;
}

absl::StatusOr<ShardGroup> Group(AddressFamily family, int count) {
  DatagramSocket::Options o;
  o.non_blocking = true;
  return BindShardGroup(SocketAddress::Loopback(family, 0), o, count);
}

TEST(ShardGroupTest, RejectsCountsOutOfRange) {
  for (int count : {0, -1, 257}) {
    absl::StatusOr<ShardGroup> g = Group(AddressFamily::kIpv4, count);
    ASSERT_FALSE(g.ok());
    EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(g.status().message(), HasSubstr("outside [1, 256]"));
  }
}

TEST(ShardGroupTest, OneShardIsAPlainSocket) {
  absl::StatusOr<ShardGroup> g = Group(AddressFamily::kIpv4, 1);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->sockets.size(), 1u);
  EXPECT_FALSE(g->steered);
  EXPECT_TRUE(g->steering_error.empty());
}

// The kernel, not the interpreter: every datagram carrying shard i's id
// reaches socket i, from whichever source port it comes, in both families
// and in both forms.
TEST(ShardGroupTest, KernelSteersByConnectionIdFromAnySourcePort) {
  for (AddressFamily family : {AddressFamily::kIpv4, AddressFamily::kIpv6}) {
    for (int count : {2, 4}) {
      SCOPED_TRACE(absl::StrCat(family == AddressFamily::kIpv4 ? "ipv4" : "ipv6", " ", count));
      absl::StatusOr<ShardGroup> g = Group(family, count);
      ASSERT_TRUE(g.ok()) << g.status();
      ASSERT_TRUE(g->steered) << g->steering_error;
      ASSERT_EQ(g->sockets.size(), static_cast<size_t>(count));
      const SocketAddress server = *g->sockets[0].LocalAddress();
      for (int i = 1; i < count; ++i) EXPECT_EQ(g->sockets[i].LocalAddress()->port(), server.port());
      // 16 client sockets (16 source ports) send each shard's ids.
      for (int client = 0; client < 16; ++client) {
        absl::StatusOr<DatagramSocket> c = DatagramSocket::Bind(SocketAddress::Loopback(family, 0), {});
        ASSERT_TRUE(c.ok()) << c.status();
        for (int shard = 0; shard < count; ++shard) {
          const uint64_t id = (uint64_t{0x9e3779b97f4a7c00} * (client + 1)) << 8 | shard;
          for (const std::string& d : {Plain(id), Sealed(id)}) {
            ASSERT_TRUE(c->SendTo(server, Bytes(d)).ok());
            EXPECT_EQ(ReceivingSocket(*g), shard) << "client " << client;
          }
        }
      }
    }
  }
}

// Hellos fall back to the kernel's hash: one source port always reaches the
// same socket, and many source ports spread over more than one.
TEST(ShardGroupTest, HellosGoByTheFourTupleHash) {
  absl::StatusOr<ShardGroup> g = Group(AddressFamily::kIpv4, 2);
  ASSERT_TRUE(g.ok()) << g.status();
  ASSERT_TRUE(g->steered) << g->steering_error;
  const SocketAddress server = *g->sockets[0].LocalAddress();
  std::vector<int> per_socket(2, 0);
  for (int client = 0; client < 32; ++client) {
    absl::StatusOr<DatagramSocket> c = DatagramSocket::Bind(SocketAddress::Loopback(AddressFamily::kIpv4, 0), {});
    ASSERT_TRUE(c.ok()) << c.status();
    int first = -1;
    for (int repeat = 0; repeat < 3; ++repeat) {
      ASSERT_TRUE(c->SendTo(server, Bytes(Hello())).ok());
      const int got = ReceivingSocket(*g);
      ASSERT_GE(got, 0);
      if (first < 0) first = got;
      EXPECT_EQ(got, first) << "client " << client;
    }
    ++per_socket[first];
  }
  // 32 ports all hashing to one of two sockets: probability 2^-31.
  EXPECT_GT(per_socket[0], 0);
  EXPECT_GT(per_socket[1], 0);
}

// A socket of someone else already in the group breaks the numbering: the
// check sees it, detaches the program, and the group still works by hash.
TEST(ShardGroupTest, ForeignSocketInTheGroupTurnsSteeringOff) {
  DatagramSocket::Options o;
  o.non_blocking = true;
  o.reuse_port = true;
  absl::StatusOr<DatagramSocket> squatter =
      DatagramSocket::Bind(SocketAddress::Loopback(AddressFamily::kIpv4, 0), o);
  ASSERT_TRUE(squatter.ok()) << squatter.status();
  o.reuse_port = false;
  absl::StatusOr<ShardGroup> g = BindShardGroup(*squatter->LocalAddress(), o, 2);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_FALSE(g->steered);
  EXPECT_THAT(g->steering_error, HasSubstr("steering check failed"));
}

}  // namespace
}  // namespace udpmsg::udp
