// --encrypt, --key-file and `udpmsg keygen`, end to end with the binary.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/cli/subprocess.h"

namespace udpmsg::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

constexpr absl::Duration kTimeout = absl::Seconds(20);

std::string TempDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

std::unique_ptr<Subprocess> Udpmsg(std::vector<std::string> args) {
  args.insert(args.begin(), UdpmsgPath());
  absl::StatusOr<std::unique_ptr<Subprocess>> p = Subprocess::Start(args);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *std::move(p) : nullptr;
}

int Finish(Subprocess& p) {
  absl::StatusOr<int> code = p.Wait(kTimeout);
  EXPECT_TRUE(code.ok()) << code.status();
  return code.ok() ? *code : -1;
}

// Runs `udpmsg keygen` into a file; returns its path.
std::string KeyFile(const std::string& name) {
  auto p = Udpmsg({"keygen"});
  EXPECT_EQ(Finish(*p), 0);
  EXPECT_THAT(p->stdout_text(), MatchesRegex("[0-9a-f]{64}\n"));
  const std::string path = absl::StrCat(TempDir(), "/", name);
  std::ofstream(path) << p->stdout_text();
  return path;
}

struct Server {
  std::unique_ptr<Subprocess> process;
  int port = 0;
};

Server Start(std::vector<std::string> args) {
  Server s;
  s.process = Udpmsg(std::move(args));
  absl::StatusOr<std::string> line = s.process->ReadStderrLine(kTimeout);
  EXPECT_TRUE(line.ok()) << line.status();
  absl::StatusOr<int> port = ParseListeningPort(line.ok() ? *line : "");
  EXPECT_TRUE(port.ok()) << port.status();
  s.port = port.ok() ? *port : 0;
  return s;
}

TEST(SecurityTest, KeygenMakesDistinctKeys) {
  const std::string a = KeyFile("a.key");
  const std::string b = KeyFile("b.key");
  std::ifstream fa(a), fb(b);
  std::string ka, kb;
  fa >> ka;
  fb >> kb;
  EXPECT_NE(ka, kb);
}

TEST(SecurityTest, ChatRoomKeyAdmitsHoldersAndRefusesOthersWithAReason) {
  const std::string room = KeyFile("room.key");
  const std::string other = KeyFile("other.key");
  Server server = Start({"chat", "serve", "--port", "0", "--key-file", room});
  const std::string target = absl::StrCat("127.0.0.1:", server.port);

  auto member = Udpmsg({"chat", "join", target, "--nick", "alice", "--key-file", room});
  absl::StatusOr<std::string> line = member->ReadStdoutLine(kTimeout);
  ASSERT_TRUE(line.ok()) << line.status() << member->stderr_text();
  EXPECT_THAT(*line, HasSubstr("connected to"));

  auto wrong = Udpmsg({"chat", "join", target, "--nick", "mallory", "--key-file", other});
  EXPECT_EQ(Finish(*wrong), 1);
  EXPECT_THAT(wrong->stderr_text(), HasSubstr("wrong room key"));

  auto keyless = Udpmsg({"chat", "join", target, "--nick", "eve"});
  EXPECT_EQ(Finish(*keyless), 1);
  EXPECT_THAT(keyless->stderr_text(), HasSubstr("requires encryption"));

  ASSERT_TRUE(member->WriteStdin("still private\n").ok());
  bool seen = false;
  while (!seen) {
    absl::StatusOr<std::string> l = member->ReadStdoutLine(kTimeout);
    ASSERT_TRUE(l.ok()) << l.status();
    seen = *l == "<alice> still private";
  }
  member->CloseStdin();
  EXPECT_EQ(Finish(*member), 0);
}

TEST(SecurityTest, MissingKeyFileIsAClearError) {
  auto p = Udpmsg({"chat", "join", "127.0.0.1:9", "--nick", "x", "--key-file", "/nonexistent.key"});
  EXPECT_NE(Finish(*p), 0);
  EXPECT_THAT(p->stderr_text(), HasSubstr("/nonexistent.key"));
}

TEST(SecurityTest, EncryptedTransferThroughALossyProxyArrivesIntact) {
  const std::string out = absl::StrCat(TempDir(), "/encrypted.out");
  Server recv = Start({"recv", "--reliable", "--encrypt", "--port", "0", "--out", out});
  Server proxy = Start({"impair", "--listen", "0", "--to", absl::StrCat("127.0.0.1:", recv.port),
                        "--loss", "5%", "--dup", "2%", "--seed", "5"});
  std::string message(200000, '\0');
  for (size_t i = 0; i < message.size(); ++i) message[i] = static_cast<char>('a' + i % 26);
  const std::string in = absl::StrCat(TempDir(), "/encrypted.in");
  std::ofstream(in) << message;
  auto send = Udpmsg({"send", "--reliable", "--encrypt", absl::StrCat("127.0.0.1:", proxy.port),
                      "--file", in});
  EXPECT_EQ(Finish(*send), 0) << send->stderr_text();
  EXPECT_EQ(Finish(*recv.process), 0) << recv.process->stderr_text();
  std::ifstream got(out);
  std::string text((std::istreambuf_iterator<char>(got)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(text == message);
  proxy.process->Kill(15);
  EXPECT_EQ(Finish(*proxy.process), 0);

  // A plain sender cannot talk to an encrypting receiver.
  Server recv2 = Start({"recv", "--reliable", "--encrypt", "--port", "0", "--out", out + "2"});
  auto plain = Udpmsg({"send", "--reliable", absl::StrCat("127.0.0.1:", recv2.port), "hi"});
  EXPECT_EQ(Finish(*plain), 1);
  EXPECT_THAT(plain->stderr_text(), HasSubstr("requires encryption"));
  recv2.process->Kill(15);
}

// `udpmsg keygen --identity FILE`: the file (mode 0600) and its fingerprint.
std::string IdentityFile(const std::string& name, std::string* fingerprint) {
  const std::string path = absl::StrCat(TempDir(), "/", name);
  ::unlink(path.c_str());
  auto p = Udpmsg({"keygen", "--identity", path});
  EXPECT_EQ(Finish(*p), 0) << p->stderr_text();
  EXPECT_THAT(p->stdout_text(), MatchesRegex("udpmsg-id:[0-9a-f]{40}\n"));
  *fingerprint = std::string(absl::StripTrailingAsciiWhitespace(p->stdout_text()));
  struct stat st;
  EXPECT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  return path;
}

TEST(SecurityTest, KnownHostsRecordsTheFirstServerAndRefusesAnotherIdentityOnItsAddress) {
  std::string first_id, second_id;
  const std::string first = IdentityFile("first.id", &first_id);
  const std::string second = IdentityFile("second.id", &second_id);
  ASSERT_NE(first_id, second_id);
  const std::string known_hosts = absl::StrCat(TempDir(), "/known_hosts");
  ::unlink(known_hosts.c_str());
  const std::string out = absl::StrCat(TempDir(), "/identity.out");

  // First use: the server's identity is recorded, and the transfer works.
  Server recv = Start({"recv", "--reliable", "--port", "0", "--out", out, "--identity", first});
  const std::string target = absl::StrCat("127.0.0.1:", recv.port);
  auto send = Udpmsg({"send", "--reliable", "--encrypt", target, "--known_hosts", known_hosts,
                      "hello"});
  EXPECT_EQ(Finish(*send), 0) << send->stderr_text();
  EXPECT_EQ(Finish(*recv.process), 0) << recv.process->stderr_text();
  std::ifstream in(known_hosts);
  std::string recorded((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(recorded, absl::StrCat(target, " ", first_id, "\n"));
  struct stat st;
  ASSERT_EQ(::stat(known_hosts.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // Another server on the same address: refused, naming both fingerprints.
  Server fake = Start({"recv", "--reliable", "--port", absl::StrCat(recv.port), "--out",
                       out + "2", "--identity", second});
  auto refused = Udpmsg({"send", "--reliable", "--encrypt", target, "--known_hosts",
                         known_hosts, "secret"});
  EXPECT_EQ(Finish(*refused), 1);
  EXPECT_THAT(refused->stderr_text(),
              HasSubstr(absl::StrCat("server ", target, " presented ", second_id, ", expected ",
                                     first_id)));
  EXPECT_THAT(refused->stderr_text(), HasSubstr(absl::StrCat(known_hosts, " line 1")));
  fake.process->Kill(15);
  Finish(*fake.process);
  EXPECT_THAT(fake.process->stderr_text(), ::testing::Not(HasSubstr("receiving from")));
}

}  // namespace
}  // namespace udpmsg::testing
