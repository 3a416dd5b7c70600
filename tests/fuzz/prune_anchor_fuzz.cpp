// libFuzzer target for a pruned ledger (lib/ledger/prune.cpp, verify.cpp):
// the input is a pruned.json, a newline, and the first segment kept. An
// attacker may have written both.
//
// What must hold: parsing the anchor never crashes and every error names the
// file; an anchor that parses seeds the verifier, which checks it and the
// segment after it without crashing, hanging or leaking, and never reports
// an intact ledger (exit 0) whose pruned part is not the anchor's.
//
// Build and run with `make fuzz`; seeds in tests/fuzz/corpus/prune_anchor/.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "gpugate/log_prune.hpp"
#include "gpugate/log_verify.hpp"

using namespace gpugate;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  size_t nl = bytes.find('\n');
  std::string_view anchor_text = bytes.substr(0, nl);
  std::string_view segment = nl == std::string_view::npos ? std::string_view() : bytes.substr(nl + 1);
  auto anchor = ledger::parse_prune_anchor(anchor_text, "fuzz/pruned.json");
  if (!anchor) {
    if (anchor.error().message.find("fuzz/pruned.json") == std::string::npos) __builtin_trap();
    return 0;
  }
  std::vector<ledger::MemorySegment> segs;
  segs.push_back({{anchor->first_segment, ledger::segment_name(anchor->first_segment), "", 0, false}, segment});
  auto report = ledger::verify_memory(segs, {}, &*anchor);
  (void)report.text();
  (void)report.json().dump();
  if (report.exit_code == ledger::kVerifyOk && (!report.pruned || report.pruned->first_seq != anchor->first_seq))
    __builtin_trap();
  return 0;
}
