// Pruning a ledger's oldest sealed segments. See log_prune.hpp.
#include "gpugate/log_prune.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "gpugate/hostinfo.hpp"
#include "gpugate/unique_fd.hpp"

namespace gpugate::ledger {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

constexpr size_t kMaxAnchorBytes = 64ull << 20;

// The first and last record of a segment, when the last is a checkpoint record.
struct Ends {
  uint64_t first_seq = 0;
  uint64_t last_seq = 0;
  int64_t last_realtime_ns = 0;
  std::string last_time;
  std::string last_line;
  bool closed_by_checkpoint = false;
};

Result<Ends> ends_of(const Segment& seg) {
  auto bytes = SegmentBytes::open(seg);
  if (!bytes) return bytes.error();
  Ends e;
  bool first = true;
  std::string_view last;
  entries_of(seg, bytes->view(), 0, [&](const Line& l, LineKind k) {
    if (k != LineKind::leaf) return true;
    Prefix p;
    if (first && parse_prefix(l.text, p)) {
      e.first_seq = p.seq;
      first = false;
    }
    last = l.text;
    return true;
  });
  Prefix p;
  if (last.empty() || !parse_prefix(last, p) || p.type != "checkpoint") return e;
  auto j = nlohmann::json::parse(last, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("realtime_ns") || !j["realtime_ns"].is_number_integer() ||
      !j.contains("time") || !j["time"].is_string())
    return e;
  e.last_seq = p.seq;
  e.last_realtime_ns = j["realtime_ns"].get<int64_t>();
  e.last_time = j["time"].get<std::string>();
  e.last_line = std::string(last);
  e.closed_by_checkpoint = true;
  return e;
}

std::string cut_text(const PruneCut& cut) {
  if (cut.before_seq) return fmt::format("seq {}", *cut.before_seq);
  if (cut.before_unix_ns) return format_utc(*cut.before_unix_ns, 0);
  return "nothing";
}

}  // namespace

ojson PruneCut::json() const {
  ojson j = ojson::object();
  if (before_seq) j["seq"] = *before_seq;
  if (before_unix_ns) j["time"] = format_utc(*before_unix_ns, 0);
  return j;
}

ojson PrunedSegment::json() const {
  return {{"segment", name}, {"first_seq", first_seq}, {"last_seq", last_seq}, {"last_time", last_time}};
}

ojson PruneAnchor::json() const {
  ojson j;
  j["first_segment"] = segment_name(first_segment);
  j["first_seq"] = first_seq;
  j["anchor"] = {{"segment", anchor_segment}, {"line", anchor_line}};
  j["pruned"] = ojson::array();
  for (const auto& p : pruned) j["pruned"].push_back(p.json());
  return j;
}

ojson PrunePlan::json() const {
  ojson j;
  j["first_segment"] = segment_name(anchor.first_segment);
  j["first_seq"] = anchor.first_seq;
  j["records"] = records;
  j["segments"] = ojson::array();
  for (const auto& p : removed) j["segments"].push_back(p.json());
  return j;
}

std::optional<std::vector<merkle::Hash>> checkpoint_range_hashes(const nlohmann::json& range) {
  if (!range.is_array()) return std::nullopt;
  std::vector<merkle::Hash> out;
  for (const auto& e : range) {
    auto h = e.is_string() ? merkle::hash_from_base64(e.get<std::string>()) : Result<merkle::Hash>(make_error(""));
    if (!h) return std::nullopt;
    out.push_back(*h);
  }
  return out;
}

Result<merkle::CompactRange> anchor_stored_range(const PruneAnchor& a) {
  auto bad = [&](std::string_view why) {
    return make_error(
        fmt::format("{}: the anchor {}: it was changed; gpugate log verify names what", kPruneAnchorFile, why));
  };
  Prefix p;
  if (a.first_seq == 0 || !parse_prefix(a.anchor_line, p) || p.type != "checkpoint" || p.seq + 1 != a.first_seq)
    return bad(fmt::format("is not a checkpoint record at seq {} (the one before first_seq)",
                           a.first_seq ? a.first_seq - 1 : 0));
  auto j = nlohmann::json::parse(a.anchor_line, nullptr, false);
  std::optional<std::vector<merkle::Hash>> stored;
  if (j.is_object() && j.contains("range") && j.contains("tree_size") && j["tree_size"].is_number_unsigned() &&
      j["tree_size"].get<uint64_t>() == p.seq)
    stored = checkpoint_range_hashes(j["range"]);
  auto range = stored ? merkle::CompactRange::from(p.seq, *stored) : Result<merkle::CompactRange>(make_error(""));
  if (!range)
    return bad(fmt::format("range does not fit its tree_size (it must sign the {} records before it)", p.seq));
  return range;
}

Result<PruneAnchor> parse_prune_anchor(std::string_view text, const std::string& path) {
  constexpr std::string_view kFix =
      "gpugate log prune writes it when it removes segments; restore it from a copy (a backup of the ledger "
      "directory), or move it aside and let log verify report the segments it stood for as missing";
  auto j = nlohmann::json::parse(text, nullptr, false);
  auto bad = [&](std::string_view why) { return make_error(fmt::format("prune anchor {}: {}; {}", path, why, kFix)); };
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  PruneAnchor a;
  auto first = j.find("first_segment");
  if (first == j.end() || !first->is_string()) return bad("no \"first_segment\" string");
  std::string name = first->get<std::string>();
  uint32_t number = 0;
  if (name.size() < 12 || !name.ends_with(".jsonl") || std::sscanf(name.c_str(), "%u.jsonl", &number) != 1 ||
      number < 2 || segment_name(number) != name)
    return bad(fmt::format("\"first_segment\" {} is not a segment after 000001.jsonl", nlohmann::json(name).dump()));
  a.first_segment = number;
  auto seq = j.find("first_seq");
  if (seq == j.end() || !seq->is_number_unsigned() || seq->get<uint64_t>() == 0) return bad("no \"first_seq\" above 0");
  a.first_seq = seq->get<uint64_t>();
  auto anchor = j.find("anchor");
  if (anchor == j.end() || !anchor->is_object() || !anchor->contains("segment") || !(*anchor)["segment"].is_string() ||
      !anchor->contains("line") || !(*anchor)["line"].is_string())
    return bad("no \"anchor\" {\"segment\",\"line\"}");
  a.anchor_segment = (*anchor)["segment"].get<std::string>();
  a.anchor_line = (*anchor)["line"].get<std::string>();
  auto pruned = j.find("pruned");
  if (pruned == j.end() || !pruned->is_array()) return bad("no \"pruned\" list");
  for (const auto& p : *pruned) {
    if (!p.is_object() || !p.contains("segment") || !p["segment"].is_string() || !p.contains("first_seq") ||
        !p["first_seq"].is_number_unsigned() || !p.contains("last_seq") || !p["last_seq"].is_number_unsigned() ||
        !p.contains("last_time") || !p["last_time"].is_string())
      return bad("a \"pruned\" entry is not {\"segment\",\"first_seq\",\"last_seq\",\"last_time\"}");
    a.pruned.push_back({p["segment"].get<std::string>(), p["first_seq"].get<uint64_t>(), p["last_seq"].get<uint64_t>(),
                        p["last_time"].get<std::string>()});
  }
  return a;
}

Result<std::optional<PruneAnchor>> read_prune_anchor(const std::string& dir) {
  std::string path = (fs::path(dir) / kPruneAnchorFile).string();
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(path, ec))) return std::optional<PruneAnchor>();
  auto text = read_regular_file(
      path, kMaxAnchorBytes, "prune anchor",
      "gpugate log prune writes it as a plain file; restore it from a copy (a backup of the ledger directory)");
  if (!text) return text.error();
  auto a = parse_prune_anchor(*text, path);
  if (!a) return a.error();
  return std::optional<PruneAnchor>(std::move(*a));
}

Result<PrunePlan> plan_prune(const std::string& dir, const PruneCut& cut, uint32_t keep_from) {
  if (!cut.before_seq && !cut.before_unix_ns)
    return make_error("prune: no cut given; pass --before SEQ or --before TIME");
  auto segs = list_segments(dir);
  if (!segs) return segs.error();
  auto earlier = read_prune_anchor(dir);
  if (!earlier) return earlier.error();
  PrunePlan plan;
  uint32_t expect = 1;
  if (*earlier) {
    plan.anchor = **earlier;
    expect = plan.anchor.first_segment;
  }
  size_t i = 0;
  // What an earlier prune that was cut short left: listed already, removed now.
  for (; i < segs->size() && *earlier && (*segs)[i].number < expect; i++) plan.remove.push_back((*segs)[i]);
  std::string stop;
  for (; i < segs->size(); i++) {
    const auto& seg = (*segs)[i];
    if (seg.number != expect) {
      stop = fmt::format("{} is missing before {}: the ledger is damaged; run gpugate log verify", segment_name(expect),
                         seg.name);
      break;
    }
    if (seg.number >= keep_from) {
      stop = fmt::format("{} is the newest sealed segment or the one being written, and those stay", seg.name);
      break;
    }
    auto ends = ends_of(seg);
    if (!ends) return ends.error();
    if (!ends->closed_by_checkpoint) {
      stop = fmt::format(
          "{} does not end with a checkpoint record, so the tree cannot go on without it: a cut is "
          "made only at a segment's closing checkpoint",
          seg.name);
      break;
    }
    bool before = cut.before_seq ? ends->last_seq < *cut.before_seq : ends->last_realtime_ns < *cut.before_unix_ns;
    if (!before) {
      stop = fmt::format("{} holds seq {}..{} up to {}, not all before the cut", seg.name, ends->first_seq,
                         ends->last_seq, ends->last_time);
      break;
    }
    plan.remove.push_back(seg);
    plan.removed.push_back({seg.name, ends->first_seq, ends->last_seq, ends->last_time});
    plan.records += ends->last_seq + 1 - ends->first_seq;
    plan.anchor.first_segment = seg.number + 1;
    plan.anchor.first_seq = ends->last_seq + 1;
    plan.anchor.anchor_segment = seg.name;
    plan.anchor.anchor_line = ends->last_line;
    expect++;
  }
  if (plan.removed.empty() && plan.remove.empty())
    return make_error(fmt::format("ledger {}: nothing to prune before {}: {}", dir, cut_text(cut),
                                  stop.empty() ? "no sealed segment is old enough" : stop),
                      kNothingToPrune);
  for (const auto& r : plan.removed) plan.anchor.pruned.push_back(r);
  return plan;
}

Result<void> write_prune_anchor(const std::string& dir, const PrunePlan& plan) {
  return replace_file_synced(dir, (fs::path(dir) / kPruneAnchorFile).string(), plan.anchor.json().dump() + "\n",
                             "nothing was pruned");
}

Result<void> remove_pruned(const std::string& dir, const PrunePlan& plan) {
  for (const auto& seg : plan.remove) {
    // Both names: a compression cut short may have left the pair.
    for (const std::string& path :
         {(fs::path(dir) / seg.name).string(), (fs::path(dir) / seg.name).string() + std::string(kCompressedSuffix)}) {
      if (::unlink(path.c_str()) != 0 && errno != ENOENT)
        return make_error(fmt::format("{}: cannot remove: {}; pruned.json names the cut already, so log verify skips "
                                      "what is left before it and the next prune removes it",
                                      path, std::strerror(errno)),
                          errno);
    }
  }
  UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd) ::fsync(dfd.get());
  return {};
}

}  // namespace gpugate::ledger
