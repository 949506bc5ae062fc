// libFuzzer entry for chat::ServerCore: a sequence of peer events (connect,
// raw message bytes, well-formed ClientMessages built from the input, close,
// send failure, time passing) from up to 6 peers, with every action checked:
//   - members <= max_members, pending <= max_pending, member nicks valid
//     and distinct case-insensitively
//   - every sent message parses as a ServerMessage, goes to a peer that
//     connected and was not reported closed
//   - line numbers never go back; one number is one line (the same bytes)
//   - lines go only to members; a Welcome lists exactly the members
//   - log lines hold no control characters (peer text is escaped)
// Aborts on a violation.
//
// Built with libFuzzer by `fuzz/run.sh chat_server`, and with the normal
// toolchain into //fuzz:chat_server_fuzz_smoke, which calls the entry.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "apps/chat/chat.pb.h"
#include "apps/chat/rules.h"
#include "apps/chat/sequencer.h"
#include "apps/chat/server_core.h"
#include "apps/chat/text.h"
#include "fuzz/fuzz_input.h"
#include "google/protobuf/stubs/logging.h"

namespace {

using udpmsg::chat::ClientMessage;
using udpmsg::chat::PeerId;
using udpmsg::chat::ServerAction;
using udpmsg::chat::ServerCore;
using udpmsg::chat::ServerMessage;

constexpr size_t kMaxMembers = 4;
constexpr size_t kMaxPending = 3;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "chat_server_fuzzer: %s\n", what.c_str());
  std::abort();
}

using Input = ::udpmsg::fuzz::FuzzInput;

class Checker {
 public:
  explicit Checker(ServerCore* core) : core_(core) {}

  void Connected(PeerId p) { live_.insert(p); }
  void Closed(PeerId p) { live_.erase(p); }

  void Check() {
    const std::vector<ServerAction> actions = core_->TakeActions();
    const std::vector<std::string> members = core_->Members();
    if (members.size() > kMaxMembers) Die("too many members");
    if (core_->pending_count() > kMaxPending) Die("too many pending");
    std::set<std::string> keys;
    for (const std::string& n : members) {
      if (!udpmsg::chat::CheckNick(n).ok()) Die(absl::StrCat("invalid member nick ", n));
      if (!keys.insert(udpmsg::chat::NickKey(n)).second) Die("duplicate nick " + n);
    }
    // A member replaced or removed later in the same batch (two probes
    // ending in one tick) was sent lines while it was one; it is closed
    // after them in the batch.
    std::set<PeerId> closed_later;
    for (const ServerAction& a : actions) {
      if (a.type == ServerAction::Type::kClose) closed_later.insert(a.peer);
    }
    std::vector<size_t> welcome_sizes;  // each Welcome's list, in order
    for (const ServerAction& a : actions) {
      if (a.type == ServerAction::Type::kLog) {
        for (char c : a.text) {
          const unsigned char u = static_cast<unsigned char>(c);
          if (u < 0x20 || u == 0x7f) Die("control character in log line: " + a.text);
        }
        continue;
      }
      if (a.type == ServerAction::Type::kClose) continue;
      if (live_.count(a.peer) == 0) Die(absl::StrCat("send to unknown peer ", a.peer));
      ServerMessage m;
      if (!m.ParseFromString(a.bytes)) Die("unparseable ServerMessage");
      if (m.has_line()) {
        if (core_->NickOf(a.peer).empty() && closed_later.count(a.peer) == 0) {
          Die(absl::StrCat("line to non-member ", a.peer));
        }
        const uint64_t seq = m.line().seq();
        if (seq < last_seq_) Die(absl::StrCat("line number went back: ", seq, " < ", last_seq_));
        if (seq == last_seq_ && a.bytes != last_line_) Die("one number, two lines");
        last_seq_ = seq;
        last_line_ = a.bytes;
      }
      if (m.has_welcome()) {
        welcome_sizes.push_back(m.welcome().members_size());
        static_assert(kMaxMembers <= udpmsg::chat::kMaxListedNicks, "every member is listed");
        if (static_cast<uint64_t>(m.welcome().members_size()) != m.welcome().member_count()) {
          Die("welcome's member_count is not its list's");
        }
        std::set<std::string> listed;
        bool self = false;
        for (const std::string& n : m.welcome().members()) {
          if (!listed.insert(udpmsg::chat::NickKey(n)).second) Die("welcome lists a nick twice");
          self = self || n == m.welcome().nick();
        }
        if (!self) Die("welcome does not list its own nick");
        if (core_->NickOf(a.peer) != m.welcome().nick()) Die("welcome to the wrong nick");
      }
    }
    // The room may change after a Welcome within the batch (two probes
    // ending in one tick: a takeover, then a join): only a batch with one
    // Welcome and no Close must end with the room its Welcome lists.
    if (welcome_sizes.size() == 1 && closed_later.empty() &&
        welcome_sizes[0] != members.size()) {
      Die("welcome does not list the members");
    }
  }

 private:
  ServerCore* core_;
  std::set<PeerId> live_;
  uint64_t last_seq_ = 0;
  std::string last_line_;
};

// Strings as a real client sends them: valid UTF-8 (raw bytes, invalid ones
// included, arrive through the raw-message event).
std::string Text(Input& in, size_t n) { return udpmsg::chat::ValidUtf8(in.Take(n)); }

std::string Build(Input& in) {
  ClientMessage m;
  switch (in.Byte() % 7) {
    case 0:
      m.mutable_join()->set_nick(Text(in, in.Byte() % 40));
      break;
    case 1:
      m.mutable_say()->set_text(Text(in, in.Byte()));
      break;
    case 2:
      m.mutable_me()->set_action(Text(in, in.Byte()));
      break;
    case 3:
      m.mutable_private_message()->set_to(Text(in, in.Byte() % 40));
      m.mutable_private_message()->set_text(Text(in, in.Byte()));
      break;
    case 4:
      m.mutable_rename()->set_nick(Text(in, in.Byte() % 40));
      break;
    case 5:
      m.mutable_who();
      break;
    default:
      m.mutable_leave();
      break;
  }
  return m.SerializeAsString();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Invalid UTF-8 in a string field fails the parse (checked) and makes
  // protobuf log an error line per message: silence that.
  static const bool quiet = [] {
    google::protobuf::SetLogHandler(nullptr);
    return true;
  }();
  (void)quiet;
  Input in(absl::string_view(reinterpret_cast<const char*>(data), size));
  udpmsg::chat::ServerOptions options;
  options.max_members = kMaxMembers;
  options.max_pending = kMaxPending;
  options.join_timeout = absl::Seconds(5);
  absl::StatusOr<std::unique_ptr<ServerCore>> created =
      ServerCore::Create(options, std::make_unique<udpmsg::chat::LocalSequencer>());
  if (!created.ok()) Die(std::string(created.status().message()));
  ServerCore& core = **created;
  Checker checker(&core);
  absl::Time now = absl::FromUnixSeconds(1'700'000'000);
  while (!in.empty()) {
    const uint8_t op = in.Byte() % 7;
    const PeerId peer = 1 + in.Byte() % 6;
    switch (op) {
      case 0:
        checker.Connected(peer);
        // Peers 1 and 4, 2 and 5, 3 and 6 share an address: a Join for a
        // nick held from the joiner's address starts a probe.
        core.OnConnected(now, peer, absl::StrCat("10.0.0.", 1 + (peer - 1) % 3, ":", 5000 + peer));
        break;
      case 1: {
        const size_t n = (size_t{in.Byte()} << 8) | in.Byte();
        core.OnMessage(now, peer, in.Take(n));
        break;
      }
      case 2:
        checker.Closed(peer);
        core.OnClosed(now, peer, static_cast<udpmsg::chat::CloseCause>(in.Byte() % 4),
                      in.Take(in.Byte() % 32));
        break;
      case 3:
        core.OnSendFailed(now, peer, in.Take(in.Byte() % 32));
        break;
      case 4:
        now += absl::Milliseconds(100) * in.Byte();
        core.OnTick(now);
        if (core.pending_count() > 0 && core.NextDeadline() <= now) Die("expired pending left");
        break;
      case 5:
        core.OnMessage(now, peer, Build(in));
        break;
      default:
        now += absl::Milliseconds(in.Byte());
        break;
    }
    checker.Check();
  }
  return 0;
}
