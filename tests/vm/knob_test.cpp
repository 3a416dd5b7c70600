// The BPF LSM gate on a GPU's sysfs knobs, on a real kernel: the guest's
// display adapter (QEMU's standard VGA at 00:02.0, tools/vmtest's -vga std)
// is found by discovery, its knobs go into the gate's map by inode, and
// writes that would power it off or remove it are refused before the
// kernel's store function runs, by every path a root attacker has: write,
// writev, sendfile, a 32-bit caller, a value the gate cannot read, a second
// sysfs mount. A grant for the GPU lets exactly its uses through. Run by the
// vm suite "gpusim" (BPF in lsm=).
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

#include <cstring>
#include <fstream>
#include <string>

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

struct KnobGate {
  KnobGate() {
    devices = discover_devices_and_gpus();
    auto gpus = devices.gpus();
    for (auto& g : gpus)
      if (g.address == kVga) {
        vga = g.pci_dev();
        for (auto& k : g.knobs)
          if (k.name == "config") k.pm_cap = kPretendPmCap;
      }
    devices.set_gpus(std::move(gpus));
    BpfEngineOptions o;
    engine = std::make_unique<BpfEngine>(o);
    auto h = engine->start(devices);
    if (!h.ok()) {
      error = h.error().message;
      return;
    }
    for (const auto& hook : *h) {
      if (hook.name == "lsm/file_permission" && hook.attached) attached = true;
      hooks += hook.name + (hook.attached ? " attached: " : " NOT attached: ") + hook.detail + "\n";
    }
    if (!attached) {  // the verifier's reasons, on the console
      engine.reset();
      BpfEngineOptions verbose;
      verbose.verbose = true;
      BpfEngine again(verbose);
      (void)again.start(devices);
      return;
    }
    Collector stale;
    drain(*engine, stale);
  }
  std::vector<gg_knob_event> records() {
    Collector c;
    drain(*engine, c);
    return c.knobs;
  }
  DeviceTable devices;
  uint32_t vga = 0;
  std::unique_ptr<BpfEngine> engine;
  bool attached = false;
  std::string error, hooks;
};

#define ASSERT_GATE(g)                                                               \
  ASSERT_TRUE((g).error.empty()) << (g).error;                                       \
  ASSERT_TRUE((g).attached) << "lsm/file_permission did not attach:\n" << (g).hooks; \
  ASSERT_NE((g).vga, 0u) << "discovery found no GPU at " << kVga << " (is -vga std set?)"

const gg_knob_event* find_record(const std::vector<gg_knob_event>& recs, unsigned cls, unsigned verdict,
                                 unsigned call = GG_WC_WRITE) {
  for (const auto& r : recs)
    if (r.dec.cls == cls && r.verdict == verdict && r.call == call) return &r;
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
  EXPECT_EQ(config_bytes(), before);

  auto recs = g.records();
  const auto* off = find_record(recs, GG_CLASS_POWER_OFF, GG_VERDICT_DENY);
  ASSERT_TRUE(off) << recs.size() << " knob records";
  EXPECT_EQ(off->knob.gpu_dev, g.vga);
  EXPECT_EQ(off->hook, GG_HOOK_LSM_FILE_WRITE);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(off->value), off->value_len), "auto\n");
  const auto* pmcsr = find_record(recs, GG_CLASS_POWER_OFF, GG_VERDICT_DENY, GG_WC_PWRITE);
  ASSERT_TRUE(pmcsr);
  EXPECT_EQ(pmcsr->offset, kPretendPmCap + 4u);
  EXPECT_EQ(pmcsr->length, 2u);
  EXPECT_TRUE(find_record(recs, GG_CLASS_OTHER, GG_VERDICT_ALLOW, GG_WC_PWRITE)) << "the harmless config write";
  EXPECT_TRUE(find_record(recs, GG_CLASS_OTHER, GG_VERDICT_ALLOW)) << "power/control on";
  int denied = 0;
  for (const auto& r : recs) denied += r.verdict == GG_VERDICT_DENY;
  EXPECT_EQ(denied, 4) << "auto twice, remove, PMCSR";
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
  // writev: the lengths are in user memory, so even "on" is refused.
  char on[] = "on", autov[] = "auto";
  iovec v1{on, 2}, v2{autov, 4};
  EXPECT_EQ(writev(fd, &v1, 1), -1);
  EXPECT_EQ(errno, EPERM);
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
  EXPECT_EQ(sent->reason, GG_WHY_CAPTURE);
  bool unreadable = false, second_mount = false, compat = false;
  for (const auto& r : recs) {
    unreadable |= (r.capture_flags & GG_CAP_ARG_FAULT) && r.verdict == GG_VERDICT_DENY;
    second_mount |= r.hdr.pid == static_cast<uint32_t>(child) && r.verdict == GG_VERDICT_DENY;
    compat |= r.compat && r.verdict == GG_VERDICT_DENY;
  }
  EXPECT_TRUE(unreadable);
  EXPECT_TRUE(second_mount);
  if (ia32 == Ia32::kAvailable) EXPECT_TRUE(compat);
}

TEST(Knobs, AGrantForTheGpuAllowsExactlyItsUsesAndAnotherDevicesKnobIsUntouched) {
  KnobGate g;
  ASSERT_GATE(g);
  const std::string control = kVgaDir + "/power/control";
  uint64_t now = boot_ns(), minute = 60'000'000'000ull;
  Grant limit{{g.vga}, GG_CLASS_POWER_LIMIT, now, now + minute, 5};
  ASSERT_TRUE(g.engine->install_grant(limit).ok());
  EXPECT_EQ(write_knob(control, "auto"), -EPERM) << "a power.limit grant is not a power.off grant";
  Grant once{{g.vga}, GG_CLASS_POWER_OFF, now, now + minute, 1};
  auto id = g.engine->install_grant(once);
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
  auto id = g.engine->install_grant({{g.vga}, GG_CLASS_BAR_MAP, now, now + minute, 1});
  ASSERT_TRUE(id.ok()) << id.error().message;
  EXPECT_EQ(map_file(kVgaDir + "/resource2", PROT_READ | PROT_WRITE), 0) << "granted once";
  EXPECT_EQ(map_file(kVgaDir + "/resource2", PROT_READ | PROT_WRITE), -EPERM) << "spent";
  unlink(mem.c_str());

  auto recs = g.records();
  int denied = 0, granted = 0, devmem = 0;
  for (const auto& r : recs) {
    if (r.op != GG_KOP_MMAP) continue;
    EXPECT_EQ(r.dec.cls, GG_CLASS_BAR_MAP);
    EXPECT_EQ(r.call, GG_WC_MMAP);
    EXPECT_EQ(r.length, 4096u);
    EXPECT_EQ(r.knob.gpu_dev, g.vga);
    EXPECT_EQ(r.hook, GG_HOOK_LSM_MMAP_FILE);
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

// The whole chain: gpugated finds the GPU's knobs itself, its gate refuses
// the write and the mapping, the ledger has them, and the log tools read
// and verify it.
TEST(Knobs, TheDaemonDeniesAndRecordsAKnobWriteAndABarMapping) {
  TempDir dir;
  std::string ledger = dir.path / "ledger", status = dir.path / "status.json";
  pid_t daemon = spawn({kBin + "/gpugated", "--ledger", ledger, "--status-file", status, "--state-dir", dir.path,
                        "--mode", "enforce", "--no-pin", "--kmod", "off"},
                       dir.path / "daemon.out");
  for (int i = 0; i < 600 && slurp(status).find("\"running\"") == std::string::npos; i++) usleep(50'000);
  ASSERT_NE(slurp(status).find("\"running\""), std::string::npos) << slurp(dir.path / "daemon.out");
  auto st = nlohmann::json::parse(slurp(status), nullptr, false);
  bool write_hook = false, map_hook = false;
  for (const auto& h : st["hooks"]) {
    write_hook |= h["hook"] == "lsm/file_permission" && h["attached"] == true;
    map_hook |= h["hook"] == "lsm/mmap_file" && h["attached"] == true;
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

  auto writes = ledger_records(ledger, "knob.write");
  ASSERT_EQ(writes.size(), 1u) << ledger_text(ledger);
  EXPECT_EQ(writes[0]["verdict"], "denied");
  EXPECT_EQ(writes[0]["knob"]["name"], "power/control");
  EXPECT_EQ(writes[0]["gpu"]["pci"], kVga);
  EXPECT_EQ(writes[0]["write"]["value"], "auto");
  EXPECT_EQ(writes[0]["decoded"]["class"], "power.off");
  EXPECT_EQ(writes[0]["process"]["pid"], getpid());
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
