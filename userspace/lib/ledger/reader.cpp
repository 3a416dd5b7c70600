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
#include <zstd.h>
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

constexpr std::string_view kNotOurs =
    "gpugated writes one zstd frame of a sealed segment: restore the file from a copy (or from the host that "
    "shipped it), or move it aside and let log verify report the segment missing";

// The size a compressed segment declares in its frame header, read without
// decompressing anything.
Result<uint64_t> compressed_size_of(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  if (!fd) return make_error(fmt::format("{}: cannot open: {}", path, std::strerror(errno)), errno);
  char head[18];  // ZSTD_FRAMEHEADERSIZE_MAX, which zstd.h shows only to static linking
  ssize_t n = ::pread(fd.get(), head, sizeof(head), 0);
  if (n < 0) return make_error(fmt::format("{}: cannot read: {}", path, std::strerror(errno)), errno);
  unsigned long long size = ZSTD_getFrameContentSize(head, static_cast<size_t>(n));
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN)
    return make_error(fmt::format("{}: not a zstd frame that declares its size; {}", path, kNotOurs));
  if (size > kMaxSegmentBytes)
    return make_error(fmt::format("{}: declares {} bytes, more than a segment can hold ({} bytes); {}", path, size,
                                  kMaxSegmentBytes, kNotOurs));
  return static_cast<uint64_t>(size);
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
    bool compressed = name.ends_with(".jsonl.zst");
    if (compressed) name.resize(name.size() - kCompressedSuffix.size());
    if (name.size() < 12 || !name.ends_with(".jsonl")) continue;
    std::string_view digits(name.data(), name.size() - 6);
    if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
    uint32_t n = 0;
    auto r = std::from_chars(digits.data(), digits.data() + digits.size(), n);
    if (r.ec != std::errc() || n == 0) continue;
    Segment s;
    s.number = n;
    s.name = name;
    s.compressed = compressed;
    s.path = (fs::path(dir) / (compressed ? name + std::string(kCompressedSuffix) : name)).string();
    std::string file = fs::path(s.path).filename().string();
    // lstat: a symlink or a FIFO named like a segment is refused here, before
    // anything opens it (opening a FIFO would block, a device could act).
    struct stat lst {};
    if (::lstat(s.path.c_str(), &lst) != 0) {
      // Compressed and removed between the listing and here: the other name has it.
      if (errno == ENOENT) continue;
      return make_error(fmt::format("ledger {}: {}: cannot stat: {}; run as a user who can read the ledger", dir, file,
                                    std::strerror(errno)),
                        errno);
    }
    if (!S_ISREG(lst.st_mode)) return make_error(not_regular(dir, file, lst.st_mode));
    s.size = static_cast<uint64_t>(lst.st_size);
    if (compressed) {
      auto declared = compressed_size_of(s.path);
      if (!declared) return make_error(fmt::format("ledger {}: {}", dir, declared.error().message));
      s.size = *declared;
    }
    out.push_back(std::move(s));
  }
  if (out.empty() && !allow_empty)
    return make_error(
        fmt::format("ledger {}: no segments (000001.jsonl, ...): not a gpugate ledger directory, or "
                    "an empty one; pass the directory gpugated writes (--ledger)",
                    dir));
  // A plain segment and its .zst (a compression cut short): the plain one is
  // the segment until the compression is finished.
  std::sort(out.begin(), out.end(), [](const Segment& a, const Segment& b) {
    return a.number != b.number ? a.number < b.number : !a.compressed && b.compressed;
  });
  out.erase(
      std::unique(out.begin(), out.end(), [](const Segment& a, const Segment& b) { return a.number == b.number; }),
      out.end());
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

Result<std::string> decompress_segment(std::string_view path, std::string_view frame, uint64_t max_bytes) {
  unsigned long long size = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN)
    return make_error(fmt::format("{}: not a zstd frame that declares its size; {}", path, kNotOurs));
  if (size > max_bytes)
    return make_error(fmt::format("{}: declares {} bytes, more than a segment can hold ({} bytes); {}", path, size,
                                  max_bytes, kNotOurs));
  size_t frame_bytes = ZSTD_findFrameCompressedSize(frame.data(), frame.size());
  if (ZSTD_isError(frame_bytes))
    return make_error(fmt::format("{}: the zstd frame is cut short or damaged ({}); {}", path,
                                  ZSTD_getErrorName(frame_bytes), kNotOurs));
  if (frame_bytes != frame.size())
    return make_error(
        fmt::format("{}: {} bytes follow the zstd frame; {}", path, frame.size() - frame_bytes, kNotOurs));
  std::string out(static_cast<size_t>(size), '\0');
  size_t got = ZSTD_decompress(out.data(), out.size(), frame.data(), frame.size());
  if (ZSTD_isError(got))
    return make_error(fmt::format("{}: cannot decompress: {}; {}", path, ZSTD_getErrorName(got), kNotOurs));
  if (got != out.size())
    return make_error(
        fmt::format("{}: the frame holds {} bytes, not the {} it declares; {}", path, got, out.size(), kNotOurs));
  return out;
}

Result<std::string> compress_frame(std::string_view data, int level) {
  std::string frame(ZSTD_compressBound(data.size()), '\0');
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
  if (!cctx) return make_error("cannot compress: out of memory", ENOMEM);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 1);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_contentSizeFlag, 1);
  size_t n = ZSTD_compress2(cctx.get(), frame.data(), frame.size(), data.data(), data.size());
  if (ZSTD_isError(n)) return make_error(fmt::format("cannot compress: {}", ZSTD_getErrorName(n)));
  frame.resize(n);
  return frame;
}

Result<SegmentBytes> SegmentBytes::open(const Segment& seg) {
  SegmentBytes out;
  std::string path = seg.path;
  bool compressed = seg.compressed;
  auto m = MappedFile::open(path);
  if (!m && !compressed && m.error().code == ENOENT) {
    // Sealed and compressed since it was listed.
    path += kCompressedSuffix;
    compressed = true;
    m = MappedFile::open(path);
  }
  if (!m) return m.error();
  if (!compressed) {
    out.map_ = std::move(*m);
    return out;
  }
  auto text = decompress_segment(path, m->view());
  if (!text) return text.error();
  out.inflated_ = std::move(*text);
  return out;
}

Result<void> replace_file_synced(const std::string& dir, const std::string& path, std::string_view bytes,
                                 std::string_view on_failure) {
  std::string tmp = path + ".tmp";
  auto failed = [&](std::string_view what, int e) {
    ::unlink(tmp.c_str());
    return make_error(fmt::format("{}: cannot {}: {}; {}", tmp, what, std::strerror(e), on_failure), e);
  };
  UniqueFd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640));
  if (!out) return make_error(fmt::format("{}: cannot create: {}; {}", tmp, std::strerror(errno), on_failure), errno);
  for (size_t off = 0; off < bytes.size();) {
    ssize_t w = ::write(out.get(), bytes.data() + off, bytes.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return failed("write", errno);
    off += static_cast<size_t>(w);
  }
  if (::fsync(out.get()) != 0) return failed("sync", errno);
  out.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    return failed(fmt::format("rename to {}", path), e);
  }
  UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd) ::fsync(dfd.get());
  return {};
}

Result<void> compress_segment(const std::string& dir, uint32_t number, int level) {
  std::string plain = (fs::path(dir) / segment_name(number)).string();
  std::string packed = plain + std::string(kCompressedSuffix);
  std::string tmp = packed + ".tmp";
  auto m = MappedFile::open(plain);
  if (!m) return m.error();
  std::string_view data = m->view();
  auto packed_bytes = compress_frame(data, level);
  if (!packed_bytes) return make_error(fmt::format("{}: {}", plain, packed_bytes.error().message));
  const std::string& frame = *packed_bytes;
  // Read back before the plain file goes: what is removed must be in the frame.
  auto back = decompress_segment(tmp, frame);
  if (!back || *back != data)
    return make_error(
        fmt::format("{}: the compressed copy does not read back as the segment; the segment is kept", plain));
  // The frame is on disk under its name before the plain file goes.
  if (auto w = replace_file_synced(dir, packed, frame, "the segment is kept as it is"); !w) return w;
  UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (::unlink(plain.c_str()) != 0)
    return make_error(fmt::format("{}: cannot remove after compressing: {}", plain, std::strerror(errno)), errno);
  if (dfd) ::fsync(dfd.get());
  return {};
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
    auto m = SegmentBytes::open(seg);
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
    auto m = SegmentBytes::open(segments[i]);
    if (!m) return m.error();
    if (!entries_of(segments[i], m->view(), i == first_segment ? first_offset : 0, fn)) break;
  }
  return {};
}

}  // namespace gpugate::ledger
