// The CLI as a user meets it: clear errors and exit codes for bad input,
// and no crash on a ledger or status file that is not what it should be.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include "ledger_read.hpp"
#include "process.hpp"
#include "tempdir.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>

namespace {

using gpugate::test::CommandResult;

CommandResult run(const std::string& args) {
  return gpugate::test::run_shell(std::string(GG_BIN_DIR) + "/gpugate " + args);
}

}  // namespace

TEST(Cli, DecodeNamesTheCommandClassAndParameters) {
  auto r =
      run("decode --ioctl 0xC020462A --hex 0100d0c10100f0ca120180200000000000100000000000000c00000000000000 "
          "--params-hex 000000000400000000000000");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("NV2080_CTRL_CMD_GPU_SET_POWER (0x20800112)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("power.off (table)"), std::string::npos);
  EXPECT_NE(r.output.find("newLevel=0x4"), std::string::npos);
  auto j = run("decode --json --ioctl 0xC0406400 --device dri --hex " + std::string(128, '0'));
  ASSERT_EQ(j.status, 0) << j.output;
  EXPECT_NE(j.output.find("\"command\": \"DRM_IOCTL_VERSION\""), std::string::npos) << j.output;
}

TEST(Cli, DecodeRejectsBadInputWithTheFix) {
  auto odd = run("decode --ioctl 0xC020462A --hex abc");
  EXPECT_EQ(odd.status, 2);
  EXPECT_NE(odd.output.find("--hex"), std::string::npos);
  EXPECT_NE(odd.output.find("two digits"), std::string::npos);
  auto word = run("decode --ioctl 0xC020462AZ --hex 00");
  EXPECT_EQ(word.status, 2);
  EXPECT_NE(word.output.find("--ioctl"), std::string::npos);
  auto dev = run("decode --ioctl 0xC020462A --device tpu --hex 00");
  EXPECT_EQ(dev.status, 2);
  EXPECT_NE(dev.output.find("unknown node kind"), std::string::npos);
  auto xfer = run("decode --ioctl 0xC01046D3 --hex 2a000000200000000020000000000000");
  EXPECT_EQ(xfer.status, 0);
  EXPECT_NE(xfer.output.find("--inner-hex"), std::string::npos) << "the hint names the missing bytes";
}

// A usage error exits 2, like every other bad argument; --help exits 0.
TEST(Cli, UsageErrorsExitTwoAndHelpZero) {
  for (const char* args : {"tail --no-such-flag", "log verify --key", "decode --no-such-flag", "no-such-command"}) {
    auto r = run(args);
    EXPECT_EQ(r.status, 2) << args << "\n" << r.output;
    EXPECT_NE(r.output.find("--help"), std::string::npos) << args << "\n" << r.output;
  }
  EXPECT_EQ(run("--help").status, 0);
  EXPECT_EQ(run("log verify --help").status, 0);
  auto daemon = gpugate::test::run_shell(std::string(GG_BIN_DIR) + "/gpugated --no-such-flag");
  EXPECT_EQ(daemon.status, 2) << daemon.output;
  EXPECT_EQ(gpugate::test::run_shell(std::string(GG_BIN_DIR) + "/gpugated --version").status, 0);
}

TEST(Cli, TailSurvivesAMalformedLedger) {
  auto path = std::filesystem::temp_directory_path() / "gpugate-cli-test-ledger";
  std::filesystem::create_directories(path);
  std::ofstream(path / "000001.jsonl")
      << "{\"seq\":1,\"type\":\"ioctl\",\"device\":5}\nnot json\n\xff\xfe\n{\"seq\":2,\"type\":\"gap\"}\n";
  auto r = run("tail --ledger " + path.string());
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find(":1: not a gpugate record"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(":2: not a JSON record"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("#2 gap"), std::string::npos) << r.output;
  auto missing = run("tail --ledger /nonexistent/ledger");
  EXPECT_EQ(missing.status, 2);
  EXPECT_NE(missing.output.find("/nonexistent/ledger"), std::string::npos);
  std::filesystem::remove_all(path);
}

TEST(Cli, StatusOfAMissingOrForeignFile) {
  auto none = run("status --status-file /nonexistent/status.json");
  EXPECT_EQ(none.status, 3);
  EXPECT_NE(none.output.find("not running"), std::string::npos) << none.output;
  auto path = std::filesystem::temp_directory_path() / "gpugate-cli-status.json";
  std::ofstream(path) << R"({"state":"running","pid":"x"})";
  auto bad = run("status --status-file " + path.string());
  EXPECT_EQ(bad.status, 2) << bad.output;
  EXPECT_NE(bad.output.find(path.string()), std::string::npos) << bad.output;
  std::filesystem::remove(path);
}

// A fatal error in the daemon's loop is recorded (daemon.crash, signed), and
// the next start's gap record names it. The fault is injected
// (GPUGATE_FAULT_INJECT=loop:N), the simulation engine runs the loop.
TEST(Daemon, ACrashIsRecordedAndTheNextStartNamesIt) {
  gpugate::test::TempDir dir;
  auto p = [&](const std::string& n) { return (dir.path / n).string(); };
  {
    std::ofstream script(p("sim.jsonl"));
    for (int i = 0; i < 5; i++)
      script << R"({"device":"/dev/full","ioctl":"0xc020462a","arg":")" << std::string(64, '0') << "\"}\n";
  }
  std::string daemon = std::string(GG_BIN_DIR) +
                       "/gpugated --engine sim --no-discover --device /dev/full=nvidia -q "
                       "--control-socket '' --ledger " +
                       p("ledger") + " --state-dir " + p("state") + " --status-file " + p("status.json") +
                       " --sim-script " + p("sim.jsonl");
  std::filesystem::create_directories(p("state"));
  auto crashed = gpugate::test::run_shell("GPUGATE_FAULT_INJECT=loop:3 " + daemon);
  EXPECT_EQ(crashed.status, 1) << crashed.output;
  EXPECT_NE(crashed.output.find("recorded as daemon.crash"), std::string::npos) << crashed.output;
  auto records = gpugate::test::ledger_records(p("ledger"));
  ASSERT_GE(records.size(), 2u);
  auto crash = std::find_if(records.begin(), records.end(), [](const auto& r) { return r["type"] == "daemon.crash"; });
  ASSERT_NE(crash, records.end()) << gpugate::test::ledger_text(p("ledger"));
  EXPECT_NE((*crash)["error"].get<std::string>().find("injected fault"), std::string::npos);
  EXPECT_EQ(records.back()["type"], "checkpoint") << "the crash record is signed at once";
  EXPECT_TRUE(std::filesystem::exists(p("state/last-crash")));

  auto again = gpugate::test::run_shell(daemon);
  EXPECT_EQ(again.status, 0) << again.output;
  EXPECT_FALSE(std::filesystem::exists(p("state/last-crash"))) << "read once";
  auto gaps = gpugate::test::ledger_records(p("ledger"), "gap");
  ASSERT_EQ(gaps.size(), 1u);
  EXPECT_NE(gaps[0]["previous_crash"]["error"].get<std::string>().find("injected fault"), std::string::npos)
      << gaps[0].dump();
  auto verify = run("log verify " + p("ledger"));
  EXPECT_EQ(verify.status, 0) << verify.output;
}
