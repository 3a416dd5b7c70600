// `gpugate log ship`: a real ledger (LedgerWriter with a key) shipped to a
// collector directory and to an HTTP collector (libmicrohttpd, in this test),
// shipped again after more records, resumed after a destination that failed
// part-way, and refused once a shipped record was changed. No sleeps: the
// shipper's sleep hook returns at once.
#include <gtest/gtest.h>
#include <microhttpd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "../ledger/ledger_files.hpp"
#include "gpugate/ledger.hpp"
#include "gpugate/ship.hpp"
#include "ledger_read.hpp"
#include "process.hpp"
#include "tempdir.hpp"

using namespace gpugate;
namespace fs = std::filesystem;
using gpugate::test::slurp;
using gpugate::test::TempDir;

namespace {

std::shared_ptr<const tlog::LogKey> test_key() {
  return std::make_shared<const tlog::LogKey>(*tlog::LogKey::generate("gpugate/testhost"));
}

LedgerOptions options(std::shared_ptr<const tlog::LogKey> key) {
  LedgerOptions o;
  o.key = std::move(key);
  o.host_id = "testhost";
  o.boot_id = "boot";
  o.checkpoint_records = 10;
  o.checkpoint_ms = 0;
  o.segment_bytes = 4096;  // several segments
  o.fsync = FsyncPolicy::never;
  return o;
}

// n more records (a flush every 5, a checkpoint every 10 and at the end).
void append_records(const fs::path& dir, const std::shared_ptr<const tlog::LogKey>& key, uint64_t n) {
  auto w = LedgerWriter::open(dir, options(key));
  ASSERT_TRUE(w.ok()) << w.error().message;
  for (uint64_t i = 0; i < n; i++) {
    ASSERT_TRUE(w->append_members(fmt::format(R"("type":"ioctl","n":{},"host_id":"testhost")", i)).ok());
    if (i % 5 == 4) ASSERT_TRUE(w->flush().ok());
  }
  ASSERT_TRUE(w->checkpoint("shutdown").ok());
}

// The ledger's records as a collector should hold them: every line, in order.
std::string ledger_text(const fs::path& dir) { return test::ledger_text(dir); }

// The signed checkpoints in the ledger: tree size -> note.
std::map<uint64_t, std::string> ledger_checkpoints(const fs::path& dir) {
  std::map<uint64_t, std::string> out;
  for (const auto& r : test::ledger_records(dir, "checkpoint"))
    out[r["tree_size"].get<uint64_t>()] = r["note"].get<std::string>();
  return out;
}

std::map<uint64_t, std::string> collector_checkpoints(const fs::path& host_dir) {
  std::map<uint64_t, std::string> out;
  for (const auto& e : fs::directory_iterator(host_dir / "checkpoints"))
    out[std::stoull(e.path().stem().string())] = slurp(e.path());
  return out;
}

struct LogShip : ::testing::Test {
  TempDir tmp;
  fs::path ledger = tmp.path / "ledger";
  fs::path collector = tmp.path / "collector";
  fs::path state = tmp.path / "ship.state";
  std::shared_ptr<const tlog::LogKey> key = test_key();

  ship::ShipOptions opts(size_t batch = 1000) {
    ship::ShipOptions o;
    o.ledger_dir = ledger.string();
    o.state_path = state.string();
    o.batch_records = batch;
    o.sleep = [](std::chrono::milliseconds) {};  // never wait in tests
    return o;
  }
  ship::ShipSummary run(ship::Destination& d, const ship::ShipOptions& o) {
    auto r = ship::ship(d, o);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? *r : ship::ShipSummary{};
  }
  uint64_t state_next_seq() { return ship::load_state(state.string())->next_seq; }
};

// A collector directory that stores the first `budget` records it is sent
// and then fails: a crash or an outage part-way through a batch.
class FailAfter final : public ship::Destination {
 public:
  FailAfter(std::unique_ptr<ship::Destination> inner, size_t budget, int code)
      : inner_(std::move(inner)), budget_(budget), code_(code) {}
  [[nodiscard]] std::string name() const override { return inner_->name(); }
  Result<void> begin(const std::string& host) override { return inner_->begin(host); }
  Result<void> send_records(uint64_t first, std::span<const std::string> lines) override {
    if (lines.size() <= budget_) {
      budget_ -= lines.size();
      return inner_->send_records(first, lines);
    }
    if (budget_ > 0) {
      auto r = inner_->send_records(first, lines.first(budget_));
      if (!r) return r;
    }
    budget_ = 0;
    return make_error("test: the collector went away", code_);
  }
  Result<void> send_checkpoint(uint64_t size, const std::string& note) override {
    return inner_->send_checkpoint(size, note);
  }

 private:
  std::unique_ptr<ship::Destination> inner_;
  size_t budget_;
  int code_;
};

}  // namespace

TEST_F(LogShip, DirShipsEverythingThenExactlyTheNewRecords) {
  append_records(ledger, key, 25);
  auto dest = ship::dir_destination(collector.string());
  auto s1 = run(*dest, opts());
  ASSERT_EQ(s1.exit_code, 0) << s1.error;
  size_t total = test::ledger_lines(ledger).size();
  EXPECT_EQ(s1.records, total);
  EXPECT_EQ(s1.next_seq, total);
  EXPECT_EQ(s1.host_id, "testhost");
  fs::path host = collector / "testhost";
  EXPECT_EQ(slurp(host / "records.jsonl"), ledger_text(ledger));
  EXPECT_EQ(collector_checkpoints(host), ledger_checkpoints(ledger));
  EXPECT_EQ(state_next_seq(), total);

  // Nothing new: nothing shipped, nothing changed.
  auto again = run(*ship::dir_destination(collector.string()), opts());
  EXPECT_EQ(again.exit_code, 0) << again.error;
  EXPECT_EQ(again.records, 0u);
  EXPECT_EQ(slurp(host / "records.jsonl"), ledger_text(ledger));

  // More records: exactly those are appended, byte for byte.
  std::string before = slurp(host / "records.jsonl");
  append_records(ledger, key, 17);
  size_t total2 = test::ledger_lines(ledger).size();
  auto s2 = run(*ship::dir_destination(collector.string()), opts(4));
  ASSERT_EQ(s2.exit_code, 0) << s2.error;
  EXPECT_EQ(s2.records, total2 - total);
  std::string after = slurp(host / "records.jsonl");
  ASSERT_EQ(after.substr(0, before.size()), before);
  EXPECT_EQ(after, ledger_text(ledger));
  EXPECT_EQ(collector_checkpoints(host), ledger_checkpoints(ledger));
  auto st = ship::load_state(state.string());
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->next_seq, total2);
  EXPECT_EQ(st->checkpoint_size, ledger_checkpoints(ledger).rbegin()->first);
  EXPECT_EQ(st->checkpoint_note, ledger_checkpoints(ledger).rbegin()->second);
}

TEST_F(LogShip, ResumeAfterAFailurePartWayShipsTheRestOnce) {
  append_records(ledger, key, 40);
  size_t total = test::ledger_lines(ledger).size();
  for (int code : {EAGAIN, 0}) {
    SCOPED_TRACE(code);
    fs::remove_all(collector);
    fs::remove(state);
    // Batches of 4; the collector stores 10 records and fails in the third batch.
    FailAfter flaky(ship::dir_destination(collector.string()), 10, code);
    auto s1 = run(flaky, opts(4));
    EXPECT_EQ(s1.exit_code, ship::kShipDestination);
    EXPECT_NE(s1.error.find("the collector went away"), std::string::npos) << s1.error;
    EXPECT_NE(s1.error.find("resume at seq 8"), std::string::npos) << s1.error;
    EXPECT_EQ(state_next_seq(), 8u);  // two batches acknowledged; the third not
    // The collector stored 10 records: the two batches and two of the third.
    std::string first10;
    auto lines = test::ledger_lines(ledger);
    for (size_t i = 0; i < 10; i++) first10 += lines[i] + "\n";
    EXPECT_EQ(slurp(collector / "testhost" / "records.jsonl"), first10);
    // Resume: the rest, once; the two records stored without an answer are not stored again.
    auto s2 = run(*ship::dir_destination(collector.string()), opts(4));
    ASSERT_EQ(s2.exit_code, 0) << s2.error;
    EXPECT_EQ(s2.records, total - 8);
    EXPECT_EQ(slurp(collector / "testhost" / "records.jsonl"), ledger_text(ledger));
    EXPECT_EQ(collector_checkpoints(collector / "testhost"), ledger_checkpoints(ledger));
  }
}

TEST_F(LogShip, FollowRetriesADestinationThatIsDownAndShipsNewRecords) {
  append_records(ledger, key, 12);
  size_t total = test::ledger_lines(ledger).size();
  std::vector<std::chrono::milliseconds> slept;
  {
    // The collector takes 6 records, then is down for good: --follow retries
    // the batch with a doubling backoff until stopped.
    FailAfter down(ship::dir_destination(collector.string()), 6, EAGAIN);
    auto o = opts(5);
    o.follow = true;
    o.sleep = [&](std::chrono::milliseconds d) { slept.push_back(d); };
    int tries = 0;
    o.on_retry = [&](const std::string& m) {
      tries++;
      EXPECT_NE(m.find("retrying in"), std::string::npos) << m;
    };
    o.stop = [&] { return tries >= 3; };
    auto s = run(down, o);
    EXPECT_EQ(s.exit_code, 0) << s.error;
    EXPECT_EQ(s.retries, 3u);
    EXPECT_EQ(s.next_seq, 5u);
    EXPECT_EQ(state_next_seq(), 5u);
    ASSERT_EQ(slept.size(), 3u);
    EXPECT_EQ(slept[0], o.interval);
    EXPECT_EQ(slept[1], o.interval * 2);
    EXPECT_EQ(slept[2], o.interval * 4);
  }
  // Back up: the rest ships; the first idle poll finds more records, which ship too.
  auto o = opts(5);
  o.follow = true;
  uint64_t acked = 0;
  bool appended = false;
  o.on_batch = [&](const ship::BatchReport& b) { acked = b.first_seq + b.count; };
  o.sleep = [&](std::chrono::milliseconds) {
    if (acked == total && !appended) {
      appended = true;
      append_records(ledger, key, 3);
    }
  };
  o.stop = [&] { return appended && acked == test::ledger_lines(ledger).size(); };
  auto s = run(*ship::dir_destination(collector.string()), o);
  EXPECT_EQ(s.exit_code, 0) << s.error;
  EXPECT_TRUE(appended);
  EXPECT_EQ(s.retries, 0u);
  EXPECT_GT(s.next_seq, total);
  EXPECT_EQ(s.next_seq, test::ledger_lines(ledger).size());
  EXPECT_EQ(slurp(collector / "testhost" / "records.jsonl"), ledger_text(ledger));
  EXPECT_EQ(collector_checkpoints(collector / "testhost"), ledger_checkpoints(ledger));
}

TEST_F(LogShip, AChangedShippedRecordStopsShipping) {
  append_records(ledger, key, 25);
  ASSERT_EQ(run(*ship::dir_destination(collector.string()), opts()).exit_code, 0);
  std::string state_before = slurp(state);
  append_records(ledger, key, 3);
  // Rewrite seq 3's line (same length: only its bytes change).
  auto seg = test::ledger_segments(ledger).front();
  std::string text = slurp(seg);
  size_t at = text.find("\"n\":3,");
  ASSERT_NE(at, std::string::npos);
  text[at + 4] = '7';
  std::ofstream(seg, std::ios::binary | std::ios::trunc) << text;
  auto s = run(*ship::dir_destination(collector.string()), opts());
  EXPECT_EQ(s.exit_code, ship::kShipMismatch);
  EXPECT_NE(s.error.find("no longer hash to the root of checkpoint"), std::string::npos) << s.error;
  EXPECT_NE(s.error.find("changed"), std::string::npos) << s.error;
  EXPECT_EQ(s.records, 0u);
  EXPECT_EQ(slurp(state), state_before);

  // The CLI says so too, with exit 1.
  auto cli = test::run_shell(fmt::format("{}/gpugate log ship {} --to dir:{} --state {}", GG_BIN_DIR, ledger.string(),
                                         collector.string(), state.string()));
  EXPECT_EQ(cli.status, 1) << cli.output;
  EXPECT_NE(cli.output.find("checkpoint"), std::string::npos) << cli.output;
}

TEST_F(LogShip, AChangedRecordAfterTheLastCheckpointIsNamedByRange) {
  append_records(ledger, key, 40);
  // Ship seq 0..30 (one record per batch; the collector fails after 31):
  // the last shipped checkpoint signs 21, seq 21..30 are shipped unsigned.
  size_t total = test::ledger_lines(ledger).size();
  ASSERT_GT(total, 31u);
  FailAfter flaky(ship::dir_destination(collector.string()), 31, 0);
  auto s1 = run(flaky, opts(1));
  ASSERT_EQ(s1.exit_code, ship::kShipDestination);
  ASSERT_EQ(state_next_seq(), 31u);
  auto st = ship::load_state(state.string());
  ASSERT_LT(st->checkpoint_size, 30u);
  // Change seq 29 (shipped, after the last shipped checkpoint).
  auto segs = test::ledger_segments(ledger);
  bool changed = false;
  for (const auto& seg : segs) {
    std::string text = slurp(seg);
    size_t at = text.find("{\"seq\":29,");
    if (at == std::string::npos) continue;
    size_t n = text.find("\"n\":", at);
    text[n + 4] = text[n + 4] == '9' ? '8' : '9';
    std::ofstream(seg, std::ios::binary | std::ios::trunc) << text;
    changed = true;
  }
  ASSERT_TRUE(changed);
  auto s = run(*ship::dir_destination(collector.string()), opts());
  EXPECT_EQ(s.exit_code, ship::kShipMismatch);
  EXPECT_NE(s.error.find("within seq 28..29"), std::string::npos) << s.error;
  EXPECT_EQ(state_next_seq(), 31u);
}

TEST_F(LogShip, RemovedRecordsAndAForeignStateAreRefused) {
  append_records(ledger, key, 25);
  ASSERT_EQ(run(*ship::dir_destination(collector.string()), opts()).exit_code, 0);
  // Another destination with this state file.
  auto other = ship::ship(*ship::dir_destination((tmp.path / "elsewhere").string()), opts());
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.error().message.find("belongs to destination"), std::string::npos);
  // The ledger cut back to its first 20 records: fewer than were shipped.
  auto segs = test::ledger_segments(ledger);
  auto lines = test::ledger_lines(ledger);
  for (const auto& seg : segs) fs::remove(seg);
  std::string kept;
  for (size_t i = 0; i < 20; i++) kept += lines[i] + "\n";
  std::ofstream(segs.front(), std::ios::binary) << kept;
  auto s = run(*ship::dir_destination(collector.string()), opts());
  EXPECT_EQ(s.exit_code, ship::kShipMismatch);
  EXPECT_NE(s.error.find("were shipped"), std::string::npos) << s.error;
}

// Prunes the ledger at seq `before` (gpugate log prune does the same through
// the ledger's writer); returns the first kept seq.
uint64_t prune_ledger(const fs::path& dir, const std::shared_ptr<const tlog::LogKey>& key, uint64_t before) {
  auto w = LedgerWriter::open(dir, options(key));
  EXPECT_TRUE(w.ok()) << w.error().message;
  if (!w.ok()) return 0;
  auto done = w->prune({.before_seq = before, .before_unix_ns = {}});
  EXPECT_TRUE(done.ok()) << done.error().message;
  EXPECT_TRUE(w->checkpoint("after prune").ok());
  return done.ok() ? (*done)["first_seq"].get<uint64_t>() : 0;
}

TEST_F(LogShip, AfterAPruneOfShippedRecordsShippingGoesOnFromTheAnchor) {
  append_records(ledger, key, 60);
  auto s1 = run(*ship::dir_destination(collector.string()), opts());
  ASSERT_EQ(s1.exit_code, 0) << s1.error;
  fs::path host = collector / "testhost";
  std::string shipped = slurp(host / "records.jsonl");

  uint64_t first_seq = prune_ledger(ledger, key, s1.next_seq);
  ASSERT_GT(first_seq, 0u);
  ASSERT_TRUE(fs::exists(ledger / "pruned.json"));
  append_records(ledger, key, 30);

  // Rehashed from the anchor: exactly the new records go, after what was shipped.
  auto s2 = run(*ship::dir_destination(collector.string()), opts(7));
  ASSERT_EQ(s2.exit_code, 0) << s2.error;
  EXPECT_GT(s2.records, 30u);
  std::string all = slurp(host / "records.jsonl");
  ASSERT_EQ(all.substr(0, shipped.size()), shipped);
  std::string kept = ledger_text(ledger);
  ASSERT_GE(all.size(), kept.size());
  EXPECT_EQ(all.substr(all.size() - kept.size()), kept) << "the collector holds the kept records byte for byte";
  EXPECT_EQ(s2.next_seq, s1.next_seq + s2.records);
  EXPECT_EQ(std::count(all.begin(), all.end(), '\n'), static_cast<long>(s2.next_seq));
  EXPECT_EQ(state_next_seq(), s2.next_seq);
  // The collector's copy is the whole ledger, prune included: log verify
  // reads it in place, with the collector's newest checkpoint.
  auto v = test::verify_with_key(host, *key);
  EXPECT_EQ(v.exit_code, ledger::kVerifyOk) << v.text();
  EXPECT_EQ(v.records, s2.next_seq) << v.text();
  EXPECT_FALSE(v.pruned.has_value()) << "nothing is pruned at the collector";
  EXPECT_EQ(v.external_ok.size(), 1u) << v.text();
  EXPECT_NE(v.text().find("a collector's copy"), std::string::npos) << v.text();
}

TEST_F(LogShip, TheCollectorsCopyVerifiesInPlaceAndAChangeThereIsFound) {
  append_records(ledger, key, 80);  // several segments
  ASSERT_GE(test::ledger_segments(ledger).size(), 3u);
  ASSERT_EQ(run(*ship::dir_destination(collector.string()), opts()).exit_code, 0);
  fs::path host = collector / "testhost";
  auto ok = test::verify_with_key(host, *key);
  EXPECT_EQ(ok.exit_code, ledger::kVerifyOk) << ok.text();
  auto cli = test::run_shell(fmt::format("{}/gpugate log verify {} --json", GG_BIN_DIR, host.string()));
  EXPECT_EQ(cli.status, 0) << cli.output;

  // A checkpoint record's segment name moved backwards: found.
  std::string text = slurp(host / "records.jsonl");
  auto at = text.rfind("\"segment\":\"0000");
  ASSERT_NE(at, std::string::npos);
  std::string changed = text;
  changed.replace(at + 11, 6, "000001");
  test::spit(host / "records.jsonl", changed);
  auto moved = test::verify_with_key(host, *key);
  EXPECT_EQ(moved.exit_code, ledger::kVerifyTampered) << moved.text();
  // A shipped record changed at the collector: found at its place.
  changed = text;
  at = changed.find("\"n\":7,");
  ASSERT_NE(at, std::string::npos);
  changed[at + 4] = '8';
  test::spit(host / "records.jsonl", changed);
  auto bad = test::verify_with_key(host, *key);
  EXPECT_EQ(bad.exit_code, ledger::kVerifyTampered) << bad.text();
  ASSERT_TRUE(bad.bad_place.has_value());
  EXPECT_EQ(bad.bad_place->segment, "records.jsonl");
}

TEST_F(LogShip, FollowWaitingAtTheEndOfASegmentThatIsPrunedGoesOnAtTheFirstKept) {
  append_records(ledger, key, 40);
  size_t total = test::ledger_lines(ledger).size();
  auto o = opts();
  o.follow = true;
  uint64_t acked = 0, final_seq = 0;
  o.on_batch = [&](const ship::BatchReport& b) { acked = b.first_seq + b.count; };
  // Idle at the end of the last segment: the writer rotates away from it
  // and writes three more, then prunes everything shipped (what gpugated's
  // budget does), the segment the follower waits in included.
  int idle = 0;
  o.sleep = [&](std::chrono::milliseconds) {
    idle++;
    if (acked != total || final_seq) return;
    {
      auto lo = options(key);
      lo.segment_bytes = 1;  // every flush rotates
      auto w = LedgerWriter::open(ledger, lo);
      ASSERT_TRUE(w.ok()) << w.error().message;
      ASSERT_TRUE(w->flush().ok());  // the full last segment is sealed as it is
      for (int i = 0; i < 3; i++) {
        ASSERT_TRUE(w->append_members(fmt::format(R"("type":"ioctl","n":{},"host_id":"testhost")", 1000 + i)).ok());
        ASSERT_TRUE(w->flush().ok());
      }
      auto p = w->prune({.before_seq = acked, .before_unix_ns = {}});
      ASSERT_TRUE(p.ok()) << p.error().message;
      ASSERT_EQ((*p)["first_seq"].get<uint64_t>(), acked) << "the follower's segment is the last one pruned";
    }  // closed: its last rotation writes one more checkpoint record
    final_seq = test::ledger_records(ledger).back()["seq"].get<uint64_t>() + 1;
  };
  o.stop = [&] { return (final_seq && acked == final_seq) || idle > 100; };
  auto s = run(*ship::dir_destination(collector.string()), o);
  EXPECT_EQ(s.exit_code, 0) << s.error;
  EXPECT_LE(idle, 100) << "the follower did not ship the records after the prune; acked " << acked << " of "
                       << final_seq;
  ASSERT_GT(final_seq, total);
  EXPECT_EQ(s.next_seq, final_seq);
  auto v = test::verify_with_key(collector / "testhost", *key);
  EXPECT_EQ(v.records, final_seq) << v.text();
}

TEST_F(LogShip, RecordsPrunedBeforeTheyWereShippedOrAChangedAnchorStopShipping) {
  append_records(ledger, key, 30);
  auto s1 = run(*ship::dir_destination(collector.string()), opts());
  ASSERT_EQ(s1.exit_code, 0) << s1.error;
  std::string state_before = slurp(state);

  // The anchor changed after the prune: its records no longer hash to what was shipped.
  append_records(ledger, key, 60);
  uint64_t first_seq = prune_ledger(ledger, key, s1.next_seq);
  ASSERT_GT(first_seq, 0u);
  std::string anchor = slurp(ledger / "pruned.json");
  auto j = nlohmann::ordered_json::parse(anchor);
  std::string line = j["anchor"]["line"].get<std::string>();
  auto at = line.find("\"reason\":\"");
  ASSERT_NE(at, std::string::npos) << line;
  line.insert(at + 10, "x");
  j["anchor"]["line"] = line;
  test::spit(ledger / "pruned.json", j.dump());
  auto changed = run(*ship::dir_destination(collector.string()), opts());
  EXPECT_EQ(changed.exit_code, ship::kShipMismatch) << changed.error;
  EXPECT_EQ(slurp(state), state_before) << "nothing shipped past the mismatch";
  test::spit(ledger / "pruned.json", anchor);

  // Pruned past what was shipped: those records are on neither side; said, not skipped.
  append_records(ledger, key, 60);
  uint64_t later = prune_ledger(ledger, key, first_seq + 40);
  ASSERT_GT(later, s1.next_seq);
  auto s = run(*ship::dir_destination(collector.string()), opts());
  EXPECT_EQ(s.exit_code, ship::kShipMismatch);
  EXPECT_NE(s.error.find(fmt::format("records {}..{} were pruned", s1.next_seq, later - 1)), std::string::npos)
      << s.error;
  EXPECT_NE(s.error.find("before they were shipped"), std::string::npos) << s.error;
  EXPECT_EQ(slurp(state), state_before);
}

TEST_F(LogShip, ATornCollectorLineIsCutAndALostStateIsHarmless) {
  append_records(ledger, key, 12);
  ASSERT_EQ(run(*ship::dir_destination(collector.string()), opts()).exit_code, 0);
  fs::path records = collector / "testhost" / "records.jsonl";
  // An unacknowledged write cut short, and the state file lost.
  std::ofstream(records, std::ios::app | std::ios::binary) << "{\"seq\":99,\"pr";
  fs::remove(state);
  append_records(ledger, key, 4);
  auto s = run(*ship::dir_destination(collector.string()), opts());
  ASSERT_EQ(s.exit_code, 0) << s.error;
  EXPECT_EQ(slurp(records), ledger_text(ledger));  // no torn bytes, no duplicates
}

// ---- HTTP -----------------------------------------------------------------------

namespace {

// A local HTTP server for the fakes below: collects each request's body and
// hands the whole request to on_post under mu. Derived classes call start()
// when they are built and stop() before their members go.
class PostServer {
 public:
  PostServer(const PostServer&) = delete;
  PostServer& operator=(const PostServer&) = delete;
  [[nodiscard]] bool up() const { return daemon_ != nullptr; }
  std::mutex mu;

 protected:
  PostServer() = default;
  virtual ~PostServer() { stop(); }
  void start() {
    daemon_ = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, nullptr, nullptr, &answer, this,
                               MHD_OPTION_NOTIFY_COMPLETED, &done, nullptr, MHD_OPTION_END);
    if (daemon_) port_ = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT)->port;
  }
  void stop() {
    if (daemon_) MHD_stop_daemon(daemon_);
    daemon_ = nullptr;
  }
  [[nodiscard]] uint16_t port() const { return port_; }
  virtual MHD_Result on_post(MHD_Connection* c, const char* url, const char* method, const std::string& body) = 0;
  static MHD_Result reply(MHD_Connection* c, unsigned status, const std::string& body,
                          const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    MHD_Response* r =
        MHD_create_response_from_buffer(body.size(), const_cast<char*>(body.data()), MHD_RESPMEM_MUST_COPY);
    for (const auto& [k, v] : headers) MHD_add_response_header(r, k.c_str(), v.c_str());
    MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
  }

 private:
  static void done(void*, MHD_Connection*, void** con_cls, MHD_RequestTerminationCode) {
    delete static_cast<std::string*>(*con_cls);
    *con_cls = nullptr;
  }
  static MHD_Result answer(void* cls, MHD_Connection* c, const char* url, const char* method, const char*,
                           const char* data, size_t* size, void** con_cls) {
    auto* self = static_cast<PostServer*>(cls);
    if (!*con_cls) {
      *con_cls = new std::string();
      return MHD_YES;
    }
    auto* body = static_cast<std::string*>(*con_cls);
    if (*size) {
      body->append(data, *size);
      *size = 0;
      return MHD_YES;
    }
    std::lock_guard<std::mutex> lock(self->mu);
    return self->on_post(c, url, method, *body);
  }

  MHD_Daemon* daemon_ = nullptr;
  uint16_t port_ = 0;
};

// A collector per the protocol in docs/ledger.md: keeps records by seq,
// skips what it has, answers 409 for a gap; can answer 500 on demand.
class HttpCollector final : public PostServer {
 public:
  HttpCollector() { start(); }
  ~HttpCollector() override { stop(); }

  [[nodiscard]] std::string url() const { return fmt::format("http://127.0.0.1:{}/ingest", port()); }

  std::vector<std::string> records;
  std::map<uint64_t, std::string> checkpoints;
  std::vector<std::string> hosts, types;
  int fail_next = 0;        // answer 500 without storing
  int store_then_fail = 0;  // store, then answer 500 (the answer lost)
  int posts = 0;

 private:
  static MHD_Result reply(MHD_Connection* c, unsigned status, const std::string& body, uint64_t next = UINT64_MAX) {
    if (next == UINT64_MAX) return PostServer::reply(c, status, body);
    return PostServer::reply(c, status, body, {{"Gpugate-Next-Seq", std::to_string(next)}});
  }
  MHD_Result on_post(MHD_Connection* c, const char* url, const char* method, const std::string& body) override {
    posts++;
    if (std::strcmp(method, "POST") != 0) return reply(c, 405, "POST only\n");
    const char* host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Gpugate-Host");
    const char* type = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    hosts.emplace_back(host ? host : "");
    types.emplace_back(type ? type : "");
    if (fail_next > 0) {
      fail_next--;
      return reply(c, 500, "collector: disk on fire\n");
    }
    if (std::strcmp(url, "/ingest/records") == 0) {
      const char* first = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Gpugate-First-Seq");
      if (!first) return reply(c, 400, "no Gpugate-First-Seq\n");
      uint64_t seq = std::stoull(first);
      if (seq > records.size()) return reply(c, 409, "gap\n", records.size());
      size_t pos = 0;
      while (pos < body.size()) {
        size_t nl = body.find('\n', pos);
        if (nl == std::string::npos) return reply(c, 400, "a line without a newline\n");
        if (seq == records.size()) records.push_back(body.substr(pos, nl - pos));
        seq++;
        pos = nl + 1;
      }
    } else if (std::strcmp(url, "/ingest/checkpoint") == 0) {
      const char* size = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Gpugate-Tree-Size");
      if (!size) return reply(c, 400, "no Gpugate-Tree-Size\n");
      checkpoints[std::stoull(size)] = body;
    } else {
      return reply(c, 404, "no such path\n");
    }
    if (store_then_fail > 0) {
      store_then_fail--;
      return reply(c, 500, "stored, but the answer is lost\n");
    }
    return reply(c, 200, "");
  }
};

std::vector<std::string> ledger_line_list(const fs::path& dir) { return test::ledger_lines(dir); }

}  // namespace

TEST_F(LogShip, HttpShipsRecordsAndCheckpointsAndResumesAfter500) {
  HttpCollector col;
  ASSERT_TRUE(col.up());
  append_records(ledger, key, 25);
  auto dest = ship::open_destination(col.url());
  ASSERT_TRUE(dest.ok());
  // The first batch is refused with 500: exit 3, nothing acknowledged.
  col.fail_next = 1;
  auto s1 = run(**dest, opts(7));
  EXPECT_EQ(s1.exit_code, ship::kShipDestination);
  EXPECT_NE(s1.error.find("answered 500"), std::string::npos) << s1.error;
  EXPECT_NE(s1.error.find("disk on fire"), std::string::npos) << s1.error;
  EXPECT_FALSE(fs::exists(state));
  // Stored, but the answer lost: sent again and not stored twice.
  col.store_then_fail = 1;
  auto s2 = run(**dest, opts(7));
  EXPECT_EQ(s2.exit_code, ship::kShipDestination);
  auto s3 = run(**dest, opts(7));
  ASSERT_EQ(s3.exit_code, 0) << s3.error;
  std::lock_guard<std::mutex> lock(col.mu);
  EXPECT_EQ(col.records, ledger_line_list(ledger));
  EXPECT_EQ(col.checkpoints, ledger_checkpoints(ledger));
  for (const auto& h : col.hosts) EXPECT_EQ(h, "testhost");
  EXPECT_EQ(col.types.front(), "application/x-ndjson");
  EXPECT_NE(std::find(col.types.begin(), col.types.end(), "text/plain; charset=utf-8"), col.types.end());
}

TEST_F(LogShip, HttpFollowRetriesThrough500AndANewRecords) {
  HttpCollector col;
  ASSERT_TRUE(col.up());
  append_records(ledger, key, 12);
  auto dest = ship::open_destination(col.url());
  ASSERT_TRUE(dest.ok());
  col.fail_next = 2;
  auto o = opts(5);
  o.follow = true;
  uint64_t acked = 0;
  o.on_batch = [&](const ship::BatchReport& b) { acked = b.first_seq + b.count; };
  o.stop = [&] { return acked == ledger_line_list(ledger).size(); };
  auto s = run(**dest, o);
  ASSERT_EQ(s.exit_code, 0) << s.error;
  EXPECT_EQ(s.retries, 2u);
  std::lock_guard<std::mutex> lock(col.mu);
  EXPECT_EQ(col.records, ledger_line_list(ledger));
  EXPECT_EQ(col.checkpoints, ledger_checkpoints(ledger));
}

TEST_F(LogShip, HttpCollectorDownIsExit3AndAGapIsRefused) {
  append_records(ledger, key, 5);
  // Nothing listens on port 1.
  auto down = ship::open_destination("http://127.0.0.1:1/x");
  ASSERT_TRUE(down.ok());
  auto s = run(**down, opts());
  EXPECT_EQ(s.exit_code, ship::kShipDestination);
  EXPECT_NE(s.error.find("is the collector up"), std::string::npos) << s.error;
  // A collector that lost what was shipped to it answers 409: not retried.
  HttpCollector col;
  ASSERT_TRUE(col.up());
  ship::State st;
  st.destination = col.url();
  ASSERT_TRUE(ship::save_state(state.string(), st).ok());
  auto d = ship::open_destination(col.url());
  ASSERT_EQ(run(**d, opts()).exit_code, 0);
  {
    std::lock_guard<std::mutex> lock(col.mu);
    col.records.resize(2);
  }
  append_records(ledger, key, 3);
  auto o = opts();
  o.follow = true;
  o.stop = [] { return false; };  // a refusal ends follow mode too
  auto g = run(**d, o);
  EXPECT_EQ(g.exit_code, ship::kShipDestination);
  EXPECT_NE(g.error.find("answered 409"), std::string::npos) << g.error;
  EXPECT_EQ(g.retries, 0u);
}

TEST_F(LogShip, CliShipsAndSaysWhatItDid) {
  append_records(ledger, key, 12);
  size_t total = test::ledger_lines(ledger).size();
  std::string base = fmt::format("{}/gpugate log ship {} --to dir:{} --state {}", GG_BIN_DIR, ledger.string(),
                                 collector.string(), state.string());
  auto human = test::run_shell(base + " --batch 8");
  ASSERT_EQ(human.status, 0) << human.output;
  EXPECT_NE(human.output.find("shipped seq 0..7 (8 records"), std::string::npos) << human.output;
  EXPECT_NE(human.output.find("up to date"), std::string::npos) << human.output;
  append_records(ledger, key, 2);
  auto js = test::run_shell(base + " --json");
  ASSERT_EQ(js.status, 0) << js.output;
  auto j = nlohmann::json::parse(js.output);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["records"], test::ledger_lines(ledger).size() - total);
  EXPECT_EQ(j["next_seq"], test::ledger_lines(ledger).size());
  EXPECT_EQ(slurp(collector / "testhost" / "records.jsonl"), ledger_text(ledger));
  // The collector's copy verifies as a one-segment ledger against a shipped checkpoint.
  fs::create_directories(tmp.path / "copy");
  fs::copy_file(collector / "testhost" / "records.jsonl", tmp.path / "copy" / "000001.jsonl");
  auto cps = collector_checkpoints(collector / "testhost");
  auto verify = test::run_shell(fmt::format("{}/gpugate log verify {} --checkpoint {}/{}.checkpoint", GG_BIN_DIR,
                                            (tmp.path / "copy").string(),
                                            (collector / "testhost" / "checkpoints").string(), cps.rbegin()->first));
  EXPECT_EQ(verify.status, 0) << verify.output;
  auto bad = test::run_shell(std::string(GG_BIN_DIR) + "/gpugate log ship " + ledger.string() + " --to ftp://x");
  EXPECT_EQ(bad.status, 2) << bad.output;
  EXPECT_NE(bad.output.find("dir:PATH"), std::string::npos) << bad.output;
  auto down = test::run_shell(fmt::format("{}/gpugate log ship {} --to http://127.0.0.1:1 --state {}", GG_BIN_DIR,
                                          ledger.string(), (tmp.path / "s2").string()));
  EXPECT_EQ(down.status, 3) << down.output;
  EXPECT_FALSE(fs::exists(tmp.path / "s2"));
}

// ---- --witness (c2sp.org/tlog-witness) -------------------------------------------

namespace {

// A tlog-witness for one log, per c2sp.org/tlog-witness: POST
// /w/add-checkpoint with "old N", the proof lines, a blank line and the
// signed checkpoint. It checks the log's signature (403), that N is the size
// it holds (409 with its size), the consistency proof from its stored
// size/root to the new checkpoint with merkle::verify_consistency (422), and
// answers 200 with a cosignature line made with its own Ed25519 key. It can be
// told to answer a status instead.
class FakeWitness final : public PostServer {
 public:
  explicit FakeWitness(tlog::VerifierKey log_key)
      : log_key_(std::move(log_key)), key_(*tlog::LogKey::generate("witness.example")) {
    start();
  }
  ~FakeWitness() override { stop(); }

  [[nodiscard]] std::string url() const { return fmt::format("http://127.0.0.1:{}/w", port()); }
  [[nodiscard]] const tlog::VerifierKey& key() const { return key_.verifier(); }

  struct Request {
    uint64_t old_size = 0;
    size_t proof_hashes = 0;
    uint64_t new_size = 0;
    unsigned status = 0;
  };
  uint64_t size = 0;  // the latest cosigned checkpoint of the log
  merkle::Hash root{};
  unsigned force_status = 0;  // answer this (once per force_count) without looking
  int force_count = 0;
  std::vector<Request> requests;

 private:
  // Checks the request; the status and body to answer.
  std::pair<unsigned, std::string> handle(const std::string& body, Request& req) {
    size_t nl = body.find('\n');
    if (nl == std::string::npos || !body.starts_with("old ")) return {400, "no old line\n"};
    req.old_size = std::stoull(body.substr(4, nl - 4));
    std::vector<merkle::Hash> proof;
    size_t pos = nl + 1;
    while (true) {
      size_t e = body.find('\n', pos);
      if (e == std::string::npos) return {400, "no blank line\n"};
      if (e == pos) break;
      auto h = merkle::hash_from_base64(std::string_view(body).substr(pos, e - pos));
      if (!h) return {400, "a proof line is not a hash\n"};
      proof.push_back(*h);
      pos = e + 1;
    }
    req.proof_hashes = proof.size();
    auto cp = tlog::parse_signed_checkpoint(std::string_view(body).substr(pos + 1), "request");
    if (!cp) return {400, cp.error().message + "\n"};
    req.new_size = cp->body.size;
    if (cp->body.origin != log_key_.name) return {404, "unknown log\n"};
    if (!tlog::verify_note(cp->parsed, std::span(&log_key_, 1))) return {403, "no valid signature of the log\n"};
    if (req.old_size != size) return {409, std::to_string(size) + "\n"};
    merkle::Hasher h;
    if (auto v = merkle::verify_consistency(h, size, cp->body.size, proof, root, cp->body.root); !v)
      return {422, v.error().message + "\n"};
    size = cp->body.size;
    root = cp->body.root;
    std::string signed_text = key_.sign_note(cp->parsed.text);
    return {200, signed_text.substr(cp->parsed.text.size() + 1)};  // the cosignature line
  }
  MHD_Result on_post(MHD_Connection* c, const char* url, const char* method, const std::string& body) override {
    if (std::strcmp(method, "POST") != 0 || std::strcmp(url, "/w/add-checkpoint") != 0)
      return reply(c, 404, "no such path\n", {{"Content-Type", "text/plain"}});
    Request req;
    std::pair<unsigned, std::string> out;
    if (force_count > 0) {
      force_count--;
      out = {force_status, fmt::format("forced {}\n", force_status)};
    } else {
      out = handle(body, req);
    }
    req.status = out.first;
    requests.push_back(req);
    return reply(c, out.first, out.second,
                 {{"Content-Type", out.first == 409 ? "text/x.tlog.size" : "text/plain; charset=utf-8"}});
  }

  tlog::VerifierKey log_key_;
  tlog::LogKey key_;
};

struct LogShipWitness : LogShip {
  FakeWitness witness{key->verifier()};
  ship::ShipOptions wopts(size_t batch = 1000) {
    auto o = opts(batch);
    o.witness = witness.url();
    return o;
  }
  ship::State st() { return *ship::load_state(state.string()); }
  // A cosigned note signed by the log and by the witness.
  void expect_cosigned(const std::string& note, uint64_t size) {
    auto cp = tlog::parse_signed_checkpoint(note, "cosigned");
    ASSERT_TRUE(cp.ok()) << cp.error().message << "\n" << note;
    EXPECT_EQ(cp->body.size, size);
    EXPECT_EQ(cp->parsed.sigs.size(), 2u) << note;
    auto lk = key->verifier();
    EXPECT_TRUE(tlog::verify_note(cp->parsed, std::span(&lk, 1)).ok()) << note;
    EXPECT_TRUE(tlog::verify_note(cp->parsed, std::span(&witness.key(), 1)).ok()) << note;
  }
};

}  // namespace

TEST_F(LogShipWitness, CosignsEachShippedCheckpointAndProvesFromTheWitnessedSize) {
  ASSERT_TRUE(witness.up());
  append_records(ledger, key, 25);
  auto s1 = run(*ship::dir_destination(collector.string()), wopts());
  ASSERT_EQ(s1.exit_code, 0) << s1.error;
  auto cps = ledger_checkpoints(ledger);
  uint64_t last = cps.rbegin()->first;
  EXPECT_EQ(s1.witness_size, last);
  EXPECT_EQ(st().witness_size, last);
  EXPECT_EQ(st().witness, witness.url());
  fs::path cosigned = collector / "testhost" / "checkpoints" / fmt::format("{}.cosigned", last);
  EXPECT_EQ(s1.cosigned_path, cosigned.string());
  std::string note = slurp(cosigned);
  EXPECT_TRUE(note.starts_with(cps.rbegin()->second)) << note;
  expect_cosigned(note, last);
  {
    std::lock_guard<std::mutex> lock(witness.mu);
    EXPECT_EQ(witness.size, last);
    // Each checkpoint in turn, each proved from the one before.
    ASSERT_EQ(witness.requests.size(), cps.size());
    uint64_t prev = 0;
    for (const auto& r : witness.requests) {
      EXPECT_EQ(r.status, 200u);
      EXPECT_EQ(r.old_size, prev);
      EXPECT_EQ(r.proof_hashes > 0, prev > 0);
      prev = r.new_size;
    }
    witness.requests.clear();
  }
  // Nothing new: nothing sent to the witness.
  auto again = run(*ship::dir_destination(collector.string()), wopts());
  ASSERT_EQ(again.exit_code, 0) << again.error;
  {
    std::lock_guard<std::mutex> lock(witness.mu);
    EXPECT_TRUE(witness.requests.empty());
  }
  // More records: old = the witnessed size, with a proof the witness accepts.
  append_records(ledger, key, 7);
  auto s2 = run(*ship::dir_destination(collector.string()), wopts());
  ASSERT_EQ(s2.exit_code, 0) << s2.error;
  uint64_t last2 = ledger_checkpoints(ledger).rbegin()->first;
  ASSERT_GT(last2, last);
  EXPECT_EQ(st().witness_size, last2);
  {
    std::lock_guard<std::mutex> lock(witness.mu);
    ASSERT_FALSE(witness.requests.empty());
    EXPECT_EQ(witness.requests.front().old_size, last);
    EXPECT_GT(witness.requests.front().proof_hashes, 0u);
    EXPECT_EQ(witness.requests.front().status, 200u);
    EXPECT_EQ(witness.size, last2);
  }
  expect_cosigned(slurp(collector / "testhost" / "checkpoints" / fmt::format("{}.cosigned", last2)), last2);
}

TEST_F(LogShipWitness, A409SaysWhereTheWitnessStandsAndTheRetryProvesFromThere) {
  ASSERT_TRUE(witness.up());
  append_records(ledger, key, 25);
  auto cps = ledger_checkpoints(ledger);
  ASSERT_GE(cps.size(), 3u);
  // An HTTP collector (the cosigned note is kept beside the state file), first
  // without a witness: everything is shipped, nothing witnessed.
  HttpCollector col;
  ASSERT_TRUE(col.up());
  auto dest = ship::open_destination(col.url());
  ASSERT_TRUE(dest.ok());
  ASSERT_EQ(run(**dest, opts()).exit_code, 0);
  // The witness already cosigned the first checkpoint (another shipper, a lost state file).
  auto first = tlog::parse_signed_checkpoint(cps.begin()->second, "first");
  ASSERT_TRUE(first.ok());
  {
    std::lock_guard<std::mutex> lock(witness.mu);
    witness.size = first->body.size;
    witness.root = first->body.root;
  }
  auto s = run(**dest, wopts());
  ASSERT_EQ(s.exit_code, 0) << s.error;
  EXPECT_EQ(s.records, 0u);
  uint64_t last = cps.rbegin()->first;
  EXPECT_EQ(st().witness_size, last);
  EXPECT_EQ(s.cosigned_path, state.string() + ".cosigned");
  expect_cosigned(slurp(state.string() + ".cosigned"), last);
  std::lock_guard<std::mutex> lock(witness.mu);
  ASSERT_EQ(witness.requests.size(), 2u);
  // The state says old 0: 409 with the witness's size; the retry proves from it.
  EXPECT_EQ(witness.requests[0].old_size, 0u);
  EXPECT_EQ(witness.requests[0].status, 409u);
  EXPECT_EQ(witness.requests[1].old_size, first->body.size);
  EXPECT_GT(witness.requests[1].proof_hashes, 0u);
  EXPECT_EQ(witness.requests[1].status, 200u);
  EXPECT_EQ(witness.size, last);
}

TEST_F(LogShipWitness, A409PastTheCheckpointIsAnError) {
  ASSERT_TRUE(witness.up());
  append_records(ledger, key, 5);
  {
    std::lock_guard<std::mutex> lock(witness.mu);
    witness.size = 1000;  // the witness saw a bigger tree of this log: a fork or a rollback
  }
  auto s = run(*ship::dir_destination(collector.string()), wopts());
  EXPECT_EQ(s.exit_code, ship::kShipMismatch);
  EXPECT_NE(s.error.find("has cosigned size 1000"), std::string::npos) << s.error;
  EXPECT_EQ(st().witness_size, 0u);
  EXPECT_EQ(st().next_seq, test::ledger_lines(ledger).size());  // the records are shipped
}

TEST_F(LogShipWitness, RefusalsAreClearErrorsAndLeaveTheWitnessedSize) {
  ASSERT_TRUE(witness.up());
  append_records(ledger, key, 12);
  ASSERT_EQ(run(*ship::dir_destination(collector.string()), wopts()).exit_code, 0);
  uint64_t first = st().witness_size;
  ASSERT_GT(first, 0u);
  append_records(ledger, key, 12);
  uint64_t last = ledger_checkpoints(ledger).rbegin()->first;
  std::string origin = "gpugate/testhost";

  {
    std::lock_guard<std::mutex> lock(witness.mu);
    witness.force_status = 422;
    witness.force_count = 1;
  }
  auto s422 = run(*ship::dir_destination(collector.string()), wopts());
  EXPECT_EQ(s422.exit_code, ship::kShipMismatch);
  EXPECT_NE(s422.error.find("answered 422"), std::string::npos) << s422.error;
  EXPECT_NE(s422.error.find("consistency proof"), std::string::npos) << s422.error;
  EXPECT_NE(s422.error.find(fmt::format("from size {}", first)), std::string::npos) << s422.error;
  EXPECT_EQ(st().witness_size, first);
  EXPECT_FALSE(fs::exists(collector / "testhost" / "checkpoints" / fmt::format("{}.cosigned", last)));

  {
    std::lock_guard<std::mutex> lock(witness.mu);
    witness.force_status = 404;
    witness.force_count = 1;
  }
  auto s404 = run(*ship::dir_destination(collector.string()), wopts());
  EXPECT_EQ(s404.exit_code, ship::kShipDestination);
  EXPECT_NE(s404.error.find("answered 404"), std::string::npos) << s404.error;
  EXPECT_NE(s404.error.find("'" + origin + "'"), std::string::npos) << s404.error;
  EXPECT_NE(s404.error.find(key->verifier().text()), std::string::npos) << s404.error;
  EXPECT_NE(s404.error.find("log-key.pub"), std::string::npos) << s404.error;
  EXPECT_EQ(st().witness_size, first);

  {
    std::lock_guard<std::mutex> lock(witness.mu);
    witness.force_status = 403;
    witness.force_count = 1;
  }
  auto s403 = run(*ship::dir_destination(collector.string()), wopts());
  EXPECT_EQ(s403.exit_code, ship::kShipDestination);
  EXPECT_NE(s403.error.find("answered 403"), std::string::npos) << s403.error;
  EXPECT_EQ(st().witness_size, first);

  // The witness is fine again: the rerun submits what is pending.
  auto ok = run(*ship::dir_destination(collector.string()), wopts());
  ASSERT_EQ(ok.exit_code, 0) << ok.error;
  EXPECT_EQ(st().next_seq, test::ledger_lines(ledger).size());
  EXPECT_EQ(st().witness_size, last);
  expect_cosigned(slurp(collector / "testhost" / "checkpoints" / fmt::format("{}.cosigned", last)), last);
}

TEST_F(LogShipWitness, A500LeavesTheStateAndARerunOrFollowCompletes) {
  ASSERT_TRUE(witness.up());
  append_records(ledger, key, 12);
  {
    std::lock_guard<std::mutex> lock(witness.mu);
    witness.force_status = 500;
    witness.force_count = 1;
  }
  auto s1 = run(*ship::dir_destination(collector.string()), wopts());
  EXPECT_EQ(s1.exit_code, ship::kShipDestination);
  EXPECT_NE(s1.error.find("answered 500"), std::string::npos) << s1.error;
  EXPECT_NE(s1.error.find("run again"), std::string::npos) << s1.error;
  EXPECT_EQ(st().witness_size, 0u);
  EXPECT_EQ(st().next_seq, test::ledger_lines(ledger).size());  // a witness that is down holds up no record
  auto s2 = run(*ship::dir_destination(collector.string()), wopts());
  ASSERT_EQ(s2.exit_code, 0) << s2.error;
  uint64_t last = ledger_checkpoints(ledger).rbegin()->first;
  EXPECT_EQ(st().witness_size, last);

  // --follow retries a witness that answers 500, with backoff, until it cosigns.
  append_records(ledger, key, 12);
  uint64_t last2 = ledger_checkpoints(ledger).rbegin()->first;
  {
    std::lock_guard<std::mutex> lock(witness.mu);
    witness.force_count = 2;
  }
  auto o = wopts();
  o.follow = true;
  o.stop = [&] {
    std::lock_guard<std::mutex> lock(witness.mu);
    return witness.size == last2;
  };
  auto s3 = run(*ship::dir_destination(collector.string()), o);
  ASSERT_EQ(s3.exit_code, 0) << s3.error;
  EXPECT_EQ(s3.retries, 2u);
  EXPECT_EQ(st().witness_size, last2);

  // A witness that is not there: exit 3, state kept.
  append_records(ledger, key, 3);
  auto down = wopts();
  down.witness = "http://127.0.0.1:1/w";
  auto s4 = run(*ship::dir_destination(collector.string()), down);
  EXPECT_EQ(s4.exit_code, ship::kShipDestination);
  EXPECT_NE(s4.error.find("is the witness up"), std::string::npos) << s4.error;
}

TEST_F(LogShipWitness, CliSaysWhatWasCosigned) {
  ASSERT_TRUE(witness.up());
  append_records(ledger, key, 12);
  auto cli = test::run_shell(fmt::format("{}/gpugate log ship {} --to dir:{} --state {} --witness {}", GG_BIN_DIR,
                                         ledger.string(), collector.string(), state.string(), witness.url()));
  ASSERT_EQ(cli.status, 0) << cli.output;
  uint64_t last = ledger_checkpoints(ledger).rbegin()->first;
  EXPECT_NE(cli.output.find(fmt::format("checkpoint {} cosigned", last)), std::string::npos) << cli.output;
  EXPECT_EQ(st().witness_size, last);
}
