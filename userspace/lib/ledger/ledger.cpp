#include "gpugate/ledger.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

namespace gpugate {
namespace {

// The last complete line of an open file, and whether a partial one follows.
struct Tail {
  std::string last_line;
  bool torn = false;
};

Tail read_tail(int fd) {
  Tail t;
  off_t size = lseek(fd, 0, SEEK_END);
  if (size <= 0) return t;
  off_t start = size > 65536 ? size - 65536 : 0;
  std::string buf(static_cast<size_t>(size - start), '\0');
  if (pread(fd, buf.data(), buf.size(), start) != static_cast<ssize_t>(buf.size())) return t;
  if (buf.back() != '\n') {
    t.torn = true;
    auto nl = buf.rfind('\n');
    buf.resize(nl == std::string::npos ? 0 : nl + 1);
  }
  if (buf.empty()) return t;
  buf.pop_back();
  auto nl = buf.rfind('\n');
  t.last_line = nl == std::string::npos ? buf : buf.substr(nl + 1);
  return t;
}

}  // namespace

Result<LedgerWriter> LedgerWriter::open(const std::string& path) {
  std::error_code ec;
  auto dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir, ec);
  int fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0)
    return make_error(fmt::format("ledger {}: {}; choose a writable path with --ledger", path, std::strerror(errno)),
                      errno);
  Tail tail = read_tail(fd);
  uint64_t next = 0;
  std::string note;
  if (!tail.last_line.empty()) {
    auto j = nlohmann::json::parse(tail.last_line, nullptr, false);
    if (j.is_discarded() || !j.contains("seq") || !j["seq"].is_number_unsigned()) {
      ::close(fd);
      return make_error(
          fmt::format("ledger {}: the last line is not a gpugate record; refusing to append to a "
                      "file that is not ours (move it aside or pick another --ledger)",
                      path));
    }
    next = j["seq"].get<uint64_t>() + 1;
  }
  if (tail.torn) {
    note = "the ledger ended in a torn line (a crash during a write); it is kept as found and the next record says so";
    // Terminate the torn line so the next record starts on a line of its own.
    if (::write(fd, "\n", 1) != 1) {
      ::close(fd);
      return make_error(fmt::format("ledger {}: cannot write: {}", path, std::strerror(errno)), errno);
    }
  }
  return LedgerWriter(fd, path, next, note);
}

LedgerWriter::LedgerWriter(LedgerWriter&& o) noexcept
    : fd_(o.fd_),
      path_(std::move(o.path_)),
      next_seq_(o.next_seq_),
      note_(std::move(o.note_)),
      bytes_(o.bytes_),
      buf_(std::move(o.buf_)) {
  o.fd_ = -1;
}

LedgerWriter::~LedgerWriter() {
  if (fd_ >= 0) {
    (void)flush();
    ::close(fd_);
  }
}

Result<uint64_t> LedgerWriter::append_members(std::string_view members) {
  if (buf_.size() > kMaxBuffered) {
    // The disk has refused writes for a while: refuse rather than grow.
    if (auto f = flush(); !f) return f.error();
  }
  buf_.append("{\"seq\":");
  buf_.append(std::to_string(next_seq_));
  if (!members.empty()) buf_.push_back(',');
  buf_.append(members);
  buf_.append("}\n");
  if (buf_.size() >= kFlushBytes) (void)flush();  // on failure the lines stay buffered
  return next_seq_++;
}

Result<void> LedgerWriter::flush() {
  size_t off = 0;
  while (off < buf_.size()) {
    ssize_t n = ::write(fd_, buf_.data() + off, buf_.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      // Keep what was not written: the next flush tries again.
      buf_.erase(0, off);
      return make_error(fmt::format("ledger {}: write failed: {}", path_, std::strerror(errno)), errno);
    }
    off += static_cast<size_t>(n);
  }
  bytes_ += buf_.size();
  buf_.clear();
  return {};
}

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
