// Internal to //udpmsg: the translation between the public types and the
// core's (reliable::Runtime options and events). Host uses it; tests of the
// public API check it. Applications never include this header (its target
// is not visible to them).
//
// Usage (inside Host):
//   reliable::Runtime::Create(ToRuntimeOptions(options));
//   for (reliable::Event& e : r->events) out.push_back(FromReliableEvent(std::move(e)));
//
// Threading: pure functions.
#ifndef UDPMSG_UDPMSG_CORE_BRIDGE_H_
#define UDPMSG_UDPMSG_CORE_BRIDGE_H_

#include "reliable/connection.h"
#include "reliable/runtime.h"
#include "udpmsg/event.h"
#include "udpmsg/options.h"

namespace udpmsg {

// The core's runtime options for `options` (already validated: Host::Create
// calls Validate first). A room key implies encryption.
reliable::Runtime::Options ToRuntimeOptions(const HostOptions& options);

// The public event for a core event (moves the message and reason out of `e`).
Event FromReliableEvent(reliable::Event&& e);

}  // namespace udpmsg

#endif  // UDPMSG_UDPMSG_CORE_BRIDGE_H_
