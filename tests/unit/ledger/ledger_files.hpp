// What the ledger tests do to a ledger's files: read and write them whole
// or by line, and a fresh log key.
#pragma once
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "gpugate/checkpoint.hpp"
#include "gpugate/ledger.hpp"
#include "gpugate/log_verify.hpp"
#include "ledger_read.hpp"

namespace gpugate::test {

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}
inline void spit(const std::filesystem::path& p, const std::string& s) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << s;
}
inline std::vector<std::string> lines_of(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}
inline void write_lines(const std::filesystem::path& p, const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  spit(p, out);
}
inline std::shared_ptr<const tlog::LogKey> test_key(const std::string& name = "gpugate/testhost") {
  return std::make_shared<const tlog::LogKey>(*tlog::LogKey::generate(name));
}

// The writer options of the ledger tests: a checkpoint every 10 records
// and none by time, no fsync.
inline LedgerOptions test_ledger_options(std::shared_ptr<const tlog::LogKey> key, uint64_t segment_bytes = 64ull << 20,
                                         const std::string& host = "testhost", const std::string& boot = "boot") {
  LedgerOptions o;
  o.key = std::move(key);
  o.host_id = host;
  o.boot_id = boot;
  o.checkpoint_records = 10;
  o.checkpoint_ms = 0;
  o.segment_bytes = segment_bytes;
  o.fsync = FsyncPolicy::never;
  return o;
}

// log verify with KEY trusted; a ledger it cannot read fails the test.
inline ledger::VerifyReport verify_with_key(const std::filesystem::path& dir, const tlog::LogKey& key) {
  ledger::VerifyOptions o;
  o.keys.push_back(key.verifier());
  auto r = ledger::verify_ledger(dir, o);
  EXPECT_TRUE(r.ok()) << r.error().message;
  return r.ok() ? *r : ledger::VerifyReport{};
}

// ioctl records numbered from..to-1 ("n"), flushed every 5: segments rotate
// (and a size budget is checked) at a flush.
inline void append_ioctls(LedgerWriter& w, uint64_t from, uint64_t to) {
  for (uint64_t i = from; i < to; i++) {
    ASSERT_TRUE(w.append_members(fmt::format(R"("type":"ioctl","n":{})", i)).ok());
    if (i % 5 == 4) ASSERT_TRUE(w.flush().ok());
  }
  ASSERT_TRUE(w.flush().ok());
}

// The "n" of every ioctl record in the ledger, in order.
inline std::vector<uint64_t> ioctl_numbers(const std::filesystem::path& dir) {
  std::vector<uint64_t> out;
  for (const auto& j : ledger_records(dir, "ioctl")) out.push_back(j["n"].get<uint64_t>());
  return out;
}

}  // namespace gpugate::test
