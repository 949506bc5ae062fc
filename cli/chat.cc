// chat serve / chat join: a multi-party chat over udpmsg.
//
// The chat itself is apps/chat: chat::ServerCore (membership, nicks, one
// total order of lines) and chat::ClientCore (server messages to display
// events, typed lines to messages). This file parses the flags and drives
// the server core with a udpmsg::Host, the real clock and a signalfd;
// cli/chat_client.cc drives the client core with the terminal around it.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "apps/chat/local_room.h"
#include "apps/chat/redis_room.h"
#include "apps/chat/room.h"
#include "apps/chat/rules.h"
#include "apps/chat/sequencer.h"
#include "apps/chat/server_core.h"
#include "apps/chat/server_on_host.h"
#include "cli/chat_client.h"
#include "cli/chat_terminal.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/flags.h"
#include "cli/security.h"
#include "udpmsg/udpmsg.h"

// chat serve's fairness limits (apps/chat/server_core.h, ServerOptions).
ABSL_FLAG(int64_t, max_members_per_address, 8,
          "chat serve: members from one address (IPv4, or IPv6 /64) at most, and as many "
          "connections from it waiting to join");
ABSL_FLAG(double, line_rate, 5, "chat serve: messages per second each member may send");
ABSL_FLAG(int64_t, line_burst, 60, "chat serve: messages a member may send at once");
ABSL_FLAG(int64_t, byte_rate, 32 << 10, "chat serve: bytes per second each member may send");
ABSL_FLAG(int64_t, byte_burst, 128 << 10, "chat serve: bytes a member may send at once");
ABSL_FLAG(int64_t, flood_tolerance, 100,
          "chat serve: messages refused for the rate a member may send (refilled at "
          "--line_rate) before it is closed for flooding");
ABSL_FLAG(int64_t, max_backlog_bytes, 4 << 20,
          "chat serve: bytes waiting for one member before it is dropped as too slow");
ABSL_FLAG(int64_t, announce_limit, 1000,
          "chat serve: joins and leaves are announced to the room while it has at most this "
          "many members (0: never); beyond, members see the room's size in /who");
// chat serve --cluster: one room over many servers (apps/chat/redis_room.h).
ABSL_FLAG(std::string, cluster, "",
          "chat serve: share the room with other servers through Redis: "
          "redis://[[USER]:PASSWORD@]HOST[:PORT]/ROOM");
ABSL_FLAG(std::string, cluster_password_file, "",
          "chat serve --cluster: read Redis's password from the first line of this file "
          "(keeps it out of the process list)");
ABSL_FLAG(std::string, cluster_tls_ca, "",
          "chat serve --cluster rediss://...: verify Redis's certificate against this CA file "
          "(PEM; default: the system's CAs)");
ABSL_FLAG(std::string, cluster_tls_cert, "",
          "chat serve --cluster rediss://...: a client certificate (PEM) for Redis, with "
          "--cluster_tls_key");
ABSL_FLAG(std::string, cluster_tls_key, "",
          "chat serve --cluster rediss://...: the client certificate's key (PEM)");
ABSL_FLAG(std::string, cluster_ttl, "10s",
          "chat serve --cluster: a server silent this long loses its members (heartbeat: a fifth)");
ABSL_FLAG(int, cluster_history, 100,
          "chat serve --cluster: the room's last lines a joining member receives (0 to 1000)");
// chat join's session behaviour (cli/chat_client.h, apps/chat/client_session.h).
ABSL_FLAG(bool, reconnect, true,
          "chat join: after a lost connection or a server shutdown, reconnect (backoff 0.5s "
          "doubling to 30s, with jitter) and rejoin under the same nick; --reconnect=false exits "
          "instead");

namespace udpmsg::cli {
namespace {

constexpr char kCommand[] = "chat";
// The room's held bytes at most, unless --max_backlog_bytes is larger.
constexpr uint64_t kMaxHeldBytes = 32 << 20;

// The fairness flags into `o`; INVALID_ARGUMENT naming the flag.
absl::Status ApplyFairnessFlags(chat::ServerOptions* o) {
  struct Count {
    const char* name;
    int64_t value;
    int64_t min;
    int64_t max;
  };
  const int64_t per_address = absl::GetFlag(FLAGS_max_members_per_address);
  const int64_t line_burst = absl::GetFlag(FLAGS_line_burst);
  const int64_t byte_rate = absl::GetFlag(FLAGS_byte_rate);
  const int64_t byte_burst = absl::GetFlag(FLAGS_byte_burst);
  const int64_t tolerance = absl::GetFlag(FLAGS_flood_tolerance);
  const int64_t backlog = absl::GetFlag(FLAGS_max_backlog_bytes);
  const int64_t announce = absl::GetFlag(FLAGS_announce_limit);
  constexpr int64_t kGiB = int64_t{1} << 30;
  for (const Count& c : {
           Count{"max_members_per_address", per_address, 1,
                 static_cast<int64_t>(chat::kMaxMembersLimit)},
           Count{"line_burst", line_burst, 1, 1'000'000},
           Count{"byte_rate", byte_rate, 1, kGiB},
           Count{"byte_burst", byte_burst, static_cast<int64_t>(chat::kMinByteBurst), kGiB},
           Count{"flood_tolerance", tolerance, 0, 1'000'000'000},
           Count{"max_backlog_bytes", backlog, static_cast<int64_t>(chat::kMinBacklogBytes),
                 16 * kGiB},
           Count{"announce_limit", announce, 0, static_cast<int64_t>(chat::kMaxMembersLimit)},
       }) {
    if (c.value < c.min || c.value > c.max) {
      return absl::InvalidArgumentError(absl::StrCat("--", c.name, " ", c.value,
                                                     " is out of range (", c.min, " to ", c.max,
                                                     ")"));
    }
  }
  const double line_rate = absl::GetFlag(FLAGS_line_rate);
  if (!(line_rate > 0) || line_rate > 1e6) {
    return absl::InvalidArgumentError(
        absl::StrCat("--line_rate ", line_rate, " is out of range (above 0, at most 1000000)"));
  }
  o->max_members_per_address = static_cast<size_t>(per_address);
  o->line_rate = line_rate;
  o->line_burst = static_cast<size_t>(line_burst);
  o->byte_rate = static_cast<uint64_t>(byte_rate);
  o->byte_burst = static_cast<uint64_t>(byte_burst);
  o->flood_tolerance = static_cast<size_t>(tolerance);
  o->max_backlog_bytes = static_cast<uint64_t>(backlog);
  o->max_held_bytes = std::max(kMaxHeldBytes, o->max_backlog_bytes);
  o->announce_limit = static_cast<size_t>(announce);
  return absl::OkStatus();
}
constexpr uint64_t kSignalToken = 2;
// Connections allowed beyond the members (those still joining, and as many
// again waiting for their handshake's confirmation): a sixteenth of the
// room, at least 64 and at most 16384.
size_t SpareConnections(size_t max_members) {
  return std::clamp<size_t>(max_members / 16, 64, 16384);
}

// What the shards of one server share besides their room: when to stop.
struct ServeShared {
  std::atomic<bool> stop{false};
  std::vector<Host*> hosts;  // to wake each shard's Poll
  void Stop() {
    stop.store(true);
    for (Host* h : hosts) h->Wake();
  }
};

// Runs a chat::ServerCore (one shard of the room) on a Host until a signal
// arrives or another shard stops.
class ServerDriver final {
 public:
  ServerDriver(Host* host, chat::ServerCore* core, absl::Duration timeout, ServeShared* shared)
      : host_(host), server_(host, core, Log), timeout_(timeout), shared_(shared) {}

  // Serves until SIGINT, SIGTERM or SIGHUP arrives on `signal_fd` (-1: this
  // shard does not watch signals) or another shard stops; then tells every
  // member and closes every connection (so nobody waits out a timeout), and
  // returns OK. A failed Poll stops every shard and is returned.
  absl::Status Run(int signal_fd) {
    if (signal_fd >= 0) {
      if (absl::Status s = host_->Watch(signal_fd, kSignalToken); !s.ok()) {
        shared_->Stop();
        return s;
      }
    }
    for (;;) {
      absl::StatusOr<Host::PollResult> r = host_->Poll(absl::Seconds(1));
      if (!r.ok()) {
        shared_->Stop();
        (void)Shutdown();
        return r.status();
      }
      for (const Event& e : r->events) server_.OnEvent(absl::Now(), e);
      for (uint64_t token : r->ready) {
        if (token == kSignalToken && DrainSignals(signal_fd)) shared_->Stop();
      }
      server_.OnRoom(absl::Now());  // other shards' lines (their Wake ended the Poll)
      server_.OnTick(absl::Now());
      if (shared_->stop.load()) return Shutdown();
    }
  }

 private:
  // The core quotes peer text through Displayable already; escaping the
  // whole line again (idempotent) keeps every log entry one line whatever
  // the core puts in it.
  static void Log(std::string line) {
    std::fprintf(stderr, "%s\n", Displayable(line).c_str());
    std::fflush(stderr);
  }

  absl::Status Shutdown() {
    server_.Shutdown(absl::Now());
    (void)host_->Flush(std::min(timeout_, absl::Seconds(2)));
    return absl::OkStatus();
  }

  Host* host_;
  chat::ServerOnHost server_;
  absl::Duration timeout_;
  ServeShared* shared_;
};

// The first line of `path` (a password file), without trailing spaces.
absl::StatusOr<std::string> FirstLine(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "re");
  if (f == nullptr) {
    return absl::NotFoundError(absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  char buf[1024];
  const bool got = std::fgets(buf, sizeof buf, f) != nullptr;
  std::fclose(f);
  if (!got) return absl::InvalidArgumentError(absl::StrCat(path, " is empty"));
  return std::string(absl::StripTrailingAsciiWhitespace(buf));
}

// RedisRoomOptions from --cluster and its companions (the room's limits
// aside); INVALID_ARGUMENT naming the flag, or the password file's error.
absl::StatusOr<chat::RedisRoomOptions> ClusterFromFlags() {
  chat::RedisRoomOptions o;
  absl::StatusOr<redis::Url> url = redis::ParseUrl(absl::GetFlag(FLAGS_cluster));
  if (!url.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--cluster: ", url.status().message()));
  }
  o.endpoint = url->endpoint;
  o.room = url->path;
  if (o.room.empty()) {
    return absl::InvalidArgumentError(
        "--cluster: name the room after the address (redis://HOST:PORT/ROOM)");
  }
  const std::string file = absl::GetFlag(FLAGS_cluster_password_file);
  if (!file.empty()) {
    absl::StatusOr<std::string> password = FirstLine(file);
    if (!password.ok()) return absl::FailedPreconditionError(password.status().message());
    o.endpoint.password = *std::move(password);
  }
  o.endpoint.tls_ca_file = absl::GetFlag(FLAGS_cluster_tls_ca);
  o.endpoint.tls_cert_file = absl::GetFlag(FLAGS_cluster_tls_cert);
  o.endpoint.tls_key_file = absl::GetFlag(FLAGS_cluster_tls_key);
  const bool tls_flags = !o.endpoint.tls_ca_file.empty() || !o.endpoint.tls_cert_file.empty() ||
                         !o.endpoint.tls_key_file.empty();
  if (tls_flags && !o.endpoint.tls) {
    return absl::InvalidArgumentError(
        "--cluster_tls_* need a rediss:// URL (Redis over TLS)");
  }
  if (o.endpoint.tls_cert_file.empty() != o.endpoint.tls_key_file.empty()) {
    return absl::InvalidArgumentError("--cluster_tls_cert and --cluster_tls_key go together");
  }
  absl::Duration ttl;
  if (!absl::ParseDuration(absl::GetFlag(FLAGS_cluster_ttl), &ttl) || ttl < absl::Seconds(1) ||
      ttl > absl::Hours(1)) {
    return absl::InvalidArgumentError(absl::StrCat("--cluster_ttl \"",
                                                   absl::GetFlag(FLAGS_cluster_ttl),
                                                   "\" is not a duration from 1s to 1h"));
  }
  o.alive_ttl = ttl;
  o.heartbeat = ttl / 5;
  const int history = absl::GetFlag(FLAGS_cluster_history);
  if (history < 0 || history > 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat("--cluster_history ", history, " is out of range (0 to 1000)"));
  }
  o.history_lines = static_cast<size_t>(history);
  if (absl::Status s = o.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--cluster: ", s.message()));
  }
  return o;
}

// The shard count from --threads: 0 is one per CPU. INVALID_ARGUMENT
// outside [0, 256].
absl::StatusOr<int> ShardsFromFlag() {
  const int threads = absl::GetFlag(FLAGS_threads);
  if (threads < 0 || threads > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("--threads ", threads, " is out of range (1 to 256; 0: one per CPU)"));
  }
  if (threads > 0) return threads;
  return static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 256u));
}

int RunServe(const Args& args) {
  if (!args.empty()) return UsageError(kCommand, "serve takes no positional arguments");
  absl::StatusOr<uint16_t> port = PortFromFlag();
  if (!port.ok()) return UsageError(kCommand, absl::StrCat("serve: ", port.status().message()));
  if (absl::Status s = CheckIdentityFlags(/*serves=*/true); !s.ok()) {
    return UsageError(kCommand, s.message());
  }
  absl::StatusOr<absl::Duration> timeout = TimeoutFromFlag();
  if (!timeout.ok()) return UsageError(kCommand, timeout.status().message());
  const int max_members = absl::GetFlag(FLAGS_max_members);
  if (max_members < 1 || max_members > static_cast<int>(chat::kMaxMembersLimit)) {
    return UsageError(kCommand,
                      absl::StrCat("--max_members ", max_members, " is out of range (1 to ",
                                   chat::kMaxMembersLimit, ")"));
  }
  absl::StatusOr<int> shards = ShardsFromFlag();
  if (!shards.ok()) return UsageError(kCommand, shards.status().message());
  chat::ServerOptions server_options;
  server_options.join_timeout = *timeout;
  server_options.max_members = static_cast<size_t>(max_members);
  // The endpoint bounds connections to members + spares; so does the core.
  const size_t spare = SpareConnections(server_options.max_members);
  server_options.max_pending = server_options.max_members + spare;
  if (absl::Status s = ApplyFairnessFlags(&server_options); !s.ok()) {
    return UsageError(kCommand, s.message());
  }
  if (absl::Status s = server_options.Validate(); !s.ok()) return UsageError(kCommand, s.message());
  const bool cluster = !absl::GetFlag(FLAGS_cluster).empty();
  chat::RedisRoomOptions cluster_options;
  if (cluster) {
    absl::StatusOr<chat::RedisRoomOptions> o = ClusterFromFlags();
    if (!o.ok()) {
      if (absl::IsInvalidArgument(o.status())) return UsageError(kCommand, o.status().message());
      return Fail(o.status());
    }
    cluster_options = *std::move(o);
  } else if (!absl::GetFlag(FLAGS_cluster_password_file).empty()) {
    return UsageError(kCommand, "--cluster_password_file needs --cluster");
  }

  // The room first: an unreachable Redis is reported before the port is bound.
  chat::RoomLimits limits;
  limits.max_members = server_options.max_members;
  limits.max_members_per_address = server_options.max_members_per_address;
  limits.announce_limit = server_options.announce_limit;
  std::shared_ptr<chat::Room> room;
  std::shared_ptr<chat::RedisRoom> redis_room;
  if (cluster) {
    cluster_options.limits = limits;
    cluster_options.log = [](std::string line) {
      std::fprintf(stderr, "%s\n", Displayable(line).c_str());
      std::fflush(stderr);
    };
    absl::StatusOr<std::shared_ptr<chat::RedisRoom>> r = chat::RedisRoom::Create(cluster_options);
    if (!r.ok()) {
      return Fail(absl::Status(r.status().code(), absl::StrCat("chat serve --cluster: ",
                                                               r.status().message())));
    }
    redis_room = *r;
    room = redis_room;
  } else {
    room = std::make_shared<chat::LocalRoom>(limits, std::make_unique<chat::LocalSequencer>());
  }
  std::string bind = absl::GetFlag(FLAGS_bind);
  if (bind.empty() && absl::GetFlag(FLAGS_ipv4)) bind = "0.0.0.0";
  absl::StatusOr<std::vector<SocketAddress>> locals =
      BindAddresses(bind, *port, SocketType::kDatagram);
  if (!locals.ok()) return Fail(locals.status());
  // SIGHUP too (a closed terminal or ssh session): without it the server
  // died without telling its members, who then waited out their timeout.
  absl::StatusOr<OwnedFd> signals = SignalFd({SIGINT, SIGTERM, SIGHUP});
  if (!signals.ok()) return Fail(signals.status());

  HostOptions options = ChatOptions(*timeout);
  if (absl::Status s = ApplySecurityFlags(&options); !s.ok()) return Fail(s);
  absl::StatusOr<std::string> identity = ApplyServerIdentity(&options);
  if (!identity.ok()) return Fail(identity.status());
  options.accept_incoming = true;
  // What a member can make the server hold (docs/security.md "Memory per
  // connection"): members send lines of at most chat::kMaxTextBytes and the
  // server reads its events at once, so 1 MiB of reassembly and undelivered
  // messages each is ample; the library's defaults (64 MiB each, for bulk
  // transfers) would let every member hold over 128 MiB of the server.
  options.max_reassembly_bytes = 1 << 20;
  options.max_undelivered_bytes = 1 << 20;
  // The transport's budgets follow the room (draining connections follow
  // max_connections): members and those joining; as many again waiting for
  // their handshake's confirmation; per address, its members and its
  // connections waiting to join.
  options.max_connections = server_options.max_members + spare;
  options.max_unconfirmed_connections = spare;
  options.max_connections_per_address =
      std::min<size_t>(2 * server_options.max_members_per_address, options.max_connections);
  options.bind = locals->front();
  // One host per shard on the port (caps in `options` apply per shard; the
  // room's, per room), one ServerCore per host over one room: one order.
  absl::StatusOr<std::vector<Host>> hosts = Host::CreateShards(options, *shards);
  if (!hosts.ok()) return Fail(hosts.status());
  PrintListening((*hosts)[0].local_address());
  if (!identity->empty()) std::fprintf(stderr, "server identity %s\n", identity->c_str());
  if (redis_room != nullptr) {
    std::fprintf(stderr, "room %s on Redis %s (this server: %s)\n", cluster_options.room.c_str(),
                 cluster_options.endpoint.ToString().c_str(), redis_room->server_id().c_str());
  }
  const ShardInfo& info = (*hosts)[0].shard();
  if (info.count > 1) {
    std::fprintf(stderr, "%d shards, %s\n", info.count,
                 info.steered ? "steered by connection id"
                              : absl::StrCat("by the kernel's address hash only: ",
                                             info.steering_error).c_str());
  }
  ServeShared shared;
  std::vector<std::unique_ptr<chat::ServerCore>> cores;
  std::vector<std::unique_ptr<ServerDriver>> drivers;
  for (Host& h : *hosts) {
    shared.hosts.push_back(&h);
    const int shard = room->AddShard([&h] { h.Wake(); });
    absl::StatusOr<std::unique_ptr<chat::ServerCore>> core =
        chat::ServerCore::Create(server_options, room, shard);
    if (!core.ok()) return Fail(core.status());
    cores.push_back(*std::move(core));
    drivers.push_back(std::make_unique<ServerDriver>(&h, cores.back().get(), *timeout, &shared));
  }
  if (redis_room != nullptr) redis_room->Start();
  // Shard 0 on this thread watches the signals; the others on their own.
  std::vector<absl::Status> results(drivers.size());
  std::vector<std::thread> workers;
  for (size_t i = 1; i < drivers.size(); ++i) {
    workers.emplace_back([&, i] { results[i] = drivers[i]->Run(-1); });
  }
  results[0] = drivers[0]->Run(signals->get());
  for (std::thread& t : workers) t.join();
  if (redis_room != nullptr) redis_room->Stop();  // after every shard's goodbye
  for (const absl::Status& s : results) {
    if (!s.ok()) return Fail(s);
  }
  return kExitOk;
}

// Servers `chat join` takes at most (the servers of one room).
constexpr size_t kMaxJoinServers = 64;

int RunJoin(const Args& args) {
  if (args.empty()) {
    return UsageError(kCommand, "join expects HOST:PORT [HOST:PORT...] and --nick NAME");
  }
  if (args.size() > kMaxJoinServers) {
    return UsageError(kCommand, absl::StrCat("join takes at most ", kMaxJoinServers,
                                             " servers (HOST:PORT), not ", args.size()));
  }
  const std::string nick = absl::GetFlag(FLAGS_nick);
  if (nick.empty()) return UsageError(kCommand, "join: --nick NAME is required");
  if (absl::Status s = chat::CheckNick(nick); !s.ok()) return UsageError(kCommand, s.message());
  if (absl::Status s = CheckIdentityFlags(/*serves=*/false); !s.ok()) {
    return UsageError(kCommand, s.message());
  }
  absl::StatusOr<absl::Duration> timeout = TimeoutFromFlag();
  if (!timeout.ok()) return UsageError(kCommand, timeout.status().message());
  // Several servers: one host's pin cannot hold one known-hosts line per
  // server (a room's servers may share one identity: --server_id).
  if (args.size() > 1 && !absl::GetFlag(FLAGS_known_hosts).empty()) {
    return UsageError(kCommand,
                      "join: --known_hosts takes one server; with several, pin the room's "
                      "identity with --server_id");
  }
  // Each server's first address; the socket is IPv6 (dual-stack) if any is.
  std::vector<SocketAddress> servers;
  bool ipv6 = false;
  for (const std::string& server : args) {
    absl::StatusOr<std::vector<SocketAddress>> peers =
        ResolveDestination(server, SocketType::kDatagram);
    if (!peers.ok()) return AddressError(kCommand, peers.status());
    servers.push_back(peers->front());
    ipv6 = ipv6 || servers.back().family() == AddressFamily::kIpv6;
  }
  absl::StatusOr<OwnedFd> signals = SignalFd({SIGINT, SIGTERM, SIGHUP});
  if (!signals.ok()) return Fail(signals.status());
  ::signal(SIGPIPE, SIG_IGN);  // a closed stdout is a write error, not death

  ChatClientConfig config;
  config.servers = servers;
  config.nick = nick;
  config.timeout = *timeout;
  config.interactive = ::isatty(STDIN_FILENO) == 1 && ::isatty(STDOUT_FILENO) == 1;
  const char* no_color = std::getenv("NO_COLOR");
  const char* term = std::getenv("TERM");
  config.color = config.interactive && absl::GetFlag(FLAGS_color) &&
                 (no_color == nullptr || no_color[0] == '\0') &&
                 !(term != nullptr && std::strcmp(term, "dumb") == 0);
  config.signal_fd = signals->get();
  config.session.reconnect = absl::GetFlag(FLAGS_reconnect);
  config.session.seed = (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();

  HostOptions options = ChatOptions(*timeout);
  if (absl::Status s = ApplySecurityFlags(&options); !s.ok()) return Fail(s);
  absl::StatusOr<ClientTrust> trust = ApplyClientTrust(&options, args[0]);
  if (!trust.ok()) return Fail(trust.status());
  config.on_connected = [&trust](const std::string& presented) {
    return trust->Record(presented);
  };
  options.bind = SocketAddress::Any(ipv6 ? AddressFamily::kIpv6 : AddressFamily::kIpv4, 0);
  absl::StatusOr<Host> host = Host::Create(options);
  if (!host.ok()) return Fail(host.status());
  absl::Status status;
  {
    ChatClient client(&*host, std::move(config));
    status = client.Run();
    client.RestoreTerminal();
  }
  // Error messages print after the terminal is back to normal.
  return status.ok() ? kExitOk : Fail(status);
}

}  // namespace

int RunChat(const Args& args) {
  if (args.empty()) {
    return UsageError(kCommand,
                      "expects serve or join (chat serve --port P | chat join HOST:PORT "
                      "[HOST:PORT...] --nick NAME)");
  }
  const Args rest(args.begin() + 1, args.end());
  if (args[0] == "serve") return RunServe(rest);
  if (args[0] == "join") return RunJoin(rest);
  return UsageError(kCommand,
                    absl::StrCat("unknown mode \"", args[0], "\": expects serve or join"));
}

}  // namespace udpmsg::cli
