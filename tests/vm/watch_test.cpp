// The GPU state watcher in a guest, against the simulated driver: firmware
// (gpusim's test knob) changes the GPU behind the gate and gpugated says
// nothing explains it; a signed command's change is explained and linked to
// its record; a thermal throttle is reported as the hardware protecting
// itself. docs/watch.md.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

#include "daemon.hpp"
#include "gpusim_client.hpp"
#include "ledger_read.hpp"
#include "process.hpp"
#include "signing.hpp"
#include "tempdir.hpp"
#include "test_gate.hpp"

namespace {

using gpugate::test::boot_ns;
using gpugate::test::gpu_state;
using gpugate::test::rm_denied;
using gpugate::test::set_power_limit;
using gpugate::test::slurp;
using gpugate::test::start_daemon;
using gpugate::test::TempDir;
using gpugate::test::wait_exit;
using nlohmann::json;
using namespace std::chrono_literals;

const std::string kBin = GG_BIN_DIR;
constexpr uint64_t kIntervalMs = 200;

std::string gpusim_pci() {
  std::string pci = slurp("/sys/module/gpusim/parameters/pci");
  while (!pci.empty() && pci.back() == '\n') pci.pop_back();
  return pci;
}

// The firmware test knob: "KEY VALUE".
void firmware(const std::string& what) {
  std::ofstream f("/sys/class/gpusim/nvidiactl/firmware");
  f << what;
  f.flush();
  ASSERT_TRUE(f.good()) << "firmware " << what;
}

// Puts back what firmware changed, whatever the test's outcome.
struct RestoreGpusim {
  std::map<std::string, uint64_t> before = gpu_state();
  ~RestoreGpusim() {
    for (const char* key : {"power_limit_mw", "sm_clock_max_mhz", "sm_clock_mhz", "powered", "clock_event_reasons"})
      std::ofstream("/sys/class/gpusim/nvidiactl/firmware") << key << " " << before[key];
  }
};

// The first ledger record that pred accepts, waiting for it (the daemon
// writes as it goes); null after a minute.
json wait_record(const std::filesystem::path& ledger, const std::function<bool(const json&)>& pred) {
  for (int i = 0; i < 600; i++) {
    for (const auto& r : gpugate::test::ledger_records(ledger))
      if (pred(r)) return r;
    std::this_thread::sleep_for(100ms);
  }
  return nullptr;
}

std::function<bool(const json&)> state_record(const std::string& type, const std::string& pci,
                                              const std::string& field) {
  return [=](const json& r) { return r["type"] == type && r["gpu"]["pci"] == pci && r["field"] == field; };
}

json record_at(const std::filesystem::path& ledger, uint64_t seq) {
  for (const auto& r : gpugate::test::ledger_records(ledger))
    if (r["seq"] == seq) return r;
  return nullptr;
}

// One unexplained change: its values, its sample, and a window that holds
// the write. written_ns is taken before the write: a round's time is taken
// after its reads, so the round that read the new value ends after it, and
// the round before (which read the old value) is the window's start.
void expect_unexplained(const std::filesystem::path& ledger, const std::string& pci, const std::string& field,
                        const json& before, const json& after, uint64_t written_ns) {
  json u = wait_record(ledger, state_record("state.unexplained", pci, field));
  ASSERT_FALSE(u.is_null()) << "no state.unexplained for " << field;
  EXPECT_EQ(u["before"], before) << u.dump();
  EXPECT_EQ(u["after"], after) << u.dump();
  EXPECT_TRUE(u["candidates"].is_array());
  EXPECT_NE(u["note"].get<std::string>().find("behind the gate"), std::string::npos);
  uint64_t to = u["window"]["to_boottime_ns"], from = u["window"]["from_boottime_ns"];
  uint64_t previous_round = from + u["window"]["window_ms"].get<uint64_t>() * 1000000;
  EXPECT_GT(to, written_ns) << "seen by a round after the write: " << u.dump();
  EXPECT_LT(previous_round, to) << u.dump();
  EXPECT_LT(from, written_ns) << "the window searched for a command holds the write: " << u.dump();
  json sample = record_at(ledger, u["sample_seq"]);
  ASSERT_FALSE(sample.is_null());
  EXPECT_EQ(sample["type"], "state.sample");
  EXPECT_NE(std::find(sample["changed"].begin(), sample["changed"].end(), field), sample["changed"].end());
}

TEST(Watch, FirmwareChangesBehindTheGateAreUnexplainedAndAThermalThrottleIsHardwareProtection) {
  TempDir dir;
  RestoreGpusim restore;
  std::string pci = gpusim_pci();
  auto ledger = dir.path / "ledger";
  pid_t daemon = start_daemon(
      dir, {"--mode", "enforce", "--no-pin", "--watch", "on", "--watch-interval-ms", std::to_string(kIntervalMs)},
      "daemon.out");
  json start = wait_record(ledger, [&](const json& r) {
    return r["type"] == "state.sample" && r["gpu"]["pci"] == pci && r["reason"] == "start";
  });
  ASSERT_FALSE(start.is_null()) << slurp(dir.path / "daemon.out");
  EXPECT_EQ(start["values"]["power.limit_mw"], restore.before["power_limit_mw"]);
  EXPECT_EQ(start["values"]["pci.present"], true);

  uint64_t limit = restore.before["power_limit_mw"], max_mhz = restore.before["sm_clock_max_mhz"];
  uint64_t written = boot_ns();
  firmware("power_limit_mw " + std::to_string(limit / 2));  // whatever earlier tests set, halved
  expect_unexplained(ledger, pci, "power.limit_mw", limit, limit / 2, written);
  written = boot_ns();
  firmware("sm_clock_max_mhz 600");
  expect_unexplained(ledger, pci, "clocks.sm_max_mhz", max_mhz, 600, written);
  // Earlier tests in the boot may have left it off (GPU_SET_POWER): flip it.
  bool on = restore.before["powered"] != 0;
  written = boot_ns();
  firmware(std::string("powered ") + (on ? "0" : "1"));
  expect_unexplained(ledger, pci, "power.on", on, !on, written);

  // A thermal slowdown (NVML's HW_THERMAL_SLOWDOWN, 0x40): the GPU's own.
  firmware("sm_clock_mhz 990");
  firmware("clock_event_reasons 64");
  json hw = wait_record(ledger, state_record("state.explained", pci, "clocks.event_reasons"));
  ASSERT_FALSE(hw.is_null());
  EXPECT_EQ(hw["explained_by"]["kind"], "hardware-protection");
  EXPECT_EQ(hw["explained_by"]["reasons"], json::array({"hw_thermal_slowdown"}));

  kill(daemon, SIGTERM);
  EXPECT_EQ(wait_exit(daemon), 0) << slurp(dir.path / "daemon.out");
  auto status = json::parse(slurp(dir.path / "status.json"));
  EXPECT_EQ(status["watch"]["unexplained"], 3) << status["watch"].dump();
  // Nothing else was judged unexplained: the other GPUs did not change.
  EXPECT_EQ(gpugate::test::ledger_records(ledger, "state.unexplained").size(), 3u);
  // Every sink: the daemon's human lines said it too.
  EXPECT_NE(slurp(dir.path / "daemon.out").find("state.unexplained"), std::string::npos);
}

TEST(Watch, ASignedCommandsChangeIsExplainedAndLinkedToItsRecord) {
  TempDir dir;
  RestoreGpusim restore;
  std::string pci = gpusim_pci();
  auto ledger = dir.path / "ledger";
  gpugate::test::Signer alice{dir.path};
  ASSERT_NO_FATAL_FAILURE(alice.setup());
  pid_t daemon =
      start_daemon(dir,
                   {"--mode", "enforce", "--no-pin", "--policy", alice.p("policy.toml"), "--control-socket",
                    alice.p("ctl.sock"), "--watch", "on", "--watch-interval-ms", std::to_string(kIntervalMs)},
                   "daemon.out");
  ASSERT_FALSE(wait_record(ledger, [&](const json& r) {
                 return r["type"] == "state.sample" && r["gpu"]["pci"] == pci;
               }).is_null());
  int fd = open("/dev/nvidiactl", O_RDWR);
  ASSERT_GE(fd, 0);
  uint32_t wanted = static_cast<uint32_t>(restore.before["power_limit_mw"]) + 1000;
  EXPECT_EQ(set_power_limit(fd, wanted), rm_denied()) << "unsigned";
  ASSERT_NO_FATAL_FAILURE(alice.grant(kBin, alice.p("ctl.sock"),
                                      "--gpu 0 --class power.limit --param power_limit_mw=" + std::to_string(wanted)));
  EXPECT_EQ(set_power_limit(fd, wanted), 0) << "signed";
  close(fd);

  json e = wait_record(ledger, state_record("state.explained", pci, "power.limit_mw"));
  ASSERT_FALSE(e.is_null()) << slurp(dir.path / "daemon.out");
  EXPECT_EQ(e["after"], wanted);
  EXPECT_EQ(e["explained_by"]["kind"], "command");
  EXPECT_EQ(e["explained_by"]["authorized"], true);
  json cmd = record_at(ledger, e["explained_by"]["seq"]);
  ASSERT_FALSE(cmd.is_null());
  EXPECT_EQ(cmd["type"], "ioctl");
  EXPECT_EQ(cmd["verdict"], "allowed");
  EXPECT_EQ(cmd["decoded"]["class"], "power.limit");
  ASSERT_TRUE(cmd["grant"].is_object()) << cmd.dump();
  EXPECT_EQ(e["explained_by"]["grant_id"], cmd["grant"]["id"]);
  kill(daemon, SIGTERM);
  EXPECT_EQ(wait_exit(daemon), 0) << slurp(dir.path / "daemon.out");
  EXPECT_TRUE(gpugate::test::ledger_records(ledger, "state.unexplained").empty())
      << "the denied attempt changed nothing, and the allowed one is explained";
}

}  // namespace
