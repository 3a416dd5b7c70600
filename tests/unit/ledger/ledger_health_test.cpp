// LedgerHealth: an outage is said once, the gates are told (deny-gated) or
// not (keep-enforcing), and recovery clears them and writes one gap record
// with what was lost.
#include "gpugate/ledger_health.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace gpugate;

namespace {

struct Seen {
  std::vector<bool> gates;
  std::vector<nlohmann::ordered_json> records;
  std::vector<std::string> lines;
};

LedgerHealth make(DiskFullAction action, Seen& seen, bool gates_fail = false) {
  return LedgerHealth(action, {[&seen, gates_fail](bool down) -> Result<void> {
                                 seen.gates.push_back(down);
                                 if (gates_fail) return make_error("the policy map is gone");
                                 return {};
                               },
                               [&seen](const std::string& type, nlohmann::ordered_json body) {
                                 body["type"] = type;
                                 seen.records.push_back(std::move(body));
                               },
                               [&seen](const std::string& line) { seen.lines.push_back(line); }});
}

Result<void> enospc() { return make_error("ledger l: write failed: No space left on device", 28); }

}  // namespace

TEST(LedgerHealth, DenyGatedSetsTheGatesOnceAndClearsThemWithOneGap) {
  Seen seen;
  auto h = make(DiskFullAction::deny_gated, seen);
  h.after_flush({}, 100, 0);
  EXPECT_FALSE(h.down());
  EXPECT_TRUE(seen.lines.empty());
  for (uint64_t t = 200; t < 700; t += 100) h.after_flush(enospc(), t, 3);
  EXPECT_TRUE(h.down());
  EXPECT_EQ(seen.gates, std::vector<bool>{true});
  ASSERT_EQ(seen.lines.size(), 1u) << "said once, not every flush";
  EXPECT_NE(seen.lines[0].find("No space left"), std::string::npos);
  EXPECT_NE(seen.lines[0].find("gated commands are denied"), std::string::npos);
  auto st = h.status();
  EXPECT_EQ(st["writable"], false);
  EXPECT_EQ(st["since_boottime_ns"], 200u);
  EXPECT_EQ(st["gated_denied"], true);
  EXPECT_TRUE(seen.records.empty()) << "nothing can be written while down";

  h.after_flush({}, 900, 5);
  EXPECT_FALSE(h.down());
  EXPECT_EQ(seen.gates, (std::vector<bool>{true, false}));
  ASSERT_EQ(seen.records.size(), 1u);
  const auto& gap = seen.records[0];
  EXPECT_EQ(gap["type"], "gap");
  EXPECT_EQ(gap["class"], "ledger");
  EXPECT_EQ(gap["from_boottime_ns"], 200u);
  EXPECT_EQ(gap["to_boottime_ns"], 900u);
  EXPECT_EQ(gap["failed_flushes"], 5u);
  EXPECT_EQ(gap["lost_records"], 2u) << "the appends lost during the outage, not before it";
  EXPECT_EQ(gap["disk_full_action"], "deny-gated");
  EXPECT_EQ(h.status()["writable"], true);
  EXPECT_EQ(h.outages(), 1u);

  // A second outage is a second gap, counted from its own start.
  h.after_flush(enospc(), 1000, 5);
  h.after_flush({}, 1100, 5);
  ASSERT_EQ(seen.records.size(), 2u);
  EXPECT_EQ(seen.records[1]["failed_flushes"], 1u);
  EXPECT_EQ(seen.records[1]["lost_records"], 0u);
}

TEST(LedgerHealth, KeepEnforcingLeavesTheGatesAlone) {
  Seen seen;
  auto h = make(DiskFullAction::keep_enforcing, seen);
  h.after_flush(enospc(), 10, 0);
  h.after_flush({}, 20, 0);
  EXPECT_TRUE(seen.gates.empty());
  ASSERT_EQ(seen.lines.size(), 2u);
  EXPECT_NE(seen.lines[0].find("keep-enforcing"), std::string::npos);
  ASSERT_EQ(seen.records.size(), 1u);
  EXPECT_EQ(seen.records[0]["disk_full_action"], "keep-enforcing");
}

TEST(LedgerHealth, GatesThatCannotBeToldAreSaid) {
  Seen seen;
  auto h = make(DiskFullAction::deny_gated, seen, true);
  h.after_flush(enospc(), 10, 0);
  ASSERT_EQ(seen.lines.size(), 1u);
  EXPECT_NE(seen.lines[0].find("could not be told"), std::string::npos);
  EXPECT_NE(seen.lines[0].find("the policy map is gone"), std::string::npos);
  EXPECT_EQ(h.status()["gated_denied"], false);
  h.after_flush({}, 20, 0);
  EXPECT_EQ(seen.gates, std::vector<bool>{true}) << "nothing to clear";
}
