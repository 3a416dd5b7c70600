// libFuzzer target for mmiotrace's parser and classifier (lib/mmio): any
// bytes as a trace, classified against a std VGA and an NVIDIA GPU.
//
// What must hold, beyond "no crash":
//  - every line is counted once: parsed or malformed, never both;
//  - the writes kept one by one are writes into a GPU's BAR at an offset
//    inside it, and named ones carry the entry that holds their offset;
//  - the record (capture_json) is valid JSON that reads back.
//
// Build and run with `make fuzz`; seeds in tests/fuzz/corpus/mmio/.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "gpugate/mmio.hpp"

using namespace gpugate;

namespace {

std::vector<PciGpu> gpus() {
  PciGpu vga;
  vga.address = "0000:00:02.0";
  vga.vendor_id = 0x1234;
  vga.device_id = 0x1111;
  vga.bars = {{0, 0xfd000000, 0xfdffffff, true}, {2, 0xfebf0000, 0xfebf0fff, true}};
  PciGpu nv;
  nv.address = "0000:41:00.0";
  nv.vendor_id = 0x10de;
  nv.device_id = 0x2335;
  nv.bars = {{0, 0xfa000000, 0xfaffffff, true}, {5, 0xf000, 0xf07f, false}};
  return {vga, nv};
}

void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto kGpus = gpus();
  std::string_view trace(reinterpret_cast<const char*>(data), size);
  auto c = mmio::classify(trace, kGpus, 64);
  check(c.malformed <= c.lines);
  check(c.gpu_writes <= c.writes && c.named_writes <= c.gpu_writes);
  check(c.named.size() <= 64 && c.unnamed.size() <= 8);
  for (const auto* list : {&c.named, &c.unnamed})
    for (const auto& w : *list) {
      bool inside = false;
      for (const auto& g : kGpus)
        for (const auto& b : g.bars)
          inside |= g.address == w.gpu && b.index == w.bar && b.memory && w.offset <= b.end - b.start;
      check(inside);
      if (w.reg) check(w.offset >= w.reg->first && w.offset <= w.reg->last);
    }
  auto text = mmio::capture_json(c).dump();
  check(!nlohmann::json::parse(text, nullptr, false).is_discarded());
  return 0;
}
