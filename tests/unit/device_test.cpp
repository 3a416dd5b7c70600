// Device aliases and discovery.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "gpugate/decode.hpp"
#include "gpugate/device.hpp"
#include "gpugate/uevent.hpp"
#include "tempdir.hpp"

using namespace gpugate;
namespace fs = std::filesystem;

TEST(Devices, AliasTakesEveryVendorForm) {
  struct Case {
    const char* spec;
    unsigned kind;
    int index;
  } cases[] = {
      {"/dev/full=nvidia", GG_DEV_NVIDIA_CTL, -1},
      {"/dev/full=nvidiactl", GG_DEV_NVIDIA_CTL, -1},
      {"/dev/full=nvidia3", GG_DEV_NVIDIA_GPU, 3},
      {"/dev/full=nvidia-uvm", GG_DEV_NVIDIA_UVM, -1},
      {"/dev/full=amdgpu", GG_DEV_DRM, -1},
      {"/dev/full=kfd", GG_DEV_KFD, -1},
      {"/dev/full=nvidia-modeset", GG_DEV_NVIDIA_MODESET, -1},
  };
  for (const auto& c : cases) {
    DeviceTable t;
    auto r = t.add_alias(c.spec);
    ASSERT_TRUE(r.ok()) << c.spec << ": " << r.error().message;
    ASSERT_EQ(t.devices().size(), 1u);
    const auto& d = t.devices()[0];
    EXPECT_EQ(d.info.kind, c.kind) << c.spec;
    EXPECT_EQ(d.info.gpu_index, c.index) << c.spec;
    EXPECT_TRUE(d.alias());
    EXPECT_EQ(d.rdev_string(), "1:7");
    EXPECT_EQ(t.find(kernel_dev(1, 7)), &d);
  }
}

TEST(Devices, BadAliasesSayWhatAndHow) {
  DeviceTable t;
  auto missing = t.add_alias("/dev/does-not-exist=nvidia");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("/dev/does-not-exist"), std::string::npos);
  auto notchr = t.add_alias("/tmp=nvidia");
  ASSERT_FALSE(notchr.ok());
  EXPECT_NE(notchr.error().message.find("not a character device"), std::string::npos);
  auto vendor = t.add_alias("/dev/full=voodoo");
  ASSERT_FALSE(vendor.ok());
  EXPECT_NE(vendor.error().message.find("unknown vendor"), std::string::npos);
  auto shape = t.add_alias("/dev/full");
  ASSERT_FALSE(shape.ok());
  EXPECT_NE(shape.error().message.find("PATH=VENDOR"), std::string::npos);
  auto range = t.add_alias("/dev/full=nvidia300");
  ASSERT_FALSE(range.ok());
  EXPECT_TRUE(t.empty());
}

TEST(Devices, AliasOverridesTheSameNode) {
  DeviceTable t;
  ASSERT_TRUE(t.add_alias("/dev/full=nvidia").ok());
  ASSERT_TRUE(t.add_alias("/dev/full=kfd").ok());
  ASSERT_EQ(t.devices().size(), 1u);
  EXPECT_EQ(t.devices()[0].info.kind, GG_DEV_KFD);
}

TEST(Devices, DiscoveryFindsNoGpuInAnEmptyTree) {
  DiscoveryRoots roots{"/nonexistent/dev", "/nonexistent/proc", "/nonexistent/sys"};
  EXPECT_TRUE(DeviceTable::discover(roots).empty());
}

TEST(Uevent, OnlyGpuNodeEventsConcernTheTable) {
  using namespace std::string_literals;
  auto msg = [](const std::string& s) { return std::string_view(s.data(), s.size()); };
  std::string drm =
      "add@/devices/pci0000:00/0000:00:02.0/drm/card0\0ACTION=add\0SUBSYSTEM=drm\0MAJOR=226\0MINOR=0\0"
      "DEVNAME=dri/card0\0SEQNUM=1"s;
  EXPECT_TRUE(gpugate::uevent_concerns_gpu(msg(drm)));
  std::string nv = "add@/devices/virtual/gpusim/nvidia1\0ACTION=add\0MAJOR=195\0MINOR=1\0DEVNAME=nvidia1"s;
  EXPECT_TRUE(gpugate::uevent_concerns_gpu(msg(nv)));
  std::string gone = "remove@/devices/virtual/misc/kfd\0ACTION=remove\0SUBSYSTEM=kfd\0DEVNAME=kfd"s;
  EXPECT_TRUE(gpugate::uevent_concerns_gpu(msg(gone)));
  std::string tty = "add@/devices/virtual/tty/tty9\0ACTION=add\0SUBSYSTEM=tty\0MAJOR=4\0MINOR=9\0DEVNAME=tty9"s;
  EXPECT_FALSE(gpugate::uevent_concerns_gpu(msg(tty)));
  std::string online = "online@/devices/system/cpu/cpu1\0ACTION=online\0SUBSYSTEM=cpu"s;
  EXPECT_FALSE(gpugate::uevent_concerns_gpu(msg(online)));
  EXPECT_FALSE(gpugate::uevent_concerns_gpu(""));
  EXPECT_FALSE(gpugate::uevent_concerns_gpu(msg("add@/x\0ACTION=add\0MAJOR="s)));
}

TEST(Discovery, AnNvidiaDriverWithoutAWatchedControlNodeRaisesAnAlarm) {
  gpugate::test::TempDir root;
  fs::create_directories(root.path / "proc");
  fs::create_directories(root.path / "dev");
  std::ofstream(root.path / "proc/devices") << "Character devices:\n  1 mem\n195 nvidia\n\nBlock devices:\n195 fake\n";
  gpugate::DiscoveryRoots roots{(root.path / "dev").string(), (root.path / "proc").string(), root.path.string()};
  auto table = gpugate::DeviceTable::discover(roots);
  auto alarm = gpugate::unwatched_driver(table, roots);
  ASSERT_TRUE(alarm.has_value());
  EXPECT_NE(alarm->find("no NVIDIA control node is watched"), std::string::npos) << *alarm;
  std::ofstream(root.path / "proc/devices") << "Character devices:\n  1 mem\n\nBlock devices:\n195 fake\n";
  EXPECT_FALSE(gpugate::unwatched_driver(table, roots).has_value()) << "no NVIDIA driver: nothing to say";
}
