// libFuzzer target for the ioctl decoder: arbitrary gg_raw bytes through
// gg_decode (the pure-C decoder that BPF, the module and user space share),
// the user-space capture that builds a gg_raw from stand-ins for user memory,
// and libgpugate's names and renderings of the answer (lib/decode).
//
// What must hold, beyond "no crash":
//  - gg_decode reads nothing outside the gg_raw (ASan: it lives on the heap at
//    its exact size) and nothing past the lengths it declares: changing the
//    bytes after arg_len, inner_len and params_len changes no answer;
//  - every answer is in range (class, source, privilege, vendor, key layout,
//    table, and an index inside that table);
//  - the raw bytes as the ledger writes them (raw_json) read back
//    (raw_from_json) to the same gg_raw, so a record decodes offline exactly
//    as it did live (gpugate log replay);
//  - decoded_json is valid JSON and the human line starts with the command name.
//
// Build and run with `make fuzz` (tests/fuzz/CMakeLists.txt, GPUGATE_FUZZ=ON);
// seeds in tests/fuzz/corpus/decode/. The first byte picks the input's form.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>

#include "gpugate/decode.hpp"

extern "C" {
#include "gg_decode_c.h"
}

using namespace gpugate;

namespace {

constexpr uint32_t kFaultFlags = GG_CAP_ARG_FAULT | GG_CAP_INNER_FAULT | GG_CAP_PARAMS_FAULT;

void check_in_range(const gg_decoded& d) {
  if (d.cls >= GG_CLASS_COUNT || d.cls_source > GG_SRC_INFERRED || d.priv > GG_PRIV_INTERNAL ||
      d.vendor >= GG_VENDOR_COUNT || d.pkind >= GG_PK_COUNT || d.table >= GG_TAB_COUNT)
    __builtin_trap();
  // A table answer names one of its entries (tables() lists the tables libgpugate names).
  for (const auto& t : tables())
    if (t.table == d.table && d.index >= t.size) __builtin_trap();
}

gg_decoded decode_on_heap(const gg_raw& raw) {
  // Heap, exact size: a read past the struct is an ASan report.
  auto copy = std::make_unique<gg_raw>(raw);
  return decode(*copy);
}

// The same raw with every byte the decoder may not look at changed.
gg_raw with_undeclared_bytes_changed(const gg_raw& raw) {
  gg_raw other = raw;
  bool refused = raw.arg_len > GG_ARG_MAX || raw.inner_len > GG_ARG_MAX || raw.params_len > GG_PARAMS_MAX;
  auto change = [&](uint8_t* buf, uint32_t len, uint32_t cap) {
    for (uint32_t i = refused ? 0 : len; i < cap; i++) buf[i] ^= 0xA5;
  };
  change(other.arg, raw.arg_len, GG_ARG_MAX);
  change(other.inner, raw.inner_len, GG_ARG_MAX);
  change(other.params, raw.params_len, GG_PARAMS_MAX);
  return other;
}

// What a recorded capture can hold: a GPU node's kind (records are only made
// for those), lengths within the buffers, the three fault bits, nothing after
// the lengths.
gg_raw as_recorded(gg_raw raw) {
  raw.dev_kind = static_cast<uint8_t>(1 + raw.dev_kind % (GG_DEV_KIND_COUNT - 1));
  raw.drm_driver = raw.dev_kind == GG_DEV_DRM ? raw.drm_driver % GG_DRM_DRIVER_COUNT : GG_DRM_GENERIC;
  raw.capture_flags &= kFaultFlags;
  raw.arg_len %= GG_ARG_MAX + 1;
  raw.inner_len %= GG_ARG_MAX + 1;
  raw.params_len %= GG_PARAMS_MAX + 1;
  std::memset(raw.arg + raw.arg_len, 0, GG_ARG_MAX - raw.arg_len);
  std::memset(raw.inner + raw.inner_len, 0, GG_ARG_MAX - raw.inner_len);
  std::memset(raw.params + raw.params_len, 0, GG_PARAMS_MAX - raw.params_len);
  return raw;
}

void check_decoder(const gg_raw& raw) {
  gg_decoded d = decode_on_heap(raw);
  check_in_range(d);
  gg_decoded again = decode_on_heap(with_undeclared_bytes_changed(raw));
  if (std::memcmp(&d, &again, sizeof(d)) != 0) __builtin_trap();  // it read past a length
}

void check_renderings(const gg_raw& raw) {
  gg_decoded d = decode(raw);
  auto back = raw_from_json(raw_json(raw));
  if (!back || std::memcmp(&*back, &raw, sizeof(raw)) != 0) __builtin_trap();  // the ledger loses bytes
  std::string line = describe(raw, d);
  if (line.rfind(command_name(raw, d), 0) != 0) __builtin_trap();
  (void)decoded_json(raw, d).dump();  // throws (a crash here) if not JSON
  (void)request_name(raw, d);
  (void)key_params(d);
  (void)flag_names(d.flags);
}

// Bytes as the capture would find them in user memory: what it takes depends
// on the decoder's own answers (argument size, XFER inner, params pointer).
gg_raw capture_from(std::span<const uint8_t> in) {
  if (in.size() < 8) return {};
  RawInput ri;
  ri.dev_kind = in[0] % GG_DEV_KIND_COUNT;
  ri.drm_driver = in[1] % GG_DRM_DRIVER_COUNT;
  std::memcpy(&ri.request, in.data() + 2, 4);
  ri.partial = in[6] & 1;
  size_t rest = in.size() - 8;
  size_t cut1 = rest ? in[7] % (rest + 1) : 0;
  size_t cut2 = cut1 + (rest - cut1) / 2;
  auto body = in.subspan(8);
  ri.arg = body.subspan(0, cut1);
  ri.inner = body.subspan(cut1, cut2 - cut1);
  ri.params = body.subspan(cut2);
  ri.target_class = in[6] & 2 ? 0x2081 : 0;  // BINAPI, for the inferred branch
  return capture(ri);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::span<const uint8_t> in(data + 1, size - 1);
  gg_raw raw{};
  if (data[0] & 1) {
    raw = capture_from(in);
    if (raw.arg_len > GG_ARG_MAX || raw.inner_len > GG_ARG_MAX || raw.params_len > GG_PARAMS_MAX)
      __builtin_trap();  // the capture stays inside the buffers
  } else {
    std::memcpy(&raw, in.data(), std::min(in.size(), sizeof(raw)));
  }
  check_decoder(raw);
  check_renderings(as_recorded(raw));
  return 0;
}
