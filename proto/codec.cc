#include "proto/codec.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/arena.h"
#include "proto/crc32c.h"
#include "proto/frame.pb.h"
#include "proto/frames.h"

namespace udpmsg::proto {
namespace {

using google::protobuf::Arena;

// Largest ack delay on the wire and in an Ack.
constexpr uint64_t kMaxAckDelayUs = uint64_t{3600} * 1000 * 1000;
constexpr absl::Duration kMaxAckDelay = absl::Hours(1);

// The largest value any number below kMaxSequenceNumber can take.
constexpr uint64_t kMaxNumber = kMaxSequenceNumber - 1;

// Little-endian fixed-width fields (the connection id, the CRC) as one
// load or store where the host is little-endian: GCC kept the byte loops
// as eight shifts and ors. kBytes low bytes of the value.
template <int kBytes>
uint64_t LoadLittleEndian(const uint8_t* p) {
  static_assert(kBytes >= 1 && kBytes <= 8);
  uint64_t v = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  std::memcpy(&v, p, kBytes);
#else
  for (int i = 0; i < kBytes; ++i) v |= uint64_t{p[i]} << (8 * i);
#endif
  return v;
}
// Returns the end.
template <int kBytes>
uint8_t* StoreLittleEndian(uint64_t v, uint8_t* p) {
  static_assert(kBytes >= 1 && kBytes <= 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  std::memcpy(p, &v, kBytes);
  return p + kBytes;
#else
  for (int i = 0; i < kBytes; ++i) *p++ = static_cast<uint8_t>(v >> (8 * i));
  return p;
#endif
}

// Packet.padding: field 15, wire type 2 (length-delimited).
constexpr uint8_t kPaddingTag = (15 << 3) | 2;

// Bytes of the Arena's first block, on the stack: enough for the messages of a
// typical packet without touching the heap.
constexpr size_t kArenaInitialBlock = 1024;

// ---------------------------------------------------------------------------
// Serialized sizes, mirroring protobuf's proto3 encoding. Every field number
// in frame.proto is at most 15, so every tag is one byte.

// Seven bits per byte: ceil(bits / 7) of the value's significant bits (one
// byte for zero), without a loop (the senders' and receivers' sizing asked
// it several times per datagram).
constexpr size_t VarintSize(uint64_t v) {
  const size_t bits = 64 - static_cast<size_t>(__builtin_clzll(v | 1));
  return (bits * 9 + 64) / 64;
}
// Checked against the loop at every width's smallest and largest value (both
// sizes depend on the width alone): each power of two, the value below it,
// and ~0 (the values ~0 >> k repeat the others).
constexpr bool VarintSizeMatchesTheLoop() {
  for (int k = 0; k < 64; ++k) {
    for (uint64_t v : {uint64_t{1} << k, (uint64_t{1} << k) - 1, ~uint64_t{0} >> k}) {
      size_t n = 1;
      for (uint64_t x = v; x >= 0x80; x >>= 7) ++n;
      if (VarintSize(v) != n) return false;
    }
  }
  return true;
}
static_assert(VarintSizeMatchesTheLoop());

// A varint scalar with implicit presence: absent when zero.
constexpr size_t VarintField(uint64_t v) {
  return v == 0 ? 0 : 1 + VarintSize(v);
}
constexpr size_t Fixed64Field(uint64_t v) { return v == 0 ? 0 : 1 + 8; }
constexpr size_t BytesField(size_t length) {
  return length == 0 ? 0 : 1 + VarintSize(length) + length;
}
// A present submessage (always written, even when empty).
constexpr size_t MessageField(size_t body) {
  return 1 + VarintSize(body) + body;
}
// A packed repeated varint field whose elements take `payload` bytes.
constexpr size_t PackedField(size_t elements, size_t payload) {
  return elements == 0 ? 0 : 1 + VarintSize(payload) + payload;
}

uint64_t AckDelayMicros(absl::Duration delay) {
  // Truncated toward zero; negative values are rejected by Validate and only
  // need a well-defined size here.
  return static_cast<uint64_t>(absl::ToInt64Microseconds(delay));
}

size_t OptionalBytesField(size_t n) { return n == 0 ? 0 : BytesField(n); }

size_t HelloBodySize(const Hello& h) {
  return Fixed64Field(h.client_connection_id) + BytesField(h.cookie.size()) +
         VarintField(h.max_datagram) + OptionalBytesField(h.public_key.size()) +
         OptionalBytesField(h.key_proof.size()) + VarintField(h.max_udp_payload) +
         VarintField(h.aead_offer) + VarintField(h.features);
}

size_t ChallengeBodySize(const Challenge& c) {
  return Fixed64Field(c.client_connection_id) + BytesField(c.cookie.size()) +
         OptionalBytesField(c.key_proof.size());
}

size_t AcceptBodySize(const Accept& a) {
  return Fixed64Field(a.client_connection_id) +
         Fixed64Field(a.server_connection_id) + VarintField(a.max_datagram) +
         VarintField(a.max_message_bytes) + VarintField(a.window) +
         OptionalBytesField(a.public_key.size()) + OptionalBytesField(a.psk_confirmation.size()) +
         OptionalBytesField(a.server_identity.size()) +
         OptionalBytesField(a.identity_confirmation.size()) + VarintField(a.max_udp_payload) +
         VarintField(a.aead) + VarintField(a.features);
}

// Wraps (unsigned arithmetic) on invalid ranges; Validate rejects those.
size_t AckBodySize(const Ack& ack) {
  size_t size = VarintField(AckDelayMicros(ack.ack_delay));
  if (ack.ranges.empty()) return size;
  const AckRange& first = ack.ranges[0];
  size += VarintField(first.largest) +
          VarintField(first.largest - first.smallest);
  size_t gaps = 0;
  size_t lengths = 0;
  for (size_t i = 1; i < ack.ranges.size(); ++i) {
    const AckRange& prev = ack.ranges[i - 1];
    const AckRange& cur = ack.ranges[i];
    gaps += VarintSize(prev.smallest - cur.largest - 2);
    lengths += VarintSize(cur.largest - cur.smallest);
  }
  const size_t pairs = ack.ranges.size() - 1;
  return size + PackedField(pairs, gaps) + PackedField(pairs, lengths);
}

// A data frame's body without its payload field.
size_t DataHeaderSize(const DataFragment& d) {
  return VarintField(d.channel) + VarintField(d.mode) +
         VarintField(d.sequence) + VarintField(d.index) +
         VarintField(d.count) + VarintField(d.total_size) +
         (d.run > 1 ? VarintField(d.run) : 0);
}

size_t CloseBodySize(const Close& c) {
  return VarintField(c.code) + BytesField(c.reason.size()) + OptionalBytesField(c.auth.size());
}

// Size of the wire.Packet without padding.
size_t PacketBodySize(const Packet& p) {
  size_t size = Fixed64Field(p.connection_id) + VarintField(p.packet_number);
  if (p.hello) size += MessageField(HelloBodySize(*p.hello));
  if (p.challenge) size += MessageField(ChallengeBodySize(*p.challenge));
  if (p.accept) size += MessageField(AcceptBodySize(*p.accept));
  if (p.ack) size += MessageField(AckBodySize(*p.ack));
  for (const DataFragment& d : p.data) size += Codec::DataFrameSize(d);
  if (p.ping) size += MessageField(0);
  if (p.close) size += MessageField(CloseBodySize(*p.close));
  if (p.ack_frequency) {
    size += MessageField(VarintField(p.ack_frequency->sequence) +
                         VarintField(p.ack_frequency->threshold));
  }
  if (p.path_challenge) size += MessageField(Fixed64Field(p.path_challenge->data));
  if (p.path_response) size += MessageField(Fixed64Field(p.path_response->data));
  return size;
}

// How to fill `room` bytes with padding fields: optionally an empty field
// (2 bytes) first, then one field of `length` zero bytes. A single field
// cannot take every size (1 + VarintSize(L) + L skips 130 and 16387), the
// empty one shifts those cases onto sizes it can take.
struct PaddingPlan {
  bool fits = false;
  bool empty_first = false;
  size_t length = 0;
};

std::optional<size_t> SingleFieldPadding(size_t room) {
  for (size_t v = 1; v <= 10 && 1 + v <= room; ++v) {
    const size_t length = room - 1 - v;
    if (VarintSize(length) == v) return length;
  }
  return std::nullopt;
}

PaddingPlan PlanPadding(size_t room) {
  PaddingPlan plan;
  if (room == 0) {
    plan.fits = true;
    return plan;
  }
  if (std::optional<size_t> length = SingleFieldPadding(room)) {
    plan.fits = true;
    plan.length = *length;
    return plan;
  }
  if (room > 2) {
    if (std::optional<size_t> length = SingleFieldPadding(room - 2)) {
      plan.fits = true;
      plan.empty_first = true;
      plan.length = *length;
    }
  }
  return plan;
}

// Writes the padding fields of `plan` at `pos` (zeros) and returns the end.
uint8_t* WritePadding(const PaddingPlan& plan, uint8_t* pos) {
  if (plan.empty_first) {
    *pos++ = kPaddingTag;
    *pos++ = 0;
  }
  *pos++ = kPaddingTag;
  uint64_t v = plan.length;
  while (v >= 0x80) {
    *pos++ = static_cast<uint8_t>(v | 0x80);
    v >>= 7;
  }
  *pos++ = static_cast<uint8_t>(v);
  std::memset(pos, 0, plan.length);
  return pos + plan.length;
}

// ---------------------------------------------------------------------------
// Rules shared by Encode and Decode.

std::string Range(uint64_t lo, uint64_t hi) {
  return absl::StrCat("[", lo, ", ", hi, "]");
}

ABSL_ATTRIBUTE_NOINLINE absl::Status NumberTooLarge(absl::string_view what, uint64_t n) {
  return absl::InvalidArgumentError(absl::StrCat(what, " ", n, " >= 2^62 (kMaxSequenceNumber)"));
}

// Small enough to inline: every packet checks a number or two (the message
// is built out of line).
inline absl::Status CheckNumber(absl::string_view what, uint64_t n) {
  if (ABSL_PREDICT_FALSE(n >= kMaxSequenceNumber)) return NumberTooLarge(what, n);
  return absl::OkStatus();
}

absl::Status CheckBudget(absl::string_view what, uint32_t max_datagram) {
  if (max_datagram < kMinDatagram || max_datagram > kMaxDatagram) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " max_datagram ", max_datagram, " outside ",
                     Range(kMinDatagram, kMaxDatagram)));
  }
  return absl::OkStatus();
}

// max_udp_payload: absent (0), or a budget.
absl::Status CheckUdpPayload(absl::string_view what, uint32_t max_udp_payload) {
  if (max_udp_payload != 0 &&
      (max_udp_payload < kMinDatagram || max_udp_payload > kMaxDatagram)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " max_udp_payload ", max_udp_payload, " outside ",
                     Range(kMinDatagram, kMaxDatagram)));
  }
  return absl::OkStatus();
}

absl::Status CheckPublicKey(absl::string_view what, absl::string_view key) {
  if (key.empty() || key.size() == kPublicKeyBytes) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(what, " public_key of ", key.size(), " bytes, not ", kPublicKeyBytes));
}

absl::Status CheckCookie(absl::string_view what, const std::string& cookie) {
  if (cookie.size() > kMaxCookieBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " cookie of ", cookie.size(),
                     " bytes over kMaxCookieBytes (", kMaxCookieBytes, ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckProof(absl::string_view what, const std::string& proof) {
  if (proof.size() > kMaxConfirmationBytes) {
    return absl::InvalidArgumentError(absl::StrCat(what, " of ", proof.size(), " bytes, over ",
                                                   kMaxConfirmationBytes));
  }
  return absl::OkStatus();
}

absl::Status CheckConnectionId(absl::string_view what, uint64_t id) {
  if (id == 0) return absl::InvalidArgumentError(absl::StrCat(what, " 0"));
  return absl::OkStatus();
}

absl::Status ValidateHandshake(const Packet& p) {
  const int handshakes = p.hello.has_value() + p.challenge.has_value() +
                         p.accept.has_value();
  if (handshakes == 0) return absl::OkStatus();
  if (handshakes > 1) {
    return absl::InvalidArgumentError(
        "handshake packet with more than one of hello, challenge, accept");
  }
  if (p.ack) {
    return absl::InvalidArgumentError("handshake packet with an ack frame");
  }
  if (!p.data.empty()) {
    return absl::InvalidArgumentError("handshake packet with data frames");
  }
  if (p.ping) {
    return absl::InvalidArgumentError("handshake packet with a ping frame");
  }
  if (p.ack_frequency) {
    return absl::InvalidArgumentError("handshake packet with an ack frequency frame");
  }
  if (p.path_challenge || p.path_response) {
    return absl::InvalidArgumentError("handshake packet with a path validation frame");
  }
  absl::Status s;
  if (p.hello) {
    s.Update(CheckConnectionId("hello with client_connection_id",
                               p.hello->client_connection_id));
    s.Update(CheckCookie("hello", p.hello->cookie));
    s.Update(CheckBudget("hello", p.hello->max_datagram));
    s.Update(CheckUdpPayload("hello", p.hello->max_udp_payload));
    s.Update(CheckPublicKey("hello", p.hello->public_key));
    s.Update(CheckProof("hello key_proof", p.hello->key_proof));
  }
  if (p.challenge) {
    s.Update(CheckConnectionId("challenge with client_connection_id",
                               p.challenge->client_connection_id));
    s.Update(CheckCookie("challenge", p.challenge->cookie));
    s.Update(CheckProof("challenge key_proof", p.challenge->key_proof));
  }
  if (p.accept) {
    s.Update(CheckConnectionId("accept with client_connection_id",
                               p.accept->client_connection_id));
    s.Update(CheckConnectionId("accept with server_connection_id",
                               p.accept->server_connection_id));
    s.Update(CheckBudget("accept", p.accept->max_datagram));
    s.Update(CheckUdpPayload("accept", p.accept->max_udp_payload));
    s.Update(CheckPublicKey("accept", p.accept->public_key));
    s.Update(CheckProof("accept psk_confirmation", p.accept->psk_confirmation));
    if (!p.accept->server_identity.empty() &&
        p.accept->server_identity.size() != kPublicKeyBytes) {
      s.Update(absl::InvalidArgumentError(absl::StrCat("accept server_identity of ",
                                                       p.accept->server_identity.size(),
                                                       " bytes, not ", kPublicKeyBytes)));
    }
    s.Update(CheckProof("accept identity_confirmation", p.accept->identity_confirmation));
  }
  return s;
}

absl::Status ValidateAck(const Ack& ack) {
  if (ack.ranges.empty()) {
    return absl::InvalidArgumentError("ack without ranges");
  }
  if (ack.ranges.size() > kMaxAckRanges) {
    return absl::InvalidArgumentError(
        absl::StrCat(ack.ranges.size(), " ack ranges, over kMaxAckRanges (",
                     kMaxAckRanges, ")"));
  }
  if (ack.ack_delay < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "negative ack delay ", absl::FormatDuration(ack.ack_delay)));
  }
  if (ack.ack_delay > kMaxAckDelay) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ack delay ", absl::FormatDuration(ack.ack_delay), " over 1 hour"));
  }
  if (absl::Status s = CheckNumber("ack largest", ack.ranges[0].largest);
      !s.ok()) {
    return s;
  }
  for (size_t i = 0; i < ack.ranges.size(); ++i) {
    const AckRange& cur = ack.ranges[i];
    if (cur.smallest > cur.largest) {
      return absl::InvalidArgumentError(
          absl::StrCat("ack range ", i, " has smallest ", cur.smallest,
                       " > largest ", cur.largest));
    }
    if (i == 0) continue;
    const AckRange& prev = ack.ranges[i - 1];
    if (cur.largest >= prev.largest) {
      return absl::InvalidArgumentError(
          absl::StrCat("ack ranges not descending at range ", i));
    }
    if (cur.largest >= prev.smallest) {
      return absl::InvalidArgumentError(
          absl::StrCat("ack ranges ", i - 1, " and ", i, " overlapping"));
    }
    if (cur.largest + 1 == prev.smallest) {
      return absl::InvalidArgumentError(
          absl::StrCat("ack ranges ", i - 1, " and ", i, " adjacent"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateFragment(size_t i, const DataFragment& d,
                              const Codec::Limits& limits) {
  auto bad = [i](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat("data frame ", i, ": ",
                                                   parts...));
  };
  if (d.mode > kMaxDeliveryMode) {
    return bad("mode ", d.mode, " > kMaxDeliveryMode (", kMaxDeliveryMode,
               ")");
  }
  if (d.sequence >= kMaxSequenceNumber) {
    return bad("sequence ", d.sequence, " >= 2^62 (kMaxSequenceNumber)");
  }
  if (d.count == 0) return bad("fragment count 0");
  if (d.count > limits.max_fragments) {
    return bad("fragment count ", d.count, " over max_fragments (",
               limits.max_fragments, ")");
  }
  if (d.index >= d.count) {
    return bad("fragment index ", d.index, " >= count ", d.count);
  }
  if (d.run == 0 || d.run > d.count - d.index) {
    return bad("fragment run ", d.run, " from index ", d.index, " outside count ", d.count);
  }
  if (d.total_size > limits.max_message_bytes) {
    return bad("total_size ", d.total_size, " over max_message_bytes (",
               limits.max_message_bytes, ")");
  }
  if (d.bytes().size() > d.total_size) {
    return bad("payload of ", d.bytes().size(), " bytes longer than total_size ",
               d.total_size);
  }
  if (d.total_size == 0 && d.count != 1) {
    return bad("empty message in ", d.count, " fragments (count must be 1)");
  }
  if (d.total_size != 0 && d.count > d.total_size) {
    return bad("fragment count ", d.count, " > total_size ", d.total_size);
  }
  // The fragments' cut, ceil(total_size / count), under kMinRunFragmentBytes,
  // without a division (a 64-bit one was about a quarter of Validate's
  // samples on both ends): ceil(t / c) < k exactly when t <= (k - 1) * c for
  // c >= 1 (count 0 was refused above), and (k - 1) * count < 2^39.
  if (d.run > 1 && d.total_size <= (kMinRunFragmentBytes - 1) * uint64_t{d.count}) {
    return bad("fragment run ", d.run, " of fragments under kMinRunFragmentBytes (",
               kMinRunFragmentBytes, ")");
  }
  return absl::OkStatus();
}

absl::Status Validate(const Packet& p, const Codec::Limits& limits) {
  if (absl::Status s = CheckNumber("packet number", p.packet_number);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateHandshake(p); !s.ok()) return s;
  if (p.ack) {
    if (absl::Status s = ValidateAck(*p.ack); !s.ok()) return s;
  }
  if (p.data.size() > limits.max_data_frames) {
    return absl::InvalidArgumentError(
        absl::StrCat(p.data.size(), " data frames, over max_data_frames (",
                     limits.max_data_frames, ")"));
  }
  for (size_t i = 0; i < p.data.size(); ++i) {
    if (absl::Status s = ValidateFragment(i, p.data[i], limits); !s.ok()) {
      return s;
    }
  }
  if (p.close && p.close->reason.size() > kMaxReasonBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("close reason of ", p.close->reason.size(),
                     " bytes over kMaxReasonBytes (", kMaxReasonBytes, ")"));
  }
  if (p.close) {
    if (absl::Status s = CheckProof("close auth", p.close->auth); !s.ok()) return s;
  }
  if (p.ack_frequency) {
    if (absl::Status s = CheckNumber("ack frequency sequence", p.ack_frequency->sequence);
        !s.ok()) {
      return s;
    }
    const uint32_t t = p.ack_frequency->threshold;
    if (t == 0 || t > kMaxAckFrequencyThreshold) {
      return absl::InvalidArgumentError(absl::StrCat("ack frequency threshold ", t,
                                                     " outside [1, kMaxAckFrequencyThreshold (",
                                                     kMaxAckFrequencyThreshold, ")]"));
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Typed frames to wire messages and back.

void ToWire(const Packet& p, wire::Packet* w) {
  w->set_connection_id(p.connection_id);
  w->set_packet_number(p.packet_number);
  if (p.hello) {
    wire::Hello* h = w->mutable_hello();
    h->set_client_connection_id(p.hello->client_connection_id);
    h->set_cookie(p.hello->cookie);
    h->set_max_datagram(p.hello->max_datagram);
    if (!p.hello->public_key.empty()) h->set_public_key(p.hello->public_key);
    if (!p.hello->key_proof.empty()) h->set_key_proof(p.hello->key_proof);
    h->set_max_udp_payload(p.hello->max_udp_payload);
    h->set_aead_offer(p.hello->aead_offer);
    h->set_features(p.hello->features);
  }
  if (p.challenge) {
    wire::Challenge* c = w->mutable_challenge();
    c->set_client_connection_id(p.challenge->client_connection_id);
    c->set_cookie(p.challenge->cookie);
    if (!p.challenge->key_proof.empty()) c->set_key_proof(p.challenge->key_proof);
  }
  if (p.accept) {
    wire::Accept* a = w->mutable_accept();
    a->set_client_connection_id(p.accept->client_connection_id);
    a->set_server_connection_id(p.accept->server_connection_id);
    a->set_max_datagram(p.accept->max_datagram);
    a->set_max_message_bytes(p.accept->max_message_bytes);
    a->set_window(p.accept->window);
    if (!p.accept->public_key.empty()) a->set_public_key(p.accept->public_key);
    if (!p.accept->psk_confirmation.empty()) {
      a->set_psk_confirmation(p.accept->psk_confirmation);
    }
    if (!p.accept->server_identity.empty()) a->set_server_identity(p.accept->server_identity);
    if (!p.accept->identity_confirmation.empty()) {
      a->set_identity_confirmation(p.accept->identity_confirmation);
    }
    a->set_max_udp_payload(p.accept->max_udp_payload);
    a->set_aead(p.accept->aead);
    a->set_features(p.accept->features);
  }
  if (p.ack) {
    // Validate ran: ranges are non-empty, descending and non-adjacent.
    wire::AckFrame* a = w->mutable_ack();
    const std::vector<AckRange>& ranges = p.ack->ranges;
    a->set_largest(ranges[0].largest);
    a->set_ack_delay_us(AckDelayMicros(p.ack->ack_delay));
    a->set_first_range(ranges[0].largest - ranges[0].smallest);
    a->mutable_gaps()->Reserve(static_cast<int>(ranges.size() - 1));
    a->mutable_lengths()->Reserve(static_cast<int>(ranges.size() - 1));
    for (size_t i = 1; i < ranges.size(); ++i) {
      a->add_gaps(ranges[i - 1].smallest - ranges[i].largest - 2);
      a->add_lengths(ranges[i].largest - ranges[i].smallest);
    }
  }
  w->mutable_data()->Reserve(static_cast<int>(p.data.size()));
  for (const DataFragment& d : p.data) {
    wire::DataFrame* f = w->add_data();
    f->set_channel(d.channel);
    f->set_mode(d.mode);
    f->set_sequence(d.sequence);
    f->set_index(d.index);
    f->set_count(d.count);
    f->set_total_size(d.total_size);
    f->set_payload(d.bytes().data(), d.bytes().size());
    if (d.run > 1) f->set_run(d.run);
  }
  if (p.ping) w->mutable_ping();
  if (p.ack_frequency) {
    wire::AckFrequencyFrame* f = w->mutable_ack_frequency();
    f->set_sequence(p.ack_frequency->sequence);
    f->set_threshold(p.ack_frequency->threshold);
  }
  if (p.path_challenge) w->mutable_path_challenge()->set_data(p.path_challenge->data);
  if (p.path_response) w->mutable_path_response()->set_data(p.path_response->data);
  if (p.close) {
    wire::CloseFrame* c = w->mutable_close();
    c->set_code(p.close->code);
    c->set_reason(p.close->reason);
    if (!p.close->auth.empty()) c->set_auth(p.close->auth);
  }
}

// An ack frame's wire fields, from protobuf or from the fast parser.
struct AckFields {
  uint64_t largest = 0;
  uint64_t ack_delay_us = 0;
  uint64_t first_range = 0;
  const uint64_t* gaps = nullptr;
  size_t gaps_size = 0;
  const uint64_t* lengths = nullptr;
  size_t lengths_size = 0;
};

absl::Status AckFromFields(const AckFields& a, Ack* ack) {
  if (a.gaps_size != a.lengths_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("ack with ", a.gaps_size, " gaps but ",
                     a.lengths_size, " lengths"));
  }
  const size_t ranges = 1 + a.gaps_size;
  if (ranges > kMaxAckRanges) {
    return absl::InvalidArgumentError(absl::StrCat(
        ranges, " ack ranges, over kMaxAckRanges (", kMaxAckRanges, ")"));
  }
  if (a.ack_delay_us > kMaxAckDelayUs) {
    return absl::InvalidArgumentError(
        absl::StrCat("ack delay ", a.ack_delay_us, "us over 1 hour"));
  }
  if (absl::Status s = CheckNumber("ack largest", a.largest); !s.ok()) {
    return s;
  }
  if (a.first_range > a.largest) {
    return absl::InvalidArgumentError(
        absl::StrCat("ack range 0 extends below packet number 0 (largest ",
                     a.largest, ", length ", a.first_range, ")"));
  }
  ack->ack_delay =
      absl::Microseconds(static_cast<int64_t>(a.ack_delay_us));
  ack->ranges.reserve(ranges);
  AckRange range{a.largest - a.first_range, a.largest};
  ack->ranges.push_back(range);
  for (size_t i = 0; i < a.gaps_size; ++i) {
    const uint64_t gap = a.gaps[i];
    const uint64_t length = a.lengths[i];
    // next.largest = previous.smallest - gap - 2, without wrapping.
    if (range.smallest < 2 || gap > range.smallest - 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ack range ", i + 1, " extends below packet number 0 (gap ", gap,
          ")"));
    }
    range.largest = range.smallest - 2 - gap;
    if (length > range.largest) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ack range ", i + 1, " extends below packet number 0 (length ",
          length, ")"));
    }
    range.smallest = range.largest - length;
    ack->ranges.push_back(range);
  }
  return absl::OkStatus();
}

// Wire ack to typed ranges. Rejects what the typed form cannot hold (more
// ranges than allowed, counts that disagree, ranges below packet number 0,
// absurd delays); Validate checks the rest.
absl::Status AckFromWire(wire::AckFrame& a, Ack* ack) {
  AckFields f;
  f.largest = a.largest();
  f.ack_delay_us = a.ack_delay_us();
  f.first_range = a.first_range();
  f.gaps = a.gaps().data();
  f.gaps_size = static_cast<size_t>(a.gaps_size());
  f.lengths = a.lengths().data();
  f.lengths_size = static_cast<size_t>(a.lengths_size());
  return AckFromFields(f, ack);
}

absl::StatusOr<Packet> FromWire(wire::Packet& w, const Codec::Limits& limits) {
  Packet p;
  p.connection_id = w.connection_id();
  p.packet_number = w.packet_number();
  if (w.has_hello()) {
    wire::Hello& h = *w.mutable_hello();
    p.hello.emplace();
    p.hello->client_connection_id = h.client_connection_id();
    p.hello->cookie = std::move(*h.mutable_cookie());
    p.hello->max_datagram = h.max_datagram();
    p.hello->public_key = std::move(*h.mutable_public_key());
    p.hello->key_proof = std::move(*h.mutable_key_proof());
    p.hello->max_udp_payload = h.max_udp_payload();
    p.hello->aead_offer = h.aead_offer();
    p.hello->features = h.features();
  }
  if (w.has_challenge()) {
    wire::Challenge& c = *w.mutable_challenge();
    p.challenge.emplace();
    p.challenge->client_connection_id = c.client_connection_id();
    p.challenge->cookie = std::move(*c.mutable_cookie());
    p.challenge->key_proof = std::move(*c.mutable_key_proof());
  }
  if (w.has_accept()) {
    const wire::Accept& a = w.accept();
    p.accept.emplace();
    p.accept->client_connection_id = a.client_connection_id();
    p.accept->server_connection_id = a.server_connection_id();
    p.accept->max_datagram = a.max_datagram();
    p.accept->max_message_bytes = a.max_message_bytes();
    p.accept->window = a.window();
    p.accept->public_key = a.public_key();
    p.accept->psk_confirmation = a.psk_confirmation();
    p.accept->server_identity = a.server_identity();
    p.accept->identity_confirmation = a.identity_confirmation();
    p.accept->max_udp_payload = a.max_udp_payload();
    p.accept->aead = a.aead();
    p.accept->features = a.features();
  }
  if (w.has_ack()) {
    p.ack.emplace();
    if (absl::Status s = AckFromWire(*w.mutable_ack(), &*p.ack); !s.ok()) {
      return s;
    }
  }
  // Checked before anything is allocated for the frames.
  const size_t frames = static_cast<size_t>(w.data_size());
  if (frames > limits.max_data_frames) {
    return absl::InvalidArgumentError(
        absl::StrCat(frames, " data frames, over max_data_frames (",
                     limits.max_data_frames, ")"));
  }
  p.data.resize(frames);
  for (size_t i = 0; i < frames; ++i) {
    wire::DataFrame& f = *w.mutable_data(static_cast<int>(i));
    DataFragment& d = p.data[i];
    d.channel = f.channel();
    d.mode = f.mode();
    d.sequence = f.sequence();
    d.index = f.index();
    d.count = f.count();
    d.total_size = f.total_size();
    d.run = std::max<uint32_t>(f.run(), 1);  // absent or 0: one fragment
    d.payload = std::move(*f.mutable_payload());
  }
  if (w.has_ping()) p.ping.emplace();
  if (w.has_ack_frequency()) {
    p.ack_frequency.emplace();
    p.ack_frequency->sequence = w.ack_frequency().sequence();
    p.ack_frequency->threshold = w.ack_frequency().threshold();
  }
  if (w.has_path_challenge()) p.path_challenge = PathChallenge{w.path_challenge().data()};
  if (w.has_path_response()) p.path_response = PathResponse{w.path_response().data()};
  if (w.has_close()) {
    wire::CloseFrame& c = *w.mutable_close();
    p.close.emplace();
    p.close->code = c.code();
    p.close->reason = std::move(*c.mutable_reason());
    p.close->auth = std::move(*c.mutable_auth());
  }
  if (absl::Status s = Validate(p, limits); !s.ok()) return s;
  return p;
}

// ---------------------------------------------------------------------------
// The hot path without protobuf: established packets (no hello, challenge,
// accept or close; no path validation frame, which is rare; padded or not)
// are written and read by hand, byte for byte what protobuf writes, and data
// payloads are neither copied into a message nor out of one. codec_test checks the bytes against protobuf's,
// and the codec fuzzer checks that both parsers agree on every input.

// Whether Encode may write `p` by hand.
bool FastEncodable(const Packet& p) {
  return !p.hello && !p.challenge && !p.accept && !p.close && !p.path_challenge &&
         !p.path_response;
}

uint8_t* PutVarint(uint64_t v, uint8_t* pos) {
  while (v >= 0x80) {
    *pos++ = static_cast<uint8_t>(v | 0x80);
    v >>= 7;
  }
  *pos++ = static_cast<uint8_t>(v);
  return pos;
}

constexpr uint8_t Tag(int field, int wire_type) {
  return static_cast<uint8_t>((field << 3) | wire_type);
}
constexpr int kVarintType = 0;
constexpr int kFixed64Type = 1;
constexpr int kLengthType = 2;

// A varint scalar with implicit presence (absent when zero).
uint8_t* PutVarintField(int field, uint64_t v, uint8_t* pos) {
  if (v == 0) return pos;
  *pos++ = Tag(field, kVarintType);
  return PutVarint(v, pos);
}

// Writes the wire.Packet body of a FastEncodable packet (Validate ran, so the
// ack ranges are well formed; EncodeAppendSized, which may skip it, never
// brings an ack); returns the end.
uint8_t* WriteEstablished(const Packet& p, uint8_t* pos) {
  if (p.connection_id != 0) {
    *pos++ = Tag(1, kFixed64Type);
    pos = StoreLittleEndian<8>(p.connection_id, pos);
  }
  pos = PutVarintField(2, p.packet_number, pos);
  if (p.ack) {
    const std::vector<AckRange>& ranges = p.ack->ranges;
    *pos++ = Tag(6, kLengthType);
    pos = PutVarint(AckBodySize(*p.ack), pos);
    pos = PutVarintField(1, ranges[0].largest, pos);
    pos = PutVarintField(2, AckDelayMicros(p.ack->ack_delay), pos);
    pos = PutVarintField(3, ranges[0].largest - ranges[0].smallest, pos);
    if (ranges.size() > 1) {
      size_t gaps = 0;
      size_t lengths = 0;
      for (size_t i = 1; i < ranges.size(); ++i) {
        gaps += VarintSize(ranges[i - 1].smallest - ranges[i].largest - 2);
        lengths += VarintSize(ranges[i].largest - ranges[i].smallest);
      }
      *pos++ = Tag(4, kLengthType);
      pos = PutVarint(gaps, pos);
      for (size_t i = 1; i < ranges.size(); ++i) {
        pos = PutVarint(ranges[i - 1].smallest - ranges[i].largest - 2, pos);
      }
      *pos++ = Tag(5, kLengthType);
      pos = PutVarint(lengths, pos);
      for (size_t i = 1; i < ranges.size(); ++i) {
        pos = PutVarint(ranges[i].largest - ranges[i].smallest, pos);
      }
    }
  }
  for (const DataFragment& d : p.data) {
    const std::string_view payload = d.bytes();
    *pos++ = Tag(7, kLengthType);
    pos = PutVarint(DataHeaderSize(d) + BytesField(payload.size()), pos);
    pos = PutVarintField(1, d.channel, pos);
    pos = PutVarintField(2, d.mode, pos);
    pos = PutVarintField(3, d.sequence, pos);
    pos = PutVarintField(4, d.index, pos);
    pos = PutVarintField(5, d.count, pos);
    pos = PutVarintField(6, d.total_size, pos);
    if (!payload.empty()) {
      *pos++ = Tag(7, kLengthType);
      pos = PutVarint(payload.size(), pos);
      std::memcpy(pos, payload.data(), payload.size());
      pos += payload.size();
    }
    if (d.run > 1) pos = PutVarintField(8, d.run, pos);  // after the payload, as protobuf
  }
  if (p.ping) {
    *pos++ = Tag(8, kLengthType);
    *pos++ = 0;
  }
  if (p.ack_frequency) {
    *pos++ = Tag(10, kLengthType);
    pos = PutVarint(VarintField(p.ack_frequency->sequence) +
                        VarintField(p.ack_frequency->threshold),
                    pos);
    pos = PutVarintField(1, p.ack_frequency->sequence, pos);
    pos = PutVarintField(2, p.ack_frequency->threshold, pos);
  }
  return pos;
}

// An upper bound on what WriteEstablished writes for `p` plus the version
// byte and the CRC, whatever its numbers: each varint field at its longest.
size_t MostWritten(const Packet& p) {
  constexpr size_t kVarintField = 1 + 10;
  constexpr size_t kLengthHeader = 1 + 10;
  size_t most = kFramingBytes + 1 + 8 + kVarintField;  // connection id, number
  if (p.ack) {
    most += kLengthHeader + 3 * kVarintField + 2 * kLengthHeader +
            2 * 10 * (p.ack->ranges.size() - std::min<size_t>(p.ack->ranges.size(), 1));
  }
  for (const DataFragment& d : p.data) {
    most += kLengthHeader + 7 * kVarintField + kLengthHeader + d.bytes().size();
  }
  if (p.ping) most += 2;
  if (p.ack_frequency) most += kLengthHeader + 2 * kVarintField;
  return most;
}

// Reads protobuf wire bytes. Every method returns false on anything the
// fast parser leaves to protobuf (which then decides: it may accept what
// this declines, never the other way round).
class WireReader final {
 public:
  WireReader(const uint8_t* begin, const uint8_t* end) : pos_(begin), end_(end) {}

  bool done() const { return pos_ == end_; }
  size_t remaining() const { return static_cast<size_t>(end_ - pos_); }

  // At most 10 bytes, the 10th at most 1 (the value fits 64 bits).
  bool Varint(uint64_t* v) {
    uint64_t result = 0;
    for (int i = 0; i < 10; ++i) {
      if (pos_ == end_) return false;
      const uint8_t b = *pos_++;
      if (i == 9 && b > 1) return false;
      result |= uint64_t{b & 0x7Fu} << (7 * i);
      if (b < 0x80) {
        *v = result;
        return true;
      }
    }
    return false;
  }
  bool Varint32(uint32_t* v) {
    uint64_t wide = 0;
    if (!Varint(&wide) || wide > 0xFFFFFFFFu) return false;
    *v = static_cast<uint32_t>(wide);
    return true;
  }
  // A one-byte tag (fields 1-15).
  bool Tag(int* field, int* wire_type) {
    if (pos_ == end_ || *pos_ >= 0x80) return false;
    const uint8_t t = *pos_++;
    *field = t >> 3;
    *wire_type = t & 7;
    return *field != 0;
  }
  bool Fixed64(uint64_t* v) {
    if (end_ - pos_ < 8) return false;
    *v = LoadLittleEndian<8>(pos_);
    pos_ += 8;
    return true;
  }
  // A length-delimited field's contents.
  bool Length(WireReader* inner) {
    uint64_t n = 0;
    if (!Varint(&n) || n > static_cast<uint64_t>(end_ - pos_)) return false;
    *inner = WireReader(pos_, pos_ + n);
    pos_ += n;
    return true;
  }
  std::string_view Rest() const {
    return std::string_view(reinterpret_cast<const char*>(pos_), static_cast<size_t>(end_ - pos_));
  }

 private:
  const uint8_t* pos_;
  const uint8_t* end_;
};

// A packed repeated varint field, up to kMaxAckRanges - 1 elements.
bool ReadPacked(WireReader r, uint64_t* out, size_t* n) {
  *n = 0;
  while (!r.done()) {
    if (*n == kMaxAckRanges - 1) return false;
    if (!r.Varint(&out[(*n)++])) return false;
  }
  return true;
}

struct FastAck {
  AckFields fields;
  uint64_t gaps[kMaxAckRanges - 1];
  uint64_t lengths[kMaxAckRanges - 1];
};

bool ReadAck(WireReader r, FastAck* a) {
  uint32_t seen = 0;
  while (!r.done()) {
    int field = 0;
    int type = 0;
    if (!r.Tag(&field, &type) || (seen & (1u << field)) != 0) return false;
    seen |= 1u << field;
    WireReader inner(nullptr, nullptr);
    switch (field) {
      case 1:
        if (type != kVarintType || !r.Varint(&a->fields.largest)) return false;
        break;
      case 2:
        if (type != kVarintType || !r.Varint(&a->fields.ack_delay_us)) return false;
        break;
      case 3:
        if (type != kVarintType || !r.Varint(&a->fields.first_range)) return false;
        break;
      case 4:
        if (type != kLengthType || !r.Length(&inner) ||
            !ReadPacked(inner, a->gaps, &a->fields.gaps_size)) {
          return false;
        }
        break;
      case 5:
        if (type != kLengthType || !r.Length(&inner) ||
            !ReadPacked(inner, a->lengths, &a->fields.lengths_size)) {
          return false;
        }
        break;
      default:
        return false;
    }
  }
  a->fields.gaps = a->gaps;
  a->fields.lengths = a->lengths;
  return true;
}

bool ReadFragment(WireReader r, DataFragment* d) {
  uint32_t seen = 0;
  d->mode = 0;   // proto3 defaults: absent is zero
  d->count = 0;
  d->run = 0;
  while (!r.done()) {
    int field = 0;
    int type = 0;
    if (!r.Tag(&field, &type) || (seen & (1u << field)) != 0) return false;
    seen |= 1u << field;
    if (field == 7) {
      WireReader inner(nullptr, nullptr);
      if (type != kLengthType || !r.Length(&inner)) return false;
      d->payload_ref = inner.Rest();
      continue;
    }
    if (type != kVarintType) return false;
    bool ok = false;
    switch (field) {
      case 1: ok = r.Varint32(&d->channel); break;
      case 2: ok = r.Varint32(&d->mode); break;
      case 3: ok = r.Varint(&d->sequence); break;
      case 4: ok = r.Varint32(&d->index); break;
      case 5: ok = r.Varint32(&d->count); break;
      case 6: ok = r.Varint(&d->total_size); break;
      case 8: ok = r.Varint32(&d->run); break;
      default: return false;
    }
    if (!ok) return false;
  }
  if (!d->payload_ref) d->payload_ref = std::string_view();
  if (d->run == 0) d->run = 1;  // absent or 0: one fragment (as protobuf's side)
  return true;
}

// Parses an established packet's body into `p` (fragments borrowing from
// the body) and `ack`; false when the bytes hold anything else (handshake
// frames, a close, unknown fields, a field repeated, unpacked ack numbers,
// over max_data_frames data frames, any malformation): protobuf decides.
bool FastParse(WireReader r, const Codec::Limits& limits, Packet* p, FastAck* ack,
               bool* has_ack) {
  uint32_t seen = 0;
  while (!r.done()) {
    int field = 0;
    int type = 0;
    if (!r.Tag(&field, &type)) return false;
    if (field != 7 && field != 15) {
      if ((seen & (1u << field)) != 0) return false;
      seen |= 1u << field;
    }
    WireReader inner(nullptr, nullptr);
    switch (field) {
      case 1:
        if (type != kFixed64Type || !r.Fixed64(&p->connection_id)) return false;
        break;
      case 2:
        if (type != kVarintType || !r.Varint(&p->packet_number)) return false;
        break;
      case 6:
        if (type != kLengthType || !r.Length(&inner) || !ReadAck(inner, ack)) return false;
        *has_ack = true;
        break;
      case 7:
        if (type != kLengthType || !r.Length(&inner) ||
            p->data.size() >= limits.max_data_frames) {
          return false;
        }
        if (p->data.empty()) {
          // One allocation for the usual frames: a fragment is cut for at
          // least ~500 bytes of a datagram (two per 1472-byte datagram, up
          // to 16 per 16 KiB one); smaller ones grow the vector as usual.
          // The receive path's vector keeps its capacity (the endpoint's
          // reused packet's, or the thread's for sealed datagrams) and has
          // the room: no call to reserve per datagram.
          const size_t frames = std::min(limits.max_data_frames, 2 + r.remaining() / 1024);
          if (p->data.capacity() < frames) p->data.reserve(frames);
        }
        p->data.emplace_back();
        if (!ReadFragment(inner, &p->data.back())) return false;
        break;
      case 8:
        if (type != kLengthType || !r.Length(&inner) || !inner.done()) return false;
        p->ping.emplace();
        break;
      case 10: {
        if (type != kLengthType || !r.Length(&inner)) return false;
        AckFrequency f{0, 0};
        uint32_t inner_seen = 0;
        while (!inner.done()) {
          int g = 0;
          int t = 0;
          if (!inner.Tag(&g, &t) || t != kVarintType || (inner_seen & (1u << g)) != 0) {
            return false;
          }
          inner_seen |= 1u << g;
          if (g == 1) {
            if (!inner.Varint(&f.sequence)) return false;
          } else if (g == 2) {
            if (!inner.Varint32(&f.threshold)) return false;
          } else {
            return false;
          }
        }
        p->ack_frequency = f;
        break;
      }
      case 15:
        if (type != kLengthType || !r.Length(&inner)) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}

// ---------------------------------------------------------------------------

Codec::Limits Clamp(Codec::Limits limits) {
  limits.max_datagram =
      std::clamp(limits.max_datagram, kMinDatagram, kMaxDatagram);
  limits.max_fragments = std::max<uint32_t>(limits.max_fragments, 1);
  limits.max_data_frames = std::max<size_t>(limits.max_data_frames, 1);
  return limits;
}

size_t ComputeMaxFragmentPayload(const Codec::Limits& limits) {
  // Header: version, CRC, a connection id and the largest packet number.
  const size_t header = kFramingBytes + Fixed64Field(~uint64_t{0}) +
                        VarintField(kMaxNumber);
  // An ack of kMaxAckRangesWithData ranges, every number at its longest
  // encoding: numbers stay below 2^62, and 15 values of 2^56 (9-byte varints)
  // still sum to less than that, so all of them can be that long at once.
  const size_t pairs = kMaxAckRangesWithData - 1;
  const size_t packed = pairs * VarintSize(kMaxNumber);
  const size_t ack =
      MessageField(VarintField(kMaxNumber) + VarintField(kMaxAckDelayUs) +
                   VarintField(kMaxNumber) + 2 * PackedField(pairs, packed));
  const size_t ping = MessageField(0);
  const size_t fixed = header + ack + ping;
  // One data frame with the longest numbers the rules allow.
  const size_t data_header =
      VarintField(std::numeric_limits<uint32_t>::max()) +
      VarintField(kMaxDeliveryMode) + VarintField(kMaxNumber) +
      VarintField(limits.max_fragments - 1) +
      VarintField(limits.max_fragments) +
      VarintField(limits.max_message_bytes);
  auto total = [&](size_t payload) {
    return fixed + MessageField(data_header + BytesField(payload));
  };
  if (total(0) > limits.max_datagram) return 0;
  size_t payload = limits.max_datagram - total(0);
  while (payload > 0 && total(payload) > limits.max_datagram) --payload;
  return static_cast<size_t>(
      std::min<uint64_t>(payload, limits.max_message_bytes));
}

}  // namespace

Codec::Codec(const Limits& limits)
    : limits_(Clamp(limits)),
      max_fragment_payload_(ComputeMaxFragmentPayload(limits_)) {}

size_t Codec::MaxFragmentPayload() const { return max_fragment_payload_; }

size_t Codec::HeaderSize(uint64_t connection_id, uint64_t packet_number) {
  return kFramingBytes + Fixed64Field(connection_id) + VarintField(packet_number);
}

size_t Codec::DataFrameSize(const DataFragment& d) {
  return MessageField(DataHeaderSize(d) + BytesField(d.bytes().size()));
}

size_t Codec::EncodedSize(const Packet& packet) const {
  const size_t unpadded = kFramingBytes + PacketBodySize(packet);
  // A hello fills the budget; any other packet with pad_to that size.
  const size_t target = packet.hello ? limits_.max_datagram : packet.pad_to;
  if (target == 0 || unpadded >= target) return unpadded;
  // Padding fills the rest exactly, unless a single byte is left (no field
  // is that short): then the packet does not fit.
  if (!PlanPadding(target - unpadded).fits) {
    return std::max(target, limits_.max_datagram) + 1;
  }
  return target;
}

absl::StatusOr<std::string> Codec::Encode(const Packet& packet) const {
  std::string out;
  if (absl::Status s = EncodeInto(packet, 0, 0, &out); !s.ok()) return s;
  return out;
}

namespace {

// Room for `bytes` in all, growing at least twice over: a batch of datagrams
// appended one by one (EncodeAppend) must not be copied whole for each, and
// reserve() grows only as asked in some standard libraries.
void Reserve(std::string* out, size_t bytes) {
  if (out->capacity() < bytes) out->reserve(std::max(bytes, 2 * out->capacity()));
}

}  // namespace

absl::Status Codec::EncodeInto(const Packet& packet, size_t headroom, size_t tailroom,
                               std::string* out) const {
  out->clear();
  return EncodeAppend(packet, headroom, tailroom, out);
}

absl::Status Codec::EncodeAppendSized(const Packet& packet, size_t size, size_t headroom,
                                      size_t tailroom, std::string* out) const {
  if (!FastEncodable(packet) || packet.ack) return EncodeAppend(packet, headroom, tailroom, out);
#ifndef NDEBUG
  if (absl::Status s = Validate(packet, limits_); !s.ok()) return s;
  if (size != EncodedSize(packet)) {
    return absl::InternalError(absl::StrCat("codec size mismatch: given ", size,
                                            " bytes, computed ", EncodedSize(packet)));
  }
#endif
  if (size > limits_.max_datagram) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "packet of ", size, " bytes over the datagram budget of ", limits_.max_datagram));
  }
  return WriteFast(packet, size, /*measured=*/false, headroom, tailroom, out);
}

absl::Status Codec::WriteFast(const Packet& packet, size_t size, bool measured,
                              size_t headroom, size_t tailroom, std::string* out) {
  const size_t at = out->size();
  // A size this codec did not measure gets room for the most the packet's
  // frames can take: a wrong size given to EncodeAppendSized is an error
  // below, never a write past the buffer.
  const size_t most = measured ? size : std::max(size, MostWritten(packet));
  Reserve(out, at + headroom + most + tailroom);
  out->resize(at + headroom + most);
  auto* bytes = reinterpret_cast<uint8_t*>(out->data()) + at + headroom;
  bytes[0] = kProtocolVersion;
  uint8_t* pos = WriteEstablished(packet, bytes + 1);
  // A probe's padding, or a data packet's that keeps a GSO train's
  // datagrams one size: only up to its pad_to (any other short write is a
  // wrong size, an error below). EncodedSize checked that the plan fits; a
  // plan that does not (a wrong size given to EncodeAppendSized) writes two
  // bytes, still short of `size`.
  const size_t written = static_cast<size_t>(pos - bytes) + 4;
  if (written < size && size == packet.pad_to) {
    pos = WritePadding(PlanPadding(size - written), pos);
  }
  const size_t covered = static_cast<size_t>(pos - bytes);
  if (covered + 4 != size) {
    return absl::InternalError(
        absl::StrCat("codec size mismatch: computed ", size, " bytes, wrote ", covered + 4));
  }
  const uint32_t crc = Crc32c(absl::string_view(reinterpret_cast<const char*>(bytes), covered));
  StoreLittleEndian<4>(crc, pos);
  out->resize(at + headroom + size);
  return absl::OkStatus();
}

absl::Status Codec::EncodeAppend(const Packet& packet, size_t headroom, size_t tailroom,
                                 std::string* out) const {
  const size_t at = out->size();
  if (absl::Status s = Validate(packet, limits_); !s.ok()) return s;
  const size_t size = EncodedSize(packet);
  if (size > limits_.max_datagram) {
    return absl::ResourceExhaustedError(
        absl::StrCat("packet of ", size, " bytes over the datagram budget of ",
                     limits_.max_datagram));
  }
  if (FastEncodable(packet)) {
    return WriteFast(packet, size, /*measured=*/true, headroom, tailroom, out);
  }

  alignas(std::max_align_t) char block[kArenaInitialBlock];
  Arena arena(block, sizeof(block));
  wire::Packet* w = Arena::CreateMessage<wire::Packet>(&arena);
  ToWire(packet, w);
  const size_t body = w->ByteSizeLong();
  // Only a hello or a packet with pad_to is padded; `room` is what its
  // padding fields must fill.
  const size_t room = size - std::min(size, kFramingBytes + body);
  const PaddingPlan plan = PlanPadding(room);
  if (kFramingBytes + body + room != size ||
      (room > 0 && !packet.hello && packet.pad_to == 0) ||
      !plan.fits) {
    return absl::InternalError(
        absl::StrCat("codec size mismatch: computed ", size,
                     " bytes, protobuf body ", body, " bytes"));
  }

  Reserve(out, at + headroom + size + tailroom);
  out->append(headroom + size, '\0');  // zeros: the padding's contents
  auto* bytes = reinterpret_cast<uint8_t*>(out->data()) + at + headroom;
  bytes[0] = kProtocolVersion;
  uint8_t* pos = w->SerializeWithCachedSizesToArray(bytes + 1);
  if (room > 0) pos = WritePadding(plan, pos);
  const size_t covered = static_cast<size_t>(pos - bytes);
  const uint32_t crc = Crc32c(absl::string_view(reinterpret_cast<const char*>(bytes), covered));
  StoreLittleEndian<4>(crc, pos);
  return absl::OkStatus();
}

absl::StatusOr<Packet> Codec::Decode(absl::string_view datagram) const {
  return DecodeImpl(datagram, Parser::kFast, /*borrow=*/false);
}

absl::StatusOr<Packet> Codec::DecodeView(absl::string_view datagram) const {
  return DecodeImpl(datagram, Parser::kFast, /*borrow=*/true);
}

absl::StatusOr<Packet> Codec::DecodeWithProtobuf(absl::string_view datagram) const {
  return DecodeImpl(datagram, Parser::kProtobuf, /*borrow=*/false);
}

absl::Status Codec::DecodeViewInto(absl::string_view datagram, Packet* out) const {
  return DecodeImpl(datagram, Parser::kFast, /*borrow=*/true, out);
}

absl::StatusOr<Packet> Codec::DecodeImpl(absl::string_view datagram, Parser parser,
                                         bool borrow) const {
  Packet p;
  if (absl::Status s = DecodeImpl(datagram, parser, borrow, &p); !s.ok()) return s;
  return p;
}

absl::Status Codec::DecodeImpl(absl::string_view datagram, Parser parser, bool borrow,
                               Packet* out) const {
  out->Clear();  // its frame vector keeps its capacity
  const size_t size = datagram.size();
  if (size < kMinEncodedBytes || size > limits_.max_datagram) {
    return absl::InvalidArgumentError(
        absl::StrCat("datagram of ", size, " bytes outside ",
                     Range(kMinEncodedBytes, limits_.max_datagram)));
  }
  const auto* bytes = reinterpret_cast<const uint8_t*>(datagram.data());
  if (bytes[0] != kProtocolVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported version ", bytes[0]));
  }
  const size_t covered = size - 4;
  const auto stored = static_cast<uint32_t>(LoadLittleEndian<4>(bytes + covered));
  if (Crc32c(datagram.substr(0, covered)) != stored) {
    return absl::InvalidArgumentError("checksum mismatch");
  }

  if (parser == Parser::kFast) {
    Packet& p = *out;
    FastAck fast_ack;
    bool has_ack = false;
    if (FastParse(WireReader(bytes + 1, bytes + covered), limits_, &p, &fast_ack, &has_ack)) {
      // The same checks, in the same order, as FromWire.
      if (has_ack) {
        p.ack.emplace();
        if (absl::Status s = AckFromFields(fast_ack.fields, &*p.ack); !s.ok()) return s;
      }
      if (absl::Status s = Validate(p, limits_); !s.ok()) return s;
      if (!borrow) {
        for (DataFragment& d : p.data) {
          d.payload.assign(d.payload_ref->data(), d.payload_ref->size());
          d.payload_ref.reset();
        }
      }
      return absl::OkStatus();
    }
  }
  alignas(std::max_align_t) char block[kArenaInitialBlock];
  Arena arena(block, sizeof(block));
  wire::Packet* w = Arena::CreateMessage<wire::Packet>(&arena);
  if (!w->ParseFromArray(bytes + 1, static_cast<int>(covered - 1))) {
    return absl::InvalidArgumentError("malformed protobuf");
  }
  absl::StatusOr<Packet> packet = FromWire(*w, limits_);
  if (!packet.ok()) return packet.status();
  *out = *std::move(packet);
  return absl::OkStatus();
}

}  // namespace udpmsg::proto
