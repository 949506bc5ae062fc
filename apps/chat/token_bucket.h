// TokenBucket: a rate limit in virtual time. It holds up to `burst` tokens
// and gains `rate` tokens per second; an action that costs n tokens goes
// ahead only if n are there. ServerCore keeps two per member (lines and
// bytes) and a third that counts the member's refused messages.
//
// Usage:
//   chat::TokenBucket lines(/*rate=*/5, /*burst=*/60, now);
//   if (lines.Has(now, 1)) { lines.Take(1); deliver(); } else { refuse(); }
//
// Time only moves forward for the bucket: an earlier `now` than the last one
// adds nothing. A value type; not thread-safe.
#ifndef UDPMSG_APPS_CHAT_TOKEN_BUCKET_H_
#define UDPMSG_APPS_CHAT_TOKEN_BUCKET_H_

#include <algorithm>

#include "absl/time/time.h"

namespace udpmsg::chat {

class TokenBucket final {
 public:
  // Starts full. `rate` tokens per second (> 0), `burst` tokens at most.
  TokenBucket(double rate, double burst, absl::Time now)
      : rate_(rate), burst_(burst), tokens_(burst), last_(now) {}

  // Whether `n` tokens are there at `now` (after refilling for the time
  // since the last call).
  bool Has(absl::Time now, double n) {
    Refill(now);
    return tokens_ >= n;
  }
  // Takes `n` tokens (call Has first; the count never goes below zero).
  void Take(double n) { tokens_ = std::max(0.0, tokens_ - n); }
  // Tokens at the last refill.
  double tokens() const { return tokens_; }

 private:
  void Refill(absl::Time now) {
    if (now <= last_) return;
    tokens_ = std::min(burst_, tokens_ + rate_ * absl::ToDoubleSeconds(now - last_));
    last_ = now;
  }

  double rate_;
  double burst_;
  double tokens_;
  absl::Time last_;
};

}  // namespace udpmsg::chat

#endif  // UDPMSG_APPS_CHAT_TOKEN_BUCKET_H_
