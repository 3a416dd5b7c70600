// The watcher's NVML source against tests/unit/fake_nvml.c, a library with
// NVML's ABI: every field of every GPU, the PCI address in sysfs form, XIDs,
// a lost GPU, clock-event reasons, and the errors of a host without NVML.
// The test dlopens the same file as open_nvml does, so both see one copy of
// the fake's state and the test steers it through fake_nvml_*.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "gpugate/watch.hpp"

using namespace gpugate;
using namespace gpugate::watch;

namespace {

struct Fake {
  void* lib = nullptr;
  void (*reset)() = nullptr;
  int (*set)(unsigned, const char*, unsigned long long) = nullptr;
  int (*set_supported)(unsigned, const char*, int) = nullptr;
  int (*xid)(unsigned, unsigned long long) = nullptr;
  unsigned long long (*calls)() = nullptr;
};

template <typename F>
void bind(void* lib, F& fn, const char* name) {
  fn = reinterpret_cast<F>(dlsym(lib, name));  // NOLINT(cppcoreguidelines-pro-type-reinterpret-cast): dlsym
  ASSERT_NE(fn, nullptr) << name << " missing from " << FAKE_NVML_PATH;
}

class WatchNvml : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Held for the whole process: the fake's state outlives each source's dlclose.
    fake_.lib = dlopen(FAKE_NVML_PATH, RTLD_NOW | RTLD_LOCAL);
    ASSERT_NE(fake_.lib, nullptr) << dlerror();
    bind(fake_.lib, fake_.reset, "fake_nvml_reset");
    bind(fake_.lib, fake_.set, "fake_nvml_set");
    bind(fake_.lib, fake_.set_supported, "fake_nvml_set_supported");
    bind(fake_.lib, fake_.xid, "fake_nvml_xid");
    bind(fake_.lib, fake_.calls, "fake_nvml_calls");
  }
  void SetUp() override {
    ASSERT_NE(fake_.reset, nullptr);
    fake_.reset();
    ::setenv("FAKE_NVML_GPUS", "2", 1);
    ::unsetenv("FAKE_NVML_FAIL_INIT");
    ::unsetenv("FAKE_NVML_IOCTL");
  }
  void TearDown() override {
    ::unsetenv("FAKE_NVML_GPUS");
    ::unsetenv("FAKE_NVML_FAIL_INIT");
  }

  static std::unique_ptr<StateSource> open() {
    auto src = open_nvml(FAKE_NVML_PATH);
    EXPECT_TRUE(src.ok()) << (src.ok() ? "" : src.error().message);
    return src.ok() ? std::move(*src) : nullptr;
  }

  static Fake fake_;
};
Fake WatchNvml::fake_;

std::set<std::string> keys(const GpuSample& s) {
  std::set<std::string> k;
  for (const auto& [name, v] : s.values) k.insert(name);
  return k;
}

TEST_F(WatchNvml, ReadsEveryFieldOfEveryGpu) {
  // Values apart from the fake's defaults, so that each is seen to come from its own query.
  ASSERT_EQ(fake_.set(1, "power.limit_mw", 450000), 0);
  ASSERT_EQ(fake_.set(1, "power.enforced_limit_mw", 440000), 0);
  ASSERT_EQ(fake_.set(1, "clocks.sm_mhz", 1755), 0);
  ASSERT_EQ(fake_.set(1, "clocks.p0_sm_max_mhz", 1500), 0);
  ASSERT_EQ(fake_.set(1, "perf.pstate", 2), 0);
  ASSERT_EQ(fake_.set(1, "mig.pending", 1), 0);
  ASSERT_EQ(fake_.set(1, "compute_mode", 3), 0);
  ASSERT_EQ(fake_.set(1, "pcie.width", 8), 0);
  auto src = open();
  ASSERT_TRUE(src);
  EXPECT_EQ(src->name(), "nvml");
  auto gpus = src->sample();
  ASSERT_EQ(gpus.size(), 2u);

  const std::map<std::string, Json> gpu0 = {
      {"power.limit_mw", 700000},
      {"power.enforced_limit_mw", 700000},
      {"power.default_limit_mw", 700000},
      {"power.usage_mw", 76000},
      {"clocks.sm_mhz", 345},
      {"clocks.mem_mhz", 3201},
      {"clocks.sm_max_mhz", 1980},
      {"clocks.applications_sm_mhz", 1980},
      {"clocks.applications_mem_mhz", 3201},
      {"clocks.p0_sm_min_mhz", 345},
      {"clocks.p0_sm_max_mhz", 1980},
      {"clocks.event_reasons", Json::array({"gpu_idle"})},
      {"perf.pstate", "P0"},
      {"temperature.gpu_c", 31},
      {"ecc.current", "enabled"},
      {"ecc.pending", "enabled"},
      {"mig.current", "disabled"},
      {"mig.pending", "disabled"},
      {"persistence", "enabled"},
      {"compute_mode", "default"},
      {"pcie.generation", 5},
      {"pcie.width", 16},
      {"xid.count", 0},
      {"nvml.gpu_lost", false},
  };
  std::map<std::string, Json> gpu1 = gpu0;
  gpu1["power.limit_mw"] = 450000;
  gpu1["power.enforced_limit_mw"] = 440000;
  gpu1["power.usage_mw"] = 77000;
  gpu1["clocks.sm_mhz"] = 1755;
  gpu1["clocks.p0_sm_max_mhz"] = 1500;
  gpu1["perf.pstate"] = "P2";
  gpu1["temperature.gpu_c"] = 32;
  gpu1["mig.pending"] = "enabled";
  gpu1["compute_mode"] = "exclusive_process";
  gpu1["pcie.width"] = 8;

  for (size_t g = 0; g < 2; g++) {
    const auto& want = g == 0 ? gpu0 : gpu1;
    SCOPED_TRACE("gpu " + std::to_string(g));
    EXPECT_EQ(gpus[g].source, "nvml");
    EXPECT_TRUE(gpus[g].events.empty());
    std::set<std::string> want_keys;
    for (const auto& [name, v] : want) {
      want_keys.insert(name);
      auto it = gpus[g].values.find(name);
      ASSERT_NE(it, gpus[g].values.end()) << name << " not sampled";
      EXPECT_EQ(it->second, v) << name;
      EXPECT_TRUE(field_spec(name)) << name << " has no spec in fields.cpp";
    }
    EXPECT_EQ(keys(gpus[g]), want_keys);
  }
}

TEST_F(WatchNvml, PciAddressInSysfsFormAndUuid) {
  auto src = open();
  ASSERT_TRUE(src);
  auto gpus = src->sample();
  ASSERT_EQ(gpus.size(), 2u);
  // NVML says "00000000:1A:00.0"; sysfs and the device table say this.
  EXPECT_EQ(gpus[0].pci, "0000:1a:00.0");
  EXPECT_EQ(gpus[1].pci, "0000:2a:00.0");
  EXPECT_EQ(gpus[0].uuid, "GPU-5f3c1a00-6e1a-4b7d-9c2e-8a41d07fb200");
  EXPECT_EQ(gpus[1].uuid, "GPU-5f3c1a01-6e1a-4b7d-9c2e-8a41d07fb201");
}

TEST_F(WatchNvml, GpuCountFollowsTheLibraryAndShutdownIsCalled) {
  {
    auto first = open();
    ASSERT_TRUE(first);
    ASSERT_EQ(first->sample().size(), 2u);
  }
  // Read at nvmlInit_v2 when NVML is not initialized: only a source that
  // shut NVML down lets the next one see 8.
  ::setenv("FAKE_NVML_GPUS", "8", 1);
  auto src = open();
  ASSERT_TRUE(src);
  auto gpus = src->sample();
  ASSERT_EQ(gpus.size(), 8u);
  EXPECT_EQ(gpus[3].pci, "0000:5d:00.0");
  EXPECT_EQ(gpus[7].pci, "0000:db:00.0");
  std::set<std::string> uuids;
  for (const auto& g : gpus) uuids.insert(g.uuid);
  EXPECT_EQ(uuids.size(), 8u);
}

TEST_F(WatchNvml, XidArrivesAsAnEventAndIsCounted) {
  auto src = open();
  ASSERT_TRUE(src);
  (void)src->sample();
  ASSERT_EQ(fake_.xid(1, 79), 1) << "the source registered no event set for XIDs on GPU 1";
  auto gpus = src->sample();
  ASSERT_EQ(gpus.size(), 2u);
  EXPECT_TRUE(gpus[0].events.empty());
  EXPECT_EQ(gpus[0].values.at("xid.count"), 0);
  ASSERT_EQ(gpus[1].events.size(), 1u);
  EXPECT_EQ(gpus[1].events[0], Json({{"event", "xid"}, {"xid", 79}}));
  EXPECT_EQ(gpus[1].values.at("xid.count"), 1);

  // Delivered once; the count keeps running.
  gpus = src->sample();
  EXPECT_TRUE(gpus[1].events.empty());
  EXPECT_EQ(gpus[1].values.at("xid.count"), 1);
  ASSERT_EQ(fake_.xid(1, 48), 1);
  ASSERT_EQ(fake_.xid(1, 63), 1);
  ASSERT_EQ(fake_.xid(0, 94), 1);
  gpus = src->sample();
  ASSERT_EQ(gpus[1].events.size(), 2u);
  EXPECT_EQ(gpus[1].events[0].at("xid"), 48);
  EXPECT_EQ(gpus[1].events[1].at("xid"), 63);
  EXPECT_EQ(gpus[1].values.at("xid.count"), 3);
  ASSERT_EQ(gpus[0].events.size(), 1u);
  EXPECT_EQ(gpus[0].events[0].at("xid"), 94);
  EXPECT_EQ(gpus[0].values.at("xid.count"), 1);
}

TEST_F(WatchNvml, LostGpuIsReported) {
  auto src = open();
  ASSERT_TRUE(src);
  EXPECT_EQ(src->sample()[0].values.at("nvml.gpu_lost"), false);
  ASSERT_EQ(fake_.set(0, "lost", 1), 0);
  auto gpus = src->sample();
  ASSERT_EQ(gpus.size(), 2u);
  EXPECT_EQ(gpus[0].pci, "0000:1a:00.0");  // still named, from what was read at open
  EXPECT_EQ(gpus[0].values.at("nvml.gpu_lost"), true);
  EXPECT_FALSE(gpus[0].values.contains("power.limit_mw"));
  EXPECT_FALSE(gpus[0].values.contains("clocks.event_reasons"));
  EXPECT_EQ(gpus[1].values.at("nvml.gpu_lost"), false);
  EXPECT_EQ(gpus[1].values.at("power.limit_mw"), 700000);
}

TEST_F(WatchNvml, ClockEventReasonsAreNamed) {
  auto src = open();
  ASSERT_TRUE(src);
  auto reasons = [&](unsigned long long mask) {
    EXPECT_EQ(fake_.set(1, "clocks.event_reasons", mask), 0);
    return src->sample().at(1).values.at("clocks.event_reasons");
  };
  EXPECT_EQ(reasons(0x40), Json::array({"hw_thermal_slowdown"}));
  EXPECT_EQ(reasons(0x4), Json::array({"sw_power_cap"}));
  EXPECT_EQ(reasons(0x0), Json::array());
  EXPECT_EQ(reasons(0x88), Json::array({"hw_slowdown", "hw_power_brake_slowdown"}));
  EXPECT_EQ(reasons(0x10005), Json::array({"gpu_idle", "sw_power_cap", "unknown_0x10000"}));
}

TEST_F(WatchNvml, UnsupportedQueryLeavesItsFieldOut) {
  // As on GPUs without application clocks: the field is absent, not zero, and
  // the GPU is not taken for lost.
  ASSERT_EQ(fake_.set_supported(0, "clocks.applications_sm_mhz", 0), 0);
  ASSERT_EQ(fake_.set_supported(0, "ecc.current", 0), 0);
  auto src = open();
  ASSERT_TRUE(src);
  auto gpus = src->sample();
  ASSERT_EQ(gpus.size(), 2u);
  EXPECT_FALSE(gpus[0].values.contains("clocks.applications_sm_mhz"));
  EXPECT_FALSE(gpus[0].values.contains("ecc.current"));
  EXPECT_FALSE(gpus[0].values.contains("ecc.pending"));  // one query reads both
  EXPECT_EQ(gpus[0].values.at("clocks.applications_mem_mhz"), 3201);
  EXPECT_EQ(gpus[0].values.at("nvml.gpu_lost"), false);
  EXPECT_EQ(gpus[1].values.at("clocks.applications_sm_mhz"), 1980);
  EXPECT_EQ(gpus[1].values.at("ecc.current"), "enabled");
}

TEST_F(WatchNvml, MissingLibrarySaysNoDriver) {
  const std::string path = "/nonexistent/gpugate-test/libnvidia-ml.so.1";
  auto src = open_nvml(path);
  ASSERT_FALSE(src.ok());
  EXPECT_NE(src.error().message.find(path), std::string::npos) << src.error().message;
  EXPECT_NE(src.error().message.find("no NVIDIA driver"), std::string::npos) << src.error().message;
}

TEST_F(WatchNvml, LibraryWithoutNvmlIsRefused) {
  auto src = open_nvml("libm.so.6");
  ASSERT_FALSE(src.ok());
  EXPECT_NE(src.error().message.find("libm.so.6"), std::string::npos) << src.error().message;
  EXPECT_NE(src.error().message.find("lacks nvmlInit_v2"), std::string::npos) << src.error().message;
}

TEST_F(WatchNvml, FailingInitNamesNvmlInit) {
  ::setenv("FAKE_NVML_FAIL_INIT", "1", 1);
  auto src = open_nvml(FAKE_NVML_PATH);
  ASSERT_FALSE(src.ok());
  EXPECT_NE(src.error().message.find("nvmlInit_v2"), std::string::npos) << src.error().message;
  EXPECT_NE(src.error().message.find("Not Supported"), std::string::npos) << src.error().message;
  // The failed open left nothing initialized: the next one works.
  ::unsetenv("FAKE_NVML_FAIL_INIT");
  auto ok = open();
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->sample().size(), 2u);
}

}  // namespace
