// Ledger verification and proofs. See log_verify.hpp and docs/ledger.md.
#include "gpugate/log_verify.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "gpugate/hostinfo.hpp"
#include "gpugate/ledger.hpp"
#include "gpugate/log_prune.hpp"

namespace gpugate::ledger {

namespace {

namespace fs = std::filesystem;
using merkle::Hash;

std::string b64(const Hash& h) { return merkle::to_base64(h); }

// "seq 4" or "seq 4..9".
std::string seqs(uint64_t first, uint64_t last) {
  return first == last ? fmt::format("seq {}", first) : fmt::format("seq {}..{}", first, last);
}

std::string count(uint64_t n, std::string_view what) { return fmt::format("{} {}{}", n, what, n == 1 ? "" : "s"); }

std::string where(const Place& p) {
  std::string s = fmt::format("{}:{}", p.segment, p.line);
  if (p.seq) s += fmt::format(" (seq {})", *p.seq);
  return s;
}

// A value taken from a record, for a message: JSON-quoted (no control
// characters reach the terminal) and cut short.
std::string shown(std::string_view v) {
  std::string q = nlohmann::json(std::string(v)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (q.size() > 100) q = q.substr(0, 96) + "...\"";
  return q;
}

// The members LedgerWriter::append_checkpoint_record (ledger.cpp) writes, in
// its order. A checkpoint record holds exactly these: the last one is signed
// by nothing yet, so a member added to it would otherwise pass unseen.
constexpr std::array<std::string_view, 15> kCheckpointMembers{
    "seq",    "prev",    "type",      "time", "realtime_ns", "boottime_ns", "boot_id", "host_id",
    "reason", "segment", "tree_size", "root", "range",       "key",         "note"};
// The "torn" object of a ledger.recovered record (LedgerWriter::open).
constexpr std::array<std::string_view, 4> kTornMembers{"segment", "offset", "bytes", "sha256"};

// Parses a record and lists its top-level member names as written: the
// parsed object keeps only the last of a duplicated member.
nlohmann::json parse_record(std::string_view text, std::vector<std::string>& keys) {
  keys.clear();
  return nlohmann::json::parse(
      text,
      [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
        if (depth == 1 && ev == nlohmann::json::parse_event_t::key && parsed.is_string())
          keys.push_back(parsed.get<std::string>());
        return true;
      },
      false);
}

// Empty when keys are exactly the members of want, each once; else what is wrong.
template <size_t N>
std::string member_problem(const std::vector<std::string>& keys, const std::array<std::string_view, N>& want) {
  std::set<std::string_view> seen;
  for (const auto& k : keys) {
    if (std::find(want.begin(), want.end(), k) == want.end())
      return fmt::format("a member the writer never writes: {}", shown(k));
    if (!seen.insert(k).second) return fmt::format("the member {} twice", shown(k));
  }
  for (auto w : want)
    if (!seen.contains(w)) return fmt::format("no \"{}\" member", w);
  return {};
}

template <size_t N>
std::string member_list(const std::array<std::string_view, N>& want) {
  return fmt::format("{}", fmt::join(want, ", "));
}

class Verifier {
 public:
  Verifier(const VerifyOptions& opt, VerifyReport& r) : opt_(opt), r_(r) {
    trusted_ = opt.keys;
    if (!trusted_.empty()) {
      r_.key_source = opt.key_source.empty() ? "--key" : opt.key_source;
      r_.key = trusted_.front().text();
    }
    for (size_t i = 0; i < opt.external.size(); i++) ext_sizes_.emplace(opt.external[i].cp.body.size, i);
  }

  [[nodiscard]] bool failed() const { return failed_; }

  void segment_begin(const Segment& seg, bool is_last) {
    if (failed_) return;
    r_.segments++;
    r_.bytes += seg.size;
    is_last_ = is_last;
    last_kind_checkpoint_ = false;
    leaves_in_segment_ = 0;
    have_torn_ = false;
    if (seg.number != expected_segment_) {
      Place p{seg.name, 0, 0, std::nullopt};
      if (expected_segment_ == 1)
        fail(p, fmt::format("the ledger starts at {}, not {}: segment(s) {}..{} are missing (deleted)", seg.name,
                            segment_name(1), segment_name(1), segment_name(seg.number - 1)));
      else
        fail(p, fmt::format("segment {} is missing: {} follows {} (deleted, or renamed)",
                            segment_name(expected_segment_), seg.name, segment_name(expected_segment_ - 1)));
      return;
    }
    expected_segment_++;
  }

  void segment_end(const Segment& seg) {
    if (failed_) return;
    if (!is_last_ && !last_kind_checkpoint_)
      r_.warnings.push_back(fmt::format(
          "{} was not closed by a checkpoint (segments are sealed with one when they rotate; a crash at rotation "
          "leaves this)",
          seg.name));
  }

  bool entry(const Line& l, LineKind kind) {
    if (failed_) return false;
    Place here{l.segment->name, l.lineno, l.offset, std::nullopt};
    if (kind == LineKind::torn_tail) {
      if (is_last_) {
        r_.warnings.push_back(fmt::format(
            "{} ends in a torn line ({} bytes at offset {}): a crash during a write; gpugated keeps it and records "
            "it at its next start",
            where(here), l.text.size(), l.offset));
        return true;
      }
      fail(here, fmt::format("a line without its newline ({} bytes) ends this segment, and no ledger.recovered "
                             "record names it: the segment was cut or damaged",
                             l.text.size()));
      return false;
    }
    if (kind == LineKind::recovered_torn) {
      pending_torn_ = std::string(l.text);
      pending_torn_place_ = here;
      have_torn_ = true;
      return true;
    }
    Prefix p;
    if (!parse_prefix(l.text, p)) {
      fail(here, fmt::format("not a gpugate record ({} bytes; expected {{\"seq\":N,...}}): bytes changed at the start "
                             "of the line, or a line inserted",
                             l.text.size()));
      return false;
    }
    here.seq = p.seq;
    uint64_t n = range_.size();
    if (p.seq != n) {
      if (p.seq > n)
        fail(here, leaves_in_segment_ == 0 && n > 0
                       ? fmt::format("seq {} follows seq {} across segments: records {}..{} are missing (deleted, or "
                                     "a segment's end cut off)",
                                     p.seq, n - 1, n, p.seq - 1)
                       : fmt::format("seq {} where {} was expected: records {}..{} are missing (deleted), or "
                                     "records were reordered",
                                     p.seq, n, n, p.seq - 1));
      else
        fail(here, fmt::format("seq {} where {} was expected: a record was inserted, duplicated or moved here "
                               "(reordered)",
                               p.seq, n));
      return false;
    }
    if (p.prev.empty()) {
      fail(here, "the record has no \"prev\" field: gpugated writes one in every record (a line made by hand?)");
      return false;
    }
    std::string want = prev_text(last_leaf_);
    if (p.prev != want) {
      fail(n == 0 ? here : last_place_,
           n == 0 ? std::string("the first record's prev is not zero: records before it were removed")
                  : fmt::format("the record's bytes were changed: its hash no longer matches the prev of the next "
                                "record ({}; or that prev field was changed)",
                                where(here)));
      return false;
    }
    if (p.type == "checkpoint" && !check_checkpoint(l, here)) return false;
    if (p.type == "ledger.recovered" && !check_recovery(l, here)) return false;
    // A torn line is named by the record right after it, or by none.
    have_torn_ = false;
    pending_torn_.clear();
    Hash leaf = h_.leaf(l.text);
    range_.append(h_, leaf);
    last_leaf_ = leaf;
    last_place_ = here;
    leaves_in_segment_++;
    last_kind_checkpoint_ = p.type == "checkpoint";
    note_ext_roots();
    if (p.type == "ledger.pruned") note_prune_record(l.text, p.seq);
    return true;
  }

  // A pruned ledger: the tree goes on from the anchor, the checkpoint record
  // that closed the last removed segment, checked as if it were read in
  // place. Its stored range is the tree before it, and check_checkpoint ties
  // that range to the root the log key signed.
  bool seed(const PruneAnchor& a) {
    Segment anchor_seg;
    anchor_seg.name = a.anchor_segment;
    anchor_seg.number = a.first_segment - 1;
    Line l;
    l.segment = &anchor_seg;
    l.text = a.anchor_line;
    Place here{std::string(kPruneAnchorFile) + " (the anchor: the last record of the pruned " + a.anchor_segment + ")",
               0, 0, a.first_seq - 1};
    Prefix p;
    if (!parse_prefix(l.text, p) || p.type != "checkpoint" || p.seq + 1 != a.first_seq) {
      fail(here, fmt::format("the anchor is not a checkpoint record at seq {} (the one before first_seq): {} was "
                             "changed",
                             a.first_seq - 1, kPruneAnchorFile));
      return false;
    }
    auto range = anchor_stored_range(a);
    if (!range) {
      fail(here, fmt::format("the anchor's range does not fit its tree_size (it must sign the {} records before it): "
                             "{} was changed",
                             p.seq, kPruneAnchorFile));
      return false;
    }
    range_ = std::move(*range);
    if (!check_checkpoint(l, here)) return false;
    note_ext_roots();
    Hash leaf = h_.leaf(l.text);
    range_.append(h_, leaf);
    last_leaf_ = leaf;
    last_place_ = here;
    note_ext_roots();
    anchor_leaf_ = merkle::to_hex(leaf);
    expected_segment_ = a.first_segment;
    PrunedPart part;
    part.first_seq = a.first_seq;
    part.first_segment = segment_name(a.first_segment);
    part.anchor_segment = a.anchor_segment;
    for (const auto& s : a.pruned) part.segments.push_back(s.name);
    r_.pruned = std::move(part);
    return true;
  }

  // Leaves hashed so far (the report's count is set by finish()).
  [[nodiscard]] uint64_t leaves() const { return range_.size(); }

  void finish() {
    r_.records = range_.size();
    r_.root = range_.root(h_);
    if (failed_) return;
    // Checkpoints kept elsewhere (and DIR/checkpoint): signed by a trusted key,
    // and the ledger holds exactly the tree they signed.
    for (size_t i = 0; i < opt_.external.size(); i++) {
      const auto& e = opt_.external[i];
      if (trusted_.empty()) {
        fail({},
             fmt::format("checkpoint {}: no key to check it with (the ledger has no checkpoint); pass --key", e.name));
        r_.exit_code = kVerifyUnsigned;
        return;
      }
      auto v = tlog::verify_note(e.cp.parsed, trusted_);
      if (!v) {
        fail({}, fmt::format("checkpoint {}: {}{}", e.name, v.error().message,
                             opt_.keys.empty() ? " (the key was taken from the ledger's first checkpoint: if the "
                                                 "ledger was re-signed, pass the host's real key with --key)"
                                               : ""));
        return;
      }
      uint64_t size = e.cp.body.size;
      if (r_.pruned && size + 1 < r_.pruned->first_seq) {
        r_.notes.push_back(fmt::format(
            "checkpoint {} (size {}) signs records that were pruned: it cannot be checked against records that are "
            "gone (its signature is good; the anchor, signed by the same key, is the checkpoint at size {})",
            e.name, size, r_.pruned->first_seq - 1));
        continue;
      }
      if (size > range_.size()) {
        fail({}, fmt::format("the ledger ends at seq {} ({} records), but checkpoint {} signed {} records: the last "
                             "{} were cut off (or the segments after the last one deleted)",
                             range_.size() ? range_.size() - 1 : 0, range_.size(), e.name, size, size - range_.size()));
        return;
      }
      Hash got = size == 0 ? merkle::empty_root() : ext_roots_[i];
      if (got != e.cp.body.root) {
        fail({}, fmt::format("checkpoint {} (size {}) does not match the ledger: the records before seq {} are not the "
                             "ones it signed (changed, deleted, inserted or reordered, then re-anchored)",
                             e.name, size, size));
        return;
      }
      r_.external_ok.push_back(fmt::format("{}: size {}, root {}: signed, and the ledger contains exactly it", e.name,
                                           size, b64(e.cp.body.root)));
      covered_ = std::max(covered_, size);
    }
    if (r_.pruned && !r_.pruned->recorded_at) {
      fail({}, fmt::format("seq 0..{} ({}..{}) are gone and {} stands for them, but no ledger.pruned record names "
                           "this cut: the segments were removed by hand, not by gpugate log prune (which records "
                           "every prune)",
                           r_.pruned->first_seq - 1, r_.pruned->segments.empty() ? "?" : r_.pruned->segments.front(),
                           r_.pruned->segments.empty() ? "?" : r_.pruned->segments.back(), kPruneAnchorFile));
      return;
    }
    pending_torn_.clear();
    if (r_.last_checkpoint_size) covered_ = std::max(covered_, *r_.last_checkpoint_size);
    // Every record no signature covers, the last checkpoint record included
    // (a checkpoint at seq N signs 0..N-1): intact, but not yet anchored.
    uint64_t n = range_.size();
    if (n > covered_) {
      UnsignedTail t;
      t.first_seq = covered_;
      t.last_seq = n - 1;
      t.records = n - covered_;
      if (last_cp_ && last_cp_->seq >= covered_) t.checkpoint = last_cp_;
      r_.unsigned_tail = t;
      // More than the checkpoint record gpugated leaves when it stops: it is
      // running, or crashed before its shutdown checkpoint.
      if (t.records > (t.checkpoint ? 1u : 0u))
        r_.warnings.push_back(fmt::format(
            "{} are not signed yet ({}{}): gpugated is still running, or stopped without its shutdown checkpoint (a "
            "crash); the next checkpoint (or stopping gpugated) signs them",
            count(t.records, "record"), seqs(t.first_seq, t.last_seq),
            t.checkpoint ? fmt::format(": the last checkpoint record and {} after it", count(t.records - 1, "record"))
                         : std::string(" after the last checkpoint")));
    }
    if (r_.checkpoints == 0) {
      r_.problem = "no checkpoint in the ledger: the records hash consistently, but nothing signs them";
      r_.exit_code = kVerifyUnsigned;
    }
  }

 private:
  // The root at this size, for the checkpoints given from elsewhere.
  void note_ext_roots() {
    auto [lo, hi] = ext_sizes_.equal_range(range_.size());
    if (lo == hi) return;
    Hash root = range_.root(h_);
    for (auto it = lo; it != hi; ++it) ext_roots_[it->second] = root;
  }

  // A ledger.pruned record names a cut by its first kept seq and the leaf
  // hash of its anchor: the one that names this ledger's cut says the
  // segments went by gpugate log prune, not by hand.
  void note_prune_record(std::string_view text, uint64_t seq) {
    if (!r_.pruned || r_.pruned->recorded_at) return;
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (!j.is_object()) return;
    auto first = j.find("first_seq");
    auto leaf = j.find("anchor_leaf");
    if (first != j.end() && first->is_number_unsigned() && first->get<uint64_t>() == r_.pruned->first_seq &&
        leaf != j.end() && leaf->is_string() && leaf->get<std::string>() == anchor_leaf_)
      r_.pruned->recorded_at = seq;
  }

  void fail(const Place& p, std::string what) {
    if (failed_) return;
    failed_ = true;
    if (!p.segment.empty()) r_.bad_place = p;
    r_.problem = std::move(what);
    r_.exit_code = kVerifyTampered;
  }

  // A ledger.recovered record names the torn line right before it (the
  // writer terminates it and appends the record at its next start): that
  // line must be there, at that segment and offset, with that length and
  // SHA-256. Deleting it leaves seq and prev intact, so only this finds it.
  bool check_recovery(const Line& l, const Place& here) {
    auto j = nlohmann::json::parse(l.text, nullptr, false);
    const nlohmann::json* t = nullptr;
    if (j.is_object())
      if (auto it = j.find("torn"); it != j.end() && it->is_object()) t = &*it;
    bool shape = t != nullptr && t->size() == kTornMembers.size();
    for (auto k : kTornMembers)
      if (shape && !t->contains(k)) shape = false;
    if (shape)
      shape = (*t)["segment"].is_string() && (*t)["offset"].is_number_unsigned() &&
              (*t)["bytes"].is_number_unsigned() && (*t)["sha256"].is_string();
    if (!shape) {
      fail(here, fmt::format("the ledger.recovered record has no valid \"torn\" member (gpugated writes {{{}}} naming "
                             "the torn line): changed",
                             member_list(kTornMembers)));
      return false;
    }
    auto seg = (*t)["segment"].get<std::string>();
    auto offset = (*t)["offset"].get<uint64_t>();
    auto bytes = (*t)["bytes"].get<uint64_t>();
    if (!have_torn_ && opt_.collected) {
      // A collector holds leaves only; the torn line stayed on the host.
      r_.notes.push_back(
          fmt::format("{}: the ledger.recovered record names a torn line at {} offset {} ({} bytes) "
                      "on the host; a collector's copy holds records only, so it is not checked here",
                      where(here), shown(seg), offset, bytes));
      return true;
    }
    if (!have_torn_) {
      fail(here, fmt::format("the ledger.recovered record names a torn line at {} offset {} ({} bytes), but there "
                             "is no such line right before it: the torn line was deleted or moved (or the record was "
                             "changed)",
                             shown(seg), offset, bytes));
      return false;
    }
    // The reader matched segment and offset (LineKind::recovered_torn).
    std::string sha = merkle::to_hex(h_.sha256(pending_torn_));
    if (bytes != pending_torn_.size() || (*t)["sha256"].get<std::string>() != sha) {
      fail(pending_torn_place_, fmt::format("a torn line that {} names was changed since (its length or SHA-256 "
                                            "differs)",
                                            where(here)));
      return false;
    }
    r_.notes.push_back(
        fmt::format("{}: a torn line ({} bytes) from a crash, kept and named by the ledger.recovered "
                    "record at {}",
                    where(pending_torn_place_), pending_torn_.size(), where(here)));
    return true;
  }

  // A checkpoint record's own members against its note. This is all that
  // guards the last checkpoint record, which no signature covers yet.
  bool check_checkpoint(const Line& l, const Place& here) {
    uint64_t n = range_.size();
    std::vector<std::string> keys;
    auto j = parse_record(l.text, keys);
    if (j.is_discarded() || !j.is_object()) {
      fail(here, "a checkpoint record that is not valid JSON: changed");
      return false;
    }
    if (auto m = member_problem(keys, kCheckpointMembers); !m.empty()) {
      fail(here, fmt::format("the checkpoint record has {}: changed after it was written (gpugated writes exactly {})",
                             m, member_list(kCheckpointMembers)));
      return false;
    }
    // Every member is present (just checked): their types, as written.
    std::string_view wrong;
    for (const char* k : {"time", "boot_id", "host_id", "reason", "segment", "root", "key", "note"})
      if (wrong.empty() && !j[k].is_string()) wrong = k;
    if (wrong.empty() && !j["realtime_ns"].is_number_integer()) wrong = "realtime_ns";
    if (wrong.empty() && !j["boottime_ns"].is_number_unsigned()) wrong = "boottime_ns";
    if (wrong.empty() && !j["tree_size"].is_number_unsigned()) wrong = "tree_size";
    if (wrong.empty() && !j["range"].is_array()) wrong = "range";
    if (!wrong.empty()) {
      fail(here, fmt::format("the checkpoint record's \"{}\" is not of the type gpugated writes: changed", wrong));
      return false;
    }
    auto str = [&](const char* k) { return j[k].get<std::string>(); };
    if (str("reason").empty()) {
      fail(here, "the checkpoint record's reason is empty: changed");
      return false;
    }
    auto note_text = str("note");
    auto cp = tlog::parse_signed_checkpoint(note_text, fmt::format("record {}", where(here)));
    if (!cp) {
      fail(here, cp.error().message + ": the checkpoint record was damaged or changed");
      return false;
    }
    uint64_t field_size = j["tree_size"].get<uint64_t>();
    if (field_size != cp->body.size || str("root") != b64(cp->body.root)) {
      fail(here, "the checkpoint record's tree_size/root and its signed note disagree: changed");
      return false;
    }
    // The key: --key, or the first checkpoint's (trust on first use).
    if (trusted_.empty()) {
      auto k = tlog::parse_verifier_key(str("key"));
      if (!k) {
        fail(here, "the first checkpoint names no usable key (" + k.error().message + "); pass --key");
        return false;
      }
      trusted_.push_back(*k);
      r_.key = k->text();
      r_.key_source = fmt::format(
          "the ledger's first checkpoint ({}); pass --key with the host's log-key.pub kept elsewhere to rule out a "
          "re-signed ledger",
          where(here));
    }
    auto v = tlog::verify_note(cp->parsed, trusted_);
    if (!v) {
      fail(here, "checkpoint: " + v.error().message);
      return false;
    }
    // The unsigned members, tied to the signed note wherever they can be.
    if (str("key") != (*v)->text()) {
      fail(here, fmt::format("the checkpoint record names the key {}, but its note is signed by {}: changed",
                             shown(str("key")), (*v)->text()));
      return false;
    }
    if (cp->body.origin != ledger_origin(str("host_id"))) {
      fail(here, fmt::format("the checkpoint record's host_id {} does not match the origin its note signs ({}): "
                             "changed",
                             shown(str("host_id")), shown(cp->body.origin)));
      return false;
    }
    if (opt_.collected) {
      // One file holds every segment: the names only have to go forwards.
      std::string named = str("segment");
      if (named < last_named_segment_) {
        fail(here, fmt::format("the checkpoint record says it is in segment {}, after one in {}: changed or moved",
                               shown(named), last_named_segment_));
        return false;
      }
      last_named_segment_ = std::move(named);
    } else if (str("segment") != l.segment->name) {
      fail(here, fmt::format("the checkpoint record says it is in segment {}, but it is in {}: changed or moved",
                             shown(str("segment")), l.segment->name));
      return false;
    }
    if (str("time") != format_utc(j["realtime_ns"].get<int64_t>())) {
      fail(here, fmt::format("the checkpoint record's time {} is not its realtime_ns ({}): changed", shown(str("time")),
                             j["realtime_ns"].dump()));
      return false;
    }
    // The stored compact range must be the tree the note signs: it resumes
    // the writer and narrows a mismatch below, so it is not taken on trust.
    auto parsed = checkpoint_range_hashes(j["range"]);
    if (!parsed) {
      fail(here, "the checkpoint record's range is not a list of base64 SHA-256 hashes: changed");
      return false;
    }
    const std::vector<Hash>& stored = *parsed;
    auto stored_range = merkle::CompactRange::from(field_size, stored);
    if (!stored_range) {
      fail(here, fmt::format("the checkpoint record's range does not fit its tree_size ({}): changed",
                             stored_range.error().message));
      return false;
    }
    if (stored_range->root(h_) != cp->body.root) {
      fail(here, "the checkpoint record's range does not hash to the root its note signs: changed");
      return false;
    }
    if (cp->body.size != n) {
      fail(here, fmt::format("the checkpoint signs {} records but {} come before it: records were inserted or deleted "
                             "before it",
                             cp->body.size, n));
      return false;
    }
    Hash root = range_.root(h_);
    if (root != cp->body.root) {
      // Narrow it down with the stored compact range: the first subtree that differs.
      std::string within;
      uint64_t lo = 0;
      for (size_t i = 0; i < range_.hashes().size() && i < stored.size(); i++) {
        int bit = 63;
        uint64_t rest = n - lo;
        while (!((rest >> bit) & 1)) bit--;
        uint64_t hi = lo + (uint64_t{1} << bit);
        if (stored[i] != range_.hashes()[i]) {
          within = fmt::format(" (the difference is within seq {}..{})", lo, hi - 1);
          break;
        }
        lo = hi;
      }
      fail(here, fmt::format("the records before this checkpoint do not hash to the root it signed{}: a record was "
                             "changed, inserted, deleted or reordered after it was anchored",
                             within));
      return false;
    }
    r_.checkpoints++;
    r_.last_checkpoint_size = n;
    r_.last_checkpoint_root = root;
    last_cp_ = UnsignedTail::CheckpointRecord{n, here, str("reason"), str("boot_id")};
    return true;
  }

  const VerifyOptions& opt_;
  VerifyReport& r_;
  std::vector<tlog::VerifierKey> trusted_;
  merkle::Hasher h_;
  merkle::CompactRange range_;
  Hash last_leaf_{};
  Place last_place_;
  uint32_t expected_segment_ = 1;
  std::string last_named_segment_;  // collected: the segment the last checkpoint record named
  bool is_last_ = false;
  bool last_kind_checkpoint_ = false;
  uint64_t leaves_in_segment_ = 0;
  bool failed_ = false;
  std::string pending_torn_;
  Place pending_torn_place_;
  bool have_torn_ = false;  // pending_torn_ is the line right before this one
  uint64_t covered_ = 0;    // records signed by a checked checkpoint
  std::optional<UnsignedTail::CheckpointRecord> last_cp_;
  std::multimap<uint64_t, size_t> ext_sizes_;
  std::map<size_t, Hash> ext_roots_;
  std::string anchor_leaf_;  // hex leaf hash of a pruned ledger's anchor
};

}  // namespace

nlohmann::ordered_json VerifyReport::json() const {
  nlohmann::ordered_json j;
  j["ledger"] = dir;
  j["result"] = exit_code == kVerifyOk         ? "ok"
                : exit_code == kVerifyTampered ? "tampered"
                : exit_code == kVerifyUnsigned ? "unsigned"
                                               : "error";
  j["exit_code"] = exit_code;
  j["segments"] = segments;
  j["records"] = records;
  j["bytes"] = bytes;
  j["root"] = merkle::to_base64(root);
  j["checkpoints"] = checkpoints;
  if (last_checkpoint_size) {
    j["last_checkpoint"] = {{"size", *last_checkpoint_size}, {"root", merkle::to_base64(last_checkpoint_root)}};
  } else {
    j["last_checkpoint"] = nullptr;
  }
  // The records no signature covers yet (the last checkpoint record among them).
  if (unsigned_tail) {
    const auto& t = *unsigned_tail;
    j["unsigned_tail"] = {{"first_seq", t.first_seq}, {"last_seq", t.last_seq}, {"records", t.records}};
    if (t.checkpoint)
      j["unsigned_tail"]["checkpoint_record"] = {
          {"seq", t.checkpoint->seq},         {"segment", t.checkpoint->place.segment},
          {"line", t.checkpoint->place.line}, {"offset", t.checkpoint->place.offset},
          {"reason", t.checkpoint->reason},   {"boot_id", t.checkpoint->boot_id}};
    else
      j["unsigned_tail"]["checkpoint_record"] = nullptr;
  } else {
    j["unsigned_tail"] = nullptr;
  }
  if (pruned) {
    j["pruned"] = {
        {"first_seq", pruned->first_seq},
        {"first_segment", pruned->first_segment},
        {"segments", pruned->segments},
        {"anchor_segment", pruned->anchor_segment},
        {"recorded_at", pruned->recorded_at ? nlohmann::ordered_json(*pruned->recorded_at) : nlohmann::ordered_json()},
        {"left_over", pruned->left_over}};
  } else {
    j["pruned"] = nullptr;
  }
  j["key"] = key.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(key);
  j["key_source"] = key_source;
  if (bad_place) {
    j["bad_place"] = {{"segment", bad_place->segment}, {"line", bad_place->line}, {"offset", bad_place->offset}};
    j["bad_place"]["seq"] = bad_place->seq ? nlohmann::ordered_json(*bad_place->seq) : nlohmann::ordered_json();
  } else {
    j["bad_place"] = nullptr;
  }
  j["problem"] = problem.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(problem);
  j["external_checkpoints"] = external_ok;
  j["warnings"] = warnings;
  j["notes"] = notes;
  return j;
}

std::string VerifyReport::text() const {
  std::string s;
  s += fmt::format("ledger       {} ({} segments, {} records, {} bytes)\n", dir, segments, records, bytes);
  if (!key.empty()) s += fmt::format("key          {}\n             from {}\n", key, key_source);
  if (last_checkpoint_size)
    s += fmt::format(
        "checkpoints  {} checked: signatures good, roots match the records; latest signs {} records, "
        "root {}\n",
        checkpoints, *last_checkpoint_size, merkle::to_base64(last_checkpoint_root));
  if (pruned) {
    s += fmt::format(
        "pruned       seq 0..{} ({}, {}{}) were removed{}\n", pruned->first_seq - 1, count(pruned->first_seq, "record"),
        count(pruned->segments.size(), "segment"),
        pruned->segments.empty() ? std::string()
                                 : fmt::format(": {}..{}", pruned->segments.front(), pruned->segments.back()),
        pruned->recorded_at ? fmt::format(" by gpugate log prune (ledger.pruned at seq {})", *pruned->recorded_at)
                            : std::string());
    s += fmt::format(
        "             the records kept are proven from the checkpoint record that closed {} (kept in {}): its range "
        "hashes to the root the log key signed, and the tree goes on from it\n",
        pruned->anchor_segment, kPruneAnchorFile);
    for (const auto& l : pruned->left_over)
      s += fmt::format("             {} is before the cut, left by a prune that stopped: not read\n", l);
  }
  for (const auto& e : external_ok) s += fmt::format("anchored     {}\n", e);
  if (unsigned_tail) {
    const auto& t = *unsigned_tail;
    s += fmt::format("unsigned     {} ({}): no checkpoint signs {} yet\n", seqs(t.first_seq, t.last_seq),
                     count(t.records, "record"), t.records == 1 ? "it" : "them");
    if (t.checkpoint)
      s += fmt::format(
          "             seq {}, the last checkpoint record ({}, reason {}, boot_id {}), is not signed until the next "
          "checkpoint: its members match its signed note, but its reason, boot_id and times cannot be authenticated "
          "yet\n",
          t.checkpoint->seq, where(t.checkpoint->place), shown(t.checkpoint->reason), shown(t.checkpoint->boot_id));
  }
  for (const auto& n : notes) s += fmt::format("note         {}\n", n);
  for (const auto& w : warnings) s += fmt::format("warning      {}\n", w);
  if (exit_code == kVerifyOk) {
    s += pruned ? fmt::format(
                      "result       OK: no record kept (seq {}..) was changed, removed, inserted or reordered "
                      "since it was anchored; seq 0..{} were pruned",
                      pruned->first_seq, pruned->first_seq - 1)
                : "result       OK: no record was changed, removed, inserted or reordered since it was anchored";
    if (unsigned_tail)
      s += fmt::format("; {} not signed yet (see unsigned)", seqs(unsigned_tail->first_seq, unsigned_tail->last_seq));
    s += "\n";
  } else if (exit_code == kVerifyUnsigned) {
    s += fmt::format("result       UNSIGNED: {}\n", problem);
  } else {
    s += fmt::format("result       FAILED at {}\n             {}\n",
                     bad_place ? where(*bad_place) : std::string("the ledger as a whole"), problem);
  }
  return s;
}

namespace {

// A collector's copy: DIR/records.jsonl as one segment, and the newest of
// DIR/checkpoints/<size>.checkpoint checked beside --checkpoint.
Result<std::vector<Segment>> collected_copy(const std::string& dir, VerifyOptions& opt) {
  std::string path = (fs::path(dir) / "records.jsonl").string();
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return std::vector<Segment>{};
  if (!S_ISREG(st.st_mode))
    return make_error(
        fmt::format("ledger {}: records.jsonl is not a regular file (a link, a FIFO or a device); "
                    "a collector writes a plain file: pass the collector's host directory itself",
                    dir));
  Segment s;
  s.number = 1;
  s.name = "records.jsonl";
  s.path = path;
  s.size = static_cast<uint64_t>(st.st_size);
  opt.collected = true;
  std::error_code ec;
  uint64_t newest = 0;
  std::string newest_path;
  for (fs::directory_iterator it(fs::path(dir) / "checkpoints", ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    uint64_t size = 0;
    if (!name.ends_with(".checkpoint") || std::sscanf(name.c_str(), "%" SCNu64, &size) != 1) continue;
    if (size > newest) {
      newest = size;
      newest_path = it->path().string();
    }
  }
  if (!newest_path.empty()) {
    auto text = read_regular_file(newest_path, 1 << 20, "checkpoint",
                                  "the collector stores signed notes there: move the file aside");
    if (!text) return text.error();
    auto cp = tlog::parse_signed_checkpoint(*text, newest_path);
    if (!cp) return make_error(cp.error().message + "; the collector stored it: restore it from the host's ledger");
    opt.external.push_back({newest_path, std::move(*cp)});
  }
  return std::vector<Segment>{std::move(s)};
}

}  // namespace

Result<VerifyReport> verify_ledger(const std::string& dir, const VerifyOptions& opt0) {
  VerifyOptions opt = opt0;
  auto segs = list_segments(dir, true);
  if (!segs) return segs.error();
  if (segs->empty()) {
    segs = collected_copy(dir, opt);
    if (!segs) return segs.error();
    if (segs->empty()) segs = list_segments(dir);  // its error: no segments
    if (!segs) return segs.error();
  }
  std::string local = (fs::path(dir) / "checkpoint").string();
  struct stat lst {};
  if (opt.local_checkpoint && ::lstat(local.c_str(), &lst) == 0) {
    // Read like a segment: a symlink or a FIFO there is refused, never followed or waited on.
    auto m = MappedFile::open(local);
    if (!m) return m.error();
    if (m->view().size() > (1 << 20))
      return make_error(
          fmt::format("checkpoint {}: larger than 1 MiB, not a checkpoint; move it aside (or pass "
                      "--no-local-checkpoint)",
                      local));
    auto cp = tlog::parse_signed_checkpoint(m->view(), local);
    if (!cp)
      return make_error(cp.error().message +
                        "; gpugated writes it beside the segments: move it aside (or pass --no-local-checkpoint)");
    opt.external.push_back({local, std::move(*cp)});
  } else if (opt.local_checkpoint && errno != ENOENT) {
    return make_error(fmt::format("checkpoint {}: cannot stat: {}; run as a user who can read the ledger", local,
                                  std::strerror(errno)),
                      errno);
  }
  auto anchor = read_prune_anchor(dir);
  if (!anchor) return anchor.error();
  VerifyReport r;
  r.dir = dir;
  if (opt.collected)
    r.notes.push_back(
        "a collector's copy (gpugate log ship): records.jsonl holds the host's segments joined, so "
        "checkpoint records are checked to name segments in order rather than this file");
  Verifier v(opt, r);
  uint32_t cut = 0;  // segments before it were pruned
  if (*anchor && segs->front().number != 1) {
    cut = (*anchor)->first_segment;
    v.seed(**anchor);
  } else if (*anchor) {
    r.notes.push_back(
        fmt::format("{} names a cut before {}, but {} is still here: a prune that stopped before it "
                    "removed anything; the whole ledger is verified",
                    kPruneAnchorFile, segment_name((*anchor)->first_segment), segs->front().name));
  }
  Progress p;
  for (const auto& s : *segs) p.total_bytes += s.size;
  uint64_t base = 0, next = kProgressEvery;
  for (size_t i = 0; i < segs->size() && !v.failed(); i++) {
    const auto& seg = (*segs)[i];
    if (seg.number < cut) {
      if (r.pruned) r.pruned->left_over.push_back(seg.name);
      base += seg.size;
      continue;
    }
    auto m = SegmentBytes::open(seg);
    if (!m) return m.error();
    v.segment_begin(seg, i + 1 == segs->size());
    entries_of(seg, m->view(), 0, [&](const Line& l, LineKind k) {
      bool more = v.entry(l, k);
      if (opt.progress && v.leaves() >= next) {
        next = v.leaves() + kProgressEvery;
        p.records = v.leaves();
        p.bytes = base + l.offset + l.text.size() + 1;
        opt.progress(p);
      }
      return more;
    });
    v.segment_end(seg);
    base += seg.size;
  }
  v.finish();
  if (opt.progress) {
    p.records = r.records;
    p.bytes = p.total_bytes;
    p.done = true;
    opt.progress(p);
  }
  return r;
}

VerifyReport verify_memory(const std::vector<MemorySegment>& segs, const VerifyOptions& opt,
                           const PruneAnchor* anchor) {
  VerifyReport r;
  r.dir = "(memory)";
  Verifier v(opt, r);
  if (anchor) v.seed(*anchor);
  for (size_t i = 0; i < segs.size() && !v.failed(); i++) {
    if (anchor && segs[i].segment.number < anchor->first_segment) continue;
    Segment seg = segs[i].segment;
    seg.size = segs[i].data.size();
    v.segment_begin(seg, i + 1 == segs.size());
    entries_of(seg, segs[i].data, 0, [&](const Line& l, LineKind k) { return v.entry(l, k); });
    v.segment_end(seg);
  }
  v.finish();
  return r;
}

// ---- proofs -----------------------------------------------------------------

std::string InclusionProof::text() const {
  std::string s = fmt::format("c2sp.org/tlog-proof@v1\nindex {}\n", index);
  for (const auto& h : path) s += b64(h) + "\n";
  s += "\n";
  s += checkpoint_note;
  return s;
}

Result<LatestCheckpoint> latest_checkpoint(const std::string& dir) {
  auto segs = list_segments(dir);
  if (!segs) return segs.error();
  for (size_t i = segs->size(); i-- > 0;) {
    auto m = SegmentBytes::open((*segs)[i]);
    if (!m) return m.error();
    std::optional<LatestCheckpoint> found;
    split_lines((*segs)[i], m->view(), [&](const Line& l) {
      Prefix p;
      if (l.terminated && parse_prefix(l.text, p) && p.type == "checkpoint") {
        auto j = nlohmann::json::parse(l.text, nullptr, false);
        if (!j.is_discarded() && j.is_object() && j.contains("note") && j["note"].is_string() &&
            j.contains("tree_size") && j["tree_size"].is_number_unsigned())
          found = LatestCheckpoint{j["note"].get<std::string>(), j["tree_size"].get<uint64_t>(), p.seq};
      }
      return true;
    });
    if (found) return *found;
  }
  return make_error(
      fmt::format("ledger {}: no checkpoint record yet; gpugated writes one every --checkpoint-ms, "
                  "every --checkpoint-records and when it stops",
                  dir));
}

namespace {

// Streams leaves [0, size) of the ledger into fn(index, leaf_hash, line).
Result<uint64_t> stream_leaves(const std::string& dir, uint64_t size,
                               const std::function<void(uint64_t, const Hash&, std::string_view)>& fn) {
  auto segs = list_segments(dir);
  if (!segs) return segs.error();
  if (segs->front().number != 1)
    return make_error(
        fmt::format("ledger {}: it starts at {} (the segments before it were pruned): a proof needs "
                    "every record from seq 0; make proofs from a copy taken before the prune (a "
                    "shipped one)",
                    dir, segs->front().name));
  merkle::Hasher h;
  uint64_t n = 0;
  auto r = for_each_entry(*segs, 0, 0, [&](const Line& l, LineKind k) {
    if (k != LineKind::leaf) return true;
    if (n >= size) return false;
    fn(n, h.leaf(l.text), l.text);
    n++;
    return true;
  });
  if (!r) return r.error();
  return n;
}

}  // namespace

Result<InclusionProof> make_inclusion_proof(const std::string& dir, uint64_t seq,
                                            const std::optional<tlog::SignedCheckpoint>& against) {
  std::string note;
  uint64_t size = 0;
  if (against) {
    note = against->note;
    size = against->body.size;
  } else {
    auto latest = latest_checkpoint(dir);
    if (!latest) return latest.error();
    note = latest->note;
    size = latest->size;
  }
  if (seq >= size)
    return make_error(
        fmt::format("record {} is not covered by the checkpoint (it signs records 0..{}); wait for the "
                    "next checkpoint, or stop gpugated, which writes one",
                    seq, size ? size - 1 : 0));
  InclusionProof p;
  p.index = seq;
  p.checkpoint_note = note;
  auto spans = merkle::inclusion_spans(seq, size);
  merkle::SpanRoots roots(spans);
  merkle::Hasher h;
  auto n = stream_leaves(dir, size, [&](uint64_t i, const Hash& leaf, std::string_view line) {
    roots.add(h, i, leaf);
    if (i == seq) p.record = std::string(line);
  });
  if (!n) return n.error();
  if (*n < size || !roots.complete())
    return make_error(
        fmt::format("ledger {}: only {} records, the checkpoint signs {}: run gpugate log verify", dir, *n, size));
  p.path = roots.roots(h);
  return p;
}

Result<std::vector<Hash>> consistency_proof(const std::string& dir, uint64_t size1, uint64_t size2) {
  merkle::SpanRoots roots(merkle::consistency_spans(size1, size2));
  merkle::Hasher h;
  auto n = stream_leaves(dir, size2, [&](uint64_t i, const Hash& leaf, std::string_view) { roots.add(h, i, leaf); });
  if (!n) return n.error();
  if (*n < size2 || !roots.complete())
    return make_error(fmt::format("ledger {}: only {} records, {} needed: run gpugate log verify", dir, *n, size2));
  return roots.roots(h);
}

Result<ParsedProof> parse_proof(std::string_view text, const std::string& name) {
  auto bad = [&](const std::string& why) {
    return make_error(fmt::format("proof {}: {}; pass a file written by 'gpugate log proof', unchanged", name, why));
  };
  auto next_line = [&](std::string_view& rest, std::string_view& line) {
    auto nl = rest.find('\n');
    if (nl == std::string_view::npos) return false;
    line = rest.substr(0, nl);
    rest.remove_prefix(nl + 1);
    return true;
  };
  std::string_view rest = text, line;
  if (!next_line(rest, line) || line != "c2sp.org/tlog-proof@v1")
    return bad("the first line is not c2sp.org/tlog-proof@v1");
  if (!next_line(rest, line)) return bad("no index line");
  if (line.starts_with("extra ") && !next_line(rest, line)) return bad("no index line");
  if (!line.starts_with("index ")) return bad("no index line");
  ParsedProof p;
  auto digits = line.substr(6);
  auto r = std::from_chars(digits.data(), digits.data() + digits.size(), p.index);
  if (r.ec != std::errc() || r.ptr != digits.data() + digits.size()) return bad("the index is not a number");
  while (true) {
    if (!next_line(rest, line)) return bad("no blank line before the checkpoint");
    if (line.empty()) break;
    auto hsh = merkle::hash_from_base64(line);
    if (!hsh) return bad("a proof line is not a base64 hash");
    p.path.push_back(*hsh);
    if (p.path.size() > 64) return bad("more than 64 hashes");
  }
  auto cp = tlog::parse_signed_checkpoint(rest, name);
  if (!cp) return cp.error();
  p.checkpoint = std::move(*cp);
  return p;
}

ProofCheck check_proof(const ParsedProof& proof, std::string_view record, std::span<const tlog::VerifierKey> keys) {
  if (record.ends_with('\n')) record.remove_suffix(1);
  merkle::Hasher h;
  Prefix pre;
  if (parse_prefix(record, pre) && pre.seq != proof.index)
    return {kVerifyTampered, fmt::format("the record is seq {}, the proof is for index {}", pre.seq, proof.index)};
  auto v = merkle::verify_inclusion(h, proof.index, proof.checkpoint.body.size, h.leaf(record), proof.path,
                                    proof.checkpoint.body.root);
  if (!v)
    return {kVerifyTampered,
            fmt::format("the record is not included at index {} in the checkpoint of size {}: {} (the record or the "
                        "proof was changed)",
                        proof.index, proof.checkpoint.body.size, v.error().message)};
  if (keys.empty())
    return {kVerifyUnsigned, fmt::format("the record is included at index {} in a tree of size {} with root {}, but "
                                         "the checkpoint's signature was not checked: pass --key",
                                         proof.index, proof.checkpoint.body.size, b64(proof.checkpoint.body.root))};
  auto s = tlog::verify_note(proof.checkpoint.parsed, keys);
  if (!s) return {kVerifyTampered, "checkpoint: " + s.error().message};
  return {kVerifyOk, fmt::format("OK: record {} is in the log {} of size {} (root {}), signed by {}", proof.index,
                                 proof.checkpoint.body.origin, proof.checkpoint.body.size,
                                 b64(proof.checkpoint.body.root), (*s)->text())};
}

}  // namespace gpugate::ledger
