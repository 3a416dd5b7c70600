#include "gpugate/nonce_store.hpp"

#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "gpugate/request.hpp"

namespace gpugate::auth {
namespace {

constexpr std::string_view kHeader = "gpugate-nonces v1";
constexpr size_t kMaxJournalBytes = 64 * 1024 * 1024;

std::string errno_text(int e) { return std::strerror(e); }

std::string damaged_fix(const std::string& path) {
  return fmt::format(
      "the nonce store is damaged; stop gpugated, move {} aside and start it again (outstanding "
      "nonces then become unknown and are refused, so operators ask for new ones; nothing can be "
      "replayed)",
      path);
}

bool parse_time(std::string_view s, int64_t& out) {
  if (s.empty() || s.size() > 18 || (s.size() > 1 && s[0] == '0')) return false;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  out = v;
  return true;
}

bool valid_nonce(std::string_view n) {
  return n.size() == kNonceHexDigits &&
         std::all_of(n.begin(), n.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// Whether tail could be the start of a record cut short: a prefix of
// "issued <32 hex> <digits> <digits>" or "used <32 hex> <digits>".
bool is_record_prefix(std::string_view tail) {
  auto is_hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); };
  auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  for (std::string_view keyword : {"issued", "used"}) {
    size_t fields = keyword == "issued" ? 2 : 1;
    std::string_view t = tail;
    if (t.size() <= keyword.size()) {
      if (keyword.starts_with(t)) return true;
      continue;
    }
    if (!t.starts_with(keyword) || t[keyword.size()] != ' ') continue;
    t.remove_prefix(keyword.size() + 1);
    size_t n = 0;
    while (n < t.size() && n < kNonceHexDigits && is_hex(t[n])) n++;
    if (n == t.size()) return true;
    if (n < kNonceHexDigits) continue;
    t.remove_prefix(n);
    for (size_t f = 0; f < fields; f++) {
      if (t.empty()) return true;
      if (t[0] != ' ') break;
      t.remove_prefix(1);
      size_t d = 0;
      while (d < t.size() && is_digit(t[d])) d++;
      if (d == t.size()) return true;
      if (d == 0) break;
      t.remove_prefix(d);
    }
  }
  return false;
}

std::vector<std::string_view> split_spaces(std::string_view line) {
  std::vector<std::string_view> out;
  while (true) {
    size_t sp = line.find(' ');
    out.push_back(line.substr(0, sp));
    if (sp == std::string_view::npos) break;
    line.remove_prefix(sp + 1);
  }
  return out;
}

Result<void> write_all(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      return make_error(
          fmt::format("cannot write nonce store {}: {}; check free space and permissions", path, errno_text(errno)),
          errno);
    data.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

Result<void> fsync_dir_of(const std::string& path) {
  // (A literal assigned to a std::string trips g++ 12's bogus -Wrestrict.)
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  const std::string dir = parent.empty() ? std::filesystem::path(".").string() : parent.string();
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return make_error(fmt::format("cannot open directory {}: {}", dir, errno_text(errno)), errno);
  int rc = ::fsync(dfd);
  int e = errno;
  ::close(dfd);
  if (rc != 0) return make_error(fmt::format("cannot fsync directory {}: {}", dir, errno_text(e)), e);
  return {};
}

}  // namespace

NonceStore::NonceStore(NonceStore&& other) noexcept { *this = std::move(other); }

NonceStore& NonceStore::operator=(NonceStore&& other) noexcept {
  if (this != &other) {
    close_fd();
    path_ = std::move(other.path_);
    options_ = other.options_;
    fd_ = std::exchange(other.fd_, -1);
    size_ = other.size_;
    journal_lines_ = other.journal_lines_;
    entries_ = std::move(other.entries_);
    notes_ = std::move(other.notes_);
  }
  return *this;
}

NonceStore::~NonceStore() { close_fd(); }

void NonceStore::close_fd() {
  if (fd_ >= 0) ::close(fd_);  // also drops the lock
  fd_ = -1;
}

Result<NonceStore> NonceStore::open(const std::string& path, int64_t now, NonceStoreOptions options) {
  if (options.ttl_seconds <= 0) return make_error("nonce TTL must be positive");
  NonceStore store;
  store.path_ = path;
  store.options_ = options;
  store.fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (store.fd_ < 0)
    return make_error(fmt::format("cannot open nonce store {}: {}; create its directory or fix its permissions", path,
                                  errno_text(errno)),
                      errno);
  if (::flock(store.fd_, LOCK_EX | LOCK_NB) != 0)
    return make_error(fmt::format("nonce store {} is locked by another process (is a second gpugated running?); "
                                  "stop it first",
                                  path),
                      errno);
  if (auto loaded = store.load(now); !loaded) return loaded.error();
  return store;
}

Result<void> NonceStore::apply(std::string_view line) {
  auto f = split_spaces(line);
  if (f[0] == "issued") {
    Entry e;
    if (f.size() != 4 || !valid_nonce(f[1]) || !parse_time(f[2], e.issued_at) || !parse_time(f[3], e.expires_at) ||
        e.expires_at <= e.issued_at)
      return make_error("not a valid 'issued <nonce> <issued_at> <expires_at>' record");
    if (!entries_.emplace(std::string(f[1]), e).second) return make_error(fmt::format("nonce {} issued twice", f[1]));
  } else if (f[0] == "used") {
    int64_t used_at = 0;
    if (f.size() != 3 || !valid_nonce(f[1]) || !parse_time(f[2], used_at))
      return make_error("not a valid 'used <nonce> <used_at>' record");
    auto it = entries_.find(std::string(f[1]));
    if (it == entries_.end()) return make_error(fmt::format("nonce {} used but never issued", f[1]));
    if (it->second.used_at >= 0) return make_error(fmt::format("nonce {} used twice", f[1]));
    it->second.used_at = used_at;
  } else {
    return make_error(fmt::format("unknown record '{}'", f[0].substr(0, 32)));
  }
  return {};
}

Result<void> NonceStore::load(int64_t now) {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) return make_error(fmt::format("cannot stat {}: {}", path_, errno_text(errno)), errno);
  if (!S_ISREG(st.st_mode)) return make_error(fmt::format("nonce store {} is not a regular file", path_));
  if (static_cast<uint64_t>(st.st_size) > kMaxJournalBytes)
    return make_error(
        fmt::format("{} is {} bytes, far more than a nonce store grows to; {}", path_, st.st_size, damaged_fix(path_)));
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < text.size()) {
    ssize_t n = ::pread(fd_, text.data() + got, text.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return make_error(fmt::format("cannot read nonce store {}: {}", path_, errno_text(errno)), errno);
    got += static_cast<size_t>(n);
  }
  size_t complete = text.rfind('\n');
  complete = complete == std::string::npos ? 0 : complete + 1;
  std::string_view tail = std::string_view(text).substr(complete);
  size_ = complete;

  size_t line_no = 0;
  auto bad = [&](std::string_view why) {
    return make_error(fmt::format("{}:{}: {}; {}", path_, line_no, why, damaged_fix(path_)));
  };
  std::string_view rest = std::string_view(text).substr(0, complete);
  while (!rest.empty()) {
    size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest.remove_prefix(nl + 1);
    line_no++;
    if (line_no == 1) {
      if (line != kHeader) return bad(fmt::format("expected the header '{}'", kHeader));
      continue;
    }
    journal_lines_++;
    if (auto applied = apply(line); !applied) return bad(applied.error().message);
  }

  // The last line has no newline: an append that a crash interrupted. A
  // torn write leaves a prefix of a record; that record was never
  // acknowledged (we fsync before returning), so it is cut off. A complete
  // record that only lacks its newline is kept (a used nonce stays used).
  // Anything else is damage.
  if (!tail.empty()) {
    line_no++;
    bool header = line_no == 1;
    if (!header && apply(tail)) {
      journal_lines_++;
      size_ = text.size();
      notes_.push_back(fmt::format("{}: completed a last record that lacked its newline", path_));
      if (auto w = append("\n"); !w) return w;
      journal_lines_--;  // the newline is not a record
    } else if (header ? kHeader.starts_with(tail) : is_record_prefix(tail)) {
      notes_.push_back(
          fmt::format("{}: dropped a torn last record ({} bytes, from an interrupted write)", path_, tail.size()));
      if (::ftruncate(fd_, static_cast<off_t>(complete)) != 0)
        return make_error(fmt::format("cannot cut the torn end of {}: {}", path_, errno_text(errno)), errno);
    } else {
      return bad("the last line is neither a record nor the start of one (no newline at its end)");
    }
  }
  if (size_ == 0) {
    if (auto w = append(std::string(kHeader) + "\n"); !w) return w;
    journal_lines_ = 0;
    return fsync_dir_of(path_);
  }
  std::erase_if(entries_, [&](const auto& kv) { return kv.second.expires_at <= now; });
  if (journal_lines_ > entries_.size() * 2 + options_.compact_slack) return compact(now);
  return {};
}

Result<void> NonceStore::append(const std::string& line) {
  if (auto w = write_all(fd_, line, path_); !w) {
    // Leave no partial record behind for the next append to run into.
    if (::ftruncate(fd_, static_cast<off_t>(size_)) != 0) {
      // Nothing more to do here; the next open cuts the torn record.
    }
    return w;
  }
  if (::fsync(fd_) != 0)
    return make_error(fmt::format("cannot fsync nonce store {}: {}", path_, errno_text(errno)), errno);
  size_ += line.size();
  journal_lines_++;
  return {};
}

Result<void> NonceStore::compact(int64_t now) {
  std::erase_if(entries_, [&](const auto& kv) { return kv.second.expires_at <= now; });
  std::string tmp = path_ + ".tmp";
  int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return make_error(fmt::format("cannot create {}: {}", tmp, errno_text(errno)), errno);
  // Lock the new file before it takes the journal's name.
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return make_error(fmt::format("cannot lock {}", tmp));
  }
  std::string text = std::string(kHeader) + "\n";
  size_t lines = 0;
  for (const auto& [nonce, e] : entries_) {
    text += fmt::format("issued {} {} {}\n", nonce, e.issued_at, e.expires_at);
    lines++;
    if (e.used_at >= 0) {
      text += fmt::format("used {} {}\n", nonce, e.used_at);
      lines++;
    }
  }
  auto w = write_all(fd, text, tmp);
  if (w && ::fsync(fd) != 0) w = make_error(fmt::format("cannot fsync {}: {}", tmp, errno_text(errno)), errno);
  if (w && ::rename(tmp.c_str(), path_.c_str()) != 0)
    w = make_error(fmt::format("cannot rename {} to {}: {}", tmp, path_, errno_text(errno)), errno);
  if (!w) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return w;
  }
  close_fd();
  fd_ = fd;
  size_ = text.size();
  journal_lines_ = lines;
  return fsync_dir_of(path_);
}

Result<IssuedNonce> NonceStore::issue(int64_t now) {
  std::erase_if(entries_, [&](const auto& kv) { return kv.second.expires_at <= now; });
  if (outstanding(now) >= options_.max_outstanding)
    return make_error(
        fmt::format("{} nonces are outstanding (issued, unused, unexpired), the most allowed; wait "
                    "for some to expire (TTL {} s)",
                    options_.max_outstanding, options_.ttl_seconds));
  uint8_t random[16];
  if (RAND_bytes(random, sizeof(random)) != 1)
    return make_error("the random generator failed; gpugate cannot issue a nonce (is the kernel's entropy pool up?)");
  IssuedNonce out;
  for (uint8_t b : random) out.nonce += fmt::format("{:02x}", b);
  out.issued_at = now;
  out.expires_at = now + options_.ttl_seconds;
  if (journal_lines_ > entries_.size() * 2 + options_.compact_slack)
    if (auto c = compact(now); !c) return c.error();
  if (auto w = append(fmt::format("issued {} {} {}\n", out.nonce, out.issued_at, out.expires_at)); !w) return w.error();
  entries_[out.nonce] = {out.issued_at, out.expires_at, -1};
  return out;
}

Result<void> NonceStore::consume(std::string_view nonce, int64_t now) {
  auto it = entries_.find(std::string(nonce));
  if (it == entries_.end() || it->second.expires_at <= now) {
    if (it != entries_.end())
      return make_error(fmt::format("nonce {} expired at {}{}; ask gpugated for a new nonce and sign a new request",
                                    nonce, format_request_time(it->second.expires_at),
                                    it->second.used_at >= 0 ? " (and was already used)" : ""));
    return make_error(
        fmt::format("nonce {} was not issued by this gpugated, or expired and was forgotten; ask "
                    "gpugated for a new nonce and sign a new request",
                    nonce.substr(0, 64)));
  }
  if (it->second.used_at >= 0)
    return make_error(
        fmt::format("nonce {} was already used at {}: this is a replay, refused; a request "
                    "authorizes one command once, so sign a new request with a new nonce",
                    nonce, format_request_time(it->second.used_at)));
  if (auto w = append(fmt::format("used {} {}\n", nonce, now)); !w) return w;
  it->second.used_at = now;
  return {};
}

NonceStore::State NonceStore::state(std::string_view nonce, int64_t now) const {
  auto it = entries_.find(std::string(nonce));
  if (it == entries_.end()) return State::kUnknown;
  if (it->second.expires_at <= now) return State::kExpired;
  return it->second.used_at >= 0 ? State::kUsed : State::kOutstanding;
}

size_t NonceStore::outstanding(int64_t now) const {
  return static_cast<size_t>(std::count_if(entries_.begin(), entries_.end(), [&](const auto& kv) {
    return kv.second.used_at < 0 && kv.second.expires_at > now;
  }));
}

}  // namespace gpugate::auth
