// The investigator's questions to a ledger: filtered listings, counts,
// exports (ECS, CSV, Timesketch) with a SHA-256 manifest, what-if replay
// under another policy, and a timeline picture. docs/ledger.md.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gpugate/log_reader.hpp"
#include "gpugate/policy.hpp"
#include "gpugate/result.hpp"

namespace gpugate::ledger {

struct Filter {
  std::optional<int64_t> since_ns, until_ns;  // realtime, [since, until)
  std::vector<std::string> classes, verdicts, types, processes, gpus, rules;
  std::optional<uint64_t> seq_from, seq_to;  // inclusive
  [[nodiscard]] bool matches(const nlohmann::json& rec) const;
};

// "2026-11-28T12:00:00Z", "2026-11-28T12:00:00.5+01:00", "2026-11-28",
// "2026-11-28 12:00", or a time ago: "90s", "15m", "2h", "7d".
Result<int64_t> parse_time(const std::string& text);
// "A..B", "A..", "..B" or "N".
Result<std::pair<std::optional<uint64_t>, std::optional<uint64_t>>> parse_seq_range(const std::string& text);

// Every record of the ledger (leaves only; torn lines are skipped), parsed,
// with where it is. fn returns false to stop. Lines that are not JSON are
// passed with rec discarded (is_discarded()).
// Its implicit members move a nlohmann::json, which does not throw; clang-tidy 14 cannot tell.
struct Record {  // NOLINT(bugprone-exception-escape)
  const Line* line = nullptr;
  nlohmann::json rec;
};
Result<void> for_each_record(const std::string& dir, const std::function<bool(const Record&)>& fn,
                             const ProgressFn& progress = {});

// show: a table (or the lines themselves with json).
Result<uint64_t> show(const std::string& dir, const Filter& f, bool json, uint64_t limit, std::ostream& out);

// stats: counts by type, class, verdict, process, GPU; gaps and drops.
Result<nlohmann::ordered_json> stats(const std::string& dir, const Filter& f);
std::string stats_text(const nlohmann::ordered_json& s);

// export: FILE in the format, FILE.sha256 (sha256sum -c) and
// FILE.manifest.json (what was exported, from which ledger, anchored where).
struct ExportResult {
  uint64_t records = 0;
  std::string sha256;
  std::string manifest_path;
};
Result<ExportResult> export_records(const std::string& dir, const Filter& f, const std::string& format,
                                    const std::string& out_path, const std::vector<std::string>& argv,
                                    const ProgressFn& progress = {});

// replay: every recorded ioctl decided again under policy, with the shared
// verdict code; what would have changed.
struct ReplayOptions {
  bool redecode = true;  // decode the recorded bytes again (else trust the recorded class)
  uint64_t limit = 50;   // changed records listed in text output
};
Result<nlohmann::ordered_json> replay(const std::string& dir, const Filter& f, const Policy& policy,
                                      const ReplayOptions& opt);
std::string replay_text(const nlohmann::ordered_json& r, uint64_t limit);

// timeline: SVG, or HTML wrapping the SVG with a legend and a summary.
Result<uint64_t> timeline(const std::string& dir, const Filter& f, const std::string& out_path, bool html);

}  // namespace gpugate::ledger
