// The GPUs behind the device nodes: each PCI function whose class says it
// is a GPU (or an NVSwitch), with its device nodes, UUID, upstream bridge
// and the sysfs and procfs files that can power it off, reset or throttle
// it, or map its registers (the knobs). Found from class and vendor ids in
// sysfs, never from names. docs/devices.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gpugate/device.hpp"

namespace gpugate {

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
};

// Every GPU under roots.sys/bus/pci/devices, sorted by address; nodes are
// those of `devices` (the node table) that belong to each, plus the ones
// sysfs and /proc/driver/nvidia name.
std::vector<PciGpu> discover_pci_gpus(const DeviceTable& devices, const DiscoveryRoots& roots = {});

// Whether a PCI function with these ids is one gpugate watches, and its
// kind ("vga", "3d", ...); nullopt for everything else.
std::optional<std::string> pci_gpu_kind(uint16_t vendor_id, uint32_t class_code);

nlohmann::ordered_json pci_gpus_json(const std::vector<PciGpu>& gpus);

}  // namespace gpugate
