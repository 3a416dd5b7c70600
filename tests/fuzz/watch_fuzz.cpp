// libFuzzer target for the state watcher's reading of a ledger tail
// (lib/watch): JSON lines that gpugated seeds its baseline and its matcher
// from at start, and whose changes it then explains.
//
// What must hold:
//  - nothing throws or crashes, whatever the records hold (a member of the
//    wrong type, a seq that is a string, values that are arrays, a grant
//    whose devices are a number);
//  - a change decided after the seed is either explained by a record the
//    input holds or unexplained, and the record written names the field.
//
// Build and run with `make fuzz`; seeds in tests/fuzz/corpus/watch/.
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "gpugate/watch.hpp"

using namespace gpugate::watch;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  std::istringstream in(text);
  std::vector<Json> tail;
  for (std::string line; std::getline(in, line);) {
    auto j = Json::parse(line, nullptr, false);
    if (!j.is_discarded()) tail.push_back(std::move(j));
  }
  WatchOptions o;
  o.boot_id = "boot";
  o.settle_ms = 0;
  Watcher w(o, {}, {});
  w.seed(tail);
  for (const auto& rec : tail) w.note(rec);
  // Every GPU the input named changes every judged field it had.
  GpuSample s;
  s.pci = "0000:41:00.0";
  s.values["power.limit_mw"] = 1;
  s.values["clocks.event_reasons"] = Json::array({"hw_thermal_slowdown", "unknown_0x1000"});
  s.values["pci.present"] = false;
  w.ingest(1000000000000ull, 0, {s});
  uint64_t seqs = 0;
  w.poll(UINT64_MAX, [&](const std::string& type, Json body) {
    if ((type == "state.unexplained" || type == "state.explained") &&
        (!body.contains("field") || !body["field"].is_string()))
      __builtin_trap();
    return seqs++;
  });
  return 0;
}
