#include "wire.hpp"

#include "gpugate/base64.hpp"

#include <openssl/err.h>
#include <openssl/sha.h>

#include <array>

#include <fmt/format.h>

namespace gpugate::auth::wire {

void Writer::mpint(ByteView magnitude) {
  size_t first = 0;
  while (first < magnitude.size() && magnitude[first] == 0) first++;
  ByteView m = magnitude.subspan(first);
  bool pad = !m.empty() && (m[0] & 0x80);
  u32(static_cast<uint32_t>(m.size() + (pad ? 1 : 0)));
  if (pad) u8(0);
  raw(m);
}

Result<ByteView> mpint_magnitude(ByteView mpint, size_t max_bytes, std::string_view what) {
  if (mpint.empty()) return mpint;
  if (mpint[0] & 0x80) return make_error(fmt::format("{} is a negative number; it must be positive", what));
  ByteView magnitude = mpint;
  if (mpint[0] == 0) {
    // One zero byte is allowed only to keep a set top bit positive.
    if (mpint.size() == 1 || !(mpint[1] & 0x80))
      return make_error(fmt::format("{} has a needless leading zero byte (not the minimal encoding)", what));
    magnitude = mpint.subspan(1);
  }
  if (magnitude.size() > max_bytes)
    return make_error(fmt::format("{} is {} bytes long; at most {} are allowed", what, magnitude.size(), max_bytes));
  return magnitude;
}

Result<Bytes> base64_decode(std::string_view text) { return gpugate::base64_decode(text); }

std::string base64_encode(ByteView data, bool pad) { return gpugate::base64_encode(data, pad); }

Bytes sha256(ByteView data) {
  Bytes out(SHA256_DIGEST_LENGTH);
  SHA256(data.data(), data.size(), out.data());
  return out;
}

Bytes sha512(ByteView data) {
  Bytes out(SHA512_DIGEST_LENGTH);
  SHA512(data.data(), data.size(), out.data());
  return out;
}

int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  // Howard Hinnant's days_from_civil.
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

unsigned days_in_month(int64_t y, unsigned m) {
  constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : kDays[(m - 1) % 12];
}

std::string openssl_error() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "no OpenSSL error queued";
  std::array<char, 256> buf{};
  ERR_error_string_n(e, buf.data(), buf.size());
  return buf.data();
}

}  // namespace gpugate::auth::wire
