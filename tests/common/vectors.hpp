// Decoder test vectors, shared by the unit tests (user-space decoder) and
// the host tests (the same decoder running in the kernel's BPF machine).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

extern "C" {
#include "gg_decode_c.h"
}

namespace gpugate::test {

// Where pointers live inside the bytes, so a host test can point them at
// real memory: the params pointer of a control/alloc, the inner of an XFER.
enum class Layout { Plain, Control, Alloc21, Alloc64, XferControl, XferPlain };

struct Vector {
  std::string name;
  unsigned dev_kind = GG_DEV_NVIDIA_CTL;
  unsigned drm_driver = GG_DRM_GENERIC;
  uint32_t request = 0;
  Layout layout = Layout::Plain;
  std::vector<uint8_t> arg, inner, params;
  // expectations
  int cls = -1;              // -1: not checked
  int64_t command = -1;      // -1: not checked
  uint32_t flags_set = 0;    // these flags must be set
  uint32_t flags_clear = 0;  // these must not be
};

inline uint32_t nv_iowr(unsigned nr, unsigned size) { return (3u << 30) | (size << 16) | (0x46u << 8) | nr; }
inline uint32_t iowr(unsigned type, unsigned nr, unsigned size) { return (3u << 30) | (size << 16) | (type << 8) | nr; }

inline void put32(std::vector<uint8_t>& b, size_t off, uint32_t v) {
  if (b.size() < off + 4) b.resize(off + 4);
  std::memcpy(b.data() + off, &v, 4);
}
inline void put64(std::vector<uint8_t>& b, size_t off, uint64_t v) {
  if (b.size() < off + 8) b.resize(off + 8);
  std::memcpy(b.data() + off, &v, 8);
}

// NVOS54 for cmd with a params block of size psize (placeholder pointer).
inline std::vector<uint8_t> nvos54(uint32_t cmd, uint32_t psize, uint32_t client = 0xc1d00001,
                                   uint32_t object = 0xcaf00001) {
  std::vector<uint8_t> b(32, 0);
  put32(b, 0, client);
  put32(b, 4, object);
  put32(b, 8, cmd);
  put64(b, 16, psize ? 0x1000 : 0);
  put32(b, 24, psize);
  return b;
}

inline Vector control(std::string name, uint32_t cmd, std::vector<uint8_t> params, int cls) {
  Vector v;
  v.name = std::move(name);
  v.request = nv_iowr(0x2A, 32);
  v.layout = Layout::Control;
  v.arg = nvos54(cmd, static_cast<uint32_t>(params.size()));
  v.params = std::move(params);
  v.cls = cls;
  v.command = cmd;
  return v;
}

// The same control tunnelled through NV_ESC_IOCTL_XFER_CMD.
inline Vector xfer(Vector c) {
  Vector v = c;
  v.name = c.name + " via XFER";
  v.request = nv_iowr(0xD3, 16);
  v.layout = Layout::XferControl;
  v.inner = c.arg;
  v.arg.assign(16, 0);
  put32(v.arg, 0, 0x2A);
  put32(v.arg, 4, 32);
  put64(v.arg, 8, 0x2000);
  v.flags_set |= GG_DF_XFER;
  return v;
}

inline size_t params_size_for(int32_t param_size) {
  if (param_size < 0) return 16;
  return static_cast<size_t>(param_size) > 256 ? 256 : static_cast<size_t>(param_size);
}

// Every table entry, plus the odd cases. Expectations come from the tables
// themselves (entry class) or, for the odd cases, from the ABI facts.
inline std::vector<Vector> all_vectors() {
  std::vector<Vector> out;
  int n = 0;
  const gg_nv_ctrl_entry* ctrls = gg_table_nv_controls(&n);
  for (int i = 0; i < n; i++) {
    const auto& e = ctrls[i];
    if (e.id & 0x8000) continue;  // covered by the legacy cases below
    auto v = control("ctrl " + std::to_string(i), e.id,
                     std::vector<uint8_t>(e.param_size == 0 ? 0 : params_size_for(e.param_size), 0), e.cls);
    if (e.param_size > 256) v.params.assign(256, 0);  // captured prefix; the block is larger
    if (e.param_size > 256) put32(v.arg, 24, static_cast<uint32_t>(e.param_size));
    if (e.pkind == GG_PK_DRAIN || e.pkind == GG_PK_GPS) v.cls = -1;  // refined by params: own cases
    out.push_back(v);
    if (i % 7 == 0) out.push_back(xfer(v));
  }
  const gg_nv_esc_entry* escs = gg_table_nv_escapes(&n);
  for (int i = 0; i < n; i++) {
    const auto& e = escs[i];
    if (e.kind == GG_NVK_CONTROL || e.kind == GG_NVK_XFER || e.size == 0) continue;
    Vector v;
    v.name = "escape " + std::to_string(e.nr);
    v.dev_kind = e.devices == GG_NVDEV_GPU ? GG_DEV_NVIDIA_GPU : GG_DEV_NVIDIA_CTL;
    unsigned size = e.size > 128 ? e.size : e.size;
    v.request = nv_iowr(e.nr, size);
    v.layout = e.kind == GG_NVK_ALLOC ? Layout::Alloc21 : Layout::Plain;
    v.arg.assign(size > 128 ? 128 : size, 0);
    if (e.kind == GG_NVK_ALLOC) put32(v.arg, 12, 0x41);
    v.cls = e.cls;
    v.command = e.kind == GG_NVK_ALLOC ? 0x41 : e.nr;
    v.flags_clear = GG_DF_BAD_SIZE | GG_DF_WRONG_NODE | GG_DF_UNKNOWN_ESCAPE;
    out.push_back(v);
  }
  for (unsigned table : {GG_TAB_DRM_CORE, GG_TAB_KFD}) {
    const gg_ioctl_entry* t = gg_table_ioctls(table, &n);
    for (int i = 0; i < n; i++) {
      Vector v;
      v.name = "ioctl table " + std::to_string(table) + " nr " + std::to_string(t[i].nr);
      v.dev_kind = table == GG_TAB_KFD ? GG_DEV_KFD : GG_DEV_DRM;
      v.drm_driver = GG_DRM_GENERIC;
      v.request = iowr(table == GG_TAB_KFD ? 'K' : 'd', t[i].nr, t[i].size);
      v.arg.assign(t[i].size > 128 ? 128 : t[i].size, 0);
      v.cls = t[i].cls;
      v.flags_clear = GG_DF_UNKNOWN_ESCAPE | GG_DF_NONCANONICAL;
      out.push_back(v);
    }
  }
  // every DRM driver's own commands (drm_drivers.def), on a node of that driver
  const gg_drm_ioctl_entry* d = gg_table_drm_driver_ioctls(&n);
  for (int i = 0; i < n; i++) {
    Vector v;
    unsigned nr = d[i].key & 0xff;
    v.name = "drm driver " + std::to_string(d[i].key >> 8) + " nr " + std::to_string(nr);
    v.dev_kind = GG_DEV_DRM;
    v.drm_driver = d[i].key >> 8;
    v.request = iowr('d', nr, d[i].size);
    v.arg.assign(d[i].size > 128 ? 128 : d[i].size, 0);
    v.cls = d[i].cls;
    v.flags_clear = GG_DF_UNKNOWN_ESCAPE | GG_DF_NONCANONICAL;
    out.push_back(v);
  }
  const gg_nv_uvm_entry* uvm = gg_table_nv_uvm(&n);
  for (int i = 0; i < n; i++) {
    Vector v;
    v.name = "uvm " + std::to_string(uvm[i].request);
    v.dev_kind = GG_DEV_NVIDIA_UVM;
    v.request = uvm[i].request;
    v.arg.assign(128, 0);
    v.cls = static_cast<int>(uvm[i].cls);
    v.command = uvm[i].request;
    out.push_back(v);
  }

  // Odd cases, with expectations from the ABI facts (nvidia-abi.md).
  std::vector<uint8_t> drain(12, 0);
  put32(drain, 4, 1);
  put32(drain, 8, 1);
  out.push_back(control("drain with REMOVE_DEVICE is power.off", 0x278, drain, GG_CLASS_POWER_OFF));
  put32(drain, 8, 0);
  out.push_back(control("drain without REMOVE_DEVICE is gpu.reset", 0x278, drain, GG_CLASS_GPU_RESET));
  auto set_power = control("GPU_SET_POWER", 0x20800112, {0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0}, GG_CLASS_POWER_OFF);
  out.push_back(set_power);
  out.push_back(xfer(set_power));
  auto renamed = set_power;
  renamed.name = "renamed request word (type Q, no dir bits)";
  renamed.request = (32u << 16) | ('Q' << 8) | 0x2A;
  renamed.flags_set = GG_DF_NONCANONICAL;
  out.push_back(renamed);
  auto wrong = set_power;
  wrong.name = "RM_CONTROL on a GPU node";
  wrong.dev_kind = GG_DEV_NVIDIA_GPU;
  wrong.flags_set = GG_DF_WRONG_NODE;
  out.push_back(wrong);
  auto pmgr = control("legacy PMGR, privileged", 0x2080E601, std::vector<uint8_t>(16, 0), GG_CLASS_POWER_LIMIT);
  pmgr.flags_set = GG_DF_LEGACY;
  out.push_back(pmgr);
  auto pmgr_read =
      control("legacy PMGR, unprivileged (a read)", 0x2080A601, std::vector<uint8_t>(16, 0), GG_CLASS_UNKNOWN);
  pmgr_read.flags_set = GG_DF_LEGACY;
  out.push_back(pmgr_read);
  out.push_back(control("legacy CLK, privileged", 0x2080D0AB, std::vector<uint8_t>(8, 0), GG_CLASS_CLOCK_LIMIT));
  out.push_back(control("unknown control", 0x12345678, std::vector<uint8_t>(8, 0), GG_CLASS_UNKNOWN));
  auto mismatch = control("params size mismatch", 0x20800112, std::vector<uint8_t>(8, 0), GG_CLASS_POWER_OFF);
  mismatch.flags_set = GG_DF_PARAMS_MISMATCH;
  out.push_back(mismatch);
  auto bad = set_power;
  bad.name = "RM_CONTROL with a wrong size";
  bad.request = nv_iowr(0x2A, 40);
  bad.arg.resize(40, 0);
  bad.flags_set = GG_DF_BAD_SIZE;
  out.push_back(bad);
  auto big = set_power;
  big.name = "oversized request word";
  big.request = nv_iowr(0x2A, 0x3fff);
  big.arg.resize(128, 0);
  big.flags_set = GG_DF_BAD_SIZE | GG_DF_ARG_CUT;
  out.push_back(big);
  Vector unk;
  unk.name = "unknown escape";
  unk.request = nv_iowr(0x77, 8);
  unk.arg.assign(8, 0xff);
  unk.cls = GG_CLASS_UNKNOWN;
  unk.flags_set = GG_DF_UNKNOWN_ESCAPE;
  out.push_back(unk);
  auto nested = xfer(set_power);
  nested.name = "nested XFER";
  put32(nested.arg, 0, 0xD3);
  nested.layout = Layout::XferPlain;
  nested.cls = GG_CLASS_UNKNOWN;
  nested.command = -1;
  nested.flags_set = GG_DF_XFER | GG_DF_XFER_NESTED;
  out.push_back(nested);
  auto toobig = xfer(set_power);
  toobig.name = "XFER above 16384 bytes";
  put32(toobig.arg, 4, 20000);
  toobig.layout = Layout::XferPlain;
  toobig.inner.resize(128, 0);
  toobig.flags_set = GG_DF_XFER | GG_DF_XFER_TOO_BIG | GG_DF_BAD_SIZE;
  toobig.cls = -1;
  out.push_back(toobig);
  Vector tag;
  tag.name = "modeset ioctl";
  tag.dev_kind = GG_DEV_NVIDIA_MODESET;
  tag.request = iowr('m', 0, 16);
  tag.arg.assign(16, 0);
  put32(tag.arg, 0, 7);
  tag.cls = GG_CLASS_OTHER;
  tag.command = 7;
  out.push_back(tag);
  return out;
}

}  // namespace gpugate::test
