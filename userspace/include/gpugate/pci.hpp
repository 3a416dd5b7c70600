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

// Every GPU under roots.sys/bus/pci/devices, sorted by address; nodes are
// those of `devices` (the node table) that belong to each, plus the ones
// sysfs and /proc/driver/nvidia name.
std::vector<PciGpu> discover_pci_gpus(const DeviceTable& devices, const DiscoveryRoots& roots = {});

// The node table with its GPUs and their knobs attached: what the daemon
// watches (DeviceTable::discover, then discover_pci_gpus).
DeviceTable discover_devices_and_gpus(const DiscoveryRoots& roots = {});

// Whether a PCI function with these ids is one gpugate watches, and its
// kind ("vga", "3d", ...); nullopt for everything else.
std::optional<std::string> pci_gpu_kind(uint16_t vendor_id, uint32_t class_code);

nlohmann::ordered_json pci_gpus_json(const std::vector<PciGpu>& gpus);

}  // namespace gpugate
