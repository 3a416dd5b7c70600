// Reading a ledger directory: its segments in order, and each line with
// where it is (segment, line number, offset). Memory-mapped, read-only.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "gpugate/merkle.hpp"
#include "gpugate/result.hpp"

namespace gpugate::ledger {

struct Segment {
  uint32_t number = 0;
  std::string name;  // "000001.jsonl"
  std::string path;
  uint64_t size = 0;
};

std::string segment_name(uint32_t number);

// The segments of DIR in order. Errors (naming DIR and the fix) for a
// missing or unreadable directory, a file where a directory should be, a
// directory with no segment (unless allow_empty), and a name like a segment
// that is not a regular file (a symlink, a FIFO, a device, a directory): it
// is refused by lstat, never opened.
Result<std::vector<Segment>> list_segments(const std::string& dir, bool allow_empty = false);

// The whole of a file a user named (a checkpoint, a key, a proof): links
// are followed, but it must be a regular file of at most max_bytes. Opened
// with O_NONBLOCK and checked with fstat, so a FIFO or a device is an error
// naming WHAT, the path and FIX, never a wait.
Result<std::string> read_regular_file(const std::string& path, size_t max_bytes, std::string_view what,
                                      std::string_view fix);

// A read-only mapping of a whole regular file (RAII). Opened with O_NOFOLLOW
// and O_NONBLOCK and checked with fstat: a symlink, a FIFO or any other
// non-regular file is an error naming it and the fix, and never blocks.
class MappedFile {
 public:
  static Result<MappedFile> open(const std::string& path);
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  ~MappedFile();
  [[nodiscard]] std::string_view view() const { return {data_, size_}; }

 private:
  MappedFile() = default;
  const char* data_ = nullptr;
  size_t size_ = 0;
};

// The fixed start of every record: {"seq":N,"prev":"16 hex",...,"type":"T"
// (prev is optional for records written by hand or by tests).
struct Prefix {
  uint64_t seq = 0;
  std::string_view prev;  // 16 hex digits, or empty
  std::string_view type;  // empty when the type is not the next member
};
bool parse_prefix(std::string_view line, Prefix& out);

// prev of a record: the first 8 bytes of the previous leaf hash, in hex.
std::string prev_text(const merkle::Hash& leaf);

struct Line {
  const Segment* segment = nullptr;
  uint64_t lineno = 0;     // 1-based, within the segment
  uint64_t offset = 0;     // byte offset within the segment
  std::string_view text;   // without the newline
  bool terminated = true;  // false: the segment ends without a newline here
};

// How far a long read (log verify, log export) has got, for a progress line.
// Called every kProgressEvery leaves and once at the end; the caller decides
// how often to draw it.
struct Progress {
  uint64_t records = 0;      // leaves read so far
  uint64_t bytes = 0;        // bytes of the segments read so far
  uint64_t total_bytes = 0;  // of all segments
  bool done = false;         // the last call
};
using ProgressFn = std::function<void(const Progress&)>;
inline constexpr uint64_t kProgressEvery = 1024;

// Calls fn for each line of each segment in order; fn returns false to stop.
Result<void> for_each_line(const std::vector<Segment>& segments, const std::function<bool(const Line&)>& fn);

// What a line is to the Merkle tree. Every complete line is a leaf, except a
// torn line (a crash cut a write short; the writer terminated it at its next
// start) named by the "ledger.recovered" record right after it.
enum class LineKind {
  leaf,
  recovered_torn,  // named by the next line's ledger.recovered record: not a leaf
  torn_tail,       // the segment ends without a newline: not a leaf
};

// Lines of segments[first_segment...] from first_offset on, with their kind.
Result<void> for_each_entry(const std::vector<Segment>& segments, size_t first_segment, uint64_t first_offset,
                            const std::function<bool(const Line&, LineKind)>& fn);
// The same over one buffer (fuzzing, tests); returns false if fn stopped.
bool entries_of(const Segment& seg, std::string_view data, uint64_t first_offset,
                const std::function<bool(const Line&, LineKind)>& fn);

// Lines of one buffer (fuzzing, tests).
void split_lines(const Segment& seg, std::string_view data, const std::function<bool(const Line&)>& fn);

}  // namespace gpugate::ledger
