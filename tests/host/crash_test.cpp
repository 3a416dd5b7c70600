// kill -9 of the daemon at random points, 100 times, under load: ioctls
// recorded from another thread, nonces issued through the control socket
// (each written to the nonce store), a checkpoint every 20 ms and a new
// segment every MiB, so the kills land inside checkpoint writes, segment
// rotations and nonce issues. After every kill the ledger verifies (a torn
// last line and an unsigned tail are what a kill may leave, and verify
// says so); the next start recovers it and says the previous run ended
// unrecorded. The kill points come from a fixed seed, not the clock.
// Enforcement across a kill -9 is the vm venue's (Gate.KillNine*). Needs
// root; fails, never skips, without it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "gpugate/control.hpp"
#include "gpugate/log_verify.hpp"
#include "gpugate/unique_fd.hpp"
#include "ledger_read.hpp"
#include "process.hpp"
#include "status_wait.hpp"
#include "tempdir.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using gpugate::test::ledger_records;
using gpugate::test::slurp;
using gpugate::test::spawn;
using gpugate::test::TempDir;
using gpugate::test::wait_exit;

namespace {

const std::string kBin = GG_BIN_DIR;
const std::string kAlias = "/dev/kmsg";  // stands in for /dev/nvidia0
constexpr int kKills = 100;

// Running, and this daemon: the status file of the one killed may still say so.
bool wait_running(const fs::path& status, pid_t daemon) {
  return gpugate::test::wait_for_status(
      status, [daemon](const nlohmann::json& j) { return j.value("pid", 0) == daemon; }, 120s, 10ms);
}

}  // namespace

TEST(Crash, KillNineAtRandomPointsUnderLoadLeavesALedgerThatVerifies) {
  ASSERT_EQ(geteuid(), 0u) << "host tests need root (BPF): run them with sudo";
  TempDir dir;
  auto ledger = dir.path / "ledger", status = dir.path / "status.json", sock = dir.path / "ctl.sock";
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> calls{0}, nonces{0};
  std::thread ioctls([&] {
    gpugate::UniqueFd fd(::open(kAlias.c_str(), O_RDONLY | O_CLOEXEC));
    uint8_t params[32] = {};
    while (!stop) {
      (void)::ioctl(fd.get(), 0xC020462A, params);  // NV_ESC_RM_CONTROL
      calls++;
      // A steady load, not a flood: verify rereads the whole ledger after
      // each of the 100 kills.
      if (calls % 2 == 0) std::this_thread::sleep_for(1ms);
    }
  });
  std::thread control([&] {
    while (!stop) {
      if (auto n = gpugate::control_call(sock.string(), {{"op", "nonce"}}, 2000); n.ok() && (*n)["ok"] == true)
        nonces++;
      else
        std::this_thread::sleep_for(5ms);
    }
  });
  auto start = [&] {
    fs::remove(status);
    return spawn({kBin + "/gpugated",
                  "--no-discover",
                  "--device",
                  kAlias + "=nvidia",
                  "--ledger",
                  ledger.string(),
                  "--ledger-segment-mib",
                  "1",
                  "--checkpoint-ms",
                  "20",
                  "--status-file",
                  status.string(),
                  "--state-dir",
                  dir.path.string(),
                  "--control-socket",
                  sock.string(),
                  "--mode",
                  "observe",
                  "--no-pin",
                  "-q"},
                 dir.path / "daemon.out");
  };
  std::mt19937 rng(20261207);
  std::uniform_int_distribution<int> after_ms(0, 300);
  int problems = 0;
  for (int i = 0; i < kKills && problems < 3; i++) {
    pid_t daemon = start();
    ASSERT_TRUE(wait_running(status, daemon)) << "start " << i << "\n" << slurp(dir.path / "daemon.out");
    std::this_thread::sleep_for(std::chrono::milliseconds(after_ms(rng)));
    kill(daemon, SIGKILL);
    (void)wait_exit(daemon);
    auto r = gpugate::ledger::verify_ledger(ledger.string(), {});
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->exit_code, gpugate::ledger::kVerifyOk) << "after kill " << i << ":\n" << r->text();
    if (r->exit_code != gpugate::ledger::kVerifyOk) problems++;
  }
  // A last run that stops cleanly signs everything, the kills' tails included.
  pid_t daemon = start();
  ASSERT_TRUE(wait_running(status, daemon)) << slurp(dir.path / "daemon.out");
  stop = true;
  ioctls.join();
  control.join();
  kill(daemon, SIGTERM);
  ASSERT_EQ(wait_exit(daemon), 0) << slurp(dir.path / "daemon.out");
  auto r = gpugate::ledger::verify_ledger(ledger.string(), {});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->exit_code, gpugate::ledger::kVerifyOk) << r->text();
  EXPECT_GT(r->segments, 2u) << "the kills should span segment rotations";
  EXPECT_EQ(ledger_records(ledger, "daemon.start").size(), static_cast<size_t>(kKills + 1));
  EXPECT_EQ(ledger_records(ledger, "daemon.stop").size(), 1u);
  EXPECT_EQ(ledger_records(ledger, "gap").size() >= static_cast<size_t>(kKills), true)
      << "each start after a kill says the previous run ended unrecorded";
  EXPECT_GT(nonces.load(), static_cast<uint64_t>(kKills)) << "nonces were issued while the kills landed";
  std::cout << "GG-CRASH kills=" << kKills << " ioctls=" << calls << " nonces=" << nonces << " records=" << r->records
            << " segments=" << r->segments << " checkpoints=" << r->checkpoints << "\n";
}
