// udpmsg bench latency: ping-pong round trips on loopback at a fixed rate.
//
// The client sends 64-byte ping i at start + i / rate (its scheduled time),
// whatever happened before, and records (time the echo arrived) - (scheduled
// time). A client that falls behind sends late and the lateness counts: the
// figures are corrected for coordinated omission. Percentiles (nearest rank)
// come from the full sorted sample vector; unanswered pings are counted as
// lost, not as latency.
//
// Transports: raw UDP (sendto/recvfrom), udpmsg unreliable, udpmsg
// reliable-ordered, and TCP with TCP_NODELAY.
//
// Modes (--bench_role):
//   local   (default) everything in one process on loopback, each echo server
//           on its own thread. For every loss rate in --bench_loss above zero
//           the UDP transports go through an in-process ImpairProxy dropping
//           that fraction of packets in each direction; at 0% they talk
//           directly (no proxy hop), like TCP. TCP cannot go through the UDP
//           proxy, so it is measured at 0% only.
//   server  echo servers until killed or --duration: raw UDP and TCP on
//           --port, udpmsg on --port+1.
//   client  pings the server at --bench_peer HOST:PORT with every transport,
//           TCP included. The network between them applies the loss (the
//           same to TCP and UDP: bench/run.sh's nftables rule); --bench_loss
//           (one rate) only labels the rows.
#include <poll.h>
#include <sys/prctl.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "cli/bench.h"
#include "cli/common.h"
#include "cli/flags.h"
#include "cli/impair_flags.h"
#include "impairment/model.h"
#include "impairment/proxy.h"
#include "reliable/runtime.h"
#include "udp/datagram_socket.h"
#include "udp/errno_status.h"
#include "udp/resolve.h"
#include "udp/socket_address.h"
#include "udp/stream_socket.h"

namespace udpmsg::cli {
namespace {

using reliable::DeliveryMode;
using reliable::Event;
using reliable::Runtime;

constexpr size_t kPingBytes = 64;
// The loss rates when --bench_loss is left at its default (which lists 10%
// too, for bench bulk).
constexpr absl::string_view kDefaultLoss = "0,1%,5%";
// How long the client waits for answers after the last scheduled ping:
// unreliable transports count what is missing then as lost; reliable ones
// (udpmsg reliable, TCP) must have everything by the longer deadline.
constexpr absl::Duration kUnreliableDrain = absl::Milliseconds(500);
constexpr absl::Duration kReliableDrain = absl::Seconds(30);
constexpr absl::Duration kHandshakeTimeout = absl::Seconds(20);
// Timer slack for the client thread, so its scheduled sends are not late by
// the default 50 us of slack.
constexpr unsigned long kTimerSlackNs = 1000;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Ping i carries i in its first 8 bytes; the rest is filler.
std::string PingPayload(uint64_t index) {
  std::string p(kPingBytes, 'p');
  std::memcpy(&p[0], &index, sizeof(index));
  return p;
}

bool PingIndex(absl::string_view payload, uint64_t* index) {
  if (payload.size() != kPingBytes) return false;
  std::memcpy(index, payload.data(), sizeof(*index));
  return true;
}

// Waits until `fd` is readable or `deadline_ns` (steady clock) passes, with
// nanosecond precision. Returns whether it is readable.
absl::StatusOr<bool> WaitReadable(int fd, int64_t deadline_ns) {
  const int64_t left = std::max<int64_t>(0, deadline_ns - NowNs());
  timespec ts{static_cast<time_t>(left / 1000000000), static_cast<long>(left % 1000000000)};
  pollfd p{fd, POLLIN, 0};
  const int n = ::ppoll(&p, 1, &ts, nullptr);
  if (n < 0) {
    if (errno == EINTR) return false;
    return udp::ErrnoStatus(errno, "ppoll");
  }
  return n > 0;
}

// One client: sends ping i now, and receives answers until `deadline_ns`
// (returning earlier once something arrived), calling `answered(index, at)`
// for each with its arrival time.
class PingClient {
 public:
  using Answered = std::function<void(uint64_t index, int64_t at_ns)>;
  virtual ~PingClient() = default;
  virtual absl::Status Send(uint64_t index) = 0;
  virtual absl::Status Receive(int64_t deadline_ns, const Answered& answered) = 0;
};

struct Sample {
  int64_t sent = 0;
  int64_t answered = 0;
  std::vector<int64_t> latency_ns;  // sorted
};

// Runs the fixed schedule: `count` pings, `rate` per second.
absl::StatusOr<Sample> RunSchedule(PingClient& client, int64_t count, int rate,
                                   absl::Duration drain) {
  unsigned long old_slack = static_cast<unsigned long>(prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0));
  prctl(PR_SET_TIMERSLACK, kTimerSlackNs, 0, 0, 0);
  struct RestoreSlack {
    unsigned long slack;
    ~RestoreSlack() { prctl(PR_SET_TIMERSLACK, slack, 0, 0, 0); }
  } restore{old_slack};

  const double interval_ns = 1e9 / rate;
  const int64_t start = NowNs() + 1000000;  // 1 ms from now
  auto scheduled = [&](int64_t i) {
    return start + static_cast<int64_t>(std::llround(static_cast<double>(i) * interval_ns));
  };
  const int64_t drain_end = scheduled(count - 1) + absl::ToInt64Nanoseconds(drain);
  Sample sample;
  sample.latency_ns.reserve(static_cast<size_t>(count));
  std::vector<bool> seen(static_cast<size_t>(count), false);
  int64_t next = 0;  // the next ping to send
  const PingClient::Answered answered = [&](uint64_t index, int64_t at) {
    if (index >= static_cast<uint64_t>(next) || seen[index]) return;  // stray or duplicate
    seen[index] = true;
    ++sample.answered;
    sample.latency_ns.push_back(at - scheduled(static_cast<int64_t>(index)));
  };
  for (;;) {
    const int64_t now = NowNs();
    while (next < count && scheduled(next) <= now) {
      if (absl::Status s = client.Send(static_cast<uint64_t>(next)); !s.ok()) return s;
      ++next;
    }
    if (next == count && (sample.answered == count || now >= drain_end)) break;
    const int64_t wake = next < count ? scheduled(next) : drain_end;
    if (absl::Status s = client.Receive(wake, answered); !s.ok()) return s;
  }
  sample.sent = count;
  std::sort(sample.latency_ns.begin(), sample.latency_ns.end());
  return sample;
}

// ---- raw UDP ----

// Echoes every datagram to its sender until stopped.
class UdpEcho {
 public:
  static absl::StatusOr<std::unique_ptr<UdpEcho>> Start(const udp::SocketAddress& bind) {
    absl::StatusOr<udp::DatagramSocket> socket =
        udp::DatagramSocket::Bind(bind, {.non_blocking = true});
    if (!socket.ok()) return socket.status();
    absl::StatusOr<udp::SocketAddress> local = socket->LocalAddress();
    if (!local.ok()) return local.status();
    auto echo = std::unique_ptr<UdpEcho>(new UdpEcho(*std::move(socket), *local));
    echo->thread_ = std::thread([e = echo.get()] { e->Loop(); });
    return echo;
  }
  ~UdpEcho() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  const udp::SocketAddress& address() const { return address_; }

 private:
  UdpEcho(udp::DatagramSocket socket, const udp::SocketAddress& address)
      : socket_(std::move(socket)), address_(address) {}

  void Loop() {
    std::vector<uint8_t> buffer(2048);
    while (!stop_) {
      absl::StatusOr<bool> readable = WaitReadable(socket_.fd(), NowNs() + 50000000);
      if (!readable.ok()) return;
      for (;;) {
        absl::StatusOr<udp::Datagram> got = socket_.RecvFrom(absl::MakeSpan(buffer));
        if (!got.ok()) break;
        socket_.SendTo(got->from, absl::MakeConstSpan(buffer.data(), got->size)).IgnoreError();
      }
    }
  }

  udp::DatagramSocket socket_;
  udp::SocketAddress address_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class RawUdpClient final : public PingClient {
 public:
  static absl::StatusOr<std::unique_ptr<RawUdpClient>> Create(const udp::SocketAddress& to) {
    absl::StatusOr<udp::DatagramSocket> socket =
        udp::DatagramSocket::Bind(udp::SocketAddress::Any(to.family(), 0), {.non_blocking = true});
    if (!socket.ok()) return socket.status();
    return std::unique_ptr<RawUdpClient>(new RawUdpClient(*std::move(socket), to));
  }

  absl::Status Send(uint64_t index) override {
    const std::string ping = PingPayload(index);
    absl::StatusOr<size_t> sent = socket_.SendTo(to_, udp::AsBytes(ping));
    // A full socket buffer drops the ping, as the network would.
    if (!sent.ok() && !udp::IsWouldBlock(sent.status())) return sent.status();
    return absl::OkStatus();
  }

  absl::Status Receive(int64_t deadline_ns, const Answered& answered) override {
    absl::StatusOr<bool> readable = WaitReadable(socket_.fd(), deadline_ns);
    if (!readable.ok()) return readable.status();
    if (!*readable) return absl::OkStatus();
    for (;;) {
      absl::StatusOr<udp::Datagram> got = socket_.RecvFrom(absl::MakeSpan(buffer_));
      const int64_t at = NowNs();
      if (!got.ok()) {
        if (udp::IsWouldBlock(got.status())) return absl::OkStatus();
        return got.status();
      }
      uint64_t index = 0;
      if (PingIndex(absl::string_view(reinterpret_cast<const char*>(buffer_.data()), got->size),
                    &index)) {
        answered(index, at);
      }
    }
  }

 private:
  RawUdpClient(udp::DatagramSocket socket, const udp::SocketAddress& to)
      : socket_(std::move(socket)), to_(to), buffer_(2048) {}
  udp::DatagramSocket socket_;
  udp::SocketAddress to_;
  std::vector<uint8_t> buffer_;
};

// ---- udpmsg ----

reliable::EndpointOptions UdpmsgOptions(const std::string& cc, bool server) {
  reliable::EndpointOptions o;
  o.accept_incoming = server;
  o.connection.congestion = cc;
  return o;
}

// A server runtime that sends every message back on the same channel and mode.
class UdpmsgEcho {
 public:
  static absl::StatusOr<std::unique_ptr<UdpmsgEcho>> Start(const udp::SocketAddress& bind,
                                                           const std::string& cc) {
    Runtime::Options options;
    options.bind = bind;
    options.endpoint = UdpmsgOptions(cc, /*server=*/true);
    absl::StatusOr<std::unique_ptr<Runtime>> rt = Runtime::Create(options);
    if (!rt.ok()) return rt.status();
    auto echo = std::unique_ptr<UdpmsgEcho>(new UdpmsgEcho(*std::move(rt)));
    echo->thread_ = std::thread([e = echo.get()] { e->Loop(); });
    return echo;
  }
  ~UdpmsgEcho() {
    stop_ = true;
    rt_->Wake();
    if (thread_.joinable()) thread_.join();
  }
  const udp::SocketAddress& address() const { return rt_->local_address(); }

 private:
  explicit UdpmsgEcho(std::unique_ptr<Runtime> rt) : rt_(std::move(rt)) {}

  void Loop() {
    while (!stop_) {
      absl::StatusOr<Runtime::PollResult> r = rt_->Poll(absl::Milliseconds(100));
      if (!r.ok()) return;
      for (Event& e : r->events) {
        if (e.type != Event::Type::kMessage) continue;
        // RESOURCE_EXHAUSTED etc.: the answer is lost, which the client sees.
        rt_->Send(e.connection, e.channel, e.mode, std::move(e.message)).IgnoreError();
      }
    }
  }

  std::unique_ptr<Runtime> rt_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class UdpmsgClient final : public PingClient {
 public:
  static absl::StatusOr<std::unique_ptr<UdpmsgClient>> Create(const udp::SocketAddress& to,
                                                              DeliveryMode mode,
                                                              const std::string& cc) {
    Runtime::Options options;
    options.bind = udp::SocketAddress::Any(to.family(), 0);
    options.endpoint = UdpmsgOptions(cc, /*server=*/false);
    absl::StatusOr<std::unique_ptr<Runtime>> rt = Runtime::Create(options);
    if (!rt.ok()) return rt.status();
    absl::StatusOr<reliable::ConnectionId> id = (*rt)->Connect(to);
    if (!id.ok()) return id.status();
    if (absl::Status s = (*rt)->AwaitConnected(*id, kHandshakeTimeout); !s.ok()) return s;
    return std::unique_ptr<UdpmsgClient>(new UdpmsgClient(*std::move(rt), *id, mode));
  }

  absl::Status Send(uint64_t index) override {
    return rt_->Send(id_, 0, mode_, PingPayload(index)).status();
  }

  absl::Status Receive(int64_t deadline_ns, const Answered& answered) override {
    // At least 1 us: Runtime::Poll(0) does not look at the socket at all.
    const absl::Duration timeout =
        absl::Nanoseconds(std::max<int64_t>(1000, deadline_ns - NowNs()));
    absl::StatusOr<Runtime::PollResult> r = rt_->Poll(timeout);
    if (!r.ok()) return r.status();
    const int64_t at = NowNs();
    for (const Event& e : r->events) {
      if (e.type == Event::Type::kClosed) {
        return absl::UnavailableError(absl::StrCat("udpmsg connection closed: ", e.reason));
      }
      uint64_t index = 0;
      if (e.type == Event::Type::kMessage && PingIndex(e.message, &index)) answered(index, at);
    }
    return absl::OkStatus();
  }

 private:
  UdpmsgClient(std::unique_ptr<Runtime> rt, reliable::ConnectionId id, DeliveryMode mode)
      : rt_(std::move(rt)), id_(id), mode_(mode) {}
  std::unique_ptr<Runtime> rt_;
  reliable::ConnectionId id_;
  DeliveryMode mode_;
};

// ---- TCP ----

// Accepts connections one after another and echoes each one's bytes until
// that client closes.
class TcpEcho {
 public:
  static absl::StatusOr<std::unique_ptr<TcpEcho>> Start(const udp::SocketAddress& bind) {
    absl::StatusOr<udp::StreamListener> listener =
        udp::StreamListener::Listen(bind, 4, {.non_blocking = true});
    if (!listener.ok()) return listener.status();
    absl::StatusOr<udp::SocketAddress> local = listener->LocalAddress();
    if (!local.ok()) return local.status();
    auto echo = std::unique_ptr<TcpEcho>(new TcpEcho(*std::move(listener), *local));
    echo->thread_ = std::thread([e = echo.get()] { e->Loop(); });
    return echo;
  }
  ~TcpEcho() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  const udp::SocketAddress& address() const { return address_; }

 private:
  TcpEcho(udp::StreamListener listener, const udp::SocketAddress& address)
      : listener_(std::move(listener)), address_(address) {}

  void Loop() {
    std::vector<uint8_t> buffer(4096);
    while (!stop_) {
      absl::StatusOr<bool> readable = WaitReadable(listener_.fd(), NowNs() + 50000000);
      if (!readable.ok()) return;
      if (!*readable) continue;
      absl::StatusOr<udp::AcceptedStream> conn = listener_.Accept();
      if (!conn.ok()) continue;
      conn->socket.SetNoDelay(true).IgnoreError();
      // Blocking sends and receives, woken every 50 ms to look at stop_.
      while (!stop_) {
        readable = WaitReadable(conn->socket.fd(), NowNs() + 50000000);
        if (!readable.ok()) break;
        if (!*readable) continue;
        absl::StatusOr<size_t> got = conn->socket.Recv(absl::MakeSpan(buffer));
        if (!got.ok() || *got == 0) break;
        if (!conn->socket.SendAll(absl::MakeConstSpan(buffer.data(), *got)).ok()) break;
      }
    }
  }

  udp::StreamListener listener_;
  udp::SocketAddress address_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class TcpClient final : public PingClient {
 public:
  // Connects to the first of `to` that answers.
  static absl::StatusOr<std::unique_ptr<TcpClient>> Create(
      absl::Span<const udp::SocketAddress> to) {
    absl::StatusOr<udp::StreamSocket> socket = udp::StreamSocket::Connect(to);
    if (!socket.ok()) return socket.status();
    if (absl::Status s = socket->SetNoDelay(true); !s.ok()) return s;
    if (absl::Status s = socket->SetNonBlocking(true); !s.ok()) return s;
    return std::unique_ptr<TcpClient>(new TcpClient(*std::move(socket)));
  }
  ~TcpClient() override { socket_.Shutdown(udp::ShutdownHow::kBoth).IgnoreError(); }

  absl::Status Send(uint64_t index) override {
    return socket_.SendAll(udp::AsBytes(PingPayload(index)));
  }

  absl::Status Receive(int64_t deadline_ns, const Answered& answered) override {
    absl::StatusOr<bool> readable = WaitReadable(socket_.fd(), deadline_ns);
    if (!readable.ok()) return readable.status();
    if (!*readable) return absl::OkStatus();
    for (;;) {
      absl::StatusOr<size_t> got = socket_.Recv(absl::MakeSpan(chunk_));
      const int64_t at = NowNs();
      if (!got.ok()) {
        if (udp::IsWouldBlock(got.status())) return absl::OkStatus();
        return got.status();
      }
      if (*got == 0) return absl::UnavailableError("TCP echo server closed the connection");
      pending_.append(reinterpret_cast<const char*>(chunk_.data()), *got);
      size_t used = 0;
      for (; pending_.size() - used >= kPingBytes; used += kPingBytes) {
        uint64_t index = 0;
        PingIndex(absl::string_view(pending_).substr(used, kPingBytes), &index);
        answered(index, at);
      }
      pending_.erase(0, used);
    }
  }

 private:
  explicit TcpClient(udp::StreamSocket socket) : socket_(std::move(socket)), chunk_(4096) {}
  udp::StreamSocket socket_;
  std::vector<uint8_t> chunk_;
  std::string pending_;  // bytes of an incomplete answer
};

// ---- driver ----

enum class Transport { kRawUdp, kUdpmsgUnreliable, kUdpmsgReliable, kTcp };

absl::string_view TransportName(Transport t) {
  switch (t) {
    case Transport::kRawUdp:
      return "raw UDP";
    case Transport::kUdpmsgUnreliable:
      return "udpmsg unreliable";
    case Transport::kUdpmsgReliable:
      return "udpmsg reliable-ordered";
    case Transport::kTcp:
      return "TCP_NODELAY";
  }
  return "?";
}

struct Settings {
  std::string role;  // local, server or client
  int rate = 0;
  int64_t count = 0;
  std::string cc;
  uint64_t seed = 1;
  std::vector<double> losses;
  std::string client_loss_label;  // client: what the network drops, or "?"
  // server: where to listen; client: the server.
  std::string bind;
  int port = 0;
  std::string peer;
  absl::Duration duration = absl::ZeroDuration();
  // local mode: what the proxy does besides the loss (impair flags).
  impairment::ImpairmentConfig impairment;
};

// The echo servers of a --bench_role server, as the client reaches them.
struct RemoteServers {
  udp::SocketAddress raw_udp;               // HOST:PORT, UDP
  udp::SocketAddress udpmsg;                // HOST:PORT+1
  std::vector<udp::SocketAddress> tcp;      // HOST:PORT, TCP (every address)
};

absl::StatusOr<Sample> MeasureTcp(const std::vector<udp::SocketAddress>& to,
                                  const Settings& settings) {
  absl::StatusOr<std::unique_ptr<TcpClient>> client = TcpClient::Create(to);
  if (!client.ok()) return client.status();
  return RunSchedule(**client, settings.count, settings.rate, kReliableDrain);
}

absl::StatusOr<Sample> MeasureUdp(Transport transport, const udp::SocketAddress& to,
                                  const Settings& settings) {
  if (transport == Transport::kRawUdp) {
    absl::StatusOr<std::unique_ptr<RawUdpClient>> client = RawUdpClient::Create(to);
    if (!client.ok()) return client.status();
    return RunSchedule(**client, settings.count, settings.rate, kUnreliableDrain);
  }
  const bool reliable = transport == Transport::kUdpmsgReliable;
  absl::StatusOr<std::unique_ptr<UdpmsgClient>> client = UdpmsgClient::Create(
      to, reliable ? DeliveryMode::kReliableOrdered : DeliveryMode::kUnreliable, settings.cc);
  if (!client.ok()) return client.status();
  return RunSchedule(**client, settings.count, settings.rate,
                     reliable ? kReliableDrain : kUnreliableDrain);
}

// One row against the servers of a --bench_role server.
absl::StatusOr<Sample> MeasureRemote(Transport transport, const RemoteServers& servers,
                                     const Settings& settings) {
  switch (transport) {
    case Transport::kTcp:
      return MeasureTcp(servers.tcp, settings);
    case Transport::kRawUdp:
      return MeasureUdp(transport, servers.raw_udp, settings);
    default:
      return MeasureUdp(transport, servers.udpmsg, settings);
  }
}

// One row in this process: `transport` at `loss` (through a proxy when
// loss > 0).
absl::StatusOr<Sample> MeasureLocal(Transport transport, double loss, const Settings& settings) {
  const udp::SocketAddress loopback = udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, 0);
  if (transport == Transport::kTcp) {
    absl::StatusOr<std::unique_ptr<TcpEcho>> echo = TcpEcho::Start(loopback);
    if (!echo.ok()) return echo.status();
    return MeasureTcp({(*echo)->address()}, settings);
  }

  std::unique_ptr<UdpEcho> udp_echo;
  std::unique_ptr<UdpmsgEcho> udpmsg_echo;
  udp::SocketAddress server;
  if (transport == Transport::kRawUdp) {
    absl::StatusOr<std::unique_ptr<UdpEcho>> e = UdpEcho::Start(loopback);
    if (!e.ok()) return e.status();
    udp_echo = *std::move(e);
    server = udp_echo->address();
  } else {
    absl::StatusOr<std::unique_ptr<UdpmsgEcho>> e = UdpmsgEcho::Start(loopback, settings.cc);
    if (!e.ok()) return e.status();
    udpmsg_echo = *std::move(e);
    server = udpmsg_echo->address();
  }

  std::unique_ptr<impairment::ImpairProxy> proxy;
  std::thread proxy_thread;
  struct StopProxy {
    std::unique_ptr<impairment::ImpairProxy>& proxy;
    std::thread& thread;
    ~StopProxy() {
      if (proxy != nullptr) proxy->Stop();
      if (thread.joinable()) thread.join();
    }
  } stop_proxy{proxy, proxy_thread};
  udp::SocketAddress to = server;
  if (loss > 0 || ImpairsBesidesLoss(settings.impairment)) {
    impairment::ImpairmentConfig config = settings.impairment;
    config.loss = loss;
    absl::StatusOr<std::unique_ptr<impairment::ImpairProxy>> p = impairment::ImpairProxy::Create(
        {.listen = udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, 0),
         .target = server,
         .config = config});
    if (!p.ok()) return p.status();
    proxy = *std::move(p);
    to = proxy->local_address();
    proxy_thread = std::thread([p = proxy.get()] { p->Run(absl::ZeroDuration()).IgnoreError(); });
  }
  return MeasureUdp(transport, to, settings);
}

// Nearest-rank percentile of a sorted, non-empty vector, in microseconds.
std::string PercentileUs(const std::vector<int64_t>& sorted, double q) {
  if (sorted.empty()) return "-";
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return absl::StrFormat("%.1f", static_cast<double>(sorted[rank - 1]) / 1e3);
}

// --bench_loss, or kDefaultLoss when it was left at its default (which lists
// 10% too, for bench bulk).
absl::StatusOr<std::vector<double>> LossRates() {
  return ParseLossList(BenchLossIsDefault() ? std::string(kDefaultLoss)
                                            : absl::GetFlag(FLAGS_bench_loss));
}

absl::StatusOr<Settings> ParseSettings(const std::vector<std::string>& args) {
  if (!args.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("bench latency takes no arguments (got \"", args[0], "\")"));
  }
  Settings settings;
  settings.role = absl::GetFlag(FLAGS_bench_role);
  if (settings.role != "local" && settings.role != "server" && settings.role != "client") {
    return absl::InvalidArgumentError(
        absl::StrCat("--bench_role \"", settings.role, "\" must be local, server or client"));
  }
  settings.cc = absl::AsciiStrToLower(absl::GetFlag(FLAGS_cc));
  if (settings.cc != "newreno" && settings.cc != "bbr") {
    return absl::InvalidArgumentError(
        absl::StrCat("--cc \"", absl::GetFlag(FLAGS_cc), "\" must be newreno or bbr"));
  }
  settings.peer = absl::GetFlag(FLAGS_bench_peer);
  if (settings.role != "client" && !settings.peer.empty()) {
    return absl::InvalidArgumentError("--bench_peer needs --bench_role client");
  }
  if (settings.role == "server") {
    settings.bind = absl::GetFlag(FLAGS_bind);
    settings.port = absl::GetFlag(FLAGS_port);
    if (settings.port < 1 || settings.port > 65534) {
      return absl::InvalidArgumentError(
          "--bench_role server needs --port P in 1..65534 (raw UDP and TCP on P, udpmsg on P+1)");
    }
    if (!absl::ParseDuration(absl::GetFlag(FLAGS_duration), &settings.duration) ||
        settings.duration < absl::ZeroDuration()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--duration \"", absl::GetFlag(FLAGS_duration), "\" is not a duration (e.g. 10m, 0)"));
    }
    return settings;
  }
  if (settings.role == "client" && settings.peer.empty()) {
    return absl::InvalidArgumentError("--bench_role client needs --bench_peer HOST:PORT");
  }

  settings.rate = absl::GetFlag(FLAGS_bench_rate);
  if (settings.rate < 1 || settings.rate > 1000000) {
    return absl::InvalidArgumentError(
        absl::StrCat("--bench_rate ", settings.rate, " is out of range (1 to 1000000 per second)"));
  }
  absl::StatusOr<absl::Duration> duration = impairment::ParseDuration(absl::GetFlag(FLAGS_bench_duration));
  if (!duration.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--bench_duration: ", duration.status().message()));
  }
  settings.duration = *duration;
  settings.count = static_cast<int64_t>(
      std::llround(absl::ToDoubleSeconds(*duration) * static_cast<double>(settings.rate)));
  if (settings.count < 1 || settings.count > 100000000) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--bench_duration ", absl::FormatDuration(*duration), " at --bench_rate ", settings.rate,
        " gives ", settings.count, " pings (want 1 to 100000000)"));
  }
  settings.seed = absl::GetFlag(FLAGS_seed);
  absl::StatusOr<impairment::ImpairmentConfig> impairment =
      BenchImpairmentFromFlags(settings.role == "local");
  if (!impairment.ok()) return impairment.status();
  settings.impairment = *std::move(impairment);
  absl::StatusOr<std::vector<double>> losses = LossRates();
  if (!losses.ok()) return losses.status();
  settings.losses = *losses;
  if (settings.role == "client") {
    absl::StatusOr<std::string> label = ClientLossLabel(settings.losses);
    if (!label.ok()) return label.status();
    settings.client_loss_label = *std::move(label);
    if (settings.client_loss_label == "?") settings.losses = {0};  // one pass of every transport
  }
  return settings;
}


// --bench_role server: the three echo servers until killed or --duration.
absl::Status RunServer(const Settings& settings) {
  absl::StatusOr<std::vector<udp::SocketAddress>> udp_bind =
      BindAddresses(settings.bind, settings.port, udp::SocketType::kDatagram);
  if (!udp_bind.ok()) return udp_bind.status();
  absl::StatusOr<std::vector<udp::SocketAddress>> udpmsg_bind =
      BindAddresses(settings.bind, settings.port + 1, udp::SocketType::kDatagram);
  if (!udpmsg_bind.ok()) return udpmsg_bind.status();
  absl::StatusOr<std::vector<udp::SocketAddress>> tcp_bind =
      BindAddresses(settings.bind, settings.port, udp::SocketType::kStream);
  if (!tcp_bind.ok()) return tcp_bind.status();

  absl::StatusOr<std::unique_ptr<UdpEcho>> udp_echo = UdpEcho::Start(udp_bind->front());
  if (!udp_echo.ok()) return udp_echo.status();
  absl::StatusOr<std::unique_ptr<UdpmsgEcho>> udpmsg_echo =
      UdpmsgEcho::Start(udpmsg_bind->front(), settings.cc);
  if (!udpmsg_echo.ok()) return udpmsg_echo.status();
  absl::StatusOr<std::unique_ptr<TcpEcho>> tcp_echo = TcpEcho::Start(tcp_bind->front());
  if (!tcp_echo.ok()) return tcp_echo.status();
  PrintListening((*udp_echo)->address());
  std::fprintf(stderr, "raw UDP echo on %s, TCP echo on %s, udpmsg echo on %s\n",
               (*udp_echo)->address().ToString().c_str(),
               (*tcp_echo)->address().ToString().c_str(),
               (*udpmsg_echo)->address().ToString().c_str());
  std::fflush(stderr);
  if (settings.duration > absl::ZeroDuration()) {
    absl::SleepFor(settings.duration);
  } else {
    for (;;) absl::SleepFor(absl::Hours(1));  // until a signal ends the process
  }
  return absl::OkStatus();
}

absl::StatusOr<RemoteServers> ResolveServers(const std::string& peer) {
  RemoteServers servers;
  absl::StatusOr<std::vector<udp::SocketAddress>> udp_addrs =
      udp::ResolveHostPort(peer, FamilyFromFlags(), udp::SocketType::kDatagram);
  if (!udp_addrs.ok()) return udp_addrs.status();
  servers.raw_udp = udp_addrs->front();
  if (servers.raw_udp.port() == 0 || servers.raw_udp.port() == 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--bench_peer \"", peer, "\": want a port in 1..65534 (udpmsg is on port+1)"));
  }
  servers.udpmsg = servers.raw_udp;
  servers.udpmsg.set_port(static_cast<uint16_t>(servers.raw_udp.port() + 1));
  absl::StatusOr<std::vector<udp::SocketAddress>> tcp_addrs =
      udp::ResolveHostPort(peer, FamilyFromFlags(), udp::SocketType::kStream);
  if (!tcp_addrs.ok()) return tcp_addrs.status();
  servers.tcp = *tcp_addrs;
  return servers;
}

}  // namespace

absl::Status RunBenchLatency(const std::vector<std::string>& args) {
  absl::StatusOr<Settings> parsed = ParseSettings(args);
  if (!parsed.ok()) return parsed.status();
  const Settings& settings = *parsed;
  if (settings.role == "server") return RunServer(settings);

  std::optional<RemoteServers> remote;
  if (settings.role == "client") {
    absl::StatusOr<RemoteServers> servers = ResolveServers(settings.peer);
    if (!servers.ok()) return servers.status();
    remote = *std::move(servers);
  }

  BenchTable table;
  table.title = absl::StrCat(
      "bench latency: ", kPingBytes, "-byte ping-pong, ", settings.rate, "/s for ",
      absl::FormatDuration(settings.duration),
      remote ? absl::StrCat(" to ", settings.peer) : std::string(", loopback IPv4"),
      ", round trip from the scheduled send time");
  table.columns = {"transport", "loss", "sent", "answered", "p50 us", "p99 us", "p99.9 us",
                   "max us"};
  bool tcp_measured = false;
  for (double loss : settings.losses) {
    const std::string label = remote ? settings.client_loss_label : LossLabel(loss);
    std::vector<Transport> transports = {Transport::kRawUdp, Transport::kUdpmsgUnreliable,
                                         Transport::kUdpmsgReliable};
    // Locally TCP cannot cross the UDP proxy: only at 0%. Across a network
    // it meets the same loss as the rest.
    if (remote || (loss == 0 && !tcp_measured)) transports.push_back(Transport::kTcp);
    for (Transport t : transports) {
      absl::StatusOr<Sample> s = remote ? MeasureRemote(t, *remote, settings)
                                        : MeasureLocal(t, loss, settings);
      if (!s.ok()) {
        return absl::Status(s.status().code(), absl::StrCat(TransportName(t), " at ", label,
                                                            " loss: ", s.status().message()));
      }
      if ((t == Transport::kUdpmsgReliable || t == Transport::kTcp) && s->answered != s->sent) {
        return absl::DataLossError(absl::StrCat(TransportName(t), " at ", label,
                                                " loss answered ", s->answered, " of ", s->sent,
                                                " pings within ",
                                                absl::FormatDuration(kReliableDrain)));
      }
      if (t == Transport::kTcp) tcp_measured = true;
      table.rows.push_back({std::string(TransportName(t)), label,
                            absl::StrCat(s->sent), absl::StrCat(s->answered),
                            PercentileUs(s->latency_ns, 0.50), PercentileUs(s->latency_ns, 0.99),
                            PercentileUs(s->latency_ns, 0.999),
                            PercentileUs(s->latency_ns, 1.0)});
    }
  }
  table.notes = {
      "latency = echo arrival - scheduled send time (coordinated omission corrected: a late "
      "send counts); nearest-rank percentiles of all answered pings",
      absl::StrCat("unanswered pings (raw UDP, udpmsg unreliable) are lost, not latency; they "
                   "get ", absl::FormatDuration(kUnreliableDrain),
                   " after the last send; reliable transports must answer every ping"),
  };
  if (remote) {
    table.notes.push_back(
        "loss: applied by the network between client and server to every protocol alike "
        "(--bench_loss only labels the rows)");
  } else {
    table.notes.push_back(absl::StrCat(
        "loss > 0: UDP transports go through an in-process impairment proxy dropping that share "
        "in each direction (seed ", settings.seed, "; round-trip loss ~2x), which adds a hop; "
        "0%: direct"));
    if (ImpairsBesidesLoss(settings.impairment)) {
      table.notes.push_back(absl::StrCat(
          "the proxy (then at every loss rate, 0% too) also applies, both ways: ",
          DescribeBesidesLoss(settings.impairment)));
    }
    table.notes.push_back(
        tcp_measured ? "TCP (TCP_NODELAY) only at 0%: it cannot go through the UDP proxy; "
                       "bench/run.sh measures it under loss across two network namespaces"
                     : "TCP not measured: --bench_loss lists no 0%");
  }
  table.notes.push_back(absl::StrCat("udpmsg: one connection, channel 0, --cc ", settings.cc));
  PrintTable(table);
  return absl::OkStatus();
}

}  // namespace udpmsg::cli
