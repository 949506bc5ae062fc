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
    case Event::Type::kPathChanged:
      return "path changed";
  }
  return "?";
}

}  // namespace udpmsg
