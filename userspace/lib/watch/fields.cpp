// What each sampled field is and which command classes change it.
// NVML's clock-event reason bits: nvml.h (NVIDIA/go-nvml gen/nvml/nvml.h,
// nvmlClocksEventReason*).
#include <array>
#include <cstdio>
#include <string_view>

#include "gpugate/decode.hpp"
#include "gpugate/watch.hpp"

namespace gpugate::watch {
namespace {

struct NamedField {
  std::string_view name;
  FieldKind kind;
  std::array<unsigned, 3> classes;  // 0 (unknown) ends the list
  std::string_view what;
};

constexpr unsigned kReset = GG_CLASS_GPU_RESET;

// Fields every source names the same way: one table, so that the matcher
// judges an NVML power limit and a simulated one alike.
constexpr NamedField kFields[] = {
    {"pci.present", FieldKind::Presence, {GG_CLASS_POWER_OFF, kReset}, "the function is on the bus"},
    {"pci.power_state", FieldKind::Presence, {GG_CLASS_POWER_OFF, kReset}, "the PCI power state (D0, D3hot, D3cold)"},
    {"pci.link_width", FieldKind::Setting, {GG_CLASS_LINK_CONFIG, kReset}, "negotiated PCIe link width"},
    {"pci.link_speed", FieldKind::Telemetry, {}, "PCIe link speed (drops at idle by design)"},
    {"pci.runtime_status", FieldKind::Telemetry, {}, "runtime PM status"},
    {"power.on", FieldKind::Presence, {GG_CLASS_POWER_OFF, kReset}, "the GPU is powered (simulated driver)"},
    {"power.level", FieldKind::Presence, {GG_CLASS_POWER_OFF, kReset}, "the power level GPU_SET_POWER set"},
    {"power.limit_mw", FieldKind::Setting, {GG_CLASS_POWER_LIMIT, kReset}, "the power management limit"},
    {"power.enforced_limit_mw", FieldKind::Setting, {GG_CLASS_POWER_LIMIT, kReset}, "the power limit in force"},
    {"power.default_limit_mw", FieldKind::Setting, {GG_CLASS_POWER_LIMIT, kReset}, "the default power limit"},
    {"power.usage_mw", FieldKind::Telemetry, {}, "power draw"},
    {"clocks.sm_mhz", FieldKind::Telemetry, {}, "SM clock"},
    {"clocks.mem_mhz", FieldKind::Telemetry, {}, "memory clock"},
    {"clocks.applications_sm_mhz", FieldKind::Setting, {GG_CLASS_CLOCK_LIMIT, kReset}, "application SM clock"},
    {"clocks.applications_mem_mhz", FieldKind::Setting, {GG_CLASS_CLOCK_LIMIT, kReset}, "application memory clock"},
    {"clocks.p0_sm_min_mhz", FieldKind::Setting, {GG_CLASS_CLOCK_LIMIT, kReset}, "lowest SM clock of P0 (a lock)"},
    {"clocks.p0_sm_max_mhz", FieldKind::Setting, {GG_CLASS_CLOCK_LIMIT, kReset}, "highest SM clock of P0 (a lock)"},
    {"clocks.sm_max_mhz", FieldKind::Setting, {GG_CLASS_CLOCK_LIMIT, kReset}, "the SM clock ceiling (a lock)"},
    {"clocks.event_reasons", FieldKind::Throttle, {}, "why clocks are held below their maximum"},
    {"perf.pstate", FieldKind::Telemetry, {}, "the performance state (moves with load)"},
    {"perf.forced_state", FieldKind::Setting, {GG_CLASS_PERF_STATE, kReset}, "a performance state set by command"},
    {"temperature.gpu_c", FieldKind::Telemetry, {}, "GPU temperature"},
    {"ecc.current", FieldKind::Setting, {GG_CLASS_ECC_CONFIG}, "ECC mode in force"},
    {"ecc.pending", FieldKind::Setting, {GG_CLASS_ECC_CONFIG}, "ECC mode after the next reset"},
    {"mig.current", FieldKind::Setting, {GG_CLASS_MIG_CONFIG}, "MIG mode in force"},
    {"mig.pending", FieldKind::Setting, {GG_CLASS_MIG_CONFIG}, "MIG mode after the next reset"},
    {"persistence", FieldKind::Setting, {GG_CLASS_PERSISTENCE}, "persistence mode"},
    {"compute_mode", FieldKind::Setting, {GG_CLASS_COMPUTE_MODE}, "compute mode"},
    {"pcie.generation", FieldKind::Telemetry, {}, "PCIe generation (drops at idle by design)"},
    {"pcie.width", FieldKind::Setting, {GG_CLASS_LINK_CONFIG, kReset}, "PCIe link width NVML reports"},
    {"nvml.gpu_lost", FieldKind::Presence, {GG_CLASS_POWER_OFF, kReset}, "NVML says the GPU fell off the bus"},
    {"xid.count", FieldKind::Telemetry, {}, "XID errors NVML delivered since the watcher started"},
};

// The sysfs knobs worth sampling (a short value that reads back what was
// set), with the class of the knob table (userspace/lib/device/pci.cpp).
struct KnobField {
  std::string_view suffix;
  unsigned cls;
};
constexpr KnobField kKnobFields[] = {
    {"power/control", GG_CLASS_POWER_OFF},
    {"d3cold_allowed", GG_CLASS_POWER_OFF},
    {"power1_cap", GG_CLASS_POWER_LIMIT},
    {"power2_cap", GG_CLASS_POWER_LIMIT},
    {"power_dpm_force_performance_level", GG_CLASS_PERF_STATE},
    {"power_dpm_state", GG_CLASS_PERF_STATE},
    {"gt_max_freq_mhz", GG_CLASS_CLOCK_LIMIT},
    {"gt_min_freq_mhz", GG_CLASS_CLOCK_LIMIT},
    {"gt_boost_freq_mhz", GG_CLASS_CLOCK_LIMIT},
    {"freq0/max_freq", GG_CLASS_CLOCK_LIMIT},
    {"freq0/min_freq", GG_CLASS_CLOCK_LIMIT},
    {"sriov_numvfs", GG_CLASS_MIG_CONFIG},
    {"suspend", GG_CLASS_POWER_OFF},
    {"unbindLock", GG_CLASS_POWER_OFF},
};

std::string unknown_reason(uint64_t bits) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "unknown_0x%llx", static_cast<unsigned long long>(bits));
  return buf;
}

}  // namespace

std::optional<unsigned> sampled_knob_class(std::string_view knob_name) {
  for (const auto& k : kKnobFields)
    if (knob_name == k.suffix || (knob_name.size() > k.suffix.size() && knob_name.ends_with(k.suffix) &&
                                  knob_name[knob_name.size() - k.suffix.size() - 1] == '/'))
      return k.cls;
  return std::nullopt;
}

std::optional<FieldSpec> field_spec(const std::string& name) {
  for (const auto& f : kFields) {
    if (f.name != name) continue;
    FieldSpec s{f.kind, {}, std::string(f.what)};
    for (unsigned c : f.classes)
      if (c) s.classes.push_back(c);
    return s;
  }
  if (name.starts_with("sysfs:")) {
    auto cls = sampled_knob_class(std::string_view(name).substr(6));
    if (!cls) return std::nullopt;
    return FieldSpec{FieldKind::Setting, {*cls, kReset}, "a sysfs or procfs knob's value"};
  }
  return std::nullopt;
}

std::vector<std::string> clock_event_reason_names(uint64_t mask) {
  static constexpr std::pair<uint64_t, std::string_view> kBits[] = {
      {0x1, "gpu_idle"},
      {0x2, "applications_clocks_setting"},
      {0x4, "sw_power_cap"},
      {0x8, "hw_slowdown"},
      {0x10, "sync_boost"},
      {0x20, "sw_thermal_slowdown"},
      {0x40, "hw_thermal_slowdown"},
      {0x80, "hw_power_brake_slowdown"},
      {0x100, "display_clock_setting"},
  };
  std::vector<std::string> names;
  uint64_t known = 0;
  for (const auto& [bit, name] : kBits) {
    known |= bit;
    if (mask & bit) names.emplace_back(name);
  }
  if (mask & ~known) names.push_back(unknown_reason(mask & ~known));
  return names;
}

bool hardware_protection_reason(const std::string& name) {
  return name == "hw_slowdown" || name == "sw_thermal_slowdown" || name == "hw_thermal_slowdown" ||
         name == "hw_power_brake_slowdown";
}

// A reason that holds clocks down (a throttle), as opposed to the idle GPU,
// the operator's own clock settings, sync boost or the display.
bool throttle_reason(const std::string& name) {
  return hardware_protection_reason(name) || name == "sw_power_cap" || name.starts_with("unknown_");
}

}  // namespace gpugate::watch
