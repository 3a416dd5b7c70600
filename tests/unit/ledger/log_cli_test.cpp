// `gpugate log ...` as an investigator meets it: every command on a ledger
// written by the real pipeline (simulation engine), exit codes, and errors
// that name the file and the fix.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include "process.hpp"

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "gpugate/pipeline.hpp"
#include "gpugate/sim_engine.hpp"
#include "ledger_read.hpp"
#include "tempdir.hpp"

using namespace gpugate;
namespace fs = std::filesystem;

namespace {

using gpugate::test::CommandResult;

CommandResult run(const std::string& args) {
  return gpugate::test::run_shell(std::string(GG_BIN_DIR) + "/gpugate " + args);
}

using gpugate::test::slurp;

const char* kScript =
    R"({"device":"/dev/full","ioctl":"0xc020462a","arg":"0100d0c10100f0ca120180200000000000100000000000000c00000000000000","params":"000000000400000000000000","ret":0,"nv_status":0,"pid":77,"comm":"attacker"}
{"device":"/dev/full","ioctl":"0xc01046d3","arg":"2a000000200000000020000000000000","inner":"0100d0c10100f0ca0a2080200000000000100000000000000800000000000000","params":"0200000000000000","ret":0,"nv_status":27,"pid":78}
{"device":"/dev/full","ioctl":"0xc020462a","arg":"0100d0c10100d0c1790200000000000000100000000000000c00000000000000","params":"000100000000000000000000","ret":-22,"pid":79}
)";

// A ledger as gpugated writes it: the sim engine through the pipeline, a
// log key in DIR/state, a checkpoint at the end. Twice, so there is history.
class LogCli : public ::testing::Test {
 protected:
  void SetUp() override {
    auto key = tlog::LogKey::load_or_create((dir.path / "state").string(), "gpugate/testhost");
    ASSERT_TRUE(key.ok()) << key.error().message;
    auto shared = std::make_shared<const tlog::LogKey>(std::move(*key));
    for (int round = 0; round < 2; round++) {
      LedgerOptions o;
      o.key = shared;
      o.host_id = "testhost";
      o.fsync = FsyncPolicy::never;
      auto w = LedgerWriter::open(ledger, o);
      ASSERT_TRUE(w.ok()) << w.error().message;
      DeviceTable devices;
      ASSERT_TRUE(devices.add_alias("/dev/full=nvidia").ok());
      Pipeline pipeline(*w, devices, HostInfo{"testhost", "boot", "h"}, "sim", nullptr);
      pipeline.write_event("daemon.start", {{"engine", "sim"}});
      std::istringstream script(kScript);
      auto calls = parse_sim_script(script, "script");
      ASSERT_TRUE(calls.ok());
      SimEngine engine(std::move(*calls));
      ASSERT_TRUE(engine.start(devices).ok());
      while (!engine.finished()) ASSERT_TRUE(engine.poll(std::chrono::milliseconds(0), pipeline).ok());
      pipeline.write_event("daemon.stop", {{"reason", "test"}});
      ASSERT_TRUE(w->checkpoint("shutdown").ok());
      if (round == 0) fs::copy_file(ledger / "checkpoint", dir.path / "first.checkpoint");
    }
  }
  test::TempDir dir;
  fs::path ledger = dir.path / "ledger";
  std::string pub() { return (dir.path / "state" / "log-key.pub").string(); }
};

}  // namespace

TEST_F(LogCli, VerifyExitCodes) {
  auto ok = run("log verify " + ledger.string() + " --key " + pub());
  EXPECT_EQ(ok.status, 0) << ok.output;
  EXPECT_NE(ok.output.find("result       OK"), std::string::npos) << ok.output;
  auto j = run("log verify --json " + ledger.string() + " --checkpoint " + (dir.path / "first.checkpoint").string());
  EXPECT_EQ(j.status, 0) << j.output;
  auto report = nlohmann::json::parse(j.output);
  EXPECT_EQ(report["result"], "ok");
  EXPECT_EQ(report["checkpoints"], 2);
  // Another key: the signatures are not the host's.
  auto other = tlog::LogKey::load_or_create((dir.path / "other").string(), "gpugate/testhost");
  auto wrong = run("log verify " + ledger.string() + " --key " + (dir.path / "other" / "log-key.pub").string());
  EXPECT_EQ(wrong.status, 1) << wrong.output;
  EXPECT_NE(wrong.output.find("not by a trusted key"), std::string::npos) << wrong.output;
  // Bad input: exit 2 and the file named.
  auto none = run("log verify " + (dir.path / "none").string());
  EXPECT_EQ(none.status, 2);
  EXPECT_NE(none.output.find("none"), std::string::npos);
  auto badkey = run("log verify " + ledger.string() + " --key " + (ledger / "000001.jsonl").string());
  EXPECT_EQ(badkey.status, 2);
  EXPECT_NE(badkey.output.find("000001.jsonl"), std::string::npos) << badkey.output;
  // A changed byte: exit 1 at the place.
  auto seg = ledger / "000001.jsonl";
  std::string text = slurp(seg);
  text.replace(text.find("\"attacker\""), 10, "\"innocent\"");
  std::ofstream(seg, std::ios::trunc) << text;
  auto bad = run("log verify " + ledger.string() + " --key " + pub());
  EXPECT_EQ(bad.status, 1) << bad.output;
  EXPECT_NE(bad.output.find("FAILED at 000001.jsonl:2 (seq 1)"), std::string::npos) << bad.output;
}

TEST_F(LogCli, UnsignedLedgerExits3) {
  auto w = LedgerWriter::open(dir.path / "plain");
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(w->append({{"type", "x"}}).ok());
  auto r = run("log verify " + (dir.path / "plain").string());
  EXPECT_EQ(r.status, 3) << r.output;
}

TEST_F(LogCli, ProofVerifiesOfflineWithTheRecordLineAndTheKey) {
  auto proof = (dir.path / "p").string(), line = (dir.path / "r").string();
  auto r = run("log proof 2 " + ledger.string() + " -o " + proof + " --record-out " + line);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(slurp(proof).substr(0, 31), "c2sp.org/tlog-proof@v1\nindex 2\n");
  auto v = run("log verify-proof " + proof + " --record " + line + " --key " + pub());
  EXPECT_EQ(v.status, 0) << v.output;
  auto nokey = run("log verify-proof " + proof + " --record " + line);
  EXPECT_EQ(nokey.status, 3) << nokey.output;
  std::string rec = slurp(line);
  rec[rec.size() / 2] ^= 1;
  std::ofstream(line, std::ios::trunc) << rec;
  auto bad = run("log verify-proof " + proof + " --record " + line + " --key " + pub());
  EXPECT_EQ(bad.status, 1) << bad.output;
  auto future = run("log proof 999 " + ledger.string());
  EXPECT_EQ(future.status, 2);
  EXPECT_NE(future.output.find("not covered"), std::string::npos) << future.output;
}

TEST_F(LogCli, CheckpointAndWitnessBody) {
  auto c = run("log checkpoint " + ledger.string());
  ASSERT_EQ(c.status, 0) << c.output;
  EXPECT_EQ(c.output, slurp(ledger / "checkpoint"));
  auto w = run("log checkpoint " + ledger.string() + " --from " + (dir.path / "first.checkpoint").string());
  ASSERT_EQ(w.status, 0) << w.output;
  EXPECT_EQ(w.output.substr(0, 4), "old ");
  EXPECT_NE(w.output.find("\n\n" + c.output.substr(0, c.output.find('\n'))), std::string::npos) << w.output;
}

TEST_F(LogCli, ShowStatsAndFilters) {
  auto all = run("log show " + ledger.string() + " --json");
  ASSERT_EQ(all.status, 0) << all.output;
  EXPECT_EQ(all.output, test::ledger_text(ledger)) << "--json prints the lines byte for byte";
  auto off = run("log show " + ledger.string() + " --class power.off --verdict would-deny");
  EXPECT_EQ(off.status, 0) << off.output;
  EXPECT_NE(off.output.find("NV2080_CTRL_CMD_GPU_SET_POWER"), std::string::npos) << off.output;
  EXPECT_EQ(off.output.find("PERF_BOOST"), std::string::npos) << off.output;
  auto proc = run("log show " + ledger.string() + " --json --process attacker --seq 0..5");
  EXPECT_EQ(std::count(proc.output.begin(), proc.output.end(), '\n'), 1) << proc.output;
  auto since = run("log show " + ledger.string() + " --json --since 1h --type checkpoint");
  EXPECT_EQ(std::count(since.output.begin(), since.output.end(), '\n'), 2) << since.output;
  auto badtime = run("log show " + ledger.string() + " --since yesterday");
  EXPECT_EQ(badtime.status, 2);
  EXPECT_NE(badtime.output.find("RFC 3339"), std::string::npos);
  auto s = run("log stats --json " + ledger.string());
  ASSERT_EQ(s.status, 0) << s.output;
  auto j = nlohmann::json::parse(s.output);
  EXPECT_EQ(j["by_class"]["power.off"], 2);
  EXPECT_EQ(j["by_verdict"]["would-deny"], 4);
  EXPECT_EQ(j["gaps"]["daemon_down"].size(), 1u);
  auto t = run("log stats " + ledger.string());
  EXPECT_NE(t.output.find("ioctls by class"), std::string::npos);
}

TEST_F(LogCli, ExportsCarryAManifest) {
  for (const char* fmt : {"ecs", "csv", "timesketch"}) {
    auto out = dir.path / (std::string("export.") + fmt);
    auto r = run(std::string("log export ") + ledger.string() + " --format " + fmt + " -o " + out.string());
    ASSERT_EQ(r.status, 0) << r.output;
    merkle::Hasher h;
    std::string sum = merkle::to_hex(h.sha256(slurp(out)));
    EXPECT_EQ(slurp(out.string() + ".sha256"), sum + "  " + out.filename().string() + "\n");
    auto m = nlohmann::json::parse(slurp(out.string() + ".manifest.json"));
    EXPECT_EQ(m["sha256"], sum);
    EXPECT_EQ(m["records"], test::ledger_lines(ledger).size());
    EXPECT_TRUE(m["ledger_checkpoint"].is_string());
  }
  std::ifstream in(dir.path / "export.ecs");
  std::string first;
  std::getline(in, first);
  auto e = nlohmann::json::parse(first);
  EXPECT_TRUE(e.contains("@timestamp"));
  EXPECT_EQ(e["event"]["sequence"], 0);
  std::ifstream ts(dir.path / "export.timesketch");
  std::getline(ts, first);
  auto t = nlohmann::json::parse(first);
  for (const char* k : {"message", "datetime", "timestamp_desc"}) EXPECT_TRUE(t.contains(k)) << k;
  auto bad = run("log export " + ledger.string() + " --format xml -o x");
  EXPECT_EQ(bad.status, 2);
}

TEST_F(LogCli, ReplayUnderAnotherPolicy) {
  std::ofstream(dir.path / "p.toml") << "version = 1\nmode = \"enforce\"\n[classes]\nquery = \"deny\"\n"
                                        "\"power.off\" = \"allow\"\n";
  auto r = run("log replay --json " + ledger.string() + " --policy " + (dir.path / "p.toml").string());
  ASSERT_EQ(r.status, 0) << r.output;
  auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["ioctl_records"], 6);
  EXPECT_EQ(j["changed"], 6);
  bool saw = false;
  for (const auto& t : j["transitions"])
    if (t["from"] == "would-deny" && t["to"] == "allowed") saw = t["count"] == 2;
  EXPECT_TRUE(saw) << r.output;
  auto text = run("log replay " + ledger.string() + " --policy " + (dir.path / "p.toml").string());
  EXPECT_NE(text.output.find("what would change"), std::string::npos) << text.output;
  auto same =
      run("log replay --json " + ledger.string() + " --policy " + std::string(GG_SOURCE_DIR) + "/policy/default.toml");
  ASSERT_EQ(same.status, 0) << same.output;
  auto missing = run("log replay " + ledger.string() + " --policy /nonexistent.toml");
  EXPECT_EQ(missing.status, 2);
}

TEST_F(LogCli, Timeline) {
  auto svg = dir.path / "t.svg", html = dir.path / "t.html";
  ASSERT_EQ(run("log timeline " + ledger.string() + " -o " + svg.string()).status, 0);
  ASSERT_EQ(run("log timeline " + ledger.string() + " -o " + html.string()).status, 0);
  EXPECT_EQ(slurp(svg).substr(0, 4), "<svg");
  EXPECT_NE(slurp(svg).find("power.off"), std::string::npos);
  EXPECT_NE(slurp(html).find("<svg"), std::string::npos);
  EXPECT_EQ(slurp(html).find("<script"), std::string::npos);
  EXPECT_EQ(run("log timeline " + ledger.string() + " -o t.png").status, 2);
}
