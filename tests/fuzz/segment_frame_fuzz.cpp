// libFuzzer target for compressed segments (lib/ledger/reader.cpp): the
// bytes of a NNNNNN.jsonl.zst file an attacker may have replaced.
//
// What must hold:
//  - decompressing never crashes, hangs or allocates past its bound: a frame
//    declaring more than the bound is refused before anything is allocated;
//  - what decompresses is exactly what the frame declares, and compressing
//    it again and decompressing gives it back byte for byte;
//  - any input, compressed as gpugated compresses a segment, decompresses to
//    itself (the round trip the compressor relies on before it removes the
//    plain segment);
//  - the decompressed bytes go through the verifier like a plain segment.
//
// Build and run with `make fuzz`; seeds in tests/fuzz/corpus/segment_frame/.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gpugate/log_reader.hpp"
#include "gpugate/log_verify.hpp"

using namespace gpugate::ledger;

namespace {

// The fuzzer's memory limit, not a segment's: large enough for any frame
// libFuzzer's inputs make meaningful.
constexpr uint64_t kBound = 16ull << 20;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto text = decompress_segment("fuzz.jsonl.zst", bytes, kBound);
  if (text) {
    if (text->size() > kBound) __builtin_trap();
    auto again = compress_frame(*text, 1);
    if (!again) __builtin_trap();
    auto back = decompress_segment("again", *again, kBound);
    if (!back || *back != *text) __builtin_trap();
    std::vector<MemorySegment> segs{{{1, "000001.jsonl", "", text->size(), true}, *text}};
    (void)verify_memory(segs, {}).text();
  } else if (text.error().message.find("fuzz.jsonl.zst") == std::string::npos) {
    __builtin_trap();  // every error names the file
  }
  auto frame = compress_frame(bytes, 1);
  if (!frame) __builtin_trap();
  auto back = decompress_segment("round-trip", *frame, size);
  if (!back || *back != bytes) __builtin_trap();
  return 0;
}
