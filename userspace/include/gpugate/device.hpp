// GPU device nodes: found on the machine, or named by --device PATH=VENDOR.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

extern "C" {
#include "gpugate/event.h"
}

#include <nlohmann/json.hpp>

#include "gpugate/result.hpp"

namespace gpugate {

// Kernel-internal dev_t (major << 20 | minor), as BPF reads inode->i_rdev.
constexpr uint32_t kernel_dev(uint32_t major, uint32_t minor) { return major << 20 | minor; }
constexpr uint32_t kernel_dev_major(uint32_t dev) { return dev >> 20; }
constexpr uint32_t kernel_dev_minor(uint32_t dev) { return dev & 0xfffff; }

struct Device {
  std::string path;
  uint32_t dev = 0;      // kernel dev_t
  gg_device info{};      // kind, vendor, drm driver, flags, gpu index
  std::string driver;    // kernel driver name where known ("amdgpu", "nvidia")
  std::string pci;       // PCI address where known
  std::string alias_of;  // for an alias: what it stands in for ("nvidiactl")

  [[nodiscard]] bool alias() const { return info.flags & GG_DEVF_ALIAS; }
  [[nodiscard]] std::string rdev_string() const;
};

// Where discovery looks; tests point it at a fake tree.
struct DiscoveryRoots {
  std::string dev = "/dev";
  std::string proc = "/proc";
  std::string sys = "/sys";
};

class DeviceTable {
 public:
  // Every GPU node under roots.dev: NVIDIA 195:* and nvidia-uvm (major from
  // /proc/devices), /dev/dri/* with their DRM driver, /dev/kfd.
  static DeviceTable discover(const DiscoveryRoots& roots = {});

  // "PATH=VENDOR": treat the character device at PATH as a GPU node.
  // VENDOR: nvidia|nvidiactl (control node), nvidiaN (GPU N), nvidia-uvm,
  // nvidia-modeset, drm|amdgpu|i915|xe (a /dev/dri card), kfd.
  Result<void> add_alias(std::string_view spec);

  [[nodiscard]] const std::vector<Device>& devices() const { return devices_; }
  [[nodiscard]] const Device* find(uint32_t dev) const;
  [[nodiscard]] bool empty() const { return devices_.empty(); }
  void add(Device d);

 private:
  std::vector<Device> devices_;
};

std::string_view alias_vendors_help();

// A GPU driver that is loaded but none of whose control nodes is watched
// (NVIDIA's major registered in /proc/devices, no nvidiactl in the table):
// the alarm's text, or nothing. The kernel side still covers the major;
// the alarm says the daemon cannot name the nodes.
std::optional<std::string> unwatched_driver(const DeviceTable& devices, const DiscoveryRoots& roots = {});

// The table as JSON (status file, daemon.start record, gpugate devices --json).
nlohmann::ordered_json devices_json(const DeviceTable& devices);

}  // namespace gpugate
