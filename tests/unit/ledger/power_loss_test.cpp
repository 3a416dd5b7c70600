// Power loss during the ledger's last write (issue 14): for every byte
// offset the write may have reached, the cut ledger reopens (recovery),
// continues and signs, verifies, and keeps every record signed before the cut
// byte for byte; with the published DIR/checkpoint old or new.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>

#include <fmt/format.h>

#include "gpugate/ledger.hpp"
#include "gpugate/log_verify.hpp"
#include "ledger_files.hpp"
#include "tempdir.hpp"

using namespace gpugate;
namespace fs = std::filesystem;
using gpugate::test::slurp;
using gpugate::test::spit;
using gpugate::test::TempDir;

namespace {

std::map<std::string, uint64_t> file_sizes(const fs::path& dir) {
  std::map<std::string, uint64_t> out;
  for (const auto& e : fs::directory_iterator(dir)) out[e.path().filename().string()] = e.file_size();
  return out;
}

// The cut copies live in memory where there is a tmpfs: on a disk file
// system each truncate and rename over a file starts writeback, and the loop
// makes thousands of them.
struct ScratchDir {
  fs::path path;
  explicit ScratchDir(const fs::path& fallback) {
    char tmpl[] = "/dev/shm/gpugate-power-loss-XXXXXX";
    const char* made = ::access("/dev/shm", W_OK) == 0 ? mkdtemp(tmpl) : nullptr;
    path = made ? fs::path(made) : fallback / "cut";
    fs::create_directories(path);
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
};

std::string record(uint64_t i) {
  return fmt::format(R"("type":"ioctl","n":{},"decoded":{{"class":"query"}},"verdict":"allowed")", i);
}

}  // namespace

TEST(PowerLoss, EveryCutInTheLastWriteRecoversVerifiesAndKeepsSignedRecords) {
  TempDir dir;
  auto key = std::make_shared<const tlog::LogKey>(*tlog::LogKey::generate("gpugate/testhost"));
  LedgerOptions opt;
  opt.key = key;
  opt.host_id = "testhost";
  opt.boot_id = "boot";
  opt.checkpoint_records = 0;  // checkpoints only where the test asks
  opt.checkpoint_ms = 0;
  opt.fsync = FsyncPolicy::never;  // the cut is simulated: syncing would only slow the loop
  fs::path l = dir.path / "l";
  const fs::path seg_name = "000001.jsonl";

  std::string old_checkpoint, new_checkpoint;
  std::map<std::string, uint64_t> before;
  {
    auto w = LedgerWriter::open(l, opt);
    ASSERT_TRUE(w.ok()) << w.error().message;
    for (uint64_t i = 0; i < 10; i++) ASSERT_TRUE(w->append_members(record(i)).ok());
    ASSERT_TRUE(w->flush().ok());
    ASSERT_TRUE(w->checkpoint("interval").ok());
    old_checkpoint = slurp(l / "checkpoint");
    before = file_sizes(l);
    // The last write: a batch and the checkpoint that signs it, one write(2).
    for (uint64_t i = 10; i < 13; i++) ASSERT_TRUE(w->append_members(record(i)).ok());
    ASSERT_TRUE(w->checkpoint("shutdown").ok());
    new_checkpoint = slurp(l / "checkpoint");
  }
  auto after = file_sizes(l);
  // Only the segment grew; DIR/checkpoint was replaced (old or new at a cut).
  // Nothing else is in the directory, so writing these two files is a copy.
  ASSERT_EQ(before.size(), 2u);
  ASSERT_EQ(before.size(), after.size());
  for (const auto& [name, size] : before)
    if (name != seg_name.string() && name != "checkpoint") EXPECT_EQ(after[name], size) << name;
  const uint64_t from = before[seg_name.string()], to = after[seg_name.string()];
  ASSERT_GT(to, from);
  ASSERT_LT(to - from, 4096u) << "keep the last write small: the loop runs once per byte";
  ASSERT_NE(old_checkpoint, new_checkpoint);
  const std::string full = slurp(l / seg_name);

  auto old_anchor = tlog::parse_signed_checkpoint(old_checkpoint, "old checkpoint");
  auto new_anchor = tlog::parse_signed_checkpoint(new_checkpoint, "new checkpoint");
  ASSERT_TRUE(old_anchor.ok() && new_anchor.ok());

  auto started = std::chrono::steady_clock::now();
  uint64_t runs = 0;
  ScratchDir scratch(dir.path);
  const fs::path& cut = scratch.path;
  for (uint64_t off = from; off <= to; off++) {
    for (const std::string* published : {&old_checkpoint, &new_checkpoint}) {
      SCOPED_TRACE(fmt::format("cut at {} of {}..{}, DIR/checkpoint {}", off, from, to,
                               published == &old_checkpoint ? "old" : "new"));
      // The directory as the power loss left it: the segment cut at off.
      spit(cut / seg_name, full.substr(0, off));
      spit(cut / "checkpoint", *published);
      {
        // The start after the power loss: recovery only, and a crash before
        // it signs (a recovered torn line must not be taken for a checkpoint).
        auto w = LedgerWriter::open(cut, opt);
        ASSERT_TRUE(w.ok()) << w.error().message;
      }
      {
        auto w = LedgerWriter::open(cut, opt);
        ASSERT_TRUE(w.ok()) << w.error().message;
        ASSERT_TRUE(w->append_members(record(999)).ok());
        ASSERT_TRUE(w->checkpoint("shutdown").ok());
      }
      ledger::VerifyOptions vo;
      vo.keys.push_back(key->verifier());
      // The checkpoint published before the last write is an anchor kept
      // elsewhere: the recovered ledger still contains exactly it.
      vo.external.push_back({"old checkpoint", *old_anchor});
      if (off == to) vo.external.push_back({"new checkpoint", *new_anchor});
      auto r = ledger::verify_ledger(cut.string(), vo);
      ASSERT_TRUE(r.ok()) << r.error().message;
      ASSERT_EQ(r->exit_code, ledger::kVerifyOk) << r->text();
      // Nothing before the cut was rewritten; in particular every record the
      // old checkpoint signed (and the record itself) is there byte for byte.
      std::string got = slurp(cut / seg_name);
      ASSERT_GE(got.size(), off);
      ASSERT_EQ(got.compare(0, off, full, 0, off), 0);
      runs++;
    }
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const uint64_t offsets = to - from + 1;
  fmt::print("power loss: {} cuts ({} offsets x 2 DIR/checkpoint) in {:.2f} s\n", runs, offsets, seconds);
  EXPECT_EQ(runs, 2 * offsets);
}
