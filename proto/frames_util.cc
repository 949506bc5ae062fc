#include "proto/frames_util.h"

#include <cstddef>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace udpmsg::proto {
namespace {

bool Equal(const Hello& a, const Hello& b) {
  return a.client_connection_id == b.client_connection_id &&
         a.cookie == b.cookie && a.max_datagram == b.max_datagram &&
         a.public_key == b.public_key && a.max_udp_payload == b.max_udp_payload &&
         a.aead_offer == b.aead_offer && a.features == b.features;
}

bool Equal(const Challenge& a, const Challenge& b) {
  return a.client_connection_id == b.client_connection_id &&
         a.cookie == b.cookie;
}

bool Equal(const Accept& a, const Accept& b) {
  return a.client_connection_id == b.client_connection_id &&
         a.server_connection_id == b.server_connection_id &&
         a.max_datagram == b.max_datagram &&
         a.max_message_bytes == b.max_message_bytes && a.window == b.window &&
         a.public_key == b.public_key && a.psk_confirmation == b.psk_confirmation &&
         a.server_identity == b.server_identity &&
         a.identity_confirmation == b.identity_confirmation &&
         a.max_udp_payload == b.max_udp_payload && a.aead == b.aead &&
         a.features == b.features;
}

bool Equal(const Ack& a, const Ack& b) {
  return a.ranges == b.ranges && a.ack_delay == b.ack_delay;
}

bool Equal(const DataFragment& a, const DataFragment& b) {
  return a.channel == b.channel && a.mode == b.mode &&
         a.sequence == b.sequence && a.index == b.index &&
         a.count == b.count && a.total_size == b.total_size && a.run == b.run &&
         a.bytes() == b.bytes();
}

bool Equal(const Ping&, const Ping&) { return true; }

bool Equal(const Close& a, const Close& b) {
  return a.code == b.code && a.reason == b.reason;
}

template <typename T>
bool Equal(const std::optional<T>& a, const std::optional<T>& b) {
  if (a.has_value() != b.has_value()) return false;
  return !a.has_value() || Equal(*a, *b);
}

std::string Bytes(absl::string_view s) {
  constexpr size_t kShown = 16;
  std::string out = absl::StrCat(s.size(), "B\"",
                                 absl::CHexEscape(s.substr(0, kShown)));
  if (s.size() > kShown) out += "...";
  out += "\"";
  return out;
}

}  // namespace

bool PacketsEqual(const Packet& a, const Packet& b) {
  if (a.connection_id != b.connection_id ||
      a.packet_number != b.packet_number || !Equal(a.hello, b.hello) ||
      !Equal(a.challenge, b.challenge) || !Equal(a.accept, b.accept) ||
      !Equal(a.ack, b.ack) || !Equal(a.ping, b.ping) ||
      !Equal(a.close, b.close) || a.data.size() != b.data.size() ||
      a.ack_frequency.has_value() != b.ack_frequency.has_value() ||
      (a.ack_frequency && (a.ack_frequency->sequence != b.ack_frequency->sequence ||
                           a.ack_frequency->threshold != b.ack_frequency->threshold)) ||
      a.path_challenge.has_value() != b.path_challenge.has_value() ||
      (a.path_challenge && a.path_challenge->data != b.path_challenge->data) ||
      a.path_response.has_value() != b.path_response.has_value() ||
      (a.path_response && a.path_response->data != b.path_response->data)) {
    return false;
  }
  for (size_t i = 0; i < a.data.size(); ++i) {
    if (!Equal(a.data[i], b.data[i])) return false;
  }
  return true;
}

std::string PacketDebugString(const Packet& p) {
  std::string out = absl::StrCat("Packet{cid=", p.connection_id,
                                 " pn=", p.packet_number);
  if (p.hello) {
    absl::StrAppend(&out, " hello{client=", p.hello->client_connection_id,
                    " cookie=", Bytes(p.hello->cookie),
                    " max_datagram=", p.hello->max_datagram, "}");
  }
  if (p.challenge) {
    absl::StrAppend(&out, " challenge{client=",
                    p.challenge->client_connection_id,
                    " cookie=", Bytes(p.challenge->cookie), "}");
  }
  if (p.accept) {
    absl::StrAppend(&out, " accept{client=", p.accept->client_connection_id,
                    " server=", p.accept->server_connection_id,
                    " max_datagram=", p.accept->max_datagram,
                    " max_message_bytes=", p.accept->max_message_bytes,
                    " window=", p.accept->window, "}");
  }
  if (p.ack) {
    absl::StrAppend(&out, " ack{delay=", absl::FormatDuration(p.ack->ack_delay),
                    " ranges=");
    for (size_t i = 0; i < p.ack->ranges.size(); ++i) {
      absl::StrAppend(&out, i ? "," : "", "[", p.ack->ranges[i].smallest, ",",
                      p.ack->ranges[i].largest, "]");
    }
    out += "}";
  }
  for (const DataFragment& d : p.data) {
    absl::StrAppend(&out, " data{ch=", d.channel, " mode=", d.mode,
                    " seq=", d.sequence, " ", d.index, "/", d.count,
                    d.run > 1 ? absl::StrCat(" run=", d.run) : std::string(),
                    " total=", d.total_size, " payload=", Bytes(absl::string_view(d.bytes().data(), d.bytes().size())),
                    "}");
  }
  if (p.ping) out += " ping";
  if (p.ack_frequency) {
    absl::StrAppend(&out, " ack_frequency{seq=", p.ack_frequency->sequence,
                    " threshold=", p.ack_frequency->threshold, "}");
  }
  if (p.path_challenge) absl::StrAppend(&out, " path_challenge{", p.path_challenge->data, "}");
  if (p.path_response) absl::StrAppend(&out, " path_response{", p.path_response->data, "}");
  if (p.close) {
    absl::StrAppend(&out, " close{code=", p.close->code,
                    " reason=", Bytes(p.close->reason), "}");
  }
  out += "}";
  return out;
}

}  // namespace udpmsg::proto
