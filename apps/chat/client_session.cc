#include "apps/chat/client_session.h"

#include <algorithm>
#include <utility>

#include "apps/chat/rules.h"
#include "apps/chat/text.h"

namespace udpmsg::chat {

EndCause ClassifyClose(bool by_peer, bool timed_out, absl::string_view reason) {
  if (!by_peer || timed_out) return EndCause::kLost;
  return reason == "server shutting down" ? EndCause::kServerShutdown : EndCause::kRefused;
}

ClientSession::ClientSession(std::string nick, const SessionOptions& options)
    : options_(options), core_(std::move(nick)), rng_(options.seed) {}

std::string ClientSession::JoinMessage() const {
  return chat::JoinMessage(core_.nick(), token_, core_.last_seq());
}

absl::StatusOr<std::optional<ClientEvent>> ClientSession::OnServerMessage(
    absl::Time now, absl::string_view bytes) {
  absl::StatusOr<std::optional<ClientEvent>> e = core_.OnServerMessage(bytes);
  if (e.ok() && e->has_value() && (*e)->type == ClientEvent::Type::kWelcome) {
    joined_ = true;
    ever_joined_ = true;
    joined_at_ = now;
    token_ = (*e)->resume_token;
  }
  return e;
}

void ClientSession::OnSent(uint64_t seq, absl::string_view line) {
  std::string& kept = unconfirmed_[seq];
  if (texts_ < options_.max_unconfirmed && kept.empty()) {
    kept = Displayable(line);
    if (!kept.empty()) ++texts_;
  }
}

void ClientSession::OnAcked(uint64_t seq) {
  auto it = unconfirmed_.find(seq);
  if (it == unconfirmed_.end()) return;
  if (!it->second.empty()) --texts_;
  unconfirmed_.erase(it);
}

uint64_t ClientSession::NextRandom() {  // splitmix64
  uint64_t z = (rng_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

ClientSession::Ended ClientSession::OnEnded(absl::Time now, EndCause cause) {
  Ended end;
  for (auto& [seq, line] : unconfirmed_) {
    if (line.empty()) {
      ++end.unconfirmed_more;
    } else {
      end.unconfirmed.push_back(std::move(line));
    }
  }
  unconfirmed_.clear();
  texts_ = 0;
  if (joined_ && now - joined_at_ >= options_.stable_after) attempts_ = 0;
  joined_ = false;
  const size_t servers = std::max<size_t>(options_.servers, 1);
  if (!ever_joined_) {
    // The first connection: each address once, at once, then give up.
    if (cause != EndCause::kAttemptFailed || ++first_failures_ >= servers) return end;
    server_ = (server_ + 1) % servers;
    end.reconnect = true;
    end.delay = absl::ZeroDuration();
    return end;
  }
  end.reconnect = options_.reconnect && cause != EndCause::kRefused;
  if (!end.reconnect) return end;
  server_ = (server_ + 1) % servers;
  // d = min(max, first * 2^attempts), without overflowing the shift.
  absl::Duration d = options_.first_delay;
  for (int i = 0; i < attempts_ && d < options_.max_delay; ++i) d *= 2;
  d = std::min(d, options_.max_delay);
  const int64_t half_us = absl::ToInt64Microseconds(d) / 2;
  const uint64_t jitter = half_us > 0 ? NextRandom() % static_cast<uint64_t>(half_us + 1) : 0;
  end.delay = absl::Microseconds(half_us + static_cast<int64_t>(jitter));
  ++attempts_;
  return end;
}

}  // namespace udpmsg::chat
