// Codec: typed Packets (frames.h) to datagram bytes and back, defensively.
//
// Wire format of one datagram:
//
//   +---------+-------------------------------+------------------+
//   | version |  protobuf udpmsg.wire.Packet  |  CRC32C, 4 bytes |
//   | 1 byte  |  (proto/frame.proto)          |  little-endian   |
//   +---------+-------------------------------+------------------+
//
// The CRC32C (Castagnoli) covers the version byte and the protobuf bytes; it
// catches the corruption the 16-bit UDP checksum misses (it is not a MAC:
// encryption is a separate layer). Decode checks, in order: size within
// [kMinEncodedBytes, limits.max_datagram], version byte, CRC, protobuf parse,
// then every field range (see Decode). Unknown protobuf fields are ignored,
// so a later version can add fields that older peers skip.
//
// Usage:
//   Codec codec(Codec::Limits{});
//   absl::StatusOr<std::string> bytes = codec.Encode(packet);
//   absl::StatusOr<Packet> packet = codec.Decode(bytes);
//
// Thread-compatible (const methods only after construction).
#ifndef UDPMSG_PROTO_CODEC_H_
#define UDPMSG_PROTO_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/frames.h"

namespace udpmsg::proto {

// CRC32C (Castagnoli, reflected polynomial 0x82F63B78, init and xor-out
// 0xFFFFFFFF), as in RFC 3720 / iSCSI. Crc32c("123456789") == 0xE3069283.
uint32_t Crc32c(absl::string_view data);
// Continues a CRC: Crc32c(a + b) == Crc32cExtend(Crc32c(a), b).
uint32_t Crc32cExtend(uint32_t crc, absl::string_view data);

// Version byte + CRC.
inline constexpr size_t kFramingBytes = 5;
// Nothing shorter than this can be a valid datagram.
inline constexpr size_t kMinEncodedBytes = kFramingBytes;

class Codec final {
 public:
  struct Limits {
    // Largest datagram encoded or accepted, in [kMinDatagram, kMaxDatagram].
    size_t max_datagram = kDefaultMaxDatagram;
    // Largest message a data fragment may announce (total_size).
    uint64_t max_message_bytes = 16 << 20;
    // Largest fragment count a data fragment may announce.
    uint32_t max_fragments = 1 << 20;
    // Most data frames in one packet.
    size_t max_data_frames = 64;
  };

  // Limits outside their ranges are clamped into them.
  explicit Codec(const Limits& limits);

  const Limits& limits() const { return limits_; }

  // Encodes `packet`. A packet carrying a hello is padded so the datagram is
  // exactly limits().max_datagram bytes; any other packet with a non-zero
  // pad_to (a path MTU probe, a path challenge, a data packet kept at its
  // GSO train's size) to exactly pad_to bytes.
  // INVALID_ARGUMENT: the packet breaks a rule Decode would reject (so we
  //   never send what a peer must drop), naming the field.
  // RESOURCE_EXHAUSTED: the datagram would exceed limits().max_datagram.
  absl::StatusOr<std::string> Encode(const Packet& packet) const;

  // Encode into a buffer the caller owns and reuses: `*out` becomes
  // `headroom` bytes the caller fills (a sealed header; left unspecified
  // here) followed by exactly what Encode returns, with capacity for
  // `tailroom` more (an AEAD tag), so a sealed datagram is built in one
  // allocation at most. Same errors as Encode; `*out` is unspecified after
  // one. Established packets (no handshake frame, no close; padded or not) are
  // written without protobuf and their data payloads copied once, straight
  // from DataFragment::bytes() into `*out`; the bytes are identical.
  absl::Status EncodeInto(const Packet& packet, size_t headroom, size_t tailroom,
                          std::string* out) const;
  // EncodeInto without emptying `*out` first: the headroom and the datagram
  // go after what `*out` holds (a batch of datagrams back to back, see
  // reliable/datagram_batch.h). On an error `*out` may have grown past its
  // old end by unspecified bytes; the caller cuts them off.
  absl::Status EncodeAppend(const Packet& packet, size_t headroom, size_t tailroom,
                            std::string* out) const;
  // EncodeAppend of a packet whose EncodedSize the caller kept while filling
  // it (`size`): a sender's established packet with data. It is not measured
  // again, and its rules are checked only in builds with assertions (NDEBUG
  // unset): it was built from checked parts (the send queue's fragments, at
  // sizes the caller computed with DataFrameSize). Whatever the build, a
  // size that does not match what is written is an error (padding goes up
  // to pad_to only), never a write past the buffer; a packet that is not
  // FastEncodable or carries an ack goes through EncodeAppend.
  absl::Status EncodeAppendSized(const Packet& packet, size_t size, size_t headroom,
                                 size_t tailroom, std::string* out) const;

  // The exact size Encode would produce (hello padding included), without
  // checking rules or the budget. Cheap enough to call while filling a packet.
  size_t EncodedSize(const Packet& packet) const;
  // The EncodedSize of a packet with only these two numbers: where a
  // sender's frames start counting.
  static size_t HeaderSize(uint64_t connection_id, uint64_t packet_number);
  // What data frame `d` adds to an unpadded packet's EncodedSize: a sender
  // filling a packet keeps a running size instead of re-measuring it.
  static size_t DataFrameSize(const DataFragment& d);

  // The largest fragment payload that always fits in one datagram together
  // with a header, an ack of up to kMaxAckRangesWithData ranges with any
  // values, a ping, and one data frame whose numbers take their largest
  // encodings.
  // The sender cuts messages into fragments of at most this many bytes.
  // Every number in such an ack can take a 9-byte varint at once, so the
  // reservation is 222 bytes: 978 at the default budget of 1200, 1278 at
  // 1500, and 290 at the smallest budget (kMinDatagram, 512), so every
  // allowed budget carries data (codec_test pins these values).
  size_t MaxFragmentPayload() const;

  // Decodes one datagram. INVALID_ARGUMENT with a one-line reason for:
  //   - size outside [kMinEncodedBytes, limits().max_datagram]
  //   - version byte != kProtocolVersion ("unsupported version 7")
  //   - CRC mismatch ("checksum mismatch")
  //   - protobuf that does not parse
  //   - a handshake packet mixing frames against frames.h's rules, or a hello
  //     with client_connection_id 0, a cookie over kMaxCookieBytes, a
  //     max_datagram outside [kMinDatagram, kMaxDatagram], a max_udp_payload
  //     neither 0 nor inside that range
  //   - more than kMaxAckRanges ack ranges, ranges not descending, overlapping,
  //     adjacent, or with smallest > largest; negative or absurd ack delay
  //     (over 1 hour)
  //   - more than max_data_frames data frames; a fragment with mode >
  //     kMaxDeliveryMode, count 0 or over max_fragments, index >= count,
  //     total_size over max_message_bytes, payload longer than total_size,
  //     count > total_size for a non-empty message, count != 1 for an empty one
  //   - a sequence or packet number >= kMaxSequenceNumber
  //   - a close reason over kMaxReasonBytes
  //   - an ack frequency threshold outside [1, kMaxAckFrequencyThreshold], or
  //     its sequence >= kMaxSequenceNumber; an ack frequency frame in a
  //     handshake packet
  //   - a hello or challenge key_proof, or a close auth, over
  //     kMaxConfirmationBytes
  //   - a path challenge or path response frame in a handshake packet
  // Also rejected, by the same rules: a challenge with client_connection_id 0
  // or a cookie over kMaxCookieBytes, an accept with a connection id 0, a
  // max_datagram outside [kMinDatagram, kMaxDatagram] or a max_udp_payload
  // neither 0 nor inside it, a server_identity that
  // is neither empty nor kPublicKeyBytes, an identity_confirmation over
  // kMaxConfirmationBytes, an ack without ranges,
  // an ack whose wire gaps/lengths lead below packet number 0, a handshake
  // packet with a ping.
  // The ack delay travels in whole microseconds: Encode truncates the rest.
  // Never crashes, and allocates O(datagram size) at most.
  // Established packets (no handshake frame, no close, no path validation
  // frame, each singular field at most once, no unknown field) are parsed
  // without protobuf; anything
  // else, or anything that parser finds odd, goes to protobuf, so the
  // result is always exactly DecodeWithProtobuf's (the codec fuzzer and
  // codec_test check that on every input they try).
  absl::StatusOr<Packet> Decode(absl::string_view datagram) const;

  // As Decode, except that the data fragments of a packet the fast parser
  // took borrow their payloads from `datagram` (DataFragment::payload_ref):
  // the receive path copies each payload once, into the reassembler.
  // `datagram` must outlive the packet.
  absl::StatusOr<Packet> DecodeView(absl::string_view datagram) const;
  // As DecodeView, into `*out`, whose data vector keeps its capacity: a
  // receive loop that reuses one Packet allocates nothing per datagram for
  // its frames. On error `*out` holds no meaningful packet (it may keep
  // frames parsed before the error); the next call empties it first.
  absl::Status DecodeViewInto(absl::string_view datagram, Packet* out) const;

  // Decode through protobuf alone: the reference the fast parser is
  // checked against (tests, fuzzers, benchmarks).
  absl::StatusOr<Packet> DecodeWithProtobuf(absl::string_view datagram) const;

 private:
  enum class Parser { kFast, kProtobuf };
  absl::Status DecodeImpl(absl::string_view datagram, Parser parser, bool borrow,
                          Packet* out) const;
  absl::StatusOr<Packet> DecodeImpl(absl::string_view datagram, Parser parser,
                                    bool borrow) const;

  // Writes a FastEncodable packet of `size` bytes after `headroom` bytes:
  // its EncodedSize (`measured`), or what the caller of EncodeAppendSized
  // says it is.
  static absl::Status WriteFast(const Packet& packet, size_t size, bool measured,
                                size_t headroom, size_t tailroom, std::string* out);

  Limits limits_;
  size_t max_fragment_payload_;  // computed from limits_ at construction
};

}  // namespace udpmsg::proto

#endif  // UDPMSG_PROTO_CODEC_H_
