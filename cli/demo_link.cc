// The second half of `udpmsg demo`: everything through an impaired link.
//
// An in-process ImpairProxy sits between the clients and a server on
// loopback. The demo sends 200 numbered messages as raw UDP datagrams
// (through a second proxy with the same link); then two chat members, alice
// and bob (chat::ClientCore, each on its own connection), talk through a
// real chat server (chat::ServerCore, cli/demo_server.h); then a data client
// sends the same 200 messages in each of the four delivery modes and a 2 MiB
// transfer (transfer::Sender to a transfer::Receiver and a MemorySink). It
// prints what arrived and what the reliable layer did to get it there.
#include "cli/demo_link.h"

#include <sodium.h>

#include <array>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "apps/transfer/sender.h"
#include "apps/transfer/sha256.h"
#include "cli/demo_chat.h"
#include "cli/demo_server.h"
#include "impairment/model.h"
#include "impairment/proxy.h"
#include "reliable/deterministic_rng.h"
#include "udpmsg/udpmsg.h"

namespace udpmsg::cli {
namespace {

constexpr uint64_t kTransferBytes = 2 << 20;
constexpr size_t kChunk = 64 << 10;
constexpr uint32_t kTransferChannel = 0;  // the transfer protocol's channel
constexpr absl::Duration kDeadline = absl::Seconds(60);

const DeliveryMode kModes[] = {DeliveryMode::kUnreliable, DeliveryMode::kUnreliableSequenced,
                               DeliveryMode::kReliableUnordered, DeliveryMode::kReliableOrdered};
const char* const kModeNames[] = {"udpmsg unreliable", "udpmsg unrel-sequenced",
                                  "udpmsg reliable-unord.", "udpmsg reliable-ordered"};

// Channel c (1..4) carries mode kModes[c - 1]; channel 0 the transfer.
uint32_t ChannelOf(int mode_index) { return static_cast<uint32_t>(mode_index + 1); }

std::string Row(absl::string_view mode, int sent, const Tally& t) {
  return absl::StrFormat("  %-24s %5d %9d %6d %10d %12d\n", mode, sent, t.unique(),
                         sent - t.unique(), t.duplicates, t.out_of_order);
}

absl::Status Closed(const Event& e) {
  return absl::UnavailableError(
      absl::StrCat("demo connection closed: ", CloseReasonName(e.close_reason),
                   e.reason.empty() ? "" : ": ", Displayable(e.reason)));
}

// What the data client did.
struct DataRun {
  absl::Time transfer_start;
  transfer::Sender::State verdict = transfer::Sender::State::kNew;
  absl::Status sender_status;
  absl::StatusOr<ConnectionStats> stats = absl::UnknownError("no connection");
};

// The data client: connects to `server` (the proxy), sends the numbered
// messages in the four modes, then `data` through a transfer::Sender, and
// waits until the receiver's verdict is in and everything is acknowledged.
absl::StatusOr<DataRun> RunDataClient(const SocketAddress& server, const SocketAddress& bind,
                                      const std::string& data, absl::Time give_up) {
  HostOptions options;
  options.bind = bind;
  absl::StatusOr<Host> host = Host::Create(options);
  if (!host.ok()) return host.status();
  absl::StatusOr<ConnectionId> id = host->Connect(server);
  if (!id.ok()) return id.status();
  if (absl::Status s = host->AwaitConnected(*id, give_up - absl::Now()); !s.ok()) return s;

  DataRun run;
  transfer::Sender sender("demo.bin", static_cast<int64_t>(data.size()),
                          transfer::Sender::Options{kChunk});
  auto on_events = [&](const Host::PollResult& r) -> absl::Status {
    for (const Event& e : r.events) {
      if (e.connection != *id) continue;
      if (e.type == Event::Type::kClosed) {
        // A receiver that refuses the transfer says why, then closes.
        if (sender.finished() && sender.state() != transfer::Sender::State::kVerified) {
          return absl::DataLossError(absl::StrCat("transfer: the receiver did not report OK: ",
                                                  sender.status().message()));
        }
        return Closed(e);
      }
      if (e.type == Event::Type::kMessage && e.channel == kTransferChannel) {
        (void)sender.OnMessage(e.message);  // the verdict is in state() and status()
      }
    }
    return absl::OkStatus();
  };

  // The four modes interleaved, one round every 0.5 ms.
  for (int i = 0; i < kDemoMessages; ++i) {
    for (int m = 0; m < 4; ++m) {
      absl::Status s = host->Send(*id, ChannelOf(m), kModes[m], DemoMessageText(i)).status();
      if (!s.ok()) return s;
    }
    absl::StatusOr<Host::PollResult> r = host->Poll(absl::Microseconds(500));
    if (!r.ok()) return r.status();
    if (absl::Status s = on_events(*r); !s.ok()) return s;
  }

  // The transfer: Begin, the chunks, End, all queued at once.
  run.transfer_start = absl::Now();
  std::vector<std::string> messages;
  absl::StatusOr<std::string> begin = sender.Begin();
  if (!begin.ok()) return begin.status();
  messages.push_back(*std::move(begin));
  absl::StatusOr<std::vector<std::string>> chunks = sender.Data(data);
  if (!chunks.ok()) return chunks.status();
  for (std::string& c : *chunks) messages.push_back(std::move(c));
  absl::StatusOr<std::string> end = sender.End();
  if (!end.ok()) return end.status();
  messages.push_back(*std::move(end));
  for (std::string& m : messages) {
    absl::Status s =
        host->Send(*id, kTransferChannel, DeliveryMode::kReliableOrdered, std::move(m)).status();
    if (!s.ok()) return s;
  }

  while (!(sender.finished() && host->QueuedBytes(*id) == 0) && absl::Now() < give_up) {
    absl::StatusOr<Host::PollResult> r = host->Poll(absl::Milliseconds(100));
    if (!r.ok()) return r.status();
    if (absl::Status s = on_events(*r); !s.ok()) return s;
  }
  run.stats = host->Stats(*id);
  if (!sender.finished() || host->QueuedBytes(*id) != 0) {
    return absl::DeadlineExceededError(
        absl::StrCat("demo transfer did not finish: ", sender.sent(), " bytes sent, ",
                     host->QueuedBytes(*id), " bytes not yet acknowledged, ",
                     sender.finished() ? "verdict in" : "no verdict from the receiver", "; ",
                     run.stats.ok() ? run.stats->ToString() : ""));
  }
  run.verdict = sender.state();
  run.sender_status = sender.status();
  return run;
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
  const SocketAddress loopback = SocketAddress::Loopback(AddressFamily::kIpv4, 0);

  // Raw UDP: a sink behind its own proxy with the same link.
  absl::StatusOr<DatagramSocket> sink =
      DatagramSocket::Bind(loopback, {.non_blocking = true, .receive_buffer_bytes = 1 << 20});
  if (!sink.ok()) return sink.status();
  absl::StatusOr<std::unique_ptr<impairment::ImpairProxy>> raw_proxy =
      impairment::ImpairProxy::Create(
          {.listen = loopback, .target = *sink->LocalAddress(), .config = link});
  if (!raw_proxy.ok()) return raw_proxy.status();

  // udpmsg: the chat and data server behind another proxy with the same link.
  absl::StatusOr<std::unique_ptr<DemoServer>> server = DemoServer::Create(loopback, kTransferBytes);
  if (!server.ok()) return server.status();
  absl::StatusOr<std::unique_ptr<impairment::ImpairProxy>> proxy = impairment::ImpairProxy::Create(
      {.listen = loopback, .target = (*server)->address(), .config = link});
  if (!proxy.ok()) return proxy.status();
  const SocketAddress via = (*proxy)->local_address();

  std::printf("\nthrough an impaired link (in-process `udpmsg impair`, seed %llu):\n  %s\n",
              static_cast<unsigned long long>(seed),
              DescribeImpairment(link, (*server)->address()).c_str());
  std::thread raw_thread([&] { (*raw_proxy)->Run(absl::ZeroDuration()).IgnoreError(); });
  std::thread proxy_thread([&] { (*proxy)->Run(absl::ZeroDuration()).IgnoreError(); });
  (*server)->Start();
  // Stops the server and the proxies (their counters may be read after it).
  auto stop_all = [&] {
    (*server)->Stop();
    (*raw_proxy)->Stop();
    (*proxy)->Stop();
    if (raw_thread.joinable()) raw_thread.join();
    if (proxy_thread.joinable()) proxy_thread.join();
  };
  struct Cleanup {
    std::function<void()> f;
    ~Cleanup() { f(); }
  } cleanup{stop_all};

  // 1. Raw UDP, paced at one datagram per 0.5 ms.
  absl::StatusOr<DatagramSocket> raw = DatagramSocket::Bind(loopback, {});
  if (!raw.ok()) return raw.status();
  Tally raw_tally;
  std::array<uint8_t, 2048> buffer;
  auto drain_sink = [&] {
    for (;;) {
      absl::StatusOr<Datagram> got = sink->RecvFrom(absl::MakeSpan(buffer));
      if (!got.ok()) return;
      const absl::string_view text(reinterpret_cast<const char*>(buffer.data()), got->size);
      const int n = DemoMessageNumber(text);
      raw_tally.Add(n, text == DemoMessageText(n));
    }
  };
  for (int i = 0; i < kDemoMessages; ++i) {
    const std::string text = DemoMessageText(i);
    if (absl::StatusOr<size_t> s = raw->SendTo((*raw_proxy)->local_address(), AsBytes(text));
        !s.ok()) {
      return s.status();
    }
    absl::SleepFor(absl::Microseconds(500));
    drain_sink();
  }

  // 2. The chat: alice and bob, each on its own connection through the proxy.
  const absl::Time give_up = absl::Now() + kDeadline;
  absl::StatusOr<DemoChat> chat = RunDemoChat(via, loopback, give_up);
  if (!chat.ok()) {
    (*server)->Stop();
    const std::vector<std::string>& log = (*server)->results().log;
    return absl::Status(chat.status().code(),
                        absl::StrCat(chat.status().message(), log.empty() ? "" : "; chat server: ",
                                     absl::StrJoin(log, "; ")));
  }

  // 3. The data client: the four modes and the transfer.
  (*server)->ExpectDataClient();
  std::string data(kTransferBytes, '\0');
  reliable::DeterministicRng rng(seed, 5);
  for (char& c : data) c = static_cast<char>(rng.Next());
  absl::StatusOr<DataRun> run = RunDataClient(via, loopback, data, give_up);
  if (!run.ok()) return run.status();
  // Let stragglers (duplicates, late unreliable copies) land before counting.
  absl::SleepFor(absl::Milliseconds(50));
  drain_sink();
  stop_all();
  const DemoServer::Results& got = (*server)->results();
  if (!got.error.empty()) return absl::InternalError(absl::StrCat("demo server: ", got.error));

  std::printf(
      "\n  chat (a chat server; alice and bob each on a connection of their own), "
      "as alice's client shows it:\n");
  for (const std::string& line : chat->alice_display) std::printf("    %s\n", line.c_str());

  std::printf("\n  the same %d messages in each mode:\n", kDemoMessages);
  std::printf("  %-24s %5s %9s %6s %10s %12s\n", "mode", "sent", "delivered", "lost", "duplicates",
              "out of order");
  std::printf("%s", Row("raw UDP (sendto)", kDemoMessages, raw_tally).c_str());
  std::map<uint32_t, Tally> tallies = got.tallies;
  for (int m = 0; m < 4; ++m) {
    std::printf("%s", Row(kModeNames[m], kDemoMessages, tallies[ChannelOf(m)]).c_str());
  }

  // The transfer counts only if the receiver verified it and said so.
  const bool receiver_ok = got.transfer_state == transfer::Receiver::State::kComplete &&
                           got.sink_committed && got.sink_bytes == kTransferBytes;
  const bool sender_ok = run->verdict == transfer::Sender::State::kVerified;
  const bool digest_ok = got.transfer_digest == transfer::Sha256::Of(data);
  const bool transfer_ok = receiver_ok && sender_ok && digest_ok;
  std::printf("\n  transfer: %llu bytes, sha256 %s, ",
              static_cast<unsigned long long>(kTransferBytes),
              absl::BytesToHexString(got.transfer_digest).substr(0, 16).c_str());
  if (transfer_ok) {
    std::printf("verified by the receiver, delivered intact in %.2f s\n",
                absl::ToDoubleSeconds(got.transfer_done - run->transfer_start));
  } else {
    std::printf("NOT verified\n");
  }
  if (run->stats.ok()) {
    const ConnectionStats& s = *run->stats;
    std::printf(
        "  sender: %llu packets sent, %llu declared lost, %llu fragments retransmitted, "
        "%llu probes, rtt %.1f ms, cwnd %llu bytes\n",
        static_cast<unsigned long long>(s.packets_sent),
        static_cast<unsigned long long>(s.packets_lost),
        static_cast<unsigned long long>(s.fragments_retransmitted),
        static_cast<unsigned long long>(s.probes), absl::ToDoubleMilliseconds(s.srtt),
        static_cast<unsigned long long>(s.cwnd));
  }
  impairment::ImpairmentCounters up = (*proxy)->counters(true);
  impairment::ImpairmentCounters down = (*proxy)->counters(false);
  std::printf(
      "  link:   %llu of %llu packets dropped on the way there, %llu of %llu on the way "
      "back\n",
      static_cast<unsigned long long>(up.dropped_loss),
      static_cast<unsigned long long>(up.received),
      static_cast<unsigned long long>(down.dropped_loss),
      static_cast<unsigned long long>(down.received));

  // The reliable modes must be perfect; the others are what the link made them.
  for (int m = 2; m < 4; ++m) {
    const Tally& t = tallies[ChannelOf(m)];
    if (t.unique() != kDemoMessages || t.intact != kDemoMessages || t.duplicates != 0) {
      return absl::DataLossError(absl::StrCat(kModeNames[m], " delivered ", t.unique(), " of ",
                                              kDemoMessages, " messages (", t.duplicates,
                                              " duplicates)"));
    }
  }
  if (tallies[ChannelOf(3)].out_of_order != 0) {
    return absl::DataLossError("reliable-ordered delivered out of order");
  }
  if (!receiver_ok) {
    return absl::DataLossError(absl::StrCat(
        "transfer: the receiver did not verify it (", got.transfer_received, " of ", kTransferBytes,
        " bytes received, sink ", got.sink_committed ? "committed" : "not committed",
        "): ", got.transfer_status.ok() ? "no End" : got.transfer_status.message()));
  }
  if (!sender_ok) {
    return absl::DataLossError(
        absl::StrCat("transfer: the receiver did not report OK: ", run->sender_status.message()));
  }
  if (!digest_ok) return absl::DataLossError("transfer: the verified digest is not the data's");
  return absl::OkStatus();
}

}  // namespace udpmsg::cli
