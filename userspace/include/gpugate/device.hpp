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

// A file whose write (or mmap, for a BAR) changes the GPU's state. The inode
// and its filesystem's device are what the kernel sees: the gate keys on
// them, never on the path.
struct Knob {
  std::string name;       // relative to its owner: "power/control", "resource0", "hwmon/hwmon3/power1_cap"
  std::string path;       // where it was found
  std::string owner;      // "gpu", "bridge" (the upstream bridge's), "driver" (the bound driver's), "nvidia-proc"
  unsigned cls = 0;       // the class a write (or a map) falls in: GG_CLASS_*
  std::string effect;     // what it does, in a few words
  uint64_t ino = 0;       // inode number, 0 where stat failed
  uint64_t fs_dev = 0;    // st_dev of its filesystem (kernel form, major << 20 | minor)
  bool writable = false;  // has a write bit in its mode (root can write it)
  bool mappable = false;  // a BAR: mmap is the access that matters
  // What the gate keys and decides on (the knobs map, gg_knob.h).
  uint32_t fs_magic = 0;  // statfs f_type: GG_FS_SYSFS or GG_FS_PROC, 0 if neither
  unsigned rule = 0;      // enum gg_knob_rule
  bool bridge = false;    // the upstream bridge's (its Bridge Control counts)
  uint16_t pm_cap = 0;    // config: the PM capability's offset, 0 if none or unread
  uint16_t exp_cap = 0;   // config: the PCI Express capability's offset
};

struct PciGpu {
  std::string address;      // "0000:41:00.0"
  uint16_t vendor_id = 0;   // sysfs vendor
  uint16_t device_id = 0;   // sysfs device
  uint32_t class_code = 0;  // sysfs class, 24 bits
  unsigned vendor = 0;      // GG_VENDOR_*
  std::string kind;         // "vga", "3d", "display", "accelerator", "nvswitch"
  std::string driver;       // bound driver, empty if none
  std::string uuid;         // "GPU-…" (NVIDIA), amdgpu's unique_id; empty where the driver says none
  std::string bridge;       // upstream bridge's address; empty on a root bus
  int numa_node = -1;
  std::vector<std::string> nodes;  // device nodes that belong to it: /dev/nvidiaN, /dev/dri/cardN, /dev/kfd
  std::vector<Knob> knobs;
  // Its BARs from sysfs `resource` (physical addresses, inclusive end).
  struct Bar {
    unsigned index = 0;
    uint64_t start = 0, end = 0;
    bool memory = false;  // a memory BAR (IORESOURCE_MEM), which /dev/mem can map
  };
  std::vector<Bar> bars;

  // Grants and rules name a GPU without a node of its own by this (GG_PCI_DEV).
  [[nodiscard]] uint32_t pci_dev() const;
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

  // The GPUs on the PCI bus and their knobs (discover_pci_gpus), where attached.
  [[nodiscard]] const std::vector<PciGpu>& gpus() const { return gpus_; }
  void set_gpus(std::vector<PciGpu> gpus) { gpus_ = std::move(gpus); }
  // The GPU a GG_PCI_DEV names, or nullptr.
  [[nodiscard]] const PciGpu* find_gpu(uint32_t pci_dev) const;

 private:
  std::vector<Device> devices_;
  std::vector<PciGpu> gpus_;
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
