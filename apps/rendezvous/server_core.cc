#include "apps/rendezvous/server_core.h"

#include <array>
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "apps/rendezvous/rendezvous.pb.h"
#include "udp/address_prefix.h"
#include "udpmsg/text.h"

namespace udpmsg::rendezvous {

std::string ServerStats::ToString() const {
  return absl::StrCat("registered=", registered, " lookups=", lookups,
                      " introductions=", introductions, " refused_taken=", refused_taken,
                      " refused_bad_name=", refused_bad_name, " refused_limit=", refused_limit,
                      " refused_unknown=", refused_unknown, " bad_messages=", bad_messages,
                      " relays_bound=", relays_bound);
}

ServerCore::ServerCore(const ServerOptions& options, RelayCore* relay)
    : options_(options), relay_(options.relay_port == 0 ? nullptr : relay) {}

void ServerCore::Send(uint64_t connection, const std::string& bytes) {
  replies_.push_back(Reply{connection, bytes});
}

void ServerCore::Refuse(uint64_t connection, uint64_t request, int code, std::string reason) {
  wire::ServerMessage m;
  wire::Refused* r = m.mutable_refused();
  r->set_request(request);
  r->set_code(static_cast<wire::Refused::Code>(code));
  r->set_reason(std::move(reason));
  Send(connection, m.SerializeAsString());
}

void ServerCore::OnConnected(absl::Time now, uint64_t connection, const udp::SocketAddress& peer) {
  Client c;
  c.peer = peer;
  c.lookups = chat::TokenBucket(options_.lookups_per_second, options_.lookup_burst, now);
  c.introductions_to =
      chat::TokenBucket(options_.introductions_per_second, options_.introduction_burst, now);
  c.prefix = udp::AddressPrefix(peer);
  clients_[connection] = std::move(c);
}

void ServerCore::OnPathChanged(absl::Time now, uint64_t connection,
                               const udp::SocketAddress& peer) {
  auto it = clients_.find(connection);
  if (it == clients_.end()) return;
  if (!it->second.name.empty()) {
    log_.push_back(absl::StrCat(it->second.name, " moved from ", it->second.peer.ToString(),
                                " to ", peer.ToString()));
  }
  it->second.peer = peer;
}

void ServerCore::OnMessage(absl::Time now, uint64_t connection, absl::string_view bytes) {
  auto it = clients_.find(connection);
  if (it == clients_.end()) return;  // not a connection we saw connect
  wire::ClientMessage m;
  if (!m.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    ++stats_.bad_messages;
    Refuse(connection, 0, wire::Refused::BAD_MESSAGE, "unparsable message");
    return;
  }
  switch (m.kind_case()) {
    case wire::ClientMessage::kRegister:
      OnRegister(connection, it->second, m.register_().name());
      return;
    case wire::ClientMessage::kLookup:
      OnLookup(now, connection, it->second, m.lookup().request(), m.lookup().name());
      return;
    case wire::ClientMessage::kPathChosen: {
      auto intro = introductions_.find(m.path_chosen().introduction());
      // Only the requester speaks for its introduction.
      if (intro == introductions_.end() || intro->second.requester != connection) return;
      if (m.path_chosen().direct()) {
        relay_->Release(intro->second.relay, "direct path chosen");
      } else {
        auto target = clients_.find(intro->second.target);
        log_.push_back(absl::StrCat(
            "relay ", intro->second.relay, ": relaying for ", it->second.peer.ToString(), " and ",
            target == clients_.end() ? std::string("(gone)") : target->second.peer.ToString()));
      }
      return;
    }
    default:
      ++stats_.bad_messages;
      Refuse(connection, 0, wire::Refused::BAD_MESSAGE, "unexpected message");
      return;
  }
}

void ServerCore::OnRegister(uint64_t connection, Client& client, absl::string_view name) {
  if (!ValidName(name)) {
    ++stats_.refused_bad_name;
    Refuse(connection, 0, wire::Refused::BAD_NAME,
           absl::StrCat("\"", DisplayablePrefix(name, kMaxNameBytes),
                        "\" is not a name (1 to 64 of A-Z a-z 0-9 . _ -, starting with a letter "
                        "or digit)"));
    return;
  }
  const std::string key(name);
  if (auto held = names_.find(key); held != names_.end() && held->second != connection) {
    ++stats_.refused_taken;
    Refuse(connection, 0, wire::Refused::NAME_TAKEN, absl::StrCat(key, " is taken"));
    return;
  }
  if (client.name != key) {
    const bool new_slot = client.name.empty();
    if (new_slot && names_.size() >= options_.max_names) {
      ++stats_.refused_limit;
      Refuse(connection, 0, wire::Refused::LIMIT,
             absl::StrCat("server full: ", options_.max_names, " names"));
      return;
    }
    if (new_slot && names_per_prefix_[client.prefix] >= options_.max_names_per_address) {
      ++stats_.refused_limit;
      Refuse(connection, 0, wire::Refused::LIMIT,
             absl::StrCat("too many names from ", client.peer.IpString(), " (",
                          options_.max_names_per_address, ")"));
      return;
    }
    if (new_slot) {
      ++names_per_prefix_[client.prefix];
    } else {
      names_.erase(client.name);
    }
    client.name = key;
    names_[key] = connection;
    ++stats_.registered;
    log_.push_back(absl::StrCat("registered ", key, " at ", client.peer.ToString()));
  }
  wire::ServerMessage m;
  m.mutable_registered()->set_name(key);
  m.mutable_registered()->set_reflexive(client.peer.ToString());
  Send(connection, m.SerializeAsString());
}

void ServerCore::OnLookup(absl::Time now, uint64_t connection, Client& client, uint64_t request,
                          absl::string_view name) {
  ++stats_.lookups;
  if (!client.lookups.Has(now, 1)) {
    ++stats_.refused_limit;
    Refuse(connection, request, wire::Refused::LIMIT,
           absl::StrCat("too many lookups (", options_.lookups_per_second, " a second)"));
    return;
  }
  client.lookups.Take(1);
  if (!ValidName(name)) {
    ++stats_.refused_bad_name;
    Refuse(connection, request, wire::Refused::BAD_NAME,
           absl::StrCat("\"", DisplayablePrefix(name, kMaxNameBytes), "\" is not a name"));
    return;
  }
  auto target_it = names_.find(std::string(name));
  if (target_it == names_.end()) {
    ++stats_.refused_unknown;
    Refuse(connection, request, wire::Refused::NOT_REGISTERED,
           absl::StrCat(name, " is not registered"));
    return;
  }
  const uint64_t target = target_it->second;
  if (target == connection) {
    ++stats_.refused_unknown;
    Refuse(connection, request, wire::Refused::NOT_REGISTERED,
           absl::StrCat(name, " is this connection's own name"));
    return;
  }
  if (relay_ != nullptr && client.introductions >= options_.max_introductions_per_connection) {
    ++stats_.refused_limit;
    Refuse(connection, request, wire::Refused::LIMIT,
           absl::StrCat("too many introductions at once (",
                        options_.max_introductions_per_connection, ")"));
    return;
  }
  Client& peer = clients_.at(target);
  if (!peer.introductions_to.Has(now, 1)) {
    ++stats_.refused_limit;
    Refuse(connection, request, wire::Refused::LIMIT,
           absl::StrCat(name, " is busy: too many introductions to it (",
                        options_.introductions_per_second, " a second); try again"));
    return;
  }
  peer.introductions_to.Take(1);
  const uint64_t id = next_intro_++;
  wire::ServerMessage to_requester;
  wire::ServerMessage to_target;
  wire::Introduction* a = to_requester.mutable_introduction();
  wire::Introduction* b = to_target.mutable_introduction();
  a->set_introduction(id);
  a->set_request(request);
  a->set_peer(peer.peer.ToString());
  b->set_introduction(id);
  b->set_peer(client.peer.ToString());
  if (relay_ != nullptr) {
    // Each side binds from the address its control connection proved.
    const auto live = relays_per_prefix_.find(client.prefix);
    absl::StatusOr<RelayCore::Allocation> alloc =
        live != relays_per_prefix_.end() && live->second >= options_.max_relays_per_address
            ? absl::ResourceExhaustedError(
                  absl::StrCat("too many relays for ", client.peer.IpString(), " (",
                               options_.max_relays_per_address, ")"))
            : relay_->Allocate(now, std::array<udp::SocketAddress, 2>{client.peer, peer.peer});
    if (alloc.ok()) {
      a->set_relay_port(options_.relay_port);
      b->set_relay_port(options_.relay_port);
      a->set_token(std::string(reinterpret_cast<const char*>(alloc->token[0].data()), kTokenBytes));
      b->set_token(std::string(reinterpret_cast<const char*>(alloc->token[1].data()), kTokenBytes));
      introductions_[id] = Intro{connection, target, alloc->id, client.prefix};
      ++relays_per_prefix_[client.prefix];
      by_relay_[alloc->id] = id;
      ++client.introductions;
    } else {
      log_.push_back(
          absl::StrCat("introduction ", id, " without a relay: ", alloc.status().message()));
    }
  }
  ++stats_.introductions;
  log_.push_back(absl::StrCat("introduced ", client.peer.ToString(), " to ", name, " at ",
                              peer.peer.ToString()));
  Send(connection, to_requester.SerializeAsString());
  Send(target, to_target.SerializeAsString());
}

void ServerCore::DropIntro(uint64_t id) {
  auto it = introductions_.find(id);
  if (it == introductions_.end()) return;
  if (auto c = clients_.find(it->second.requester); c != clients_.end()) --c->second.introductions;
  if (auto p = relays_per_prefix_.find(it->second.prefix);
      p != relays_per_prefix_.end() && --p->second == 0) {
    relays_per_prefix_.erase(p);
  }
  by_relay_.erase(it->second.relay);
  introductions_.erase(it);
}

void ServerCore::OnRelayEvent(absl::Time, const RelayCore::Event& event) {
  auto by = by_relay_.find(event.id);
  if (by == by_relay_.end()) return;
  const uint64_t id = by->second;
  const Intro intro = introductions_.at(id);
  if (event.type == RelayCore::Event::Type::kBound) {
    ++stats_.relays_bound;
    wire::ServerMessage m;
    m.mutable_relay_ready()->set_introduction(id);
    const std::string bytes = m.SerializeAsString();
    if (clients_.contains(intro.requester)) Send(intro.requester, bytes);
    if (clients_.contains(intro.target)) Send(intro.target, bytes);
    log_.push_back(absl::StrCat("relay ", event.id, ": bound ", event.side[0].ToString(), " and ",
                                event.side[1].ToString()));
    return;
  }
  log_.push_back(absl::StrCat("relay ", event.id, ": ended after ", event.bytes,
                              " bytes forwarded: ", event.reason));
  DropIntro(id);
}

void ServerCore::OnClosed(absl::Time now, uint64_t connection) {
  auto it = clients_.find(connection);
  if (it == clients_.end()) return;
  if (!it->second.name.empty()) {
    names_.erase(it->second.name);
    auto p = names_per_prefix_.find(it->second.prefix);
    if (p != names_per_prefix_.end() && --p->second == 0) names_per_prefix_.erase(p);
    log_.push_back(absl::StrCat("unregistered ", it->second.name));
  }
  // Relays of this connection's introductions (either side) end: the relay
  // reports kEnded, which drops the introduction.
  std::vector<uint64_t> relays;
  for (const auto& [id, intro] : introductions_) {
    if (intro.requester == connection || intro.target == connection) relays.push_back(intro.relay);
  }
  clients_.erase(it);
  for (uint64_t r : relays) {
    relay_->ReleaseAfter(now, r, kRelayCloseGrace, "a side's rendezvous connection closed");
  }
}

std::vector<ServerCore::Reply> ServerCore::TakeReplies() { return std::exchange(replies_, {}); }
std::vector<std::string> ServerCore::TakeLog() { return std::exchange(log_, {}); }

}  // namespace udpmsg::rendezvous
