// `gpugate log verify` and `log export` draw progress on stderr only where a
// person watches (a terminal) or --progress asks; piped they stay silent, and
// the progress never changes what goes to stdout or into the files.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>

#include "gpugate/checkpoint.hpp"
#include "gpugate/ledger.hpp"
#include "gpugate/log_query.hpp"
#include "gpugate/log_verify.hpp"
#include "process.hpp"
#include "tempdir.hpp"

namespace {

namespace fs = std::filesystem;
using gpugate::test::run_shell;
using gpugate::test::slurp;

// More records than one progress step (kProgressEvery), two segments, signed.
class LogProgress : public ::testing::Test {
 protected:
  void SetUp() override {
    auto key = gpugate::tlog::LogKey::load_or_create((dir.path / "state").string(), "gpugate/testhost");
    ASSERT_TRUE(key.ok()) << key.error().message;
    gpugate::LedgerOptions o;
    o.key = std::make_shared<const gpugate::tlog::LogKey>(std::move(*key));
    o.host_id = "testhost";
    o.fsync = gpugate::FsyncPolicy::never;
    o.segment_bytes = 256 << 10;
    auto w = gpugate::LedgerWriter::open(ledger.string(), o);
    ASSERT_TRUE(w.ok()) << w.error().message;
    for (int i = 0; i < 3000; i++)
      ASSERT_TRUE(w->append({{"type", "test.event"}, {"time", "2026-12-06T23:51:02.123456789Z"}, {"i", i}}).ok());
    ASSERT_TRUE(w->checkpoint("test").ok());
  }

  // stdout and stderr apart: stderr is a file here, never a terminal.
  struct Out {
    int status;
    std::string out, err;
  };
  Out gpugate(const std::string& args) {
    auto o = (dir.path / "stdout").string(), e = (dir.path / "stderr").string();
    // run_shell adds 2>&1 after the command: the subshell keeps our own redirections.
    auto r = run_shell("(" + std::string(GG_BIN_DIR) + "/gpugate " + args + " >" + o + " 2>" + e + ")");
    return {r.status, slurp(o), slurp(e)};
  }

  gpugate::test::TempDir dir;
  fs::path ledger = dir.path / "ledger";
  std::string pub() { return (dir.path / "state" / "log-key.pub").string(); }
};

}  // namespace

TEST_F(LogProgress, VerifySilentWhenPipedAndShownWhenAsked) {
  auto quiet = gpugate("log verify " + ledger.string() + " --key " + pub());
  ASSERT_EQ(quiet.status, 0) << quiet.out << quiet.err;
  EXPECT_EQ(quiet.err, "");
  auto shown = gpugate("log verify --progress " + ledger.string() + " --key " + pub());
  ASSERT_EQ(shown.status, 0) << shown.out << shown.err;
  EXPECT_EQ(shown.out, quiet.out);
  EXPECT_NE(shown.err.find("gpugate log verify: 1024 records"), std::string::npos) << shown.err;
  EXPECT_NE(shown.err.find("(100%)"), std::string::npos) << shown.err;
  // Not a terminal: plain lines, no cursor controls.
  EXPECT_EQ(shown.err.find('\r'), std::string::npos);
  auto never = gpugate("log verify --no-progress " + ledger.string() + " --key " + pub());
  EXPECT_EQ(never.err, "");
  auto both = gpugate("log verify --progress --no-progress " + ledger.string());
  EXPECT_NE(both.status, 0) << both.out << both.err;
  EXPECT_NE(both.err.find("--progress excludes --no-progress"), std::string::npos) << both.err;
}

TEST_F(LogProgress, ExportSilentWhenPipedAndShownWhenAsked) {
  auto a = (dir.path / "a.csv").string(), b = (dir.path / "b.csv").string();
  auto quiet = gpugate("log export " + ledger.string() + " --format csv -o " + a);
  ASSERT_EQ(quiet.status, 0) << quiet.out << quiet.err;
  EXPECT_EQ(quiet.err, "");
  auto shown = gpugate("log export --progress " + ledger.string() + " --format csv -o " + b);
  ASSERT_EQ(shown.status, 0) << shown.out << shown.err;
  EXPECT_NE(shown.err.find("gpugate log export: "), std::string::npos) << shown.err;
  EXPECT_NE(shown.err.find("(100%)"), std::string::npos) << shown.err;
  EXPECT_EQ(shown.out.find("gpugate log export:"), std::string::npos) << shown.out;
  EXPECT_EQ(slurp(a), slurp(b));
  // stdout is the same but for the file's name.
  std::string expected = quiet.out;
  for (size_t at = expected.find(a); at != std::string::npos; at = expected.find(a, at + b.size()))
    expected.replace(at, a.size(), b);
  EXPECT_EQ(shown.out, expected);
}

// The library's callback: steps of kProgressEvery leaves, bytes rising to the
// total, one last call marked done.
TEST_F(LogProgress, LibraryReportsStepsAndDone) {
  std::vector<gpugate::ledger::Progress> seen;
  gpugate::ledger::VerifyOptions o;
  o.progress = [&](const gpugate::ledger::Progress& p) { seen.push_back(p); };
  auto r = gpugate::ledger::verify_ledger(ledger.string(), o);
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_GE(seen.size(), 3u);
  EXPECT_TRUE(seen.back().done);
  EXPECT_EQ(seen.back().records, r->records);
  EXPECT_EQ(seen.back().bytes, seen.back().total_bytes);
  for (size_t i = 1; i < seen.size(); i++) EXPECT_GE(seen[i].bytes, seen[i - 1].bytes);
  std::vector<gpugate::ledger::Progress> rec;
  auto e = gpugate::ledger::for_each_record(
      ledger.string(), [](const gpugate::ledger::Record&) { return true; },
      [&](const gpugate::ledger::Progress& p) { rec.push_back(p); });
  ASSERT_TRUE(e.ok());
  ASSERT_GE(rec.size(), 3u);
  EXPECT_EQ(rec.front().records, gpugate::ledger::kProgressEvery);
  EXPECT_TRUE(rec.back().done);
  EXPECT_EQ(rec.back().records, r->records);
}
