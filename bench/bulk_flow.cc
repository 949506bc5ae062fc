#include "bench/bulk_flow.h"

#include <time.h>

#include <algorithm>
#include <functional>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "bench/harness.h"

namespace udpmsg::bench {
namespace {

// A receiver serves at most this many transfers at once.
constexpr size_t kMaxTransfers = 64;

// The sender's view of the answer: the result bytes, or why the connection
// ended.
class ResultCollector final : public Transport::Handler {
 public:
  void OnReceived(PeerId, absl::string_view bytes) override {
    if (answer.size() > kBulkResultBytes) return;  // already too long: malformed
    answer.append(bytes.data(), std::min(bytes.size(), kBulkResultBytes + 1 - answer.size()));
  }
  void OnClosed(PeerId, const std::string& why) override { closed = why; }
  // The whole result once it is here (nullopt before); DATA_LOSS when what
  // came is not one.
  std::optional<absl::StatusOr<BulkResult>> Result() const {
    absl::StatusOr<size_t> length = ResultLength(answer);
    if (!length.ok()) return length.status();
    if (*length == 0 || answer.size() < *length) return std::nullopt;
    return DecodeResult(answer);
  }
  std::string answer;
  std::optional<std::string> closed;
};

// What the sender's loop hands out next: the bytes of the next Send.
using NextChunk = std::function<absl::string_view(size_t max)>;

struct Pumped {
  BulkResult result;
  absl::Time start;
  absl::Time done;
  absl::Duration cpu;
  int64_t retransmits = -1;
};

// Sends `header`, then chunks from `next` (an empty one: nothing more)
// while the transport's queue is under its window, until the result comes.
absl::StatusOr<Pumped> Pump(Transport& t, PeerId peer, absl::string_view header,
                            const std::shared_ptr<const void>& owner, const NextChunk& next,
                            absl::Duration timeout, absl::Duration linger) {
  Pumped p;
  const absl::Duration cpu_start = ThreadCpuTime();
  p.start = absl::Now();
  if (absl::Status s = t.Send(peer, header); !s.ok()) return s;
  uint64_t sent = 0;
  absl::string_view pending;  // taken from `next`, refused by Send
  bool exhausted = false;
  absl::Time last_progress = p.start;
  uint64_t queued_seen = UINT64_MAX;
  ResultCollector collector;
  for (;;) {
    while (!exhausted && t.QueuedBytes(peer) < t.send_window()) {
      if (pending.empty()) pending = next(t.chunk_bytes());
      if (pending.empty()) {
        exhausted = true;
        break;
      }
      absl::Status s = t.SendShared(peer, owner, pending);
      if (absl::IsResourceExhausted(s)) break;
      if (!s.ok()) return s;
      sent += pending.size();
      pending = {};
      last_progress = absl::Now();
    }
    if (absl::Status s = t.Poll(absl::Milliseconds(50), collector); !s.ok()) return s;
    const absl::Time now = absl::Now();
    if (std::optional<absl::StatusOr<BulkResult>> result = collector.Result(); result.has_value()) {
      if (!result->ok()) return result->status();
      p.result = **result;
      p.done = now;
      p.cpu = ThreadCpuTime() - cpu_start;
      if (absl::StatusOr<TransportStats> st = t.Stats(peer); st.ok()) {
        p.retransmits = st->retransmits;
      }
      t.Close(peer, "bench done", linger);
      return p;
    }
    if (collector.closed.has_value()) {
      return absl::UnavailableError(absl::StrCat(t.name(), ": connection closed after ", sent,
                                                 " bytes queued: ", *collector.closed));
    }
    const uint64_t queued = t.QueuedBytes(peer);
    if (queued < queued_seen) last_progress = now;
    queued_seen = queued;
    if (now - last_progress > timeout) {
      return absl::DeadlineExceededError(absl::StrCat(t.name(), ": no progress for ",
                                                      absl::FormatDuration(timeout), " after ",
                                                      sent, " bytes queued"));
    }
  }
}

void SetCpu(const Pumped& p, BulkOutcome& o) {
  o.sender_cpu_seconds = absl::ToDoubleSeconds(p.cpu);
  if (p.result.receiver_cpu_ns >= 0) o.receiver_cpu_seconds = p.result.receiver_cpu_ns / 1e9;
  o.retransmits = p.retransmits;
}

}  // namespace

bool IsTcpTransport(absl::string_view transport) { return absl::StartsWith(transport, "tcp"); }

TransportSpec BulkTransportSpec(absl::string_view transport, reliable::CongestionControl cc,
                                absl::Duration timeout) {
  TransportSpec spec;
  if (absl::StartsWith(transport, "udpmsg")) {
    spec.kind = TransportKind::kUdpmsg;
    spec.udpmsg.congestion = cc;
    if (transport == "udpmsg-newreno") spec.udpmsg.congestion = reliable::CongestionControl::kNewReno;
    if (transport == "udpmsg-bbr") spec.udpmsg.congestion = reliable::CongestionControl::kBbr;
    spec.udpmsg.encrypt = transport == "udpmsg-sealed";
    spec.udpmsg.max_datagram = kBulkDatagramBytes;
    spec.udpmsg.timeout = timeout;
    spec.udpmsg.send_window = 4 << 20;
    spec.udpmsg.chunk_bytes = 64 * 1024;
  } else if (IsTcpTransport(transport)) {
    spec.kind = TransportKind::kTcp;
    if (transport != "tcp") spec.tcp.congestion = std::string(transport.substr(4));
  } else {
    spec.kind = TransportKind::kEnet;
    spec.enet.mtu = kBulkDatagramBytes;
  }
  return spec;
}

absl::StatusOr<std::vector<udp::SocketAddress>> BulkPeerAddresses(absl::string_view transport,
                                                                  const std::string& peer,
                                                                  udp::AddressFamily family) {
  if (IsTcpTransport(transport)) {
    return udp::ResolveHostPort(peer, family, udp::SocketType::kStream);
  }
  const bool enet = transport == "enet";
  absl::StatusOr<std::vector<udp::SocketAddress>> addrs = udp::ResolveHostPort(
      peer, enet ? udp::AddressFamily::kIpv4 : family, udp::SocketType::kDatagram);
  if (!addrs.ok()) return addrs.status();
  std::vector<udp::SocketAddress> to = {addrs->front()};
  const int offset = enet ? 1 : transport == "udpmsg-sealed" ? 2 : 0;
  if (to[0].port() + offset > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(transport, ": port+", offset, " is out of range"));
  }
  to[0].set_port(static_cast<uint16_t>(to[0].port() + offset));
  return to;
}

absl::Duration ThreadCpuTime() {
  timespec ts{};
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return absl::ZeroDuration();
  return absl::DurationFromTimespec(ts);
}

void BulkReceiver::OnConnected(PeerId peer, const std::string& name) {
  if (transfers_.size() >= kMaxTransfers) {
    transport_.Close(peer, "busy", absl::ZeroDuration());
    return;
  }
  const absl::Time now = absl::Now();
  transfers_[peer] = Transfer{name, ReceiveState(), now, now, ThreadCpuTime(), false};
}

void BulkReceiver::OnReceived(PeerId peer, absl::string_view bytes) {
  auto it = transfers_.find(peer);
  if (it == transfers_.end() || it->second.answered) return;
  Transfer& t = it->second;
  t.last_data = absl::Now();
  if (absl::Status s = t.state.Consume(bytes, t.last_data); !s.ok()) {
    Drop(it, std::string(s.message()));
    return;
  }
  if (t.state.complete()) Answer(peer, t);
}

void BulkReceiver::Answer(PeerId peer, Transfer& t) {
  t.answered = true;
  const int64_t cpu_ns = absl::ToInt64Nanoseconds(ThreadCpuTime() - t.cpu_start);
  transport_.Send(peer, t.state.EncodedResult(cpu_ns)).IgnoreError();  // the sender times out
  if (verbose_) {
    Log(absl::StrFormat("%s: received %d bytes from %s in %.2f s%s", transport_.name(),
                        t.state.received(), t.name, absl::ToDoubleSeconds(absl::Now() - t.start),
                        t.state.timed() ? " (timed)" : ""));
  }
}

void BulkReceiver::OnClosed(PeerId peer, const std::string& reason) {
  auto it = transfers_.find(peer);
  if (it == transfers_.end()) return;
  if (!it->second.answered && verbose_) {
    Log(absl::StrCat(transport_.name(), ": ", it->second.name, " went away after ",
                     it->second.state.received(), " bytes: ", reason));
  }
  transfers_.erase(it);
}

void BulkReceiver::Expire() {
  const absl::Time now = absl::Now();
  for (auto it = transfers_.begin(); it != transfers_.end();) {
    auto here = it++;
    Transfer& t = here->second;
    if (!t.answered && t.state.timed()) {
      t.state.Tick(now);
      if (t.state.complete()) Answer(here->first, t);
    }
    if (now - t.last_data <= timeout_) continue;
    if (t.answered) {
      transport_.Close(here->first, "bench done", absl::ZeroDuration());
      transfers_.erase(here);
    } else {
      Drop(here, absl::StrCat("no data for ", absl::FormatDuration(timeout_)));
    }
  }
}

void BulkReceiver::Drop(Map::iterator it, const std::string& why) {
  if (verbose_) Log(absl::StrCat(transport_.name(), ": ", it->second.name, ": ", why));
  const PeerId peer = it->first;
  transfers_.erase(it);
  transport_.Close(peer, why, absl::ZeroDuration());
}

absl::StatusOr<BulkOutcome> SendSized(Transport& t, PeerId peer, const Payload& payload,
                                      absl::Duration timeout) {
  const absl::string_view data = payload.data();
  size_t offset = 0;
  const NextChunk next = [&](size_t max) {
    const absl::string_view chunk = data.substr(offset, std::min(max, data.size() - offset));
    offset += chunk.size();
    return chunk;
  };
  absl::StatusOr<Pumped> p =
      Pump(t, peer, EncodeHeader(data.size()), payload.bytes, next, timeout, absl::Seconds(1));
  if (!p.ok()) return p.status();
  BulkOutcome o;
  o.transport = t.name();
  o.bytes = p->result.received;
  // An older receiver checksums with version 1.
  const uint64_t expected = p->result.checksum_version == kChecksumVersion
                                ? payload.checksum
                                : CyclicChecksum(data, data.size(), p->result.checksum_version);
  o.verified = p->result.received == data.size() && p->result.checksum == expected;
  if (!o.verified) {
    o.error = absl::StrFormat("receiver got %d of %d bytes, checksum %016x, expected %016x",
                              p->result.received, data.size(), p->result.checksum, expected);
  }
  absl::Time end = p->result.last_byte;
  if (end < p->start || end > p->done) {
    end = p->done;
    o.receiver_clock = false;
  }
  o.seconds = std::max(1e-9, absl::ToDoubleSeconds(end - p->start));
  SetCpu(*p, o);
  return o;
}

absl::StatusOr<BulkOutcome> SendTimed(Transport& t, PeerId peer, const Payload& payload,
                                      absl::Duration duration, absl::Duration timeout) {
  const absl::string_view data = payload.data();
  if (data.empty()) return absl::InvalidArgumentError("a timed transfer needs a payload");
  size_t offset = 0;  // in `data`, cycling
  const NextChunk next = [&](size_t max) {
    const absl::string_view chunk = data.substr(offset, std::min(max, data.size() - offset));
    offset = (offset + chunk.size()) % data.size();
    return chunk;
  };
  // The receiver has answered: what is still queued is past the window.
  absl::StatusOr<Pumped> p =
      Pump(t, peer, EncodeTimedHeader(duration), payload.bytes, next, timeout,
           absl::ZeroDuration());
  if (!p.ok()) return p.status();
  BulkOutcome o;
  o.transport = t.name();
  o.bytes = p->result.received;
  const uint64_t expected =
      CyclicChecksum(data, p->result.received, p->result.checksum_version);
  o.verified = p->result.received > 0 && p->result.checksum == expected;
  if (!o.verified) {
    o.error = absl::StrFormat("receiver counted %d bytes, checksum %016x, expected %016x",
                              p->result.received, p->result.checksum, expected);
  }
  o.seconds = absl::ToDoubleSeconds(duration);
  SetCpu(*p, o);
  return o;
}

}  // namespace udpmsg::bench
