// libFuzzer entry for reliable::Reassembler: limits from the first bytes,
// then a sequence of Add (arbitrary header and payload), Expire and Discard
// calls, checked against a simple model of what must be buffered:
//   - buffered_bytes() <= max_buffered_bytes, partial_messages() <=
//     max_partial_messages, and both equal the model's
//   - a completed message has the announced total_size and is exactly its
//     accepted fragments in index order
//   - an Add that fails changes nothing, except for a run (case 1) whose
//     fragments went one by one: those before the refused one stay, and
//     the model takes them; held_bytes() stays within max_buffered_bytes
//     and one Add takes at most its fragments, a message slot and the
//     growth allowance it was given
// Aborts on a violation.
//
// Built with libFuzzer by `fuzz/run.sh reassembler`, and with the normal
// toolchain into //fuzz:reassembler_fuzz_smoke, which calls the entry.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <tuple>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "fuzz/fuzz_input.h"
#include "reliable/reassembler.h"

namespace {

using udpmsg::reliable::FragmentHeader;
using udpmsg::reliable::LayoutOf;
using udpmsg::reliable::MessageKey;
using udpmsg::reliable::Reassembler;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "reassembler_fuzzer: %s\n", what.c_str());
  std::abort();
}

using Input = ::udpmsg::fuzz::FuzzInput;

struct ModelMessage {
  FragmentHeader header;
  absl::Time started;
  std::map<uint32_t, std::string> fragments;
  uint64_t bytes = 0;
};

using KeyTuple = std::tuple<uint32_t, uint32_t, uint64_t>;

KeyTuple Tuple(const MessageKey& k) { return {k.channel, k.space, k.sequence}; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(absl::string_view(reinterpret_cast<const char*>(data), size));
  Reassembler::Limits limits;
  limits.max_message_bytes = in.Bytes(2) + 1;           // 1 .. 64 KiB
  limits.max_buffered_bytes = in.Bytes(2) * 4;          // 0 .. 256 KiB
  limits.max_partial_messages = in.Byte() % 16;         // 0 .. 15
  limits.timeout = absl::Milliseconds(1 + in.Bytes(2));  // 1 ms .. 65 s
  Reassembler r(limits);
  std::map<KeyTuple, ModelMessage> model;
  uint64_t model_bytes = 0;
  absl::Time now = absl::FromUnixSeconds(1'700'000'000);

  for (int steps = 0; !in.empty() && steps < 4096; ++steps) {
    const uint8_t op = in.Byte();
    now += absl::Milliseconds(in.Byte() * (op & 0x80 ? 256 : 1));
    MessageKey key;
    key.channel = (op >> 2) & 1;
    key.space = (op >> 3) & 1;
    key.sequence = in.Byte() % 8;
    switch (op & 3) {
      case 0:
      case 1: {  // Add; case 1 a run of fragments (FragmentHeader::run)
        FragmentHeader h;
        // Small values mostly, arbitrary 32/64-bit ones sometimes.
        const bool wide = op & 0x40;
        h.index = static_cast<uint32_t>(wide ? in.Bytes(4) : in.Byte() % 32);
        h.count = static_cast<uint32_t>(wide ? in.Bytes(4) : in.Byte() % 32);
        h.total_size = wide ? in.Bytes(8) : in.Bytes(2);
        if ((op & 3) == 1) h.run = static_cast<uint32_t>(wide ? in.Bytes(4) : in.Byte() % 8);
        // Usually the payload length the layout wants, else arbitrary.
        size_t length = in.Bytes(2);
        absl::StatusOr<udpmsg::reliable::FragmentLayout> layout =
            LayoutOf(h.index, h.count, h.total_size);
        std::optional<uint64_t> wanted;  // the run's length, when the header is valid
        if (layout.ok() && h.run >= 1 && h.run <= h.count - h.index) {
          wanted = udpmsg::reliable::RunLayoutOfValid(h.index, h.run, h.count, h.total_size).length;
        }
        if ((op & 0x20) == 0 && wanted && *wanted <= (1u << 20)) length = *wanted;
        const std::string payload = in.TakePadded(length, '\xAB');  // filler: long payloads stay cheap
        // Bit 4: an in-order buffer may grow by up to this much (Add's
        // growth_allowance); held bytes must stay within the limit.
        const uint64_t allowance = (op & 0x10) ? in.Bytes(3) : 0;
        const uint64_t buffered_before = r.buffered_bytes();
        const uint64_t held_before = r.held_bytes();
        const size_t partial_before = r.partial_messages();
        absl::StatusOr<std::optional<std::string>> got = r.Add(now, key, h, payload, allowance);
        if (r.held_bytes() > limits.max_buffered_bytes) {
          Die(absl::StrCat("held ", r.held_bytes(), " bytes, limit ", limits.max_buffered_bytes));
        }
        if (r.held_bytes() > held_before &&
            r.held_bytes() - held_before >
                payload.size() + uint64_t{h.run} * udpmsg::reliable::kFragmentOverheadBytes +
                    udpmsg::reliable::kPartialMessageBytes + allowance) {
          Die(absl::StrCat("one Add took ", r.held_bytes() - held_before,
                           " bytes with an allowance of ", allowance));
        }
        auto it = model.find(Tuple(key));
        // A run that cannot go in one piece is added fragment by fragment,
        // stopping at the first refused: the fragments before it stay.
        std::optional<uint64_t> taken;  // bytes taken by a failed run
        if (!got.ok()) {
          if (got.status().code() != absl::StatusCode::kInvalidArgument &&
              got.status().code() != absl::StatusCode::kResourceExhausted) {
            Die(absl::StrCat("unexpected status ", got.status().ToString()));
          }
          const bool changed = r.buffered_bytes() != buffered_before ||
                               r.partial_messages() != partial_before ||
                               r.held_bytes() != held_before;
          if (!changed) break;
          if (h.run == 1 || r.buffered_bytes() < buffered_before) {
            Die(absl::StrCat("a failed Add changed the state: ", got.status().ToString()));
          }
          taken = r.buffered_bytes() - buffered_before;
        }
        if (!wanted || payload.size() != *wanted || h.total_size > limits.max_message_bytes) {
          Die("Add accepted a fragment that does not fit its layout");
        }
        if (it != model.end() &&
            (it->second.header.count != h.count || it->second.header.total_size != h.total_size)) {
          Die(absl::StrCat("Add accepted fragment ", h.index, "/", h.count, " of ", h.total_size,
                           " bytes for a message announced as ", it->second.header.count,
                           " fragments of ", it->second.header.total_size, " bytes"));
        }
        if (h.count == h.run && it == model.end()) {
          if (!got.ok() || !got->has_value() || **got != payload) {
            Die("a whole message did not complete");
          }
          break;
        }
        // The run's fragments one by one, as the model sees them.
        uint64_t at = 0;
        uint64_t added = 0;
        bool completed = false;
        for (uint32_t i = 0; i < h.run; ++i) {
          if (taken && added == *taken) break;  // the rest was not taken
          const uint32_t index = h.index + i;
          const uint64_t n =
              udpmsg::reliable::LayoutOfValid(index, h.count, h.total_size).length;
          const std::string bytes = payload.substr(at, n);
          at += n;
          if (it == model.end()) {
            it = model.emplace(Tuple(key), ModelMessage{h, now, {}, 0}).first;
          }
          ModelMessage& m = it->second;
          if (!m.fragments.emplace(index, bytes).second) continue;  // a duplicate
          m.bytes += n;
          model_bytes += n;
          added += n;
          if (m.fragments.size() < h.count) continue;
          if (!got.ok() || !got->has_value()) Die("all fragments arrived but no message");
          if ((*got)->size() != h.total_size) {
            Die(absl::StrCat("completed message of ", (*got)->size(), " bytes, announced ",
                             h.total_size));
          }
          std::string expected;
          for (const auto& [k, b] : m.fragments) expected += b;
          if (**got != expected) Die("completed message is not its fragments in order");
          model_bytes -= m.bytes;
          model.erase(it);
          completed = true;
          break;
        }
        if (taken && added != *taken) {
          Die(absl::StrCat("a failed run took ", *taken, " bytes; its fragments make ", added));
        }
        if (!completed && got.ok() && got->has_value()) {
          Die("a message completed with fragments missing");
        }
        break;
      }
      case 2: {  // Expire
        size_t expected = 0;
        for (auto it = model.begin(); it != model.end();) {
          if (now - it->second.started >= limits.timeout) {
            model_bytes -= it->second.bytes;
            it = model.erase(it);
            ++expected;
          } else {
            ++it;
          }
        }
        const size_t dropped = r.Expire(now);
        if (dropped != expected) {
          Die(absl::StrCat("Expire dropped ", dropped, ", model ", expected));
        }
        break;
      }
      case 3: {  // Discard
        r.Discard(key);
        auto it = model.find(Tuple(key));
        if (it != model.end()) {
          model_bytes -= it->second.bytes;
          model.erase(it);
        }
        break;
      }
    }
    if (r.buffered_bytes() > limits.max_buffered_bytes ||
        r.partial_messages() > limits.max_partial_messages) {
      Die(absl::StrCat("over the limits: ", r.buffered_bytes(), " bytes, ",
                       r.partial_messages(), " messages"));
    }
    if (r.buffered_bytes() != model_bytes || r.partial_messages() != model.size()) {
      Die(absl::StrCat("buffered ", r.buffered_bytes(), " bytes in ", r.partial_messages(),
                       " messages; model ", model_bytes, " in ", model.size()));
    }
  }
  return 0;
}
