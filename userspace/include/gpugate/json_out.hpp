// A small JSON text writer for the record hot path. nlohmann::json builds a
// tree of allocations per record (about 40 µs per ioctl record here); this
// appends text to one reused buffer. Output is compact and RFC 8259 valid;
// strings are escaped, invalid UTF-8 bytes are written as \u00XX escapes of
// the byte so that no input can break a ledger line.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

namespace gpugate {

class JsonOut {
 public:
  explicit JsonOut(std::string& out) : out_(out) {}

  JsonOut& begin_object();
  JsonOut& end_object();
  JsonOut& begin_array();
  JsonOut& end_array();
  JsonOut& key(std::string_view k);

  JsonOut& str(std::string_view s);
  JsonOut& num(int64_t v);
  JsonOut& unum(uint64_t v);
  JsonOut& boolean(bool v);
  JsonOut& null();
  JsonOut& hex32(uint32_t v);                           // "0x%08x" as a string
  JsonOut& hex_bytes(const uint8_t* data, size_t len);  // bytes as a hex string
  JsonOut& raw(std::string_view json);                  // an already valid JSON value

  // key + value: strings, booleans, signed and unsigned integers.
  template <class V>
  JsonOut& field(std::string_view k, const V& v) {
    key(k);
    if constexpr (std::is_same_v<V, bool>)
      return boolean(v);
    else if constexpr (std::is_integral_v<V> && std::is_signed_v<V>)
      return num(v);
    else if constexpr (std::is_integral_v<V>)
      return unum(v);
    else
      return str(std::string_view(v));
  }

 private:
  void comma() {
    if (!first_) out_.push_back(',');
    first_ = false;
  }
  std::string& out_;
  bool first_ = true;
};

}  // namespace gpugate
