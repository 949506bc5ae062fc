#include "bench/cluster.h"

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "apps/chat/chat.pb.h"
#include "apps/chat/local_room.h"
#include "apps/chat/redis_room.h"
#include "apps/chat/room.h"
#include "apps/chat/rules.h"
#include "apps/chat/sequencer.h"
#include "bench/connections.h"

namespace udpmsg::bench {
namespace {

using chat::MemberId;
using chat::Room;
using chat::RoomEntry;

constexpr uint64_t kFnvOffset = 14695981039346656037ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;
// A latency send that begins later than this after its scheduled time is
// "late" (the sender fell behind: the rate is too high for one Say at a time).
constexpr int64_t kLateNs = 1'000'000;
// The longest wait for the join lines to reach every server.
constexpr absl::Duration kSettleTimeout = absl::Seconds(20);

int64_t SteadyNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double ThreadCpuSeconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

uint64_t Fnv(uint64_t h, absl::string_view bytes) {
  for (unsigned char c : bytes) {
    h ^= c;
    h *= kFnvPrime;
  }
  return h;
}

// A shard's wake (Room::AddShard): set, and the waiting thread wakes.
class Waker {
 public:
  void Wake() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      woken_ = true;
    }
    cv_.notify_one();
  }
  // Until woken or `timeout`; clears the wake.
  void Wait(std::chrono::microseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout, [this] { return woken_; });
    woken_ = false;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool woken_ = false;
};

// The text of line `k`: "L<k>:" and 'x' up to `bytes`.
std::string LineText(uint64_t k, size_t bytes) {
  std::string t = absl::StrCat("L", k, ":");
  if (t.size() < bytes) t.append(bytes - t.size(), 'x');
  return t;
}

// k of a line LineText made; false for any other line.
bool LineNumber(const RoomEntry& e, uint64_t* k) {
  chat::ServerMessage m;
  if (!m.ParseFromString(*e.bytes) || !m.has_line()) return false;
  absl::string_view t = m.line().text();
  if (t.size() < 2 || t[0] != 'L') return false;
  const size_t colon = t.find(':');
  return colon != absl::string_view::npos && absl::SimpleAtoi(t.substr(1, colon - 1), k);
}

std::string NextRoomName() {
  static std::atomic<int> runs{0};
  return absl::StrCat("bench-", ::getpid(), "-", runs.fetch_add(1));
}

chat::RoomLimits Limits() {
  chat::RoomLimits l;
  l.max_members = 4096;
  l.max_members_per_address = 8;
  return l;
}

// What the rooms log (a server lost, Redis lost): collected for the notes.
struct RoomLog {
  std::mutex mu;
  std::vector<std::string> lines;
};

absl::StatusOr<std::shared_ptr<chat::RedisRoom>> MakeRedisRoom(const ClusterConfig& c,
                                                               const std::string& room, int server,
                                                               RoomLog* log) {
  chat::RedisRoomOptions o;
  o.endpoint = c.redis;
  o.room = room;
  o.server_id = absl::StrCat("s", server);
  o.limits = Limits();
  o.log = [log, server](std::string line) {
    std::lock_guard<std::mutex> lock(log->mu);
    log->lines.push_back(absl::StrCat("server s", server, ": ", line));
  };
  return chat::RedisRoom::Create(o);
}

// Deletes a run's keys (the stream, the counters, the nicks); best effort.
void DeleteRoom(const ClusterConfig& c, const std::string& room,
                const std::vector<std::string>& nicks) {
  absl::StatusOr<std::unique_ptr<redis::Connection>> conn =
      redis::Connection::Connect(c.redis, absl::Seconds(5));
  if (!conn.ok()) return;
  const std::string prefix = absl::StrCat("udpmsg:chat:{", room, "}:");
  std::vector<std::string> del = {"DEL"};
  for (const char* k : {"log", "seq", "ids", "servers"}) del.push_back(prefix + k);
  for (const std::string& n : nicks) del.push_back(absl::StrCat(prefix, "nick:", chat::NickKey(n)));
  (void)(*conn)->Command(del);
}

// Waits until every room has read up to `index`; false on timeout.
bool WaitIndex(const std::vector<Room*>& rooms, uint64_t index) {
  const absl::Time deadline = absl::Now() + kSettleTimeout;
  for (;;) {
    bool all = true;
    for (Room* r : rooms) all = all && r->last_index() >= index;
    if (all) return true;
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
}

// What INFO stats and commandstats count: bytes in and out, and per command
// (cmdstat_eval:calls=12,usec=345,...) calls and microseconds.
struct RedisCounters {
  bool ok = false;
  uint64_t in_bytes = 0;
  uint64_t out_bytes = 0;
  std::vector<ThroughputResult::CommandTime> commands;
};

RedisCounters ReadRedisCounters(const redis::Endpoint& e) {
  RedisCounters out;
  absl::StatusOr<std::unique_ptr<redis::Connection>> c =
      redis::Connection::Connect(e, absl::Seconds(5));
  if (!c.ok()) return out;
  absl::StatusOr<redis::Reply> info = (*c)->Command({"INFO", "stats", "commandstats"});
  if (!info.ok() || info->type != redis::Reply::Type::kString) return out;
  for (absl::string_view line : absl::StrSplit(info->str, "\r\n", absl::SkipEmpty())) {
    if (absl::ConsumePrefix(&line, "total_net_input_bytes:")) {
      out.ok = absl::SimpleAtoi(line, &out.in_bytes);
    } else if (absl::ConsumePrefix(&line, "total_net_output_bytes:")) {
      (void)absl::SimpleAtoi(line, &out.out_bytes);
    }
    if (!absl::ConsumePrefix(&line, "cmdstat_")) continue;
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    ThroughputResult::CommandTime t;
    t.command = std::string(line.substr(0, colon));
    for (absl::string_view kv : absl::StrSplit(line.substr(colon + 1), ',')) {
      if (absl::ConsumePrefix(&kv, "calls=")) (void)absl::SimpleAtoi(kv, &t.calls);
      if (absl::ConsumePrefix(&kv, "usec=")) (void)absl::SimpleAtoi(kv, &t.usec);
    }
    out.commands.push_back(std::move(t));
  }
  return out;
}

// after - before, by command, most time first (commands with no calls left out).
std::vector<ThroughputResult::CommandTime> CommandDelta(
    const std::vector<ThroughputResult::CommandTime>& before,
    const std::vector<ThroughputResult::CommandTime>& after) {
  std::vector<ThroughputResult::CommandTime> out;
  for (const ThroughputResult::CommandTime& a : after) {
    ThroughputResult::CommandTime d = a;
    for (const ThroughputResult::CommandTime& b : before) {
      if (b.command == a.command) {
        d.calls -= std::min(d.calls, b.calls);
        d.usec -= std::min(d.usec, b.usec);
      }
    }
    if (d.calls > 0) out.push_back(std::move(d));
  }
  std::sort(out.begin(), out.end(), [](const auto& x, const auto& y) { return x.usec > y.usec; });
  return out;
}

// Per-second figures of a /proc sample pair; -1 when either is unknown.
double Share(double a, double b, double seconds) {
  if (a < 0 || b < 0 || seconds <= 0) return -1;
  return (b - a) / seconds;
}

std::string Pct(double share) {
  return share < 0 ? "-" : absl::StrCat(absl::StrFormat("%.0f", 100 * share), "%");
}

std::string Fixed(double v, int digits) { return absl::StrFormat("%.*f", digits, v); }

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  if (!(in >> a >> b >> c)) return "?";
  return absl::StrCat(a, " ", b, " ", c);
}

// One shard of a throughput run: its thread says and reads.
struct SayShard {
  Room* room = nullptr;
  int shard = 0;
  std::vector<MemberId> members;
  std::vector<uint64_t> seen;
  uint64_t hash = kFnvOffset;
  uint64_t accepted = 0, busy = 0, failed = 0;
  std::vector<double> say_us;
  double cpu_seconds = 0;

  void Take(uint64_t base) {
    std::vector<RoomEntry> entries;
    room->Read(shard, &entries);
    for (const RoomEntry& e : entries) {
      if (e.index <= base) continue;
      seen.push_back(e.index);
      char n[8];
      for (int i = 0; i < 8; ++i) n[i] = static_cast<char>(e.index >> (8 * i));
      hash = Fnv(Fnv(hash, absl::string_view(n, 8)), *e.bytes);
    }
  }
};

// A start line for threads: they wait until Open.
class Gate {
 public:
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    ++waiting_;
    cv_.notify_all();
    cv_.wait(lock, [this] { return open_; });
  }
  void AwaitWaiting(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return waiting_ >= n; });
  }
  void Open() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int waiting_ = 0;
  bool open_ = false;
};

}  // namespace

absl::Status ValidateClusterConfig(const ClusterConfig& c) {
  if (c.servers.empty()) return absl::InvalidArgumentError("no server counts to run");
  for (int n : c.servers) {
    if (n < 1 || n > 16) {
      return absl::InvalidArgumentError(absl::StrCat("servers ", n, " is out of range (1 to 16)"));
    }
  }
  if (c.shards < 1 || c.shards > 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("shards ", c.shards, " is out of range (1 to 16)"));
  }
  if (c.members < 1 || c.members > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("members ", c.members, " is out of range (1 to 64)"));
  }
  if (c.line_bytes < 16 || c.line_bytes > chat::kMaxTextBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "line_bytes ", c.line_bytes, " is out of range (16 to ", chat::kMaxTextBytes, ")"));
  }
  if (c.duration <= absl::ZeroDuration() || c.duration > absl::Hours(1) ||
      c.latency_duration <= absl::ZeroDuration() || c.latency_duration > absl::Hours(1)) {
    return absl::InvalidArgumentError("durations must be above 0 and at most an hour");
  }
  if (c.drain_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("drain_timeout must be positive");
  }
  if (c.latency_rate < 0 || c.latency_rate > 100000) {
    return absl::InvalidArgumentError(
        absl::StrCat("latency_rate ", c.latency_rate, " is out of range (0 to 100000)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ThroughputResult> RunThroughput(const ClusterConfig& c, int servers) {
  if (absl::Status s = ValidateClusterConfig(c); !s.ok()) return s;
  const std::string name = NextRoomName();
  RoomLog log;
  std::vector<std::shared_ptr<chat::RedisRoom>> rooms;
  std::vector<Room*> room_ptrs;
  std::vector<std::unique_ptr<SayShard>> shards;
  std::vector<std::string> nicks;
  for (int s = 0; s < servers; ++s) {
    absl::StatusOr<std::shared_ptr<chat::RedisRoom>> r = MakeRedisRoom(c, name, s, &log);
    if (!r.ok()) return r.status();
    rooms.push_back(*r);
    room_ptrs.push_back(r->get());
    for (int k = 0; k < c.shards; ++k) {
      auto shard = std::make_unique<SayShard>();
      shard->room = r->get();
      shard->shard = (*r)->AddShard({});
      shards.push_back(std::move(shard));
    }
    (*r)->Start();
  }
  auto stop_all = [&] {
    for (auto& r : rooms) r->Stop();
    DeleteRoom(c, name, nicks);
  };
  // Members join; the last join line is where the run's lines begin.
  uint64_t base = 0;
  for (size_t i = 0; i < shards.size(); ++i) {
    SayShard& sh = *shards[i];
    for (int m = 0; m < c.members; ++m) {
      const std::string nick = absl::StrCat("s", i / c.shards, "k", sh.shard, "m", m);
      Room::Joined j = sh.room->Join(sh.shard, absl::Now(), nick,
                                     absl::StrCat("10.", i / c.shards, ".", sh.shard, ".", m));
      if (j.result != Room::Result::kOk) {
        stop_all();
        return absl::InternalError(
            absl::StrCat("join of ", nick, " refused (result ", static_cast<int>(j.result), ")"));
      }
      nicks.push_back(nick);
      sh.members.push_back(j.id);
      base = std::max(base, j.start);
    }
  }
  if (!WaitIndex(room_ptrs, base)) {
    stop_all();
    return absl::DeadlineExceededError("the join lines did not reach every server");
  }
  for (auto& sh : shards) sh->Take(base);  // the join lines: not the run's

  Gate gate;
  int64_t deadline_ns = 0;  // written before the gate opens
  std::vector<std::thread> threads;
  for (size_t i = 0; i < shards.size(); ++i) {
    threads.emplace_back([&, sh = shards[i].get(), i] {
      uint64_t k = 0;
      const std::string pad = std::string(c.line_bytes, 'x');
      sh->say_us.reserve(1 << 16);
      gate.Wait();
      const double cpu0 = ThreadCpuSeconds();
      while (SteadyNs() < deadline_ns) {
        // "L<shard>.<k>:" and padding: unique, so the order check sees
        // the bytes too.
        std::string text = absl::StrCat("L", i, ".", k, ":");
        if (text.size() < c.line_bytes) text.append(pad, 0, c.line_bytes - text.size());
        const MemberId who = sh->members[k % sh->members.size()];
        ++k;
        const int64_t t0 = SteadyNs();
        const Room::Result r = sh->room->Say(sh->shard, absl::Now(), who, false, text);
        sh->say_us.push_back(static_cast<double>(SteadyNs() - t0) / 1e3);
        if (r == Room::Result::kOk) {
          ++sh->accepted;
        } else if (r == Room::Result::kBusy) {
          ++sh->busy;
        } else {
          ++sh->failed;
        }
        sh->Take(base);
      }
      sh->cpu_seconds = ThreadCpuSeconds() - cpu0;
    });
  }
  gate.AwaitWaiting(static_cast<int>(threads.size()));

  std::vector<uint64_t> read0;
  for (auto& r : rooms) read0.push_back(r->lines_read());
  const ProcSample none{0, -1, -1};
  auto sample = [&none](pid_t pid) {
    if (pid <= 0) return none;
    absl::StatusOr<ProcSample> s = ReadProcSample(pid);
    return s.ok() ? *s : none;
  };
  const RedisCounters counters0 = ReadRedisCounters(c.redis);
  const ProcSample redis0 = sample(c.redis_pid);
  const ProcSample self0 = sample(::getpid());
  const int64_t start_ns = SteadyNs();
  deadline_ns = start_ns + absl::ToInt64Nanoseconds(c.duration);
  gate.Open();
  std::this_thread::sleep_until(
      std::chrono::steady_clock::time_point(std::chrono::nanoseconds(deadline_ns)));
  const int64_t end_ns = SteadyNs();
  std::vector<uint64_t> read1;
  for (auto& r : rooms) read1.push_back(r->lines_read());
  const ProcSample redis1 = sample(c.redis_pid);
  const ProcSample self1 = sample(::getpid());
  ThroughputResult out;
  // (The few commands the sayers send after the deadline count too.)
  const RedisCounters counters1 = ReadRedisCounters(c.redis);
  if (counters0.ok && counters1.ok) {
    out.redis_commands = CommandDelta(counters0.commands, counters1.commands);
    out.redis_in_bytes = counters1.in_bytes - counters0.in_bytes;
    out.redis_out_bytes = counters1.out_bytes - counters0.out_bytes;
  }
  out.servers = servers;
  out.shards = c.shards;
  for (size_t s = 0; s < rooms.size(); ++s) {
    out.delivered_in_window.push_back(read1[s] - read0[s]);
  }
  for (std::thread& t : threads) t.join();
  out.seconds = static_cast<double>(end_ns - start_ns) / 1e9;

  std::vector<double> say_us;
  double say_cpu = 0;
  for (auto& sh : shards) {
    out.accepted += sh->accepted;
    out.busy += sh->busy;
    out.failed += sh->failed;
    say_us.insert(say_us.end(), sh->say_us.begin(), sh->say_us.end());
    say_cpu += sh->cpu_seconds;
  }
  // Drain: every shard reads every accepted line.
  const absl::Time drain_deadline = absl::Now() + c.drain_timeout;
  for (;;) {
    bool all = true;
    for (auto& sh : shards) {
      sh->Take(base);
      all = all && sh->seen.size() >= out.accepted;
    }
    if (all) {
      out.drained = true;
      break;
    }
    if (absl::Now() > drain_deadline) break;
    absl::SleepFor(absl::Microseconds(500));
  }
  out.drain_seconds = static_cast<double>(SteadyNs() - end_ns) / 1e9;

  out.one_order = true;
  const SayShard& first = *shards[0];
  out.sequences.resize(static_cast<size_t>(servers));
  out.hashes.resize(static_cast<size_t>(servers));
  for (size_t i = 0; i < shards.size(); ++i) {
    const SayShard& sh = *shards[i];
    if (sh.seen.size() < out.accepted) {
      out.lost = std::max<uint64_t>(out.lost, out.accepted - sh.seen.size());
    }
    out.one_order = out.one_order && sh.seen == first.seen && sh.hash == first.hash &&
                    sh.seen.size() == out.accepted &&
                    std::adjacent_find(sh.seen.begin(), sh.seen.end(), [](uint64_t a, uint64_t b) {
                      return b <= a;
                    }) == sh.seen.end();
    out.sequences[i / static_cast<size_t>(c.shards)].push_back(sh.seen);
    out.hashes[i / static_cast<size_t>(c.shards)].push_back(sh.hash);
  }
  out.say_p50_us = Percentile(say_us, 50);
  out.say_p99_us = Percentile(say_us, 99);
  out.redis_cpu = Share(redis0.cpu_seconds, redis1.cpu_seconds, out.seconds);
  out.redis_wait = Share(redis0.run_delay_seconds, redis1.run_delay_seconds, out.seconds);
  out.process_cpu = Share(self0.cpu_seconds, self1.cpu_seconds, out.seconds);
  out.process_wait = Share(self0.run_delay_seconds, self1.run_delay_seconds, out.seconds);
  out.say_threads_cpu = say_cpu / out.seconds;
  for (auto& sh : shards) {
    std::vector<chat::RoomNotice> notices;
    sh->room->TakeNotices(sh->shard, &notices);
    for (const chat::RoomNotice& n : notices) {
      if (n.type != chat::RoomNotice::Type::kAnnounce) continue;
      if (std::find(out.notices.begin(), out.notices.end(), n.text) == out.notices.end()) {
        out.notices.push_back(n.text);
      }
    }
  }
  stop_all();
  {
    std::lock_guard<std::mutex> lock(log.mu);
    for (const std::string& l : log.lines) out.notices.push_back(l);
  }
  return out;
}

absl::StatusOr<std::vector<LatencyResult>> RunLatency(const ClusterConfig& c, int servers) {
  if (absl::Status s = ValidateClusterConfig(c); !s.ok()) return s;
  if (servers < 0 || servers > 16) return absl::InvalidArgumentError("servers out of range");
  if (c.latency_rate <= 0) return absl::InvalidArgumentError("latency_rate must be positive");
  const std::string name = NextRoomName();
  RoomLog log;
  // rooms[0] holds the sender shard (0) and a reader; every other room one
  // reader. A LocalRoom run: one room, the sender shard and one reader.
  std::vector<std::shared_ptr<Room>> rooms;
  std::vector<std::shared_ptr<chat::RedisRoom>> redis_rooms;
  struct Reader {
    Room* room = nullptr;
    int shard = 0;
    bool own = false;  // on the sender's server
    Waker waker;
    std::vector<double> latency_us;
    uint64_t count = 0;
  };
  std::vector<std::unique_ptr<Reader>> readers;
  auto add_reader = [&readers](Room* room, bool own) {
    auto r = std::make_unique<Reader>();
    r->room = room;
    r->own = own;
    Waker* w = &r->waker;
    r->shard = room->AddShard([w] { w->Wake(); });
    readers.push_back(std::move(r));
  };
  int sender_shard = 0;
  if (servers == 0) {
    auto room =
        std::make_shared<chat::LocalRoom>(Limits(), std::make_unique<chat::LocalSequencer>());
    sender_shard = room->AddShard({});
    rooms.push_back(room);
    add_reader(room.get(), false);
  } else {
    for (int s = 0; s < servers; ++s) {
      absl::StatusOr<std::shared_ptr<chat::RedisRoom>> r = MakeRedisRoom(c, name, s, &log);
      if (!r.ok()) return r.status();
      redis_rooms.push_back(*r);
      rooms.push_back(*r);
      if (s == 0) sender_shard = (*r)->AddShard({});
      add_reader(r->get(), s == 0);
      (*r)->Start();
    }
  }
  const std::string nick = "sender";
  auto stop_all = [&] {
    for (auto& r : redis_rooms) r->Stop();
    if (!redis_rooms.empty()) DeleteRoom(c, name, {nick});
  };
  Room* sender = rooms[0].get();
  Room::Joined j = sender->Join(sender_shard, absl::Now(), nick, "10.0.0.1");
  if (j.result != Room::Result::kOk) {
    stop_all();
    return absl::InternalError("the sender's join was refused");
  }
  std::vector<Room*> room_ptrs;
  for (auto& r : rooms) room_ptrs.push_back(r.get());
  if (!WaitIndex(room_ptrs, j.start)) {
    stop_all();
    return absl::DeadlineExceededError("the join line did not reach every server");
  }
  const uint64_t base = j.start;
  {
    std::vector<RoomEntry> discard;
    sender->Read(sender_shard, &discard);
    for (auto& r : readers) r->room->Read(r->shard, &discard);
  }

  const uint64_t lines = std::max<uint64_t>(
      1, static_cast<uint64_t>(c.latency_rate * absl::ToDoubleSeconds(c.latency_duration)));
  std::unique_ptr<std::atomic<int64_t>[]> sent(new std::atomic<int64_t>[lines]());
  std::atomic<uint64_t> said{0};
  std::atomic<bool> done{false};
  std::atomic<int64_t> give_up_ns{0};
  std::vector<std::thread> threads;
  for (auto& reader : readers) {
    threads.emplace_back([&, r = reader.get()] {
      r->latency_us.reserve(lines);
      std::vector<RoomEntry> entries;
      for (;;) {
        r->waker.Wait(std::chrono::milliseconds(20));
        entries.clear();
        r->room->Read(r->shard, &entries);
        const int64_t now = SteadyNs();
        for (const RoomEntry& e : entries) {
          uint64_t k = 0;
          if (e.index <= base || !LineNumber(e, &k) || k >= lines) continue;
          const int64_t t0 = sent[k].load(std::memory_order_acquire);
          if (t0 == 0) continue;
          r->latency_us.push_back(static_cast<double>(now - t0) / 1e3);
          ++r->count;
        }
        if (done.load(std::memory_order_acquire) &&
            (r->count >= said.load(std::memory_order_acquire) ||
             now > give_up_ns.load(std::memory_order_acquire))) {
          return;
        }
      }
    });
  }

  // The sender, on this thread: line k at start + k / rate.
  std::vector<double> say_us;
  say_us.reserve(lines);
  uint64_t late = 0;
  uint64_t accepted = 0;
  const double interval_ns = 1e9 / c.latency_rate;
  const int64_t start_ns = SteadyNs() + 1'000'000;
  std::vector<RoomEntry> discard;
  for (uint64_t k = 0; k < lines; ++k) {
    const int64_t at = start_ns + static_cast<int64_t>(static_cast<double>(k) * interval_ns);
    std::this_thread::sleep_until(
        std::chrono::steady_clock::time_point(std::chrono::nanoseconds(at)));
    const int64_t t0 = SteadyNs();
    if (t0 - at > kLateNs) ++late;
    sent[k].store(t0, std::memory_order_release);
    const Room::Result result =
        sender->Say(sender_shard, absl::Now(), j.id, false, LineText(k, c.line_bytes));
    say_us.push_back(static_cast<double>(SteadyNs() - t0) / 1e3);
    if (result == Room::Result::kOk) {
      ++accepted;
    } else {
      sent[k].store(0, std::memory_order_release);
    }
    discard.clear();
    sender->Read(sender_shard, &discard);
  }
  said.store(accepted, std::memory_order_release);
  give_up_ns.store(SteadyNs() + absl::ToInt64Nanoseconds(c.drain_timeout),
                   std::memory_order_release);
  done.store(true, std::memory_order_release);
  for (auto& r : readers) r->waker.Wake();
  for (std::thread& t : threads) t.join();
  stop_all();

  std::vector<LatencyResult> out;
  auto hop = [&](const std::string& label, bool own) {
    LatencyResult h;
    h.room = servers == 0 ? "LocalRoom" : "RedisRoom";
    h.servers = servers;
    h.hop = label;
    h.lines = accepted;
    std::vector<double> all;
    for (auto& r : readers) {
      if (r->own != own) continue;
      all.insert(all.end(), r->latency_us.begin(), r->latency_us.end());
      h.samples += r->count;
      if (r->count < accepted) h.lost = std::max<uint64_t>(h.lost, accepted - r->count);
    }
    h.p50_us = Percentile(all, 50);
    h.p99_us = Percentile(all, 99);
    h.max_us = all.empty() ? 0 : all.back();  // Percentile sorted it
    h.say_p50_us = Percentile(say_us, 50);
    h.say_p99_us = Percentile(say_us, 99);
    h.late = late;
    out.push_back(h);
  };
  if (servers == 0) {
    hop("other shard", false);
  } else {
    hop("own server", true);
    if (servers > 1) hop("other server", false);
  }
  return out;
}

namespace {

// Redis's microseconds inside commands per accepted line.
std::string UsecPerLine(const ThroughputResult& r) {
  if (r.redis_commands.empty() || r.accepted == 0) return "-";
  uint64_t usec = 0;
  for (const ThroughputResult::CommandTime& ct : r.redis_commands) usec += ct.usec;
  return Fixed(static_cast<double>(usec) / static_cast<double>(r.accepted), 1);
}

}  // namespace

BenchTable ThroughputTable(const ClusterConfig& c, const std::vector<ThroughputResult>& runs) {
  BenchTable t;
  t.title = absl::StrCat("bench cluster: one room over N servers through Redis, ", c.line_bytes,
                         "-byte lines, ", c.shards, " saying shard(s) per server, ",
                         absl::FormatDuration(c.duration), " per run");
  t.columns = {"servers",     "seconds",          "accepted",          "accepted/s",
               "vs 1 server", "delivered/s each", "deliveries/s",      "lost",
               "order",       "drain s",          "Say p50 us",        "Say p99 us",
               "redis CPU",   "redis wait",       "redis CPU us/line", "redis cmd us/line",
               "bench CPU",   "bench wait",       "bench CPU us/line", "Say threads CPU"};
  double one = 0;
  for (const ThroughputResult& r : runs) {
    if (r.servers == 1 && r.seconds > 0) one = static_cast<double>(r.accepted) / r.seconds;
  }
  bool refused = false;
  for (const ThroughputResult& r : runs) {
    const double accepted = r.seconds > 0 ? static_cast<double>(r.accepted) / r.seconds : 0;
    uint64_t fewest = r.delivered_in_window.empty() ? 0 : r.delivered_in_window[0];
    uint64_t sum = 0;
    for (uint64_t d : r.delivered_in_window) {
      fewest = std::min(fewest, d);
      sum += d;
    }
    const double per_s = r.seconds > 0 ? 1 / r.seconds : 0;
    // CPU microseconds per accepted line from a share of one core.
    const auto PerLine = [&](double share) {
      return share < 0 || accepted <= 0 ? std::string("-") : Fixed(share * 1e6 / accepted, 1);
    };
    t.rows.push_back({absl::StrCat(r.servers),
                      Fixed(r.seconds, 2),
                      absl::StrCat(r.accepted),
                      Fixed(accepted, 0),
                      one > 0 ? absl::StrCat(Fixed(accepted / one, 2), "x") : "-",
                      Fixed(static_cast<double>(fewest) * per_s, 0),
                      Fixed(static_cast<double>(sum) * per_s, 0),
                      absl::StrCat(r.lost),
                      r.one_order ? "one" : "DIFFERS",
                      r.drained ? Fixed(r.drain_seconds, 3) : "NOT drained",
                      Fixed(r.say_p50_us, 0),
                      Fixed(r.say_p99_us, 0),
                      Pct(r.redis_cpu),
                      Pct(r.redis_wait),
                      PerLine(r.redis_cpu),
                      UsecPerLine(r),
                      Pct(r.process_cpu),
                      Pct(r.process_wait),
                      PerLine(r.process_cpu),
                      Pct(r.say_threads_cpu)});
    if (r.busy + r.failed > 0) {
      refused = true;
      t.notes.push_back(absl::StrCat(r.servers, " servers: ", r.busy, " lines refused busy, ",
                                     r.failed, " failed"));
    }
    for (const std::string& n : r.notices) {
      t.notes.push_back(absl::StrCat(r.servers, " servers: ", n));
    }
    if (!r.redis_commands.empty() && r.accepted > 0) {
      std::vector<std::string> top;
      for (const ThroughputResult::CommandTime& ct : r.redis_commands) {
        if (top.size() == 3) break;
        top.push_back(absl::StrCat(
            ct.command, " ", ct.calls, " calls ",
            Fixed(static_cast<double>(ct.usec) / static_cast<double>(ct.calls), 1), " us each"));
      }
      const double lines = static_cast<double>(r.accepted);
      t.notes.push_back(absl::StrCat(
          r.servers, " servers, Redis's time in commands: ", absl::StrJoin(top, ", "), "; it read ",
          Fixed(static_cast<double>(r.redis_in_bytes) / lines, 0), " and wrote ",
          Fixed(static_cast<double>(r.redis_out_bytes) / lines, 0), " bytes per line"));
    }
  }
  if (!refused) t.notes.push_back("every Say was accepted (no kBusy, no kUnavailable)");
  t.notes.push_back(
      "accepted/s: lines Say answered kOk / the window; delivered/s each: lines the "
      "slowest server's reader took from the stream in the window / the window; deliveries/s: "
      "summed over servers; lost: accepted lines some shard never read after the drain; order: "
      "every shard read the same line numbers and bytes in the same order");
  t.notes.push_back(
      "CPU: of one core over the window (/proc utime+stime); wait: runnable but waiting for a "
      "CPU (schedstat); redis cmd us/line: Redis's time inside commands (INFO commandstats) per "
      "accepted line, against redis CPU us/line (its CPU / accepted lines): the rest is I/O and "
      "its event loop; bench: this whole process "
      "(the servers' Say and reader threads); Say "
      "threads: the shards' threads alone (CLOCK_THREAD_CPUTIME_ID)");
  t.notes.push_back(absl::StrCat(
      "Redis: ", c.redis_description.empty() ? c.redis.ToString() : c.redis_description));
  t.notes.push_back(absl::StrCat("machine: ", std::thread::hardware_concurrency(),
                                 " CPUs; load average (1/5/15 min) at the end ", LoadAverage(),
                                 " (this run included)"));
  return t;
}

BenchTable LatencyTable(const ClusterConfig& c, const std::vector<LatencyResult>& runs) {
  BenchTable t;
  t.title =
      absl::StrCat("bench cluster: latency of one line, Say on server A to Read on B, ",
                   Fixed(c.latency_rate, 0), " lines/s for ",
                   absl::FormatDuration(c.latency_duration), ", ", c.line_bytes, "-byte lines");
  t.columns = {"room",   "servers", "hop",        "lines",      "lost",      "p50 us",
               "p99 us", "max us",  "Say p50 us", "Say p99 us", "late sends"};
  const LatencyResult* local = nullptr;
  const LatencyResult* other = nullptr;
  for (const LatencyResult& r : runs) {
    t.rows.push_back({r.room, r.servers == 0 ? "-" : absl::StrCat(r.servers), r.hop,
                      absl::StrCat(r.lines), absl::StrCat(r.lost), Fixed(r.p50_us, 0),
                      Fixed(r.p99_us, 0), Fixed(r.max_us, 0), Fixed(r.say_p50_us, 0),
                      Fixed(r.say_p99_us, 0), absl::StrCat(r.late)});
    if (r.servers == 0) local = &r;
    if (r.hop == "other server" && other == nullptr) other = &r;
  }
  if (local != nullptr && other != nullptr && local->p50_us > 0 && local->p99_us > 0) {
    t.notes.push_back(absl::StrCat("added by the Redis hop (", other->servers,
                                   " servers, other server, against the "
                                   "LocalRoom's other shard): p50 ",
                                   absl::StrFormat("%+.0f", other->p50_us - local->p50_us), " us (",
                                   Fixed(other->p50_us / local->p50_us, 1), "x), p99 ",
                                   absl::StrFormat("%+.0f", other->p99_us - local->p99_us), " us (",
                                   Fixed(other->p99_us / local->p99_us, 1), "x)"));
  }
  t.notes.push_back(
      "latency: the Read that returned the line (the reader shard's thread woken by the room, "
      "as a Host is) - the moment Say was called on the sender; own server: the sender's "
      "server's reader (through Redis all the same); Say: the sender blocked in Say; late: "
      "sends that began over 1 ms after their scheduled time");
  return t;
}

absl::Status RunCluster(const ClusterConfig& c) {
  if (absl::Status s = ValidateClusterConfig(c); !s.ok()) return s;
  std::vector<ThroughputResult> runs;
  for (int n : c.servers) {
    std::fprintf(stderr, "bench cluster: throughput, %d server(s), %s\n", n,
                 absl::FormatDuration(c.duration).c_str());
    absl::StatusOr<ThroughputResult> r = RunThroughput(c, n);
    if (!r.ok()) return r.status();
    runs.push_back(*std::move(r));
  }
  PrintTable(ThroughputTable(c, runs), c.format);
  if (c.latency_rate <= 0) return absl::OkStatus();
  if (c.format == TableFormat::kText) std::printf("\n");
  std::vector<LatencyResult> latency;
  std::vector<int> counts = {0};
  for (int n : c.servers) counts.push_back(n);
  for (int n : counts) {
    std::fprintf(stderr, "bench cluster: latency, %s\n",
                 n == 0 ? "LocalRoom" : absl::StrCat(n, " server(s)").c_str());
    absl::StatusOr<std::vector<LatencyResult>> r = RunLatency(c, n);
    if (!r.ok()) return r.status();
    latency.insert(latency.end(), r->begin(), r->end());
  }
  PrintTable(LatencyTable(c, latency), c.format);
  return absl::OkStatus();
}

}  // namespace udpmsg::bench
