#include "udpmsg/event.h"

#include <utility>

namespace udpmsg {

absl::string_view EventTypeName(Event::Type type) {
  switch (type) {
    case Event::Type::kConnected:
      return "connected";
    case Event::Type::kMessage:
      return "message";
    case Event::Type::kAcked:
      return "acked";
    case Event::Type::kClosed:
      return "closed";
  }
  return "?";
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
  return out;
}

}  // namespace udpmsg
