// The state watcher's matcher and its record-keeping, driven with recorded
// sequences: no thread, no clock, no GPU.
#include <gtest/gtest.h>

#include "gpugate/watch.hpp"

using namespace gpugate::watch;

namespace {

constexpr uint64_t kMs = 1000000;
constexpr uint64_t kS = 1000 * kMs;
constexpr const char* kBoot = "b0000000-0000-4000-8000-000000000001";
constexpr const char* kGpu = "0000:41:00.0";
constexpr int64_t kWall = 1796000000LL * 1000000000LL;  // realtime at boottime 0

Json ioctl(uint64_t seq, uint64_t boot_ns, const std::string& cls, const std::string& verdict = "allowed",
           const std::string& pci = kGpu, int64_t ret = 0) {
  Json dev{{"path", pci.empty() ? "/dev/nvidiactl" : "/dev/nvidia0"}, {"kind", "nvidia-gpu"}};
  if (!pci.empty()) dev["pci"] = pci;
  return {{"seq", seq},
          {"type", "ioctl"},
          {"realtime_ns", kWall + static_cast<int64_t>(boot_ns)},
          {"boottime_ns", boot_ns},
          {"boot_id", kBoot},
          {"device", dev},
          {"decoded", {{"command", "NV2080_CTRL_CMD_TEST"}, {"class", cls}}},
          {"verdict", verdict},
          {"grant", nullptr},
          {"result", {{"ret", ret}, {"nv_status", ret ? Json(nullptr) : Json(0)}}}};
}

Json grant(uint64_t seq, uint64_t boot_ns, uint32_t id, const std::string& cls, int64_t not_before, int64_t not_after,
           const std::string& gpu = kGpu, const std::string& node = "/dev/nvidia0") {
  return {{"seq", seq},
          {"type", "grant.installed"},
          {"realtime_ns", kWall + static_cast<int64_t>(boot_ns)},
          {"boottime_ns", boot_ns},
          {"boot_id", kBoot},
          {"grant_id", id},
          {"class", cls},
          {"gpu", gpu},
          {"devices", Json::array({node})},
          {"not_before", not_before},
          {"not_after", not_after}};
}

Change change(const std::string& field, Json before, Json after, uint64_t before_ns, uint64_t after_ns) {
  Change c;
  c.pci = kGpu;
  c.nodes = {"/dev/nvidia0"};
  c.field = field;
  c.before = std::move(before);
  c.after = std::move(after);
  c.before_ns = before_ns;
  c.after_ns = after_ns;
  c.after_realtime_ns = kWall + static_cast<int64_t>(after_ns);
  return c;
}

int64_t wall_s(uint64_t boot_ns) { return (kWall + static_cast<int64_t>(boot_ns)) / 1000000000; }

TEST(Explainer, AnAllowedCommandOfTheRightClassOnThatGpuExplainsTheChange) {
  Explainer ex(10 * kS, kBoot);
  ex.note(ioctl(7, 100 * kS, "power.limit"));
  auto e = ex.explain(change("power.limit_mw", 700000, 500000, 99 * kS, 101 * kS));
  ASSERT_EQ(e.kind, "command");
  EXPECT_TRUE(e.has_seq);
  EXPECT_EQ(e.seq, 7u);
  EXPECT_EQ(e.detail["authorized"], true);
  EXPECT_EQ(e.detail["class"], "power.limit");
}

TEST(Explainer, TheNewestMatchingCommandIsTheOneNamed) {
  Explainer ex(10 * kS, kBoot);
  ex.note(ioctl(3, 95 * kS, "power.limit"));
  ex.note(ioctl(9, 100 * kS, "power.limit"));
  auto e = ex.explain(change("power.limit_mw", 700000, 500000, 99 * kS, 101 * kS));
  EXPECT_EQ(e.seq, 9u);
}

TEST(Explainer, DeniedFailedOtherClassAndOtherGpuCommandsExplainNothing) {
  Explainer ex(10 * kS, kBoot);
  ex.note(ioctl(1, 100 * kS, "power.limit", "denied"));
  ex.note(ioctl(2, 100 * kS, "power.limit", "allowed", kGpu, -22));
  ex.note(ioctl(3, 100 * kS, "clock.limit"));
  ex.note(ioctl(4, 100 * kS, "power.limit", "allowed", "0000:42:00.0"));
  ex.note(ioctl(5, 100 * kS, "query"));  // never kept: no query changes a setting
  auto e = ex.explain(change("power.limit_mw", 700000, 500000, 99 * kS, 101 * kS));
  EXPECT_EQ(e.kind, "none");
  EXPECT_FALSE(e.explained());
  ASSERT_EQ(e.candidates.size(), 2u);  // the denied and the failed one, newest first
  EXPECT_EQ(e.candidates[0]["seq"], 2);
  EXPECT_EQ(e.candidates[0]["why_not"], "the driver refused it");
  EXPECT_EQ(e.candidates[1]["seq"], 1);
  EXPECT_EQ(e.candidates[1]["why_not"], "denied: it never reached the driver");
}

TEST(Explainer, ACommandOutsideTheWindowOrAfterTheSampleIsACandidateOnly) {
  Explainer ex(10 * kS, kBoot);
  ex.note(ioctl(1, 80 * kS, "power.limit"));   // 19 s before the earlier sample
  ex.note(ioctl(2, 102 * kS, "power.limit"));  // after the sample that saw the change
  auto e = ex.explain(change("power.limit_mw", 700000, 500000, 99 * kS, 101 * kS));
  EXPECT_EQ(e.kind, "none");
  ASSERT_EQ(e.candidates.size(), 2u);
  EXPECT_EQ(e.candidates[0]["why_not"], "recorded after the sample that saw the change");
  EXPECT_EQ(e.candidates[1]["why_not"], "19000 ms before the earlier sample: outside the window of 10000 ms");
}

TEST(Explainer, TheWindowBoundaryIsInclusive) {
  Explainer ex(10 * kS, kBoot);
  ex.note(ioctl(1, 89 * kS, "power.limit"));
  EXPECT_EQ(ex.explain(change("power.limit_mw", 1, 2, 99 * kS, 101 * kS)).kind, "command");
  Explainer late(10 * kS, kBoot);
  late.note(ioctl(1, 89 * kS - 1, "power.limit"));
  EXPECT_EQ(late.explain(change("power.limit_mw", 1, 2, 99 * kS, 101 * kS)).kind, "none");
}

TEST(Explainer, AMonitorModeCommandExplainsButIsNotAuthorized) {
  Explainer ex(10 * kS, kBoot);
  ex.note(ioctl(4, 100 * kS, "power.off", "would-deny"));
  auto e = ex.explain(change("power.on", true, false, 99 * kS, 101 * kS));
  ASSERT_EQ(e.kind, "command");
  EXPECT_EQ(e.detail["authorized"], false);
  EXPECT_NE(e.detail["note"].get<std::string>().find("monitor mode"), std::string::npos);
}

TEST(Explainer, AControlNodeCommandNamesNoGpuAndCountsForEach) {
  Explainer ex(10 * kS, kBoot);
  ex.note(ioctl(5, 100 * kS, "power.off", "allowed", ""));
  auto e = ex.explain(change("power.level", 0, 4, 99 * kS, 101 * kS));
  ASSERT_EQ(e.kind, "command");
  EXPECT_NE(e.detail["note"].get<std::string>().find("names no single GPU"), std::string::npos);
}

TEST(Explainer, AnAllowedResetExplainsAnySetting) {
  Explainer ex(10 * kS, kBoot);
  ex.note(ioctl(6, 100 * kS, "gpu.reset"));
  EXPECT_EQ(ex.explain(change("power.limit_mw", 500000, 700000, 99 * kS, 101 * kS)).kind, "reset");
  EXPECT_EQ(ex.explain(change("clocks.sm_max_mhz", 600, 1980, 99 * kS, 101 * kS)).kind, "reset");
}

TEST(Explainer, AKnobWriteOnThatGpuExplainsItsSetting) {
  Explainer ex(10 * kS, kBoot);
  Json knob{{"seq", 11},
            {"type", "knob.write"},
            {"boottime_ns", 100 * kS},
            {"boot_id", kBoot},
            {"gpu", {{"pci", kGpu}}},
            {"knob", {{"name", "hwmon/hwmon2/power1_cap"}}},
            {"decoded", {{"class", "power.limit"}}},
            {"verdict", "allowed"}};
  ex.note(knob);
  auto e = ex.explain(change("sysfs:hwmon/hwmon2/power1_cap", 300000000, 250000000, 99 * kS, 101 * kS));
  ASSERT_EQ(e.kind, "command");
  EXPECT_EQ(e.seq, 11u);
  EXPECT_EQ(e.detail["what"], "a write of hwmon/hwmon2/power1_cap");
}

TEST(Explainer, AGrantWhoseWindowCoversTheChangeExplainsIt) {
  Explainer ex(10 * kS, kBoot);
  ex.note(grant(20, 50 * kS, 3, "power.limit", wall_s(50 * kS), wall_s(50 * kS) + 3600));
  auto e = ex.explain(change("power.limit_mw", 700000, 500000, 99 * kS, 101 * kS));
  ASSERT_EQ(e.kind, "grant");
  EXPECT_EQ(e.seq, 20u);
  EXPECT_EQ(e.detail["grant_id"], 3);
}

TEST(Explainer, AGrantForAnotherGpuClassOrTimeOrRevokedExplainsNothing) {
  Explainer ex(10 * kS, kBoot);
  int64_t t = wall_s(50 * kS);
  ex.note(grant(20, 50 * kS, 3, "power.limit", t, t + 3600, "0000:42:00.0", "/dev/nvidia1"));  // another GPU
  ex.note(grant(21, 50 * kS, 4, "clock.limit", t, t + 3600));                                  // another class
  ex.note(grant(22, 50 * kS, 5, "power.limit", t, t + 10));                                    // ended long before
  ex.note(grant(23, 50 * kS, 6, "power.limit", t, t + 3600));
  ex.note({{"seq", 24},
           {"type", "grant.revoked"},
           {"boot_id", kBoot},
           {"grant_id", 6},
           {"realtime_ns", kWall + static_cast<int64_t>(60 * kS)}});
  auto e = ex.explain(change("power.limit_mw", 700000, 500000, 99 * kS, 101 * kS));
  EXPECT_EQ(e.kind, "none");
  ASSERT_EQ(e.candidates.size(), 2u);
  EXPECT_EQ(e.candidates[0]["seq"], 23);
  EXPECT_EQ(e.candidates[0]["why_not"], "revoked or ended before the change");
  EXPECT_EQ(e.candidates[1]["seq"], 22);
  EXPECT_EQ(e.candidates[1]["why_not"], "its window does not cover the change");
}

TEST(Explainer, AThermalThrottleIsHardwareProtection) {
  Explainer ex(10 * kS, kBoot);
  auto e = ex.explain(change("clocks.event_reasons", Json::array({"gpu_idle"}),
                             Json::array({"hw_thermal_slowdown", "sw_thermal_slowdown"}), 99 * kS, 101 * kS));
  ASSERT_EQ(e.kind, "hardware-protection");
  EXPECT_EQ(e.detail["reasons"], Json::array({"hw_thermal_slowdown", "sw_thermal_slowdown"}));
}

TEST(Explainer, APowerCapThrottleUnderLoadIsTheLimitInForce) {
  Explainer ex(10 * kS, kBoot);
  auto e = ex.explain(change("clocks.event_reasons", Json::array(), Json::array({"sw_power_cap"}), 99 * kS, 101 * kS));
  EXPECT_EQ(e.kind, "load-at-power-limit");
}

TEST(Explainer, AThrottleOfAnUnknownReasonIsUnexplained) {
  Explainer ex(10 * kS, kBoot);
  auto e =
      ex.explain(change("clocks.event_reasons", Json::array(), Json::array({"unknown_0x1000"}), 99 * kS, 101 * kS));
  EXPECT_EQ(e.kind, "none");
  EXPECT_EQ(e.detail["reasons"], Json::array({"unknown_0x1000"}));
}

TEST(Explainer, AnEnforcedLimitDropUnderPowerBrakeIsHardwareProtection) {
  Explainer ex(10 * kS, kBoot);
  auto c = change("power.enforced_limit_mw", 700000, 350000, 99 * kS, 101 * kS);
  c.reasons = {"hw_power_brake_slowdown"};
  EXPECT_EQ(ex.explain(c).kind, "hardware-protection");
  c.reasons = {"gpu_idle"};
  EXPECT_EQ(ex.explain(c).kind, "none");
}

TEST(Explainer, RecordsOfAnotherBootExplainNothing) {
  Explainer ex(10 * kS, kBoot);
  Json old = ioctl(1, 100 * kS, "power.limit");
  old["boot_id"] = "b0000000-0000-4000-8000-000000000002";
  ex.note(old);
  EXPECT_EQ(ex.size(), 0u);
  EXPECT_EQ(ex.explain(change("power.limit_mw", 1, 2, 99 * kS, 101 * kS)).kind, "none");
}

TEST(Explainer, AWallClockJumpBetweenCommandAndSampleChangesNothing) {
  // The command's realtime says a year later (the clock was set forward and
  // back): the match is on boottime, which never jumps.
  Explainer ex(10 * kS, kBoot);
  Json cmd = ioctl(8, 100 * kS, "clock.limit");
  cmd["realtime_ns"] = kWall + 365LL * 86400 * 1000000000LL;
  ex.note(cmd);
  auto c = change("clocks.sm_max_mhz", 1980, 600, 99 * kS, 101 * kS);
  c.after_realtime_ns = kWall - 3600LL * 1000000000LL;
  EXPECT_EQ(ex.explain(c).kind, "command");
}

TEST(Explainer, MalformedRecordsAreIgnored) {
  Explainer ex(10 * kS, kBoot);
  ex.note(Json("a string"));
  ex.note(Json::array({1, 2}));
  ex.note({{"type", "ioctl"}, {"boot_id", kBoot}, {"decoded", 5}, {"device", "x"}, {"result", nullptr}});
  ex.note({{"type", "ioctl"}, {"boot_id", kBoot}, {"decoded", {{"class", 7}}}});
  ex.note({{"type", "grant.installed"}, {"boot_id", kBoot}, {"class", "power.limit"}, {"devices", "x"}});
  EXPECT_EQ(ex.explain(change("power.limit_mw", 1, 2, 99 * kS, 101 * kS)).kind, "none");
}

// ---- The watcher: samples in, records out.

struct Recorded {
  std::vector<std::pair<std::string, Json>> records;
  uint64_t next = 100;
  RecordFn fn() {
    return [this](const std::string& type, Json body) {
      body["seq"] = next;
      records.emplace_back(type, std::move(body));
      return next++;
    };
  }
  [[nodiscard]] std::vector<Json> of(const std::string& type) const {
    std::vector<Json> out;
    for (const auto& [t, b] : records)
      if (t == type) out.push_back(b);
    return out;
  }
};

GpuSample sample(uint64_t limit, uint64_t sm_mhz, Json reasons = Json::array()) {
  GpuSample s;
  s.pci = kGpu;
  s.source = "test";
  s.values["power.limit_mw"] = limit;
  s.values["clocks.sm_mhz"] = sm_mhz;
  s.values["clocks.event_reasons"] = std::move(reasons);
  s.values["pci.present"] = true;
  return s;
}

WatchOptions options() {
  WatchOptions o;
  o.window_ms = 10000;
  o.settle_ms = 500;
  o.boot_id = kBoot;
  return o;
}

TEST(Watcher, TheFirstSampleIsRecordedAndTelemetryChangesAreNot) {
  Watcher w(options(), {}, {});
  Recorded r;
  w.ingest(1 * kS, kWall + kS, {sample(700000, 1980)});
  w.ingest(2 * kS, kWall + 2 * kS, {sample(700000, 1410)});  // the clock moved with load
  w.poll(10 * kS, r.fn());
  ASSERT_EQ(r.records.size(), 1u);
  EXPECT_EQ(r.records[0].first, "state.sample");
  EXPECT_EQ(r.records[0].second["reason"], "start");
  EXPECT_EQ(r.records[0].second["values"]["clocks.sm_mhz"], 1980);
  EXPECT_EQ(w.samples(), 2u);
}

TEST(Watcher, ASettingChangedBehindTheGateIsUnexplainedAfterItSettles) {
  Watcher w(options(), {}, {});
  Recorded r;
  w.ingest(1 * kS, kWall + kS, {sample(700000, 1980)});
  w.ingest(2 * kS, kWall + 2 * kS, {sample(500000, 1980)});
  w.poll(2 * kS + 100 * kMs, r.fn());  // not yet settled
  ASSERT_EQ(r.of("state.sample").size(), 2u);
  EXPECT_TRUE(r.of("state.unexplained").empty());
  w.poll(2 * kS + 500 * kMs, r.fn());
  auto u = r.of("state.unexplained");
  ASSERT_EQ(u.size(), 1u);
  EXPECT_EQ(u[0]["field"], "power.limit_mw");
  EXPECT_EQ(u[0]["before"], 700000);
  EXPECT_EQ(u[0]["after"], 500000);
  EXPECT_EQ(u[0]["sample_seq"], r.of("state.sample")[1]["seq"]);
  EXPECT_EQ(u[0]["window"]["to_boottime_ns"], 2 * kS);
  EXPECT_EQ(u[0]["classes_that_would_explain"], Json::array({"power.limit", "gpu.reset"}));
  EXPECT_EQ(w.unexplained(), 1u);
}

TEST(Watcher, ACommandWhoseRecordArrivesWhileTheChangeSettlesExplainsIt) {
  Watcher w(options(), {}, {});
  Recorded r;
  w.ingest(1 * kS, kWall + kS, {sample(700000, 1980)});
  w.ingest(2 * kS, kWall + 2 * kS, {sample(500000, 1980)});
  w.poll(2 * kS + 10 * kMs, r.fn());
  // The command ran before the sample; its exit left the ring only now.
  w.note(ioctl(42, 1 * kS + 500 * kMs, "power.limit"));
  w.poll(3 * kS, r.fn());
  auto e = r.of("state.explained");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0]["explained_by"]["kind"], "command");
  EXPECT_EQ(e[0]["explained_by"]["seq"], 42);
  EXPECT_TRUE(r.of("state.unexplained").empty());
}

TEST(Watcher, AThermalThrottleIsRecordedAsHardwareProtection) {
  Watcher w(options(), {}, {});
  Recorded r;
  w.ingest(1 * kS, kWall + kS, {sample(700000, 1980, Json::array({"gpu_idle"}))});
  w.ingest(2 * kS, kWall + 2 * kS, {sample(700000, 990, Json::array({"hw_thermal_slowdown"}))});
  w.ingest(3 * kS, kWall + 3 * kS, {sample(700000, 1980, Json::array())});  // over: nothing new
  w.poll(5 * kS, r.fn());
  auto e = r.of("state.explained");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0]["field"], "clocks.event_reasons");
  EXPECT_EQ(e[0]["explained_by"]["kind"], "hardware-protection");
  EXPECT_EQ(r.of("state.sample").size(), 2u);
}

TEST(Watcher, AChangeAcrossADaemonRestartIsExplainedByTheCommandBeforeIt) {
  // The previous daemon sampled at 100 s and recorded the command at 101 s;
  // it stopped, the limit changed, and this daemon's first sample sees it.
  std::vector<Json> tail;
  Json prev{{"seq", 50},
            {"type", "state.sample"},
            {"boot_id", kBoot},
            {"boottime_ns", 100 * kS},
            {"gpu", {{"pci", kGpu}}},
            {"values", {{"power.limit_mw", 700000}, {"pci.present", true}}}};
  tail.push_back(prev);
  tail.push_back(ioctl(51, 101 * kS, "power.limit"));
  Watcher w(options(), {}, {});
  w.seed(tail);
  Recorded r;
  w.ingest(104 * kS, kWall + 104 * kS, {sample(500000, 1980)});
  w.poll(105 * kS, r.fn());
  auto s = r.of("state.sample");
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0]["reason"], "change across a daemon restart");
  EXPECT_EQ(s[0]["previous_sample_seq"], 50);
  auto e = r.of("state.explained");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0]["explained_by"]["seq"], 51);
  EXPECT_EQ(e[0]["window"]["from_boottime_ns"], 90 * kS);
}

TEST(Watcher, AChangeAcrossARestartWithNoCommandIsUnexplained) {
  std::vector<Json> tail;
  tail.push_back({{"seq", 50},
                  {"type", "state.sample"},
                  {"boot_id", kBoot},
                  {"boottime_ns", 100 * kS},
                  {"gpu", {{"pci", kGpu}}},
                  {"values", {{"power.limit_mw", 700000}}}});
  Watcher w(options(), {}, {});
  w.seed(tail);
  Recorded r;
  w.ingest(104 * kS, kWall + 104 * kS, {sample(500000, 1980)});
  w.poll(105 * kS, r.fn());
  ASSERT_EQ(r.of("state.unexplained").size(), 1u);
}

TEST(Watcher, ASampleOfAnotherBootIsNotTheBaseline) {
  std::vector<Json> tail;
  tail.push_back({{"seq", 50},
                  {"type", "state.sample"},
                  {"boot_id", "another boot"},
                  {"boottime_ns", 100 * kS},
                  {"gpu", {{"pci", kGpu}}},
                  {"values", {{"power.limit_mw", 1}}}});
  Watcher w(options(), {}, {});
  w.seed(tail);
  Recorded r;
  w.ingest(4 * kS, kWall + 4 * kS, {sample(500000, 1980)});
  w.poll(5 * kS, r.fn());
  ASSERT_EQ(r.of("state.sample").size(), 1u);
  EXPECT_EQ(r.of("state.sample")[0]["reason"], "start");
  EXPECT_TRUE(r.of("state.unexplained").empty());
}

TEST(Watcher, AFieldThatCouldNotBeReadOnceIsNoChange) {
  Watcher w(options(), {}, {});
  Recorded r;
  w.ingest(1 * kS, kWall + kS, {sample(700000, 1980)});
  GpuSample missing = sample(700000, 1980);
  missing.values.erase("power.limit_mw");
  w.ingest(2 * kS, kWall + 2 * kS, {missing});
  w.poll(5 * kS, r.fn());
  EXPECT_EQ(r.records.size(), 1u);
}

TEST(Watcher, TheGpuFallingOffTheBusIsUnexplainedWithoutAPowerOff) {
  Watcher w(options(), {}, {});
  Recorded r;
  w.ingest(1 * kS, kWall + kS, {sample(700000, 1980)});
  GpuSample gone;
  gone.pci = kGpu;
  gone.values["pci.present"] = false;
  w.ingest(2 * kS, kWall + 2 * kS, {gone});
  w.poll(5 * kS, r.fn());
  auto u = r.of("state.unexplained");
  ASSERT_EQ(u.size(), 1u);
  EXPECT_EQ(u[0]["field"], "pci.present");
  EXPECT_EQ(u[0]["classes_that_would_explain"], Json::array({"power.off", "gpu.reset"}));
}

TEST(Watcher, XidEventsAreRecordedInASample) {
  Watcher w(options(), {}, {});
  Recorded r;
  w.ingest(1 * kS, kWall + kS, {sample(700000, 1980)});
  GpuSample s = sample(700000, 1980);
  s.events.push_back({{"event", "xid"}, {"xid", 79}});
  w.ingest(2 * kS, kWall + 2 * kS, {s});
  w.poll(5 * kS, r.fn());
  auto samples = r.of("state.sample");
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(samples[1]["reason"], "event");
  EXPECT_EQ(samples[1]["events"][0]["xid"], 79);
}

TEST(Fields, JudgedFieldsNameTheClassesThatChangeThem) {
  auto limit = field_spec("power.limit_mw");
  ASSERT_TRUE(limit);
  EXPECT_EQ(limit->kind, FieldKind::Setting);
  auto knob = field_spec("sysfs:hwmon/hwmon3/power1_cap");
  ASSERT_TRUE(knob);
  EXPECT_EQ(knob->kind, FieldKind::Setting);
  EXPECT_EQ(field_spec("clocks.sm_mhz")->kind, FieldKind::Telemetry);
  EXPECT_FALSE(field_spec("sysfs:resource0"));
  EXPECT_FALSE(field_spec("no.such.field"));
  EXPECT_EQ(clock_event_reason_names(0x44), (std::vector<std::string>{"sw_power_cap", "hw_thermal_slowdown"}));
  EXPECT_EQ(clock_event_reason_names(0x10000), (std::vector<std::string>{"unknown_0x10000"}));
}

}  // namespace
