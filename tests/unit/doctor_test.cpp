// gpugate doctor on fake hosts: a healthy one, then each thing missing in
// turn, each with its status and the fix it names.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "gpugate/doctor.hpp"
#include "tempdir.hpp"

using namespace gpugate::doctor;
namespace fs = std::filesystem;

namespace {

constexpr const char* kRelease = "6.1.0-57-amd64";

class Doctor : public ::testing::Test {
 protected:
  void SetUp() override {
    write("sys/kernel/security/lsm", "lockdown,capability,landlock,bpf");
    write("sys/kernel/security/lockdown", "[none] integrity confidentiality");
    write("sys/kernel/btf/vmlinux", "BTF");
    write("proc/mounts", "bpf /sys/fs/bpf bpf rw,relatime 0 0\ncgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n");
    write("proc/cmdline", "BOOT_IMAGE=/vmlinuz root=/dev/vda1 quiet");
    write(std::string("lib/modules/") + kRelease + "/updates/dkms/gpugate.ko", "ELF");
    write("sys/module/gpugate/refcnt", "1");
    write("dev/gpugate", "");
    write("sys/module/nvidia/refcnt", "1");
    write("proc/kallsyms",
          "ffffffffc1000000 t nvidia_unlocked_ioctl\t[nvidia]\nffffffffc1000100 T rm_ioctl\t[nvidia]\n"
          "ffffffffc1000200 T os_memcpy_from_user\t[nvidia]\n");
    write(std::string("boot/config-") + kRelease, "CONFIG_BPF_LSM=y\nCONFIG_IO_STRICT_DEVMEM=y\nCONFIG_MODULES=y\n");
    write("etc/group", "root:x:0:\ngpugate:x:998:alice\n");
    roots.proc = p("proc");
    roots.sys = p("sys");
    roots.boot = p("boot");
    roots.lib_modules = p("lib/modules");
    roots.etc = p("etc");
    roots.release = kRelease;
    roots.clock_synced = true;
    roots.root = true;
    options.kmod_device = p("dev/gpugate");
  }
  std::string p(const std::string& rel) const { return (dir.path / rel).string(); }
  void write(const std::string& rel, const std::string& text) const {
    fs::create_directories(fs::path(p(rel)).parent_path());
    std::ofstream(p(rel)) << text;
  }
  [[nodiscard]] Check check(const std::string& name) const {
    for (auto& c : run_checks(roots, options))
      if (c.name == name) return c;
    return {};
  }
  gpugate::test::TempDir dir;
  Roots roots;
  Options options;
};

}  // namespace

TEST_F(Doctor, AHealthyHostPassesEveryCheck) {
  auto checks = run_checks(roots, options);
  ASSERT_EQ(checks.size(), 12u);
  for (const auto& c : checks) {
    EXPECT_EQ(c.status, "ok") << c.name << ": " << c.detail;
    EXPECT_TRUE(c.fix.empty()) << c.name;
  }
  EXPECT_EQ(exit_status(checks), 0);
  auto j = checks_json(checks);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["checks"][1]["check"], "lsm");
  EXPECT_TRUE(j["checks"][1]["fix"].is_null());
  EXPECT_NE(checks_text(checks).find("ok   btf"), std::string::npos);
}

TEST_F(Doctor, BpfMissingFromTheLsmListFailsAndSaysHowToAddIt) {
  write("sys/kernel/security/lsm", "lockdown,capability,landlock");
  auto c = check("lsm");
  EXPECT_EQ(c.status, "fail");
  EXPECT_NE(c.fix.find("lsm=lockdown,capability,landlock,bpf"), std::string::npos) << c.fix;
  EXPECT_EQ(exit_status(run_checks(roots, options)), 1);
  EXPECT_NE(checks_text(run_checks(roots, options)).find("FAIL lsm"), std::string::npos);
}

TEST_F(Doctor, WithoutSecurityfsTheLsmListIsTheCommandLinesOrAGuess) {
  fs::remove(p("sys/kernel/security/lsm"));
  fs::remove(p("sys/kernel/security/lockdown"));
  write(std::string("boot/config-") + kRelease,
        "CONFIG_BPF_LSM=y\nCONFIG_LSM=\"lockdown,bpf\"\nCONFIG_SECURITY_LOCKDOWN_LSM=y\n");
  auto guess = check("lsm");
  EXPECT_EQ(guess.status, "warn");
  EXPECT_NE(guess.detail.find("with bpf"), std::string::npos) << guess.detail;
  EXPECT_NE(guess.fix.find("mount -t securityfs"), std::string::npos);
  EXPECT_EQ(check("lockdown").status, "warn");
  write("proc/cmdline", "quiet lsm=lockdown,yama lockdown=integrity");
  EXPECT_EQ(check("lsm").status, "fail") << "lsm= decides over the build's list";
  EXPECT_EQ(check("lockdown").status, "warn");
  EXPECT_NE(check("lockdown").detail.find("integrity"), std::string::npos);
}

TEST_F(Doctor, NoBpfLsmInTheBuildNoBtfAndConfidentialityFail) {
  write(std::string("boot/config-") + kRelease, "# CONFIG_BPF_LSM is not set\nCONFIG_IO_STRICT_DEVMEM=y\n");
  EXPECT_EQ(check("lsm").status, "fail");
  EXPECT_NE(check("lsm").detail.find("CONFIG_BPF_LSM"), std::string::npos);
  fs::remove(p("sys/kernel/btf/vmlinux"));
  EXPECT_EQ(check("btf").status, "fail");
  write("sys/kernel/security/lockdown", "none integrity [confidentiality]");
  EXPECT_EQ(check("lockdown").status, "fail");
  write("sys/kernel/security/lockdown", "none [integrity] confidentiality");
  EXPECT_EQ(check("lockdown").status, "warn");
  EXPECT_NE(check("lockdown").fix.find("mokutil"), std::string::npos);
}

TEST_F(Doctor, TheModuleNotBuiltNotLoadedOrImpossibleIsAWarningWithItsFix) {
  fs::remove(p(std::string("lib/modules/") + kRelease + "/updates/dkms/gpugate.ko"));
  auto built = check("kmod-built");
  EXPECT_EQ(built.status, "warn");
  EXPECT_NE(built.fix.find(std::string("dkms autoinstall -k ") + kRelease), std::string::npos);
  write(std::string("lib/modules/") + kRelease + "/extra/gpugate.ko.xz", "xz");
  EXPECT_EQ(check("kmod-built").status, "ok");
  fs::remove(p("dev/gpugate"));
  EXPECT_EQ(check("kmod-loaded").status, "warn");
  fs::remove_all(p("sys/module/gpugate"));
  EXPECT_NE(check("kmod-loaded").fix.find("modprobe gpugate"), std::string::npos);
  write("proc/cmdline", "quiet nomodule");
  EXPECT_NE(check("kmod-built").detail.find("loads no modules"), std::string::npos);
}

TEST_F(Doctor, ADriverLackingAHookedFunctionFailsNamingIt) {
  write("proc/kallsyms", "ffffffffc1000000 t nvidia_unlocked_ioctl\t[nvidia]\n");
  auto c = check("driver-symbols");
  EXPECT_EQ(c.status, "fail");
  EXPECT_NE(c.detail.find("nvidia lacks rm_ioctl, os_memcpy_from_user"), std::string::npos) << c.detail;
  fs::remove_all(p("sys/module/nvidia"));
  EXPECT_EQ(check("driver-symbols").status, "ok");
  write("sys/module/drm/refcnt", "1");
  EXPECT_NE(check("driver-symbols").detail.find("drm lacks drm_ioctl"), std::string::npos);
}

TEST_F(Doctor, DevmemGroupCgroupAndClock) {
  write(std::string("boot/config-") + kRelease, "CONFIG_BPF_LSM=y\n# CONFIG_IO_STRICT_DEVMEM is not set\n");
  EXPECT_EQ(check("devmem").status, "warn");
  EXPECT_NE(check("devmem").fix.find("iomem=strict"), std::string::npos);
  write("proc/cmdline", "quiet iomem=strict");
  EXPECT_EQ(check("devmem").status, "ok");
  fs::remove(p(std::string("boot/config-") + kRelease));
  write("proc/cmdline", "quiet");
  EXPECT_NE(check("devmem").detail.find("config is not found"), std::string::npos);

  options.control_group = "gpuops";
  EXPECT_EQ(check("control-group").status, "warn");
  EXPECT_NE(check("control-group").fix.find("groupadd --system gpuops"), std::string::npos);
  write("proc/mounts", "bpf /sys/fs/bpf bpf rw 0 0\ntmpfs /sys/fs/cgroup tmpfs rw 0 0\n");
  EXPECT_EQ(check("cgroup2").status, "fail");
  write("proc/mounts", "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n");
  EXPECT_EQ(check("bpffs").status, "warn");
  roots.clock_synced = false;
  EXPECT_EQ(check("clock").status, "warn");
  EXPECT_NE(check("clock").fix.find("timesyncd"), std::string::npos);
  roots.root = false;
  EXPECT_EQ(check("root").status, "warn");
}
