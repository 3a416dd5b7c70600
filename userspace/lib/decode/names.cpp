// Names for humans and ledgers, expanded from the same .def files as the
// decoder's tables, so index i of a table always names entry i.
#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <span>

#include <fmt/format.h>

#include "gpugate/decode.hpp"

extern "C" {
#include "gg_decode_c.h"
}

namespace gpugate {
namespace {

struct ClassInfo {
  const char* name;
  bool gated;
};
constexpr ClassInfo kClasses[] = {
#define GG_CLASS(ident, id, name, gated) {name, gated},
#include "gpugate/classes.def"
#undef GG_CLASS
};
static_assert(std::size(kClasses) == GG_CLASS_COUNT);

struct EscName {
  unsigned nr;
  const char* name;
};
constexpr EscName kNvEscapes[] = {
#define GG_NV_ESC(nr, name, size, alt, dev, kind, cls, st, handler) {nr, #name},
#include "gpugate/nvidia_escapes.def"
#undef GG_NV_ESC
};

constexpr const char* kNvControlNames[] = {
#define GG_NV_CTRL(id, name, priv, cls, src, psize, pkind) #name,
#include "gpugate/nvidia_controls.def"
#undef GG_NV_CTRL
};

constexpr const char* kNvLegacyNames[] = {
#define GG_NV_LEGACY(cc, cat, catname, cls) catname,
#include "gpugate/nvidia_legacy.def"
#undef GG_NV_LEGACY
};

constexpr const char* kNvUvmNames[] = {
#define GG_NV_UVM(req, name, cls) #name,
#include "gpugate/nvidia_uvm.def"
#undef GG_NV_UVM
};

struct ObjClass {
  uint32_t id;
  const char* name;
};
constexpr ObjClass kNvObjClasses[] = {
#define GG_NV_OBJCLASS(id, name, binapi) {id, #name},
#include "gpugate/nvidia_classes.def"
#undef GG_NV_OBJCLASS
};

#define GG_DRM_IOCTL(nr, name, size, cls) #name,
#define GG_KFD_IOCTL(nr, name, size, cls) #name,
constexpr const char* kDrmCoreNames[] = {
#include "gpugate/drm.def"
};
constexpr const char* kKfdNames[] = {
#include "gpugate/kfd.def"
};
#undef GG_DRM_IOCTL
#undef GG_KFD_IOCTL

// DRM drivers (drm_drivers.def): names, and every driver's own commands in
// the order of gg_drm_driver_ioctls.
struct DrmDriverInfo {
  const char* name;
  unsigned table;
};
constexpr DrmDriverInfo kDrmDrivers[] = {
    {"generic", GG_TAB_NONE},
#define GG_DRM_DRIVER(ident, name, vendor, table) {name, table},
#include "gpugate/drm_drivers.def"
#undef GG_DRM_DRIVER
};
static_assert(std::size(kDrmDrivers) == GG_DRM_DRIVER_COUNT);
constexpr const char* kDrmDriverIoctlNames[] = {
#define GG_DRM_DRIVER(ident, name, vendor, table)
#define GG_DRM_DRIVER_TABLES
#define GG_DRM_DRIVER_IOCTL(drv, nr, name, size, cls) #name,
#include "gpugate/drm_drivers.def"
#undef GG_DRM_DRIVER_IOCTL
#undef GG_DRM_DRIVER_TABLES
#undef GG_DRM_DRIVER
};

// The driver whose own command table has this id, if any.
std::optional<unsigned> drm_driver_of_table(unsigned table) {
  for (unsigned i = 1; i < std::size(kDrmDrivers); i++)
    if (kDrmDrivers[i].table == table) return i;
  return std::nullopt;
}

constexpr const char* kPkindNames[] = {
#define GG_PKIND(ident, names, o0, w0, o1, w1, o2, w2, o3, w3) names,
#include "gpugate/pkinds.def"
#undef GG_PKIND
};

struct FlagName {
  uint32_t bit;
  const char* name;
};
constexpr FlagName kFlags[] = {
    {GG_DF_XFER, "xfer"},
    {GG_DF_ARG_SHORT, "arg-short"},
    {GG_DF_INNER_SHORT, "inner-short"},
    {GG_DF_PARAMS_SHORT, "params-short"},
    {GG_DF_ARG_FAULT, "arg-unreadable"},
    {GG_DF_INNER_FAULT, "inner-unreadable"},
    {GG_DF_PARAMS_FAULT, "params-unreadable"},
    {GG_DF_BAD_SIZE, "bad-size"},
    {GG_DF_WRONG_NODE, "wrong-node"},
    {GG_DF_UNKNOWN_ESCAPE, "unknown-escape"},
    {GG_DF_XFER_TOO_BIG, "xfer-too-big"},
    {GG_DF_XFER_NESTED, "xfer-nested"},
    {GG_DF_PARAMS_MISMATCH, "params-size-mismatch"},
    {GG_DF_WORST_CASE, "worst-case-class"},
    {GG_DF_LEGACY, "gss-legacy"},
    {GG_DF_BINAPI, "binapi"},
    {GG_DF_NONCANONICAL, "noncanonical-request"},
    {GG_DF_ARG_CUT, "arg-cut"},
    {GG_DF_PARAMS_CUT, "params-cut"},
    {GG_DF_NO_ARG, "no-arg"},
    {GG_DF_UNDECIDED, "undecided"},
    {GG_DF_OPAQUE_PARAMS, "opaque-params"},
    {GG_DF_KEYS_VALID, "keys-valid"},
    {GG_DF_HEADER_SHORT, "header-short"},
    {GG_DF_OBJECT_KNOWN, "object-known"},
    {GG_DF_DRIVER_REFUSES, "driver-refuses-user-space"},
};

constexpr FlagName kCaptureReasons[] = {
    {GG_CAP_REFUSED_UFFD, "userfaultfd"},   {GG_CAP_REFUSED_FUSE, "fuse"},
    {GG_CAP_VMA_BUSY, "mapping-busy"},      {GG_CAP_SLOW, "slow-read"},
    {GG_CAP_CHANGED, "changed-while-read"}, {GG_CAP_PAGED, "paged-in"},
    {GG_CAP_NO_FAULT_HOOK, "not-resident"}, {GG_CAP_DEFERRED, "at-the-driver-copy"},
    {GG_CAP_AFTER, "read-after-the-call"},
};

constexpr const char* kReasons[] = {"class",           "rule",   "grant",     "capture",    "unrecorded",
                                    "no-thread-state", "strict", "undecided", "ledger-down"};
static_assert(std::size(kReasons) == GG_WHY_COUNT);

constexpr const char* kGuardOps[] = {"?",          "map-write",  "map-fd",       "prog-fd",  "link",
                                     "pin-unlink", "pin-rename", "bpffs-umount", "prog-load"};
static_assert(std::size(kGuardOps) == GG_GUARD_OP_COUNT);

constexpr const char* kDevKinds[] = {"none",       "nvidia-ctl",       "nvidia-gpu", "nvidia-modeset",
                                     "nvidia-uvm", "nvidia-uvm-tools", "drm",        "kfd"};
static_assert(std::size(kDevKinds) == GG_DEV_KIND_COUNT);

// A span, not a template on the array's size: g++ 12 folds the template's
// instances and then warns (-Warray-bounds) about one array's bound on another.
std::string_view pick(std::span<const char* const> names, size_t i) {
  return i < names.size() ? names[i] : std::string_view("?");
}

}  // namespace

gg_decoded decode(const gg_raw& raw) {
  gg_decoded d{};
  gg_decode_c(&raw, &d);
  return d;
}

namespace {
// Copy up to want bytes of src into dst; returns the length taken, or -1 if
// the read counts as failed.
int take(std::span<const uint8_t> src, uint32_t want, bool partial, uint8_t* dst) {
  if (src.size() < want && !partial) return -1;
  size_t n = std::min<size_t>(src.size(), want);
  if (n) std::memcpy(dst, src.data(), n);
  return static_cast<int>(n);
}
}  // namespace

gg_raw capture(const RawInput& in) {
  gg_raw raw{};
  raw.request = in.request;
  raw.dev_kind = static_cast<uint8_t>(in.dev_kind);
  raw.drm_driver = static_cast<uint8_t>(in.drm_driver);
  raw.target_class = in.target_class;
  uint32_t want = gg_arg_want_c(in.dev_kind, in.request);
  if (want) {
    int n = take(in.arg, want, in.partial, raw.arg);
    if (n < 0)
      raw.capture_flags |= GG_CAP_ARG_FAULT;
    else
      raw.arg_len = static_cast<uint32_t>(n);
  }
  unsigned long long ptr = 0;
  unsigned len = 0;
  if (gg_xfer_ref_c(&raw, &ptr, &len) && len) {
    int n = take(in.inner, len, in.partial && !in.inner.empty(), raw.inner);
    if (n < 0)
      raw.capture_flags |= GG_CAP_INNER_FAULT;
    else
      raw.inner_len = static_cast<uint32_t>(n);
  }
  if (gg_params_ref_c(&raw, &ptr, &len) && len) {
    int n = take(in.params, len, in.partial && !in.params.empty(), raw.params);
    if (n < 0)
      raw.capture_flags |= GG_CAP_PARAMS_FAULT;
    else
      raw.params_len = static_cast<uint32_t>(n);
  }
  return raw;
}

std::string_view mode_name(unsigned mode) {
  switch (mode) {
    case GG_MODE_MONITOR: return "monitor";
    case GG_MODE_ENFORCE: return "enforce";
    default: return "observe";
  }
}

std::string_view action_name(unsigned action) {
  switch (action) {
    case GG_ACT_ALLOW: return "allow";
    case GG_ACT_LOG: return "log";
    case GG_ACT_DENY: return "deny";
    case GG_ACT_REQUIRE_SIGNATURE: return "require-signature";
    default: return "?";
  }
}

std::string_view verdict_name(unsigned verdict) {
  switch (verdict) {
    case GG_VERDICT_ALLOW: return "allowed";
    case GG_VERDICT_DENY: return "denied";
    case GG_VERDICT_WOULD_DENY: return "would-deny";
    default: return "?";
  }
}

std::string_view hook_name(unsigned hook) {
  switch (hook) {
    case GG_HOOK_TP_IOCTL: return "tp/syscalls/sys_enter_ioctl";
    case GG_HOOK_LSM_IOCTL: return "lsm.s/file_ioctl";
    case GG_HOOK_LSM_IOCTL_COMPAT: return "lsm/file_ioctl_compat";
    case GG_HOOK_SIM: return "sim";
    case GG_HOOK_RAW_TP_COMPAT: return "raw_tp/sys_enter";
    case GG_HOOK_KMOD_RM_IOCTL: return "kmod/rm_ioctl";
    case GG_HOOK_KMOD_OS_MEMCPY: return "kmod/os_memcpy_from_user";
    case GG_HOOK_KMOD_NV_IOCTL: return "kmod/nvidia_unlocked_ioctl";
    case GG_HOOK_KMOD_DRM: return "kmod/drm_ioctl_kernel";
    case GG_HOOK_KMOD_KFD: return "kmod/kfd_handler";
    case GG_HOOK_LSM_FILE_WRITE: return "lsm/file_permission";
    case GG_HOOK_LSM_MMAP_FILE: return "lsm/mmap_file";
    case GG_HOOK_KMOD_KNOB_WRITE: return "kmod/knob_write";
    case GG_HOOK_KMOD_KNOB_MMAP: return "kmod/knob_mmap";
    default: return "none";
  }
}

std::string_view reason_name(unsigned reason) { return pick(kReasons, reason); }

std::string_view guard_op_name(unsigned op) { return pick(kGuardOps, op); }

std::vector<std::string_view> capture_reason_names(uint32_t capture_flags) {
  std::vector<std::string_view> out;
  for (const auto& f : kCaptureReasons)
    if (capture_flags & f.bit) out.push_back(f.name);
  return out;
}

std::optional<uint32_t> capture_reason_from_name(std::string_view name) {
  for (const auto& f : kCaptureReasons)
    if (name == f.name) return f.bit;
  return std::nullopt;
}

gg_policy default_policy(unsigned mode) {
  gg_policy p{};
  p.mode = static_cast<uint8_t>(mode);
  p.read_wait_max_ns = GG_READ_WAIT_MAX_NS_DEFAULT;
  for (unsigned c = 0; c < GG_CLASS_COUNT; c++)
    p.action[c] = static_cast<uint8_t>(kClasses[c].gated ? GG_ACT_REQUIRE_SIGNATURE : GG_ACT_LOG);
  return p;
}

unsigned decide(const gg_policy& policy, unsigned cls, bool granted, bool recorded) {
  return gg_decide(&policy, cls, granted ? 1 : 0, recorded ? 1 : 0);
}

Decision decide(const gg_policy& policy, const gg_subject& subject, bool granted, bool recorded) {
  Decision d;
  uint32_t rule = 0;
  d.action = gg_action_for(&policy, &subject, &rule);
  d.rule = rule;
  d.verdict = gg_verdict_of(policy.mode, d.action, granted ? 1 : 0, recorded ? 1 : 0);
  return d;
}

gg_subject subject_of(const gg_ioctl_enter& e) {
  return gg_subject{e.dec.cls, e.dev, e.uid, e.device.vendor, e.cgroup_id, e.comm};
}

std::string_view class_name(unsigned cls) {
  return cls < GG_CLASS_COUNT ? kClasses[cls].name : std::string_view("unknown");
}

std::optional<unsigned> class_from_name(std::string_view name) {
  for (unsigned i = 0; i < GG_CLASS_COUNT; i++)
    if (name == kClasses[i].name) return i;
  return std::nullopt;
}

bool class_gated_by_default(unsigned cls) { return cls < GG_CLASS_COUNT && kClasses[cls].gated; }

std::string_view priv_name(unsigned priv) {
  switch (priv) {
    case GG_PRIV_NONE: return "any";
    case GG_PRIV_ROOT: return "root";
    case GG_PRIV_KERNEL: return "kernel-only";
    case GG_PRIV_INTERNAL: return "rm-internal";
    default: return "unknown";
  }
}

std::string_view source_name(unsigned src) {
  switch (src) {
    case GG_SRC_TABLE: return "table";
    case GG_SRC_NAME: return "name";
    case GG_SRC_INFERRED: return "inferred";
    default: return "none";
  }
}

std::string_view vendor_name(unsigned vendor) {
  switch (vendor) {
    case GG_VENDOR_NVIDIA: return "nvidia";
    case GG_VENDOR_AMD: return "amd";
    case GG_VENDOR_INTEL: return "intel";
    case GG_VENDOR_OTHER: return "other";
    default: return "none";
  }
}

std::string_view dev_kind_name(unsigned kind) { return pick(kDevKinds, kind); }

std::optional<unsigned> dev_kind_from_name(std::string_view name) {
  for (unsigned i = 1; i < GG_DEV_KIND_COUNT; i++)
    if (name == kDevKinds[i]) return i;
  return std::nullopt;
}

std::string_view drm_driver_name(unsigned driver) {
  return driver < std::size(kDrmDrivers) ? kDrmDrivers[driver].name : "generic";
}

std::optional<unsigned> drm_driver_from_name(std::string_view name) {
  for (unsigned i = 1; i < std::size(kDrmDrivers); i++)
    if (name == kDrmDrivers[i].name) return i;
  return std::nullopt;
}

std::vector<std::string_view> flag_names(uint32_t flags) {
  std::vector<std::string_view> out;
  for (const auto& f : kFlags)
    if (flags & f.bit) out.emplace_back(f.name);
  return out;
}

std::string_view nv_escape_name(unsigned nr) {
  for (const auto& e : kNvEscapes)
    if (e.nr == nr) return e.name;
  return {};
}

std::string_view nv_object_class_name(uint32_t cls) {
  for (const auto& c : kNvObjClasses)
    if (c.id == cls) return c.name;
  return {};
}

std::string_view table_name(unsigned table) {
  switch (table) {
    case GG_TAB_NV_ESCAPE: return "nvidia-escape";
    case GG_TAB_NV_CONTROL: return "nvidia-control";
    case GG_TAB_NV_LEGACY: return "nvidia-legacy";
    case GG_TAB_NV_UVM: return "nvidia-uvm";
    case GG_TAB_DRM_CORE: return "drm";
    case GG_TAB_KFD: return "kfd";
    case GG_TAB_NV_MODESET: return "nvidia-modeset";
    case GG_TAB_KNOB: return "knob";
    default:
      if (auto drv = drm_driver_of_table(table)) return kDrmDrivers[*drv].name;
      return "none";
  }
}

std::string_view table_entry_name(unsigned table, size_t i) {
  switch (table) {
    case GG_TAB_NV_ESCAPE: return i < std::size(kNvEscapes) ? kNvEscapes[i].name : "?";
    case GG_TAB_NV_CONTROL: return pick(kNvControlNames, i);
    case GG_TAB_NV_LEGACY: return pick(kNvLegacyNames, i);
    case GG_TAB_NV_UVM: return pick(kNvUvmNames, i);
    case GG_TAB_DRM_CORE: return pick(kDrmCoreNames, i);
    case GG_TAB_KFD: return pick(kKfdNames, i);
    case GG_TAB_NV_MODESET: return "NVKMS_IOCTL_CMD";
    default:
      // a DRM driver's own command: i indexes every driver's commands together
      if (drm_driver_of_table(table)) return pick(kDrmDriverIoctlNames, i);
      return "?";
  }
}

std::vector<TableInfo> tables() {
  std::vector<TableInfo> out = {
      {GG_TAB_NV_ESCAPE, "nvidia-escape", std::size(kNvEscapes)},
      {GG_TAB_NV_CONTROL, "nvidia-control", std::size(kNvControlNames)},
      {GG_TAB_NV_LEGACY, "nvidia-legacy", std::size(kNvLegacyNames)},
      {GG_TAB_NV_UVM, "nvidia-uvm", std::size(kNvUvmNames)},
      {GG_TAB_DRM_CORE, "drm", std::size(kDrmCoreNames)},
      {GG_TAB_KFD, "kfd", std::size(kKfdNames)},
  };
  // each DRM driver's table indexes the commands of every driver (gg_drm_driver_ioctls)
  for (unsigned i = 1; i < std::size(kDrmDrivers); i++)
    out.push_back({kDrmDrivers[i].table, kDrmDrivers[i].name, std::size(kDrmDriverIoctlNames)});
  return out;
}

std::string command_name(const gg_raw& raw, const gg_decoded& d) {
  if (d.table == GG_TAB_NV_CONTROL || d.table == GG_TAB_NV_UVM || d.table == GG_TAB_DRM_CORE || d.table == GG_TAB_KFD ||
      drm_driver_of_table(d.table))
    return std::string(table_entry_name(d.table, d.index));
  if (d.table == GG_TAB_NV_LEGACY)
    return fmt::format("NV{:04X}_CTRL_LEGACY_{}_{:#010x}", d.command >> 16, table_entry_name(d.table, d.index),
                       d.command);
  if (d.table == GG_TAB_NV_MODESET) return fmt::format("NVKMS_IOCTL_CMD_{}", d.command);
  if (d.table == GG_TAB_NV_ESCAPE) {
    std::string name(table_entry_name(d.table, d.index));
    if (d.nr == 0x2A && d.command == 0x2A) return name + "(command unreadable)";
    if (d.nr == 0x2A) {  // a control not in any table
      if (d.flags & GG_DF_LEGACY) return fmt::format("NV_RM_CONTROL_LEGACY_{:#010x}", d.command);
      return fmt::format("NV_RM_CONTROL_{:#010x}", d.command);
    }
    if (d.nr == 0x2B) {
      auto cls = nv_object_class_name(d.command);
      return cls.empty() ? fmt::format("{}({:#x})", name, d.command) : fmt::format("{}({})", name, cls);
    }
    return name;
  }
  if (raw.dev_kind == GG_DEV_NVIDIA_CTL || raw.dev_kind == GG_DEV_NVIDIA_GPU)
    return fmt::format("NV_ESC_{:#04x}", d.nr);
  return fmt::format("IOCTL_{:#010x}", raw.request);
}

std::string request_name(const gg_raw& raw, const gg_decoded& d) {
  if (raw.dev_kind == GG_DEV_NVIDIA_CTL || raw.dev_kind == GG_DEV_NVIDIA_GPU) {
    auto n = nv_escape_name(d.outer_nr);
    if (!n.empty()) return std::string(n);
    return fmt::format("NV_ESC_{:#04x}", d.outer_nr);
  }
  return command_name(raw, d);
}

std::vector<KeyParamRef> key_param_refs(std::string_view name) {
  std::vector<KeyParamRef> out;
  for (unsigned pk = 1; pk < std::size(kPkindNames); pk++) {
    std::string_view names = kPkindNames[pk];
    for (unsigned i = 0; i < 4 && !names.empty(); i++) {
      size_t comma = names.find(',');
      std::string_view key = names.substr(0, comma);
      // Case-blind: signed requests spell parameter names in lowercase.
      if (key.size() == name.size() && std::equal(key.begin(), key.end(), name.begin(),
                                                  [](char a, char b) { return std::tolower(a) == std::tolower(b); }))
        out.push_back({pk, i});
      names = comma == std::string_view::npos ? std::string_view() : names.substr(comma + 1);
    }
  }
  return out;
}

std::vector<std::pair<std::string, uint64_t>> key_params(const gg_decoded& d) {
  std::vector<std::pair<std::string, uint64_t>> out;
  if (d.table == GG_TAB_NV_ESCAPE && d.nr == 0x2B) {
    out.emplace_back("hObjectNew", d.key[0]);
    return out;
  }
  if (d.table == GG_TAB_NV_MODESET) {
    out.emplace_back("cmd", d.key[0]);
    out.emplace_back("size", d.key[1]);
    return out;
  }
  if (d.pkind == 0 || d.pkind >= std::size(kPkindNames)) return out;
  std::string_view names = kPkindNames[d.pkind];
  size_t i = 0;
  while (!names.empty() && i < 4) {
    size_t comma = names.find(',');
    out.emplace_back(std::string(names.substr(0, comma)), d.key[i++]);
    if (comma == std::string_view::npos) break;
    names.remove_prefix(comma + 1);
  }
  return out;
}

}  // namespace gpugate
