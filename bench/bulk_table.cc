// bench bulk's table: one row per transfer, the notes, the targets.
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bulk.h"

namespace udpmsg::bench {
namespace {

bool IsTcp(absl::string_view transport) { return absl::StartsWith(transport, "tcp"); }

// The name in a target line: TCP, TCP cubic, ENet.
std::string DisplayName(absl::string_view transport) {
  if (transport == "enet") return "ENet";
  if (transport == "tcp") return "TCP";
  if (IsTcp(transport)) return absl::StrCat("TCP ", transport.substr(4));
  return std::string(transport);
}

std::string Ratio(double a, double b) {
  if (a <= 0 || b <= 0) return "-";
  return absl::StrFormat("%.2fx", a / b);
}

const BulkOutcome* Find(const std::vector<BulkOutcome>& rows, absl::string_view transport,
                        const std::string& loss) {
  for (const BulkOutcome& o : rows) {
    if (o.transport == transport && o.loss == loss && o.verified) return &o;
  }
  return nullptr;
}

// " (met)", or " (NOT met: short by N%)" for a ratio that should be at
// least `want`.
std::string Verdict(double ratio, double want) {
  if (ratio >= want) return " (met)";
  return absl::StrFormat(" (NOT met: %.0f%% short)", 100 * (1 - ratio / want));
}

std::string Target(const std::vector<BulkOutcome>& rows, const std::string& loss,
                   absl::string_view mine, absl::string_view other, double want,
                   absl::string_view what) {
  const BulkOutcome* u = Find(rows, mine, loss);
  const BulkOutcome* o = Find(rows, other, loss);
  std::string head = absl::StrFormat("target: %s >= %gx %s at %s loss%s: ", mine, want,
                                     DisplayName(other), loss, what);
  if (u == nullptr || o == nullptr) {
    return absl::StrCat(head, "not measured here (no verified ", u == nullptr ? mine : other,
                        " row at ", loss, ")");
  }
  const double ratio = u->mbps() / o->mbps();
  return absl::StrCat(head, absl::StrFormat("%.2fx", ratio), Verdict(ratio, want));
}

// Sender + receiver CPU per GB of `mine` at most `want` times `other`'s;
// nothing when either has no CPU figure.
std::string CpuTarget(const std::vector<BulkOutcome>& rows, const std::string& loss,
                      absl::string_view mine, absl::string_view other, double want) {
  const BulkOutcome* u = Find(rows, mine, loss);
  const BulkOutcome* o = Find(rows, other, loss);
  if (u == nullptr || o == nullptr) return "";
  const double a = u->sender_cpu_per_gb() + u->receiver_cpu_per_gb();
  const double b = o->sender_cpu_per_gb() + o->receiver_cpu_per_gb();
  if (u->sender_cpu_per_gb() < 0 || u->receiver_cpu_per_gb() < 0 || o->sender_cpu_per_gb() < 0 ||
      o->receiver_cpu_per_gb() < 0 || b <= 0) {
    return "";
  }
  const double ratio = a / b;
  return absl::StrFormat("target: %s CPU (sender + receiver) per GB <= %gx %s's at %s loss: "
                         "%.3f vs %.3f s/GB, %.2fx%s",
                         mine, want, DisplayName(other), loss, a, b, ratio,
                         ratio <= want ? " (met)"
                                       : absl::StrFormat(" (NOT met: %.0f%% over)",
                                                         100 * (ratio / want - 1)));
}

std::string CpuCell(bool ok, double per_gb) {
  return ok && per_gb >= 0 ? absl::StrFormat("%.3f", per_gb) : "-";
}

}  // namespace

BenchTable MakeBulkTable(const std::vector<BulkOutcome>& run, const BulkConfig& s) {
  const bool local = s.role == BenchRole::kLocal;
  // Listed by loss (in the order the losses ran), then in table order,
  // whatever order the transports ran in.
  std::vector<std::string> losses;
  for (const BulkOutcome& o : run) {
    if (std::find(losses.begin(), losses.end(), o.loss) == losses.end()) losses.push_back(o.loss);
  }
  const auto loss_rank = [&](const std::string& loss) {
    return std::find(losses.begin(), losses.end(), loss) - losses.begin();
  };
  std::vector<BulkOutcome> rows = run;
  std::stable_sort(rows.begin(), rows.end(), [&](const BulkOutcome& a, const BulkOutcome& b) {
    const auto ka = std::make_pair(loss_rank(a.loss), BulkTableRank(a.transport));
    const auto kb = std::make_pair(loss_rank(b.loss), BulkTableRank(b.transport));
    return ka < kb;
  });
  std::vector<std::string> transports = s.transports;
  std::stable_sort(transports.begin(), transports.end(),
                   [](const std::string& a, const std::string& b) {
                     return BulkTableRank(a) < BulkTableRank(b);
                   });
  BenchTable t;
  t.title = absl::StrFormat(
      "bench bulk: %d bytes per transfer, %d-byte datagrams (udpmsg's grow by path MTU "
      "discovery), udpmsg cc %s, %s",
      s.size, kBulkDatagramBytes, reliable::CongestionControlName(s.cc),
      local ? "loopback, one process" : absl::StrCat("to ", s.peer));
  // New columns go at the end: bench/run.sh reads the CSV by position.
  t.columns = {"transport", "loss",     "bytes",           "seconds",          "MB/s",
               "Mbit/s",    "vs_tcp",   "retransmits",     "verified",         "send_cpu_s/GB",
               "recv_cpu_s/GB"};
  for (const BulkOutcome& o : rows) {
    const BulkOutcome* tcp = Find(rows, "tcp", o.loss);
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
        CpuCell(ok, o.sender_cpu_per_gb()),
        CpuCell(ok, o.receiver_cpu_per_gb()),
    });
  }
  t.notes.push_back(
      "goodput: verified bytes / (first byte sent -> last byte received at the receiver); "
      "MB = 10^6 bytes");
  if (local) {
    t.notes.push_back(absl::StrCat(
        "udpmsg and enet pass an in-process impairment proxy (loss in both directions, seed ",
        s.seed, "); tcp runs at 0% only: the proxy carries UDP, and dropping TCP segments needs "
                "the kernel (bench/run.sh drops with nftables on a rate-limited veth)"));
    if (s.impairs_besides_loss) {
      t.notes.push_back(
          absl::StrCat("the proxy also applies, both ways: ", s.impairment_description));
    }
  } else {
    t.notes.push_back("loss is applied by the network (bench/run.sh: nftables on a veth); "
                      "the loss column only labels it");
  }
  t.notes.push_back(
      "retransmits: udpmsg fragments retransmitted; tcp tcpi_total_retrans; enet packetsLost "
      "(summed over ENet's 10 s windows)");
  t.notes.push_back(
      "send_cpu_s/GB, recv_cpu_s/GB: CPU seconds (user + system) of the sending and the "
      "receiving thread per 10^9 bytes delivered; the kernel's softirq work is charged to "
      "whichever thread ran it (on loopback and veth mostly the sender)");
  if (std::any_of(rows.begin(), rows.end(),
                  [](const BulkOutcome& o) { return o.verified && !o.receiver_clock; })) {
    t.notes.push_back("some intervals end when the sender got the result: the receiver's clock "
                      "did not agree with the sender's");
  }
  const std::string five = LossLabel(0.05);
  const std::string zero = LossLabel(0);
  const auto has = [&](const std::string& loss) {
    return std::any_of(rows.begin(), rows.end(),
                       [&](const BulkOutcome& o) { return o.loss == loss; });
  };
  // Against every TCP flavour measured (plain "tcp" always listed).
  std::vector<std::string> tcps = {"tcp"};
  for (const std::string& name : transports) {
    if (IsTcp(name) && name != "tcp") tcps.push_back(name);
  }
  // Every udpmsg flavour measured ("udpmsg" when none).
  std::vector<std::string> mine;
  for (const std::string& name : transports) {
    if (absl::StartsWith(name, "udpmsg")) mine.push_back(name);
  }
  if (mine.empty()) mine.push_back("udpmsg");
  for (const std::string& u : mine) {
    if (has(five)) {
      for (const std::string& tcp : tcps) t.notes.push_back(Target(rows, five, u, tcp, 3, ""));
      t.notes.push_back(Target(rows, five, u, "enet", 2, ""));
    }
    if (has(zero)) {
      for (const std::string& tcp : tcps) {
        t.notes.push_back(Target(rows, zero, u, tcp, 0.5,
                                 local ? " (the target is for the rate-limited veth "
                                         "of bench/run.sh; loopback is indicative only)"
                                       : " (the target is for the rate-limited veth "
                                         "of bench/run.sh)"));
      }
      for (const std::string& tcp : tcps) {
        std::string cpu = CpuTarget(rows, zero, u, tcp, 2);
        if (!cpu.empty()) t.notes.push_back(std::move(cpu));
      }
    }
  }
  for (const BulkOutcome& o : rows) {
    if (!o.error.empty()) {
      t.notes.push_back(absl::StrCat("FAILED ", o.transport, " at ", o.loss, ": ", o.error));
    }
  }
  return t;
}

}  // namespace udpmsg::bench
