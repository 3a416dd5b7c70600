// PCI GPU discovery on a fake sysfs and procfs: class and vendor ids decide,
// names never do; each GPU gets its nodes, UUID, bridge and knobs.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "gpugate/decode.hpp"
#include "gpugate/pci.hpp"
#include "tempdir.hpp"

using namespace gpugate;
namespace fs = std::filesystem;

namespace {

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

// A PCI function at devices/<path> (below the root bus), linked from
// bus/pci/devices like the kernel does.
fs::path add_function(const fs::path& sys, const std::string& tree_path, uint16_t vendor, uint16_t device,
                      uint32_t cls) {
  fs::path dir = sys / "devices" / tree_path;
  write(dir / "vendor", fmt::format("0x{:04x}\n", vendor));
  write(dir / "device", fmt::format("0x{:04x}\n", device));
  write(dir / "class", fmt::format("0x{:06x}\n", cls));
  write(dir / "numa_node", "-1\n");
  fs::create_directories(sys / "bus/pci/devices");
  fs::create_symlink(fs::path("../../../devices") / tree_path, sys / "bus/pci/devices" / dir.filename());
  return dir;
}

void bind(const fs::path& sys, const fs::path& dir, const std::string& driver) {
  write(sys / "bus/pci/drivers" / driver / "unbind", "");
  fs::create_symlink(fs::relative(sys / "bus/pci/drivers" / driver, dir), dir / "driver");
}

const Knob* knob(const PciGpu& g, std::string_view name) {
  for (const auto& k : g.knobs)
    if (k.name == name) return &k;
  return nullptr;
}

}  // namespace

TEST(PciGpus, KindComesFromClassAndVendorIds) {
  EXPECT_EQ(pci_gpu_kind(0x10de, 0x030200), "3d");       // H100/H200
  EXPECT_EQ(pci_gpu_kind(0x10de, 0x030000), "vga");      // a GeForce
  EXPECT_EQ(pci_gpu_kind(0x1234, 0x030000), "vga");      // QEMU's std VGA (bochs)
  EXPECT_EQ(pci_gpu_kind(0x1002, 0x038000), "display");  // an Instinct MI200
  EXPECT_EQ(pci_gpu_kind(0x1002, 0x120000), "accelerator");
  EXPECT_EQ(pci_gpu_kind(0x10de, 0x068000), "nvswitch");
  EXPECT_FALSE(pci_gpu_kind(0x8086, 0x068000));  // another vendor's bridge
  EXPECT_FALSE(pci_gpu_kind(0x1af4, 0x120000));  // accelerator class, not a GPU vendor
  EXPECT_FALSE(pci_gpu_kind(0x10de, 0x040300));  // the GPU's HDMI audio function
  EXPECT_FALSE(pci_gpu_kind(0x8086, 0x060400));  // a PCI bridge
}

TEST(PciGpus, DiscoversEachGpuWithNodesUuidBridgeAndKnobs) {
  test::TempDir tmp;
  fs::path sys = tmp.path / "sys", proc = tmp.path / "proc", dev = tmp.path / "dev";
  DiscoveryRoots roots{dev.string(), proc.string(), sys.string()};

  // An H200 behind a switch port, bound to nvidia, with its HDMI-less audio
  // sibling absent and the bridge's own knobs.
  fs::path bridge = add_function(sys, "pci0000:40/0000:40:01.1", 0x1022, 0x14ab, 0x060400);
  write(bridge / "config", "");
  write(bridge / "reset", "");
  write(bridge / "power/control", "on\n");
  fs::path h200 = add_function(sys, "pci0000:40/0000:40:01.1/0000:41:00.0", 0x10de, 0x2335, 0x030200);
  for (auto f : {"reset", "remove", "resource0", "resource1", "resource1_wc", "d3cold_allowed"}) write(h200 / f, "");
  write(h200 / "power/control", "on\n");
  write(h200 / "numa_node", "1\n");
  {
    // Config space with a capability list: PM at 0x60, PCI Express at 0x78.
    std::string config(256, '\0');
    config[0x06] = 0x10;  // status: capabilities list
    config[0x34] = 0x60;
    config[0x60] = 0x01, config[0x61] = 0x78;
    config[0x78] = 0x10, config[0x79] = 0x00;
    write(h200 / "config", config);
    write(h200 / "resource",
          "0x00000000fa000000 0x00000000faffffff 0x0000000000040200\n"
          "0x0000038000000000 0x00000397ffffffff 0x000000000014220c\n"
          "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
          "0x0000000000003000 0x000000000000307f 0x0000000000040101\n");
  }
  bind(sys, h200, "nvidia");
  write(proc / "driver/nvidia/gpus/0000:41:00.0/information",
        "Model: \t\t NVIDIA H200\nIRQ:   \t\t 42\nGPU UUID: \t GPU-3f1c2d3e-0000-1111-2222-333344445555\n"
        "Device Minor: \t 2\nBus Location: \t 0000:41:00.0\n");
  write(proc / "driver/nvidia/suspend", "");
  write(proc / "bus/pci/41/00.0", std::string(256, '\0'));  // the legacy config files
  write(proc / "bus/pci/40/01.1", std::string(256, '\0'));

  // An AMD GPU on the root bus with amdgpu's knobs, a hwmon and a card node.
  fs::path mi = add_function(sys, "pci0000:00/0000:03:00.0", 0x1002, 0x740f, 0x038000);
  write(mi / "unique_id", "a1b2c3d4e5f60718\n");
  write(mi / "power_dpm_force_performance_level", "auto\n");
  write(mi / "pp_od_clk_voltage", "");
  write(mi / "hwmon/hwmon4/power1_cap", "300000000\n");
  write(mi / "hwmon/hwmon4/power1_cap_max", "");  // read-only: not a knob
  fs::create_directories(mi / "drm/card1");
  fs::create_directories(mi / "drm/renderD129");
  bind(sys, mi, "amdgpu");

  // An Intel GPU with i915's frequency knobs under its card, and a
  // connector directory that must not be taken for a card.
  fs::path igpu = add_function(sys, "pci0000:00/0000:00:02.0", 0x8086, 0x46a6, 0x030000);
  write(igpu / "drm/card0/gt_max_freq_mhz", "1400\n");
  write(igpu / "drm/card0/gt_min_freq_mhz", "300\n");
  write(igpu / "drm/card0-eDP-1/gt_max_freq_mhz", "");

  // Not GPUs: a NIC, and NVIDIA's audio function.
  add_function(sys, "pci0000:00/0000:05:00.0", 0x15b3, 0x101d, 0x020000);
  add_function(sys, "pci0000:40/0000:40:01.1/0000:41:00.1", 0x10de, 0x22e8, 0x040300);

  auto gpus = discover_pci_gpus(DeviceTable{}, roots);
  ASSERT_EQ(gpus.size(), 3u);
  EXPECT_EQ(gpus[0].address, "0000:00:02.0");  // sorted by address
  EXPECT_EQ(gpus[1].address, "0000:03:00.0");
  EXPECT_EQ(gpus[2].address, "0000:41:00.0");

  const PciGpu& nv = gpus[2];
  EXPECT_EQ(nv.vendor, GG_VENDOR_NVIDIA);
  EXPECT_EQ(nv.kind, "3d");
  EXPECT_EQ(nv.driver, "nvidia");
  EXPECT_EQ(nv.uuid, "GPU-3f1c2d3e-0000-1111-2222-333344445555");
  EXPECT_EQ(nv.bridge, "0000:40:01.1");
  EXPECT_EQ(nv.numa_node, 1);
  EXPECT_EQ(nv.nodes, std::vector<std::string>{dev.string() + "/nvidia2"});
  ASSERT_NE(knob(nv, "power/control"), nullptr);
  EXPECT_EQ(knob(nv, "power/control")->cls, GG_CLASS_POWER_OFF);
  EXPECT_EQ(knob(nv, "reset")->cls, GG_CLASS_GPU_RESET);
  EXPECT_EQ(knob(nv, "remove")->cls, GG_CLASS_POWER_OFF);
  EXPECT_EQ(knob(nv, "d3cold_allowed")->cls, GG_CLASS_POWER_OFF);
  // What the gate decides with: the rule per knob, the capability offsets of config.
  EXPECT_EQ(knob(nv, "power/control")->rule, GG_KNOB_RUNTIME_PM);
  EXPECT_EQ(knob(nv, "remove")->rule, GG_KNOB_ANY_WRITE);
  ASSERT_NE(knob(nv, "config"), nullptr);
  EXPECT_EQ(knob(nv, "config")->rule, GG_KNOB_PCI_CONFIG);
  EXPECT_EQ(knob(nv, "config")->pm_cap, 0x60);
  EXPECT_EQ(knob(nv, "config")->exp_cap, 0x78);
  EXPECT_TRUE(knob(nv, "bridge/config")->bridge);
  EXPECT_EQ(knob(nv, "bridge/config")->pm_cap, 0) << "the fake bridge's config is empty";
  // The BARs: two memory, one I/O; an empty slot is none.
  ASSERT_EQ(nv.bars.size(), 3u);
  EXPECT_EQ(nv.bars[0].start, 0xfa000000u);
  EXPECT_TRUE(nv.bars[0].memory);
  EXPECT_EQ(nv.bars[1].index, 1u);
  EXPECT_EQ(nv.bars[1].end, 0x397ffffffffu);
  EXPECT_EQ(nv.bars[2].index, 3u);
  EXPECT_FALSE(nv.bars[2].memory);
  EXPECT_EQ(nv.pci_dev(), GG_PCI_DEV(0, 0x41, 0));
  for (auto bar : {"resource0", "resource1", "resource1_wc"}) {
    ASSERT_NE(knob(nv, bar), nullptr) << bar;
    EXPECT_EQ(knob(nv, bar)->cls, GG_CLASS_BAR_MAP);
    EXPECT_TRUE(knob(nv, bar)->mappable);
  }
  EXPECT_EQ(knob(nv, "resource"), nullptr);  // the BAR list, not a BAR
  ASSERT_NE(knob(nv, "driver/unbind"), nullptr);
  EXPECT_EQ(knob(nv, "driver/unbind")->owner, "driver");
  ASSERT_NE(knob(nv, "bridge/config"), nullptr);  // Secondary Bus Reset
  EXPECT_EQ(knob(nv, "bridge/config")->cls, GG_CLASS_GPU_RESET);
  EXPECT_EQ(knob(nv, "bridge/config")->owner, "bridge");
  EXPECT_NE(knob(nv, "bridge/power/control"), nullptr);
  // config space through procfs: the GPU's and its bridge's, the same rule as sysfs's
  ASSERT_NE(knob(nv, "/proc/bus/pci/41/00.0"), nullptr);
  EXPECT_EQ(knob(nv, "/proc/bus/pci/41/00.0")->rule, GG_KNOB_PCI_CONFIG);
  EXPECT_EQ(knob(nv, "/proc/bus/pci/41/00.0")->owner, "gpu");
  ASSERT_NE(knob(nv, "/proc/bus/pci/40/01.1"), nullptr);
  EXPECT_TRUE(knob(nv, "/proc/bus/pci/40/01.1")->bridge);
  EXPECT_EQ(knob(nv, "/proc/bus/pci/40/01.1")->cls, GG_CLASS_GPU_RESET);
  ASSERT_NE(knob(nv, "/proc/driver/nvidia/suspend"), nullptr);
  EXPECT_EQ(knob(nv, "/proc/driver/nvidia/suspend")->owner, "nvidia-proc");
  EXPECT_EQ(knob(nv, "/proc/driver/nvidia/gpus/0000:41:00.0/unbindLock"), nullptr);  // not a vGPU host
  struct stat st {};
  ASSERT_EQ(stat((h200 / "reset").c_str(), &st), 0);
  EXPECT_EQ(knob(nv, "reset")->ino, st.st_ino);  // what the kernel keys on
  EXPECT_NE(knob(nv, "reset")->ino, knob(nv, "remove")->ino);

  const PciGpu& amd = gpus[1];
  EXPECT_EQ(amd.vendor, GG_VENDOR_AMD);
  EXPECT_EQ(amd.kind, "display");
  EXPECT_EQ(amd.uuid, "a1b2c3d4e5f60718");
  EXPECT_EQ(amd.bridge, "");  // on the root bus
  EXPECT_EQ(amd.nodes, (std::vector<std::string>{dev.string() + "/dri/card1", dev.string() + "/dri/renderD129"}));
  EXPECT_EQ(knob(amd, "power_dpm_force_performance_level")->cls, GG_CLASS_PERF_STATE);
  EXPECT_EQ(knob(amd, "pp_od_clk_voltage")->cls, GG_CLASS_CLOCK_LIMIT);
  ASSERT_NE(knob(amd, "hwmon/hwmon4/power1_cap"), nullptr);
  EXPECT_EQ(knob(amd, "hwmon/hwmon4/power1_cap")->cls, GG_CLASS_POWER_LIMIT);
  EXPECT_EQ(knob(amd, "hwmon/hwmon4/power1_cap_max"), nullptr);

  const PciGpu& intel = gpus[0];
  EXPECT_EQ(intel.vendor, GG_VENDOR_INTEL);
  EXPECT_EQ(intel.driver, "");
  EXPECT_EQ(intel.nodes, std::vector<std::string>{dev.string() + "/dri/card0"});  // not the connector
  EXPECT_EQ(knob(intel, "drm/card0/gt_max_freq_mhz")->cls, GG_CLASS_CLOCK_LIMIT);
  EXPECT_NE(knob(intel, "drm/card0/gt_min_freq_mhz"), nullptr);
  EXPECT_EQ(knob(intel, "drm/card0-eDP-1/gt_max_freq_mhz"), nullptr);
  EXPECT_EQ(knob(intel, "driver/unbind"), nullptr);  // nothing bound

  auto j = pci_gpus_json(gpus);
  EXPECT_EQ(j[2]["uuid"], "GPU-3f1c2d3e-0000-1111-2222-333344445555");
  EXPECT_EQ(j[2]["class"], "0x030200");
  EXPECT_EQ(j[1]["bridge"], nullptr);
  bool listed = false;
  for (const auto& k : j[2]["knobs"]) listed |= k["name"] == "reset" && k["class"] == "gpu.reset";
  EXPECT_TRUE(listed) << j[2].dump(2);
}

TEST(PciGpus, SharedNodesGoToEveryGpuOfTheirDriver) {
  test::TempDir tmp;
  fs::path sys = tmp.path / "sys";
  DiscoveryRoots roots{(tmp.path / "dev").string(), (tmp.path / "proc").string(), sys.string()};
  fs::path a = add_function(sys, "pci0000:00/0000:01:00.0", 0x10de, 0x2335, 0x030200);
  fs::path b = add_function(sys, "pci0000:00/0000:02:00.0", 0x10de, 0x2335, 0x030200);
  fs::path sw = add_function(sys, "pci0000:00/0000:07:00.0", 0x10de, 0x22a3, 0x068000);  // NVSwitch
  DeviceTable nodes;
  Device ctl;
  ctl.path = "/dev/nvidiactl";
  ctl.dev = kernel_dev(195, 255);
  ctl.info.kind = GG_DEV_NVIDIA_CTL;
  nodes.add(ctl);
  auto gpus = discover_pci_gpus(nodes, roots);
  ASSERT_EQ(gpus.size(), 3u);
  EXPECT_EQ(gpus[0].nodes, std::vector<std::string>{"/dev/nvidiactl"});
  EXPECT_EQ(gpus[1].nodes, std::vector<std::string>{"/dev/nvidiactl"});
  EXPECT_EQ(gpus[2].kind, "nvswitch");
  EXPECT_TRUE(gpus[2].nodes.empty());
}

// NVIDIA's procfs names the functions its driver holds: their knobs there
// are gated whatever the function's vendor id says (and only theirs).
TEST(PciGpus, NvidiaProcfsKnobsGoToEveryFunctionTheDriverLists) {
  test::TempDir tmp;
  fs::path sys = tmp.path / "sys", proc = tmp.path / "proc";
  DiscoveryRoots roots{(tmp.path / "dev").string(), proc.string(), sys.string()};
  add_function(sys, "pci0000:00/0000:00:02.0", 0x1234, 0x1111, 0x030000);  // QEMU's std VGA
  add_function(sys, "pci0000:00/0000:00:03.0", 0x1b36, 0x0100, 0x030000);  // not listed by the driver
  write(proc / "driver/nvidia/suspend", "resume\n");
  write(proc / "driver/nvidia/gpus/0000:00:02.0/unbindLock", "Unbind Lock: Unlocked\n");
  auto gpus = discover_pci_gpus(DeviceTable{}, roots);
  ASSERT_EQ(gpus.size(), 2u);
  ASSERT_NE(knob(gpus[0], "/proc/driver/nvidia/gpus/0000:00:02.0/unbindLock"), nullptr);
  EXPECT_EQ(knob(gpus[0], "/proc/driver/nvidia/gpus/0000:00:02.0/unbindLock")->cls, GG_CLASS_POWER_OFF);
  ASSERT_NE(knob(gpus[0], "/proc/driver/nvidia/suspend"), nullptr);
  EXPECT_EQ(knob(gpus[1], "/proc/driver/nvidia/suspend"), nullptr);
}

TEST(PciGpus, MalformedSysfsFilesAreSkippedNotFatal) {
  test::TempDir tmp;
  fs::path sys = tmp.path / "sys";
  DiscoveryRoots roots{(tmp.path / "dev").string(), (tmp.path / "proc").string(), sys.string()};
  fs::path bad = add_function(sys, "pci0000:00/0000:01:00.0", 0x10de, 0x2335, 0x030200);
  write(bad / "class", "three-d\n");
  fs::path huge = add_function(sys, "pci0000:00/0000:02:00.0", 0x10de, 0x2335, 0x030200);
  write(huge / "vendor", "0x1ffffffffff\n");
  fs::path ok = add_function(sys, "pci0000:00/0000:03:00.0", 0x1234, 0x1111, 0x030000);
  write(ok / "numa_node", "not a number\n");
  fs::create_directories(sys / "bus/pci/devices/not-an-address");
  auto gpus = discover_pci_gpus(DeviceTable{}, roots);
  ASSERT_EQ(gpus.size(), 1u);
  EXPECT_EQ(gpus[0].address, "0000:03:00.0");
  EXPECT_EQ(gpus[0].vendor, GG_VENDOR_OTHER);
  EXPECT_EQ(gpus[0].numa_node, -1);
}
