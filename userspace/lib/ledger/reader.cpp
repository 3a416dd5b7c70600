// Ledger directory reading. See log_reader.hpp.
#include "gpugate/log_reader.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "gpugate/unique_fd.hpp"

namespace gpugate::ledger {

namespace fs = std::filesystem;

std::string segment_name(uint32_t number) { return fmt::format("{:06}.jsonl", number); }

namespace {

std::string_view file_kind(mode_t mode) {
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  return "a special file";
}

std::string_view not_regular_fix(mode_t mode) {
  if (S_ISLNK(mode))
    return "the ledger is read as it is, links are not followed: put the file itself there (cp --dereference) or "
           "move the link aside";
  return "it holds no records: move it aside (and restore the real file from a copy if one was there)";
}

// The errors for a file that is not a regular one: what it is, and the fix.
std::string not_regular_file(const std::string& path, mode_t mode) {
  return fmt::format("{}: {}, not a regular file; {}", path, file_kind(mode), not_regular_fix(mode));
}

std::string not_regular(const std::string& dir, const std::string& name, mode_t mode) {
  return fmt::format("ledger {}: {} is {}, not a regular file (a segment is a plain file gpugated appends to); {}", dir,
                     name, file_kind(mode), not_regular_fix(mode));
}

}  // namespace

Result<std::vector<Segment>> list_segments(const std::string& dir, bool allow_empty) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0)
    return make_error(fmt::format("ledger {}: {}; pass the ledger directory (gpugated --ledger, default "
                                  "/var/lib/gpugate/ledger)",
                                  dir, std::strerror(errno)),
                      errno);
  if (!S_ISDIR(st.st_mode))
    return make_error(
        fmt::format("ledger {}: a file, not a directory; a ledger is a directory of NNNNNN.jsonl "
                    "segments: pass the directory that holds it",
                    dir));
  std::vector<Segment> out;
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  if (ec)
    return make_error(fmt::format("ledger {}: cannot list: {}; run as a user who can read it (root, or the gpugate "
                                  "group)",
                                  dir, ec.message()),
                      ec.value());
  for (; it != end; it.increment(ec)) {
    if (ec) break;
    std::string name = it->path().filename().string();
    if (name.size() < 12 || !name.ends_with(".jsonl")) continue;
    std::string_view digits(name.data(), name.size() - 6);
    if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
    uint32_t n = 0;
    auto r = std::from_chars(digits.data(), digits.data() + digits.size(), n);
    if (r.ec != std::errc() || n == 0) continue;
    Segment s;
    s.number = n;
    s.name = name;
    s.path = (fs::path(dir) / name).string();
    // lstat: a symlink or a FIFO named like a segment is refused here, before
    // anything opens it (opening a FIFO would block, a device could act).
    struct stat lst {};
    if (::lstat(s.path.c_str(), &lst) != 0)
      return make_error(fmt::format("ledger {}: {}: cannot stat: {}; run as a user who can read the ledger", dir, name,
                                    std::strerror(errno)),
                        errno);
    if (!S_ISREG(lst.st_mode)) return make_error(not_regular(dir, name, lst.st_mode));
    s.size = static_cast<uint64_t>(lst.st_size);
    out.push_back(std::move(s));
  }
  if (out.empty() && !allow_empty)
    return make_error(
        fmt::format("ledger {}: no segments (000001.jsonl, ...): not a gpugate ledger directory, or "
                    "an empty one; pass the directory gpugated writes (--ledger)",
                    dir));
  std::sort(out.begin(), out.end(), [](const Segment& a, const Segment& b) { return a.number < b.number; });
  return out;
}

Result<std::string> read_regular_file(const std::string& path, size_t max_bytes, std::string_view what,
                                      std::string_view fix) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd) return make_error(fmt::format("{} {}: cannot open: {}; {}", what, path, std::strerror(errno), fix), errno);
  struct stat st {};
  if (fstat(fd.get(), &st) != 0)
    return make_error(fmt::format("{} {}: cannot stat: {}; {}", what, path, std::strerror(errno), fix), errno);
  if (!S_ISREG(st.st_mode))
    return make_error(fmt::format("{} {}: {}, not a regular file; {}", what, path, file_kind(st.st_mode), fix));
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error(fmt::format("{} {}: cannot read: {}", what, path, std::strerror(errno)), errno);
    if (n == 0) return out;
    if (out.size() + static_cast<size_t>(n) > max_bytes)
      return make_error(fmt::format("{} {}: larger than {} bytes; {}", what, path, max_bytes, fix));
    out.append(buf, static_cast<size_t>(n));
  }
}

Result<MappedFile> MappedFile::open(const std::string& path) {
  // O_NOFOLLOW: a symlink is refused, not followed; O_NONBLOCK: opening a
  // FIFO returns at once instead of waiting for a writer that never comes.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  if (!fd) {
    int e = errno;
    struct stat lst {};
    if (e == ELOOP && ::lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode))
      return make_error(not_regular_file(path, lst.st_mode), e);
    return make_error(fmt::format("{}: cannot open: {}; check its permissions", path, std::strerror(e)), e);
  }
  struct stat st {};
  if (fstat(fd.get(), &st) != 0)
    return make_error(fmt::format("{}: cannot stat: {}", path, std::strerror(errno)), errno);
  if (!S_ISREG(st.st_mode)) return make_error(not_regular_file(path, st.st_mode));
  MappedFile m;
  m.size_ = static_cast<size_t>(st.st_size);
  if (m.size_ > 0) {
    void* p = mmap(nullptr, m.size_, PROT_READ, MAP_PRIVATE, fd.get(), 0);
    if (p == MAP_FAILED) {
      int e = errno;
      return make_error(fmt::format("{}: cannot map: {}", path, std::strerror(e)), e);
    }
    madvise(p, m.size_, MADV_SEQUENTIAL);
    m.data_ = static_cast<const char*>(p);
  }
  return m;
}

MappedFile::MappedFile(MappedFile&& o) noexcept : data_(o.data_), size_(o.size_) {
  o.data_ = nullptr;
  o.size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    if (data_) munmap(const_cast<char*>(data_), size_);
    data_ = o.data_;
    size_ = o.size_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data_) munmap(const_cast<char*>(data_), size_);
}

bool parse_prefix(std::string_view line, Prefix& out) {
  constexpr std::string_view kSeq = "{\"seq\":";
  if (!line.starts_with(kSeq)) return false;
  size_t i = kSeq.size();
  size_t start = i;
  while (i < line.size() && line[i] >= '0' && line[i] <= '9' && i - start < 20) i++;
  if (i == start || (line[start] == '0' && i - start > 1)) return false;
  auto r = std::from_chars(line.data() + start, line.data() + i, out.seq);
  if (r.ec != std::errc()) return false;
  if (i >= line.size() || (line[i] != ',' && line[i] != '}')) return false;
  out.prev = {};
  out.type = {};
  constexpr std::string_view kPrev = ",\"prev\":\"";
  if (line.substr(i).starts_with(kPrev)) {
    size_t p = i + kPrev.size();
    if (p + 17 > line.size() || line[p + 16] != '"') return false;
    out.prev = line.substr(p, 16);
    i = p + 17;
    if (i >= line.size() || (line[i] != ',' && line[i] != '}')) return false;
  }
  constexpr std::string_view kType = ",\"type\":\"";
  if (line.substr(i).starts_with(kType)) {
    size_t p = i + kType.size();
    size_t q = p;
    while (q < line.size() && line[q] != '"' && line[q] != '\\' && q - p < 64) q++;
    if (q < line.size() && line[q] == '"') out.type = line.substr(p, q - p);
  }
  return true;
}

std::string prev_text(const merkle::Hash& leaf) { return merkle::to_hex(std::span(leaf.data(), 8)); }

void split_lines(const Segment& seg, std::string_view data, const std::function<bool(const Line&)>& fn) {
  Line l;
  l.segment = &seg;
  size_t off = 0;
  while (off < data.size()) {
    const void* nl = std::memchr(data.data() + off, '\n', data.size() - off);
    size_t end = nl ? static_cast<size_t>(static_cast<const char*>(nl) - data.data()) : data.size();
    l.lineno++;
    l.offset = off;
    l.text = data.substr(off, end - off);
    l.terminated = nl != nullptr;
    if (!fn(l)) return;
    off = end + 1;
  }
}

Result<void> for_each_line(const std::vector<Segment>& segments, const std::function<bool(const Line&)>& fn) {
  for (const auto& seg : segments) {
    auto m = MappedFile::open(seg.path);
    if (!m) return m.error();
    bool stop = false;
    split_lines(seg, m->view(), [&](const Line& l) {
      if (!fn(l)) {
        stop = true;
        return false;
      }
      return true;
    });
    if (stop) break;
  }
  return {};
}

namespace {

bool names_torn(const Line& pending, const Line& next) {
  Prefix p;
  if (!parse_prefix(next.text, p) || p.type != "ledger.recovered") return false;
  auto j = nlohmann::json::parse(next.text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return false;
  auto t = j.find("torn");
  if (t == j.end() || !t->is_object()) return false;
  auto off = t->find("offset");
  auto seg = t->find("segment");
  return off != t->end() && off->is_number_unsigned() && off->get<uint64_t>() == pending.offset && seg != t->end() &&
         seg->is_string() && seg->get<std::string>() == pending.segment->name;
}

}  // namespace

bool entries_of(const Segment& seg, std::string_view data, uint64_t first_offset,
                const std::function<bool(const Line&, LineKind)>& fn) {
  Line pending;
  bool have = false, go = true;
  split_lines(seg, data.substr(std::min<uint64_t>(first_offset, data.size())), [&](const Line& l0) {
    Line l = l0;
    l.offset += first_offset;
    if (have) {
      LineKind k = names_torn(pending, l) ? LineKind::recovered_torn
                   : pending.terminated   ? LineKind::leaf
                                          : LineKind::torn_tail;
      if (!fn(pending, k)) return go = false;
    }
    pending = l;
    have = true;
    return true;
  });
  if (go && have) go = fn(pending, pending.terminated ? LineKind::leaf : LineKind::torn_tail);
  return go;
}

Result<void> for_each_entry(const std::vector<Segment>& segments, size_t first_segment, uint64_t first_offset,
                            const std::function<bool(const Line&, LineKind)>& fn) {
  for (size_t i = first_segment; i < segments.size(); i++) {
    auto m = MappedFile::open(segments[i].path);
    if (!m) return m.error();
    if (!entries_of(segments[i], m->view(), i == first_segment ? first_offset : 0, fn)) break;
  }
  return {};
}

}  // namespace gpugate::ledger
