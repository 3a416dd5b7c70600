// The ledger writer. See ledger.hpp and docs/ledger.md.
#include "gpugate/ledger.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "gpugate/hostinfo.hpp"
#include "gpugate/json_out.hpp"
#include "gpugate/log_reader.hpp"

namespace gpugate {
namespace {

namespace fs = std::filesystem;

int64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// Where to resume hashing: the last checkpoint record that carries its
// compact range, or the very start.
struct Resume {
  size_t segment = 0;
  uint64_t offset = 0;
  merkle::CompactRange range;
  std::string note;
};

Resume find_resume(const std::vector<ledger::Segment>& segs) {
  for (size_t i = segs.size(); i-- > 0;) {
    auto m = ledger::MappedFile::open(segs[i].path);
    if (!m) continue;
    std::string_view data = m->view();
    // The last checkpoint line of this segment.
    uint64_t best = UINT64_MAX;
    std::string_view best_text;
    ledger::split_lines(segs[i], data, [&](const ledger::Line& l) {
      ledger::Prefix p;
      if (l.terminated && ledger::parse_prefix(l.text, p) && p.type == "checkpoint") {
        best = l.offset;
        best_text = l.text;
      }
      return true;
    });
    if (best == UINT64_MAX) continue;
    auto j = nlohmann::json::parse(best_text, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("tree_size") || !j["tree_size"].is_number_unsigned() ||
        !j.contains("range") || !j["range"].is_array())
      break;  // damaged: hash everything from the start
    std::vector<merkle::Hash> hashes;
    bool ok = true;
    for (const auto& h : j["range"]) {
      auto v = h.is_string() ? merkle::hash_from_base64(h.get<std::string>()) : Result<merkle::Hash>(make_error(""));
      if (!v) {
        ok = false;
        break;
      }
      hashes.push_back(*v);
    }
    auto range = ok ? merkle::CompactRange::from(j["tree_size"].get<uint64_t>(), std::move(hashes))
                    : Result<merkle::CompactRange>(make_error(""));
    if (!range) break;
    Resume r;
    r.segment = i;
    r.offset = best;
    r.range = std::move(*range);
    if (j.contains("note") && j["note"].is_string()) r.note = j["note"].get<std::string>();
    return r;
  }
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

}  // namespace

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
  auto segs = ledger::list_segments(dir, true);
  if (!segs) return segs.error();

  LedgerWriter w;
  w.opt_ = std::move(opt);
  w.dir_ = dir;
  w.buf_.reserve(kFlushBytes + 4096);
  w.dir_fd_ = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (w.dir_fd_ < 0)
    return make_error(
        fmt::format("ledger {}: cannot open: {}; choose a readable directory with --ledger", dir, std::strerror(errno)),
        errno);
  w.last_checkpoint_ns_ = mono_ns();
  if (segs->empty()) {
    if (auto r = w.open_segment(1); !r) return r.error();
    return w;
  }

  // Rebuild the tree from the last checkpoint record on.
  Resume res = find_resume(*segs);
  w.range_ = std::move(res.range);
  w.last_note_ = std::move(res.note);
  struct Torn {
    std::string segment;
    uint64_t offset = 0;
    std::string bytes;
  };
  std::optional<Torn> torn;
  std::optional<ledger::Line> last_leaf_line;
  std::string last_leaf_text;
  auto walked = ledger::for_each_entry(*segs, res.segment, res.offset, [&](const ledger::Line& l, ledger::LineKind k) {
    if (k == ledger::LineKind::torn_tail) {
      // Only the last segment's end is ours to recover; others stay for verify.
      if (l.segment == &segs->back()) torn = Torn{l.segment->name, l.offset, std::string(l.text)};
      return true;
    }
    if (k != ledger::LineKind::leaf) return true;
    // The stored range covers the leaves before the checkpoint record; the
    // record itself is the next leaf.
    merkle::Hash leaf = w.hasher_.leaf(l.text);
    w.range_.append(w.hasher_, leaf);
    w.last_leaf_ = leaf;
    ledger::Prefix p;
    if (ledger::parse_prefix(l.text, p)) {
      w.next_seq_ = p.seq + 1;
      w.since_checkpoint_ = p.type == "checkpoint" ? 0 : w.since_checkpoint_ + 1;
    }
    last_leaf_text = std::string(l.text);
    last_leaf_line = l;
    return true;
  });
  if (!walked) return walked.error();
  const auto& last = segs->back();
  if (last_leaf_line && last_leaf_line->segment == &last) {
    ledger::Prefix p;
    auto j = nlohmann::json::parse(last_leaf_text, nullptr, false);
    if (!ledger::parse_prefix(last_leaf_text, p) || j.is_discarded())
      return make_error(
          fmt::format("ledger {}: the last line of {} is not a gpugate record; refusing to append to a "
                      "ledger that is not ours (move it aside or pick another --ledger)",
                      dir, last.name));
  }
  w.segment_ = last.number;
  if (auto r = w.open_segment(last.number); !r) return r.error();
  if (torn) {
    // Terminate the torn line so the next record starts on a line of its
    // own, and say what was found, byte for byte (its hash).
    if (::write(w.fd_, "\n", 1) != 1)
      return make_error(fmt::format("ledger {}: cannot write: {}", w.segment_path(), std::strerror(errno)), errno);
    w.segment_bytes_++;
    w.note_ = fmt::format(
        "{} ended in a torn line ({} bytes at offset {}: a crash during a write); it is kept as found and the "
        "ledger.recovered record names it",
        torn->segment, torn->bytes.size(), torn->offset);
    std::string m;
    JsonOut o(m);
    o.field("type", "ledger.recovered");
    put_time(o);
    o.field("boot_id", std::string_view(w.opt_.boot_id));
    o.field("host_id", std::string_view(w.opt_.host_id));
    o.key("torn").begin_object();
    o.field("segment", std::string_view(torn->segment));
    o.field("offset", torn->offset);
    o.field("bytes", static_cast<uint64_t>(torn->bytes.size()));
    o.field("sha256", merkle::to_hex(w.hasher_.sha256(torn->bytes)));
    o.end_object();
    o.field("note", std::string_view(w.note_));
    w.append_own("ledger.recovered", m);
    if (auto f = w.write_out(); !f) return f.error();
  }
  return w;
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
      bytes_(o.bytes_),
      buf_(std::move(o.buf_)),
      hasher_(std::move(o.hasher_)),
      range_(std::move(o.range_)),
      last_leaf_(o.last_leaf_),
      since_checkpoint_(o.since_checkpoint_),
      last_checkpoint_ns_(o.last_checkpoint_ns_),
      checkpoints_(o.checkpoints_),
      checkpoint_pending_publish_(o.checkpoint_pending_publish_),
      last_note_(std::move(o.last_note_)) {
  o.fd_ = -1;
  o.dir_fd_ = -1;
}

LedgerWriter::~LedgerWriter() {
  if (fd_ >= 0) {
    (void)flush();
    ::close(fd_);
  }
  if (dir_fd_ >= 0) ::close(dir_fd_);
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
  return open_segment(segment_ + 1);
}

Result<void> LedgerWriter::flush() {
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
  if (auto f = flush(); !f) return f.error();
  return seq;
}

}  // namespace gpugate
