// The ledger writer. See ledger.hpp and docs/ledger.md.
#include "gpugate/ledger.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "gpugate/hostinfo.hpp"
#include "gpugate/json_out.hpp"
#include "gpugate/log_reader.hpp"

namespace gpugate {

// Compresses sealed segments off the writer's thread, in the order given;
// finishes its queue before it is destroyed.
class SegmentCompressor {
 public:
  explicit SegmentCompressor(std::string dir) : dir_(std::move(dir)), thread_([this] { run(); }) {}
  SegmentCompressor(const SegmentCompressor&) = delete;
  SegmentCompressor& operator=(const SegmentCompressor&) = delete;
  ~SegmentCompressor() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  void enqueue(uint32_t number) {
    {
      std::lock_guard lock(mu_);
      queue_.push_back(number);
    }
    cv_.notify_one();
  }
  // Returns once every queued segment is done.
  void drain() {
    std::unique_lock lock(mu_);
    idle_.wait(lock, [&] { return queue_.empty() && !busy_; });
  }
  // What failed since the last call: segment number and why.
  std::vector<std::pair<uint32_t, std::string>> take_failures() {
    std::lock_guard lock(mu_);
    return std::exchange(failures_, {});
  }

 private:
  void run() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      uint32_t n = queue_.front();
      queue_.pop_front();
      busy_ = true;
      lock.unlock();
      auto r = ledger::compress_segment(dir_, n);
      lock.lock();
      busy_ = false;
      // ENOENT: compressed already (by an earlier run that was cut short after the rename).
      if (!r && r.error().code != ENOENT) failures_.emplace_back(n, r.error().message);
      if (queue_.empty()) idle_.notify_all();
    }
  }
  std::string dir_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable idle_;
  bool busy_ = false;
  std::deque<uint32_t> queue_;
  std::vector<std::pair<uint32_t, std::string>> failures_;
  bool stop_ = false;
  std::thread thread_;  // last: starts once the rest is built
};

namespace {

namespace fs = std::filesystem;

int64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// The last checkpoint record: where the writer resumes its tree.
struct LastCheckpoint {
  size_t segment = 0;  // index into the segment list
  uint64_t offset = 0;
  uint64_t lineno = 0;
  uint64_t seq = 0;
  std::string text;
};

std::optional<LastCheckpoint> find_last_checkpoint(const std::vector<ledger::Segment>& segs) {
  for (size_t i = segs.size(); i-- > 0;) {
    auto m = ledger::SegmentBytes::open(segs[i]);
    if (!m) continue;
    std::optional<LastCheckpoint> best;
    // Leaves only: a torn checkpoint line recovered after a crash is not one.
    ledger::entries_of(segs[i], m->view(), 0, [&](const ledger::Line& l, ledger::LineKind k) {
      ledger::Prefix p;
      if (k == ledger::LineKind::leaf && ledger::parse_prefix(l.text, p) && p.type == "checkpoint")
        best = LastCheckpoint{i, l.offset, l.lineno, p.seq, std::string(l.text)};
      return true;
    });
    if (best) return best;
  }
  return std::nullopt;
}

// What a resume takes from a checkpoint record that passed check_checkpoint.
struct Resume {
  merkle::CompactRange range;
  std::string note;
};

// The checkpoint record against its own signed note: "" when they agree,
// else what disagrees. The range is what the writer hashes on from; a range
// that does not hash to the signed root would make it sign a tree that is
// not the records' (issue 14).
std::string check_checkpoint(const LastCheckpoint& cp, const LedgerOptions& opt, merkle::Hasher& h, Resume& out,
                             bool& key_mismatch) {
  auto j = nlohmann::json::parse(cp.text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return "the checkpoint record is not valid JSON";
  auto note = j.find("note");
  if (note == j.end() || !note->is_string()) return "the checkpoint record has no \"note\" (its signed checkpoint)";
  auto sc = tlog::parse_signed_checkpoint(note->get<std::string>(), "note");
  if (!sc) return fmt::format("its note does not parse: {}", sc.error().message);
  auto ts = j.find("tree_size");
  if (ts == j.end() || !ts->is_number_unsigned()) return "its \"tree_size\" is missing or not a number";
  uint64_t size = ts->get<uint64_t>();
  if (size != cp.seq)
    return fmt::format("its \"tree_size\" {} is not its seq {} (a checkpoint signs every record before it)", size,
                       cp.seq);
  if (sc->body.size != cp.seq)
    return fmt::format("its note signs a tree of {} records, not {} (its seq and \"tree_size\")", sc->body.size,
                       cp.seq);
  if (opt.key) {
    const auto& mine = opt.key->verifier();
    if (sc->body.origin != opt.origin) {
      key_mismatch = true;
      return fmt::format(
          "its note's origin is {}, this writer's is {}: another host's ledger, or this host's id "
          "(/etc/machine-id) changed",
          sc->body.origin, opt.origin);
    }
    std::vector<tlog::VerifierKey> trusted{mine};
    if (auto v = tlog::verify_note(sc->parsed, trusted); !v) {
      bool by_mine = std::any_of(sc->parsed.sigs.begin(), sc->parsed.sigs.end(),
                                 [&](const tlog::NoteSignature& s) { return s.name == mine.name && s.id == mine.id; });
      if (by_mine)
        return fmt::format(
            "its note's signature does not verify with this host's log key {}: the note was changed "
            "after it was signed",
            mine.text());
      key_mismatch = true;
      std::string by;
      for (const auto& s : sc->parsed.sigs)
        by += fmt::format("{}{}+{}", by.empty() ? "" : ", ", s.name, merkle::to_hex(s.id));
      return fmt::format(
          "its note is signed by {}, not by this host's log key {}: the log key was replaced since "
          "(key rotated), or this is another host's ledger",
          by.empty() ? "no key" : by, mine.text());
    }
  }
  auto r = j.find("range");
  if (r == j.end() || !r->is_array()) return "its \"range\" (the compact range) is missing or not a list";
  std::vector<merkle::Hash> hashes;
  for (const auto& e : *r) {
    auto v = e.is_string() ? merkle::hash_from_base64(e.get<std::string>())
                           : Result<merkle::Hash>(make_error("not a string"));
    if (!v) return fmt::format("its \"range\" holds a value that is not a base64 hash: {}", v.error().message);
    hashes.push_back(*v);
  }
  auto range = merkle::CompactRange::from(size, std::move(hashes));
  if (!range) return fmt::format("its \"range\" is not a compact range of {} leaves: {}", size, range.error().message);
  if (range->root(h) != sc->body.root)
    return "its \"range\" does not hash to the root its note signs: the range was changed after it was written "
           "(resuming from it would sign a tree that is not the records')";
  if (auto root = j.find("root"); root != j.end() && (!root->is_string() || *root != merkle::to_base64(sc->body.root)))
    return "its \"root\" is not the root its note signs";
  out.range = std::move(*range);
  out.note = note->get<std::string>();
  return {};
}

void put_time(JsonOut& o) {
  int64_t rt_off = realtime_offset_ns();
  uint64_t boot = boottime_ns();
  int64_t rt = static_cast<int64_t>(boot) + rt_off;
  o.field("time", format_utc(rt));
  o.field("realtime_ns", rt);
  o.field("boottime_ns", boot);
}

// The ledger directory's files, as the disk holds them (compressed
// segments at their compressed size).
uint64_t directory_bytes(const std::string& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) == 0 && S_ISREG(st.st_mode)) total += static_cast<uint64_t>(st.st_size);
  }
  return total;
}

}  // namespace

nlohmann::ordered_json LedgerBudgetStatus::json() const {
  nlohmann::ordered_json j;
  j["max_bytes"] = max_bytes;
  j["bytes"] = bytes;
  j["over"] = over;
  j["reason"] = over ? nlohmann::ordered_json(reason) : nlohmann::ordered_json(nullptr);
  j["pruned_records"] = pruned_records;
  return j;
}

Result<FsyncPolicy> parse_fsync_policy(std::string_view t) {
  if (t == "never") return FsyncPolicy::never;
  if (t == "checkpoint") return FsyncPolicy::checkpoint;
  if (t == "batch") return FsyncPolicy::batch;
  return make_error(fmt::format("fsync policy '{}': use never, checkpoint or batch", t));
}

std::string_view fsync_policy_name(FsyncPolicy p) {
  switch (p) {
    case FsyncPolicy::never: return "never";
    case FsyncPolicy::checkpoint: return "checkpoint";
    case FsyncPolicy::batch: return "batch";
  }
  return "?";
}

std::string ledger_origin(const std::string& host_id) { return "gpugate/" + (host_id.empty() ? "unknown" : host_id); }

// Where a resume found the ledger at odds with itself.
struct LedgerWriter::ResumeProblem {
  std::string segment;
  uint64_t line = 0;
  std::optional<uint64_t> seq;
  std::string what;
  bool key_mismatch = false;  // the fix may be the old key
  std::string not_recorded;   // why no resume_refused record could be written
};

Result<LedgerWriter> LedgerWriter::open(const std::string& dir, LedgerOptions opt) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
    return make_error(fmt::format(
        "ledger {}: a file, not a directory; the ledger is now a directory of segments: pass a directory with "
        "--ledger (an old single-file ledger stays as it is)",
        dir));
  std::error_code ec;
  bool existed = fs::exists(dir, ec);
  fs::create_directories(dir, ec);
  if (ec)
    return make_error(
        fmt::format("ledger {}: cannot create: {}; choose a writable directory with --ledger", dir, ec.message()),
        ec.value());
  if (!existed) ::chmod(dir.c_str(), 0750);  // records name processes and commands: not for everyone
  if (opt.origin.empty()) opt.origin = ledger_origin(opt.host_id);
  int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0)
    return make_error(
        fmt::format("ledger {}: cannot open: {}; choose a readable directory with --ledger", dir, std::strerror(errno)),
        errno);
  // One writer per ledger: two would interleave their seq and prev chains.
  // The lock goes with the descriptor, so a killed writer's is gone with it.
  if (::flock(dir_fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    ::close(dir_fd);
    return make_error(fmt::format("ledger {}: {}; another gpugated (or gpugate log prune) is writing it: stop it, or "
                                  "give this one another --ledger",
                                  dir, e == EWOULDBLOCK ? "locked" : std::strerror(e)),
                      e);
  }
  LedgerWriter w;
  w.dir_fd_ = dir_fd;
  auto segs = ledger::list_segments(dir, true);
  if (!segs) return segs.error();
  if (opt.compress_sealed) {
    // A compression a kill cut short before its rename: the plain segment is still there.
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
      if (it->path().filename().string().ends_with(".jsonl.zst.tmp") && it->is_regular_file(ec))
        fs::remove(it->path(), ec);
  }

  w.opt_ = std::move(opt);
  w.dir_ = dir;
  w.buf_.reserve(kFlushBytes + 4096);
  w.last_checkpoint_ns_ = mono_ns();
  if (segs->empty()) {
    if (auto r = w.open_segment(1); !r) return r.error();
    return w;
  }

  // Rebuild the tree from the last checkpoint record on, once that record
  // agrees with its signed note and the records after it follow it: the
  // writer's next checkpoint signs whatever it resumes from.
  auto last_cp = find_last_checkpoint(*segs);
  std::optional<ResumeProblem> problem;
  auto problem_at = [](const std::string& segment, uint64_t line, std::optional<uint64_t> seq, std::string what,
                       bool key_mismatch = false) {
    ResumeProblem p;
    p.segment = segment;
    p.line = line;
    p.seq = seq;
    p.what = std::move(what);
    p.key_mismatch = key_mismatch;
    return p;
  };
  size_t from_segment = 0;
  uint64_t from_offset = 0;
  if (last_cp) {
    from_segment = last_cp->segment;
    from_offset = last_cp->offset;
    Resume res;
    bool key_mismatch = false;
    std::string what = check_checkpoint(*last_cp, w.opt_, w.hasher_, res, key_mismatch);
    if (what.empty()) {
      w.range_ = std::move(res.range);
      w.last_note_ = std::move(res.note);
    } else {
      problem =
          problem_at((*segs)[last_cp->segment].name, last_cp->lineno, last_cp->seq, std::move(what), key_mismatch);
    }
  }
  struct Torn {
    std::string segment;
    uint64_t offset = 0;
    std::string bytes;
  };
  std::optional<Torn> torn;
  std::optional<ledger::Line> last_leaf_line;
  std::string last_leaf_text;
  // Tail checks apply from a checkpoint record on; a ledger without one
  // (never keyed) is read as before.
  bool at_checkpoint = last_cp.has_value();
  uint64_t want_seq = 0;
  auto walked =
      ledger::for_each_entry(*segs, from_segment, from_offset, [&](const ledger::Line& l, ledger::LineKind k) {
        if (k == ledger::LineKind::torn_tail) {
          // Only the last segment's end is ours to recover.
          if (l.segment == &segs->back())
            torn = Torn{l.segment->name, l.offset, std::string(l.text)};
          else if (last_cp && !problem)
            problem = problem_at(l.segment->name, l.lineno, std::nullopt,
                                 fmt::format("a line without its newline ({} bytes at offset {}) at the end of a "
                                             "segment that is not the last: a segment after it was written later",
                                             l.text.size(), l.offset));
          return true;
        }
        if (k != ledger::LineKind::leaf) return true;
        // The stored range covers the leaves before the checkpoint record; the
        // record itself is the next leaf.
        merkle::Hash prev_leaf = w.last_leaf_;
        merkle::Hash leaf = w.hasher_.leaf(l.text);
        w.range_.append(w.hasher_, leaf);
        w.last_leaf_ = leaf;
        ledger::Prefix p;
        bool is_record = ledger::parse_prefix(l.text, p);
        if (is_record) {
          w.next_seq_ = p.seq + 1;
          w.since_checkpoint_ = p.type == "checkpoint" ? 0 : w.since_checkpoint_ + 1;
        }
        if (at_checkpoint) {
          at_checkpoint = false;
          want_seq = last_cp->seq + 1;
        } else if (last_cp && !problem) {
          auto at = [&](std::string what) {
            problem = problem_at(l.segment->name, l.lineno, is_record ? std::optional<uint64_t>(p.seq) : std::nullopt,
                                 std::move(what));
          };
          if (!is_record)
            at("the line is not a gpugate record (it does not start {\"seq\":N,\"prev\":...)");
          else if (p.seq > want_seq)
            at(fmt::format("seq jumps from {} to {}: records {}..{} are missing (deleted)", want_seq - 1, p.seq,
                           want_seq, p.seq - 1));
          else if (p.seq < want_seq)
            at(fmt::format("seq {} where {} was expected: a line was inserted, duplicated or moved", p.seq, want_seq));
          else if (p.prev != ledger::prev_text(prev_leaf))
            at(p.prev.empty() ? std::string("the record has no \"prev\"")
                              : "its \"prev\" is not the hash of the line before it: one of the two was changed");
          else if (!nlohmann::json::accept(l.text))
            at("the record is not valid JSON");
          else if (p.type == "ledger.resume_refused")
            at("an earlier start refused to continue this ledger here (this record says why); a refused ledger is not "
               "continued, so that record is never signed");
          want_seq = p.seq + 1;
        }
        last_leaf_text = std::string(l.text);
        last_leaf_line = l;
        return true;
      });
  if (!walked) return walked.error();
  const auto& last = segs->back();
  bool last_line_in_last = last_leaf_line && last_leaf_line->segment == &last;
  if (last_line_in_last && !problem) {
    ledger::Prefix p;
    auto j = nlohmann::json::parse(last_leaf_text, nullptr, false);
    if (!ledger::parse_prefix(last_leaf_text, p) || j.is_discarded())
      return make_error(
          fmt::format("ledger {}: the last line of {} is not a gpugate record; refusing to append to a "
                      "ledger that is not ours (move it aside or pick another --ledger)",
                      dir, last.name));
  }
  w.previous_last_ = last_leaf_text;
  if (last.compressed && torn)
    return make_error(
        fmt::format("ledger {}: {} ends in a torn line, and gpugated compresses only whole, sealed "
                    "segments: it was compressed by something else; restore the segment from a copy",
                    dir, last.path));
  // A compressed last segment (compressed by hand) is sealed: go on in the next one.
  uint32_t current = last.compressed ? last.number + 1 : last.number;
  w.segment_ = current;
  if (auto r = w.open_segment(current); !r) {
    if (problem) {
      ResumeProblem unrecorded = *problem;
      unrecorded.not_recorded = r.error().message;
      return w.refuse(unrecorded, {}, false);
    }
    return r.error();
  }
  if (torn) {
    if (auto r = w.recover_torn(torn->segment, torn->offset, torn->bytes); !r) {
      if (!problem) return r.error();
      ResumeProblem unrecorded = *problem;
      unrecorded.not_recorded = r.error().message;
      return w.refuse(unrecorded, {}, false);
    }
  }
  if (problem) return w.refuse(*problem, last_leaf_text, last_line_in_last && !torn);
  // Sealed segments a stopped or killed run left plain (all but the newest sealed one).
  for (const auto& seg : *segs)
    if (!seg.compressed && seg.number + 1 < current) w.compress_sealed_before(seg.number + 1);
  return w;
}

Result<void> LedgerWriter::recover_torn(const std::string& segment, uint64_t offset, std::string_view bytes) {
  // Terminate the torn line so the next record starts on a line of its
  // own, and say what was found, byte for byte (its hash).
  if (::write(fd_, "\n", 1) != 1)
    return make_error(fmt::format("ledger {}: cannot write: {}", segment_path(), std::strerror(errno)), errno);
  segment_bytes_++;
  note_ = fmt::format(
      "{} ended in a torn line ({} bytes at offset {}: a crash during a write); it is kept as found and the "
      "ledger.recovered record names it",
      segment, bytes.size(), offset);
  std::string m;
  JsonOut o(m);
  o.field("type", "ledger.recovered");
  put_time(o);
  o.field("boot_id", std::string_view(opt_.boot_id));
  o.field("host_id", std::string_view(opt_.host_id));
  o.key("torn").begin_object();
  o.field("segment", std::string_view(segment));
  o.field("offset", offset);
  o.field("bytes", static_cast<uint64_t>(bytes.size()));
  o.field("sha256", merkle::to_hex(hasher_.sha256(bytes)));
  o.end_object();
  o.field("note", std::string_view(note_));
  append_own("ledger.recovered", m);
  return write_out();
}

void LedgerWriter::abandon() {
  // A refused writer writes nothing more: no flush, and above all no
  // checkpoint, from the destructor.
  buf_.clear();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Error LedgerWriter::refuse(const ResumeProblem& pr, std::string_view last_line, bool last_line_is_ours) {
  std::string place =
      pr.seq ? fmt::format("{}:{} (seq {})", pr.segment, pr.line, *pr.seq) : fmt::format("{}:{}", pr.segment, pr.line);
  std::string fix = fmt::format(
      "keep {} as it is (it is evidence), run `gpugate log verify {}` to see what changed, then move it aside and "
      "start a new ledger with --ledger{}",
      dir_, dir_,
      pr.key_mismatch ? " (or, if the log key was replaced, put back the one that signed it: log-key in gpugated "
                        "--state-dir)"
                      : "");
  std::string recorded;
  if (!pr.not_recorded.empty()) {
    recorded = fmt::format("the refusal could not be recorded in the ledger ({})", pr.not_recorded);
  } else {
    // A restart loop refused for the same reason leaves one record, not one per try.
    std::optional<uint64_t> same;
    ledger::Prefix lp;
    if (last_line_is_ours && ledger::parse_prefix(last_line, lp) && lp.type == "ledger.resume_refused") {
      auto j = nlohmann::json::parse(last_line, nullptr, false);
      if (!j.is_discarded() && j.is_object() && j.value("problem", "") == pr.what && j.contains("at") &&
          j["at"].is_object() && j["at"].value("segment", "") == pr.segment && j["at"].value("line", 0ull) == pr.line)
        same = lp.seq;
    }
    if (same) {
      recorded = fmt::format("the ledger.resume_refused record seq {} at the end of {} already records it", *same,
                             ledger::segment_name(segment_));
    } else {
      std::string m;
      JsonOut o(m);
      o.field("type", "ledger.resume_refused");
      put_time(o);
      o.field("boot_id", std::string_view(opt_.boot_id));
      o.field("host_id", std::string_view(opt_.host_id));
      o.key("at").begin_object();
      o.field("segment", std::string_view(pr.segment));
      o.field("line", pr.line);
      if (pr.seq) o.field("seq", *pr.seq);
      o.end_object();
      o.field("problem", std::string_view(pr.what));
      o.field("key", key_text());
      o.field("note", std::string_view("the writer refused to continue this ledger and signed nothing; this record is "
                                       "not signed and no checkpoint will sign it"));
      uint64_t seq = next_seq_;
      append_own("ledger.resume_refused", m);
      auto wr = write_out();
      if (wr && opt_.fsync != FsyncPolicy::never && ::fdatasync(fd_) != 0)
        wr = make_error(fmt::format("fdatasync failed: {}", std::strerror(errno)), errno);
      recorded = wr ? fmt::format("a ledger.resume_refused record (seq {}) at the end of {} says so", seq,
                                  ledger::segment_name(segment_))
                    : fmt::format("the refusal could not be recorded in the ledger ({})", wr.error().message);
    }
  }
  abandon();
  return make_error(fmt::format("ledger {}: refusing to continue it: at {}: {}. Nothing was signed; {}. To go on: {}",
                                dir_, place, pr.what, recorded, fix));
}

LedgerWriter::LedgerWriter(LedgerWriter&& o) noexcept
    : opt_(std::move(o.opt_)),
      dir_(std::move(o.dir_)),
      fd_(o.fd_),
      dir_fd_(o.dir_fd_),
      segment_(o.segment_),
      segment_bytes_(o.segment_bytes_),
      next_seq_(o.next_seq_),
      note_(std::move(o.note_)),
      previous_last_(std::move(o.previous_last_)),
      bytes_(o.bytes_),
      buf_(std::move(o.buf_)),
      hasher_(std::move(o.hasher_)),
      range_(std::move(o.range_)),
      last_leaf_(o.last_leaf_),
      since_checkpoint_(o.since_checkpoint_),
      last_checkpoint_ns_(o.last_checkpoint_ns_),
      last_checkpoint_unix_ns_(o.last_checkpoint_unix_ns_),
      checkpoints_(o.checkpoints_),
      checkpoint_pending_publish_(o.checkpoint_pending_publish_),
      last_note_(std::move(o.last_note_)),
      compressor_(std::move(o.compressor_)),
      budget_(std::move(o.budget_)),
      in_budget_check_(o.in_budget_check_) {
  o.fd_ = -1;
  o.dir_fd_ = -1;
}

LedgerWriter::~LedgerWriter() {
  if (fd_ >= 0) {
    // A last rotation here prunes nothing: pruning is the running writer's.
    opt_.budget.max_bytes = 0;
    (void)flush();
    ::close(fd_);
  }
  if (dir_fd_ >= 0) ::close(dir_fd_);
}

void LedgerWriter::compress_sealed_before(uint32_t number) {
  if (!opt_.compress_sealed || number < 2) return;
  if (!compressor_) compressor_ = std::make_unique<SegmentCompressor>(dir_);
  compressor_->enqueue(number - 1);
}

Result<nlohmann::ordered_json> LedgerWriter::prune(const ledger::PruneCut& cut) {
  // The compressor may be working on a segment the prune removes.
  finish_compression();
  auto plan = ledger::plan_prune(dir_, cut, segment_ - 1);
  if (!plan) return plan.error();
  nlohmann::ordered_json out = plan->json();
  out["before"] = cut.json();
  if (plan->removed.empty()) {
    // Only what an earlier prune, recorded already, left behind.
    if (auto r = ledger::remove_pruned(dir_, *plan); !r) return r.error();
    out["finished_earlier_prune"] = true;
    return out;
  }
  out["anchor_segment"] = plan->anchor.anchor_segment;
  out["anchor_leaf"] = merkle::to_hex(hasher_.leaf(plan->anchor.anchor_line));
  std::string m;
  JsonOut o(m);
  o.field("type", "ledger.pruned");
  put_time(o);
  o.field("first_segment", ledger::segment_name(plan->anchor.first_segment));
  o.field("first_seq", plan->anchor.first_seq);
  o.field("anchor_segment", std::string_view(plan->anchor.anchor_segment));
  o.field("anchor_leaf", out["anchor_leaf"].get<std::string>());
  o.field("records", plan->records);
  o.key("segments").raw(out["segments"].dump());
  o.key("before").raw(out["before"].dump());
  o.field("note",
          "seq 0 up to first_seq are removed; pruned.json keeps the checkpoint record that closed "
          "anchor_segment, from which log verify proves the rest");
  uint64_t seq = next_seq_;
  append_own("ledger.pruned", m);
  // The record is on disk before the anchor and the removals it stands for:
  // a crash before the anchor leaves every segment, and one after it leaves
  // segments before the cut that the next prune removes.
  if (auto w = write_out(); !w) return w.error();
  if (opt_.fsync != FsyncPolicy::never) ::fdatasync(fd_);
  if (auto a = ledger::write_prune_anchor(dir_, *plan); !a) return a.error();
  if (auto r = ledger::remove_pruned(dir_, *plan); !r) return r.error();
  out["recorded_at"] = seq;
  return out;
}

void LedgerWriter::check_budget() {
  if (!opt_.budget.max_bytes || in_budget_check_) return;
  in_budget_check_ = true;
  try {
    enforce_budget();
  } catch (const std::exception& e) {
    // Only a bug gets here (a record's JSON); the ledger keeps everything.
    budget_.over = true;
    budget_.reason = fmt::format("the budget check failed: {}", e.what());
  }
  in_budget_check_ = false;
}

void LedgerWriter::enforce_budget() {
  const auto& b = opt_.budget;
  budget_.max_bytes = b.max_bytes;
  uint64_t before = directory_bytes(dir_);
  budget_.bytes = before;
  std::optional<uint64_t> shipped;
  std::string reason;
  uint64_t pruned = 0;
  if (before > b.max_bytes) {
    if (!b.shipped_before) {
      reason = "no shipping state is given (gpugated --ledger-shipped FILE), so no record is known to be off the host";
    } else if (auto s = b.shipped_before(next_seq_); !s) {
      reason = s.error().message;
    } else {
      shipped = *s;
      auto p = prune({.before_seq = *s, .before_unix_ns = {}});
      if (p)
        pruned = p->value("records", uint64_t{0});
      else if (p.error().code != ledger::kNothingToPrune)
        reason = fmt::format("pruning what was shipped failed: {}", p.error().message);
    }
    budget_.pruned_records += pruned;
    budget_.bytes = directory_bytes(dir_);
    // One reason while nothing changes but the records not yet shipped, so
    // that it is recorded once, not at every rotation.
    if (budget_.bytes > b.max_bytes && reason.empty())
      reason =
          "only whole sealed segments shipped off the host are pruned (shipped_before says how far), and the rest "
          "is over the budget: ship more (gpugate log ship), or raise --ledger-max-gib";
  }
  bool over = budget_.bytes > b.max_bytes;
  // A record when something was pruned, when the ledger goes over (or stays
  // over for a new reason) and when it comes back under: never per rotation.
  if (pruned || over != budget_.over || (over && reason != budget_.reason)) {
    std::string m;
    JsonOut o(m);
    o.field("type", "ledger.budget");
    put_time(o);
    o.field("state", over ? "over" : "within");
    o.field("bytes_before", before);
    o.field("bytes", budget_.bytes);
    o.field("max_bytes", b.max_bytes);
    if (shipped) o.field("shipped_before", *shipped);
    o.field("pruned_records", pruned);
    if (over) {
      o.field("reason", std::string_view(reason));
      o.field("action", "kept: nothing unshipped is removed");
    }
    append_own("ledger.budget", m);
  }
  budget_.over = over;
  budget_.reason = over ? reason : std::string();
}

void LedgerWriter::finish_compression() {
  if (!compressor_) return;
  compressor_->drain();
  record_compress_failures();
}

void LedgerWriter::record_compress_failures() {
  if (!compressor_) return;
  for (auto& [number, why] : compressor_->take_failures()) {
    std::string m;
    JsonOut o(m);
    o.field("type", "ledger.compress_failed");
    put_time(o);
    o.field("segment", ledger::segment_name(number));
    o.field("error", std::string_view(why));
    o.field("note", "the segment stays as it was, uncompressed; the next start tries again");
    append_own("ledger.compress_failed", m);
  }
}

std::string LedgerWriter::segment_path() const { return (fs::path(dir_) / ledger::segment_name(segment_)).string(); }

Result<void> LedgerWriter::open_segment(uint32_t number) {
  segment_ = number;
  std::string path = segment_path();
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0)
    return make_error(
        fmt::format("ledger {}: {}; choose a writable directory with --ledger", path, std::strerror(errno)), errno);
  struct stat st {};
  fstat(fd, &st);
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  segment_bytes_ = static_cast<uint64_t>(st.st_size);
  // The new name must survive a crash too.
  if (opt_.fsync != FsyncPolicy::never && dir_fd_ >= 0) ::fsync(dir_fd_);
  return {};
}

Result<uint64_t> LedgerWriter::append_members(std::string_view members) {
  if (buf_.size() > kMaxBuffered) {
    // The disk has refused writes for a while: refuse rather than grow.
    if (auto f = write_out(); !f) return f.error();
  }
  size_t start = buf_.size();
  char num[24];
  auto* end = std::to_chars(num, num + sizeof(num), next_seq_).ptr;
  buf_.append("{\"seq\":");
  buf_.append(num, static_cast<size_t>(end - num));
  buf_.append(",\"prev\":\"");
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 0; i < 8; i++) {
    buf_.push_back(kHex[last_leaf_[i] >> 4]);
    buf_.push_back(kHex[last_leaf_[i] & 15]);
  }
  buf_.push_back('"');
  if (!members.empty()) buf_.push_back(',');
  buf_.append(members);
  buf_.push_back('}');
  last_leaf_ = hasher_.leaf(std::string_view(buf_).substr(start));
  range_.append(hasher_, last_leaf_);
  buf_.push_back('\n');
  since_checkpoint_++;
  if (buf_.size() >= kFlushBytes) (void)write_out();  // on failure the lines stay buffered
  return next_seq_++;
}

void LedgerWriter::append_own(std::string_view, const std::string& members) { (void)append_members(members); }

void LedgerWriter::append_checkpoint_record(std::string_view reason) {
  tlog::Checkpoint cp{opt_.origin, range_.size(), range_.root(hasher_)};
  std::string note = opt_.key->sign_note(cp.text());
  std::string m;
  m.reserve(1024);
  JsonOut o(m);
  o.field("type", "checkpoint");
  put_time(o);
  o.field("boot_id", std::string_view(opt_.boot_id));
  o.field("host_id", std::string_view(opt_.host_id));
  o.field("reason", reason);
  o.field("segment", ledger::segment_name(segment_));
  o.field("tree_size", cp.size);
  o.field("root", merkle::to_base64(cp.root));
  o.key("range").begin_array();
  for (const auto& h : range_.hashes()) o.str(merkle::to_base64(h));
  o.end_array();
  o.field("key", opt_.key->verifier().text());
  o.field("note", std::string_view(note));
  append_own("checkpoint", m);
  since_checkpoint_ = 0;
  last_checkpoint_ns_ = mono_ns();
  {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    last_checkpoint_unix_ns_ = static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
  }
  checkpoints_++;
  last_note_ = std::move(note);
  checkpoint_pending_publish_ = true;
}

Result<void> LedgerWriter::write_out() {
  size_t off = 0;
  while (off < buf_.size()) {
    ssize_t n = ::write(fd_, buf_.data() + off, buf_.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      // Keep what was not written: the next flush tries again.
      int e = errno;
      buf_.erase(0, off);
      bytes_ += off;
      segment_bytes_ += off;
      return make_error(fmt::format("ledger {}: write failed: {}", segment_path(), std::strerror(e)), e);
    }
    off += static_cast<size_t>(n);
  }
  bytes_ += buf_.size();
  segment_bytes_ += buf_.size();
  buf_.clear();
  return {};
}

Result<void> LedgerWriter::publish(const std::string& note) {
  checkpoint_pending_publish_ = false;
  if (opt_.fsync != FsyncPolicy::never && ::fdatasync(fd_) != 0)
    return make_error(fmt::format("ledger {}: fdatasync failed: {}", segment_path(), std::strerror(errno)), errno);
  // The latest checkpoint, beside the segments, for shipping off-host.
  std::string tmp = (fs::path(dir_) / "checkpoint.tmp").string();
  std::string path = (fs::path(dir_) / "checkpoint").string();
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) return make_error(fmt::format("ledger {}: {}", tmp, std::strerror(errno)), errno);
  bool ok = ::write(fd, note.data(), note.size()) == static_cast<ssize_t>(note.size());
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0)
    return make_error(fmt::format("ledger {}: cannot publish: {}", path, std::strerror(errno)), errno);
  return {};
}

Result<void> LedgerWriter::rotate() {
  if (opt_.key && since_checkpoint_ > 0) append_checkpoint_record("rotate");
  if (auto w = write_out(); !w) return w;
  if (checkpoint_pending_publish_)
    if (auto p = publish(last_note_); !p) return p;
  if (opt_.fsync != FsyncPolicy::never) ::fdatasync(fd_);
  if (auto o = open_segment(segment_ + 1); !o) return o;
  // The newest sealed segment stays plain: a shipper tailing it may be behind.
  compress_sealed_before(segment_ - 1);
  check_budget();
  return {};
}

Result<void> LedgerWriter::flush() {
  record_compress_failures();
  if (opt_.key && since_checkpoint_ > 0) {
    bool by_count = opt_.checkpoint_records && since_checkpoint_ >= opt_.checkpoint_records;
    bool by_time = opt_.checkpoint_ms && mono_ns() - last_checkpoint_ns_ >= int64_t(opt_.checkpoint_ms) * 1000000;
    if (by_count || by_time) append_checkpoint_record(by_count ? "records" : "interval");
  }
  if (auto w = write_out(); !w) return w;
  if (opt_.fsync == FsyncPolicy::batch && ::fdatasync(fd_) != 0)
    return make_error(fmt::format("ledger {}: fdatasync failed: {}", segment_path(), std::strerror(errno)), errno);
  if (checkpoint_pending_publish_)
    if (auto p = publish(last_note_); !p) return p;
  if (segment_bytes_ >= opt_.segment_bytes) return rotate();
  return {};
}

Result<void> LedgerWriter::checkpoint(std::string_view reason) {
  if (!opt_.key) return make_error("ledger: no log key, so no checkpoints");
  append_checkpoint_record(reason);
  if (auto w = write_out(); !w) return w;
  return publish(last_note_);
}

merkle::Hash LedgerWriter::root() { return range_.root(hasher_); }

Result<uint64_t> LedgerWriter::append(nlohmann::ordered_json rec) {
  rec.erase("seq");
  std::string text = rec.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  // text is "{...}": hand over the members
  auto seq = append_members(std::string_view(text).substr(1, text.size() - 2));
  if (!seq) return seq;
  // A failed write keeps the line buffered (and hashed): it is not lost, and
  // the caller's next flush says the ledger is failing.
  (void)flush();
  return seq;
}

}  // namespace gpugate
