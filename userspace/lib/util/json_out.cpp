#include "gpugate/json_out.hpp"

#include <charconv>

namespace gpugate {

void JsonOut::comma() {
  if (!first_) out_.push_back(',');
  first_ = false;
}

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

// Length of a valid UTF-8 sequence starting at s[i], or 0.
size_t utf8_len(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; k++)
    if ((b(i + k) & 0xC0) != 0x80) return 0;
  return n;
}

}  // namespace

JsonOut& JsonOut::str(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  comma();
  out_.push_back('"');
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out_.push_back('\\');
      out_.push_back(static_cast<char>(c));
      i++;
    } else if (c < 0x20) {
      out_.append("\\u00");
      out_.push_back(kHex[c >> 4]);
      out_.push_back(kHex[c & 0xf]);
      i++;
    } else if (c < 0x80) {
      out_.push_back(static_cast<char>(c));
      i++;
    } else if (size_t n = utf8_len(s, i); n) {
      out_.append(s.substr(i, n));
      i += n;
    } else {
      out_.append("\\u00");  // a stray byte: keep it visible, keep the line valid
      out_.push_back(kHex[c >> 4]);
      out_.push_back(kHex[c & 0xf]);
      i++;
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
  out_.append("\"0x");
  for (int shift = 28; shift >= 0; shift -= 4) out_.push_back(kHex[(v >> shift) & 0xf]);
  out_.push_back('"');
  return *this;
}

JsonOut& JsonOut::raw(std::string_view json) {
  comma();
  out_.append(json);
  return *this;
}

}  // namespace gpugate
