// The ledger: one JSON record per line, appended, never rewritten.
// (Merkle hashing, checkpoints and rotation arrive with the ledger issue.)
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "gpugate/result.hpp"

namespace gpugate {

class LedgerWriter {
 public:
  // Opens PATH for appending, creating it (mode 0640) and its directory.
  // Continues the sequence numbers of what is already there; a torn last
  // line is reported in the returned note, never dropped or rewritten.
  static Result<LedgerWriter> open(const std::string& path);
  LedgerWriter(LedgerWriter&& other) noexcept;
  LedgerWriter& operator=(LedgerWriter&&) = delete;
  LedgerWriter(const LedgerWriter&) = delete;
  ~LedgerWriter();

  // Sets rec["seq"] (first field) and appends the line, written at once.
  // Returns the seq.
  Result<uint64_t> append(nlohmann::ordered_json rec);

  // The hot path: members is the text of a JSON object's members, without
  // braces and without "seq". The line is buffered until flush() (or 256 KiB);
  // lines a failed write could not take stay buffered (up to 64 MiB).
  Result<uint64_t> append_members(std::string_view members);
  Result<void> flush();

  [[nodiscard]] uint64_t next_seq() const { return next_seq_; }
  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] const std::string& open_note() const { return note_; }
  [[nodiscard]] uint64_t bytes_written() const { return bytes_; }

 private:
  LedgerWriter(int fd, std::string path, uint64_t next_seq, std::string note)
      : fd_(fd), path_(std::move(path)), next_seq_(next_seq), note_(std::move(note)) {
    buf_.reserve(kFlushBytes + 4096);
  }
  static constexpr size_t kFlushBytes = 256 * 1024;
  static constexpr size_t kMaxBuffered = 64 * 1024 * 1024;
  int fd_ = -1;
  std::string path_;
  uint64_t next_seq_ = 0;
  std::string note_;
  uint64_t bytes_ = 0;
  std::string buf_;
};

}  // namespace gpugate
