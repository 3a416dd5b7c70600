#include "gpugate/device.hpp"

#include "gg_decode_c.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "gpugate/decode.hpp"

namespace fs = std::filesystem;

namespace gpugate {
namespace {

constexpr uint32_t kNvidiaMajor = 195;     // nv-chardev-numbers.h:29
constexpr uint32_t kNvidiaCtlMinor = 255;  // nv-chardev-numbers.h:40
constexpr uint32_t kNvidiaModesetMinor = 254;
constexpr uint32_t kNvidiaGpuMinorMax = 247;
constexpr uint32_t kDrmMajor = 226;

// Majors by name from /proc/devices ("Character devices:" section).
std::optional<uint32_t> char_major(const std::string& proc, std::string_view name) {
  std::ifstream in(proc + "/devices");
  std::string line;
  bool chars = false;
  while (std::getline(in, line)) {
    if (line.starts_with("Character devices")) {
      chars = true;
      continue;
    }
    if (line.starts_with("Block devices")) break;
    if (!chars) continue;
    std::istringstream ls(line);
    uint32_t major;
    std::string n;
    if (ls >> major >> n && n == name) return major;
  }
  return std::nullopt;
}

std::string link_basename(const std::string& path) {
  std::error_code ec;
  auto target = fs::read_symlink(path, ec);
  return ec ? std::string() : target.filename().string();
}

gg_device make_info(unsigned kind, unsigned vendor, unsigned drm, int index) {
  gg_device d{};
  d.kind = static_cast<uint8_t>(kind);
  d.vendor = static_cast<uint8_t>(vendor);
  d.drm_driver = static_cast<uint8_t>(drm);
  d.gpu_index = index;
  return d;
}

unsigned drm_driver_of(std::string_view driver) { return drm_driver_from_name(driver).value_or(GG_DRM_GENERIC); }

// The vendor of a DRM driver's node: drm_drivers.def's, else by name.
unsigned drm_vendor_of(unsigned drm, std::string_view driver) {
  int n = 0;
  const gg_drm_driver_entry* drivers = gg_table_drm_drivers(&n);
  if (drm != GG_DRM_GENERIC && static_cast<int>(drm) < n) return drivers[drm].vendor;
  return driver.starts_with("nvidia") || driver == "nouveau" ? GG_VENDOR_NVIDIA : GG_VENDOR_OTHER;
}

}  // namespace

std::string Device::rdev_string() const { return fmt::format("{}:{}", kernel_dev_major(dev), kernel_dev_minor(dev)); }

const Device* DeviceTable::find(uint32_t dev) const {
  for (const auto& d : devices_)
    if (d.dev == dev) return &d;
  return nullptr;
}

void DeviceTable::add(Device d) {
  for (auto& existing : devices_) {
    if (existing.dev == d.dev) {
      existing = std::move(d);  // an alias overrides what discovery found
      return;
    }
  }
  devices_.push_back(std::move(d));
}

DeviceTable DeviceTable::discover(const DiscoveryRoots& roots) {
  DeviceTable table;
  auto uvm = char_major(roots.proc, "nvidia-uvm");
  auto kfd = char_major(roots.proc, "kfd");
  std::vector<fs::path> nodes;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(roots.dev, ec)) nodes.push_back(e.path());
  for (const auto& e : fs::directory_iterator(roots.dev + "/dri", ec)) nodes.push_back(e.path());
  for (const auto& p : nodes) {
    struct stat st {};
    if (stat(p.c_str(), &st) != 0 || !S_ISCHR(st.st_mode)) continue;
    uint32_t maj = major(st.st_rdev), min = minor(st.st_rdev);
    Device d;
    d.path = p.string();
    d.dev = kernel_dev(maj, min);
    if (maj == kNvidiaMajor) {
      d.driver = "nvidia";
      if (min == kNvidiaCtlMinor)
        d.info = make_info(GG_DEV_NVIDIA_CTL, GG_VENDOR_NVIDIA, 0, -1);
      else if (min == kNvidiaModesetMinor)
        d.info = make_info(GG_DEV_NVIDIA_MODESET, GG_VENDOR_NVIDIA, 0, -1);
      else if (min <= kNvidiaGpuMinorMax)
        d.info = make_info(GG_DEV_NVIDIA_GPU, GG_VENDOR_NVIDIA, 0, static_cast<int>(min));
      else
        continue;
    } else if (uvm && maj == *uvm && min <= 1) {
      d.driver = "nvidia-uvm";
      d.info = make_info(min == 0 ? GG_DEV_NVIDIA_UVM : GG_DEV_NVIDIA_UVM_TOOLS, GG_VENDOR_NVIDIA, 0, -1);
    } else if (maj == kDrmMajor) {
      auto sys = fmt::format("{}/dev/char/{}:{}/device", roots.sys, maj, min);
      d.driver = link_basename(sys + "/driver");
      d.pci = link_basename(sys);
      unsigned drm = drm_driver_of(d.driver);
      d.info = make_info(GG_DEV_DRM, drm_vendor_of(drm, d.driver), drm, static_cast<int>(min));
    } else if (kfd && maj == *kfd) {
      d.driver = "amdkfd";
      d.info = make_info(GG_DEV_KFD, GG_VENDOR_AMD, 0, -1);
    } else {
      continue;
    }
    table.add(std::move(d));
  }
  return table;
}

std::optional<std::string> unwatched_driver(const DeviceTable& devices, const DiscoveryRoots& roots) {
  std::ifstream in(roots.proc + "/devices");
  std::string line;
  bool nvidia = false;
  while (std::getline(in, line)) {
    if (line.starts_with("Block devices")) break;
    std::istringstream ls(line);
    uint32_t major = 0;
    std::string name;
    if (ls >> major >> name && major == kNvidiaMajor) nvidia = true;
  }
  if (!nvidia) return std::nullopt;
  for (const auto& d : devices.devices())
    if (d.info.kind == GG_DEV_NVIDIA_CTL) return std::nullopt;
  return fmt::format(
      "the NVIDIA driver holds character major {} ({}/devices) but no NVIDIA control node is watched: no "
      "{}/nvidiactl was found. The gate still decides on every node of major {}; make the node (nvidia-modprobe, "
      "or mknod {}/nvidiactl c 195 255) so that records name it",
      kNvidiaMajor, roots.proc, roots.dev, kNvidiaMajor, roots.dev);
}

nlohmann::ordered_json devices_json(const DeviceTable& devices) {
  auto arr = nlohmann::ordered_json::array();
  for (const auto& d : devices.devices()) {
    nlohmann::ordered_json j;
    j["path"] = d.path;
    j["rdev"] = d.rdev_string();
    j["kind"] = dev_kind_name(d.info.kind);
    j["vendor"] = vendor_name(d.info.vendor);
    j["driver"] = d.driver;
    j["gpu_index"] = d.info.gpu_index >= 0 ? nlohmann::ordered_json(d.info.gpu_index) : nullptr;
    j["pci"] = d.pci.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(d.pci);
    j["alias"] = d.alias();
    if (d.alias()) j["alias_of"] = d.alias_of;
    arr.push_back(j);
  }
  return arr;
}

std::string_view alias_vendors_help() {
  return "nvidia|nvidiactl (control node), nvidiaN (GPU node N), nvidia-uvm, nvidia-modeset, "
         "drm|amdgpu|i915|xe (a DRM card), kfd";
}

Result<void> DeviceTable::add_alias(std::string_view spec) {
  auto eq = spec.rfind('=');
  if (eq == std::string_view::npos || eq == 0 || eq + 1 == spec.size())
    return make_error(
        fmt::format("--device {:?}: expected PATH=VENDOR, for example /dev/full=nvidia; "
                    "VENDOR is one of {}",
                    std::string(spec), alias_vendors_help()));
  std::string path(spec.substr(0, eq));
  std::string vendor(spec.substr(eq + 1));
  struct stat st {};
  if (stat(path.c_str(), &st) != 0)
    return make_error(
        fmt::format("--device {}: {}; name an existing character device node", path, std::strerror(errno)), errno);
  if (!S_ISCHR(st.st_mode))
    return make_error(
        fmt::format("--device {}: not a character device; ioctls are decoded by device number, "
                    "so an alias must be a character device node (for example /dev/full)",
                    path));
  Device d;
  d.path = path;
  d.dev = kernel_dev(major(st.st_rdev), minor(st.st_rdev));
  d.alias_of = vendor;
  if (vendor == "nvidia" || vendor == "nvidiactl") {
    d.info = make_info(GG_DEV_NVIDIA_CTL, GG_VENDOR_NVIDIA, 0, -1);
    d.alias_of = "nvidiactl";
  } else if (vendor.starts_with("nvidia") && vendor.size() > 6 &&
             vendor.find_first_not_of("0123456789", 6) == std::string::npos) {
    int index = std::stoi(vendor.substr(6));
    if (index > static_cast<int>(kNvidiaGpuMinorMax))
      return make_error(fmt::format("--device {}: nvidia{} is beyond the driver's 248 GPU nodes", path, index));
    d.info = make_info(GG_DEV_NVIDIA_GPU, GG_VENDOR_NVIDIA, 0, index);
  } else if (vendor == "nvidia-uvm") {
    d.info = make_info(GG_DEV_NVIDIA_UVM, GG_VENDOR_NVIDIA, 0, -1);
  } else if (vendor == "nvidia-modeset") {
    d.info = make_info(GG_DEV_NVIDIA_MODESET, GG_VENDOR_NVIDIA, 0, -1);
  } else if (vendor == "drm" || drm_driver_from_name(vendor)) {
    unsigned drm = drm_driver_of(vendor);
    d.info = make_info(GG_DEV_DRM, drm_vendor_of(drm, vendor), drm, -1);
  } else if (vendor == "kfd") {
    d.info = make_info(GG_DEV_KFD, GG_VENDOR_AMD, 0, -1);
  } else {
    return make_error(
        fmt::format("--device {}: unknown vendor {:?}; use one of {}", path, vendor, alias_vendors_help()));
  }
  d.info.flags |= GG_DEVF_ALIAS;
  d.driver = "alias";
  add(std::move(d));
  return {};
}

}  // namespace gpugate
