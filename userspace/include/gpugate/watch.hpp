// The GPU state watcher (issue 12): samples each GPU's power, clocks,
// throttle reasons, modes and PCI state, and matches every change against
// what the ledger recorded. A change no command, grant, allowed reset or
// hardware protection explains is evidence: a state.unexplained record and
// an alert on every sink. docs/watch.md.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "gpugate/device.hpp"
#include "gpugate/result.hpp"

namespace gpugate {
struct CommandSeen;  // gpugate/pipeline.hpp
}

namespace gpugate::watch {

using Json = nlohmann::ordered_json;

// How a field's change is judged.
enum class FieldKind {
  Setting,    // set by a command (a limit, a mode): a change needs a command, a grant or a reset
  Presence,   // the GPU on the bus and powered: a change needs a power-off or reset command
  Throttle,   // the clock-event (throttle) reasons: a new reason is a throttle to attribute
  Telemetry,  // moves with load (clocks, pstate, link speed): kept in samples, never judged
};

struct FieldSpec {
  FieldKind kind = FieldKind::Telemetry;
  std::vector<unsigned> classes;  // GG_CLASS_* of the commands that change it
  std::string what;               // for people
};

// The spec of a field name ("power.limit_mw", "sysfs:hwmon/hwmon2/power1_cap"),
// or nullopt for a name no source produces.
std::optional<FieldSpec> field_spec(const std::string& name);

// NVML's clock-event reason bits (nvml.h nvmlClocksEventReason*), by name.
std::vector<std::string> clock_event_reason_names(uint64_t mask);
// The reasons that are the hardware protecting itself (thermal, power brake,
// HW slowdown): a throttle of those is reported as such, not as unexplained.
bool hardware_protection_reason(const std::string& name);
// A reason that holds the clocks down: the hardware's protections, the power
// cap, and bits this build does not know (not idle, not the operator's own
// application clocks, sync boost or the display).
bool throttle_reason(const std::string& name);
// The class a write to a sampled knob falls in ("hwmon/hwmon2/power1_cap"),
// or nullopt for a knob the watcher does not read.
std::optional<unsigned> sampled_knob_class(std::string_view knob_name);

// One GPU as one source saw it at one instant.
struct GpuSample {
  std::string pci;     // "0000:41:00.0": the key that joins sources and ledger
  std::string uuid;    // where the source knows it
  std::string source;  // "nvml", "sysfs", "gpusim"
  std::map<std::string, Json> values;
  std::vector<Json> events;  // XIDs and the like, since the last sample
};

// Where samples come from. sample() may block (a GPU off the bus can stall
// NVML): the watcher calls it on its own thread.
class StateSource {
 public:
  virtual ~StateSource() = default;
  [[nodiscard]] virtual std::string name() const = 0;
  virtual std::vector<GpuSample> sample() = 0;
};

// NVML through dlopen (libnvidia-ml.so.1, or library for tests). No NVML is
// normal on a host without NVIDIA's driver: the error says so once.
Result<std::unique_ptr<StateSource>> open_nvml(const std::string& library = "libnvidia-ml.so.1");
// The PCI state (present, D-state, link) and the readable knobs of every GPU
// in the table (hwmon caps, amdgpu and Intel levels and frequencies).
std::unique_ptr<StateSource> open_sysfs(std::vector<PciGpu> gpus, std::string sys_root = "/sys");
// The test-only simulated driver's state (/sys/class/gpusim), or nullptr
// where it is not loaded.
std::unique_ptr<StateSource> open_gpusim(const std::string& sys_root = "/sys");

// A change of one field of one GPU between two samples.
// Its implicit members move a nlohmann::json, which does not throw; clang-tidy 14 cannot tell.
struct Change {  // NOLINT(bugprone-exception-escape)
  std::string pci, uuid;
  std::vector<std::string> nodes;  // the GPU's device nodes (/dev/nvidia0, ...)
  std::string field;
  Json before, after;
  uint64_t before_ns = 0, after_ns = 0;  // boottime of the two samples
  int64_t after_realtime_ns = 0;
  std::vector<std::string> reasons;  // the clock-event reasons in force at after_ns
};

struct Explanation {
  // command: an allowed command of the right class on that GPU; grant: a
  // grant for that GPU and class whose window covers the change; reset: a
  // reset the gate allowed; hardware-protection / load-at-power-limit: a
  // throttle the GPU reports as its own; none: nothing explains it.
  std::string kind = "none";
  uint64_t seq = 0;  // the record that explains it
  bool has_seq = false;
  Json detail;      // what the explaining record says (class, verdict, grant, reasons)
  Json candidates;  // what was considered, with why it does not explain the change
  [[nodiscard]] bool explained() const { return kind != "none"; }
};

// Matches changes against the records the ledger holds: pure, so that the
// unit suite drives it with recorded sequences.
class Explainer {
 public:
  // Records of another boot are ignored: boottime starts again at a boot.
  Explainer(uint64_t window_ns, std::string boot_id) : window_ns_(window_ns), boot_id_(std::move(boot_id)) {}
  // Every record the ledger gets (or had, when seeded from its tail); only
  // commands, knob writes and grants of the judged classes are kept.
  void note(const Json& record);
  // A command or knob write as the daemon's pipeline has it, without a
  // record to parse: a flood of judged commands costs no JSON parse.
  struct Entry {
    uint64_t seq = 0;
    std::string type;  // ioctl, knob.write, grant.installed, grant.break_glass
    unsigned cls = 0;
    std::string verdict;
    bool failed = false;  // the driver refused it (ret < 0 or an RM status)
    uint64_t boot_ns = 0;
    std::string boot_id;
    std::string pci;                        // the GPU it targeted, "" where the node names none (nvidiactl)
    std::vector<std::string> keys;          // grant: the names of the GPUs it covers (index, pci, uuid, nodes)
    int64_t not_before = 0, not_after = 0;  // grant window, unix seconds
    int64_t ended = 0;                      // grant: revoked or ended (unix seconds), 0 while live
    uint32_t grant_id = 0;
    std::string what;  // the command or knob, for people
  };
  void note(Entry entry);
  // An ioctl as the pipeline saw it (the daemon's live path): kept exactly
  // as note(record) keeps its ledger record.
  void note_command(const CommandSeen& command);
  Explanation explain(const Change& change) const;
  // Drop what can no longer explain a change seen at or after now_ns.
  void forget_before(uint64_t now_ns);
  [[nodiscard]] uint64_t window_ns() const { return window_ns_; }
  [[nodiscard]] size_t size() const { return entries_.size(); }

 private:
  static Json entry_json(const Entry& e);
  uint64_t window_ns_;
  std::string boot_id_;
  std::deque<Entry> entries_;
  uint64_t next_sweep_ns_ = 0;
};

struct WatchOptions {
  uint64_t interval_ms = 1000;
  uint64_t window_ms = 10000;  // how long before a change a command may have caused it
  // A change is decided this long after it is seen, so that a command whose
  // record is still in the ring (its exit not yet drained) is counted.
  uint64_t settle_ms = 500;
  std::string nvml_library = "libnvidia-ml.so.1";
  std::string sys_root = "/sys";
  std::string boot_id;  // this boot's: records of other boots explain nothing
};

// What the watcher writes: the daemon's pipeline in gpugated (the ledger and
// every human sink), a vector in tests.
using RecordFn = std::function<uint64_t(const std::string& type, Json body)>;  // returns the seq

// The sampling thread, the diff against the last state, and the matcher.
// poll() runs on the daemon's loop: it takes what the thread sampled and
// writes records; the thread never touches the ledger.
class Watcher {
 public:
  Watcher(WatchOptions options, std::vector<std::unique_ptr<StateSource>> sources, std::vector<PciGpu> gpus);
  ~Watcher();
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  // Seed from the ledger's tail: the last state.sample of each GPU (this
  // boot) and the commands and grants still within the window, so that a
  // restart between a command and its change still explains it.
  void seed(const std::vector<Json>& tail);
  void start();
  void stop();
  // Take a sample soon (a judged command was just recorded, a uevent).
  void sample_soon();
  // One round of every source, now, on the caller's thread (gpugate state).
  void sample_now() {
    Taken t = take();
    ingest(t.boot_ns, t.realtime_ns, std::move(t.gpus));
  }
  // What the sampling thread does with each round: tests call it directly
  // with their own samples and times.
  void ingest(uint64_t boot_ns, int64_t realtime_ns, std::vector<GpuSample> gpus);
  // Every record the pipeline writes passes here (the daemon's loop).
  void note(const Json& record);
  // The same for a command the pipeline saw (the live path).
  void note_command(const CommandSeen& command);
  // Take the thread's samples: records for changes, decisions due by now_ns.
  void poll(uint64_t now_ns, const RecordFn& record);

  [[nodiscard]] Json status() const;
  [[nodiscard]] std::vector<std::string> source_names() const;
  [[nodiscard]] uint64_t unexplained() const { return unexplained_; }
  [[nodiscard]] uint64_t explained() const { return explained_; }
  [[nodiscard]] uint64_t samples() const { return samples_taken_; }

 private:
  struct Taken {
    uint64_t boot_ns = 0;
    int64_t realtime_ns = 0;
    std::vector<GpuSample> gpus;
  };
  struct Pending {
    Change change;
    uint64_t sample_seq = 0;
    uint64_t due_ns = 0;
  };
  struct Known {
    std::map<std::string, Json> values;
    uint64_t boot_ns = 0;
    uint64_t seq = 0;
    bool seeded = false;          // values from the previous daemon's last sample
    bool restarted_once = false;  // this daemon has sampled it since
  };
  void run();
  Taken take();
  void handle(const Taken& t, const RecordFn& record);
  void decide(const Pending& p, const RecordFn& record);
  const PciGpu* gpu(const std::string& pci) const;

  WatchOptions options_;
  std::vector<std::unique_ptr<StateSource>> sources_;
  std::vector<PciGpu> gpus_;
  Explainer explainer_;
  std::map<std::string, Known> known_;  // by pci
  std::vector<Pending> pending_;
  uint64_t unexplained_ = 0, explained_ = 0, samples_taken_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false, soon_ = false;
  std::deque<Taken> taken_;
  uint64_t taken_dropped_ = 0;
  std::thread thread_;
};

// The judged-class records (ioctl, knob.write, grants) and state.sample
// records of the ledger's newest max_bytes, oldest first: what seed() needs.
std::vector<Json> ledger_tail(const std::string& dir, uint64_t max_bytes = 4u << 20);

}  // namespace gpugate::watch
