// The watcher's records as an investigator meets them: written through the
// real pipeline into a signed ledger, then `gpugate log show/stats/timeline`
// and `log verify`.
#include <gtest/gtest.h>

#include <filesystem>

#include "gpugate/hostinfo.hpp"
#include "gpugate/pipeline.hpp"
#include "gpugate/watch.hpp"
#include "process.hpp"
#include "tempdir.hpp"

using namespace gpugate;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kS = 1000000000;

test::CommandResult run(const std::string& args) {
  return test::run_shell(std::string(GG_BIN_DIR) + "/gpugate " + args);
}

watch::GpuSample limit(uint64_t mw) {
  watch::GpuSample s;
  s.pci = "0000:41:00.0";
  s.source = "test";
  s.values["power.limit_mw"] = mw;
  return s;
}

class LogState : public ::testing::Test {
 protected:
  void SetUp() override {
    auto key = tlog::LogKey::load_or_create((dir.path / "state").string(), "gpugate/testhost");
    ASSERT_TRUE(key.ok()) << key.error().message;
    LedgerOptions o;
    o.key = std::make_shared<const tlog::LogKey>(std::move(*key));
    o.host_id = "testhost";
    o.fsync = FsyncPolicy::never;
    auto w = LedgerWriter::open(ledger, o);
    ASSERT_TRUE(w.ok()) << w.error().message;
    DeviceTable devices;
    HostInfo host{"testhost", "boot", "h"};
    Pipeline pipeline(*w, devices, host, "sim", nullptr);
    watch::WatchOptions wo;
    wo.boot_id = host.boot_id;
    wo.settle_ms = 0;
    watch::Watcher watcher(wo, {}, {});
    pipeline.set_observer([&](const nlohmann::ordered_json& r) { watcher.note(r); });
    watch::RecordFn record = [&](const std::string& type, watch::Json body) {
      pipeline.write_event(type, std::move(body));
      return w->next_seq() - 1;
    };
    uint64_t now = boottime_ns();
    watcher.ingest(now, 0, {limit(700000)});
    watcher.ingest(now + kS, 0, {limit(500000)});  // nothing recorded explains it
    watcher.poll(now + 2 * kS, record);
    ASSERT_EQ(watcher.unexplained(), 1u);
    ASSERT_TRUE(w->checkpoint("shutdown").ok());
  }
  test::TempDir dir;
  fs::path ledger = dir.path / "ledger";
};

}  // namespace

TEST_F(LogState, ShowStatsTimelineAndVerifyKnowTheStateRecords) {
  auto show = run("log show " + ledger.string() + " --type state.unexplained");
  ASSERT_EQ(show.status, 0) << show.output;
  EXPECT_NE(show.output.find("UNEXPLAINED power.limit_mw 700000->500000"), std::string::npos) << show.output;
  EXPECT_NE(show.output.find("gpu 0000:41:00.0"), std::string::npos) << show.output;
  auto by_gpu = run("log show " + ledger.string() + " --json --gpu 0000:41:00.0");
  EXPECT_EQ(std::count(by_gpu.output.begin(), by_gpu.output.end(), '\n'), 3) << by_gpu.output;

  auto stats = run("log stats --json " + ledger.string());
  ASSERT_EQ(stats.status, 0) << stats.output;
  auto j = nlohmann::json::parse(stats.output);
  EXPECT_EQ(j["state"]["samples"], 2);
  EXPECT_EQ(j["state"]["unexplained"], 1);
  EXPECT_EQ(j["state"]["unexplained_by_gpu_field"]["gpu 0000:41:00.0 power.limit_mw"], 1);
  EXPECT_NE(run("log stats " + ledger.string()).output.find("UNEXPLAINED gpu 0000:41:00.0 power.limit_mw"),
            std::string::npos);

  auto svg = dir.path / "t.svg";
  ASSERT_EQ(run("log timeline " + ledger.string() + " -o " + svg.string()).status, 0);
  std::string pic = test::slurp(svg);
  EXPECT_NE(pic.find("gpu 0000:41:00.0</text>"), std::string::npos) << "the GPU has a lane";
  EXPECT_NE(pic.find("UNEXPLAINED state change: power.limit_mw 700000 -&gt; 500000"), std::string::npos);

  auto verify = run("log verify " + ledger.string() + " --key " + (dir.path / "state" / "log-key.pub").string());
  EXPECT_EQ(verify.status, 0) << verify.output;
}
