#include "cli/demo_server.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "apps/chat/rules.h"
#include "apps/chat/sequencer.h"

namespace udpmsg::cli {
namespace {

// The chat core's log lines kept (a demo run makes a handful).
constexpr size_t kMaxLogLines = 64;

}  // namespace

std::string DemoMessageText(int number) { return absl::StrCat("message #", number); }

int DemoMessageNumber(absl::string_view text) {
  int n = -1;
  if (absl::ConsumePrefix(&text, "message #")) {
    if (!absl::SimpleAtoi(text, &n)) n = -1;
  }
  return n;
}

void Tally::Add(int number, bool ok) {
  ++delivered;
  if (number < 0 || number >= kDemoMessages) return;
  if (seen[number]) {
    ++duplicates;
    return;
  }
  seen[number] = true;
  intact += ok;
  if (number < highest) ++out_of_order;
  highest = std::max(highest, number);
}

absl::StatusOr<std::unique_ptr<DemoServer>> DemoServer::Create(const SocketAddress& bind,
                                                               uint64_t max_transfer_bytes) {
  HostOptions options;
  options.bind = bind;
  options.accept_incoming = true;
  absl::StatusOr<Host> host = Host::Create(options);
  if (!host.ok()) return host.status();
  absl::StatusOr<std::unique_ptr<chat::ServerCore>> core =
      chat::ServerCore::Create(chat::ServerOptions{}, std::make_unique<chat::LocalSequencer>());
  if (!core.ok()) return core.status();
  return std::unique_ptr<DemoServer>(
      new DemoServer(*std::move(host), *std::move(core), max_transfer_bytes));
}

DemoServer::DemoServer(Host host, std::unique_ptr<chat::ServerCore> core,
                       uint64_t max_transfer_bytes)
    : host_(std::move(host)),
      address_(host_.local_address()),
      core_(std::move(core)),
      chat_(&host_, core_.get(),
            [this](std::string line) {
              if (results_.log.size() < kMaxLogLines) results_.log.push_back(std::move(line));
            }),
      receiver_(&sink_, transfer::Receiver::Options{.max_bytes = max_transfer_bytes}) {}

DemoServer::~DemoServer() { Stop(); }

void DemoServer::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void DemoServer::Stop() {
  if (!thread_.joinable()) return;
  stop_ = true;
  host_.Wake();
  thread_.join();
  results_.transfer_state = receiver_.state();
  results_.transfer_status = receiver_.status();
  results_.transfer_digest = receiver_.digest();
  results_.transfer_received = receiver_.received();
  results_.sink_committed = sink_.committed();
  results_.sink_bytes = sink_.data().size();
  results_.chat_members = core_->member_count();
}

void DemoServer::Loop() {
  while (!stop_) {
    absl::StatusOr<Host::PollResult> r = host_.Poll(absl::Milliseconds(100));
    if (!r.ok()) {
      results_.error = std::string(r.status().message());
      return;
    }
    for (const Event& e : r->events) OnEvent(e);
    chat_.OnTick(absl::Now());
  }
}

void DemoServer::OnEvent(const Event& e) {
  const absl::Time now = absl::Now();
  const bool is_data = data_.has_value() && *data_ == e.connection;
  switch (e.type) {
    case Event::Type::kConnected:
      if (!expect_data_) {
        chat_.OnEvent(now, e);
      } else if (!data_.has_value()) {
        data_ = e.connection;
      } else {
        (void)host_.Close(e.connection, "the demo has one data client", false);
      }
      break;
    case Event::Type::kMessage:
      if (is_data) {
        OnDataMessage(e);
      } else {
        chat_.OnEvent(now, e);
      }
      break;
    case Event::Type::kClosed:
      if (is_data) {
        receiver_.OnConnectionClosed(e.reason);
      } else {
        chat_.OnEvent(now, e);
      }
      break;
    case Event::Type::kAcked:
      // The chat core hands each member its backlog as acknowledgements
      // open the member's window (ServerCore::OnAcked).
      if (!is_data) chat_.OnEvent(now, e);
      break;
    case Event::Type::kPathChanged:  // the connection follows; nothing to do
      break;
  }
}

// Channel 0 is the transfer protocol; channels 1..4 the numbered messages.
void DemoServer::OnDataMessage(const Event& e) {
  if (e.channel != 0) {
    const int n = DemoMessageNumber(e.message);
    results_.tallies[e.channel].Add(n, e.message == DemoMessageText(n));
    return;
  }
  const bool was_finished = receiver_.finished();
  (void)receiver_.OnMessage(e.message);  // a rejection shows in state() and status()
  for (std::string& reply : receiver_.TakeReplies()) {
    (void)host_.Send(*data_, 0, DeliveryMode::kReliableOrdered, std::move(reply));
  }
  if (!was_finished && receiver_.state() == transfer::Receiver::State::kComplete) {
    results_.transfer_done = absl::Now();
  }
  // A rejected transfer ends the connection (after the Result); a completed
  // one stays open: the client's numbered messages may still be in flight.
  if (!was_finished && receiver_.state() == transfer::Receiver::State::kFailed) {
    (void)host_.Close(*data_, "transfer rejected", true);
  }
}

}  // namespace udpmsg::cli
