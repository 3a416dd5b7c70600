// The collector directory destination (--to dir:PATH):
//   PATH/<host-id>/records.jsonl                  the records, byte for byte, appended
//   PATH/<host-id>/checkpoints/<size>.checkpoint  each signed checkpoint, written atomically
//   PATH/<host-id>/checkpoints/<size>.cosigned    with --witness: it with the witness's cosignature
// The collector's own next seq is the last line's seq + 1, so a batch sent
// again after a crash is skipped where it overlaps, never stored twice.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <fmt/format.h>

#include "gpugate/log_reader.hpp"
#include "gpugate/ship.hpp"
#include "gpugate/unique_fd.hpp"

namespace gpugate::ship {

Result<void> write_file_atomic(const std::string& path, std::string_view data, mode_t mode);

namespace {

namespace fs = std::filesystem;

// I/O trouble at the collector (full, unmounted, read-only): worth a retry.
Error transient(std::string msg) { return make_error(std::move(msg), EAGAIN); }

class DirDestination final : public Destination {
 public:
  explicit DirDestination(std::string root) : root_(std::move(root)) {}

  [[nodiscard]] std::string name() const override { return "dir:" + root_; }

  Result<void> begin(const std::string& host_id) override {
    fd_.reset();
    host_dir_ = (fs::path(root_) / host_id).string();
    records_ = (fs::path(host_dir_) / "records.jsonl").string();
    std::error_code ec;
    fs::create_directories(fs::path(host_dir_) / "checkpoints", ec);
    if (ec)
      return transient(
          fmt::format("collector {}: cannot create {}/checkpoints: {}; mount the collector, or fix its "
                      "permissions",
                      root_, host_dir_, ec.message()));
    UniqueFd fd(::open(records_.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
    if (!fd) return transient(fmt::format("collector {}: cannot open: {}", records_, std::strerror(errno)));
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return transient(fmt::format("{}: {}", records_, std::strerror(errno)));
    auto tail = read_tail(fd.get(), static_cast<uint64_t>(st.st_size));
    if (!tail) return tail.error();
    fd_ = std::move(fd);
    return {};
  }

  Result<void> send_records(uint64_t first_seq, std::span<const std::string> lines) override {
    if (first_seq > next_seq_)
      return make_error(fmt::format(
          "collector {} holds records up to seq {}, but seq {} is next to ship: the collector lost records, or "
          "the state file belongs to another copy; restore the collector, or move the state file aside to ship "
          "from seq 0 again (the collector skips what it holds)",
          records_, static_cast<int64_t>(next_seq_) - 1, first_seq));
    size_t skip = static_cast<size_t>(std::min<uint64_t>(next_seq_ - first_seq, lines.size()));
    // The overlap was shipped before: the collector's last line must be the ledger's.
    if (skip > 0 && next_seq_ - 1 < first_seq + lines.size() && lines[skip - 1] != last_line_)
      return make_error(
          fmt::format("collector {}: its record seq {} differs from the ledger's: one of the two was "
                      "changed; keep both and compare them",
                      records_, next_seq_ - 1));
    std::string buf;
    for (size_t i = skip; i < lines.size(); i++) {
      buf += lines[i];
      buf += '\n';
    }
    std::string_view rest = buf;
    while (!rest.empty()) {
      ssize_t n = ::write(fd_.get(), rest.data(), rest.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return transient(fmt::format("collector {}: cannot write: {}", records_, std::strerror(errno)));
      rest.remove_prefix(static_cast<size_t>(n));
    }
    if (::fdatasync(fd_.get()) != 0)
      return transient(fmt::format("collector {}: fdatasync: {}", records_, std::strerror(errno)));
    if (skip < lines.size()) {
      next_seq_ = first_seq + lines.size();
      last_line_ = lines.back();
    }
    return {};
  }

  Result<void> send_checkpoint(uint64_t size, const std::string& note) override {
    std::string path = (fs::path(host_dir_) / "checkpoints" / fmt::format("{}.checkpoint", size)).string();
    std::ifstream in(path, std::ios::binary);
    if (in) {
      std::string have{std::istreambuf_iterator<char>(in), {}};
      if (have == note) return {};
      return make_error(
          fmt::format("collector {}: holds a different checkpoint of size {}: the host signed two "
                      "different logs (re-signed or forked); keep both as evidence",
                      path, size));
    }
    auto w = write_file_atomic(path, note, 0640);
    if (!w) return transient("collector " + w.error().message);
    return {};
  }

  Result<std::string> store_cosigned(uint64_t size, const std::string& note) override {
    std::string path = (fs::path(host_dir_) / "checkpoints" / fmt::format("{}.cosigned", size)).string();
    auto w = write_file_atomic(path, note, 0640);
    if (!w) return transient("collector " + w.error().message);
    return path;
  }

 private:
  // The collector's last record: its seq is where this collector stands. A
  // torn last line is our own unacknowledged write cut short: cut it off.
  Result<void> read_tail(int fd, uint64_t size) {
    next_seq_ = 0;
    last_line_.clear();
    if (size == 0) return {};
    // Read backwards until the last complete line is whole in data = file[from, size).
    std::string data;
    uint64_t from = size;
    while (from > 0) {
      uint64_t chunk = std::min<uint64_t>(from, 65536);
      from -= chunk;
      std::string part(chunk, '\0');
      if (::pread(fd, part.data(), chunk, static_cast<off_t>(from)) != static_cast<ssize_t>(chunk))
        return transient(fmt::format("collector {}: cannot read: {}", records_, std::strerror(errno)));
      data.insert(0, part);
      size_t nl = data.rfind('\n');
      if (nl != std::string::npos && nl > 0 && data.rfind('\n', nl - 1) != std::string::npos) break;
    }
    size_t last_nl = data.rfind('\n');  // npos only when from == 0: no complete line at all
    uint64_t keep = last_nl == std::string::npos ? 0 : from + last_nl + 1;
    if (keep < size) {
      if (::ftruncate(fd, static_cast<off_t>(keep)) != 0 || ::fdatasync(fd) != 0)
        return transient(
            fmt::format("collector {}: cannot cut off a torn last line: {}", records_, std::strerror(errno)));
    }
    if (keep == 0) return {};
    size_t start = last_nl == 0 ? std::string::npos : data.rfind('\n', last_nl - 1);
    start = start == std::string::npos ? 0 : start + 1;
    last_line_ = data.substr(start, last_nl - start);
    ledger::Prefix p;
    if (!ledger::parse_prefix(last_line_, p))
      return make_error(
          fmt::format("collector {}: its last line is not a gpugate record; it holds something else: "
                      "move it aside, or pick another collector directory",
                      records_));
    next_seq_ = p.seq + 1;
    return {};
  }

  std::string root_, host_dir_, records_;
  UniqueFd fd_;
  uint64_t next_seq_ = 0;
  std::string last_line_;
};

}  // namespace

std::unique_ptr<Destination> dir_destination(const std::string& path) { return std::make_unique<DirDestination>(path); }

}  // namespace gpugate::ship
