// libFuzzer target for the sim engine's script reader (parse_sim_script in
// lib/engine/sim_engine.cpp): JSON lines that gpugated --engine sim and the
// tests turn into ioctl records.
//
// What must hold:
//  - nothing throws, whatever the members hold (a string where a number
//    belongs, an array, a float, a negative or too large number);
//  - a refused script gets an error that names the script and the line
//    ("fuzz.jsonl:N: ..."), N a line of the input;
//  - an accepted script has one call per line that is not blank or a comment,
//    each with its device, and every call survives the capture and the
//    decoder (the engine does exactly this with them).
//
// Build and run with `make fuzz`; seeds in tests/fuzz/corpus/sim_script/.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>

#include "gpugate/decode.hpp"
#include "gpugate/sim_engine.hpp"

using namespace gpugate;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  std::istringstream in(text);
  auto calls = parse_sim_script(in, "fuzz.jsonl");
  // What getline sees: lines, blank ones and '#' comments skipped.
  size_t lines = 0, call_lines = 0;
  std::istringstream count(text);
  for (std::string line; std::getline(count, line);) {
    lines++;
    call_lines += !line.empty() && line[0] != '#';
  }
  if (!calls) {
    const auto& msg = calls.error().message;
    if (msg.rfind("fuzz.jsonl:", 0) != 0) __builtin_trap();
    auto n = std::strtoull(msg.c_str() + 11, nullptr, 10);
    if (n < 1 || n > lines) __builtin_trap();  // the line named is a line of the script
    return 0;
  }
  if (calls->size() != call_lines) __builtin_trap();
  for (const auto& c : *calls) {
    // As SimEngine::poll: the device kind comes from the device table; try each.
    for (unsigned kind = 0; kind < GG_DEV_KIND_COUNT; kind++) {
      gg_raw raw = capture({kind, GG_DRM_GENERIC, c.request, c.arg, c.inner, c.params, 0});
      (void)describe(raw, decode(raw));
    }
  }
  return 0;
}
