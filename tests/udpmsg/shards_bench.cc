// Messages per second into a sharded sink server (Host::CreateShards), from
// many client sockets in this process. Not a test (it times things): run by
// hand, e.g. on an idle machine
//   ./bazelw run //tests/udpmsg:shards_bench -- --shards=1 --clients=256
//   ./bazelw run //tests/udpmsg:shards_bench -- --shards=2 --clients=256
// and compare the "messages/s" lines (//tests/udpmsg:shards_bench_smoke_test
// runs every mode briefly, so the tool keeps working). It also prints each shard's CPU time
// per message and the clients' CPU share, because on a small machine the
// clients (same machine, same cores) are often the limit, not the server.
//
// Each client is its own Host (its own socket, so its own 4-tuple) with one
// connection, owned by one of --client_threads threads; each keeps up to
// --window bytes of --size-byte reliable-ordered messages queued. Each shard
// runs on its own thread and counts the messages it receives.
#include <poll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <mutex>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "udp/datagram_socket.h"
#include "udp/shard_steering.h"
#include "udpmsg/udpmsg.h"

ABSL_FLAG(int, shards, 2, "server shards (threads)");
ABSL_FLAG(int, clients, 256, "client connections (one socket each)");
ABSL_FLAG(int, client_threads, 2, "threads driving the clients");
ABSL_FLAG(int, size, 64, "bytes per message");
ABSL_FLAG(int, window, 4096, "bytes each client keeps queued");
ABSL_FLAG(double, seconds, 3, "measured seconds (after --warmup)");
ABSL_FLAG(double, work_us, 0,
          "CPU microseconds of application work the server spends on each message (a busy "
          "loop on the thread's CPU clock), to see shards scale where the server, not the "
          "clients, is the limit");
ABSL_FLAG(double, ack_delay_ms, 25, "the server's HostOptions::max_ack_delay, milliseconds");
ABSL_FLAG(double, warmup, 1, "seconds between every client connected and the measurement");
ABSL_FLAG(int64_t, steering_cost, 0,
          "instead: send this many --size-byte datagrams to a 2-socket reuseport group, with "
          "and without the steering program, alternating, 3 rounds each, and print the "
          "sender's CPU per datagram (on loopback the kernel's receive path, the program "
          "included, runs in the sender's thread)");
ABSL_FLAG(int64_t, handoff, 0,
          "instead: hand this many datagrams (--size bytes) from one thread to another through "
          "a mutex-guarded queue and an eventfd (the per-datagram cost of a hand-off between "
          "shards), and print the CPU per datagram");

namespace udpmsg {
namespace {

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct ShardCounters {
  std::atomic<uint64_t> messages{0};
  std::atomic<uint64_t> cpu_ns{0};
  std::atomic<uint64_t> unknown{0};
};

void ServeShard(Host* host, ShardCounters* counters, const std::atomic<bool>* stop) {
  const double work = absl::GetFlag(FLAGS_work_us) * 1e-6;
  uint64_t messages = 0;
  while (!stop->load(std::memory_order_relaxed)) {
    absl::StatusOr<Host::PollResult> r = host->Poll(absl::Milliseconds(50));
    if (!r.ok()) {
      std::fprintf(stderr, "shard %d: %s\n", host->shard().index,
                   std::string(r.status().message()).c_str());
      return;
    }
    for (const Event& e : r->events) {
      if (e.type != Event::Type::kMessage) continue;
      ++messages;
      if (work > 0) {
        const double until = ThreadCpuSeconds() + work;
        while (ThreadCpuSeconds() < until) {
        }
      }
    }
    counters->messages.store(messages, std::memory_order_relaxed);
    counters->cpu_ns.store(static_cast<uint64_t>(ThreadCpuSeconds() * 1e9),
                           std::memory_order_relaxed);
    counters->unknown.store(host->stats().unknown_connection, std::memory_order_relaxed);
  }
}

struct Client {
  Host host;
  ConnectionId id = 0;
  bool up = false;
};

void DriveClients(std::vector<Client>* clients, std::atomic<int>* connected,
                  std::atomic<uint64_t>* cpu_ns, const std::atomic<bool>* stop) {
  const std::string message(static_cast<size_t>(absl::GetFlag(FLAGS_size)), 'm');
  const uint64_t window = static_cast<uint64_t>(absl::GetFlag(FLAGS_window));
  while (!stop->load(std::memory_order_relaxed)) {
    // A pass that neither sent nor received anything sleeps 100 us instead
    // of spinning, so the clients leave the CPU to the server when they
    // wait (Host offers no descriptor to block on for many Hosts at once).
    bool busy = false;
    for (Client& c : *clients) {
      if (c.up) {
        while (c.host.QueuedBytes(c.id) + message.size() <= window) {
          if (!c.host.Send(c.id, 0, DeliveryMode::kReliableOrdered, message).ok()) break;
          busy = true;
        }
      }
      absl::StatusOr<Host::PollResult> r = c.host.Poll(absl::ZeroDuration());
      if (!r.ok()) continue;
      busy = busy || !r->events.empty();
      for (const Event& e : r->events) {
        if (e.type == Event::Type::kConnected && !c.up) {
          c.up = true;
          connected->fetch_add(1);
        }
      }
    }
    cpu_ns->store(static_cast<uint64_t>(ThreadCpuSeconds() * 1e9), std::memory_order_relaxed);
    if (!busy) absl::SleepFor(absl::Microseconds(100));
  }
}

// The hand-off a shard would do for a datagram that reached the wrong
// socket: copy it, queue it for the owner under a lock, and wake the owner
// (eventfd) when its queue was empty; the owner drains the queue in batches.
int Handoff(int64_t count) {
  const size_t size = static_cast<size_t>(absl::GetFlag(FLAGS_size));
  constexpr size_t kMaxQueued = 4096;  // bounded, as every queue here
  std::mutex mu;
  std::deque<std::string> queue;
  const int wake = ::eventfd(0, EFD_CLOEXEC);
  std::atomic<double> consumer_cpu{0};
  std::atomic<uint64_t> wakes{0};
  std::thread consumer([&] {
    int64_t got = 0;
    uint64_t checksum = 0;
    std::deque<std::string> batch;
    while (got < count) {
      pollfd p{wake, POLLIN, 0};
      ::poll(&p, 1, 100);
      uint64_t n;
      if (::read(wake, &n, sizeof(n)) == sizeof(n)) wakes.fetch_add(1);
      {
        std::lock_guard<std::mutex> lock(mu);
        batch.swap(queue);
      }
      for (const std::string& d : batch) checksum += static_cast<uint8_t>(d[0]);
      got += static_cast<int64_t>(batch.size());
      batch.clear();
    }
    consumer_cpu.store(ThreadCpuSeconds());
    if (checksum == 1) std::printf(" ");
  });
  const std::string datagram(size, 'd');
  const double producer_start = ThreadCpuSeconds();
  const absl::Time start = absl::Now();
  for (int64_t i = 0; i < count;) {
    bool was_empty = false;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (queue.size() >= kMaxQueued) {
        // Full: a real shard would drop the datagram; here, let the owner run.
      } else {
        was_empty = queue.empty();
        queue.push_back(datagram);
        ++i;
      }
    }
    if (was_empty) {
      const uint64_t one = 1;
      if (::write(wake, &one, sizeof(one)) != sizeof(one)) return 1;
    }
  }
  const double producer_cpu = ThreadCpuSeconds() - producer_start;
  consumer.join();
  const double wall = absl::ToDoubleSeconds(absl::Now() - start);
  ::close(wake);
  std::printf("hand-off: %lld datagrams of %zu bytes in %.2f s: producer %.0f ns CPU, consumer "
              "%.0f ns CPU per datagram; %llu wake-ups (%.1f datagrams each)\n",
              static_cast<long long>(count), size, wall, 1e9 * producer_cpu / count,
              1e9 * consumer_cpu.load() / count, static_cast<unsigned long long>(wakes.load()),
              wakes.load() > 0 ? static_cast<double>(count) / wakes.load() : 0.0);
  return 0;
}

// Sender CPU per datagram into a 2-socket group, steered or not.
double SteeringRound(int64_t count, bool steered) {
  udp::DatagramSocket::Options o;
  o.non_blocking = true;
  o.reuse_port = true;
  std::vector<udp::DatagramSocket> group;
  udp::SocketAddress address = udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, 0);
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<udp::DatagramSocket> s = udp::DatagramSocket::Bind(address, o);
    if (!s.ok()) return -1;
    address = *s->LocalAddress();
    group.push_back(*std::move(s));
  }
  if (steered && !udp::AttachSteeringProgram(group[0], udp::ShardSteeringProgram(2)).ok()) {
    return -1;
  }
  absl::StatusOr<udp::DatagramSocket> sender =
      udp::DatagramSocket::Bind(udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, 0), {});
  if (!sender.ok()) return -1;
  // Sealed-looking datagrams for shards 0 and 1 (1 + 8-byte id + payload).
  std::vector<std::string> payloads(2, std::string(std::max(absl::GetFlag(FLAGS_size), 9), 'p'));
  for (int i = 0; i < 2; ++i) {
    payloads[i][0] = 2;
    payloads[i][8] = static_cast<char>(i);
  }
  std::vector<udp::OutgoingDatagram> batch;
  for (size_t i = 0; i < udp::DatagramSocket::kMaxBatch; ++i) {
    batch.push_back(udp::OutgoingDatagram{address, udp::AsBytes(payloads[i % 2])});
  }
  const double start = ThreadCpuSeconds();
  for (int64_t sent = 0; sent < count;) {
    absl::StatusOr<size_t> n = sender->SendBatch(batch);
    if (!n.ok()) return -1;
    sent += static_cast<int64_t>(*n);
    // Nobody reads: the receive queues fill and the kernel drops the rest,
    // after picking the socket (where the program runs) either way.
  }
  return 1e9 * (ThreadCpuSeconds() - start) / count;
}

int SteeringCost(int64_t count) {
  for (int round = 0; round < 3; ++round) {
    const double plain = SteeringRound(count, false);
    const double steered = SteeringRound(count, true);
    std::printf("round %d: %.0f ns CPU per datagram by the 4-tuple hash, %.0f ns steered by "
                "the program (%+.0f ns)\n",
                round, plain, steered, steered - plain);
  }
  return 0;
}

int Main() {
  if (absl::GetFlag(FLAGS_steering_cost) > 0) {
    return SteeringCost(absl::GetFlag(FLAGS_steering_cost));
  }
  if (absl::GetFlag(FLAGS_handoff) > 0) return Handoff(absl::GetFlag(FLAGS_handoff));
  const int shard_count = absl::GetFlag(FLAGS_shards);
  const int client_count = absl::GetFlag(FLAGS_clients);
  const int client_threads = std::max(1, absl::GetFlag(FLAGS_client_threads));
  HostOptions server_options;
  server_options.bind = SocketAddress::Loopback(AddressFamily::kIpv4, 0);
  server_options.accept_incoming = true;
  server_options.max_ack_delay = absl::Milliseconds(absl::GetFlag(FLAGS_ack_delay_ms));
  server_options.max_connections = static_cast<size_t>(client_count);
  server_options.max_connections_per_address = static_cast<size_t>(client_count);
  server_options.max_unconfirmed_connections = static_cast<size_t>(client_count);
  absl::StatusOr<std::vector<Host>> shards = Host::CreateShards(server_options, shard_count);
  if (!shards.ok()) {
    std::fprintf(stderr, "%s\n", std::string(shards.status().message()).c_str());
    return 1;
  }
  const SocketAddress server = (*shards)[0].local_address();
  std::printf("server %s: %d shards (%s)\n", server.ToString().c_str(), shard_count,
              (*shards)[0].shard().steered ? "steered by connection id"
                                           : (*shards)[0].shard().steering_error.c_str());
  std::atomic<bool> stop{false};
  std::vector<ShardCounters> counters(static_cast<size_t>(shard_count));
  std::vector<std::thread> threads;
  for (int i = 0; i < shard_count; ++i) {
    threads.emplace_back(ServeShard, &(*shards)[i], &counters[i], &stop);
  }
  std::vector<std::vector<Client>> groups(static_cast<size_t>(client_threads));
  for (int i = 0; i < client_count; ++i) {
    HostOptions o;
    o.bind = SocketAddress::Loopback(AddressFamily::kIpv4, 0);
    absl::StatusOr<Host> host = Host::Create(o);
    if (!host.ok()) {
      std::fprintf(stderr, "%s\n", std::string(host.status().message()).c_str());
      return 1;
    }
    absl::StatusOr<ConnectionId> id = host->Connect(server);
    if (!id.ok()) return 1;
    groups[i % client_threads].push_back(Client{*std::move(host), *id, false});
  }
  std::atomic<int> connected{0};
  std::vector<std::atomic<uint64_t>> client_cpu(static_cast<size_t>(client_threads));
  std::vector<std::thread> drivers;
  for (int t = 0; t < client_threads; ++t) {
    drivers.emplace_back(DriveClients, &groups[t], &connected, &client_cpu[t], &stop);
  }
  const absl::Time connect_deadline = absl::Now() + absl::Seconds(20);
  while (connected.load() < client_count && absl::Now() < connect_deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  std::printf("%d of %d clients connected\n", connected.load(), client_count);
  absl::SleepFor(absl::Seconds(absl::GetFlag(FLAGS_warmup)));  // windows open, caches warm
  auto sum = [&](auto field) {
    uint64_t total = 0;
    for (ShardCounters& c : counters) total += (c.*field).load();
    return total;
  };
  auto client_cpu_ns = [&] {
    uint64_t total = 0;
    for (auto& c : client_cpu) total += c.load();
    return total;
  };
  std::vector<uint64_t> start_messages, start_cpu;
  for (ShardCounters& c : counters) {
    start_messages.push_back(c.messages.load());
    start_cpu.push_back(c.cpu_ns.load());
  }
  const uint64_t start_total = sum(&ShardCounters::messages);
  const uint64_t start_client_cpu = client_cpu_ns();
  const absl::Time start = absl::Now();
  absl::SleepFor(absl::Seconds(absl::GetFlag(FLAGS_seconds)));
  const double secs = absl::ToDoubleSeconds(absl::Now() - start);
  const uint64_t messages = sum(&ShardCounters::messages) - start_total;
  const double client_cpu_s = (client_cpu_ns() - start_client_cpu) * 1e-9;
  std::printf("messages/s %.0f (%llu in %.2f s; %d shards, %d clients, %d client threads, %d-byte "
              "messages, %.1f us of work each)\n",
              messages / secs, static_cast<unsigned long long>(messages), secs, shard_count,
              client_count, client_threads, absl::GetFlag(FLAGS_size),
              absl::GetFlag(FLAGS_work_us));
  for (int i = 0; i < shard_count; ++i) {
    const uint64_t m = counters[i].messages.load() - start_messages[i];
    const double cpu = (counters[i].cpu_ns.load() - start_cpu[i]) * 1e-9;
    std::printf("  shard %d: %.0f messages/s, %.0f%% of a core, %.2f us CPU per message, "
                "unknown_connection %llu\n",
                i, m / secs, 100 * cpu / secs, m > 0 ? 1e6 * cpu / m : 0.0,
                static_cast<unsigned long long>(counters[i].unknown.load()));
  }
  std::printf("  clients: %.0f%% of a core in all (%.2f us CPU per message)\n",
              100 * client_cpu_s / secs, messages > 0 ? 1e6 * client_cpu_s / messages : 0.0);
  stop.store(true);
  for (Host& h : *shards) h.Wake();
  for (std::thread& t : drivers) t.join();
  for (std::thread& t : threads) t.join();
  return 0;
}

}  // namespace
}  // namespace udpmsg

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return udpmsg::Main();
}
