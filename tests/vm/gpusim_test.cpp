// Inside a guest kernel with the simulated NVIDIA driver (tests/vm/gpusim)
// loaded: gpugated finds the real NVIDIA device numbers by itself, and the
// bundled client's requests are recorded with the driver's own answers
// (NV status words, read back from the structs, XFER included), while the
// driver's state shows that the commands took effect. Run by the vm suite
// "gpusim" (tools/vmtest); it needs root and the module.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <thread>

#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "gpugate/bpf_engine.hpp"

#include "daemon.hpp"
#include "drivers.hpp"
#include "gpusim_client.hpp"
#include "ia32.hpp"
#include "ledger_read.hpp"
#include "process.hpp"
#include "signing.hpp"
#include "tempdir.hpp"
#include "test_gate.hpp"
#include "wallclock.hpp"

using gpugate::test::TempDir;
using namespace std::chrono_literals;

namespace {

const std::string kBin = GG_BIN_DIR;

using gpugate::test::boot_ns;
using gpugate::test::Collector;
using gpugate::test::deciding_hook;
using gpugate::test::gate_args;
using gpugate::test::gate_kind;
using gpugate::test::GateKind;
using gpugate::test::gpu_state;
using gpugate::test::InProcessGate;
using gpugate::test::module_gates;
using gpugate::test::rm_control;
using gpugate::test::rm_denied;
using gpugate::test::run_shell;
using gpugate::test::set_power;
using gpugate::test::set_power_limit;
using gpugate::test::slurp;
using gpugate::test::spawn;
using gpugate::test::wait_exit;

}  // namespace

TEST(Gpusim, DriverNodesHaveNvidiasNumbers) {
  struct stat st {};
  ASSERT_EQ(stat("/dev/nvidiactl", &st), 0) << "is gpusim.ko loaded?";
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(major(st.st_rdev), 195u);
  EXPECT_EQ(minor(st.st_rdev), 255u);
  ASSERT_EQ(stat("/dev/nvidia0", &st), 0);
  EXPECT_EQ(minor(st.st_rdev), 0u);
}

TEST(Gpusim, RecordsCarryTheDriversAnswersAndTheStateChanges) {
  TempDir dir;
  std::string ledger = dir.path / "ledger", status = dir.path / "status.json";
  auto before = gpu_state();
  ASSERT_EQ(before["powered"], 1u);
  pid_t daemon = spawn({kBin + "/gpugated", "--ledger", ledger, "--status-file", status, "--state-dir", dir.path,
                        "--mode", "observe", "--no-pin"},
                       dir.path / "daemon.out");
  for (int i = 0; i < 400 && slurp(status).find("\"running\"") == std::string::npos; i++)
    std::this_thread::sleep_for(50ms);
  ASSERT_NE(slurp(status).find("\"running\""), std::string::npos) << slurp(dir.path / "daemon.out");
  auto st = nlohmann::json::parse(slurp(status));
  ASSERT_EQ(st["devices"].size(), 2u) << st.dump();  // discovered, not aliased
  for (const auto& d : st["devices"]) EXPECT_FALSE(d["alias"].get<bool>());
  bool vga_listed = false;  // the GPUs on the PCI bus (tests/vm/pci_test.cpp)
  for (const auto& g : st["gpus"]) vga_listed |= g["pci"] == "0000:00:02.0";
  EXPECT_TRUE(vga_listed) << st["gpus"].dump();

  pid_t client = spawn({kBin + "/gpugate-nvclient", "/dev/nvidiactl", "demo"}, dir.path / "client.out");
  ASSERT_EQ(wait_exit(client), 0) << slurp(dir.path / "client.out");
  std::this_thread::sleep_for(1500ms);
  kill(daemon, SIGTERM);
  ASSERT_EQ(wait_exit(daemon), 0) << slurp(dir.path / "daemon.out");

  auto starts = gpugate::test::ledger_records(ledger, "daemon.start");
  ASSERT_EQ(starts.size(), 1u);
  EXPECT_EQ(starts[0]["gpus"], st["gpus"]);  // recorded at start, as the status shows
  auto recs = gpugate::test::ledger_records(ledger, "ioctl");
  ASSERT_EQ(recs.size(), 10u) << gpugate::test::ledger_text(ledger);
  for (const auto& r : recs) {
    SCOPED_TRACE(r.dump());
    EXPECT_EQ(r["device"]["rdev"], "195:255");
    EXPECT_EQ(r["device"]["kind"], "nvidia-ctl");
    EXPECT_EQ(r["device"]["alias"], false);
    EXPECT_EQ(r["device"]["path"], "/dev/nvidiactl");
    EXPECT_EQ(r["result"]["ret"], 0) << "the simulated driver accepts every request of the demo";
    EXPECT_EQ(r["result"]["nv_status"], 0) << "NV_OK read back from the struct";
  }
  EXPECT_EQ(recs[5]["decoded"]["command"], "NV2080_CTRL_CMD_GPU_SET_POWER");
  EXPECT_EQ(recs[8]["decoded"]["request"], "NV_ESC_IOCTL_XFER_CMD");
  EXPECT_EQ(recs[8]["decoded"]["class"], "power.off");
  EXPECT_EQ(recs[7]["decoded"]["command"], "NV2080_CTRL_CMD_PERF_BOOST") << "a renamed request word still reaches it";

  auto after = gpu_state();
  EXPECT_EQ(after["powered"], 0u) << "GPU_SET_POWER level 4 took effect";
  EXPECT_EQ(after["power_limit_mw"], 250000u);
  EXPECT_EQ(after["rated_tdp_action"], 2u);
  EXPECT_EQ(after["boost_flags"], 2u);
  EXPECT_EQ(after["drained"], 1u);
  EXPECT_EQ(after["removed"], 1u);
  EXPECT_EQ(after["controls"] - before["controls"], 8u);
  EXPECT_EQ(after["allocs"] - before["allocs"], 1u);
}

namespace {

struct DemoRun {
  std::vector<nlohmann::json> records;
  nlohmann::json status;
  std::string client_out;
};

// gpugated in the given mode, the bundled client's demo, the ledger back.
DemoRun run_demo(const std::string& mode, const std::vector<std::string>& extra = {}) {
  TempDir dir;
  std::string ledger = dir.path / "ledger", status = dir.path / "status.json";
  std::vector<std::string> argv = {kBin + "/gpugated", "--ledger", ledger, "--status-file", status, "--state-dir",
                                   dir.path,           "--mode",   mode,   "--no-pin"};
  for (const auto& a : gate_args()) argv.push_back(a);
  argv.insert(argv.end(), extra.begin(), extra.end());
  gpugate::test::forget_module_records();
  pid_t daemon = spawn(argv, dir.path / "daemon.out");
  for (int i = 0; i < 400 && slurp(status).find("\"running\"") == std::string::npos; i++)
    std::this_thread::sleep_for(50ms);
  DemoRun run;
  EXPECT_NE(slurp(status).find("\"running\""), std::string::npos) << slurp(dir.path / "daemon.out");
  run.status = nlohmann::json::parse(slurp(status), nullptr, false);
  pid_t client = spawn({kBin + "/gpugate-nvclient", "/dev/nvidiactl", "demo"}, dir.path / "client.out");
  EXPECT_EQ(wait_exit(client), 0);
  run.client_out = slurp(dir.path / "client.out");
  std::this_thread::sleep_for(1500ms);
  kill(daemon, SIGTERM);
  EXPECT_EQ(wait_exit(daemon), 0) << slurp(dir.path / "daemon.out");
  run.records = gpugate::test::ledger_records(ledger, "ioctl");
  return run;
}

const char* kDemoClasses[] = {"resource",  "query",     "query",       "power.limit", "power.limit",
                              "power.off", "power.off", "clock.limit", "power.off",   "resource"};

}  // namespace

// The gate: unsigned power-off and throttle commands are refused before
// they act (the LSM: EPERM; the module: as the driver refuses, status
// NV_ERR_INSUFFICIENT_PERMISSIONS), in every form (direct, XFER-wrapped,
// renamed request word), and leave the GPU as it was; queries and
// bookkeeping pass.
TEST(Gate, EnforceDeniesUnsignedGatedCommandsAndLeavesTheGpuAlone) {
  auto before = gpu_state();
  auto run = run_demo("enforce");
  EXPECT_EQ(run.status["mode"], "enforce") << run.status.dump();
  if (gate_kind() != GateKind::kKmod) {
    bool fexit = false;
    for (const auto& h : run.status["hooks"]) fexit |= h["hook"] == "fexit/__x64_sys_ioctl" && h["attached"] == true;
    EXPECT_TRUE(fexit) << "with the LSM gate, results come from fexit, not a syscall tracepoint: " << run.status.dump();
  }
  ASSERT_EQ(run.records.size(), 10u) << run.client_out;
  for (size_t i = 0; i < run.records.size(); i++) {
    const auto& r = run.records[i];
    SCOPED_TRACE(r.dump());
    EXPECT_EQ(r["decoded"]["class"], kDemoClasses[i]);
    EXPECT_TRUE(deciding_hook(r["hook"]));
    EXPECT_EQ(r["mode"], "enforce");
    bool gated = r["rule"]["action"] == "require-signature";
    if (gated && module_gates()) {
      EXPECT_EQ(r["verdict"], "denied");
      EXPECT_EQ(r["result"]["ret"], 0) << "refused as the driver refuses";
      EXPECT_EQ(r["result"]["nv_status"], 0x1B);
    } else if (gated) {
      EXPECT_EQ(r["verdict"], "denied");
      EXPECT_EQ(r["result"]["ret"], -1);
      EXPECT_EQ(r["result"]["error"]["name"], "EPERM");
    } else {
      EXPECT_EQ(r["verdict"], "allowed");
      EXPECT_EQ(r["result"]["ret"], 0);
      EXPECT_EQ(r["result"]["nv_status"], 0);
    }
  }
  auto after = gpu_state();
  for (const char* k :
       {"powered", "power_level", "power_limit_mw", "rated_tdp_action", "boost_flags", "drained", "removed"})
    EXPECT_EQ(after[k], before[k]) << k << " changed although the command was denied";
  EXPECT_EQ(after["controls"] - before["controls"], 2u) << "only the two queries reached the driver";
  EXPECT_EQ(after["allocs"] - before["allocs"], 1u);
}

TEST(Gate, MonitorLetsThroughAndRecordsWouldDeny) {
  auto before = gpu_state();
  auto run = run_demo("monitor");
  EXPECT_EQ(run.status["mode"], "monitor");
  ASSERT_EQ(run.records.size(), 10u) << run.client_out;
  for (const auto& r : run.records) {
    SCOPED_TRACE(r.dump());
    bool gated = r["rule"]["action"] == "require-signature";
    EXPECT_EQ(r["verdict"], gated ? "would-deny" : "allowed");
    EXPECT_EQ(r["result"]["ret"], 0);
  }
  auto after = gpu_state();
  EXPECT_EQ(after["controls"] - before["controls"], 8u);
}

// A policy file changes what the gate lets through: power limits logged,
// power-off still gated.
TEST(Gate, PolicyFileDecidesPerClass) {
  TempDir dir;
  std::string policy = dir.path / "policy.toml";
  std::ofstream(policy) << "version = 1\n[classes]\n\"power.limit\" = \"log\"\n";
  auto before = gpu_state();
  auto run = run_demo("enforce", {"--policy", policy});
  ASSERT_EQ(run.records.size(), 10u) << run.client_out;
  for (const auto& r : run.records) {
    SCOPED_TRACE(r.dump());
    EXPECT_EQ(r["rule"]["source"], policy);
    if (r["decoded"]["class"] == "power.limit") {
      EXPECT_EQ(r["verdict"], "allowed");
      EXPECT_EQ(r["result"]["ret"], 0);
    }
    if (r["decoded"]["class"] == "power.off") EXPECT_EQ(r["verdict"], "denied");
  }
  auto after = gpu_state();
  EXPECT_EQ(after["power_limit_mw"], 250000u) << "the logged power-limit command reached the driver";
  EXPECT_EQ(after["powered"], before["powered"]) << "power-off stayed gated";
}

// A grant allows exactly its device, class, uses and window.
TEST(Gate, GrantAllowsExactlyItsScope) {
  InProcessGate engine;  // enforce
  ASSERT_TRUE(engine.ok) << engine.error;
  int fd = open("/dev/nvidiactl", O_RDWR);
  ASSERT_GE(fd, 0);
  uint32_t ctl = gpugate::kernel_dev(195, 255), gpu0 = gpugate::kernel_dev(195, 0);
  uint64_t now = boot_ns(), minute = 60'000'000'000ull;

  EXPECT_EQ(set_power(fd, 0), rm_denied()) << "no grant";

  auto wrong_class = engine.install_grant({{ctl}, GG_CLASS_POWER_LIMIT, now, now + minute, 5, 0});
  ASSERT_TRUE(wrong_class.ok()) << wrong_class.error().message;
  EXPECT_EQ(set_power(fd, 0), rm_denied()) << "a power.limit grant does not allow power.off";

  auto wrong_node = engine.install_grant({{gpu0}, GG_CLASS_POWER_OFF, now, now + minute, 5, 0});
  ASSERT_TRUE(wrong_node.ok());
  EXPECT_EQ(set_power(fd, 0), rm_denied()) << "a grant on nvidia0 does not allow a command through nvidiactl";

  // A window that ended long ago, whatever the uptime: the first two
  // nanoseconds after boot.
  auto expired = engine.install_grant({{ctl}, GG_CLASS_POWER_OFF, 1, 2, 5, 0});
  ASSERT_TRUE(expired.ok());
  EXPECT_EQ(set_power(fd, 0), rm_denied()) << "an expired grant";

  auto later = engine.install_grant({{ctl}, GG_CLASS_POWER_OFF, now + minute, now + 2 * minute, 5, 0});
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(set_power(fd, 0), rm_denied()) << "a grant not valid yet";

  auto two = engine.install_grant({{ctl}, GG_CLASS_POWER_OFF, now, now + minute, 2, 0});
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(set_power(fd, 0), 0) << "first use: NV_OK from the driver";
  EXPECT_EQ(set_power(fd, 0), 0) << "second use";
  EXPECT_EQ(set_power(fd, 0), rm_denied()) << "uses spent";

  auto revoked = engine.install_grant({{ctl}, GG_CLASS_POWER_OFF, now, now + minute, 5, 0});
  ASSERT_TRUE(revoked.ok());
  ASSERT_TRUE(engine.revoke_grant(*revoked).ok());
  EXPECT_EQ(set_power(fd, 0), rm_denied()) << "a revoked grant";
  EXPECT_FALSE(engine.revoke_grant(*revoked).ok());

  auto bad = engine.install_grant({{gpugate::kernel_dev(1, 3)}, GG_CLASS_POWER_OFF, now, now + minute, 1, 0});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("no such GPU device"), std::string::npos);
  auto ungated = engine.install_grant({{ctl}, GG_CLASS_QUERY, now, now + minute, 1, 0});
  ASSERT_FALSE(ungated.ok());

  // The records say which grant allowed what.
  std::vector<uint32_t> grant_ids;
  int denied = 0;
  for (const auto& e : engine.records()) {
    if (e.verdict == GG_VERDICT_DENY) denied++;
    if (e.verdict == GG_VERDICT_ALLOW) grant_ids.push_back(e.grant_id);
  }
  EXPECT_EQ(denied, 7);
  EXPECT_EQ(grant_ids, (std::vector<uint32_t>{*two, *two}));
  close(fd);
}

// disk_full_action deny-gated: while gpugated cannot write its ledger it sets
// GG_POLF_LEDGER_DOWN, and the gate refuses a gated command even where a live
// grant covers it (reason ledger-down), without spending the grant's use;
// cleared, the grant allows. The daemon's side (the outage noticed, the flag
// set and cleared, the gap record) is the host venue's LedgerFault.*.
TEST(Gate, WhileTheLedgerCannotBeWrittenGatedCommandsAreDeniedGrantOrNot) {
  InProcessGate engine;  // enforce
  ASSERT_TRUE(engine.ok) << engine.error;
  int fd = open("/dev/nvidiactl", O_RDWR);
  ASSERT_GE(fd, 0);
  uint32_t ctl = gpugate::kernel_dev(195, 255);
  uint64_t now = boot_ns(), minute = 60'000'000'000ull;
  auto one = engine.install_grant({{ctl}, GG_CLASS_POWER_OFF, now, now + minute, 1, 0});
  ASSERT_TRUE(one.ok()) << one.error().message;

  gg_policy down = gpugate::default_policy(GG_MODE_ENFORCE);
  down.flags |= GG_POLF_LEDGER_DOWN;
  ASSERT_TRUE(engine.set_policy(down).ok());
  EXPECT_EQ(set_power(fd, 0), rm_denied()) << "granted, but nothing could record it";
  EXPECT_EQ(set_power(fd, 0), rm_denied());

  ASSERT_TRUE(engine.set_policy(gpugate::default_policy(GG_MODE_ENFORCE)).ok());
  EXPECT_EQ(set_power(fd, 0), 0) << "the ledger takes records again: the grant's one use is still there";
  EXPECT_EQ(set_power(fd, 0), rm_denied()) << "and now it is spent";
  close(fd);

  std::vector<std::pair<unsigned, unsigned>> seen;  // verdict, reason
  uint32_t allowed_by = 0;
  for (const auto& e : engine.records()) {
    if (e.dec.cls != GG_CLASS_POWER_OFF) continue;
    seen.emplace_back(e.verdict, e.reason);
    if (e.verdict == GG_VERDICT_ALLOW) allowed_by = e.grant_id;
  }
  std::vector<std::pair<unsigned, unsigned>> want = {{GG_VERDICT_DENY, GG_WHY_LEDGER_DOWN},
                                                     {GG_VERDICT_DENY, GG_WHY_LEDGER_DOWN},
                                                     {GG_VERDICT_ALLOW, GG_WHY_GRANT},
                                                     {GG_VERDICT_DENY, GG_WHY_CLASS}};
  EXPECT_EQ(seen, want);
  EXPECT_EQ(allowed_by, *one);
}

using gpugate::test::start_daemon;

// A wall-clock jump, an hour back then two ahead: a grant's window is on the
// boot clock, so its uses are neither lost nor gained; the gate's records
// keep the boot clock's order.
TEST(Gate, AWallClockJumpChangesNoGrant) {
  InProcessGate engine;  // enforce
  ASSERT_TRUE(engine.ok) << engine.error;
  int fd = open("/dev/nvidiactl", O_RDWR);
  ASSERT_GE(fd, 0);
  uint64_t now = boot_ns(), minute = 60'000'000'000ull;
  auto three =
      engine.install_grant({{gpugate::kernel_dev(195, 255)}, GG_CLASS_POWER_OFF, now, now + 10 * minute, 3, 0});
  ASSERT_TRUE(three.ok()) << three.error().message;
  gpugate::test::WallClockShift shift;
  EXPECT_EQ(set_power(fd, 0), 0);
  ASSERT_TRUE(shift.by(-3600)) << std::strerror(errno);
  EXPECT_EQ(set_power(fd, 0), 0) << "an hour back";
  ASSERT_TRUE(shift.by(7200)) << std::strerror(errno);
  EXPECT_EQ(set_power(fd, 0), 0) << "an hour ahead";
  EXPECT_EQ(set_power(fd, 0), rm_denied()) << "three uses, spent";
  close(fd);
  uint64_t last = 0;
  int n = 0;
  for (const auto& e : engine.records()) {
    if (e.dec.cls != GG_CLASS_POWER_OFF) continue;
    EXPECT_GT(e.hdr.boot_ns, last) << "record " << n;
    last = e.hdr.boot_ns;
    n++;
  }
  EXPECT_EQ(n, 4);
}

// The same jumps under gpugated: the ledger keeps seq and boot-clock order,
// its wall times show the jumps as they happened, and it verifies.
TEST(Gate, AWallClockJumpKeepsTheLedgersOrder) {
  TempDir dir;
  int fd = open("/dev/nvidiactl", O_RDWR);
  ASSERT_GE(fd, 0);
  // Not pinned, and the module released after: a gate left in force would
  // deny the next tests' commands.
  pid_t daemon = start_daemon(dir, {"--mode", "enforce", "--no-pin"}, "daemon.out");
  gpugate::test::WallClockShift shift;
  // The daemon looks at the wall clock every second: each step is waited
  // for in the ledger (two minutes as the upper bound, never a pace).
  auto jumps_recorded = [&](size_t n) {
    for (auto end = std::chrono::steady_clock::now() + 120s; std::chrono::steady_clock::now() < end;
         std::this_thread::sleep_for(50ms))
      if (gpugate::test::ledger_records(dir.path / "ledger", "clock.jump").size() >= n) return true;
    return false;
  };
  EXPECT_EQ(set_power(fd, 5), rm_denied());
  ASSERT_TRUE(shift.by(-3600)) << std::strerror(errno);
  ASSERT_TRUE(jumps_recorded(1)) << slurp(dir.path / "daemon.out");
  EXPECT_EQ(set_power(fd, 5), rm_denied());
  ASSERT_TRUE(shift.by(7200)) << std::strerror(errno);
  ASSERT_TRUE(jumps_recorded(2)) << slurp(dir.path / "daemon.out");
  EXPECT_EQ(set_power(fd, 5), rm_denied());
  close(fd);
  kill(daemon, SIGTERM);
  EXPECT_EQ(wait_exit(daemon), 0) << slurp(dir.path / "daemon.out");
  gpugate::test::release_module();
  shift.restore();
  // seq is the order of writing. boottime_ns is when each thing happened:
  // an ioctl's is its entry, and its record is written at its exit, so a
  // daemon record written while a call was in flight may precede it. Per
  // kind, the boot clock never goes back.
  std::vector<nlohmann::json> mine;
  auto all = gpugate::test::ledger_records(dir.path / "ledger");
  uint64_t last_event = 0, last_mine = 0;
  for (size_t i = 0; i < all.size(); i++) {
    if (i) EXPECT_EQ(all[i]["seq"], all[i - 1]["seq"].get<uint64_t>() + 1);
    uint64_t boot = all[i]["boottime_ns"].get<uint64_t>();
    if (all[i]["type"] == "ioctl" && all[i]["process"]["pid"] == getpid()) {
      EXPECT_GT(boot, last_mine) << all[i].dump();
      last_mine = boot;
      mine.push_back(all[i]);
    } else if (all[i]["type"] != "ioctl") {
      EXPECT_GE(boot, last_event) << all[i].dump();
      last_event = boot;
    }
  }
  ASSERT_EQ(mine.size(), 3u);
  auto real = [&](size_t i) { return mine[i]["realtime_ns"].get<int64_t>(); };
  EXPECT_LT(real(1), real(0)) << "the wall clock went back an hour";
  EXPECT_GT(real(2), real(0) + 3'000'000'000'000ll) << "and then an hour past the start";
  auto jumps = gpugate::test::ledger_records(dir.path / "ledger", "clock.jump");
  ASSERT_EQ(jumps.size(), 2u);
  for (size_t j = 0; j < 2; j++) {
    EXPECT_GT(jumps[j]["seen_boottime_ns"].get<uint64_t>(), mine[j]["boottime_ns"].get<uint64_t>())
        << "seen after the call that preceded the step";
    EXPECT_LT(jumps[j]["seen_boottime_ns"].get<uint64_t>(), mine[j + 1]["boottime_ns"].get<uint64_t>())
        << "and before the call that waited for it";
  }
  EXPECT_LT(jumps[0]["delta_ns"].get<int64_t>(), -3'500'000'000'000ll);
  EXPECT_GT(jumps[1]["delta_ns"].get<int64_t>(), 7'100'000'000'000ll);
  auto verify = gpugate::test::run_shell(kBin + "/gpugate log verify " + (dir.path / "ledger").string());
  EXPECT_EQ(verify.status, 0) << verify.output;
}

// Pinned: the gate outlives its daemon (kill -9 included), and the next
// daemon takes it over without a window, recording the gap.
TEST(Gate, KillNineLeavesEnforcementAndARestartTakesOverWithAGapRecord) {
  const std::string pin = "/sys/fs/bpf/gg-test-pin";
  ASSERT_TRUE(gpugate::unload_pinned(pin).ok());
  TempDir dir;
  std::vector<std::string> args = {"--mode", "enforce", "--pin-dir", pin};
  int fd = open("/dev/nvidiactl", O_RDWR);
  ASSERT_GE(fd, 0);
  auto before = gpu_state();

  pid_t first = start_daemon(dir, args, "first.out");
  EXPECT_EQ(set_power(fd, 5), -EPERM);
  // Recorded before the kill: waited for in the ledger (two minutes is an
  // upper bound on a slow guest, never a pace).
  auto recorded_before = [&] {
    for (const auto& r : gpugate::test::ledger_records(dir.path / "ledger", "ioctl"))
      if (r["process"]["pid"] == getpid()) return true;
    return false;
  };
  for (auto end = std::chrono::steady_clock::now() + 120s;
       !recorded_before() && std::chrono::steady_clock::now() < end;)
    std::this_thread::sleep_for(50ms);
  ASSERT_TRUE(recorded_before()) << slurp(dir.path / "first.out");
  kill(first, SIGKILL);
  wait_exit(first);

  EXPECT_EQ(set_power(fd, 5), -EPERM) << "no daemon, and the gate still denies";
  EXPECT_EQ(set_power(fd, 5), -EPERM);
  EXPECT_EQ(gpu_state()["power_level"], before["power_level"]);

  pid_t second = start_daemon(dir, args, "second.out");
  auto status = nlohmann::json::parse(slurp(dir.path / "status.json"));
  bool taken_over = false;
  for (const auto& h : status["hooks"])
    taken_over |=
        h["hook"] == "lsm.s/file_ioctl" &&
        h["detail"].get<std::string>().find("taken over from pid " + std::to_string(first)) != std::string::npos;
  EXPECT_TRUE(taken_over) << status.dump();
  EXPECT_EQ(set_power(fd, 5), -EPERM);
  std::this_thread::sleep_for(500ms);
  kill(second, SIGTERM);
  EXPECT_EQ(wait_exit(second), 0) << slurp(dir.path / "second.out");
  EXPECT_EQ(set_power(fd, 5), -EPERM) << "a clean stop leaves the pinned gate in force too";

  auto lines = gpugate::test::ledger_records(dir.path / "ledger");
  ASSERT_FALSE(lines.empty());
  ASSERT_EQ(lines.size(), gpugate::test::ledger_lines(dir.path / "ledger").size()) << "every line is a record";
  for (size_t i = 1; i < lines.size(); i++)
    EXPECT_EQ(lines[i]["seq"].get<uint64_t>(), lines[i - 1]["seq"].get<uint64_t>() + 1)
        << "one sequence across daemons";
  size_t gap_at = lines.size();
  for (size_t i = 0; i < lines.size(); i++)
    if (lines[i]["type"] == "gap" &&
        lines[i]["reason"].get<std::string>().find("daemon restart") != std::string::npos) {
      gap_at = i;
      EXPECT_EQ(lines[i]["previous_pid"], first);
      EXPECT_EQ(lines[i]["lost_records"], 0);
      EXPECT_GT(lines[i]["down_ns"].get<uint64_t>(), 0u);
    }
  ASSERT_LT(gap_at, lines.size()) << "no restart gap record";
  std::vector<size_t> mine;
  for (size_t i = 0; i < lines.size(); i++)
    if (lines[i]["type"] == "ioctl" && lines[i]["process"]["pid"] == getpid()) {
      mine.push_back(i);
      EXPECT_EQ(lines[i]["verdict"], "denied") << lines[i].dump();
      EXPECT_EQ(lines[i]["decoded"]["class"], "power.off");
    }
  ASSERT_EQ(mine.size(), 4u) << "every denied call recorded, those made while no daemon ran included";
  EXPECT_LT(mine[0], gap_at);
  EXPECT_GT(mine[1], gap_at) << "calls made while down follow the gap record";

  // --unload is the one way the gate ends, and it is recorded.
  pid_t unload = spawn(
      {kBin + "/gpugated", "--unload", "--pin-dir", pin, "--ledger", dir.path / "ledger", "--state-dir", dir.path},
      dir.path / "unload.out");
  ASSERT_EQ(wait_exit(unload), 0) << slurp(dir.path / "unload.out");
  EXPECT_FALSE(std::filesystem::exists(pin));
  EXPECT_EQ(set_power(fd, 0), 0) << "unloaded: the driver answers again";
  auto after = gpugate::test::ledger_records(dir.path / "ledger");
  ASSERT_GE(after.size(), 2u);
  EXPECT_EQ(after[after.size() - 2]["type"], "gate.unloaded");
  EXPECT_EQ(after.back()["type"], "checkpoint") << "the unload record is signed at once";
  close(fd);
}

using gpugate::test::ioctl_ia32;

// 32-bit callers meet the same gate (lsm/file_ioctl_compat, or file_ioctl on
// kernels whose compat path calls it).
TEST(Gate, ThirtyTwoBitCallersAreGatedTheSame) {
  InProcessGate engine;  // enforce, not pinned
  ASSERT_TRUE(engine.ok) << engine.error;
  int fd = open("/dev/nvidiactl", O_RDWR);
  ASSERT_GE(fd, 0);
  uint8_t* page = gpugate::test::low_page();  // below 4 GiB, where a 32-bit pointer reaches
  ASSERT_NE(page, nullptr);
  auto* params = reinterpret_cast<uint32_t*>(page + 256);
  auto* c = reinterpret_cast<gpugate::test::Nvos54*>(page);
  auto before = gpu_state();
  auto issue = [&] {
    int r = static_cast<int>(ioctl_ia32(fd, 0xC020462A, static_cast<uint32_t>(reinterpret_cast<uintptr_t>(c))));
    return r < 0 ? r : static_cast<int>(c->status);
  };

  params[0] = 0, params[1] = 5, params[2] = 0;
  *c = {0xc1d00001, 0xcaf00001, 0x20800112, 0, reinterpret_cast<uint64_t>(params), 12, 0};
  EXPECT_EQ(issue(), rm_denied()) << "GPU_SET_POWER from a 32-bit caller";
  EXPECT_EQ(gpu_state()["power_level"], before["power_level"]);

  params[0] = 0;
  *c = {0xc1d00001, 0xcaf00001, 0x2080205A, 0, reinterpret_cast<uint64_t>(params), 4, 0xffff};
  EXPECT_EQ(issue(), 0) << "a query passes, NV_OK from the driver";

  auto recs = engine.records();
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].verdict, GG_VERDICT_DENY);
  EXPECT_EQ(recs[0].dec.cls, GG_CLASS_POWER_OFF);
  EXPECT_EQ(recs[1].verdict, GG_VERDICT_ALLOW);
  if (module_gates()) {
    EXPECT_EQ(recs[0].hook, GG_HOOK_KMOD_OS_MEMCPY) << "the module sees every caller at the driver's copy";
  } else {
    bool compat_hook = false;
    for (const auto& h : engine.hooks) compat_hook |= h.name == "lsm/file_ioctl_compat" && h.attached;
    EXPECT_EQ(recs[0].hook, compat_hook ? GG_HOOK_LSM_IOCTL_COMPAT : GG_HOOK_LSM_IOCTL);
  }
  munmap(page, 4096);
  close(fd);
}

namespace {

struct DumbCreate {
  uint32_t height, width, bpp, flags, handle, pitch;
  uint64_t size;
};
constexpr unsigned long kDrmCreateDumb = 0xC02064B2;  // DRM_IOWR(0xb2, struct drm_mode_create_dumb)
constexpr unsigned long kDrmGetCap = 0xC010640C;      // DRM_IOWR(0x0c, struct drm_get_cap)

int create_dumb(int fd) {
  DumbCreate d{4, 4, 32, 0, 0, 0, 0};
  return ioctl(fd, kDrmCreateDumb, &d) < 0 ? -errno : 0;
}

}  // namespace

// A policy rule gates a DRM command on vgem's node only: the same command
// elsewhere, and other commands on vgem, are untouched.
TEST(Gate, ARuleGatesADrmCommandOnVgemOnly) {
  gpugate::test::GuestDriver vgem("/modules/drm", "vgem", "/dev/dri/card0");
  ASSERT_TRUE(vgem.loaded) << vgem.error;
  ASSERT_TRUE(std::filesystem::exists("/dev/dri/card0"));
  TempDir dir;
  std::string policy = dir.path / "policy.toml";
  std::ofstream(policy) << "version = 1\n[[rules]]\nname = \"no buffers on virtual GPUs\"\nclass = \"resource\"\n"
                           "vendor = \"other\"\naction = \"deny\"\n";
  int card = open("/dev/dri/card0", O_RDWR);
  ASSERT_GE(card, 0);
  ASSERT_EQ(create_dumb(card), 0) << "vgem makes dumb buffers without the gate";

  pid_t daemon = start_daemon(dir, {"--mode", "enforce", "--no-pin", "--policy", policy}, "daemon.out");
  auto status = nlohmann::json::parse(slurp(dir.path / "status.json"));
  bool watched = false;
  for (const auto& d : status["devices"]) watched |= d["path"] == "/dev/dri/card0";
  EXPECT_TRUE(watched) << "gpugated finds vgem's card: " << status.dump();

  EXPECT_EQ(create_dumb(card), -EPERM) << "the rule denies it on vgem";
  uint64_t cap[2] = {6 /* DRM_CAP_TIMESTAMP_MONOTONIC */, 0};
  EXPECT_EQ(ioctl(card, kDrmGetCap, cap), 0) << "a query on the same node passes: " << std::strerror(errno);
  EXPECT_EQ(cap[1], 1u);
  int null_fd = open("/dev/null", O_RDWR);
  DumbCreate d{4, 4, 32, 0, 0, 0, 0};
  EXPECT_EQ(ioctl(null_fd, kDrmCreateDumb, &d), -1);
  EXPECT_EQ(errno, ENOTTY) << "the same request word on a non-GPU node: the kernel's own answer";
  close(null_fd);
  int ctl = open("/dev/nvidiactl", O_RDWR);
  struct {
    uint32_t root, parent, object, cls;
    uint64_t params;
    uint32_t size, status;
  } alloc{0, 0, 0xc1d0beef, 0x41 /* NV01_ROOT_CLIENT */, 0, 0, 0};
  EXPECT_EQ(ioctl(ctl, 0xC020462B, &alloc), 0) << "NVIDIA resource commands are another vendor's: untouched";
  close(ctl);
  std::this_thread::sleep_for(500ms);
  kill(daemon, SIGTERM);
  EXPECT_EQ(wait_exit(daemon), 0) << slurp(dir.path / "daemon.out");
  gpugate::test::release_module();  // the module's gate outlives its daemon until --unload
  EXPECT_EQ(create_dumb(card), 0) << "the denial was the gate's";
  close(card);

  int denied = 0;
  for (const auto& r : gpugate::test::ledger_records(dir.path / "ledger")) {
    if (r["type"] != "ioctl" || r["process"]["pid"] != getpid()) continue;
    if (r["device"]["path"] == "/dev/dri/card0" && r["decoded"]["command"] == "DRM_IOCTL_MODE_CREATE_DUMB") {
      denied++;
      EXPECT_EQ(r["verdict"], "denied");
      EXPECT_EQ(r["rule"]["name"], "no buffers on virtual GPUs") << r.dump();
      EXPECT_EQ(r["rule"]["rule"], 1);
    } else {
      EXPECT_EQ(r["verdict"], "allowed") << r.dump();
    }
  }
  EXPECT_EQ(denied, 1);
}

// Signed with stock ssh-keygen, submitted through the control socket: the
// power-limit change passes exactly as scoped (GPU, class, one use), while
// its unsigned twin, a second use and another class are denied.
TEST(Gate, ASignedPowerLimitPassesExactlyAsScopedAndTheUnsignedTwinIsDenied) {
  TempDir dir;
  auto p = [&](const std::string& n) { return (dir.path / n).string(); };
  gpugate::test::Signer alice{dir.path};
  ASSERT_NO_FATAL_FAILURE(alice.setup());
  pid_t daemon = start_daemon(
      dir, {"--mode", "enforce", "--no-pin", "--policy", p("policy.toml"), "--control-socket", p("ctl.sock")},
      "daemon.out");
  int fd = open("/dev/nvidiactl", O_RDWR);
  ASSERT_GE(fd, 0);
  uint32_t before = static_cast<uint32_t>(gpu_state()["power_limit_mw"]), wanted = before + 1000;

  EXPECT_EQ(set_power_limit(fd, wanted), rm_denied()) << "unsigned";
  EXPECT_EQ(gpu_state()["power_limit_mw"], before);

  ASSERT_NO_FATAL_FAILURE(
      alice.grant(kBin, p("ctl.sock"), "--gpu 0 --class power.limit --param power_limit_mw=" + std::to_string(wanted)));

  EXPECT_EQ(set_power(fd, 5), rm_denied()) << "the grant is for power.limit, not power.off";
  EXPECT_EQ(set_power_limit(fd, wanted), 0) << "signed: NV_OK from the driver";
  EXPECT_EQ(gpu_state()["power_limit_mw"], wanted);
  EXPECT_EQ(set_power_limit(fd, wanted + 1), rm_denied()) << "one use only";
  EXPECT_EQ(gpu_state()["power_limit_mw"], wanted);
  close(fd);
  std::this_thread::sleep_for(500ms);
  kill(daemon, SIGTERM);
  EXPECT_EQ(wait_exit(daemon), 0) << slurp(p("daemon.out"));

  int allowed = 0, denied = 0;
  for (const auto& r : gpugate::test::ledger_records(p("ledger"))) {
    if (r["type"] != "ioctl" || r["process"]["pid"] != getpid()) continue;
    if (r["verdict"] == "allowed" && !r["grant"].is_null()) allowed++;
    if (r["verdict"] == "denied") denied++;
  }
  EXPECT_EQ(allowed, 1);
  EXPECT_EQ(denied, 3);
}

// perf.state and gpu.reset are gated like power and clocks; a grant for one
// class lets exactly that class through.
TEST(Gate, PerfStateAndResetCommandsAreGatedToo) {
  InProcessGate engine;  // enforce, not pinned
  ASSERT_TRUE(engine.ok) << engine.error;
  int fd = open("/dev/nvidiactl", O_RDWR);
  ASSERT_GE(fd, 0);
  auto before = gpu_state();
  uint32_t state = before["perf_state"] + 3;
  EXPECT_EQ(rm_control(fd, 0x2080205B, &state, 4), rm_denied()) << "PERF_SET_POWERSTATE";
  EXPECT_EQ(rm_control(fd, 0x208001A9, nullptr, 0), rm_denied()) << "GPU_MARK_DEVICE_FOR_RESET";
  uint32_t read_back = 0xffff;
  EXPECT_EQ(rm_control(fd, 0x2080205A, &read_back, 4), 0) << "PERF_GET_POWERSTATE, a query, passes";
  EXPECT_EQ(read_back, before["perf_state"]);
  auto after = gpu_state();
  EXPECT_EQ(after["perf_state"], before["perf_state"]);
  EXPECT_EQ(after["reset_pending"], before["reset_pending"]);

  uint32_t ctl = gpugate::kernel_dev(195, 255);
  uint64_t now = boot_ns(), minute = 60'000'000'000ull;
  ASSERT_TRUE(engine.install_grant({{ctl}, GG_CLASS_GPU_RESET, now, now + minute, 1, 0, 0}).ok());
  EXPECT_EQ(rm_control(fd, 0x2080205B, &state, 4), rm_denied()) << "a gpu.reset grant is not a perf.state grant";
  EXPECT_EQ(rm_control(fd, 0x208001A9, nullptr, 0), 0) << "granted: NV_OK";
  EXPECT_EQ(gpu_state()["reset_pending"], 1u);

  // A grant for one signed parameter value: GPU_SET_POWER newLevel=5 only.
  auto level = gpugate::key_param_refs("newLevel");
  ASSERT_EQ(level.size(), 1u);
  gpugate::Grant only5{{ctl}, GG_CLASS_POWER_OFF, now, now + minute, 2, 0, 0};
  only5.pkind = level[0].pkind;
  only5.key_index = level[0].index;
  only5.key_value = 5;
  ASSERT_TRUE(engine.install_grant(only5).ok());
  EXPECT_EQ(set_power(fd, 6), rm_denied()) << "newLevel=6 was not signed";
  EXPECT_EQ(gpu_state()["power_level"], before["power_level"]);
  EXPECT_EQ(set_power(fd, 5), 0) << "newLevel=5 was";
  EXPECT_EQ(gpu_state()["power_level"], 5u);
  close(fd);
}
