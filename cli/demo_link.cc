// The second half of `udpmsg demo`: everything through an impaired link.
//
// An in-process ImpairProxy sits between a client and a server on loopback.
// The demo sends the same 200 messages as raw UDP datagrams and in each of
// the four delivery modes, a few chat lines, and a 2 MiB transfer, then prints
// what arrived and what the reliable layer did to get it there.
#include "cli/demo_link.h"

#include <sodium.h>

#include <array>
#include <atomic>
#include <functional>
#include <iterator>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "impairment/model.h"
#include "impairment/proxy.h"
#include "reliable/deterministic_rng.h"
#include "reliable/runtime.h"
#include "udp/datagram_socket.h"

namespace udpmsg::cli {
namespace {

using reliable::DeliveryMode;
using reliable::Event;
using reliable::Runtime;

constexpr int kMessages = 200;
constexpr uint32_t kChatChannel = 0;
constexpr uint32_t kTransferChannel = 9;
constexpr size_t kTransferBytes = 2 << 20;
constexpr size_t kChunk = 64 << 10;
constexpr absl::Duration kDeadline = absl::Seconds(60);

const DeliveryMode kModes[] = {DeliveryMode::kUnreliable, DeliveryMode::kUnreliableSequenced,
                               DeliveryMode::kReliableUnordered, DeliveryMode::kReliableOrdered};

// Channel c (1..4) carries mode kModes[c - 1].
uint32_t ChannelOf(int mode_index) { return static_cast<uint32_t>(mode_index + 1); }

std::string MessageText(int i) { return absl::StrCat("message #", i); }

// What one receiver saw on one stream of numbered messages.
struct Tally {
  int delivered = 0;
  int intact = 0;
  int duplicates = 0;
  int out_of_order = 0;  // arrived after a higher number
  int highest = -1;
  std::vector<bool> seen = std::vector<bool>(kMessages, false);

  void Add(int number, bool ok) {
    ++delivered;
    if (number < 0 || number >= kMessages) return;
    if (seen[number]) {
      ++duplicates;
      return;
    }
    seen[number] = true;
    intact += ok;
    if (number < highest) ++out_of_order;
    highest = std::max(highest, number);
  }
  int unique() const { return delivered - duplicates; }
};

int NumberOf(absl::string_view text) {
  int n = -1;
  if (absl::StartsWith(text, "message #")) {
    if (!absl::SimpleAtoi(text.substr(9), &n)) n = -1;
  }
  return n;
}

std::string Sha256Hex(absl::string_view data) {
  unsigned char out[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(out, reinterpret_cast<const unsigned char*>(data.data()), data.size());
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(out), sizeof(out)));
}

// The server side, on its own thread.
class Receiver {
 public:
  explicit Receiver(std::unique_ptr<Runtime> rt) : rt_(std::move(rt)) {}

  void Start() {
    thread_ = std::thread([this] { Loop(); });
  }
  void Stop() {
    stop_ = true;
    rt_->Wake();
    if (thread_.joinable()) thread_.join();
  }
  const udp::SocketAddress& address() const { return rt_->local_address(); }

  std::mutex mu;
  std::map<uint32_t, Tally> tallies;      // by channel
  std::vector<std::string> chat;
  std::string transfer;
  absl::Time transfer_done = absl::InfiniteFuture();

 private:
  void Loop() {
    while (!stop_) {
      absl::StatusOr<Runtime::PollResult> r = rt_->Poll(absl::Milliseconds(100));
      if (!r.ok()) return;
      std::lock_guard<std::mutex> lock(mu);
      for (Event& e : r->events) {
        if (e.type != Event::Type::kMessage) continue;
        if (e.channel == kChatChannel) {
          chat.push_back(e.message);
        } else if (e.channel == kTransferChannel) {
          transfer += e.message;
          if (transfer.size() == kTransferBytes) transfer_done = absl::Now();
        } else {
          const int n = NumberOf(e.message);
          tallies[e.channel].Add(n, e.message == MessageText(n));
        }
      }
    }
  }

  std::unique_ptr<Runtime> rt_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
};

std::string Row(absl::string_view mode, int sent, const Tally& t) {
  return absl::StrFormat("  %-24s %5d %9d %6d %10d %12d\n", mode, sent, t.unique(),
                         sent - t.unique(), t.duplicates, t.out_of_order);
}

}  // namespace

absl::Status RunLinkDemo(uint64_t seed) {
  if (sodium_init() < 0) return absl::InternalError("libsodium failed to initialise");
  impairment::ImpairmentConfig link;
  link.loss = 0.10;
  link.delay = absl::Milliseconds(2);
  link.jitter = absl::Milliseconds(1);
  link.reorder = 0.02;
  link.reorder_delay = absl::Milliseconds(3);
  link.duplicate = 0.01;
  link.seed = seed;
  const udp::SocketAddress loopback = udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, 0);

  // Raw UDP: a sink behind its own proxy with the same link.
  absl::StatusOr<udp::DatagramSocket> sink =
      udp::DatagramSocket::Bind(loopback, {.non_blocking = true, .receive_buffer_bytes = 1 << 20});
  if (!sink.ok()) return sink.status();
  absl::StatusOr<std::unique_ptr<impairment::ImpairProxy>> raw_proxy =
      impairment::ImpairProxy::Create({.listen = loopback, .target = *sink->LocalAddress(), .config = link});
  if (!raw_proxy.ok()) return raw_proxy.status();

  // udpmsg: a server runtime behind another proxy with the same link.
  Runtime::Options server_options;
  server_options.bind = loopback;
  server_options.endpoint.accept_incoming = true;
  absl::StatusOr<std::unique_ptr<Runtime>> server = Runtime::Create(server_options);
  if (!server.ok()) return server.status();
  Receiver receiver(*std::move(server));
  absl::StatusOr<std::unique_ptr<impairment::ImpairProxy>> proxy =
      impairment::ImpairProxy::Create({.listen = loopback, .target = receiver.address(), .config = link});
  if (!proxy.ok()) return proxy.status();

  std::printf("\nthrough an impaired link (in-process `udpmsg impair`, seed %llu):\n  %s\n",
              static_cast<unsigned long long>(seed),
              DescribeImpairment(link, receiver.address()).c_str());
  std::thread raw_thread([&] { (*raw_proxy)->Run(absl::ZeroDuration()).IgnoreError(); });
  std::thread proxy_thread([&] { (*proxy)->Run(absl::ZeroDuration()).IgnoreError(); });
  receiver.Start();
  struct Cleanup {
    std::function<void()> f;
    ~Cleanup() { f(); }
  } cleanup{[&] {
    receiver.Stop();
    (*raw_proxy)->Stop();
    (*proxy)->Stop();
    raw_thread.join();
    proxy_thread.join();
  }};

  // 1. Raw UDP, paced at one datagram per 0.5 ms.
  absl::StatusOr<udp::DatagramSocket> raw = udp::DatagramSocket::Bind(loopback, {});
  if (!raw.ok()) return raw.status();
  Tally raw_tally;
  std::array<uint8_t, 2048> buffer;
  auto drain_sink = [&] {
    for (;;) {
      absl::StatusOr<udp::Datagram> got = sink->RecvFrom(absl::MakeSpan(buffer));
      if (!got.ok()) return;
      const absl::string_view text(reinterpret_cast<const char*>(buffer.data()), got->size);
      raw_tally.Add(NumberOf(text), text == MessageText(NumberOf(text)));
    }
  };
  for (int i = 0; i < kMessages; ++i) {
    const std::string text = MessageText(i);
    if (absl::StatusOr<size_t> s = raw->SendTo((*raw_proxy)->local_address(), udp::AsBytes(text));
        !s.ok()) {
      return s.status();
    }
    absl::SleepFor(absl::Microseconds(500));
    drain_sink();
  }

  // 2. Connect through the proxy.
  Runtime::Options client_options;
  client_options.bind = loopback;
  absl::StatusOr<std::unique_ptr<Runtime>> client = Runtime::Create(client_options);
  if (!client.ok()) return client.status();
  Runtime& rt = **client;
  absl::StatusOr<reliable::ConnectionId> id = rt.Connect((*proxy)->local_address());
  if (!id.ok()) return id.status();
  const absl::Time give_up = absl::Now() + kDeadline;
  bool connected = false;
  while (!connected && absl::Now() < give_up) {
    absl::StatusOr<Runtime::PollResult> r = rt.Poll(absl::Milliseconds(100));
    if (!r.ok()) return r.status();
    for (const Event& e : r->events) {
      if (e.type == Event::Type::kConnected) connected = true;
      if (e.type == Event::Type::kClosed) {
        return absl::UnavailableError(absl::StrCat("demo connection closed: ", e.reason));
      }
    }
  }
  if (!connected) return absl::DeadlineExceededError("demo handshake did not complete");

  // 3. Chat lines, the four modes interleaved, and a transfer.
  const char* chat[] = {"<alice> hi bob, the link drops one packet in ten",
                        "<bob> and yet this arrives in order",
                        "<alice> reliable-ordered: retransmitted in new packets",
                        "<bob> see you in the stats below"};
  uint64_t reliable_sent = 0;
  uint64_t acked = 0;
  for (const char* line : chat) {
    if (absl::Status s = rt.Send(*id, kChatChannel, DeliveryMode::kReliableOrdered, line).status();
        !s.ok()) {
      return s;
    }
    ++reliable_sent;
  }
  for (int i = 0; i < kMessages; ++i) {
    for (int m = 0; m < 4; ++m) {
      absl::Status s = rt.Send(*id, ChannelOf(m), kModes[m], MessageText(i)).status();
      if (!s.ok()) return s;
    }
    reliable_sent += 2;
    absl::StatusOr<Runtime::PollResult> r = rt.Poll(absl::Microseconds(500));
    if (!r.ok()) return r.status();
    for (const Event& e : r->events) acked += e.type == Event::Type::kAcked;
  }
  std::string data(kTransferBytes, '\0');
  reliable::DeterministicRng rng(seed, 5);
  for (char& c : data) c = static_cast<char>(rng.Next());
  const absl::Time transfer_start = absl::Now();
  for (size_t off = 0; off < data.size(); off += kChunk) {
    absl::Status s =
        rt.Send(*id, kTransferChannel, DeliveryMode::kReliableOrdered, data.substr(off, kChunk))
            .status();
    if (!s.ok()) return s;
    ++reliable_sent;
  }
  while (acked < reliable_sent && absl::Now() < give_up) {
    absl::StatusOr<Runtime::PollResult> r = rt.Poll(absl::Milliseconds(100));
    if (!r.ok()) return r.status();
    for (const Event& e : r->events) {
      acked += e.type == Event::Type::kAcked;
      if (e.type == Event::Type::kClosed) {
        return absl::UnavailableError(absl::StrCat("demo connection closed: ", e.reason));
      }
    }
  }
  if (acked < reliable_sent) {
    absl::StatusOr<reliable::ConnectionStats> s = rt.Stats(*id);
    return absl::DeadlineExceededError(
        absl::StrCat("demo transfer did not finish: ", acked, " of ", reliable_sent,
                     " messages acknowledged; ", s.ok() ? s->ToString() : ""));
  }
  absl::StatusOr<reliable::ConnectionStats> stats = rt.Stats(*id);
  // Let stragglers (duplicates, late unreliable copies) land before counting.
  absl::SleepFor(absl::Milliseconds(50));
  drain_sink();

  std::lock_guard<std::mutex> lock(receiver.mu);
  std::printf("\n  chat (reliable-ordered, channel 0), as the server received it:\n");
  for (const std::string& line : receiver.chat) std::printf("    %s\n", line.c_str());

  std::printf("\n  the same %d messages in each mode:\n", kMessages);
  std::printf("  %-24s %5s %9s %6s %10s %12s\n", "mode", "sent", "delivered", "lost",
              "duplicates", "out of order");
  std::printf("%s", Row("raw UDP (sendto)", kMessages, raw_tally).c_str());
  const char* names[] = {"udpmsg unreliable", "udpmsg unrel-sequenced", "udpmsg reliable-unord.",
                         "udpmsg reliable-ordered"};
  for (int m = 0; m < 4; ++m) {
    std::printf("%s", Row(names[m], kMessages, receiver.tallies[ChannelOf(m)]).c_str());
  }

  const bool transfer_ok = receiver.transfer == data;
  const double secs = absl::ToDoubleSeconds(receiver.transfer_done - transfer_start);
  std::printf("\n  transfer: %zu bytes, sha256 %s, %s", data.size(), Sha256Hex(data).substr(0, 16).c_str(),
              transfer_ok ? "delivered intact" : "CORRUPTED");
  if (transfer_ok && receiver.transfer_done != absl::InfiniteFuture()) {
    std::printf(" in %.2f s", secs);
  }
  std::printf("\n");
  if (stats.ok()) {
    std::printf("  sender: %llu packets sent, %llu declared lost, %llu fragments retransmitted, "
                "%llu probes, rtt %.1f ms, cwnd %llu bytes\n",
                static_cast<unsigned long long>(stats->packets_sent),
                static_cast<unsigned long long>(stats->packets_lost),
                static_cast<unsigned long long>(stats->fragments_retransmitted),
                static_cast<unsigned long long>(stats->probes),
                absl::ToDoubleMilliseconds(stats->srtt),
                static_cast<unsigned long long>(stats->cwnd));
  }
  impairment::ImpairmentCounters up = (*proxy)->counters(true);
  impairment::ImpairmentCounters down = (*proxy)->counters(false);
  std::printf("  link:   %llu of %llu packets dropped on the way there, %llu of %llu on the way "
              "back\n",
              static_cast<unsigned long long>(up.dropped_loss),
              static_cast<unsigned long long>(up.received),
              static_cast<unsigned long long>(down.dropped_loss),
              static_cast<unsigned long long>(down.received));

  // The reliable modes must be perfect; the others are what the link made them.
  for (int m = 2; m < 4; ++m) {
    const Tally& t = receiver.tallies[ChannelOf(m)];
    if (t.unique() != kMessages || t.intact != kMessages || t.duplicates != 0) {
      return absl::DataLossError(absl::StrCat(names[m], " delivered ", t.unique(), " of ",
                                              kMessages, " messages (", t.duplicates,
                                              " duplicates)"));
    }
  }
  if (receiver.tallies[ChannelOf(3)].out_of_order != 0) {
    return absl::DataLossError("reliable-ordered delivered out of order");
  }
  if (receiver.chat.size() != std::size(chat)) {
    return absl::DataLossError("chat lines missing");
  }
  if (!transfer_ok) return absl::DataLossError("transfer corrupted");
  return absl::OkStatus();
}

}  // namespace udpmsg::cli
