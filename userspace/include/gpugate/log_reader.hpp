// Reading a ledger directory: its segments in order, and each line with
// where it is (segment, line number, offset). Memory-mapped, read-only.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gpugate/merkle.hpp"
#include "gpugate/result.hpp"

namespace gpugate::ledger {

struct Segment {
  uint32_t number = 0;
  std::string name;   // "000001.jsonl", also for a compressed one: the name its records use
  std::string path;   // the file: NAME, or NAME.zst once sealed and compressed
  uint64_t size = 0;  // of its records (a compressed segment's, as its zstd frame declares)
  bool compressed = false;
};

std::string segment_name(uint32_t number);
inline constexpr std::string_view kCompressedSuffix = ".zst";
// The largest segment gpugate reads from a zstd frame: a frame declaring
// more is refused before anything is decompressed.
inline constexpr uint64_t kMaxSegmentBytes = 4ull << 30;

// The segments of DIR in order: NNNNNN.jsonl, or NNNNNN.jsonl.zst for a
// sealed one gpugated compressed. Where both are there (a compression cut
// short), the plain file is the segment. Errors (naming DIR and the fix)
// for a missing or unreadable directory, a file where a directory should
// be, a directory with no segment (unless allow_empty), a name like a
// segment that is not a regular file (a symlink, a FIFO, a device, a
// directory: refused by lstat, never opened), and a compressed segment
// whose frame header is not one gpugated writes.
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

// The records of one segment: a read-only mapping of a plain segment, or
// the decompressed bytes of a compressed one (checked against the frame's
// declared size and its checksum). A plain segment that was compressed
// since it was listed is read from its .zst.
class SegmentBytes {
 public:
  static Result<SegmentBytes> open(const Segment& seg);
  [[nodiscard]] std::string_view view() const { return map_ ? map_->view() : std::string_view(inflated_); }

 private:
  SegmentBytes() = default;
  std::optional<MappedFile> map_;
  std::string inflated_;
};

// The records of a compressed segment read from PATH: exactly one zstd
// frame that declares its size (at most max_bytes), followed by nothing,
// whose checksum holds. Errors name PATH, the reason and the fix.
Result<std::string> decompress_segment(std::string_view path, std::string_view frame,
                                       uint64_t max_bytes = kMaxSegmentBytes);
// One zstd frame of DATA with its size and checksum, as a sealed segment is.
Result<std::string> compress_frame(std::string_view data, int level = 3);

// Replaces PATH in DIR whole: PATH.tmp written, synced, renamed over PATH,
// DIR synced. A failure removes PATH.tmp and says on_failure (what is kept).
Result<void> replace_file_synced(const std::string& dir, const std::string& path, std::string_view bytes,
                                 std::string_view on_failure);

// Compresses sealed segment NUMBER of DIR: NAME.zst.tmp is written, synced,
// read back and compared, renamed to NAME.zst, and only then NAME removed.
// A crash at any point leaves NAME, or NAME.zst whole. Level: zstd's.
Result<void> compress_segment(const std::string& dir, uint32_t number, int level = 3);

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
