// `udpmsg bench bulk`: goodput of one bulk transfer of --bench_size bytes,
// udpmsg reliable vs TCP vs ENet.
//
// Every transfer has the same shape on every transport: the sender sends a
// 16-byte header (magic, size) and then the data (deterministic
// pseudo-random bytes from --seed); the receiver checksums what arrives and,
// when it has `size` bytes, answers with a 32-byte result (magic, bytes,
// checksum, the wall-clock time it received the last byte). The sender
// compares size and checksum with its own, and goodput is
//   verified bytes / (first byte sent -> last byte received at the receiver).
// When the receiver's clock cannot be compared (its last-byte time does not
// fall between the sender's start and the sender's receipt of the result:
// another host), the sender's receipt of the result ends the interval.
//
// Transports (1200-byte datagrams for both UDP libraries):
//   udpmsg  reliable::Runtime, reliable-ordered 64 KiB messages on channel 0,
//           at most kUdpmsgQueueTarget bytes queued, congestion from --cc.
//   tcp     udp::StreamSocket (the kernel's TCP, its default congestion
//           control), non-blocking send/recv with poll.
//   enet    ENet 1.3.17, 1100-byte reliable packets on channel 0, host MTU
//           1200; the sender waits while the peer's outgoing command queue
//           holds kEnetQueuePackets; ENet's own window and packet throttle.
//
// Modes (--bench_role):
//   local   (default) all in one process on loopback, each receiver on a
//           thread; udpmsg and ENet pass through an in-process ImpairProxy
//           dropping --bench_loss in both directions. TCP runs at 0% only:
//           the proxy carries UDP, and dropping TCP segments needs the kernel.
//   server  receivers for all three on --port (udpmsg UDP, TCP) and
//           --port+1 (ENet); serves transfers until killed or --duration.
//   client  senders to --bench_peer HOST:PORT; prints the table. The network
//           applies the loss; --bench_loss (one rate) only labels the rows.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <enet/enet.h>

#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/bench.h"
#include "cli/common.h"
#include "cli/flags.h"
#include "cli/impair_flags.h"
#include "impairment/model.h"
#include "impairment/proxy.h"
#include "reliable/congestion.h"
#include "reliable/runtime.h"
#include "udp/errno_status.h"
#include "udp/resolve.h"
#include "udp/socket_address.h"
#include "udp/stream_socket.h"

namespace udpmsg::cli {
namespace {

using reliable::ConnectionId;
using reliable::DeliveryMode;
using reliable::Event;
using reliable::Runtime;

constexpr size_t kDatagramBytes = 1200;
constexpr size_t kUdpmsgChunk = 64 * 1024;
constexpr uint64_t kUdpmsgQueueTarget = 4 << 20;
constexpr size_t kTcpChunk = 64 * 1024;
constexpr size_t kEnetPacket = 1100;
constexpr size_t kEnetQueuePackets = 256;
constexpr uint64_t kMaxSize = uint64_t{1} << 30;

constexpr uint64_t kHeaderMagic = 0x4b4c5542474d5355;  // "USMGBULK", little-endian
constexpr uint64_t kResultMagic = 0x544c5352474d5355;  // "USMGRSLT"
constexpr size_t kHeaderBytes = 16;
constexpr size_t kResultBytes = 32;

// "tcp" is the kernel's default congestion control; "tcp-<cc>" sets <cc> on
// the sending socket (TCP_CONGESTION), so one run compares several.
constexpr const char* kTransports[] = {"udpmsg", "tcp", "tcp-cubic", "tcp-reno", "tcp-bbr",
                                       "enet"};

bool IsTcp(absl::string_view transport) { return absl::StartsWith(transport, "tcp"); }

// The name in a target line: TCP, TCP cubic, ENet.
std::string DisplayName(absl::string_view transport) {
  if (transport == "enet") return "ENet";
  if (transport == "tcp") return "TCP";
  if (IsTcp(transport)) return absl::StrCat("TCP ", transport.substr(4));
  return std::string(transport);
}

// ---------------------------------------------------------------------------
// Settings from the flags.

struct Settings {
  uint64_t size = 0;
  std::vector<double> losses;      // local mode: rates to run
  std::string loss_label;          // client mode: the label of every row
  std::vector<std::string> transports;
  std::string cc;
  uint64_t seed = 1;
  absl::Duration timeout;          // no progress for this long: the transfer failed
  std::string role;
  std::string peer;
  int port = -1;
  std::string bind;
  absl::Duration duration;         // server: 0 = until killed
  // local mode: what the proxy does besides --bench_loss (delay, jitter,
  // reordering, duplication, ...), from the impair flags.
  impairment::ImpairmentConfig impairment;
};

// "16MiB", "1MiB", "512KiB", "4MB", "1048576", "1.5MiB".
absl::StatusOr<uint64_t> ParseSize(absl::string_view text) {
  const std::string s(absl::StripAsciiWhitespace(text));
  size_t digits = 0;
  while (digits < s.size() && (absl::ascii_isdigit(s[digits]) || s[digits] == '.')) ++digits;
  const std::string unit = s.substr(digits);
  double number = 0;
  double scale = 0;
  if (unit.empty() || unit == "B") scale = 1;
  if (unit == "k" || unit == "K" || unit == "kB" || unit == "KB") scale = 1e3;
  if (unit == "M" || unit == "MB") scale = 1e6;
  if (unit == "G" || unit == "GB") scale = 1e9;
  if (unit == "KiB" || unit == "Ki") scale = 1024.0;
  if (unit == "MiB" || unit == "Mi") scale = 1024.0 * 1024;
  if (unit == "GiB" || unit == "Gi") scale = 1024.0 * 1024 * 1024;
  if (digits == 0 || scale == 0 || !absl::SimpleAtod(s.substr(0, digits), &number)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--bench_size \"", text, "\" is not a size (e.g. 16MiB, 512KiB, 4MB, 1048576)"));
  }
  const double bytes = std::round(number * scale);
  if (bytes < 1 || bytes > static_cast<double>(kMaxSize)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--bench_size \"", text, "\" must be between 1 byte and 1GiB"));
  }
  return static_cast<uint64_t>(bytes);
}

absl::StatusOr<Settings> ParseSettings(const std::vector<std::string>& args) {
  if (!args.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("bench bulk takes no positional arguments (got \"", args[0], "\")"));
  }
  Settings s;
  absl::StatusOr<uint64_t> size = ParseSize(absl::GetFlag(FLAGS_bench_size));
  if (!size.ok()) return size.status();
  s.size = *size;

  s.role = absl::GetFlag(FLAGS_bench_role);
  if (s.role != "local" && s.role != "server" && s.role != "client") {
    return absl::InvalidArgumentError(
        absl::StrCat("--bench_role \"", s.role, "\" must be local, server or client"));
  }

  const std::string loss_text = absl::GetFlag(FLAGS_bench_loss);
  absl::StatusOr<std::vector<double>> losses = ParseLossList(loss_text);
  if (!losses.ok()) return losses.status();
  s.losses = *losses;
  if (s.role == "client") {
    absl::StatusOr<std::string> label = ClientLossLabel(s.losses);
    if (!label.ok()) return label.status();
    s.loss_label = *std::move(label);
  }

  const std::string transports = absl::GetFlag(FLAGS_bench_transports);
  for (absl::string_view part : absl::StrSplit(transports, ',', absl::SkipWhitespace())) {
    const std::string name = absl::AsciiStrToLower(absl::StripAsciiWhitespace(part));
    if (std::find(std::begin(kTransports), std::end(kTransports), name) == std::end(kTransports)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--bench_transports: unknown transport \"", part,
          "\" (udpmsg, tcp, tcp-cubic, tcp-reno, tcp-bbr, enet)"));
    }
    if (std::find(s.transports.begin(), s.transports.end(), name) == s.transports.end()) {
      s.transports.push_back(name);
    }
  }
  if (s.transports.empty()) return absl::InvalidArgumentError("--bench_transports names none");
  // Always in the table's order.
  std::vector<std::string> ordered;
  for (const char* t : kTransports) {
    if (std::find(s.transports.begin(), s.transports.end(), t) != s.transports.end()) {
      ordered.push_back(t);
    }
  }
  s.transports = ordered;

  s.cc = absl::AsciiStrToLower(absl::GetFlag(FLAGS_cc));
  if (reliable::MakeCongestionController(s.cc, kDatagramBytes) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--cc \"", absl::GetFlag(FLAGS_cc), "\" is not a congestion controller (newreno, bbr)"));
  }
  s.seed = absl::GetFlag(FLAGS_seed);
  absl::StatusOr<impairment::ImpairmentConfig> impairment = BenchImpairmentFromFlags(s.role == "local");
  if (!impairment.ok()) return impairment.status();
  s.impairment = *std::move(impairment);
  if (!absl::ParseDuration(absl::GetFlag(FLAGS_timeout), &s.timeout) ||
      s.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("--timeout \"", absl::GetFlag(FLAGS_timeout),
                                                   "\" is not a positive duration (e.g. 10s)"));
  }
  if (!absl::ParseDuration(absl::GetFlag(FLAGS_duration), &s.duration) ||
      s.duration < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--duration \"", absl::GetFlag(FLAGS_duration), "\" is not a duration (e.g. 10m, 0)"));
  }

  s.peer = absl::GetFlag(FLAGS_bench_peer);
  s.port = absl::GetFlag(FLAGS_port);
  s.bind = absl::GetFlag(FLAGS_bind);
  if (s.role == "server") {
    if (s.port < 1 || s.port > 65534) {
      return absl::InvalidArgumentError(
          "--bench_role server needs --port P in 1..65534 (udpmsg and TCP on P, ENet on P+1)");
    }
  } else if (s.role == "client") {
    if (s.peer.empty()) {
      return absl::InvalidArgumentError("--bench_role client needs --bench_peer HOST:PORT");
    }
  } else if (!s.peer.empty()) {
    return absl::InvalidArgumentError("--bench_peer needs --bench_role client");
  }
  return s;
}

// ---------------------------------------------------------------------------
// Payload, checksum, wire format.

uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// A streaming 64-bit checksum: FNV-1a over little-endian 64-bit words with an
// extra fold, the trailing bytes zero-padded, then the length. Cheap enough
// (about 1 ns per 8 bytes) not to slow the receive path on loopback; it is a
// check against corruption, loss and reordering, not against an attacker.
class Checksum {
 public:
  void Update(absl::string_view data) {
    total_ += data.size();
    size_t i = 0;
    if (tail_len_ > 0) {
      while (tail_len_ < 8 && i < data.size()) tail_[tail_len_++] = data[i++];
      if (tail_len_ < 8) return;
      Mix(Load(tail_));
      tail_len_ = 0;
    }
    for (; i + 8 <= data.size(); i += 8) Mix(Load(data.data() + i));
    while (i < data.size()) tail_[tail_len_++] = data[i++];
  }
  uint64_t Final() const {
    Checksum c = *this;
    if (c.tail_len_ > 0) {
      std::memset(c.tail_ + c.tail_len_, 0, 8 - c.tail_len_);
      c.Mix(Load(c.tail_));
    }
    c.Mix(total_);
    return c.h_;
  }

 private:
  static uint64_t Load(const char* p) {
    uint64_t v = 0;
    for (int b = 7; b >= 0; --b) v = (v << 8) | static_cast<uint8_t>(p[b]);
    return v;
  }
  void Mix(uint64_t word) {
    h_ = (h_ ^ word) * 0x100000001B3ULL;
    h_ ^= h_ >> 32;
  }
  uint64_t h_ = 0xCBF29CE484222325ULL;
  char tail_[8] = {};
  size_t tail_len_ = 0;
  uint64_t total_ = 0;
};

struct Payload {
  std::string data;
  uint64_t checksum = 0;
};

Payload MakePayload(uint64_t size, uint64_t seed) {
  Payload p;
  p.data.resize(size);
  for (uint64_t i = 0; i < size; i += 8) {
    const uint64_t word = SplitMix64(seed * 0x2545F4914F6CDD1DULL + i / 8);
    for (uint64_t b = 0; b < 8 && i + b < size; ++b) {
      p.data[i + b] = static_cast<char>(word >> (8 * b));
    }
  }
  Checksum c;
  c.Update(p.data);
  p.checksum = c.Final();
  return p;
}

void PutU64(std::string* out, uint64_t v) {
  for (int b = 0; b < 8; ++b) out->push_back(static_cast<char>(v >> (8 * b)));
}
uint64_t GetU64(absl::string_view in, size_t at) {
  uint64_t v = 0;
  for (int b = 7; b >= 0; --b) v = (v << 8) | static_cast<uint8_t>(in[at + b]);
  return v;
}

std::string EncodeHeader(uint64_t size) {
  std::string out;
  PutU64(&out, kHeaderMagic);
  PutU64(&out, size);
  return out;
}

struct Result {
  uint64_t received = 0;
  uint64_t checksum = 0;
  absl::Time last_byte;
};

std::string EncodeResult(const Result& r) {
  std::string out;
  PutU64(&out, kResultMagic);
  PutU64(&out, r.received);
  PutU64(&out, r.checksum);
  PutU64(&out, static_cast<uint64_t>(absl::ToUnixNanos(r.last_byte)));
  return out;
}

absl::StatusOr<Result> DecodeResult(absl::string_view in) {
  if (in.size() != kResultBytes || GetU64(in, 0) != kResultMagic) {
    return absl::DataLossError("the receiver's result is malformed");
  }
  Result r;
  r.received = GetU64(in, 8);
  r.checksum = GetU64(in, 16);
  r.last_byte = absl::FromUnixNanos(static_cast<int64_t>(GetU64(in, 24)));
  return r;
}

// The receiving half of one transfer: the header, then the data.
class ReceiveState {
 public:
  absl::Status Consume(absl::string_view bytes, absl::Time now) {
    if (!have_header_) {
      const size_t take = std::min(bytes.size(), kHeaderBytes - header_.size());
      header_.append(bytes.data(), take);
      bytes.remove_prefix(take);
      if (header_.size() < kHeaderBytes) return absl::OkStatus();
      if (GetU64(header_, 0) != kHeaderMagic) {
        return absl::DataLossError("not a bench bulk transfer (bad header)");
      }
      expected_ = GetU64(header_, 8);
      if (expected_ > kMaxSize) return absl::DataLossError("transfer size over 1GiB");
      have_header_ = true;
    }
    if (bytes.empty()) return absl::OkStatus();
    if (bytes.size() > expected_ - received_) {
      return absl::DataLossError(absl::StrCat("more data than the ", expected_,
                                              " bytes announced"));
    }
    sum_.Update(bytes);
    received_ += bytes.size();
    last_ = now;
    return absl::OkStatus();
  }
  bool complete() const { return have_header_ && received_ == expected_; }
  uint64_t received() const { return received_; }
  std::string EncodedResult() const {
    return EncodeResult(Result{received_, sum_.Final(), last_});
  }

 private:
  std::string header_;
  bool have_header_ = false;
  uint64_t expected_ = 0;
  uint64_t received_ = 0;
  Checksum sum_;
  absl::Time last_;
};

// What one transfer measured.
struct Outcome {
  std::string transport;
  std::string loss;  // label
  uint64_t bytes = 0;     // delivered (verified when `verified`)
  bool verified = false;
  double seconds = 0;
  int64_t retransmits = -1;  // -1: unknown
  bool receiver_clock = true;
  std::string error;
  double mbps() const { return seconds > 0 && verified ? bytes * 8 / seconds / 1e6 : 0; }
};

Outcome Finish(absl::string_view transport, absl::Time start, absl::Time done,
               const Result& result, const Payload& payload) {
  Outcome o;
  o.transport = std::string(transport);
  o.bytes = result.received;
  o.verified = result.received == payload.data.size() && result.checksum == payload.checksum;
  if (!o.verified) {
    o.error = absl::StrFormat("receiver got %d of %d bytes, checksum %016x, expected %016x",
                              result.received, payload.data.size(), result.checksum,
                              payload.checksum);
  }
  absl::Time end = result.last_byte;
  if (end < start || end > done) {
    end = done;
    o.receiver_clock = false;
  }
  o.seconds = std::max(1e-9, absl::ToDoubleSeconds(end - start));
  return o;
}

void Log(const std::string& line) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}


// poll(2) one descriptor for `events`, up to `timeout`. True when ready.
bool WaitFd(int fd, short events, absl::Duration timeout) {
  pollfd p{fd, events, 0};
  const int ms = static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(timeout)));
  return ::poll(&p, 1, ms) > 0;
}

// ---------------------------------------------------------------------------
// udpmsg.

reliable::EndpointOptions BenchEndpointOptions(const Settings& s) {
  reliable::EndpointOptions o;
  o.connection.congestion = s.cc;
  o.connection.max_datagram = kDatagramBytes;
  o.connection.handshake_timeout = s.timeout;
  o.connection.peer_timeout = s.timeout;
  o.connection.idle_timeout = std::max(s.timeout, absl::Seconds(30));
  o.connection.keepalive = std::min(absl::Seconds(5), s.timeout / 3);
  return o;
}

class UdpmsgReceiver {
 public:
  static absl::StatusOr<std::unique_ptr<UdpmsgReceiver>> Create(const udp::SocketAddress& bind,
                                                                const Settings& s, bool verbose) {
    Runtime::Options options;
    options.endpoint = BenchEndpointOptions(s);
    options.endpoint.accept_incoming = true;
    options.bind = bind;
    absl::StatusOr<std::unique_ptr<Runtime>> rt = Runtime::Create(options);
    if (!rt.ok()) return rt.status();
    auto r = std::unique_ptr<UdpmsgReceiver>(new UdpmsgReceiver);
    r->rt_ = *std::move(rt);
    r->verbose_ = verbose;
    return r;
  }

  const udp::SocketAddress& address() const { return rt_->local_address(); }
  void Wake() { rt_->Wake(); }

  absl::Status Run(const std::atomic<bool>& stop) {
    while (!stop.load()) {
      absl::StatusOr<Runtime::PollResult> r = rt_->Poll(absl::Milliseconds(200));
      if (!r.ok()) return r.status();
      for (const Event& e : r->events) Handle(e);
    }
    return absl::OkStatus();
  }

 private:
  struct Transfer {
    udp::SocketAddress peer;
    ReceiveState state;
    absl::Time start;
    bool answered = false;
  };

  void Handle(const Event& e) {
    if (e.type == Event::Type::kConnected) {
      transfers_[e.connection] = Transfer{e.peer, ReceiveState(), absl::Now(), false};
      return;
    }
    auto it = transfers_.find(e.connection);
    if (it == transfers_.end()) return;
    Transfer& t = it->second;
    if (e.type == Event::Type::kClosed) {
      if (!t.answered && verbose_) {
        Log(absl::StrCat("udpmsg: ", t.peer.ToString(), " went away after ", t.state.received(),
                         " bytes: ", e.reason));
      }
      transfers_.erase(it);
      return;
    }
    if (e.type != Event::Type::kMessage || t.answered) return;
    if (absl::Status s = t.state.Consume(e.message, absl::Now()); !s.ok()) {
      if (verbose_) Log(absl::StrCat("udpmsg: ", t.peer.ToString(), ": ", s.message()));
      (void)rt_->Close(e.connection, std::string(s.message()), /*flush=*/false);
      return;
    }
    if (!t.state.complete()) return;
    t.answered = true;
    (void)rt_->Send(e.connection, 0, DeliveryMode::kReliableOrdered, t.state.EncodedResult());
    if (verbose_) {
      Log(absl::StrFormat("udpmsg: received %d bytes from %s in %.2f s", t.state.received(),
                          t.peer.ToString(), absl::ToDoubleSeconds(absl::Now() - t.start)));
    }
  }

  UdpmsgReceiver() = default;
  std::unique_ptr<Runtime> rt_;
  bool verbose_ = false;
  absl::flat_hash_map<ConnectionId, Transfer> transfers_;
};

absl::StatusOr<Outcome> SendUdpmsg(const udp::SocketAddress& to, const Payload& payload,
                                   const Settings& s) {
  Runtime::Options options;
  options.endpoint = BenchEndpointOptions(s);
  options.bind = udp::SocketAddress::Any(to.family(), 0);
  absl::StatusOr<std::unique_ptr<Runtime>> created = Runtime::Create(options);
  if (!created.ok()) return created.status();
  Runtime& rt = **created;
  absl::StatusOr<ConnectionId> id = rt.Connect(to);
  if (!id.ok()) return id.status();
  if (absl::Status st = rt.AwaitConnected(*id, s.timeout); !st.ok()) return st;

  const absl::string_view data = payload.data;
  const absl::Time start = absl::Now();
  if (absl::StatusOr<uint64_t> q =
          rt.Send(*id, 0, DeliveryMode::kReliableOrdered, EncodeHeader(data.size()));
      !q.ok()) {
    return q.status();
  }
  size_t offset = 0;
  absl::Time last_progress = start;
  std::optional<Result> result;
  absl::Time done;
  while (!result.has_value()) {
    while (offset < data.size() && rt.endpoint().QueuedBytes(*id) < kUdpmsgQueueTarget) {
      const size_t n = std::min(kUdpmsgChunk, data.size() - offset);
      absl::StatusOr<uint64_t> q = rt.Send(*id, 0, DeliveryMode::kReliableOrdered,
                                           std::string(data.substr(offset, n)));
      if (!q.ok()) return q.status();
      offset += n;
    }
    absl::StatusOr<Runtime::PollResult> r = rt.Poll(absl::Milliseconds(50));
    if (!r.ok()) return r.status();
    const absl::Time now = absl::Now();
    for (const Event& e : r->events) {
      if (e.connection != *id) continue;
      if (e.type == Event::Type::kAcked) last_progress = now;
      if (e.type == Event::Type::kClosed) {
        return absl::UnavailableError(absl::StrCat("udpmsg: connection closed after ", offset,
                                                   " bytes queued: ", e.reason));
      }
      if (e.type == Event::Type::kMessage) {
        absl::StatusOr<Result> got = DecodeResult(e.message);
        if (!got.ok()) return got.status();
        result = *got;
        done = now;
      }
    }
    if (!result.has_value() && now - last_progress > s.timeout) {
      return absl::DeadlineExceededError(absl::StrCat(
          "udpmsg: no progress for ", absl::FormatDuration(s.timeout), " after ", offset,
          " bytes queued"));
    }
  }
  Outcome o = Finish("udpmsg", start, done, *result, payload);
  if (absl::StatusOr<reliable::ConnectionStats> st = rt.Stats(*id); st.ok()) {
    o.retransmits = static_cast<int64_t>(st->fragments_retransmitted);
  }
  (void)rt.Close(*id, "bench done", /*flush=*/true);
  (void)rt.Flush(absl::Seconds(1));
  return o;
}

// ---------------------------------------------------------------------------
// TCP.

class TcpReceiver {
 public:
  static absl::StatusOr<std::unique_ptr<TcpReceiver>> Create(const udp::SocketAddress& bind,
                                                             const Settings& s, bool verbose) {
    absl::StatusOr<udp::StreamListener> listener =
        udp::StreamListener::Listen(bind, 16, {.non_blocking = true});
    if (!listener.ok()) return listener.status();
    absl::StatusOr<udp::SocketAddress> local = listener->LocalAddress();
    if (!local.ok()) return local.status();
    auto r = std::unique_ptr<TcpReceiver>(new TcpReceiver(*std::move(listener)));
    r->address_ = *local;
    r->timeout_ = s.timeout;
    r->verbose_ = verbose;
    return r;
  }

  const udp::SocketAddress& address() const { return address_; }

  absl::Status Run(const std::atomic<bool>& stop) {
    while (!stop.load()) {
      if (!WaitFd(listener_.fd(), POLLIN, absl::Milliseconds(200))) continue;
      absl::StatusOr<udp::AcceptedStream> client = listener_.Accept(/*non_blocking_client=*/true);
      if (!client.ok()) {
        if (absl::IsUnavailable(client.status())) continue;
        return client.status();
      }
      absl::Status served = Serve(client->socket, stop);
      if (!served.ok() && verbose_) {
        Log(absl::StrCat("tcp: ", client->peer.ToString(), ": ", served.message()));
      }
    }
    return absl::OkStatus();
  }

 private:
  explicit TcpReceiver(udp::StreamListener listener) : listener_(std::move(listener)) {}

  absl::Status Serve(udp::StreamSocket& conn, const std::atomic<bool>& stop) {
    ReceiveState state;
    std::vector<uint8_t> buffer(kTcpChunk);
    const absl::Time start = absl::Now();
    absl::Time last_progress = start;
    while (!state.complete()) {
      if (stop.load()) return absl::CancelledError("stopped");
      if (absl::Now() - last_progress > timeout_) {
        return absl::DeadlineExceededError(absl::StrCat("no data for ",
                                                        absl::FormatDuration(timeout_)));
      }
      if (!WaitFd(conn.fd(), POLLIN, absl::Milliseconds(100))) continue;
      absl::StatusOr<size_t> n = conn.Recv(absl::MakeSpan(buffer));
      if (!n.ok()) {
        if (absl::IsUnavailable(n.status())) continue;
        return n.status();
      }
      if (*n == 0) {
        return absl::UnavailableError(
            absl::StrCat("closed after ", state.received(), " bytes"));
      }
      last_progress = absl::Now();
      absl::Status st = state.Consume(
          absl::string_view(reinterpret_cast<const char*>(buffer.data()), *n), last_progress);
      if (!st.ok()) return st;
    }
    const std::string result = state.EncodedResult();
    if (absl::Status st = conn.SendAll(absl::MakeConstSpan(
            reinterpret_cast<const uint8_t*>(result.data()), result.size()));
        !st.ok()) {
      return st;
    }
    if (verbose_) {
      Log(absl::StrFormat("tcp: received %d bytes in %.2f s", state.received(),
                          absl::ToDoubleSeconds(absl::Now() - start)));
    }
    // Let the sender close first (it reads the result, then closes).
    const absl::Time linger = absl::Now() + absl::Seconds(2);
    while (absl::Now() < linger && !stop.load()) {
      if (!WaitFd(conn.fd(), POLLIN, absl::Milliseconds(100))) continue;
      absl::StatusOr<size_t> n = conn.Recv(absl::MakeSpan(buffer));
      if (!n.ok() && absl::IsUnavailable(n.status())) continue;
      break;
    }
    return absl::OkStatus();
  }

  udp::StreamListener listener_;
  udp::SocketAddress address_;
  absl::Duration timeout_;
  bool verbose_ = false;
};

// `transport` is tcp (the kernel's congestion control) or tcp-<cc>.
absl::StatusOr<Outcome> SendTcp(const std::string& transport,
                                const std::vector<udp::SocketAddress>& to, const Payload& payload,
                                const Settings& s) {
  absl::StatusOr<udp::StreamSocket> conn = udp::StreamSocket::Connect(to);
  if (!conn.ok()) return conn.status();
  if (absl::Status st = conn->SetNonBlocking(true); !st.ok()) return st;
  if (transport != "tcp") {
    // Before the first byte, so the whole transfer runs under it.
    const std::string cc = transport.substr(4);
    if (::setsockopt(conn->fd(), IPPROTO_TCP, TCP_CONGESTION, cc.data(),
                     static_cast<socklen_t>(cc.size())) != 0) {
      const int e = errno;
      return udp::ErrnoStatus(
          e, absl::StrCat("setsockopt(TCP_CONGESTION, ", cc, ")",
                          e == EPERM ? " (not in net.ipv4.tcp_allowed_congestion_control; "
                                       "root may use any loaded one)"
                                     : e == ENOENT ? " (not available in this kernel)" : ""));
    }
  }

  const absl::Time start = absl::Now();
  absl::Time last_progress = start;
  auto send = [&](absl::string_view bytes) -> absl::Status {
    while (!bytes.empty()) {
      const size_t n = std::min(bytes.size(), kTcpChunk);
      absl::StatusOr<size_t> sent = conn->Send(
          absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(bytes.data()), n));
      if (sent.ok()) {
        bytes.remove_prefix(*sent);
        last_progress = absl::Now();
        continue;
      }
      if (!absl::IsUnavailable(sent.status())) return sent.status();
      if (absl::Now() - last_progress > s.timeout) {
        return absl::DeadlineExceededError(
            absl::StrCat("tcp: could not send for ", absl::FormatDuration(s.timeout)));
      }
      WaitFd(conn->fd(), POLLOUT, absl::Milliseconds(100));
    }
    return absl::OkStatus();
  };
  if (absl::Status st = send(EncodeHeader(payload.data.size())); !st.ok()) return st;
  if (absl::Status st = send(payload.data); !st.ok()) return st;

  std::string answer;
  std::vector<uint8_t> buffer(kResultBytes);
  while (answer.size() < kResultBytes) {
    if (absl::Now() - last_progress > s.timeout) {
      return absl::DeadlineExceededError(absl::StrCat(
          "tcp: no result from the receiver within ", absl::FormatDuration(s.timeout)));
    }
    if (!WaitFd(conn->fd(), POLLIN, absl::Milliseconds(100))) continue;
    absl::StatusOr<size_t> n =
        conn->Recv(absl::MakeSpan(buffer.data(), kResultBytes - answer.size()));
    if (!n.ok()) {
      if (absl::IsUnavailable(n.status())) continue;
      return n.status();
    }
    if (*n == 0) return absl::UnavailableError("tcp: receiver closed before its result");
    answer.append(reinterpret_cast<const char*>(buffer.data()), *n);
    last_progress = absl::Now();
  }
  const absl::Time done = absl::Now();
  absl::StatusOr<Result> result = DecodeResult(answer);
  if (!result.ok()) return result.status();
  Outcome o = Finish(transport, start, done, *result, payload);
  tcp_info info;
  std::memset(&info, 0, sizeof(info));
  socklen_t len = sizeof(info);
  if (::getsockopt(conn->fd(), IPPROTO_TCP, TCP_INFO, &info, &len) == 0) {
    o.retransmits = info.tcpi_total_retrans;
  }
  return o;
}

// ---------------------------------------------------------------------------
// ENet.

absl::Status EnetInit() {
  static std::once_flag once;
  static int rc = 0;
  std::call_once(once, [] { rc = enet_initialize(); });
  if (rc != 0) return absl::InternalError("enet_initialize failed");
  return absl::OkStatus();
}

absl::StatusOr<ENetAddress> ToEnet(const udp::SocketAddress& a) {
  const udp::SocketAddress plain = a.Unmapped();
  if (plain.family() != udp::AddressFamily::kIpv4) {
    return absl::InvalidArgumentError(
        absl::StrCat("enet: ENet 1.3 speaks IPv4 only, not ", a.ToString()));
  }
  ENetAddress out;
  out.port = plain.port();
  if (plain.IsAny()) {
    out.host = ENET_HOST_ANY;
  } else if (enet_address_set_host_ip(&out, plain.IpString().c_str()) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("enet: bad address ", a.ToString()));
  }
  return out;
}

using EnetHostPtr = std::unique_ptr<ENetHost, void (*)(ENetHost*)>;

absl::StatusOr<EnetHostPtr> MakeEnetHost(const ENetAddress* bind, size_t peers) {
  if (absl::Status s = EnetInit(); !s.ok()) return s;
  ENetHost* host = enet_host_create(bind, peers, 1, 0, 0);
  if (host == nullptr) {
    return absl::UnavailableError(
        bind == nullptr ? std::string("enet: cannot create a host")
                        : absl::StrCat("enet: cannot bind port ", bind->port));
  }
  host->mtu = kDatagramBytes;
  return EnetHostPtr(host, enet_host_destroy);
}

class EnetReceiver {
 public:
  static absl::StatusOr<std::unique_ptr<EnetReceiver>> Create(const ENetAddress& bind,
                                                              bool verbose) {
    absl::StatusOr<EnetHostPtr> host = MakeEnetHost(&bind, 8);
    if (!host.ok()) return host.status();
    ENetAddress local;
    if (enet_socket_get_address((*host)->socket, &local) != 0) {
      return absl::InternalError("enet: cannot read the bound address");
    }
    auto r = std::unique_ptr<EnetReceiver>(new EnetReceiver(*std::move(host)));
    r->port_ = local.port;
    r->verbose_ = verbose;
    return r;
  }

  uint16_t port() const { return port_; }

  absl::Status Run(const std::atomic<bool>& stop) {
    ENetEvent ev;
    while (!stop.load()) {
      const int r = enet_host_service(host_.get(), &ev, 50);
      if (r < 0) return absl::InternalError("enet: enet_host_service failed");
      if (r == 0) continue;
      switch (ev.type) {
        case ENET_EVENT_TYPE_CONNECT:
          transfers_[ev.peer] = Transfer{ReceiveState(), absl::Now(), false};
          break;
        case ENET_EVENT_TYPE_DISCONNECT:
          if (auto it = transfers_.find(ev.peer); it != transfers_.end()) {
            if (!it->second.answered && verbose_) {
              Log(absl::StrCat("enet: peer went away after ", it->second.state.received(),
                               " bytes"));
            }
            transfers_.erase(it);
          }
          break;
        case ENET_EVENT_TYPE_RECEIVE:
          OnPacket(ev.peer, ev.packet);
          enet_packet_destroy(ev.packet);
          break;
        case ENET_EVENT_TYPE_NONE:
          break;
      }
    }
    return absl::OkStatus();
  }

 private:
  struct Transfer {
    ReceiveState state;
    absl::Time start;
    bool answered = false;
  };

  explicit EnetReceiver(EnetHostPtr host) : host_(std::move(host)) {}

  void OnPacket(ENetPeer* peer, ENetPacket* packet) {
    auto it = transfers_.find(peer);
    if (it == transfers_.end() || it->second.answered) return;
    Transfer& t = it->second;
    absl::Status s = t.state.Consume(
        absl::string_view(reinterpret_cast<const char*>(packet->data), packet->dataLength),
        absl::Now());
    if (!s.ok()) {
      if (verbose_) Log(absl::StrCat("enet: ", s.message()));
      enet_peer_disconnect(peer, 0);
      return;
    }
    if (!t.state.complete()) return;
    t.answered = true;
    const std::string result = t.state.EncodedResult();
    ENetPacket* answer =
        enet_packet_create(result.data(), result.size(), ENET_PACKET_FLAG_RELIABLE);
    if (answer != nullptr && enet_peer_send(peer, 0, answer) != 0) enet_packet_destroy(answer);
    enet_host_flush(host_.get());
    if (verbose_) {
      Log(absl::StrFormat("enet: received %d bytes in %.2f s", t.state.received(),
                          absl::ToDoubleSeconds(absl::Now() - t.start)));
    }
  }

  EnetHostPtr host_;
  uint16_t port_ = 0;
  bool verbose_ = false;
  absl::flat_hash_map<ENetPeer*, Transfer> transfers_;
};

absl::StatusOr<Outcome> SendEnet(const ENetAddress& to, const Payload& payload,
                                 const Settings& s) {
  absl::StatusOr<EnetHostPtr> created = MakeEnetHost(nullptr, 1);
  if (!created.ok()) return created.status();
  ENetHost* host = created->get();
  ENetPeer* peer = enet_host_connect(host, &to, 1, 0);
  if (peer == nullptr) return absl::UnavailableError("enet: enet_host_connect failed");

  ENetEvent ev;
  const absl::Time connect_deadline = absl::Now() + s.timeout;
  bool connected = false;
  while (!connected) {
    if (absl::Now() > connect_deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("enet: no answer within ", absl::FormatDuration(s.timeout)));
    }
    const int r = enet_host_service(host, &ev, 100);
    if (r < 0) return absl::InternalError("enet: enet_host_service failed");
    if (r > 0 && ev.type == ENET_EVENT_TYPE_CONNECT) connected = true;
    if (r > 0 && ev.type == ENET_EVENT_TYPE_DISCONNECT) {
      return absl::UnavailableError("enet: connection refused or timed out");
    }
  }

  auto send = [&](absl::string_view bytes) -> absl::Status {
    ENetPacket* p = enet_packet_create(bytes.data(), bytes.size(), ENET_PACKET_FLAG_RELIABLE);
    if (p == nullptr) return absl::ResourceExhaustedError("enet: enet_packet_create failed");
    if (enet_peer_send(peer, 0, p) != 0) {
      enet_packet_destroy(p);
      return absl::UnavailableError("enet: enet_peer_send failed");
    }
    return absl::OkStatus();
  };

  const absl::string_view data = payload.data;
  const absl::Time start = absl::Now();
  if (absl::Status st = send(EncodeHeader(data.size())); !st.ok()) return st;
  size_t offset = 0;
  // ENet resets packetsLost every ENET_PEER_PACKET_LOSS_INTERVAL; add up
  // each window's count as it resets.
  uint64_t lost_before = 0;
  uint32_t lost_seen = 0;
  size_t unacked_seen = SIZE_MAX;
  absl::Time last_progress = start;
  std::optional<Result> result;
  absl::Time done;
  while (!result.has_value()) {
    while (offset < data.size() && enet_list_size(&peer->outgoingCommands) < kEnetQueuePackets) {
      const size_t n = std::min(kEnetPacket, data.size() - offset);
      if (absl::Status st = send(data.substr(offset, n)); !st.ok()) return st;
      offset += n;
      last_progress = absl::Now();
    }
    const int r = enet_host_service(host, &ev, 1);
    if (r < 0) return absl::InternalError("enet: enet_host_service failed");
    const absl::Time now = absl::Now();
    if (r > 0 && ev.type == ENET_EVENT_TYPE_RECEIVE) {
      absl::StatusOr<Result> got = DecodeResult(absl::string_view(
          reinterpret_cast<const char*>(ev.packet->data), ev.packet->dataLength));
      enet_packet_destroy(ev.packet);
      if (!got.ok()) return got.status();
      result = *got;
      done = now;
    } else if (r > 0 && ev.type == ENET_EVENT_TYPE_DISCONNECT) {
      return absl::UnavailableError(
          absl::StrCat("enet: disconnected (timed out) after ", offset, " bytes queued"));
    }
    if (peer->packetsLost < lost_seen) lost_before += lost_seen;
    lost_seen = peer->packetsLost;
    const size_t unacked =
        enet_list_size(&peer->outgoingCommands) + enet_list_size(&peer->sentReliableCommands);
    if (unacked < unacked_seen) last_progress = now;
    unacked_seen = unacked;
    if (!result.has_value() && now - last_progress > s.timeout) {
      return absl::DeadlineExceededError(absl::StrCat(
          "enet: no progress for ", absl::FormatDuration(s.timeout), " after ", offset,
          " bytes queued"));
    }
  }
  Outcome o = Finish("enet", start, done, *result, payload);
  o.retransmits = static_cast<int64_t>(lost_before + lost_seen);
  enet_peer_disconnect(peer, 0);
  const absl::Time linger = absl::Now() + absl::Milliseconds(500);
  while (absl::Now() < linger) {
    const int r = enet_host_service(host, &ev, 20);
    if (r > 0 && ev.type == ENET_EVENT_TYPE_RECEIVE) enet_packet_destroy(ev.packet);
    if (r > 0 && ev.type == ENET_EVENT_TYPE_DISCONNECT) break;
    if (r < 0) break;
  }
  return o;
}

// ---------------------------------------------------------------------------
// Running receivers on threads.

// A receiver's Run() on its own thread; stops and joins on destruction.
class Background {
 public:
  Background(std::function<absl::Status(const std::atomic<bool>&)> run,
             std::function<void()> wake)
      : wake_(std::move(wake)) {
    thread_ = std::thread([this, run = std::move(run)] {
      absl::Status s = run(stop_);
      std::lock_guard<std::mutex> lock(mu_);
      status_ = s;
      finished_ = true;
    });
  }
  ~Background() { Stop(); }
  void Stop() {
    stop_.store(true);
    if (wake_) wake_();
    if (thread_.joinable()) thread_.join();
  }
  // The thread's error, once it has ended on one.
  absl::Status status() {
    std::lock_guard<std::mutex> lock(mu_);
    return status_;
  }
  bool finished() {
    std::lock_guard<std::mutex> lock(mu_);
    return finished_;
  }

 private:
  std::atomic<bool> stop_{false};
  std::function<void()> wake_;
  std::mutex mu_;
  absl::Status status_;
  bool finished_ = false;
  std::thread thread_;
};

// An in-process lossy path for a UDP transport: the proxy on its thread.
class LossyPath {
 public:
  // `impairment` with its loss set to `loss`.
  static absl::StatusOr<std::unique_ptr<LossyPath>> Create(const udp::SocketAddress& target,
                                                           double loss,
                                                           impairment::ImpairmentConfig impairment) {
    impairment::ImpairmentConfig config = std::move(impairment);
    config.loss = loss;
    absl::StatusOr<std::unique_ptr<impairment::ImpairProxy>> proxy = impairment::ImpairProxy::Create(
        {.listen = udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, 0),
         .target = target,
         .config = config});
    if (!proxy.ok()) return proxy.status();
    auto p = std::unique_ptr<LossyPath>(new LossyPath);
    p->proxy_ = *std::move(proxy);
    impairment::ImpairProxy* raw = p->proxy_.get();
    p->thread_ = std::thread([raw] { raw->Run(absl::ZeroDuration()).IgnoreError(); });
    return p;
  }
  ~LossyPath() {
    proxy_->Stop();
    if (thread_.joinable()) thread_.join();
  }
  const udp::SocketAddress& address() const { return proxy_->local_address(); }

 private:
  LossyPath() = default;
  std::unique_ptr<impairment::ImpairProxy> proxy_;
  std::thread thread_;
};

absl::StatusOr<Outcome> RunLocal(const std::string& transport, double loss,
                                 const Payload& payload, const Settings& s) {
  const udp::SocketAddress loopback = udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, 0);
  if (transport == "udpmsg") {
    absl::StatusOr<std::unique_ptr<UdpmsgReceiver>> rx =
        UdpmsgReceiver::Create(loopback, s, /*verbose=*/false);
    if (!rx.ok()) return rx.status();
    UdpmsgReceiver* r = rx->get();
    Background bg([r](const std::atomic<bool>& stop) { return r->Run(stop); },
                  [r] { r->Wake(); });
    absl::StatusOr<std::unique_ptr<LossyPath>> path = LossyPath::Create(r->address(), loss, s.impairment);
    if (!path.ok()) return path.status();
    absl::StatusOr<Outcome> o = SendUdpmsg((*path)->address(), payload, s);
    bg.Stop();
    if (!bg.status().ok()) return bg.status();
    return o;
  }
  if (IsTcp(transport)) {
    absl::StatusOr<std::unique_ptr<TcpReceiver>> rx =
        TcpReceiver::Create(loopback, s, /*verbose=*/false);
    if (!rx.ok()) return rx.status();
    TcpReceiver* r = rx->get();
    Background bg([r](const std::atomic<bool>& stop) { return r->Run(stop); }, nullptr);
    absl::StatusOr<Outcome> o = SendTcp(transport, {r->address()}, payload, s);
    bg.Stop();
    if (!bg.status().ok()) return bg.status();
    return o;
  }
  absl::StatusOr<ENetAddress> bind = ToEnet(loopback);
  if (!bind.ok()) return bind.status();
  absl::StatusOr<std::unique_ptr<EnetReceiver>> rx = EnetReceiver::Create(*bind, false);
  if (!rx.ok()) return rx.status();
  EnetReceiver* r = rx->get();
  Background bg([r](const std::atomic<bool>& stop) { return r->Run(stop); }, nullptr);
  absl::StatusOr<std::unique_ptr<LossyPath>> path = LossyPath::Create(
      udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, r->port()), loss, s.impairment);
  if (!path.ok()) return path.status();
  absl::StatusOr<ENetAddress> to = ToEnet((*path)->address());
  if (!to.ok()) return to.status();
  absl::StatusOr<Outcome> o = SendEnet(*to, payload, s);
  bg.Stop();
  if (!bg.status().ok()) return bg.status();
  return o;
}

// ---------------------------------------------------------------------------
// Split mode.

absl::StatusOr<udp::SocketAddress> ResolvePeer(const std::string& host_port,
                                               udp::AddressFamily family, udp::SocketType type) {
  absl::StatusOr<std::vector<udp::SocketAddress>> peers =
      udp::ResolveHostPort(host_port, family, type);
  if (!peers.ok()) return peers.status();
  return peers->front();
}


absl::StatusOr<Outcome> RunClient(const std::string& transport, const Payload& payload,
                                  const Settings& s) {
  if (transport == "udpmsg") {
    absl::StatusOr<udp::SocketAddress> to =
        ResolvePeer(s.peer, FamilyFromFlags(), udp::SocketType::kDatagram);
    if (!to.ok()) return to.status();
    return SendUdpmsg(*to, payload, s);
  }
  if (IsTcp(transport)) {
    absl::StatusOr<std::vector<udp::SocketAddress>> to =
        udp::ResolveHostPort(s.peer, FamilyFromFlags(), udp::SocketType::kStream);
    if (!to.ok()) return to.status();
    return SendTcp(transport, *to, payload, s);
  }
  absl::StatusOr<udp::SocketAddress> to =
      ResolvePeer(s.peer, udp::AddressFamily::kIpv4, udp::SocketType::kDatagram);
  if (!to.ok()) return to.status();
  if (to->port() == 65535) return absl::InvalidArgumentError("enet: port+1 is out of range");
  to->set_port(static_cast<uint16_t>(to->port() + 1));
  absl::StatusOr<ENetAddress> address = ToEnet(*to);
  if (!address.ok()) return address.status();
  return SendEnet(*address, payload, s);
}

bool Wants(const Settings& s, absl::string_view transport) {
  return std::find(s.transports.begin(), s.transports.end(), transport) != s.transports.end();
}

absl::Status RunServer(const Settings& s) {
  std::vector<std::unique_ptr<Background>> threads;
  std::unique_ptr<UdpmsgReceiver> udpmsg_rx;
  std::unique_ptr<TcpReceiver> tcp_rx;
  std::unique_ptr<EnetReceiver> enet_rx;
  if (Wants(s, "udpmsg")) {
    absl::StatusOr<std::vector<udp::SocketAddress>> bind =
        BindAddresses(s.bind, s.port, udp::SocketType::kDatagram);
    if (!bind.ok()) return bind.status();
    absl::StatusOr<std::unique_ptr<UdpmsgReceiver>> rx =
        UdpmsgReceiver::Create(bind->front(), s, /*verbose=*/true);
    if (!rx.ok()) return rx.status();
    udpmsg_rx = *std::move(rx);
    PrintListening(udpmsg_rx->address());
  }
  if (std::any_of(s.transports.begin(), s.transports.end(), IsTcp)) {
    absl::StatusOr<std::vector<udp::SocketAddress>> bind =
        BindAddresses(s.bind, s.port, udp::SocketType::kStream);
    if (!bind.ok()) return bind.status();
    absl::StatusOr<std::unique_ptr<TcpReceiver>> rx =
        TcpReceiver::Create(bind->front(), s, /*verbose=*/true);
    if (!rx.ok()) return rx.status();
    tcp_rx = *std::move(rx);
    Log(absl::StrCat("tcp listening on ", tcp_rx->address().ToString()));
  }
  if (Wants(s, "enet")) {
    ENetAddress bind{ENET_HOST_ANY, static_cast<uint16_t>(s.port + 1)};
    if (!s.bind.empty()) {
      absl::StatusOr<std::vector<udp::SocketAddress>> addrs = udp::Resolve(
          s.bind, absl::StrCat(s.port + 1), udp::AddressFamily::kIpv4, udp::SocketType::kDatagram);
      if (!addrs.ok()) return addrs.status();
      absl::StatusOr<ENetAddress> a = ToEnet(addrs->front());
      if (!a.ok()) return a.status();
      bind = *a;
    }
    absl::StatusOr<std::unique_ptr<EnetReceiver>> rx = EnetReceiver::Create(bind, true);
    if (!rx.ok()) return rx.status();
    enet_rx = *std::move(rx);
    Log(absl::StrCat("enet listening on port ", enet_rx->port()));
  }
  if (udpmsg_rx != nullptr) {
    UdpmsgReceiver* r = udpmsg_rx.get();
    threads.push_back(std::make_unique<Background>(
        [r](const std::atomic<bool>& stop) { return r->Run(stop); }, [r] { r->Wake(); }));
  }
  if (tcp_rx != nullptr) {
    TcpReceiver* r = tcp_rx.get();
    threads.push_back(std::make_unique<Background>(
        [r](const std::atomic<bool>& stop) { return r->Run(stop); }, nullptr));
  }
  if (enet_rx != nullptr) {
    EnetReceiver* r = enet_rx.get();
    threads.push_back(std::make_unique<Background>(
        [r](const std::atomic<bool>& stop) { return r->Run(stop); }, nullptr));
  }
  const absl::Time end = s.duration > absl::ZeroDuration() ? absl::Now() + s.duration
                                                           : absl::InfiniteFuture();
  absl::Status failed;
  while (failed.ok() && absl::Now() < end) {
    absl::SleepFor(absl::Milliseconds(100));
    for (auto& t : threads) {
      if (t->finished() && !t->status().ok()) failed = t->status();
    }
  }
  for (auto& t : threads) t->Stop();
  return failed;
}

// ---------------------------------------------------------------------------
// The table.

std::string Ratio(double a, double b) {
  if (a <= 0 || b <= 0) return "-";
  return absl::StrFormat("%.2fx", a / b);
}

const Outcome* Find(const std::vector<Outcome>& rows, absl::string_view transport,
                    const std::string& loss) {
  for (const Outcome& o : rows) {
    if (o.transport == transport && o.loss == loss && o.verified) return &o;
  }
  return nullptr;
}

std::string Target(const std::vector<Outcome>& rows, const std::string& loss,
                    absl::string_view other, double want, absl::string_view what) {
  const Outcome* u = Find(rows, "udpmsg", loss);
  const Outcome* o = Find(rows, other, loss);
  std::string head = absl::StrFormat("target: udpmsg >= %gx %s at %s loss%s: ", want,
                                     DisplayName(other), loss, what);
  if (u == nullptr || o == nullptr) {
    return absl::StrCat(head, "not measured here (no verified ", u == nullptr ? "udpmsg" : other,
                        " row at ", loss, ")");
  }
  const double ratio = u->mbps() / o->mbps();
  return absl::StrCat(head, absl::StrFormat("%.2fx", ratio), ratio >= want ? " (met)" : " (NOT met)");
}

BenchTable MakeTable(const std::vector<Outcome>& rows, const Settings& s) {
  BenchTable t;
  t.title = absl::StrFormat("bench bulk: %d bytes per transfer, %d-byte datagrams, udpmsg cc %s, %s",
                            s.size, kDatagramBytes, s.cc,
                            s.role == "local" ? "loopback, one process"
                                              : absl::StrCat("to ", s.peer));
  t.columns = {"transport", "loss",   "bytes",  "seconds",     "MB/s",
               "Mbit/s",    "vs_tcp", "retransmits", "verified"};
  for (const Outcome& o : rows) {
    const Outcome* tcp = Find(rows, "tcp", o.loss);
    const bool ok = o.verified;
    t.rows.push_back({
        o.transport,
        o.loss,
        absl::StrCat(o.bytes),
        ok ? absl::StrFormat("%.4g", o.seconds) : "-",
        ok ? absl::StrFormat("%.2f", o.mbps() / 8) : "-",
        ok ? absl::StrFormat("%.2f", o.mbps()) : "-",
        ok && tcp != nullptr ? Ratio(o.mbps(), tcp->mbps()) : "-",
        o.retransmits >= 0 ? absl::StrCat(o.retransmits) : "-",
        ok ? "yes" : "no",
    });
  }
  t.notes.push_back(
      "goodput: verified bytes / (first byte sent -> last byte received at the receiver); "
      "MB = 10^6 bytes");
  if (s.role == "local") {
    t.notes.push_back(absl::StrCat(
        "udpmsg and enet pass an in-process impairment proxy (loss in both directions, seed ",
        s.seed, "); tcp runs at 0% only: the proxy carries UDP, and dropping TCP segments needs "
                "the kernel (bench/run.sh drops with nftables on a rate-limited veth)"));
    if (ImpairsBesidesLoss(s.impairment)) {
      t.notes.push_back(absl::StrCat("the proxy also applies, both ways: ",
                                     DescribeBesidesLoss(s.impairment)));
    }
  } else {
    t.notes.push_back("loss is applied by the network (bench/run.sh: nftables on a veth); "
                      "the loss column only labels it");
  }
  t.notes.push_back(
      "retransmits: udpmsg fragments retransmitted; tcp tcpi_total_retrans; enet packetsLost "
      "(summed over ENet's 10 s windows)");
  if (std::any_of(rows.begin(), rows.end(), [](const Outcome& o) {
        return o.verified && !o.receiver_clock;
      })) {
    t.notes.push_back("some intervals end when the sender got the result: the receiver's clock "
                      "did not agree with the sender's");
  }
  const std::string five = LossLabel(0.05);
  const std::string zero = LossLabel(0);
  const bool has5 = std::any_of(rows.begin(), rows.end(), [&](const Outcome& o) {
    return o.loss == five;
  });
  const bool has0 = std::any_of(rows.begin(), rows.end(), [&](const Outcome& o) {
    return o.loss == zero;
  });
  // Against every TCP flavour measured (plain "tcp" always listed).
  std::vector<std::string> tcps = {"tcp"};
  for (const std::string& t : s.transports) {
    if (IsTcp(t) && t != "tcp") tcps.push_back(t);
  }
  if (has5) {
    for (const std::string& tcp : tcps) t.notes.push_back(Target(rows, five, tcp, 3, ""));
    t.notes.push_back(Target(rows, five, "enet", 2, ""));
  }
  if (has0) {
    for (const std::string& tcp : tcps) {
      t.notes.push_back(Target(rows, zero, tcp, 0.5,
                               s.role == "local" ? " (the target is for the rate-limited veth "
                                                   "of bench/run.sh; loopback is indicative only)"
                                                 : " (the target is for the rate-limited veth "
                                                   "of bench/run.sh)"));
    }
  }
  for (const Outcome& o : rows) {
    if (!o.error.empty()) t.notes.push_back(absl::StrCat("FAILED ", o.transport, " at ", o.loss,
                                                         ": ", o.error));
  }
  return t;
}

void LogOutcome(const Outcome& o) {
  if (!o.error.empty()) {
    Log(absl::StrCat("bench bulk: ", o.transport, " at ", o.loss, " loss FAILED: ", o.error));
    return;
  }
  Log(absl::StrFormat("bench bulk: %s at %s loss: %d bytes in %.3f s, %.2f Mbit/s, %s retransmits",
                      o.transport, o.loss, o.bytes, o.seconds, o.mbps(),
                      o.retransmits >= 0 ? absl::StrCat(o.retransmits) : "?"));
}

}  // namespace

absl::Status RunBenchBulk(const std::vector<std::string>& args) {
  absl::StatusOr<Settings> settings = ParseSettings(args);
  if (!settings.ok()) return settings.status();
  const Settings& s = *settings;
  if (s.role == "server") return RunServer(s);

  const Payload payload = MakePayload(s.size, s.seed);
  std::vector<Outcome> rows;
  auto record = [&](const std::string& transport, const std::string& label,
                    absl::StatusOr<Outcome> got) {
    Outcome o;
    if (got.ok()) {
      o = *std::move(got);
    } else {
      o.transport = transport;
      o.error = std::string(got.status().message());
    }
    o.loss = label;
    LogOutcome(o);
    rows.push_back(std::move(o));
  };
  if (s.role == "client") {
    for (const std::string& transport : s.transports) {
      record(transport, s.loss_label, RunClient(transport, payload, s));
    }
  } else {
    for (double loss : s.losses) {
      for (const std::string& transport : s.transports) {
        if (IsTcp(transport) && loss > 0) continue;
        record(transport, LossLabel(loss), RunLocal(transport, loss, payload, s));
      }
    }
  }
  PrintTable(MakeTable(rows, s));
  const size_t failed = std::count_if(rows.begin(), rows.end(),
                                      [](const Outcome& o) { return !o.verified; });
  if (failed > 0) {
    return absl::DataLossError(
        absl::StrCat(failed, " of ", rows.size(), " transfers failed or were not verified"));
  }
  return absl::OkStatus();
}

}  // namespace udpmsg::cli
