#include "tests/proto/sample_packets.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "proto/codec.h"
#include "proto/frames.h"

namespace udpmsg::proto::testing {
namespace {

// Uniform in [0, max], but with the bit length drawn first so that small,
// medium and huge values are all common.
uint64_t Number(std::mt19937_64& rng, uint64_t max) {
  if (max == 0) return 0;
  const int bits = std::uniform_int_distribution<int>(0, 64)(rng);
  const uint64_t cap =
      bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1;
  return std::uniform_int_distribution<uint64_t>(0, std::min(cap, max))(rng);
}

bool Coin(std::mt19937_64& rng, double p = 0.5) {
  return std::bernoulli_distribution(p)(rng);
}

std::string Bytes(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

uint64_t ConnectionId(std::mt19937_64& rng) {
  return std::max<uint64_t>(1, Number(rng, ~uint64_t{0}));
}

uint32_t Budget(std::mt19937_64& rng) {
  return static_cast<uint32_t>(
      std::uniform_int_distribution<size_t>(kMinDatagram, kMaxDatagram)(rng));
}

Close RandomClose(std::mt19937_64& rng) {
  Close c;
  c.code = static_cast<uint32_t>(Number(rng, 0xFFFFFFFF));
  c.reason = Bytes(rng, Number(rng, kMaxReasonBytes));
  return c;
}

Ack RandomAck(std::mt19937_64& rng) {
  Ack ack;
  ack.ack_delay = absl::Microseconds(
      static_cast<int64_t>(Number(rng, uint64_t{3600} * 1000 * 1000)));
  const size_t n = std::uniform_int_distribution<size_t>(1, kMaxAckRanges)(rng);
  uint64_t largest = Number(rng, kMaxSequenceNumber - 1);
  for (size_t i = 0; i < n; ++i) {
    // Divide what is left among the remaining ranges so that huge gaps
    // still leave room for the next ones.
    const uint64_t share = largest / (n - i) / 2;
    const uint64_t length = Number(rng, share);
    AckRange r{largest - length, largest};
    ack.ranges.push_back(r);
    const uint64_t gap = Number(rng, share);
    if (r.smallest < 2 + gap) break;
    largest = r.smallest - 2 - gap;
  }
  return ack;
}

DataFragment RandomFragment(std::mt19937_64& rng, const Codec::Limits& limits,
                            size_t max_payload) {
  DataFragment d;
  d.channel = static_cast<uint32_t>(Number(rng, 0xFFFFFFFF));
  d.mode = static_cast<uint32_t>(Number(rng, kMaxDeliveryMode));
  d.sequence = Number(rng, kMaxSequenceNumber - 1);
  d.payload = Bytes(rng, Number(rng, max_payload));
  if (Coin(rng, 0.1) && d.payload.empty()) {
    d.total_size = 0;
    d.count = 1;
    d.index = 0;
    return d;
  }
  d.total_size = std::max<uint64_t>(
      {uint64_t{1}, d.payload.size(),
       Number(rng, limits.max_message_bytes)});
  d.total_size = std::min(d.total_size, limits.max_message_bytes);
  if (d.total_size < d.payload.size()) d.payload.resize(d.total_size);
  const uint64_t max_count =
      std::min<uint64_t>(limits.max_fragments, std::max<uint64_t>(d.total_size, 1));
  d.count = static_cast<uint32_t>(std::max<uint64_t>(1, Number(rng, max_count)));
  d.index = static_cast<uint32_t>(Number(rng, d.count - 1));
  if ((d.total_size + d.count - 1) / d.count >= kMinRunFragmentBytes && Coin(rng, 0.25)) {
    d.run = static_cast<uint32_t>(1 + Number(rng, d.count - d.index - 1));
  }
  return d;
}

}  // namespace

Ack MakeAck(size_t n, uint64_t largest) {
  Ack ack;
  ack.ack_delay = absl::Microseconds(1234);
  for (size_t i = 0; i < n; ++i) {
    const uint64_t length = i % 3;
    ack.ranges.push_back({largest - length, largest});
    largest = largest - length - 2 - (i % 5);
  }
  return ack;
}

DataFragment MakeFragment(uint32_t channel, uint64_t sequence, uint32_t index,
                          uint32_t count, size_t payload_size) {
  DataFragment d;
  d.channel = channel;
  d.mode = 3;
  d.sequence = sequence;
  d.index = index;
  d.count = count;
  d.total_size = std::max<uint64_t>(payload_size * count, count);
  d.payload.resize(payload_size);
  for (size_t i = 0; i < payload_size; ++i) {
    d.payload[i] = static_cast<char>('a' + i % 26);
  }
  return d;
}

std::vector<NamedPacket> SamplePackets() {
  std::vector<NamedPacket> out;
  auto add = [&out](std::string name, Packet p) {
    out.push_back({std::move(name), std::move(p)});
  };
  {
    Packet p;
    p.hello = Hello{0x1122334455667788, "", 1200};
    add("hello", p);
    p.hello->cookie = std::string(kMaxCookieBytes, 'c');
    add("hello_cookie", p);
  }
  {
    Packet p;
    p.challenge = Challenge{0x1122334455667788, std::string(32, 'k')};
    add("challenge", p);
  }
  {
    Packet p;
    p.connection_id = 0x1122334455667788;
    p.accept = Accept{0x1122334455667788, 0x99AABBCCDDEEFF00, 1400, 1 << 24,
                      4096};
    add("accept", p);
  }
  {
    Packet p;
    p.connection_id = 0x99AABBCCDDEEFF00;
    p.packet_number = 77;
    p.ack = MakeAck(1);
    add("ack_1_range", p);
    p.ack = MakeAck(kMaxAckRanges, 100000);
    add("ack_32_ranges", p);
  }
  {
    Packet p;
    p.connection_id = 0x99AABBCCDDEEFF00;
    p.packet_number = 78;
    p.data.push_back(MakeFragment(1, 5, 0, 1, 64));
    add("data", p);
    p.data.clear();
    for (uint32_t i = 0; i < 3; ++i) {
      p.data.push_back(MakeFragment(2, 9, i, 3, 200));
    }
    add("data_fragments", p);
    p.data.clear();
    DataFragment empty;
    empty.channel = 4;
    empty.sequence = 1;
    p.data.push_back(empty);
    add("data_empty_message", p);
  }
  {
    Packet p;
    p.connection_id = 0x99AABBCCDDEEFF00;
    p.packet_number = 79;
    p.ping.emplace();
    add("ping", p);
  }
  {
    Packet p;
    p.connection_id = 0x99AABBCCDDEEFF00;
    p.packet_number = 82;
    p.ack_frequency = AckFrequency{3, 10};
    add("ack_frequency", p);
  }
  {
    Packet p;
    p.connection_id = 0x99AABBCCDDEEFF00;
    p.packet_number = 83;
    p.path_challenge = PathChallenge{0xF00DFACECAFEBEEF};
    p.pad_to = 1200;  // as a server sends it (RFC 9000 8.2.1)
    add("path_challenge", p);
    p.path_challenge.reset();
    p.pad_to = 0;
    p.packet_number = 84;
    p.path_response = PathResponse{0xF00DFACECAFEBEEF};
    p.ack = Ack{{AckRange{80, 83}}, absl::Milliseconds(1)};
    add("path_response", p);
  }
  {
    Packet p;
    p.connection_id = 0x99AABBCCDDEEFF00;
    p.packet_number = 80;
    p.close = Close{kCloseIdleTimeout, "idle for 30s"};
    add("close", p);
  }
  {
    Packet p;
    p.connection_id = 0x99AABBCCDDEEFF00;
    p.packet_number = 81;
    p.ack = MakeAck(4);
    p.data.push_back(MakeFragment(1, 6, 0, 2, 100));
    p.data.push_back(MakeFragment(1, 6, 1, 2, 100));
    p.ping.emplace();
    p.close = Close{kCloseApplication, "bye"};
    add("everything", p);
  }
  {
    Packet p;
    p.accept = Accept{0x1122334455667788, 0x99AABBCCDDEEFF00, 1400, 1 << 24,
                      4096};
    p.close = Close{kCloseServerFull, "server full"};
    add("accept_close", p);
  }
  return out;
}

Packet RandomValidPacket(std::mt19937_64& rng, const Codec::Limits& limits) {
  const Codec codec(limits);
  Packet p;
  const int kind = std::uniform_int_distribution<int>(0, 9)(rng);
  if (kind < 3) {
    if (kind == 0) {
      p.hello = Hello{ConnectionId(rng), Bytes(rng, Number(rng, kMaxCookieBytes)),
                      Budget(rng)};
    } else if (kind == 1) {
      p.challenge =
          Challenge{ConnectionId(rng), Bytes(rng, Number(rng, kMaxCookieBytes))};
    } else {
      p.connection_id = Number(rng, ~uint64_t{0});
      p.accept = Accept{ConnectionId(rng), ConnectionId(rng), Budget(rng),
                        Number(rng, ~uint64_t{0}),
                        static_cast<uint32_t>(Number(rng, 0xFFFFFFFF))};
    }
    if (Coin(rng, 0.2)) p.close = RandomClose(rng);
    return p;
  }
  p.connection_id = Number(rng, ~uint64_t{0});
  p.packet_number = Number(rng, kMaxSequenceNumber - 1);
  if (Coin(rng, 0.6)) p.ack = RandomAck(rng);
  const size_t frames = std::min<size_t>(
      limits.max_data_frames,
      std::uniform_int_distribution<size_t>(0, 4)(rng));
  const size_t room = codec.limits().max_datagram;
  for (size_t i = 0; i < frames; ++i) {
    p.data.push_back(RandomFragment(rng, codec.limits(), room / (frames + 1)));
  }
  if (Coin(rng, 0.3)) p.ping.emplace();
  if (Coin(rng, 0.1)) p.close = RandomClose(rng);
  if (Coin(rng, 0.05)) p.path_challenge = PathChallenge{Number(rng, ~uint64_t{0})};
  if (Coin(rng, 0.05)) p.path_response = PathResponse{Number(rng, ~uint64_t{0})};
  if (Coin(rng, 0.1)) {
    p.ack_frequency = AckFrequency{Number(rng, kMaxSequenceNumber - 1),
                                   static_cast<uint32_t>(1 + Number(rng, kMaxAckFrequencyThreshold - 1))};
  }
  // Trim until it fits: drop frames, then shorten the last payload.
  while (codec.EncodedSize(p) > room && !p.data.empty()) p.data.pop_back();
  if (codec.EncodedSize(p) > room) p.close.reset();
  if (codec.EncodedSize(p) > room) p.ack.reset();
  return p;
}

}  // namespace udpmsg::proto::testing
