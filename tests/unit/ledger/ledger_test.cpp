// The ledger writer and `verify`: segments, checkpoints, crash recovery, and
// a tamper suite in which every kind of change is found at the right place.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

#include <fmt/format.h>

#include "gpugate/ledger.hpp"
#include "gpugate/log_verify.hpp"
#include "ledger_files.hpp"
#include "ledger_read.hpp"
#include "tempdir.hpp"

using namespace gpugate;
namespace fs = std::filesystem;
using gpugate::test::slurp;
using gpugate::test::spit;
using gpugate::test::TempDir;
using gpugate::test::test_key;

namespace {

LedgerOptions options(std::shared_ptr<const tlog::LogKey> key, uint64_t segment_bytes = 1 << 20) {
  return gpugate::test::test_ledger_options(std::move(key), segment_bytes);
}

std::string record(uint64_t i) {
  return fmt::format(R"("type":"ioctl","n":{},"decoded":{{"class":"{}"}},"verdict":"{}")", i,
                     i % 3 ? "query" : "power.off", i % 3 ? "allowed" : "would-deny");
}

// n records, a flush every 5 (checkpoints every 10 records), and a final
// checkpoint. Returns the ledger directory.
void write_ledger(const fs::path& dir, std::shared_ptr<const tlog::LogKey> key, uint64_t n,
                  uint64_t segment_bytes = 1 << 20) {
  auto w = LedgerWriter::open(dir, options(std::move(key), segment_bytes));
  ASSERT_TRUE(w.ok()) << w.error().message;
  for (uint64_t i = 0; i < n; i++) {
    ASSERT_TRUE(w->append_members(record(i)).ok());
    if (i % 5 == 4) ASSERT_TRUE(w->flush().ok());
  }
  ASSERT_TRUE(w->checkpoint("shutdown").ok());
}

ledger::VerifyReport verify(const fs::path& dir, const tlog::LogKey* key, std::vector<fs::path> checkpoints = {},
                            bool local = true) {
  ledger::VerifyOptions o;
  if (key) o.keys.push_back(key->verifier());
  o.local_checkpoint = local;
  for (const auto& c : checkpoints) o.external.push_back({c.string(), *tlog::load_signed_checkpoint(c)});
  auto r = ledger::verify_ledger(dir, o);
  EXPECT_TRUE(r.ok()) << r.error().message;
  return r.ok() ? *r : ledger::VerifyReport{};
}

// Line k (0-based) of segment file p replaced by f(line).
void edit_line(const fs::path& p, size_t k, const std::function<std::string(const std::string&)>& f) {
  std::ifstream in(p);
  std::vector<std::string> lines;
  std::string l;
  while (std::getline(in, l)) lines.push_back(l);
  std::string out;
  for (size_t i = 0; i < lines.size(); i++) {
    std::string s = i == k ? f(lines[i]) : lines[i];
    if (i == k && s == "\x01") continue;  // delete
    out += s + "\n";
  }
  spit(p, out);
}

std::string line_of(const fs::path& p, size_t k) {
  std::ifstream in(p);
  std::string l;
  for (size_t i = 0; i <= k; i++) std::getline(in, l);
  return l;
}

}  // namespace

TEST(Ledger, RecordsChainCheckpointsAndVerify) {
  TempDir dir;
  auto key = test_key();
  write_ledger(dir.path / "l", key, 25);
  auto recs = test::ledger_records(dir.path / "l");
  // 25 records, a checkpoint after every 10 (at the flush after them), one at the end.
  ASSERT_GE(recs.size(), 28u);
  for (size_t i = 0; i < recs.size(); i++) EXPECT_EQ(recs[i]["seq"], i);
  auto cps = test::ledger_records(dir.path / "l", "checkpoint");
  ASSERT_EQ(cps.size(), 3u);
  EXPECT_EQ(cps.back()["reason"], "shutdown");
  EXPECT_EQ(cps[0]["tree_size"], cps[0]["seq"]);
  EXPECT_EQ(cps[0]["key"], key->verifier().text());
  // The published copy is the last checkpoint's note.
  EXPECT_EQ(slurp(dir.path / "l" / "checkpoint"), cps.back()["note"].get<std::string>());
  auto r = verify(dir.path / "l", key.get());
  EXPECT_EQ(r.exit_code, 0) << r.text();
  EXPECT_EQ(r.checkpoints, 3u);
  EXPECT_EQ(r.records, recs.size());
  // Without --key, the first checkpoint's key is used and said so.
  auto tofu = verify(dir.path / "l", nullptr);
  EXPECT_EQ(tofu.exit_code, 0) << tofu.text();
  EXPECT_NE(tofu.key_source.find("first checkpoint"), std::string::npos);
}

TEST(Ledger, SeqAndTreeContinueAcrossRestartsAndSegmentsRotate) {
  TempDir dir;
  auto key = test_key();
  write_ledger(dir.path / "l", key, 40, 600);  // tiny segments: many rotations
  write_ledger(dir.path / "l", key, 40, 600);
  auto segs = test::ledger_segments(dir.path / "l");
  EXPECT_GT(segs.size(), 5u);
  // Every sealed segment ends with a checkpoint.
  for (size_t i = 0; i + 1 < segs.size(); i++) {
    auto lines = test::ledger_lines(dir.path / "l");
    std::ifstream in(segs[i]);
    std::string l, last;
    while (std::getline(in, l)) last = l;
    EXPECT_NE(last.find("\"type\":\"checkpoint\""), std::string::npos) << segs[i];
  }
  auto recs = test::ledger_records(dir.path / "l");
  for (size_t i = 0; i < recs.size(); i++) ASSERT_EQ(recs[i]["seq"], i);
  auto r = verify(dir.path / "l", key.get());
  EXPECT_EQ(r.exit_code, 0) << r.text();
  EXPECT_TRUE(r.warnings.empty()) << r.text();
}

TEST(Ledger, TornLastLineIsKeptNamedAndVerified) {
  TempDir dir;
  auto key = test_key();
  write_ledger(dir.path / "l", key, 12);
  auto seg = dir.path / "l" / "000001.jsonl";
  auto before = slurp(seg);
  std::string torn = R"({"seq":15,"prev":"0011223344556677","type":"ioctl","process":{"pid":4)";
  spit(seg, before + torn);
  // verify before recovery: a warning, not a failure.
  auto r0 = verify(dir.path / "l", key.get());
  EXPECT_EQ(r0.exit_code, 0) << r0.text();
  ASSERT_EQ(r0.warnings.size(), 1u) << r0.text();
  EXPECT_NE(r0.warnings[0].find("torn line"), std::string::npos);
  {
    auto w = LedgerWriter::open(dir.path / "l", options(key));
    ASSERT_TRUE(w.ok()) << w.error().message;
    EXPECT_NE(w->open_note().find("torn line"), std::string::npos);
    EXPECT_EQ(w->next_seq(), 15u) << "the torn line is no record: ledger.recovered took seq 14";
    ASSERT_TRUE(w->append_members(record(99)).ok());
    ASSERT_TRUE(w->checkpoint("shutdown").ok());
  }
  auto after = slurp(seg);
  ASSERT_EQ(after.substr(0, before.size() + torn.size() + 1), before + torn + "\n") << "kept byte for byte";
  auto rec = test::ledger_records(dir.path / "l", "ledger.recovered");
  ASSERT_EQ(rec.size(), 1u);
  EXPECT_EQ(rec[0]["torn"]["offset"], before.size());
  EXPECT_EQ(rec[0]["torn"]["bytes"], torn.size());
  auto r = verify(dir.path / "l", key.get());
  EXPECT_EQ(r.exit_code, 0) << r.text();
  ASSERT_EQ(r.notes.size(), 1u) << r.text();
  // Changing the kept torn bytes is tampering.
  std::string changed = after;
  changed[before.size() + 10] ^= 1;
  spit(seg, changed);
  EXPECT_EQ(verify(dir.path / "l", key.get()).exit_code, 1);
}

TEST(Ledger, ForeignOrBadInputGetsAClearError) {
  TempDir dir;
  spit(dir.path / "file", "x");
  auto f = LedgerWriter::open(dir.path / "file", options(nullptr));
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.error().message.find("not a directory"), std::string::npos);
  fs::create_directories(dir.path / "foreign");
  spit(dir.path / "foreign" / "000001.jsonl", "hello world\n");
  auto g = LedgerWriter::open(dir.path / "foreign", options(nullptr));
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.error().message.find("not ours"), std::string::npos) << g.error().message;
  auto v = ledger::verify_ledger((dir.path / "nope").string(), {});
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.error().message.find("nope"), std::string::npos);
  fs::create_directories(dir.path / "empty");
  auto e = ledger::verify_ledger((dir.path / "empty").string(), {});
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("no segments"), std::string::npos);
  auto foreign = verify(dir.path / "foreign", nullptr);
  EXPECT_EQ(foreign.exit_code, 1);
  EXPECT_NE(foreign.problem.find("not a gpugate record"), std::string::npos);
}

TEST(Ledger, LogKeyIsCreatedPrivateAndReloaded) {
  TempDir dir;
  bool created = false;
  auto k = tlog::LogKey::load_or_create((dir.path / "state").string(), "gpugate/h", &created);
  ASSERT_TRUE(k.ok()) << k.error().message;
  EXPECT_TRUE(created);
  struct stat st {};
  ASSERT_EQ(stat((dir.path / "state" / "log-key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto pub = tlog::load_verifier_key((dir.path / "state" / "log-key.pub").string());
  ASSERT_TRUE(pub.ok()) << pub.error().message;
  EXPECT_EQ(pub->text(), k->verifier().text());
  auto again = tlog::LogKey::load_or_create((dir.path / "state").string(), "gpugate/h", &created);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(created);
  EXPECT_EQ(again->verifier().text(), k->verifier().text());
  chmod((dir.path / "state" / "log-key").c_str(), 0644);
  auto loose = tlog::LogKey::load_or_create((dir.path / "state").string(), "gpugate/h");
  ASSERT_FALSE(loose.ok());
  EXPECT_NE(loose.error().message.find("chmod 600"), std::string::npos);
  chmod((dir.path / "state" / "log-key").c_str(), 0600);
  spit(dir.path / "state" / "log-key", "garbage");
  auto bad = tlog::LogKey::load_or_create((dir.path / "state").string(), "gpugate/h");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("log-key"), std::string::npos);
  spit(dir.path / "k.pub", "not a key\n");
  auto badpub = tlog::load_verifier_key((dir.path / "k.pub").string());
  ASSERT_FALSE(badpub.ok());
  EXPECT_NE(badpub.error().message.find("k.pub"), std::string::npos);
}

// ---- the tamper suite -------------------------------------------------------

class Tamper : public ::testing::Test {
 protected:
  void SetUp() override {
    key = test_key();
    l = dir.path / "l";
    write_ledger(l, key, 30, 1500);  // several segments
    seg1 = l / "000001.jsonl";
    // An external copy of the latest checkpoint, as shipped off-host.
    fs::copy_file(l / "checkpoint", dir.path / "shipped.checkpoint");
    ASSERT_EQ(verify(l, key.get()).exit_code, 0);
  }
  void expect_failure_at(const ledger::VerifyReport& r, const std::string& segment, std::optional<uint64_t> seq,
                         const std::string& what) {
    EXPECT_EQ(r.exit_code, 1) << r.text();
    if (!segment.empty()) {
      ASSERT_TRUE(r.bad_place.has_value()) << r.text();
      EXPECT_EQ(r.bad_place->segment, segment) << r.text();
      if (seq) EXPECT_EQ(r.bad_place->seq, seq) << r.text();
    }
    EXPECT_NE(r.problem.find(what), std::string::npos) << r.text();
  }
  TempDir dir;
  std::shared_ptr<const tlog::LogKey> key;
  fs::path l, seg1;
};

TEST_F(Tamper, ChangedByteIsFoundAtItsRecord) {
  edit_line(seg1, 3, [](std::string s) { return s.replace(s.find("\"n\":3"), 5, "\"n\":4"); });
  auto r = verify(l, key.get());
  expect_failure_at(r, "000001.jsonl", 3, "bytes were changed");
  EXPECT_EQ(r.bad_place->line, 4u);
}

TEST_F(Tamper, ChangedByteInTheRecordBeforeACheckpoint) {
  // Seq 9 is followed by the checkpoint record (written at the flush after 10 records).
  auto line = line_of(seg1, 9);
  ASSERT_NE(line.find("\"n\":9"), std::string::npos) << line;
  edit_line(seg1, 9, [](std::string s) { return s.replace(s.find("would-deny"), 10, "allowed   "); });
  expect_failure_at(verify(l, key.get()), "000001.jsonl", 9, "bytes were changed");
}

TEST_F(Tamper, DeletedLine) {
  edit_line(seg1, 4, [](const std::string&) { return std::string("\x01"); });
  expect_failure_at(verify(l, key.get()), "000001.jsonl", 5, "missing (deleted)");
}

TEST_F(Tamper, InsertedLine) {
  auto copy = line_of(seg1, 2);
  edit_line(seg1, 4, [&](const std::string& s) { return s + "\n" + copy; });
  expect_failure_at(verify(l, key.get()), "000001.jsonl", 2, "inserted");
}

TEST_F(Tamper, ReorderedLines) {
  auto a = line_of(seg1, 4), b = line_of(seg1, 5);
  edit_line(seg1, 4, [&](const std::string&) { return b; });
  edit_line(seg1, 5, [&](const std::string&) { return a; });
  expect_failure_at(verify(l, key.get()), "000001.jsonl", 5, "where 4 was expected");
}

TEST_F(Tamper, RechainedChangeIsCaughtByTheCheckpointRoot) {
  // A careful attacker changes seq 4 and recomputes every prev up to the
  // first checkpoint; only the signed root stands in the way.
  std::ifstream in(seg1);
  std::vector<std::string> lines;
  std::string s;
  while (std::getline(in, s)) lines.push_back(s);
  lines[4].replace(lines[4].find("\"n\":4"), 5, "\"n\":7");
  merkle::Hasher h;
  merkle::Hash prev{};
  for (size_t i = 0; i < lines.size(); i++) {
    ledger::Prefix p;
    ASSERT_TRUE(ledger::parse_prefix(lines[i], p));
    bool checkpoint = p.type == "checkpoint";  // p views the line about to be replaced
    size_t rest = lines[i].find(",\"type\"");
    lines[i] = fmt::format("{{\"seq\":{},\"prev\":\"{}\"{}", i, ledger::prev_text(prev), lines[i].substr(rest));
    prev = h.leaf(lines[i]);
    if (checkpoint) {
      lines.resize(i + 1);
      break;
    }
  }
  std::string out;
  for (const auto& x : lines) out += x + "\n";
  spit(seg1, out);
  for (const auto& seg : test::ledger_segments(l))
    if (seg != seg1) fs::remove(seg);
  fs::remove(l / "checkpoint");
  auto r = verify(l, key.get());
  expect_failure_at(r, "000001.jsonl", 10, "do not hash to the root it signed");
  EXPECT_NE(r.problem.find("within seq 0..7"), std::string::npos) << r.text();
}

TEST_F(Tamper, TailCutOffIsFoundAgainstACheckpointKeptElsewhere) {
  auto segs = test::ledger_segments(l);
  ASSERT_GE(segs.size(), 4u);
  // The last two segments, with the last checkpoints, and the local copy:
  // only the shipped checkpoint is left to tell.
  fs::remove(segs[segs.size() - 1]);
  fs::remove(segs[segs.size() - 2]);
  fs::remove(l / "checkpoint");
  auto alone = verify(l, key.get());
  EXPECT_EQ(alone.exit_code, 0) << "without an outside anchor a cut at a segment end looks complete";
  auto r = verify(l, key.get(), {dir.path / "shipped.checkpoint"});
  expect_failure_at(r, "", std::nullopt, "were cut off");
}

TEST_F(Tamper, LinesCutFromTheEnd) {
  auto last = test::ledger_segments(l).back();
  fs::remove(last);  // the final checkpoint alone: itself unsigned, so not missed
  fs::remove(l / "checkpoint");
  EXPECT_EQ(verify(l, key.get(), {dir.path / "shipped.checkpoint"}).exit_code, 0);
  last = test::ledger_segments(l).back();
  auto text = slurp(last);
  spit(last, text.substr(0, text.rfind('\n', text.size() - 2) + 1));
  expect_failure_at(verify(l, key.get(), {dir.path / "shipped.checkpoint"}), "", std::nullopt, "were cut off");
}

TEST_F(Tamper, LocalCheckpointCopyCatchesANaiveCut) {
  auto segs = test::ledger_segments(l);
  fs::remove(segs[segs.size() - 1]);
  fs::remove(segs[segs.size() - 2]);
  expect_failure_at(verify(l, key.get()), "", std::nullopt, "were cut off");
}

TEST_F(Tamper, MissingSegment) {
  auto segs = test::ledger_segments(l);
  ASSERT_GE(segs.size(), 3u);
  fs::remove(segs[1]);
  expect_failure_at(verify(l, key.get()), segs[2].filename().string(), std::nullopt, "segment 000002.jsonl is missing");
  fs::remove(segs[0]);
  expect_failure_at(verify(l, key.get()), segs[2].filename().string(), std::nullopt, "are missing");
}

TEST_F(Tamper, ForgedCheckpoint) {
  // Change the signed root of the first checkpoint (field and note alike).
  auto cps = test::ledger_records(l, "checkpoint");
  uint64_t cp_seq = cps[0]["seq"];
  std::string root = cps[0]["root"];
  std::string fake = merkle::to_base64(merkle::empty_root());
  edit_line(seg1, cp_seq, [&](std::string s) {
    for (size_t p; (p = s.find(root)) != std::string::npos;) s.replace(p, root.size(), fake);
    return s;
  });
  expect_failure_at(verify(l, key.get()), "000001.jsonl", cp_seq, "does not verify");
}

TEST_F(Tamper, ResignedLedgerIsRejectedWithTheRealKey) {
  // The attacker rewrites the whole ledger with changed content and a key of
  // their own: every internal check passes, the host's real key does not.
  auto attacker = test_key();
  TempDir other;
  write_ledger(other.path / "l", attacker, 30, 1500);
  fs::remove_all(l);
  fs::copy(other.path / "l", l);
  auto r = verify(l, key.get());
  expect_failure_at(r, "000001.jsonl", std::nullopt, "not by a trusted key");
  // Without --key it looks fine, except against the shipped checkpoint.
  EXPECT_EQ(verify(l, nullptr).exit_code, 0);
  expect_failure_at(verify(l, nullptr, {dir.path / "shipped.checkpoint"}), "", std::nullopt, "not by a trusted key");
}

TEST_F(Tamper, DamagedCheckpointFileIsAnInputError) {
  spit(dir.path / "bad.checkpoint", "hello\n");
  auto c = tlog::load_signed_checkpoint((dir.path / "bad.checkpoint").string());
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("bad.checkpoint"), std::string::npos);
  spit(l / "checkpoint", "garbage");
  auto r = ledger::verify_ledger(l.string(), {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("checkpoint"), std::string::npos);
}

// ---- deterministic fuzzing of the reader and verifier -------------------------

TEST(LedgerFuzz, MutationsNeverCrashAndChangesInSignedRecordsAreFound) {
  TempDir dir;
  auto key = test_key();
  write_ledger(dir.path / "l", key, 23);
  std::string data = slurp(dir.path / "l" / "000001.jsonl");
  // Bytes up to the start of the last checkpoint line are signed by it.
  size_t signed_end = data.rfind("{\"seq\":", data.size() - 2);
  ledger::VerifyOptions o;
  o.keys.push_back(key->verifier());
  ledger::Segment seg{1, "000001.jsonl", "", 0};
  ASSERT_EQ(ledger::verify_memory({{seg, data}}, o).exit_code, 0);
  std::mt19937_64 rng(20260101);
  int detected = 0, checked = 0;
  for (int iter = 0; iter < 3000; iter++) {
    std::string m = data;
    size_t pos = rng() % signed_end;
    size_t len = 1 + rng() % 40;
    size_t hi = pos + len;
    switch (rng() % 6) {
      case 0:
        m[pos] = static_cast<char>(m[pos] ^ (1 << (rng() % 8)));
        hi = pos + 1;
        break;
      case 1: m.erase(pos, std::min(len, signed_end - pos)); break;
      case 2:
        m.insert(pos, std::string(len, static_cast<char>(rng() % 256)));
        hi = pos;
        break;
      case 3:
        m.insert(pos, "\n");
        hi = pos;
        break;
      case 4:
        m.resize(pos);
        hi = data.size();
        break;
      case 5: {  // move a line elsewhere
        size_t a = data.rfind('\n', pos);
        a = a == std::string::npos ? 0 : a + 1;
        size_t b = data.find('\n', a);
        std::string ln = data.substr(a, b - a + 1);
        m.erase(a, ln.size());
        size_t to = rng() % m.size();
        to = m.rfind('\n', to);
        to = to == std::string::npos ? 0 : to + 1;
        m.insert(to, ln);
        hi = std::max(b, to);
        break;
      }
    }
    auto r = ledger::verify_memory({{seg, m}}, o);  // must not crash, whatever the bytes
    if (m == data || hi > signed_end) continue;
    checked++;
    if (r.exit_code != 0)
      detected++;
    else
      ADD_FAILURE() << "undetected mutation at " << pos << ": " << r.text();
  }
  EXPECT_EQ(detected, checked);
  EXPECT_GT(checked, 1000);
}

// ---- scale ----------------------------------------------------------------------

TEST(LedgerScale, AMillionRecordsVerify) {
  TempDir dir;
  auto key = test_key();
  auto opt = options(key, 32ull << 20);
  opt.checkpoint_records = 250000;
  {
    auto w = LedgerWriter::open(dir.path / "l", opt);
    ASSERT_TRUE(w.ok());
    std::string m;
    for (uint64_t i = 0; i < 1000000; i++) {
      m.clear();
      fmt::format_to(std::back_inserter(m), R"("type":"ioctl","n":{})", i);
      ASSERT_TRUE(w->append_members(m).ok());
      if (i % 4096 == 4095) ASSERT_TRUE(w->flush().ok());
    }
    ASSERT_TRUE(w->checkpoint("shutdown").ok());
  }
  auto r = verify(dir.path / "l", key.get());
  EXPECT_EQ(r.exit_code, 0) << r.text();
  EXPECT_GE(r.records, 1000004u);
  EXPECT_GE(r.checkpoints, 4u);
  // A proof for a record deep inside checks out offline.
  auto proof = ledger::make_inclusion_proof((dir.path / "l").string(), 654321, std::nullopt);
  ASSERT_TRUE(proof.ok()) << proof.error().message;
  auto parsed = ledger::parse_proof(proof->text(), "proof");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  std::vector<tlog::VerifierKey> keys{key->verifier()};
  auto c = ledger::check_proof(*parsed, proof->record, keys);
  EXPECT_EQ(c.exit_code, 0) << c.message;
  std::string other = proof->record;
  other[other.size() - 2] ^= 1;
  EXPECT_EQ(ledger::check_proof(*parsed, other, keys).exit_code, 1);
}
