// libFuzzer target for the signed-request text (lib/auth/request.cpp) and
// the field parsers it is made of.
//
// What must hold (request.hpp states it):
//  - the text is canonical: a request that parses renders to the very bytes
//    it was parsed from, passes validate_request, and parses again to itself;
//  - a refused request gets an error that starts with the file's name;
//  - scope and time fields are canonical too (format(parse(t)) == t), and a
//    duration survives format_duration (parse(format(d)) == d).
//
// Build and run with `make fuzz`; seeds in tests/fuzz/corpus/request/. The
// first byte picks the parser (0: whole request, the common case).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "gpugate/request.hpp"

using namespace gpugate::auth;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 8) {
    case 1: {
      auto scope = parse_scope(text);
      if (scope && (format_scope(*scope) != text || !(*parse_scope(format_scope(*scope)) == *scope))) __builtin_trap();
      break;
    }
    case 2: {
      auto seconds = parse_duration(text);
      if (seconds) {
        auto again = parse_duration(format_duration(*seconds));
        if (!again || *again != *seconds) __builtin_trap();
      }
      break;
    }
    case 3: {
      auto when = parse_request_time(text);
      if (when && format_request_time(*when) != text) __builtin_trap();
      break;
    }
    case 4: (void)classify_gpu_ref(text); break;
    default: {
      auto req = parse_request(text, "fuzz");
      if (!req) {
        if (req.error().message.rfind("fuzz", 0) != 0) __builtin_trap();  // errors name the file
        break;
      }
      std::string rendered = render_request(*req);
      if (rendered != text) __builtin_trap();  // not canonical: two texts for one request
      if (!validate_request(*req)) __builtin_trap();
      auto again = parse_request(rendered, "fuzz");
      if (!again || !(*again == *req)) __builtin_trap();
      break;
    }
  }
  return 0;
}
