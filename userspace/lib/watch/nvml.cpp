// NVML through dlopen: the few entry points the watcher reads, declared from
// NVIDIA's published API (nvml.h; NVIDIA/go-nvml gen/nvml/nvml.h), so that
// gpugate needs neither NVIDIA's headers to build nor its driver to run.
#include <dlfcn.h>

#include <array>
#include <cstdio>

#include <fmt/format.h>

#include "gpugate/watch.hpp"

namespace gpugate::watch {
namespace {

// nvml.h types, as published.
using nvmlReturn_t = int;
using nvmlDevice_t = struct nvmlDevice_st*;
using nvmlEventSet_t = struct nvmlEventSet_st*;
constexpr nvmlReturn_t NVML_SUCCESS = 0;
constexpr nvmlReturn_t NVML_ERROR_GPU_IS_LOST = 15;
constexpr int NVML_CLOCK_GRAPHICS = 0, NVML_CLOCK_SM = 1, NVML_CLOCK_MEM = 2;
constexpr int NVML_TEMPERATURE_GPU = 0;
constexpr unsigned long long nvmlEventTypeXidCriticalError = 0x8;

struct nvmlPciInfo_t {  // NOLINT(readability-identifier-naming): nvml.h's name
  char busIdLegacy[16];
  unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
  char busId[32];
};
static_assert(sizeof(nvmlPciInfo_t) == 68);

struct nvmlEventData_t {  // NOLINT(readability-identifier-naming): nvml.h's name
  nvmlDevice_t device;
  unsigned long long eventType;
  unsigned long long eventData;
  unsigned int gpuInstanceId, computeInstanceId;
};

struct Api {
  nvmlReturn_t (*init)();
  nvmlReturn_t (*shutdown)();
  const char* (*error_string)(nvmlReturn_t);
  nvmlReturn_t (*count)(unsigned*);
  nvmlReturn_t (*handle)(unsigned, nvmlDevice_t*);
  nvmlReturn_t (*pci)(nvmlDevice_t, nvmlPciInfo_t*);
  nvmlReturn_t (*uuid)(nvmlDevice_t, char*, unsigned);
  nvmlReturn_t (*power_limit)(nvmlDevice_t, unsigned*);
  nvmlReturn_t (*enforced_limit)(nvmlDevice_t, unsigned*);
  nvmlReturn_t (*default_limit)(nvmlDevice_t, unsigned*);
  nvmlReturn_t (*power_usage)(nvmlDevice_t, unsigned*);
  nvmlReturn_t (*clock)(nvmlDevice_t, int, unsigned*);
  nvmlReturn_t (*max_clock)(nvmlDevice_t, int, unsigned*);
  nvmlReturn_t (*app_clock)(nvmlDevice_t, int, unsigned*);
  nvmlReturn_t (*pstate_range)(nvmlDevice_t, int, int, unsigned*, unsigned*);
  nvmlReturn_t (*reasons)(nvmlDevice_t, unsigned long long*);
  nvmlReturn_t (*pstate)(nvmlDevice_t, int*);
  nvmlReturn_t (*temperature)(nvmlDevice_t, int, unsigned*);
  nvmlReturn_t (*ecc)(nvmlDevice_t, int*, int*);
  nvmlReturn_t (*mig)(nvmlDevice_t, unsigned*, unsigned*);
  nvmlReturn_t (*persistence)(nvmlDevice_t, int*);
  nvmlReturn_t (*compute_mode)(nvmlDevice_t, int*);
  nvmlReturn_t (*pcie_gen)(nvmlDevice_t, unsigned*);
  nvmlReturn_t (*pcie_width)(nvmlDevice_t, unsigned*);
  nvmlReturn_t (*event_set_create)(nvmlEventSet_t*);
  nvmlReturn_t (*register_events)(nvmlDevice_t, unsigned long long, nvmlEventSet_t);
  nvmlReturn_t (*event_wait)(nvmlEventSet_t, nvmlEventData_t*, unsigned);
  nvmlReturn_t (*event_set_free)(nvmlEventSet_t);
};

template <typename F>
void bind(void* lib, F& fn, const char* name, const char* fallback = nullptr) {
  void* sym = dlsym(lib, name);
  if (!sym && fallback) sym = dlsym(lib, fallback);
  fn = reinterpret_cast<F>(sym);  // NOLINT(cppcoreguidelines-pro-type-reinterpret-cast): dlsym's contract
}

// "00000000:41:00.0" -> "0000:41:00.0", as sysfs names it.
std::string sysfs_address(const char* bus_id) {
  unsigned domain = 0, bus = 0, dev = 0, fn = 0;
  if (std::sscanf(bus_id, "%x:%x:%x.%x", &domain, &bus, &dev, &fn) != 4) return bus_id;
  return fmt::format("{:04x}:{:02x}:{:02x}.{:x}", domain, bus, dev, fn);
}

class NvmlSource final : public StateSource {
 public:
  NvmlSource(void* lib, Api api) : lib_(lib), api_(api) {
    unsigned n = 0;
    if (api_.count(&n) != NVML_SUCCESS) n = 0;
    if (api_.event_set_create && api_.event_set_create(&events_) != NVML_SUCCESS) events_ = nullptr;
    for (unsigned i = 0; i < n; i++) {
      nvmlDevice_t d = nullptr;
      if (api_.handle(i, &d) != NVML_SUCCESS) continue;
      Gpu g{d, {}, {}};
      nvmlPciInfo_t pci{};
      if (api_.pci && api_.pci(d, &pci) == NVML_SUCCESS) g.pci = sysfs_address(pci.busId);
      std::array<char, 96> uuid{};
      if (api_.uuid && api_.uuid(d, uuid.data(), uuid.size()) == NVML_SUCCESS) g.uuid = uuid.data();
      // XIDs arrive on the event set; a GPU that cannot register is sampled all the same.
      if (events_ && api_.register_events) (void)api_.register_events(d, nvmlEventTypeXidCriticalError, events_);
      gpus_.push_back(std::move(g));
    }
  }
  ~NvmlSource() override {
    if (events_ && api_.event_set_free) api_.event_set_free(events_);
    api_.shutdown();
    dlclose(lib_);
  }
  NvmlSource(const NvmlSource&) = delete;
  NvmlSource& operator=(const NvmlSource&) = delete;

  [[nodiscard]] std::string name() const override { return "nvml"; }

  std::vector<GpuSample> sample() override {
    std::vector<GpuSample> out;
    std::vector<std::vector<Json>> xids(gpus_.size());
    if (events_ && api_.event_wait) {
      for (int i = 0; i < 256; i++) {  // bounded: a storm of XIDs cannot hold the sampler
        nvmlEventData_t ev{};
        if (api_.event_wait(events_, &ev, 0) != NVML_SUCCESS) break;
        for (size_t g = 0; g < gpus_.size(); g++)
          if (gpus_[g].handle == ev.device) {
            xids[g].push_back({{"event", "xid"}, {"xid", ev.eventData}});
            gpus_[g].xid_count++;
          }
      }
    }
    for (size_t g = 0; g < gpus_.size(); g++) {
      Gpu& gpu = gpus_[g];
      GpuSample s;
      s.pci = gpu.pci;
      s.uuid = gpu.uuid;
      s.source = "nvml";
      s.events = std::move(xids[g]);
      nvmlDevice_t d = gpu.handle;
      bool lost = false;
      auto u32 = [&](const char* field, auto fn, auto... args) {
        if (!fn) return;
        unsigned v = 0;
        nvmlReturn_t r = fn(d, args..., &v);
        if (r == NVML_ERROR_GPU_IS_LOST) lost = true;
        if (r == NVML_SUCCESS) s.values[field] = v;
      };
      u32("power.limit_mw", api_.power_limit);
      u32("power.enforced_limit_mw", api_.enforced_limit);
      u32("power.default_limit_mw", api_.default_limit);
      u32("power.usage_mw", api_.power_usage);
      u32("clocks.sm_mhz", api_.clock, NVML_CLOCK_SM);
      u32("clocks.mem_mhz", api_.clock, NVML_CLOCK_MEM);
      u32("clocks.sm_max_mhz", api_.max_clock, NVML_CLOCK_SM);
      u32("clocks.applications_sm_mhz", api_.app_clock, NVML_CLOCK_GRAPHICS);
      u32("clocks.applications_mem_mhz", api_.app_clock, NVML_CLOCK_MEM);
      u32("temperature.gpu_c", api_.temperature, NVML_TEMPERATURE_GPU);
      u32("pcie.generation", api_.pcie_gen);
      u32("pcie.width", api_.pcie_width);
      unsigned lo = 0, hi = 0;
      if (api_.pstate_range && api_.pstate_range(d, NVML_CLOCK_GRAPHICS, 0, &lo, &hi) == NVML_SUCCESS) {
        s.values["clocks.p0_sm_min_mhz"] = lo;
        s.values["clocks.p0_sm_max_mhz"] = hi;
      }
      unsigned long long reasons = 0;
      if (api_.reasons) {
        nvmlReturn_t r = api_.reasons(d, &reasons);
        if (r == NVML_ERROR_GPU_IS_LOST) lost = true;
        if (r == NVML_SUCCESS) s.values["clocks.event_reasons"] = clock_event_reason_names(reasons);
      }
      int i = 0, j = 0;
      if (api_.pstate && api_.pstate(d, &i) == NVML_SUCCESS) s.values["perf.pstate"] = fmt::format("P{}", i);
      if (api_.ecc && api_.ecc(d, &i, &j) == NVML_SUCCESS) {
        s.values["ecc.current"] = i ? "enabled" : "disabled";
        s.values["ecc.pending"] = j ? "enabled" : "disabled";
      }
      unsigned mc = 0, mp = 0;
      if (api_.mig && api_.mig(d, &mc, &mp) == NVML_SUCCESS) {
        s.values["mig.current"] = mc ? "enabled" : "disabled";
        s.values["mig.pending"] = mp ? "enabled" : "disabled";
      }
      if (api_.persistence && api_.persistence(d, &i) == NVML_SUCCESS)
        s.values["persistence"] = i ? "enabled" : "disabled";
      static constexpr const char* kModes[] = {"default", "exclusive_thread", "prohibited", "exclusive_process"};
      if (api_.compute_mode && api_.compute_mode(d, &i) == NVML_SUCCESS)
        s.values["compute_mode"] = i >= 0 && i < 4 ? Json(kModes[i]) : Json(i);
      s.values["xid.count"] = gpu.xid_count;
      s.values["nvml.gpu_lost"] = lost;
      out.push_back(std::move(s));
    }
    return out;
  }

 private:
  struct Gpu {
    nvmlDevice_t handle;
    std::string pci, uuid;
    uint64_t xid_count = 0;
  };
  void* lib_;
  Api api_;
  nvmlEventSet_t events_ = nullptr;
  std::vector<Gpu> gpus_;
};

}  // namespace

Result<std::unique_ptr<StateSource>> open_nvml(const std::string& library) {
  void* lib = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib)
    return Error{
        fmt::format("NVML ({}) is not here ({}): no NVIDIA driver on this host, so NVIDIA GPUs are "
                    "sampled through sysfs only",
                    library, dlerror())};
  Api a{};
  bind(lib, a.init, "nvmlInit_v2", "nvmlInit");
  bind(lib, a.shutdown, "nvmlShutdown");
  bind(lib, a.error_string, "nvmlErrorString");
  bind(lib, a.count, "nvmlDeviceGetCount_v2", "nvmlDeviceGetCount");
  bind(lib, a.handle, "nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex");
  if (!a.init || !a.shutdown || !a.count || !a.handle) {
    dlclose(lib);
    return Error{
        fmt::format("{} lacks nvmlInit_v2, nvmlDeviceGetCount_v2 or nvmlDeviceGetHandleByIndex_v2: not an "
                    "NVML library this build can use",
                    library)};
  }
  bind(lib, a.pci, "nvmlDeviceGetPciInfo_v3");
  bind(lib, a.uuid, "nvmlDeviceGetUUID");
  bind(lib, a.power_limit, "nvmlDeviceGetPowerManagementLimit");
  bind(lib, a.enforced_limit, "nvmlDeviceGetEnforcedPowerLimit");
  bind(lib, a.default_limit, "nvmlDeviceGetPowerManagementDefaultLimit");
  bind(lib, a.power_usage, "nvmlDeviceGetPowerUsage");
  bind(lib, a.clock, "nvmlDeviceGetClockInfo");
  bind(lib, a.max_clock, "nvmlDeviceGetMaxClockInfo");
  bind(lib, a.app_clock, "nvmlDeviceGetApplicationsClock");
  bind(lib, a.pstate_range, "nvmlDeviceGetMinMaxClockOfPState");
  bind(lib, a.reasons, "nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons");
  bind(lib, a.pstate, "nvmlDeviceGetPerformanceState");
  bind(lib, a.temperature, "nvmlDeviceGetTemperature");
  bind(lib, a.ecc, "nvmlDeviceGetEccMode");
  bind(lib, a.mig, "nvmlDeviceGetMigMode");
  bind(lib, a.persistence, "nvmlDeviceGetPersistenceMode");
  bind(lib, a.compute_mode, "nvmlDeviceGetComputeMode");
  bind(lib, a.pcie_gen, "nvmlDeviceGetCurrPcieLinkGeneration");
  bind(lib, a.pcie_width, "nvmlDeviceGetCurrPcieLinkWidth");
  bind(lib, a.event_set_create, "nvmlEventSetCreate");
  bind(lib, a.register_events, "nvmlDeviceRegisterEvents");
  bind(lib, a.event_wait, "nvmlEventSetWait_v2", "nvmlEventSetWait");
  bind(lib, a.event_set_free, "nvmlEventSetFree");
  nvmlReturn_t r = a.init();
  if (r != NVML_SUCCESS) {
    std::string why = a.error_string ? a.error_string(r) : fmt::format("error {}", r);
    dlclose(lib);
    return Error{fmt::format("nvmlInit_v2 failed: {} (is NVIDIA's driver loaded? nvidia-smi says the same)", why)};
  }
  return std::unique_ptr<StateSource>(std::make_unique<NvmlSource>(lib, a));
}

}  // namespace gpugate::watch
