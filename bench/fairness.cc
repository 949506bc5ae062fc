#include "bench/fairness.h"

#include <algorithm>
#include <map>
#include <memory>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/bulk_wire.h"
#include "bench/harness.h"
#include "bench/transports.h"

namespace udpmsg::bench {
namespace {

constexpr const char* kFlowTransports[] = {"udpmsg",    "udpmsg-newreno", "udpmsg-bbr", "tcp",
                                           "tcp-cubic", "tcp-reno",       "tcp-bbr",    "enet"};
// Each flow cycles through this much payload.
constexpr uint64_t kPayloadBytes = 4 << 20;

// The receiver kind a flow's transport needs: "udpmsg", "tcp" or "enet".
std::string Kind(absl::string_view transport) {
  if (absl::StartsWith(transport, "udpmsg")) return "udpmsg";
  if (IsTcpTransport(transport)) return "tcp";
  return "enet";
}

// kLocal: one receiver per kind on loopback, each on its own thread.
class LocalReceivers final {
 public:
  static absl::StatusOr<std::unique_ptr<LocalReceivers>> Start(const FairnessConfig& c) {
    auto r = std::unique_ptr<LocalReceivers>(new LocalReceivers);
    for (const std::string& flow : c.flows) {
      const std::string kind = Kind(flow);
      if (r->servers_.count(kind) > 0) continue;
      absl::StatusOr<std::unique_ptr<Transport>> t =
          MakeTransport(BulkTransportSpec(kind, c.cc, c.timeout),
                        udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, 0), true);
      if (!t.ok()) return t.status();
      Server& s = r->servers_[kind];
      s.transport = *std::move(t);
      s.receiver = std::make_unique<BulkReceiver>(*s.transport, /*verbose=*/false, c.timeout);
      BulkReceiver* receiver = s.receiver.get();
      s.thread = std::make_unique<PollThread>(*s.transport, *receiver, absl::Milliseconds(20),
                                              [receiver] { receiver->Expire(); });
    }
    return r;
  }
  ~LocalReceivers() {
    for (auto& [kind, s] : servers_) s.thread.reset();  // before the transport
  }

  udp::SocketAddress AddressFor(absl::string_view transport) const {
    return servers_.at(Kind(transport)).transport->local_address();
  }
  absl::Status status() const {
    for (const auto& [kind, s] : servers_) {
      if (!s.thread->status().ok()) return s.thread->status();
    }
    return absl::OkStatus();
  }

 private:
  struct Server {
    std::unique_ptr<Transport> transport;
    std::unique_ptr<BulkReceiver> receiver;
    std::unique_ptr<PollThread> thread;
  };
  LocalReceivers() = default;
  std::map<std::string, Server> servers_;
};

std::string DisplayName(absl::string_view transport, const FairnessConfig& c) {
  if (transport == "udpmsg") {
    return absl::StrCat("udpmsg-", reliable::CongestionControlName(c.cc));
  }
  return std::string(transport);
}

// Two decimals, or two significant digits below 0.1: a flow starved to a
// few thousandths of its share must not print as 0.00, as if it moved nothing.
std::string FormatShare(double share) {
  return share < 0.1 ? absl::StrFormat("%.2g", share) : absl::StrFormat("%.2f", share);
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ParseFairnessFlows(absl::string_view text) {
  std::vector<std::string> flows;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    const std::string name = absl::AsciiStrToLower(absl::StripAsciiWhitespace(part));
    if (std::find(std::begin(kFlowTransports), std::end(kFlowTransports), name) ==
        std::end(kFlowTransports)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--bench_flows: unknown transport \"", part,
          "\" (udpmsg, udpmsg-newreno, udpmsg-bbr, tcp, tcp-cubic, tcp-reno, tcp-bbr, enet)"));
    }
    flows.push_back(name);
  }
  if (flows.empty()) return absl::InvalidArgumentError("--bench_flows names none");
  if (flows.size() > kMaxFairnessFlows) {
    return absl::InvalidArgumentError(
        absl::StrCat("--bench_flows names ", flows.size(), " flows (at most ", kMaxFairnessFlows,
                     ")"));
  }
  return flows;
}

double JainIndex(const std::vector<double>& x) {
  double sum = 0, squares = 0;
  for (double v : x) {
    sum += v;
    squares += v * v;
  }
  if (x.empty() || squares <= 0) return 0;
  return sum * sum / (static_cast<double>(x.size()) * squares);
}

absl::Status RunFairness(const FairnessConfig& c) {
  if (c.role == BenchRole::kServer) {
    return absl::InvalidArgumentError(
        "bench fairness has no server role: run `udpmsg bench bulk --bench_role server`, whose "
        "receivers serve timed flows too");
  }
  if (c.flows.empty()) return absl::InvalidArgumentError("bench fairness: no flows");
  std::unique_ptr<LocalReceivers> local;
  if (c.role == BenchRole::kLocal) {
    absl::StatusOr<std::unique_ptr<LocalReceivers>> r = LocalReceivers::Start(c);
    if (!r.ok()) return r.status();
    local = *std::move(r);
  }
  const Payload payload = MakePayload(kPayloadBytes, c.seed);
  const size_t n = c.flows.size();
  std::vector<BulkOutcome> rows(n);
  std::vector<std::unique_ptr<Transport>> clients(n);
  std::vector<PeerId> peers(n);
  std::vector<bool> connected(n, false);
  // Connect every flow first, so that they start together.
  for (size_t i = 0; i < n; ++i) {
    const std::string& flow = c.flows[i];
    rows[i].transport = DisplayName(flow, c);
    std::vector<udp::SocketAddress> to;
    if (local != nullptr) {
      to = {local->AddressFor(flow)};
    } else {
      absl::StatusOr<std::vector<udp::SocketAddress>> a = BulkPeerAddresses(flow, c.peer, c.family);
      if (!a.ok()) {
        rows[i].error = std::string(a.status().message());
        continue;
      }
      to = *std::move(a);
    }
    absl::StatusOr<std::unique_ptr<Transport>> t =
        MakeTransport(BulkTransportSpec(flow, c.cc, c.timeout),
                      udp::SocketAddress::Any(to.front().family(), 0), false);
    if (!t.ok()) {
      rows[i].error = std::string(t.status().message());
      continue;
    }
    absl::StatusOr<PeerId> peer = (*t)->Connect(to, c.timeout);
    if (!peer.ok()) {
      rows[i].error = std::string(peer.status().message());
      continue;
    }
    clients[i] = *std::move(t);
    peers[i] = *peer;
    connected[i] = true;
  }
  Log(absl::StrFormat("bench fairness: %d flows (%s) for %s ...", n, absl::StrJoin(c.flows, ", "),
                      absl::FormatDuration(c.duration)));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < n; ++i) {
    if (!connected[i]) continue;
    threads.emplace_back([&, i] {
      absl::StatusOr<BulkOutcome> o =
          SendTimed(*clients[i], peers[i], payload, c.duration, c.timeout + c.duration);
      const std::string transport = rows[i].transport;
      if (o.ok()) {
        rows[i] = *std::move(o);
      } else {
        rows[i].error = std::string(o.status().message());
      }
      rows[i].transport = transport;
    });
  }
  for (std::thread& t : threads) t.join();
  clients.clear();
  if (local != nullptr) {
    if (absl::Status s = local->status(); !s.ok()) return s;
  }
  for (size_t i = 0; i < n; ++i) {
    const BulkOutcome& o = rows[i];
    if (!o.error.empty()) {
      Log(absl::StrCat("bench fairness: flow ", i + 1, " (", o.transport, ") FAILED: ", o.error));
    } else {
      Log(absl::StrFormat("bench fairness: flow %d (%s): %d bytes in %.3f s, %.2f Mbit/s", i + 1,
                          o.transport, o.bytes, o.seconds, o.mbps()));
    }
  }
  PrintTable(MakeFairnessTable(rows, c), c.format);
  const size_t failed =
      std::count_if(rows.begin(), rows.end(), [](const BulkOutcome& o) { return !o.verified; });
  if (failed > 0) {
    return absl::DataLossError(
        absl::StrCat(failed, " of ", rows.size(), " flows failed or were not verified"));
  }
  return absl::OkStatus();
}

BenchTable MakeFairnessTable(const std::vector<BulkOutcome>& rows, const FairnessConfig& c) {
  BenchTable t;
  t.title = absl::StrFormat(
      "bench fairness: %d flows at once for %s, %d-byte datagrams (udpmsg's grow by path MTU "
      "discovery), %s",
      rows.size(), absl::FormatDuration(c.duration), kBulkDatagramBytes,
      c.role == BenchRole::kLocal ? "loopback, one process" : absl::StrCat("to ", c.peer));
  // New columns go at the end: bench/run.sh reads the CSV by position.
  t.columns = {"flow", "transport", "bytes", "seconds", "Mbit/s", "share", "verified"};
  std::vector<double> rates;
  for (const BulkOutcome& o : rows) rates.push_back(o.mbps());
  double total = 0;
  for (double r : rates) total += r;
  const double fair = rates.empty() ? 0 : total / static_cast<double>(rates.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    const BulkOutcome& o = rows[i];
    const bool ok = o.verified;
    t.rows.push_back({
        absl::StrCat(i + 1),
        o.transport,
        absl::StrCat(o.bytes),
        ok ? absl::StrFormat("%.4g", o.seconds) : "-",
        ok ? absl::StrFormat("%.2f", o.mbps()) : "-",
        ok && fair > 0 ? FormatShare(rates[i] / fair) : "-",
        ok ? "yes" : "no",
    });
  }
  t.notes.push_back(
      "goodput: verified bytes the receiver got within the duration of its first byte / the "
      "duration; share: a flow's goodput / the fair share (the flows' total / n)");
  const bool all = std::all_of(rows.begin(), rows.end(), [](const BulkOutcome& o) { return o.verified; });
  if (!all || total <= 0) {
    t.notes.push_back("Jain's fairness index: not measured (a flow failed)");
    t.notes.push_back("target: each flow within a factor of 2 of its fair share: not measured");
  } else {
    t.notes.push_back(absl::StrFormat(
        "Jain's fairness index (sum x)^2 / (n * sum x^2): %.3f over %d flows, total %.2f Mbit/s",
        JainIndex(rates), rates.size(), total));
    std::vector<std::string> outside;
    for (size_t i = 0; i < rows.size(); ++i) {
      const double share = rates[i] / fair;
      if (share < 0.5 || share > 2) {
        outside.push_back(
            absl::StrFormat("flow %d (%s) at %sx", i + 1, rows[i].transport, FormatShare(share)));
      }
    }
    t.notes.push_back(absl::StrCat(
        "target: each flow within a factor of 2 of its fair share: ",
        outside.empty() ? "met" : absl::StrCat("NOT met: ", absl::StrJoin(outside, ", "))));
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    if (!rows[i].error.empty()) {
      t.notes.push_back(
          absl::StrCat("FAILED flow ", i + 1, " (", rows[i].transport, "): ", rows[i].error));
    }
  }
  return t;
}

}  // namespace udpmsg::bench
