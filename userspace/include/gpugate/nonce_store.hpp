// Single-use nonces for signed requests, kept across restarts.
//
// The daemon issues a random 128-bit nonce, the operator puts it into the
// request, and the daemon consumes it once when the signed request comes
// back. Every issue and every use is appended to a journal file and fsynced
// before the call returns, so a replay is refused after a restart too.
// An issued nonce expires after the TTL; a used one is remembered until then.
// After expiry the store forgets it, which is safe: a nonce the store does
// not know is refused.
//
// Journal (text, one record per line):
//   gpugate-nonces v1
//   issued <nonce> <issued_at> <expires_at>
//   used <nonce> <used_at>
// Times are Unix seconds. A torn last line (a crash mid-append) is cut off
// when the store opens, or completed when only its newline is missing; any
// other damage is an error naming file:line.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gpugate/result.hpp"

namespace gpugate::auth {

struct IssuedNonce {
  std::string nonce;  // 32 lowercase hex digits
  int64_t issued_at = 0;
  int64_t expires_at = 0;
};

struct NonceStoreOptions {
  int64_t ttl_seconds = 900;       // how long an issued nonce can be used
  size_t max_outstanding = 10000;  // issued, unused and unexpired nonces at most (bounds the file)
  size_t compact_slack = 4096;     // records beyond the live ones before the journal is rewritten
};

class NonceStore {
 public:
  enum class State { kUnknown, kOutstanding, kUsed, kExpired };

  // Opens (or creates) the journal at path and loads it; holds an exclusive
  // lock on it until destroyed, so a second daemon cannot share it. now is
  // the current Unix time, to drop what has expired.
  static Result<NonceStore> open(const std::string& path, int64_t now, NonceStoreOptions options = {});

  NonceStore(NonceStore&& other) noexcept;
  NonceStore& operator=(NonceStore&& other) noexcept;
  NonceStore(const NonceStore&) = delete;
  NonceStore& operator=(const NonceStore&) = delete;
  ~NonceStore();

  // A fresh random nonce, journaled before it is returned.
  Result<IssuedNonce> issue(int64_t now);
  // Marks nonce used, journaled before it returns; refuses a nonce that is
  // unknown, expired or already used (a replay), saying which.
  Result<void> consume(std::string_view nonce, int64_t now);

  State state(std::string_view nonce, int64_t now) const;
  size_t outstanding(int64_t now) const;
  const std::string& path() const { return path_; }
  // What opening repaired (a torn last line), for the daemon's log.
  const std::vector<std::string>& notes() const { return notes_; }

 private:
  struct Entry {
    int64_t issued_at = 0;
    int64_t expires_at = 0;
    int64_t used_at = -1;  // -1: not used
  };
  NonceStore() = default;
  Result<void> load(int64_t now);
  Result<void> apply(std::string_view record);
  Result<void> append(const std::string& line);
  Result<void> compact(int64_t now);
  void close_fd();

  std::string path_;
  NonceStoreOptions options_;
  int fd_ = -1;
  uint64_t size_ = 0;         // bytes of the journal, after the last complete record
  size_t journal_lines_ = 0;  // records in the journal, for deciding when to compact
  std::unordered_map<std::string, Entry> entries_;
  std::vector<std::string> notes_;
};

}  // namespace gpugate::auth
