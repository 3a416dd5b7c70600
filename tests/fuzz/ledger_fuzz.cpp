// libFuzzer entry point for the ledger reader and verifier: arbitrary bytes
// as one or two segments, through line splitting, prefix parsing, leaf
// classification (torn and recovered lines), checkpoint and note parsing,
// signature checks and proof parsing, as a host's ledger and as a
// collector's copy. Nothing may crash, hang or leak.
//
// Built by CMake with -DGPUGATE_FUZZ=ON (clang; tests/fuzz/CMakeLists.txt)
// and run by `make fuzz` on the seeds in tests/fuzz/corpus/ledger/; by hand:
//   build-san/fuzz/ledger_fuzz -max_len=65536 CORPUS_DIR
// The deterministic mutation loop in tests/unit/ledger/ledger_test.cpp
// (LedgerFuzz.*) runs the same code in every unit-test run.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "gpugate/log_verify.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace gpugate;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  // A fixed key: signatures will not verify, but every path up to them runs.
  static const auto key =
      tlog::parse_verifier_key("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW");
  ledger::VerifyOptions opt;
  if (size && (data[0] & 1) && key) opt.keys.push_back(*key);
  // A collector's copy (records.jsonl) is checked with other rules for
  // segment names and torn lines.
  opt.collected = size && (data[0] & 2);
  // One segment, or two split at a byte the input chooses.
  std::vector<ledger::MemorySegment> segs;
  size_t cut = size > 1 ? data[size - 1] * size / 256 : size;
  segs.push_back({{1, "000001.jsonl", "", 0}, bytes.substr(0, cut)});
  if (cut < size) segs.push_back({{2, "000002.jsonl", "", 0}, bytes.substr(cut)});
  auto report = ledger::verify_memory(segs, opt);
  (void)report.text();
  (void)report.json().dump();
  // The same bytes as a proof file and as a signed note.
  (void)ledger::parse_proof(bytes, "fuzz");
  (void)tlog::parse_signed_checkpoint(bytes, "fuzz");
  return 0;
}
