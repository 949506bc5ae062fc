// Sequencer: where the chat server's total order comes from. ServerCore asks
// it for the number of every line it delivers; members see lines in
// increasing number order. LocalSequencer counts in memory (one server, one
// room); a sequencer backed by a shared log (a Redis stream, say) lets a room
// span servers without changing ServerCore.
//
// Usage:
//   chat::ServerCore core(options, std::make_unique<chat::LocalSequencer>());
//
// Implementations must return strictly increasing numbers, never 0 and never
// a number twice. Not thread-safe unless an implementation says so.
#ifndef UDPMSG_APPS_CHAT_SEQUENCER_H_
#define UDPMSG_APPS_CHAT_SEQUENCER_H_

#include <cstdint>

namespace udpmsg::chat {

class Sequencer {
 public:
  virtual ~Sequencer() = default;
  // The next line number: greater than every number returned before.
  virtual uint64_t Next() = 0;
};

// Counts 1, 2, 3, ... (64-bit: never wraps in practice).
class LocalSequencer final : public Sequencer {
 public:
  explicit LocalSequencer(uint64_t first = 1) : next_(first) {}
  uint64_t Next() override { return next_++; }

 private:
  uint64_t next_;
};

}  // namespace udpmsg::chat

#endif  // UDPMSG_APPS_CHAT_SEQUENCER_H_
