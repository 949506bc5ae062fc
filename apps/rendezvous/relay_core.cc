#include "apps/rendezvous/relay_core.h"

#include <sodium.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "proto/frames.h"
#include "udp/address_prefix.h"

namespace udpmsg::rendezvous {

std::string BindPayload(const Token& token) {
  std::string out(kBindPrefix);
  out.append(reinterpret_cast<const char*>(token.data()), token.size());
  return out;
}

std::string RelayStats::ToString() const {
  return absl::StrCat("allocated=", allocated, " refused_full=", refused_full, " binds=", binds,
                      " bad_binds=", bad_binds, " bind_conflicts=", bind_conflicts,
                      " bind_wrong_address=", bind_wrong_address,
                      " busy_address=", busy_address, " unbound_dropped=", unbound_dropped,
                      " rate_dropped=", rate_dropped, " forwarded=", forwarded, "/",
                      forwarded_bytes, "B ended=", ended);
}

RelayCore::RelayCore(absl::Time now, const RelayOptions& options)
    : options_(options), next_sweep_(now + kSweepInterval) {
  if (options_.seed != 0) rng_.emplace(options_.seed);
}

Token RelayCore::NewToken() {
  Token t;
  if (rng_) {
    for (size_t i = 0; i < t.size(); i += 8) {
      const uint64_t r = rng_->Next();
      for (size_t j = 0; j < 8 && i + j < t.size(); ++j)
        t[i + j] = static_cast<uint8_t>(r >> (8 * j));
    }
  } else {
    randombytes_buf(t.data(), t.size());
  }
  return t;
}

absl::StatusOr<RelayCore::Allocation> RelayCore::Allocate(
    absl::Time now, const std::optional<std::array<udp::SocketAddress, 2>>& sides) {
  if (relays_.size() >= options_.max_relays) {
    ++stats_.refused_full;
    return absl::ResourceExhaustedError(
        absl::StrCat("relay full: ", options_.max_relays, " allocations live"));
  }
  Allocation a;
  a.id = next_id_++;
  Relay r;
  r.created = now;
  r.last_forward = now;
  r.rate = chat::TokenBucket(static_cast<double>(options_.rate_bytes_per_second),
                             static_cast<double>(options_.burst_bytes), now);
  for (int side = 0; side < 2; ++side) {
    if (sides) r.prefix[side] = udp::AddressPrefix((*sides)[side]);
    a.token[side] = NewToken();
    r.token[side] = a.token[side];
    by_token_[std::string(reinterpret_cast<const char*>(a.token[side].data()), kTokenBytes)] = {
        a.id, side};
  }
  relays_.emplace(a.id, std::move(r));
  if (next_sweep_ < now) next_sweep_ = now + kSweepInterval;
  ++stats_.allocated;
  return a;
}

void RelayCore::Release(uint64_t id, absl::string_view why) { End(id, std::string(why)); }

void RelayCore::ReleaseAfter(absl::Time now, uint64_t id, absl::Duration grace,
                             absl::string_view why) {
  auto it = relays_.find(id);
  if (it == relays_.end() || it->second.ends_at <= now + grace) return;
  it->second.ends_at = now + grace;
  it->second.end_reason = std::string(why);
}

void RelayCore::End(uint64_t id, std::string why) {
  auto it = relays_.find(id);
  if (it == relays_.end()) return;
  Relay& r = it->second;
  for (int side = 0; side < 2; ++side) {
    by_token_.erase(std::string(reinterpret_cast<const char*>(r.token[side].data()), kTokenBytes));
    if (r.side[side]) {
      auto a = by_address_.find(*r.side[side]);
      if (a != by_address_.end() && a->second == id) by_address_.erase(a);
    }
  }
  Event e;
  e.type = Event::Type::kEnded;
  e.id = id;
  e.reason = std::move(why);
  e.bytes = r.bytes;
  events_.push_back(std::move(e));
  relays_.erase(it);
  ++stats_.ended;
}

void RelayCore::Bind(absl::Time now, const udp::SocketAddress& from, absl::string_view payload) {
  if (payload.size() != kBindPayloadBytes || payload.substr(0, kBindPrefix.size()) != kBindPrefix) {
    ++stats_.bad_binds;
    return;
  }
  auto t = by_token_.find(payload.substr(kBindPrefix.size()));
  if (t == by_token_.end()) {
    ++stats_.bad_binds;
    return;
  }
  const auto [id, side] = t->second;
  Relay& r = relays_.at(id);
  if (r.side[side]) {
    if (!(*r.side[side] == from)) ++stats_.bind_conflicts;
    return;  // a repeated bind from the bound address: nothing to do
  }
  if (!r.prefix[side].empty() && udp::AddressPrefix(from) != r.prefix[side]) {
    ++stats_.bind_wrong_address;
    return;
  }
  if (auto a = by_address_.find(from); a != by_address_.end()) {
    ++stats_.busy_address;
    return;
  }
  r.side[side] = from;
  by_address_[from] = id;
  ++stats_.binds;
  if (r.side[1 - side]) {
    r.last_forward = now;
    Event e;
    e.type = Event::Type::kBound;
    e.id = id;
    e.side[0] = *r.side[0];
    e.side[1] = *r.side[1];
    events_.push_back(std::move(e));
  }
}

void RelayCore::OnDatagram(absl::Time now, const udp::SocketAddress& from,
                           absl::string_view bytes) {
  if (!bytes.empty() && static_cast<uint8_t>(bytes[0]) == proto::kPunchVersion) {
    Bind(now, from, bytes.substr(1));
    return;
  }
  auto a = by_address_.find(from);
  if (a == by_address_.end()) {
    ++stats_.unbound_dropped;
    return;
  }
  const uint64_t id = a->second;
  Relay& r = relays_.at(id);
  const int side = r.side[0] && *r.side[0] == from ? 0 : 1;
  if (!r.side[1 - side]) {
    ++stats_.unbound_dropped;
    return;
  }
  if (!r.rate.Has(now, static_cast<double>(bytes.size()))) {
    ++stats_.rate_dropped;
    return;
  }
  if (r.bytes + bytes.size() > options_.byte_budget) {
    End(id, absl::StrCat("byte budget of ", options_.byte_budget, " bytes used up"));
    return;
  }
  r.rate.Take(static_cast<double>(bytes.size()));
  r.bytes += bytes.size();
  r.last_forward = now;
  ++stats_.forwarded;
  stats_.forwarded_bytes += bytes.size();
  outgoing_.push_back(Outgoing{*r.side[1 - side], std::string(bytes)});
}

void RelayCore::OnTimeout(absl::Time now) {
  if (now < next_sweep_) return;
  next_sweep_ = now + kSweepInterval;
  std::vector<std::pair<uint64_t, std::string>> due;
  for (const auto& [id, r] : relays_) {
    const bool bound = r.side[0] && r.side[1];
    if (now >= r.ends_at) {
      due.push_back({id, r.end_reason});
    } else if (!bound && now - r.created >= options_.bind_timeout) {
      due.push_back(
          {id, absl::StrCat("not bound within ", absl::FormatDuration(options_.bind_timeout))});
    } else if (bound && now - r.last_forward >= options_.idle_timeout) {
      due.push_back({id, absl::StrCat("idle for ", absl::FormatDuration(options_.idle_timeout))});
    }
  }
  std::sort(due.begin(), due.end());  // deterministic event order
  for (auto& [id, why] : due) End(id, std::move(why));
}

absl::Time RelayCore::NextTimeout() const {
  return relays_.empty() ? absl::InfiniteFuture() : next_sweep_;
}

std::vector<RelayCore::Outgoing> RelayCore::TakeOutgoing() { return std::exchange(outgoing_, {}); }
std::vector<RelayCore::Event> RelayCore::TakeEvents() { return std::exchange(events_, {}); }

}  // namespace udpmsg::rendezvous
