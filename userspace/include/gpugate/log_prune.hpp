// Pruning a ledger (issue 15, item 4): removing its oldest sealed segments
// while keeping what lets the rest verify. A prune cuts only at the end of a
// sealed segment, whose last record is a checkpoint record: that record (the
// anchor) carries the compact range of every record before it and a note the
// log key signed, so the tree goes on from it without the removed records.
// The anchor is kept in DIR/pruned.json with the list of what was removed,
// and the writer records the prune as a ledger.pruned record, which the next
// checkpoint signs. docs/ledger.md, "Pruning".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gpugate/log_reader.hpp"
#include "gpugate/merkle.hpp"
#include "gpugate/result.hpp"

namespace gpugate::ledger {

inline constexpr std::string_view kPruneAnchorFile = "pruned.json";

// Where to cut: segments whose records all come before it go.
struct PruneCut {
  std::optional<uint64_t> before_seq;     // every record's seq < this
  std::optional<int64_t> before_unix_ns;  // its closing checkpoint written before this (Unix ns)
  [[nodiscard]] nlohmann::ordered_json json() const;
};

// One removed segment, as pruned.json and ledger.pruned list it.
struct PrunedSegment {
  std::string name;  // "000001.jsonl"
  uint64_t first_seq = 0;
  uint64_t last_seq = 0;  // its closing checkpoint record's
  std::string last_time;  // that record's time
  [[nodiscard]] nlohmann::ordered_json json() const;
};

// What a pruned ledger keeps of what it removed (DIR/pruned.json).
struct PruneAnchor {
  uint32_t first_segment = 1;         // the first segment kept
  uint64_t first_seq = 0;             // its first record's seq
  std::string anchor_segment;         // the segment whose closing checkpoint record is the anchor
  std::string anchor_line;            // that record, byte for byte: seq first_seq - 1
  std::vector<PrunedSegment> pruned;  // every segment removed, by every prune
  [[nodiscard]] nlohmann::ordered_json json() const;
};

// A checkpoint record's "range": its base64 SHA-256 hashes, or nullopt when
// it is not a list of them.
std::optional<std::vector<merkle::Hash>> checkpoint_range_hashes(const nlohmann::json& range);

// The compact range the anchor stores: the tree of the first_seq - 1 records
// before it. An error when the anchor is not a checkpoint record at seq
// first_seq - 1 whose range fits its tree_size. Only verify ties it to the
// signed root; a shipper ties it to what it shipped.
Result<merkle::CompactRange> anchor_stored_range(const PruneAnchor& a);

// The text of a pruned.json read from PATH (also for fuzzing).
Result<PruneAnchor> parse_prune_anchor(std::string_view text, const std::string& path);
// DIR/pruned.json, or nullopt when there is none. Errors for a file that is
// not one gpugate writes (naming it and the fix), never a crash.
Result<std::optional<PruneAnchor>> read_prune_anchor(const std::string& dir);

struct PrunePlan {
  std::vector<Segment> remove;         // in order, from the first segment there
  std::vector<PrunedSegment> removed;  // the same, described
  PruneAnchor anchor;                  // pruned.json after the prune (the earlier prunes' list included)
  uint64_t records = 0;                // records removed
  [[nodiscard]] nlohmann::ordered_json json() const;
};

// Error.code of plan_prune when no segment can go (not a failure to read).
inline constexpr int kNothingToPrune = -2;

// Which segments a prune at CUT removes: those an earlier prune left before
// its cut, then, from there, each sealed segment before keep_from whose
// records all come before the cut and whose last record is its closing
// checkpoint. Errors say why nothing can go.
Result<PrunePlan> plan_prune(const std::string& dir, const PruneCut& cut, uint32_t keep_from);

// A prune is three steps, each safe to be cut short by a crash
// (LedgerWriter::prune does them in order):
//  1. the ledger.pruned record, written and flushed by the ledger's writer.
//     While 000001.jsonl is still there, verify reads everything.
//  2. write_prune_anchor: pruned.json (temporary file, fsync, rename, fsync
//     of DIR).
//  3. remove_pruned: the plan's segments, in order. Those a crash leaves
//     before the cut, verify skips (and names) and the next prune removes
//     (a plan of only those: PrunePlan::removed is empty).
Result<void> write_prune_anchor(const std::string& dir, const PrunePlan& plan);
Result<void> remove_pruned(const std::string& dir, const PrunePlan& plan);

}  // namespace gpugate::ledger
