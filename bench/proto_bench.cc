// Codec cost per data frame: the protobuf codec (proto/codec.h) against a
// hand-packed fixed header (big-endian fields + payload + CRC32C) doing the
// same job (same typed Packet in and out, same checks that matter), so
// protobuf's share is a known ratio. Also the CRC alone.
//
//   ./bazelw run -c opt //bench:proto_bench
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "benchmark/benchmark.h"
#include "proto/codec.h"
#include "proto/crc32c.h"
#include "proto/frames.h"

namespace udpmsg::proto {
namespace {

// Budget 1500 so that a 1150-byte payload fits next to the header.
Codec::Limits BenchLimits() {
  Codec::Limits limits;
  limits.max_datagram = 1500;
  return limits;
}

Packet DataPacket(size_t payload) {
  Packet p;
  p.connection_id = 0x8F3A5C7E91B2D4E6;  // random ids use all 8 bytes
  p.packet_number = 123456;
  DataFragment d;
  d.channel = 1;
  d.mode = 3;
  d.sequence = 98765;
  d.index = 0;
  d.count = 1;
  d.total_size = payload;
  d.payload.assign(payload, 'x');
  p.data.push_back(d);
  return p;
}

// ---------------------------------------------------------------------------
// The hand-packed alternative: one data frame, fixed layout.
//   version 1 | connection id 8 | packet number 8 | channel 4 | mode 1 |
//   sequence 8 | index 4 | count 4 | total size 8 | payload length 2 |
//   payload | CRC32C 4 (little-endian, as the codec's)
constexpr size_t kFixedHeader = 1 + 8 + 8 + 4 + 1 + 8 + 4 + 4 + 8 + 2;

void Put(uint8_t*& p, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) *p++ = static_cast<uint8_t>(v >> (8 * i));
}

uint64_t Get(const uint8_t*& p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = v << 8 | *p++;
  return v;
}

std::string FixedEncode(const Packet& packet) {
  const DataFragment& d = packet.data[0];
  std::string out(kFixedHeader + d.payload.size() + 4, '\0');
  auto* p = reinterpret_cast<uint8_t*>(out.data());
  Put(p, kProtocolVersion, 1);
  Put(p, packet.connection_id, 8);
  Put(p, packet.packet_number, 8);
  Put(p, d.channel, 4);
  Put(p, d.mode, 1);
  Put(p, d.sequence, 8);
  Put(p, d.index, 4);
  Put(p, d.count, 4);
  Put(p, d.total_size, 8);
  Put(p, d.payload.size(), 2);
  std::memcpy(p, d.payload.data(), d.payload.size());
  p += d.payload.size();
  const uint32_t crc = Crc32c(absl::string_view(out.data(), out.size() - 4));
  for (int i = 0; i < 4; ++i) *p++ = static_cast<uint8_t>(crc >> (8 * i));
  return out;
}

absl::StatusOr<Packet> FixedDecode(absl::string_view in) {
  if (in.size() < kFixedHeader + 4 || in.size() > 1500) {
    return absl::InvalidArgumentError("size");
  }
  const auto* p = reinterpret_cast<const uint8_t*>(in.data());
  const size_t covered = in.size() - 4;
  const uint32_t stored = uint32_t{p[covered]} | uint32_t{p[covered + 1]} << 8 |
                          uint32_t{p[covered + 2]} << 16 |
                          uint32_t{p[covered + 3]} << 24;
  if (p[0] != kProtocolVersion) return absl::InvalidArgumentError("version");
  if (Crc32c(in.substr(0, covered)) != stored) {
    return absl::InvalidArgumentError("checksum mismatch");
  }
  ++p;
  Packet packet;
  packet.connection_id = Get(p, 8);
  packet.packet_number = Get(p, 8);
  DataFragment& d = packet.data.emplace_back();
  d.channel = static_cast<uint32_t>(Get(p, 4));
  d.mode = static_cast<uint32_t>(Get(p, 1));
  d.sequence = Get(p, 8);
  d.index = static_cast<uint32_t>(Get(p, 4));
  d.count = static_cast<uint32_t>(Get(p, 4));
  d.total_size = Get(p, 8);
  const size_t length = Get(p, 2);
  if (length != covered - kFixedHeader || packet.packet_number >= kMaxSequenceNumber ||
      d.sequence >= kMaxSequenceNumber || d.mode > kMaxDeliveryMode ||
      d.count == 0 || d.index >= d.count || length > d.total_size) {
    return absl::InvalidArgumentError("range");
  }
  d.payload.assign(reinterpret_cast<const char*>(p), length);
  return packet;
}

// ---------------------------------------------------------------------------

void BM_ProtoEncode(benchmark::State& state) {
  const Codec codec(BenchLimits());
  const Packet packet = DataPacket(static_cast<size_t>(state.range(0)));
  size_t bytes = 0;
  for (auto _ : state) {
    absl::StatusOr<std::string> out = codec.Encode(packet);
    bytes = out->size();
    benchmark::DoNotOptimize(out);
  }
  state.counters["datagram_bytes"] = static_cast<double>(bytes);
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

void BM_ProtoDecode(benchmark::State& state) {
  const Codec codec(BenchLimits());
  const std::string in =
      *codec.Encode(DataPacket(static_cast<size_t>(state.range(0))));
  for (auto _ : state) {
    absl::StatusOr<Packet> out = codec.Decode(in);
    if (!out.ok()) state.SkipWithError("decode failed");
    benchmark::DoNotOptimize(out);
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

// The same decode through protobuf alone (the codec's reference parser, and
// what Decode did for every packet before the hand-written hot path).
void BM_ProtoDecodeWithProtobuf(benchmark::State& state) {
  const Codec codec(BenchLimits());
  const std::string in =
      *codec.Encode(DataPacket(static_cast<size_t>(state.range(0))));
  for (auto _ : state) {
    absl::StatusOr<Packet> out = codec.DecodeWithProtobuf(in);
    if (!out.ok()) state.SkipWithError("decode failed");
    benchmark::DoNotOptimize(out);
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

// The receive path's decode: payloads borrowed from the datagram.
void BM_ProtoDecodeView(benchmark::State& state) {
  const Codec codec(BenchLimits());
  const std::string in =
      *codec.Encode(DataPacket(static_cast<size_t>(state.range(0))));
  for (auto _ : state) {
    absl::StatusOr<Packet> out = codec.DecodeView(in);
    if (!out.ok()) state.SkipWithError("decode failed");
    benchmark::DoNotOptimize(out);
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

// The send path's encode: the payload borrowed from the sender's queue,
// written after room for a sealed header, one allocation per datagram.
void BM_ProtoEncodeInto(benchmark::State& state) {
  const Codec codec(BenchLimits());
  Packet packet = DataPacket(static_cast<size_t>(state.range(0)));
  const std::string queued = packet.data[0].payload;
  packet.data[0].payload.clear();
  packet.data[0].payload_ref = std::string_view(queued);
  for (auto _ : state) {
    std::string out;
    if (!codec.EncodeInto(packet, 17, 16, &out).ok()) state.SkipWithError("encode failed");
    benchmark::DoNotOptimize(out);
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

void BM_FixedEncode(benchmark::State& state) {
  const Packet packet = DataPacket(static_cast<size_t>(state.range(0)));
  size_t bytes = 0;
  for (auto _ : state) {
    std::string out = FixedEncode(packet);
    bytes = out.size();
    benchmark::DoNotOptimize(out);
  }
  state.counters["datagram_bytes"] = static_cast<double>(bytes);
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

void BM_FixedDecode(benchmark::State& state) {
  const std::string in =
      FixedEncode(DataPacket(static_cast<size_t>(state.range(0))));
  for (auto _ : state) {
    absl::StatusOr<Packet> out = FixedDecode(in);
    if (!out.ok()) state.SkipWithError("decode failed");
    benchmark::DoNotOptimize(out);
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

BENCHMARK(BM_ProtoEncode)->Arg(64)->Arg(1150);
BENCHMARK(BM_ProtoDecode)->Arg(64)->Arg(1150);
BENCHMARK(BM_ProtoDecodeWithProtobuf)->Arg(64)->Arg(1150);
BENCHMARK(BM_ProtoDecodeView)->Arg(64)->Arg(1150);
BENCHMARK(BM_ProtoEncodeInto)->Arg(64)->Arg(1150);
BENCHMARK(BM_FixedEncode)->Arg(64)->Arg(1150);
BENCHMARK(BM_FixedDecode)->Arg(64)->Arg(1150);

// One of the CRC32C paths behind Crc32c, when this CPU has it.
void RunCrcPath(benchmark::State& state, bool available, const char* missing,
                uint32_t (*extend)(uint32_t, absl::string_view)) {
  if (!available) {
    state.SkipWithError(missing);
    return;
  }
  const std::string in(static_cast<size_t>(state.range(0)), 'x');
  for (auto _ : state) {
    benchmark::DoNotOptimize(extend(0, in));
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

// What the codec calls: the best path this CPU has.
void BM_Crc32c(benchmark::State& state) { RunCrcPath(state, true, "", Crc32cExtend); }
BENCHMARK(BM_Crc32c)->Arg(64)->Arg(1150)->Arg(1472)->Arg(16384);

// Slice-by-8 tables, for CPUs without SSE4.2.
void BM_Crc32cPortable(benchmark::State& state) {
  RunCrcPath(state, true, "", crc32c_internal::ExtendPortable);
}
BENCHMARK(BM_Crc32cPortable)->Arg(64)->Arg(1150);

// One stream of crc32 instructions (what Crc32c used before the interleaved
// path): the comparison for BM_Crc32c.
void BM_Crc32cOneStream(benchmark::State& state) {
  RunCrcPath(state, crc32c_internal::HardwareAvailable(), "no SSE4.2",
             crc32c_internal::ExtendHardware);
}
BENCHMARK(BM_Crc32cOneStream)->Arg(64)->Arg(1150)->Arg(1472)->Arg(16384);

// Three interleaved crc32 streams (what Crc32c used before the folding path,
// and still does on CPUs without VPCLMULQDQ): the comparison for BM_Crc32c.
void BM_Crc32cInterleaved(benchmark::State& state) {
  RunCrcPath(state, crc32c_internal::InterleavedAvailable(), "no SSE4.2 + PCLMULQDQ",
             crc32c_internal::ExtendInterleaved);
}
BENCHMARK(BM_Crc32cInterleaved)->Arg(64)->Arg(1150)->Arg(1472)->Arg(16384);


}  // namespace
}  // namespace udpmsg::proto
