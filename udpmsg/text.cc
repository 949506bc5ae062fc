#include "udpmsg/text.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace udpmsg {

size_t Utf8Length(absl::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char lead = byte(i);
  if (lead < 0x80) return 1;
  size_t length;
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
  } else {
    return 0;
  }
  if (i + length > s.size()) return 0;
  for (size_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xc0) != 0x80) return 0;
  }
  const unsigned char second = byte(i + 1);
  if (lead == 0xe0 && second < 0xa0) return 0;   // overlong
  if (lead == 0xed && second >= 0xa0) return 0;  // surrogate
  if (lead == 0xf0 && second < 0x90) return 0;   // overlong
  if (lead == 0xf4 && second >= 0x90) return 0;  // above U+10FFFF
  return length;
}

std::string ValidUtf8(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t n = Utf8Length(s, i);
    if (n == 0) {
      out += "\xef\xbf\xbd";
      ++i;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
  return out;
}

namespace {

// The code point of the valid `n`-byte UTF-8 sequence at s[i].
uint32_t DecodeAt(absl::string_view s, size_t i, size_t n) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  if (n == 1) return byte(i);
  uint32_t cp = byte(i) & (0x7f >> n);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (byte(i + k) & 0x3f);
  return cp;
}

// Appends Displayable of the longest prefix of `s` of at most `max_bytes`
// bytes that ends on a character boundary; returns that prefix's length.
size_t AppendDisplayable(absl::string_view s, size_t max_bytes, std::string* out) {
  size_t i = 0;
  while (i < s.size()) {
    const size_t n = Utf8Length(s, i);
    if (i + std::max<size_t>(n, 1) > max_bytes) break;
    if (n == 0) {  // invalid UTF-8: this byte alone
      absl::StrAppendFormat(out, "\\x%02x", static_cast<unsigned char>(s[i]));
      ++i;
      continue;
    }
    const uint32_t cp = DecodeAt(s, i, n);
    if (cp == '\t') {
      out->push_back(' ');
    } else if (cp < 0x20 || cp == 0x7f) {
      absl::StrAppendFormat(out, "\\x%02x", cp);
    } else if (IsHiddenCodePoint(cp)) {
      if (cp <= 0xffff) {
        absl::StrAppendFormat(out, "\\u%04x", cp);
      } else {
        absl::StrAppendFormat(out, "\\U%08x", cp);
      }
    } else {
      out->append(s.data() + i, n);
    }
    i += n;
  }
  return i;
}

}  // namespace

bool IsHiddenCodePoint(uint32_t cp) {
  if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0)) return true;  // C0, DEL, C1
  if (cp < 0xad) return false;
  switch (cp) {
    case 0x00ad:  // soft hyphen
    case 0x061c:  // Arabic letter mark (bidi)
    case 0x06dd:  // Arabic end of ayah
    case 0x070f:  // Syriac abbreviation mark
    case 0x08e2:  // Arabic disputed end of ayah
    case 0x180e:  // Mongolian vowel separator
    case 0xfeff:  // zero-width no-break space (BOM)
    case 0x110bd:
    case 0x110cd:  // Kaithi number signs
    case 0xe0001:  // language tag
      return true;
    default:
      break;
  }
  return (cp >= 0x0600 && cp <= 0x0605) ||    // Arabic number signs
         (cp >= 0x0890 && cp <= 0x0891) ||    // Arabic pound/piastre marks above
         (cp >= 0x200b && cp <= 0x200f &&     // ZWSP, LRM, RLM (not ZWNJ/ZWJ)
          cp != 0x200c && cp != 0x200d) ||
         (cp >= 0x2028 && cp <= 0x202e) ||    // line/paragraph separators, LRE..RLO
         (cp >= 0x2060 && cp <= 0x2064) ||    // word joiner, invisible operators
         (cp >= 0x2066 && cp <= 0x206f) ||    // LRI..PDI, deprecated format controls
         (cp >= 0xfff9 && cp <= 0xfffb) ||    // interlinear annotation
         (cp >= 0x13430 && cp <= 0x1343f) ||  // Egyptian hieroglyph format controls
         (cp >= 0x1bca0 && cp <= 0x1bca3) ||  // shorthand format controls
         (cp >= 0x1d173 && cp <= 0x1d17a) ||  // musical symbol format controls
         (cp >= 0xe0020 && cp <= 0xe007f);    // tag characters
}

std::string Displayable(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  AppendDisplayable(s, s.size(), &out);
  return out;
}

std::string DisplayablePrefix(absl::string_view s, size_t max_bytes) {
  std::string out;
  out.reserve(std::min(s.size(), max_bytes) + 3);
  if (AppendDisplayable(s, max_bytes, &out) < s.size()) out += "...";
  return out;
}

}  // namespace udpmsg
