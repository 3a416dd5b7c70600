#include "gpugate/hex.hpp"

#include <cctype>
#include <charconv>

#include <fmt/format.h>

namespace gpugate {

std::string to_hex(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xf]);
  }
  return out;
}

Result<std::vector<uint8_t>> parse_hex(std::string_view text) {
  if (text.starts_with("0x") || text.starts_with("0X")) text.remove_prefix(2);
  std::vector<uint8_t> out;
  int high = -1;
  for (size_t i = 0; i < text.size(); i++) {
    char c = text[i];
    if (c == ' ' || c == ':' || c == '\n' || c == '\t' || c == '-') continue;
    int v;
    if (c >= '0' && c <= '9') {
      v = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      v = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      v = c - 'A' + 10;
    } else {
      return make_error(
          fmt::format("hex bytes: character {:?} at position {} is not a hex digit; "
                      "give bytes as pairs of 0-9a-f, optionally separated by spaces or colons",
                      std::string(1, c), i + 1));
    }
    if (high < 0) {
      high = v;
    } else {
      out.push_back(static_cast<uint8_t>(high << 4 | v));
      high = -1;
    }
  }
  if (high >= 0)
    return make_error("hex bytes: odd number of hex digits; every byte needs two digits (write 0a, not a)");
  return out;
}

Result<uint64_t> parse_number(std::string_view text, uint64_t max) {
  std::string_view digits = text;
  int base = 10;
  if (digits.starts_with("0x") || digits.starts_with("0X")) {
    digits.remove_prefix(2);
    base = 16;
  }
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v, base);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size())
    return make_error(
        fmt::format("{:?} is not a number; write it in decimal or as 0x followed by hex digits", std::string(text)));
  if (v > max) return make_error(fmt::format("{} is too large (at most {:#x})", std::string(text), max));
  return v;
}

}  // namespace gpugate
