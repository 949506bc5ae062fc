#include "udpmsg/core_bridge.h"

#include <utility>

namespace udpmsg {

reliable::Runtime::Options ToRuntimeOptions(const HostOptions& options) {
  reliable::Runtime::Options r;
  r.bind = options.bind;
  r.socket_buffer_bytes = options.socket_buffer_bytes;
  reliable::EndpointOptions& e = r.endpoint;
  e.accept_incoming = options.accept_incoming;
  e.max_connections = options.max_connections;
  e.max_unconfirmed_connections = options.max_unconfirmed_connections;
  e.max_connections_per_address = options.max_connections_per_address;
  e.max_draining_connections = options.max_connections;
  e.cookie_lifetime = options.cookie_lifetime;
  e.encrypt = options.encrypt || options.room_key.has_value() ||
              options.identity.has_value() || options.server_pin.has_value();
  e.psk = options.room_key;
  e.identity = options.identity;
  e.server_pin = options.server_pin;
  reliable::ConnectionOptions& c = e.connection;
  c.max_datagram = options.max_datagram;
  c.pmtud = options.path_mtu_discovery;
  c.max_ack_threshold = options.max_ack_threshold;
  c.max_message_bytes = options.max_message_bytes;
  c.window = options.window;
  c.max_queued_bytes = options.max_queued_bytes;
  c.max_reassembly_bytes = options.max_reassembly_bytes;
  c.max_undelivered_bytes = options.max_undelivered_bytes;
  c.max_channels = options.max_channels;
  c.idle_timeout = options.idle_timeout;
  c.keepalive = options.keepalive;
  c.handshake_timeout = options.handshake_timeout;
  c.unconfirmed_timeout = options.unconfirmed_timeout;
  c.peer_timeout = options.peer_timeout;
  c.max_probes = options.max_probes;
  c.max_ack_delay = options.max_ack_delay;
  c.initial_rtt = options.initial_rtt;
  c.reassembly_timeout = options.reassembly_timeout;
  c.congestion_control = options.congestion_control;
  c.pacing = options.pacing;
  return r;
}

namespace {

Event::Type FromReliableType(reliable::Event::Type type) {
  switch (type) {
    case reliable::Event::Type::kConnected:
      return Event::Type::kConnected;
    case reliable::Event::Type::kMessage:
      return Event::Type::kMessage;
    case reliable::Event::Type::kAcked:
      return Event::Type::kAcked;
    case reliable::Event::Type::kClosed:
      return Event::Type::kClosed;
    case reliable::Event::Type::kPathChanged:
      return Event::Type::kPathChanged;
  }
  return Event::Type::kClosed;
}

}  // namespace

Event FromReliableEvent(reliable::Event&& e) {
  Event out;
  out.type = FromReliableType(e.type);
  out.connection = e.connection;
  out.peer = e.peer;
  out.channel = e.channel;
  out.mode = e.mode;
  out.sequence = e.sequence;
  out.message = std::move(e.message);
  out.bytes = e.bytes;
  out.close_reason = e.close_reason;
  out.reason = std::move(e.reason);
  out.by_peer = e.by_peer;
  out.server_identity = std::move(e.server_identity);
  out.old_peer = e.old_peer;
  return out;
}

}  // namespace udpmsg
