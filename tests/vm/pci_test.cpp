// PCI GPU discovery on a real kernel's sysfs: the guest's display adapters
// (QEMU's standard VGA, vendor 0x1234, class 0x030000, at 00:02.0; its
// bochs-display at 00:06.0 and virtio-gpu at 00:07.0, class 0x038000;
// tools/vmtest asks for them) are found by their ids, with their BARs and
// knobs keyed by the inodes the kernel gives them. Run by the vm suite "gpusim".
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <string>

#include <nlohmann/json.hpp>

#include "process.hpp"

namespace {

const std::string kBin = GG_BIN_DIR;
const std::string kVga = "0000:00:02.0";

nlohmann::json find_gpu(const nlohmann::json& gpus, const std::string& address) {
  for (const auto& g : gpus)
    if (g["pci"] == address) return g;
  return nullptr;
}

nlohmann::json find_knob(const nlohmann::json& gpu, const std::string& name) {
  for (const auto& k : gpu["knobs"])
    if (k["name"] == name) return k;
  return nullptr;
}

}  // namespace

TEST(PciDiscovery, FindsTheGuestsDisplayAdapterWithItsBarsAndKnobs) {
  auto r = gpugate::test::run_shell(kBin + "/gpugate devices --json");
  ASSERT_EQ(r.status, 0) << r.output;
  auto j = nlohmann::json::parse(r.output);
  ASSERT_TRUE(j.contains("nodes") && j.contains("gpus")) << r.output;
  auto vga = find_gpu(j["gpus"], kVga);
  ASSERT_FALSE(vga.is_null()) << "no GPU at " << kVga << " in: " << j["gpus"].dump(2);
  EXPECT_EQ(vga["vendor_id"], "0x1234");
  EXPECT_EQ(vga["class"], "0x030000");
  EXPECT_EQ(vga["kind"], "vga");
  EXPECT_EQ(vga["vendor"], "other");
  EXPECT_TRUE(vga["bridge"].is_null());  // on the root bus

  // The std VGA's BARs: 0 the framebuffer, 2 the MMIO registers (bochs DISPI).
  for (const std::string bar : {"resource0", "resource2"}) {
    auto k = find_knob(vga, bar);
    ASSERT_FALSE(k.is_null()) << bar << " missing in " << vga.dump(2);
    EXPECT_EQ(k["class"], "bar.map");
    EXPECT_EQ(k["mappable"], true);
    struct stat st {};
    ASSERT_EQ(stat(("/sys/bus/pci/devices/" + kVga + "/" + bar).c_str(), &st), 0);
    EXPECT_EQ(k["ino"].get<uint64_t>(), st.st_ino) << bar;
    EXPECT_EQ(k["fs_dev"], std::to_string(major(st.st_dev)) + ":" + std::to_string(minor(st.st_dev)));
  }
  for (const std::string name : {"config", "remove", "power/control"}) {
    auto k = find_knob(vga, name);
    ASSERT_FALSE(k.is_null()) << name << " missing in " << vga.dump(2);
    EXPECT_EQ(k["writable"], true) << name;
  }
  EXPECT_EQ(find_knob(vga, "remove")["class"], "power.off");

  // Nothing that is not a GPU: the i440FX host bridge, the PIIX ISA, IDE and
  // ACPI functions and the NIC are on the same bus.
  for (const auto& g : j["gpus"]) EXPECT_EQ(g["class"].get<std::string>().substr(0, 4), "0x03") << g.dump();

  // QEMU's other display devices: found by class and vendor id, not by name.
  auto bochs = find_gpu(j["gpus"], "0000:00:06.0"), virtio = find_gpu(j["gpus"], "0000:00:07.0");
  ASSERT_FALSE(bochs.is_null()) << "no bochs-display at 00:06.0 in: " << j["gpus"].dump(2);
  ASSERT_FALSE(virtio.is_null()) << "no virtio-gpu at 00:07.0 in: " << j["gpus"].dump(2);
  EXPECT_EQ(bochs["vendor_id"], "0x1234");
  EXPECT_EQ(bochs["class"], "0x038000");
  EXPECT_EQ(virtio["vendor_id"], "0x1af4");
  EXPECT_EQ(virtio["class"], "0x038000");
  for (const auto& g : {bochs, virtio}) {
    EXPECT_FALSE(find_knob(g, "power/control").is_null()) << g.dump(2);
    EXPECT_FALSE(g["bars"].empty()) << g.dump(2);
  }

  auto text = gpugate::test::run_shell(kBin + "/gpugate devices --knobs");
  ASSERT_EQ(text.status, 0) << text.output;
  EXPECT_NE(text.output.find(kVga), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("resource2"), std::string::npos) << text.output;
}
