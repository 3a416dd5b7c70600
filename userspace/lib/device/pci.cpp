#include "gpugate/pci.hpp"

#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string_view>

#include <fmt/format.h>

#include "gpugate/decode.hpp"

namespace fs = std::filesystem;

namespace gpugate {
namespace {

// PCI ids (the PCI-SIG vendor registry; pci.ids "10de", "1002", "8086").
constexpr uint16_t kVendorNvidia = 0x10de;
constexpr uint16_t kVendorAmd = 0x1002;
constexpr uint16_t kVendorIntel = 0x8086;

// Class codes (PCI Code and ID Assignment Specification, base class 03h
// display controller, 12h processing accelerator, 06h/80h other bridge).
constexpr uint32_t kClassVga = 0x0300;
constexpr uint32_t kClass3d = 0x0302;
constexpr uint32_t kClassDisplayBase = 0x03;
constexpr uint32_t kClassAcceleratorBase = 0x12;
constexpr uint32_t kClassBridgeOther = 0x0680;

// The knobs under a GPU's own sysfs directory, what a write does and the
// class it falls in (kmod-hooks.md §6 for the handlers). A name ending in
// '*' stands for its numbered siblings (resource0, resource1, ...).
struct KnobSpec {
  std::string_view name;
  unsigned cls;
  std::string_view effect;
  unsigned rule = GG_KNOB_ANY_WRITE;  // how a write decodes (gg_knob.h)
};

constexpr std::array kGpuKnobs{
    KnobSpec{"power/control", GG_CLASS_POWER_OFF, "runtime PM: 'auto' lets the kernel power the GPU down",
             GG_KNOB_RUNTIME_PM},
    KnobSpec{"d3cold_allowed", GG_CLASS_POWER_OFF, "allows D3cold: the slot's power removed"},
    KnobSpec{"reset", GG_CLASS_GPU_RESET, "function reset (pci_reset_function)"},
    KnobSpec{"reset_method", GG_CLASS_GPU_RESET, "chooses how the function is reset"},
    KnobSpec{"remove", GG_CLASS_POWER_OFF, "removes the GPU from the bus"},
    KnobSpec{"rescan", GG_CLASS_OTHER, "rescans below the function"},
    KnobSpec{"driver_override", GG_CLASS_BAR_MAP, "names the driver to bind (vfio-pci hands the BARs out)"},
    KnobSpec{"config", GG_CLASS_POWER_OFF, "config space: PMCSR (D3hot), Link Control (link disable), DevCtl (FLR)",
             GG_KNOB_PCI_CONFIG},
    KnobSpec{"sriov_numvfs", GG_CLASS_MIG_CONFIG, "creates or removes virtual functions"},
    KnobSpec{"rom", GG_CLASS_OTHER, "the expansion ROM"},
    KnobSpec{"resource*", GG_CLASS_BAR_MAP, "a BAR: mmap gives the registers or the aperture"},
    // amdgpu (Documentation/gpu/amdgpu/thermal.rst)
    KnobSpec{"power_dpm_force_performance_level", GG_CLASS_PERF_STATE, "amdgpu: forces a performance level"},
    KnobSpec{"power_dpm_state", GG_CLASS_PERF_STATE, "amdgpu: legacy power state"},
    KnobSpec{"pp_power_profile_mode", GG_CLASS_PERF_STATE, "amdgpu: power profile"},
    KnobSpec{"pp_od_clk_voltage", GG_CLASS_CLOCK_LIMIT, "amdgpu: overdrive clocks and voltages"},
    KnobSpec{"pp_dpm_sclk", GG_CLASS_CLOCK_LIMIT, "amdgpu: allowed shader clock levels"},
    KnobSpec{"pp_dpm_mclk", GG_CLASS_CLOCK_LIMIT, "amdgpu: allowed memory clock levels"},
    KnobSpec{"pp_dpm_fclk", GG_CLASS_CLOCK_LIMIT, "amdgpu: allowed fabric clock levels"},
    KnobSpec{"pp_dpm_socclk", GG_CLASS_CLOCK_LIMIT, "amdgpu: allowed SoC clock levels"},
    KnobSpec{"pp_dpm_pcie", GG_CLASS_LINK_CONFIG, "amdgpu: allowed PCIe link levels"},
    KnobSpec{"pp_sclk_od", GG_CLASS_CLOCK_LIMIT, "amdgpu: shader clock overdrive"},
    KnobSpec{"pp_mclk_od", GG_CLASS_CLOCK_LIMIT, "amdgpu: memory clock overdrive"},
    KnobSpec{"pp_features", GG_CLASS_PERF_STATE, "amdgpu: power features on or off"},
    // xe (Documentation/ABI/testing/sysfs-driver-xe... freq0)
    KnobSpec{"tile*/gt*/freq0/max_freq", GG_CLASS_CLOCK_LIMIT, "xe: highest GT frequency", GG_KNOB_NUMBER},
    KnobSpec{"tile*/gt*/freq0/min_freq", GG_CLASS_CLOCK_LIMIT, "xe: lowest GT frequency", GG_KNOB_NUMBER},
};

// Under each drm/cardN of the GPU (i915's sysfs, drivers/gpu/drm/i915/i915_sysfs.c).
constexpr std::array kCardKnobs{
    KnobSpec{"gt_max_freq_mhz", GG_CLASS_CLOCK_LIMIT, "i915: highest GT frequency", GG_KNOB_NUMBER},
    KnobSpec{"gt_min_freq_mhz", GG_CLASS_CLOCK_LIMIT, "i915: lowest GT frequency", GG_KNOB_NUMBER},
    KnobSpec{"gt_boost_freq_mhz", GG_CLASS_CLOCK_LIMIT, "i915: boost frequency", GG_KNOB_NUMBER},
};

// Under each hwmon/hwmonN of the GPU (Documentation/hwmon/sysfs-interface.rst).
constexpr std::array kHwmonKnobs{
    KnobSpec{"power1_cap", GG_CLASS_POWER_LIMIT, "hwmon: power cap in microwatts", GG_KNOB_NUMBER},
    KnobSpec{"power2_cap", GG_CLASS_POWER_LIMIT, "hwmon: second power cap in microwatts", GG_KNOB_NUMBER},
    KnobSpec{"pwm1", GG_CLASS_OTHER, "hwmon: fan duty", GG_KNOB_NUMBER},
    KnobSpec{"pwm1_enable", GG_CLASS_OTHER, "hwmon: fan control mode"},
};

// The upstream bridge's: a Secondary Bus Reset through its Bridge Control,
// or its link disabled, takes the GPU with it.
constexpr std::array kBridgeKnobs{
    KnobSpec{"config", GG_CLASS_GPU_RESET, "bridge config: Bridge Control SBR, Link Control (link disable)",
             GG_KNOB_PCI_CONFIG},
    KnobSpec{"reset", GG_CLASS_GPU_RESET, "resets the bridge and what is below it"},
    KnobSpec{"power/control", GG_CLASS_POWER_OFF, "runtime PM of the bridge: the slot can lose power",
             GG_KNOB_RUNTIME_PM},
    KnobSpec{"remove", GG_CLASS_POWER_OFF, "removes the bridge and the GPU below"},
};

std::string read_line(const fs::path& p) {
  std::ifstream in(p);
  std::string s;
  std::getline(in, s);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

std::optional<uint32_t> read_hex(const fs::path& p) {
  std::string s = read_line(p);
  if (s.empty()) return std::nullopt;
  try {
    size_t used = 0;
    unsigned long v = std::stoul(s, &used, 16);
    if (used != s.size() || v > 0xffffffffUL) return std::nullopt;
    return static_cast<uint32_t>(v);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// The PM and PCI Express capabilities' offsets from a config file's bytes
// (the capability list at 0x34, when status bit 4 says there is one).
struct Caps {
  uint16_t pm = 0, exp = 0;
};

Caps read_caps(const fs::path& config) {
  Caps caps;
  std::ifstream in(config, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto at = [&](size_t i) { return i < bytes.size() ? static_cast<uint8_t>(bytes[i]) : uint8_t{0}; };
  constexpr size_t kStatus = 0x06, kCapPtr = 0x34;
  constexpr uint8_t kStatusCapList = 0x10, kCapIdPm = 0x01, kCapIdExp = 0x10;
  if (!(at(kStatus) & kStatusCapList)) return caps;
  size_t ptr = at(kCapPtr) & 0xfc;
  for (int hops = 0; ptr >= 0x40 && ptr + 1 < bytes.size() && hops < 48; hops++) {
    if (at(ptr) == kCapIdPm && !caps.pm) caps.pm = static_cast<uint16_t>(ptr);
    if (at(ptr) == kCapIdExp && !caps.exp) caps.exp = static_cast<uint16_t>(ptr);
    ptr = at(ptr + 1) & 0xfc;
  }
  return caps;
}

// sysfs `resource`: one line per resource, "start end flags" in hex; the
// first six are the BARs (include/linux/ioport.h IORESOURCE_MEM 0x200).
std::vector<PciGpu::Bar> read_bars(const fs::path& resource) {
  constexpr uint64_t kIoResourceMem = 0x200;
  constexpr unsigned kBars = 6;
  std::vector<PciGpu::Bar> bars;
  std::ifstream in(resource);
  std::string line;
  for (unsigned i = 0; i < kBars && std::getline(in, line); i++) {
    unsigned long long start = 0, end = 0, flags = 0;
    if (std::sscanf(line.c_str(), "%llx %llx %llx", &start, &end, &flags) != 3 || end <= start) continue;
    bars.push_back({i, start, end, (flags & kIoResourceMem) != 0});
  }
  return bars;
}

bool is_pci_address(std::string_view s) {
  static const std::regex re("^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\\.[0-7]$");
  return std::regex_match(s.begin(), s.end(), re);
}

unsigned gg_vendor_of(uint16_t id) {
  switch (id) {
    case kVendorNvidia: return GG_VENDOR_NVIDIA;
    case kVendorAmd: return GG_VENDOR_AMD;
    case kVendorIntel: return GG_VENDOR_INTEL;
    default: return GG_VENDOR_OTHER;
  }
}

Knob make_knob(const fs::path& path, std::string name, std::string owner, const KnobSpec& spec) {
  Knob k;
  k.name = std::move(name);
  k.path = path.string();
  k.owner = std::move(owner);
  k.cls = spec.cls;
  k.effect = spec.effect;
  k.rule = spec.rule;
  struct stat st {};
  if (lstat(path.c_str(), &st) == 0) {
    k.ino = st.st_ino;
    k.fs_dev = kernel_dev(major(st.st_dev), minor(st.st_dev));
    k.writable = (st.st_mode & (S_IWUSR | S_IWGRP | S_IWOTH)) != 0;
  }
  struct statfs sfs {};
  if (statfs(path.c_str(), &sfs) == 0 &&
      (static_cast<uint32_t>(sfs.f_type) == GG_FS_SYSFS || static_cast<uint32_t>(sfs.f_type) == GG_FS_PROC))
    k.fs_magic = static_cast<uint32_t>(sfs.f_type);
  k.mappable = spec.cls == GG_CLASS_BAR_MAP && k.name.starts_with("resource");
  return k;
}

// Entries of dir matching one path component with an optional trailing '*'.
std::vector<std::string> match_component(const fs::path& dir, std::string_view pattern) {
  std::vector<std::string> out;
  if (!pattern.ends_with('*')) {
    std::error_code ec;
    if (fs::exists(fs::symlink_status(dir / pattern, ec))) out.emplace_back(pattern);
    return out;
  }
  auto prefix = pattern.substr(0, pattern.size() - 1);
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    auto n = e.path().filename().string();
    if (!n.starts_with(prefix)) continue;
    auto rest = std::string_view(n).substr(prefix.size());
    // resourceN and resourceN_wc; tileN, gtN: digits, then at most "_wc"
    auto digits = rest.substr(0, rest.find_first_not_of("0123456789"));
    if (digits.empty() || (rest.size() != digits.size() && rest.substr(digits.size()) != "_wc")) continue;
    out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Every existing path below dir that spec.name (with '*' components) names.
void add_knobs(std::vector<Knob>& out, const fs::path& dir, const std::string& prefix, const std::string& owner,
               const KnobSpec& spec) {
  std::vector<std::string> partial{""};
  std::string_view pattern = spec.name;
  while (!pattern.empty()) {
    auto slash = pattern.find('/');
    auto comp = pattern.substr(0, slash);
    pattern = slash == std::string_view::npos ? std::string_view{} : pattern.substr(slash + 1);
    std::vector<std::string> next;
    for (const auto& p : partial)
      for (auto& m : match_component(p.empty() ? dir : dir / p, comp)) next.push_back(p.empty() ? m : p + "/" + m);
    partial = std::move(next);
  }
  for (const auto& rel : partial) {
    std::error_code ec;
    if (fs::is_directory(dir / rel, ec)) continue;
    out.push_back(make_knob(dir / rel, prefix + rel, owner, spec));
  }
}

std::vector<std::string> subdirs(const fs::path& dir, std::string_view prefix) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    auto n = e.path().filename().string();
    if (n.starts_with(prefix)) out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The legacy procfs view of a function's config space, /proc/bus/pci/BB/SS.F
// (BB with its domain where that is not 0: torvalds/linux
// drivers/pci/proc.c, pci_proc_attach_device): the same writes as sysfs's
// config, by another file.
void add_proc_config(std::vector<Knob>& out, const DiscoveryRoots& roots, const std::string& address,
                     const std::string& owner, unsigned cls) {
  unsigned domain = 0, bus = 0, slot = 0, fn = 0;
  if (std::sscanf(address.c_str(), "%4x:%2x:%2x.%1u", &domain, &bus, &slot, &fn) != 4) return;
  std::string dir = domain ? fmt::format("{:04x}:{:02x}", domain, bus) : fmt::format("{:02x}", bus);
  std::string file = fmt::format("{:02x}.{:x}", slot, fn);
  KnobSpec spec{file, cls, "config space through procfs (setpci's other route)", GG_KNOB_PCI_CONFIG};
  add_knobs(out, fs::path(roots.proc) / "bus/pci" / dir, "/proc/bus/pci/" + dir + "/", owner, spec);
}

// /proc/driver/nvidia/gpus/<address>/information: "Device Minor:" and "GPU UUID:".
void read_nvidia_information(PciGpu& g, const DiscoveryRoots& roots) {
  std::ifstream in(fmt::format("{}/driver/nvidia/gpus/{}/information", roots.proc, g.address));
  std::string line;
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    if (key == "GPU UUID") g.uuid = value;
    if (key == "Device Minor" && !value.empty() && value.find_first_not_of("0123456789") == std::string::npos)
      g.nodes.push_back(fmt::format("{}/nvidia{}", roots.dev, value));
  }
}

}  // namespace

std::optional<std::string> pci_gpu_kind(uint16_t vendor_id, uint32_t class_code) {
  uint32_t cls = class_code >> 8;  // base class and subclass
  uint32_t base = class_code >> 16;
  if (cls == kClassVga) return "vga";
  if (cls == kClass3d) return "3d";
  if (base == kClassDisplayBase) return "display";
  bool gpu_vendor = vendor_id == kVendorNvidia || vendor_id == kVendorAmd || vendor_id == kVendorIntel;
  if (base == kClassAcceleratorBase && gpu_vendor) return "accelerator";
  if (cls == kClassBridgeOther && vendor_id == kVendorNvidia) return "nvswitch";
  return std::nullopt;
}

std::vector<PciGpu> discover_pci_gpus(const DeviceTable& devices, const DiscoveryRoots& roots) {
  std::vector<PciGpu> gpus;
  fs::path bus = fs::path(roots.sys) / "bus/pci/devices";
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(bus, ec)) {
    std::string address = e.path().filename().string();
    if (!is_pci_address(address)) continue;
    fs::path dir = e.path();
    auto vendor = read_hex(dir / "vendor");
    auto device = read_hex(dir / "device");
    auto cls = read_hex(dir / "class");
    if (!vendor || !device || !cls) continue;
    auto kind = pci_gpu_kind(static_cast<uint16_t>(*vendor), *cls);
    if (!kind) continue;
    PciGpu g;
    g.address = address;
    g.vendor_id = static_cast<uint16_t>(*vendor);
    g.device_id = static_cast<uint16_t>(*device);
    g.class_code = *cls;
    g.vendor = gg_vendor_of(g.vendor_id);
    g.kind = *kind;
    std::error_code lec;
    auto drv = fs::read_symlink(dir / "driver", lec);
    if (!lec) g.driver = drv.filename().string();
    std::string numa = read_line(dir / "numa_node");
    if (!numa.empty() && numa.find_first_not_of("-0123456789") == std::string::npos) {
      try {
        g.numa_node = std::stoi(numa);
      } catch (const std::exception&) {
      }
    }
    // The parent in the device tree is the upstream bridge, unless it is
    // the root bus ("pci0000:00").
    auto real = fs::canonical(dir, lec);
    if (!lec && is_pci_address(real.parent_path().filename().string()))
      g.bridge = real.parent_path().filename().string();

    if (g.vendor_id == kVendorNvidia) read_nvidia_information(g, roots);
    if (g.uuid.empty()) g.uuid = read_line(dir / "unique_id");  // amdgpu
    // card0, not a connector (card0-HDMI-A-1): the DRM device's cards, read once for nodes and knobs
    std::vector<std::string> cards = subdirs(dir / "drm", "card");
    std::erase_if(cards, [](const std::string& c) { return c.find('-') != std::string::npos; });
    for (const auto& card : cards) g.nodes.push_back(roots.dev + "/dri/" + card);
    for (const auto& render : subdirs(dir / "drm", "renderD")) g.nodes.push_back(roots.dev + "/dri/" + render);
    // The node table's own idea of which nodes are on this function (DRM
    // nodes carry their PCI address), and the nodes every GPU of a driver
    // shares (nvidiactl, nvidia-uvm, /dev/kfd).
    for (const auto& d : devices.devices()) {
      bool shared = (g.vendor == GG_VENDOR_NVIDIA && g.kind != "nvswitch" &&
                     (d.info.kind == GG_DEV_NVIDIA_CTL || d.info.kind == GG_DEV_NVIDIA_UVM)) ||
                    (g.driver == "amdgpu" && d.info.kind == GG_DEV_KFD);
      if ((d.pci == g.address || shared) && !d.alias() &&
          std::find(g.nodes.begin(), g.nodes.end(), d.path) == g.nodes.end())
        g.nodes.push_back(d.path);
    }

    for (const auto& spec : kGpuKnobs) add_knobs(g.knobs, dir, "", "gpu", spec);
    for (const auto& card : cards)
      for (const auto& spec : kCardKnobs) add_knobs(g.knobs, dir / "drm" / card, "drm/" + card + "/", "gpu", spec);
    for (const auto& hw : subdirs(dir / "hwmon", "hwmon"))
      for (const auto& spec : kHwmonKnobs) add_knobs(g.knobs, dir / "hwmon" / hw, "hwmon/" + hw + "/", "gpu", spec);
    if (!g.driver.empty()) {
      KnobSpec unbind{"unbind", GG_CLASS_POWER_OFF, "detaches the driver from the GPU"};
      add_knobs(g.knobs, dir / "driver", "driver/", "driver", unbind);
    }
    // Drivers that hand a function's BARs to user space: binding the GPU to
    // one (its address to bind, its ids to new_id) maps its registers.
    for (std::string_view drv : {"vfio-pci", "uio_pci_generic"})
      for (std::string_view file : {"bind", "new_id"}) {
        KnobSpec spec{file, GG_CLASS_BAR_MAP, "binds a function to a driver that hands its BARs to user space"};
        add_knobs(g.knobs, fs::path(roots.sys) / "bus/pci/drivers" / drv, fmt::format("/sys/bus/pci/drivers/{}/", drv),
                  "bar-driver", spec);
      }
    // NVIDIA's procfs: for its GPUs, and for any function its driver lists
    // there (the directory is the driver's word that it holds the GPU)
    fs::path nvproc = fs::path(roots.proc) / "driver/nvidia";
    std::error_code listed_ec;
    if (g.vendor_id == kVendorNvidia || fs::is_directory(nvproc / "gpus" / g.address, listed_ec)) {
      KnobSpec unbind_lock{"unbindLock", GG_CLASS_POWER_OFF, "NVIDIA: releases the GPU for unbinding (vGPU hosts)"};
      add_knobs(g.knobs, nvproc / "gpus" / g.address, "/proc/driver/nvidia/gpus/" + g.address + "/", "nvidia-proc",
                unbind_lock);
      KnobSpec suspend{"suspend", GG_CLASS_POWER_OFF, "NVIDIA: suspends or hibernates every GPU"};
      add_knobs(g.knobs, nvproc, "/proc/driver/nvidia/", "nvidia-proc", suspend);
    }
    add_proc_config(g.knobs, roots, g.address, "gpu", GG_CLASS_POWER_OFF);
    if (!g.bridge.empty()) {
      for (const auto& spec : kBridgeKnobs) add_knobs(g.knobs, real.parent_path(), "bridge/", "bridge", spec);
      add_proc_config(g.knobs, roots, g.bridge, "bridge", GG_CLASS_GPU_RESET);
    }
    g.bars = read_bars(dir / "resource");
    for (auto& k : g.knobs) {
      k.bridge = k.owner == "bridge";
      if (k.rule != GG_KNOB_PCI_CONFIG) continue;
      Caps caps = read_caps(k.path);
      k.pm_cap = caps.pm;
      k.exp_cap = caps.exp;
    }
    gpus.push_back(std::move(g));
  }
  std::sort(gpus.begin(), gpus.end(), [](const PciGpu& a, const PciGpu& b) { return a.address < b.address; });
  return gpus;
}

DeviceTable discover_devices_and_gpus(const DiscoveryRoots& roots) {
  DeviceTable t = DeviceTable::discover(roots);
  t.set_gpus(discover_pci_gpus(t, roots));
  return t;
}

uint32_t PciGpu::pci_dev() const {
  unsigned domain = 0, bus = 0, slot = 0, fn = 0;
  if (std::sscanf(address.c_str(), "%4x:%2x:%2x.%1u", &domain, &bus, &slot, &fn) != 4) return 0;
  return GG_PCI_DEV(domain, bus, (slot << 3) | fn);
}

const PciGpu* DeviceTable::find_gpu(uint32_t pci_dev) const {
  for (const auto& g : gpus_)
    if (g.pci_dev() == pci_dev) return &g;
  return nullptr;
}

nlohmann::ordered_json pci_gpus_json(const std::vector<PciGpu>& gpus) {
  auto arr = nlohmann::ordered_json::array();
  for (const auto& g : gpus) {
    nlohmann::ordered_json j;
    j["pci"] = g.address;
    j["vendor"] = vendor_name(g.vendor);
    j["vendor_id"] = fmt::format("0x{:04x}", g.vendor_id);
    j["device_id"] = fmt::format("0x{:04x}", g.device_id);
    j["class"] = fmt::format("0x{:06x}", g.class_code);
    j["kind"] = g.kind;
    j["driver"] = g.driver.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(g.driver);
    j["uuid"] = g.uuid.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(g.uuid);
    j["bridge"] = g.bridge.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(g.bridge);
    j["numa_node"] = g.numa_node;
    j["grant_dev"] = fmt::format("{}:{}", kernel_dev_major(g.pci_dev()), kernel_dev_minor(g.pci_dev()));
    j["nodes"] = g.nodes;
    auto knobs = nlohmann::ordered_json::array();
    for (const auto& k : g.knobs) {
      nlohmann::ordered_json kj;
      kj["name"] = k.name;
      kj["path"] = k.path;
      kj["owner"] = k.owner;
      kj["class"] = class_name(k.cls);
      kj["effect"] = k.effect;
      kj["ino"] = k.ino;
      kj["fs_dev"] = fmt::format("{}:{}", kernel_dev_major(static_cast<uint32_t>(k.fs_dev)),
                                 kernel_dev_minor(static_cast<uint32_t>(k.fs_dev)));
      kj["writable"] = k.writable;
      if (k.mappable) kj["mappable"] = true;
      kj["gated_on_write"] = k.fs_magic != 0 && k.ino != 0;
      if (k.pm_cap) kj["pm_cap"] = fmt::format("0x{:02x}", k.pm_cap);
      if (k.exp_cap) kj["exp_cap"] = fmt::format("0x{:02x}", k.exp_cap);
      knobs.push_back(kj);
    }
    j["knobs"] = knobs;
    auto bars = nlohmann::ordered_json::array();
    for (const auto& b : g.bars)
      bars.push_back({{"bar", b.index},
                      {"start", fmt::format("0x{:x}", b.start)},
                      {"end", fmt::format("0x{:x}", b.end)},
                      {"memory", b.memory}});
    j["bars"] = bars;
    arr.push_back(j);
  }
  return arr;
}

}  // namespace gpugate
