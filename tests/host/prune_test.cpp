// gpugate log prune against a running gpugated [host, root]: the daemon,
// the ledger's only writer, prunes on its control socket and records it; a
// second writer (the command on its own) is refused by the ledger's lock;
// after the daemon stops, the pruned ledger verifies and its record is signed.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "gpugate/hostinfo.hpp"
#include "gpugate/ledger.hpp"
#include "process.hpp"
#include "tempdir.hpp"

using namespace std::chrono_literals;
using gpugate::test::run_shell;
using gpugate::test::slurp;
using gpugate::test::spawn;
using gpugate::test::wait_exit;
namespace fs = std::filesystem;

namespace {

const std::string kBin = GG_BIN_DIR;

}  // namespace

TEST(PruneLive, TheDaemonPrunesOnItsSocketAndASecondWriterIsLockedOut) {
  ASSERT_EQ(geteuid(), 0u) << "host tests need root";
  gpugate::test::TempDir dir;
  fs::path state = dir.path / "state", ledger = dir.path / "ledger";
  fs::create_directories(state);
  // A ledger of many small sealed segments, written as this host's daemon
  // would (its key, its host id), for gpugated to go on with.
  auto host = gpugate::HostInfo::load(state.string());
  auto key = gpugate::tlog::LogKey::load_or_create(state.string(), gpugate::ledger_origin(host.host_id));
  ASSERT_TRUE(key.ok()) << key.error().message;
  {
    gpugate::LedgerOptions o;
    o.key = std::make_shared<const gpugate::tlog::LogKey>(std::move(*key));
    o.host_id = host.host_id;
    o.boot_id = host.boot_id;
    o.segment_bytes = 4096;
    o.checkpoint_records = 10;
    o.checkpoint_ms = 0;
    o.compress_sealed = true;
    auto w = gpugate::LedgerWriter::open(ledger.string(), o);
    ASSERT_TRUE(w.ok()) << w.error().message;
    for (int i = 0; i < 400; i++) {
      ASSERT_TRUE(w->append_members(fmt::format(R"("type":"ioctl","n":{})", i)).ok());
      if (i % 5 == 4) ASSERT_TRUE(w->flush().ok());  // segments rotate at a flush
    }
    ASSERT_TRUE(w->checkpoint("shutdown").ok());
  }
  auto status = dir.path / "status.json";
  auto sock = state / "control.sock";
  pid_t daemon = spawn({kBin + "/gpugated", "--no-discover", "--device", "/dev/kmsg=nvidia", "--ledger",
                        ledger.string(), "--status-file", status.string(), "--state-dir", state.string(), "--mode",
                        "observe", "--no-pin", "--control-socket", sock.string(), "-q"},
                       dir.path / "daemon.out");
  bool running = false;
  for (int i = 0; i < 400 && !running; i++) {
    running = slurp(status).find("\"running\"") != std::string::npos;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(running) << slurp(dir.path / "daemon.out");

  std::string pub = (state / "log-key.pub").string();
  auto alone = run_shell(kBin + "/gpugate log prune " + ledger.string() + " --before 150 --control-socket '' --key " +
                         pub + " --state-dir " + state.string());
  EXPECT_EQ(alone.status, 2) << alone.output;
  EXPECT_NE(alone.output.find("locked"), std::string::npos) << "the daemon holds the ledger: " << alone.output;
  EXPECT_TRUE(fs::exists(ledger / "000001.jsonl.zst")) << "the refused prune removed nothing";

  auto live = run_shell(kBin + "/gpugate log prune " + ledger.string() + " --before 150 --json --key " + pub +
                        " --control-socket " + sock.string());
  ASSERT_EQ(live.status, 0) << live.output << slurp(dir.path / "daemon.out");
  auto done = nlohmann::json::parse(live.output, nullptr, false);
  ASSERT_FALSE(done.is_discarded()) << live.output;
  EXPECT_EQ(done["by"]["uid"], 0);
  EXPECT_FALSE(fs::exists(ledger / "000001.jsonl.zst"));
  EXPECT_TRUE(fs::exists(ledger / "pruned.json"));

  kill(daemon, SIGTERM);
  ASSERT_EQ(wait_exit(daemon), 0) << slurp(dir.path / "daemon.out");
  auto v = run_shell(kBin + "/gpugate log verify --json " + ledger.string() + " --key " + pub);
  ASSERT_EQ(v.status, 0) << v.output;
  auto report = nlohmann::json::parse(v.output, nullptr, false);
  ASSERT_FALSE(report.is_discarded()) << v.output;
  EXPECT_EQ(report["pruned"]["recorded_at"], done["recorded_at"]);
  EXPECT_EQ(report["pruned"]["first_seq"], done["first_seq"]);
  EXPECT_LT(report["pruned"]["recorded_at"].get<uint64_t>(), report["last_checkpoint"]["size"].get<uint64_t>())
      << "the daemon's shutdown checkpoint signs the ledger.pruned record";
}
