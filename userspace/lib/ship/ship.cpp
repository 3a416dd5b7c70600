// `gpugate log ship`: the state file and the shipping loop. See ship.hpp;
// the destinations are in dest_dir.cpp and dest_http.cpp.
#include "gpugate/ship.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include <fmt/format.h>

#include "gpugate/log_prune.hpp"
#include "gpugate/log_reader.hpp"
#include "gpugate/log_verify.hpp"
#include "gpugate/unique_fd.hpp"
#include "http.hpp"

namespace gpugate::ship {

namespace fs = std::filesystem;
using merkle::Hash;

namespace {

std::string b64(const Hash& h) { return merkle::to_base64(h); }

Result<void> write_all(int fd, std::string_view data, const std::string& what) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return make_error(fmt::format("{}: cannot write: {}", what, std::strerror(errno)), errno);
    data.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

}  // namespace

// Shared with dest_dir.cpp: write, fsync, rename, fsync the directory, so a
// reader sees the old file or the whole new one, also after a power loss.
Result<void> write_file_atomic(const std::string& path, std::string_view data, mode_t mode) {
  std::string tmp = path + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd) return make_error(fmt::format("{}: cannot create: {}", tmp, std::strerror(errno)), errno);
  if (auto w = write_all(fd.get(), data, tmp); !w) return w;
  if (::fsync(fd.get()) != 0) return make_error(fmt::format("{}: fsync: {}", tmp, std::strerror(errno)), errno);
  fd.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    return make_error(fmt::format("{}: cannot rename to {}: {}", tmp, path, std::strerror(errno)), errno);
  std::string dir = fs::path(path).parent_path().string();
  UniqueFd dfd(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd) ::fsync(dfd.get());
  return {};
}

std::string default_state_path(const std::string& spec) {
  merkle::Hasher h;
  Hash d = h.sha256(spec);
  return fmt::format("/var/lib/gpugate/ship-{}.state", merkle::to_hex(std::span(d.data(), 8)));
}

// ---- state -------------------------------------------------------------------

nlohmann::ordered_json State::json() const {
  nlohmann::ordered_json j;
  j["version"] = 1;
  j["destination"] = destination;
  j["host_id"] = host_id;
  j["next_seq"] = next_seq;
  j["last_seq"] = next_seq ? nlohmann::ordered_json(next_seq - 1) : nlohmann::ordered_json(nullptr);
  j["last_leaf"] = b64(last_leaf);
  auto& r = j["range"] = nlohmann::ordered_json::array();
  for (const auto& h : range) r.push_back(b64(h));
  if (checkpoint_size) {
    j["checkpoint"] = {{"size", checkpoint_size}, {"root", b64(checkpoint_root)}, {"note", checkpoint_note}};
  } else {
    j["checkpoint"] = nullptr;
  }
  j["key"] = key;
  if (!witness.empty()) j["witness"] = {{"url", witness}, {"size", witness_size}};
  return j;
}

Result<State> load_state(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return State{};
    return make_error(fmt::format("state file {}: cannot open: {}; run as the user that ships (root), or pass "
                                  "--state",
                                  path, std::strerror(errno)),
                      errno);
  }
  std::string text{std::istreambuf_iterator<char>(in), {}};
  auto bad = [&](const std::string& why) {
    return make_error(
        fmt::format("state file {}: {}; it is written by gpugate log ship only: restore it, or move "
                    "it aside to ship from seq 0 again (the collector skips records it has)",
                    path, why));
  };
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return bad("not JSON");
  if (j.value("version", 0) != 1) return bad("unknown version");
  State s;
  try {
    s.destination = j.at("destination").get<std::string>();
    s.host_id = j.at("host_id").get<std::string>();
    s.next_seq = j.at("next_seq").get<uint64_t>();
    s.key = j.value("key", "");
    auto leaf = merkle::hash_from_base64(j.at("last_leaf").get<std::string>());
    if (!leaf) return bad("last_leaf is not a hash");
    s.last_leaf = *leaf;
    for (const auto& h : j.at("range")) {
      auto v = merkle::hash_from_base64(h.get<std::string>());
      if (!v) return bad("range holds something that is not a hash");
      s.range.push_back(*v);
    }
    if (s.range.size() != static_cast<size_t>(std::popcount(s.next_seq))) return bad("range does not fit next_seq");
    const auto& cp = j.at("checkpoint");
    if (!cp.is_null()) {
      s.checkpoint_size = cp.at("size").get<uint64_t>();
      auto root = merkle::hash_from_base64(cp.at("root").get<std::string>());
      if (!root) return bad("checkpoint root is not a hash");
      s.checkpoint_root = *root;
      s.checkpoint_note = cp.at("note").get<std::string>();
    }
    if (j.contains("witness") && !j["witness"].is_null()) {
      const auto& w = j.at("witness");
      s.witness = w.at("url").get<std::string>();
      s.witness_size = w.at("size").get<uint64_t>();
      if (s.witness_size > s.checkpoint_size) return bad("the witnessed size is past the shipped checkpoint");
    }
  } catch (const nlohmann::json::exception& e) {
    return bad(std::string("missing or mistyped member: ") + e.what());
  }
  return s;
}

Result<void> save_state(const std::string& path, const State& s) {
  auto r = write_file_atomic(path, s.json().dump() + "\n", 0640);
  if (!r)
    return make_error(r.error().message + "; pass a writable --state FILE (the default is under /var/lib/gpugate)",
                      r.error().code);
  return {};
}

nlohmann::ordered_json ShipSummary::json() const {
  nlohmann::ordered_json j;
  j["ok"] = exit_code == kShipOk;
  j["destination"] = destination;
  j["state"] = state_path;
  j["host_id"] = host_id;
  j["records"] = records;
  j["checkpoints"] = checkpoints;
  j["batches"] = batches;
  j["retries"] = retries;
  j["next_seq"] = next_seq;
  j["checkpoint_size"] = checkpoint_size;
  if (witness_size || !cosigned_path.empty()) {
    j["witness_size"] = witness_size;
    j["cosigned"] = cosigned_path;
  }
  j["exit"] = exit_code;
  if (!error.empty()) j["error"] = error;
  return j;
}

Result<uint64_t> shipped_before(const std::vector<std::string>& state_paths, const std::string& host_id,
                                uint64_t ledger_next_seq) {
  if (state_paths.empty()) return make_error("no gpugate log ship state file is given (--ledger-shipped FILE)");
  uint64_t least = UINT64_MAX;
  for (const auto& path : state_paths) {
    auto st = load_state(path);
    if (!st) return st.error();
    if (st->next_seq && st->host_id != host_id)
      return make_error(
          fmt::format("state file {}: ships host {}, not this host ({}); pass the state file of a "
                      "gpugate log ship of this ledger",
                      path, st->host_id, host_id));
    if (st->next_seq > ledger_next_seq)
      return make_error(
          fmt::format("state file {}: says {} records were shipped, but the ledger has {}: it belongs "
                      "to another ledger; pass the state file of a gpugate log ship of this one",
                      path, st->next_seq, ledger_next_seq));
    least = std::min(least, st->next_seq);
  }
  return least;
}

// ---- the shipping loop ---------------------------------------------------------

namespace {

// Error.code of a mismatch between the ledger and what was shipped (exit 1);
// not an errno. Other errors of reading the ledger are usage errors (exit 2).
constexpr int kMismatchCode = -1;
Error mismatch(std::string msg) { return make_error(std::move(msg), kMismatchCode); }

void default_sleep(std::chrono::milliseconds d) { std::this_thread::sleep_for(d); }

// Where the next unshipped line starts.
struct Cursor {
  uint32_t segment = 0;  // segment number (0: before the first)
  uint64_t offset = 0;
};

struct Pending {
  std::vector<std::string> lines;
  std::vector<Hash> leaves;
  std::vector<std::pair<size_t, tlog::SignedCheckpoint>> checkpoints;  // index in lines, the note
  Cursor end;
  uint64_t bytes = 0;
};

class Shipper {
 public:
  Shipper(Destination& dest, const ShipOptions& opt) : dest_(dest), opt_(opt) {}

  Result<ShipSummary> run();

 private:
  Result<void> resume();
  Result<void> check_shipped(const merkle::CompactRange& now);
  // Reads the next batch after cursor_; errors made by mismatch() are exit 1, others exit 2.
  Result<Pending> next_batch();
  Result<void> send(const Pending& b);
  // --witness: the shipped checkpoint is newer than what the witness cosigned.
  [[nodiscard]] bool witness_pending() const {
    return !opt_.witness.empty() && st_.checkpoint_size > 0 &&
           (st_.witness != opt_.witness || st_.witness_size < st_.checkpoint_size);
  }
  // Submits the last shipped checkpoint to the witness; on 200 stores the
  // cosigned note and saves the state. Errors: EAGAIN transient, kMismatchCode
  // the witness holds another history, others a refusal.
  Result<void> witness();
  Result<void> witness_refused(const WitnessReply& r, uint64_t old_size);
  void stopped(int code, std::string msg) {
    sum_.exit_code = code;
    sum_.error = std::move(msg);
  }
  [[nodiscard]] bool should_stop() const { return opt_.stop && opt_.stop(); }
  void sleep(std::chrono::milliseconds d) const { opt_.sleep ? opt_.sleep(d) : default_sleep(d); }

  Destination& dest_;
  const ShipOptions& opt_;
  State st_;
  merkle::Hasher h_;
  merkle::CompactRange range_;
  Cursor cursor_;
  std::vector<tlog::VerifierKey> keys_;
  ShipSummary sum_;
};

// The host id from seq 0 ("host_id") or a checkpoint's origin ("gpugate/<id>").
std::string ledger_host_id(std::string_view line) {
  auto j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return {};
  if (j.contains("host_id") && j["host_id"].is_string()) return j["host_id"].get<std::string>();
  return {};
}

bool safe_component(const std::string& s) {
  if (s.empty() || s == "." || s == ".." || s.size() > 128) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  });
}

// The seq range [lo, hi) that subtree i of a compact range of size n covers.
std::pair<uint64_t, uint64_t> subtree_span(uint64_t n, size_t i) {
  uint64_t lo = 0;
  size_t k = 0;
  for (int bit = 63; bit >= 0; bit--) {
    uint64_t w = uint64_t{1} << bit;
    if (!(n & w)) continue;
    if (k++ == i) return {lo, lo + w};
    lo += w;
  }
  return {lo, lo};
}

Result<void> Shipper::check_shipped(const merkle::CompactRange& now) {
  if (now.hashes() == st_.range) return {};
  size_t i = 0;
  while (i < now.hashes().size() && i < st_.range.size() && now.hashes()[i] == st_.range[i]) i++;
  auto [lo, hi] = subtree_span(st_.next_seq, i);
  return mismatch(fmt::format(
      "ledger {}: records {}..{} no longer hash to what was shipped to {} (a record within seq {}..{} was "
      "changed, removed or inserted on this host after it was shipped); the collector's copy is the evidence: "
      "check this ledger with gpugate log verify {} --checkpoint <the collector's latest checkpoint>. Shipping "
      "stops here; state file {} is unchanged",
      opt_.ledger_dir, 0, st_.next_seq - 1, dest_.name(), lo, hi - 1, opt_.ledger_dir, opt_.state_path));
}

// Rehashes the shipped prefix: it must hash to the last shipped checkpoint's
// root and to the shipped compact range. Leaves the cursor after it.
Result<void> Shipper::resume() {
  auto segs = ledger::list_segments(opt_.ledger_dir);
  if (!segs) return segs.error();
  uint64_t n = 0;
  size_t first = 0;
  std::string first_record;
  std::optional<Error> bad;
  auto anchor = ledger::read_prune_anchor(opt_.ledger_dir);
  if (!anchor) return anchor.error();
  if (*anchor) {
    // A pruned ledger: rehash from the anchor's range. What was shipped must
    // include everything pruned, or those records are on neither side.
    const auto& a = **anchor;
    if (st_.next_seq < a.first_seq)
      return mismatch(fmt::format(
          "ledger {}: records {}..{} were pruned (gpugate log prune, {}) before they were shipped to {} (state "
          "file {} has shipped {} records): they are gone from this host and the collector never had them. Ship "
          "before pruning (gpugated --ledger-max-gib prunes only what a --ledger-shipped state file says was "
          "shipped); to ship what is left, move the state file aside and ship into a new collector directory",
          opt_.ledger_dir, st_.next_seq, a.first_seq - 1, ledger::kPruneAnchorFile, dest_.name(), opt_.state_path,
          st_.next_seq));
    auto stored = ledger::anchor_stored_range(a);
    if (!stored) return mismatch(fmt::format("ledger {}: {}", opt_.ledger_dir, stored.error().message));
    range_ = std::move(*stored);
    Hash leaf = h_.leaf(a.anchor_line);
    range_.append(h_, leaf);
    n = a.first_seq;
    first_record = a.anchor_line;
    while (first < segs->size() && (*segs)[first].number < a.first_segment) first++;
    if (first == segs->size())
      return make_error(fmt::format(
          "ledger {}: {} names first segment {}, which is not there; run gpugate log "
          "verify {}",
          opt_.ledger_dir, ledger::kPruneAnchorFile, ledger::segment_name(a.first_segment), opt_.ledger_dir));
    if (n == st_.checkpoint_size && range_.root(h_) != st_.checkpoint_root)
      bad =
          mismatch(fmt::format("ledger {}: the anchor in {} does not hash to the root of checkpoint {} shipped to "
                               "{}: it was changed on this host; shipping stops here; state file {} is unchanged",
                               opt_.ledger_dir, ledger::kPruneAnchorFile, n, dest_.name(), opt_.state_path));
    else if (n == st_.next_seq && leaf != st_.last_leaf)
      bad =
          mismatch(fmt::format("ledger {}: record {} (the last one shipped to {}, kept as the anchor in {}) was "
                               "changed on this host after it was shipped; shipping stops here; state file {} is "
                               "unchanged",
                               opt_.ledger_dir, n - 1, dest_.name(), ledger::kPruneAnchorFile, opt_.state_path));
    if (bad) return *bad;
  }
  cursor_ = {(*segs)[first].number, 0};
  auto walked = ledger::for_each_entry(*segs, first, 0, [&](const ledger::Line& l, ledger::LineKind k) {
    if (k != ledger::LineKind::leaf) return true;
    if (first_record.empty()) first_record = std::string(l.text);
    if (n >= st_.next_seq) return false;
    Hash leaf = h_.leaf(l.text);
    range_.append(h_, leaf);
    n++;
    if (n == st_.checkpoint_size && range_.root(h_) != st_.checkpoint_root)
      bad = mismatch(fmt::format(
          "ledger {}: records 0..{} no longer hash to the root of checkpoint {} shipped to {} (root {}): a "
          "record it signs was changed, removed or inserted on this host; the collector's copy is the evidence: "
          "gpugate log verify {} --checkpoint <collector>/checkpoints/{}.checkpoint names the first changed "
          "line. Shipping stops here; state file {} is unchanged",
          opt_.ledger_dir, n - 1, n, dest_.name(), b64(st_.checkpoint_root), opt_.ledger_dir, n, opt_.state_path));
    if (n == st_.next_seq) {
      if (leaf != st_.last_leaf && !bad)
        bad = mismatch(fmt::format(
            "ledger {}: record {} (the last one shipped to {}) was changed on this host after it was shipped; "
            "the collector's copy is the evidence. Shipping stops here; state file {} is unchanged",
            opt_.ledger_dir, n - 1, dest_.name(), opt_.state_path));
      cursor_ = {l.segment->number, l.offset + l.text.size() + 1};
    }
    return !bad;
  });
  if (!walked) return walked.error();
  if (bad) return *bad;
  if (n < st_.next_seq)
    return mismatch(fmt::format(
        "ledger {}: holds {} records, but {} were shipped to {} (state file {}): records were removed on this "
        "host, or this is another ledger; the collector's copy is the evidence (gpugate log verify {} "
        "--checkpoint <collector>/checkpoints/{}.checkpoint). Shipping stops here",
        opt_.ledger_dir, n, st_.next_seq, dest_.name(), opt_.state_path, opt_.ledger_dir, st_.checkpoint_size));
  if (st_.next_seq) {
    if (auto c = check_shipped(range_); !c) return c;
  }
  if (st_.host_id.empty()) {
    st_.host_id = opt_.host_id.empty() ? ledger_host_id(first_record) : opt_.host_id;
    if (st_.host_id.empty())
      return make_error(
          fmt::format("ledger {}: no record names its host (host_id) yet; pass --host-id ID", opt_.ledger_dir));
  } else if (!opt_.host_id.empty() && opt_.host_id != st_.host_id) {
    return make_error(
        fmt::format("--host-id {}: state file {} ships host {}; pass the same host id, or another "
                    "--state",
                    opt_.host_id, opt_.state_path, st_.host_id));
  }
  if (!safe_component(st_.host_id))
    return make_error(
        fmt::format("host id '{}' is not a safe directory name (letters, digits, '.', '_', '-'); pass "
                    "--host-id ID",
                    st_.host_id));
  return {};
}

Result<Pending> Shipper::next_batch() {
  Pending b;
  b.end = cursor_;
  auto segs = ledger::list_segments(opt_.ledger_dir);
  if (!segs) return segs.error();
  size_t first = 0;
  while (first < segs->size() && (*segs)[first].number < cursor_.segment) first++;
  if (first == segs->size() || (*segs)[first].number != cursor_.segment) {
    // Pruned once every record in it was shipped (gpugated's budget, while
    // --follow waits at its end): go on at the first segment kept.
    auto anchor = ledger::read_prune_anchor(opt_.ledger_dir);
    if (!anchor) return anchor.error();
    if (*anchor && (*anchor)->first_segment > cursor_.segment && (*anchor)->first_seq == st_.next_seq) {
      cursor_ = {(*anchor)->first_segment, 0};
      b.end = cursor_;
      while (first < segs->size() && (*segs)[first].number < cursor_.segment) first++;
    }
  }
  if (first == segs->size() || (*segs)[first].number != cursor_.segment)
    return mismatch(
        fmt::format("ledger {}: segment {} (being shipped) is gone: the ledger was removed or "
                    "rotated away on this host, or pruned (gpugate log prune) before it was shipped",
                    opt_.ledger_dir, ledger::segment_name(cursor_.segment)));
  if ((*segs)[first].size < cursor_.offset)
    return mismatch(
        fmt::format("ledger {}: segment {} shrank to {} bytes, {} were already shipped: it was "
                    "truncated on this host",
                    opt_.ledger_dir, (*segs)[first].name, (*segs)[first].size, cursor_.offset));
  // The range as it grows through this batch, to check each checkpoint's root.
  merkle::CompactRange range = range_;
  uint64_t seq = st_.next_seq;
  Hash last = st_.last_leaf;
  std::optional<Error> bad;
  const std::string last_seg = segs->back().name;
  auto walked = ledger::for_each_entry(*segs, first, cursor_.offset, [&](const ledger::Line& l, ledger::LineKind k) {
    if (l.segment->number != b.end.segment) b.end = {l.segment->number, 0};
    if (k == ledger::LineKind::torn_tail) return l.segment->name != last_seg;  // live: the rest is on its way
    if (k != ledger::LineKind::leaf) {
      b.end.offset = l.offset + l.text.size() + 1;
      return true;
    }
    ledger::Prefix p;
    bool parsed = ledger::parse_prefix(l.text, p);
    // The very end of a live ledger may be a torn line the writer has just
    // terminated but not yet named: ship it only once it is a whole record.
    bool at_end = l.segment->name == last_seg && l.offset + l.text.size() + 1 >= l.segment->size;
    if (at_end && nlohmann::json::parse(l.text, nullptr, false).is_discarded()) return false;
    if (!parsed || p.seq != seq) {
      bad = mismatch(fmt::format("ledger {}: {}:{} is not record {} (the next to ship); run gpugate log verify {}",
                                 opt_.ledger_dir, l.segment->name, l.lineno, seq, opt_.ledger_dir));
      return false;
    }
    if (!p.prev.empty() && seq > 0 && p.prev != ledger::prev_text(last)) {
      bad =
          mismatch(fmt::format("ledger {}: {}:{} (seq {}) does not follow the record shipped before it (its prev "
                               "is {}, that record hashes to {}): a shipped record was changed on this host",
                               opt_.ledger_dir, l.segment->name, l.lineno, seq, p.prev, ledger::prev_text(last)));
      return false;
    }
    if (p.type == "checkpoint") {
      auto j = nlohmann::json::parse(l.text, nullptr, false);
      auto note = j.is_object() && j.contains("note") && j["note"].is_string() ? j["note"].get<std::string>() : "";
      auto cp = tlog::parse_signed_checkpoint(note, fmt::format("{}:{}", l.segment->name, l.lineno));
      if (!cp) {
        bad = mismatch(cp.error().message);
        return false;
      }
      if (cp->body.size != seq || cp->body.root != range.root(h_)) {
        bad =
            mismatch(fmt::format("ledger {}: checkpoint at {}:{} (seq {}) signs {} records with root {}, but the "
                                 "records hash to {}: run gpugate log verify {}",
                                 opt_.ledger_dir, l.segment->name, l.lineno, seq, cp->body.size, b64(cp->body.root),
                                 b64(range.root(h_)), opt_.ledger_dir));
        return false;
      }
      if (keys_.empty()) {
        auto k0 = j.contains("key") && j["key"].is_string() ? tlog::parse_verifier_key(j["key"].get<std::string>())
                                                            : Result<tlog::VerifierKey>(make_error("no key member"));
        if (!k0) {
          bad = mismatch(fmt::format("ledger {}: checkpoint at {}:{}: {}", opt_.ledger_dir, l.segment->name, l.lineno,
                                     k0.error().message));
          return false;
        }
        keys_.push_back(*k0);
      }
      if (auto v = tlog::verify_note(cp->parsed, keys_); !v) {
        bad = mismatch(
            fmt::format("ledger {}: checkpoint at {}:{} (seq {}): {}; the checkpoints shipped before "
                        "were signed by {}",
                        opt_.ledger_dir, l.segment->name, l.lineno, seq, v.error().message, keys_.front().text()));
        return false;
      }
      b.checkpoints.emplace_back(b.lines.size(), std::move(*cp));
    }
    last = h_.leaf(l.text);
    range.append(h_, last);
    b.leaves.push_back(last);
    b.lines.emplace_back(l.text);
    b.bytes += l.text.size() + 1;
    b.end.offset = l.offset + l.text.size() + 1;
    seq++;
    // A batch ends after a checkpoint record, so its note ships with the
    // records it signs.
    return b.lines.size() < opt_.batch_records && p.type != "checkpoint";
  });
  if (!walked) return walked.error();
  if (bad) return *bad;
  return b;
}

Result<void> Shipper::send(const Pending& b) {
  auto r = dest_.send_records(st_.next_seq, b.lines);
  if (!r) return r;
  for (const auto& [idx, cp] : b.checkpoints) {
    auto c = dest_.send_checkpoint(cp.body.size, cp.note);
    if (!c) return c;
  }
  return {};
}

Result<ShipSummary> Shipper::run() {
  auto s = load_state(opt_.state_path);
  if (!s) return s.error();
  st_ = std::move(*s);
  sum_.destination = dest_.name();
  sum_.state_path = opt_.state_path;
  if (st_.destination.empty()) {
    st_.destination = dest_.name();
  } else if (st_.destination != dest_.name()) {
    return make_error(
        fmt::format("state file {} belongs to destination {}, not {}: pass --state for this one (each "
                    "destination keeps its own)",
                    opt_.state_path, st_.destination, dest_.name()));
  }
  keys_ = opt_.keys;
  if (keys_.empty() && !st_.key.empty()) {
    auto k = tlog::parse_verifier_key(st_.key);
    if (!k) return make_error(fmt::format("state file {}: key: {}", opt_.state_path, k.error().message));
    keys_.push_back(*k);
  }
  if (auto r = resume(); !r) {
    if (r.error().code != kMismatchCode) return r.error();
    sum_.host_id = st_.host_id;
    sum_.next_seq = st_.next_seq;
    stopped(kShipMismatch, r.error().message);
    return sum_;
  }
  sum_.host_id = st_.host_id;
  sum_.next_seq = st_.next_seq;
  sum_.checkpoint_size = st_.checkpoint_size;
  if (!opt_.witness.empty() && st_.witness == opt_.witness) sum_.witness_size = st_.witness_size;

  bool begun = false;
  auto backoff = opt_.interval;
  bool witness_deferred = false;  // --follow: the witness failed; retry once caught up
  auto witness_backoff = opt_.interval;
  std::string witness_error;  // without --follow: the witness was down; said at the end
  while (true) {
    // --witness: submit the shipped checkpoint. With --follow, a witness that
    // is down does not hold up the records: it is tried again once they are
    // all shipped, after a backoff of its own.
    if (witness_pending() && !witness_deferred) {
      Result<void> w = begun ? Result<void>() : dest_.begin(st_.host_id);
      if (w) {
        begun = true;
        w = witness();
      }
      if (!w) {
        begun = false;
        bool transient = w.error().code == EAGAIN;
        std::string msg = fmt::format(
            "{}; checkpoint {} is shipped, but not cosigned (state file {} keeps witnessed size {}): run again to "
            "submit it",
            w.error().message, st_.checkpoint_size, opt_.state_path,
            st_.witness == opt_.witness ? st_.witness_size : 0);
        if (!transient) {
          stopped(w.error().code == kMismatchCode ? kShipMismatch : kShipDestination, msg);
          return sum_;
        }
        witness_deferred = true;
        if (!opt_.follow) {
          witness_error = msg;  // ship the records first, then exit 3
        } else {
          sum_.retries++;
          if (opt_.on_retry)
            opt_.on_retry(fmt::format("{}: retrying in {} ms", w.error().message, witness_backoff.count()));
        }
      } else {
        witness_backoff = opt_.interval;
      }
    }
    auto b = next_batch();
    if (!b) {
      stopped(b.error().code == kMismatchCode ? kShipMismatch : kShipUsage, b.error().message);
      return sum_;
    }
    if (b->lines.empty()) {
      cursor_ = b->end;  // past lines that are not records (a recovered torn line)
      if (!witness_error.empty()) stopped(kShipDestination, witness_error);
      if (!opt_.follow || should_stop()) return sum_;
      if (witness_deferred) {
        sleep(witness_backoff);
        witness_backoff = std::min(witness_backoff * 2, opt_.max_backoff);
        witness_deferred = false;
      } else {
        sleep(opt_.interval);
      }
      if (should_stop()) return sum_;
      continue;
    }
    Result<void> sent = begun ? Result<void>() : dest_.begin(st_.host_id);
    if (sent) {
      begun = true;
      sent = send(*b);
    }
    if (!sent) {
      begun = false;  // begin() again: the destination re-reads where it is
      bool transient = sent.error().code == EAGAIN;
      if (!opt_.follow || !transient) {
        stopped(kShipDestination, fmt::format("{}; state file {} is unchanged: run again to resume at seq {}",
                                              sent.error().message, opt_.state_path, st_.next_seq));
        return sum_;
      }
      sum_.retries++;
      if (opt_.on_retry) opt_.on_retry(fmt::format("{}: retrying in {} ms", sent.error().message, backoff.count()));
      sleep(backoff);
      backoff = std::min(backoff * 2, opt_.max_backoff);
      if (should_stop()) return sum_;
      continue;
    }
    backoff = opt_.interval;
    // Acknowledged: only now does the state move.
    State next = st_;
    merkle::CompactRange range = range_;
    for (const auto& leaf : b->leaves) range.append(h_, leaf);
    next.next_seq += b->lines.size();
    next.range = range.hashes();
    next.last_leaf = b->leaves.back();
    if (!b->checkpoints.empty()) {
      const auto& cp = b->checkpoints.back().second;
      next.checkpoint_size = cp.body.size;
      next.checkpoint_root = cp.body.root;
      next.checkpoint_note = cp.note;
    }
    if (!keys_.empty()) next.key = keys_.front().text();
    if (next.witness != opt_.witness && !opt_.witness.empty()) {
      next.witness = opt_.witness;  // another witness: it says where it stands (409)
      next.witness_size = 0;
    }
    if (auto w = save_state(opt_.state_path, next); !w) {
      stopped(kShipUsage, w.error().message);
      return sum_;
    }
    st_ = std::move(next);
    range_ = std::move(range);
    cursor_ = b->end;
    BatchReport rep{st_.next_seq - b->lines.size(), b->lines.size(), b->bytes, {}};
    for (const auto& c : b->checkpoints) rep.checkpoints.push_back(c.second.body.size);
    sum_.records += rep.count;
    sum_.checkpoints += rep.checkpoints.size();
    sum_.batches++;
    sum_.next_seq = st_.next_seq;
    sum_.checkpoint_size = st_.checkpoint_size;
    if (opt_.on_batch) opt_.on_batch(rep);
    if (opt_.follow && should_stop()) return sum_;
  }
}

// The witness's size for this log in a 409 answer (Content-Type text/x.tlog.size).
std::optional<uint64_t> conflict_size(const WitnessReply& r) {
  if (!r.content_type.starts_with("text/x.tlog.size")) return std::nullopt;
  std::string_view t = r.body;
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) t.remove_suffix(1);
  if (t.empty() || (t.size() > 1 && t[0] == '0')) return std::nullopt;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (ec != std::errc() || p != t.data() + t.size()) return std::nullopt;
  return v;
}

Result<void> Shipper::witness_refused(const WitnessReply& r, uint64_t old_size) {
  std::string url = opt_.witness + "/add-checkpoint";
  std::string origin = st_.checkpoint_note.substr(0, st_.checkpoint_note.find('\n'));
  std::string head = fmt::format("witness {} answered {} to checkpoint {} (old size {}): {}", url, r.status,
                                 st_.checkpoint_size, old_size, first_line(r.body));
  switch (r.status) {
    case 404:
      return make_error(fmt::format(
          "{}; the witness does not know the log '{}' (the checkpoint's origin line): configure the witness with "
          "this log's verifier key, {} (gpugate log checkpoint prints the checkpoint with that origin; the key is "
          "log-key.pub in gpugated's --state-dir)",
          head, origin, st_.key.empty() ? std::string("from log-key.pub") : st_.key));
    case 403:
      return make_error(
          fmt::format("{}; the witness has another key for the log '{}' than the one that signs its checkpoints ({}): "
                      "configure the witness with the key in log-key.pub",
                      head, origin, st_.key.empty() ? std::string("see log-key.pub") : st_.key));
    case 422:
      return make_error(fmt::format("{}; the witness rejected the consistency proof from size {} to {}: it holds a "
                                    "checkpoint of this log that this ledger does not extend (a fork, or records "
                                    "changed after it was witnessed): keep the ledger and the witness's checkpoint "
                                    "as evidence",
                                    head, old_size, st_.checkpoint_size),
                        kMismatchCode);
    case 400: return make_error(head + "; the witness found the request malformed: check the URL (URL/add-checkpoint)");
    default: break;
  }
  if (r.status == 408 || r.status == 429 || r.status >= 500) return make_error(head + "; it is retried", EAGAIN);
  return make_error(head + "; check the --witness URL (a C2SP tlog-witness; POST URL/add-checkpoint)");
}

Result<void> Shipper::witness() {
  const uint64_t size = st_.checkpoint_size;
  uint64_t old_size = st_.witness == opt_.witness ? st_.witness_size : 0;
  std::string url = opt_.witness;
  while (url.size() > 1 && url.back() == '/') url.pop_back();
  url += "/add-checkpoint";
  for (int attempt = 0;; attempt++) {
    std::vector<Hash> proof;
    if (old_size > 0 && old_size < size) {
      auto p = ledger::consistency_proof(opt_.ledger_dir, old_size, size);
      if (!p)
        return make_error(
            fmt::format("witness {}: cannot prove size {} to {}: {}", url, old_size, size, p.error().message));
      proof = std::move(*p);
    }
    auto r = witness_add_checkpoint(url, witness_request(old_size, proof, st_.checkpoint_note));
    if (!r) return r.error();
    if (r->status == 409) {
      auto have = conflict_size(*r);
      if (!have)
        return make_error(
            fmt::format("witness {} answered 409 to checkpoint {} (old size {}) without its size "
                        "(Content-Type text/x.tlog.size): {}",
                        url, size, old_size, first_line(r->body)));
      if (*have > size)
        return make_error(
            fmt::format("witness {} has cosigned size {} of this log, more than this ledger's checkpoint {}: the "
                        "ledger lost records, or the log was forked or rolled back; keep the ledger and the "
                        "witness's checkpoint as evidence",
                        url, *have, size),
            kMismatchCode);
      if (attempt > 0 || *have == old_size)
        return make_error(
            fmt::format("witness {} answered 409 again (its size {}, ours {} to {}): {}; run again to retry", url,
                        *have, old_size, size, first_line(r->body)),
            EAGAIN);
      old_size = *have;  // where it stands: prove from there, once
      continue;
    }
    if (r->status != 200) return witness_refused(*r, old_size);
    // 200: signed-note signature lines ("— name base64"), the witness's cosignature(s).
    std::string lines = r->body;
    if (!lines.empty() && lines.back() != '\n') lines += '\n';
    std::string cosigned = st_.checkpoint_note + lines;
    auto parsed = tlog::parse_note(cosigned);
    auto log_note = tlog::parse_note(st_.checkpoint_note);
    if (lines.empty() || !parsed || !log_note || parsed->sigs.size() <= log_note->sigs.size())
      return make_error(fmt::format(
          "witness {} answered 200 to checkpoint {} without cosignature lines ('— name base64'): {}; check the "
          "--witness URL",
          url, size, parsed ? first_line(r->body) : parsed.error().message));
    auto stored = dest_.store_cosigned(size, cosigned);
    if (!stored) return stored.error();
    std::string path = *stored;
    if (path.empty()) {
      path = opt_.state_path + ".cosigned";
      if (auto w = write_file_atomic(path, cosigned, 0640); !w)
        return make_error(w.error().message + "; pass a writable --state FILE (the cosigned note goes beside it)");
    }
    State next = st_;
    next.witness = opt_.witness;
    next.witness_size = size;
    if (auto w = save_state(opt_.state_path, next); !w) return w.error();
    st_ = std::move(next);
    sum_.witness_size = size;
    sum_.cosigned_path = path;
    return {};
  }
}

}  // namespace

Result<ShipSummary> ship(Destination& dest, const ShipOptions& opt) {
  if (opt.batch_records == 0) return make_error("--batch 0: ship at least one record per batch");
  Shipper s(dest, opt);
  return s.run();
}

Result<std::unique_ptr<Destination>> open_destination(const std::string& spec) {
  if (spec.starts_with("dir:") && spec.size() > 4) return dir_destination(spec.substr(4));
  if (spec.starts_with("http://") || spec.starts_with("https://")) return http_destination(spec);
  return make_error(
      fmt::format("--to {}: not a destination; use dir:PATH (a collector directory) or "
                  "http(s)://HOST/PREFIX (a collector that takes POST PREFIX/records and "
                  "PREFIX/checkpoint)",
                  spec));
}

}  // namespace gpugate::ship
