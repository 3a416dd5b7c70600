// LedgerWriter::open checks what it resumes from before it signs anything
// (issue 14): the last checkpoint record against its own signed note, and the
// records after it. A disagreement is refused, named, and recorded by an
// unsigned ledger.resume_refused line.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include <fmt/format.h>

#include "gpugate/ledger.hpp"
#include "gpugate/log_reader.hpp"
#include "gpugate/log_verify.hpp"
#include "ledger_files.hpp"
#include "ledger_read.hpp"
#include "tempdir.hpp"

using namespace gpugate;
namespace fs = std::filesystem;
using gpugate::test::lines_of;
using gpugate::test::slurp;
using gpugate::test::spit;
using gpugate::test::TempDir;
using gpugate::test::test_key;
using gpugate::test::write_lines;

namespace {

LedgerOptions options(std::shared_ptr<const tlog::LogKey> key, const std::string& host = "testhost") {
  return gpugate::test::test_ledger_options(std::move(key), 64ull << 20, host);
}

std::string record(uint64_t i) { return fmt::format(R"("type":"ioctl","n":{})", i); }

// n records and a final checkpoint (one every 10 records before it).
void write_ledger(const fs::path& dir, std::shared_ptr<const tlog::LogKey> key, uint64_t n) {
  auto w = LedgerWriter::open(dir, options(std::move(key)));
  ASSERT_TRUE(w.ok()) << w.error().message;
  for (uint64_t i = 0; i < n; i++) {
    ASSERT_TRUE(w->append_members(record(i)).ok());
    if (i % 5 == 4) ASSERT_TRUE(w->flush().ok());
  }
  ASSERT_TRUE(w->checkpoint("shutdown").ok());
}

// n more records after the last checkpoint, left unsigned (as a crash would).
void append_unsigned(const fs::path& dir, std::shared_ptr<const tlog::LogKey> key, uint64_t n) {
  auto o = options(std::move(key));
  o.checkpoint_records = 0;
  auto w = LedgerWriter::open(dir, o);
  ASSERT_TRUE(w.ok()) << w.error().message;
  for (uint64_t i = 0; i < n; i++) ASSERT_TRUE(w->append_members(record(1000 + i)).ok());
  ASSERT_TRUE(w->flush().ok());
}

// Index of the last line of type t.
size_t last_of_type(const std::vector<std::string>& lines, const std::string& t) {
  for (size_t i = lines.size(); i-- > 0;)
    if (lines[i].find("\"type\":\"" + t + "\"") != std::string::npos) return i;
  ADD_FAILURE() << "no " << t << " line";
  return 0;
}

// A base64 letter swapped for another: the JSON stays valid.
char other_b64(char c) { return c == 'A' ? 'B' : 'A'; }

int verify_exit(const fs::path& dir, const tlog::LogKey& key, ledger::VerifyReport* out = nullptr) {
  ledger::VerifyOptions o;
  o.keys.push_back(key.verifier());
  auto r = ledger::verify_ledger(dir.string(), o);
  EXPECT_TRUE(r.ok()) << r.error().message;
  if (!r.ok()) return -1;
  if (out) *out = *r;
  return r->exit_code;
}

void expect_contains(const std::string& text, const std::string& what) {
  EXPECT_NE(text.find(what), std::string::npos) << "'" << what << "' not in: " << text;
}

// The refusal's message names the directory, the place and the fix; the
// ledger's last line is the refusal record, after everything that was there.
void expect_refused(const fs::path& l, const Result<LedgerWriter>& w, const std::string& before, uint64_t at_seq,
                    const std::string& what) {
  ASSERT_FALSE(w.ok()) << "open must refuse";
  const std::string& m = w.error().message;
  expect_contains(m, l.string());
  expect_contains(m, fmt::format("(seq {})", at_seq));
  expect_contains(m, what);
  expect_contains(m, "gpugate log verify " + l.string());
  expect_contains(m, "--ledger");
  expect_contains(m, "ledger.resume_refused");
  auto seg = test::ledger_segments(l).back();
  std::string after = slurp(seg);
  ASSERT_GT(after.size(), before.size());
  EXPECT_EQ(after.substr(0, before.size()), before) << "nothing that was there is changed";
  auto lines = lines_of(seg);
  auto rec = nlohmann::json::parse(lines.back());
  EXPECT_EQ(rec["type"], "ledger.resume_refused");
  EXPECT_EQ(rec["at"]["seq"], at_seq);
  EXPECT_EQ(rec["at"]["segment"], seg.filename().string());
  expect_contains(rec["problem"].get<std::string>(), what);
  // Its seq continues after the last line, and its prev chains to it.
  auto prev_line = lines[lines.size() - 2];
  ledger::Prefix p;
  ASSERT_TRUE(ledger::parse_prefix(prev_line, p));
  EXPECT_EQ(rec["seq"], p.seq + 1);
  merkle::Hasher h;
  EXPECT_EQ(rec["prev"], ledger::prev_text(h.leaf(prev_line)));
}

}  // namespace

TEST(Resume, ChangedRangeIsRefusedNamedAndRecorded) {
  TempDir dir;
  auto key = test_key();
  auto l = dir.path / "l";
  write_ledger(l, key, 12);
  auto seg = l / "000001.jsonl";
  auto lines = lines_of(seg);
  size_t k = last_of_type(lines, "checkpoint");
  auto cp = nlohmann::json::parse(lines[k]);
  uint64_t cp_seq = cp["seq"];
  // One character of the first range hash.
  size_t at = lines[k].find("\"range\":[\"") + 10;
  lines[k][at] = other_b64(lines[k][at]);
  write_lines(seg, lines);
  std::string before = slurp(seg), published = slurp(l / "checkpoint");

  auto w = LedgerWriter::open(l, options(key));
  expect_refused(l, w, before, cp_seq, "range");
  EXPECT_EQ(slurp(l / "checkpoint"), published) << "nothing was signed or published";
  EXPECT_EQ(test::ledger_records(l, "checkpoint").size(), 2u);

  // A restart loop leaves one record, not one per try.
  std::string once = slurp(seg);
  auto again = LedgerWriter::open(l, options(key));
  ASSERT_FALSE(again.ok());
  expect_contains(again.error().message, "already records it");
  EXPECT_EQ(slurp(seg), once);

  // Without a key the range is checked all the same.
  auto keyless = LedgerWriter::open(l, options(nullptr));
  ASSERT_FALSE(keyless.ok());
  expect_contains(keyless.error().message, "range");
}

TEST(Resume, ChangedNoteSignatureIsRefused) {
  TempDir dir;
  auto key = test_key();
  auto l = dir.path / "l";
  write_ledger(l, key, 12);
  auto seg = l / "000001.jsonl";
  auto lines = lines_of(seg);
  size_t k = last_of_type(lines, "checkpoint");
  uint64_t cp_seq = nlohmann::json::parse(lines[k])["seq"];
  // The signature line ends the note: "— name base64(id || sig)\n".
  size_t sig = lines[k].rfind(' ') + 1;  // no space after it: base64, then the escaped newline
  size_t end = lines[k].find('\\', sig);
  ASSERT_LT(sig + 20, end);
  lines[k][sig + 20] = other_b64(lines[k][sig + 20]);  // past the key id: the signature itself
  write_lines(seg, lines);
  std::string before = slurp(seg);
  auto w = LedgerWriter::open(l, options(key));
  expect_refused(l, w, before, cp_seq, "signature does not verify");
}

TEST(Resume, ChangedTreeSizeIsRefused) {
  TempDir dir;
  auto key = test_key();
  auto l = dir.path / "l";
  write_ledger(l, key, 12);
  auto seg = l / "000001.jsonl";
  auto lines = lines_of(seg);
  size_t k = last_of_type(lines, "checkpoint");
  uint64_t cp_seq = nlohmann::json::parse(lines[k])["seq"];
  std::string from = fmt::format("\"tree_size\":{}", cp_seq), to = fmt::format("\"tree_size\":{}", cp_seq - 1);
  lines[k].replace(lines[k].find(from), from.size(), to);
  write_lines(seg, lines);
  std::string before = slurp(seg);
  expect_refused(l, LedgerWriter::open(l, options(key)), before, cp_seq, "tree_size");
}

TEST(Resume, RecordDeletedAfterTheLastCheckpointIsRefused) {
  TempDir dir;
  auto key = test_key();
  auto l = dir.path / "l";
  write_ledger(l, key, 12);
  append_unsigned(l, key, 5);
  auto seg = l / "000001.jsonl";
  auto lines = lines_of(seg);
  size_t k = last_of_type(lines, "checkpoint");
  ASSERT_EQ(lines.size(), k + 6);
  uint64_t cp_seq = nlohmann::json::parse(lines[k])["seq"];
  lines.erase(lines.begin() + static_cast<long>(k) + 3);  // seq cp+3
  write_lines(seg, lines);
  std::string before = slurp(seg);
  auto w = LedgerWriter::open(l, options(key));
  expect_refused(l, w, before, cp_seq + 4, "missing");
  expect_contains(w.error().message, fmt::format("seq jumps from {} to {}", cp_seq + 2, cp_seq + 4));
}

TEST(Resume, RecordChangedAfterTheLastCheckpointIsRefused) {
  TempDir dir;
  auto key = test_key();
  auto l = dir.path / "l";
  write_ledger(l, key, 12);
  append_unsigned(l, key, 5);
  auto seg = l / "000001.jsonl";
  auto lines = lines_of(seg);
  size_t k = last_of_type(lines, "checkpoint");
  uint64_t cp_seq = nlohmann::json::parse(lines[k])["seq"];
  auto& victim = lines[k + 2];
  victim.replace(victim.find("\"n\":1001"), 8, "\"n\":1009");
  write_lines(seg, lines);
  std::string before = slurp(seg);
  // Found by the next record's prev.
  expect_refused(l, LedgerWriter::open(l, options(key)), before, cp_seq + 3, "prev");
}

TEST(Resume, AnotherKeyOrOriginIsRefused) {
  TempDir dir;
  auto key = test_key();
  auto l = dir.path / "l";
  write_ledger(l, key, 12);
  auto seg = l / "000001.jsonl";
  uint64_t cp_seq = test::ledger_records(l, "checkpoint").back()["seq"];
  std::string before = slurp(seg);

  // The log key was replaced (rotated): the message says so and names both.
  auto rotated = test_key();
  auto w = LedgerWriter::open(l, options(rotated));
  expect_refused(l, w, before, cp_seq, "not by this host's log key");
  expect_contains(w.error().message, "key rotated");
  expect_contains(w.error().message, "--state-dir");
  expect_contains(w.error().message, rotated->verifier().text());

  // The refusal record is an unsigned tail: verify with the old key is happy.
  ledger::VerifyReport r;
  EXPECT_EQ(verify_exit(l, *key, &r), 0) << r.text();

  // Putting the old key back does not continue past the refusal: that
  // record stays unsigned.
  std::string refused = slurp(seg);
  auto back = LedgerWriter::open(l, options(key));
  expect_refused(l, back, refused, cp_seq + 1, "refused to continue");

  // Another host's ledger (or a changed host id): the origin differs.
  TempDir other;
  write_ledger(other.path / "l", key, 3);
  auto moved = LedgerWriter::open(other.path / "l", options(test_key("gpugate/otherhost"), "otherhost"));
  ASSERT_FALSE(moved.ok());
  expect_contains(moved.error().message, "origin");
}

TEST(Resume, IntactLedgerReopensAndContinues) {
  TempDir dir;
  auto key = test_key();
  auto l = dir.path / "l";
  write_ledger(l, key, 12);
  append_unsigned(l, key, 3);
  write_ledger(l, key, 12);
  auto recs = test::ledger_records(l);
  for (size_t i = 0; i < recs.size(); i++) ASSERT_EQ(recs[i]["seq"], i);
  EXPECT_TRUE(test::ledger_records(l, "ledger.resume_refused").empty());
  ledger::VerifyReport r;
  EXPECT_EQ(verify_exit(l, *key, &r), 0) << r.text();
  EXPECT_TRUE(r.warnings.empty()) << r.text();
}

TEST(Resume, CrashInACheckpointRecordRecoversTwice) {
  // A crash cut the checkpoint record short; the next start recovers the torn
  // line, and crashes too before it signs: the start after that resumes from
  // the checkpoint before (a recovered torn line is not a checkpoint).
  TempDir dir;
  auto key = test_key();
  auto l = dir.path / "l";
  write_ledger(l, key, 12);
  auto seg = l / "000001.jsonl";
  std::string full = slurp(seg);
  size_t cut = full.rfind("{\"seq\":", full.size() - 2) + 200;
  spit(seg, full.substr(0, cut));
  auto o = options(key);
  o.checkpoint_records = 0;
  {
    auto w = LedgerWriter::open(l, o);
    ASSERT_TRUE(w.ok()) << w.error().message;
    expect_contains(w->open_note(), "torn line");
  }
  {
    auto w = LedgerWriter::open(l, o);
    ASSERT_TRUE(w.ok()) << w.error().message;
    ASSERT_TRUE(w->append_members(record(99)).ok());
    ASSERT_TRUE(w->checkpoint("shutdown").ok());
  }
  ledger::VerifyReport r;
  EXPECT_EQ(verify_exit(l, *key, &r), 0) << r.text();
}

TEST(Resume, LedgerWithoutCheckpointIsUnchanged) {
  TempDir dir;
  auto l = dir.path / "l";
  auto unsigned_ledger = [](const fs::path& d) {
    auto w = LedgerWriter::open(d, options(nullptr));
    ASSERT_TRUE(w.ok()) << w.error().message;
    for (uint64_t i = 0; i < 6; i++) ASSERT_TRUE(w->append_members(record(i)).ok());
  };
  unsigned_ledger(l);
  // The first keyed start signs what is there.
  auto key = test_key();
  {
    auto w = LedgerWriter::open(l, options(key));
    ASSERT_TRUE(w.ok()) << w.error().message;
    EXPECT_EQ(w->next_seq(), 6u);
    ASSERT_TRUE(w->append_members(record(7)).ok());
    ASSERT_TRUE(w->checkpoint("shutdown").ok());
  }
  EXPECT_TRUE(test::ledger_records(l, "ledger.resume_refused").empty());
  EXPECT_EQ(test::ledger_records(l, "checkpoint").size(), 1u);
  ledger::VerifyReport r;
  EXPECT_EQ(verify_exit(l, *key, &r), 0) << r.text();

  // Nothing signs an unsigned ledger: a gap in it is verify's to report, and
  // the writer opens it as before.
  auto g = dir.path / "g";
  unsigned_ledger(g);
  auto seg = g / "000001.jsonl";
  auto lines = lines_of(seg);
  lines.erase(lines.begin() + 2);
  write_lines(seg, lines);
  auto w = LedgerWriter::open(g, options(nullptr));
  ASSERT_TRUE(w.ok()) << w.error().message;
  EXPECT_EQ(w->next_seq(), 6u);
}
