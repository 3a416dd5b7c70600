// The daemon feeds the state watcher its commands without their JSON (a
// flood of judged commands must not cost a parse each); a restarted daemon
// seeds it from the ledger's records. Both paths must keep the same thing.
#include <gtest/gtest.h>

#include <sstream>

#include "gpugate/pipeline.hpp"
#include "gpugate/sim_engine.hpp"
#include "gpugate/watch.hpp"
#include "ledger_read.hpp"
#include "tempdir.hpp"

using namespace gpugate;

namespace {

constexpr uint64_t kS = 1000000000;

// GPU_SET_POWER that the driver took, PERF_BOOST it refused with an RM
// status, and a query (not a judged class).
const char* kScript = R"(
{"device":"/dev/full","ioctl":"0xc020462a","arg":"0100d0c10100f0ca120180200000000000100000000000000c00000000000000","params":"000000000400000000000000","ret":0,"nv_status":0,"pid":77}
{"device":"/dev/full","ioctl":"0xc01046d3","arg":"2a000000200000000020000000000000","inner":"0100d0c10100f0ca0a2080200000000000100000000000000800000000000000","params":"0200000000000000","ret":0,"nv_status":27,"pid":78}
{"device":"/dev/full","ioctl":"0xc020462a","arg":"0100d0c10100d0c1790200000000000000100000000000000c00000000000000","params":"000100000000000000000000","ret":-22,"pid":79}
)";

watch::Change change(const std::string& field, uint64_t before_ns, uint64_t after_ns) {
  watch::Change c;
  c.pci = "0000:41:00.0";
  c.nodes = {"/dev/nvidia0"};
  c.field = field;
  c.before = 1;
  c.after = 2;
  c.before_ns = before_ns;
  c.after_ns = after_ns;
  return c;
}

}  // namespace

TEST(WatchLivePath, ACommandSeenLiveIsKeptAsItsLedgerRecordIs) {
  test::TempDir dir;
  std::istringstream script(kScript);
  auto calls = parse_sim_script(script, "script");
  ASSERT_TRUE(calls.ok()) << calls.error().message;
  DeviceTable devices;
  ASSERT_TRUE(devices.add_alias("/dev/full=nvidia").ok());
  auto ledger = LedgerWriter::open(dir.path / "ledger");
  ASSERT_TRUE(ledger.ok()) << ledger.error().message;
  Pipeline pipeline(*ledger, devices, HostInfo{"host", "boot", "h"}, "sim", nullptr);

  watch::Explainer live(10 * kS, "boot");
  std::vector<uint64_t> seen_seqs;
  size_t json_ioctls = 0;
  pipeline.set_command_observer([&](const CommandSeen& c) {
    seen_seqs.push_back(c.seq);
    live.note_command(c);
  });
  pipeline.set_observer([&](const nlohmann::ordered_json& r) { json_ioctls += r.value("type", "") == "ioctl"; });

  uint64_t start = boottime_ns();
  SimEngine engine(std::move(*calls));
  ASSERT_TRUE(engine.start(devices).ok());
  while (!engine.finished()) ASSERT_TRUE(engine.poll(std::chrono::milliseconds(0), pipeline).ok());
  ASSERT_TRUE(pipeline.flush().ok());
  uint64_t end = boottime_ns();

  EXPECT_EQ(seen_seqs, (std::vector<uint64_t>{0, 1})) << "the two judged commands, with their ledger seq";
  EXPECT_EQ(json_ioctls, 0u) << "with a command observer, no ioctl record is parsed for the watcher";

  watch::Explainer seeded(10 * kS, "boot");
  for (const auto& line : test::ledger_lines(dir.path / "ledger")) seeded.note(nlohmann::json::parse(line));
  EXPECT_EQ(live.size(), 2u);
  EXPECT_EQ(seeded.size(), live.size());

  for (const char* field : {"power.level", "clocks.applications_sm_mhz", "power.limit_mw"}) {
    auto c = change(field, start, end + kS);
    auto a = live.explain(c);
    auto b = seeded.explain(c);
    EXPECT_EQ(a.kind, b.kind) << field;
    EXPECT_EQ(a.seq, b.seq) << field;
    EXPECT_EQ(a.detail.dump(), b.detail.dump()) << field;
    EXPECT_EQ(a.candidates.dump(), b.candidates.dump()) << field;
  }
  auto power = live.explain(change("power.level", start, end + kS));
  EXPECT_EQ(power.kind, "command");
  EXPECT_EQ(power.seq, 0u);
  auto clocks = live.explain(change("clocks.applications_sm_mhz", start, end + kS));
  EXPECT_EQ(clocks.kind, "none") << "the driver refused the only clock command";
  ASSERT_EQ(clocks.candidates.size(), 1u);
  EXPECT_EQ(clocks.candidates[0]["why_not"], "the driver refused it");
}

// forget_before runs after every batch the daemon reads: what is due goes
// from the front at once, the rest (behind a live grant, out of order) at
// the next sweep, at most a window later.
TEST(WatchLivePath, ForgettingIsCheapPerBatchAndCompletePerWindow) {
  watch::Explainer ex(1 * kS, "boot");
  auto command = [&](uint64_t seq, uint64_t boot_ns) {
    watch::Explainer::Entry e;
    e.seq = seq;
    e.type = "ioctl";
    e.cls = GG_CLASS_POWER_OFF;
    e.verdict = "denied";
    e.boot_ns = boot_ns;
    ex.note(std::move(e));
  };
  command(1, 1 * kS);
  command(2, 2 * kS);
  watch::Explainer::Entry query;
  query.type = "ioctl";
  query.cls = GG_CLASS_QUERY;
  ex.note(std::move(query));
  EXPECT_EQ(ex.size(), 2u) << "a query is never kept";

  ex.forget_before(5 * kS + 1);  // horizon 1 s + 1 ns: the first goes
  EXPECT_EQ(ex.size(), 1u);

  watch::Explainer::Entry grant;
  grant.type = "grant.installed";
  grant.boot_ns = 3 * kS;
  grant.grant_id = 9;
  watch::Explainer live_grant(1 * kS, "boot");
  live_grant.note(grant);                      // a live grant is never forgotten
  live_grant.note(watch::Explainer::Entry{});  // type "" is a command of class 0: not kept
  watch::Explainer::Entry late;
  late.type = "ioctl";
  late.cls = GG_CLASS_POWER_OFF;
  late.boot_ns = 4 * kS;
  live_grant.note(late);
  live_grant.forget_before(20 * kS);  // the first call sweeps
  EXPECT_EQ(live_grant.size(), 1u) << "the command behind the grant went at the sweep";
  late.boot_ns = 5 * kS;  // recorded late, behind the grant
  live_grant.note(late);
  live_grant.forget_before(20 * kS + kS / 2);
  EXPECT_EQ(live_grant.size(), 2u) << "behind a live grant, it waits for the next sweep";
  live_grant.forget_before(21 * kS);
  EXPECT_EQ(live_grant.size(), 1u) << "a window later the sweep takes it";
}
