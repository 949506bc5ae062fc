#include "proto/codec.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/unknown_field_set.h"
#include "gtest/gtest.h"
#include "proto/frame.pb.h"
#include "proto/frames.h"
#include "proto/frames_util.h"
#include "tests/proto/sample_packets.h"

namespace udpmsg::proto {
namespace {

using ::testing::HasSubstr;
using testing::MakeAck;
using testing::MakeFragment;
using testing::RandomValidPacket;
using testing::SamplePackets;

constexpr uint64_t kMaxNumber = kMaxSequenceNumber - 1;

// Frames protobuf bytes exactly as the codec does: version, body, CRC32C.
std::string FrameBody(absl::string_view body, uint8_t version = kProtocolVersion) {
  std::string out(1, static_cast<char>(version));
  out.append(body.data(), body.size());
  const uint32_t crc = Crc32c(out);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(crc >> (8 * i)));
  return out;
}

std::string Frame(const wire::Packet& w) {
  return FrameBody(w.SerializeAsString());
}

// Recomputes the CRC of a datagram in place (if it has room for one).
void FixCrc(std::string& datagram) {
  if (datagram.size() < kFramingBytes) return;
  const size_t covered = datagram.size() - 4;
  const uint32_t crc = Crc32c(absl::string_view(datagram).substr(0, covered));
  for (int i = 0; i < 4; ++i) {
    datagram[covered + i] = static_cast<char>(crc >> (8 * i));
  }
}

// An independent typed-to-wire conversion, without any checks, so that
// invalid packets can be put on the wire. Ack gaps wrap like the codec's.
wire::Packet ToWire(const Packet& p) {
  wire::Packet w;
  w.set_connection_id(p.connection_id);
  w.set_packet_number(p.packet_number);
  if (p.hello) {
    w.mutable_hello()->set_client_connection_id(p.hello->client_connection_id);
    w.mutable_hello()->set_cookie(p.hello->cookie);
    w.mutable_hello()->set_max_datagram(p.hello->max_datagram);
  }
  if (p.challenge) {
    w.mutable_challenge()->set_client_connection_id(
        p.challenge->client_connection_id);
    w.mutable_challenge()->set_cookie(p.challenge->cookie);
  }
  if (p.accept) {
    wire::Accept* a = w.mutable_accept();
    a->set_client_connection_id(p.accept->client_connection_id);
    a->set_server_connection_id(p.accept->server_connection_id);
    a->set_max_datagram(p.accept->max_datagram);
    a->set_max_message_bytes(p.accept->max_message_bytes);
    a->set_window(p.accept->window);
  }
  if (p.ack) {
    wire::AckFrame* a = w.mutable_ack();
    a->set_ack_delay_us(
        static_cast<uint64_t>(absl::ToInt64Microseconds(p.ack->ack_delay)));
    const auto& r = p.ack->ranges;
    if (!r.empty()) {
      a->set_largest(r[0].largest);
      a->set_first_range(r[0].largest - r[0].smallest);
    }
    for (size_t i = 1; i < r.size(); ++i) {
      a->add_gaps(r[i - 1].smallest - r[i].largest - 2);
      a->add_lengths(r[i].largest - r[i].smallest);
    }
  }
  for (const DataFragment& d : p.data) {
    wire::DataFrame* f = w.add_data();
    f->set_channel(d.channel);
    f->set_mode(d.mode);
    f->set_sequence(d.sequence);
    f->set_index(d.index);
    f->set_count(d.count);
    f->set_total_size(d.total_size);
    f->set_payload(std::string(d.bytes()));
    if (d.run != 1) f->set_run(d.run);
  }
  if (p.ping) w.mutable_ping();
  if (p.ack_frequency) {
    w.mutable_ack_frequency()->set_sequence(p.ack_frequency->sequence);
    w.mutable_ack_frequency()->set_threshold(p.ack_frequency->threshold);
  }
  if (p.path_challenge) w.mutable_path_challenge()->set_data(p.path_challenge->data);
  if (p.path_response) w.mutable_path_response()->set_data(p.path_response->data);
  if (p.close) {
    w.mutable_close()->set_code(p.close->code);
    w.mutable_close()->set_reason(p.close->reason);
  }
  return w;
}

// Encodes, checks the size against EncodedSize and the budget, decodes, and
// checks the result equals `p`.
void ExpectRoundTrip(const Codec& codec, const Packet& p) {
  SCOPED_TRACE(PacketDebugString(p));
  absl::StatusOr<std::string> bytes = codec.Encode(p);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(bytes->size(), codec.EncodedSize(p));
  EXPECT_LE(bytes->size(), codec.limits().max_datagram);
  if (p.hello) {
    EXPECT_EQ(bytes->size(), codec.limits().max_datagram);
  }
  absl::StatusOr<Packet> decoded = codec.Decode(*bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_TRUE(PacketsEqual(*decoded, p)) << PacketDebugString(*decoded);
}

void ExpectInvalid(const absl::Status& status, absl::string_view reason) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(std::string(reason)));
}

Codec::Limits Budget(size_t max_datagram) {
  Codec::Limits limits;
  limits.max_datagram = max_datagram;
  return limits;
}

Packet Established() {
  Packet p;
  p.connection_id = 0x0123456789ABCDEF;
  p.packet_number = 42;
  return p;
}

Packet HelloPacket(std::string cookie = "") {
  Packet p;
  p.hello = Hello{0xFEDCBA9876543210, std::move(cookie), 1200};
  return p;
}

// ---------------------------------------------------------------------------
// Round trips.

TEST(CodecTest, RoundTripsEverySample) {
  const Codec codec(Codec::Limits{});
  for (const testing::NamedPacket& s : SamplePackets()) {
    SCOPED_TRACE(s.name);
    ExpectRoundTrip(codec, s.packet);
  }
}

TEST(CodecTest, RoundTripsEachFrameType) {
  const Codec codec(Codec::Limits{});
  ExpectRoundTrip(codec, HelloPacket());
  ExpectRoundTrip(codec, HelloPacket(std::string(kMaxCookieBytes, '\x01')));
  {
    Packet p;
    p.challenge = Challenge{7, std::string(kMaxCookieBytes, '\xFF')};
    ExpectRoundTrip(codec, p);
  }
  {
    Packet p = Established();
    p.accept = Accept{1, 2, kMaxDatagram, 0, 0};
    ExpectRoundTrip(codec, p);
  }
  for (size_t n : {size_t{1}, size_t{2}, kMaxAckRanges}) {
    Packet p = Established();
    p.ack = MakeAck(n, 1 << 20);
    ExpectRoundTrip(codec, p);
  }
  {
    Packet p = Established();
    p.ack = Ack{{{0, 0}}, absl::ZeroDuration()};  // packet 0, no delay
    ExpectRoundTrip(codec, p);
    p.ack = Ack{{{kMaxNumber, kMaxNumber}}, absl::Hours(1)};
    ExpectRoundTrip(codec, p);
    p.ack = Ack{{{kMaxNumber - 10, kMaxNumber}, {0, kMaxNumber - 12}},
                absl::Microseconds(1)};
    ExpectRoundTrip(codec, p);
  }
  {
    Packet p = Established();
    for (uint32_t i = 0; i < 5; ++i) {
      p.data.push_back(MakeFragment(3, 100 + i, i, 5 + i, 150));
    }
    ExpectRoundTrip(codec, p);
  }
  {
    Packet p = Established();
    p.ping.emplace();
    ExpectRoundTrip(codec, p);
  }
  {
    Packet p = Established();
    p.close = Close{kCloseProtocolError, std::string(kMaxReasonBytes, '\n')};
    ExpectRoundTrip(codec, p);
  }
  // Zero and absent are the same on the wire; that must not matter.
  ExpectRoundTrip(codec, Packet{});
  {
    Packet p;
    p.close = Close{};
    ExpectRoundTrip(codec, p);
  }
}

TEST(CodecTest, HandshakeKeysRoundTripAndBadLengthsAreRejected) {
  const Codec codec(Codec::Limits{});
  Packet hello;
  hello.hello.emplace();
  hello.hello->client_connection_id = 7;
  hello.hello->public_key = std::string(kPublicKeyBytes, '\x42');
  ExpectRoundTrip(codec, hello);
  absl::StatusOr<Packet> back = codec.Decode(*codec.Encode(hello));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->hello->public_key, hello.hello->public_key);

  Packet accept;
  accept.connection_id = 7;
  accept.accept.emplace();
  accept.accept->client_connection_id = 7;
  accept.accept->server_connection_id = 9;
  accept.accept->public_key = std::string(kPublicKeyBytes, '\x17');
  accept.accept->psk_confirmation = std::string(16, '\x99');
  accept.accept->server_identity = std::string(kPublicKeyBytes, '\x23');
  accept.accept->identity_confirmation = std::string(16, '\x55');
  back = codec.Decode(*codec.Encode(accept));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->accept->public_key, accept.accept->public_key);
  EXPECT_EQ(back->accept->psk_confirmation, accept.accept->psk_confirmation);
  EXPECT_EQ(back->accept->server_identity, accept.accept->server_identity);
  EXPECT_EQ(back->accept->identity_confirmation, accept.accept->identity_confirmation);
  ExpectRoundTrip(codec, accept);

  Packet bad = accept;
  bad.accept->server_identity.pop_back();
  EXPECT_THAT(std::string(codec.Encode(bad).status().message()),
              ::testing::HasSubstr("server_identity of 31 bytes"));
  bad = accept;
  bad.accept->identity_confirmation = std::string(kMaxConfirmationBytes + 1, 'x');
  EXPECT_THAT(std::string(codec.Encode(bad).status().message()),
              ::testing::HasSubstr("identity_confirmation"));

  hello.hello->public_key.pop_back();
  EXPECT_THAT(std::string(codec.Encode(hello).status().message()),
              ::testing::HasSubstr("public_key of 31 bytes"));
  accept.accept->psk_confirmation = std::string(kMaxConfirmationBytes + 1, 'x');
  EXPECT_THAT(std::string(codec.Encode(accept).status().message()),
              ::testing::HasSubstr("psk_confirmation"));
}

TEST(CodecTest, RoundTripsRandomValidPackets) {
  for (size_t budget : {kMinDatagram, kDefaultMaxDatagram, size_t{1500},
                        kMaxDatagram}) {
    Codec::Limits limits;
    limits.max_datagram = budget;
    const Codec codec(limits);
    std::mt19937_64 rng(budget);
    for (int i = 0; i < 2000; ++i) {
      SCOPED_TRACE(absl::StrCat("budget ", budget, " packet ", i));
      ExpectRoundTrip(codec, RandomValidPacket(rng, limits));
      if (::testing::Test::HasFailure()) return;
    }
  }
}

TEST(CodecTest, AckDelayTravelsInWholeMicroseconds) {
  const Codec codec(Codec::Limits{});
  Packet p = Established();
  p.ack = MakeAck(1);
  p.ack->ack_delay = absl::Nanoseconds(2999);
  absl::StatusOr<Packet> decoded = codec.Decode(*codec.Encode(p));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->ack->ack_delay, absl::Microseconds(2));
}

// ---------------------------------------------------------------------------
// Sizes.

TEST(CodecTest, HelloIsPaddedToTheExactBudget) {
  for (size_t budget : {size_t{512}, size_t{1200}, size_t{1500}, size_t{65527}}) {
    Codec::Limits limits;
    limits.max_datagram = budget;
    const Codec codec(limits);
    for (const Packet& p :
         {HelloPacket(), HelloPacket(std::string(kMaxCookieBytes, 'x'))}) {
      absl::StatusOr<std::string> bytes = codec.Encode(p);
      ASSERT_TRUE(bytes.ok()) << bytes.status();
      EXPECT_EQ(bytes->size(), budget);
      EXPECT_EQ(codec.EncodedSize(p), budget);
      ExpectRoundTrip(codec, p);
    }
  }
}

// Every budget up to past 16387 bytes of padding, where one padding field
// cannot hit the size (its length varint grows from 2 to 3 bytes), so an
// empty padding field goes first; then the smallest budget with the largest
// hello, leaving every amount of room from 158 to 414 bytes.
TEST(CodecTest, HelloPaddingHitsEveryBudget) {
  for (size_t budget = kMinDatagram; budget <= 16600; ++budget) {
    const Codec codec(Budget(budget));
    const Packet p = HelloPacket("cookie");
    absl::StatusOr<std::string> bytes = codec.Encode(p);
    ASSERT_TRUE(bytes.ok()) << budget << ": " << bytes.status();
    ASSERT_EQ(bytes->size(), budget);
    absl::StatusOr<Packet> decoded = codec.Decode(*bytes);
    ASSERT_TRUE(decoded.ok()) << budget << ": " << decoded.status();
    ASSERT_TRUE(PacketsEqual(*decoded, p)) << budget;
  }
  {
    // This hello takes 27 bytes unpadded: 16387 bytes of room at 16414, so
    // an empty padding field (7a 00), then 16382 bytes (7a fe 7f ...).
    const Codec codec(Budget(16414));
    const std::string bytes = *codec.Encode(HelloPacket("cookie"));
    EXPECT_EQ(bytes.substr(23, 5), std::string("\x7a\x00\x7a\xfe\x7f", 5));
  }
  const Codec codec(Budget(kMinDatagram));
  for (size_t reason = 0; reason <= kMaxReasonBytes; ++reason) {
    Packet p = HelloPacket(std::string(kMaxCookieBytes, 'c'));
    p.close = Close{kCloseApplication, std::string(reason, 'r')};
    SCOPED_TRACE(absl::StrCat("reason ", reason));
    ExpectRoundTrip(codec, p);
  }
}

TEST(CodecTest, EncodedSizeMatchesEncodeAndBudgetIsEnforced) {
  const Codec codec(Codec::Limits{});
  Packet p = Established();
  p.ack = MakeAck(3);
  p.data.push_back(MakeFragment(1, 1, 0, 1, 0));
  p.data[0].total_size = 4000;
  p.data[0].count = 4;
  for (size_t n = 0; n < 1300; ++n) {
    p.data[0].payload.assign(n, 'p');
    absl::StatusOr<std::string> bytes = codec.Encode(p);
    if (codec.EncodedSize(p) <= kDefaultMaxDatagram) {
      ASSERT_TRUE(bytes.ok()) << n << ": " << bytes.status();
      ASSERT_EQ(bytes->size(), codec.EncodedSize(p));
    } else {
      ASSERT_EQ(bytes.status().code(), absl::StatusCode::kResourceExhausted)
          << n << ": " << bytes.status();
      EXPECT_THAT(std::string(bytes.status().message()),
                  HasSubstr("datagram budget"));
    }
  }
}

// A packet with every number at its longest encoding.
Packet WorstCase(const Codec& codec, size_t payload) {
  Packet p;
  p.connection_id = ~uint64_t{0};
  p.packet_number = kMaxNumber;
  Ack ack;
  ack.ack_delay = absl::Hours(1);
  const uint64_t huge = uint64_t{1} << 56;  // the smallest 9-byte varint
  uint64_t largest = kMaxNumber;
  for (size_t i = 0; i < kMaxAckRangesWithData; ++i) {
    ack.ranges.push_back({largest - huge, largest});
    largest = largest - huge - 2 - huge;  // next gap: `huge`
  }
  p.ack = ack;
  DataFragment d;
  d.channel = std::numeric_limits<uint32_t>::max();
  d.mode = kMaxDeliveryMode;
  d.sequence = kMaxNumber;
  d.count = codec.limits().max_fragments;
  d.index = d.count - 1;
  d.total_size = codec.limits().max_message_bytes;
  d.payload.assign(payload, 'w');
  p.data.push_back(d);
  p.ping.emplace();
  return p;
}

TEST(CodecTest, MaxFragmentPayloadIsAGuarantee) {
  std::vector<Codec::Limits> all;
  for (size_t budget : {size_t{512}, size_t{654}, size_t{655}, size_t{700},
                        size_t{1200}, size_t{1500}, size_t{9000}, size_t{65527}}) {
    Codec::Limits limits;
    limits.max_datagram = budget;
    all.push_back(limits);
    limits.max_fragments = std::numeric_limits<uint32_t>::max();
    limits.max_message_bytes = ~uint64_t{0};
    all.push_back(limits);
  }
  for (const Codec::Limits& limits : all) {
    const Codec codec(limits);
    const size_t max = codec.MaxFragmentPayload();
    SCOPED_TRACE(absl::StrCat("budget ", limits.max_datagram, " max payload ",
                              max));
    Packet p = WorstCase(codec, max);
    if (max > 0) {
      absl::StatusOr<std::string> bytes = codec.Encode(p);
      ASSERT_TRUE(bytes.ok()) << bytes.status();
      EXPECT_EQ(bytes->size(), codec.EncodedSize(p));
      ExpectRoundTrip(codec, p);
    }
    // ... and it is the largest that does.
    p = WorstCase(codec, max + 1);
    EXPECT_GT(codec.EncodedSize(p), limits.max_datagram);
    EXPECT_EQ(codec.Encode(p).status().code(),
              absl::StatusCode::kResourceExhausted);
  }
  // Regression values: the worst-case header, ack of kMaxAckRangesWithData
  // ranges, ping and data-frame numbers cost 222 bytes at the defaults.
  EXPECT_EQ(Codec(Codec::Limits{}).MaxFragmentPayload(), 978u);
  EXPECT_EQ(Codec(Budget(1500)).MaxFragmentPayload(), 1278u);
  // Even the smallest budget carries data.
  EXPECT_EQ(Codec(Budget(kMinDatagram)).MaxFragmentPayload(), 290u);
}

TEST(CodecTest, LimitsAreClamped) {
  Codec::Limits limits;
  limits.max_datagram = 1;
  limits.max_fragments = 0;
  limits.max_data_frames = 0;
  EXPECT_EQ(Codec(limits).limits().max_datagram, kMinDatagram);
  EXPECT_EQ(Codec(limits).limits().max_fragments, 1u);
  EXPECT_EQ(Codec(limits).limits().max_data_frames, 1u);
  limits.max_datagram = 1 << 20;
  EXPECT_EQ(Codec(limits).limits().max_datagram, kMaxDatagram);
}

// ---------------------------------------------------------------------------
// Framing rejections.

TEST(CodecTest, RejectsDatagramsOutsideTheSizeRange) {
  const Codec codec(Codec::Limits{});
  for (size_t n = 0; n < kMinEncodedBytes; ++n) {
    ExpectInvalid(codec.Decode(std::string(n, '\x01')).status(), "outside");
  }
  std::string big = FrameBody(std::string(kDefaultMaxDatagram - 4, '\0'));
  ExpectInvalid(codec.Decode(big).status(), "outside [5, 1200]");
  // The same bytes fit a larger budget (and then fail later, for a reason
  // other than the size).
  const Codec large(Budget(1500));
  EXPECT_THAT(std::string(large.Decode(big).status().message()),
              ::testing::Not(HasSubstr("outside")));
}

TEST(CodecTest, AcceptsTheSmallestDatagram) {
  const Codec codec(Codec::Limits{});
  absl::StatusOr<Packet> p = codec.Decode(FrameBody(""));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(PacketsEqual(*p, Packet{}));
}

TEST(CodecTest, RejectsOtherVersions) {
  const Codec codec(Codec::Limits{});
  Packet p = Established();
  p.ping.emplace();
  std::string bytes = *codec.Encode(p);
  bytes[0] = 7;
  ExpectInvalid(codec.Decode(bytes).status(), "unsupported version 7");
  FixCrc(bytes);
  ExpectInvalid(codec.Decode(bytes).status(), "unsupported version 7");
  ExpectInvalid(codec.Decode(FrameBody("", 0)).status(),
                "unsupported version 0");
}

TEST(CodecTest, RejectsEveryBitFlipAndTruncation) {
  const Codec codec(Codec::Limits{});
  for (const testing::NamedPacket& s : SamplePackets()) {
    SCOPED_TRACE(s.name);
    const std::string good = *codec.Encode(s.packet);
    for (size_t bit = 8; bit < good.size() * 8; ++bit) {  // version byte aside
      std::string bad = good;
      bad[bit / 8] ^= static_cast<char>(1 << (bit % 8));
      ExpectInvalid(codec.Decode(bad).status(), "checksum mismatch");
    }
    for (size_t n = kMinEncodedBytes; n < good.size(); ++n) {
      ExpectInvalid(codec.Decode(good.substr(0, n)).status(),
                    "checksum mismatch");
    }
  }
}

TEST(CodecTest, RejectsMalformedProtobuf) {
  const Codec codec(Codec::Limits{});
  // A length-delimited field running past the end, an invalid wire type, a
  // truncated varint, field number 0.
  for (absl::string_view body :
       {absl::string_view("\x3a\x10\x01", 3), absl::string_view("\x0f", 1),
        absl::string_view("\x10\xff", 2), absl::string_view("\x00\x00", 2)}) {
    ExpectInvalid(codec.Decode(FrameBody(body)).status(), "malformed protobuf");
  }
}

// ---------------------------------------------------------------------------
// Field-range rejections. Each invalid typed packet is refused by Encode, and
// the same packet put on the wire by hand (valid CRC) is refused by Decode for
// the same reason.

struct Invalid {
  Invalid(std::string reason, std::function<void(Packet&)> mutate,
          std::optional<std::string> decode_reason = std::nullopt)
      : reason(std::move(reason)),
        mutate(std::move(mutate)),
        decode_reason(std::move(decode_reason)) {}

  std::string reason;
  std::function<void(Packet&)> mutate;
  // When Decode words it differently (or cannot see it: the wire format
  // cannot express the mistake), the reason Decode gives; "" to skip Decode.
  std::optional<std::string> decode_reason;
};

std::vector<Invalid> InvalidPackets() {
  auto data = [](std::function<void(DataFragment&)> f) {
    return [f](Packet& p) {
      p = Established();
      p.data.push_back(MakeFragment(1, 1, 0, 1, 10));
      f(p.data.back());
    };
  };
  auto ack = [](std::vector<AckRange> ranges,
                absl::Duration delay = absl::ZeroDuration()) {
    return [ranges, delay](Packet& p) {
      p = Established();
      p.ack = Ack{ranges, delay};
    };
  };
  auto hello = [](std::function<void(Packet&)> f) {
    return [f](Packet& p) {
      p = HelloPacket();
      f(p);
    };
  };
  return {
      // Numbers.
      {"packet number 4611686018427387904 >= 2^62",
       [](Packet& p) {
         p = Established();
         p.packet_number = kMaxSequenceNumber;
       }},
      {"packet number 18446744073709551615 >= 2^62",
       [](Packet& p) {
         p = Established();
         p.packet_number = ~uint64_t{0};
       }},
      {"sequence 4611686018427387904 >= 2^62",
       data([](DataFragment& d) { d.sequence = kMaxSequenceNumber; })},
      // Data fragments.
      {"mode 4 > kMaxDeliveryMode", data([](DataFragment& d) { d.mode = 4; })},
      {"fragment count 0", data([](DataFragment& d) { d.count = 0; })},
      {"fragment count 4294967295 over max_fragments",
       data([](DataFragment& d) {
         d.count = 0xFFFFFFFF;
         d.total_size = uint64_t{1} << 32;
       })},
      {"fragment count 1048577 over max_fragments",
       data([](DataFragment& d) {
         d.count = (1 << 20) + 1;
         d.total_size = 1 << 24;
       })},
      {"total_size 4294967296 over max_message_bytes",
       data([](DataFragment& d) { d.total_size = uint64_t{1} << 32; })},
      {"total_size 16777217 over max_message_bytes",
       data([](DataFragment& d) { d.total_size = (16 << 20) + 1; })},
      {"fragment index 1 >= count 1", data([](DataFragment& d) { d.index = 1; })},
      {"fragment run 2 from index 0 outside count 1", data([](DataFragment& d) { d.run = 2; })},
      {"fragment run 3 from index 1 outside count 3",
       data([](DataFragment& d) {
         d.count = 3;
         d.index = 1;
         d.run = 3;
       })},
      {"fragment run 2 of fragments under kMinRunFragmentBytes (128)",
       data([](DataFragment& d) {
         d.count = 4;
         d.total_size = 508;  // fragments of 127
         d.payload.resize(254);
         d.run = 2;
       })},
      {"fragment run 4294967295 from index 1 outside count 3",
       data([](DataFragment& d) {
         d.count = 3;
         d.index = 1;
         d.run = 0xFFFFFFFF;
       })},
      {"fragment index 4294967295 >= count 3",
       data([](DataFragment& d) {
         d.count = 3;
         d.index = 0xFFFFFFFF;
       })},
      {"payload of 10 bytes longer than total_size 9",
       data([](DataFragment& d) { d.total_size = 9; })},
      {"fragment count 11 > total_size 10",
       data([](DataFragment& d) { d.count = 11; })},
      {"empty message in 2 fragments",
       data([](DataFragment& d) {
         d.payload.clear();
         d.total_size = 0;
         d.count = 2;
       })},
      {"65 data frames, over max_data_frames (64)",
       [](Packet& p) {
         p = Established();
         for (int i = 0; i < 65; ++i) p.data.push_back(MakeFragment(1, i, 0, 1, 1));
       }},
      // Acks.
      {"ack without ranges", ack({}), std::string("")},
      {"33 ack ranges, over kMaxAckRanges",
       [](Packet& p) {
         p = Established();
         p.ack = MakeAck(kMaxAckRanges + 1);
       }},
      {"ack largest 4611686018427387904 >= 2^62",
       ack({{kMaxSequenceNumber, kMaxSequenceNumber}})},
      {"ack range 0 has smallest 5 > largest 4", ack({{5, 4}}),
       std::string("ack range 0 extends below packet number 0")},
      {"ack ranges not descending at range 1", ack({{10, 10}, {20, 20}}),
       std::string("ack range 1 extends below packet number 0")},
      {"ack ranges not descending at range 1", ack({{10, 10}, {10, 10}}),
       std::string("ack range 1 extends below packet number 0")},
      {"ack ranges 0 and 1 overlapping", ack({{10, 20}, {5, 15}}),
       std::string("ack range 1 extends below packet number 0")},
      {"ack ranges 0 and 1 overlapping", ack({{10, 20}, {5, 10}}),
       std::string("ack range 1 extends below packet number 0")},
      {"ack ranges 1 and 2 adjacent", ack({{30, 40}, {10, 20}, {5, 9}}),
       std::string("ack range 2 extends below packet number 0")},
      {"negative ack delay", ack({{1, 1}}, absl::Microseconds(-1)),
       std::string("ack delay 18446744073709551615us over 1 hour")},
      {"over 1 hour", ack({{1, 1}}, absl::Hours(1) + absl::Microseconds(1))},
      {"over 1 hour", ack({{1, 1}}, absl::InfiniteDuration()),
       std::string("")},
      // Handshakes.
      {"handshake packet with more than one of hello, challenge, accept",
       hello([](Packet& p) { p.challenge = Challenge{1, ""}; })},
      {"handshake packet with more than one of hello, challenge, accept",
       [](Packet& p) {
         p = Established();
         p.challenge = Challenge{1, ""};
         p.accept = Accept{1, 2};
       }},
      {"handshake packet with data frames",
       hello([](Packet& p) { p.data.push_back(MakeFragment(1, 1, 0, 1, 1)); })},
      {"handshake packet with an ack frame",
       hello([](Packet& p) { p.ack = MakeAck(1); })},
      {"handshake packet with a ping frame",
       hello([](Packet& p) { p.ping.emplace(); })},
      {"hello with client_connection_id 0",
       hello([](Packet& p) { p.hello->client_connection_id = 0; })},
      {"hello cookie of 65 bytes over kMaxCookieBytes",
       hello([](Packet& p) { p.hello->cookie.assign(65, 'c'); })},
      {"hello max_datagram 511 outside [512, 65527]",
       hello([](Packet& p) { p.hello->max_datagram = 511; })},
      {"hello max_datagram 65528 outside [512, 65527]",
       hello([](Packet& p) { p.hello->max_datagram = 65528; })},
      {"hello max_datagram 0 outside",
       hello([](Packet& p) { p.hello->max_datagram = 0; })},
      {"challenge with client_connection_id 0",
       [](Packet& p) {
         p = Packet{};
         p.challenge = Challenge{0, "k"};
       }},
      {"challenge cookie of 65 bytes",
       [](Packet& p) {
         p = Packet{};
         p.challenge = Challenge{1, std::string(65, 'k')};
       }},
      {"accept with client_connection_id 0",
       [](Packet& p) {
         p = Established();
         p.accept = Accept{0, 2};
       }},
      {"accept with server_connection_id 0",
       [](Packet& p) {
         p = Established();
         p.accept = Accept{1, 0};
       }},
      {"accept max_datagram 100 outside",
       [](Packet& p) {
         p = Established();
         p.accept = Accept{1, 2, 100};
       }},
      {"handshake packet with an ack frequency frame",
       hello([](Packet& p) { p.ack_frequency = AckFrequency{1, 4}; })},
      {"handshake packet with a path validation frame",
       hello([](Packet& p) { p.path_challenge = PathChallenge{0x0123456789ABCDEF}; })},
      {"handshake packet with a path validation frame",
       hello([](Packet& p) { p.path_response = PathResponse{42}; })},
      // Ack frequency.
      {"ack frequency threshold 0 outside [1, kMaxAckFrequencyThreshold (64)]",
       [](Packet& p) {
         p = Established();
         p.ack_frequency = AckFrequency{1, 0};
       }},
      {"ack frequency threshold 65 outside [1, kMaxAckFrequencyThreshold (64)]",
       [](Packet& p) {
         p = Established();
         p.ack_frequency = AckFrequency{1, 65};
       }},
      {"ack frequency sequence 4611686018427387904 >= 2^62",
       [](Packet& p) {
         p = Established();
         p.ack_frequency = AckFrequency{kMaxSequenceNumber, 4};
       }},
      // Close.
      {"close reason of 257 bytes over kMaxReasonBytes",
       [](Packet& p) {
         p = Established();
         p.close = Close{0, std::string(257, 'r')};
       }},
  };
}

TEST(CodecTest, EncodeAndDecodeRejectTheSameRules) {
  const Codec codec(Codec::Limits{});
  for (const Invalid& c : InvalidPackets()) {
    SCOPED_TRACE(c.reason);
    Packet p;
    c.mutate(p);
    ExpectInvalid(codec.Encode(p).status(), c.reason);
    const std::string decode_reason = c.decode_reason.value_or(c.reason);
    if (decode_reason.empty()) continue;
    ExpectInvalid(codec.Decode(Frame(ToWire(p))).status(), decode_reason);
  }
}

TEST(CodecTest, RejectsWireOnlyMistakes) {
  const Codec codec(Codec::Limits{});
  {
    wire::Packet w;
    w.mutable_ack()->set_largest(100);
    w.mutable_ack()->add_gaps(1);
    ExpectInvalid(codec.Decode(Frame(w)).status(),
                  "ack with 1 gaps but 0 lengths");
  }
  {
    wire::Packet w;
    w.mutable_ack()->set_largest(100);
    w.mutable_ack()->set_first_range(101);
    ExpectInvalid(codec.Decode(Frame(w)).status(),
                  "ack range 0 extends below packet number 0");
  }
  {
    // The next range would start at 100 - 0 - 99 - 2 < 0.
    wire::Packet w;
    w.mutable_ack()->set_largest(100);
    w.mutable_ack()->set_first_range(0);
    w.mutable_ack()->add_gaps(99);
    w.mutable_ack()->add_lengths(0);
    ExpectInvalid(codec.Decode(Frame(w)).status(),
                  "ack range 1 extends below packet number 0 (gap 99)");
    w.mutable_ack()->set_gaps(0, ~uint64_t{0});
    ExpectInvalid(codec.Decode(Frame(w)).status(),
                  "ack range 1 extends below packet number 0");
    w.mutable_ack()->set_gaps(0, 98);  // next largest 0: fine
    EXPECT_TRUE(codec.Decode(Frame(w)).ok());
    w.mutable_ack()->set_lengths(0, 1);  // ... but not [−1, 0]
    ExpectInvalid(codec.Decode(Frame(w)).status(),
                  "ack range 1 extends below packet number 0 (length 1)");
  }
  {
    wire::Packet w;
    w.mutable_ack()->set_ack_delay_us(uint64_t{3600} * 1000 * 1000);
    EXPECT_TRUE(codec.Decode(Frame(w)).ok());
    w.mutable_ack()->set_ack_delay_us(uint64_t{3600} * 1000 * 1000 + 1);
    ExpectInvalid(codec.Decode(Frame(w)).status(),
                  "ack delay 3600000001us over 1 hour");
  }
  {
    // 33 ranges: refused before any is built.
    wire::Packet w;
    w.mutable_ack()->set_largest(1000);
    for (int i = 0; i < 32; ++i) {
      w.mutable_ack()->add_gaps(0);
      w.mutable_ack()->add_lengths(0);
    }
    ExpectInvalid(codec.Decode(Frame(w)).status(),
                  "33 ack ranges, over kMaxAckRanges");
  }
  {
    // A uint32 field sent as a 64-bit varint is truncated by protobuf; the
    // truncated value is still range-checked (count 0 here).
    wire::Packet w;
    w.set_connection_id(1);
    wire::DataFrame* f = w.add_data();
    f->set_sequence(1);
    std::string body = w.SerializeAsString();
    // data { count: 2^32 } appended as a second data frame by hand.
    body += std::string("\x3a\x06\x28\x80\x80\x80\x80\x10", 8);
    ExpectInvalid(codec.Decode(FrameBody(body)).status(), "fragment count 0");
  }
}

// Huge claimed sizes cost nothing: decoding a packet that announces a 4 GiB
// message (and a 2^32-fragment count) is refused without allocating it. The
// limits can allow it, and then it is accepted (the payload is what arrived).
TEST(CodecTest, HugeClaimsAreOnlyNumbers) {
  Codec::Limits limits;
  limits.max_message_bytes = ~uint64_t{0};
  limits.max_fragments = 0xFFFFFFFF;
  const Codec codec(limits);
  Packet p = Established();
  DataFragment d = MakeFragment(1, 1, 0, 1, 10);
  d.total_size = ~uint64_t{0};
  d.count = 0xFFFFFFFF;
  d.index = 0xFFFFFFFE;
  p.data.push_back(d);
  ExpectRoundTrip(codec, p);
  ExpectInvalid(Codec(Codec::Limits{}).Decode(*codec.Encode(p)).status(),
                "over max_fragments");
}

// ---------------------------------------------------------------------------
// Evolution: unknown fields are skipped.

TEST(CodecTest, IgnoresUnknownFields) {
  const Codec codec(Codec::Limits{});
  Packet p = Established();
  p.ack = MakeAck(2);
  p.data.push_back(MakeFragment(1, 2, 0, 1, 20));
  p.close = Close{1, "x"};
  wire::Packet w = ToWire(p);
  // Through the reflection API: new top-level fields and fields in frames.
  w.GetReflection()->MutableUnknownFields(&w)->AddVarint(10, 12345);
  w.GetReflection()->MutableUnknownFields(&w)->AddLengthDelimited(
      1000, "a future frame");
  w.GetReflection()->MutableUnknownFields(&w)->AddFixed32(20000, 7);
  wire::DataFrame* f = w.mutable_data(0);
  f->GetReflection()->MutableUnknownFields(f)->AddVarint(8, 1);
  wire::AckFrame* a = w.mutable_ack();
  a->GetReflection()->MutableUnknownFields(a)->AddFixed64(6, 99);
  std::string body = w.SerializeAsString();
  // And by hand: field 11, varint 5; field 536870911 (the largest), bytes.
  body += std::string("\x58\x05", 2);
  body += std::string("\xfa\xff\xff\xff\x0f\x03xyz", 9);
  absl::StatusOr<Packet> decoded = codec.Decode(FrameBody(body));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_TRUE(PacketsEqual(*decoded, p)) << PacketDebugString(*decoded);
}

TEST(CodecTest, IgnoresPaddingOnAnyPacket) {
  const Codec codec(Codec::Limits{});
  Packet p = Established();
  p.ping.emplace();
  wire::Packet w = ToWire(p);
  w.set_padding(std::string(300, '\0'));
  absl::StatusOr<Packet> decoded = codec.Decode(Frame(w));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_TRUE(PacketsEqual(*decoded, p));
}

// ---------------------------------------------------------------------------
// Seeded mutations of valid datagrams.

constexpr uint64_t kMutationSeed = 0x5EED'C0DEC;

// Applies one to three random mutations.
std::string Mutate(std::mt19937_64& rng, std::string s,
                   const std::vector<std::string>& pool) {
  auto pick = [&rng](size_t n) {
    return std::uniform_int_distribution<size_t>(0, n - 1)(rng);
  };
  const int mutations = 1 + static_cast<int>(pick(3));
  for (int m = 0; m < mutations; ++m) {
    switch (pick(7)) {
      case 0:  // flip one bit
        if (!s.empty()) s[pick(s.size())] ^= static_cast<char>(1 << pick(8));
        break;
      case 1:  // flip a burst of bits in a few bytes
        if (!s.empty()) {
          const size_t at = pick(s.size());
          for (size_t i = at; i < s.size() && i < at + 1 + pick(8); ++i) {
            s[i] = static_cast<char>(rng());
          }
        }
        break;
      case 2:  // truncate
        s.resize(pick(s.size() + 1));
        break;
      case 3:  // insert a byte
        s.insert(s.begin() + pick(s.size() + 1), static_cast<char>(rng()));
        break;
      case 4:  // delete a byte
        if (!s.empty()) s.erase(pick(s.size()), 1);
        break;
      case 5: {  // splice: our head, another datagram's tail
        const std::string& other = pool[pick(pool.size())];
        s = s.substr(0, pick(s.size() + 1)) + other.substr(pick(other.size() + 1));
        break;
      }
      case 6:  // overwrite a byte with a boundary value
        if (!s.empty()) {
          static constexpr char kValues[] = {'\0', '\x01', '\x7f', '\x80', '\xff'};
          s[pick(s.size())] = kValues[pick(sizeof(kValues))];
        }
        break;
    }
  }
  return s;
}

struct Pool {
  std::vector<std::string> datagrams;
  std::vector<Packet> packets;
  absl::flat_hash_map<std::string, size_t> index;  // datagram -> position
};

Pool MakePool(const Codec& codec) {
  Pool pool;
  for (const testing::NamedPacket& s : SamplePackets()) {
    pool.packets.push_back(s.packet);
  }
  std::mt19937_64 rng(kMutationSeed);
  for (int i = 0; i < 300; ++i) {
    pool.packets.push_back(RandomValidPacket(rng, codec.limits()));
  }
  for (const Packet& p : pool.packets) {
    absl::StatusOr<std::string> bytes = codec.Encode(p);
    EXPECT_TRUE(bytes.ok()) << bytes.status();
    pool.datagrams.push_back(bytes.value_or(""));
    pool.index.emplace(pool.datagrams.back(), pool.datagrams.size() - 1);
  }
  return pool;
}

// Corrupted datagrams are never delivered: whatever decodes is the original.
TEST(CodecTest, MutatedDatagramsNeverDecodeToSomethingElse) {
  const Codec codec(Codec::Limits{});
  const Pool pool = MakePool(codec);
  int decoded_ok = 0;
  for (uint64_t i = 0; i < 100'000; ++i) {
    // Each iteration has its own seed: a failure names it, and rerunning it
    // needs no other iteration (nor --gtest_random_seed).
    const uint64_t seed = kMutationSeed + i;
    std::mt19937_64 rng(seed);
    const size_t which =
        std::uniform_int_distribution<size_t>(0, pool.packets.size() - 1)(rng);
    const std::string mutated = Mutate(rng, pool.datagrams[which], pool.datagrams);
    absl::StatusOr<Packet> decoded = codec.Decode(mutated);
    if (!decoded.ok()) {
      if (decoded.status().code() != absl::StatusCode::kInvalidArgument) {
        SCOPED_TRACE(absl::StrCat("seed ", seed));
        ADD_FAILURE() << decoded.status();
        return;
      }
      continue;
    }
    ++decoded_ok;
    // A splice can rebuild another valid datagram of the pool exactly (cut
    // both at the same place): that one is no corruption.
    const auto same = pool.index.find(mutated);
    const size_t expected = same == pool.index.end() ? which : same->second;
    if (!PacketsEqual(*decoded, pool.packets[expected])) {
      SCOPED_TRACE(absl::StrCat("seed ", seed, " packet ", which));
      ADD_FAILURE() << "corrupted datagram delivered: "
                    << PacketDebugString(*decoded);
      return;
    }
  }
  // Mutations that cancel out (or splice identical bytes) do decode.
  EXPECT_GT(decoded_ok, 0);
  EXPECT_LT(decoded_ok, 10'000);
}

// Mutations with the CRC recomputed reach the parser and the range checks:
// nothing crashes, every failure is INVALID_ARGUMENT, and whatever decodes
// re-encodes (Encode accepts all Decode accepts) to the same packet.
TEST(CodecTest, MutationsWithValidCrcDecodeConsistently) {
  const Codec codec(Codec::Limits{});
  const Codec roomy(Budget(kMaxDatagram));
  const Pool pool = MakePool(codec);
  int decoded_ok = 0;
  for (uint64_t i = 0; i < 50'000; ++i) {
    const uint64_t seed = ~kMutationSeed - i;
    std::mt19937_64 rng(seed);
    const size_t which =
        std::uniform_int_distribution<size_t>(0, pool.packets.size() - 1)(rng);
    std::string mutated = Mutate(rng, pool.datagrams[which], pool.datagrams);
    if (!mutated.empty()) mutated[0] = kProtocolVersion;
    FixCrc(mutated);
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    absl::StatusOr<Packet> decoded = codec.Decode(mutated);
    if (!decoded.ok()) {
      ASSERT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument)
          << decoded.status();
      continue;
    }
    ++decoded_ok;
    absl::StatusOr<std::string> again = codec.Encode(*decoded);
    if (again.status().code() == absl::StatusCode::kResourceExhausted) {
      // Re-encoding can be a few bytes longer (e.g. a single gap sent
      // unpacked); the larger budget takes it.
      again = roomy.Encode(*decoded);
    }
    ASSERT_TRUE(again.ok()) << again.status() << " "
                            << PacketDebugString(*decoded);
    absl::StatusOr<Packet> twice = roomy.Decode(*again);
    ASSERT_TRUE(twice.ok()) << twice.status();
    ASSERT_TRUE(PacketsEqual(*twice, *decoded)) << PacketDebugString(*twice);
  }
  EXPECT_GT(decoded_ok, 1000);
}

// Path MTU discovery (reliable/pmtud.h): the receive size travels in the
// hello and the accept, and a probe is a ping padded to exactly its size.
TEST(CodecTest, MaxUdpPayloadRoundTripsAndIsRangeChecked) {
  Codec codec(Codec::Limits{});
  Packet hello;
  hello.hello.emplace();
  hello.hello->client_connection_id = 7;
  hello.hello->max_udp_payload = 9000;
  absl::StatusOr<Packet> back = codec.Decode(*codec.Encode(hello));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->hello->max_udp_payload, 9000u);
  Packet accept;
  accept.connection_id = 7;
  accept.accept.emplace();
  accept.accept->client_connection_id = 7;
  accept.accept->server_connection_id = 9;
  accept.accept->max_udp_payload = kMaxDatagram;
  back = codec.Decode(*codec.Encode(accept));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->accept->max_udp_payload, kMaxDatagram);
  accept.accept->max_udp_payload = 0;  // absent: an older peer
  back = codec.Decode(*codec.Encode(accept));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->accept->max_udp_payload, 0u);
  for (uint32_t bad : {uint32_t{1}, uint32_t{kMinDatagram - 1}, uint32_t{kMaxDatagram + 1}}) {
    hello.hello->max_udp_payload = bad;
    EXPECT_THAT(std::string(codec.Encode(hello).status().message()),
                ::testing::HasSubstr("hello max_udp_payload"));
    accept.accept->max_udp_payload = bad;
    EXPECT_THAT(std::string(codec.Encode(accept).status().message()),
                ::testing::HasSubstr("accept max_udp_payload"));
  }
}

// Fragment runs (frames.h kFeatureFragmentRuns): the features travel in the
// hello and the accept, a run in its data frame; a run of 1 is not written
// (an older peer's frame), and 0 on the wire reads as 1.
TEST(CodecTest, FeaturesAndFragmentRunsRoundTrip) {
  Codec codec(Codec::Limits{});
  Packet hello;
  hello.hello.emplace();
  hello.hello->client_connection_id = 7;
  hello.hello->features = kFeatureFragmentRuns;
  absl::StatusOr<Packet> back = codec.Decode(*codec.Encode(hello));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->hello->features, kFeatureFragmentRuns);
  Packet accept;
  accept.connection_id = 7;
  accept.accept.emplace();
  accept.accept->client_connection_id = 7;
  accept.accept->server_connection_id = 9;
  accept.accept->features = kFeatureFragmentRuns | 0x80;  // unknown bits travel
  back = codec.Decode(*codec.Encode(accept));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->accept->features, kFeatureFragmentRuns | 0x80u);

  Packet p;
  p.connection_id = 3;
  p.packet_number = 9;
  p.data.push_back(MakeFragment(2, 5, 1, 4, 200));
  const std::string single = *codec.Encode(p);
  p.data[0].run = 3;
  p.data[0].payload.resize(600, 'z');
  const std::string run = *codec.Encode(p);
  EXPECT_EQ(run.size(), codec.EncodedSize(p));
  for (absl::StatusOr<Packet> got : {codec.Decode(run), codec.DecodeWithProtobuf(run)}) {
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->data.size(), 1u);
    EXPECT_EQ(got->data[0].run, 3u);
    EXPECT_EQ(got->data[0].bytes(), p.data[0].payload);
  }
  // A run of one is the frame an older peer writes: no field 8.
  wire::Packet w;
  ASSERT_TRUE(w.ParseFromString(single.substr(1, single.size() - kFramingBytes)));
  EXPECT_EQ(w.data(0).run(), 0u);
  w.mutable_data(0)->set_run(0);  // explicit zero: one fragment, both parsers
  for (Packet q : {*codec.Decode(Frame(w)), *codec.DecodeWithProtobuf(Frame(w))}) {
    EXPECT_EQ(q.data[0].run, 1u);
  }
}

// Runs need fragments cut at kMinRunFragmentBytes or more, the cut being
// ceil(total_size / count): exactly at the bound both ways, for several
// counts (the check multiplies where it used to divide).
TEST(CodecTest, RunsNeedFragmentsOfTheMinimumCutExactly) {
  Codec codec(Codec::Limits{});
  for (uint32_t count : {2u, 3u, 4u, 7u, 100u}) {
    const uint64_t k = kMinRunFragmentBytes;
    // The largest total whose cut is k - 1, and the smallest whose cut is k.
    for (uint64_t total : {(k - 1) * count, (k - 1) * count + 1}) {
      Packet p;
      p.connection_id = 3;
      p.packet_number = 9;
      DataFragment d = MakeFragment(2, 5, 0, count, 1);
      d.total_size = total;
      d.run = 2;
      d.payload.assign(std::min<uint64_t>(total, 2 * k), 'r');
      p.data.push_back(d);
      const bool wanted = (total + count - 1) / count >= k;
      absl::StatusOr<std::string> encoded = codec.Encode(p);
      EXPECT_EQ(encoded.ok(), wanted) << "count " << count << " total " << total;
      if (!wanted) {
        EXPECT_THAT(std::string(encoded.status().message()),
                    HasSubstr("under kMinRunFragmentBytes"));
      }
    }
  }
}

TEST(CodecTest, ProbePaddingHitsEveryExactSize) {
  Codec::Limits limits;
  limits.max_datagram = kMaxDatagram;
  Codec codec(limits);
  Packet probe;
  probe.connection_id = 0x1122334455667788ull;
  probe.packet_number = 1234;
  probe.ping = Ping{};
  // Every size from just above the unpadded packet, including those a single
  // padding field cannot take (the codec adds an empty one first).
  const size_t unpadded = codec.EncodedSize(probe);
  std::vector<size_t> sizes;
  for (size_t s = unpadded + 2; s < unpadded + 300; ++s) sizes.push_back(s);
  for (size_t s : {size_t{1200}, size_t{1372}, size_t{1472}, size_t{16383}, size_t{16384},
                   size_t{16390}, size_t{kMaxDatagram}}) {
    sizes.push_back(s);
  }
  for (size_t size : sizes) {
    probe.pad_to = size;
    absl::StatusOr<std::string> bytes = codec.Encode(probe);
    ASSERT_TRUE(bytes.ok()) << size << ": " << bytes.status();
    EXPECT_EQ(bytes->size(), size);
    EXPECT_EQ(codec.EncodedSize(probe), size);
    absl::StatusOr<Packet> back = codec.Decode(*bytes);
    ASSERT_TRUE(back.ok()) << size << ": " << back.status();
    EXPECT_TRUE(back->ping.has_value());
    EXPECT_EQ(back->packet_number, 1234u);
  }
  // Over the budget: refused, never sent.
  Codec small(Codec::Limits{});
  probe.pad_to = kDefaultMaxDatagram + 1;
  EXPECT_EQ(small.Encode(probe).status().code(), absl::StatusCode::kResourceExhausted);
  // No padding below the packet's own size.
  probe.pad_to = 1;
  EXPECT_EQ(codec.Encode(probe)->size(), unpadded);
}

// ---------------------------------------------------------------------------
// The hand-written hot path (EncodeInto, the fast parser) against protobuf.

// Decode (fast parser first) and DecodeWithProtobuf agree on `datagram`:
// both reject with the same message, or both accept the same packet; and
// DecodeView too, and DecodeViewInto into one Packet reused from call to
// call (nothing of the datagram before may be left in it).
void ExpectParsersAgree(const Codec& codec, absl::string_view datagram) {
  static Packet* const reused = new Packet;
  const absl::StatusOr<Packet> reference = codec.DecodeWithProtobuf(datagram);
  const absl::StatusOr<Packet> fast = codec.Decode(datagram);
  const absl::StatusOr<Packet> view = codec.DecodeView(datagram);
  const absl::Status into = codec.DecodeViewInto(datagram, reused);
  ASSERT_EQ(into, reference.status()) << absl::CHexEscape(datagram);
  if (reference.ok()) {
    ASSERT_TRUE(PacketsEqual(*reused, *reference))
        << PacketDebugString(*reused) << " vs " << PacketDebugString(*reference);
  }
  for (const absl::StatusOr<Packet>* got : {&fast, &view}) {
    ASSERT_EQ(got->status(), reference.status()) << absl::CHexEscape(datagram);
    if (reference.ok()) {
      ASSERT_TRUE(PacketsEqual(**got, *reference))
          << PacketDebugString(**got) << " vs " << PacketDebugString(*reference);
    }
  }
}

// Packets the hot path encodes: no handshake frame, no close.
Packet Hot(Packet p) {
  p.hello.reset();
  p.challenge.reset();
  p.accept.reset();
  p.close.reset();
  p.pad_to = 0;
  return p;
}

TEST(CodecFastPathTest, EncodesTheBytesProtobufWrites) {
  for (size_t budget : {kMinDatagram, kDefaultMaxDatagram, size_t{1500}, kMaxDatagram}) {
    const Codec codec(Budget(budget));
    std::mt19937_64 rng(budget);
    std::vector<Packet> packets;
    if (budget >= kDefaultMaxDatagram) {  // the samples fit the default budget
      for (const testing::NamedPacket& s : SamplePackets()) packets.push_back(Hot(s.packet));
    }
    for (int i = 0; i < 2000; ++i) packets.push_back(Hot(RandomValidPacket(rng, codec.limits())));
    for (const Packet& p : packets) {
      SCOPED_TRACE(PacketDebugString(p));
      absl::StatusOr<std::string> bytes = codec.Encode(p);
      ASSERT_TRUE(bytes.ok()) << bytes.status();
      ASSERT_EQ(*bytes, Frame(ToWire(p)));
      // A borrowed payload encodes the same bytes.
      Packet borrowed = p;
      for (DataFragment& d : borrowed.data) {
        d.payload_ref = std::string_view(d.payload);
      }
      ASSERT_EQ(codec.Encode(borrowed).value_or(""), *bytes);
      // EncodeInto: headroom before, capacity for the tail, same bytes.
      std::string out = "stale contents";
      ASSERT_TRUE(codec.EncodeInto(p, 17, 16, &out).ok());
      ASSERT_EQ(out.substr(17), *bytes);
      ASSERT_GE(out.capacity(), out.size() + 16);
      // EncodeAppend: the same after what the buffer holds, which stays.
      std::string batch = "earlier datagrams";
      ASSERT_TRUE(codec.EncodeAppend(p, 17, 16, &batch).ok());
      ASSERT_EQ(batch.substr(0, 17), "earlier datagrams");
      ASSERT_EQ(batch.substr(34), *bytes);
      ASSERT_GE(batch.capacity(), batch.size() + 16);
    }
  }
}

// The hot path pads too (a sender pads a data packet a few bytes short of its
// GSO train's size): the unpadded bytes, then padding fields of zeros, then
// the CRC; every parser reads back the packet without its padding.
TEST(CodecFastPathTest, PadsHotPacketsToEveryExactSize) {
  const Codec codec(Budget(1500));
  std::mt19937_64 rng(1500);
  for (int i = 0; i < 300; ++i) {
    Packet p = Hot(RandomValidPacket(rng, codec.limits()));
    const absl::StatusOr<std::string> unpadded = codec.Encode(p);
    ASSERT_TRUE(unpadded.ok()) << unpadded.status();
    for (size_t size = unpadded->size() + 2; size <= std::min<size_t>(unpadded->size() + 140, 1500);
         ++size) {
      SCOPED_TRACE(absl::StrCat(PacketDebugString(p), " padded to ", size));
      p.pad_to = size;
      ASSERT_EQ(codec.EncodedSize(p), size);
      std::string out = "stale contents";
      ASSERT_TRUE(codec.EncodeInto(p, 5, 0, &out).ok());
      const std::string bytes = out.substr(5);
      ASSERT_EQ(bytes.size(), size);
      const size_t body = unpadded->size() - 4;
      ASSERT_EQ(bytes.substr(0, body), unpadded->substr(0, body));
      ExpectParsersAgree(codec, bytes);
      absl::StatusOr<Packet> back = codec.DecodeWithProtobuf(bytes);
      ASSERT_TRUE(back.ok()) << back.status();
      Packet expected = p;
      expected.pad_to = 0;
      ASSERT_TRUE(PacketsEqual(*back, expected)) << PacketDebugString(*back);
    }
    p.pad_to = unpadded->size() + 1;  // one byte: no field is that short
    std::string refused;
    EXPECT_EQ(codec.EncodeInto(p, 0, 0, &refused).code(), absl::StatusCode::kResourceExhausted);
  }
}

// A sender adds DataFrameSize per fragment instead of re-measuring the packet.
TEST(CodecTest, DataFrameSizeIsWhatEachFrameAddsToEncodedSize) {
  const Codec codec(Budget(kMaxDatagram));
  std::mt19937_64 rng(7);
  int with_data = 0;
  for (int i = 0; i < 2000; ++i) {
    Packet p = Hot(RandomValidPacket(rng, codec.limits()));
    if (p.data.empty()) continue;
    ++with_data;
    std::vector<DataFragment> frames = std::move(p.data);
    p.data.clear();
    size_t running = codec.EncodedSize(p);
    for (DataFragment& d : frames) {
      running += Codec::DataFrameSize(d);
      p.data.push_back(std::move(d));
      ASSERT_EQ(codec.EncodedSize(p), running) << PacketDebugString(p);
    }
  }
  EXPECT_GT(with_data, 100);
}

TEST(CodecFastPathTest, EncodeIntoMatchesEncodeForEveryPacketKind) {
  const Codec codec(Codec::Limits{});
  for (const testing::NamedPacket& s : SamplePackets()) {
    SCOPED_TRACE(s.name);
    const absl::StatusOr<std::string> bytes = codec.Encode(s.packet);
    std::string out;
    const absl::Status status = codec.EncodeInto(s.packet, 3, 16, &out);
    ASSERT_EQ(status, bytes.status());
    if (bytes.ok()) {
      EXPECT_EQ(out.substr(3), *bytes);
    }
    // Appended after other bytes (the handshake packets take protobuf's
    // path, established ones the hand-written one): the same datagram.
    std::string batch = "xy";
    ASSERT_EQ(codec.EncodeAppend(s.packet, 3, 16, &batch), bytes.status());
    if (bytes.ok()) {
      EXPECT_EQ(batch.substr(0, 2), "xy");
      EXPECT_EQ(batch.substr(5), *bytes);
    }
  }
}

TEST(CodecFastPathTest, DecodeViewBorrowsPayloadsFromTheDatagram) {
  const Codec codec(Codec::Limits{});
  Packet p = Established();
  p.ack = MakeAck(7);
  p.data.push_back(MakeFragment(0, 9, 0, 2, 300));
  p.data.push_back(MakeFragment(1, 2, 0, 1, 5));
  const std::string bytes = codec.Encode(p).value();
  absl::StatusOr<Packet> view = codec.DecodeView(bytes);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_TRUE(PacketsEqual(*view, p));
  for (const DataFragment& d : view->data) {
    ASSERT_TRUE(d.payload_ref.has_value());
    EXPECT_TRUE(d.payload.empty());
    EXPECT_GE(d.payload_ref->data(), bytes.data());
    EXPECT_LE(d.payload_ref->data() + d.payload_ref->size(), bytes.data() + bytes.size());
  }
  // Decode owns its payloads.
  absl::StatusOr<Packet> owned = codec.Decode(bytes);
  ASSERT_TRUE(owned.ok());
  for (const DataFragment& d : owned->data) EXPECT_FALSE(d.payload_ref.has_value());
  EXPECT_TRUE(PacketsEqual(*owned, p));
}

// The receive path decodes every datagram into one Packet: what a packet
// with frames left there is gone when the next has none, and the frame
// vector keeps its allocation.
TEST(CodecFastPathTest, DecodeViewIntoLeavesNothingOfThePacketBefore) {
  const Codec codec(Codec::Limits{});
  Packet full = Established();
  full.ack = MakeAck(7);
  full.ping = Ping{};
  full.data.push_back(MakeFragment(0, 9, 0, 2, 300));
  full.data.push_back(MakeFragment(1, 2, 0, 1, 5));
  const std::string first = codec.Encode(full).value();
  Packet bare = Established();
  bare.packet_number = 99;
  const std::string second = codec.Encode(bare).value();
  Packet reused;
  ASSERT_TRUE(codec.DecodeViewInto(first, &reused).ok());
  EXPECT_TRUE(PacketsEqual(reused, full)) << PacketDebugString(reused);
  const DataFragment* frames = reused.data.data();
  ASSERT_TRUE(codec.DecodeViewInto(second, &reused).ok());
  EXPECT_TRUE(PacketsEqual(reused, bare)) << PacketDebugString(reused);
  EXPECT_FALSE(reused.ack.has_value());
  EXPECT_FALSE(reused.ping.has_value());
  ASSERT_TRUE(codec.DecodeViewInto(first, &reused).ok());
  EXPECT_TRUE(PacketsEqual(reused, full));
  EXPECT_EQ(reused.data.data(), frames);  // the same allocation
  // A datagram that fails its CRC is refused before anything is parsed:
  // nothing of the packet before is left either.
  std::string corrupt = first;
  corrupt[corrupt.size() / 2] ^= 1;
  EXPECT_FALSE(codec.DecodeViewInto(corrupt, &reused).ok());
  EXPECT_TRUE(reused.data.empty());
}

TEST(CodecFastPathTest, AgreesWithProtobufOnOddWire) {
  const Codec codec(Codec::Limits{});
  std::vector<std::string> bodies;
  auto raw = [&bodies](std::string b) { bodies.push_back(std::move(b)); };
  // A data packet, then variations protobuf accepts or refuses.
  raw(std::string("\x09\x01\x02\x03\x04\x05\x06\x07\x08\x10\x05", 11));
  raw(std::string("\x10\x05\x10\x06", 4));                    // packet_number twice
  raw(std::string("\x10\x85\x80\x80\x00", 5));                // non-minimal varint
  raw(std::string("\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11));  // 2^64-1
  raw(std::string("\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 11));  // overlong
  raw(std::string("\x10\x01\x42\x00\x42\x00", 6));            // ping twice
  raw(std::string("\x10\x01\x42\x02\x08\x01", 6));            // ping with a field
  raw(std::string("\x10\x01\x58\x01", 4));                    // unknown field 11
  raw(std::string("\x10\x01\x7a\x03\x00\x00\x00", 7));        // padding
  raw(std::string("\x10\x01\x7a\x03\x00\x00", 6));            // truncated padding
  raw(std::string("\x10\x01\x11\x01\x02\x03\x04\x05\x06\x07\x08", 11));  // id as field 2 fixed
  raw(std::string("\x08\x05\x10\x01", 4));                    // id as a varint
  // Ack: packed, unpacked, twice, mismatched counts.
  raw(std::string("\x10\x09\x32\x0a\x08\x14\x18\x01\x22\x01\x02\x2a\x01\x01", 14));
  raw(std::string("\x10\x09\x32\x08\x08\x14\x18\x01\x20\x02\x28\x01", 12));
  raw(std::string("\x10\x09\x32\x02\x08\x14\x32\x02\x18\x01", 10));
  raw(std::string("\x10\x09\x32\x07\x08\x14\x22\x02\x02\x03\x2a\x00", 12));
  raw(std::string("\x10\x09\x32\x04\x08\x14\x22\x01", 8));    // truncated packed
  raw(std::string("\x10\x09\x32\x04\x08\x14\x22\x01\x80", 9));
  // Data frames: a uint32 over 32 bits, fields twice, a payload, no count.
  raw(std::string("\x10\x02\x3a\x09\x08\x80\x80\x80\x80\x10\x28\x01\x30\x01", 14));
  raw(std::string("\x10\x02\x3a\x06\x28\x01\x30\x02\x3a\x00", 10));
  raw(std::string("\x10\x02\x3a\x08\x28\x01\x30\x02\x3a\x02hi", 12));
  raw(std::string("\x10\x02\x3a\x0a\x28\x01\x30\x02\x3a\x01h\x3a\x01i", 14));
  raw(std::string("\x10\x02\x3a\x04\x30\x02\x3a\x00", 8));
  raw(std::string("\x10\x02\x3a\x06\x28\x01\x30\x02\x10\x04", 10));  // mode 4
  raw(std::string("\x10\x02\x3a\x05\x28\x01\x30\x02\x3a", 9));       // truncated
  // Ack frequency: fine, threshold over 32 bits, a field twice.
  raw(std::string("\x10\x02\x52\x04\x08\x03\x10\x0a", 8));
  raw(std::string("\x10\x02\x52\x07\x08\x03\x10\x80\x80\x80\x80\x10", 12));
  raw(std::string("\x10\x02\x52\x06\x08\x03\x10\x0a\x10\x02", 10));
  raw(std::string("\x10\x02\x52\x02\x18\x01", 6));
  // Field number 0, groups, a multi-byte tag for a known field.
  raw(std::string("\x10\x02\x00\x01", 4));
  raw(std::string("\x10\x02\x43\x44", 4));
  raw(std::string("\x90\x00\x05", 3));
  raw("");
  for (const std::string& body : bodies) {
    SCOPED_TRACE(absl::CHexEscape(body));
    ExpectParsersAgree(codec, FrameBody(body));
  }
  // Too many data frames: left to protobuf, same error.
  Codec::Limits few;
  few.max_data_frames = 2;
  const Codec small(few);
  ExpectParsersAgree(small, FrameBody(std::string("\x3a\x02\x28\x01\x3a\x02\x28\x01\x3a\x02\x28\x01", 12)));
}

// Every datagram of the mutation pool, mutated with the CRC fixed so the
// parsers see it: both parsers agree (accept/reject, the reason, every
// field).
TEST(CodecFastPathTest, AgreesWithProtobufOnMutatedDatagrams) {
  const Codec codec(Codec::Limits{});
  const Pool pool = MakePool(codec);
  for (const std::string& d : pool.datagrams) ExpectParsersAgree(codec, d);
  for (uint64_t i = 0; i < 30'000; ++i) {
    const uint64_t seed = kMutationSeed ^ (i * 0x9E3779B97F4A7C15ull);
    std::mt19937_64 rng(seed);
    const size_t which =
        std::uniform_int_distribution<size_t>(0, pool.packets.size() - 1)(rng);
    std::string mutated = Mutate(rng, pool.datagrams[which], pool.datagrams);
    if (!mutated.empty()) mutated[0] = kProtocolVersion;
    FixCrc(mutated);
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    ExpectParsersAgree(codec, mutated);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace udpmsg::proto
