// The ledger's disk fills up under a running daemon: the records wait in
// memory, the outage is said once, and when space returns every ioctl made
// meanwhile is in the ledger, followed by a gap record of class "ledger"
// that says for how long and why; the ledger verifies. A ledger directory
// that is read-only at start is refused clearly. Needs root (tmpfs mounts,
// BPF); fails, never skips, without it. RELIABILITY.md cites these tests.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "gpugate/unique_fd.hpp"
#include "ledger_read.hpp"
#include "process.hpp"
#include "status_wait.hpp"
#include "tempdir.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using gpugate::test::ledger_records;
using gpugate::test::run_shell;
using gpugate::test::slurp;
using gpugate::test::spawn;
using gpugate::test::TempDir;
using gpugate::test::wait_exit;

namespace {

const std::string kBin = GG_BIN_DIR;
const std::string kAlias = "/dev/kmsg";  // stands in for /dev/nvidia0
constexpr auto kPatience = 120s;         // an upper bound on a slow guest, never a pace

class LedgerFault : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(geteuid(), 0u) << "host tests need root (tmpfs mounts, BPF): run them with sudo";
    fs::create_directories(disk());
    ASSERT_EQ(::mount("tmpfs", disk().c_str(), "tmpfs", 0, "size=4m,mode=0755"), 0) << std::strerror(errno);
    mounted_ = true;
  }
  void TearDown() override {
    if (daemon_ > 0) {
      kill(daemon_, SIGKILL);
      (void)wait_exit(daemon_);
    }
    if (mounted_) ::umount2(disk().c_str(), MNT_DETACH);
  }
  fs::path disk() const { return dir_.path / "disk"; }
  fs::path status() const { return dir_.path / "status.json"; }

  void start(const fs::path& ledger) {
    daemon_ = spawn({kBin + "/gpugated", "--no-discover", "--device", kAlias + "=nvidia", "--ledger", ledger.string(),
                     "--status-file", status().string(), "--state-dir", dir_.path.string(), "--mode", "observe",
                     "--no-pin", "--control-socket", "", "--checkpoint-ms", "200"},
                    dir_.path / "daemon.out");
  }
  // The status file's ledger_health.writable, once it equals want.
  bool wait_writable(bool want) {
    return gpugate::test::wait_for_status(
        status(),
        [want](const nlohmann::json& j) {
          return j.contains("ledger_health") && j["ledger_health"].value("writable", !want) == want;
        },
        kPatience);
  }
  // n ioctls of this process on the watched node.
  static void ioctls(int n) {
    gpugate::UniqueFd fd(::open(kAlias.c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd) << std::strerror(errno);
    uint8_t params[32] = {};
    for (int i = 0; i < n; i++) (void)::ioctl(fd.get(), 0xC020462A, params);  // NV_ESC_RM_CONTROL
  }
  // Fills the tmpfs to its last byte.
  void fill() {
    gpugate::UniqueFd fd(::open((disk() / "filler").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd);
    std::string chunk(64 * 1024, 'x');
    for (size_t size = chunk.size(); size > 0; size /= 2)
      while (::write(fd.get(), chunk.data(), size) == static_cast<ssize_t>(size)) {
      }
    ASSERT_EQ(errno, ENOSPC);
  }

  TempDir dir_;
  bool mounted_ = false;
  pid_t daemon_ = -1;
};

}  // namespace

TEST_F(LedgerFault, DiskFullHoldsTheRecordsAndSaysSoThenAGapOnceSpaceReturns) {
  auto ledger = disk() / "ledger";
  start(ledger);
  ASSERT_TRUE(wait_writable(true)) << slurp(dir_.path / "daemon.out");
  ioctls(50);
  fill();
  ioctls(300);  // more than the free bytes a partial write could take
  ASSERT_TRUE(wait_writable(false)) << "the outage was not noticed\n" << slurp(dir_.path / "daemon.out");
  auto down = nlohmann::json::parse(slurp(status()))["ledger_health"];
  EXPECT_NE(down["error"].get<std::string>().find("No space left"), std::string::npos) << down.dump();
  EXPECT_EQ(down["disk_full_action"], "deny-gated");
  ioctls(300);  // while the disk is full
  fs::remove(disk() / "filler");
  ASSERT_TRUE(wait_writable(true)) << "no recovery\n" << slurp(dir_.path / "daemon.out");
  kill(daemon_, SIGTERM);
  ASSERT_EQ(wait_exit(daemon_), 0) << slurp(dir_.path / "daemon.out");
  daemon_ = -1;

  // Every ioctl, none lost, and one gap that says what happened.
  size_t mine = 0;
  for (const auto& rec : ledger_records(ledger, "ioctl"))
    if (rec["process"]["pid"] == ::getpid()) mine++;
  EXPECT_EQ(mine, 650u);
  std::vector<nlohmann::json> gaps;
  for (const auto& rec : ledger_records(ledger, "gap"))
    if (rec["class"] == "ledger") gaps.push_back(rec);
  ASSERT_EQ(gaps.size(), 1u);
  EXPECT_EQ(gaps[0]["lost_records"], 0);
  EXPECT_GE(gaps[0]["failed_flushes"], 1);
  EXPECT_LT(gaps[0]["from_boottime_ns"].get<uint64_t>(), gaps[0]["to_boottime_ns"].get<uint64_t>());
  EXPECT_NE(gaps[0]["reason"].get<std::string>().find("No space left"), std::string::npos) << gaps[0].dump();
  std::string out = slurp(dir_.path / "daemon.out");
  EXPECT_EQ(out.find("ledger cannot be written"), out.rfind("ledger cannot be written")) << "said once: " << out;
  EXPECT_NE(out.find("ledger writable again"), std::string::npos) << out;
  auto verify = run_shell(kBin + "/gpugate log verify " + ledger.string());
  EXPECT_EQ(verify.status, 0) << verify.output;
}

TEST_F(LedgerFault, AReadOnlyLedgerDirectoryIsRefusedAtStartWithTheFix) {
  ASSERT_EQ(::mount(nullptr, disk().c_str(), nullptr, MS_REMOUNT | MS_RDONLY, nullptr), 0) << std::strerror(errno);
  start(disk() / "ledger");
  EXPECT_NE(wait_exit(daemon_), 0);
  daemon_ = -1;
  std::string out = slurp(dir_.path / "daemon.out");
  EXPECT_NE(out.find("Read-only file system"), std::string::npos) << out;
  EXPECT_NE(out.find(disk().string()), std::string::npos) << "names the directory: " << out;
}
