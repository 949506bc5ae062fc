// udpmsg bench rate|latency|bulk|fairness|connections: the flags into the
// configs of the bench/ measurements (bench/rate.h, bench/latency.h,
// bench/bulk.h, bench/fairness.h, bench/connections.h), which run and print
// the tables.
#include <cmath>
#include <string>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_cat.h"
#include "apps/chat/rules.h"
#include "bench/bulk.h"
#include "bench/connections.h"
#include "bench/fairness.h"
#include "bench/latency.h"
#include "bench/rate.h"
#include "bench/report.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/flags.h"
#include "cli/impair_flags.h"
#include "impairment/model.h"
#include "udpmsg/udpmsg.h"

// Only bench fairness reads it, so it lives here.
ABSL_FLAG(std::string, bench_flows, "udpmsg,udpmsg,tcp-cubic",
          "bench fairness: the flows to run at once, one transport each (repeats allowed: "
          "udpmsg, udpmsg-newreno, udpmsg-bbr, tcp, tcp-<cc>, enet)");

// bench connections' flags (only it reads them, so they live here).
ABSL_FLAG(int, bench_connections, 1000, "bench connections: chat members to connect");
ABSL_FLAG(int, bench_threads, 2, "bench connections: client threads");
ABSL_FLAG(int, bench_per_socket, 8,
          "bench connections: connections per client socket (each socket on its own 127.X.Y.Z)");
ABSL_FLAG(int, bench_connect_window, 64,
          "bench connections: connection attempts in flight at most (the server keeps 64 "
          "unconfirmed handshakes)");
ABSL_FLAG(std::string, bench_idle, "10s", "bench connections: how long the members idle");
ABSL_FLAG(std::string, bench_load, "10s", "bench connections: how long the members send lines");
ABSL_FLAG(double, bench_line_rate, 10,
          "bench connections: lines per second into the room, in total (each member receives "
          "every line)");
ABSL_FLAG(std::string, bench_settle_timeout, "300s",
          "bench connections: longest wait for every join line to reach every member");
ABSL_FLAG(std::string, bench_server, "",
          "bench connections: an external chat server's HOST:PORT (default: spawn `udpmsg chat "
          "serve`); needs --bench_server_pid");
ABSL_FLAG(int, bench_server_pid, 0,
          "bench connections: the external server's pid on this machine (its /proc figures)");
ABSL_FLAG(std::string, bench_server_args, "",
          "bench connections: more arguments for the spawned `udpmsg chat serve`, space-separated "
          "(e.g. \"--announce_limit=0\")");
ABSL_FLAG(int, bench_server_threads, 0,
          "bench connections: --threads for the spawned server (0: its default; needs a chat "
          "serve with --threads)");

namespace udpmsg::cli {
namespace {

// bench fairness's duration when --bench_duration is left at its default
// (bench latency's 5s).
constexpr absl::Duration kDefaultFairnessDuration = absl::Seconds(30);

bool FlagIsDefault(absl::string_view name) {
  const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
  return flag != nullptr && flag->CurrentValue() == flag->DefaultValue();
}

using bench::BenchRole;

// The loss rates bench latency runs when --bench_loss is left at its default
// (which lists 10% too, for bench bulk).
constexpr char kDefaultLatencyLoss[] = "0,1%,5%";

bool BenchLossIsDefault() { return FlagIsDefault("bench_loss"); }

// --bench_role client: the label of every row. The network applies the loss,
// so --bench_loss names the one rate it applies; "?" when left at its default.
absl::StatusOr<std::string> ClientLossLabel(const std::vector<double>& losses) {
  if (BenchLossIsDefault()) return std::string("?");
  if (losses.size() == 1) return bench::LossLabel(losses[0]);
  return absl::InvalidArgumentError(
      "--bench_role client: the network applies the loss; --bench_loss labels the rows "
      "with the one rate it applies (e.g. --bench_loss 5%)");
}

// --port for --bench_role server: the port ParsePort reads, or -1 when the
// flag is missing or not a port (the callers name the range they need).
int ServerPortFromFlag() {
  absl::StatusOr<uint16_t> port = PortFromFlag();
  return port.ok() ? *port : -1;
}

absl::StatusOr<BenchRole> RoleFromFlag() {
  const std::string role = absl::GetFlag(FLAGS_bench_role);
  if (role == "local") return BenchRole::kLocal;
  if (role == "server") return BenchRole::kServer;
  if (role == "client") return BenchRole::kClient;
  return absl::InvalidArgumentError(
      absl::StrCat("--bench_role \"", role, "\" must be local, server or client"));
}

absl::StatusOr<CongestionControl> CcFromFlag(absl::string_view must) {
  absl::StatusOr<CongestionControl> cc =
      ParseCongestionControl(absl::AsciiStrToLower(absl::GetFlag(FLAGS_cc)));
  if (!cc.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--cc \"", absl::GetFlag(FLAGS_cc), "\" ", must));
  }
  return *cc;
}

// The impairments besides loss (--delay, --jitter, --reorder, --dup,
// --corrupt, --rate) for the in-process proxy of a local run; the loss comes
// from --bench_loss. InvalidArgument for --loss/--burst and, outside the
// local role, for any impairment (the network applies them there).
struct Impairment {
  impairment::ImpairmentConfig config;
  bool besides_loss = false;
  std::string description;
};
absl::StatusOr<Impairment> ImpairmentFromBenchFlags(bool local_role) {
  absl::StatusOr<impairment::ImpairmentConfig> c = ImpairmentFromFlags();
  if (!c.ok()) return c.status();
  if (c->loss > 0 || c->burst > 0) {
    return absl::InvalidArgumentError(
        "bench takes its loss rates from --bench_loss (--loss and --burst are impair's)");
  }
  if (!local_role && ImpairsBesidesLoss(*c)) {
    return absl::InvalidArgumentError(
        "--delay, --jitter, --reorder, --dup, --corrupt and --rate shape the in-process proxy of "
        "--bench_role local; between hosts the network applies them (bench/run.sh --delay)");
  }
  return Impairment{*c, ImpairsBesidesLoss(*c), DescribeBesidesLoss(*c)};
}

absl::StatusOr<absl::Duration> DurationFlag() {
  absl::Duration d;
  if (!absl::ParseDuration(absl::GetFlag(FLAGS_duration), &d) || d < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--duration \"", absl::GetFlag(FLAGS_duration), "\" is not a duration (e.g. 10m, 0)"));
  }
  return d;
}

// The first address BindAddresses gives for --bind and `port`.
absl::StatusOr<SocketAddress> BindAddress(uint16_t port, SocketType type) {
  absl::StatusOr<std::vector<SocketAddress>> a =
      BindAddresses(absl::GetFlag(FLAGS_bind), port, type);
  if (!a.ok()) return a.status();
  return a->front();
}

absl::StatusOr<bench::RateConfig> RateFromFlags(const Args& args, bench::TableFormat format) {
  if (!args.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("bench rate takes no arguments (got \"", args[0], "\")"));
  }
  bench::RateConfig c;
  c.format = format;
  c.messages = absl::GetFlag(FLAGS_bench_messages);
  if (c.messages < 1 || c.messages > 1000000000) {
    return absl::InvalidArgumentError(
        absl::StrCat("--bench_messages ", c.messages, " is out of range (1 to 1000000000)"));
  }
  absl::StatusOr<CongestionControl> cc = CcFromFlag("must be newreno or bbr");
  if (!cc.ok()) return cc.status();
  c.cc = *cc;
  return c;
}

absl::StatusOr<bench::LatencyConfig> LatencyFromFlags(const Args& args,
                                                      bench::TableFormat format) {
  if (!args.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("bench latency takes no arguments (got \"", args[0], "\")"));
  }
  bench::LatencyConfig c;
  c.format = format;
  absl::StatusOr<BenchRole> role = RoleFromFlag();
  if (!role.ok()) return role.status();
  c.role = *role;
  absl::StatusOr<CongestionControl> cc = CcFromFlag("must be newreno or bbr");
  if (!cc.ok()) return cc.status();
  c.cc = *cc;
  c.peer = absl::GetFlag(FLAGS_bench_peer);
  if (c.role != BenchRole::kClient && !c.peer.empty()) {
    return absl::InvalidArgumentError("--bench_peer needs --bench_role client");
  }
  if (c.role == BenchRole::kServer) {
    const int port = ServerPortFromFlag();
    if (port < 1 || port > 65534) {
      return absl::InvalidArgumentError(
          "--bench_role server needs --port P in 1..65534 (raw UDP and TCP on P, udpmsg on P+1)");
    }
    absl::StatusOr<absl::Duration> duration = DurationFlag();
    if (!duration.ok()) return duration.status();
    c.duration = *duration;
    absl::StatusOr<SocketAddress> raw = BindAddress(port, SocketType::kDatagram);
    if (!raw.ok()) return raw.status();
    absl::StatusOr<SocketAddress> udpmsg = BindAddress(port + 1, SocketType::kDatagram);
    if (!udpmsg.ok()) return udpmsg.status();
    absl::StatusOr<SocketAddress> tcp = BindAddress(port, SocketType::kStream);
    if (!tcp.ok()) return tcp.status();
    c.raw_bind = *raw;
    c.udpmsg_bind = *udpmsg;
    c.tcp_bind = *tcp;
    return c;
  }
  if (c.role == BenchRole::kClient && c.peer.empty()) {
    return absl::InvalidArgumentError("--bench_role client needs --bench_peer HOST:PORT");
  }
  c.family = FamilyFromFlags();
  c.rate = absl::GetFlag(FLAGS_bench_rate);
  if (c.rate < 1 || c.rate > 1000000) {
    return absl::InvalidArgumentError(
        absl::StrCat("--bench_rate ", c.rate, " is out of range (1 to 1000000 per second)"));
  }
  absl::StatusOr<absl::Duration> duration =
      impairment::ParseDuration(absl::GetFlag(FLAGS_bench_duration));
  if (!duration.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--bench_duration: ", duration.status().message()));
  }
  c.duration = *duration;
  c.count = static_cast<int64_t>(
      std::llround(absl::ToDoubleSeconds(*duration) * static_cast<double>(c.rate)));
  if (c.count < 1 || c.count > 100000000) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--bench_duration ", absl::FormatDuration(*duration), " at --bench_rate ", c.rate,
        " gives ", c.count, " pings (want 1 to 100000000)"));
  }
  c.seed = absl::GetFlag(FLAGS_seed);
  absl::StatusOr<Impairment> impairment = ImpairmentFromBenchFlags(c.role == BenchRole::kLocal);
  if (!impairment.ok()) return impairment.status();
  c.impairment = impairment->config;
  c.impairs_besides_loss = impairment->besides_loss;
  c.impairment_description = impairment->description;
  absl::StatusOr<std::vector<double>> losses = bench::ParseLossList(
      BenchLossIsDefault() ? std::string(kDefaultLatencyLoss) : absl::GetFlag(FLAGS_bench_loss));
  if (!losses.ok()) return losses.status();
  c.losses = *losses;
  if (c.role == BenchRole::kClient) {
    absl::StatusOr<std::string> label = ClientLossLabel(c.losses);
    if (!label.ok()) return label.status();
    c.client_loss_label = *std::move(label);
    if (c.client_loss_label == "?") c.losses = {0};  // one pass of every transport
  }
  return c;
}

absl::StatusOr<bench::BulkConfig> BulkFromFlags(const Args& args, bench::TableFormat format) {
  if (!args.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("bench bulk takes no positional arguments (got \"", args[0], "\")"));
  }
  bench::BulkConfig c;
  c.format = format;
  absl::StatusOr<uint64_t> size = bench::ParseSize(absl::GetFlag(FLAGS_bench_size));
  if (!size.ok()) return size.status();
  c.size = *size;
  absl::StatusOr<BenchRole> role = RoleFromFlag();
  if (!role.ok()) return role.status();
  c.role = *role;
  absl::StatusOr<std::vector<double>> losses =
      bench::ParseLossList(absl::GetFlag(FLAGS_bench_loss));
  if (!losses.ok()) return losses.status();
  c.losses = *losses;
  if (c.role == BenchRole::kClient) {
    absl::StatusOr<std::string> label = ClientLossLabel(c.losses);
    if (!label.ok()) return label.status();
    c.loss_label = *std::move(label);
  }
  absl::StatusOr<std::vector<std::string>> transports =
      bench::ParseBulkTransports(absl::GetFlag(FLAGS_bench_transports));
  if (!transports.ok()) return transports.status();
  c.transports = *std::move(transports);
  absl::StatusOr<CongestionControl> cc =
      CcFromFlag("is not a congestion controller (newreno, bbr)");
  if (!cc.ok()) return cc.status();
  c.cc = *cc;
  c.seed = absl::GetFlag(FLAGS_seed);
  absl::StatusOr<Impairment> impairment = ImpairmentFromBenchFlags(c.role == BenchRole::kLocal);
  if (!impairment.ok()) return impairment.status();
  c.impairment = impairment->config;
  c.impairs_besides_loss = impairment->besides_loss;
  c.impairment_description = impairment->description;
  if (!absl::ParseDuration(absl::GetFlag(FLAGS_timeout), &c.timeout) ||
      c.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("--timeout \"", absl::GetFlag(FLAGS_timeout),
                                                   "\" is not a positive duration (e.g. 10s)"));
  }
  absl::StatusOr<absl::Duration> duration = DurationFlag();
  if (!duration.ok()) return duration.status();
  c.duration = *duration;
  c.peer = absl::GetFlag(FLAGS_bench_peer);
  c.family = FamilyFromFlags();
  const int port = ServerPortFromFlag();
  if (c.role == BenchRole::kServer) {
    if (port < 1 || port > 65534) {
      return absl::InvalidArgumentError(
          "--bench_role server needs --port P in 1..65534 (udpmsg and TCP on P, ENet on P+1)");
    }
    const auto wants = [&](absl::string_view prefix) {
      for (const std::string& t : c.transports) {
        if (absl::StartsWith(t, prefix)) return true;
      }
      return false;
    };
    if (wants("udpmsg")) {
      absl::StatusOr<SocketAddress> udpmsg = BindAddress(port, SocketType::kDatagram);
      if (!udpmsg.ok()) return udpmsg.status();
      c.udpmsg_bind = *udpmsg;
    }
    if (bench::ServesSealed(c)) {
      if (port > 65533) {
        return absl::InvalidArgumentError(
            "--bench_role server with udpmsg-sealed needs --port P in 1..65533 (it listens on P+2)");
      }
      absl::StatusOr<SocketAddress> sealed = BindAddress(port + 2, SocketType::kDatagram);
      if (!sealed.ok()) return sealed.status();
      c.udpmsg_sealed_bind = *sealed;
    }
    if (wants("tcp")) {
      absl::StatusOr<SocketAddress> tcp = BindAddress(port, SocketType::kStream);
      if (!tcp.ok()) return tcp.status();
      c.tcp_bind = *tcp;
    }
    // ENet speaks IPv4 only: the wildcard, or --bind's IPv4 address.
    c.enet_bind = SocketAddress::Any(AddressFamily::kIpv4, port + 1);
    if (wants("enet") && !absl::GetFlag(FLAGS_bind).empty()) {
      absl::StatusOr<std::vector<SocketAddress>> a =
          Resolve(absl::GetFlag(FLAGS_bind), absl::StrCat(port + 1),
                       AddressFamily::kIpv4, SocketType::kDatagram);
      if (!a.ok()) return a.status();
      c.enet_bind = a->front();
    }
  } else if (c.role == BenchRole::kClient) {
    if (c.peer.empty()) {
      return absl::InvalidArgumentError("--bench_role client needs --bench_peer HOST:PORT");
    }
  } else if (!c.peer.empty()) {
    return absl::InvalidArgumentError("--bench_peer needs --bench_role client");
  }
  return c;
}

absl::StatusOr<bench::FairnessConfig> FairnessFromFlags(const Args& args,
                                                        bench::TableFormat format) {
  if (!args.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("bench fairness takes no positional arguments (got \"", args[0], "\")"));
  }
  bench::FairnessConfig c;
  c.format = format;
  absl::StatusOr<BenchRole> role = RoleFromFlag();
  if (!role.ok()) return role.status();
  if (*role == BenchRole::kServer) {
    return absl::InvalidArgumentError(
        "bench fairness --bench_role must be local or client (its server is `udpmsg bench bulk "
        "--bench_role server`)");
  }
  c.role = *role;
  absl::StatusOr<std::vector<std::string>> flows =
      bench::ParseFairnessFlows(absl::GetFlag(FLAGS_bench_flows));
  if (!flows.ok()) return flows.status();
  c.flows = *std::move(flows);
  c.duration = kDefaultFairnessDuration;
  if (!FlagIsDefault("bench_duration")) {
    absl::StatusOr<absl::Duration> d =
        impairment::ParseDuration(absl::GetFlag(FLAGS_bench_duration));
    if (!d.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--bench_duration: ", d.status().message()));
    }
    if (*d <= absl::ZeroDuration() || *d > bench::kMaxTimedDuration) {
      return absl::InvalidArgumentError(
          absl::StrCat("--bench_duration ", absl::FormatDuration(*d),
                       " is out of range (above 0, at most 1h)"));
    }
    c.duration = *d;
  }
  if (!FlagIsDefault("bench_loss")) {
    return absl::InvalidArgumentError(
        "bench fairness takes no --bench_loss: the flows share the network's path as it is");
  }
  absl::StatusOr<Impairment> impairment = ImpairmentFromBenchFlags(/*local_role=*/true);
  if (!impairment.ok()) return impairment.status();
  if (impairment->besides_loss) {
    return absl::InvalidArgumentError(
        "bench fairness takes no impairment flags: the network applies them (bench/run.sh)");
  }
  absl::StatusOr<CongestionControl> cc =
      CcFromFlag("is not a congestion controller (newreno, bbr)");
  if (!cc.ok()) return cc.status();
  c.cc = *cc;
  c.seed = absl::GetFlag(FLAGS_seed);
  if (!absl::ParseDuration(absl::GetFlag(FLAGS_timeout), &c.timeout) ||
      c.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("--timeout \"", absl::GetFlag(FLAGS_timeout),
                                                   "\" is not a positive duration (e.g. 10s)"));
  }
  c.peer = absl::GetFlag(FLAGS_bench_peer);
  c.family = FamilyFromFlags();
  if (c.role == BenchRole::kClient && c.peer.empty()) {
    return absl::InvalidArgumentError("--bench_role client needs --bench_peer HOST:PORT");
  }
  if (c.role == BenchRole::kLocal && !c.peer.empty()) {
    return absl::InvalidArgumentError("--bench_peer needs --bench_role client");
  }
  return c;
}

absl::StatusOr<absl::Duration> BenchDuration(const char* name, const std::string& value) {
  absl::Duration d;
  if (!absl::ParseDuration(value, &d) || d < absl::ZeroDuration() || d > absl::Hours(24)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, " \"", value, "\" is not a duration from 0 to 24h (e.g. 10s)"));
  }
  return d;
}

// --format json is bench connections' own (a flat object of its figures).
absl::StatusOr<bench::ConnectionsConfig> ConnectionsFromFlags(const Args& args) {
  if (!args.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("bench connections takes no positional arguments (got \"", args[0], "\")"));
  }
  bench::ConnectionsConfig c;
  if (absl::GetFlag(FLAGS_format) == "json") {
    c.json = true;
  } else {
    absl::StatusOr<bench::TableFormat> format =
        bench::ParseTableFormat(absl::GetFlag(FLAGS_format));
    if (!format.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(format.status().message(), " (bench connections also takes json)"));
    }
    c.format = *format;
  }
  c.connections = absl::GetFlag(FLAGS_bench_connections);
  c.threads = absl::GetFlag(FLAGS_bench_threads);
  c.per_socket = absl::GetFlag(FLAGS_bench_per_socket);
  c.connect_window = absl::GetFlag(FLAGS_bench_connect_window);
  c.line_rate = absl::GetFlag(FLAGS_bench_line_rate);
  absl::StatusOr<absl::Duration> idle = BenchDuration("bench_idle", absl::GetFlag(FLAGS_bench_idle));
  if (!idle.ok()) return idle.status();
  c.idle = *idle;
  absl::StatusOr<absl::Duration> load = BenchDuration("bench_load", absl::GetFlag(FLAGS_bench_load));
  if (!load.ok()) return load.status();
  c.load = *load;
  absl::StatusOr<absl::Duration> settle =
      BenchDuration("bench_settle_timeout", absl::GetFlag(FLAGS_bench_settle_timeout));
  if (!settle.ok()) return settle.status();
  c.settle_timeout = *settle;
  if (!absl::ParseDuration(absl::GetFlag(FLAGS_timeout), &c.timeout) ||
      c.timeout <= absl::ZeroDuration() || c.timeout > absl::Hours(24)) {
    return absl::InvalidArgumentError(absl::StrCat("--timeout \"", absl::GetFlag(FLAGS_timeout),
                                                   "\" is not a positive duration (e.g. 10s)"));
  }
  const std::string server = absl::GetFlag(FLAGS_bench_server);
  c.server_pid = absl::GetFlag(FLAGS_bench_server_pid);
  const int server_threads = absl::GetFlag(FLAGS_bench_server_threads);
  if (!server.empty()) {
    if (c.server_pid <= 0) {
      return absl::InvalidArgumentError(
          "--bench_server needs --bench_server_pid PID (the server's /proc figures)");
    }
    if (server_threads != 0 || !absl::GetFlag(FLAGS_bench_server_args).empty()) {
      return absl::InvalidArgumentError(
          "--bench_server_threads and --bench_server_args are for the spawned server; give "
          "the external one its flags yourself");
    }
    absl::StatusOr<std::vector<SocketAddress>> peers =
        ResolveHostPort(server, AddressFamily::kIpv4);
    if (!peers.ok()) return peers.status();
    c.server = peers->front();
    c.external = true;
    if (absl::Status s = bench::ValidateConnectionsConfig(c); !s.ok()) return s;
    return c;
  }
  if (c.server_pid != 0) {
    return absl::InvalidArgumentError("--bench_server_pid needs --bench_server HOST:PORT");
  }
  if (absl::Status s = bench::ValidateConnectionsConfig(c); !s.ok()) return s;
  // The spawned server is this binary: its limits and flags are ours.
  if (c.connections > static_cast<int>(chat::kMaxMembersLimit)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--bench_connections ", c.connections, ": this build's chat serve takes --max_members ",
        "up to ", chat::kMaxMembersLimit));
  }
  if (server_threads < 0 || server_threads > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("--bench_server_threads ", server_threads, " is out of range (0 to 1024)"));
  }
  for (absl::string_view arg :
       absl::StrSplit(absl::GetFlag(FLAGS_bench_server_args), ' ', absl::SkipEmpty())) {
    c.server_args.emplace_back(arg);
  }
  if (server_threads > 0) {
    if (absl::FindCommandLineFlag("threads") == nullptr) {
      return absl::InvalidArgumentError(
          "--bench_server_threads: this build's chat serve has no --threads");
    }
    c.server_args.push_back(absl::StrCat("--threads=", server_threads));
  }
  return c;
}

}  // namespace

int RunBench(const Args& args) {
  if (!args.empty() && args[0] == "connections") {
    absl::StatusOr<bench::ConnectionsConfig> c =
        ConnectionsFromFlags(Args(args.begin() + 1, args.end()));
    if (!c.ok()) {
      if (absl::IsInvalidArgument(c.status())) return UsageError("bench", c.status().message());
      return Fail(c.status());
    }
    if (absl::Status s = bench::RunConnections(*c); !s.ok()) return Fail(s);
    return kExitOk;
  }
  absl::StatusOr<bench::TableFormat> format = bench::ParseTableFormat(absl::GetFlag(FLAGS_format));
  if (!format.ok()) return UsageError("bench", format.status().message());
  if (args.empty()) {
    return UsageError("bench", "expects rate, latency, bulk, fairness or connections");
  }
  const Args rest(args.begin() + 1, args.end());
  absl::Status s;
  if (args[0] == "rate") {
    absl::StatusOr<bench::RateConfig> c = RateFromFlags(rest, *format);
    s = c.ok() ? bench::RunRate(*c) : c.status();
  } else if (args[0] == "latency") {
    absl::StatusOr<bench::LatencyConfig> c = LatencyFromFlags(rest, *format);
    s = c.ok() ? bench::RunLatency(*c) : c.status();
  } else if (args[0] == "bulk") {
    absl::StatusOr<bench::BulkConfig> c = BulkFromFlags(rest, *format);
    s = c.ok() ? bench::RunBulk(*c) : c.status();
  } else if (args[0] == "fairness") {
    absl::StatusOr<bench::FairnessConfig> c = FairnessFromFlags(rest, *format);
    s = c.ok() ? bench::RunFairness(*c) : c.status();
  } else {
    return UsageError("bench", absl::StrCat("unknown kind \"", args[0],
                                            "\": rate, latency, bulk, fairness or connections"));
  }
  if (!s.ok()) return Fail(s);
  return kExitOk;
}

}  // namespace udpmsg::cli
