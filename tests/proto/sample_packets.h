// Valid packets for tests, fuzz corpora and benchmarks: one named sample per
// frame type, and seeded random valid packets.
#ifndef UDPMSG_TESTS_PROTO_SAMPLE_PACKETS_H_
#define UDPMSG_TESTS_PROTO_SAMPLE_PACKETS_H_

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "proto/codec.h"
#include "proto/frames.h"

namespace udpmsg::proto::testing {

struct NamedPacket {
  std::string name;  // a file-name-safe identifier, e.g. "hello_cookie"
  Packet packet;
};

// An ack of `n` ranges (1 <= n <= kMaxAckRanges) below `largest`, with gaps
// and lengths of a few packets.
Ack MakeAck(size_t n, uint64_t largest = 1000);

// A fragment of `payload_size` bytes ('a', 'b', ... repeating).
DataFragment MakeFragment(uint32_t channel, uint64_t sequence, uint32_t index,
                          uint32_t count, size_t payload_size);

// One valid packet per frame type and combination worth covering; each fits
// the default datagram budget (kDefaultMaxDatagram).
std::vector<NamedPacket> SamplePackets();

// A random packet that Codec(limits).Encode accepts: a handshake (hello,
// challenge or accept, maybe with close) or an established packet (ack, data,
// ping, close in any combination), numbers spread over every magnitude.
Packet RandomValidPacket(std::mt19937_64& rng, const Codec::Limits& limits);

}  // namespace udpmsg::proto::testing

#endif  // UDPMSG_TESTS_PROTO_SAMPLE_PACKETS_H_
