// libFuzzer entry for the codec: decodes the input; whatever decodes must
// re-encode (Encode accepts everything Decode accepts), with EncodedSize
// predicting the size, and decode again to the same packet. Differential:
// Decode, DecodeView and DecodeViewInto (into one Packet reused from input to
// input, as the receive path does) (the hand-written parser for established
// packets, protobuf for the rest) must agree with DecodeWithProtobuf on every input,
// accept or reject, the reason and every field; the input is tried as it
// is and with its CRC recomputed, so the parsers see it. Aborts otherwise.
//
// Built with libFuzzer by fuzz/run.sh, and with the normal toolchain into
// //fuzz:codec_fuzz_smoke, which calls the entry directly.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/codec.h"
#include "proto/frames.h"
#include "proto/frames_util.h"

namespace {

using udpmsg::proto::Codec;
using udpmsg::proto::Packet;

[[noreturn]] void Die(const char* what, const absl::Status& status,
                      const Packet* packet) {
  std::fprintf(stderr, "codec_fuzzer: %s: %s\n%s\n", what,
               status.ToString().c_str(),
               packet ? udpmsg::proto::PacketDebugString(*packet).c_str() : "");
  std::abort();
}

const Codec& DefaultCodec() {
  static const Codec* codec = new Codec(Codec::Limits{});
  return *codec;
}

// Same limits but the largest budget: a re-encoding may be a few bytes longer
// than the datagram it came from (canonical packed fields, say).
const Codec& RoomyCodec() {
  static const Codec* codec = [] {
    Codec::Limits limits;
    limits.max_datagram = udpmsg::proto::kMaxDatagram;
    return new Codec(limits);
  }();
  return *codec;
}

// The fast parser and protobuf agree on `datagram`.
void CheckParsersAgree(const Codec& codec, absl::string_view datagram) {
  const absl::StatusOr<Packet> reference = codec.DecodeWithProtobuf(datagram);
  const absl::StatusOr<Packet> fast = codec.Decode(datagram);
  const absl::StatusOr<Packet> view = codec.DecodeView(datagram);
  static Packet* const reused = new Packet;
  const absl::Status into_status = codec.DecodeViewInto(datagram, reused);
  const absl::StatusOr<Packet> into =
      into_status.ok() ? absl::StatusOr<Packet>(*reused) : absl::StatusOr<Packet>(into_status);
  for (const absl::StatusOr<Packet>* got : {&fast, &view, &into}) {
    if (got->status() != reference.status()) {
      Die("the fast parser and protobuf disagree", got->status(),
          reference.ok() ? &*reference : nullptr);
    }
    if (reference.ok() && !udpmsg::proto::PacketsEqual(**got, *reference)) {
      Die("the fast parser decoded another packet than protobuf", absl::OkStatus(), &**got);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Codec& codec = DefaultCodec();
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  CheckParsersAgree(codec, input);
  if (size >= udpmsg::proto::kFramingBytes) {
    // Most inputs fail the CRC; with it fixed the parsers see them.
    std::string fixed(input);
    fixed[0] = static_cast<char>(udpmsg::proto::kProtocolVersion);
    const size_t covered = fixed.size() - 4;
    const uint32_t crc = udpmsg::proto::Crc32c(absl::string_view(fixed).substr(0, covered));
    for (int i = 0; i < 4; ++i) fixed[covered + i] = static_cast<char>(crc >> (8 * i));
    CheckParsersAgree(codec, fixed);
  }
  absl::StatusOr<Packet> decoded = codec.Decode(input);
  if (!decoded.ok()) {
    if (decoded.status().code() != absl::StatusCode::kInvalidArgument) {
      Die("Decode failed with an unexpected code", decoded.status(), nullptr);
    }
    return 0;
  }
  const Codec* encoder = &codec;
  absl::StatusOr<std::string> again = encoder->Encode(*decoded);
  if (again.status().code() == absl::StatusCode::kResourceExhausted) {
    encoder = &RoomyCodec();
    again = encoder->Encode(*decoded);
  }
  if (!again.ok()) {
    Die("a decoded packet does not encode", again.status(), &*decoded);
  }
  if (again->size() != encoder->EncodedSize(*decoded)) {
    Die("EncodedSize differs from Encode's size", absl::OkStatus(), &*decoded);
  }
  absl::StatusOr<Packet> twice = RoomyCodec().Decode(*again);
  if (!twice.ok()) {
    Die("a re-encoded packet does not decode", twice.status(), &*decoded);
  }
  if (!udpmsg::proto::PacketsEqual(*decoded, *twice)) {
    Die("decode(encode(p)) != p", absl::OkStatus(), &*decoded);
  }
  return 0;
}
