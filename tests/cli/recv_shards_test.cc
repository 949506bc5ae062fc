// `udpmsg recv --reliable --out DIRECTORY --threads N`: several transfers
// at once to one receiver, each on whichever shard the kernel gave its
// connection, each to its own file. Every wait has a deadline.
#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/cli/subprocess.h"

namespace udpmsg::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

constexpr absl::Duration kStartTimeout = absl::Seconds(10);

std::string TempDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

// `size` bytes from a seeded generator (different seeds, different bytes).
std::string WriteInput(const std::string& path, size_t size, uint32_t seed) {
  std::string data(size, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (char& c : data) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x);
  }
  std::ofstream(path, std::ios::binary) << data;
  return data;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<std::string> ListDir(const std::string& path) {
  std::vector<std::string> names;
  if (DIR* dir = opendir(path.c_str())) {
    while (dirent* e = readdir(dir)) {
      if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") {
        names.push_back(e->d_name);
      }
    }
    closedir(dir);
  }
  return names;
}

std::unique_ptr<Subprocess> Udpmsg(std::vector<std::string> args) {
  args.insert(args.begin(), UdpmsgPath());
  absl::StatusOr<std::unique_ptr<Subprocess>> p = Subprocess::Start(args);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *std::move(p) : nullptr;
}

int Finish(Subprocess& p, absl::Duration timeout) {
  absl::StatusOr<int> code = p.Wait(timeout);
  EXPECT_TRUE(code.ok()) << code.status();
  return code.ok() ? *code : -1;
}

// A fresh empty directory under the test's temporary directory.
std::string MakeDir(const std::string& name) {
  std::string dir = absl::StrCat(TempDir(), "/", name, "XXXXXX");
  EXPECT_NE(::mkdtemp(dir.data()), nullptr);
  return dir;
}

TEST(RecvShardsTest, ThreeTransfersAtOnceOnTwoShards) {
  const std::string in = MakeDir("in");
  const std::string out = MakeDir("out");
  const std::string a = WriteInput(in + "/a.bin", 1500000, 1);
  const std::string b = WriteInput(in + "/b.bin", 900000, 2);
  const std::string c = WriteInput(in + "/weird name;rm.bin", 300000, 3);
  std::unique_ptr<Subprocess> recv = Udpmsg({"recv", "--reliable", "--port", "0", "--bind",
                                             "127.0.0.1", "--out", out, "--threads", "2",
                                             "--count", "3"});
  ASSERT_NE(recv, nullptr);
  absl::StatusOr<std::string> line = recv->ReadStderrLine(kStartTimeout);
  ASSERT_TRUE(line.ok()) << line.status();
  absl::StatusOr<int> port = ParseListeningPort(*line);
  ASSERT_TRUE(port.ok()) << port.status() << " in " << *line;
  const std::string target = absl::StrCat("127.0.0.1:", *port);
  std::vector<std::unique_ptr<Subprocess>> senders;
  for (const char* name : {"/a.bin", "/b.bin", "/weird name;rm.bin"}) {
    senders.push_back(Udpmsg({"send", "--reliable", target, "--file", in + name}));
    ASSERT_NE(senders.back(), nullptr);
  }
  for (auto& s : senders) EXPECT_EQ(Finish(*s, absl::Seconds(30)), 0) << s->stderr_text();
  EXPECT_EQ(Finish(*recv, absl::Seconds(30)), 0) << recv->stderr_text();
  const std::string log = recv->stderr_text();
  EXPECT_THAT(log, HasSubstr("2 shards, steered by connection id"));
  EXPECT_THAT(log, HasSubstr("(shard "));
  // Both shards' summaries, neither with a foreign connection id.
  size_t clean = 0;
  for (size_t at = log.find(" 0 unknown connection ids\n"); at != std::string::npos;
       at = log.find(" 0 unknown connection ids\n", at + 1)) {
    ++clean;
  }
  EXPECT_EQ(clean, 2u) << log;
  // The sender's name loses its directory and every unsafe byte.
  EXPECT_THAT(ListDir(out), UnorderedElementsAre("a.bin", "b.bin", "weird_name_rm.bin"));
  EXPECT_EQ(ReadFile(out + "/a.bin"), a);
  EXPECT_EQ(ReadFile(out + "/b.bin"), b);
  EXPECT_EQ(ReadFile(out + "/weird_name_rm.bin"), c);
}

TEST(RecvShardsTest, SameNameTwiceKeepsBothFiles) {
  const std::string in = MakeDir("in");
  const std::string out = MakeDir("out");
  const std::string a = WriteInput(in + "/same.bin", 200000, 4);
  std::unique_ptr<Subprocess> recv = Udpmsg({"recv", "--reliable", "--port", "0", "--bind",
                                             "127.0.0.1", "--out", out, "--count", "2"});
  ASSERT_NE(recv, nullptr);
  absl::StatusOr<std::string> line = recv->ReadStderrLine(kStartTimeout);
  ASSERT_TRUE(line.ok()) << line.status();
  absl::StatusOr<int> port = ParseListeningPort(*line);
  ASSERT_TRUE(port.ok()) << port.status();
  const std::string target = absl::StrCat("127.0.0.1:", *port);
  auto s1 = Udpmsg({"send", "--reliable", target, "--file", in + "/same.bin"});
  auto s2 = Udpmsg({"send", "--reliable", target, "--file", in + "/same.bin"});
  EXPECT_EQ(Finish(*s1, absl::Seconds(30)), 0) << s1->stderr_text();
  EXPECT_EQ(Finish(*s2, absl::Seconds(30)), 0) << s2->stderr_text();
  EXPECT_EQ(Finish(*recv, absl::Seconds(30)), 0) << recv->stderr_text();
  EXPECT_THAT(ListDir(out), UnorderedElementsAre("same.bin", "same.bin.1"));
  EXPECT_EQ(ReadFile(out + "/same.bin"), a);
  EXPECT_EQ(ReadFile(out + "/same.bin.1"), a);
}

TEST(RecvShardsTest, ThreadsNeedADirectory) {
  const std::string out = absl::StrCat(TempDir(), "/file.out");
  auto recv = Udpmsg({"recv", "--reliable", "--port", "0", "--out", out, "--threads", "2"});
  ASSERT_NE(recv, nullptr);
  EXPECT_EQ(Finish(*recv, absl::Seconds(10)), 2);
  EXPECT_THAT(recv->stderr_text(), HasSubstr("--threads N needs --out DIRECTORY"));
  auto bad = Udpmsg({"recv", "--reliable", "--port", "0", "--out", TempDir(), "--threads", "300"});
  ASSERT_NE(bad, nullptr);
  EXPECT_EQ(Finish(*bad, absl::Seconds(10)), 2);
  EXPECT_THAT(bad->stderr_text(), HasSubstr("--threads 300 outside [1, 256]"));
}

}  // namespace
}  // namespace udpmsg::testing
