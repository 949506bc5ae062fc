// Writes the seed corpora of the endpoint and reassembler fuzzers:
//
//   bazel run //fuzz:make_fuzz_corpus -- endpoint "$PWD/fuzz/corpus/endpoint"
//   bazel run //fuzz:make_fuzz_corpus -- reassembler "$PWD/fuzz/corpus/reassembler"
//
// Endpoint inputs are recorded conversations: real client Endpoints (fixed
// seeds) talk to the harness's server through EndpointHarness::Step, and
// every datagram they send becomes a record, so replaying a file drives the
// server through the same handshakes, data, acks, closes and timeouts (the
// harness and the server are deterministic). Reassembler inputs are
// hand-built operation sequences (format: fuzz/reassembler_fuzzer.cc).
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "fuzz/endpoint_harness.h"
#include "proto/codec.h"
#include "proto/frames.h"
#include "reliable/endpoint.h"

namespace udpmsg::fuzz {
namespace {

using reliable::DeliveryMode;
using reliable::Endpoint;

// A harness plus the input that reproduces what was done to it.
class Recorder {
 public:
  Recorder() { clients_[0] = &harness_.client(); }

  // A further real client at ClientAddress(index), index 1..7.
  Endpoint& AddClient(int index) {
    reliable::EndpointOptions o = ClientOptions();
    o.seed += 100 + index;
    owned_.push_back(std::make_unique<Endpoint>(harness_.now(), o));
    clients_[index] = owned_.back().get();
    return *owned_.back();
  }

  std::vector<reliable::Outgoing> Step(uint8_t flags, uint8_t advance, absl::string_view bytes) {
    AppendRecord(&input_, flags, advance, bytes);
    return harness_.Step(flags, advance, bytes);
  }

  // Moves datagrams between the clients and the server for `rounds` rounds,
  // advancing the clock by `advance` (a record's advance byte) each round.
  // `batched`: each client's datagrams of a round reach the server as one
  // receive batch (flags bit 7 on all but the last).
  void Exchange(int rounds, uint8_t advance = 2, bool batched = false) {
    for (int round = 0; round < rounds; ++round) {
      bool first = true;
      for (auto& [index, client] : clients_) {
        if (client->NextTimeout() <= harness_.now()) client->OnTimeout(harness_.now());
        std::vector<reliable::Outgoing> out = client->TakeOutgoing();
        for (size_t i = 0; i < out.size(); ++i) {
          uint8_t flags = static_cast<uint8_t>(index) | kRepairFraming;
          if (batched && i + 1 < out.size()) flags |= kBatched;
          Route(Step(flags, first ? advance : 0, out[i].bytes));
          first = false;
        }
        client->TakeEvents();
      }
      if (first) Tick(advance);
    }
  }

  // Moves the clock: an empty datagram from address 7 (counted as malformed).
  void Tick(uint8_t advance) { Route(Step(7, advance, "")); }

  void Route(const std::vector<reliable::Outgoing>& out) {
    for (const reliable::Outgoing& o : out) {
      for (auto& [index, client] : clients_) {
        if (ClientAddress(index) == o.peer) client->OnDatagram(harness_.now(), ServerAddress(), o.bytes);
      }
    }
  }

  EndpointHarness& harness() { return harness_; }
  const std::string& input() const { return input_; }

 private:
  EndpointHarness harness_;
  std::map<int, Endpoint*> clients_;
  std::vector<std::unique_ptr<Endpoint>> owned_;
  std::string input_;
};

std::string Bytes(size_t n, int salt) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 31 + salt) & 0xFF);
  return s;
}

// The established client queues a short message in each delivery mode.
void SendEveryMode(Recorder& r) {
  Endpoint& c = r.harness().client();
  for (int mode = 0; mode < 4; ++mode) {
    (void)c.Send(r.harness().now(), r.harness().client_id(), mode, static_cast<DeliveryMode>(mode),
                 Bytes(10 + mode, mode));
  }
}

std::map<std::string, std::string> EndpointCorpus() {
  std::map<std::string, std::string> corpus;
  {  // the established client sends in every mode, small and fragmented
    Recorder r;
    SendEveryMode(r);
    Endpoint& c = r.harness().client();
    const reliable::ConnectionId id = r.harness().client_id();
    (void)c.Send(r.harness().now(), id, 1, DeliveryMode::kReliableOrdered, Bytes(5000, 7));
    (void)c.Send(r.harness().now(), id, 2, DeliveryMode::kReliableUnordered, "");
    r.Exchange(12);
    corpus["client_messages"] = r.input();
  }
  {  // the same in receive batches: the server answers each batch once
    Recorder r;
    SendEveryMode(r);
    Endpoint& c = r.harness().client();
    const reliable::ConnectionId id = r.harness().client_id();
    (void)c.Send(r.harness().now(), id, 1, DeliveryMode::kReliableOrdered, Bytes(20000, 9));
    r.Exchange(12, 2, /*batched=*/true);
    // A batch that ends with the client's close.
    (void)c.Send(r.harness().now(), id, 1, DeliveryMode::kReliableOrdered, Bytes(3000, 10));
    (void)c.Close(r.harness().now(), id, "bye", /*flush=*/false);
    r.Exchange(4, 2, /*batched=*/true);
    corpus["client_batches"] = r.input();
  }
  {  // the server sends (application records); the client acks
    Recorder r;
    r.Route(r.Step(kAppAction | (3 << 5), 1, Bytes(3000, 1)));
    r.Route(r.Step(kAppAction | 1 | (2 << 5), 1, Bytes(20, 2)));
    r.Route(r.Step(kAppAction | 2 | (1 << 5), 1, Bytes(20, 3)));
    r.Route(r.Step(kAppAction | 3, 1, Bytes(20, 4)));
    r.Exchange(10, 30);
    corpus["server_messages_acked"] = r.input();
  }
  {  // the server's messages are lost: retransmissions, then the client acks
    Recorder r;
    r.Step(kAppAction | (3 << 5), 1, Bytes(2500, 5));
    r.Tick(127);
    r.Tick(127);
    r.Tick(128);
    r.Exchange(8, 20);
    corpus["server_retransmits"] = r.input();
  }
  {  // more clients: hello, challenge, hello with cookie, accept; the table
     // fills (kMaxConnections) and the last one is refused
    Recorder r;
    for (int index = 1; index <= 4; ++index) {
      Endpoint& c = r.AddClient(index);
      (void)c.Connect(r.harness().now(), ServerAddress());
    }
    r.Exchange(8);
    corpus["four_more_clients"] = r.input();
  }
  {  // a second client connects and sends while the first one idles out
    Recorder r;
    Endpoint& c = r.AddClient(5);
    (void)c.Connect(r.harness().now(), ServerAddress());
    r.Exchange(4);
    r.Exchange(12, 130);
    corpus["second_client_and_idle"] = r.input();
  }
  {  // the client closes; stray packets after the close
    Recorder r;
    Endpoint& c = r.harness().client();
    (void)c.Send(r.harness().now(), r.harness().client_id(), 0, DeliveryMode::kReliableOrdered,
                 Bytes(100, 9));
    r.Exchange(3);
    (void)c.Close(r.harness().now(), r.harness().client_id(), "bye", true);
    r.Exchange(6);
    r.Exchange(3, 140);
    corpus["client_close"] = r.input();
  }
  {  // the server application closes, with and without flushing
    Recorder r;
    r.Route(r.Step(kAppAction | (3 << 5), 1, Bytes(1500, 6)));
    r.Route(r.Step(kAppAction | kAppClose | (1 << 5), 1, ""));
    r.Exchange(6, 50);
    corpus["server_close"] = r.input();
  }
  {  // a client's datagram from the wrong address, garbage, short hellos
    Recorder r;
    Endpoint& c = r.harness().client();
    (void)c.Send(r.harness().now(), r.harness().client_id(), 0, DeliveryMode::kReliableOrdered,
                 Bytes(50, 10));
    for (reliable::Outgoing& o : c.TakeOutgoing()) {
      r.Step(3 | kRepairFraming, 1, o.bytes);
      r.Step(0, 1, o.bytes);
    }
    r.Step(6, 1, Bytes(40, 11));
    r.Step(6 | kRepairFraming, 1, Bytes(40, 12));
    proto::Codec codec(proto::Codec::Limits{});
    proto::Packet hello;
    hello.hello.emplace();
    hello.hello->client_connection_id = 42;
    absl::StatusOr<std::string> padded = codec.Encode(hello);
    if (padded.ok()) {
      r.Step(7, 1, *padded);
      r.Step(7 | kRepairFraming, 1, padded->substr(0, 300));  // too short
    }
    corpus["wrong_address_garbage_hellos"] = r.input();
  }
  return corpus;
}

// Reassembler inputs: limits (2+2+1+2 bytes), then operations.
std::string ReassemblerLimits(uint16_t max_message, uint16_t buffered_quarter, uint8_t partials,
                              uint16_t timeout_ms) {
  std::string s;
  auto put = [&s](uint64_t v, int n) {
    for (int i = 0; i < n; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
  };
  put(max_message, 2);
  put(buffered_quarter, 2);
  put(partials, 1);
  put(timeout_ms, 2);
  return s;
}

// An Add with the layout's own payload length (small form).
std::string Add(uint8_t advance, uint8_t seq, uint8_t index, uint8_t count, uint16_t total,
                uint8_t key_bits = 0) {
  std::string s;
  s.push_back(static_cast<char>(0 | key_bits));
  s.push_back(static_cast<char>(advance));
  s.push_back(static_cast<char>(seq));
  s.push_back(static_cast<char>(index));
  s.push_back(static_cast<char>(count));
  s.push_back(static_cast<char>(total & 0xFF));
  s.push_back(static_cast<char>(total >> 8));
  s.push_back(0);  // length (ignored: the layout's)
  s.push_back(0);
  absl::StatusOr<reliable::FragmentLayout> layout = reliable::LayoutOf(index, count, total);
  if (layout.ok()) s += Bytes(layout->length, index);
  return s;
}

// The same with op bit 4: the in-order buffer may grow by `allowance`
// (three bytes after the payload).
std::string AddGrowing(uint8_t advance, uint8_t seq, uint8_t index, uint8_t count, uint16_t total,
                       uint32_t allowance) {
  std::string s = Add(advance, seq, index, count, total, 0x10);
  for (int i = 0; i < 3; ++i) s.push_back(static_cast<char>(allowance >> (8 * i)));
  return s;
}

std::string Op(uint8_t op, uint8_t advance, uint8_t seq) {
  return std::string{static_cast<char>(op), static_cast<char>(advance), static_cast<char>(seq)};
}

std::map<std::string, std::string> ReassemblerCorpus() {
  std::map<std::string, std::string> corpus;
  const std::string roomy = ReassemblerLimits(60000, 60000, 8, 5000);
  corpus["in_order"] = roomy + Add(1, 1, 0, 3, 1000) + Add(1, 1, 1, 3, 1000) + Add(1, 1, 2, 3, 1000);
  corpus["reverse_with_duplicate"] = roomy + Add(1, 2, 4, 5, 999) + Add(1, 2, 3, 5, 999) +
                                     Add(1, 2, 3, 5, 999) + Add(1, 2, 2, 5, 999) +
                                     Add(1, 2, 1, 5, 999) + Add(1, 2, 0, 5, 999);
  corpus["interleaved_keys"] = roomy + Add(1, 1, 0, 2, 300) + Add(1, 1, 0, 2, 300, 4) +
                               Add(1, 1, 0, 2, 300, 8) + Add(1, 1, 1, 2, 300, 4) +
                               Add(1, 1, 1, 2, 300) + Add(1, 1, 1, 2, 300, 8);
  // In-order buffer: in order, a gap that fills, a duplicate of a buffered
  // fragment, and growth that does not fit its allowance.
  corpus["in_order_buffer"] = roomy + AddGrowing(1, 1, 0, 4, 1000, 100000) +
                              AddGrowing(1, 1, 1, 4, 1000, 100000) +
                              AddGrowing(1, 1, 3, 4, 1000, 100000) +
                              AddGrowing(1, 1, 1, 4, 1000, 100000) +
                              AddGrowing(1, 1, 2, 4, 1000, 100000);
  corpus["in_order_buffer_tight"] = roomy + AddGrowing(1, 2, 0, 5, 1000, 250) +
                                    AddGrowing(1, 2, 1, 5, 1000, 100) +
                                    AddGrowing(1, 2, 2, 5, 1000, 0) +
                                    AddGrowing(1, 2, 3, 5, 1000, 900) + Add(1, 2, 4, 5, 1000);
  corpus["single_and_empty"] = roomy + Add(0, 3, 0, 1, 500) + Add(0, 3, 0, 1, 0);
  corpus["inconsistent_header"] = roomy + Add(1, 4, 0, 3, 900) + Add(1, 4, 1, 4, 900) +
                                  Add(1, 4, 1, 3, 901) + Add(1, 4, 0, 1, 900) +
                                  Add(1, 4, 1, 3, 900) + Add(1, 4, 2, 3, 900);
  corpus["expire_then_late_fragment"] = roomy + Add(1, 5, 0, 2, 400) + Op(2, 255, 0) +
                                        Op(0x82, 255, 0) + Add(1, 5, 1, 2, 400);
  corpus["discard"] = roomy + Add(1, 6, 0, 2, 100) + Op(3, 1, 6) + Add(1, 6, 1, 2, 100);
  corpus["over_limits"] = ReassemblerLimits(2000, 200, 2, 1000) + Add(1, 1, 0, 4, 1600) +
                          Add(1, 2, 0, 4, 1600) + Add(1, 3, 0, 4, 1600) + Add(1, 1, 1, 4, 1600) +
                          Add(1, 1, 2, 4, 1600) + Add(1, 7, 0, 2, 2001);
  // Wide headers (op bit 6): 32-bit index/count, 64-bit total size.
  std::string wide = roomy;
  wide += std::string{0x40, 1, 1};
  for (uint64_t v : {uint64_t{0}, uint64_t{2}}) {
    for (int i = 0; i < 4; ++i) wide.push_back(static_cast<char>(v >> (8 * i)));
  }
  wide += std::string(8, '\xFF');
  wide += std::string(2, '\0');
  corpus["wide_header"] = wide;
  return corpus;
}

}  // namespace
}  // namespace udpmsg::fuzz

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: make_fuzz_corpus endpoint|reassembler OUTPUT_DIR\n");
    return 2;
  }
  const std::string target = argv[1];
  std::map<std::string, std::string> corpus;
  if (target == "endpoint") {
    corpus = udpmsg::fuzz::EndpointCorpus();
  } else if (target == "reassembler") {
    corpus = udpmsg::fuzz::ReassemblerCorpus();
  } else {
    std::fprintf(stderr, "make_fuzz_corpus: unknown target %s\n", target.c_str());
    return 2;
  }
  for (const auto& [name, bytes] : corpus) {
    const std::string path = std::string(argv[2]) + "/" + name;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) {
      std::fprintf(stderr, "make_fuzz_corpus: cannot write %s\n", path.c_str());
      return 1;
    }
    std::printf("%s (%zu bytes)\n", path.c_str(), bytes.size());
  }
  return 0;
}
