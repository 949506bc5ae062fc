// EndpointHarness: the endpoint fuzzer's world, shared by the fuzz entry
// (fuzz/endpoint_fuzzer.cc) and the corpus generator (fuzz/make_corpus.cc) so
// that generated inputs replay exactly.
//
// One server Endpoint (accept_incoming, fixed cookie secret and seed, small
// limits) with one connection already established at the start by a real
// client Endpoint at ClientAddress(0), also with fixed seeds: a fuzz input
// is then a sequence of records, each either a datagram from one of eight
// source addresses or an application action on the server's connection.
//
// Input format (little-endian), records until the input ends:
//   flags:1 advance:1 length:2 bytes[length]   (a short tail is truncated)
//   flags bits 0-2: source address index (0: the established client)
//   flags bit 3:    datagram: repair the version byte and the CRC32C, so
//                   mutated packets reach the parser and the connection
//   flags bit 4:    not a datagram: the server application Sends `bytes` on
//                   the established connection (mode = bits 5-6, channel =
//                   address index); with bit 7 also set, Closes it instead
//   flags bit 7:    datagram: held, and handed to the server with the next
//                   datagrams in one Endpoint::OnDatagrams call (a receive
//                   batch), at the first datagram without the bit, or before
//                   an application action, a hello or the input's end (at
//                   most kMaxBatch); a hello is always handed alone, so the
//                   harness knows which address it validated
//   advance:        the clock moves first: < 128: that many ms;
//                   otherwise (advance - 127) seconds
// After each record the harness runs OnTimeout when due, takes outgoing
// datagrams and events, and checks the invariants (aborting on violation):
//   - members() <= max_connections, unconfirmed_connections() <=
//     max_unconfirmed_connections, and connection_count() <= the table's
//     bound: both of those, the draining cap, and the connections that
//     closed since the last reap (at most members + unconfirmed)
//   - every datagram goes to an address that sent us something, and the bytes
//     sent to an address never validated (no connection accepted from it)
//     stay <= 3x the bytes received from it (anti-amplification)
//   - every event names a connection in the table, from a validated address
//     (accepted from it, or moved to it by path validation)
#ifndef UDPMSG_FUZZ_ENDPOINT_HARNESS_H_
#define UDPMSG_FUZZ_ENDPOINT_HARNESS_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "proto/codec.h"
#include "reliable/endpoint.h"
#include "udp/socket_address.h"

namespace udpmsg::fuzz {

inline constexpr size_t kMaxConnections = 4;
inline constexpr size_t kMaxUnconfirmed = 4;
inline constexpr size_t kMaxDraining = 4;
inline constexpr size_t kMaxTable = 2 * (kMaxConnections + kMaxUnconfirmed) + kMaxDraining;
inline constexpr size_t kRecordHeader = 4;
inline constexpr uint8_t kRepairFraming = 1 << 3;
inline constexpr uint8_t kAppAction = 1 << 4;
inline constexpr uint8_t kAppClose = 1 << 7;
inline constexpr uint8_t kBatched = 1 << 7;  // on a datagram record
inline constexpr size_t kMaxBatch = 64;

inline absl::Time StartTime() { return absl::FromUnixSeconds(1'700'000'000); }

inline udp::SocketAddress ServerAddress() { return *udp::SocketAddress::Parse("10.0.0.1:4000"); }

inline udp::SocketAddress ClientAddress(int index) {
  return *udp::SocketAddress::Parse(absl::StrCat("10.0.1.", index + 1, ":", 5000 + index));
}

inline reliable::ConnectionOptions SmallConnectionOptions() {
  reliable::ConnectionOptions o;
  o.max_message_bytes = 64 << 10;
  o.max_queued_bytes = 1 << 20;
  o.max_reassembly_bytes = 256 << 10;
  o.max_undelivered_bytes = 256 << 10;
  o.window = 256;
  o.max_channels = 8;
  return o;
}

inline reliable::EndpointOptions ServerOptions() {
  reliable::EndpointOptions o;
  o.connection = SmallConnectionOptions();
  o.accept_incoming = true;
  o.max_connections = kMaxConnections;
  o.max_unconfirmed_connections = kMaxUnconfirmed;
  o.max_draining_connections = kMaxDraining;
  reliable::CookieJar::Secret secret{};
  for (size_t i = 0; i < secret.size(); ++i) secret[i] = static_cast<uint8_t>(0x5A ^ i);
  o.cookie_secret = secret;
  o.seed = 0xF0220001;
  return o;
}

inline reliable::EndpointOptions ClientOptions() {
  reliable::EndpointOptions o;
  o.connection = SmallConnectionOptions();
  o.seed = 0xF0220002;
  return o;
}

inline absl::Duration Advance(uint8_t advance) {
  return advance < 128 ? absl::Milliseconds(advance) : absl::Seconds(advance - 127);
}

inline void AppendRecord(std::string* input, uint8_t flags, uint8_t advance,
                         absl::string_view bytes) {
  const size_t n = bytes.size() > 0xFFFF ? 0xFFFF : bytes.size();
  input->push_back(static_cast<char>(flags));
  input->push_back(static_cast<char>(advance));
  input->push_back(static_cast<char>(n & 0xFF));
  input->push_back(static_cast<char>(n >> 8));
  input->append(bytes.data(), n);
}

[[noreturn]] inline void HarnessDie(const std::string& what) {
  std::fprintf(stderr, "endpoint_fuzzer: invariant violated: %s\n", what.c_str());
  std::abort();
}

class EndpointHarness {
 public:
  // Builds the server and establishes the client's connection. The client
  // Endpoint is kept (the corpus generator drives it); the fuzz entry drops it.
  EndpointHarness()
      : now_(StartTime()),
        server_(std::make_unique<reliable::Endpoint>(now_, ServerOptions())),
        client_(std::make_unique<reliable::Endpoint>(now_, ClientOptions())) {
    absl::StatusOr<reliable::ConnectionId> id = client_->Connect(now_, ServerAddress());
    if (!id.ok()) HarnessDie(id.status().ToString());
    client_id_ = *id;
    bool client_up = false;
    bool server_up = false;
    for (int round = 0; round < 20 && !(client_up && server_up); ++round) {
      for (reliable::Outgoing& o : client_->TakeOutgoing()) {
        Account(ClientAddress(0), o.bytes.size(), /*in=*/true);
        server_->OnDatagram(now_, ClientAddress(0), o.bytes);
      }
      for (reliable::Outgoing& o : server_->TakeOutgoing()) {
        client_->OnDatagram(now_, ServerAddress(), o.bytes);
      }
      for (const reliable::Event& e : client_->TakeEvents()) {
        client_up |= e.type == reliable::Event::Type::kConnected;
      }
      for (const reliable::Event& e : server_->TakeEvents()) {
        if (e.type == reliable::Event::Type::kConnected) {
          server_up = true;
          server_id_ = e.connection;
        }
      }
      now_ += absl::Milliseconds(1);
    }
    if (!client_up || !server_up) HarnessDie("the setup handshake did not complete");
    validated_.insert(ClientAddress(0).ToString());
    accepted_ = server_->stats().accepted;
  }

  // Applies one record (see the file comment) and checks the invariants.
  // Returns what the server sent.
  std::vector<reliable::Outgoing> Step(uint8_t flags, uint8_t advance, absl::string_view bytes) {
    now_ += Advance(advance);
    const int index = flags & 7;
    const udp::SocketAddress from = ClientAddress(index);
    if (flags & kAppAction) {
      DeliverHeld();
      if (flags & kAppClose) {
        (void)server_->Close(now_, server_id_, "fuzz", (flags >> 5) & 1);
      } else {
        (void)server_->Send(now_, server_id_, static_cast<uint32_t>(index),
                            static_cast<reliable::DeliveryMode>((flags >> 5) & 3),
                            std::string(bytes));
      }
    } else {
      std::string datagram(bytes);
      if ((flags & kRepairFraming) && datagram.size() >= proto::kMinEncodedBytes) {
        datagram[0] = static_cast<char>(proto::kProtocolVersion);
        const size_t covered = datagram.size() - 4;
        const uint32_t crc = proto::Crc32c(absl::string_view(datagram).substr(0, covered));
        for (int i = 0; i < 4; ++i) datagram[covered + i] = static_cast<char>(crc >> (8 * i));
      }
      Account(from, datagram.size(), /*in=*/true);
      const absl::StatusOr<proto::Packet> parsed = server_->codec().Decode(datagram);
      if (parsed.ok() && parsed->hello) {
        DeliverHeld();
        server_->OnDatagram(now_, from, datagram);
        if (server_->stats().accepted != accepted_) {
          accepted_ = server_->stats().accepted;
          validated_.insert(from.ToString());
        }
      } else {
        held_.push_back({from, std::move(datagram)});
        if (!(flags & kBatched) || held_.size() >= kMaxBatch) DeliverHeld();
      }
    }
    return Settle();
  }

  // Runs a whole fuzz input.
  void Run(absl::string_view input) {
    while (input.size() >= kRecordHeader) {
      const uint8_t flags = static_cast<uint8_t>(input[0]);
      const uint8_t advance = static_cast<uint8_t>(input[1]);
      const size_t length = static_cast<uint8_t>(input[2]) | static_cast<size_t>(
                                                                 static_cast<uint8_t>(input[3]))
                                                                 << 8;
      input.remove_prefix(kRecordHeader);
      const absl::string_view bytes = input.substr(0, length);
      input.remove_prefix(bytes.size());
      Step(flags, advance, bytes);
    }
    if (!held_.empty()) {
      DeliverHeld();
      Settle();
    }
  }

  absl::Time now() const { return now_; }
  reliable::Endpoint& server() { return *server_; }
  reliable::Endpoint& client() { return *client_; }
  reliable::ConnectionId client_id() const { return client_id_; }
  reliable::ConnectionId server_id() const { return server_id_; }
  void DropClient() { client_.reset(); }

 private:
  // Hands the held datagrams to the server in one batch.
  void DeliverHeld() {
    if (held_.empty()) return;
    std::vector<reliable::ReceivedDatagram> batch;
    for (const auto& [from, bytes] : held_) batch.push_back({&from, bytes});
    server_->OnDatagrams(now_, batch);
    held_.clear();
    // Only hellos create connections, and they are never batched.
    if (server_->stats().accepted != accepted_) HarnessDie("a batch without hellos accepted one");
  }

  // After each record: timers, events and datagrams taken, the invariants
  // checked (see the file comment). Returns what the server sent.
  std::vector<reliable::Outgoing> Settle() {
    if (server_->NextTimeout() <= now_) server_->OnTimeout(now_);
    // A connection that moved did so to an address that proved it receives
    // (path validation): validated, like an accepted one.
    std::vector<reliable::Event> events = server_->TakeEvents();
    for (const reliable::Event& e : events) {
      if (e.type == reliable::Event::Type::kPathChanged) validated_.insert(e.peer.ToString());
    }
    std::vector<reliable::Outgoing> out = server_->TakeOutgoing();
    for (const reliable::Outgoing& o : out) Account(o.peer, o.bytes.size(), /*in=*/false);
    for (const reliable::Event& e : events) {
      // Connections leave the table only after their events were taken.
      absl::StatusOr<udp::SocketAddress> peer = server_->PeerOf(e.connection);
      if (!peer.ok() || validated_.count(peer->ToString()) == 0) {
        HarnessDie(absl::StrCat("event ", reliable::EventTypeName(e.type),
                                " for a connection not in the table or unvalidated: ",
                                e.connection));
      }
    }
    if (server_->members() > kMaxConnections ||
        server_->unconfirmed_connections() > kMaxUnconfirmed ||
        server_->connection_count() > kMaxTable) {
      HarnessDie(absl::StrCat(server_->members(), " members (limit ", kMaxConnections, "), ",
                              server_->unconfirmed_connections(), " unconfirmed (limit ",
                              kMaxUnconfirmed, "), ", server_->connection_count(),
                              " in the table (limit ", kMaxTable, ")"));
    }
    return out;
  }

  void Account(const udp::SocketAddress& peer, size_t bytes, bool in) {
    Traffic& t = traffic_[peer.ToString()];
    (in ? t.received : t.sent) += bytes;
    if (in) return;
    if (t.received == 0) HarnessDie(absl::StrCat("sent to a silent address ", peer.ToString()));
    if (validated_.count(peer.ToString()) == 0 && t.sent > 3 * t.received) {
      HarnessDie(absl::StrCat("amplification to unvalidated ", peer.ToString(), ": sent ",
                              t.sent, " bytes for ", t.received, " received"));
    }
  }

  struct Traffic {
    uint64_t received = 0;
    uint64_t sent = 0;
  };

  absl::Time now_;
  std::unique_ptr<reliable::Endpoint> server_;
  std::unique_ptr<reliable::Endpoint> client_;
  reliable::ConnectionId client_id_ = 0;
  reliable::ConnectionId server_id_ = 0;
  uint64_t accepted_ = 0;
  std::map<std::string, Traffic> traffic_;
  std::set<std::string> validated_;
  // Datagrams held for the next batch (flags bit 7), with their sources.
  std::vector<std::pair<udp::SocketAddress, std::string>> held_;
};

}  // namespace udpmsg::fuzz

#endif  // UDPMSG_FUZZ_ENDPOINT_HARNESS_H_
