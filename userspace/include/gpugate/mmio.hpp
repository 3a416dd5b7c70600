// MMIO evidence: what a GPU driver wrote to its registers, from the kernel's
// mmiotrace (Documentation/trace/mmiotrace.rst), classified by a register
// table of public names (docs/mmio.md). The kernel traces the MMIO of
// mappings a driver makes with ioremap while the tracer is on; a process
// writing through a BAR it mapped itself is not traced (that is why the
// knob gate refuses such mappings: docs/paths.md).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "gpugate/device.hpp"
#include "gpugate/result.hpp"

namespace gpugate::mmio {

// One line of mmiotrace's output.
enum class Op { kVersion, kPciDev, kMap, kUnmap, kRead, kWrite, kMark, kUnknownOp };

struct Event {
  Op op = Op::kMark;
  unsigned width = 0;  // R, W: bytes
  std::string time;    // "secs.usecs" as the trace prints it
  int map_id = -1;     // MAP, UNMAP, R, W: which mapping
  uint64_t phys = 0;   // MAP: where the mapping starts; R, W: the register's physical address
  uint64_t value = 0;  // R, W
  uint64_t len = 0;    // MAP: its length
  std::string text;    // MARK: the text; VERSION: the version
};

// The line parsed; nullopt where it is none of mmiotrace's forms.
std::optional<Event> parse_line(std::string_view line);

// A register, or a range of them, of one device family's BAR, by its public
// name (the header or source it comes from is in `source`).
struct Register {
  uint16_t vendor = 0;
  uint16_t device = 0;  // 0: any device of the vendor
  unsigned bar = 0;
  uint64_t first = 0, last = 0;  // offsets in the BAR, inclusive
  std::string_view name;
  unsigned cls = 0;        // enum gg_class of a write to it
  std::string_view group;  // "power", "clocks", "reset", "thermal", "display mode", ...
  std::string_view source;
};

std::span<const Register> register_table();
// The narrowest entry that holds offset; nullptr where the table has none.
const Register* find_register(uint16_t vendor, uint16_t device, unsigned bar, uint64_t offset);

// A write that landed in a GPU's BAR.
struct Write {
  std::string time;
  std::string gpu;  // PCI address
  unsigned bar = 0;
  uint64_t offset = 0;
  unsigned width = 0;
  uint64_t value = 0;
  const Register* reg = nullptr;
};

// What a trace says, against the GPUs' BARs.
struct Capture {
  std::string version;
  uint64_t lines = 0, malformed = 0, maps = 0, maps_on_gpus = 0, reads = 0, writes = 0, unknown_ops = 0;
  uint64_t lost = 0;          // events the kernel reports it lost ("Lost N events" marks)
  uint64_t gpu_writes = 0;    // writes into a GPU's BAR
  uint64_t named_writes = 0;  // of which to a register the table names
  // The GPU writes one by one, in order: those to a named register (at
  // most max_kept), and the first others (at most max_kept / 8: a driver
  // clearing memory through a BAR writes millions; they are counted in
  // by_register and are in the raw trace).
  std::vector<Write> named;
  std::vector<Write> unnamed;
  bool named_cut = false, unnamed_cut = false;
  std::vector<std::string> marks;
  // (gpu, bar, register name or "", class) -> writes
  std::map<std::tuple<std::string, unsigned, std::string, unsigned>, uint64_t> by_register;
};

// Classifies a whole trace (its text) against the GPUs' memory BARs.
Capture classify(std::string_view trace, const std::vector<PciGpu>& gpus, size_t max_kept = 2048);

// The capture as the mmio.capture record and gpugate mmio's --json carry it.
nlohmann::ordered_json capture_json(const Capture& c);

// Drives the kernel's mmiotrace through tracefs: on, a command run or a
// window waited out, off; returns the trace's text.
struct CaptureOptions {
  std::string tracefs;               // "" finds (or mounts) it
  std::vector<std::string> command;  // run while tracing (a driver load); empty: wait `seconds`
  unsigned seconds = 0;
  unsigned buffer_kb = 65536;  // the trace buffer while capturing (restored after)
  bool progress = true;        // say what it does on stderr
};
struct TraceResult {
  std::string text;
  int command_status = -1;  // the command's exit status, -1 without one
};
Result<TraceResult> capture_trace(const CaptureOptions& opts);

}  // namespace gpugate::mmio
