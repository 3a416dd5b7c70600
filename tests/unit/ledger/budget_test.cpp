// The ledger's size budget (gpugated --ledger-max-gib, issue 15 item 4): over
// it, the writer prunes whole sealed segments that were shipped, and keeps
// everything else with a ledger.budget record saying why. An attacker's aim
// here is to make the recorder forget: a budget with nothing shipped, a
// shipping state that claims too much, or one of another host. Each must
// leave every unshipped record in place and the ledger verifying.
#include <gtest/gtest.h>

#include <bit>
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "gpugate/ledger.hpp"
#include "gpugate/log_verify.hpp"
#include "gpugate/ship.hpp"
#include "ledger_files.hpp"
#include "ledger_read.hpp"
#include "process.hpp"
#include "tempdir.hpp"

using namespace gpugate;
namespace fs = std::filesystem;
using gpugate::test::TempDir;

namespace {

constexpr uint64_t kSegment = 4096;
constexpr uint64_t kBudget = 8 * kSegment;

LedgerOptions options(std::shared_ptr<const tlog::LogKey> key) {
  auto o = gpugate::test::test_ledger_options(std::move(key), kSegment);
  o.budget.max_bytes = kBudget;
  return o;
}

// The seq of the record whose "n" is N.
uint64_t seq_of_ioctl(const fs::path& dir, uint64_t n) {
  for (const auto& j : gpugate::test::ledger_records(dir, "ioctl"))
    if (j["n"] == n) return j["seq"].get<uint64_t>();
  ADD_FAILURE() << "no ioctl record n=" << n;
  return 0;
}

uint64_t dir_bytes(const fs::path& dir) {
  uint64_t total = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) total += e.file_size();
  return total;
}

std::vector<nlohmann::json> budget_records(const fs::path& dir) {
  return gpugate::test::ledger_records(dir, "ledger.budget");
}

ship::State shipped_state(const std::string& host, uint64_t next_seq) {
  ship::State s;
  s.destination = "dir:/collector";
  s.host_id = host;
  s.next_seq = next_seq;
  s.range.resize(static_cast<size_t>(std::popcount(next_seq)));
  return s;
}

}  // namespace

TEST(Budget, WithinTheBudgetNothingIsRecordedOrRemoved) {
  TempDir dir;
  auto key = gpugate::test::test_key();
  auto o = options(key);
  o.budget.max_bytes = 1 << 20;
  auto w = LedgerWriter::open(dir.path, o);
  ASSERT_TRUE(w.ok()) << w.error().message;
  gpugate::test::append_ioctls(*w, 0, 200);
  w->check_budget();
  EXPECT_FALSE(w->budget_status().over);
  EXPECT_EQ(w->budget_status().max_bytes, 1u << 20);
  EXPECT_EQ(w->budget_status().bytes, dir_bytes(dir.path));
  EXPECT_TRUE(budget_records(dir.path).empty());
  EXPECT_FALSE(fs::exists(dir.path / "pruned.json"));
}

TEST(Budget, OverWithNothingShippedKeepsEveryRecordAndSaysSoOnce) {
  TempDir dir;
  auto key = gpugate::test::test_key();
  auto w = LedgerWriter::open(dir.path, options(key));
  ASSERT_TRUE(w.ok()) << w.error().message;
  gpugate::test::append_ioctls(*w, 0, 600);
  ASSERT_GT(dir_bytes(dir.path), 2 * kBudget) << "the ledger must be well over the budget";
  const auto& b = w->budget_status();
  EXPECT_TRUE(b.over);
  EXPECT_NE(b.reason.find("--ledger-shipped"), std::string::npos) << b.reason;
  EXPECT_EQ(b.pruned_records, 0u);
  ASSERT_TRUE(w->checkpoint("shutdown").ok());

  auto recs = budget_records(dir.path);
  ASSERT_EQ(recs.size(), 1u) << "said when it went over, not at every rotation";
  EXPECT_EQ(recs[0]["state"], "over");
  EXPECT_EQ(recs[0]["max_bytes"], kBudget);
  EXPECT_GT(recs[0]["bytes"].get<uint64_t>(), kBudget);
  EXPECT_EQ(recs[0]["pruned_records"], 0u);
  EXPECT_NE(recs[0]["action"].get<std::string>().find("kept"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir.path / "pruned.json"));
  std::vector<uint64_t> all(600);
  for (uint64_t i = 0; i < 600; i++) all[i] = i;
  EXPECT_EQ(gpugate::test::ioctl_numbers(dir.path), all) << "nothing unshipped is removed";
  auto r = gpugate::test::verify_with_key(dir.path, *key);
  EXPECT_EQ(r.exit_code, ledger::kVerifyOk) << r.text();
}

TEST(Budget, ShippedSegmentsArePrunedUnshippedOnesStayAndShippingMoreBringsItBack) {
  TempDir dir;
  auto key = gpugate::test::test_key();
  auto o = options(key);
  uint64_t shipped = 0;
  std::vector<uint64_t> asked;
  o.budget.shipped_before = [&](uint64_t next_seq) -> Result<uint64_t> {
    asked.push_back(next_seq);
    return shipped;
  };
  auto w = LedgerWriter::open(dir.path, o);
  ASSERT_TRUE(w.ok()) << w.error().message;
  gpugate::test::append_ioctls(*w, 0, 600);
  ASSERT_TRUE(w->budget_status().over) << "nothing shipped yet";
  ASSERT_FALSE(asked.empty());
  ASSERT_FALSE(fs::exists(dir.path / "pruned.json"));

  // Shipped up to ioctl 150: the budget prunes at the next rotation, never past it.
  shipped = seq_of_ioctl(dir.path, 150);
  gpugate::test::append_ioctls(*w, 600, 620);
  ASSERT_TRUE(fs::exists(dir.path / "pruned.json"));
  auto kept = gpugate::test::ioctl_numbers(dir.path);
  ASSERT_FALSE(kept.empty());
  EXPECT_LE(kept.front(), 150u) << "a record not shipped was pruned";
  EXPECT_GT(kept.front(), 0u);
  EXPECT_EQ(kept.back(), 619u);
  for (size_t i = 1; i < kept.size(); i++) ASSERT_EQ(kept[i], kept[i - 1] + 1) << "a hole after the cut";
  EXPECT_GT(w->budget_status().pruned_records, 0u);
  EXPECT_TRUE(w->budget_status().over) << "what is left after ioctl 150 is still over the budget";
  EXPECT_NE(w->budget_status().reason.find("ship more"), std::string::npos) << w->budget_status().reason;
  auto mid = budget_records(dir.path);
  ASSERT_FALSE(mid.empty());
  EXPECT_EQ(mid.back()["state"], "over");
  EXPECT_EQ(mid.back()["shipped_before"], shipped);
  EXPECT_GT(mid.back()["pruned_records"].get<uint64_t>(), 0u) << "the prune is recorded with the state";
  EXPECT_EQ(gpugate::test::ledger_records(dir.path, "ledger.pruned").back()["first_seq"].get<uint64_t>(),
            seq_of_ioctl(dir.path, kept.front()));

  // Everything shipped: back within the budget, said once.
  gpugate::test::append_ioctls(*w, 620, 630);
  shipped = w->next_seq();
  gpugate::test::append_ioctls(*w, 630, 660);
  EXPECT_FALSE(w->budget_status().over) << w->budget_status().reason;
  EXPECT_LE(w->budget_status().bytes, kBudget);
  ASSERT_TRUE(w->checkpoint("shutdown").ok());
  EXPECT_LE(gpugate::test::ioctl_numbers(dir.path).front(), 630u);

  // The budget's own records are pruned with their segments in time; the
  // last one says the ledger is within its budget again.
  auto recs = budget_records(dir.path);
  ASSERT_FALSE(recs.empty());
  EXPECT_EQ(recs.back()["state"], "within") << nlohmann::json(recs).dump(1);
  EXPECT_EQ(recs.back()["shipped_before"], shipped);
  EXPECT_GT(recs.back()["pruned_records"].get<uint64_t>(), 0u);
  auto r = gpugate::test::verify_with_key(dir.path, *key);
  EXPECT_EQ(r.exit_code, ledger::kVerifyOk) << r.text();
  ASSERT_TRUE(r.pruned.has_value());
}

TEST(Budget, AShippingStateThatCannotBeTrustedPrunesNothing) {
  TempDir dir;
  auto key = gpugate::test::test_key();
  auto o = options(key);
  auto state = (dir.path / "ship.state").string();
  o.budget.shipped_before = [&](uint64_t next_seq) { return ship::shipped_before({state}, "testhost", next_seq); };
  auto ledger = dir.path / "ledger";
  auto w = LedgerWriter::open(ledger, o);
  ASSERT_TRUE(w.ok()) << w.error().message;

  // Not written yet: nothing shipped.
  gpugate::test::append_ioctls(*w, 0, 300);
  EXPECT_TRUE(w->budget_status().over);
  EXPECT_NE(w->budget_status().reason.find("ship more"), std::string::npos) << w->budget_status().reason;

  // Another host's state, one that claims more than the ledger holds, a damaged one.
  ASSERT_TRUE(ship::save_state(state, shipped_state("otherhost", 200)).ok());
  gpugate::test::append_ioctls(*w, 300, 340);
  EXPECT_NE(w->budget_status().reason.find("ships host otherhost"), std::string::npos) << w->budget_status().reason;
  ASSERT_TRUE(ship::save_state(state, shipped_state("testhost", 1'000'000)).ok());
  gpugate::test::append_ioctls(*w, 340, 380);
  EXPECT_NE(w->budget_status().reason.find("belongs to another ledger"), std::string::npos)
      << w->budget_status().reason;
  gpugate::test::spit(state, "{\"version\":1,");
  gpugate::test::append_ioctls(*w, 380, 420);
  EXPECT_NE(w->budget_status().reason.find(state), std::string::npos) << w->budget_status().reason;
  EXPECT_TRUE(w->budget_status().over);
  EXPECT_EQ(w->budget_status().pruned_records, 0u);
  EXPECT_FALSE(fs::exists(ledger / "pruned.json"));
  EXPECT_EQ(gpugate::test::ioctl_numbers(ledger).size(), 420u) << "nothing was removed";
  // Each new reason is a record: the operator sees why nothing can go.
  EXPECT_GE(budget_records(ledger).size(), 4u);
  ASSERT_TRUE(w->checkpoint("shutdown").ok());
  auto r = gpugate::test::verify_with_key(ledger, *key);
  EXPECT_EQ(r.exit_code, ledger::kVerifyOk) << r.text();
}

TEST(Budget, ShippedBeforeIsTheLeastOfEveryDestination) {
  TempDir dir;
  auto a = (dir.path / "a.state").string(), b = (dir.path / "b.state").string();
  auto none = (dir.path / "none.state").string();
  ASSERT_TRUE(ship::save_state(a, shipped_state("h", 120)).ok());
  ASSERT_TRUE(ship::save_state(b, shipped_state("h", 77)).ok());
  auto both = ship::shipped_before({a, b}, "h", 500);
  ASSERT_TRUE(both.ok()) << both.error().message;
  EXPECT_EQ(*both, 77u);
  auto with_new = ship::shipped_before({a, none}, "h", 500);
  ASSERT_TRUE(with_new.ok()) << with_new.error().message;
  EXPECT_EQ(*with_new, 0u) << "a destination that has nothing yet holds the cut at 0";
  EXPECT_FALSE(ship::shipped_before({}, "h", 500).ok());
  auto past = ship::shipped_before({a}, "h", 100);
  ASSERT_FALSE(past.ok());
  EXPECT_NE(past.error().message.find(a), std::string::npos) << past.error().message;
}

TEST(Budget, TheDaemonRefusesABudgetItCouldNeverKeepBeforeTouchingAnything) {
  TempDir dir;
  auto gpugated = [&](const std::string& args) {
    return gpugate::test::run_shell(
        fmt::format("{}/gpugated --engine sim --no-discover --ledger {} --state-dir {} -q {}", GG_BIN_DIR,
                    (dir.path / "ledger").string(), dir.path.string(), args));
  };
  auto small = gpugated("--ledger-max-gib 0.1");
  EXPECT_EQ(small.status, 2) << small.output;
  EXPECT_NE(small.output.find("--ledger-max-gib 0.1: less than three segments (192 MiB with --ledger-segment-mib 64)"),
            std::string::npos)
      << small.output;
  auto alone = gpugated("--ledger-shipped " + (dir.path / "ship.state").string());
  EXPECT_EQ(alone.status, 2) << alone.output;
  EXPECT_NE(alone.output.find("add --ledger-max-gib"), std::string::npos) << alone.output;
  auto negative = gpugated("--ledger-max-gib -1");
  EXPECT_EQ(negative.status, 2) << negative.output;
  EXPECT_NE(negative.output.find("--ledger-max-gib"), std::string::npos) << negative.output;
  EXPECT_FALSE(fs::exists(dir.path / "ledger")) << "nothing is written before the options are checked";
  EXPECT_FALSE(fs::exists(dir.path / "log-key"));
}
