#include "apps/chat/server_on_host.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "apps/chat/rules.h"

namespace udpmsg::chat {

CloseCause CloseCauseFor(CloseReason reason, bool by_peer) {
  // By the peer with a timeout's code: its transport gave up on the path
  // (its Close, or its answer to our first packet after an outage).
  if (IsTimeout(reason)) return by_peer ? CloseCause::kPeerTimedOut : CloseCause::kTimedOut;
  return by_peer ? CloseCause::kClosedByPeer : CloseCause::kLost;
}

void ServerOnHost::OnEvent(absl::Time now, const Event& e) {
  switch (e.type) {
    case Event::Type::kConnected:
      core_->OnConnected(now, e.connection, e.peer.ToString());
      break;
    case Event::Type::kMessage:
      if (e.channel == kChannel) core_->OnMessage(now, e.connection, e.message);
      break;
    case Event::Type::kClosed:
      core_->OnClosed(now, e.connection, CloseCauseFor(e.close_reason, e.by_peer), e.reason);
      break;
    case Event::Type::kAcked:  // opens the member's window for its backlog
      if (e.channel == kChannel) core_->OnAcked(now, e.connection, e.bytes);
      break;
    case Event::Type::kPathChanged:
      // The member keeps the address key it joined from (server_core.h,
      // "Addresses"): the connection follows the move by itself.
      break;
  }
  Execute(now);
}

void ServerOnHost::OnTick(absl::Time now) {
  core_->OnTick(now);
  Execute(now);
}

void ServerOnHost::OnRoom(absl::Time now) {
  core_->OnRoom(now);
  Execute(now);
}

void ServerOnHost::Shutdown(absl::Time now) {
  core_->Shutdown(now);
  Execute(now);
}

void ServerOnHost::Execute(absl::Time now) {
  for (;;) {
    std::vector<ServerAction> actions = core_->TakeActions();
    if (actions.empty()) return;
    std::vector<std::pair<PeerId, std::string>> failed;
    for (ServerAction& a : actions) {
      switch (a.type) {
        case ServerAction::Type::kSend: {
          absl::StatusOr<uint64_t> seq =
              host_->Send(a.peer, kChannel, DeliveryMode::kReliableOrdered, std::move(a.bytes));
          if (!seq.ok()) failed.push_back({a.peer, std::string(seq.status().message())});
          break;
        }
        case ServerAction::Type::kClose:
          (void)host_->Close(a.peer, a.reason, a.flush);  // Close cuts it to the wire limit
          break;
        case ServerAction::Type::kLog:
          if (log_) log_(std::move(a.text));
          break;
      }
    }
    for (const auto& [peer, why] : failed) {
      // A connection that is already closed reports its own kClosed.
      if (host_->IsEstablished(peer)) core_->OnSendFailed(now, peer, why);
    }
  }
}

}  // namespace udpmsg::chat
