// Private helpers of lib/auth: the SSH wire encoding (RFC 4251 section 5),
// strict base64, digests and owners for OpenSSL objects. Every read checks
// its length first; nothing here can read past the buffer it was given.
#pragma once

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gpugate/result.hpp"

namespace gpugate::auth::wire {

using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;

inline ByteView as_bytes(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }
inline std::string_view as_text(ByteView b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

// Reads SSH wire fields from a borrowed buffer. A failed read leaves the
// reader where it was and returns nullopt; callers turn that into an error
// naming the field.
class Reader {
 public:
  explicit Reader(ByteView data) : data_(data) {}

  std::optional<uint8_t> u8() {
    if (remaining() < 1) return std::nullopt;
    return data_[pos_++];
  }
  std::optional<uint32_t> u32() {
    if (remaining() < 4) return std::nullopt;
    uint32_t v = (uint32_t{data_[pos_]} << 24) | (uint32_t{data_[pos_ + 1]} << 16) | (uint32_t{data_[pos_ + 2]} << 8) |
                 uint32_t{data_[pos_ + 3]};
    pos_ += 4;
    return v;
  }
  // A uint32 length and that many bytes.
  std::optional<ByteView> string() {
    size_t start = pos_;
    auto len = u32();
    if (!len || *len > remaining()) {
      pos_ = start;
      return std::nullopt;
    }
    ByteView s = data_.subspan(pos_, *len);
    pos_ += *len;
    return s;
  }
  std::optional<ByteView> raw(size_t n) {
    if (n > remaining()) return std::nullopt;
    ByteView s = data_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  size_t remaining() const { return data_.size() - pos_; }
  bool at_end() const { return pos_ == data_.size(); }

 private:
  ByteView data_;
  size_t pos_ = 0;
};

class Writer {
 public:
  void u8(uint8_t v) { out_.push_back(v); }
  void u32(uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out_.push_back(static_cast<uint8_t>(v >> shift));
  }
  void string(ByteView s) {
    u32(static_cast<uint32_t>(s.size()));
    raw(s);
  }
  void string(std::string_view s) { string(as_bytes(s)); }
  void raw(ByteView s) { out_.insert(out_.end(), s.begin(), s.end()); }
  void raw(std::string_view s) { raw(as_bytes(s)); }
  // mpint from unsigned big-endian magnitude: minimal, with a 0x00 in front
  // when the top bit is set so that it stays positive.
  void mpint(ByteView magnitude);
  const Bytes& bytes() const& { return out_; }
  Bytes bytes() && { return std::move(out_); }

 private:
  Bytes out_;
};

// Checks an SSH mpint strictly: positive, minimal (no needless leading
// zero), at most max_bytes of magnitude. Returns the magnitude without the
// sign byte. what names the field in the error.
Result<ByteView> mpint_magnitude(ByteView mpint, size_t max_bytes, std::string_view what);

// RFC 4648 standard alphabet with '=' padding, nothing else (no spaces, no
// line breaks, no missing or extra padding, zero unused bits).
Result<Bytes> base64_decode(std::string_view text);
std::string base64_encode(ByteView data, bool pad = true);

Bytes sha256(ByteView data);
Bytes sha512(ByteView data);

struct EvpPkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct EvpPkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct EvpMdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
struct BnFree {
  void operator()(BIGNUM* p) const { BN_free(p); }
};
struct EcdsaSigFree {
  void operator()(ECDSA_SIG* p) const { ECDSA_SIG_free(p); }
};
struct ParamBldFree {
  void operator()(OSSL_PARAM_BLD* p) const { OSSL_PARAM_BLD_free(p); }
};
struct ParamFree {
  void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
};
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyFree>;
using EvpPkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, EvpPkeyCtxFree>;
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, EvpMdCtxFree>;
using BnPtr = std::unique_ptr<BIGNUM, BnFree>;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, EcdsaSigFree>;
using ParamBldPtr = std::unique_ptr<OSSL_PARAM_BLD, ParamBldFree>;
using ParamPtr = std::unique_ptr<OSSL_PARAM, ParamFree>;

// Days since 1970-01-01 of a proleptic Gregorian date (no time zones).
int64_t days_from_civil(int64_t year, unsigned month, unsigned day);
unsigned days_in_month(int64_t year, unsigned month);

// The first queued OpenSSL error as text (and the queue cleared), for
// messages that have nothing better to say.
std::string openssl_error();

}  // namespace gpugate::auth::wire
