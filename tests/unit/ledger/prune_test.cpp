// Pruning (issue 15, item 4): what goes, what stays, that the rest verifies
// from the anchor and says what was pruned, and the attacks on it: segments
// removed by hand behind a copied anchor, a changed anchor, a damaged
// pruned.json, a record changed after the prune, a prune cut short, two
// writers at once.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <bit>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "gpugate/ledger.hpp"
#include "gpugate/log_prune.hpp"
#include "gpugate/log_reader.hpp"
#include "gpugate/log_verify.hpp"
#include "gpugate/ship.hpp"
#include "ledger_files.hpp"
#include "ledger_read.hpp"
#include "process.hpp"
#include "tempdir.hpp"

using namespace gpugate;
namespace fs = std::filesystem;
using gpugate::test::slurp;
using gpugate::test::spit;
using gpugate::test::TempDir;

namespace {

LedgerOptions options(std::shared_ptr<const tlog::LogKey> key) {
  auto o = gpugate::test::test_ledger_options(std::move(key), 4096);
  o.compress_sealed = true;
  return o;
}

std::vector<uint32_t> segment_numbers(const fs::path& dir) {
  std::vector<uint32_t> out;
  auto segs = ledger::list_segments(dir);
  if (segs)
    for (const auto& s : *segs) out.push_back(s.number);
  return out;
}

ledger::VerifyReport verify(const fs::path& dir, const tlog::LogKey& key) {
  return gpugate::test::verify_with_key(dir, key);
}

gpugate::test::CommandResult gpugate_cli(const std::string& args) {
  return gpugate::test::run_shell(std::string(GG_BIN_DIR) + "/gpugate " + args);
}

// A ledger of 400 records in many 4 KiB segments, signed and closed.
void write_ledger(const fs::path& dir, const std::shared_ptr<const tlog::LogKey>& key, uint64_t n = 400) {
  auto w = LedgerWriter::open(dir, options(key));
  ASSERT_TRUE(w.ok()) << w.error().message;
  gpugate::test::append_ioctls(*w, 0, n);
  ASSERT_TRUE(w->checkpoint("shutdown").ok());
}

}  // namespace

TEST(Prune, WholeOldSegmentsGoAndTheRestVerifiesFromTheAnchor) {
  TempDir dir;
  auto key = gpugate::test::test_key();
  write_ledger(dir.path, key);
  auto before = segment_numbers(dir.path);
  ASSERT_GE(before.size(), 6u);

  auto w = LedgerWriter::open(dir.path, options(key));
  ASSERT_TRUE(w.ok()) << w.error().message;
  auto done = w->prune({.before_seq = 150, .before_unix_ns = {}});
  ASSERT_TRUE(done.ok()) << done.error().message;
  uint64_t first_seq = (*done)["first_seq"].get<uint64_t>();
  EXPECT_LE(first_seq, 150u) << "only segments whose records all come before the cut go";
  EXPECT_GT(first_seq, 0u);
  auto after = segment_numbers(dir.path);
  EXPECT_EQ(after.front(), before.front() + (*done)["segments"].size());
  EXPECT_EQ(after.back(), before.back());
  EXPECT_TRUE(fs::exists(dir.path / "pruned.json"));
  auto pruned = gpugate::test::ledger_records(dir.path, "ledger.pruned");
  ASSERT_EQ(pruned.size(), 1u);
  EXPECT_EQ(pruned[0]["first_seq"], first_seq);
  EXPECT_EQ(pruned[0]["seq"].get<uint64_t>(), (*done)["recorded_at"].get<uint64_t>());
  ASSERT_TRUE(w->checkpoint("after prune").ok());

  // What is left is the records from the cut on, and it verifies.
  auto kept = gpugate::test::ioctl_numbers(dir.path);
  ASSERT_FALSE(kept.empty());
  EXPECT_EQ(kept.back(), 399u);
  auto r = verify(dir.path, *key);
  EXPECT_EQ(r.exit_code, ledger::kVerifyOk) << r.text();
  ASSERT_TRUE(r.pruned.has_value()) << r.text();
  EXPECT_EQ(r.pruned->first_seq, first_seq);
  EXPECT_EQ(r.pruned->recorded_at, (*done)["recorded_at"].get<uint64_t>());
  EXPECT_EQ(r.pruned->segments.size(), (*done)["segments"].size());
  EXPECT_FALSE(r.unsigned_tail && r.unsigned_tail->records > 1) << r.text();
  EXPECT_NE(r.text().find("seq 0.." + std::to_string(first_seq - 1) + " were pruned"), std::string::npos) << r.text();
  EXPECT_EQ(r.json()["pruned"]["first_seq"], first_seq);

  // One writer at a time: a second one (a prune while gpugated runs) is refused.
  auto second = LedgerWriter::open(dir.path, options(key));
  ASSERT_FALSE(second.ok()) << "the first writer still holds the ledger";
  EXPECT_NE(second.error().message.find("locked"), std::string::npos) << second.error().message;
}

TEST(Prune, AResumedWriterGoesOnAfterAPruneAndVerifyCoversAllPrunes) {
  TempDir dir;
  auto key = gpugate::test::test_key();
  write_ledger(dir.path, key);
  uint64_t first = 0;
  {
    auto w = LedgerWriter::open(dir.path, options(key));
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(w->prune({.before_seq = 100, .before_unix_ns = {}}).ok());
    auto second = w->prune({.before_seq = 250, .before_unix_ns = {}});
    ASSERT_TRUE(second.ok()) << second.error().message;
    first = (*second)["first_seq"].get<uint64_t>();
  }
  auto w = LedgerWriter::open(dir.path, options(key));
  ASSERT_TRUE(w.ok()) << w.error().message;
  gpugate::test::append_ioctls(*w, 400, 450);
  ASSERT_TRUE(w->checkpoint("shutdown").ok());
  auto r = verify(dir.path, *key);
  EXPECT_EQ(r.exit_code, ledger::kVerifyOk) << r.text();
  ASSERT_TRUE(r.pruned);
  EXPECT_EQ(r.pruned->first_seq, first);
  auto anchor = ledger::read_prune_anchor(dir.path.string());
  ASSERT_TRUE(anchor.ok() && anchor->has_value());
  EXPECT_EQ((*anchor)->pruned.size(), r.pruned->segments.size());
  EXPECT_EQ((*anchor)->pruned.front().name, "000001.jsonl") << "the list keeps every prune's segments";
  EXPECT_EQ(gpugate::test::ledger_records(dir.path, "ledger.pruned").size(), 2u);
  EXPECT_EQ(gpugate::test::ioctl_numbers(dir.path).back(), 449u);
}

TEST(Prune, TheNewestSealedAndTheOpenSegmentStayAndNothingToPruneSaysWhy) {
  TempDir dir;
  auto key = gpugate::test::test_key();
  write_ledger(dir.path, key);
  auto before = segment_numbers(dir.path);
  auto w = LedgerWriter::open(dir.path, options(key));
  ASSERT_TRUE(w.ok());
  auto none = w->prune({.before_seq = 0, .before_unix_ns = {}});
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("nothing to prune before seq 0"), std::string::npos) << none.error().message;
  EXPECT_NE(none.error().message.find("not all before the cut"), std::string::npos) << none.error().message;
  EXPECT_FALSE(fs::exists(dir.path / "pruned.json")) << "a refused prune writes nothing";
  auto all = w->prune({.before_seq = 1000000, .before_unix_ns = {}});
  ASSERT_TRUE(all.ok()) << all.error().message;
  auto after = segment_numbers(dir.path);
  ASSERT_EQ(after.size(), 2u) << "the newest sealed segment and the one being written stay";
  EXPECT_EQ(after.back(), before.back());
  ASSERT_TRUE(w->checkpoint("shutdown").ok());
  EXPECT_EQ(verify(dir.path, *key).exit_code, ledger::kVerifyOk);
  // By time: nothing was written before 1970.
  auto old = w->prune({.before_seq = {}, .before_unix_ns = 1});
  ASSERT_FALSE(old.ok());
}

// An attacker with root removes old segments by hand and copies in a
// pruned.json made from a real closing checkpoint: the signature holds, but
// no ledger.pruned record names the cut.
TEST(Prune, SegmentsRemovedByHandBehindARealAnchorAreFound) {
  TempDir dir;
  auto key = gpugate::test::test_key();
  write_ledger(dir.path, key);
  auto plan = ledger::plan_prune(dir.path.string(), {.before_seq = 150, .before_unix_ns = {}}, 1000);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  ASSERT_TRUE(ledger::write_prune_anchor(dir.path.string(), *plan).ok());
  ASSERT_TRUE(ledger::remove_pruned(dir.path.string(), *plan).ok());
  auto r = verify(dir.path, *key);
  EXPECT_EQ(r.exit_code, ledger::kVerifyTampered) << r.text();
  EXPECT_NE(r.problem.find("no ledger.pruned record names this cut"), std::string::npos) << r.text();
  // Without pruned.json, the gap is the old finding.
  fs::remove(dir.path / "pruned.json");
  r = verify(dir.path, *key);
  EXPECT_EQ(r.exit_code, ledger::kVerifyTampered);
  EXPECT_NE(r.problem.find("are missing (deleted)"), std::string::npos) << r.text();
}

TEST(Prune, AChangedAnchorOrADamagedPrunedJsonIsNamed) {
  TempDir base;
  auto key = gpugate::test::test_key();
  fs::path good = base.path / "good";
  write_ledger(good, key);
  {
    auto w = LedgerWriter::open(good, options(key));
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(w->prune({.before_seq = 150, .before_unix_ns = {}}).ok());
    ASSERT_TRUE(w->checkpoint("shutdown").ok());
  }
  ASSERT_EQ(verify(good, *key).exit_code, ledger::kVerifyOk);
  std::string anchor_text = slurp(good / "pruned.json");
  auto j = nlohmann::ordered_json::parse(anchor_text);
  std::string line = j["anchor"]["line"].get<std::string>();
  struct Case {
    std::string name;
    std::function<void(nlohmann::ordered_json&)> change;
    std::string expect;
  };
  auto replace = [](std::string s, const std::string& from, const std::string& to) {
    auto at = s.find(from);
    if (at != std::string::npos) s.replace(at, from.size(), to);
    return s;
  };
  std::vector<Case> cases = {
      {"the anchor's boot_id",
       [&](nlohmann::ordered_json& a) {
         a["anchor"]["line"] = replace(line, "\"boot_id\":\"boot\"", "\"boot_id\":\"bOot\"");
       },
       "hash no longer matches the prev of the next record"},
      {"the anchor's root",
       [&](nlohmann::ordered_json& a) { a["anchor"]["line"] = replace(line, "\"root\":\"", "\"root\":\"A"); },
       "the checkpoint record's"},
      {"an extra member",
       [&](nlohmann::ordered_json& a) { a["anchor"]["line"] = replace(line, "{\"seq\"", "{\"x\":1,\"seq\""); },
       "not a checkpoint record at seq"},
      {"first_seq", [&](nlohmann::ordered_json& a) { a["first_seq"] = a["first_seq"].get<uint64_t>() + 1; },
       "not a checkpoint record at seq"},
      {"the range",
       [&](nlohmann::ordered_json& a) { a["anchor"]["line"] = replace(line, "\"range\":[\"", "\"range\":[\"B"); },
       "range"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto a = j;
    c.change(a);
    ASSERT_NE(a.dump(), j.dump()) << "the case changes nothing";
    spit(good / "pruned.json", a.dump() + "\n");
    auto r = verify(good, *key);
    EXPECT_EQ(r.exit_code, ledger::kVerifyTampered) << r.text();
    EXPECT_NE(r.text().find(c.expect), std::string::npos) << r.text();
    EXPECT_NE(r.text().find("pruned.json"), std::string::npos) << r.text();
  }
  for (const std::string& junk : {std::string("not json"), std::string("{}"), std::string("[1]"),
                                  std::string(R"({"first_segment":"000001.jsonl","first_seq":3})")}) {
    spit(good / "pruned.json", junk);
    ledger::VerifyOptions o;
    auto r = ledger::verify_ledger(good.string(), o);
    ASSERT_FALSE(r.ok()) << junk;
    EXPECT_NE(r.error().message.find("pruned.json"), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("restore it from a copy"), std::string::npos) << r.error().message;
  }
  fs::remove(good / "pruned.json");
  ASSERT_EQ(mkfifo((good / "pruned.json").c_str(), 0600), 0);
  auto r = ledger::verify_ledger(good.string(), {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("FIFO"), std::string::npos) << r.error().message;
  fs::remove(good / "pruned.json");
  spit(good / "pruned.json", anchor_text);
  EXPECT_EQ(verify(good, *key).exit_code, ledger::kVerifyOk);
}

TEST(Prune, ARecordChangedAfterThePruneIsStillFound) {
  TempDir dir;
  auto key = gpugate::test::test_key();
  write_ledger(dir.path, key);
  {
    auto w = LedgerWriter::open(dir.path, options(key));
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(w->prune({.before_seq = 150, .before_unix_ns = {}}).ok());
    ASSERT_TRUE(w->checkpoint("shutdown").ok());
  }
  auto segs = ledger::list_segments(dir.path);
  ASSERT_TRUE(segs.ok());
  // The first segment kept: decompress it if needed, change one record's n.
  const auto& first = segs->front();
  auto bytes = ledger::SegmentBytes::open(first);
  ASSERT_TRUE(bytes.ok());
  std::string text(bytes->view());
  auto at = text.find("\"n\":");
  ASSERT_NE(at, std::string::npos);
  text[at + 4] = text[at + 4] == '9' ? '8' : '9';
  if (first.compressed) fs::remove(first.path);
  spit(dir.path / first.name, text);
  auto r = verify(dir.path, *key);
  EXPECT_EQ(r.exit_code, ledger::kVerifyTampered) << r.text();
  ASSERT_TRUE(r.bad_place.has_value()) << r.text();
  EXPECT_EQ(r.bad_place->segment, first.name) << r.text();
}

TEST(Prune, APruneCutShortIsFinishedByTheNextAndVerifiesMeanwhile) {
  TempDir dir;
  auto key = gpugate::test::test_key();
  fs::path l = dir.path / "l", copy = dir.path / "copy";
  write_ledger(l, key);
  fs::copy(l, copy);
  auto w = LedgerWriter::open(l, options(key));
  ASSERT_TRUE(w.ok());
  auto done = w->prune({.before_seq = 200, .before_unix_ns = {}});
  ASSERT_TRUE(done.ok()) << done.error().message;
  ASSERT_GE((*done)["segments"].size(), 3u);
  ASSERT_TRUE(w->checkpoint("shutdown").ok());
  ASSERT_EQ(verify(l, *key).exit_code, ledger::kVerifyOk);
  auto put_back = [&](const std::string& name) {
    for (const auto& suffix : {"", ".zst"})
      if (fs::exists(copy / (name + suffix))) fs::copy_file(copy / (name + suffix), l / (name + suffix));
  };

  // A kill during the removals: the last two segments before the cut are back.
  auto removed = (*done)["segments"];
  put_back(removed[removed.size() - 2]["segment"].get<std::string>());
  put_back(removed[removed.size() - 1]["segment"].get<std::string>());
  auto r = verify(l, *key);
  EXPECT_EQ(r.exit_code, ledger::kVerifyOk) << r.text();
  ASSERT_TRUE(r.pruned);
  EXPECT_EQ(r.pruned->left_over.size(), 2u) << r.text();
  EXPECT_NE(r.text().find("is before the cut, left by a prune that stopped: not read"), std::string::npos) << r.text();
  // The next prune, even one that cuts nothing new, removes them; its record is the earlier one.
  auto next = w->prune({.before_seq = 0, .before_unix_ns = {}});
  ASSERT_TRUE(next.ok()) << next.error().message;
  EXPECT_EQ((*next)["finished_earlier_prune"], true);
  EXPECT_EQ(verify(l, *key).pruned->left_over.size(), 0u);
  EXPECT_EQ(gpugate::test::ledger_records(l, "ledger.pruned").size(), 1u);

  // A kill after the record, before pruned.json: every segment is still
  // there, so verify reads them all; the next prune is a new one.
  for (const auto& s : removed) put_back(s["segment"].get<std::string>());
  fs::remove(l / "pruned.json");
  r = verify(l, *key);
  EXPECT_EQ(r.exit_code, ledger::kVerifyOk) << r.text();
  EXPECT_FALSE(r.pruned);
  auto redo = w->prune({.before_seq = 200, .before_unix_ns = {}});
  ASSERT_TRUE(redo.ok()) << redo.error().message;
  ASSERT_TRUE(w->checkpoint("shutdown").ok());
  r = verify(l, *key);
  EXPECT_EQ(r.exit_code, ledger::kVerifyOk) << r.text();
  ASSERT_TRUE(r.pruned);
  EXPECT_EQ(r.pruned->recorded_at, (*done)["recorded_at"].get<uint64_t>())
      << "the same cut again: the first record that names it is the one verify reports\n"
      << r.text();
  EXPECT_GT((*redo)["recorded_at"].get<uint64_t>(), (*done)["recorded_at"].get<uint64_t>());
}

TEST(Prune, TheCommandVerifiesFirstPrunesWithoutADaemonAndSaysWhat) {
  TempDir dir;
  fs::path state = dir.path / "state", l = dir.path / "ledger";
  fs::create_directories(state);
  auto key = tlog::LogKey::load_or_create(state.string(), "gpugate/testhost");
  ASSERT_TRUE(key.ok()) << key.error().message;
  auto shared = std::make_shared<const tlog::LogKey>(std::move(*key));
  write_ledger(l, shared);
  std::string common =
      " --control-socket '' --state-dir " + state.string() + " --key " + (state / "log-key.pub").string();
  auto dry = gpugate_cli("log prune " + l.string() + " --before 150 --dry-run" + common);
  EXPECT_EQ(dry.status, 0) << dry.output;
  EXPECT_NE(dry.output.find("would remove"), std::string::npos) << dry.output;
  EXPECT_TRUE(fs::exists(l / "000001.jsonl.zst")) << "a dry run removes nothing";
  auto bad = gpugate_cli("log prune " + l.string() + " --before yesterday-ish" + common);
  EXPECT_EQ(bad.status, 2) << bad.output;
  EXPECT_NE(bad.output.find("--before yesterday-ish"), std::string::npos) << bad.output;
  auto run = gpugate_cli("log prune " + l.string() + " --before 150" + common);
  ASSERT_EQ(run.status, 0) << run.output;
  EXPECT_NE(run.output.find("removed "), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("recorded as ledger.pruned"), std::string::npos) << run.output;
  EXPECT_FALSE(fs::exists(l / "000001.jsonl.zst"));
  auto v = gpugate_cli("log verify " + l.string() + " --key " + (state / "log-key.pub").string());
  EXPECT_EQ(v.status, 0) << v.output;
  EXPECT_NE(v.output.find("pruned       seq 0.."), std::string::npos) << v.output;
  auto vj = gpugate_cli("log verify --json " + l.string() + " --key " + (state / "log-key.pub").string());
  auto report = nlohmann::json::parse(vj.output, nullptr, false);
  ASSERT_FALSE(report.is_discarded()) << vj.output;
  EXPECT_LT(report["pruned"]["recorded_at"].get<uint64_t>(), report["last_checkpoint"]["size"].get<uint64_t>())
      << "the command signed a checkpoint after its record: " << vj.output;
  auto show = gpugate_cli("log show " + l.string() + " --type ledger.pruned --json");
  EXPECT_EQ(show.status, 0) << show.output;
  EXPECT_NE(show.output.find("\"first_seq\""), std::string::npos) << show.output;
  auto proof = gpugate_cli("log proof 300 " + l.string());
  EXPECT_NE(proof.status, 0) << proof.output;
  EXPECT_NE(proof.output.find("pruned"), std::string::npos) << proof.output;
  // A ledger that does not verify is not pruned.
  auto segs = ledger::list_segments(l);
  ASSERT_TRUE(segs.ok());
  std::string last = slurp(segs->back().path);
  auto at = last.find("\"n\":");
  ASSERT_NE(at, std::string::npos);
  last[at + 4] = last[at + 4] == '9' ? '8' : '9';
  spit(segs->back().path, last);
  auto refused = gpugate_cli("log prune " + l.string() + " --before 1000000" + common);
  EXPECT_EQ(refused.status, 1) << refused.output;
  EXPECT_NE(refused.output.find("does not verify"), std::string::npos) << refused.output;
}

TEST(Prune, TheCommandWithShippedPrunesOnlyWhatEveryDestinationHas) {
  TempDir dir;
  fs::path state = dir.path / "state", l = dir.path / "ledger";
  fs::create_directories(state);
  auto key = tlog::LogKey::load_or_create(state.string(), "gpugate/testhost");
  ASSERT_TRUE(key.ok()) << key.error().message;
  write_ledger(l, std::make_shared<const tlog::LogKey>(std::move(*key)));
  std::string common =
      " --control-socket '' --state-dir " + state.string() + " --key " + (state / "log-key.pub").string();
  auto save = [&](const std::string& name, const std::string& host, uint64_t next_seq) {
    ship::State s;
    s.destination = "dir:/" + name;
    s.host_id = host;
    s.next_seq = next_seq;
    s.range.resize(static_cast<size_t>(std::popcount(next_seq)));
    auto path = (dir.path / (name + ".state")).string();
    EXPECT_TRUE(ship::save_state(path, s).ok());
    return path;
  };
  auto ahead = save("ahead", "testhost", 300), behind = save("behind", "testhost", 120);
  auto other = save("other", "otherhost", 300), claims = save("claims", "testhost", 1'000'000);

  // Refused: another host's state, one that claims more than the ledger has, a time with --shipped.
  for (const auto& [args, want] : std::vector<std::pair<std::string, std::string>>{
           {" --shipped " + other, "ships host otherhost"},
           {" --shipped " + claims, "belongs to another ledger"},
           {" --shipped " + ahead + " --before 30d", "--before 30d is a time"},
           {"", "pass --before SEQ|TIME, or --shipped STATE"}}) {
    auto r = gpugate_cli("log prune " + l.string() + args + common);
    EXPECT_EQ(r.status, 2) << args << ": " << r.output;
    EXPECT_NE(r.output.find(want), std::string::npos) << args << ": " << r.output;
  }
  EXPECT_TRUE(fs::exists(l / "000001.jsonl.zst")) << "a refused prune removes nothing";

  // Two destinations: the cut is the one behind.
  auto run = gpugate_cli("log prune " + l.string() + " --shipped " + ahead + " --shipped " + behind + common);
  ASSERT_EQ(run.status, 0) << run.output;
  auto anchor = ledger::read_prune_anchor(l.string());
  ASSERT_TRUE(anchor.ok() && anchor->has_value());
  EXPECT_LE((*anchor)->first_seq, 120u) << "a record the behind destination lacks was pruned";
  EXPECT_GT((*anchor)->first_seq, 0u);
  auto v = verify(l, *tlog::LogKey::load_or_create(state.string(), "gpugate/testhost"));
  EXPECT_EQ(v.exit_code, ledger::kVerifyOk) << v.text();
}
