// What a ServerCore holds per member: the heap it grows by for N members
// joining (idle, nothing queued), then with one line in flight to each (the
// core's share: the transport holds its own copies). Prints the figures;
// fails if an idle member costs more than kMaxIdleBytesPerMember.
//
// N is 20,000 by default (about a second); the documented run for the
// issue's 100,000:
//   ./bazelw test //tests/apps/chat:server_core_memory_test \
//       --test_env=UDPMSG_CHAT_MEMBERS=100000 --test_output=all
#include <malloc.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "apps/chat/chat.pb.h"
#include "apps/chat/rules.h"
#include "apps/chat/sequencer.h"
#include "apps/chat/server_core.h"
#include "gtest/gtest.h"

namespace udpmsg::chat {
namespace {

// The bound the test holds an idle member to (measured: ~430 bytes).
constexpr uint64_t kMaxIdleBytesPerMember = 768;

uint64_t HeapInUse() {
  const struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

TEST(ServerCoreMemoryTest, BytesPerMemberIdleAndWithALineInFlight) {
  size_t n = 20'000;
  if (const char* env = std::getenv("UDPMSG_CHAT_MEMBERS"); env != nullptr) {
    n = std::strtoull(env, nullptr, 10);
  }
  ASSERT_GE(n, 100u);
  ServerOptions o;
  o.max_members = n;
  o.max_pending = 64;
  o.max_members_per_address = 64;
  o.announce_limit = 0;  // joins stay O(log n), so the test is fast
  const absl::Time now = absl::FromUnixSeconds(1'700'000'000);
  absl::StatusOr<std::unique_ptr<ServerCore>> core =
      ServerCore::Create(o, std::make_unique<LocalSequencer>());
  ASSERT_TRUE(core.ok()) << core.status();
  ClientMessage join;
  ClientMessage say;
  say.mutable_say()->set_text("hello, room");
  const std::string said = say.SerializeAsString();

  const uint64_t before = HeapInUse();
  for (size_t i = 1; i <= n; ++i) {
    // 20-byte nicks from 4 addresses per /24 (per-address caps allow it).
    join.mutable_join()->set_nick(absl::StrCat("member-", 10'000'000 + i, "-abcd"));
    const std::string address = absl::StrCat("10.", i / 64 / 256 % 256, ".", i / 64 % 256, ".",
                                              i % 64, ":4000");
    (*core)->OnConnected(now, i, address);
    (*core)->OnMessage(now, i, join.SerializeAsString());
    (void)(*core)->TakeActions();  // the driver hands the Welcomes over
  }
  ASSERT_EQ((*core)->member_count(), n);
  const uint64_t idle = HeapInUse();
  (*core)->OnMessage(now, 1, said);
  const size_t sends = (*core)->TakeActions().size();
  ASSERT_EQ(sends, n);
  const uint64_t in_flight = HeapInUse();
  const double per_idle = static_cast<double>(idle - before) / n;
  const double per_flight = (static_cast<double>(in_flight) - idle) / n;
  std::printf("ServerCore, %zu members: %.0f bytes per idle member, %+.0f per member with a "
              "line in flight (the core's share; in-flight bytes %llu)\n",
              n, per_idle, per_flight,
              static_cast<unsigned long long>((*core)->in_flight_bytes()));
  if (std::getenv("UDPMSG_SANITIZERS") == nullptr) {  // ASan's allocator skews mallinfo
    EXPECT_LT(per_idle, kMaxIdleBytesPerMember);
  }
}

}  // namespace
}  // namespace udpmsg::chat
