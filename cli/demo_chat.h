// The chat part of `udpmsg demo`'s impaired link: two members, alice and
// bob, each a real chat::ClientCore on its own udpmsg::Host (so its own
// reliable connection through the impaired proxy) to the demo's chat server
// (cli/demo_server.h).
//
// Usage (cli/demo_link.cc):
//   absl::StatusOr<DemoChat> chat = RunDemoChat(proxy_address, loopback, deadline);
//   if (!chat.ok()) return chat.status();
//   for (const std::string& line : chat->alice_display) std::printf("%s\n", line.c_str());
//
// The script: both connect; alice joins, then bob; then they say
// kDemoChatLines in turn (alice, bob, alice, bob), each speaker waiting until
// both members show the previous line, as people taking turns would; then
// both leave. The server's Sequencer puts every line in one total order, and
// the demo checks that both members saw every line once, in the same order.
//
// Threading: runs on the caller's thread; the server runs on its own.
#ifndef UDPMSG_CLI_DEMO_CHAT_H_
#define UDPMSG_CLI_DEMO_CHAT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "udpmsg/udpmsg.h"

namespace udpmsg::cli {

// What alice and bob say, in turn (alice first).
inline constexpr const char* kDemoChatLines[] = {
    "hi bob, the link drops one packet in ten",
    "and yet this arrives in order",
    "reliable-ordered: retransmitted in new packets",
    "see you in the stats below",
};

struct DemoChat {
  // Every line alice's ClientCore delivered, as the chat client shows it
  // (without the time): "*** bob joined", "<alice> hi bob, ...", ...
  std::vector<std::string> alice_display;
};

// Runs the script against the chat server at `server` (the proxy in front of
// it), with both members' hosts bound to `bind`. At the end both members
// leave as `chat join` does on /quit (a Leave, then a flushing close) and
// wait for their connections to close.
// DATA_LOSS when a member missed a line, saw one twice, or the two members
// saw different orders; DEADLINE_EXCEEDED when a step does not finish by
// `deadline`; UNAVAILABLE when a member's connection closed; the member's
// ClientCore status for a bad server message; Host errors otherwise. Every
// message names the member.
absl::StatusOr<DemoChat> RunDemoChat(const SocketAddress& server, const SocketAddress& bind,
                                     absl::Time deadline);

}  // namespace udpmsg::cli

#endif  // UDPMSG_CLI_DEMO_CHAT_H_
