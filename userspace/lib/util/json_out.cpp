#include "gpugate/json_out.hpp"

#include <array>
#include <charconv>
#include <cstring>

namespace gpugate {

JsonOut& JsonOut::begin_object() {
  comma();
  out_.push_back('{');
  first_ = true;
  return *this;
}

JsonOut& JsonOut::end_object() {
  out_.push_back('}');
  first_ = false;
  return *this;
}

JsonOut& JsonOut::begin_array() {
  comma();
  out_.push_back('[');
  first_ = true;
  return *this;
}

JsonOut& JsonOut::end_array() {
  out_.push_back(']');
  first_ = false;
  return *this;
}

JsonOut& JsonOut::key(std::string_view k) {
  str(k);
  out_.push_back(':');
  first_ = true;  // the value that follows takes no comma
  return *this;
}

namespace {

// Bytes that go into a JSON string as they are: printable ASCII but " and \\.
constexpr auto kPlain = [] {
  std::array<bool, 256> t{};
  for (int c = 0x20; c < 0x80; c++) t[c] = c != '"' && c != '\\';
  return t;
}();

// Length of a well-formed UTF-8 sequence starting at s[i] (RFC 3629: no
// overlongs, no surrogates, nothing above U+10FFFF), or 0.
size_t utf8_len(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > s.size() || b(i + 1) < lo || b(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; k++)
    if ((b(i + k) & 0xC0) != 0x80) return 0;
  return n;
}

}  // namespace

JsonOut& JsonOut::str(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  comma();
  size_t plain = 0;
  while (plain < s.size() && kPlain[static_cast<unsigned char>(s[plain])]) plain++;
  if (plain == s.size()) {  // the common case: one copy
    size_t at = out_.size();
    out_.resize(at + s.size() + 2);
    char* p = out_.data() + at;
    p[0] = '"';
    std::memcpy(p + 1, s.data(), s.size());
    p[s.size() + 1] = '"';
    return *this;
  }
  out_.push_back('"');
  size_t i = 0;
  while (i < s.size()) {
    // Copy the run of plain printable ASCII in one go (hex dumps are all such).
    size_t run = i;
    while (run < s.size() && kPlain[static_cast<unsigned char>(s[run])]) run++;
    out_.append(s.data() + i, run - i);
    i = run;
    if (i == s.size()) break;
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      char esc[2] = {'\\', static_cast<char>(c)};
      out_.append(esc, 2);
      i++;
    } else if (c < 0x80 || utf8_len(s, i) == 0) {
      // a control character, or a stray byte: keep it visible, keep the line valid
      char esc[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xf]};
      out_.append(esc, 6);
      i++;
    } else {
      size_t n = utf8_len(s, i);
      out_.append(s.data() + i, n);
      i += n;
    }
  }
  out_.push_back('"');
  return *this;
}

JsonOut& JsonOut::num(int64_t v) {
  comma();
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  out_.append(buf, end);
  return *this;
}

JsonOut& JsonOut::unum(uint64_t v) {
  comma();
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  out_.append(buf, end);
  return *this;
}

JsonOut& JsonOut::boolean(bool v) {
  comma();
  out_.append(v ? "true" : "false");
  return *this;
}

JsonOut& JsonOut::null() {
  comma();
  out_.append("null");
  return *this;
}

JsonOut& JsonOut::hex32(uint32_t v) {
  static constexpr char kHex[] = "0123456789abcdef";
  comma();
  char buf[12] = {'"', '0', 'x'};
  for (int k = 0; k < 8; k++) buf[3 + k] = kHex[(v >> (28 - 4 * k)) & 0xf];
  buf[11] = '"';
  out_.append(buf, sizeof(buf));
  return *this;
}

JsonOut& JsonOut::hex_bytes(const uint8_t* data, size_t len) {
  static constexpr char kHex[] = "0123456789abcdef";
  comma();
  size_t at = out_.size();
  out_.resize(at + 2 + 2 * len);
  char* p = out_.data() + at;
  *p++ = '"';
  for (size_t i = 0; i < len; i++) {
    *p++ = kHex[data[i] >> 4];
    *p++ = kHex[data[i] & 0xf];
  }
  *p = '"';
  return *this;
}

JsonOut& JsonOut::raw(std::string_view json) {
  comma();
  out_.append(json);
  return *this;
}

}  // namespace gpugate
