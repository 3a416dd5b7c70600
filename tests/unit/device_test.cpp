// Device aliases and discovery.
#include <gtest/gtest.h>

#include "gpugate/decode.hpp"
#include "gpugate/device.hpp"

using namespace gpugate;

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
