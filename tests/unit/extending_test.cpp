// docs/extending.md, followed step by step where a unit test can: a sink
// (section 4) written as the walkthrough says, given to the pipeline, sees
// every record, and only after the ledger has it.
#include <gtest/gtest.h>

#include <sstream>

#include "gpugate/pipeline.hpp"
#include "gpugate/sim_engine.hpp"
#include "ledger_read.hpp"
#include "tempdir.hpp"

using namespace gpugate;

namespace {

// The walkthrough's sink, collecting instead of calling syslog.
HumanSink denied_sink(std::vector<std::string>& out) {
  return [&out](const nlohmann::ordered_json& rec, const std::string& line) {
    if (rec.value("verdict", "") == "would-deny") out.push_back(line);
  };
}

}  // namespace

TEST(Extending, ASinkSeesEveryRecordAfterTheLedger) {
  test::TempDir dir;
  // GPU_SET_POWER (gated: would-deny in the simulation) and a query
  std::istringstream script(
      R"({"device":"/dev/full","ioctl":"0xc020462a","arg":"0100d0c10100f0ca120180200000000000100000000000000c00000000000000","params":"000000000400000000000000","ret":0,"nv_status":0}
{"device":"/dev/full","ioctl":"0xc020462a","arg":"0100d0c10100f0ca5a2080200000000000100000000000000400000000000000","params":"00000000","ret":0,"nv_status":0}
)");
  auto calls = parse_sim_script(script, "script");
  ASSERT_TRUE(calls.ok()) << calls.error().message;
  DeviceTable devices;
  ASSERT_TRUE(devices.add_alias("/dev/full=nvidia").ok());
  auto ledger = LedgerWriter::open(dir.path / "ledger");
  ASSERT_TRUE(ledger.ok());
  std::vector<std::string> seen;
  size_t ledger_lines_when_seen = 0;
  std::vector<std::string> denied;
  auto inner = denied_sink(denied);
  Pipeline pipeline(*ledger, devices, HostInfo{"host", "boot", "h"}, "sim",
                    [&](const nlohmann::ordered_json& rec, const std::string& line) {
                      seen.push_back(line);
                      ledger_lines_when_seen = std::max<size_t>(ledger_lines_when_seen, rec.value("seq", 0u) + 1);
                      inner(rec, line);
                    });
  SimEngine engine(std::move(*calls));
  (void)engine.set_policy(default_policy(GG_MODE_OBSERVE));
  ASSERT_TRUE(engine.start(devices).ok());
  while (!engine.finished()) ASSERT_TRUE(engine.poll(std::chrono::milliseconds(0), pipeline).ok());
  ASSERT_TRUE(pipeline.flush().ok());
  EXPECT_EQ(seen.size(), 2u) << "every record";
  ASSERT_EQ(denied.size(), 1u) << "the sink's own filter";
  EXPECT_NE(denied[0].find("GPU_SET_POWER"), std::string::npos) << denied[0];
  EXPECT_EQ(test::ledger_lines(dir.path / "ledger").size(), ledger_lines_when_seen)
      << "each record the sink saw had its ledger sequence number: it was appended first";
}
