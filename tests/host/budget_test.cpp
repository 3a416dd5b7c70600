// gpugated's ledger budget against real traffic [host, root]: GPU ioctls
// (on /dev/kmsg standing in for /dev/nvidia0) fill 1 MiB segments past a
// 3 MiB budget. With nothing shipped the daemon keeps every record and says
// so (status, ledger.budget); once `gpugate log ship` has shipped them, the
// next rotation prunes what was shipped and the ledger is within budget
// again. Afterwards the ledger verifies from its anchor, shipping goes on,
// and the collector's copy, seq 0 on, verifies in place.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

#include "gpugate/unique_fd.hpp"
#include "ledger_read.hpp"
#include "process.hpp"
#include "status_wait.hpp"
#include "tempdir.hpp"

using namespace std::chrono_literals;
using gpugate::test::run_shell;
using gpugate::test::slurp;
using gpugate::test::spawn;
using gpugate::test::wait_exit;
namespace fs = std::filesystem;

namespace {

const std::string kBin = GG_BIN_DIR;

// GPU ioctls from another thread until `until` says so (status polled), or
// two minutes pass.
bool ioctls_until(const fs::path& status, const std::function<bool(const nlohmann::json&)>& until) {
  std::atomic<bool> stop{false};
  std::thread load([&] {
    gpugate::UniqueFd fd(::open("/dev/kmsg", O_RDONLY | O_CLOEXEC));
    uint8_t params[32] = {};
    while (!stop) {
      for (int i = 0; i < 200; i++) (void)::ioctl(fd.get(), 0xC020462A, params);  // NV_ESC_RM_CONTROL
      std::this_thread::sleep_for(1ms);
    }
  });
  bool ok = gpugate::test::wait_for_status(status, until, 120s, 20ms);
  stop = true;
  load.join();
  return ok;
}

}  // namespace

TEST(BudgetLive, OverTheBudgetTheDaemonKeepsWhatIsUnshippedAndPrunesWhatWasShipped) {
  ASSERT_EQ(geteuid(), 0u) << "host tests need root (BPF)";
  gpugate::test::TempDir dir;
  fs::path ledger = dir.path / "ledger", status = dir.path / "status.json", shipped = dir.path / "ship.state";
  fs::path collector = dir.path / "collector";
  pid_t daemon = spawn({kBin + "/gpugated",
                        "--no-discover",
                        "--device",
                        "/dev/kmsg=nvidia",
                        "--ledger",
                        ledger.string(),
                        "--ledger-segment-mib",
                        "1",
                        "--ledger-max-gib",
                        "0.003",
                        "--ledger-compress",
                        "off",
                        "--ledger-shipped",
                        shipped.string(),
                        "--checkpoint-ms",
                        "100",
                        "--status-file",
                        status.string(),
                        "--state-dir",
                        dir.path.string(),
                        "--mode",
                        "observe",
                        "--no-pin",
                        "--control-socket",
                        "",
                        "-q"},
                       dir.path / "daemon.out");
  ASSERT_TRUE(gpugate::test::wait_for_status(status)) << slurp(dir.path / "daemon.out");

  // Over the budget with nothing shipped: every record stays.
  ASSERT_TRUE(ioctls_until(status, [](const nlohmann::json& j) {
    return j["ledger_budget"].is_object() && j["ledger_budget"]["over"] == true;
  })) << slurp(status);
  auto st = nlohmann::json::parse(slurp(status));
  EXPECT_GT(st["ledger_budget"]["bytes"].get<uint64_t>(), st["ledger_budget"]["max_bytes"].get<uint64_t>());
  EXPECT_EQ(st["ledger_budget"]["pruned_records"], 0u);
  EXPECT_NE(st["ledger_budget"]["reason"].get<std::string>().find("ship more"), std::string::npos) << st.dump();
  EXPECT_TRUE(fs::exists(ledger / "000001.jsonl"));
  EXPECT_FALSE(fs::exists(ledger / "pruned.json"));
  auto shown = run_shell(kBin + "/gpugate status --status-file " + status.string());
  EXPECT_NE(shown.output.find("OVER (every record kept)"), std::string::npos) << shown.output;
  EXPECT_NE(shown.output.find("ship more"), std::string::npos) << shown.output;

  // Shipped, while the daemon writes on: the next rotation prunes it.
  auto ship = run_shell(kBin + "/gpugate log ship " + ledger.string() + " --to dir:" + collector.string() +
                        " --state " + shipped.string());
  ASSERT_EQ(ship.status, 0) << ship.output;
  ASSERT_TRUE(ioctls_until(status, [](const nlohmann::json& j) {
    return j["ledger_budget"].is_object() && j["ledger_budget"]["pruned_records"].get<uint64_t>() > 0;
  })) << slurp(status);
  EXPECT_TRUE(fs::exists(ledger / "pruned.json"));
  EXPECT_FALSE(fs::exists(ledger / "000001.jsonl")) << "the shipped first segment was pruned";

  kill(daemon, SIGTERM);
  ASSERT_EQ(wait_exit(daemon), 0) << slurp(dir.path / "daemon.out");
  EXPECT_NE(slurp(dir.path / "daemon.out").find("over its budget"), std::string::npos)
      << "the daemon said it went over: " << slurp(dir.path / "daemon.out");

  auto verify = run_shell(kBin + "/gpugate log verify " + ledger.string());
  EXPECT_EQ(verify.status, 0) << verify.output;
  EXPECT_NE(verify.output.find("were pruned"), std::string::npos) << verify.output;
  // The record of the prune: it removed only what was shipped. (Later ones
  // may say the ledger went over again: the load went on after the prune.)
  // A rotation may prune again: the segment that was the newest sealed one
  // when the first prune ran can go at the next.
  std::map<uint64_t, nlohmann::json> budget_at;
  for (const auto& r : gpugate::test::ledger_records(ledger, "ledger.budget")) budget_at[r["seq"]] = r;
  auto prunes = gpugate::test::ledger_records(ledger, "ledger.pruned");
  ASSERT_FALSE(prunes.empty());
  for (const auto& p : prunes) {
    auto it = budget_at.find(p["seq"].get<uint64_t>() + 1);
    ASSERT_NE(it, budget_at.end()) << "each prune is followed by the ledger.budget record that made it: " << p;
    EXPECT_GT(it->second["pruned_records"].get<uint64_t>(), 0u);
    EXPECT_LE(p["first_seq"].get<uint64_t>(), it->second["shipped_before"].get<uint64_t>())
        << "a record that was not shipped was pruned";
  }

  // Shipping goes on from the anchor; the collector holds it all and verifies.
  auto again = run_shell(kBin + "/gpugate log ship " + ledger.string() + " --to dir:" + collector.string() +
                         " --state " + shipped.string());
  ASSERT_EQ(again.status, 0) << again.output;
  fs::path host;
  for (const auto& e : fs::directory_iterator(collector)) host = e.path();
  auto copy = run_shell(kBin + "/gpugate log verify " + host.string() + " --json");
  EXPECT_EQ(copy.status, 0) << copy.output;
  auto report = nlohmann::json::parse(copy.output, nullptr, false);
  ASSERT_TRUE(report.is_object()) << copy.output;
  EXPECT_EQ(report["records"].get<uint64_t>(), gpugate::test::ledger_records(ledger).back()["seq"].get<uint64_t>() + 1)
      << "the collector holds every record from seq 0";
}
