// Sealed segments compressed with zstd (issue 15, item 4): which segments
// are compressed, that every reader sees the same records, that a
// compression cut short or a damaged frame loses nothing and is named, and
// that a failure is a record.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "gpugate/ledger.hpp"
#include "gpugate/log_reader.hpp"
#include "gpugate/log_verify.hpp"
#include "ledger_files.hpp"
#include "ledger_read.hpp"
#include "process.hpp"
#include "tempdir.hpp"

using namespace gpugate;
namespace fs = std::filesystem;
using gpugate::test::slurp;
using gpugate::test::spit;
using gpugate::test::TempDir;
using gpugate::test::test_key;

namespace {

constexpr uint64_t kSegmentBytes = 4096;

LedgerOptions options(std::shared_ptr<const tlog::LogKey> key, bool compress) {
  auto o = gpugate::test::test_ledger_options(std::move(key), kSegmentBytes);
  o.compress_sealed = compress;
  return o;
}

std::string record(uint64_t i) {
  return fmt::format(R"("type":"ioctl","n":{},"decoded":{{"class":"{}"}},"verdict":"{}")", i,
                     i % 3 ? "query" : "power.off", i % 3 ? "allowed" : "would-deny");
}

// Appends records [from, to) with a flush every 5; the writer's end (its
// destructor) waits for the compressions it queued.
void append(const fs::path& dir, const std::shared_ptr<const tlog::LogKey>& key, bool compress, uint64_t from,
            uint64_t to) {
  auto w = LedgerWriter::open(dir, options(key, compress));
  ASSERT_TRUE(w.ok()) << w.error().message;
  for (uint64_t i = from; i < to; i++) {
    ASSERT_TRUE(w->append_members(record(i)).ok());
    if (i % 5 == 4) ASSERT_TRUE(w->flush().ok());
  }
  w->finish_compression();
  ASSERT_TRUE(w->checkpoint("shutdown").ok());
}

ledger::VerifyReport verify(const fs::path& dir, const tlog::LogKey& key) {
  return gpugate::test::verify_with_key(dir, key);
}

// The "n" of every ioctl record, in ledger order, as the shared reader sees them.
std::vector<uint64_t> ioctl_numbers(const fs::path& dir) {
  std::vector<uint64_t> out;
  for (const auto& j : gpugate::test::ledger_records(dir, "ioctl")) out.push_back(j["n"].get<uint64_t>());
  return out;
}

std::vector<uint64_t> iota(uint64_t n) {
  std::vector<uint64_t> v(n);
  for (uint64_t i = 0; i < n; i++) v[i] = i;
  return v;
}

uint32_t segment_count(const fs::path& dir) {
  auto segs = ledger::list_segments(dir);
  return segs.ok() && !segs->empty() ? segs->back().number : 0;
}

fs::path plain(const fs::path& dir, uint32_t n) { return dir / ledger::segment_name(n); }
fs::path packed(const fs::path& dir, uint32_t n) { return dir / (ledger::segment_name(n) + ".zst"); }

gpugate::test::CommandResult gpugate_cli(const std::string& args) {
  return gpugate::test::run_shell(std::string(GG_BIN_DIR) + "/gpugate " + args);
}

}  // namespace

TEST(Compress, AllSealedSegmentsButTheNewestAreCompressedAndEveryReaderSeesTheSameRecords) {
  TempDir dir;
  auto key = test_key();
  append(dir.path, key, true, 0, 400);
  uint32_t last = segment_count(dir.path);
  ASSERT_GE(last, 5u) << "the test needs several sealed segments";
  for (uint32_t n = 1; n + 1 < last; n++) {
    EXPECT_TRUE(fs::is_regular_file(packed(dir.path, n))) << n;
    EXPECT_FALSE(fs::exists(plain(dir.path, n))) << n << ": the plain file is removed once its frame is on disk";
  }
  for (uint32_t n : {last - 1, last}) {
    EXPECT_TRUE(fs::is_regular_file(plain(dir.path, n))) << n << ": the newest sealed and the open segment stay plain";
    EXPECT_FALSE(fs::exists(packed(dir.path, n))) << n;
  }
  uint64_t on_disk = 0;
  for (const auto& e : fs::directory_iterator(dir.path)) on_disk += fs::file_size(e.path());
  auto segs = ledger::list_segments(dir.path);
  ASSERT_TRUE(segs.ok());
  uint64_t records_bytes = 0;
  for (const auto& s : *segs) records_bytes += s.size;
  EXPECT_LT(on_disk * 2, records_bytes) << "compression should at least halve JSON lines";

  EXPECT_EQ(ioctl_numbers(dir.path), iota(400));
  auto r = verify(dir.path, *key);
  EXPECT_EQ(r.exit_code, 0) << r.text();
  EXPECT_GE(r.records, 400u);

  // The command line: verify, show, stats, tail and export read them too.
  spit(dir.path.parent_path() / (dir.path.filename().string() + ".pub"), key->verifier().text() + "\n");
  auto v = gpugate_cli("log verify " + dir.path.string() + " --key " + dir.path.string() + ".pub");
  EXPECT_EQ(v.status, 0) << v.output;
  fs::remove(dir.path.string() + ".pub");
  auto show = gpugate_cli("log show " + dir.path.string() + " --type ioctl --json");
  EXPECT_EQ(show.status, 0) << show.output;
  EXPECT_EQ(std::count(show.output.begin(), show.output.end(), '\n'), 400) << show.output.substr(0, 400);
  EXPECT_NE(show.output.find("\"n\":0,"), std::string::npos) << "the first record is in a compressed segment";
  auto tail = gpugate_cli("tail -n 100000 --json --ledger " + dir.path.string());
  EXPECT_EQ(tail.status, 0) << tail.output;
  EXPECT_NE(tail.output.find("\"n\":0,"), std::string::npos) << tail.output.substr(0, 400);
  auto stats = gpugate_cli("log stats --json " + dir.path.string());
  EXPECT_EQ(stats.status, 0) << stats.output;
  auto j = nlohmann::json::parse(stats.output, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << stats.output;
  uint64_t ioctls = 0;
  for (const auto& [cls, n] : j["by_class"].items()) ioctls += n.get<uint64_t>();
  EXPECT_EQ(ioctls, 400u) << stats.output;
}

TEST(Compress, AResumedWriterCompressesWhatAStoppedOneLeftPlainAndGoesOn) {
  TempDir dir;
  auto key = test_key();
  append(dir.path, key, false, 0, 300);
  uint32_t before = segment_count(dir.path);
  ASSERT_GE(before, 4u);
  EXPECT_FALSE(fs::exists(packed(dir.path, 1)));
  append(dir.path, key, true, 300, 320);
  uint32_t after = segment_count(dir.path);
  for (uint32_t n = 1; n + 1 < after; n++) EXPECT_TRUE(fs::exists(packed(dir.path, n))) << n;
  EXPECT_EQ(ioctl_numbers(dir.path), iota(320));
  EXPECT_EQ(verify(dir.path, *key).exit_code, 0);
}

TEST(Compress, ACompressionCutShortLosesNothingAndIsFinishedAtTheNextStart) {
  TempDir dir;
  auto key = test_key();
  append(dir.path, key, false, 0, 300);
  ASSERT_GE(segment_count(dir.path), 4u);
  std::string seg1 = slurp(plain(dir.path, 1));
  // A kill between the frame's write and the plain file's removal: both are
  // there, the frame half-written; and a kill before the rename: a .tmp.
  std::string frame_half = "\x28\xb5\x2f\xfd garbage";
  spit(packed(dir.path, 1), frame_half);
  spit(dir.path / (ledger::segment_name(2) + ".zst.tmp"), "partial");
  auto segs = ledger::list_segments(dir.path);
  ASSERT_TRUE(segs.ok()) << segs.error().message;
  EXPECT_FALSE((*segs)[0].compressed) << "the plain file is the segment until the compression is finished";
  EXPECT_EQ(ioctl_numbers(dir.path), iota(300));
  EXPECT_EQ(verify(dir.path, *key).exit_code, 0);

  append(dir.path, key, true, 300, 301);
  EXPECT_FALSE(fs::exists(plain(dir.path, 1)));
  EXPECT_FALSE(fs::exists(dir.path / (ledger::segment_name(2) + ".zst.tmp")));
  auto bytes = ledger::SegmentBytes::open((*ledger::list_segments(dir.path))[0]);
  ASSERT_TRUE(bytes.ok()) << bytes.error().message;
  EXPECT_EQ(bytes->view(), seg1) << "the finished frame holds the segment byte for byte";
  EXPECT_EQ(ioctl_numbers(dir.path), iota(301));
  EXPECT_EQ(verify(dir.path, *key).exit_code, 0);
}

TEST(Compress, ADamagedFrameIsAnErrorThatNamesTheFileNeverACrash) {
  TempDir dir;
  auto key = test_key();
  append(dir.path, key, true, 0, 300);
  fs::path victim = packed(dir.path, 2);
  ASSERT_TRUE(fs::exists(victim));
  std::string good = slurp(victim);
  std::string huge_header =
      std::string("\x28\xb5\x2f\xfd\xe0", 5) + std::string("\x00\x00\x00\x00\x00\x01\x00\x00", 8) + "rest";
  struct Damage {
    std::string name, bytes, why;
  };
  std::string flipped = good;
  flipped[flipped.size() / 2] ^= 0x5a;
  std::vector<Damage> damages = {
      {"a flipped byte", flipped, "cannot decompress"},
      {"cut short", good.substr(0, good.size() / 2), "cut short or damaged"},
      {"bytes after the frame", good + "trailing", "follow the zstd frame"},
      {"not zstd", "{\"seq\":0}\n", "not a zstd frame"},
      {"a frame declaring a terabyte", huge_header, "more than a segment can hold"},
      {"empty", "", "not a zstd frame"},
  };
  for (const auto& d : damages) {
    SCOPED_TRACE(d.name);
    spit(victim, d.bytes);
    auto segs = ledger::list_segments(dir.path);
    std::string message;
    if (!segs) {
      message = segs.error().message;
    } else {
      ledger::VerifyOptions o;
      o.keys.push_back(key->verifier());
      auto r = ledger::verify_ledger(dir.path, o);
      ASSERT_FALSE(r.ok()) << "a damaged segment must not verify";
      message = r.error().message;
    }
    EXPECT_NE(message.find(victim.filename().string()), std::string::npos) << message;
    EXPECT_NE(message.find(d.why), std::string::npos) << message;
    EXPECT_NE(message.find("restore the file from a copy"), std::string::npos) << message;
    auto v = gpugate_cli("log verify " + dir.path.string());
    EXPECT_NE(v.status, 0) << v.output;
    EXPECT_NE(v.output.find(victim.filename().string()), std::string::npos) << v.output;
  }
  spit(victim, good);
  EXPECT_EQ(verify(dir.path, *key).exit_code, 0);
}

TEST(Compress, AFailedCompressionIsARecordAndTheSegmentStaysPlain) {
  TempDir dir;
  auto key = test_key();
  // A directory where the compressor's temporary file goes: its open fails.
  fs::create_directories(dir.path / (ledger::segment_name(1) + ".zst.tmp"));
  append(dir.path, key, true, 0, 300);
  EXPECT_TRUE(fs::exists(plain(dir.path, 1)));
  EXPECT_FALSE(fs::exists(packed(dir.path, 1)));
  EXPECT_TRUE(fs::exists(packed(dir.path, 2))) << "the others are compressed";
  auto failed = gpugate::test::ledger_records(dir.path, "ledger.compress_failed");
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0]["segment"], ledger::segment_name(1));
  EXPECT_NE(failed[0]["error"].get<std::string>().find(".zst.tmp"), std::string::npos) << failed[0].dump();
  EXPECT_EQ(ioctl_numbers(dir.path), iota(300));
  EXPECT_EQ(verify(dir.path, *key).exit_code, 0);
}

TEST(Compress, ASymlinkOrFifoNamedLikeACompressedSegmentIsRefusedNotOpened) {
  TempDir dir;
  auto key = test_key();
  append(dir.path, key, true, 0, 300);
  fs::path victim = packed(dir.path, 2);
  fs::path aside = dir.path / "aside";
  fs::rename(victim, aside);
  fs::create_symlink(aside, victim);
  auto segs = ledger::list_segments(dir.path);
  ASSERT_FALSE(segs.ok());
  EXPECT_NE(segs.error().message.find("000002.jsonl.zst is a symbolic link"), std::string::npos)
      << segs.error().message;
  fs::remove(victim);
  ASSERT_EQ(mkfifo(victim.c_str(), 0600), 0);
  segs = ledger::list_segments(dir.path);
  ASSERT_FALSE(segs.ok());
  EXPECT_NE(segs.error().message.find("000002.jsonl.zst is a FIFO"), std::string::npos) << segs.error().message;
}
