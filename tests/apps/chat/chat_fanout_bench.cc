// The chat server's own share of fan-out, without a transport: M members
// on S shards (one thread each, one LocalRoom), members say L lines;
// every shard hands each line to each of its members (a kSend action), and
// the "transport" acknowledges at once. Prints deliveries per second for
// S = 1 and S = 2. Not a test: a documented command
//   ./bazelw run -c opt //tests/apps/chat:chat_fanout_bench -- 10000 2000
// (members, lines). Measured 02:10 UTC on this 2-CPU machine at load average
// 4.7 (other builds running): 11.4-11.6 M deliveries/s on 1 shard, 17.7-17.8 M
// on 2 (1.54x).
#include <malloc.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "apps/chat/chat.pb.h"
#include "apps/chat/local_room.h"
#include "apps/chat/sequencer.h"
#include "apps/chat/server_core.h"

namespace udpmsg::chat {
namespace {

double Run(int members, int lines, int shards) {
  const absl::Time now = absl::FromUnixSeconds(1'700'000'000);
  RoomLimits limits;
  limits.max_members = members;
  limits.max_members_per_address = members;
  limits.announce_limit = 0;
  limits.max_log_bytes = 64 << 20;
  auto room = std::make_shared<LocalRoom>(limits, std::make_unique<LocalSequencer>());
  ServerOptions o;
  o.max_members = members;
  o.max_members_per_address = members;
  o.max_pending = members;
  o.announce_limit = 0;
  o.line_rate = 1e6;
  o.line_burst = 1'000'000;
  o.byte_burst = 1 << 30;
  o.byte_rate = 1 << 30;
  // A shard with nothing to do sleeps until the room wakes it (as a
  // shard's Poll does until Host::Wake).
  struct Wakeup {
    std::mutex mu;
    std::condition_variable cv;
    bool woken = false;
  };
  std::vector<std::unique_ptr<Wakeup>> wakeups;
  std::vector<std::unique_ptr<ServerCore>> cores;
  for (int s = 0; s < shards; ++s) {
    wakeups.push_back(std::make_unique<Wakeup>());
    Wakeup* w = wakeups.back().get();
    const int index = room->AddShard([w] {
      std::lock_guard<std::mutex> lock(w->mu);
      w->woken = true;
      w->cv.notify_one();
    });
    cores.push_back(*ServerCore::Create(o, room, index));
  }
  ClientMessage join;
  for (int i = 0; i < members; ++i) {
    const int s = i % shards;
    join.mutable_join()->set_nick(absl::StrCat("m", i));
    cores[s]->OnConnected(now, i + 1, absl::StrCat("10.0.", i / 250, ".", i % 250, ":1"));
    cores[s]->OnMessage(now, i + 1, join.SerializeAsString());
    for (ServerAction& a : cores[s]->TakeActions()) {
      if (a.type == ServerAction::Type::kSend) cores[s]->OnAcked(now, a.peer, a.bytes.size());
    }
  }
  ClientMessage say;
  say.mutable_say()->set_text(std::string(100, 'x'));
  const std::string said = say.SerializeAsString();
  std::atomic<bool> go{false};
  std::atomic<uint64_t> delivered{0};
  const uint64_t want = static_cast<uint64_t>(members) * lines;
  // Every shard's first member says lines in turn, at most kAhead lines
  // ahead of the slowest delivery (as a transport's windows would pace it).
  constexpr uint64_t kAhead = 4;
  std::atomic<uint64_t> published{0};
  auto shard = [&](int s) {
    while (!go.load()) std::this_thread::yield();
    uint64_t mine = 0;
    while (delivered.load(std::memory_order_relaxed) < want) {
      uint64_t p = published.load();
      if (p < static_cast<uint64_t>(lines) &&
          p < delivered.load(std::memory_order_relaxed) / members + kAhead &&
          published.compare_exchange_strong(p, p + 1)) {
        cores[s]->OnMessage(now, s + 1, said);
      }
      cores[s]->OnRoom(now);
      std::vector<ServerAction> actions = cores[s]->TakeActions();
      for (ServerAction& a : actions) {
        if (a.type != ServerAction::Type::kSend) continue;
        cores[s]->OnAcked(now, a.peer, a.bytes.size());
        ++mine;
      }
      if (mine > 0) {
        delivered.fetch_add(mine, std::memory_order_relaxed);
        mine = 0;
        // Deliveries may let a waiting shard say the next line.
        for (int other = 0; other < shards; ++other) {
          if (other == s) continue;
          Wakeup& w = *wakeups[other];
          std::lock_guard<std::mutex> lock(w.mu);
          w.woken = true;
          w.cv.notify_one();
        }
        continue;
      }
      // Nothing fanned out: wait for the room (or for the end, by timeout).
      Wakeup& w = *wakeups[s];
      std::unique_lock<std::mutex> lock(w.mu);
      w.cv.wait_for(lock, std::chrono::milliseconds(1), [&w] { return w.woken; });
      w.woken = false;
    }
  };
  std::vector<std::thread> threads;
  for (int s = 0; s < shards; ++s) threads.emplace_back(shard, s);
  const auto start = std::chrono::steady_clock::now();
  go.store(true);
  for (std::thread& t : threads) t.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return static_cast<double>(want) / seconds;
}

}  // namespace
}  // namespace udpmsg::chat

int main(int argc, char** argv) {
  // Large action batches otherwise come from fresh mmap()s each time (page
  // faults dominate): keep freed memory in the heap, as a long-running
  // server's allocator soon does.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  const int members = argc > 1 ? std::atoi(argv[1]) : 10000;
  const int lines = argc > 2 ? std::atoi(argv[2]) : 1000;
  for (int shards : {1, 2}) {
    const double rate = udpmsg::chat::Run(members, lines, shards);
    std::printf("chat fan-out without transport: %d members, %d lines of 100 bytes, %d shard%s: "
                "%.2f M deliveries/s\n",
                members, lines, shards, shards == 1 ? "" : "s", rate / 1e6);
  }
  return 0;
}
