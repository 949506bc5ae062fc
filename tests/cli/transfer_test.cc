// `udpmsg send --reliable` and `udpmsg recv --reliable` over real loopback
// sockets, directly and through `udpmsg impair`. Every wait has a deadline;
// the impairment is seeded, so a failing seed can be replayed by hand with
// the same commands (printed on failure).
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sodium.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "apps/transfer/transfer.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "impairment/model.h"
#include "reliable/deterministic_rng.h"
#include "reliable/runtime.h"
#include "tests/cli/nat_network.h"
#include "tests/cli/subprocess.h"
#include "udp/datagram_socket.h"
#include "udp/socket_address.h"

namespace udpmsg::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr absl::Duration kStartTimeout = absl::Seconds(10);

std::string TempDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

std::string WriteInput(const std::string& name, size_t size, uint64_t seed) {
  const std::string path = absl::StrCat(TempDir(), "/", name);
  reliable::DeterministicRng rng(seed);
  std::string data(size, '\0');
  for (size_t i = 0; i < size; i += 8) {
    const uint64_t r = rng.Next();
    for (size_t j = 0; j < 8 && i + j < size; ++j) data[i + j] = static_cast<char>(r >> (8 * j));
  }
  std::ofstream(path, std::ios::binary) << data;
  return path;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

std::vector<std::string> ListDir(const std::string& path) {
  std::vector<std::string> names;
  if (DIR* dir = opendir(path.c_str())) {
    while (dirent* e = readdir(dir)) names.push_back(e->d_name);
    closedir(dir);
  }
  return names;
}

// A reliable connection of our own to a `recv` on loopback port `port`, to
// play a sender that breaks the protocol or vanishes. `timeout` (when
// nonzero) replaces the idle and peer timeouts.
struct RawSender {
  std::unique_ptr<reliable::Runtime> rt;
  reliable::ConnectionId id = 0;
};
absl::StatusOr<RawSender> ConnectRawSender(int port, absl::Duration timeout = absl::ZeroDuration()) {
  reliable::Runtime::Options options;
  options.bind = udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, 0);
  if (timeout > absl::ZeroDuration()) {
    options.endpoint.connection.idle_timeout = timeout;
    options.endpoint.connection.peer_timeout = timeout;
  }
  RawSender raw;
  absl::StatusOr<std::unique_ptr<reliable::Runtime>> rt = reliable::Runtime::Create(options);
  if (!rt.ok()) return rt.status();
  raw.rt = *std::move(rt);
  absl::StatusOr<reliable::ConnectionId> id =
      raw.rt->Connect(udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, port));
  if (!id.ok()) return id.status();
  raw.id = *id;
  if (absl::Status s = raw.rt->AwaitConnected(raw.id, absl::Seconds(10)); !s.ok()) return s;
  return raw;
}

// One transfer of `input` through an impairment proxy with `impair_flags`.
void TransferThroughProxy(const std::string& host, const std::string& input,
                          const std::vector<std::string>& impair_flags, const std::string& tag) {
  const std::string out = absl::StrCat(TempDir(), "/out-", tag);
  const std::string bracketed = absl::StrContains(host, ':') ? absl::StrCat("[", host, "]") : host;
  UdpmsgServer recv = StartUdpmsgServer({"recv", "--reliable", "--port", "0", "--bind", host, "--out", out});
  ASSERT_NE(recv.port, 0);
  std::vector<std::string> impair = {"impair", "--listen", "0", "--bind", host, "--to",
                                     absl::StrCat(bracketed, ":", recv.port)};
  impair.insert(impair.end(), impair_flags.begin(), impair_flags.end());
  UdpmsgServer proxy = StartUdpmsgServer(impair);
  ASSERT_NE(proxy.port, 0);
  SCOPED_TRACE(absl::StrCat("replay: udpmsg ", absl::StrJoin(impair, " ")));

  auto send = StartUdpmsg({"send", "--reliable", absl::StrCat(bracketed, ":", proxy.port), "--file",
                      input, "--progress", "off"});
  ASSERT_NE(send, nullptr);
  EXPECT_EQ(ExitCodeWithin(*send, absl::Seconds(90)), 0) << send->stderr_text();
  EXPECT_EQ(ExitCodeWithin(*recv.process, absl::Seconds(10)), 0) << recv.process->stderr_text();
  proxy.process->Kill(SIGTERM);
  EXPECT_EQ(ExitCodeWithin(*proxy.process, absl::Seconds(10)), 0);

  EXPECT_TRUE(ReadFile(out) == ReadFile(input)) << "output differs from input";
  EXPECT_THAT(send->stderr_text(), HasSubstr("verified by receiver"));
  EXPECT_THAT(recv.process->stderr_text(), HasSubstr(" OK, wrote "));
  // The proxy really impaired the path.
  EXPECT_THAT(proxy.process->stderr_text(), HasSubstr("dropped_loss="));
  EXPECT_FALSE(absl::StrContains(proxy.process->stderr_text(), "up:   received=0 "));
}

class LossyTransferTest : public ::testing::TestWithParam<int> {};

TEST_P(LossyTransferTest, EightMebibytesArriveIntactThroughLossReorderDupCorruption) {
  const int seed = GetParam();
  const std::string input = WriteInput(absl::StrCat("in-", seed), 8 << 20, seed);
  TransferThroughProxy("127.0.0.1", input,
                       {"--loss", "10%", "--reorder", "5%", "--reorder_delay", "1ms", "--dup",
                        "2%", "--corrupt", "1%", "--seed", absl::StrCat(seed)},
                       absl::StrCat("v4-", seed));
}

INSTANTIATE_TEST_SUITE_P(Seeds, LossyTransferTest, ::testing::Values(1, 2, 3));

// NAT rebinding on real sockets: the proxy moves the sender's mapping to a
// new source port every second (`impair --rebind_every`), so the receiver
// sees the sender's address change several times mid-transfer (a 4 MiB file
// at 10 Mbit/s takes about 3.5 s); each time it
// validates the new address and follows (reliable/connection.h "Path
// validation and migration"). The file arrives byte-exact and the receiver
// says the sender moved. Replay by hand with the commands in the trace.
TEST(TransferTest, SenderPortChangesMidTransferAndTheTransferCompletes) {
  for (bool encrypt : {false, true}) {
    SCOPED_TRACE(absl::StrCat("encrypt=", encrypt));
    const std::string tag = encrypt ? "rebind-enc" : "rebind";
    // 2 MiB at 10 Mbit/s: 1.7 s at least, so the 1 s rebinding falls mid-transfer.
    const std::string input = WriteInput(absl::StrCat("in-", tag), 2 << 20, 20);
    const std::string out = absl::StrCat(TempDir(), "/out-", tag);
    std::vector<std::string> recv_args = {"recv", "--reliable", "--port", "0", "--bind",
                                          "127.0.0.1", "--out", out};
    if (encrypt) recv_args.push_back("--encrypt");
    UdpmsgServer recv = StartUdpmsgServer(recv_args);
    ASSERT_NE(recv.port, 0);
    const std::vector<std::string> impair = {
        "impair", "--listen", "0", "--bind", "127.0.0.1", "--to",
        absl::StrCat("127.0.0.1:", recv.port), "--delay", "5ms", "--rate", "10mbit",
        "--queue_limit", "131072", "--rebind_every", "1s", "--seed", "20"};
    UdpmsgServer proxy = StartUdpmsgServer(impair);
    ASSERT_NE(proxy.port, 0);
    SCOPED_TRACE(absl::StrCat("replay: udpmsg ", absl::StrJoin(impair, " ")));
    std::vector<std::string> send_args = {"send", "--reliable",
                                          absl::StrCat("127.0.0.1:", proxy.port), "--file", input,
                                          "--progress", "off"};
    if (encrypt) send_args.push_back("--encrypt");
    auto send = StartUdpmsg(send_args);
    ASSERT_NE(send, nullptr);
    EXPECT_EQ(ExitCodeWithin(*send, absl::Seconds(60)), 0) << send->stderr_text();
    EXPECT_EQ(ExitCodeWithin(*recv.process, absl::Seconds(10)), 0) << recv.process->stderr_text();
    proxy.process->Kill(SIGTERM);
    EXPECT_EQ(ExitCodeWithin(*proxy.process, absl::Seconds(10)), 0);
    EXPECT_TRUE(ReadFile(out) == ReadFile(input)) << "output differs from input";
    EXPECT_THAT(send->stderr_text(), HasSubstr("verified by receiver"));
    EXPECT_THAT(recv.process->stderr_text(), HasSubstr("sender moved from 127.0.0.1:"));
    EXPECT_THAT(proxy.process->stderr_text(), HasSubstr("rebinding: "));
    EXPECT_FALSE(absl::StrContains(proxy.process->stderr_text(), "rebinding: 0 mappings"))
        << proxy.process->stderr_text();
  }
}

TEST(TransferTest, IpV6ThroughLossyProxy) {
  const std::string input = WriteInput("in-v6", 2 << 20, 6);
  TransferThroughProxy("::1", input, {"--loss", "10%", "--dup", "2%", "--seed", "6"}, "v6");
}

TEST(TransferTest, MessagesArgumentsArriveAsLinesOnStdout) {
  UdpmsgServer recv = StartUdpmsgServer({"recv", "--reliable", "--port", "0", "--out=-"});
  auto send = StartUdpmsg({"send", "--reliable", absl::StrCat("127.0.0.1:", recv.port), "hello",
                      "reliable world"});
  EXPECT_EQ(ExitCodeWithin(*send, absl::Seconds(20)), 0) << send->stderr_text();
  EXPECT_EQ(ExitCodeWithin(*recv.process, absl::Seconds(10)), 0) << recv.process->stderr_text();
  EXPECT_EQ(recv.process->stdout_text(), "hello\nreliable world\n");
  EXPECT_THAT(Lines(send->stderr_text()).front(), StartsWith("sent 21 bytes to 127.0.0.1:"));
}

TEST(TransferTest, MalformedDatagramsSprayedAtTheReceiverChangeNothing) {
  const std::string out = absl::StrCat(TempDir(), "/out-spray");
  UdpmsgServer recv = StartUdpmsgServer({"recv", "--reliable", "--port", "0", "--out", out});
  const udp::SocketAddress target = udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, recv.port);
  absl::StatusOr<udp::DatagramSocket> spray = udp::DatagramSocket::Open(udp::AddressFamily::kIpv4, {});
  ASSERT_TRUE(spray.ok()) << spray.status();
  reliable::DeterministicRng rng(77);
  for (int i = 0; i < 3000; ++i) {
    std::string junk(rng.Uniform(1400), '\0');
    for (char& c : junk) c = static_cast<char>(rng.Next());
    if (i % 3 == 0 && !junk.empty()) junk[0] = 1;  // our version byte: reaches the CRC check
    ASSERT_TRUE(spray->SendTo(target, udp::AsBytes(junk)).ok());
  }
  const std::string input = WriteInput("in-spray", 1 << 20, 78);
  auto send = StartUdpmsg({"send", "--reliable", absl::StrCat("127.0.0.1:", recv.port), "--file",
                      input});
  EXPECT_EQ(ExitCodeWithin(*send, absl::Seconds(30)), 0) << send->stderr_text();
  EXPECT_EQ(ExitCodeWithin(*recv.process, absl::Seconds(10)), 0) << recv.process->stderr_text();
  EXPECT_TRUE(ReadFile(out) == ReadFile(input));
}

TEST(TransferTest, UnreachablePeerFailsWithinTheTimeout) {
  // A bound socket that never answers: the hello goes nowhere.
  absl::StatusOr<udp::DatagramSocket> silent =
      udp::DatagramSocket::Bind(udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, 0), {});
  ASSERT_TRUE(silent.ok());
  const int port = silent->LocalAddress()->port();
  const absl::Time start = absl::Now();
  auto send = StartUdpmsg({"send", "--reliable", absl::StrCat("127.0.0.1:", port), "--timeout", "1s",
                      "hi"});
  EXPECT_EQ(ExitCodeWithin(*send, absl::Seconds(10)), 1);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  std::vector<std::string> lines = Lines(send->stderr_text());
  ASSERT_EQ(lines.size(), 1u) << send->stderr_text();
  EXPECT_THAT(lines[0], StartsWith(absl::StrCat("udpmsg: cannot connect to 127.0.0.1:", port)));
}

TEST(TransferTest, ClosedPortFailsAtOnceWithTheIcmpReason) {
  // A port nobody listens on: the kernel answers the hello with ICMP port
  // unreachable, which ends the attempt long before --timeout.
  int port = 0;
  {
    absl::StatusOr<udp::DatagramSocket> temp =
        udp::DatagramSocket::Bind(udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, 0), {});
    ASSERT_TRUE(temp.ok());
    port = temp->LocalAddress()->port();
  }
  auto send = StartUdpmsg({"send", "--reliable", absl::StrCat("127.0.0.1:", port), "--timeout", "120s",
                      "hi"});
  // Well inside the 120 s the attempt would otherwise last.
  EXPECT_EQ(ExitCodeWithin(*send, absl::Seconds(60)), 1);
  std::vector<std::string> lines = Lines(send->stderr_text());
  ASSERT_EQ(lines.size(), 1u) << send->stderr_text();
  EXPECT_EQ(lines[0], absl::StrCat("udpmsg: cannot connect to 127.0.0.1:", port,
                                   ": unreachable: Connection refused"));
}

TEST(TransferTest, ReceiverVanishingMidTransferMakesTheSenderFailCleanly) {
  const std::string out = absl::StrCat(TempDir(), "/out-vanish");
  UdpmsgServer recv = StartUdpmsgServer({"recv", "--reliable", "--port", "0", "--out", out});
  // A slow path (50 ms each way, 5 Mbit/s) so the transfer is still running
  // when the receiver dies.
  UdpmsgServer proxy = StartUdpmsgServer({"impair", "--listen", "0", "--to", absl::StrCat("127.0.0.1:", recv.port),
                        "--delay", "50ms", "--rate", "5mbit", "--queue_limit", "1000000"});
  const std::string input = WriteInput("in-vanish", 16 << 20, 9);
  auto send = StartUdpmsg({"send", "--reliable", absl::StrCat("127.0.0.1:", proxy.port), "--file",
                      input, "--timeout", "2s"});
  absl::StatusOr<std::string> line = recv.process->ReadStderrLine(kStartTimeout);
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_THAT(*line, StartsWith("receiving from "));
  recv.process->Kill(SIGKILL);
  const absl::Time killed = absl::Now();
  EXPECT_EQ(ExitCodeWithin(*send, absl::Seconds(20)), 1);
  // Bounded: the 2 s peer timeout plus probe backoff and the 100 ms path.
  EXPECT_LT(absl::Now() - killed, absl::Seconds(8));
  EXPECT_THAT(send->stderr_text(), HasSubstr("udpmsg: transfer to 127.0.0.1:"));
  EXPECT_FALSE(Exists(out));
}

TEST(TransferTest, SenderVanishingMidTransferLeavesNoOutputFile) {
  const std::string out = absl::StrCat(TempDir(), "/out-sender-gone");
  UdpmsgServer recv = StartUdpmsgServer({"recv", "--reliable", "--port", "0", "--out", out, "--timeout", "2s"});
  UdpmsgServer proxy = StartUdpmsgServer({"impair", "--listen", "0", "--to", absl::StrCat("127.0.0.1:", recv.port),
                        "--delay", "50ms", "--rate", "5mbit", "--queue_limit", "1000000"});
  const std::string input = WriteInput("in-sender-gone", 16 << 20, 10);
  auto send = StartUdpmsg({"send", "--reliable", absl::StrCat("127.0.0.1:", proxy.port), "--file",
                      input});
  absl::StatusOr<std::string> line = recv.process->ReadStderrLine(kStartTimeout);
  ASSERT_TRUE(line.ok()) << line.status();
  send->Kill(SIGKILL);
  EXPECT_EQ(ExitCodeWithin(*recv.process, absl::Seconds(20)), 1);
  EXPECT_THAT(recv.process->stderr_text(), HasSubstr("went away"));
  EXPECT_FALSE(Exists(out));
  // The temporary file is removed too: nothing named out-sender-gone.part.*.
  for (const std::string& name : ListDir(TempDir())) {
    EXPECT_FALSE(absl::StartsWith(name, "out-sender-gone.part")) << name;
  }
}

// Waits (inotify, no polling) until a file whose name starts with `prefix`
// exists in `dir`; false after `timeout`.
bool WaitForFile(const std::string& dir, const std::string& prefix, absl::Duration timeout) {
  const int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (fd < 0) return false;
  const bool watched = inotify_add_watch(fd, dir.c_str(), IN_CREATE | IN_MOVED_TO) >= 0;
  const absl::Time deadline = absl::Now() + timeout;
  bool found = false;
  while (watched && !found) {
    for (const std::string& name : ListDir(dir)) found = found || absl::StartsWith(name, prefix);
    if (found) break;
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1) < 0) break;
    char events[4096];
    while (::read(fd, events, sizeof(events)) > 0) {
    }
  }
  ::close(fd);
  return found;
}

bool AnyFileStartsWith(const std::string& dir, const std::string& prefix) {
  for (const std::string& name : ListDir(dir)) {
    if (absl::StartsWith(name, prefix)) return true;
  }
  return false;
}

// recv stopped by SIGINT, SIGTERM or SIGHUP in the middle of a transfer:
// it removes FILE.part.XXXXXX, tells the sender at once (a close naming the
// signal) and exits 128 + the signal's number.
TEST(TransferTest, RecvStoppedBySignalRemovesItsTemporaryFileAndClosesTheConnection) {
  for (const int signal : {SIGINT, SIGTERM, SIGHUP}) {
    SCOPED_TRACE(absl::StrCat("signal ", signal));
    const std::string name = absl::StrCat("out-signal-", signal);
    const std::string out = absl::StrCat(TempDir(), "/", name);
    UdpmsgServer recv = StartUdpmsgServer({"recv", "--reliable", "--port", "0", "--bind", "127.0.0.1", "--out", out,
                         "--timeout", "60s"});
    ASSERT_NE(recv.port, 0);
    absl::StatusOr<RawSender> raw = ConnectRawSender(recv.port, absl::Seconds(60));
    ASSERT_TRUE(raw.ok()) << raw.status();
    std::vector<transfer::TransferMessage> messages(2);
    messages[0].mutable_begin()->set_size(1 << 20);
    messages[1].set_chunk(std::string(4096, 'x'));
    for (const transfer::TransferMessage& m : messages) {
      ASSERT_TRUE(raw->rt->Send(raw->id, 0, reliable::DeliveryMode::kReliableOrdered,
                              m.SerializeAsString()).ok());
    }
    ASSERT_TRUE(raw->rt->Flush(absl::Seconds(10)).ok());
    ASSERT_TRUE(WaitForFile(TempDir(), name + ".part.", absl::Seconds(10)))
        << recv.process->stderr_text();

    recv.process->Kill(signal);
    const absl::Time stopped = absl::Now();
    std::optional<reliable::Event> closed;
    while (!closed.has_value() && absl::Now() - stopped < absl::Seconds(10)) {
      absl::StatusOr<reliable::Runtime::PollResult> r = raw->rt->Poll(absl::Milliseconds(100));
      ASSERT_TRUE(r.ok()) << r.status();
      for (reliable::Event& e : r->events) {
        if (e.type == reliable::Event::Type::kClosed) closed = std::move(e);
      }
    }
    ASSERT_TRUE(closed.has_value()) << "no close from recv within 10 s";
    EXPECT_TRUE(closed->by_peer);
    EXPECT_THAT(closed->reason, HasSubstr("receiver interrupted by SIG"));
    EXPECT_EQ(ExitCodeWithin(*recv.process, absl::Seconds(10)), 128 + signal)
        << recv.process->stderr_text();
    EXPECT_THAT(recv.process->stderr_text(), HasSubstr("interrupted by SIG"));
    EXPECT_THAT(recv.process->stderr_text(), HasSubstr(absl::StrCat("nothing written to ", out)));
    EXPECT_FALSE(Exists(out));
    EXPECT_FALSE(AnyFileStartsWith(TempDir(), name + ".part")) << "temporary file left behind";
  }
}

std::string Sha256Of(const std::string& data) {
  unsigned char out[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(out, reinterpret_cast<const unsigned char*>(data.data()), data.size());
  return std::string(reinterpret_cast<char*>(out), sizeof(out));
}

// A hand-driven sender that breaks the protocol: a second Begin in the
// middle. The receiver used to open a new output file at the second Begin
// but keep hashing across both, so it printed "sha256 ... OK" for a file
// holding only the bytes after it (whose digest differs).
TEST(TransferTest, SecondBeginIsRejectedAndNothingIsWritten) {
  const std::string out = absl::StrCat(TempDir(), "/out-second-begin");
  UdpmsgServer recv = StartUdpmsgServer({"recv", "--reliable", "--port", "0", "--out", out});
  ASSERT_NE(recv.port, 0);
  absl::StatusOr<RawSender> raw = ConnectRawSender(recv.port);
  ASSERT_TRUE(raw.ok()) << raw.status();

  std::vector<transfer::TransferMessage> messages(5);
  messages[0].mutable_begin()->set_size(-1);
  messages[1].set_chunk("first half ");
  messages[2].mutable_begin()->set_size(-1);
  messages[3].set_chunk("second half");
  messages[4].mutable_end()->set_size(22);
  messages[4].mutable_end()->set_sha256(Sha256Of("first half second half"));
  for (const transfer::TransferMessage& m : messages) {
    ASSERT_TRUE(raw->rt->Send(raw->id, 0, reliable::DeliveryMode::kReliableOrdered,
                            m.SerializeAsString()).ok());
  }
  std::optional<transfer::TransferMessage> result;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (!result.has_value() && absl::Now() < deadline) {
    absl::StatusOr<reliable::Runtime::PollResult> r = raw->rt->Poll(absl::Milliseconds(100));
    ASSERT_TRUE(r.ok()) << r.status();
    for (const reliable::Event& e : r->events) {
      if (e.type != reliable::Event::Type::kMessage) continue;
      result.emplace();
      ASSERT_TRUE(result->ParseFromString(e.message));
    }
  }
  ASSERT_TRUE(result.has_value() && result->has_result()) << recv.process->stderr_text();
  EXPECT_FALSE(result->result().ok());
  EXPECT_THAT(result->result().error(), HasSubstr("second transfer header"));
  EXPECT_EQ(ExitCodeWithin(*recv.process, absl::Seconds(10)), 1) << recv.process->stderr_text();
  EXPECT_THAT(recv.process->stderr_text(), HasSubstr("second transfer header"));
  EXPECT_FALSE(absl::StrContains(recv.process->stderr_text(), " OK, wrote "));
  EXPECT_FALSE(Exists(out));
  for (const std::string& name : ListDir(TempDir())) {
    EXPECT_FALSE(absl::StartsWith(name, "out-second-begin.part")) << name;
  }
}

// /proc files claim size 0 but read as text: the sender must not declare a
// size the strict receiver would then hold it to.
TEST(TransferTest, ProcFileWithoutATrueSizeArrivesWhole) {
  const std::string out = absl::StrCat(TempDir(), "/out-proc");
  UdpmsgServer recv = StartUdpmsgServer({"recv", "--reliable", "--port", "0", "--out", out});
  auto send = StartUdpmsg({"send", "--reliable", absl::StrCat("127.0.0.1:", recv.port), "--file",
                      "/proc/version", "--progress", "off"});
  EXPECT_EQ(ExitCodeWithin(*send, absl::Seconds(20)), 0) << send->stderr_text();
  EXPECT_EQ(ExitCodeWithin(*recv.process, absl::Seconds(10)), 0) << recv.process->stderr_text();
  EXPECT_FALSE(ReadFile(out).empty());
  EXPECT_EQ(ReadFile(out), ReadFile("/proc/version"));
}

TEST(TransferTest, BadFlagsAreUsageErrors) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  } cases[] = {
      {{"recv", "--port", "0", "--out", "x"}, "needs --reliable"},
      {{"recv", "--reliable", "--port", "0"}, "--out FILE is required"},
      {{"recv", "--reliable", "--out", "x"}, "--port is required"},
      {{"recv", "--reliable", "--port", "0", "--out", "x", "--timeout", "soon"}, "--timeout"},
      // Longer than any connection timeout the library accepts.
      {{"recv", "--reliable", "--port", "0", "--out", "x", "--timeout", "48h"}, "longer than 24h"},
      {{"send", "--reliable", "127.0.0.1:9", "--timeout", "inf", "x"}, "longer than 24h"},
      {{"send", "--reliable"}, "expects HOST:PORT"},
      {{"send", "--reliable", "127.0.0.1:9", "--progress", "maybe", "x"}, "--progress"},
      {{"send", "--reliable", "--via", "127.0.0.1:9", "bad name", "x"}, "is not a name"},
      {{"send", "--reliable", "127.0.0.1:9", "--via_relay_only", "x"}, "needs --via"},
      {{"recv", "--reliable", "--via", "127.0.0.1:9", "--out", "x"}, "go together"},
      {{"recv", "--reliable", "--via", "127.0.0.1:9", "--name", "-x", "--out", "x"},
       "is not a name"},
      {{"rendezvous", "--port", "0", "--relay_budget", "lots"}, "--relay_budget"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrJoin(c.args, " "));
    auto p = StartUdpmsg(c.args);
    EXPECT_EQ(ExitCodeWithin(*p, absl::Seconds(10)), 2);
    std::vector<std::string> lines = Lines(p->stderr_text());
    ASSERT_EQ(lines.size(), 1u) << p->stderr_text();
    EXPECT_THAT(lines[0], HasSubstr(c.message));
  }
}

TEST(TransferTest, UnwritableOutputDirectoryIsReportedBeforeWaiting) {
  auto p = StartUdpmsg({"recv", "--reliable", "--port", "0", "--out", "/nonexistent/dir/file"});
  EXPECT_EQ(ExitCodeWithin(*p, absl::Seconds(10)), 2);
  std::vector<std::string> lines = Lines(p->stderr_text());
  ASSERT_EQ(lines.size(), 1u) << p->stderr_text();
  EXPECT_THAT(lines[0], HasSubstr("cannot write to directory /nonexistent/dir"));
}

// --file that cannot be sent (a directory, a missing file, an unreadable
// one) is bad input, found before connecting: exit 2, one line naming the
// flag and the path, and nothing sent, not even a hello, to the socket
// standing in for a receiver.
TEST(TransferTest, FileThatCannotBeReadIsBadInputAndNothingIsSent) {
  struct Case {
    std::string path;
    std::string error;
  };
  std::vector<Case> cases = {{TempDir(), "Is a directory"},
                             {"/nonexistent/file", "No such file or directory"}};
  if (::geteuid() != 0) {  // root reads anything
    const std::string secret = absl::StrCat(TempDir(), "/unreadable");
    std::ofstream(secret) << "secret";
    ASSERT_EQ(::chmod(secret.c_str(), 0), 0);
    cases.push_back({secret, "Permission denied"});
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.path);
    udp::DatagramSocket::Options non_blocking;
    non_blocking.non_blocking = true;
    absl::StatusOr<udp::DatagramSocket> peer = udp::DatagramSocket::Bind(
        udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, 0), non_blocking);
    ASSERT_TRUE(peer.ok()) << peer.status();
    absl::StatusOr<udp::SocketAddress> address = peer->LocalAddress();
    ASSERT_TRUE(address.ok()) << address.status();
    auto send = StartUdpmsg({"send", "--reliable", address->ToString(), "--file", c.path, "--timeout",
                        "30s"});
    ASSERT_NE(send, nullptr);
    EXPECT_EQ(ExitCodeWithin(*send, absl::Seconds(10)), 2) << send->stderr_text();
    EXPECT_THAT(send->stderr_text(),
                StartsWith(absl::StrCat("udpmsg send: --file ", c.path, ": ", c.error)));
    EXPECT_EQ(Lines(send->stderr_text()).size(), 1u) << send->stderr_text();
    // Loopback delivers within sendto: all the sender sent is here by now.
    uint8_t buffer[2048];
    EXPECT_TRUE(absl::IsUnavailable(peer->RecvFrom(absl::MakeSpan(buffer)).status()))
        << "the sender contacted the peer";
  }
}

// ---- NAT traversal through `udpmsg rendezvous` (docs/nat.md), on loopback:
// no NAT, so the direct path works; --via_relay_only forces the relay. The
// NAT behaviours themselves are tested in network namespaces (nat_test).

// `udpmsg rendezvous` on 127.0.0.1 and its port, from its first line
// ("udpmsg rendezvous: rendezvous on 127.0.0.1:P, relay on 127.0.0.1:P2").
struct Rendezvous {
  std::unique_ptr<Subprocess> process;
  std::string address;  // 127.0.0.1:P
};
Rendezvous StartRendezvous(std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"rendezvous", "--port", "0", "--bind", "127.0.0.1"};
  args.insert(args.end(), extra.begin(), extra.end());
  Rendezvous r;
  r.process = StartUdpmsg(args);
  if (r.process == nullptr) return r;
  absl::StatusOr<std::string> line = r.process->ReadStderrLine(kStartTimeout);
  EXPECT_TRUE(line.ok()) << line.status();
  if (!line.ok()) return r;
  EXPECT_THAT(*line, HasSubstr("relay on 127.0.0.1:"));
  const size_t at = line->find("rendezvous on ");
  const size_t comma = line->find(',', at);
  EXPECT_NE(at, std::string::npos) << *line;
  if (at == std::string::npos || comma == std::string::npos) return r;
  r.address = line->substr(at + 14, comma - at - 14);
  return r;
}

// A recv --via registered as `name` (waits for its "registered" line).
std::unique_ptr<Subprocess> StartRecvVia(const Rendezvous& rv, const std::string& name,
                                         const std::string& out,
                                         std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"recv", "--reliable", "--via",     rv.address, "--name",
                                   name,   "--bind",     "127.0.0.1", "--out",    out};
  args.insert(args.end(), extra.begin(), extra.end());
  auto p = StartUdpmsg(args);
  if (p == nullptr) return p;
  EXPECT_TRUE(p->WaitForStderr(absl::StrCat("udpmsg recv: registered as ", name, " with ",
                                            rv.address, " (seen as 127.0.0.1:"),
                               kStartTimeout)
                  .ok())
      << p->stderr_text();
  return p;
}

TEST(ViaTest, DirectPathOnLoopbackCarriesAVerifiedTransfer) {
  Rendezvous rv = StartRendezvous();
  ASSERT_FALSE(rv.address.empty());
  const std::string input = WriteInput("via-direct.in", 1 << 20, 11);
  const std::string out = absl::StrCat(TempDir(), "/via-direct.out");
  auto recv = StartRecvVia(rv, "alice", out);
  ASSERT_NE(recv, nullptr);
  auto send = StartUdpmsg(
      {"send", "--reliable", "--via", rv.address, "alice", "--file", input, "--progress", "off"});
  ASSERT_NE(send, nullptr);
  EXPECT_EQ(ExitCodeWithin(*send, absl::Seconds(30)), 0) << send->stderr_text();
  EXPECT_EQ(ExitCodeWithin(*recv, absl::Seconds(10)), 0) << recv->stderr_text();
  EXPECT_TRUE(ReadFile(out) == ReadFile(input));
  EXPECT_THAT(send->stderr_text(), HasSubstr("udpmsg send: path to alice: direct (127.0.0.1:"));
  EXPECT_FALSE(absl::StrContains(send->stderr_text(), "relayed"));
  rv.process->Kill(SIGTERM);
  EXPECT_EQ(ExitCodeWithin(*rv.process, absl::Seconds(10)), 0);
  // The server freed the relay it had prepared as soon as the direct path won.
  EXPECT_THAT(rv.process->stderr_text(), HasSubstr("direct path chosen"));
}

TEST(ViaTest, RelayCarriesAnEncryptedTransferWhenForced) {
  Rendezvous rv = StartRendezvous();
  ASSERT_FALSE(rv.address.empty());
  const std::string input = WriteInput("via-relay.in", 1 << 20, 12);
  const std::string out = absl::StrCat(TempDir(), "/via-relay.out");
  auto recv = StartRecvVia(rv, "bob", out, {"--encrypt"});
  ASSERT_NE(recv, nullptr);
  auto send = StartUdpmsg({"send", "--reliable", "--via", rv.address, "bob", "--file", input,
                           "--progress", "off", "--via_relay_only", "--encrypt"});
  ASSERT_NE(send, nullptr);
  EXPECT_EQ(ExitCodeWithin(*send, absl::Seconds(30)), 0) << send->stderr_text();
  EXPECT_EQ(ExitCodeWithin(*recv, absl::Seconds(10)), 0) << recv->stderr_text();
  EXPECT_TRUE(ReadFile(out) == ReadFile(input));
  EXPECT_THAT(send->stderr_text(), HasSubstr("udpmsg send: path to bob: relayed via 127.0.0.1:"));
  EXPECT_THAT(send->stderr_text(), HasSubstr("(--via_relay_only)"));
  rv.process->Kill(SIGTERM);
  EXPECT_EQ(ExitCodeWithin(*rv.process, absl::Seconds(10)), 0);
  const std::string log = rv.process->stderr_text();
  EXPECT_THAT(log, HasSubstr("relaying for"));
  // The whole file (and the handshakes, acknowledgements) went through it.
  const size_t at = log.find("forwarded=");
  ASSERT_NE(at, std::string::npos) << log;
  const size_t slash = log.find('/', at);
  uint64_t bytes = 0;
  ASSERT_TRUE(absl::SimpleAtoi(log.substr(slash + 1, log.find('B', slash) - slash - 1), &bytes))
      << log;
  EXPECT_GT(bytes, uint64_t{1} << 20);
}

TEST(ViaTest, AWrongRoomKeyFailsOnTheDirectPathWithoutTryingTheRelay) {
  Rendezvous rv = StartRendezvous();
  ASSERT_FALSE(rv.address.empty());
  const std::string key_a = absl::StrCat(TempDir(), "/via-a.key");
  const std::string key_b = absl::StrCat(TempDir(), "/via-b.key");
  for (const std::string& k : {key_a, key_b}) {
    auto gen = StartUdpmsg({"keygen"});
    ASSERT_NE(gen, nullptr);
    ASSERT_EQ(ExitCodeWithin(*gen, absl::Seconds(10)), 0);
    std::ofstream(k) << gen->stdout_text();
  }
  const std::string out = absl::StrCat(TempDir(), "/via-key.out");
  auto recv = StartRecvVia(rv, "erin", out, {"--key_file", key_a});
  ASSERT_NE(recv, nullptr);
  auto send = StartUdpmsg(
      {"send", "--reliable", "--via", rv.address, "erin", "--key_file", key_b, "hello"});
  ASSERT_NE(send, nullptr);
  EXPECT_EQ(ExitCodeWithin(*send, absl::Seconds(15)), 1);
  EXPECT_THAT(send->stderr_text(), HasSubstr("wrong room key"));
  EXPECT_FALSE(absl::StrContains(send->stderr_text(), "path to erin")) << send->stderr_text();
  EXPECT_FALSE(Exists(out));
}

TEST(ViaTest, UnknownNameFailsWithOneLine) {
  Rendezvous rv = StartRendezvous();
  ASSERT_FALSE(rv.address.empty());
  auto send = StartUdpmsg({"send", "--reliable", "--via", rv.address, "carol", "hi"});
  ASSERT_NE(send, nullptr);
  EXPECT_EQ(ExitCodeWithin(*send, absl::Seconds(15)), 1);
  EXPECT_EQ(Lines(send->stderr_text()),
            std::vector<std::string>{
                absl::StrCat("udpmsg send: carol is not registered with ", rv.address)});
}

TEST(ViaTest, ARegisteredNameCannotBeTakenAndIsFreedWhenItsReceiverExits) {
  Rendezvous rv = StartRendezvous();
  ASSERT_FALSE(rv.address.empty());
  const std::string out = absl::StrCat(TempDir(), "/via-taken.out");
  auto first = StartRecvVia(rv, "dave", out);
  ASSERT_NE(first, nullptr);
  auto second = StartUdpmsg({"recv", "--reliable", "--via", rv.address, "--name", "dave", "--bind",
                             "127.0.0.1", "--out", out});
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(ExitCodeWithin(*second, absl::Seconds(15)), 1);
  EXPECT_THAT(second->stderr_text(), HasSubstr("cannot register dave with"));
  EXPECT_THAT(second->stderr_text(), HasSubstr("dave is taken"));
  first->Kill(SIGTERM);
  ExitCodeWithin(*first, absl::Seconds(10));
  // The first receiver's exit closed its registration: the name is free.
  auto third = StartRecvVia(rv, "dave", out);
  ASSERT_NE(third, nullptr);
  third->Kill(SIGTERM);
  ExitCodeWithin(*third, absl::Seconds(10));
}

// A veth pair between this thread's network namespace and another (as
// root; the reason for skipping otherwise), `va` 10.99.0.1 here and `vb`
// 10.99.0.2 there, both with MTU `mtu`. `home_setup` (tc's arguments) runs
// in this namespace once the pair is up, e.g. a qdisc on va. `run` gets a
// function that moves the calling thread back to this namespace (for
// RuntimePath::between) and runs in the other one. The other namespace is
// held by a child (HoldNetworkNamespace, killed at the end), so nothing
// needs /run/netns (read-only in the test sandbox). Unshare and setns act
// on the calling thread, so this happens in a thread of its own and the
// rest of the binary keeps the host's network.
void BetweenNamespaces(int mtu, const std::vector<std::vector<std::string>>& home_setup,
                       const std::function<void(const std::function<void()>& home)>& run) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (CAP_NET_ADMIN) for network namespaces";
  const std::string ip = FirstExecutable({"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"});
  const std::string tc = FirstExecutable({"/usr/sbin/tc", "/sbin/tc"});
  if (ip.empty() || (!home_setup.empty() && tc.empty())) {
    GTEST_SKIP() << "needs iproute2 (ip, tc)";
  }
  std::string skip;
  std::thread worker([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      skip = absl::StrCat("unshare(CLONE_NEWNET): ", std::strerror(errno));
      return;
    }
    const int home = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    // Children start in this thread's namespace.
    absl::StatusOr<std::unique_ptr<Subprocess>> holder = HoldNetworkNamespace();
    if (home < 0 || !holder.ok()) {
      skip = absl::StrCat("cannot hold a second network namespace: ",
                          holder.ok() ? "no /proc/thread-self/ns/net" : holder.status().message());
      if (home >= 0) ::close(home);
      return;
    }
    const std::string pid = absl::StrCat((*holder)->pid());
    const std::string m = absl::StrCat(mtu);
    auto run_ok = [](const std::vector<std::string>& argv) { return RunToSuccess(argv).ok(); };
    const std::string there = absl::StrCat("/proc/", pid, "/ns/net");
    bool up = run_ok({ip, "link", "set", "lo", "up"}) &&
              run_ok({ip, "link", "add", "va", "mtu", m, "type", "veth", "peer", "name", "vb",
                      "mtu", m, "netns", pid}) &&
              run_ok({ip, "addr", "add", "10.99.0.1/24", "dev", "va"}) &&
              run_ok({ip, "link", "set", "va", "up"});
    bool shaped = true;
    for (const std::vector<std::string>& args : home_setup) {
      std::vector<std::string> argv = {tc};
      argv.insert(argv.end(), args.begin(), args.end());
      shaped = shaped && up && run_ok(argv);
    }
    const int peer = ::open(there.c_str(), O_RDONLY | O_CLOEXEC);
    if (!up || peer < 0 || ::setns(peer, CLONE_NEWNET) != 0) {
      skip = "cannot set up the veth pair between the namespaces";
    } else if (!shaped) {
      skip = absl::StrCat("tc refused the qdisc (no tbf in this kernel?): tc ",
                          absl::StrJoin(home_setup.front(), " "));
    } else if (!run_ok({ip, "link", "set", "lo", "up"}) ||
               !run_ok({ip, "addr", "add", "10.99.0.2/24", "dev", "vb"}) ||
               !run_ok({ip, "link", "set", "vb", "up"})) {
      skip = "cannot configure vb in the second namespace";
    } else {
      run([&] { ::setns(home, CLONE_NEWNET); });
    }
    if (peer >= 0) ::close(peer);
    ::setns(home, CLONE_NEWNET);
    ::close(home);
    (*holder)->Kill(SIGKILL);
  });
  worker.join();
  if (!skip.empty()) GTEST_SKIP() << skip;
}

// Two runtimes in this process on loopback: a client sends `messages`
// messages of `size` bytes (seeded content) to a server, both loops turned
// from this thread without blocking until the server has them all.
struct RuntimeTransfer {
  std::string sent;
  std::string received;
  reliable::Runtime::IoStats client_io;
  reliable::Runtime::IoStats server_io;
  reliable::ConnectionStats client_connection;  // at the end
};
// Where the two runtimes bind (loopback by default) and what runs between
// creating the server and the client (back to the client's network
// namespace, say); the client's socket buffers.
struct RuntimePath {
  udp::SocketAddress server_bind = udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, 0);
  udp::SocketAddress client_bind = udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, 0);
  std::function<void()> between;
  std::optional<int> client_socket_buffer_bytes;
};
RuntimeTransfer TransferBetweenRuntimes(bool offload, size_t messages, size_t size,
                                        bool encrypt = false, const RuntimePath& path = {}) {
  RuntimeTransfer t;
  reliable::Runtime::Options options;
  options.bind = path.server_bind;
  options.segmentation_offload = offload;
  options.endpoint.encrypt = encrypt;
  options.endpoint.accept_incoming = true;
  absl::StatusOr<std::unique_ptr<reliable::Runtime>> server = reliable::Runtime::Create(options);
  if (path.between) path.between();
  options.bind = path.client_bind;
  options.endpoint.accept_incoming = false;
  if (path.client_socket_buffer_bytes) {
    options.socket_buffer_bytes = *path.client_socket_buffer_bytes;
  }
  absl::StatusOr<std::unique_ptr<reliable::Runtime>> client = reliable::Runtime::Create(options);
  if (!server.ok() || !client.ok()) {
    ADD_FAILURE() << server.status() << " " << client.status();
    return t;
  }
  absl::StatusOr<reliable::ConnectionId> id = (*client)->Connect((*server)->local_address());
  if (!id.ok()) {
    ADD_FAILURE() << id.status();
    return t;
  }
  t.sent = ReadFile(
      WriteInput(absl::StrCat("runtime-", offload, "-", encrypt), messages * size, 16));
  bool connected = false;
  size_t queued = 0;
  // A bound on a broken run, not a measurement: the loop ends when the data is in.
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  while (t.received.size() < t.sent.size() && absl::Now() < give_up) {
    absl::StatusOr<reliable::Runtime::PollResult> c = (*client)->Poll(absl::ZeroDuration());
    absl::StatusOr<reliable::Runtime::PollResult> r = (*server)->Poll(absl::ZeroDuration());
    if (!c.ok() || !r.ok()) {
      ADD_FAILURE() << c.status() << " " << r.status();
      break;
    }
    for (const reliable::Event& e : c->events) {
      if (e.type == reliable::Event::Type::kConnected) connected = true;
    }
    for (reliable::Event& e : r->events) {
      if (e.type == reliable::Event::Type::kMessage) t.received += e.message;
    }
    for (; connected && queued < messages; ++queued) {
      absl::StatusOr<uint64_t> seq = (*client)->Send(
          *id, 0, reliable::DeliveryMode::kReliableOrdered, t.sent.substr(queued * size, size));
      if (!seq.ok()) {
        ADD_FAILURE() << seq.status();
        return t;
      }
    }
  }
  t.client_io = (*client)->io_stats();
  t.server_io = (*server)->io_stats();
  if (absl::StatusOr<reliable::ConnectionStats> st = (*client)->Stats(*id); st.ok()) {
    t.client_connection = *st;
  }
  return t;
}

TEST(RuntimeTransferTest, GsoTrainsAndGroBuffersCarryABulkTransferByteExact) {
  const RuntimeTransfer t = TransferBetweenRuntimes(/*offload=*/true, 8, 1 << 20);
  ASSERT_EQ(t.received.size(), t.sent.size());
  EXPECT_TRUE(t.received == t.sent) << "received bytes differ";
  const reliable::Runtime::IoStats& c = t.client_io;
  const reliable::Runtime::IoStats& s = t.server_io;
  EXPECT_TRUE(c.gso_enabled && s.gro_enabled);
  EXPECT_EQ(c.gso_refused_errno, 0);
  // Bulk data leaves in trains: most datagrams went in one, several each.
  SCOPED_TRACE(absl::StrCat("client: ", c.datagrams_sent, " datagrams in ", c.send_calls,
                            " sendmmsg calls, ", c.gso_segments, " of them in ", c.gso_trains,
                            " trains; server: ", s.datagrams_received, " datagrams in ",
                            s.recv_calls, " recvmmsg calls, ", s.gro_segments, " of them in ",
                            s.gro_buffers, " coalesced buffers"));
  EXPECT_GT(c.gso_trains, 0u);
  EXPECT_GT(c.gso_segments, c.datagrams_sent / 2);
  EXPECT_GT(c.datagrams_sent, 2 * c.send_calls);
  // Straight from where the connections encoded them: no train was copied
  // into the socket's gather buffer first.
  EXPECT_EQ(c.gso_copied_trains, 0u) << "of " << c.gso_trains;
  // And arrives coalesced, cut back into the datagrams the endpoint counted.
  EXPECT_GT(s.gro_buffers, 0u);
  EXPECT_GT(s.gro_segments, s.datagrams_received / 2) << s.gro_buffers << " buffers";
  EXPECT_EQ(s.truncated, 0u);
}

// Sealed datagrams too are sealed where they lie in the endpoint's batch
// and leave from there.
TEST(RuntimeTransferTest, EncryptedGsoTrainsGoWithoutACopy) {
  const RuntimeTransfer t =
      TransferBetweenRuntimes(/*offload=*/true, 4, 1 << 20, /*encrypt=*/true);
  ASSERT_EQ(t.received.size(), t.sent.size());
  EXPECT_TRUE(t.received == t.sent) << "received bytes differ";
  const reliable::Runtime::IoStats& c = t.client_io;
  EXPECT_TRUE(c.gso_enabled);
  EXPECT_GT(c.gso_trains, 0u);
  EXPECT_GT(c.gso_segments, c.datagrams_sent / 2);
  EXPECT_EQ(c.gso_copied_trains, 0u) << "of " << c.gso_trains;
}

// The runtime's send path when the socket is full. A token bucket on the
// client's interface holds what it cannot send yet, and every byte it holds
// stays charged to the client's socket, whose buffer is small: sendmmsg
// sends part of a call's trains and then would block, the runtime waits
// for the socket to become writable with its unsent datagrams kept, and
// the connection adds more behind them meanwhile. (On loopback and an
// unshaped veth the kernel releases each datagram's charge as it leaves,
// so the socket never fills.) Everything must arrive, byte for byte.
TEST(RuntimeTransferTest, AFullSocketBufferDelaysDatagramsAndLosesNone) {
  RuntimeTransfer t;
  BetweenNamespaces(
      1500,
      // Slow enough for a sanitized build's sender to outrun (2.5 MB/s),
      // with room for 2.5 MB: more than the socket can have charged, so
      // the qdisc itself never drops.
      {{"qdisc", "add", "dev", "va", "root", "tbf", "rate", "20mbit", "burst", "32kb",
        "latency", "1s"}},
      [&](const std::function<void()>& home) {
        RuntimePath path;
        path.server_bind = *udp::SocketAddress::Parse("10.99.0.2:0");
        path.client_bind = *udp::SocketAddress::Parse("10.99.0.1:0");
        path.between = home;
        path.client_socket_buffer_bytes = 64 << 10;  // the kernel doubles it
        t = TransferBetweenRuntimes(/*offload=*/true, 2, 1 << 20, false, path);
      });
  if (::testing::Test::IsSkipped()) return;
  const reliable::Runtime::IoStats& c = t.client_io;
  SCOPED_TRACE(absl::StrCat("client: ", c.datagrams_sent, " datagrams in ", c.send_calls,
                            " sendmmsg calls, ", c.send_would_block, " would block, ",
                            c.send_errors, " errors; ", t.client_connection.ToString()));
  std::printf("full socket: %llu datagrams, %llu sendmmsg calls, %llu would block\n",
              static_cast<unsigned long long>(c.datagrams_sent),
              static_cast<unsigned long long>(c.send_calls),
              static_cast<unsigned long long>(c.send_would_block));
  ASSERT_EQ(t.received.size(), t.sent.size());
  EXPECT_TRUE(t.received == t.sent) << "received bytes differ";
  EXPECT_GT(c.send_would_block, 0u) << "the socket never filled: the test did not test";
  // Once refused, the runtime waits for the socket's writable event before
  // trying again, however often it is polled (this loop polls without
  // blocking): not a refused sendmmsg per turn, tens of thousands here.
  EXPECT_LT(c.send_would_block, c.datagrams_sent / 4);
  // The only datagrams dropped at the socket are path MTU probes larger
  // than the veth carries (EMSGSIZE), which their prober counts as lost.
  EXPECT_LE(c.send_errors, t.client_connection.mtu_probes_lost);
  // And no data packet went missing: a partial send resumes where the
  // kernel stopped. (A packet a loaded machine delays past the loss
  // threshold is declared lost and then acknowledged: spurious, not gone.)
  EXPECT_EQ(t.client_connection.packets_lost - t.client_connection.spurious_losses,
            t.client_connection.mtu_probes_lost);
}

TEST(RuntimeTransferTest, WithoutOffloadEveryDatagramIsItsOwnMessage) {
  const RuntimeTransfer t = TransferBetweenRuntimes(/*offload=*/false, 4, 1 << 20);
  ASSERT_EQ(t.received.size(), t.sent.size());
  EXPECT_TRUE(t.received == t.sent) << "received bytes differ";
  EXPECT_FALSE(t.client_io.gso_enabled || t.client_io.gro_enabled);
  EXPECT_EQ(t.client_io.gso_trains, 0u);
  EXPECT_EQ(t.server_io.gro_buffers, 0u);
  EXPECT_EQ(t.server_io.gro_segments, 0u);
  EXPECT_GT(t.client_io.datagrams_sent, 0u);
}

// Path MTU discovery on real sockets (reliable/pmtud.h). A client and a
// server runtime, both with PMTUD on, transfer 2 MB and the client's
// datagram size must settle at the largest UDP payload the path carries.
// Returns the settled size (0 after a failure, reported); `probes_lost`
// (when given) gets the client's count of lost probes.
size_t SettledDatagramSize(const udp::SocketAddress& client_bind,
                           const udp::SocketAddress& server_bind, size_t expected,
                           const std::function<void()>& between = nullptr,
                           uint64_t* probes_lost = nullptr) {
  reliable::Runtime::Options server_options;
  server_options.bind = server_bind;
  server_options.endpoint.accept_incoming = true;
  server_options.endpoint.connection.pmtud = true;
  absl::StatusOr<std::unique_ptr<reliable::Runtime>> server =
      reliable::Runtime::Create(server_options);
  EXPECT_TRUE(server.ok()) << server.status();
  if (!server.ok()) return 0;
  if (between) between();  // e.g. back to the client's namespace
  reliable::Runtime::Options client_options;
  client_options.bind = client_bind;
  client_options.endpoint.connection.pmtud = true;
  absl::StatusOr<std::unique_ptr<reliable::Runtime>> client =
      reliable::Runtime::Create(client_options);
  EXPECT_TRUE(client.ok()) << client.status();
  if (!client.ok()) return 0;
  std::atomic<bool> stop{false};
  std::thread serve([&] {
    while (!stop.load()) (void)(*server)->Poll(absl::Milliseconds(5));
  });
  size_t size = 0;
  absl::StatusOr<reliable::ConnectionId> id = (*client)->Connect((*server)->local_address());
  EXPECT_TRUE(id.ok()) << id.status();
  if (id.ok() && (*client)->AwaitConnected(*id, absl::Seconds(10)).ok()) {
    for (int i = 0; i < 200; ++i) {
      EXPECT_TRUE((*client)->Send(*id, 0, reliable::DeliveryMode::kReliableOrdered,
                                  std::string(10'000, static_cast<char>(i)))
                      .ok());
    }
    EXPECT_TRUE((*client)->Flush(absl::Seconds(30)).ok());
    // The search ends within a few probe timeouts of the last failure.
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (absl::Now() < deadline) {
      (void)(*client)->Poll(absl::Milliseconds(20));
      absl::StatusOr<reliable::ConnectionStats> s = (*client)->Stats(*id);
      if (!s.ok()) break;
      size = s->datagram_size;
      if (size == expected) break;
    }
    absl::StatusOr<reliable::ConnectionStats> s = (*client)->Stats(*id);
    if (s.ok()) std::printf("path MTU discovery settled at %zu: %s\n", size, s->ToString().c_str());
    if (s.ok() && probes_lost != nullptr) *probes_lost = s->mtu_probes_lost;
  }
  stop.store(true);
  (*server)->Wake();
  serve.join();
  return size;
}

TEST(PmtudTest, LoopbackReachesTheConfiguredMaximum) {
  const udp::SocketAddress lo = udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, 0);
  EXPECT_EQ(SettledDatagramSize(lo, lo, reliable::kDefaultMaxUdpPayload),
            reliable::kDefaultMaxUdpPayload);
}

// A veth pair between two network namespaces (BetweenNamespaces) settles
// at the IPv4 UDP payload of its MTU: 1372 at 1400, 1472 at 1500.
void VethSettles(int mtu, size_t expected) {
  SCOPED_TRACE(absl::StrCat("veth mtu ", mtu));
  size_t settled = 0;
  uint64_t probes_lost = 0;
  BetweenNamespaces(mtu, {}, [&](const std::function<void()>& home) {
    settled = SettledDatagramSize(*udp::SocketAddress::Parse("10.99.0.1:0"),
                                  *udp::SocketAddress::Parse("10.99.0.2:0"), expected, home,
                                  &probes_lost);
  });
  if (::testing::Test::IsSkipped()) return;
  EXPECT_EQ(settled, expected);
  // Sizes over the interface's MTU fail at once (the runtime hands EMSGSIZE
  // to the prober); they cost three lost probes each when it did not.
  EXPECT_LT(probes_lost, 3u);
}

TEST(PmtudTest, VethWithMtu1400SettlesAt1372) { VethSettles(1400, 1372); }
TEST(PmtudTest, VethWithMtu1500SettlesAt1472) { VethSettles(1500, 1472); }

}  // namespace
}  // namespace udpmsg::testing
