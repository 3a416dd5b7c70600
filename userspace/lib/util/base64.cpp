#include "gpugate/base64.hpp"

#include <array>

#include <fmt/format.h>

namespace gpugate {

namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace

Result<std::vector<uint8_t>> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0)
    return make_error(fmt::format(
        "base64 text is {} characters long, not a multiple of 4 (cut short or padding missing)", text.size()));
  size_t pad = 0;
  if (!text.empty() && text.back() == '=') pad = (text.size() >= 2 && text[text.size() - 2] == '=') ? 2 : 1;
  std::vector<uint8_t> out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    bool last = i + 4 == text.size();
    std::array<int, 4> v{};
    for (size_t j = 0; j < 4; j++) {
      char c = text[i + j];
      if (c == '=' && last && j >= 4 - pad) {
        v[j] = 0;
        continue;
      }
      v[j] = base64_value(c);
      if (v[j] < 0) {
        if (c == '=') return make_error(fmt::format("base64 padding '=' at offset {} is not at the end", i + j));
        return make_error(
            fmt::format("character {:#04x} at offset {} is not base64", static_cast<unsigned char>(c), i + j));
      }
    }
    uint32_t n = (uint32_t(v[0]) << 18) | (uint32_t(v[1]) << 12) | (uint32_t(v[2]) << 6) | uint32_t(v[3]);
    out.push_back(static_cast<uint8_t>(n >> 16));
    if (!last || pad < 2) out.push_back(static_cast<uint8_t>(n >> 8));
    if (!last || pad < 1) out.push_back(static_cast<uint8_t>(n));
    // Bits under the padding must be zero, or two texts decode to the same bytes.
    if (last && ((pad == 1 && (v[2] & 0x3)) || (pad == 2 && (v[1] & 0xf))))
      return make_error("base64 text has non-zero bits under its padding (not canonical)");
  }
  return out;
}

std::string base64_encode(std::span<const uint8_t> data, bool pad) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    uint32_t n = (uint32_t(data[i]) << 16) | (uint32_t(data[i + 1]) << 8) | data[i + 2];
    for (int s = 18; s >= 0; s -= 6) out.push_back(kAlphabet[(n >> s) & 63]);
  }
  size_t rest = data.size() - i;
  if (rest > 0) {
    uint32_t n = uint32_t(data[i]) << 16;
    if (rest == 2) n |= uint32_t(data[i + 1]) << 8;
    out.push_back(kAlphabet[(n >> 18) & 63]);
    out.push_back(kAlphabet[(n >> 12) & 63]);
    if (rest == 2) out.push_back(kAlphabet[(n >> 6) & 63]);
    if (pad) out.append(rest == 1 ? "==" : "=");
  }
  return out;
}

}  // namespace gpugate
