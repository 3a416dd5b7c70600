// The nonce store: single use, across restarts, expiry, and damage that is
// reported instead of crashing.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "auth_fixture.hpp"
#include "gpugate/nonce_store.hpp"
#include "tempdir.hpp"

using namespace gpugate::auth;
using gpugate::test::slurp;
using gpugate::test::TempDir;
using gpugate::test::auth::write_text;

namespace {

constexpr int64_t kT0 = 1795858800;

void expect_error(const gpugate::Error& e, std::string_view want) {
  EXPECT_NE(e.message.find(want), std::string::npos) << "error: " << e.message << "\nwanted: " << want;
}

}  // namespace

TEST(NonceStore, IssuesRandomNoncesThatWorkOnce) {
  TempDir dir;
  auto store = NonceStore::open((dir.path / "nonces").string(), kT0);
  ASSERT_TRUE(store) << store.error().message;
  auto a = store->issue(kT0);
  auto b = store->issue(kT0);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->nonce.size(), 32u);
  EXPECT_NE(a->nonce, b->nonce);
  EXPECT_EQ(a->expires_at, kT0 + 900);
  EXPECT_EQ(store->state(a->nonce, kT0), NonceStore::State::kOutstanding);
  EXPECT_EQ(store->outstanding(kT0), 2u);
  EXPECT_TRUE(store->consume(a->nonce, kT0 + 10));
  EXPECT_EQ(store->state(a->nonce, kT0 + 10), NonceStore::State::kUsed);
  auto replay = store->consume(a->nonce, kT0 + 20);
  ASSERT_FALSE(replay);
  expect_error(replay.error(), "was already used at 2026-11-28T09:40:10Z: this is a replay, refused");
  EXPECT_EQ(store->outstanding(kT0 + 20), 1u);
}

TEST(NonceStore, ReplayIsRefusedAfterARestart) {
  TempDir dir;
  std::string path = (dir.path / "nonces").string();
  std::string used, open_nonce;
  {
    auto store = NonceStore::open(path, kT0);
    ASSERT_TRUE(store);
    used = store->issue(kT0)->nonce;
    open_nonce = store->issue(kT0)->nonce;
    ASSERT_TRUE(store->consume(used, kT0 + 1));
  }  // the daemon stops
  auto again = NonceStore::open(path, kT0 + 60);
  ASSERT_TRUE(again) << again.error().message;
  auto replay = again->consume(used, kT0 + 61);
  ASSERT_FALSE(replay);
  expect_error(replay.error(), "this is a replay, refused");
  EXPECT_TRUE(again->consume(open_nonce, kT0 + 62)) << "an issued nonce survives the restart";
}

TEST(NonceStore, UnknownAndExpiredNoncesAreRefused) {
  TempDir dir;
  std::string path = (dir.path / "nonces").string();
  auto store = NonceStore::open(path, kT0, {.ttl_seconds = 60, .max_outstanding = 3});
  ASSERT_TRUE(store);
  auto unknown = store->consume("00000000000000000000000000000000", kT0);
  ASSERT_FALSE(unknown);
  expect_error(unknown.error(), "was not issued by this gpugated, or expired and was forgotten");
  auto n = store->issue(kT0)->nonce;
  auto late = store->consume(n, kT0 + 60);
  ASSERT_FALSE(late);
  expect_error(late.error(), "expired at 2026-11-28T09:41:00Z");
  // Used, then expired and forgotten at the next start: still refused.
  auto m = store->issue(kT0)->nonce;
  ASSERT_TRUE(store->consume(m, kT0 + 1));
  store = NonceStore::open((dir.path / "other").string(), kT0);  // release the lock
  auto reopened = NonceStore::open(path, kT0 + 3600);
  ASSERT_TRUE(reopened);
  EXPECT_EQ(reopened->state(m, kT0 + 3600), NonceStore::State::kUnknown);
  EXPECT_FALSE(reopened->consume(m, kT0 + 3600));
}

TEST(NonceStore, OutstandingNoncesAreBounded) {
  TempDir dir;
  auto store = NonceStore::open((dir.path / "nonces").string(), kT0, {.ttl_seconds = 60, .max_outstanding = 2});
  ASSERT_TRUE(store->issue(kT0) && store->issue(kT0));
  auto third = store->issue(kT0);
  ASSERT_FALSE(third);
  expect_error(third.error(), "2 nonces are outstanding");
  EXPECT_TRUE(store->issue(kT0 + 60)) << "expired ones make room";
}

TEST(NonceStore, ASecondOpenIsRefusedWhileTheFirstHoldsTheLock) {
  TempDir dir;
  std::string path = (dir.path / "nonces").string();
  auto first = NonceStore::open(path, kT0);
  ASSERT_TRUE(first);
  auto second = NonceStore::open(path, kT0);
  ASSERT_FALSE(second);
  expect_error(second.error(), "is locked by another process");
}

TEST(NonceStore, TornLastRecordIsCutAndReported) {
  TempDir dir;
  std::string path = (dir.path / "nonces").string();
  std::string n;
  {
    auto store = NonceStore::open(path, kT0);
    n = store->issue(kT0)->nonce;
  }
  std::string text = slurp(path);
  write_text(path, text + "used " + n.substr(0, 10));  // crash in the middle of an append
  auto store = NonceStore::open(path, kT0 + 1);
  ASSERT_TRUE(store) << store.error().message;
  ASSERT_EQ(store->notes().size(), 1u);
  EXPECT_NE(store->notes()[0].find("dropped a torn last record (15 bytes"), std::string::npos) << store->notes()[0];
  EXPECT_EQ(slurp(path), text);
  EXPECT_TRUE(store->consume(n, kT0 + 2));
}

TEST(NonceStore, ACompleteLastRecordWithoutItsNewlineIsKept) {
  TempDir dir;
  std::string path = (dir.path / "nonces").string();
  std::string n;
  {
    auto store = NonceStore::open(path, kT0);
    n = store->issue(kT0)->nonce;
    ASSERT_TRUE(store->consume(n, kT0 + 1));
  }
  std::string text = slurp(path);
  write_text(path, text.substr(0, text.size() - 1));  // the newline of "used ..." is lost
  auto store = NonceStore::open(path, kT0 + 2);
  ASSERT_TRUE(store) << store.error().message;
  EXPECT_EQ(store->state(n, kT0 + 2), NonceStore::State::kUsed) << "a used nonce must stay used";
  EXPECT_EQ(slurp(path), text) << "the newline is restored";
  ASSERT_EQ(store->notes().size(), 1u);
  EXPECT_NE(store->notes()[0].find("completed a last record"), std::string::npos);

  // A torn header (the crash came while the file was being created).
  std::string fresh = (dir.path / "fresh").string();
  write_text(fresh, "gpugate-no");
  auto created = NonceStore::open(fresh, kT0);
  ASSERT_TRUE(created) << created.error().message;
  EXPECT_EQ(slurp(fresh), "gpugate-nonces v1\n");
  // Not a prefix of any record: damage, not a torn write.
  std::string damaged = (dir.path / "damaged").string();
  write_text(damaged, "gpugate-nonces v1\nused " + n + " 2Z");
  auto refused = NonceStore::open(damaged, kT0);
  ASSERT_FALSE(refused);
  expect_error(refused.error(), ":2: the last line is neither a record nor the start of one");
}

TEST(NonceStore, DamagedFilesAreClearErrors) {
  TempDir dir;
  std::string path = (dir.path / "nonces").string();
  const std::string n = "0123456789abcdef0123456789abcdef";
  struct Case {
    std::string text;
    std::string want;
  };
  std::vector<Case> cases = {
      {"hello\n", ":1: expected the header 'gpugate-nonces v1'"},
      {"gpugate-nonces v1\nissued " + n + " 5\n", ":2: not a valid 'issued"},
      {"gpugate-nonces v1\nissued " + n + " 10 5\n", ":2: not a valid 'issued"},
      {"gpugate-nonces v1\nissued XYZ 1 5\n", ":2: not a valid 'issued"},
      {"gpugate-nonces v1\nissued " + n + " 1 5\nissued " + n + " 1 5\n", ":3: nonce " + n + " issued twice"},
      {"gpugate-nonces v1\nused " + n + " 1\n", ":2: nonce " + n + " used but never issued"},
      {"gpugate-nonces v1\nissued " + n + " 1 5\nused " + n + " 2\nused " + n + " 3\n",
       ":4: nonce " + n + " used twice"},
      {"gpugate-nonces v1\nforgot " + n + "\n", ":2: unknown record 'forgot'"},
      {"gpugate-nonces v1\n\n", ":2: unknown record ''"},
  };
  for (const auto& c : cases) {
    write_text(path, c.text);
    auto store = NonceStore::open(path, 0);
    ASSERT_FALSE(store) << c.text;
    expect_error(store.error(), path + c.want);
    expect_error(store.error(), "move " + path + " aside");
  }
  // Random damage: an error or a usable store, never a crash.
  std::mt19937 rng(7);
  std::string good = "gpugate-nonces v1\nissued " + n + " 1 99999999999\nused " + n + " 2\n";
  for (int i = 0; i < 1000; i++) {
    std::string t = good;
    for (int k = 0; k < 1 + static_cast<int>(rng() % 4); k++) t[rng() % t.size()] = static_cast<char>(rng() % 256);
    write_text(path, t);
    auto store = NonceStore::open(path, 0);
    if (store) EXPECT_NE(store->state(n, 0), NonceStore::State::kOutstanding) << "a used nonce came back:\n" << t;
  }
  write_text(path, "");
  EXPECT_TRUE(NonceStore::open(path, 0)) << "an empty file is a new store";
  std::filesystem::remove(path);
  std::filesystem::create_directory(path);
  auto dir_store = NonceStore::open(path, 0);
  EXPECT_FALSE(dir_store);
}

TEST(NonceStore, CompactionKeepsWhatMatters) {
  TempDir dir;
  std::string path = (dir.path / "nonces").string();
  NonceStoreOptions options{.ttl_seconds = 10, .max_outstanding = 100000, .compact_slack = 64};
  {
    auto store = NonceStore::open(path, kT0, options);
    for (int i = 0; i < 200; i++) ASSERT_TRUE(store->issue(kT0));
  }
  auto full = std::filesystem::file_size(path);
  EXPECT_GT(full, 200u * 40);
  std::string used, open_nonce;
  {
    // At open: all 200 have expired, so the journal is rewritten.
    auto store = NonceStore::open(path, kT0 + 100, options);
    ASSERT_TRUE(store) << store.error().message;
    EXPECT_LT(std::filesystem::file_size(path), 100u);
    used = store->issue(kT0 + 100)->nonce;
    open_nonce = store->issue(kT0 + 100)->nonce;
    ASSERT_TRUE(store->consume(used, kT0 + 101));
    // While running: expired records pile up, then the journal is rewritten.
    for (int i = 0; i < 200; i++) ASSERT_TRUE(store->issue(kT0 + 90));  // expire at +100
    ASSERT_TRUE(store->issue(kT0 + 106));
    EXPECT_LT(std::filesystem::file_size(path), full / 2);
    EXPECT_EQ(store->state(used, kT0 + 106), NonceStore::State::kUsed);
  }
  auto store = NonceStore::open(path, kT0 + 107, options);
  ASSERT_TRUE(store) << store.error().message;
  EXPECT_EQ(store->state(used, kT0 + 107), NonceStore::State::kUsed);
  EXPECT_FALSE(store->consume(used, kT0 + 107));
  EXPECT_TRUE(store->consume(open_nonce, kT0 + 107));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  // The lock moved to the new file.
  EXPECT_FALSE(NonceStore::open(path, kT0 + 108));
}
