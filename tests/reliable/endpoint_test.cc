// Direct tests of reliable::Endpoint: the handshake's anti-spoofing and
// anti-amplification guarantees, robustness against malformed input, the
// connection limit, flow control, bounded reassembly memory, close semantics
// and determinism. Most tests drive OnDatagram/OnTimeout/TakeOutgoing by hand
// (a "raw peer" builds packets with proto::Codec); multi-endpoint scenarios
// use the deterministic simulator. Seeds are printed on failure.
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <memory>
#include <new>
#include <numeric>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "impairment/model.h"
#include "proto/codec.h"
#include "proto/frames.h"
#include "reliable/deterministic_rng.h"
#include "reliable/datagram_batch.h"
#include "reliable/endpoint.h"
#include "reliable/packet_protection.h"
#include "tests/reliable/endpoint_node.h"
#include "tests/reliable/scenario.h"
#include "tests/sim/simulator.h"
#include "udp/address_prefix.h"
#include "udp/socket_address.h"

// Live heap bytes of this test binary, counted by replacing the global
// operator new and delete: each allocation asks malloc and counts what
// malloc_usable_size says it really handed out (rounding included), so a
// test can measure what a structure holds without trusting its accounting.
namespace {
std::atomic<int64_t> live_heap_bytes{0};
// Allocations made, for tests that count them on a path.
std::atomic<int64_t> heap_allocations{0};

void* CountedAlloc(std::size_t size, std::size_t align) {
  heap_allocations.fetch_add(1, std::memory_order_relaxed);
  if (size == 0) size = 1;
  void* p = align <= alignof(std::max_align_t)
                ? std::malloc(size)
                : std::aligned_alloc(align, (size + align - 1) / align * align);
  if (p != nullptr) {
    live_heap_bytes.fetch_add(static_cast<int64_t>(malloc_usable_size(p)),
                              std::memory_order_relaxed);
  }
  return p;
}

void* CountedAllocOrDie(std::size_t size, std::size_t align) {
  void* p = CountedAlloc(size, align);
  if (p == nullptr) std::abort();  // out of memory in a test
  return p;
}

void CountedFree(void* p) {
  if (p == nullptr) return;
  live_heap_bytes.fetch_sub(static_cast<int64_t>(malloc_usable_size(p)),
                            std::memory_order_relaxed);
  std::free(p);
}
}  // namespace

void* operator new(std::size_t n) { return CountedAllocOrDie(n, 0); }
void* operator new[](std::size_t n) { return CountedAllocOrDie(n, 0); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return CountedAlloc(n, 0); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return CountedAlloc(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) {
  return CountedAllocOrDie(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return CountedAllocOrDie(n, static_cast<std::size_t>(a));
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return CountedAlloc(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return CountedAlloc(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept { CountedFree(p); }
void operator delete[](void* p) noexcept { CountedFree(p); }
void operator delete(void* p, std::size_t) noexcept { CountedFree(p); }
void operator delete[](void* p, std::size_t) noexcept { CountedFree(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { CountedFree(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { CountedFree(p); }
void operator delete(void* p, std::align_val_t) noexcept { CountedFree(p); }
void operator delete[](void* p, std::align_val_t) noexcept { CountedFree(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { CountedFree(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { CountedFree(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  CountedFree(p);
}
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  CountedFree(p);
}

namespace udpmsg::testing {
namespace {

using reliable::ConnectionId;
using reliable::ConnectionStats;
using reliable::DeliveryMode;
using reliable::Endpoint;
using reliable::EndpointOptions;
using reliable::EndpointStats;
using reliable::Event;
using reliable::Outgoing;
using reliable::ReceivedDatagram;
using ::testing::HasSubstr;

proto::Codec MakeCodec(size_t max_datagram = proto::kDefaultMaxDatagram,
                       uint64_t max_message_bytes = 16 << 20) {
  proto::Codec::Limits limits;
  limits.max_datagram = max_datagram;
  limits.max_message_bytes = max_message_bytes;
  return proto::Codec(limits);
}

std::string Encode(const proto::Codec& codec, const proto::Packet& p) {
  absl::StatusOr<std::string> bytes = codec.Encode(p);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  return bytes.ok() ? *std::move(bytes) : std::string();
}

// A padded hello (the codec pads it to its max_datagram).
std::string PaddedHello(const proto::Codec& codec, uint64_t cid, std::string cookie = "") {
  proto::Packet p;
  p.hello.emplace();
  p.hello->client_connection_id = cid;
  p.hello->cookie = std::move(cookie);
  p.hello->max_datagram = static_cast<uint32_t>(codec.limits().max_datagram);
  return Encode(codec, p);
}

void AppendVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

// A hello encoded by hand (the codec always pads a hello to at least
// kMinDatagram), with padding field 15 so the datagram is exactly `size`
// bytes when `size` is given and reachable. Well-formed: Codec::Decode
// accepts it.
std::string UnpaddedHello(uint64_t cid, absl::string_view cookie,
                          std::optional<size_t> size = std::nullopt) {
  std::string hello;
  hello.push_back(0x09);  // field 1, fixed64
  for (int i = 0; i < 8; ++i) hello.push_back(static_cast<char>(cid >> (8 * i)));
  if (!cookie.empty()) {
    hello.push_back(0x12);  // field 2, bytes
    AppendVarint(&hello, cookie.size());
    hello.append(cookie.data(), cookie.size());
  }
  hello.push_back(0x18);  // field 3, varint
  AppendVarint(&hello, proto::kDefaultMaxDatagram);
  std::string out(1, static_cast<char>(proto::kProtocolVersion));
  out.push_back(0x1A);  // Packet field 3 (hello), length-delimited
  AppendVarint(&out, hello.size());
  out += hello;
  if (size) {
    const size_t unpadded = out.size() + 4;
    // padding field: tag (1) + varint(len) + len
    for (size_t len = 0; unpadded + 1 + VarintSize(len) + len <= *size; ++len) {
      if (unpadded + 1 + VarintSize(len) + len == *size) {
        out.push_back(0x7A);  // field 15, bytes
        AppendVarint(&out, len);
        out.append(len, '\0');
        break;
      }
    }
  }
  const uint32_t crc = proto::Crc32c(out);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(crc >> (8 * i)));
  return out;
}

std::vector<proto::Packet> DecodeAll(const proto::Codec& codec, const std::vector<Outgoing>& out) {
  std::vector<proto::Packet> packets;
  for (const Outgoing& o : out) {
    absl::StatusOr<proto::Packet> p = codec.Decode(o.bytes);
    EXPECT_TRUE(p.ok()) << p.status();
    if (p.ok()) packets.push_back(*std::move(p));
  }
  return packets;
}

size_t CountType(const std::vector<Event>& events, Event::Type type) {
  size_t n = 0;
  for (const Event& e : events) n += e.type == type;
  return n;
}

// A hand-driven client: builds packets with its own codec and feeds them to
// a server Endpoint; reads the server's answers from TakeOutgoing.
class RawPeer {
 public:
  RawPeer(Endpoint* server, udp::SocketAddress address, uint64_t cid,
          proto::Codec codec = MakeCodec())
      : server_(server), address_(address), cid_(cid), codec_(std::move(codec)) {}

  // hello -> challenge -> hello{cookie} -> accept -> ping (confirms).
  void Handshake(absl::Time now) {
    Accepted(now);
    Confirm(now);
  }

  // The handshake up to the accept: the server holds the connection.
  void Accepted(absl::Time now) {
    server_->OnDatagram(now, address_, PaddedHello(codec_, cid_));
    std::vector<proto::Packet> got = DecodeAll(codec_, server_->TakeOutgoing());
    ASSERT_EQ(got.size(), 1u);
    ASSERT_TRUE(got[0].challenge.has_value());
    server_->OnDatagram(now, address_, PaddedHello(codec_, cid_, got[0].challenge->cookie));
    got = DecodeAll(codec_, server_->TakeOutgoing());
    ASSERT_EQ(got.size(), 1u);
    ASSERT_TRUE(got[0].accept.has_value());
    ASSERT_EQ(got[0].accept->client_connection_id, cid_);
    server_id_ = got[0].accept->server_connection_id;
  }

  // The ping that confirms the connection.
  void Confirm(absl::Time now) {
    proto::Packet ping;
    ping.ping = proto::Ping{};
    Send(now, std::move(ping));
    std::vector<Event> events = server_->TakeEvents();
    ASSERT_EQ(CountType(events, Event::Type::kConnected), 1u);
    server_->TakeOutgoing();
  }

  // Sends `p` as the next packet of the connection; returns its size.
  size_t Send(absl::Time now, proto::Packet p) {
    p.connection_id = server_id_;
    p.packet_number = next_number_++;
    const std::string bytes = Encode(codec_, p);
    server_->OnDatagram(now, address_, bytes);
    return bytes.size();
  }

  // Leaves a gap in the packet numbers (one more ack range at the server).
  void SkipPacketNumbers(uint64_t n) { next_number_ += n; }

  ConnectionId server_id() const { return server_id_; }
  const proto::Codec& codec() const { return codec_; }

 private:
  Endpoint* server_;
  udp::SocketAddress address_;
  uint64_t cid_;
  proto::Codec codec_;
  ConnectionId server_id_ = 0;
  uint64_t next_number_ = 1;
};

// ---------------------------------------------------------------------------
// 1. Spoofed hellos: bounded amplification, no state.

TEST(EndpointTest, SpoofedHelloGetsAtMostThreeTimesItsBytesAndCreatesNoState) {
  Endpoint server(kStart, ServerOptions(1));
  const proto::Codec codec = MakeCodec();
  const udp::SocketAddress victim = Addr("192.0.2.7:9999");
  const std::string hello = PaddedHello(codec, 0x1234);
  ASSERT_EQ(hello.size(), proto::kDefaultMaxDatagram);
  server.OnDatagram(kStart, victim, hello);
  std::vector<Outgoing> out = server.TakeOutgoing();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].peer, victim);
  EXPECT_LE(out[0].bytes.size(), 3 * hello.size());
  std::vector<proto::Packet> got = DecodeAll(codec, out);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(got[0].challenge.has_value());
  EXPECT_EQ(got[0].challenge->client_connection_id, 0x1234u);
  // The challenge is addressed to the client: its header carries the client's id.
  EXPECT_EQ(got[0].connection_id, 0x1234u);
  EXPECT_EQ(server.connection_count(), 0u);
  EXPECT_EQ(server.NextTimeout(), absl::InfiniteFuture());
  EXPECT_EQ(server.stats().challenges_sent, 1u);
  // The victim never answers: nothing else is ever sent to it.
  server.OnTimeout(kStart + absl::Minutes(5));
  EXPECT_FALSE(server.HasOutgoing());
  EXPECT_TRUE(server.TakeEvents().empty());
  EXPECT_EQ(server.connection_count(), 0u);
}

TEST(EndpointTest, HundredThousandSpoofedHellosLeaveNoStateAndAmplifyAtMostThreeTimes) {
  const uint64_t seed = 20240601;
  SCOPED_TRACE(absl::StrCat("seed=", seed));
  Endpoint server(kStart, ServerOptions(seed));
  // Hellos padded to several budgets, all in [kMinDatagram, the server's
  // max_datagram] (a larger datagram is malformed for the server).
  const std::vector<proto::Codec> codecs = {MakeCodec(proto::kMinDatagram), MakeCodec(700),
                                            MakeCodec(1000), MakeCodec(1200)};
  reliable::DeterministicRng rng(seed);
  uint64_t request_bytes = 0;
  uint64_t reply_bytes = 0;
  uint64_t replies = 0;
  absl::Time now = kStart;
  for (uint32_t i = 0; i < 100'000; ++i) {
    const udp::SocketAddress from =
        udp::SocketAddress::Ipv4(0x0A000000u + i, static_cast<uint16_t>(1024 + i % 60000));
    const uint64_t cid = rng.Next() | 1;
    const std::string hello = PaddedHello(codecs[rng.Uniform(codecs.size())], cid);
    ASSERT_GE(hello.size(), proto::kMinDatagram);
    now += absl::Microseconds(10);
    server.OnDatagram(now, from, hello);
    request_bytes += hello.size();
    for (const Outgoing& o : server.TakeOutgoing()) {
      ASSERT_EQ(o.peer, from);
      ASSERT_LE(o.bytes.size(), 3 * hello.size()) << "hello " << i;
      reply_bytes += o.bytes.size();
      ++replies;
    }
    ASSERT_EQ(server.connection_count(), 0u) << "hello " << i;
  }
  EXPECT_EQ(replies, 100'000u);
  EXPECT_LE(reply_bytes, 3 * request_bytes);
  EXPECT_EQ(server.stats().hellos, 100'000u);
  EXPECT_EQ(server.stats().accepted, 0u);
  EXPECT_EQ(server.NextTimeout(), absl::InfiniteFuture());
  server.OnTimeout(now + absl::Minutes(1));
  EXPECT_FALSE(server.HasOutgoing());
  EXPECT_TRUE(server.TakeEvents().empty());
  EXPECT_EQ(server.connection_count(), 0u);
}

TEST(EndpointTest, ShortHellosGetNoReplyAtAll) {
  Endpoint server(kStart, ServerOptions(2));
  const proto::Codec codec = MakeCodec();
  const udp::SocketAddress from = Addr("192.0.2.8:1234");
  // A real cookie for (from, cid): even a short hello carrying it is dropped.
  server.OnDatagram(kStart, from, PaddedHello(codec, 77));
  std::vector<proto::Packet> got = DecodeAll(codec, server.TakeOutgoing());
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(got[0].challenge.has_value());
  const std::string cookie = got[0].challenge->cookie;

  std::vector<std::string> shorts = {UnpaddedHello(77, ""), UnpaddedHello(77, cookie),
                                     UnpaddedHello(78, "", 200),
                                     UnpaddedHello(77, cookie, proto::kMinDatagram - 1),
                                     UnpaddedHello(79, "", proto::kMinDatagram - 1)};
  for (const std::string& hello : shorts) {
    SCOPED_TRACE(absl::StrCat("size=", hello.size()));
    ASSERT_LT(hello.size(), proto::kMinDatagram);
    absl::StatusOr<proto::Packet> decoded = codec.Decode(hello);
    ASSERT_TRUE(decoded.ok()) << decoded.status();  // well-formed, only short
    ASSERT_TRUE(decoded->hello.has_value());
    const uint64_t short_before = server.stats().short_hellos;
    server.OnDatagram(kStart + absl::Seconds(1), from, hello);
    EXPECT_FALSE(server.HasOutgoing());
    EXPECT_EQ(server.stats().short_hellos, short_before + 1);
    EXPECT_EQ(server.connection_count(), 0u);
  }
  EXPECT_EQ(server.stats().challenges_sent, 1u);
  EXPECT_TRUE(server.TakeEvents().empty());
  // Sanity: the padded form of the same hello with the cookie is accepted.
  const std::string padded = UnpaddedHello(77, cookie, proto::kMinDatagram);
  ASSERT_EQ(padded.size(), proto::kMinDatagram);
  server.OnDatagram(kStart + absl::Seconds(1), from, padded);
  EXPECT_EQ(server.connection_count(), 1u);
  EXPECT_EQ(server.stats().accepted, 1u);
}

// ---------------------------------------------------------------------------
// 2. Bad cookies.

TEST(EndpointTest, HelloWithBadCookieGetsFreshChallengeNotConnection) {
  Endpoint server(kStart, ServerOptions(3));
  const proto::Codec codec = MakeCodec();
  const udp::SocketAddress a = Addr("192.0.2.10:4000");
  const udp::SocketAddress b = Addr("192.0.2.11:4000");
  const udp::SocketAddress a_other_port = Addr("192.0.2.10:4001");
  const uint64_t cid = 0xABCDEF;

  auto challenge_for = [&](absl::Time now, const udp::SocketAddress& from, uint64_t id,
                           std::string cookie) -> std::string {
    server.OnDatagram(now, from, PaddedHello(codec, id, std::move(cookie)));
    std::vector<Outgoing> out = server.TakeOutgoing();
    EXPECT_EQ(out.size(), 1u);
    if (out.size() != 1) return "";
    EXPECT_EQ(out[0].peer, from);
    std::vector<proto::Packet> got = DecodeAll(codec, out);
    EXPECT_TRUE(got.size() == 1 && got[0].challenge.has_value()) << "not a challenge";
    if (got.size() != 1 || !got[0].challenge) return "";
    EXPECT_EQ(got[0].challenge->client_connection_id, id);
    return got[0].challenge->cookie;
  };

  const std::string good = challenge_for(kStart, a, cid, "");
  ASSERT_EQ(good.size(), reliable::CookieJar::kCookieBytes);
  uint64_t bad = 0;
  struct Case {
    std::string name;
    absl::Time now;
    udp::SocketAddress from;
    uint64_t cid;
    std::string cookie;
  };
  std::string forged = good;
  forged[forged.size() - 1] ^= 0x01;
  std::string forged_time = good;
  forged_time[7] ^= 0x01;
  reliable::DeterministicRng rng(3);
  std::string random_cookie(reliable::CookieJar::kCookieBytes, '\0');
  for (char& c : random_cookie) c = static_cast<char>(rng.Next());
  const std::vector<Case> cases = {
      {"forged mac", kStart + absl::Seconds(1), a, cid, forged},
      {"forged time", kStart + absl::Seconds(1), a, cid, forged_time},
      {"random", kStart + absl::Seconds(1), a, cid, random_cookie},
      {"short", kStart + absl::Seconds(1), a, cid, good.substr(0, 10)},
      {"expired", kStart + absl::Seconds(11), a, cid, good},
      {"other address", kStart + absl::Seconds(1), b, cid, good},
      {"other port", kStart + absl::Seconds(1), a_other_port, cid, good},
      {"other connection id", kStart + absl::Seconds(1), a, cid + 1, good},
      {"from the future", kStart - absl::Seconds(5), a, cid, good},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string fresh = challenge_for(c.now, c.from, c.cid, c.cookie);
    EXPECT_EQ(server.stats().bad_cookies, ++bad);
    EXPECT_EQ(server.connection_count(), 0u);
    EXPECT_EQ(server.stats().accepted, 0u);
    EXPECT_EQ(fresh.size(), reliable::CookieJar::kCookieBytes);
  }
  EXPECT_TRUE(server.TakeEvents().empty());
  // A fresh challenge's cookie does work, from the right address, in time.
  const absl::Time later = kStart + absl::Seconds(30);
  const std::string fresh = challenge_for(later, b, cid, "");
  server.OnDatagram(later + absl::Seconds(1), b, PaddedHello(codec, cid, fresh));
  std::vector<proto::Packet> got = DecodeAll(codec, server.TakeOutgoing());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(got[0].accept.has_value());
  EXPECT_EQ(server.connection_count(), 1u);
  EXPECT_EQ(server.stats().accepted, 1u);
}

// ---------------------------------------------------------------------------
// Simulator helpers.

std::vector<std::string> Received(EndpointNode& node, ConnectionId id, uint32_t channel) {
  std::vector<std::string> out;
  for (const Event& e : node.events()) {
    if (e.type == Event::Type::kMessage && e.connection == id && e.channel == channel) {
      out.push_back(e.message);
    }
  }
  return out;
}

size_t CountFor(const EndpointNode& node, ConnectionId id, Event::Type type) {
  size_t n = 0;
  for (const Event& e : const_cast<EndpointNode&>(node).events()) {
    n += e.connection == id && e.type == type;
  }
  return n;
}

// Sends one message each way on `channel` and waits until both are received
// and acknowledged.
void ExchangeMessages(sim::Simulator& sim, EndpointNode& a, ConnectionId a_id, EndpointNode& b,
                      ConnectionId b_id, uint32_t channel, const std::string& tag) {
  const size_t a_acked = CountFor(a, a_id, Event::Type::kAcked);
  const size_t b_acked = CountFor(b, b_id, Event::Type::kAcked);
  ASSERT_TRUE(a.endpoint()
                  .Send(sim.now(), a_id, channel, DeliveryMode::kReliableOrdered,
                        absl::StrCat(tag, " a->b"))
                  .ok());
  ASSERT_TRUE(b.endpoint()
                  .Send(sim.now(), b_id, channel, DeliveryMode::kReliableOrdered,
                        absl::StrCat(tag, " b->a"))
                  .ok());
  sim.PollAll();
  ASSERT_TRUE(sim.RunUntil(
      [&] {
        return CountFor(a, a_id, Event::Type::kAcked) == a_acked + 1 &&
               CountFor(b, b_id, Event::Type::kAcked) == b_acked + 1;
      },
      sim.now() + absl::Seconds(10)))
      << tag;
  EXPECT_THAT(Received(b, b_id, channel), ::testing::Contains(absl::StrCat(tag, " a->b")));
  EXPECT_THAT(Received(a, a_id, channel), ::testing::Contains(absl::StrCat(tag, " b->a")));
}

// ---------------------------------------------------------------------------
// 3. Malformed and misdirected datagrams.

TEST(EndpointTest, MalformedAndMisdirectedDatagramsChangeNothing) {
  const uint64_t seed = 31337;
  SCOPED_TRACE(absl::StrCat("seed=", seed));
  Pair net(seed, Lossy());
  const ConnectionId client_id = net.Connect();
  const ConnectionId server_id = net.ServerConnection();
  ASSERT_NE(server_id, 0u);
  ExchangeMessages(net.sim(), net.client(), client_id, net.server(), server_id, 1, "before");

  Endpoint& server = net.server().endpoint();
  const proto::Codec codec = MakeCodec();
  const udp::SocketAddress client_addr = net.client().address();
  reliable::DeterministicRng rng(seed);
  const absl::Time now = net.sim().now();
  const reliable::EndpointStats before = server.stats();
  const reliable::ConnectionStats conn_before = *server.Stats(server_id);
  uint64_t malformed = 0;
  uint64_t unknown = 0;
  uint64_t wrong = 0;

  // Valid established-connection packets of every kind, for `id`, numbered
  // in [base, base + span).
  auto valid_packets = [&](ConnectionId id, uint64_t base = 100'000, uint64_t span = 1000) {
    std::vector<proto::Packet> out;
    proto::Packet ping;
    ping.connection_id = id;
    ping.packet_number = base + rng.Uniform(span);
    ping.ping = proto::Ping{};
    out.push_back(ping);
    proto::Packet data = ping;
    data.ping.reset();
    proto::DataFragment f;
    f.channel = 1;
    f.mode = static_cast<uint32_t>(DeliveryMode::kReliableOrdered);
    f.sequence = 1;  // the next message the server expects on channel 1
    f.total_size = 5;
    f.payload = "spoof";
    data.data.push_back(f);
    out.push_back(data);
    proto::Packet ack = ping;
    ack.ping.reset();
    ack.ack = proto::Ack{{proto::AckRange{1, 3}}, absl::ZeroDuration()};
    out.push_back(ack);
    proto::Packet close = ping;
    close.ping.reset();
    close.close = proto::Close{proto::kCloseApplication, "spoofed close"};
    out.push_back(close);
    return out;
  };
  auto feed = [&](const udp::SocketAddress& from, absl::string_view bytes) {
    server.OnDatagram(now, from, bytes);
    ASSERT_FALSE(server.HasOutgoing()) << "answered a bad datagram from " << from;
    ASSERT_TRUE(server.TakeEvents().empty()) << "event from a bad datagram from " << from;
    ASSERT_EQ(server.connection_count(), 1u);
    ASSERT_TRUE(server.IsEstablished(server_id));
  };

  // Random bytes, from the peer's address and from others; some start with
  // the right version byte.
  for (int i = 0; i < 3000; ++i) {
    std::string bytes(rng.Uniform(1500), '\0');
    for (char& c : bytes) c = static_cast<char>(rng.Next());
    if (!bytes.empty() && i % 2 == 0) bytes[0] = static_cast<char>(proto::kProtocolVersion);
    const udp::SocketAddress from =
        i % 3 == 0 ? client_addr
                   : udp::SocketAddress::Ipv4(static_cast<uint32_t>(rng.Next()),
                                              static_cast<uint16_t>(rng.Next()));
    feed(from, bytes);
    ++malformed;
  }
  // Truncated and bit-flipped valid packets from the peer's own address.
  for (const proto::Packet& p : valid_packets(server_id)) {
    const std::string bytes = Encode(codec, p);
    for (size_t len = 0; len < bytes.size(); ++len) {
      feed(client_addr, absl::string_view(bytes).substr(0, len));
      ++malformed;
    }
    for (int i = 0; i < 300; ++i) {
      std::string flipped = bytes;
      const int flips = 1 + static_cast<int>(rng.Uniform(3));
      std::vector<uint64_t> bits;
      while (static_cast<int>(bits.size()) < flips) {
        const uint64_t bit = rng.Uniform(flipped.size() * 8);
        if (std::find(bits.begin(), bits.end(), bit) == bits.end()) bits.push_back(bit);
      }
      for (uint64_t bit : bits) flipped[bit / 8] ^= static_cast<char>(1 << (bit % 8));
      feed(client_addr, flipped);
      ++malformed;
    }
  }
  // Valid packets for connection ids that do not exist, from anywhere.
  for (int i = 0; i < 200; ++i) {
    ConnectionId id = rng.Next() | 1;
    if (id == server_id) continue;
    for (const proto::Packet& p : valid_packets(id)) {
      feed(i % 2 ? client_addr : Addr("203.0.113.5:777"), Encode(codec, p));
      ++unknown;
    }
  }
  // Valid packets for the live connection from other addresses (same IP
  // other port, other IP same port, elsewhere), a close included, numbered
  // no higher than what the server has received: on this unencrypted
  // connection such packets are neither processed nor a reason to validate
  // the address (a newer number would start a path validation: see
  // PathValidation* below).
  for (const udp::SocketAddress& from :
       {Addr("10.0.0.2:5001"), Addr("10.0.0.3:5000"), Addr("203.0.113.9:5000"),
        Addr("[fd00::2]:5000")}) {
    for (const proto::Packet& p : valid_packets(server_id, /*base=*/1, /*span=*/3)) {
      feed(from, Encode(codec, p));
      ++wrong;
    }
  }

  const reliable::EndpointStats& after = server.stats();
  // Junk whose first byte happens to be the sealed version is read as a
  // sealed datagram for an unknown connection id, and junk starting with the
  // punch version (3) is a NAT-traversal punch (counted, dropped): it lands
  // in one of the three.
  EXPECT_EQ(after.malformed - before.malformed + after.unknown_connection -
                before.unknown_connection + after.punches - before.punches,
            malformed + unknown);
  EXPECT_GE(after.unknown_connection - before.unknown_connection, unknown);
  EXPECT_LE(after.malformed - before.malformed, malformed);
  EXPECT_EQ(after.wrong_address - before.wrong_address, wrong);
  EXPECT_EQ(after.datagrams_sent, before.datagrams_sent);
  EXPECT_EQ(after.hellos, before.hellos);
  EXPECT_EQ(after.accepted, before.accepted);
  const reliable::ConnectionStats conn_after = *server.Stats(server_id);
  EXPECT_EQ(conn_after.packets_received, conn_before.packets_received);
  EXPECT_EQ(conn_after.messages_delivered, conn_before.messages_delivered);
  EXPECT_EQ(server.connection_count(), 1u);

  // The connection still works, both ways.
  net.sim().PollAll();
  ExchangeMessages(net.sim(), net.client(), client_id, net.server(), server_id, 1, "after");
  EXPECT_EQ(Received(net.server(), server_id, 1),
            (std::vector<std::string>{"before a->b", "after a->b"}));
  EXPECT_EQ(net.client().Count(Event::Type::kClosed), 0u);
  EXPECT_EQ(net.server().Count(Event::Type::kClosed), 0u);
}

// ---------------------------------------------------------------------------
// 4. Server full.

TEST(EndpointTest, ThirdClientOfAFullServerIsRefusedAndTheOthersKeepWorking) {
  const uint64_t seed = 44;
  SCOPED_TRACE(absl::StrCat("seed=", seed));
  sim::Simulator sim(seed, kStart);
  EndpointOptions server_options = ServerOptions(seed);
  server_options.max_connections = 2;
  EndpointNode server(kStart, Addr("10.0.0.1:4000"), server_options);
  ASSERT_TRUE(sim.AddNode(server.address(), &server).ok());
  std::vector<std::unique_ptr<EndpointNode>> clients;
  std::vector<ConnectionId> ids;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(std::make_unique<EndpointNode>(
        kStart, Addr(absl::StrCat("10.0.1.", i + 1, ":5000")), ClientOptions(seed + i)));
    EndpointNode& c = *clients.back();
    ASSERT_TRUE(sim.AddNode(c.address(), &c).ok());
    ASSERT_TRUE(sim.SetLink(c.address(), server.address(), Lossy()).ok());
    ASSERT_TRUE(sim.SetLink(server.address(), c.address(), Lossy()).ok());
    absl::StatusOr<ConnectionId> id = c.endpoint().Connect(sim.now(), server.address());
    ASSERT_TRUE(id.ok()) << id.status();
    ids.push_back(*id);
    sim.PollAll();
    ASSERT_TRUE(sim.RunUntil(
        [&] {
          return c.Count(Event::Type::kConnected) + c.Count(Event::Type::kClosed) > 0;
        },
        sim.now() + absl::Seconds(10)));
    sim.RunFor(absl::Milliseconds(100));  // let the server see the confirmation
  }
  EXPECT_EQ(clients[0]->Count(Event::Type::kConnected), 1u);
  EXPECT_EQ(clients[1]->Count(Event::Type::kConnected), 1u);
  EndpointNode& third = *clients[2];
  EXPECT_EQ(third.Count(Event::Type::kConnected), 0u);
  const Event* closed = third.Find(Event::Type::kClosed);
  ASSERT_NE(closed, nullptr);
  EXPECT_TRUE(closed->by_peer);
  EXPECT_EQ(closed->close_reason, reliable::CloseReason::kServerFull);
  EXPECT_THAT(closed->reason, HasSubstr("server full"));
  EXPECT_EQ(closed->connection, ids[2]);
  EXPECT_GE(server.endpoint().stats().refused_full, 1u);
  EXPECT_EQ(server.endpoint().stats().accepted, 2u);
  EXPECT_EQ(server.endpoint().connection_count(), 2u);
  EXPECT_EQ(server.Count(Event::Type::kConnected), 2u);

  // The two admitted clients keep working, long after the refusal.
  sim.RunFor(absl::Seconds(20));
  std::vector<ConnectionId> server_ids;
  for (const Event& e : server.events()) {
    if (e.type == Event::Type::kConnected) server_ids.push_back(e.connection);
  }
  ASSERT_EQ(server_ids.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    const udp::SocketAddress peer = *server.endpoint().PeerOf(server_ids[i]);
    const int c = peer == clients[0]->address() ? 0 : 1;
    ASSERT_EQ(peer, clients[c]->address());
    ExchangeMessages(sim, *clients[c], ids[c], server, server_ids[i], 2,
                     absl::StrCat("client ", c));
  }
  EXPECT_EQ(server.Count(Event::Type::kClosed), 0u);
  EXPECT_EQ(clients[0]->Count(Event::Type::kClosed), 0u);
  EXPECT_EQ(clients[1]->Count(Event::Type::kClosed), 0u);
  EXPECT_EQ(third.Count(Event::Type::kClosed), 1u);
  EXPECT_EQ(third.endpoint().open_connections(), 0u);
}

// ---------------------------------------------------------------------------
// 4b. Handshake budgets: unconfirmed connections, per-address caps, draining
// slots, room-key proofs, authenticated handshake closes.

// A hand-built hello from `cid`: with `public_key` when given, and with a
// room-key proof made with `key` when both a key and a cookie are given.
std::string BudgetHello(uint64_t cid, const std::string& cookie, const std::string& public_key,
                        const std::optional<reliable::Psk>& key) {
  proto::Packet p;
  p.hello.emplace();
  p.hello->client_connection_id = cid;
  p.hello->cookie = cookie;
  p.hello->max_datagram = proto::kDefaultMaxDatagram;
  p.hello->public_key = public_key;
  if (key && !cookie.empty()) {
    p.hello->key_proof = reliable::HelloKeyProof(*key, cookie, cid, public_key);
  }
  return Encode(MakeCodec(), p);
}

// Completes the cookie exchange from `from` as a hand-driven client and
// returns what the server sent `from` for the hello carrying the cookie (an
// Accept, or a Close). Does not confirm.
std::vector<proto::Packet> HelloWithCookie(Endpoint& server, absl::Time now,
                                           const udp::SocketAddress& from, uint64_t cid,
                                           const std::string& public_key = "",
                                           const std::optional<reliable::Psk>& key = {}) {
  const proto::Codec codec = MakeCodec();
  auto to_from = [&] {
    std::vector<Outgoing> mine;
    for (Outgoing& o : server.TakeOutgoing()) {
      if (o.peer == from) mine.push_back(std::move(o));
    }
    return DecodeAll(codec, mine);
  };
  server.OnDatagram(now, from, BudgetHello(cid, "", public_key, key));
  std::vector<proto::Packet> got = to_from();
  if (got.size() != 1 || !got[0].challenge) {
    ADD_FAILURE() << "no challenge for " << from.ToString();
    return {};
  }
  server.OnDatagram(now, from, BudgetHello(cid, got[0].challenge->cookie, public_key, key));
  return to_from();
}

// The client's first numbered packet (plain): confirms the handshake.
void SendPlain(Endpoint& server, absl::Time now, const udp::SocketAddress& from,
               ConnectionId server_id, uint64_t number, proto::Packet p) {
  p.connection_id = server_id;
  p.packet_number = number;
  server.OnDatagram(now, from, Encode(MakeCodec(), p));
}
void Confirm(Endpoint& server, absl::Time now, const udp::SocketAddress& from,
             ConnectionId server_id) {
  proto::Packet ping;
  ping.ping = proto::Ping{};
  SendPlain(server, now, from, server_id, 1, std::move(ping));
}

// Runs `server`'s timers from `now` to `until`; events are taken as they come.
absl::Time RunTimers(Endpoint& server, absl::Time now, absl::Time until) {
  while (server.NextTimeout() <= until) {
    now = std::max(now, server.NextTimeout());
    server.OnTimeout(now);
    server.TakeEvents();
    server.TakeOutgoing();
  }
  server.TakeEvents();
  server.TakeOutgoing();
  return until;
}

// Carries datagrams between two endpoints, lossless and instantly, until
// nothing moves; the server's datagrams to other peers are dropped.
void Shuttle(absl::Time now, Endpoint& client, const udp::SocketAddress& client_address,
             Endpoint& server, const udp::SocketAddress& server_address) {
  for (int round = 0; round < 16; ++round) {
    bool moved = false;
    for (Outgoing& o : client.TakeOutgoing()) {
      moved = true;
      server.OnDatagram(now, client_address, o.bytes);
    }
    for (Outgoing& o : server.TakeOutgoing()) {
      if (o.peer != client_address) continue;
      moved = true;
      client.OnDatagram(now, server_address, o.bytes);
    }
    if (!moved) return;
  }
}

reliable::Psk FilledKey(uint8_t byte) {
  reliable::Psk key;
  key.bytes.fill(byte);
  return key;
}

TEST(EndpointTest, ValidHelloFloodStaysInTheUnconfirmedTableAndMembersStillConnect) {
  // An attacker with 50 addresses, one of them hot, completes cookie
  // exchanges at 1600 hellos per second and never confirms. Before, each
  // such hello took a member's slot for 30 s, and honest clients got
  // "server full".
  EndpointOptions o = ServerOptions(60);
  o.max_connections = 4;
  o.max_unconfirmed_connections = 8;
  o.max_connections_per_address = 2;
  o.max_draining_connections = 16;  // the evicted drain in a bounded table
  Endpoint server(kStart, o);
  absl::Time now = kStart;
  uint64_t cid = 1000;
  int honest = 0;
  for (int round = 0; round < 400; ++round) {
    now += absl::Milliseconds(5);
    for (int k = 0; k < 5; ++k) {
      const udp::SocketAddress a =
          Addr(absl::StrCat("198.51.100.", (round * 5 + k) % 50 + 1, ":", 7000 + round % 3));
      HelloWithCookie(server, now, a, ++cid);
      ASSERT_LE(server.unconfirmed_connections(), 8u);
      ASSERT_LE(server.ConnectionsFromAddress(a), 2u);
      ASSERT_LE(server.open_connections(), 4u + 8u);
    }
    // Members, unconfirmed, draining, and at most one connection closed per
    // hello of this round since the last reap.
    ASSERT_LE(server.connection_count(), 4u + 8u + 16u + 9u);
    const udp::SocketAddress hot = Addr(absl::StrCat("198.51.100.200:", 7000 + round));
    for (int k = 0; k < 3; ++k) {
      HelloWithCookie(server, now, hot, ++cid);
      ASSERT_LE(server.ConnectionsFromAddress(hot), 2u);
    }
    now = RunTimers(server, now, now);
    if (round % 100 == 99) {
      const udp::SocketAddress h = Addr(absl::StrCat("203.0.113.", honest + 1, ":5000"));
      std::vector<proto::Packet> got = HelloWithCookie(server, now, h, ++cid);
      ASSERT_EQ(got.size(), 1u);
      ASSERT_TRUE(got[0].accept.has_value())
          << "honest client " << honest << ": " << (got[0].close ? got[0].close->reason : "");
      Confirm(server, now, h, got[0].accept->server_connection_id);
      ASSERT_TRUE(server.IsEstablished(got[0].accept->server_connection_id));
      ++honest;
    }
  }
  EXPECT_EQ(honest, 4);
  EXPECT_EQ(server.members(), 4u);
  EXPECT_EQ(server.stats().refused_full, 0u);
  EXPECT_GT(server.stats().evicted_unconfirmed, 0u);
  EXPECT_GT(server.stats().refused_per_address, 0u);
  // The unconfirmed ones are gone after unconfirmed_timeout (10 s), not 30 s.
  RunTimers(server, now, now + absl::Seconds(10) + absl::Milliseconds(50));
  EXPECT_EQ(server.unconfirmed_connections(), 0u);
  EXPECT_EQ(server.members(), 4u);
}

TEST(EndpointTest, PerAddressCapCountsAnIpv4AddressOrAnIpv6Slash64) {
  EndpointOptions o = ServerOptions(61);
  o.max_connections_per_address = 2;
  Endpoint server(kStart, o);
  struct Case {
    const char* from;
    bool accepted;
  } cases[] = {
      {"192.0.2.1:1000", true},
      {"192.0.2.1:1001", true},
      {"192.0.2.1:1002", false},
      {"[::ffff:192.0.2.1]:1003", false},  // IPv4-mapped IPv6 counts as its IPv4 address
      {"192.0.2.2:1000", true},
      {"[2001:db8:1:2::1]:1000", true},
      {"[2001:db8:1:2:ffff::9]:1000", true},
      {"[2001:db8:1:2:abcd::5]:1001", false},  // the same /64
      {"[2001:db8:1:3::1]:1000", true},        // the next /64
  };
  uint64_t cid = 1;
  ConnectionId first = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.from);
    std::vector<proto::Packet> got = HelloWithCookie(server, kStart, Addr(c.from), ++cid);
    ASSERT_EQ(got.size(), 1u);
    if (c.accepted) {
      ASSERT_TRUE(got[0].accept.has_value());
      Confirm(server, kStart, Addr(c.from), got[0].accept->server_connection_id);
      if (first == 0) first = got[0].accept->server_connection_id;
    } else {
      ASSERT_TRUE(got[0].close.has_value());
      EXPECT_EQ(got[0].close->code, proto::kCloseServerFull);
      EXPECT_THAT(got[0].close->reason, HasSubstr("too many connections from"));
    }
  }
  EXPECT_EQ(server.stats().refused_per_address, 3u);
  EXPECT_EQ(server.stats().accepted, 6u);
  EXPECT_EQ(server.ConnectionsFromAddress(Addr("192.0.2.1:1")), 2u);
  EXPECT_EQ(server.ConnectionsFromAddress(Addr("[2001:db8:1:2::77]:1")), 2u);
  EXPECT_EQ(udp::AddressPrefix(Addr("[::ffff:192.0.2.1]:5")), "192.0.2.1");
  EXPECT_EQ(udp::AddressPrefix(Addr("[2001:db8:1:2:abcd::5]:5")), "2001:db8:1:2::/64");

  // A closed connection gives its address's slot back at once.
  proto::Packet bye;
  bye.close = proto::Close{proto::kCloseApplication, "bye", ""};
  SendPlain(server, kStart, Addr("192.0.2.1:1000"), first, 2, std::move(bye));
  EXPECT_EQ(server.ConnectionsFromAddress(Addr("192.0.2.1:1")), 1u);
  std::vector<proto::Packet> again = HelloWithCookie(server, kStart, Addr("192.0.2.1:1004"), ++cid);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_TRUE(again[0].accept.has_value());
}

TEST(EndpointTest, AClosedConnectionFreesItsSlotAtOnceAndDrainingStaysBounded) {
  // Before, a closed connection kept its slot while it drained (3 PTOs, at
  // least a keepalive: about 3 s), so a full server refused the next client.
  EndpointOptions o = ServerOptions(62);
  o.max_connections = 2;
  o.max_draining_connections = 4;
  Endpoint server(kStart, o);
  absl::Time now = kStart;
  uint64_t cid = 1;
  std::vector<std::pair<udp::SocketAddress, ConnectionId>> open;
  auto join = [&](int n) {
    const udp::SocketAddress a = Addr(absl::StrCat("192.0.2.", n, ":4000"));
    std::vector<proto::Packet> got = HelloWithCookie(server, now, a, ++cid);
    ASSERT_EQ(got.size(), 1u);
    ASSERT_TRUE(got[0].accept.has_value())
        << "client " << n << ": " << (got[0].close ? got[0].close->reason : "");
    Confirm(server, now, a, got[0].accept->server_connection_id);
    open.emplace_back(a, got[0].accept->server_connection_id);
  };
  join(1);
  join(2);
  for (int i = 0; i < 20; ++i) {
    SCOPED_TRACE(absl::StrCat("cycle ", i));
    proto::Packet bye;
    bye.close = proto::Close{proto::kCloseApplication, "bye", ""};
    SendPlain(server, now, open.front().first, open.front().second, 2, std::move(bye));
    open.erase(open.begin());
    server.TakeEvents();
    server.TakeOutgoing();
    now += absl::Milliseconds(10);
    join(10 + i);
    ASSERT_LE(server.connection_count(), 2u + 4u);
  }
  EXPECT_EQ(server.stats().refused_full, 0u);
  EXPECT_GT(server.stats().drained_early, 0u);
  // Full is still full.
  std::vector<proto::Packet> got = HelloWithCookie(server, now, Addr("192.0.2.99:4000"), ++cid);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(got[0].close.has_value());
  EXPECT_THAT(got[0].close->reason, HasSubstr("server full"));
}

// Route remembers the connection it found last (a batch is mostly one
// connection's). Connections joining may move every entry of the table and
// a removed one is gone: after either, each packet must still reach its own
// connection, and one for a removed id none (under ASan a stale entry is a
// use after free).
TEST(EndpointTest, PacketsReachTheirConnectionWhileOthersJoinAndLeave) {
  EndpointOptions o = ServerOptions(64);
  o.max_connections = 200;
  o.max_unconfirmed_connections = 200;
  o.max_connections_per_address = 200;
  o.max_draining_connections = 0;  // a closed connection goes at once
  Endpoint server(kStart, o);
  const absl::Time now = kStart;
  std::vector<std::unique_ptr<RawPeer>> peers;
  auto received = [&](const RawPeer& p) {
    absl::StatusOr<ConnectionStats> s = server.Stats(p.server_id());
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? s->packets_received : 0;
  };
  auto ping = [&](RawPeer& p) {
    proto::Packet q;
    q.ping = proto::Ping{};
    p.Send(now, std::move(q));
  };
  auto join = [&](int i) {
    peers.push_back(std::make_unique<RawPeer>(
        &server, Addr(absl::StrCat("198.51.100.", i % 250, ":", 5000 + i)), 1000 + i));
    // Routed to peer 0 last: its entry is remembered while the new one is
    // added (and the table may rehash), then asked for again.
    ping(*peers[0]);
    server.TakeOutgoing();  // its ack: the handshake reads only its own
    ASSERT_NO_FATAL_FAILURE(peers.back()->Accepted(now));
    ping(*peers[0]);
    ASSERT_NO_FATAL_FAILURE(peers.back()->Confirm(now));
  };
  peers.push_back(std::make_unique<RawPeer>(&server, Addr("198.51.100.250:4999"), 999));
  peers[0]->Handshake(now);
  const uint64_t first_before = received(*peers[0]);
  for (int i = 1; i < 150; ++i) {  // the table grows (and rehashes) under it
    ASSERT_NO_FATAL_FAILURE(join(i)) << "peer " << i;
  }
  EXPECT_EQ(received(*peers[0]), first_before + 2 * 149);
  // Each of the others has its confirming ping only.
  for (int i = 1; i < 150; ++i) EXPECT_EQ(received(*peers[i]), 1u) << "peer " << i;
  // Peer 0 closes; with no room for draining, its entry is removed.
  const ConnectionId gone = peers[0]->server_id();
  proto::Packet bye;
  bye.close = proto::Close{proto::kCloseApplication, "bye", ""};
  peers[0]->Send(now, std::move(bye));
  absl::Time later = now;
  for (int i = 0; i < 1000 && server.Stats(gone).ok(); ++i) {
    server.TakeEvents();  // a connection is kept until its events are taken
    server.TakeOutgoing();
    later = std::clamp(server.NextTimeout(), later + absl::Milliseconds(1),
                       later + absl::Milliseconds(100));
    server.OnTimeout(later);
  }
  ASSERT_FALSE(server.Stats(gone).ok()) << "still there after " << (later - now);
  // Well inside the others' peer timeout (10 s): they are still open.
  ASSERT_LT(later - now, absl::Seconds(5));
  server.TakeEvents();
  server.TakeOutgoing();
  // Its close was the last packet routed: the removed one, then another.
  const uint64_t unknown = server.stats().unknown_connection;
  ping(*peers[0]);
  EXPECT_FALSE(server.Stats(gone).ok());
  EXPECT_EQ(server.stats().unknown_connection, unknown + 1);
  ping(*peers[1]);
  EXPECT_EQ(received(*peers[1]), 2u);
}

TEST(EndpointTest, AConfirmationBeyondAFullMemberTableIsClosedServerFull) {
  // Both were admitted as unconfirmed while members had room; the second to
  // confirm would make 2 members of a 1-member server.
  EndpointOptions o = ServerOptions(67);
  o.max_connections = 1;
  Endpoint server(kStart, o);
  const udp::SocketAddress a = Addr("192.0.2.1:4000");
  const udp::SocketAddress b = Addr("192.0.2.2:4000");
  std::vector<proto::Packet> got_a = HelloWithCookie(server, kStart, a, 1);
  std::vector<proto::Packet> got_b = HelloWithCookie(server, kStart, b, 2);
  ASSERT_TRUE(got_a.size() == 1 && got_a[0].accept.has_value());
  ASSERT_TRUE(got_b.size() == 1 && got_b[0].accept.has_value());
  EXPECT_EQ(server.unconfirmed_connections(), 2u);
  Confirm(server, kStart, a, got_a[0].accept->server_connection_id);
  Confirm(server, kStart, b, got_b[0].accept->server_connection_id);
  EXPECT_EQ(server.members(), 1u);
  EXPECT_TRUE(server.IsEstablished(got_a[0].accept->server_connection_id));
  EXPECT_FALSE(server.IsEstablished(got_b[0].accept->server_connection_id));
  EXPECT_EQ(server.stats().refused_late_full, 1u);
  std::vector<Outgoing> out = server.TakeOutgoing();
  std::vector<proto::Packet> to_b;
  for (const proto::Packet& p : DecodeAll(MakeCodec(), out)) {
    if (p.connection_id == 2 && p.close) to_b.push_back(p);
  }
  ASSERT_EQ(to_b.size(), 1u);
  EXPECT_EQ(to_b[0].close->code, proto::kCloseServerFull);
}

TEST(EndpointTest, HellosWithoutTheRoomKeyCostNoConnectionNorKeyExchange) {
  // Before, a keyless client's valid hello got a Connection and an X25519
  // exchange, and 4 of them filled this room: keyed members got "server full".
  const reliable::Psk key = FilledKey(7);
  const udp::SocketAddress server_address = Addr("10.0.0.1:4000");
  EndpointOptions so = ServerOptions(63);
  so.psk = key;
  so.max_connections = 4;
  Endpoint server(kStart, so);
  const std::string public_key(reliable::kPublicKeyBytes, '\x09');
  absl::Time now = kStart;
  uint64_t cid = 1;
  std::vector<std::unique_ptr<Endpoint>> members;
  for (int i = 0; i < 1000; ++i) {
    now += absl::Milliseconds(1);
    const udp::SocketAddress a =
        Addr(absl::StrCat("198.51.100.", i % 200 + 1, ":", 6000 + i % 7));
    // No proof, or a proof made with another key.
    std::optional<reliable::Psk> wrong;
    if (i % 2) wrong = FilledKey(8);
    std::vector<proto::Packet> got = HelloWithCookie(server, now, a, ++cid, public_key, wrong);
    ASSERT_EQ(got.size(), 1u);
    ASSERT_TRUE(got[0].close.has_value());
    EXPECT_THAT(got[0].close->reason, HasSubstr("wrong room key"));
    ASSERT_EQ(server.connection_count(), members.size());
    if (i % 250 == 0) {  // a keyed member joins during the flood
      EndpointOptions co = ClientOptions(63 + i);
      co.psk = key;
      members.push_back(std::make_unique<Endpoint>(now, co));
      const udp::SocketAddress m = Addr(absl::StrCat("203.0.113.", members.size(), ":5000"));
      absl::StatusOr<ConnectionId> id = members.back()->Connect(now, server_address);
      ASSERT_TRUE(id.ok()) << id.status();
      Shuttle(now, *members.back(), m, server, server_address);
      ASSERT_TRUE(members.back()->IsEstablished(*id)) << "member " << members.size();
    }
  }
  EXPECT_EQ(server.members(), 4u);
  EXPECT_EQ(server.stats().refused_key_proof, 1000u);
  EXPECT_EQ(server.stats().key_exchanges, 4u);
  EXPECT_EQ(server.stats().accepted, 4u);
  EXPECT_EQ(server.stats().refused_full, 0u);

  // A client with another key learns it from the Challenge, and costs the
  // server nothing either.
  EndpointOptions wo = ClientOptions(64);
  wo.psk = FilledKey(8);
  Endpoint wrong(now, wo);
  const udp::SocketAddress w = Addr("203.0.113.77:5000");
  ASSERT_TRUE(wrong.Connect(now, server_address).ok());
  std::vector<Event> events;
  for (int step = 0; step < 40 && CountType(events, Event::Type::kClosed) == 0; ++step) {
    Shuttle(now, wrong, w, server, server_address);
    now += absl::Milliseconds(100);
    wrong.OnTimeout(now);
    for (Event& e : wrong.TakeEvents()) events.push_back(std::move(e));
  }
  ASSERT_EQ(CountType(events, Event::Type::kClosed), 1u);
  EXPECT_EQ(events.back().close_reason, reliable::CloseReason::kWrongRoomKey);
  EXPECT_THAT(events.back().reason, HasSubstr("wrong room key"));
  EXPECT_EQ(server.stats().key_exchanges, 4u);
  EXPECT_EQ(server.stats().accepted, 4u);
}

TEST(EndpointTest, WithARoomKeyAForgedCloseOrChallengeCannotEndAHandshake) {
  const reliable::Psk key = FilledKey(5);
  const udp::SocketAddress server_address = Addr("10.0.0.1:4000");
  const udp::SocketAddress client_address = Addr("10.0.0.2:5000");
  EndpointOptions so = ServerOptions(65);
  so.psk = key;
  so.max_connections = 1;
  EndpointOptions co = ClientOptions(65);
  co.psk = key;
  Endpoint server(kStart, so);
  Endpoint client(kStart, co);
  absl::StatusOr<ConnectionId> id = client.Connect(kStart, server_address);
  ASSERT_TRUE(id.ok()) << id.status();
  for (Outgoing& o : client.TakeOutgoing()) server.OnDatagram(kStart, client_address, o.bytes);
  const std::vector<Outgoing> challenge = server.TakeOutgoing();
  ASSERT_EQ(challenge.size(), 1u);

  // An attacker on the path saw the hello, so it knows the client's id. Its
  // closes (without an auth, or with a wrong one) and its challenge (with a
  // wrong key proof) are ignored: before, the first one ended the attempt
  // and its text reached the application.
  const proto::Codec codec = MakeCodec();
  for (const std::string& auth : {std::string(), std::string(reliable::kRoomProofBytes, 'x')}) {
    proto::Packet fake;
    fake.connection_id = *id;
    fake.close = proto::Close{proto::kCloseServerFull, "\x1b]0;owned\x07server full", auth};
    client.OnDatagram(kStart, server_address, Encode(codec, fake));
  }
  proto::Packet fake_challenge;
  fake_challenge.connection_id = *id;
  fake_challenge.challenge = proto::Challenge{*id, std::string(24, 'c'),
                                              std::string(reliable::kRoomProofBytes, 'p')};
  client.OnDatagram(kStart, server_address, Encode(codec, fake_challenge));
  EXPECT_EQ(CountType(client.TakeEvents(), Event::Type::kClosed), 0u);
  EXPECT_EQ(client.Stats(*id)->unauthenticated_handshake, 3u);

  for (const Outgoing& o : challenge) client.OnDatagram(kStart, server_address, o.bytes);
  Shuttle(kStart, client, client_address, server, server_address);
  EXPECT_TRUE(client.IsEstablished(*id));
  EXPECT_EQ(server.members(), 1u);

  // The server's own refusal is authenticated, so it does end an attempt.
  EndpointOptions lo = ClientOptions(66);
  lo.psk = key;
  Endpoint late(kStart, lo);
  const udp::SocketAddress late_address = Addr("10.0.0.3:5000");
  absl::StatusOr<ConnectionId> late_id = late.Connect(kStart, server_address);
  ASSERT_TRUE(late_id.ok());
  Shuttle(kStart, late, late_address, server, server_address);
  std::vector<Event> events = late.TakeEvents();
  ASSERT_EQ(CountType(events, Event::Type::kClosed), 1u);
  EXPECT_EQ(events[0].close_reason, reliable::CloseReason::kServerFull);
  EXPECT_TRUE(events[0].by_peer);
  EXPECT_EQ(server.stats().key_exchanges, 1u);
}

// ---------------------------------------------------------------------------
// 4c. Server identity: a pinned client authenticates the server (Noise NK's
// es mixed into the session keys, proved by the Accept's confirmation).

reliable::KeyPair IdentityOf(uint8_t tag) {
  reliable::KeyPair::Seed seed{};
  seed.fill(tag);
  return reliable::KeyPair::FromSeed(seed);
}

std::string FingerprintOf(const reliable::KeyPair& identity) {
  return reliable::IdentityFingerprint(identity.public_key());
}

// A lossless, instant handshake between `client` (at kIdClient) and
// `server` (at kIdServer). `edit_accept`, when set, rewrites the server's
// Accept on the way (a man in the middle). Returns every datagram the client
// sent after it received an Accept.
const udp::SocketAddress kIdServer = Addr("10.0.0.1:4000");
const udp::SocketAddress kIdClient = Addr("10.0.0.2:5000");
std::vector<std::string> IdentityHandshake(
    absl::Time now, Endpoint& client, Endpoint& server,
    const std::function<void(proto::Accept*)>& edit_accept = nullptr) {
  const proto::Codec codec = MakeCodec();
  std::vector<std::string> after_accept;
  bool accepted = false;
  for (int round = 0; round < 16; ++round) {
    bool moved = false;
    for (Outgoing& o : client.TakeOutgoing()) {
      moved = true;
      if (accepted) after_accept.push_back(o.bytes);
      server.OnDatagram(now, kIdClient, o.bytes);
    }
    for (Outgoing& o : server.TakeOutgoing()) {
      if (o.peer != kIdClient) continue;
      moved = true;
      std::string bytes = std::move(o.bytes);
      if (!proto::ParseSealedHeader(bytes)) {
        absl::StatusOr<proto::Packet> p = codec.Decode(bytes);
        if (p.ok() && p->accept) {
          accepted = true;
          if (edit_accept) {
            edit_accept(&*p->accept);
            bytes = Encode(codec, *p);
          }
        }
      }
      client.OnDatagram(now, kIdServer, bytes);
    }
    if (!moved) break;
  }
  return after_accept;
}

TEST(EndpointTest, APinnedClientConnectsToItsServerAndEveryClientLearnsTheFingerprint) {
  const reliable::KeyPair identity = IdentityOf(1);
  EndpointOptions so = ServerOptions(70);
  so.identity = identity;
  for (const bool pinned : {true, false}) {
    SCOPED_TRACE(pinned ? "pinned" : "unpinned, encrypting");
    Endpoint server(kStart, so);
    EndpointOptions co = ClientOptions(70);
    if (pinned) {
      co.server_pin = FingerprintOf(identity);
    } else {
      co.encrypt = true;
    }
    Endpoint client(kStart, co);
    absl::StatusOr<ConnectionId> id = client.Connect(kStart, kIdServer);
    ASSERT_TRUE(id.ok()) << id.status();
    IdentityHandshake(kStart, client, server);
    ASSERT_TRUE(client.IsEstablished(*id));
    std::vector<Event> events = client.TakeEvents();
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].type, Event::Type::kConnected);
    EXPECT_EQ(events[0].server_identity, FingerprintOf(identity));
    // Both sides derived the same keys (with es): a sealed message arrives.
    ASSERT_TRUE(client.Send(kStart, *id, 0, DeliveryMode::kReliableOrdered, "hello").ok());
    Shuttle(kStart, client, kIdClient, server, kIdServer);
    std::vector<Event> got = server.TakeEvents();
    ASSERT_EQ(CountType(got, Event::Type::kMessage), 1u);
    for (const Event& e : got) {
      if (e.type == Event::Type::kMessage) {
        EXPECT_EQ(e.message, "hello");
      }
    }
  }
  // A server without an identity: kConnected says so with an empty field.
  EndpointOptions plain = ServerOptions(71);
  plain.encrypt = true;
  Endpoint server(kStart, plain);
  EndpointOptions co = ClientOptions(71);
  co.encrypt = true;
  Endpoint client(kStart, co);
  ASSERT_TRUE(client.Connect(kStart, kIdServer).ok());
  IdentityHandshake(kStart, client, server);
  std::vector<Event> events = client.TakeEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, Event::Type::kConnected);
  EXPECT_EQ(events[0].server_identity, "");
}

TEST(EndpointTest, APinnedClientRefusesAFakeServerNamingBothFingerprintsAndSendsNothing) {
  const reliable::KeyPair real = IdentityOf(1);
  const reliable::KeyPair other = IdentityOf(2);
  struct Case {
    const char* name;
    std::optional<reliable::KeyPair> identity;
    bool encrypt;
    std::string presented;
  };
  const Case cases[] = {
      {"another identity", other, true, FingerprintOf(other)},
      {"no identity, encrypting", std::nullopt, true, "udpmsg-id:(none)"},
      {"no identity, clear", std::nullopt, false, "udpmsg-id:(none)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EndpointOptions so = ServerOptions(72);
    so.identity = c.identity;
    so.encrypt = c.encrypt;
    Endpoint server(kStart, so);
    EndpointOptions co = ClientOptions(72);
    co.server_pin = FingerprintOf(real);
    Endpoint client(kStart, co);
    absl::StatusOr<ConnectionId> id = client.Connect(kStart, kIdServer);
    ASSERT_TRUE(id.ok()) << id.status();
    if (!c.encrypt) {
      // A server that does not encrypt refuses the encrypting hello before
      // any Accept: the client ends with the server's refusal.
      IdentityHandshake(kStart, client, server);
      std::vector<Event> events = client.TakeEvents();
      ASSERT_EQ(events.size(), 1u);
      EXPECT_EQ(events[0].type, Event::Type::kClosed);
      EXPECT_FALSE(client.IsEstablished(*id));
      continue;
    }
    const std::vector<std::string> sent = IdentityHandshake(kStart, client, server);
    EXPECT_TRUE(sent.empty()) << sent.size() << " datagrams after the Accept";
    std::vector<Event> events = client.TakeEvents();
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].type, Event::Type::kClosed);
    EXPECT_EQ(events[0].close_reason, reliable::CloseReason::kServerIdentityMismatch);
    EXPECT_FALSE(events[0].by_peer);
    EXPECT_EQ(events[0].reason, absl::StrCat("server 10.0.0.1:4000 presented ", c.presented,
                                             ", expected ", FingerprintOf(real)));
    EXPECT_EQ(server.members(), 0u);
  }
}

TEST(EndpointTest, AManInTheMiddleSwappingTheServerKeyFailsTheConfirmation) {
  const reliable::KeyPair real = IdentityOf(1);
  const reliable::KeyPair impostor = IdentityOf(3);
  // (a) An impostor with its own identity shows a pinned client the real
  //     server's public key: it cannot compute es, so its confirmation fails.
  // (b) The real server's Accept with the key swapped for the impostor's (an
  //     unpinned client would otherwise record the wrong key): the
  //     transcript and es change, so the genuine confirmation fails.
  for (const bool pinned : {true, false}) {
    SCOPED_TRACE(pinned ? "impostor shows the real key" : "real server, key swapped");
    EndpointOptions so = ServerOptions(73);
    so.identity = pinned ? impostor : real;
    Endpoint server(kStart, so);
    EndpointOptions co = ClientOptions(73);
    if (pinned) {
      co.server_pin = FingerprintOf(real);
    } else {
      co.encrypt = true;
    }
    Endpoint client(kStart, co);
    absl::StatusOr<ConnectionId> id = client.Connect(kStart, kIdServer);
    ASSERT_TRUE(id.ok()) << id.status();
    const std::string shown(pinned ? real.public_key() : impostor.public_key());
    const std::vector<std::string> sent = IdentityHandshake(
        kStart, client, server, [&](proto::Accept* a) { a->server_identity = shown; });
    EXPECT_TRUE(sent.empty()) << sent.size() << " datagrams after the Accept";
    std::vector<Event> events = client.TakeEvents();
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].close_reason, reliable::CloseReason::kServerIdentityMismatch);
    EXPECT_THAT(events[0].reason,
                ::testing::HasSubstr(absl::StrCat(
                    "presented ", reliable::IdentityFingerprint(shown),
                    " but could not prove it holds that identity's secret key")));
    EXPECT_FALSE(client.IsEstablished(*id));
  }
}

// ---------------------------------------------------------------------------
// AEAD negotiation (packet_protection.h): AES-256-GCM when both ends have
// it, ChaCha20-Poly1305 otherwise or with a peer that predates the fields;
// tampering with the offer or the choice fails the handshake.

constexpr uint32_t kChaChaOnly = static_cast<uint32_t>(reliable::Aead::kChaCha20Poly1305);
constexpr uint32_t kAesBit = static_cast<uint32_t>(reliable::Aead::kAes256Gcm);

// IdentityHandshake's man in the middle, who may also rewrite hellos.
void NegotiationHandshake(absl::Time now, Endpoint& client, Endpoint& server,
                          const std::function<void(proto::Hello*)>& edit_hello,
                          const std::function<void(proto::Accept*)>& edit_accept) {
  const proto::Codec codec = MakeCodec();
  for (int round = 0; round < 16; ++round) {
    bool moved = false;
    for (Outgoing& o : client.TakeOutgoing()) {
      moved = true;
      std::string bytes = std::move(o.bytes);
      absl::StatusOr<proto::Packet> p = codec.Decode(bytes);
      if (p.ok() && p->hello && edit_hello) {
        edit_hello(&*p->hello);
        bytes = Encode(codec, *p);
      }
      server.OnDatagram(now, kIdClient, bytes);
    }
    for (Outgoing& o : server.TakeOutgoing()) {
      if (o.peer != kIdClient) continue;
      moved = true;
      std::string bytes = std::move(o.bytes);
      absl::StatusOr<proto::Packet> p = codec.Decode(bytes);
      if (p.ok() && p->accept && edit_accept) {
        edit_accept(&*p->accept);
        bytes = Encode(codec, *p);
      }
      client.OnDatagram(now, kIdServer, bytes);
    }
    if (!moved) break;
  }
}

struct Negotiated {
  bool delivered = false;   // a sealed message reached the server
  std::string client_aead;  // ConnectionStats::aead on each side
  std::string server_aead;
  std::vector<Event> client_events;
};

// Connects with encryption (and a room key when `psk`), each side offering
// or accepting `client_aeads` / `server_aeads` (nullopt: LocalAeads(); 0: a
// peer that predates the negotiation), then sends one message. Each side
// announces fragment runs unless `client_runs` / `server_runs` is false.
Negotiated Negotiate(std::optional<uint32_t> client_aeads, std::optional<uint32_t> server_aeads,
                     bool psk, const std::function<void(proto::Hello*)>& edit_hello = nullptr,
                     const std::function<void(proto::Accept*)>& edit_accept = nullptr,
                     bool client_runs = true, bool server_runs = true) {
  EndpointOptions so = ServerOptions(80);
  EndpointOptions co = ClientOptions(80);
  so.encrypt = co.encrypt = true;
  co.connection.fragment_runs = client_runs;
  so.connection.fragment_runs = server_runs;
  if (psk) so.psk = co.psk = FilledKey(0x42);
  Endpoint server(kStart, so);
  Endpoint client(kStart, co);
  reliable::TestHooks server_hooks;
  server_hooks.aeads = server_aeads;
  server.SetTestHooksForTesting(server_hooks);
  reliable::TestHooks client_hooks;
  client_hooks.aeads = client_aeads;
  client.SetTestHooksForTesting(client_hooks);
  Negotiated out;
  absl::StatusOr<ConnectionId> id = client.Connect(kStart, kIdServer);
  EXPECT_TRUE(id.ok()) << id.status();
  if (!id.ok()) return out;
  NegotiationHandshake(kStart, client, server, edit_hello, edit_accept);
  if (client.IsEstablished(*id)) {
    EXPECT_TRUE(client.Send(kStart, *id, 0, DeliveryMode::kReliableOrdered, "sealed").ok());
    Shuttle(kStart, client, kIdClient, server, kIdServer);
  }
  for (const Event& e : server.TakeEvents()) {
    if (e.type == Event::Type::kMessage && e.message == "sealed") {
      out.delivered = true;
      if (absl::StatusOr<reliable::ConnectionStats> st = server.Stats(e.connection); st.ok()) {
        out.server_aead = st->aead;
      }
    }
  }
  if (absl::StatusOr<reliable::ConnectionStats> st = client.Stats(*id); st.ok()) {
    out.client_aead = st->aead;
  }
  out.client_events = client.TakeEvents();
  return out;
}

TEST(EndpointTest, AeadNegotiationPicksAesWhenBothHaveItAndChaChaOtherwise) {
  const bool aes = (reliable::LocalAeads() & kAesBit) != 0;
  const std::string fast = aes ? "aes-256-gcm" : "chacha20-poly1305";
  struct Case {
    const char* name;
    std::optional<uint32_t> client;
    std::optional<uint32_t> server;
    std::string expected;
  };
  const Case cases[] = {
      {"both with AES", std::nullopt, std::nullopt, fast},
      {"client without AES", kChaChaOnly, std::nullopt, "chacha20-poly1305"},
      {"server without AES", std::nullopt, kChaChaOnly, "chacha20-poly1305"},
      {"client predates the offer", 0u, std::nullopt, "chacha20-poly1305"},
      {"server predates the choice", std::nullopt, 0u, "chacha20-poly1305"},
      {"both predate it", 0u, 0u, "chacha20-poly1305"},
  };
  for (const Case& c : cases) {
    for (const bool psk : {false, true}) {
      SCOPED_TRACE(absl::StrCat(c.name, psk ? ", room key" : ", no room key"));
      const Negotiated n = Negotiate(c.client, c.server, psk);
      EXPECT_TRUE(n.delivered);
      EXPECT_EQ(n.client_aead, c.expected);
      EXPECT_EQ(n.server_aead, c.expected);
    }
  }
}

TEST(EndpointTest, AeadDowngradeByAManInTheMiddleFailsTheHandshake) {
  // The offer stripped (the server then names ChaCha20-Poly1305 for a
  // transcript without the offer), or cut to ChaCha20-Poly1305 alone: the
  // client's transcript holds what it sent, so the keys differ.
  const std::function<void(proto::Hello*)> strip = [](proto::Hello* h) { h->aead_offer = 0; };
  const std::function<void(proto::Hello*)> cut = [](proto::Hello* h) {
    h->aead_offer = kChaChaOnly;
  };
  // The choice rewritten to ChaCha20-Poly1305 (meaningful where AES was
  // chosen; with ChaCha chosen anyway it is no change).
  const std::function<void(proto::Accept*)> rechoose = [](proto::Accept* a) {
    a->aead = kChaChaOnly;
  };
  const bool aes = (reliable::LocalAeads() & kAesBit) != 0;
  struct Attack {
    const char* name;
    std::function<void(proto::Hello*)> hello;
    std::function<void(proto::Accept*)> accept;
    bool applies;
  };
  const Attack attacks[] = {
      {"offer stripped", strip, nullptr, true},
      {"offer cut to chacha", cut, nullptr, aes},
      {"choice rewritten to chacha", nullptr, rechoose, aes},
  };
  for (const Attack& a : attacks) {
    if (!a.applies) continue;
    {
      // With a room key the client sees the server's confirmation fail and
      // closes before it sends anything sealed.
      SCOPED_TRACE(absl::StrCat(a.name, ", room key"));
      const Negotiated n = Negotiate(std::nullopt, std::nullopt, true, a.hello, a.accept);
      EXPECT_FALSE(n.delivered);
      ASSERT_EQ(n.client_events.size(), 1u);
      EXPECT_EQ(n.client_events[0].type, Event::Type::kClosed);
      EXPECT_EQ(n.client_events[0].close_reason, reliable::CloseReason::kWrongRoomKey);
    }
    {
      // Opportunistic encryption: nothing sealed opens at the other end.
      SCOPED_TRACE(absl::StrCat(a.name, ", no room key"));
      const Negotiated n = Negotiate(std::nullopt, std::nullopt, false, a.hello, a.accept);
      EXPECT_FALSE(n.delivered);
    }
  }
  // A choice the client never offered is refused outright.
  const Negotiated n = Negotiate(kChaChaOnly, std::nullopt, true, nullptr,
                                 [](proto::Accept* a) { a->aead = kAesBit; });
  EXPECT_FALSE(n.delivered);
  ASSERT_EQ(n.client_events.size(), 1u);
  EXPECT_EQ(n.client_events[0].close_reason, reliable::CloseReason::kProtocolError);
  EXPECT_THAT(n.client_events[0].reason, ::testing::HasSubstr("chose AEAD 2, not one offered (1)"));
}

TEST(EndpointTest, FeaturesEditedByAManInTheMiddleFailTheHandshake) {
  // Each end's features (Hello.features, Accept.features) join the
  // transcript when both announce some, as each end saw or sent them.
  // Setting the runs bit in the hello of a client that turned runs off
  // would make the server send runs the client drops as malformed: every
  // such packet lost, forever. Any edit must leave the ends with different
  // keys instead.
  auto hello_features = [](uint32_t f) {
    return std::function<void(proto::Hello*)>([f](proto::Hello* h) { h->features = f; });
  };
  auto accept_features = [](uint32_t f) {
    return std::function<void(proto::Accept*)>([f](proto::Accept* a) { a->features = f; });
  };
  struct Attack {
    const char* name;
    bool client_runs;
    bool server_runs;
    std::function<void(proto::Hello*)> hello;
    std::function<void(proto::Accept*)> accept;
  };
  const Attack attacks[] = {
      {"runs bit set in a hello without it", false, true,
       hello_features(proto::kFeatureFragmentRuns), nullptr},
      {"runs bit stripped from the hello", true, true, hello_features(0), nullptr},
      {"runs bit stripped from the accept", true, true, nullptr, accept_features(0)},
      {"runs bit set in an accept without it", true, false, nullptr,
       accept_features(proto::kFeatureFragmentRuns)},
      {"an unknown bit added to the hello", true, true,
       hello_features(proto::kFeatureFragmentRuns | 0x80), nullptr},
  };
  for (const Attack& a : attacks) {
    {
      SCOPED_TRACE(absl::StrCat(a.name, ", no room key"));
      const Negotiated n = Negotiate(std::nullopt, std::nullopt, false, a.hello, a.accept,
                                     a.client_runs, a.server_runs);
      EXPECT_FALSE(n.delivered);  // nothing sealed opens at the other end
    }
    {
      SCOPED_TRACE(absl::StrCat(a.name, ", room key"));
      const Negotiated n =
          Negotiate(std::nullopt, std::nullopt, true, a.hello, a.accept, a.client_runs,
                    a.server_runs);
      EXPECT_FALSE(n.delivered);
      // The client sees the server's confirmation fail and closes.
      ASSERT_EQ(n.client_events.size(), 1u);
      EXPECT_EQ(n.client_events[0].type, Event::Type::kClosed);
      EXPECT_EQ(n.client_events[0].close_reason, reliable::CloseReason::kWrongRoomKey);
    }
  }
  // Unedited, every combination still connects, including ends that
  // announce nothing (as older versions do): their transcript is unchanged.
  for (const bool client_runs : {false, true}) {
    for (const bool server_runs : {false, true}) {
      for (const bool psk : {false, true}) {
        SCOPED_TRACE(absl::StrCat("client runs ", client_runs, ", server runs ", server_runs,
                                  psk ? ", room key" : ", no room key"));
        EXPECT_TRUE(Negotiate(std::nullopt, std::nullopt, psk, nullptr, nullptr, client_runs,
                              server_runs)
                        .delivered);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// 5. Flow control: a slow application stalls its sender.

// An Endpoint in the simulator whose application takes events only when told.
class SlowAppNode final : public sim::Node {
 public:
  SlowAppNode(absl::Time now, const udp::SocketAddress& address, const EndpointOptions& options)
      : address_(address), endpoint_(now, options) {}
  void OnDatagram(absl::Time now, const udp::SocketAddress& from, const udp::SocketAddress&,
                  absl::string_view bytes) override {
    endpoint_.OnDatagram(now, from, bytes);
    if (reading_) Read();
  }
  void OnTimeout(absl::Time now) override {
    endpoint_.OnTimeout(now);
    if (reading_) Read();
  }
  absl::Time NextTimeout() const override { return endpoint_.NextTimeout(); }
  std::vector<sim::Datagram> TakeOutgoing() override {
    std::vector<sim::Datagram> out;
    for (Outgoing& o : endpoint_.TakeOutgoing()) {
      out.push_back(sim::Datagram{address_, o.peer, std::move(o.bytes)});
    }
    return out;
  }
  // Takes the events; returns the message bytes taken.
  uint64_t Read() {
    uint64_t bytes = 0;
    for (Event& e : endpoint_.TakeEvents()) {
      if (e.type == Event::Type::kMessage) bytes += e.message.size();
      events_.push_back(std::move(e));
    }
    return bytes;
  }
  void set_reading(bool reading) { reading_ = reading; }
  Endpoint& endpoint() { return endpoint_; }
  const udp::SocketAddress& address() const { return address_; }
  std::vector<Event>& events() { return events_; }

 private:
  udp::SocketAddress address_;
  Endpoint endpoint_;
  bool reading_ = false;
  std::vector<Event> events_;
};

std::string Payload(uint64_t seed, uint64_t i, size_t size) {
  reliable::DeterministicRng rng(seed, 1000 + i);
  std::string s(size, '\0');
  for (char& c : s) c = static_cast<char>(rng.Next());
  return s;
}

void RunSlowReceiver(uint64_t seed, absl::Duration stall) {
  SCOPED_TRACE(absl::StrCat("seed=", seed, " stall=", absl::FormatDuration(stall)));
  constexpr uint64_t kUndelivered = 1 << 20;
  constexpr uint64_t kQueued = 4 << 20;
  constexpr size_t kMessage = 64 << 10;
  sim::Simulator sim(seed, kStart);
  EndpointOptions receiver_options = ServerOptions(seed);
  receiver_options.connection.max_undelivered_bytes = kUndelivered;
  EndpointOptions sender_options = ClientOptions(seed);
  sender_options.connection.max_queued_bytes = kQueued;
  SlowAppNode receiver(kStart, Addr("10.0.0.1:4000"), receiver_options);
  EndpointNode sender(kStart, Addr("10.0.0.2:5000"), sender_options);
  ASSERT_TRUE(sim.AddNode(receiver.address(), &receiver).ok());
  ASSERT_TRUE(sim.AddNode(sender.address(), &sender).ok());
  impairment::ImpairmentConfig link = Lossy();
  link.rate_bps = 100'000'000;
  link.queue_limit_bytes = 1 << 20;
  ASSERT_TRUE(sim.SetLink(receiver.address(), sender.address(), link).ok());
  ASSERT_TRUE(sim.SetLink(sender.address(), receiver.address(), link).ok());
  absl::StatusOr<ConnectionId> id = sender.endpoint().Connect(sim.now(), receiver.address());
  ASSERT_TRUE(id.ok());
  sim.PollAll();
  ASSERT_TRUE(sim.RunUntil([&] { return sender.Count(Event::Type::kConnected) == 1; },
                           sim.now() + absl::Seconds(5)));

  // Fill the sender's queue until it pushes back.
  std::vector<std::string> sent;
  auto fill = [&] {
    for (;;) {
      std::string m = Payload(seed, sent.size(), kMessage);
      absl::StatusOr<uint64_t> seq =
          sender.endpoint().Send(sim.now(), *id, 0, DeliveryMode::kReliableOrdered, m);
      if (!seq.ok()) {
        EXPECT_EQ(seq.status().code(), absl::StatusCode::kResourceExhausted) << seq.status();
        break;
      }
      EXPECT_EQ(*seq, sent.size());
      sent.push_back(std::move(m));
      ASSERT_LE(sender.endpoint().QueuedBytes(*id), kQueued);
    }
    sim.PollAll();
  };
  fill();
  ASSERT_GE(sent.size(), kQueued / kMessage - 1);
  // Run; whenever acknowledgements free room, queue more (the application
  // writes as fast as it may). The receiver's application reads nothing.
  const absl::Time stall_start = sim.now();
  uint64_t queued_mid = 0;
  uint64_t sent_bytes_mid = 0;
  while (sim.now() < stall_start + stall) {
    sim.RunFor(absl::Milliseconds(50));
    fill();
    if (sim.now() >= stall_start + stall / 2 && queued_mid == 0) {
      queued_mid = sender.endpoint().QueuedBytes(*id);
      sent_bytes_mid = sender.endpoint().stats().bytes_sent;
    }
    ASSERT_LE(sender.endpoint().QueuedBytes(*id), kQueued);
    ASSERT_EQ(sender.Count(Event::Type::kClosed), 0u)
        << sender.Find(Event::Type::kClosed)->reason << " after "
        << (sim.now() - stall_start);
  }
  // Stalled: the queue is full and has stopped draining.
  // While stalled the sender only probes: a bounded trickle, not a flood.
  const double probe_rate =
      (sender.endpoint().stats().bytes_sent - sent_bytes_mid) / absl::ToDoubleSeconds(stall / 2);
  EXPECT_LE(probe_rate, 128 * 1024) << "bytes/s while stalled";
  const uint64_t queued_end = sender.endpoint().QueuedBytes(*id);
  EXPECT_GT(queued_end, 0u);
  EXPECT_EQ(queued_end, queued_mid);
  EXPECT_GT(queued_end + kMessage, kQueued);
  absl::StatusOr<uint64_t> more =
      sender.endpoint().Send(sim.now(), *id, 0, DeliveryMode::kReliableOrdered, "x");
  EXPECT_EQ(more.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_LT(sender.Count(Event::Type::kAcked), sent.size());
  ASSERT_EQ(receiver.endpoint().open_connections(), 1u);

  // The application finally reads: it held at most the limit plus what the
  // last accepted packet completed.
  const uint64_t held = receiver.Read();
  EXPECT_GT(held, 0u);
  EXPECT_LE(held, kUndelivered + 2 * kMessage);
  ConnectionId receiver_id = 0;
  for (const Event& e : receiver.events()) {
    if (e.type == Event::Type::kConnected) receiver_id = e.connection;
  }
  ASSERT_NE(receiver_id, 0u);
  EXPECT_GT(receiver.endpoint().Stats(receiver_id)->refused_packets, 0u);
  receiver.set_reading(true);
  sim.PollAll();
  ASSERT_TRUE(sim.RunUntil([&] { return sender.Count(Event::Type::kAcked) == sent.size(); },
                           sim.now() + absl::Seconds(60)))
      << "acked " << sender.Count(Event::Type::kAcked) << " of " << sent.size() << "; sender "
      << sender.endpoint().Stats(*id)->ToString();
  std::vector<const Event*> got;
  for (const Event& e : receiver.events()) {
    if (e.type == Event::Type::kMessage) got.push_back(&e);
  }
  ASSERT_EQ(got.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) {
    ASSERT_EQ(got[i]->sequence, i);
    ASSERT_TRUE(got[i]->message == sent[i]) << "message " << i << " corrupted";
  }
  EXPECT_EQ(sender.Count(Event::Type::kClosed), 0u);
  EXPECT_EQ(sender.endpoint().QueuedBytes(*id), 0u);
}

TEST(EndpointTest, SlowApplicationStallsItsSenderThenTransferCompletes) {
  RunSlowReceiver(5, absl::Seconds(3));
}

// A stall longer than peer_timeout (10 s) and idle_timeout (30 s): the
// receiver is alive (it acknowledges the sender's ping probes), so the sender
// must wait, not close the connection.
TEST(EndpointTest, SlowApplicationStalledForAMinuteKeepsTheConnection) {
  RunSlowReceiver(6, absl::Seconds(60));
}

// ---------------------------------------------------------------------------
// 6. Reassembly memory is charged for bytes received, not bytes announced.

// Bytes the process has allocated (arena + mmapped chunks).
uint64_t HeapInUse() {
  const struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

proto::DataFragment Fragment(uint32_t channel, DeliveryMode mode, uint64_t sequence,
                             uint32_t index, uint32_t count, uint64_t total, size_t chunk) {
  proto::DataFragment f;
  f.channel = channel;
  f.mode = static_cast<uint32_t>(mode);
  f.sequence = sequence;
  f.index = index;
  f.count = count;
  f.total_size = total;
  f.payload = std::string(chunk, static_cast<char>('a' + index % 26));
  return f;
}

// Sends fragments `indices` of a message of `total` bytes cut in `count`
// fragments (all of one size) and checks the heap grew by about what was
// received, and that every fragment was accepted (acknowledged).
void AnnounceHugeMessage(uint64_t max_message_bytes, size_t max_datagram, uint64_t total,
                         uint32_t count, DeliveryMode mode) {
  SCOPED_TRACE(absl::StrCat("total=", total, " count=", count, " mode=", reliable::ModeName(mode)));
  ASSERT_EQ(total % count, 0u);
  const size_t chunk = total / count;
  EndpointOptions options = ServerOptions(6);
  options.connection.max_message_bytes = max_message_bytes;
  options.connection.max_datagram = max_datagram;
  Endpoint server(kStart, options);
  RawPeer peer(&server, Addr("192.0.2.60:6000"), 0x6060,
               MakeCodec(max_datagram, max_message_bytes));
  ASSERT_NO_FATAL_FAILURE(peer.Handshake(kStart));
  absl::Time now = kStart + absl::Milliseconds(10);
  // Warm up the channel's structures with one complete small message.
  {
    proto::Packet p;
    p.data.push_back(Fragment(1, mode, 0, 0, 1, 5, 5));
    p.ping = proto::Ping{};
    peer.Send(now, p);
    server.TakeOutgoing();
    std::vector<Event> events = server.TakeEvents();
    ASSERT_EQ(CountType(events, Event::Type::kMessage), 1u);
  }
  const uint64_t heap_before = HeapInUse();
  const std::vector<uint32_t> indices = {0, 1, 7, count / 2, count - 1};
  for (uint32_t index : indices) {
    now += absl::Milliseconds(1);
    proto::Packet p;
    p.data.push_back(Fragment(1, mode, 1, index, count, total, chunk));
    peer.Send(now, p);
    server.TakeOutgoing();
  }
  const uint64_t heap_after = HeapInUse();
  const uint64_t received = indices.size() * chunk;
  const int64_t grown = static_cast<int64_t>(heap_after) - static_cast<int64_t>(heap_before);
  EXPECT_LE(grown, static_cast<int64_t>(received + (64 << 10)))
      << "received " << received << " bytes of an announced " << total;
  absl::StatusOr<reliable::ConnectionStats> stats = server.Stats(peer.server_id());
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->refused_packets, 0u) << stats->ToString();
  EXPECT_EQ(stats->packets_received, 2 + indices.size());
  EXPECT_TRUE(server.TakeEvents().empty());
  EXPECT_EQ(server.stats().malformed, 0u);
  EXPECT_TRUE(server.IsEstablished(peer.server_id()));
}

TEST(EndpointTest, AnnouncedSixteenMebibyteMessageCostsOnlyWhatArrived) {
  AnnounceHugeMessage(16 << 20, proto::kDefaultMaxDatagram, 16 << 20, 32768,
                      DeliveryMode::kReliableOrdered);
  AnnounceHugeMessage(16 << 20, proto::kDefaultMaxDatagram, 16 << 20, 32768,
                      DeliveryMode::kUnreliable);
}

TEST(EndpointTest, AnnouncedFourGibibyteMessageCostsOnlyWhatArrived) {
  // A receiver that allows such messages at all, with 4 KiB fragments.
  AnnounceHugeMessage(uint64_t{8} << 30, 8192, uint64_t{4} << 30, 1 << 20,
                      DeliveryMode::kReliableUnordered);
}

TEST(EndpointTest, ManyHugePartialMessagesStayWithinTheReassemblyBudget) {
  constexpr uint64_t kBudget = 256 << 10;
  EndpointOptions options = ServerOptions(61);
  options.connection.max_reassembly_bytes = kBudget;
  Endpoint server(kStart, options);
  RawPeer peer(&server, Addr("192.0.2.61:6000"), 0x6161);
  ASSERT_NO_FATAL_FAILURE(peer.Handshake(kStart));
  absl::Time now = kStart + absl::Milliseconds(10);
  const uint64_t heap_before = HeapInUse();
  // 2000 messages, each announcing 16 MiB, one 512-byte fragment each: 1 MB
  // sent, 32 GB announced.
  for (uint64_t seq = 0; seq < 2000; ++seq) {
    now += absl::Microseconds(100);
    proto::Packet p;
    p.data.push_back(Fragment(2, seq % 2 ? DeliveryMode::kReliableUnordered
                                         : DeliveryMode::kUnreliable,
                              seq / 2, 0, 32768, 16 << 20, 512));
    peer.Send(now, p);
    server.TakeOutgoing();
  }
  const int64_t grown =
      static_cast<int64_t>(HeapInUse()) - static_cast<int64_t>(heap_before);
  // Two reassemblers (reliable, unreliable), each within the budget, plus
  // bookkeeping for at most 1024 partial messages each.
  EXPECT_LE(grown, static_cast<int64_t>(2 * kBudget + (1 << 20)));
  absl::StatusOr<reliable::ConnectionStats> stats = server.Stats(peer.server_id());
  ASSERT_TRUE(stats.ok());
  // Reliable fragments over the budget are refused (not acknowledged).
  EXPECT_GT(stats->refused_packets, 0u) << stats->ToString();
  EXPECT_TRUE(server.IsEstablished(peer.server_id()));
  EXPECT_TRUE(server.TakeEvents().empty());
}

TEST(EndpointTest, CompleteOutOfOrderMessagesAreChargedToTheReassemblyBudget) {
  // Complete reliable-ordered messages waiting for an earlier one count
  // against max_reassembly_bytes like partial ones (else a peer could park
  // window x max_message_bytes per channel by withholding one message).
  constexpr uint64_t kBudget = 1 << 20;
  constexpr uint32_t kFragments = 128;
  constexpr uint64_t kSize = kFragments * 512;  // 64 KiB
  EndpointOptions options = ServerOptions(62);
  options.connection.max_reassembly_bytes = kBudget;
  options.connection.max_undelivered_bytes = kBudget;
  Endpoint server(kStart, options);
  RawPeer peer(&server, Addr("192.0.2.62:6000"), 0x6262);
  ASSERT_NO_FATAL_FAILURE(peer.Handshake(kStart));
  absl::Time now = kStart + absl::Milliseconds(10);
  auto send_message = [&](uint64_t seq) {
    for (uint32_t i = 0; i < kFragments; ++i) {
      now += absl::Microseconds(10);
      proto::Packet p;
      p.data.push_back(
          Fragment(3, DeliveryMode::kReliableOrdered, seq, i, kFragments, kSize, 512));
      peer.Send(now, p);
      server.TakeOutgoing();
    }
  };
  const uint64_t heap_before = HeapInUse();
  // Messages 1..64 (4 MiB), complete; message 0 withheld.
  for (uint64_t seq = 1; seq <= 64; ++seq) send_message(seq);
  const int64_t grown = static_cast<int64_t>(HeapInUse()) - static_cast<int64_t>(heap_before);
  absl::StatusOr<reliable::ConnectionStats> stats = server.Stats(peer.server_id());
  ASSERT_TRUE(stats.ok());
  EXPECT_LE(grown, static_cast<int64_t>(kBudget + (256 << 10))) << stats->ToString();
  EXPECT_GT(stats->refused_packets, 0u);
  EXPECT_TRUE(server.TakeEvents().empty());
  // Message 0 arrives; the peer keeps resending what was not acknowledged
  // (here: everything, as a sender that lost all acks would). Everything is
  // delivered once, in order.
  std::vector<Event> delivered;
  for (int round = 0; round < 20 && delivered.size() < 65; ++round) {
    for (uint64_t seq = 0; seq <= 64; ++seq) send_message(seq);
    for (Event& e : server.TakeEvents()) {
      if (e.type == Event::Type::kMessage) delivered.push_back(std::move(e));
    }
  }
  ASSERT_EQ(delivered.size(), 65u);
  for (size_t i = 0; i < delivered.size(); ++i) {
    EXPECT_EQ(delivered[i].sequence, i);
    EXPECT_EQ(delivered[i].message.size(), kSize);
  }
  EXPECT_TRUE(server.IsEstablished(peer.server_id()));
}

// The head of a channel always completes, whatever its in-order buffer
// reserved (Reassembler::Add's growth allowance). Other data holds the budget
// down to the head's headroom, the head's buffer reserves ahead as its
// fragments arrive in order, fragments after a lost one fill the rest of the
// budget, and the lost one comes back when the budget is full. Found by
// review: the connection charged the returning fragment as if it needed new
// room (it lands in what the buffer already reserved), refused it every time,
// and nothing could free the budget.
TEST(EndpointTest, TheHeadCompletesWhenItsReservedBufferHoldsTheBudget) {
  constexpr uint64_t kBudget = 1 << 20;
  EndpointOptions options = ServerOptions(63);
  options.connection.max_reassembly_bytes = kBudget;
  options.connection.max_undelivered_bytes = 4 << 20;
  Endpoint server(kStart, options);
  RawPeer peer(&server, Addr("192.0.2.63:6000"), 0x6363);
  ASSERT_NO_FATAL_FAILURE(peer.Handshake(kStart));
  absl::Time now = kStart + absl::Milliseconds(10);
  auto refused = [&] { return server.Stats(peer.server_id())->refused_packets; };
  auto send = [&](uint32_t channel, uint64_t seq, uint32_t index, uint32_t count,
                  uint64_t total) {
    absl::StatusOr<reliable::FragmentLayout> layout = reliable::LayoutOf(index, count, total);
    ASSERT_TRUE(layout.ok());
    now += absl::Microseconds(10);
    proto::Packet p;
    p.data.push_back(Fragment(channel, DeliveryMode::kReliableOrdered, seq, index, count, total,
                              layout->length));
    peer.Send(now, p);
    server.TakeOutgoing();
  };
  // Channel 3: 32 KiB messages 1, 2, ... parked behind a withheld message 0,
  // until the connection refuses them (the head's headroom is what is left).
  for (uint64_t seq = 1; seq < 64; ++seq) {
    const uint64_t before = refused();
    for (uint32_t i = 0; i < 32; ++i) send(3, seq, i, 32, 32 << 10);
    if (refused() > before) break;
  }
  ASSERT_GT(refused(), 0u);
  // Channel 5's head: 512 KiB in 1000-byte fragments, all but one in order,
  // the rest resent (as a sender does with what was not acknowledged) along
  // with the missing one until the message is delivered.
  constexpr uint64_t kTotal = 512 << 10;
  const uint32_t count = reliable::FragmentCountFor(kTotal, 1000);
  const uint32_t gap = count * 6 / 10;
  for (uint32_t i = 0; i < count; ++i) {
    if (i != gap) send(5, 0, i, count, kTotal);
  }
  std::vector<Event> delivered;
  for (int round = 0; round < 10 && delivered.empty(); ++round) {
    for (uint32_t i = gap; i < count; ++i) send(5, 0, i, count, kTotal);
    for (Event& e : server.TakeEvents()) {
      if (e.type == Event::Type::kMessage && e.channel == 5) delivered.push_back(std::move(e));
    }
  }
  ASSERT_EQ(delivered.size(), 1u) << server.Stats(peer.server_id())->ToString();
  EXPECT_EQ(delivered[0].message.size(), kTotal);
  EXPECT_TRUE(server.IsEstablished(peer.server_id()));
}

// A reassembly budget far below the data in flight: transfers still complete
// (the next undelivered message always has room) under loss and reordering.
void RunSmallBudgetTransfer(uint64_t seed, DeliveryMode mode) {
  SCOPED_TRACE(absl::StrCat("seed=", seed, " mode=", reliable::ModeName(mode)));
  constexpr int kMessages = 60;
  EndpointOptions server_options = ServerOptions(seed);
  server_options.connection.max_reassembly_bytes = 128 << 10;
  impairment::ImpairmentConfig link = Lossy(0.05, 0.05, 0.01);
  link.rate_bps = 100'000'000;
  link.queue_limit_bytes = 1 << 20;
  Pair net(seed, link, server_options, ClientOptions(seed));
  const ConnectionId id = net.Connect();
  std::vector<std::string> sent;
  for (int i = 0; i < kMessages; ++i) {
    sent.push_back(Payload(seed, i, 60 << 10));
    ASSERT_TRUE(net.client().endpoint().Send(net.sim().now(), id, 0, mode, sent.back()).ok());
  }
  net.sim().PollAll();
  ASSERT_TRUE(net.sim().RunUntil(
      [&] { return net.client().Count(Event::Type::kAcked) == sent.size(); },
      net.sim().now() + absl::Minutes(5)))
      << "acked " << net.client().Count(Event::Type::kAcked) << "; client "
      << net.client().endpoint().Stats(id)->ToString();
  std::vector<const Event*> got;
  for (const Event& e : net.server().events()) {
    if (e.type == Event::Type::kMessage) got.push_back(&e);
  }
  ASSERT_EQ(got.size(), sent.size());
  for (size_t i = 0; i < got.size(); ++i) {
    if (mode == DeliveryMode::kReliableOrdered) {
      ASSERT_EQ(got[i]->sequence, i);
    }
    ASSERT_TRUE(got[i]->message == sent[got[i]->sequence]) << "message " << i;
  }
  EXPECT_EQ(net.client().Count(Event::Type::kClosed), 0u);
}

TEST(EndpointTest, TransfersCompleteWithAReassemblyBudgetBelowTheDataInFlight) {
  for (uint64_t seed = 1; seed <= 2; ++seed) {
    RunSmallBudgetTransfer(seed, DeliveryMode::kReliableOrdered);
    RunSmallBudgetTransfer(seed + 10, DeliveryMode::kReliableUnordered);
    if (HasFatalFailure()) return;
  }
}

// ---------------------------------------------------------------------------
// 6b. Memory per connection (docs/security.md): the worst input a peer that
// has read the protocol can construct keeps the server's heap growth within
// the connection's documented budget.

// The parts of the hostile input, each alone or all together.
enum HostilePart : uint32_t {
  // Every (channel, mode) space opened by one zero-byte message, so that each
  // allocates its per-channel state.
  kOpenChannels = 1,
  // Partial messages of 1-byte fragments, reliable and unreliable: the
  // per-fragment overhead dwarfs the payload.
  kTinyFragments = 2,
  // 0- and 1-byte reliable-ordered messages 1..window-1 on every channel,
  // parked behind the withheld message 0.
  kParkedOrdered = 4,
  // 0- and 1-byte reliable-unordered messages 1..window-1 on every channel:
  // delivered at once (the application reads them), but each leaves its
  // sequence number behind the withheld message 0.
  kDeliveredAhead = 8,
  // Zero-byte unreliable messages while the application reads nothing.
  kUnreadEvents = 16,
  // Partial 16 MiB messages of 1 KiB fragments, reliable and unreliable,
  // max_reassembly_bytes and a quarter more of them: payload, the
  // cheapest way to fill a byte budget.
  kLargePartials = 32,
  kAllParts = 63,
};

struct HostileRun {
  int64_t grown = 0;      // live heap bytes after the attack minus before it
  uint64_t sent = 0;      // datagram bytes the peer sent
  reliable::ConnectionStats stats;
};

// Batches fragments into packets (with a gap in the packet numbers before
// each, so the server's ack tracker keeps one range per packet), sends them
// and, when `drain`, reads the server's events as a prompt application does.
class Flood {
 public:
  Flood(Endpoint* server, RawPeer* peer, absl::Time* now)
      : server_(server), peer_(peer), now_(now) {}

  void Add(proto::DataFragment f) {
    // A frame takes its payload and under 28 bytes of numbers and tags.
    const size_t bytes = f.payload.size() + 28;
    if (bytes_ + bytes > kPacketBytes) Flush();
    bytes_ += bytes;
    packet_.data.push_back(std::move(f));
    if (packet_.data.size() == kFramesPerPacket) Flush();
  }
  void Flush() {
    if (packet_.data.empty()) return;
    *now_ += absl::Microseconds(20);
    // Acknowledges everything the server sent (numbers 1..largest), as a
    // peer that wants to keep its connection does.
    if (largest_ > 0) packet_.ack = proto::Ack{{proto::AckRange{1, largest_}}};
    peer_->SkipPacketNumbers(1);
    sent_ += peer_->Send(*now_, std::move(packet_));
    packet_ = proto::Packet();
    bytes_ = 0;
    for (const proto::Packet& p : DecodeAll(peer_->codec(), server_->TakeOutgoing())) {
      largest_ = std::max(largest_, p.packet_number);
    }
    if (drain_) server_->TakeEvents();
    const uint64_t refused = server_->Stats(peer_->server_id())->refused_packets;
    refused_in_a_row_ = refused > refused_ ? refused_in_a_row_ + 1 : 0;
    refused_ = refused;
  }
  // The server refused the last 64 packets: the budget is full and what
  // follows in this part would be refused too.
  bool Saturated() const { return refused_in_a_row_ >= 64; }
  void StartPart() {
    Flush();
    refused_in_a_row_ = 0;
  }
  void set_drain(bool drain) { drain_ = drain; }
  uint64_t sent() const { return sent_; }

 private:
  static constexpr size_t kFramesPerPacket = 40;
  static constexpr size_t kPacketBytes = 1100;  // of a 1200-byte datagram
  Endpoint* server_;
  RawPeer* peer_;
  absl::Time* now_;
  proto::Packet packet_;
  size_t bytes_ = 0;
  uint64_t largest_ = 0;  // the server's largest packet number
  bool drain_ = true;
  uint64_t sent_ = 0;
  uint64_t refused_ = 0;
  int refused_in_a_row_ = 0;
};

HostileRun RunHostilePeer(const EndpointOptions& options, uint32_t parts) {
  HostileRun run;
  const reliable::ConnectionOptions& c = options.connection;
  const uint32_t channels = c.max_channels;
  const uint64_t window = c.window;
  Endpoint server(kStart, options);
  RawPeer peer(&server, Addr("192.0.2.63:6000"), 0x6363);
  peer.Handshake(kStart);
  if (::testing::Test::HasFatalFailure()) return run;
  absl::Time now = kStart + absl::Milliseconds(10);
  const int64_t before = live_heap_bytes.load();
  Flood flood(&server, &peer, &now);

  if (parts & kOpenChannels) {
    flood.StartPart();
    for (uint32_t channel = 0; channel < channels; ++channel) {
      for (uint32_t mode = 0; mode <= proto::kMaxDeliveryMode; ++mode) {
        // Out of the reliable window: dropped after the space is created.
        flood.Add(Fragment(channel, static_cast<DeliveryMode>(mode), window, 0, 1, 0, 0));
      }
    }
    flood.Flush();
  }
  if (parts & kTinyFragments) {
    flood.StartPart();
    constexpr uint32_t kPartials = 512;         // per reassembler
    constexpr uint32_t kFragmentsEach = 255;    // of 4096 1-byte fragments
    for (uint32_t j = 0; j < kFragmentsEach && !flood.Saturated(); ++j) {
      const uint32_t index = (j * 1663) % 4096;  // scrambled: the worst case for the maps
      for (uint32_t k = 0; k < 2 * kPartials; ++k) {
        const DeliveryMode mode = k % 2 ? DeliveryMode::kUnreliable
                                        : (k / 2) % 2 ? DeliveryMode::kReliableUnordered
                                                      : DeliveryMode::kReliableOrdered;
        flood.Add(Fragment(k / 2 % channels, mode, 1 + k / 2 / channels, index, 4096, 4096, 1));
      }
    }
    flood.Flush();
  }
  if (parts & kLargePartials) {
    flood.StartPart();
    constexpr uint32_t kMessages = 64;
    constexpr uint32_t kCount = 16384;  // 16 MiB in 1 KiB fragments
    const uint64_t fragments = (c.max_reassembly_bytes + c.max_reassembly_bytes / 4) >> 10;
    for (uint64_t i = 0; i < fragments && !flood.Saturated(); ++i) {
      const uint32_t k = static_cast<uint32_t>(i % kMessages);
      const uint32_t index = static_cast<uint32_t>(i / kMessages);
      if (k % 2) {
        flood.Add(Fragment(k / 2 % channels, DeliveryMode::kReliableUnordered, 3, index, kCount,
                           uint64_t{kCount} << 10, 1024));
      } else {
        flood.Add(Fragment(k / 2 % channels, DeliveryMode::kUnreliable, 1000 + k, index, kCount,
                           uint64_t{kCount} << 10, 1024));
      }
    }
  }
  // Sequence numbers 1..window-1 in a scrambled order (a multiplier prime to
  // window - 1), the worst case for the channels' ordered containers.
  uint64_t step = 2731;
  while (std::gcd(step, window - 1) != 1) ++step;
  for (const uint32_t part : {kParkedOrdered, kDeliveredAhead}) {
    if (!(parts & part)) continue;
    flood.StartPart();
    const DeliveryMode mode = part == kParkedOrdered ? DeliveryMode::kReliableOrdered
                                                     : DeliveryMode::kReliableUnordered;
    for (uint64_t i = 0; i + 1 < window && !flood.Saturated(); ++i) {
      const uint64_t seq = 1 + (i * step) % (window - 1);
      for (uint32_t channel = 0; channel < channels; ++channel) {
        const size_t size = (seq + channel) % 2;
        flood.Add(Fragment(channel, mode, seq, 0, 1, size, size));
      }
    }
    flood.Flush();
  }
  if (parts & kUnreadEvents) {
    flood.StartPart();
    flood.set_drain(false);
    for (uint64_t i = 0; i < 100'000 && !flood.Saturated(); ++i) {
      flood.Add(Fragment(0, DeliveryMode::kUnreliable, i, 0, 1, 0, 0));
    }
    flood.Flush();
  }
  run.grown = live_heap_bytes.load() - before;
  run.sent = flood.sent();
  absl::StatusOr<reliable::ConnectionStats> stats = server.Stats(peer.server_id());
  EXPECT_TRUE(stats.ok()) << stats.status();
  if (stats.ok()) run.stats = *stats;
  EXPECT_TRUE(server.IsEstablished(peer.server_id()));
  return run;
}

TEST(EndpointTest, ZeroByteParkedMessagesAreRefusedWhenTheBudgetIsFullThenAllDelivered) {
  // Zero-byte messages parked behind a missing message 0 are charged
  // kParkedMessageBytes each, so a small budget refuses most of them (not
  // acknowledged); once 0 arrives, the sender's retries deliver every one,
  // once, in order: refused is never lost.
  constexpr uint64_t kMessages = 1000;
  EndpointOptions options = ServerOptions(65);
  options.connection.max_reassembly_bytes = 64 << 10;
  Endpoint server(kStart, options);
  RawPeer peer(&server, Addr("192.0.2.65:6000"), 0x6565);
  ASSERT_NO_FATAL_FAILURE(peer.Handshake(kStart));
  absl::Time now = kStart + absl::Milliseconds(10);
  auto send = [&](uint64_t first) {
    for (uint64_t seq = first; seq < kMessages; seq += 40) {
      proto::Packet p;
      for (uint64_t s = seq; s < std::min(seq + 40, kMessages); ++s) {
        p.data.push_back(Fragment(0, DeliveryMode::kReliableOrdered, s, 0, 1, 0, 0));
      }
      now += absl::Microseconds(10);
      peer.Send(now, p);
      server.TakeOutgoing();
    }
  };
  send(1);
  absl::StatusOr<reliable::ConnectionStats> stats = server.Stats(peer.server_id());
  ASSERT_TRUE(stats.ok());
  EXPECT_GT(stats->refused_packets, 0u);
  EXPECT_LE(stats->peer_held_bytes, reliable::MaxPeerHeldBytes(options.connection));
  EXPECT_TRUE(server.TakeEvents().empty());
  std::vector<uint64_t> delivered;
  for (int round = 0; round < 10 && delivered.size() < kMessages; ++round) {
    send(0);  // the sender resends what was not acknowledged (here: all)
    for (const Event& e : server.TakeEvents()) {
      if (e.type == Event::Type::kMessage) delivered.push_back(e.sequence);
    }
  }
  ASSERT_EQ(delivered.size(), kMessages);
  for (uint64_t i = 0; i < kMessages; ++i) ASSERT_EQ(delivered[i], i);
  stats = server.Stats(peer.server_id());
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->messages_delivered, kMessages);
  EXPECT_TRUE(server.IsEstablished(peer.server_id()));
}

// Runs each part alone and then all together; prints what each cost. The
// heap may grow by the connection's documented bound at most, and by no more
// than the connection says it holds (ConnectionStats::peer_held_bytes) plus
// a little it does not charge (the endpoint's and connection's own
// bookkeeping): so each part checks that the overhead constants it relies on
// are true upper bounds.
void CheckHostilePeer(const EndpointOptions& options) {
  constexpr int64_t kUncharged = 64 << 10;
  const uint64_t bound = reliable::MaxPeerHeldBytes(options.connection);
  for (const uint32_t parts : {kOpenChannels, kTinyFragments, kLargePartials, kParkedOrdered,
                               kDeliveredAhead, kUnreadEvents, kAllParts}) {
    SCOPED_TRACE(absl::StrCat("parts=", parts));
    const HostileRun run = RunHostilePeer(options, parts);
    if (::testing::Test::HasFatalFailure()) return;
    std::cout << "hostile connection, parts " << parts << ": peer sent " << run.sent
              << " bytes; server heap grew " << run.grown << " bytes; charged "
              << run.stats.peer_held_bytes << " bytes; bound " << bound << " bytes\n";
    EXPECT_LE(run.grown, static_cast<int64_t>(bound)) << run.stats.ToString();
    EXPECT_LE(run.grown, static_cast<int64_t>(run.stats.peer_held_bytes) + kUncharged)
        << run.stats.ToString();
    EXPECT_LE(run.stats.peer_held_bytes, bound);
  }
}

TEST(EndpointTest, HostilePeerGrowsTheServerHeapWithinTheConnectionBudget) {
  EndpointOptions options = ServerOptions(63);
  options.connection.max_reassembly_bytes = 1 << 20;
  options.connection.max_undelivered_bytes = 256 << 10;
  CheckHostilePeer(options);
}

// The same with the default options: the figure docs/security.md quotes.
// Slow (it sends 100 MB), so run by hand, from docs/security.md:
//   ./bazelw test //tests/reliable:endpoint_test --test_output=all
//   --test_arg=--gtest_also_run_disabled_tests --test_arg=--gtest_filter='*HostilePeer*'
TEST(EndpointTest, DISABLED_HostilePeerWithDefaultOptions) {
  CheckHostilePeer(ServerOptions(64));
}

// ---------------------------------------------------------------------------
// 7. Close semantics and status codes.

TEST(EndpointTest, CloseWithoutFlushDropsQueuedDataAndPeerSeesTheReason) {
  const uint64_t seed = 7;
  SCOPED_TRACE(absl::StrCat("seed=", seed));
  Pair net(seed, Lossy());
  const ConnectionId id = net.Connect();
  Endpoint& client = net.client().endpoint();
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(client.Send(net.sim().now(), id, 0, DeliveryMode::kReliableOrdered,
                            Payload(seed, i, 10'000))
                    .ok());
  }
  ASSERT_GT(client.QueuedBytes(id), 1'000'000u);
  ASSERT_TRUE(client.Close(net.sim().now(), id, "abort now", /*flush=*/false).ok());
  EXPECT_EQ(client.QueuedBytes(id), 0u);
  EXPECT_FALSE(client.IsEstablished(id));
  // A closed connection refuses work; closing again is harmless.
  absl::StatusOr<uint64_t> send =
      client.Send(net.sim().now(), id, 0, DeliveryMode::kReliableOrdered, "late");
  EXPECT_EQ(send.status().code(), absl::StatusCode::kFailedPrecondition) << send.status();
  EXPECT_TRUE(client.Close(net.sim().now(), id, "again", false).ok());
  net.sim().PollAll();
  ASSERT_TRUE(net.sim().RunUntil(
      [&] { return net.server().Count(Event::Type::kClosed) == 1; },
      net.sim().now() + absl::Seconds(10)));
  const Event* closed = net.server().Find(Event::Type::kClosed);
  EXPECT_TRUE(closed->by_peer);
  EXPECT_EQ(closed->close_reason, reliable::CloseReason::kClosedByPeer);
  EXPECT_EQ(closed->reason, "abort now");
  const Event* own = net.client().Find(Event::Type::kClosed);
  ASSERT_NE(own, nullptr);
  EXPECT_FALSE(own->by_peer);
  EXPECT_EQ(own->close_reason, reliable::CloseReason::kClosedByApplication);
  EXPECT_EQ(own->reason, "abort now");
  EXPECT_EQ(net.client().Count(Event::Type::kClosed), 1u);
  // Queued data was dropped, not delivered.
  EXPECT_LT(Received(net.server(), net.ServerConnection(), 0).size(), 200u);
  EXPECT_LT(net.client().Count(Event::Type::kAcked), 200u);
  // Nothing more goes out for it, and the connection is eventually removed.
  net.sim().RunFor(absl::Minutes(1));
  EXPECT_EQ(net.client().Count(Event::Type::kClosed), 1u);
  EXPECT_LT(Received(net.server(), net.ServerConnection(), 0).size(), 200u);
  EXPECT_EQ(client.connection_count(), 0u);
  EXPECT_EQ(net.server().endpoint().connection_count(), 0u);
  send = client.Send(net.sim().now(), id, 0, DeliveryMode::kReliableOrdered, "later");
  EXPECT_EQ(send.status().code(), absl::StatusCode::kNotFound) << send.status();
  EXPECT_EQ(client.Close(net.sim().now(), id, "x").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client.Stats(id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client.PeerOf(id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client.QueuedBytes(id), 0u);
}

TEST(EndpointTest, PeerUnreachableEndsOnlyConnectionAttemptsToThatPeer) {
  const udp::SocketAddress dead = udp::SocketAddress::Ipv4(0x0A000063u, 4000);   // 10.0.0.99
  const udp::SocketAddress other = udp::SocketAddress::Ipv4(0x0A000064u, 4000);  // 10.0.0.100
  Endpoint client(kStart, ClientOptions(72));
  absl::StatusOr<ConnectionId> to_dead = client.Connect(kStart, dead);
  absl::StatusOr<ConnectionId> to_other = client.Connect(kStart, other);
  ASSERT_TRUE(to_dead.ok() && to_other.ok());
  client.TakeOutgoing();  // the hellos, into the void
  const absl::Time now = kStart + absl::Milliseconds(3);

  EXPECT_EQ(client.OnPeerUnreachable(now, dead, "Connection refused"), 1);
  std::vector<Event> events = client.TakeEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, Event::Type::kClosed);
  EXPECT_EQ(events[0].connection, *to_dead);
  EXPECT_EQ(events[0].close_reason, reliable::CloseReason::kPeerUnreachable);
  EXPECT_EQ(events[0].reason, "unreachable: Connection refused");
  EXPECT_FALSE(events[0].by_peer);
  EXPECT_EQ(client.stats().unreachable, 1u);
  // Nothing is sent for it (a client still connecting has no server id).
  EXPECT_TRUE(client.TakeOutgoing().empty());
  // A second report, or one for an address nobody connects to, changes nothing.
  EXPECT_EQ(client.OnPeerUnreachable(now, dead, "Connection refused"), 0);
  EXPECT_EQ(client.OnPeerUnreachable(now, udp::SocketAddress::Ipv4(0x0A000065u, 4000), "x"), 0);
  EXPECT_TRUE(client.TakeEvents().empty());
  // The attempt to the other peer keeps going: its hello is retried.
  client.OnTimeout(client.NextTimeout());
  EXPECT_FALSE(client.TakeOutgoing().empty());
}

TEST(EndpointTest, PeerUnreachableLeavesEstablishedConnectionsAlone) {
  const uint64_t seed = 73;
  SCOPED_TRACE(absl::StrCat("seed=", seed));
  Pair net(seed, Lossy());
  const ConnectionId id = net.Connect();
  Endpoint& client = net.client().endpoint();
  // ICMP is unauthenticated: a forged "port unreachable" must not end a
  // working connection.
  EXPECT_EQ(client.OnPeerUnreachable(net.sim().now(), net.server().address(), "Connection refused"),
            0);
  EXPECT_TRUE(client.IsEstablished(id));
  ASSERT_TRUE(client.Send(net.sim().now(), id, 0, DeliveryMode::kReliableOrdered, "still here").ok());
  net.sim().PollAll();
  ASSERT_TRUE(net.sim().RunUntil([&] { return !Messages(net.server(), 0).empty(); },
                                 net.sim().now() + absl::Seconds(10)));
  EXPECT_EQ(Messages(net.server(), 0)[0]->message, "still here");
  EXPECT_EQ(client.stats().unreachable, 0u);
}

TEST(EndpointTest, OperationsOnUnknownOrUnconnectedIdsFail) {
  Endpoint client(kStart, ClientOptions(71));
  const ConnectionId unknown = 12345;
  EXPECT_EQ(client.Send(kStart, unknown, 0, DeliveryMode::kReliableOrdered, "x").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(client.Close(kStart, unknown, "x").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client.Stats(unknown).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client.PeerOf(unknown).status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(client.IsEstablished(unknown));
  // Before the handshake completes, Send is refused.
  absl::StatusOr<ConnectionId> id = client.Connect(kStart, Addr("192.0.2.70:7000"));
  ASSERT_TRUE(id.ok());
  EXPECT_FALSE(client.IsEstablished(*id));
  for (DeliveryMode mode : {DeliveryMode::kUnreliable, DeliveryMode::kReliableOrdered}) {
    absl::StatusOr<uint64_t> send = client.Send(kStart, *id, 0, mode, "too early");
    EXPECT_EQ(send.status().code(), absl::StatusCode::kFailedPrecondition) << send.status();
  }
  EXPECT_EQ(client.QueuedBytes(*id), 0u);
  // The server side of an accepted but unconfirmed connection refuses too.
  Endpoint server(kStart, ServerOptions(72));
  const proto::Codec codec = MakeCodec();
  const udp::SocketAddress from = Addr("192.0.2.71:7100");
  server.OnDatagram(kStart, from, PaddedHello(codec, 99));
  std::vector<proto::Packet> got = DecodeAll(codec, server.TakeOutgoing());
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(got[0].challenge.has_value());
  server.OnDatagram(kStart, from, PaddedHello(codec, 99, got[0].challenge->cookie));
  got = DecodeAll(codec, server.TakeOutgoing());
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(got[0].accept.has_value());
  const ConnectionId accepted = got[0].accept->server_connection_id;
  EXPECT_EQ(server.Send(kStart, accepted, 0, DeliveryMode::kReliableOrdered, "early")
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(server.TakeEvents().empty());  // no kConnected before confirmation
}

// ---------------------------------------------------------------------------
// 8. Determinism.

// Wraps a node and logs everything it sends, in order.
class RecordingNode final : public sim::Node {
 public:
  RecordingNode(sim::Node* inner, std::vector<std::string>* log) : inner_(inner), log_(log) {}
  void OnDatagram(absl::Time now, const udp::SocketAddress& from, const udp::SocketAddress& to,
                  absl::string_view bytes) override {
    inner_->OnDatagram(now, from, to, bytes);
  }
  void OnTimeout(absl::Time now) override { inner_->OnTimeout(now); }
  absl::Time NextTimeout() const override { return inner_->NextTimeout(); }
  std::vector<sim::Datagram> TakeOutgoing() override {
    std::vector<sim::Datagram> out = inner_->TakeOutgoing();
    for (const sim::Datagram& d : out) {
      log_->push_back(absl::StrCat(d.from.ToString(), ">", d.to.ToString(), " ", d.bytes));
    }
    return out;
  }

 private:
  sim::Node* inner_;
  std::vector<std::string>* log_;
};

std::vector<std::string> RunSmallLossyScenario(uint64_t seed) {
  std::vector<std::string> log;
  sim::Simulator sim(seed, kStart);
  EndpointNode server(kStart, Addr("10.0.0.1:4000"), ServerOptions(seed));
  EndpointNode client(kStart, Addr("10.0.0.2:5000"), ClientOptions(seed));
  RecordingNode server_rec(&server, &log);
  RecordingNode client_rec(&client, &log);
  EXPECT_TRUE(sim.AddNode(server.address(), &server_rec).ok());
  EXPECT_TRUE(sim.AddNode(client.address(), &client_rec).ok());
  EXPECT_TRUE(sim.SetLink(server.address(), client.address(), Lossy(0.2, 0.1, 0.05)).ok());
  EXPECT_TRUE(sim.SetLink(client.address(), server.address(), Lossy(0.2, 0.1, 0.05)).ok());
  absl::StatusOr<ConnectionId> id = client.endpoint().Connect(sim.now(), server.address());
  EXPECT_TRUE(id.ok());
  sim.PollAll();
  EXPECT_TRUE(sim.RunUntil([&] { return client.Count(Event::Type::kConnected) == 1; },
                           sim.now() + absl::Seconds(30)));
  reliable::DeterministicRng sizes(seed, 5);
  for (int i = 0; i < 60; ++i) {
    const DeliveryMode mode = static_cast<DeliveryMode>(i % 4);
    EXPECT_TRUE(client.endpoint()
                    .Send(sim.now(), *id, i % 3, mode, Payload(seed, i, 1 + sizes.Uniform(5000)))
                    .ok());
  }
  sim.PollAll();
  const size_t reliable = 30;  // i % 4 in {2, 3}
  EXPECT_TRUE(sim.RunUntil([&] { return client.Count(Event::Type::kAcked) == reliable; },
                           sim.now() + absl::Seconds(60)));
  EXPECT_TRUE(client.endpoint().Close(sim.now(), *id, "done", true).ok());
  sim.PollAll();
  sim.RunFor(absl::Seconds(30));
  EXPECT_EQ(server.Count(Event::Type::kClosed), 1u);
  return log;
}

TEST(EndpointTest, SameSeedsGiveByteIdenticalDatagrams) {
  for (uint64_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE(absl::StrCat("seed=", seed));
    const std::vector<std::string> a = RunSmallLossyScenario(seed);
    const std::vector<std::string> b = RunSmallLossyScenario(seed);
    ASSERT_GT(a.size(), 50u);
    ASSERT_NO_FATAL_FAILURE(ExpectSameDatagrams(a, b));
    // A different seed gives a different run (the seed matters).
    EXPECT_NE(a, RunSmallLossyScenario(seed + 100));
  }
}

// ---------------------------------------------------------------------------
// Endpoint::OnDatagrams: a batch is handled as the same datagrams one by
// one, except that an established connection runs only when it owes an
// ACK and at the end. Two identical pairs (same seeds) are compared: one
// server gets the client's burst datagram by datagram, the other as one
// batch.

const udp::SocketAddress kBurstClient = Addr("10.0.0.2:5000");
const udp::SocketAddress kBurstMoved = Addr("10.0.0.9:6000");
const udp::SocketAddress kBurstThird = Addr("10.0.0.9:6001");
const udp::SocketAddress kBurstStranger = Addr("10.0.0.7:7000");
const udp::SocketAddress kBurstServer = Addr("10.0.0.1:4000");

// A connected pair (instant, lossless, 1200-byte datagrams: no path MTU
// discovery) whose server is fed by hand, one by one or in batches.
class BurstPair {
 public:
  explicit BurstPair(bool batch, size_t max_datagram = 0)
      : batch_(batch), server_(kStart, Options(ServerOptions(81), max_datagram)),
        client_(kStart, Options(ClientOptions(81), max_datagram)) {
    absl::StatusOr<ConnectionId> id = client_.Connect(kStart, kBurstServer);
    EXPECT_TRUE(id.ok()) << id.status();
    client_id_ = id.value_or(0);
    Shuttle(kStart, client_, kBurstClient, server_, kBurstServer);
    EXPECT_TRUE(client_.IsEstablished(client_id_));
    EXPECT_EQ(server_.members(), 1u);
    client_.TakeEvents();
    std::vector<Event> accepted = server_.TakeEvents();
    EXPECT_EQ(accepted.size(), 1u);
    if (!accepted.empty()) server_id_ = accepted[0].connection;
  }

  // The client's datagrams for `messages`, sent at once.
  std::vector<Outgoing> Burst(const std::vector<std::string>& messages) {
    for (const std::string& m : messages) {
      EXPECT_TRUE(client_.Send(now_, client_id_, 1, DeliveryMode::kReliableOrdered, m).ok());
    }
    return client_.TakeOutgoing();
  }
  // Hands the server `datagrams` 1 ms later; returns what it sent.
  std::vector<Outgoing> Feed(const std::vector<ReceivedDatagram>& datagrams) {
    now_ += absl::Milliseconds(1);
    if (batch_) {
      server_.OnDatagrams(now_, datagrams);
    } else {
      for (const ReceivedDatagram& d : datagrams) server_.OnDatagram(now_, *d.from, d.bytes);
    }
    return server_.TakeOutgoing();
  }
  // Delivers `replies` (the server's) to the client.
  void Answer(const std::vector<Outgoing>& replies) {
    for (const Outgoing& o : replies) {
      if (o.peer == kBurstClient) client_.OnDatagram(now_, kBurstServer, o.bytes);
    }
  }
  std::vector<Outgoing> TakeClientOutgoing() {
    if (client_.NextTimeout() <= now_) client_.OnTimeout(now_);
    return client_.TakeOutgoing();
  }
  std::vector<std::string> Messages() {
    std::vector<std::string> out;
    for (Event& e : server_.TakeEvents()) {
      if (e.type == Event::Type::kMessage && e.connection == server_id_) {
        out.push_back(std::move(e.message));
      }
    }
    return out;
  }
  Endpoint& server() { return server_; }
  Endpoint& client() { return client_; }
  absl::Time now() const { return now_; }
  ConnectionStats connection() const { return *server_.Stats(server_id_); }
  ConnectionStats client_connection() const { return *client_.Stats(client_id_); }
  ConnectionId server_id() const { return server_id_; }

 private:
  static EndpointOptions Options(EndpointOptions o, size_t max_datagram) {
    o.connection.pmtud = false;
    if (max_datagram != 0) o.connection.max_datagram = max_datagram;
    return o;
  }

  bool batch_;
  Endpoint server_;
  Endpoint client_;
  ConnectionId client_id_ = 0;
  ConnectionId server_id_ = 0;
  absl::Time now_ = kStart + absl::Milliseconds(5);
};

std::vector<std::string> BurstMessages() {
  std::vector<std::string> out;
  for (int i = 0; i < 6; ++i) out.push_back(std::string(700 + 300 * i, static_cast<char>('a' + i)));
  return out;
}

// The client's `burst` from its address, or from kBurstMoved from datagram
// `move_at` on, with a cookieless hello from kBurstStranger after the first.
std::vector<ReceivedDatagram> Arrivals(const std::vector<Outgoing>& burst, const std::string& hello,
                                       size_t move_at = SIZE_MAX) {
  std::vector<ReceivedDatagram> out;
  for (size_t i = 0; i < burst.size(); ++i) {
    out.push_back({i >= move_at ? &kBurstMoved : &kBurstClient, burst[i].bytes});
    if (i == 0) out.push_back({&kBurstStranger, hello});
  }
  return out;
}

std::vector<std::string> To(const std::vector<Outgoing>& sent, const udp::SocketAddress& to) {
  std::vector<std::string> out;
  for (const Outgoing& o : sent) {
    if (o.peer == to) out.push_back(o.bytes);
  }
  return out;
}

// A data packet's way allocates nothing: a connection encodes into the
// endpoint's DatagramBatch and the endpoint decodes into a reused Packet
// (sealed datagrams too, after opening). What does allocate is per message
// (its delivery, its queue entry), per ACK (its ranges, the acknowledged
// records) or per call (an events vector); the test bounds the whole at
// half an allocation per datagram. Before, every datagram sent was a
// std::string of its own, and every sealed datagram received decoded into
// a new Packet.
struct SteadyTransfer {
  int64_t datagrams = 0;    // both ways, while counting
  int64_t allocations = 0;  // both endpoints, while counting
  size_t delivered = 0;
};

SteadyTransfer CountSteadyTransferAllocations(bool encrypt) {
  EndpointOptions server_options = ServerOptions(82);
  EndpointOptions client_options = ClientOptions(82);
  for (EndpointOptions* o : {&server_options, &client_options}) {
    o->encrypt = encrypt;
    o->connection.pmtud = false;
  }
  Endpoint server(kStart, server_options);
  Endpoint client(kStart, client_options);
  absl::StatusOr<ConnectionId> id = client.Connect(kStart, kBurstServer);
  EXPECT_TRUE(id.ok()) << id.status();
  Shuttle(kStart, client, kBurstClient, server, kBurstServer);
  EXPECT_TRUE(client.IsEstablished(*id));
  client.TakeEvents();
  server.TakeEvents();
  SteadyTransfer t;
  absl::Time now = kStart;
  reliable::DatagramBatch out;
  // Every hop takes 1 ms: what each side sent is delivered in the next round.
  const auto round = [&](bool count) {
    now += absl::Milliseconds(1);
    for (Endpoint* e : {&client, &server}) {
      if (e->NextTimeout() <= now) e->OnTimeout(now);
    }
    client.TakeOutgoing(&out);
    if (count) t.datagrams += static_cast<int64_t>(out.size());
    for (size_t i = 0; i < out.size(); ++i) server.OnDatagram(now, kBurstClient, out[i]);
    out.Clear();
    server.TakeOutgoing(&out);
    if (count) t.datagrams += static_cast<int64_t>(out.size());
    for (size_t i = 0; i < out.size(); ++i) {
      if (out.peer(i) == kBurstClient) client.OnDatagram(now, kBurstServer, out[i]);
    }
    out.Clear();
    client.TakeEvents();
    for (const Event& e : server.TakeEvents()) {
      if (e.type == Event::Type::kMessage) ++t.delivered;
    }
  };
  // Warm up (buffers, the window), then count 32 messages of 64 KiB.
  constexpr size_t kMessages = 32;
  const std::string message(64 << 10, 'm');
  for (size_t i = 0; i < 8; ++i) {
    EXPECT_TRUE(client.Send(now, *id, 1, DeliveryMode::kReliableOrdered, message).ok());
  }
  for (int r = 0; r < 2000 && t.delivered < 8; ++r) round(false);
  EXPECT_EQ(t.delivered, 8u);
  t.delivered = 0;
  const int64_t before = heap_allocations.load();
  for (size_t i = 0; i < kMessages; ++i) {
    EXPECT_TRUE(client.Send(now, *id, 1, DeliveryMode::kReliableOrdered, message).ok());
  }
  for (int r = 0; r < 4000 && t.delivered < kMessages; ++r) round(true);
  t.allocations = heap_allocations.load() - before;
  EXPECT_EQ(t.delivered, kMessages);
  return t;
}

TEST(EndpointTest, ASteadyTransferAllocatesPerMessageNotPerDatagram) {
  for (bool encrypt : {false, true}) {
    SCOPED_TRACE(encrypt ? "encrypted" : "plain");
    const SteadyTransfer t = CountSteadyTransferAllocations(encrypt);
    std::printf("%s: %lld datagrams, %lld allocations for 32 messages\n",
                encrypt ? "encrypted" : "plain", static_cast<long long>(t.datagrams),
                static_cast<long long>(t.allocations));
    ASSERT_GT(t.datagrams, 2000);  // 2 MiB in ~1 KB fragments, and the ACKs
    // One allocation per datagram would be 2,000 and more. What is left is
    // per message (the reassembly buffer grows as its bytes arrive: 8 times
    // for 64 KiB; events) and per ACK (its ranges, the acked records).
    EXPECT_LT(t.allocations, t.datagrams / 2);
  }
}

TEST(EndpointTest, ABatchIsAnsweredAsOneByOneAndDeliversTheSame) {
  const std::vector<std::string> sent = BurstMessages();
  const std::string hello = PaddedHello(MakeCodec(), 4242);
  BurstPair single(/*batch=*/false);
  BurstPair batch(/*batch=*/true);
  const uint64_t flushes_before = batch.server().stats().received_flushes;  // the handshake's
  ASSERT_EQ(single.server().stats().received_flushes, flushes_before);
  const std::vector<Outgoing> single_out = single.Feed(Arrivals(single.Burst(sent), hello));
  const std::vector<Outgoing> burst = batch.Burst(sent);
  ASSERT_GE(burst.size(), 6u);
  const std::vector<Outgoing> batch_out = batch.Feed(Arrivals(burst, hello));
  EXPECT_EQ(single.Messages(), sent);
  EXPECT_EQ(batch.Messages(), sent);
  // The same ACKs (every second packet, the default threshold), built at
  // the same points of the burst, byte for byte.
  EXPECT_GE(To(single_out, kBurstClient).size(), 2u);
  EXPECT_EQ(To(batch_out, kBurstClient), To(single_out, kBurstClient));
  EXPECT_EQ(batch.connection().acks_sent, single.connection().acks_sent);
  EXPECT_EQ(batch.connection().packets_received, single.connection().packets_received);
  EXPECT_EQ(batch.server().stats().datagrams_received, single.server().stats().datagrams_received);
  // One by one the connection ran for every packet; the batch runs it for
  // each ACK, and for what it deferred before the hello and at the end.
  EXPECT_EQ(single.server().stats().received_flushes - flushes_before, burst.size());
  EXPECT_GE(batch.server().stats().received_flushes - flushes_before, batch.connection().acks_sent);
  EXPECT_LE(batch.server().stats().received_flushes - flushes_before,
            batch.connection().acks_sent + 2);
  // The stranger's hello, in the middle of the batch, got the same
  // stateless challenge.
  EXPECT_EQ(To(batch_out, kBurstStranger).size(), 1u);
  EXPECT_EQ(To(batch_out, kBurstStranger), To(single_out, kBurstStranger));
  EXPECT_EQ(batch.server().stats().hellos, single.server().stats().hellos);
}

// A bulk transfer in slow start, every burst handed to one server one by
// one and to the other as one batch, with and without a lost datagram in
// each burst: the two send the same ACKs (the immediate one for each gap
// included), so the two clients stay in step; the batched server runs its
// connection far less often once the client raised the ack threshold.
TEST(EndpointTest, BatchedBurstsAreAcknowledgedAsOneByOne) {
  for (const size_t drop_every : {size_t{0}, size_t{37}}) {
    SCOPED_TRACE(drop_every == 0 ? "lossless" : "a datagram in 37 lost");
    BurstPair single(/*batch=*/false);
    BurstPair batch(/*batch=*/true);
    const uint64_t flushes_before = batch.server().stats().received_flushes;  // the handshake's
    std::vector<Outgoing> burst = single.Burst({std::string(4 << 20, 'w')});
    ASSERT_EQ(To(batch.Burst({std::string(4 << 20, 'w')}), kBurstServer), To(burst, kBurstServer));
    size_t largest_burst = 0;
    uint64_t datagrams = 0;
    for (int round = 0; round < 24 && !burst.empty(); ++round) {
      largest_burst = std::max(largest_burst, burst.size());
      std::vector<ReceivedDatagram> arrivals;
      for (size_t i = 0; i < burst.size(); ++i) {
        if (drop_every == 0 || i % drop_every != drop_every / 2) {
          arrivals.push_back({&kBurstClient, burst[i].bytes});
        }
      }
      datagrams += arrivals.size();
      const std::vector<Outgoing> single_out = single.Feed(arrivals);
      const std::vector<Outgoing> batch_out = batch.Feed(arrivals);
      ASSERT_EQ(To(batch_out, kBurstClient), To(single_out, kBurstClient)) << "round " << round;
      single.Answer(single_out);
      batch.Answer(batch_out);
      burst = single.TakeClientOutgoing();
      ASSERT_EQ(To(batch.TakeClientOutgoing(), kBurstServer), To(burst, kBurstServer))
          << "round " << round;
    }
    const uint64_t single_runs = single.server().stats().received_flushes - flushes_before;
    const uint64_t batch_runs = batch.server().stats().received_flushes - flushes_before;
    EXPECT_EQ(single_runs, datagrams);
    EXPECT_EQ(batch.server().stats().datagrams_received,
              single.server().stats().datagrams_received);
    EXPECT_EQ(batch.connection().acks_sent, single.connection().acks_sent);
    // Every run sent an ACK, but the last of each batch.
    EXPECT_LE(batch_runs, batch.connection().acks_sent + 24);
    EXPECT_LT(batch_runs, single_runs);
    if (drop_every == 0) {
      // Slow start raised the threshold: a run per many datagrams.
      EXPECT_GE(largest_burst, 150u);
      EXPECT_GT(batch.client_connection().peer_ack_threshold, 2u);
      EXPECT_LT(batch_runs * 4, datagrams) << batch.server().stats().ToString();
    }
  }
}

// With small datagrams the burst allowance (four trains: 508 of 512
// bytes) is more than one Poll builds (256 packets): the connection asks to
// be polled again at once instead of waiting for the next ACK. Each round
// hands the client only the server's newest ACK, so one Poll answers it.
TEST(EndpointTest, ABurstCutByThePerPollCapContinuesAtOnce) {
  BurstPair p(/*batch=*/true, /*max_datagram=*/512);
  std::vector<Outgoing> burst = p.Burst({std::string(8 << 20, 'w')});
  bool capped = false;
  for (int round = 0; round < 30 && !capped; ++round) {
    std::vector<ReceivedDatagram> arrivals;
    for (const Outgoing& o : burst) arrivals.push_back({&kBurstClient, o.bytes});
    std::vector<Outgoing> replies = p.Feed(arrivals);
    ASSERT_FALSE(replies.empty());
    p.Answer({replies.back()});
    burst = p.client().TakeOutgoing();
    if (burst.size() == 256) {
      capped = true;
      EXPECT_LE(p.client().NextTimeout(), p.now()) << "round " << round;
      p.client().OnTimeout(p.now());
      EXPECT_GT(p.client().TakeOutgoing().size(), 0u);
    }
    ASSERT_LE(burst.size(), 256u);
    if (burst.empty()) burst = p.TakeClientOutgoing();
  }
  EXPECT_TRUE(capped);
}

TEST(EndpointTest, PacketsThatMoveTheConnectionAreHandledInABatchAsAlone) {
  const std::vector<std::string> sent = BurstMessages();
  const std::string hello = PaddedHello(MakeCodec(), 4242);
  for (const bool batched : {false, true}) {
    SCOPED_TRACE(batched ? "batch" : "one by one");
    BurstPair p(batched);
    // The client's NAT rebinds in the middle of the burst: what came before
    // is delivered, the rest (clear packets from an unvalidated address)
    // only starts a validation of the new address.
    const std::vector<Outgoing> out = p.Feed(Arrivals(p.Burst(sent), hello, /*move_at=*/3));
    EXPECT_FALSE(p.Messages().empty());
    EXPECT_EQ(p.server().stats().path_challenges_sent, 1u);
    std::optional<uint64_t> challenge;
    for (const std::string& d : To(out, kBurstMoved)) {
      absl::StatusOr<proto::Packet> pk = MakeCodec().Decode(d);
      if (pk.ok() && pk->path_challenge) challenge = pk->path_challenge->data;
    }
    ASSERT_TRUE(challenge.has_value());
    // In one batch: the answer from the new address (the connection moves
    // there), then a newer packet from a third address (a new validation).
    // The move must reach the endpoint before the second validation
    // replaces it, batch or not.
    proto::Packet response;
    response.connection_id = p.server_id();
    response.packet_number = 1000;
    response.path_response = proto::PathResponse{*challenge};
    proto::Packet ping;
    ping.connection_id = p.server_id();
    ping.packet_number = 1001;
    ping.ping = proto::Ping{};
    const std::string a = Encode(MakeCodec(), response);
    const std::string b = Encode(MakeCodec(), ping);
    p.Feed({{&kBurstMoved, a}, {&kBurstThird, b}});
    EXPECT_EQ(p.server().stats().migrations, 1u);
    EXPECT_EQ(p.connection().migrations, 1u);
    EXPECT_EQ(*p.server().PeerOf(p.server_id()), kBurstMoved);
    EXPECT_EQ(p.server().stats().path_challenges_sent, 2u);
  }
}

// ---------------------------------------------------------------------------
// Path validation and migration (connection.h, "Path validation and
// migration"). The server endpoint is driven by hand: the client's genuine
// datagrams are captured from its sent log and delivered from other
// addresses, so nothing runs that the test does not decide.

// A connected pair (10 ms each way) whose client's datagrams are logged.
class PathNet {
 public:
  PathNet(uint64_t seed, bool encrypt)
      : net_(seed, Lossy(), Options(ServerOptions(seed), encrypt),
             Options(ClientOptions(seed), encrypt)) {
    net_.client().set_sent_log(&client_sent_);
    net_.server().set_received_log(&server_received_);
    client_id_ = net_.Connect();
    server_id_ = net_.ServerConnection();
    EXPECT_NE(server_id_, 0u);
    ExchangeMessages(net_.sim(), net_.client(), client_id_, net_.server(), server_id_, 1,
                     "before");
    net_.sim().RunFor(absl::Milliseconds(200));  // everything sent has arrived
  }

  // A genuine datagram of the client carrying `message` that the server has
  // not seen: the client's path drops it.
  std::string Unseen(const std::string& message) {
    impairment::ImpairmentConfig drop = Lossy();
    drop.loss = 1.0;
    EXPECT_TRUE(sim().SetLink(net_.client().address(), net_.server().address(), drop).ok());
    client_sent_.clear();
    EXPECT_TRUE(net_.client()
                    .endpoint()
                    .Send(sim().now(), client_id_, 1, DeliveryMode::kReliableOrdered, message)
                    .ok());
    sim().PollAll();
    EXPECT_TRUE(sim().SetLink(net_.client().address(), net_.server().address(), Lossy()).ok());
    EXPECT_EQ(client_sent_.size(), 1u);
    return client_sent_.empty() ? std::string() : client_sent_.back();
  }

  // The server, by hand: feeds `bytes` from `from` now.
  void Deliver(const udp::SocketAddress& from, absl::string_view bytes) {
    server().OnDatagram(sim().now(), from, bytes);
  }
  // Takes the server's datagrams; returns the bytes it sent to `to`, adding
  // each datagram's size to `*sizes`.
  uint64_t SentTo(const udp::SocketAddress& to, std::vector<size_t>* sizes = nullptr) {
    uint64_t bytes = 0;
    for (const Outgoing& o : server().TakeOutgoing()) {
      if (!(o.peer == to)) continue;
      bytes += o.bytes.size();
      if (sizes != nullptr) sizes->push_back(o.bytes.size());
    }
    return bytes;
  }
  // Runs the simulation for `d` with the client cut off (both its links
  // drop everything); returns the bytes the server sent to `to` meanwhile
  // and adds the number of datagrams to `*count`.
  uint64_t RunServerAlone(absl::Duration d, const udp::SocketAddress& to, size_t* count = nullptr) {
    uint64_t bytes = SentTo(to);
    if (count != nullptr && bytes > 0) ++*count;  // callers check the first one by hand
    impairment::ImpairmentConfig drop = Lossy();
    drop.loss = 1.0;
    const udp::SocketAddress c = net_.client().address();
    const udp::SocketAddress s = net_.server().address();
    EXPECT_TRUE(sim().SetLink(c, s, drop).ok());
    EXPECT_TRUE(sim().SetLink(s, c, drop).ok());
    const sim::Simulator::PathStats before = sim().path_stats(s, to);
    sim().PollAll();
    sim().RunFor(d);
    const sim::Simulator::PathStats after = sim().path_stats(s, to);
    EXPECT_TRUE(sim().SetLink(c, s, Lossy()).ok());
    EXPECT_TRUE(sim().SetLink(s, c, Lossy()).ok());
    if (count != nullptr) *count += after.packets_sent - before.packets_sent;
    return bytes + after.bytes_sent - before.bytes_sent;
  }

  sim::Simulator& sim() { return net_.sim(); }
  Pair& net() { return net_; }
  Endpoint& server() { return net_.server().endpoint(); }
  ConnectionId client_id() const { return client_id_; }
  ConnectionId server_id() const { return server_id_; }
  const std::vector<std::string>& client_sent() const { return client_sent_; }
  // What the server received through the simulator (from the client).
  const std::vector<std::string>& server_received() const { return server_received_; }
  udp::SocketAddress client_address() { return net_.client().address(); }

 private:
  static EndpointOptions Options(EndpointOptions o, bool encrypt) {
    o.encrypt = encrypt;
    return o;
  }

  Pair net_;
  std::vector<std::string> client_sent_;
  std::vector<std::string> server_received_;
  ConnectionId client_id_ = 0;
  ConnectionId server_id_ = 0;
};

TEST(PathValidationTest, AnAuthenticatedNewerPacketFromANewAddressGetsAPaddedChallenge) {
  const uint64_t seed = 901;
  SCOPED_TRACE(absl::StrCat("seed=", seed));
  PathNet p(seed, /*encrypt=*/true);
  const udp::SocketAddress moved = Addr("198.51.100.7:6000");
  const std::string unseen = p.Unseen(std::string(900, 'm'));  // a large datagram
  p.server().TakeOutgoing();
  p.Deliver(moved, unseen);
  std::vector<size_t> sizes;
  const uint64_t sent = p.SentTo(moved, &sizes);
  // One challenge, padded to 1200 bytes (RFC 9000 8.2.1): within 3x.
  ASSERT_EQ(sizes.size(), 1u);
  EXPECT_EQ(sizes[0], reliable::kPathChallengeDatagram);
  EXPECT_LE(sent, 3 * unseen.size());
  EXPECT_EQ(p.server().stats().path_challenges_sent, 1u);
  // Sealed: it opens with the client's keys only, so the new address cannot
  // answer unless the client is really there. Its message was processed.
  std::vector<Event> events = p.server().TakeEvents();
  EXPECT_EQ(CountType(events, Event::Type::kMessage), 1u);
  EXPECT_EQ(CountType(events, Event::Type::kPathChanged), 0u);
  EXPECT_EQ(*p.server().PeerOf(p.server_id()), p.client_address());
}

TEST(PathValidationTest, AClientRefusesACopyFromAnotherAddressBeforeOpeningIt) {
  // Someone who can inject (not drop) copies the server's packet and sends
  // it from its own address, ahead of the original. The client never moves,
  // so it refuses the copy unopened: the replay window must not record its
  // number, or the genuine packet would be rejected as a replay.
  const uint64_t seed = 907;
  SCOPED_TRACE(absl::StrCat("seed=", seed));
  PathNet p(seed, /*encrypt=*/true);
  const absl::Time now = p.sim().now();
  ASSERT_TRUE(p.server()
                  .Send(now, p.server_id(), 1, DeliveryMode::kReliableOrdered, "to the client")
                  .ok());
  std::string genuine;
  for (const Outgoing& o : p.server().TakeOutgoing()) {
    if (o.peer == p.client_address()) genuine = o.bytes;
  }
  ASSERT_FALSE(genuine.empty());
  Endpoint& client = p.net().client().endpoint();
  client.TakeEvents();
  const reliable::EndpointStats before = client.stats();
  client.OnDatagram(now, Addr("198.51.100.7:6000"), genuine);
  EXPECT_EQ(client.stats().wrong_address, before.wrong_address + 1);
  EXPECT_EQ(client.stats().unauthenticated, before.unauthenticated);
  EXPECT_EQ(CountType(client.TakeEvents(), Event::Type::kMessage), 0u);
  client.OnDatagram(now, p.net().server().address(), genuine);
  EXPECT_EQ(client.stats().unauthenticated, before.unauthenticated);
  std::vector<Event> events = client.TakeEvents();
  ASSERT_EQ(CountType(events, Event::Type::kMessage), 1u);
  for (const Event& e : events) {
    if (e.type == Event::Type::kMessage) {
      EXPECT_EQ(e.message, "to the client");
    }
  }
}

TEST(PathValidationTest, ChallengesStayWithinThreeTimesWhatTheAddressSentThenTheValidationFails) {
  const uint64_t seed = 902;
  SCOPED_TRACE(absl::StrCat("seed=", seed));
  PathNet p(seed, /*encrypt=*/true);
  const udp::SocketAddress moved = Addr("198.51.100.7:6000");
  const std::string unseen = p.Unseen("x");  // a small datagram: no room for padding
  p.server().TakeOutgoing();
  p.Deliver(moved, unseen);
  std::vector<size_t> sizes;
  uint64_t sent = p.SentTo(moved, &sizes);
  ASSERT_EQ(sizes.size(), 1u);
  EXPECT_LT(sizes[0], reliable::kPathChallengeDatagram);  // no room for padding
  size_t count = 1;
  sent += p.RunServerAlone(absl::Seconds(4), moved, &count);  // nobody answers
  EXPECT_LE(count, static_cast<size_t>(reliable::kMaxPathChallenges));
  EXPECT_LE(sent, 3 * unseen.size()) << "amplification over 3x toward an unvalidated address";
  const reliable::EndpointStats& stats = p.server().stats();
  EXPECT_EQ(stats.path_challenges_sent, count);
  EXPECT_EQ(stats.path_validation_failures, 1u);
  EXPECT_EQ(stats.migrations, 0u);
  const reliable::ConnectionStats c = *p.server().Stats(p.server_id());
  EXPECT_EQ(c.path_validation_failures, 1u);
  EXPECT_EQ(c.path_challenges, count);
  if (count < static_cast<size_t>(reliable::kMaxPathChallenges)) {
    EXPECT_GE(c.path_amplification_blocked, 1u);
  }
}

TEST(PathValidationTest, AnUnansweredValidationTimesOutAndTheConnectionStaysOnItsPath) {
  const uint64_t seed = 903;
  SCOPED_TRACE(absl::StrCat("seed=", seed));
  PathNet p(seed, /*encrypt=*/true);
  const udp::SocketAddress moved = Addr("198.51.100.7:6000");
  const std::string unseen = p.Unseen(std::string(900, 'm'));
  p.server().TakeOutgoing();
  p.Deliver(moved, unseen);
  size_t count = 0;
  // The validation times out after 3 x max(PTO, the initial PTO): about 3 s.
  p.RunServerAlone(absl::Seconds(4), moved, &count);
  EXPECT_EQ(count, static_cast<size_t>(reliable::kMaxPathChallenges));
  EXPECT_EQ(p.server().stats().path_validation_failures, 1u);
  EXPECT_EQ(*p.server().PeerOf(p.server_id()), p.client_address());
  // Nothing more goes there, and the connection still works on its path.
  EXPECT_EQ(p.RunServerAlone(absl::Milliseconds(500), moved), 0u);
  p.sim().PollAll();
  // (The blackout backed both sides' probe timers off to seconds: give the
  // exchange longer than ExchangeMessages does.)
  ASSERT_TRUE(p.server()
                  .Send(p.sim().now(), p.server_id(), 2, DeliveryMode::kReliableOrdered, "after")
                  .ok());
  p.sim().PollAll();
  ASSERT_TRUE(p.sim().RunUntil(
      [&] { return CountFor(p.net().server(), p.server_id(), Event::Type::kAcked) == 2; },
      p.sim().now() + absl::Seconds(30)));
  EXPECT_THAT(Received(p.net().client(), p.client_id(), 2), ::testing::ElementsAre("after"));
  EXPECT_EQ(p.net().server().Count(Event::Type::kPathChanged), 0u);
  EXPECT_EQ(p.net().server().Count(Event::Type::kClosed), 0u);
}

TEST(PathValidationTest, SpoofedOrForgedDatagramsFromANewAddressGetNothing) {
  const uint64_t seed = 904;
  SCOPED_TRACE(absl::StrCat("seed=", seed));
  PathNet p(seed, /*encrypt=*/true);
  const udp::SocketAddress moved = Addr("198.51.100.7:6000");
  const std::string unseen = p.Unseen(std::string(500, 'm'));
  p.server().TakeOutgoing();
  const reliable::EndpointStats before = p.server().stats();
  reliable::DeterministicRng rng(seed);
  uint64_t fed = 0;
  // Garbage behind a right header; the genuine datagram with one bit
  // flipped anywhere past the header (does not open); a clear packet with a
  // valid checksum and the newest number (an encrypted connection takes
  // only sealed ones).
  for (int i = 0; i < 200; ++i) {
    proto::SealedHeader h{p.server_id(), 1'000'000 + rng.Uniform(1000)};
    std::string garbage = proto::EncodeSealedHeader(h) + std::string(40 + rng.Uniform(1000), '\0');
    for (size_t j = proto::kSealedHeaderBytes; j < garbage.size(); ++j) {
      garbage[j] = static_cast<char>(rng.Next());
    }
    p.Deliver(moved, garbage);
    std::string flipped = unseen;
    const uint64_t bit = proto::kSealedHeaderBytes * 8 +
                         rng.Uniform((flipped.size() - proto::kSealedHeaderBytes) * 8);
    flipped[bit / 8] ^= static_cast<char>(1 << (bit % 8));
    p.Deliver(moved, flipped);
    fed += 2;
  }
  proto::Packet clear;
  clear.connection_id = p.server_id();
  clear.packet_number = 2'000'000;
  clear.ping = proto::Ping{};
  clear.close = proto::Close{proto::kCloseApplication, "forged"};
  p.Deliver(moved, Encode(MakeCodec(), clear));
  ++fed;
  EXPECT_EQ(p.SentTo(moved), 0u);
  const reliable::EndpointStats& after = p.server().stats();
  EXPECT_EQ(after.unauthenticated - before.unauthenticated, fed);
  EXPECT_EQ(after.path_challenges_sent, 0u);
  EXPECT_TRUE(p.server().TakeEvents().empty());
  EXPECT_TRUE(p.server().IsEstablished(p.server_id()));
  // The genuine one still counts (the forgeries used nothing up).
  p.Deliver(moved, unseen);
  EXPECT_GT(p.SentTo(moved), 0u);
}

void RunReplays(bool encrypt) {
  const uint64_t seed = encrypt ? 905 : 915;
  SCOPED_TRACE(absl::StrCat("seed=", seed, " encrypt=", encrypt));
  PathNet p(seed, encrypt);
  const udp::SocketAddress moved = Addr("198.51.100.7:6000");
  // Replays: every numbered datagram the server received, from
  // elsewhere (hellos would get the ordinary stateless handshake answer).
  std::vector<std::string> seen;
  const proto::Codec codec = MakeCodec(16384);
  for (const std::string& d : p.server_received()) {
    if (static_cast<uint8_t>(d[0]) == proto::kSealedVersion) {
      seen.push_back(d);
    } else if (absl::StatusOr<proto::Packet> pk = codec.Decode(d); pk.ok() && !pk->hello) {
      seen.push_back(d);
    }
  }
  ASSERT_GE(seen.size(), 2u);
  const std::string older = p.Unseen("older");
  const std::string newer = p.Unseen("newer");
  p.server().TakeOutgoing();
  // The newer one arrives first, from the client's own address; the older
  // one, from elsewhere, is genuine but old (reordered): sealed it is
  // processed and starts nothing, clear it is dropped.
  p.Deliver(p.client_address(), newer);
  const reliable::EndpointStats before = p.server().stats();
  p.Deliver(moved, older);
  for (const std::string& d : seen) p.Deliver(moved, d);
  p.Deliver(moved, newer);  // a duplicate now
  const reliable::EndpointStats& after = p.server().stats();
  // Sealed replays fail the protector's replay window (unauthenticated);
  // clear ones the connection's duplicate check (wrong_address).
  EXPECT_EQ(after.unauthenticated - before.unauthenticated + after.wrong_address -
                before.wrong_address,
            seen.size() + 1 + (encrypt ? 0 : 1));
  EXPECT_EQ(p.SentTo(moved), 0u);
  EXPECT_EQ(p.RunServerAlone(absl::Seconds(4), moved), 0u);
  EXPECT_EQ(p.server().stats().path_challenges_sent, 0u);
  EXPECT_EQ(p.server().stats().migrations, 0u);
  EXPECT_EQ(*p.server().PeerOf(p.server_id()), p.client_address());
}

TEST(PathValidationTest, AReplayedOrOldPacketFromANewAddressMovesNothingAndGetsNothing) {
  RunReplays(/*encrypt=*/true);
}
TEST(PathValidationTest, UnencryptedAReplayedOrOldPacketFromANewAddressGetsNothing) {
  RunReplays(/*encrypt=*/false);
}

TEST(PathValidationTest, AForwardedPacketIsAbandonedWhenThePeerShowsUpAtItsAddress) {
  // RFC 9000 9.3.3: someone relays a genuine packet from another address
  // before the original arrives; the peer's next packet, from its own
  // address, ends the validation.
  const uint64_t seed = 906;
  SCOPED_TRACE(absl::StrCat("seed=", seed));
  PathNet p(seed, /*encrypt=*/true);
  const udp::SocketAddress relay = Addr("198.51.100.7:6000");
  const std::string first = p.Unseen(std::string(900, 'a'));
  const std::string second = p.Unseen("b");
  p.server().TakeOutgoing();
  p.Deliver(relay, first);
  EXPECT_GT(p.SentTo(relay), 0u);  // a challenge
  p.Deliver(p.client_address(), second);
  EXPECT_EQ(p.server().stats().path_validation_failures, 1u);
  EXPECT_EQ(p.RunServerAlone(absl::Seconds(4), relay), 0u);
  EXPECT_EQ(p.server().stats().migrations, 0u);
  EXPECT_EQ(*p.server().PeerOf(p.server_id()), p.client_address());
}

TEST(PathValidationTest, UnencryptedANewerClearPacketFromANewAddressGetsOnlyAChallenge) {
  // Without encryption a valid checksum and the newest number are all that
  // can be checked: such a packet starts a validation but is otherwise
  // dropped unread (no data, no close), and the challenge stays within 3x.
  const uint64_t seed = 907;
  SCOPED_TRACE(absl::StrCat("seed=", seed));
  PathNet p(seed, /*encrypt=*/false);
  const udp::SocketAddress moved = Addr("198.51.100.7:6000");
  proto::Packet forged;
  forged.connection_id = p.server_id();
  forged.packet_number = 1'000'000;
  proto::DataFragment f;
  f.channel = 1;
  f.mode = static_cast<uint32_t>(DeliveryMode::kReliableOrdered);
  f.sequence = 2;  // the next message on channel 1
  f.total_size = 6;
  f.payload = "forged";
  forged.data.push_back(f);
  forged.close = proto::Close{proto::kCloseApplication, "forged close"};
  const std::string bytes = Encode(MakeCodec(), forged);
  p.server().TakeOutgoing();
  p.Deliver(moved, bytes);
  size_t count = 0;
  const uint64_t sent = p.RunServerAlone(absl::Seconds(4), moved, &count);
  EXPECT_GE(count, 1u);
  EXPECT_LE(sent, 3 * bytes.size());
  EXPECT_TRUE(p.server().IsEstablished(p.server_id()))
      << p.server().Stats(p.server_id())->ToString();
  EXPECT_EQ(CountFor(p.net().server(), p.server_id(), Event::Type::kMessage), 1u);  // "before"
  EXPECT_EQ(p.server().stats().migrations, 0u);
  EXPECT_EQ(p.server().stats().path_validation_failures, 1u);
  EXPECT_EQ(*p.server().PeerOf(p.server_id()), p.client_address());
}

// The client's NAT rebinds twice in quick succession: the second address
// replaces the first's validation, and the connection moves once, there.
void RunDoubleRebinding(bool encrypt) {
  const uint64_t seed = encrypt ? 908 : 909;
  SCOPED_TRACE(absl::StrCat("seed=", seed, " encrypt=", encrypt));
  PathNet p(seed, encrypt);
  sim::Simulator& sim = p.sim();
  const udp::SocketAddress client = p.client_address();
  const udp::SocketAddress first = Addr("198.51.100.7:6000");
  const udp::SocketAddress second = Addr("198.51.100.7:6001");
  const udp::SocketAddress server = p.net().server().address();
  for (const udp::SocketAddress& a : {first, second}) {
    ASSERT_TRUE(sim.SetLink(a, server, Lossy()).ok());
    ASSERT_TRUE(sim.SetLink(server, a, Lossy()).ok());
  }
  auto send = [&](const std::string& text) {
    ASSERT_TRUE(p.net().client().endpoint()
                    .Send(sim.now(), p.client_id(), 1, DeliveryMode::kReliableOrdered, text)
                    .ok());
  };
  const absl::Time t0 = sim.now();
  sim.At(t0, [&] {
    ASSERT_TRUE(sim.Rebind(client, first).ok());
    send("from the first");
  });
  sim.At(t0 + absl::Milliseconds(5), [&] {
    ASSERT_TRUE(sim.Rebind(client, second).ok());
    send("from the second");
  });
  ASSERT_TRUE(sim.RunUntil(
      [&] { return CountFor(p.net().client(), p.client_id(), Event::Type::kAcked) >= 3; },
      t0 + absl::Seconds(20)));
  EXPECT_EQ(p.net().server().Count(Event::Type::kPathChanged), 1u);
  const Event* moved = p.net().server().Find(Event::Type::kPathChanged);
  ASSERT_NE(moved, nullptr);
  EXPECT_EQ(moved->old_peer, client);
  EXPECT_EQ(moved->peer, second);
  EXPECT_EQ(*p.server().PeerOf(p.server_id()), second);
  EXPECT_EQ(p.server().stats().migrations, 1u);
  EXPECT_THAT(Received(p.net().server(), p.server_id(), 1),
              ::testing::ElementsAre("before a->b", "from the first", "from the second"));
  // The per-address count followed: one connection, from the new address.
  EXPECT_EQ(p.server().ConnectionsFromAddress(second), 1u);
  EXPECT_EQ(p.server().ConnectionsFromAddress(client), 0u);
  ExchangeMessages(sim, p.net().client(), p.client_id(), p.net().server(), p.server_id(), 2,
                   "after");
  // Closing after the move releases everything filed under the new address.
  ASSERT_TRUE(p.net().client().endpoint().Close(sim.now(), p.client_id(), "bye").ok());
  sim.PollAll();
  ASSERT_TRUE(sim.RunUntil([&] { return p.server().connection_count() == 0; },
                           sim.now() + absl::Seconds(60)));
  EXPECT_EQ(p.server().ConnectionsFromAddress(second), 0u);
  EXPECT_EQ(p.server().open_connections(), 0u);
}

TEST(PathValidationTest, ANewerAddressReplacesTheValidationAndTheConnectionMovesOnce) {
  RunDoubleRebinding(/*encrypt=*/true);
}
TEST(PathValidationTest, UnencryptedANewerAddressReplacesTheValidationAndMovesOnce) {
  RunDoubleRebinding(/*encrypt=*/false);
}

TEST(PathValidationTest, AnIdleClientThatMovesOnPurposePingsAndTheServerFollowsAtOnce) {
  // Runtime::Rebind's sans-I/O half: the client's endpoint hears of its new
  // local address and pings; an idle connection moves within a few round
  // trips instead of at its next keepalive.
  const uint64_t seed = 910;
  SCOPED_TRACE(absl::StrCat("seed=", seed));
  PathNet p(seed, /*encrypt=*/true);
  sim::Simulator& sim = p.sim();
  const udp::SocketAddress moved = Addr("10.0.0.2:5001");
  const udp::SocketAddress server = p.net().server().address();
  ASSERT_TRUE(sim.SetLink(moved, server, Lossy()).ok());
  ASSERT_TRUE(sim.SetLink(server, moved, Lossy()).ok());
  sim.RunFor(absl::Seconds(1));  // idle
  const absl::Time t0 = sim.now();
  sim.At(t0, [&] {
    ASSERT_TRUE(sim.Rebind(p.client_address(), moved).ok());
    p.net().client().endpoint().OnLocalAddressChanged(sim.now());
  });
  ASSERT_TRUE(sim.RunUntil([&] { return p.net().server().Count(Event::Type::kPathChanged) == 1; },
                           t0 + absl::Seconds(2)));
  EXPECT_LE(sim.now() - t0, absl::Milliseconds(100));  // 2 round trips of ~20 ms, and jitter
  EXPECT_EQ(*p.server().PeerOf(p.server_id()), moved);
  ExchangeMessages(sim, p.net().client(), p.client_id(), p.net().server(), p.server_id(), 2,
                   "after");
}

}  // namespace
}  // namespace udpmsg::testing
