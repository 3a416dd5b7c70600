// The gate on a GPU's sysfs knobs, on a real kernel: the guest's
// display adapter (QEMU's standard VGA at 00:02.0, tools/vmtest's -vga std)
// is found by discovery, its knobs go into the gate's map by inode, and
// writes that would power it off or remove it are refused before the
// kernel's store function runs, by every path a root attacker has: write,
// writev, sendfile, a 32-bit caller, a value the gate cannot read, a second
// sysfs mount. A grant for the GPU lets exactly its uses through. Run by the
// vm suites "gpusim" (the BPF LSM), "kmod-nolsm" (gpugate.ko alone: the
// kernels without the BPF LSM) and "kmod" (both; the module decides).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "attack_pages.hpp"
#include "gpugate/bpf_engine.hpp"
#include "gpugate/decode.hpp"
#include "gpugate/gate.hpp"
#include "gpugate/pci.hpp"
#include "gpusim_client.hpp"
#include "ia32.hpp"
#include "ledger_read.hpp"
#include "process.hpp"
#include "tempdir.hpp"
#include "test_gate.hpp"

extern "C" {
#include "gg_table_types.h"
}

using namespace gpugate;
using namespace gpugate::test;

namespace {

const std::string kBin = GG_BIN_DIR;
const std::string kVga = "0000:00:02.0";
const std::string kVgaDir = "/sys/bus/pci/devices/" + kVga;
const std::string kHostBridgeControl = "/sys/bus/pci/devices/0000:00:00.0/power/control";
// The std VGA has no PM capability; the gate is told it has one here so
// that a write to its PMCSR offset exercises the config rule on the real
// kernel path (a write there would change nothing on this device).
constexpr uint16_t kPretendPmCap = 0x40;

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

// write(2) of value to path: the bytes written, or -errno.
long write_knob(const std::string& path, const std::string& value) {
  int fd = open(path.c_str(), O_WRONLY);
  if (fd < 0) return -errno;
  long n = write(fd, value.data(), value.size());
  long r = n < 0 ? -errno : n;
  close(fd);
  return r;
}

std::string config_bytes() {
  int fd = open((kVgaDir + "/config").c_str(), O_RDONLY);
  char buf[64] = {};
  ssize_t n = fd < 0 ? -1 : pread(fd, buf, sizeof(buf), 0);
  if (fd >= 0) close(fd);
  return n == sizeof(buf) ? std::string(buf, sizeof(buf)) : std::string();
}

// The knob gate of this venue (test_gate.hpp): the BPF LSM (suite gpusim),
// gpugate.ko alone (kmod-nolsm) or both (kmod: the module decides the knobs,
// BPF leaves them to it). The module decides at the file's own write and
// mmap functions, on the kernel's length, position and (sysfs) bytes.
struct KnobGate {
  KnobGate() : gate(default_policy(GG_MODE_ENFORCE), knob_devices(vga), GG_POLF_KMOD_KNOB) {
    error = gate.error;
    for (const auto& hook : gate.hooks) {
      if (hook.name == write_hook_name() && hook.attached) attached = true;
      hooks += hook.name + (hook.attached ? " attached: " : " NOT attached: ") + hook.detail + "\n";
    }
    if (gate_kind() == GateKind::kLsm && !attached) {  // the verifier's reasons, on the console
      gate.bpf.reset();
      BpfEngineOptions verbose;
      verbose.verbose = true;
      BpfEngine again(verbose);
      (void)again.start(gate.devices);
      return;
    }
    Collector stale;
    stale.any_pid = true;
    gate.drain_into(stale);
  }
  ~KnobGate() {
    // the module keeps its last tables: no knobs for the tests after this one
    static const DeviceTable kNone;
    if (gate.kmod) (void)gate.kmod->set_devices(kNone);
  }
  // The GPUs with their knobs; the std VGA's config with a PM capability it lacks.
  static DeviceTable knob_devices(uint32_t& vga) {
    DeviceTable devices = discover_devices_and_gpus();
    auto gpus = devices.gpus();
    for (auto& g : gpus)
      if (g.address == kVga) {
        vga = g.pci_dev();
        for (auto& k : g.knobs)
          if (k.rule == GG_KNOB_PCI_CONFIG && !k.bridge) k.pm_cap = kPretendPmCap;  // sysfs's and procfs's
      }
    devices.set_gpus(std::move(gpus));
    return devices;
  }
  std::vector<gg_knob_event> records() {
    Collector c;
    gate.drain_into(c);
    return c.knobs;
  }
  Result<uint32_t> install_grant(const Grant& grant) { return gate.install_grant(grant); }
  static std::string write_hook_name() { return module_gates() ? "kmod/sysfs_kf_write" : "lsm/file_permission"; }
  uint32_t vga = 0;  // before gate: knob_devices fills it
  InProcessGate gate;
  const DeviceTable& devices = gate.devices;
  bool attached = false;
  std::string error, hooks;
};

// What the records say under this venue's gate: the module reads no
// registers, it has the kernel's own length and position (GG_WC_KERNEL).
unsigned call_of(unsigned bpf_call) { return module_gates() ? static_cast<unsigned>(GG_WC_KERNEL) : bpf_call; }
unsigned write_hook() {
  return module_gates() ? static_cast<unsigned>(GG_HOOK_KMOD_KNOB_WRITE)
                        : static_cast<unsigned>(GG_HOOK_LSM_FILE_WRITE);
}
unsigned map_hook() {
  return module_gates() ? static_cast<unsigned>(GG_HOOK_KMOD_KNOB_MMAP) : static_cast<unsigned>(GG_HOOK_LSM_MMAP_FILE);
}

#define ASSERT_GATE(g)                                                                           \
  ASSERT_TRUE((g).error.empty()) << (g).error;                                                   \
  ASSERT_TRUE((g).attached) << KnobGate::write_hook_name() << " did not attach:\n" << (g).hooks; \
  ASSERT_NE((g).vga, 0u) << "discovery found no GPU at " << kVga << " (is -vga std set?)"

// The first record of this class and verdict by this call (the module's:
// any), on a knob of this rule (0: any).
const gg_knob_event* find_record(const std::vector<gg_knob_event>& recs, unsigned cls, unsigned verdict,
                                 unsigned call = GG_WC_WRITE, unsigned rule = 0) {
  for (const auto& r : recs)
    if (r.dec.cls == cls && r.verdict == verdict && r.call == call_of(call) && (!rule || r.knob.rule == rule))
      return &r;
  return nullptr;
}

}  // namespace

TEST(Knobs, UnsignedWritesThatPowerOffOrRemoveTheGpuAreDeniedAndChangeNothing) {
  KnobGate g;
  ASSERT_GATE(g);
  const std::string control = kVgaDir + "/power/control";
  ASSERT_EQ(read_text(control), "on");
  EXPECT_EQ(write_knob(control, "auto\n"), -EPERM);
  EXPECT_EQ(write_knob(control, "auto"), -EPERM);
  EXPECT_EQ(read_text(control), "on") << "runtime PM stayed off";
  EXPECT_EQ(write_knob(control, "on\n"), 3) << "too short to say auto: harmless, allowed";

  EXPECT_EQ(write_knob(kVgaDir + "/remove", "1\n"), -EPERM);
  struct stat st {};
  EXPECT_EQ(stat(kVgaDir.c_str(), &st), 0) << "the GPU is still on the bus";

  // Config space: a write touching PMCSR is refused, one elsewhere and any
  // read are not.
  std::string before = config_bytes();
  ASSERT_EQ(before.size(), 64u);
  int cfg = open((kVgaDir + "/config").c_str(), O_RDWR);
  ASSERT_GE(cfg, 0) << std::strerror(errno);
  uint16_t d3hot = 3;
  errno = 0;
  EXPECT_EQ(pwrite(cfg, &d3hot, 2, kPretendPmCap + 4), -1);
  EXPECT_EQ(errno, EPERM);
  uint8_t line = static_cast<uint8_t>(before[0x3c]);  // Interrupt Line, written back unchanged
  EXPECT_EQ(pwrite(cfg, &line, 1, 0x3c), 1) << std::strerror(errno);
  close(cfg);
  // The same register through procfs's legacy config file (setpci's other route).
  int proc_cfg = open("/proc/bus/pci/00/02.0", O_RDWR);
  ASSERT_GE(proc_cfg, 0) << std::strerror(errno);
  errno = 0;
  EXPECT_EQ(pwrite(proc_cfg, &d3hot, 2, kPretendPmCap + 4), -1);
  EXPECT_EQ(errno, EPERM);
  close(proc_cfg);
  EXPECT_EQ(config_bytes(), before);

  auto recs = g.records();
  const auto* off = find_record(recs, GG_CLASS_POWER_OFF, GG_VERDICT_DENY, GG_WC_WRITE, GG_KNOB_RUNTIME_PM);
  ASSERT_TRUE(off) << recs.size() << " knob records";
  EXPECT_EQ(off->knob.gpu_dev, g.vga);
  EXPECT_EQ(off->hook, write_hook());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(off->value), off->value_len), "auto\n");
  const auto* pmcsr = find_record(recs, GG_CLASS_POWER_OFF, GG_VERDICT_DENY, GG_WC_PWRITE, GG_KNOB_PCI_CONFIG);
  ASSERT_TRUE(pmcsr);
  EXPECT_EQ(pmcsr->offset, kPretendPmCap + 4u);
  EXPECT_EQ(pmcsr->length, 2u);
  EXPECT_TRUE(find_record(recs, GG_CLASS_OTHER, GG_VERDICT_ALLOW, GG_WC_PWRITE, GG_KNOB_PCI_CONFIG))
      << "the harmless config write";
  EXPECT_TRUE(find_record(recs, GG_CLASS_OTHER, GG_VERDICT_ALLOW, GG_WC_WRITE, GG_KNOB_RUNTIME_PM))
      << "power/control on";
  int denied = 0;
  for (const auto& r : recs) denied += r.verdict == GG_VERDICT_DENY;
  EXPECT_EQ(denied, 5) << "auto twice, remove, PMCSR through sysfs and through procfs";
}

TEST(Knobs, EveryOtherPathToTheSameWriteIsDeniedToo) {
  KnobGate g;
  ASSERT_GATE(g);
  const std::string control = kVgaDir + "/power/control";
  int fd = open(control.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  // Four bytes that say "on" now could say "auto" when the kernel copies them.
  EXPECT_EQ(write(fd, "on\0\0", 4), -1);
  EXPECT_EQ(errno, EPERM);
  // writev: the BPF gate cannot trust lengths in user memory, so even "on"
  // is refused; the module sees the kernel's copy, two bytes, and lets it by.
  char on[] = "on", autov[] = "auto";
  iovec v1{on, 2}, v2{autov, 4};
  if (module_gates()) {
    EXPECT_EQ(writev(fd, &v1, 1), 2) << std::strerror(errno);
  } else {
    EXPECT_EQ(writev(fd, &v1, 1), -1);
    EXPECT_EQ(errno, EPERM);
  }
  EXPECT_EQ(writev(fd, &v2, 1), -1);
  EXPECT_EQ(errno, EPERM);
  // sendfile from a file saying "auto": not the caller's buffer at all.
  char tmpl[] = "/tmp/gg-knob-XXXXXX";
  int src = mkstemp(tmpl);
  ASSERT_GE(src, 0);
  ASSERT_EQ(write(src, "auto", 4), 4);
  off_t from = 0;
  EXPECT_EQ(sendfile(fd, src, &from, 4), -1);
  EXPECT_EQ(errno, EPERM);
  close(src);
  unlink(tmpl);
  // "auto" in a page the gate cannot read without a fault: the class never
  // depended on the bytes, so it is denied all the same.
  UntouchedPage page;
  ASSERT_TRUE(page.addr && page.put(0, "auto", 4));
  EXPECT_EQ(write(fd, page.addr, 4), -1);
  EXPECT_EQ(errno, EPERM);
  close(fd);

  // A second sysfs (a new network namespace mounts its own superblock, with
  // the same inode numbers): the same knob, another path and st_dev.
  pid_t child = fork();
  if (child == 0) {
    if (unshare(CLONE_NEWNS | CLONE_NEWNET) != 0) _exit(10);
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) _exit(11);
    mkdir("/tmp/gg-sys2", 0700);
    if (mount("sysfs", "/tmp/gg-sys2", "sysfs", 0, nullptr) != 0) _exit(12);
    struct stat a {
    }, b{};
    std::string other = "/tmp/gg-sys2/bus/pci/devices/" + kVga + "/power/control";
    if (stat(control.c_str(), &a) != 0 || stat(other.c_str(), &b) != 0) _exit(13);
    if (a.st_dev == b.st_dev) _exit(14);  // not a second superblock: the attack was not staged
    if (a.st_ino != b.st_ino) _exit(15);
    _exit(write_knob(other, "auto") == -EPERM ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: the write through a second sysfs went through; 10-15: not staged";

  // A 32-bit caller (int 0x80 write).
  auto ia32 = ia32_syscalls();
  if (ia32 == Ia32::kAvailable) {
    uint8_t* low = low_page();
    ASSERT_TRUE(low);
    std::memcpy(low, "auto", 4);
    int fd32 = open(control.c_str(), O_WRONLY);
    long r;
    asm volatile("int $0x80"
                 : "=a"(r)
                 : "a"(4 /* __NR_write, i386 */), "b"(fd32), "c"(low32(low)), "d"(4)
                 : "memory", "r8", "r9", "r10", "r11");
    EXPECT_EQ(r, -EPERM) << "a 32-bit write of auto";
    std::memcpy(low, "on", 2);
    asm volatile("int $0x80"
                 : "=a"(r)
                 : "a"(4 /* __NR_write, i386 */), "b"(fd32), "c"(low32(low)), "d"(2)
                 : "memory", "r8", "r9", "r10", "r11");
    EXPECT_EQ(r, 2) << "a 32-bit write of on";
    close(fd32);
  } else {
    EXPECT_FALSE(ia32_required()) << "this venue must run 32-bit callers";
  }
  EXPECT_EQ(read_text(control), "on");

  auto recs = g.records();
  EXPECT_TRUE(find_record(recs, GG_CLASS_POWER_OFF, GG_VERDICT_DENY, GG_WC_WRITEV));
  const auto* sent = find_record(recs, GG_CLASS_POWER_OFF, GG_VERDICT_DENY, GG_WC_UNKNOWN);
  ASSERT_TRUE(sent) << "the sendfile";
  // BPF: undecided (no length in registers); the module: decided by class on the kernel's copy
  EXPECT_EQ(sent->reason, module_gates() ? static_cast<unsigned>(GG_WHY_CLASS) : static_cast<unsigned>(GG_WHY_CAPTURE));
  bool unreadable = false, second_mount = false, compat = false;
  int denied_auto = 0, allowed_on = 0;
  for (const auto& r : recs) {
    unreadable |= (r.capture_flags & GG_CAP_ARG_FAULT) && r.verdict == GG_VERDICT_DENY;
    second_mount |= r.hdr.pid == static_cast<uint32_t>(child) && r.verdict == GG_VERDICT_DENY;
    compat |= r.compat && r.verdict == GG_VERDICT_DENY;
    std::string value(reinterpret_cast<const char*>(r.value), r.value_len);
    denied_auto += value == "auto" && r.verdict == GG_VERDICT_DENY;
    allowed_on += value == "on" && r.verdict == GG_VERDICT_ALLOW;
  }
  if (module_gates()) {
    // the kernel faulted the page in for its copy: the module decided on "auto" itself
    EXPECT_FALSE(unreadable);
    EXPECT_GE(denied_auto, 4) << "writev, sendfile, the untouched page, the 32-bit write";
    EXPECT_GE(allowed_on, 1) << "the writev of on";
  } else {
    EXPECT_TRUE(unreadable);
  }
  EXPECT_TRUE(second_mount);
  if (ia32 == Ia32::kAvailable) EXPECT_TRUE(compat);
}

TEST(Knobs, AGrantForTheGpuAllowsExactlyItsUsesAndAnotherDevicesKnobIsUntouched) {
  KnobGate g;
  ASSERT_GATE(g);
  const std::string control = kVgaDir + "/power/control";
  uint64_t now = boot_ns(), minute = 60'000'000'000ull;
  Grant limit{{g.vga}, GG_CLASS_POWER_LIMIT, now, now + minute, 5};
  ASSERT_TRUE(g.install_grant(limit).ok());
  EXPECT_EQ(write_knob(control, "auto"), -EPERM) << "a power.limit grant is not a power.off grant";
  Grant once{{g.vga}, GG_CLASS_POWER_OFF, now, now + minute, 1};
  auto id = g.install_grant(once);
  ASSERT_TRUE(id.ok()) << id.error().message;
  EXPECT_EQ(write_knob(control, "auto"), 4) << "granted";
  EXPECT_EQ(read_text(control), "auto");
  EXPECT_EQ(write_knob(control, "on"), 2);
  EXPECT_EQ(write_knob(control, "auto"), -EPERM) << "its one use is spent";
  EXPECT_EQ(read_text(control), "on");

  // A function that is not a GPU: no knob of the gate, no record.
  ASSERT_EQ(read_text(kHostBridgeControl), "on");
  EXPECT_EQ(write_knob(kHostBridgeControl, "auto"), 4);
  EXPECT_EQ(write_knob(kHostBridgeControl, "on"), 2);

  auto recs = g.records();
  int granted = 0, denied = 0;
  for (const auto& r : recs) {
    EXPECT_EQ(r.knob.gpu_dev, g.vga) << "only the GPU's knobs are recorded";
    if (r.verdict == GG_VERDICT_ALLOW && r.grant_id == *id) granted++;
    if (r.verdict == GG_VERDICT_DENY) denied++;
  }
  EXPECT_EQ(granted, 1);
  EXPECT_EQ(denied, 2);
}

TEST(Knobs, MappingsOfTheGpusBarsAreDeniedUnlessGrantedThroughSysfsOrDevMem) {
  KnobGate g;
  ASSERT_GATE(g);
  const PciGpu* vga = g.devices.find_gpu(g.vga);
  ASSERT_TRUE(vga);
  const PciGpu::Bar* mmio = nullptr;
  for (const auto& b : vga->bars)
    if (b.index == 2 && b.memory) mmio = &b;
  ASSERT_TRUE(mmio) << "the std VGA's BAR 2 (its registers) is missing from discovery";

  auto map_file = [](const std::string& path, int prot, off_t off = 0) {
    int fd = open(path.c_str(), (prot & PROT_WRITE) ? O_RDWR : O_RDONLY);
    if (fd < 0) return -errno;
    void* p = mmap(nullptr, 4096, prot, MAP_SHARED, fd, off);
    int r = p == MAP_FAILED ? -errno : 0;
    if (p != MAP_FAILED) munmap(p, 4096);
    close(fd);
    return r;
  };
  EXPECT_EQ(map_file(kVgaDir + "/resource2", PROT_READ | PROT_WRITE), -EPERM) << "the registers";
  EXPECT_EQ(map_file(kVgaDir + "/resource0", PROT_READ), -EPERM) << "the framebuffer, read-only";

  // /dev/mem over the BAR, through a node of our own (the key is 1:1, not a path).
  const std::string mem = "/tmp/gg-mem";
  unlink(mem.c_str());
  ASSERT_EQ(mknod(mem.c_str(), S_IFCHR | 0600, makedev(1, 1)), 0) << std::strerror(errno);
  EXPECT_EQ(map_file(mem, PROT_READ | PROT_WRITE, static_cast<off_t>(mmio->start)), -EPERM);
  (void)map_file(mem, PROT_READ, 0);  // low memory, no GPU's: not this gate's (the kernel may refuse it)

  uint64_t now = boot_ns(), minute = 60'000'000'000ull;
  auto id = g.install_grant({{g.vga}, GG_CLASS_BAR_MAP, now, now + minute, 1});
  ASSERT_TRUE(id.ok()) << id.error().message;
  EXPECT_EQ(map_file(kVgaDir + "/resource2", PROT_READ | PROT_WRITE), 0) << "granted once";
  EXPECT_EQ(map_file(kVgaDir + "/resource2", PROT_READ | PROT_WRITE), -EPERM) << "spent";
  unlink(mem.c_str());

  auto recs = g.records();
  int denied = 0, granted = 0, devmem = 0;
  for (const auto& r : recs) {
    if (r.op != GG_KOP_MMAP) continue;
    EXPECT_EQ(r.dec.cls, GG_CLASS_BAR_MAP);
    EXPECT_EQ(r.call, call_of(GG_WC_MMAP));
    EXPECT_EQ(r.length, 4096u);
    EXPECT_EQ(r.knob.gpu_dev, g.vga);
    EXPECT_EQ(r.hook, map_hook());
    if (r.verdict == GG_VERDICT_DENY) denied++;
    if (r.verdict == GG_VERDICT_ALLOW && r.grant_id == *id) granted++;
    if (r.knob.flags & GG_KNOBF_DEVMEM) {
      devmem++;
      EXPECT_EQ(r.bar, 3u) << "BAR 2, + 1";
      EXPECT_EQ(r.offset, mmio->start);
    }
  }
  EXPECT_EQ(denied, 4) << "resource2, resource0, /dev/mem over BAR 2, the spent grant";
  EXPECT_EQ(granted, 1);
  EXPECT_EQ(devmem, 1) << "the low-memory mapping is no GPU's";
}

// Every knob discovery found on the std VGA whose class the default policy
// gates, written without a grant: each refused, its value read back
// unchanged, the GPU still on the bus. (Config space has its own test: a
// write elsewhere than PMCSR is harmless by design.)
TEST(Knobs, EveryGatedKnobOfTheGpuRefusesAnUnsignedWrite) {
  KnobGate g;
  ASSERT_GATE(g);
  const PciGpu* vga = g.devices.find_gpu(g.vga);
  ASSERT_TRUE(vga);
  int tried = 0;
  std::string names;
  for (const auto& k : vga->knobs) {
    if (!k.writable || !class_gated_by_default(k.cls) || k.rule == GG_KNOB_PCI_CONFIG || !k.fs_magic) continue;
    std::string value = k.rule == GG_KNOB_RUNTIME_PM ? "auto" : k.rule == GG_KNOB_NUMBER ? "1000000" : "1";
    std::string before = read_text(k.path);
    EXPECT_EQ(write_knob(k.path, value), -EPERM) << k.name << " (" << class_name(k.cls) << ")";
    EXPECT_EQ(read_text(k.path), before) << k.name;
    tried++;
    names += k.name + " ";
  }
  struct stat st {};
  EXPECT_EQ(stat(kVgaDir.c_str(), &st), 0) << "the GPU is still on the bus";
  // power/control, remove, driver_override, resource0, resource2, the power cap, suspend, unbindLock
  EXPECT_GE(tried, 8) << "knobs tried: " << names;
  int denied = 0;
  for (const auto& r : g.records()) denied += r.verdict == GG_VERDICT_DENY;
  EXPECT_EQ(denied, tried) << "one record per refused write: " << names;
}

// QEMU's real PCI display devices beside the std VGA (tools/vmtest adds a
// bochs-display and a virtio-gpu): each is a GPU of the gate by class, and
// a write that would power it off and a mapping of its BARs are refused for
// each, its state unchanged.
TEST(Knobs, EveryDisplayDeviceOfTheGuestIsGatedLikeTheFirst) {
  KnobGate g;
  ASSERT_GATE(g);
  std::set<std::string> seen;
  for (const auto& gpu : g.devices.gpus()) {
    seen.insert(gpu.address);
    const std::string dir = "/sys/bus/pci/devices/" + gpu.address;
    ASSERT_EQ(read_text(dir + "/power/control"), "on") << gpu.address;
    EXPECT_EQ(write_knob(dir + "/power/control", "auto"), -EPERM) << gpu.address;
    EXPECT_EQ(read_text(dir + "/power/control"), "on") << gpu.address;
    const PciGpu::Bar* bar = nullptr;
    for (const auto& b : gpu.bars)
      if (b.memory && !bar) bar = &b;
    ASSERT_TRUE(bar) << gpu.address << " has no memory BAR in discovery";
    int fd = open((dir + "/resource" + std::to_string(bar->index)).c_str(), O_RDWR);
    ASSERT_GE(fd, 0) << gpu.address << " resource" << bar->index << ": " << std::strerror(errno);
    void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    EXPECT_EQ(p, MAP_FAILED) << gpu.address << " resource" << bar->index;
    if (p != MAP_FAILED) munmap(p, 4096);
    close(fd);
  }
  EXPECT_TRUE(seen.count(kVga) && seen.count("0000:00:06.0") && seen.count("0000:00:07.0"))
      << "the std VGA, bochs-display and virtio-gpu must all be found";
  std::map<uint32_t, int> denied;
  for (const auto& r : g.records())
    if (r.verdict == GG_VERDICT_DENY) denied[r.knob.gpu_dev]++;
  for (const auto& gpu : g.devices.gpus()) EXPECT_EQ(denied[gpu.pci_dev()], 2) << gpu.address << ": a write, a mapping";
}

// The driver's own knobs (gpusim plays NVIDIA's procfs files and a hwmon
// power cap on the guest's display adapter): every unsigned write refused
// with the state read back unchanged; a grant that names the cap's value
// lets exactly that value through, once.
TEST(Knobs, TheDriversProcfsKnobsAndTheHwmonPowerCapAreGatedAndAGrantNamesTheCapsValue) {
  KnobGate g;
  ASSERT_GATE(g);
  const PciGpu* vga = g.devices.find_gpu(g.vga);
  ASSERT_TRUE(vga);
  std::string suspend, unbind_lock, cap;
  for (const auto& k : vga->knobs) {
    if (k.name == "/proc/driver/nvidia/suspend") suspend = k.path;
    if (k.name == "/proc/driver/nvidia/gpus/" + kVga + "/unbindLock") unbind_lock = k.path;
    if (k.name.size() > 10 && k.name.ends_with("/power1_cap")) cap = k.path;
  }
  ASSERT_FALSE(suspend.empty() || unbind_lock.empty() || cap.empty())
      << "discovery did not find gpusim's knobs on " << kVga << " (is gpusim.ko loaded?)";

  EXPECT_EQ(write_knob(suspend, "suspend\n"), -EPERM);
  EXPECT_EQ(read_text(suspend), "resume");
  EXPECT_EQ(write_knob(unbind_lock, "1\n"), -EPERM);
  EXPECT_EQ(read_text(unbind_lock), "Unbind Lock: Unlocked");

  const std::string before = read_text(cap);
  ASSERT_FALSE(before.empty());
  const uint64_t granted_uw = before == "150000000" ? 160000000 : 150000000;
  const std::string granted = std::to_string(granted_uw), other = "90000000";
  EXPECT_EQ(write_knob(cap, other + "\n"), -EPERM);
  EXPECT_EQ(read_text(cap), before);
  uint64_t now = boot_ns(), minute = 60'000'000'000ull;
  Grant named{{g.vga}, GG_CLASS_POWER_LIMIT, now, now + minute, 1};
  named.pkind = GG_PK_KNOB;
  named.key_index = 0;
  named.key_value = granted_uw;
  auto id = g.install_grant(named);
  ASSERT_TRUE(id.ok()) << id.error().message;
  EXPECT_EQ(write_knob(cap, other), -EPERM) << "a value the grant does not name";
  EXPECT_EQ(write_knob(cap, granted), static_cast<long>(granted.size())) << "the value it names";
  EXPECT_EQ(read_text(cap), granted);
  EXPECT_EQ(write_knob(cap, granted), -EPERM) << "its one use is spent";

  auto recs = g.records();
  int proc_denied = 0, cap_denied = 0, cap_granted = 0;
  for (const auto& r : recs) {
    EXPECT_EQ(r.knob.gpu_dev, g.vga);
    if (r.key.fs_magic == GG_FS_PROC && r.verdict == GG_VERDICT_DENY) {
      proc_denied++;
      EXPECT_EQ(r.dec.cls, GG_CLASS_POWER_OFF);
    }
    if (r.knob.rule != GG_KNOB_NUMBER) continue;
    EXPECT_EQ(r.dec.cls, GG_CLASS_POWER_LIMIT);
    EXPECT_TRUE(r.dec.flags & GG_DF_KEYS_VALID);
    if (r.verdict == GG_VERDICT_DENY) cap_denied++;
    if (r.verdict == GG_VERDICT_ALLOW) {
      cap_granted++;
      EXPECT_EQ(r.grant_id, *id);
      EXPECT_EQ(r.dec.key[0], granted_uw);
    }
  }
  EXPECT_EQ(proc_denied, 2) << "suspend, unbindLock";
  EXPECT_EQ(cap_denied, 3) << "unsigned, another value, the spent grant";
  EXPECT_EQ(cap_granted, 1);
}

// The module's own claim (suites kmod, kmod-nolsm): a grant that names a
// value is checked on the kernel's copy of the bytes, the copy the store
// function parses. A second thread flips the buffer between the granted
// value and another while the first writes it: whatever lands in the cap is
// the granted value, and every write the gate let through was decided on it.
// (The BPF LSM reads the caller's buffer before the kernel copies it, so
// there this race can win: docs/paths.md.)
TEST(KnobsKmod, ARaceOnTheBytesCannotSlipAnotherValueThroughANamedGrant) {
  ASSERT_TRUE(module_gates()) << "a test of gpugate.ko's knob family: GG_VM_GATE=kmod or both";
  KnobGate g;
  ASSERT_GATE(g);
  std::string cap;
  for (const auto& k : g.devices.find_gpu(g.vga)->knobs)
    if (k.name.ends_with("/power1_cap")) cap = k.path;
  ASSERT_FALSE(cap.empty()) << "gpusim's hwmon power1_cap is missing";
  const std::string granted = "170000000", other = "999999999";
  uint64_t now = boot_ns(), minute = 60'000'000'000ull;
  Grant named{{g.vga}, GG_CLASS_POWER_LIMIT, now, now + minute, 100000};
  named.pkind = GG_PK_KNOB;
  named.key_index = 0;
  named.key_value = 170000000;
  auto id = g.install_grant(named);
  ASSERT_TRUE(id.ok()) << id.error().message;

  alignas(64) static char buf[16];
  std::memcpy(buf, granted.data(), granted.size());
  std::atomic<bool> stop{false};
  // The granted value is held a little longer than the other: under
  // emulation a writer may otherwise catch only the other value (or torn
  // ones) for hundreds of tries. The flips still land at any moment.
  std::thread flipper([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      std::memcpy(buf, other.data(), other.size());
      std::memcpy(buf, granted.data(), granted.size());
      for (int spin = 0; spin < 256; spin++) asm volatile("" ::: "memory");
    }
  });
  int fd = open(cap.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  int allowed = 0, denied = 0, slipped = 0;
  // At least 400 writes, and more (up to 8000) until both outcomes were seen.
  for (int i = 0; i < 8000 && (i < 400 || allowed == 0 || denied == 0); i++) {
    ssize_t n = pwrite(fd, buf, granted.size(), 0);
    if (n == static_cast<ssize_t>(granted.size())) {
      allowed++;
      if (read_text(cap) != granted) slipped++;
    } else if (n < 0 && errno == EPERM) {
      denied++;
    }
  }
  stop = true;
  flipper.join();
  close(fd);
  EXPECT_EQ(slipped, 0) << "a value the grant does not name reached the cap";
  EXPECT_EQ(read_text(cap), granted);
  EXPECT_GT(allowed, 0) << "the granted value never went through: the race was not staged";
  EXPECT_GT(denied, 0) << "the flipped value was never seen: the race was not staged";
  for (const auto& r : g.records()) {
    if (r.knob.rule != GG_KNOB_NUMBER || r.verdict != GG_VERDICT_ALLOW) continue;
    EXPECT_EQ(r.dec.key[0], 170000000u);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(r.value), r.value_len), granted);
  }
}

// The whole chain: gpugated finds the GPU's knobs itself, its gate refuses
// the write and the mapping, the ledger has them, and the log tools read
// and verify it.
TEST(Knobs, TheDaemonDeniesAndRecordsAKnobWriteAndABarMapping) {
  TempDir dir;
  std::string ledger = dir.path / "ledger", status = dir.path / "status.json";
  pid_t daemon = spawn({kBin + "/gpugated", "--ledger", ledger, "--status-file", status, "--state-dir", dir.path,
                        "--mode", "enforce", "--no-pin", gate_args()[0], gate_args()[1]},
                       dir.path / "daemon.out");
  for (int i = 0; i < 600 && slurp(status).find("\"running\"") == std::string::npos; i++) usleep(50'000);
  ASSERT_NE(slurp(status).find("\"running\""), std::string::npos) << slurp(dir.path / "daemon.out");
  auto st = nlohmann::json::parse(slurp(status), nullptr, false);
  bool write_hook = false, map_hook = false;
  for (const auto& h : st["hooks"]) {
    write_hook |= h["hook"] == KnobGate::write_hook_name() && h["attached"] == true;
    map_hook |= h["hook"] == (module_gates() ? "kmod/sysfs_kf_bin_mmap" : "lsm/mmap_file") && h["attached"] == true;
  }
  EXPECT_TRUE(write_hook && map_hook) << st["hooks"].dump(2);

  EXPECT_EQ(write_knob(kVgaDir + "/power/control", "auto"), -EPERM);
  int fd = open((kVgaDir + "/resource2").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), MAP_FAILED);
  EXPECT_EQ(errno, EPERM);
  close(fd);
  usleep(1'500'000);
  kill(daemon, SIGTERM);
  EXPECT_EQ(wait_exit(daemon), 0) << slurp(dir.path / "daemon.out");
  release_module();

  auto writes = ledger_records(ledger, "knob.write");
  ASSERT_EQ(writes.size(), 1u) << ledger_text(ledger);
  EXPECT_EQ(writes[0]["verdict"], "denied");
  EXPECT_EQ(writes[0]["knob"]["name"], "power/control");
  EXPECT_EQ(writes[0]["gpu"]["pci"], kVga);
  EXPECT_EQ(writes[0]["write"]["value"], "auto");
  EXPECT_EQ(writes[0]["decoded"]["class"], "power.off");
  EXPECT_EQ(writes[0]["process"]["pid"], getpid());
  EXPECT_EQ(writes[0]["engine"], module_gates() ? "kmod" : "bpf");
  auto maps = ledger_records(ledger, "knob.mmap");
  ASSERT_EQ(maps.size(), 1u) << ledger_text(ledger);
  EXPECT_EQ(maps[0]["verdict"], "denied");
  EXPECT_EQ(maps[0]["knob"]["name"], "resource2");
  EXPECT_EQ(maps[0]["map"]["length"], 4096);
  EXPECT_EQ(maps[0]["map"]["prot"], nlohmann::json::array({"read", "write"}));
  auto start = ledger_records(ledger, "daemon.start");
  ASSERT_EQ(start.size(), 1u);
  bool vga_listed = false;
  for (const auto& g : start[0]["gpus"]) vga_listed |= g["pci"] == kVga && !g["bars"].empty();
  EXPECT_TRUE(vga_listed);

  auto verify = run_shell(kBin + "/gpugate log verify " + ledger);
  EXPECT_EQ(verify.status, 0) << verify.output;
  auto show = run_shell(kBin + "/gpugate log show " + ledger);
  EXPECT_EQ(show.status, 0) << show.output;
  EXPECT_NE(show.output.find("knob.write"), std::string::npos) << show.output;
}
