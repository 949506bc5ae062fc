#include "apps/rendezvous/client_core.h"

#include <algorithm>
#include <utility>

#include "apps/rendezvous/rendezvous.pb.h"
#include "udpmsg/text.h"

namespace udpmsg::rendezvous {

namespace {
constexpr size_t kMaxReasonBytes = 256;
static_assert(ClientEvent::kNotRegistered == wire::Refused::NOT_REGISTERED);
static_assert(ClientEvent::kNameTaken == wire::Refused::NAME_TAKEN);
}  // namespace

ClientCore::ClientCore(absl::Time, const ClientOptions& options) : options_(options) {}

std::string ClientCore::Register(absl::string_view name) {
  wire::ClientMessage m;
  m.mutable_register_()->set_name(std::string(name));
  return m.SerializeAsString();
}

std::string ClientCore::Lookup(absl::string_view name, uint64_t* request) {
  *request = next_request_++;
  wire::ClientMessage m;
  m.mutable_lookup()->set_request(*request);
  m.mutable_lookup()->set_name(std::string(name));
  return m.SerializeAsString();
}

std::string ClientCore::PathChosen(uint64_t introduction, bool direct) {
  wire::ClientMessage m;
  m.mutable_path_chosen()->set_introduction(introduction);
  m.mutable_path_chosen()->set_direct(direct);
  return m.SerializeAsString();
}

void ClientCore::OnMessage(absl::Time now, absl::string_view bytes) {
  wire::ServerMessage m;
  if (!m.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    ++bad_messages_;
    return;
  }
  const auto parse = [this](const std::string& text) -> std::optional<udp::SocketAddress> {
    absl::StatusOr<udp::SocketAddress> a = udp::SocketAddress::Parse(text);
    if (!a.ok() || a->family() != options_.server.Unmapped().family() || a->port() == 0) {
      return std::nullopt;
    }
    return *a;
  };
  ClientEvent e;
  switch (m.kind_case()) {
    case wire::ServerMessage::kRegistered: {
      std::optional<udp::SocketAddress> a = parse(m.registered().reflexive());
      if (!a) {
        ++bad_messages_;
        return;
      }
      e.type = ClientEvent::Type::kRegistered;
      e.name = DisplayablePrefix(m.registered().name(), kMaxReasonBytes);
      e.reflexive = *a;
      break;
    }
    case wire::ServerMessage::kRefused:
      e.type = ClientEvent::Type::kRefused;
      e.request = m.refused().request();
      e.code = m.refused().code();
      e.reason = DisplayablePrefix(m.refused().reason(), kMaxReasonBytes);
      break;
    case wire::ServerMessage::kRelayReady:
      e.type = ClientEvent::Type::kRelayReady;
      e.introduction = m.relay_ready().introduction();
      StopPunching(e.introduction, /*peer=*/false, /*relay=*/true);
      break;
    case wire::ServerMessage::kIntroduction: {
      const wire::Introduction& in = m.introduction();
      std::optional<udp::SocketAddress> peer = parse(in.peer());
      if (!peer || in.introduction() == 0 || intros_.contains(in.introduction())) {
        ++bad_messages_;
        return;
      }
      e.type = ClientEvent::Type::kIntroduced;
      e.introduction = in.introduction();
      e.request = in.request();
      e.peer = *peer;
      Intro intro;
      intro.peer = *peer;
      intro.start = now;
      intro.next_punch = now;
      if (in.relay_port() != 0 && in.relay_port() <= 65535 && in.token().size() == kTokenBytes) {
        udp::SocketAddress relay = options_.server.Unmapped();
        relay.set_port(static_cast<uint16_t>(in.relay_port()));
        e.relay = relay;
        intro.relay = relay;
        Token t;
        std::copy(in.token().begin(), in.token().end(), t.begin());
        intro.bind = BindPayload(t);
        intro.next_bind = now;
      }
      while (intros_.size() >= options_.max_introductions) intros_.erase(intros_.begin());
      intros_[e.introduction] = std::move(intro);
      break;
    }
    default:
      ++bad_messages_;
      return;
  }
  events_.push_back(std::move(e));
  Schedule(now);
}

void ClientCore::StopPunching(uint64_t introduction, bool peer, bool relay) {
  auto it = intros_.find(introduction);
  if (it == intros_.end()) return;
  if (peer) it->second.next_punch = absl::InfiniteFuture();
  if (relay) it->second.next_bind = absl::InfiniteFuture();
  if (it->second.next_punch == absl::InfiniteFuture() &&
      it->second.next_bind == absl::InfiniteFuture()) {
    intros_.erase(it);
  }
}

void ClientCore::Schedule(absl::Time now) {
  for (auto it = intros_.begin(); it != intros_.end();) {
    Intro& in = it->second;
    if (in.next_punch <= now) {
      if (now - in.start >= options_.open_for + options_.punch_for) {
        in.next_punch = absl::InfiniteFuture();
      } else if (now - in.start < options_.open_for) {  // opening phase: low TTL
        punches_.push_back(Punch{in.peer, std::string(kPunchPayload), kOpeningTtl});
        in.next_punch = std::min(now + options_.open_interval, in.start + options_.open_for);
      } else {
        punches_.push_back(Punch{in.peer, std::string(kPunchPayload), 0});
        in.next_punch = now + options_.punch_interval;
      }
    }
    if (in.next_bind <= now) {
      if (now - in.start >= options_.bind_for) {
        in.next_bind = absl::InfiniteFuture();
      } else {
        punches_.push_back(Punch{*in.relay, in.bind, 0});
        in.next_bind = now + options_.bind_interval;
      }
    }
    if (in.next_punch == absl::InfiniteFuture() && in.next_bind == absl::InfiniteFuture()) {
      it = intros_.erase(it);
    } else {
      ++it;
    }
  }
}

void ClientCore::OnTimeout(absl::Time now) { Schedule(now); }

absl::Time ClientCore::NextTimeout() const {
  absl::Time t = absl::InfiniteFuture();
  for (const auto& [id, in] : intros_) t = std::min({t, in.next_punch, in.next_bind});
  return t;
}

std::vector<Punch> ClientCore::TakePunches() { return std::exchange(punches_, {}); }
std::vector<ClientEvent> ClientCore::TakeEvents() { return std::exchange(events_, {}); }

}  // namespace udpmsg::rendezvous
