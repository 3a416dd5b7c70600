// The ledger (DESIGN section 5): a directory of numbered JSONL segments
// (000001.jsonl, 000002.jsonl, ...), one record per line, appended, never
// rewritten. Every line is a leaf of one RFC 6962 Merkle tree (the exact
// bytes without the newline); the writer keeps the tree as a compact range
// and writes signed checkpoints (C2SP tlog-checkpoint in a signed note) as
// records of their own, every N records or T ms, when a segment rotates and
// at shutdown. docs/ledger.md describes the format.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "gpugate/checkpoint.hpp"
#include "gpugate/log_prune.hpp"
#include "gpugate/merkle.hpp"
#include "gpugate/result.hpp"

namespace gpugate {

class SegmentCompressor;

// When the ledger asks the kernel to put data on disk (fdatasync).
enum class FsyncPolicy {
  never,       // leave it to the kernel's writeback (~30 s)
  checkpoint,  // after each checkpoint record, before it is published (default)
  batch,       // after every batch the daemon writes (every 20 ms under load)
};
Result<FsyncPolicy> parse_fsync_policy(std::string_view text);
std::string_view fsync_policy_name(FsyncPolicy p);

// The ledger's size budget (gpugated --ledger-max-gib). When the ledger
// directory's files exceed it, the writer prunes whole sealed segments whose
// records were all shipped off the host; what it cannot prune it keeps, and
// says so in a ledger.budget record (once per crossing) and in
// budget_status(). Nothing unshipped is ever removed.
struct LedgerBudget {
  uint64_t max_bytes = 0;  // 0: no budget
  // Every record before the returned seq is off the host (gpugate log ship's
  // state files: ship::shipped_before), given the ledger's next seq; an error
  // says why that is not known. Unset: nothing is known to be shipped, so
  // the budget only alarms.
  std::function<Result<uint64_t>(uint64_t ledger_next_seq)> shipped_before;
};

struct LedgerBudgetStatus {
  uint64_t max_bytes = 0;
  uint64_t bytes = 0;           // the ledger directory's files, at the last check
  bool over = false;            // over the budget after what could be pruned
  std::string reason;           // why it stays over
  uint64_t pruned_records = 0;  // pruned by the budget since open
  [[nodiscard]] nlohmann::ordered_json json() const;
};

struct LedgerOptions {
  uint64_t segment_bytes = 64ull << 20;  // rotate a segment once it reaches this size
  uint64_t checkpoint_records = 100000;  // checkpoint after this many records (0: not by count)
  uint64_t checkpoint_ms = 10000;        // ... or this many ms since the last one (0: not by time)
  FsyncPolicy fsync = FsyncPolicy::checkpoint;
  // The log key; without one no checkpoints are written (tests, benchmarks).
  std::shared_ptr<const tlog::LogKey> key;
  std::string origin;  // checkpoint origin (the key's name); default "gpugate/<host_id>"
  std::string host_id = "unknown";
  std::string boot_id = "unknown";
  // zstd-compress sealed segments (NNNNNN.jsonl.zst) on a thread of their
  // own, all but the newest sealed one, which stays plain for log shippers
  // that are behind. A failure is a ledger.compress_failed record and the
  // segment stays plain.
  bool compress_sealed = false;
  LedgerBudget budget;
};

// The origin (and key name) of a host's log.
std::string ledger_origin(const std::string& host_id);

class LedgerWriter {
 public:
  // Opens the ledger directory DIR for appending, creating it (mode 0750)
  // and its first segment. Continues the sequence numbers and the Merkle
  // tree of what is there (from the last checkpoint record on). A torn last
  // line is kept as found, terminated, and named by a "ledger.recovered"
  // record written at once (open_note() says so too).
  // Before it continues, the last checkpoint record must agree with its own
  // signed note (signature by options.key when given, origin, size = seq =
  // tree_size, range hashing to the signed root) and the records after it
  // must follow it (seq, prev, JSON). When they do not, open refuses: it
  // appends an unsigned "ledger.resume_refused" record (where the directory
  // can be written) and returns an error naming the record and the fix.
  static Result<LedgerWriter> open(const std::string& dir, LedgerOptions options = {});
  LedgerWriter(LedgerWriter&& other) noexcept;
  LedgerWriter& operator=(LedgerWriter&&) = delete;
  LedgerWriter(const LedgerWriter&) = delete;
  ~LedgerWriter();

  // Sets rec["seq"] (first field) and appends the line, written at once
  // when the disk takes it (else it stays buffered like append_members'
  // lines, and the next flush() reports the failure). Returns the seq.
  Result<uint64_t> append(nlohmann::ordered_json rec);

  // The hot path: members is the text of a JSON object's members, without
  // braces and without "seq". The line is hashed into the tree and buffered
  // until flush() (or 256 KiB); lines a failed write could not take stay
  // buffered (up to 64 MiB).
  Result<uint64_t> append_members(std::string_view members);
  // Writes the buffer; writes a checkpoint first when one is due, and
  // rotates the segment when it is full.
  Result<void> flush();
  // A checkpoint record now (reason: "shutdown", "request", ...), flushed,
  // synced (unless fsync never) and published as DIR/checkpoint.
  Result<void> checkpoint(std::string_view reason);

  // Removes the oldest sealed segments whose records all come before CUT,
  // keeping the newest sealed one and the one being written: pruned.json
  // first, then a ledger.pruned record (written and flushed), then the
  // segments (log_prune.hpp). Returns the record's members and its seq.
  Result<nlohmann::ordered_json> prune(const ledger::PruneCut& cut);

  // Checks the size budget (LedgerOptions::budget) now; also done at each
  // rotation. Prunes what was shipped, then records a ledger.budget record
  // when the ledger crosses the budget either way. A no-op without a budget.
  void check_budget();
  [[nodiscard]] const LedgerBudgetStatus& budget_status() const { return budget_; }

  // Waits for the sealed segments queued for compression, and records (as
  // ledger.compress_failed, not yet written) any that could not be.
  void finish_compression();

  [[nodiscard]] uint64_t next_seq() const { return next_seq_; }
  [[nodiscard]] const std::string& path() const { return dir_; }
  [[nodiscard]] std::string segment_path() const;
  [[nodiscard]] const std::string& open_note() const { return note_; }
  // The last complete record open() found (the previous run's last word),
  // "" for a new ledger: the daemon tells a clean stop from a kill by it.
  [[nodiscard]] const std::string& previous_last_record() const { return previous_last_; }
  [[nodiscard]] uint64_t bytes_written() const { return bytes_; }
  [[nodiscard]] uint64_t checkpoints_written() const { return checkpoints_; }
  // The latest signed checkpoint note written ("" before the first).
  [[nodiscard]] const std::string& last_checkpoint() const { return last_note_; }
  // When this writer last wrote a checkpoint (Unix ns; 0 before its first).
  [[nodiscard]] int64_t last_checkpoint_unix_ns() const { return last_checkpoint_unix_ns_; }
  [[nodiscard]] merkle::Hash root();
  // The verifier key of the log key ("" without one).
  [[nodiscard]] std::string key_text() const { return opt_.key ? opt_.key->verifier().text() : std::string(); }

 private:
  LedgerWriter() = default;
  Result<void> write_out();
  Result<void> open_segment(uint32_t number);
  Result<void> rotate();
  void compress_sealed_before(uint32_t number);
  void record_compress_failures();
  void enforce_budget();
  void append_checkpoint_record(std::string_view reason);
  void append_own(std::string_view type, const std::string& members);
  Result<void> publish(const std::string& note);
  struct ResumeProblem;
  Result<void> recover_torn(const std::string& segment, uint64_t offset, std::string_view bytes);
  Error refuse(const ResumeProblem& problem, std::string_view last_line, bool last_line_is_ours);
  void abandon();
  static constexpr size_t kFlushBytes = 256 * 1024;
  static constexpr size_t kMaxBuffered = 64 * 1024 * 1024;

  LedgerOptions opt_;
  std::string dir_;
  int fd_ = -1;
  int dir_fd_ = -1;
  uint32_t segment_ = 1;
  uint64_t segment_bytes_ = 0;  // written to the current segment
  uint64_t next_seq_ = 0;
  std::string note_;
  std::string previous_last_;
  uint64_t bytes_ = 0;
  std::string buf_;
  merkle::Hasher hasher_;
  merkle::CompactRange range_;
  merkle::Hash last_leaf_{};
  uint64_t since_checkpoint_ = 0;   // records appended since the last checkpoint
  int64_t last_checkpoint_ns_ = 0;  // CLOCK_MONOTONIC
  int64_t last_checkpoint_unix_ns_ = 0;
  uint64_t checkpoints_ = 0;
  bool checkpoint_pending_publish_ = false;
  std::string last_note_;
  std::unique_ptr<SegmentCompressor> compressor_;
  LedgerBudgetStatus budget_;
  bool in_budget_check_ = false;
};

}  // namespace gpugate
