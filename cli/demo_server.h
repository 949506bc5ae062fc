// The server side of `udpmsg demo`'s impaired link: one udpmsg::Host that
// is at the same time a chat server (a real chat::ServerCore) for the chat
// members and the receiving end of the data client (the numbered messages
// on channels 1..4, and a real transfer::Receiver writing to a MemorySink on
// channel 0).
//
// Usage (cli/demo_link.cc):
//   absl::StatusOr<std::unique_ptr<DemoServer>> server = DemoServer::Create(loopback);
//   (*server)->Start();                 // its own thread from here on
//   ... the chat members connect, join and talk ...
//   (*server)->ExpectDataClient();      // chat done: the next connection is data
//   ... the data client connects, sends the messages and the transfer ...
//   (*server)->Stop();                  // joins the thread
//   const DemoServer::Results& r = (*server)->results();
//
// Roles: a connection established before ExpectDataClient() is a chat peer
// (ServerCore decides whether it becomes a member); the first one after it is
// the data client, and any further one is closed. The demo's driver starts
// the data client only once both members have seen every chat line, so the
// server has seen their connections by then.
//
// Bounds: the chat core's own (ServerOptions); the receiver accepts at most
// `max_transfer_bytes`; tallies count numbered messages below kDemoMessages;
// the results keep the chat core's first 64 log lines.
//
// Ownership: owns its Host, core, receiver and sink. Threading: Create,
// Start, ExpectDataClient and Stop from the driver's thread (ExpectDataClient
// is an atomic flag); everything else runs on the server's thread, and
// results() may be read only after Stop().
#ifndef UDPMSG_CLI_DEMO_SERVER_H_
#define UDPMSG_CLI_DEMO_SERVER_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "apps/chat/server_core.h"
#include "apps/chat/server_on_host.h"
#include "apps/transfer/receiver.h"
#include "apps/transfer/sink.h"
#include "udpmsg/udpmsg.h"

namespace udpmsg::cli {

// The numbered messages sent in each delivery mode.
inline constexpr int kDemoMessages = 200;

// "message #N".
std::string DemoMessageText(int number);
// N for "message #N", -1 for anything else.
int DemoMessageNumber(absl::string_view text);

// What one receiver saw on one stream of numbered messages.
struct Tally {
  int delivered = 0;
  int intact = 0;
  int duplicates = 0;
  int out_of_order = 0;  // arrived after a higher number
  int highest = -1;
  std::vector<bool> seen = std::vector<bool>(kDemoMessages, false);

  void Add(int number, bool ok);
  // Distinct messages delivered.
  int unique() const { return delivered - duplicates; }
};

class DemoServer final {
 public:
  struct Results {
    std::map<uint32_t, Tally> tallies;  // by channel (1..4)
    // The transfer as the receiver saw it.
    transfer::Receiver::State transfer_state = transfer::Receiver::State::kAwaitingBegin;
    absl::Status transfer_status;
    std::string transfer_digest;  // 32 bytes once verified
    uint64_t transfer_received = 0;
    bool sink_committed = false;
    size_t sink_bytes = 0;
    absl::Time transfer_done = absl::InfiniteFuture();  // when the End verified
    size_t chat_members = 0;                            // members in the room at Stop()
    std::vector<std::string> log;                       // the chat core's first log lines (escaped)
    std::string error;  // the first failure of the server loop, if any
  };

  // Binds `bind` (port 0: a free port). The errno status of the bind.
  static absl::StatusOr<std::unique_ptr<DemoServer>> Create(const SocketAddress& bind,
                                                            uint64_t max_transfer_bytes);
  ~DemoServer();
  DemoServer(const DemoServer&) = delete;
  DemoServer& operator=(const DemoServer&) = delete;

  const SocketAddress& address() const { return address_; }
  void Start();
  void ExpectDataClient() { expect_data_ = true; }
  void Stop();
  const Results& results() const { return results_; }

 private:
  DemoServer(Host host, std::unique_ptr<chat::ServerCore> core, uint64_t max_transfer_bytes);

  void Loop();
  void OnEvent(const Event& e);
  void OnDataMessage(const Event& e);

  Host host_;
  SocketAddress address_;
  std::unique_ptr<chat::ServerCore> core_;
  chat::ServerOnHost chat_;  // drives core_ on host_
  transfer::MemorySink sink_;
  transfer::Receiver receiver_;
  std::optional<ConnectionId> data_;
  Results results_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> expect_data_{false};
};

}  // namespace udpmsg::cli

#endif  // UDPMSG_CLI_DEMO_SERVER_H_
