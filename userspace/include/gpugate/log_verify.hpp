// Offline verification of a ledger directory, and inclusion proofs
// (c2sp.org/tlog-proof@v1). docs/ledger.md lists what is checked and the
// exit codes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "gpugate/checkpoint.hpp"
#include "gpugate/log_prune.hpp"
#include "gpugate/log_reader.hpp"
#include "gpugate/merkle.hpp"
#include "gpugate/result.hpp"

namespace gpugate::ledger {

// Exit codes of `gpugate log verify` (and verify-proof).
enum VerifyExit : int {
  kVerifyOk = 0,        // every record, checkpoint and signature checked
  kVerifyTampered = 1,  // the first bad place is named
  kVerifyUsage = 2,     // bad arguments, unreadable or foreign input
  kVerifyUnsigned = 3,  // intact, but no checkpoint signs it (or no key to check)
};

struct ExternalCheckpoint {
  std::string name;  // file name, for messages
  tlog::SignedCheckpoint cp;
};

struct VerifyOptions {
  std::vector<tlog::VerifierKey> keys;  // trusted; empty: the first checkpoint's own key
  std::string key_source;               // for the report ("--key FILE")
  std::vector<ExternalCheckpoint> external;
  bool local_checkpoint = true;  // also check DIR/checkpoint when present
  // DIR is a collector's copy (gpugate log ship, dir:): records.jsonl holds
  // the host's segments joined, leaves only. verify_ledger sets it when DIR
  // has records.jsonl and no segments.
  bool collected = false;
  ProgressFn progress;  // optional: see Progress
};

struct Place {
  std::string segment;
  uint64_t line = 0;
  uint64_t offset = 0;
  std::optional<uint64_t> seq;
};

// The records no signature covers: from the first record past the largest
// checked checkpoint to the end. A checkpoint record at seq N signs 0..N-1,
// so the last checkpoint record is itself in this tail until the next
// checkpoint signs it; its members are checked against its own note, but its
// reason, boot_id and times cannot be authenticated yet.
struct UnsignedTail {
  uint64_t first_seq = 0;
  uint64_t last_seq = 0;
  uint64_t records = 0;
  struct CheckpointRecord {
    uint64_t seq = 0;
    Place place;
    std::string reason;
    std::string boot_id;
  };
  std::optional<CheckpointRecord> checkpoint;  // the last checkpoint record, when it is in the tail
};

// What a pruned ledger no longer holds (DIR/pruned.json), and what stands
// for it: the checkpoint record that closed the last removed segment.
struct PrunedPart {
  uint64_t first_seq = 0;               // the first record kept; seq 0..first_seq-1 are gone
  std::string first_segment;            // the first segment kept
  std::vector<std::string> segments;    // removed, by every prune
  std::string anchor_segment;           // whose closing checkpoint record is kept in pruned.json
  std::optional<uint64_t> recorded_at;  // seq of the ledger.pruned record that names this cut
  std::vector<std::string> left_over;   // segments before the cut still there (a prune cut short): not read
};

struct VerifyReport {
  std::string dir;
  uint64_t segments = 0;
  uint64_t records = 0;  // leaves
  uint64_t bytes = 0;
  uint64_t checkpoints = 0;
  std::optional<uint64_t> last_checkpoint_size;
  merkle::Hash last_checkpoint_root{};
  merkle::Hash root{};  // of all records
  std::string key;      // the verifier key used
  std::string key_source;
  std::optional<Place> bad_place;
  std::string problem;                        // what is wrong at bad_place (or overall)
  std::optional<UnsignedTail> unsigned_tail;  // set when the checks passed (exit 0 or 3)
  std::optional<PrunedPart> pruned;           // set for a pruned ledger
  std::vector<std::string> warnings;
  std::vector<std::string> notes;
  std::vector<std::string> external_ok;
  int exit_code = kVerifyOk;

  [[nodiscard]] nlohmann::ordered_json json() const;
  [[nodiscard]] std::string text() const;
};

// Checks every segment. Errors only for input that cannot be read at all
// (exit code 2); everything else is in the report.
Result<VerifyReport> verify_ledger(const std::string& dir, const VerifyOptions& opt);

// The same over segments held in memory (fuzzing, tests).
struct MemorySegment {
  Segment segment;
  std::string_view data;
};
// With an anchor, as verify_ledger does for a pruned ledger (segments before
// anchor->first_segment are skipped).
VerifyReport verify_memory(const std::vector<MemorySegment>& segments, const VerifyOptions& opt,
                           const PruneAnchor* anchor = nullptr);

// An inclusion proof of record SEQ against a checkpoint: the one given, or
// else the latest checkpoint record of the ledger.
struct InclusionProof {
  uint64_t index = 0;
  std::vector<merkle::Hash> path;
  std::string checkpoint_note;
  std::string record;                      // the record's line, without newline
  [[nodiscard]] std::string text() const;  // c2sp.org/tlog-proof@v1
};
Result<InclusionProof> make_inclusion_proof(const std::string& dir, uint64_t seq,
                                            const std::optional<tlog::SignedCheckpoint>& against);

struct ParsedProof {
  uint64_t index = 0;
  std::vector<merkle::Hash> path;
  tlog::SignedCheckpoint checkpoint;
};
Result<ParsedProof> parse_proof(std::string_view text, const std::string& name);

// Checks a proof offline: the record line hashes into the checkpoint's root
// and (when keys are given) the checkpoint's signature. exit code + message.
struct ProofCheck {
  int exit_code = kVerifyOk;
  std::string message;
};
ProofCheck check_proof(const ParsedProof& proof, std::string_view record_line, std::span<const tlog::VerifierKey> keys);

// The latest checkpoint record's note, and a consistency proof from an older
// checkpoint to it (the body of a C2SP tlog-witness add-checkpoint request).
struct LatestCheckpoint {
  std::string note;
  uint64_t size = 0;
  uint64_t seq = 0;  // of the checkpoint record
};
Result<LatestCheckpoint> latest_checkpoint(const std::string& dir);
Result<std::vector<merkle::Hash>> consistency_proof(const std::string& dir, uint64_t size1, uint64_t size2);

}  // namespace gpugate::ledger
