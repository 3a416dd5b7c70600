// `gpugate log verify` hardening (issue 14, item 1): the last checkpoint
// record, which no signature covers, is checked member by member against its
// own note and reported as not yet signed; a ledger.recovered record's torn
// line must be there; a FIFO or a symlink named like a segment (or like
// DIR/checkpoint) is refused promptly instead of hanging or being followed.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iterator>

#include <fmt/format.h>

#include "gpugate/ledger.hpp"
#include "gpugate/log_verify.hpp"
#include "ledger_files.hpp"
#include "ledger_read.hpp"
#include "process.hpp"
#include "tempdir.hpp"

using namespace gpugate;
namespace fs = std::filesystem;
using gpugate::test::lines_of;
using gpugate::test::slurp;
using gpugate::test::spit;
using gpugate::test::TempDir;
using gpugate::test::write_lines;

namespace {

// A fixed key: the ledger is the same on every run but for the times.
std::shared_ptr<const tlog::LogKey> seeded_key() {
  std::array<uint8_t, 32> seed{};
  for (size_t i = 0; i < seed.size(); i++) seed[i] = static_cast<uint8_t>(i * 7 + 1);
  auto k = tlog::LogKey::from_seed("gpugate/testhost", seed);
  EXPECT_TRUE(k.ok()) << k.error().message;
  return std::make_shared<const tlog::LogKey>(std::move(*k));
}

LedgerOptions options(std::shared_ptr<const tlog::LogKey> key) {
  return gpugate::test::test_ledger_options(std::move(key), 64ull << 20, "testhost", "boot-1");
}

// all in 000001.jsonl.
void write_ledger(const fs::path& dir, const std::shared_ptr<const tlog::LogKey>& key, uint64_t n = 25) {
  auto w = LedgerWriter::open(dir, options(key));
  ASSERT_TRUE(w.ok()) << w.error().message;
  for (uint64_t i = 0; i < n; i++) {
    ASSERT_TRUE(w->append_members(fmt::format(R"("type":"ioctl","n":{})", i)).ok());
    if (i % 5 == 4) ASSERT_TRUE(w->flush().ok());
  }
  ASSERT_TRUE(w->checkpoint("shutdown").ok());
}

ledger::VerifyReport verify(const fs::path& dir, const tlog::LogKey& key) {
  return gpugate::test::verify_with_key(dir, key);
}

// Replaces the first occurrence of from in line k of p.
void replace_in_line(const fs::path& p, size_t k, const std::string& from, const std::string& to) {
  auto lines = lines_of(p);
  ASSERT_LT(k, lines.size());
  auto at = lines[k].find(from);
  ASSERT_NE(at, std::string::npos) << from << " not in " << lines[k];
  lines[k].replace(at, from.size(), to);
  write_lines(p, lines);
}

// The seqs of the checkpoint records.
std::vector<uint64_t> checkpoint_seqs(const fs::path& dir) {
  std::vector<uint64_t> out;
  for (const auto& c : test::ledger_records(dir, "checkpoint")) out.push_back(c["seq"].get<uint64_t>());
  return out;
}

// Runs f on a thread; a regression that blocks fails instead of hanging the
// suite: after the guard, unblock waits to release it so the thread can end.
template <typename T>
T within_20s(std::function<T()> f, const std::function<void()>& unblock) {
  auto fut = std::async(std::launch::async, std::move(f));
  if (fut.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
    ADD_FAILURE() << "still blocked after 20 s";
    unblock();
  }
  return fut.get();
}

// A writer that opens and closes the FIFO lets a reader blocked in open(2) go on.
void release_fifo(const fs::path& fifo) {
  int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd >= 0) ::close(fd);
}

class VerifyHardening : public ::testing::Test {
 protected:
  void SetUp() override {
    key = seeded_key();
    write_ledger(l, key);
    cps = checkpoint_seqs(l);
    ASSERT_EQ(cps, (std::vector<uint64_t>{10, 21, 27}));
  }
  void expect_tampered_at(const ledger::VerifyReport& r, uint64_t seq, const std::string& what) {
    EXPECT_EQ(r.exit_code, ledger::kVerifyTampered) << r.text();
    ASSERT_TRUE(r.bad_place.has_value()) << r.text();
    EXPECT_EQ(r.bad_place->segment, "000001.jsonl") << r.text();
    EXPECT_EQ(r.bad_place->seq, seq) << r.text();
    EXPECT_EQ(r.bad_place->line, seq + 1) << r.text();
    EXPECT_NE(r.problem.find(what), std::string::npos) << r.text();
    EXPECT_NE(r.text().find(fmt::format("FAILED at 000001.jsonl:{} (seq {})", seq + 1, seq)), std::string::npos)
        << r.text();
  }
  TempDir dir;
  fs::path l = dir.path / "l";
  fs::path seg1 = l / "000001.jsonl";
  std::shared_ptr<const tlog::LogKey> key;
  std::vector<uint64_t> cps;
};

}  // namespace

// ---- the last checkpoint record ----------------------------------------------

TEST_F(VerifyHardening, IntactLedgerReportsItsLastCheckpointRecordAsNotYetSigned) {
  auto r = verify(l, *key);
  EXPECT_EQ(r.exit_code, ledger::kVerifyOk) << r.text();
  EXPECT_TRUE(r.warnings.empty()) << "a stopped daemon always leaves this: not a warning\n" << r.text();
  ASSERT_TRUE(r.unsigned_tail.has_value()) << r.text();
  EXPECT_EQ(r.unsigned_tail->first_seq, 27u);
  EXPECT_EQ(r.unsigned_tail->last_seq, 27u);
  EXPECT_EQ(r.unsigned_tail->records, 1u);
  ASSERT_TRUE(r.unsigned_tail->checkpoint.has_value());
  EXPECT_EQ(r.unsigned_tail->checkpoint->seq, 27u);
  EXPECT_EQ(r.unsigned_tail->checkpoint->reason, "shutdown");
  EXPECT_EQ(r.unsigned_tail->checkpoint->boot_id, "boot-1");
  EXPECT_EQ(r.unsigned_tail->checkpoint->place.line, 28u);
  auto text = r.text();
  EXPECT_NE(text.find("unsigned     seq 27 (1 record): no checkpoint signs it yet"), std::string::npos) << text;
  EXPECT_NE(text.find("seq 27, the last checkpoint record (000001.jsonl:28 (seq 27), reason \"shutdown\", boot_id "
                      "\"boot-1\"), is not signed until the next checkpoint"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("result       OK: no record was changed"), std::string::npos) << text;
  EXPECT_NE(text.find("seq 27 not signed yet"), std::string::npos) << text;
  auto j = r.json();
  EXPECT_EQ(j["unsigned_tail"]["first_seq"], 27);
  EXPECT_EQ(j["unsigned_tail"]["last_seq"], 27);
  EXPECT_EQ(j["unsigned_tail"]["records"], 1);
  EXPECT_EQ(j["unsigned_tail"]["checkpoint_record"]["seq"], 27);
  EXPECT_EQ(j["unsigned_tail"]["checkpoint_record"]["segment"], "000001.jsonl");
  EXPECT_EQ(j["unsigned_tail"]["checkpoint_record"]["line"], 28);
  EXPECT_EQ(j["unsigned_tail"]["checkpoint_record"]["reason"], "shutdown");
  EXPECT_EQ(j["unsigned_tail"]["checkpoint_record"]["boot_id"], "boot-1");
}

TEST_F(VerifyHardening, RecordsAfterTheLastCheckpointCountItAsWell) {
  {
    auto w = LedgerWriter::open(l, options(key));
    ASSERT_TRUE(w.ok()) << w.error().message;
    for (int i = 0; i < 3; i++) ASSERT_TRUE(w->append_members(R"("type":"ioctl","late":true)").ok());
    ASSERT_TRUE(w->flush().ok());
  }  // no shutdown checkpoint: as after a crash
  auto r = verify(l, *key);
  EXPECT_EQ(r.exit_code, ledger::kVerifyOk) << r.text();
  ASSERT_TRUE(r.unsigned_tail.has_value()) << r.text();
  EXPECT_EQ(r.unsigned_tail->first_seq, 27u);
  EXPECT_EQ(r.unsigned_tail->last_seq, 30u);
  EXPECT_EQ(r.unsigned_tail->records, 4u);
  ASSERT_TRUE(r.unsigned_tail->checkpoint.has_value());
  EXPECT_EQ(r.unsigned_tail->checkpoint->seq, 27u);
  ASSERT_EQ(r.warnings.size(), 1u) << r.text();
  EXPECT_NE(r.warnings[0].find("4 records are not signed yet (seq 27..30: the last checkpoint record and 3 records "
                               "after it)"),
            std::string::npos)
      << r.text();
  EXPECT_EQ(r.json()["unsigned_tail"]["records"], 4);
}

TEST_F(VerifyHardening, ChangedReasonOrBootIdOfTheLastCheckpointIsReportedAsUnsigned) {
  // Nothing signs them yet: verify cannot tell, and says so with the values it read.
  replace_in_line(seg1, 27, R"("reason":"shutdown")", R"("reason":"interval")");
  replace_in_line(seg1, 27, R"("boot_id":"boot-1")", R"("boot_id":"boot-X")");
  auto r = verify(l, *key);
  EXPECT_EQ(r.exit_code, ledger::kVerifyOk) << r.text();
  ASSERT_TRUE(r.unsigned_tail.has_value() && r.unsigned_tail->checkpoint.has_value()) << r.text();
  EXPECT_EQ(r.unsigned_tail->checkpoint->seq, 27u);
  EXPECT_EQ(r.unsigned_tail->checkpoint->reason, "interval");
  EXPECT_EQ(r.unsigned_tail->checkpoint->boot_id, "boot-X");
  EXPECT_NE(r.text().find("seq 27, the last checkpoint record (000001.jsonl:28 (seq 27), reason \"interval\", "
                          "boot_id \"boot-X\"), is not signed until the next checkpoint"),
            std::string::npos)
      << r.text();
  EXPECT_EQ(r.json()["unsigned_tail"]["checkpoint_record"]["reason"], "interval");
}

TEST_F(VerifyHardening, AddedMemberInTheLastCheckpointFails) {
  replace_in_line(seg1, 27, R"(,"note":)", R"(,"approved_by":"x","note":)");
  auto r = verify(l, *key);
  expect_tampered_at(r, 27, "a member the writer never writes: \"approved_by\"");
  EXPECT_FALSE(r.unsigned_tail.has_value());
}

TEST_F(VerifyHardening, AddedMemberInAnEarlierCheckpointFailsAtIt) {
  replace_in_line(seg1, 10, R"(,"note":)", R"(,"approved_by":"x","note":)");
  expect_tampered_at(verify(l, *key), 10, "\"approved_by\"");
}

TEST_F(VerifyHardening, DuplicatedOrMissingMemberInTheLastCheckpointFails) {
  auto original = slurp(seg1);
  replace_in_line(seg1, 27, R"(,"note":)", R"(,"reason":"interval","note":)");
  expect_tampered_at(verify(l, *key), 27, "the member \"reason\" twice");
  spit(seg1, original);
  replace_in_line(seg1, 27, R"("reason":"shutdown",)", "");
  expect_tampered_at(verify(l, *key), 27, "no \"reason\" member");
}

TEST_F(VerifyHardening, ChangedRangeFailsInAnyCheckpoint) {
  auto other = merkle::to_base64(merkle::empty_root());
  for (uint64_t seq : cps) {
    auto original = slurp(seg1);
    auto rec = nlohmann::json::parse(lines_of(seg1)[seq]);
    std::string first = rec["range"][0];
    replace_in_line(seg1, seq, "\"range\":[\"" + first, "\"range\":[\"" + other);
    expect_tampered_at(verify(l, *key), seq, "range does not hash to the root its note signs");
    spit(seg1, original);
  }
  // One hash too many: not a compact range of tree_size.
  replace_in_line(seg1, 27, "\"range\":[", "\"range\":[\"" + other + "\",");
  expect_tampered_at(verify(l, *key), 27, "range does not fit its tree_size");
}

TEST_F(VerifyHardening, OtherMembersOfTheLastCheckpointAreTiedToItsNote) {
  struct Case {
    std::string from, to, what;
  };
  auto rec = nlohmann::json::parse(lines_of(seg1)[27]);
  std::string time = rec["time"];
  std::string changed_time = time;
  changed_time[time.size() - 3] = changed_time[time.size() - 3] == '1' ? '2' : '1';
  std::vector<Case> cases{
      {R"("host_id":"testhost")", R"("host_id":"otherhost")", "host_id \"otherhost\" does not match the origin"},
      {R"("segment":"000001.jsonl")", R"("segment":"000002.jsonl")", "says it is in segment \"000002.jsonl\""},
      {R"("tree_size":27)", R"("tree_size":26)", "tree_size/root and its signed note disagree"},
      {R"("tree_size":27)", R"("tree_size":"27")", "\"tree_size\" is not of the type"},
      {"\"time\":\"" + time + "\"", "\"time\":\"" + changed_time + "\"", "time \"" + changed_time + "\""},
      {R"("key":"gpugate/testhost+)", R"("key":"gpugate/otherhost+)", "names the key \"gpugate/otherhost+"},
      {R"("reason":"shutdown")", R"("reason":"")", "reason is empty"},
  };
  auto original = slurp(seg1);
  for (const auto& c : cases) {
    SCOPED_TRACE(c.to);
    replace_in_line(seg1, 27, c.from, c.to);
    expect_tampered_at(verify(l, *key), 27, c.what);
    spit(seg1, original);
  }
  EXPECT_EQ(verify(l, *key).exit_code, ledger::kVerifyOk);
}

TEST_F(VerifyHardening, ChangedReasonInAnEarlierCheckpointIsDetected) {
  // Plainly: the next record's prev no longer matches.
  replace_in_line(seg1, 10, R"("reason":"records")", R"("reason":"rotate")");
  expect_tampered_at(verify(l, *key), 10, "bytes were changed");
  // With every prev after it recomputed: the next checkpoint's signed root.
  auto lines = lines_of(seg1);
  merkle::Hasher h;
  merkle::Hash prev{};
  for (size_t i = 0; i < lines.size(); i++) {
    size_t rest = lines[i].find(",\"type\"");
    ASSERT_NE(rest, std::string::npos);
    lines[i] = fmt::format("{{\"seq\":{},\"prev\":\"{}\"{}", i, ledger::prev_text(prev), lines[i].substr(rest));
    prev = h.leaf(lines[i]);
  }
  write_lines(seg1, lines);
  fs::remove(l / "checkpoint");
  auto r = verify(l, *key);
  expect_tampered_at(r, 21, "do not hash to the root it signed");
  EXPECT_NE(r.problem.find("within seq 0..15"), std::string::npos) << r.text();
}

// ---- ledger.recovered --------------------------------------------------------

TEST(VerifyRecovered, DeletedTornLineThatARecordStillNamesFails) {
  TempDir dir;
  auto key = seeded_key();
  auto l = dir.path / "l";
  write_ledger(l, key, 12);
  auto seg = l / "000001.jsonl";
  auto before = slurp(seg);
  std::string torn = R"({"seq":15,"prev":"0011223344556677","type":"ioctl","process":{"pid":4)";
  spit(seg, before + torn);
  {
    auto w = LedgerWriter::open(l, options(key));  // terminates the torn line, names it
    ASSERT_TRUE(w.ok()) << w.error().message;
    ASSERT_TRUE(w->append_members(R"("type":"ioctl","after":1)").ok());
    ASSERT_TRUE(w->checkpoint("shutdown").ok());
  }
  auto recovered = test::ledger_records(l, "ledger.recovered");
  ASSERT_EQ(recovered.size(), 1u);
  uint64_t seq = recovered[0]["seq"];
  auto intact = verify(l, *key);
  ASSERT_EQ(intact.exit_code, ledger::kVerifyOk) << intact.text();
  // The torn line and its newline removed: seq and prev still chain, the
  // checkpoint root still matches (the torn line is no leaf).
  auto after = slurp(seg);
  ASSERT_EQ(after.substr(before.size(), torn.size() + 1), torn + "\n");
  spit(seg, after.substr(0, before.size()) + after.substr(before.size() + torn.size() + 1));
  auto r = verify(l, *key);
  EXPECT_EQ(r.exit_code, ledger::kVerifyTampered) << r.text();
  ASSERT_TRUE(r.bad_place.has_value()) << r.text();
  EXPECT_EQ(r.bad_place->segment, "000001.jsonl");
  EXPECT_EQ(r.bad_place->seq, seq) << r.text();
  EXPECT_NE(r.problem.find(
                fmt::format("names a torn line at \"000001.jsonl\" offset {} ({} bytes)", before.size(), torn.size())),
            std::string::npos)
      << r.text();
  EXPECT_NE(r.problem.find("deleted"), std::string::npos) << r.text();
  // A torn member of another shape is no naming at all.
  spit(seg, after);
  auto lines = lines_of(seg);
  size_t k = 0;
  while (k < lines.size() && lines[k].find("\"type\":\"ledger.recovered\"") == std::string::npos) k++;
  ASSERT_LT(k, lines.size());
  auto at = lines[k].find("\"bytes\":");
  ASSERT_NE(at, std::string::npos);
  lines[k].insert(at, "\"extra\":1,");
  write_lines(seg, lines);
  auto shape = verify(l, *key);
  EXPECT_EQ(shape.exit_code, ledger::kVerifyTampered) << shape.text();
  EXPECT_EQ(shape.bad_place->seq, seq) << shape.text();
  EXPECT_NE(shape.problem.find("no valid \"torn\" member"), std::string::npos) << shape.text();
}

// ---- files that are not regular files ----------------------------------------

TEST_F(VerifyHardening, FifoNamedLikeASegmentIsRefusedPromptly) {
  auto fifo = l / "000002.jsonl";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  auto r = within_20s<Result<ledger::VerifyReport>>([&] { return ledger::verify_ledger(l, {}); },
                                                    [&] { release_fifo(fifo); });
  ASSERT_FALSE(r.ok()) << r->text();
  EXPECT_NE(r.error().message.find("000002.jsonl is a FIFO (named pipe), not a regular file"), std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find("move it aside"), std::string::npos) << r.error().message;
  // The other readers and the writer refuse it the same way.
  auto latest = within_20s<Result<ledger::LatestCheckpoint>>([&] { return ledger::latest_checkpoint(l); },
                                                             [&] { release_fifo(fifo); });
  ASSERT_FALSE(latest.ok());
  EXPECT_NE(latest.error().message.find("FIFO"), std::string::npos) << latest.error().message;
  auto w = within_20s<Result<LedgerWriter>>([&] { return LedgerWriter::open(l, options(key)); },
                                            [&] { release_fifo(fifo); });
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.error().message.find("000002.jsonl is a FIFO"), std::string::npos) << w.error().message;
  // Opened directly (a segment swapped after it was listed): no wait either.
  auto m = within_20s<Result<ledger::MappedFile>>([&] { return ledger::MappedFile::open(fifo.string()); },
                                                  [&] { release_fifo(fifo); });
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.error().message.find(fifo.string() + ": a FIFO (named pipe), not a regular file"), std::string::npos)
      << m.error().message;
  // The command: exit 2, the file named (timeout is only the hang guard).
  auto cli = test::run_shell(fmt::format("timeout 20 {}/gpugate log verify {}", GG_BIN_DIR, l.string()));
  EXPECT_EQ(cli.status, ledger::kVerifyUsage) << cli.output;
  EXPECT_NE(cli.output.find("000002.jsonl is a FIFO"), std::string::npos) << cli.output;
}

TEST_F(VerifyHardening, FifoAsTheLocalCheckpointIsRefusedPromptly) {
  auto fifo = l / "checkpoint";
  fs::remove(fifo);
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  auto r = within_20s<Result<ledger::VerifyReport>>([&] { return ledger::verify_ledger(l, {}); },
                                                    [&] { release_fifo(fifo); });
  ASSERT_FALSE(r.ok()) << r->text();
  EXPECT_NE(r.error().message.find(fifo.string() + ": a FIFO (named pipe), not a regular file"), std::string::npos)
      << r.error().message;
  // Not asked for: not read.
  ledger::VerifyOptions o;
  o.keys.push_back(key->verifier());
  o.local_checkpoint = false;
  auto skip = ledger::verify_ledger(l, o);
  ASSERT_TRUE(skip.ok()) << skip.error().message;
  EXPECT_EQ(skip->exit_code, ledger::kVerifyOk) << skip->text();
}

// Files a user names on the command line (a checkpoint, a proof, a record,
// a file to tail) may be links, but a FIFO or a device is refused at once.
TEST_F(VerifyHardening, FifosNamedOnTheCommandLineAreRefusedPromptly) {
  auto fifo = dir.path / "named.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  auto r = within_20s<Result<std::string>>(
      [&] { return ledger::read_regular_file(fifo.string(), 1 << 20, "checkpoint", "pass a file"); },
      [&] { release_fifo(fifo); });
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("checkpoint " + fifo.string() + ": a FIFO (named pipe), not a regular file"),
            std::string::npos)
      << r.error().message;
  auto dev = ledger::read_regular_file("/dev/zero", 1 << 20, "key", "pass a file");
  ASSERT_FALSE(dev.ok());
  EXPECT_NE(dev.error().message.find("a device, not a regular file"), std::string::npos) << dev.error().message;
  auto link = dir.path / "checkpoint.link";
  fs::create_symlink(l / "checkpoint", link);
  auto via_link = ledger::read_regular_file(link.string(), 1 << 20, "checkpoint", "pass a file");
  ASSERT_TRUE(via_link.ok()) << via_link.error().message;
  EXPECT_FALSE(via_link->empty());
  auto big = ledger::read_regular_file(seg1.string(), 100, "record", "pass a shorter one");
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.error().message.find("larger than 100 bytes; pass a shorter one"), std::string::npos);
  // The commands: exit 2, naming it (timeout is only the hang guard).
  for (const std::string& args : {fmt::format("log verify {} --checkpoint {}", l.string(), fifo.string()),
                                  fmt::format("log verify-proof {} --record {}", fifo.string(), seg1.string()),
                                  "tail --ledger " + fifo.string()}) {
    auto cli = test::run_shell(fmt::format("timeout 20 {}/gpugate {}", GG_BIN_DIR, args));
    EXPECT_EQ(cli.status, 2) << args << "\n" << cli.output;
    EXPECT_NE(cli.output.find("FIFO"), std::string::npos) << args << "\n" << cli.output;
  }
}

TEST_F(VerifyHardening, SymlinkNamedLikeASegmentIsRefused) {
  auto elsewhere = dir.path / "elsewhere.jsonl";
  fs::rename(seg1, elsewhere);
  fs::create_symlink(elsewhere, seg1);
  auto r = ledger::verify_ledger(l, {});
  ASSERT_FALSE(r.ok()) << r->text();
  EXPECT_NE(r.error().message.find("000001.jsonl is a symbolic link, not a regular file"), std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find("cp --dereference"), std::string::npos) << r.error().message;
  auto m = ledger::MappedFile::open(seg1.string());
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.error().message.find(seg1.string() + ": a symbolic link, not a regular file"), std::string::npos)
      << m.error().message;
  auto cli = test::run_shell(fmt::format("timeout 20 {}/gpugate log verify {}", GG_BIN_DIR, l.string()));
  EXPECT_EQ(cli.status, ledger::kVerifyUsage) << cli.output;
  EXPECT_NE(cli.output.find("000001.jsonl is a symbolic link"), std::string::npos) << cli.output;
  // The file itself in its place: intact again.
  fs::remove(seg1);
  fs::copy_file(elsewhere, seg1);
  EXPECT_EQ(verify(l, *key).exit_code, ledger::kVerifyOk);
  // DIR/checkpoint as a symlink, even to the right note, is refused as well.
  fs::rename(l / "checkpoint", dir.path / "cp");
  fs::create_symlink(dir.path / "cp", l / "checkpoint");
  auto c = ledger::verify_ledger(l, {});
  ASSERT_FALSE(c.ok()) << c->text();
  EXPECT_NE(c.error().message.find((l / "checkpoint").string() + ": a symbolic link, not a regular file"),
            std::string::npos)
      << c.error().message;
}
