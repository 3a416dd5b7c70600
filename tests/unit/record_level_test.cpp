// Recording levels (issue 15, docs/ledger.md): the shared rule that decides
// which calls may be summarized or counted, the policy's [record] section,
// and the pipeline's ioctl.summary and ioctl.counts records.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>

#include "gpugate/pipeline.hpp"
#include "gpugate/policy.hpp"
#include "gpugate/sim_engine.hpp"
#include "ledger_read.hpp"
#include "process.hpp"
#include "tempdir.hpp"

using namespace gpugate;
namespace fs = std::filesystem;

namespace {

using gpugate::test::TempDir;

// A query (NV0000_CTRL_CMD_GPU_QUERY_DRAIN_STATE) by pid, with its result.
std::string query(unsigned pid, int ret = 0, const char* comm = "exporter",
                  const char* params = "000100000000000000000000", const std::string& more = "") {
  return fmt::format(
      R"({{"device":"/dev/full","ioctl":"0xc020462a","arg":"0100d0c10100d0c1790200000000000000100000000000000c00000000000000","params":"{}","ret":{},"pid":{},"comm":"{}"{}}})"
      "\n",
      params, ret, pid, comm, more);
}

// GPU_SET_POWER (power.off) by pid.
std::string power_off(unsigned pid) {
  return fmt::format(
      R"({{"device":"/dev/full","ioctl":"0xc020462a","arg":"0100d0c10100f0ca120180200000000000100000000000000c00000000000000","params":"000000000400000000000000","ret":0,"nv_status":0,"pid":{},"comm":"agent"}})"
      "\n",
      pid);
}

struct Run {
  std::vector<nlohmann::json> records;
  PipelineCounters counters;
  size_t open_after_engine = 0;
};

// The script through the simulation engine and a pipeline with the policy's
// levels, then the summaries written as the daemon writes them at its end.
Run run(const std::string& script, const Policy& policy) {
  TempDir dir;
  std::istringstream in(script);
  auto calls = parse_sim_script(in, "script");
  EXPECT_TRUE(calls.ok()) << calls.error().message;
  DeviceTable devices;
  EXPECT_TRUE(devices.add_alias("/dev/full=nvidia").ok());
  auto ledger = LedgerWriter::open(dir.path / "ledger");
  EXPECT_TRUE(ledger.ok());
  Pipeline pipeline(*ledger, devices, HostInfo{"host", "boot", "h"}, "sim", nullptr);
  pipeline.set_record_levels(policy.record.level, static_cast<uint64_t>(policy.record.interval) * 1'000'000'000ull);
  SimEngine engine(std::move(*calls));
  (void)engine.set_policy(policy.table);
  EXPECT_TRUE(engine.start(devices).ok());
  while (!engine.finished()) EXPECT_TRUE(engine.poll(std::chrono::milliseconds(0), pipeline).ok());
  Run r;
  r.open_after_engine = pipeline.open_summaries();
  pipeline.flush_summaries();
  EXPECT_TRUE(pipeline.flush().ok());
  r.counters = pipeline.counters();
  for (const auto& line : gpugate::test::ledger_lines(dir.path / "ledger"))
    r.records.push_back(nlohmann::json::parse(line));
  return r;
}

Policy policy_of(const std::string& text) {
  auto p = parse_policy("version = 1\n" + text, "p.toml");
  EXPECT_TRUE(p.ok()) << p.error().message;
  return p ? *p : builtin_policy(GG_MODE_ENFORCE);
}

std::vector<nlohmann::json> of_type(const Run& r, const std::string& type) {
  std::vector<nlohmann::json> out;
  for (const auto& rec : r.records)
    if (rec["type"] == type) out.push_back(rec);
  return out;
}

}  // namespace

// The shared C rule: only plain, allowed traffic may go below full.
TEST(RecordLevel, OnlyPlainAllowedTrafficGoesBelowFull) {
  uint8_t levels[GG_CLASS_COUNT];
  for (auto& l : levels) l = GG_REC_SUMMARY;
  EXPECT_EQ(gg_record_level_of(levels, GG_CLASS_QUERY, GG_ACT_LOG, GG_VERDICT_ALLOW, 0), GG_REC_SUMMARY);
  EXPECT_EQ(gg_record_level_of(levels, GG_CLASS_RESOURCE, GG_ACT_ALLOW, GG_VERDICT_ALLOW, GG_DF_KEYS_VALID),
            GG_REC_SUMMARY);
  levels[GG_CLASS_OTHER] = GG_REC_COUNT;
  EXPECT_EQ(gg_record_level_of(levels, GG_CLASS_OTHER, GG_ACT_LOG, GG_VERDICT_ALLOW, 0), GG_REC_COUNT);
  // What the policy cannot lower, whatever the levels say.
  for (unsigned c = 0; c < GG_CLASS_COUNT; c++)
    if (c != GG_CLASS_QUERY && c != GG_CLASS_OTHER && c != GG_CLASS_RESOURCE)
      EXPECT_EQ(gg_record_level_of(levels, c, GG_ACT_LOG, GG_VERDICT_ALLOW, 0), GG_REC_FULL) << class_name(c);
  EXPECT_EQ(gg_record_level_of(levels, GG_CLASS_QUERY, GG_ACT_LOG, GG_VERDICT_DENY, 0), GG_REC_FULL);
  EXPECT_EQ(gg_record_level_of(levels, GG_CLASS_QUERY, GG_ACT_LOG, GG_VERDICT_WOULD_DENY, 0), GG_REC_FULL);
  EXPECT_EQ(gg_record_level_of(levels, GG_CLASS_QUERY, GG_ACT_REQUIRE_SIGNATURE, GG_VERDICT_ALLOW, 0), GG_REC_FULL)
      << "granted, by a rule: the grant's use is a record";
  EXPECT_EQ(gg_record_level_of(levels, GG_CLASS_QUERY, GG_ACT_DENY, GG_VERDICT_ALLOW, 0), GG_REC_FULL);
  for (uint32_t odd : {GG_DF_ARG_FAULT, GG_DF_PARAMS_SHORT, GG_DF_UNDECIDED, GG_DF_BINAPI, GG_DF_NONCANONICAL,
                       GG_DF_DRIVER_REFUSES, GG_DF_UNKNOWN_ESCAPE})
    EXPECT_EQ(gg_record_level_of(levels, GG_CLASS_QUERY, GG_ACT_LOG, GG_VERDICT_ALLOW, odd), GG_REC_FULL) << odd;
  levels[GG_CLASS_QUERY] = 7;
  EXPECT_EQ(gg_record_level_of(levels, GG_CLASS_QUERY, GG_ACT_LOG, GG_VERDICT_ALLOW, 0), GG_REC_FULL)
      << "a level out of range reads as full";
}

TEST(RecordLevel, PolicyReadsShowsAndReadsBackTheRecordSection) {
  auto builtin = builtin_policy(GG_MODE_ENFORCE);
  EXPECT_FALSE(builtin.record.any_below_full()) << "every call is a record unless the policy says otherwise";
  EXPECT_EQ(builtin.record.interval, 300);
  auto p = policy_of(
      "[record]\ninterval = \"30s\"\n\"query\" = \"summary\"\n\"resource\" = \"count\"\n\"other\" = \"full\"\n");
  EXPECT_EQ(p.record.level[GG_CLASS_QUERY], GG_REC_SUMMARY);
  EXPECT_EQ(p.record.level[GG_CLASS_RESOURCE], GG_REC_COUNT);
  EXPECT_EQ(p.record.level[GG_CLASS_OTHER], GG_REC_FULL);
  EXPECT_EQ(p.record.interval, 30);
  auto shown = policy_to_toml(p);
  EXPECT_NE(shown.find("[record]\ninterval = \"30s\"\n"), std::string::npos) << shown;
  auto again = parse_policy(shown, "round-trip");
  ASSERT_TRUE(again.ok()) << again.error().message << "\n" << shown;
  EXPECT_EQ(again->record.level, p.record.level);
  EXPECT_EQ(again->record.interval, 30);
  auto shipped = load_policy(std::string(GG_SOURCE_DIR) + "/policy/default.toml");
  ASSERT_TRUE(shipped.ok()) << shipped.error().message;
  EXPECT_EQ(shipped->record.level, builtin.record.level) << "the shipped file is the built-in policy";
  EXPECT_EQ(shipped->record.interval, builtin.record.interval);
}

// policy check refuses to lower what must stay full, naming the line and the fix.
TEST(RecordLevel, PolicyRefusesToLowerWhatMustStayFull) {
  struct Case {
    const char* text;
    const char* expect;
  } cases[] = {
      {"[record]\n\"power.off\" = \"summary\"\n", "p.toml:4: class \"power.off\" is always recorded in full"},
      {"[record]\n\"ecc.config\" = \"count\"\n", "p.toml:4: class \"ecc.config\" is always recorded in full"},
      {"[record]\n\"unknown\" = \"summary\"\n", "p.toml:4: class \"unknown\" is always recorded in full"},
      {"[record]\n\"bar.map\" = \"summary\"\n", "remove the line or set \"full\""},
      {"[classes]\n\"query\" = \"require-signature\"\n[record]\n\"query\" = \"summary\"\n",
       "class \"query\" is require-signature by [classes] but recorded at \"summary\""},
      {"[record]\n\"query\" = \"sometimes\"\n", "p.toml:4: class \"query\": the recording level must be \"full\""},
      {"[record]\n\"query\" = 1\n", "the recording level must be"},
      {"[record]\n\"queries\" = \"summary\"\n", "unknown key \"queries\" in [record]"},
      {"[record]\ninterval = \"2h\"\n", "p.toml:4: interval must be a duration string from 1s to 1h"},
      {"[record]\ninterval = 60\n", "interval must be a duration string"},
      {"record = \"summary\"\n", "record must be a table"},
  };
  for (const auto& c : cases) {
    auto r = parse_policy(std::string("version = 1\n\n") + c.text, "p.toml");
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_NE(r.error().message.find(c.expect), std::string::npos) << c.text << " -> " << r.error().message;
  }
}

// Summary-level calls become one ioctl.summary per process, node and
// command; what a summary may not hide is written call by call.
TEST(RecordLevel, SummaryCallsBecomeOneRecordPerProcessNodeAndCommand) {
  std::string script;
  for (int i = 0; i < 40; i++) script += query(100, i % 10 == 9 ? -22 : 0);
  for (int i = 0; i < 7; i++) script += query(200);
  script += power_off(300);
  script += query(100, 0, "exporter", "0001");  // params shorter than the block: odd, written in full
  auto r = run(script, policy_of("[record]\n\"query\" = \"summary\"\n"));
  EXPECT_EQ(r.open_after_engine, 2u);
  auto full = of_type(r, "ioctl");
  ASSERT_EQ(full.size(), 2u);
  EXPECT_EQ(full[0]["decoded"]["class"], "power.off") << "a judged command keeps its own record";
  EXPECT_EQ(full[1]["decoded"]["class"], "query");
  EXPECT_EQ(full[1]["process"]["pid"], 100);
  auto sums = of_type(r, "ioctl.summary");
  ASSERT_EQ(sums.size(), 2u);
  std::map<unsigned, nlohmann::json> by_pid;
  for (const auto& s : sums) by_pid[s["process"]["pid"].get<unsigned>()] = s;
  ASSERT_EQ(by_pid.count(100), 1u);
  ASSERT_EQ(by_pid.count(200), 1u);
  const auto& a = by_pid[100];
  EXPECT_EQ(a["calls"], 40);
  EXPECT_EQ(a["results"]["ok"], 36);
  EXPECT_EQ(a["results"]["EINVAL"], 4);
  EXPECT_EQ(a["decoded"]["command"], "NV0000_CTRL_CMD_GPU_QUERY_DRAIN_STATE");
  EXPECT_EQ(a["decoded"]["class"], "query");
  EXPECT_EQ(a["device"]["path"], "/dev/full");
  EXPECT_EQ(a["process"]["comm"], "exporter");
  EXPECT_EQ(a["level"], "summary");
  EXPECT_EQ(a["duration_ns"], 40 * 1000) << "the simulation's exits come 1 us after their entries";
  EXPECT_LE(a["first_boottime_ns"].get<uint64_t>(), a["boottime_ns"].get<uint64_t>());
  EXPECT_EQ(by_pid[200]["calls"], 7);
  // The fingerprint is the sum over the calls' bytes: the same calls give
  // the same one, whatever the order; pid 200's 7 identical calls, 7 times one.
  EXPECT_EQ(a["raw_sum"].get<std::string>().size(), 16u);
  auto one = run(query(200), policy_of("[record]\n\"query\" = \"summary\"\n"));
  auto one_sum = of_type(one, "ioctl.summary");
  ASSERT_EQ(one_sum.size(), 1u);
  uint64_t single = std::stoull(one_sum[0]["raw_sum"].get<std::string>(), nullptr, 16);
  EXPECT_EQ(std::stoull(by_pid[200]["raw_sum"].get<std::string>(), nullptr, 16), single * 7);
  EXPECT_EQ(r.counters.summarized, 47u);
  EXPECT_EQ(r.counters.summaries, 2u);
  EXPECT_EQ(r.counters.records, 2u);
}

TEST(RecordLevel, CountCallsBecomeOneCountsRecordPerInterval) {
  std::string script;
  for (int i = 0; i < 25; i++) script += query(100 + i);
  script += power_off(300);
  auto r = run(script, policy_of("[record]\n\"query\" = \"count\"\n"));
  EXPECT_EQ(of_type(r, "ioctl.summary").size(), 0u);
  auto counts = of_type(r, "ioctl.counts");
  ASSERT_EQ(counts.size(), 1u);
  EXPECT_EQ(counts[0]["calls"]["query"]["nvidia"], 25);
  EXPECT_EQ(counts[0]["level"], "count");
  EXPECT_EQ(of_type(r, "ioctl").size(), 1u);
  EXPECT_EQ(r.counters.counted, 25u);
}

// Attack: a query is the traffic class an exporter makes, so someone may
// hope to hide among it. A rule that gates it for one program, a grant's
// use, and every denial stay full records.
TEST(RecordLevel, AGatedOrDeniedCallIsNeverFoldedIntoASummary) {
  std::string script = query(100) + query(100, 0, "sneaky") + query(100, 0, "sneaky") + query(100);
  auto r = run(script, policy_of("[record]\n\"query\" = \"summary\"\n[[rules]]\nname = \"no queries by sneaky\"\n"
                                 "comm = \"sneaky\"\nclass = \"query\"\naction = \"require-signature\"\n"));
  auto full = of_type(r, "ioctl");
  ASSERT_EQ(full.size(), 2u);
  for (const auto& f : full) {
    EXPECT_EQ(f["process"]["comm"], "sneaky");
    EXPECT_EQ(f["verdict"], "would-deny");
  }
  auto sums = of_type(r, "ioctl.summary");
  ASSERT_EQ(sums.size(), 1u);
  EXPECT_EQ(sums[0]["calls"], 2);
}

// Open summaries are bounded: one more writes them all, nothing is dropped.
TEST(RecordLevel, OpenSummariesAreBoundedAndWrittenNotDropped) {
  std::string script;
  const size_t pids = Pipeline::kMaxOpenSummaries + 10;
  for (size_t i = 0; i < pids; i++) script += query(static_cast<unsigned>(1000 + i));
  auto r = run(script, policy_of("[record]\n\"query\" = \"summary\"\n"));
  EXPECT_EQ(r.open_after_engine, 10u) << "the first kMaxOpenSummaries were written when the next one came";
  auto sums = of_type(r, "ioctl.summary");
  ASSERT_EQ(sums.size(), pids);
  uint64_t calls = 0;
  for (const auto& s : sums) calls += s["calls"].get<uint64_t>();
  EXPECT_EQ(calls, pids);
}

TEST(RecordLevel, SummariesAreDueAfterTheirInterval) {
  TempDir dir;
  DeviceTable devices;
  auto ledger = LedgerWriter::open(dir.path / "ledger");
  ASSERT_TRUE(ledger.ok());
  Pipeline pipeline(*ledger, devices, HostInfo{"h", "b", "n"}, "test", nullptr);
  std::array<uint8_t, GG_CLASS_COUNT> levels{};
  levels[GG_CLASS_QUERY] = GG_REC_SUMMARY;
  pipeline.set_record_levels(levels, 10'000);
  EXPECT_FALSE(pipeline.summaries_due(UINT64_MAX)) << "nothing open, nothing due";
  gg_ioctl_enter e{};
  e.hdr.boot_ns = 5'000;
  e.hdr.pid = e.hdr.tid = 7;
  e.dec.cls = GG_CLASS_QUERY;
  e.action = GG_ACT_LOG;
  e.verdict = GG_VERDICT_ALLOW;
  pipeline.on_enter(e);
  pipeline.flush_stale(0);  // no exit: folded in as "no exit seen"
  EXPECT_EQ(pipeline.open_summaries(), 1u);
  EXPECT_FALSE(pipeline.summaries_due(14'999));
  EXPECT_TRUE(pipeline.summaries_due(15'000));
  pipeline.flush_summaries();
  EXPECT_FALSE(pipeline.summaries_due(UINT64_MAX));
  ASSERT_TRUE(pipeline.flush().ok());
  auto lines = gpugate::test::ledger_lines(dir.path / "ledger");
  ASSERT_EQ(lines.size(), 1u);
  auto s = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(s["results"]["no exit seen"], 1);
}

// The daemon end to end (simulation engine): the policy's levels reach the
// pipeline, summaries are written at the end and counted in daemon.stop,
// the ledger verifies and log show reads it. A crash writes what is open
// before daemon.crash.
TEST(RecordLevel, TheDaemonWritesSummariesAtItsEndAndBeforeACrash) {
  TempDir dir;
  auto p = [&](const std::string& n) { return (dir.path / n).string(); };
  std::ofstream(p("policy.toml")) << "version = 1\n[record]\n\"query\" = \"summary\"\n";
  {
    std::ofstream script(p("sim.jsonl"));
    for (int i = 0; i < 30; i++) script << query(100);
    script << power_off(300);
  }
  fs::create_directories(p("state"));
  std::string daemon = std::string(GG_BIN_DIR) +
                       "/gpugated --engine sim --no-discover --device /dev/full=nvidia -q --control-socket '' "
                       "--policy " +
                       p("policy.toml") + " --state-dir " + p("state") + " --status-file " + p("status.json") +
                       " --sim-script " + p("sim.jsonl") + " --ledger ";
  auto ran = gpugate::test::run_shell(daemon + p("ledger"));
  ASSERT_EQ(ran.status, 0) << ran.output;
  auto sums = gpugate::test::ledger_records(p("ledger"), "ioctl.summary");
  ASSERT_EQ(sums.size(), 1u) << gpugate::test::ledger_text(p("ledger"));
  EXPECT_EQ(sums[0]["calls"], 30);
  EXPECT_EQ(sums[0]["engine"], "sim");
  EXPECT_EQ(gpugate::test::ledger_records(p("ledger"), "ioctl").size(), 1u);
  auto stop = gpugate::test::ledger_records(p("ledger"), "daemon.stop");
  ASSERT_EQ(stop.size(), 1u);
  EXPECT_EQ(stop[0]["summarized"], 30);
  EXPECT_EQ(stop[0]["records"], 1);
  auto verify = gpugate::test::run_shell(std::string(GG_BIN_DIR) + "/gpugate log verify " + p("ledger"));
  EXPECT_EQ(verify.status, 0) << verify.output;
  auto show = gpugate::test::run_shell(std::string(GG_BIN_DIR) + "/gpugate log show " + p("ledger"));
  EXPECT_EQ(show.status, 0) << show.output;
  EXPECT_NE(show.output.find("NV0000_CTRL_CMD_GPU_QUERY_DRAIN_STATE        x30 ok 30"), std::string::npos)
      << show.output;
  auto stats = gpugate::test::run_shell(std::string(GG_BIN_DIR) + "/gpugate log stats --json " + p("ledger"));
  ASSERT_EQ(stats.status, 0) << stats.output;
  auto st = nlohmann::json::parse(stats.output, nullptr, false);
  ASSERT_FALSE(st.is_discarded()) << stats.output;
  EXPECT_EQ(st["by_class"]["query"], 30) << "a summary's calls count as the ioctls they were";
  EXPECT_EQ(st["by_class"]["power.off"], 1);
  auto replay = gpugate::test::run_shell(std::string(GG_BIN_DIR) + "/gpugate log replay --json " + p("ledger") +
                                         " --policy " + p("policy.toml"));
  ASSERT_EQ(replay.status, 0) << replay.output;
  auto rp = nlohmann::json::parse(replay.output, nullptr, false);
  ASSERT_FALSE(rp.is_discarded()) << replay.output;
  EXPECT_EQ(rp["ioctl_records"], 1);
  EXPECT_EQ(rp["summarized_calls"], 30) << "what a replay cannot decide again is said, not left out";
  nlohmann::ordered_json seen;
  for (const auto& line : gpugate::test::ledger_lines(p("ledger")))
    if (line.find("\"ioctl.summary\"") != std::string::npos) seen = nlohmann::ordered_json::parse(line);
  ASSERT_EQ(seen["type"], "ioctl.summary");
  EXPECT_NE(
      human_line(seen).find("ioctl.summary nvidia-ctl 1:7 pid 100 exporter: NV0000_CTRL_CMD_GPU_QUERY_DRAIN_STATE "
                            "[query] x30 (ok 30) since "),
      std::string::npos)
      << human_line(seen);

  // The crash comes after the power-off's record: the 30 queries before it
  // are open, and written before daemon.crash.
  auto crashed = gpugate::test::run_shell("GPUGATE_FAULT_INJECT=loop:1 " + daemon + p("crashed"));
  EXPECT_EQ(crashed.status, 1) << crashed.output;
  auto records = gpugate::test::ledger_records(p("crashed"));
  auto at = [&](const std::string& type) {
    return std::find_if(records.begin(), records.end(), [&](const auto& r) { return r["type"] == type; });
  };
  ASSERT_NE(at("ioctl.summary"), records.end()) << gpugate::test::ledger_text(p("crashed"));
  ASSERT_NE(at("daemon.crash"), records.end());
  EXPECT_LT(at("ioctl.summary") - records.begin(), at("daemon.crash") - records.begin());
  EXPECT_EQ((*at("ioctl.summary"))["calls"], 30);
}

// NVIDIA's controls all go through nvidiactl: the RM object names the GPU,
// so each GPU's queries get their own summary.
TEST(RecordLevel, EachGpusQueriesGetTheirOwnSummary) {
  auto pstate = [](const char* object_le) {
    return fmt::format(
        R"({{"device":"/dev/full","ioctl":"0xc020462a","arg":"0100d0c1{}682080200000000000100000000000000400000000000000","params":"08000000","ret":0,"nv_status":0,"pid":100,"comm":"exporter"}})"
        "\n",
        object_le);
  };
  std::string script;
  for (int i = 0; i < 3; i++) script += pstate("0100f0ca") + pstate("0200f0ca");
  auto r = run(script, policy_of("[record]\n\"query\" = \"summary\"\n"));
  auto sums = of_type(r, "ioctl.summary");
  ASSERT_EQ(sums.size(), 2u) << r.records.size();
  std::map<std::string, uint64_t> by_object;
  for (const auto& s : sums) {
    EXPECT_EQ(s["decoded"]["command"], "NV2080_CTRL_CMD_PERF_GET_CURRENT_PSTATE");
    by_object[s["decoded"]["object"].get<std::string>()] = s["calls"].get<uint64_t>();
  }
  EXPECT_EQ(by_object["0xcaf00001"], 3u);
  EXPECT_EQ(by_object["0xcaf00002"], 3u);
}

// An interval ends by the traffic's own clock too: a call an interval after
// the oldest open one writes what is open first.
TEST(RecordLevel, ACallAnIntervalLaterEndsTheInterval) {
  std::string script;
  for (int at : {0, 500, 1000, 1500, 2100})
    script += query(100, 0, "exporter", "000100000000000000000000", fmt::format(R"(,"at_ms":{})", at));
  auto r = run(script, policy_of("[record]\ninterval = \"1s\"\n\"query\" = \"summary\"\n"));
  auto sums = of_type(r, "ioctl.summary");
  ASSERT_EQ(sums.size(), 3u);
  EXPECT_EQ(sums[0]["calls"], 2);
  EXPECT_EQ(sums[1]["calls"], 2);
  EXPECT_EQ(sums[2]["calls"], 1);
  EXPECT_EQ(sums[1]["boottime_ns"].get<uint64_t>() - sums[0]["first_boottime_ns"].get<uint64_t>(), 1'500'000'000ull);
  EXPECT_EQ(r.open_after_engine, 1u);
}
