// gpugate.ko in a guest kernel with the simulated NVIDIA driver
// (tests/vm/gpusim, whose glue has nvidia.ko's names, prototypes and order):
// the module attaches to the driver wherever it loads, decides on the
// driver's own copy of each request, refuses as the driver does, and no
// race, stall or untouched page changes what it decided on. Run by the vm
// suites kmod (with the BPF LSM gate too) and kmod-nolsm (the module alone,
// booted without bpf in lsm=); tools/vmtest.d/suites.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "attack_pages.hpp"
#include "drivers.hpp"
#include "gpugate/decode.hpp"
#include "gpusim_client.hpp"
#include "ia32.hpp"
#include "ledger_read.hpp"
#include "process.hpp"
#include "tempdir.hpp"
#include "test_gate.hpp"

using namespace gpugate::test;
using namespace std::chrono_literals;

namespace {

const std::string kBin = GG_BIN_DIR;

int open_ctl() { return open("/dev/nvidiactl", O_RDWR); }

std::string osrelease() {
  std::string r;
  std::ifstream("/proc/sys/kernel/osrelease") >> r;
  return r;
}

bool sh(const std::string& cmd) { return std::system(cmd.c_str()) == 0; }

// Every test leaves the module observing, without grants or a hold, as it
// found it: a gate left enforcing would change the next test's driver.
struct ReleaseModule : ::testing::EmptyTestEventListener {
  void OnTestEnd(const ::testing::TestInfo&) override {
    if (module_gates() && gpugate::kmod_present()) (void)gpugate::kmod_release();
  }
};
const bool kListening = [] {
  ::testing::UnitTest::GetInstance()->listeners().Append(new ReleaseModule);
  return true;
}();

// The module's view of its hooks, not owning it.
std::vector<gpugate::KmodFamily> families() {
  gpugate::KmodEngine probe({GG_KMOD_DEV_PATH, GG_MODE_OBSERVE, gpugate::default_policy(GG_MODE_OBSERVE), false});
  auto h = probe.start({});
  if (!h.ok()) return {};
  auto f = probe.families();
  return f.ok() ? *f : std::vector<gpugate::KmodFamily>{};
}

const gpugate::KmodFamily* family(const std::vector<gpugate::KmodFamily>& fs, const std::string& name) {
  for (const auto& f : fs)
    if (f.name == name) return &f;
  return nullptr;
}

// Functions ftrace has hooked now (tracefs enabled_functions), one per line.
std::string enabled_functions() {
  (void)std::system("mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null");
  return slurp("/sys/kernel/tracing/enabled_functions");
}

std::string kprobes_list() {
  (void)std::system("mount -t debugfs none /sys/kernel/debug 2>/dev/null");
  return slurp("/sys/kernel/debug/kprobes/list");
}

}  // namespace

// The module finds the driver by its symbols, whenever the driver loads,
// and lets go of it before the driver is freed.
TEST(Kmod, AttachesToTheDriverWheneverItLoadsAndDetachesWhenItGoes) {
  ASSERT_TRUE(gpugate::kmod_present()) << "is gpugate.ko loaded?";
  auto fs = families();
  const auto* nv = family(fs, "nvidia");
  ASSERT_NE(nv, nullptr);
  EXPECT_EQ(nv->state, GG_KHOOK_ATTACHED) << nv->why;
  EXPECT_EQ(nv->module, "gpusim");
  ASSERT_EQ(nv->hooks.size(), 3u);
  std::set<std::string> symbols;
  for (const auto& h : nv->hooks) symbols.insert(h.symbol);
  EXPECT_EQ(symbols, (std::set<std::string>{"nvidia_unlocked_ioctl", "rm_ioctl", "os_memcpy_from_user"}));
  std::string ftrace = enabled_functions();
  EXPECT_NE(ftrace.find("nvidia_unlocked_ioctl"), std::string::npos) << ftrace;
  EXPECT_NE(ftrace.find("os_memcpy_from_user"), std::string::npos) << ftrace;
  EXPECT_NE(kprobes_list().find("rm_ioctl"), std::string::npos) << kprobes_list();

  ASSERT_TRUE(sh("rmmod gpusim"));
  fs = families();
  nv = family(fs, "nvidia");
  ASSERT_NE(nv, nullptr);
  EXPECT_EQ(nv->state, GG_KHOOK_WAITING) << "the driver went: the module let go of it";
  EXPECT_EQ(enabled_functions().find("os_memcpy_from_user"), std::string::npos) << enabled_functions();
  EXPECT_EQ(kprobes_list().find("rm_ioctl"), std::string::npos) << kprobes_list();

  ASSERT_TRUE(sh("insmod /modules/gpusim.ko"));
  fs = families();
  nv = family(fs, "nvidia");
  ASSERT_NE(nv, nullptr);
  EXPECT_EQ(nv->state, GG_KHOOK_ATTACHED) << "the driver came back: attached again, " << nv->why;
}

// Refused as the driver refuses an unprivileged control: the ioctl returns
// 0 and NVOS54.status says NV_ERR_INSUFFICIENT_PERMISSIONS. Each decision is
// recorded with the hook that made it, on the bytes the driver copied.
TEST(Kmod, DeniesAsTheDriverWouldOnTheDriversCopy) {
  InProcessGate gate;
  ASSERT_TRUE(gate.ok) << gate.error;
  int fd = open_ctl();
  ASSERT_GE(fd, 0);
  auto before = gpu_state();
  uint32_t params[3] = {0, 6, 0};
  Nvos54 c = control(kSetPower, params, sizeof(params));
  ASSERT_EQ(ioctl(fd, kRmControl, &c), 0) << "the ioctl itself succeeds, as the driver's own refusal does";
  EXPECT_EQ(c.status, 0x1Bu) << "NV_ERR_INSUFFICIENT_PERMISSIONS";
  EXPECT_EQ(rm_control(fd, 0x208001A9, nullptr, 0), 0x1B) << "GPU_MARK_DEVICE_FOR_RESET, no params";
  uint32_t ps = 0xffff;
  EXPECT_EQ(rm_control(fd, kGetPowerState, &ps, 4), 0) << "a query passes";
  EXPECT_EQ(ps, before["perf_state"]);
  auto after = gpu_state();
  EXPECT_EQ(after["power_level"], before["power_level"]);
  EXPECT_EQ(after["reset_pending"], before["reset_pending"]);
  EXPECT_EQ(after["controls"] - before["controls"], 1u) << "only the query reached the control";

  auto recs = gate.records();
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(recs[0].hook, GG_HOOK_KMOD_OS_MEMCPY) << "decided where RM copied its params";
  EXPECT_EQ(recs[0].verdict, GG_VERDICT_DENY);
  EXPECT_EQ(recs[0].dec.cls, GG_CLASS_POWER_OFF);
  EXPECT_EQ(recs[0].raw.params_len, 12u);
  EXPECT_EQ(recs[0].dec.key[1], 6u) << "newLevel, from the driver's copy";
  EXPECT_EQ(recs[1].hook, GG_HOOK_KMOD_RM_IOCTL) << "no params: decided at rm_ioctl";
  EXPECT_EQ(recs[1].verdict, GG_VERDICT_DENY);
  EXPECT_EQ(recs[1].dec.cls, GG_CLASS_GPU_RESET);
  EXPECT_EQ(recs[2].hook, GG_HOOK_KMOD_RM_IOCTL) << "a query settled by its id";
  EXPECT_EQ(recs[2].verdict, GG_VERDICT_ALLOW);
  EXPECT_TRUE(recs[2].raw.capture_flags & GG_CAP_DEFERRED) << "its params were not needed";
  close(fd);
}

// The races that beat the LSM gate, against the module: a second thread
// flipping the command id, the signed parameter, or the XFER tunnel's
// pointer. What the driver runs is what the module decided on, every time.
TEST(Kmod, RacesAgainstTheDriversCopyNeverWin) {
  InProcessGate gate;
  ASSERT_TRUE(gate.ok) << gate.error;
  int fd = open_ctl();
  ASSERT_GE(fd, 0);
  uint32_t ctl = gpugate::kernel_dev(195, 255);
  uint64_t now = boot_ns(), hour = 3600'000'000'000ull;
  auto level = gpugate::key_param_refs("newLevel");
  ASSERT_EQ(level.size(), 1u);
  gpugate::Grant only5{{ctl}, GG_CLASS_POWER_OFF, now, now + hour, 1'000'000, 0, 0};
  only5.pkind = level[0].pkind;
  only5.key_index = level[0].index;
  only5.key_value = 5;
  ASSERT_TRUE(gate.install_grant(only5).ok());
  auto before = gpu_state();
  ASSERT_EQ(before["power_levels_seen"] & (1u << 6), 0u) << "level 6 was never set before";
  Collector col;
  std::atomic<bool> stop{false};
  int attempts = 0, allowed = 0, refused = 0;
  auto run = [&](int n, auto issue) {
    for (int i = 0; i < n; i++, attempts++) {
      int r = issue();
      allowed += r == 0;
      refused += r != 0;
      if (i % 1000 == 999) gate.drain_into(col);
    }
  };

  // 1. The command id: a query flipped to PERF_SET_POWERSTATE and back.
  uint32_t value = 0;
  Nvos54 c = control(kGetPowerState, &value, 4);
  std::thread cmd_flipper([&] {
    auto& cmd = reinterpret_cast<volatile uint32_t&>(c.cmd);
    while (!stop.load(std::memory_order_relaxed)) {
      cmd = kSetPowerState;
      cmd = kGetPowerState;
    }
  });
  run(40000, [&] {
    value = 0;
    return ioctl(fd, kRmControl, &c) < 0 ? -errno : static_cast<int>(c.status);
  });
  stop = true;
  cmd_flipper.join();

  // 2. The signed parameter: GPU_SET_POWER granted for newLevel=5 only, the
  // level flipped to 6 and back.
  stop = false;
  uint32_t power[3] = {0, 5, 0};
  Nvos54 p = control(kSetPower, power, sizeof(power));
  std::thread param_flipper([&] {
    auto& lvl = reinterpret_cast<volatile uint32_t&>(power[1]);
    while (!stop.load(std::memory_order_relaxed)) {
      lvl = 6;
      lvl = 5;
    }
  });
  run(30000, [&] { return ioctl(fd, kRmControl, &p) < 0 ? -errno : static_cast<int>(p.status); });
  stop = true;
  param_flipper.join();

  // 3. The XFER tunnel's pointer: a query's struct, flipped to a
  // PERF_SET_POWERSTATE's and back.
  stop = false;
  uint32_t q = 0, evil_value = 7;
  Nvos54 query = control(kGetPowerState, &q, 4), evil = control(kSetPowerState, &evil_value, 4);
  NvXfer x{0x2A, sizeof(Nvos54), reinterpret_cast<uint64_t>(&query)};
  std::thread ptr_flipper([&] {
    auto& ptr = reinterpret_cast<volatile uint64_t&>(x.ptr);
    while (!stop.load(std::memory_order_relaxed)) {
      ptr = reinterpret_cast<uint64_t>(&evil);
      ptr = reinterpret_cast<uint64_t>(&query);
    }
  });
  run(30000, [&] {
    int r = ioctl(fd, kXfer, &x);
    return r < 0 ? -errno : static_cast<int>(reinterpret_cast<Nvos54*>(x.ptr)->status);
  });
  stop = true;
  ptr_flipper.join();
  gate.drain_into(col);

  auto after = gpu_state();
  uint64_t perf_bypasses = after["perf_state_sets"] - before["perf_state_sets"];
  bool level6 = after["power_levels_seen"] & (1u << 6);
  size_t granted = 0, denied = 0;
  for (const auto& e : col.enters) {
    granted += e.grant_id != 0;
    denied += e.verdict == GG_VERDICT_DENY;
    if (e.grant_id) EXPECT_EQ(e.dec.key[1], 5u) << "a grant was only ever spent on newLevel=5";
  }
  std::printf(
      "GG-ATTACK kmod-race kernel=%s gate=%s attempts=%d refused=%d allowed=%d perf_state_bypasses=%llu "
      "level6_set=%d granted=%zu\n",
      osrelease().c_str(), std::getenv("GG_VM_GATE") ? std::getenv("GG_VM_GATE") : "?", attempts, refused, allowed,
      static_cast<unsigned long long>(perf_bypasses), level6 ? 1 : 0, granted);
  EXPECT_GE(attempts, 100000);
  EXPECT_EQ(perf_bypasses, 0u) << "a PERF_SET_POWERSTATE ran without a grant";
  EXPECT_FALSE(level6) << "GPU_SET_POWER ran with newLevel=6, which was never signed";
  EXPECT_EQ(after["power_sets"] - before["power_sets"], granted) << "every power set the driver ran was granted";
  EXPECT_GT(granted, 0u) << "the race was real: some sets with newLevel=5 passed";
  EXPECT_GT(denied, 0u) << "and some flips were caught";
  close(fd);
}

// userfaultfd stalls the driver's own params copy; the attacker's thread
// uses the stall to flip the checked command or the signed parameter. The
// module decided the command on the struct the driver had already copied,
// and decides the params on the bytes the copy brought in.
TEST(Kmod, AStalledCopyDecidesOnWhatTheDriverCopied) {
  InProcessGate gate;
  ASSERT_TRUE(gate.ok) << gate.error;
  int fd = open_ctl();
  ASSERT_GE(fd, 0);
  uint64_t sets_before = gpu_state()["perf_state_sets"];
  Nvos54 c{};
  auto flip_cmd = [&] { reinterpret_cast<volatile uint32_t&>(c.cmd) = kSetPowerState; };
  {
    UffdPage page(flip_cmd, u32_bytes(5));
    ASSERT_TRUE(page.ready) << "userfaultfd: " << std::strerror(errno);
    c = control(kGetPowerState, page.addr, 4);
    ASSERT_EQ(ioctl(fd, kRmControl, &c), 0);
    EXPECT_EQ(c.status, 0u) << "the query the driver copied ran";
    EXPECT_EQ(page.served, 1) << "the driver's copy stalled on the page";
  }
  EXPECT_EQ(gpu_state()["perf_state_sets"], sets_before) << "the flip came after the driver's copy";

  // The params themselves, served by the attacker at the moment of the copy.
  uint32_t ctl = gpugate::kernel_dev(195, 255);
  uint64_t now = boot_ns(), hour = 3600'000'000'000ull;
  auto level = gpugate::key_param_refs("newLevel");
  ASSERT_EQ(level.size(), 1u);
  gpugate::Grant only5{{ctl}, GG_CLASS_POWER_OFF, now, now + hour, 10, 0, 0};
  only5.pkind = level[0].pkind;
  only5.key_index = level[0].index;
  only5.key_value = 5;
  ASSERT_TRUE(gate.install_grant(only5).ok());
  uint64_t power_sets = gpu_state()["power_sets"];
  std::vector<uint8_t> level6 = {0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0};
  UffdPage page([] {}, level6);
  ASSERT_TRUE(page.ready);
  Nvos54 p = control(kSetPower, page.addr, 12);
  ASSERT_EQ(ioctl(fd, kRmControl, &p), 0);
  EXPECT_EQ(p.status, 0x1Bu) << "the copy brought newLevel=6: refused";
  EXPECT_EQ(page.served, 1);
  EXPECT_EQ(gpu_state()["power_sets"], power_sets);

  auto recs = gate.records();
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].dec.command, kGetPowerState) << "what the driver copied";
  EXPECT_EQ(recs[0].verdict, GG_VERDICT_ALLOW);
  EXPECT_EQ(recs[1].hook, GG_HOOK_KMOD_OS_MEMCPY);
  EXPECT_EQ(recs[1].dec.key[1], 6u);
  EXPECT_EQ(recs[1].verdict, GG_VERDICT_DENY);
  close(fd);
}

// A 32-bit caller, and request bytes in pages the process never touched:
// the LSM cannot read them (and fails closed); the module reads the
// driver's copy, so it decides them like any other.
TEST(Kmod, UntouchedPagesAndThirtyTwoBitCallersAreDecidedOnTheCopy) {
  ASSERT_EQ(ia32_syscalls(), Ia32::kAvailable) << "the guest kernels take 32-bit calls";
  InProcessGate gate;
  ASSERT_TRUE(gate.ok) << gate.error;
  int fd = open_ctl();
  ASSERT_GE(fd, 0);
  UntouchedPage page;
  ASSERT_NE(page.addr, nullptr);
  uint32_t before = static_cast<uint32_t>(gpu_state()["power_level"]);
  ASSERT_TRUE(stage_set_power(page, before == 2 ? 3 : 2));
  EXPECT_EQ(ioctl_ia32(fd, static_cast<uint32_t>(kRmControl), page.at(0)), 0);
  uint32_t status = 0;
  ASSERT_EQ(pread(page.fd, &status, 4, 28), 4);
  EXPECT_EQ(status, 0x1Bu) << "GPU_SET_POWER from an untouched page, 32-bit: refused as the driver would";
  EXPECT_EQ(gpu_state()["power_level"], before);

  page.remap();
  Nvos54 q = control(kGetPowerState, nullptr, 4);
  q.params = page.at(256);
  ASSERT_TRUE(page.put(0, &q, sizeof(q)));
  EXPECT_EQ(ioctl_ia32(fd, static_cast<uint32_t>(kRmControl), page.at(0)), 0);
  ASSERT_EQ(pread(page.fd, &status, 4, 28), 4);
  EXPECT_EQ(status, 0u) << "a query from an untouched page passes: the module has the driver's copy";

  auto recs = gate.records();
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].verdict, GG_VERDICT_DENY);
  EXPECT_EQ(recs[0].dec.cls, GG_CLASS_POWER_OFF);
  EXPECT_EQ(recs[1].verdict, GG_VERDICT_ALLOW);
  for (const auto& r : recs) EXPECT_FALSE(r.dec.flags & GG_DF_UNDECIDED);
  close(fd);
}

namespace {

// Starts gpugated with this gate and waits until it runs; fresh: what the
// module recorded before is not this daemon's (else it reads it, as a
// restarted daemon does).
pid_t start_daemon(const TempDir& dir, const std::vector<std::string>& extra, const std::string& out_name,
                   bool fresh = true) {
  std::string status = dir.path / "status.json";
  std::filesystem::remove(status);
  std::vector<std::string> argv = {
      kBin + "/gpugated", "--ledger", dir.path / "ledger", "--status-file", status, "--state-dir", dir.path,
      "--control-socket", "",         "--no-pin"};
  for (const auto& a : gate_args()) argv.push_back(a);
  argv.insert(argv.end(), extra.begin(), extra.end());
  if (fresh) forget_module_records();
  pid_t pid = spawn(argv, dir.path / out_name);
  for (int i = 0; i < 600 && slurp(status).find("\"running\"") == std::string::npos; i++)
    std::this_thread::sleep_for(50ms);
  EXPECT_NE(slurp(status).find("\"running\""), std::string::npos) << slurp(dir.path / out_name);
  return pid;
}

std::vector<nlohmann::json> my_ioctls(const std::string& ledger, pid_t pid) {
  std::vector<nlohmann::json> out;
  for (const auto& r : ledger_records(ledger, "ioctl"))
    if (r["process"]["pid"] == pid) out.push_back(r);
  return out;
}

}  // namespace

// gpugated with the module (and, in the kmod suite, the BPF LSM gate too):
// every ioctl of the client gets one record and one verdict, from the
// module's hooks, never a second one from BPF.
TEST(Kmod, OneVerdictAndOneRecordPerIoctl) {
  TempDir dir;
  pid_t daemon = start_daemon(dir, {"--mode", "enforce"}, "daemon.out");
  auto status = nlohmann::json::parse(slurp(dir.path / "status.json"));
  EXPECT_EQ(status["kmod"]["owns"]["nvidia"], true) << status.dump();
  pid_t client = spawn({kBin + "/gpugate-nvclient", "/dev/nvidiactl", "demo"}, dir.path / "client.out");
  ASSERT_EQ(wait_exit(client), 0) << slurp(dir.path / "client.out");
  std::this_thread::sleep_for(1500ms);
  kill(daemon, SIGTERM);
  ASSERT_EQ(wait_exit(daemon), 0) << slurp(dir.path / "daemon.out");
  auto recs = my_ioctls(dir.path / "ledger", client);
  ASSERT_EQ(recs.size(), 10u) << "ten requests, ten records";
  for (const auto& r : recs) {
    SCOPED_TRACE(r.dump());
    EXPECT_TRUE(r["hook"].get<std::string>().rfind("kmod/", 0) == 0);
    EXPECT_EQ(r["engine"], "kmod");
    bool gated = r["rule"]["action"] == "require-signature";
    EXPECT_EQ(r["verdict"], gated ? "denied" : "allowed");
    EXPECT_FALSE(r["result"]["ret"].is_null()) << "the call's result is in the record";
  }
}

namespace {

// amdkfd's ioctls (include/uapi/linux/kfd_ioctl.h; kmod/uapi/gpugate/kfd.def).
constexpr unsigned long kKfdGetVersion = 0x80084B01;    // AMDKFD_IOR(0x01, {u32 major, minor})
constexpr unsigned long kKfdCreateEvent = 0xC0204B08;   // AMDKFD_IOWR(0x08, kfd_ioctl_create_event_args)
constexpr unsigned long kKfdDestroyEvent = 0x40084B09;  // AMDKFD_IOW(0x09, {u32 event_id, pad})
constexpr unsigned long kKfdPastTheTable = 0xC0084B7F;  // nr 0x7f: no handler
constexpr uint32_t kKfdEventMemory = 8;                 // KFD_IOC_EVENT_MEMORY: needs no GPU

struct KfdCreateEvent {
  uint64_t event_page_offset;
  uint32_t event_trigger_data, event_type, auto_reset, node_id, event_id, event_slot_index;
};

int destroy_event(int fd, uint32_t id) {
  uint32_t args[2] = {id, 0};
  return ioctl(fd, kKfdDestroyEvent, args) < 0 ? -errno : 0;
}

}  // namespace

// The real amdgpu of the guest's kernel creates /dev/kfd with no AMD GPU
// present: the module attaches to every handler amdkfd's dispatch table
// names, decides on kdata (the copy the handler uses), refuses with EPERM
// as the driver refuses a caller without the right, and lets go when amdgpu
// goes. 32-bit callers (an fd opened by a 64-bit process, used through
// int 0x80 and compat_ptr_ioctl) meet the same gate; an ioctl kfd_ioctl
// refuses before any handler is recorded as undecided.
TEST(Kmod, GatesAmdKfdOnTheHandlersCopy) {
  GuestDriver amd("/modules/amd", "amdgpu", "/dev/kfd");
  ASSERT_TRUE(amd.loaded) << amd.error;
  {
    auto fs = families();
    const auto* kfd = family(fs, "kfd");
    ASSERT_NE(kfd, nullptr);
    ASSERT_EQ(kfd->state, GG_KHOOK_ATTACHED) << kfd->why;
    EXPECT_EQ(kfd->module, "amdgpu");
    ASSERT_EQ(kfd->hooks.size(), 2u);
    EXPECT_EQ(std::string(kfd->hooks[1].symbol), "amdkfd_ioctls");
    EXPECT_EQ(kfd->hooks[1].kind, GG_KHOOK_TABLE);
  }
  std::string ftrace = enabled_functions();
  for (const char* f :
       {"kfd_ioctl ", "kfd_ioctl_get_version", "kfd_ioctl_set_xnack_mode", "kfd_ioctl_create_queue", "kfd_ioctl_criu"})
    EXPECT_NE(ftrace.find(f), std::string::npos) << f << " is hooked:\n" << ftrace;

  gg_policy policy = gpugate::default_policy(GG_MODE_ENFORCE);
  policy.action[GG_CLASS_RESOURCE] = GG_ACT_DENY;  // DESTROY_EVENT's class
  gg_policy allow = gpugate::default_policy(GG_MODE_ENFORCE);
  InProcessGate gate(allow);
  ASSERT_TRUE(gate.ok) << gate.error;
  ASSERT_TRUE(gate.kmod->owned_policy_flags() & GG_POLF_KMOD_KFD) << "the module decides on /dev/kfd";
  int fd = open("/dev/kfd", O_RDWR);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  // closed before amdgpu is unloaded, however the test ends
  std::unique_ptr<int, void (*)(int*)> closer(&fd, [](int* f) {
    if (*f >= 0) close(*f);
    *f = -1;
  });
  uint32_t version[2] = {0, 0};
  ASSERT_EQ(ioctl(fd, kKfdGetVersion, version), 0) << "a query passes";
  EXPECT_EQ(version[0], 1u) << "KFD interface major version";
  KfdCreateEvent ev{};
  ev.event_type = kKfdEventMemory;
  ASSERT_EQ(ioctl(fd, kKfdCreateEvent, &ev), 0) << std::strerror(errno);

  // Denied: the driver's state is what it was.
  ASSERT_TRUE(gate.set_policy(policy).ok());
  EXPECT_EQ(destroy_event(fd, ev.event_id), -EPERM) << "refused as the driver refuses";
  int ia32_ret = 1;
  {
    ASSERT_EQ(ia32_syscalls(), Ia32::kAvailable) << "the guest kernels take 32-bit calls";
    uint8_t* low = low_page();
    ASSERT_NE(low, nullptr);
    std::memcpy(low, &ev.event_id, 4);
    ia32_ret = static_cast<int>(ioctl_ia32(fd, static_cast<uint32_t>(kKfdDestroyEvent), low32(low)));
    munmap(low, 4096);
  }
  EXPECT_EQ(ia32_ret, -EPERM) << "a 32-bit caller meets the same gate";
  EXPECT_EQ(ioctl(fd, kKfdPastTheTable, version), -1);
  int past_errno = errno;
  // Allowed, the same call works once: the event was still there, and the
  // refusals were the gate's.
  ASSERT_TRUE(gate.set_policy(allow).ok());
  EXPECT_EQ(destroy_event(fd, ev.event_id), 0) << "neither refused call reached the driver";
  EXPECT_EQ(destroy_event(fd, ev.event_id), -EINVAL) << "and this one did";

  Collector col;
  gate.drain_into(col);
  closer.reset();
  std::vector<gg_ioctl_enter> kfd;
  for (const auto& e : col.enters)
    if (e.device.kind == GG_DEV_KFD) kfd.push_back(e);
  ASSERT_EQ(kfd.size(), 7u) << "one record per ioctl, from one gate";
  for (const auto& e : kfd) {
    EXPECT_EQ(e.hook, GG_HOOK_KMOD_KFD) << "the module decided, not BPF";
    EXPECT_EQ(e.device.vendor, GG_VENDOR_AMD);
  }
  EXPECT_EQ(kfd[0].dec.cls, GG_CLASS_QUERY);
  for (int i : {2, 3}) {
    SCOPED_TRACE(i);
    EXPECT_EQ(kfd[i].verdict, GG_VERDICT_DENY);
    EXPECT_EQ(kfd[i].dec.cls, GG_CLASS_RESOURCE);
    EXPECT_NE(gpugate::command_name(kfd[i].raw, kfd[i].dec).find("DESTROY_EVENT"), std::string::npos)
        << gpugate::command_name(kfd[i].raw, kfd[i].dec);
    uint32_t id = 0;
    std::memcpy(&id, kfd[i].raw.arg, 4);
    EXPECT_EQ(id, ev.event_id) << "decided on the id the handler got";
  }
  EXPECT_EQ(kfd[4].raw.capture_flags & GG_CAP_AFTER, GG_CAP_AFTER)
      << "no handler ran: recorded after the call, undecided";
  EXPECT_EQ(kfd[4].reason, GG_WHY_UNDECIDED);
  bool exit_seen = false;
  for (const auto& x : col.exits)
    if (x.enter_seq == kfd[4].hdr.seq) {
      exit_seen = true;
      EXPECT_EQ(x.ret, -past_errno) << "the driver's own answer";
    }
  EXPECT_TRUE(exit_seen);
  for (int i : {0, 1, 5, 6}) EXPECT_EQ(kfd[i].verdict, GG_VERDICT_ALLOW) << i;

  // amdgpu goes: the module lets go of it first.
  ASSERT_TRUE(amd.unload()) << "rmmod amdgpu";
  auto fs = gate.kmod->families();
  ASSERT_TRUE(fs.ok()) << fs.error().message;
  const auto* kfd_family = family(*fs, "kfd");
  ASSERT_NE(kfd_family, nullptr);
  EXPECT_EQ(kfd_family->state, GG_KHOOK_WAITING);
  EXPECT_EQ(enabled_functions().find("kfd_ioctl"), std::string::npos) << enabled_functions();
  EXPECT_FALSE(gate.kmod->owned_policy_flags() & GG_POLF_KMOD_KFD);
}

// While it enforces the module holds itself against unload, until
// gpugated --unload lets it go; the unload is in the ledger.
TEST(Kmod, HeldAgainstUnloadUntilGpugatedUnload) {
  TempDir dir;
  pid_t daemon = start_daemon(dir, {"--mode", "enforce"}, "daemon.out");
  EXPECT_FALSE(sh("rmmod gpugate 2>/dev/null")) << "held while a daemon enforces";
  kill(daemon, SIGTERM);
  ASSERT_EQ(wait_exit(daemon), 0) << slurp(dir.path / "daemon.out");
  EXPECT_FALSE(sh("rmmod gpugate 2>/dev/null")) << "still held: the daemon stopped, the gate did not";
  int fd = open_ctl();
  EXPECT_EQ(set_power(fd, 3), kNvInsufficientPermissions) << "and still deciding";
  close(fd);
  pid_t unload = spawn({kBin + "/gpugated", "--unload", "--pin-dir", "/sys/fs/bpf/gg-none", "--ledger",
                        dir.path / "ledger", "--state-dir", dir.path},
                       dir.path / "unload.out");
  ASSERT_EQ(wait_exit(unload), 0) << slurp(dir.path / "unload.out");
  EXPECT_TRUE(sh("rmmod gpugate")) << "let go: it unloads";
  EXPECT_TRUE(sh("insmod /modules/gpugate.ko mode=observe"));
  bool recorded = false;
  for (const auto& r : ledger_records(dir.path / "ledger", "gate.unloaded")) recorded |= !r["kmod"].is_null();
  EXPECT_TRUE(recorded) << "gate.unloaded names the module";
}

// A module removed by force (rmmod -f) while it held the gate: the next
// daemon says so in the ledger.
TEST(Kmod, AForcedRemovalIsRecordedWhenNextSeen) {
  TempDir dir;
  pid_t daemon = start_daemon(dir, {"--mode", "enforce"}, "first.out");
  kill(daemon, SIGTERM);
  ASSERT_EQ(wait_exit(daemon), 0);
  ASSERT_TRUE(sh("rmmod -f gpugate")) << "forced (CONFIG_MODULE_FORCE_UNLOAD)";
  ASSERT_TRUE(sh("insmod /modules/gpugate.ko mode=observe"));
  daemon = start_daemon(dir, {"--mode", "enforce"}, "second.out");
  kill(daemon, SIGTERM);
  ASSERT_EQ(wait_exit(daemon), 0);
  bool alarm = false;
  for (const auto& r : ledger_records(dir.path / "ledger", "alarm")) alarm |= r["what"] == "kmod-removed";
  EXPECT_TRUE(alarm) << "the forced removal is in the ledger";
}

// Only the running daemon changes the module's tables; another process
// that takes it over while no daemon runs is named in the ledger.
TEST(Kmod, OnlyItsOwnerChangesItAndEveryOtherChangeIsRecorded) {
  TempDir dir;
  pid_t daemon = start_daemon(dir, {"--mode", "enforce"}, "first.out");
  {
    gpugate::KmodEngine second({GG_KMOD_DEV_PATH, GG_MODE_OBSERVE, gpugate::default_policy(GG_MODE_OBSERVE), false});
    auto h = second.start({});
    ASSERT_FALSE(h.ok());
    EXPECT_NE(h.error().message.find("owned by another process"), std::string::npos) << h.error().message;
  }
  int nf = open(GG_KMOD_DEV_PATH, O_RDWR);
  ASSERT_GE(nf, 0);
  gg_kmod_hello hello{};
  hello.abi = GG_KMOD_ABI;
  ASSERT_EQ(ioctl(nf, GG_KIOC_HELLO, &hello), 0) << "anyone root may look";
  gg_policy open_policy = gpugate::default_policy(GG_MODE_OBSERVE);
  EXPECT_EQ(ioctl(nf, GG_KIOC_SET_POLICY, &open_policy), -1);
  EXPECT_EQ(errno, EACCES) << "but not change";
  close(nf);
  hello.abi = GG_KMOD_ABI + 1;
  nf = open(GG_KMOD_DEV_PATH, O_RDWR);
  EXPECT_EQ(ioctl(nf, GG_KIOC_HELLO, &hello), -1);
  EXPECT_EQ(errno, EPROTO) << "another ABI is refused";
  EXPECT_EQ(ioctl(nf, GG_KIOC_STATS, &open_policy), -1) << "nothing before a matching hello";
  close(nf);

  kill(daemon, SIGKILL);
  wait_exit(daemon);
  {
    // root without the daemon: takes the module over and opens it up
    gpugate::KmodEngine intruder({GG_KMOD_DEV_PATH, GG_MODE_OBSERVE, gpugate::default_policy(GG_MODE_OBSERVE), false});
    ASSERT_TRUE(intruder.start({}).ok());
  }
  daemon = start_daemon(dir, {"--mode", "enforce"}, "second.out", false);
  kill(daemon, SIGTERM);
  ASSERT_EQ(wait_exit(daemon), 0);
  bool named = false, gap = false;
  for (const auto& r : ledger_records(dir.path / "ledger")) {
    if (r["type"] == "kmod.config" && r["op"] == "policy" && r["process"]["pid"] == getpid()) named = true;
    if (r["type"] == "gap" && r["engine"] == "kmod") gap = true;
  }
  EXPECT_TRUE(named) << "the intruder's policy change is in the ledger, with its pid";
  EXPECT_TRUE(gap) << "the restart after kill -9 is a gap record";
}

// Loading and unloading the module while a client hammers the driver: the
// client never sees an error, and after the last unload nothing is hooked.
TEST(Kmod, LoadAndUnloadUnderLoadLeaveNothingHooked) {
  ASSERT_TRUE(sh("rmmod gpugate")) << "nothing holds it between tests";
  int fd = open_ctl();
  ASSERT_GE(fd, 0);
  std::atomic<bool> stop{false};
  std::atomic<long> calls{0}, failures{0};
  std::thread client([&] {
    std::vector<uint8_t> name(68);
    while (!stop.load()) {
      if (rm_control(fd, kGetNameString, name.data(), 68) != 0) failures++;
      calls++;
    }
  });
  for (int i = 0; i < 5; i++) {
    ASSERT_TRUE(sh("insmod /modules/gpugate.ko mode=observe")) << "load " << i;
    std::this_thread::sleep_for(200ms);
    ASSERT_TRUE(sh("rmmod gpugate")) << "unload " << i;
  }
  stop = true;
  client.join();
  close(fd);
  EXPECT_GT(calls.load(), 0);
  EXPECT_EQ(failures.load(), 0) << "of " << calls.load() << " queries while the module came and went";
  std::string ftrace = enabled_functions(), kp = kprobes_list();
  for (const char* fn : {"nvidia_unlocked_ioctl", "os_memcpy_from_user", "drm_ioctl"})
    EXPECT_EQ(ftrace.find(fn), std::string::npos) << fn << " is still hooked:\n" << ftrace;
  EXPECT_EQ(kp.find("rm_ioctl"), std::string::npos) << kp;
  ASSERT_TRUE(sh("insmod /modules/gpugate.ko mode=observe"));
}
