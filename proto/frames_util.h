// Helpers over typed frames (frames.h): field-by-field equality and a
// one-line debug string. Used by tests, fuzzers and logs.
//
//   if (!PacketsEqual(a, b)) LOG << PacketDebugString(a);
#ifndef UDPMSG_PROTO_FRAMES_UTIL_H_
#define UDPMSG_PROTO_FRAMES_UTIL_H_

#include <string>

#include "proto/frames.h"

namespace udpmsg::proto {

// True when every field of every frame is equal (ack delays compared exactly).
bool PacketsEqual(const Packet& a, const Packet& b);

// A single line naming every frame and field; byte strings are shown by size
// and a short escaped prefix.
std::string PacketDebugString(const Packet& packet);

}  // namespace udpmsg::proto

#endif  // UDPMSG_PROTO_FRAMES_UTIL_H_
