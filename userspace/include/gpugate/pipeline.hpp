// From engine records to ledger lines: joins each ioctl's entry and exit,
// adds process and device context, writes the record and a human line.
#pragma once

#include <algorithm>
#include <array>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "gpugate/decode.hpp"
#include "gpugate/device.hpp"
#include "gpugate/engine.hpp"
#include "gpugate/hostinfo.hpp"
#include "gpugate/json_out.hpp"
#include "gpugate/ledger.hpp"

namespace gpugate {

// Where human-readable lines go (stderr, journald, a test's vector).
using HumanSink = std::function<void(const nlohmann::ordered_json& record, const std::string& line)>;

struct PipelineCounters {
  uint64_t records = 0;  // ioctl records written
  uint64_t unmatched_exits = 0;
  uint64_t exits_missing = 0;  // entries flushed without an exit
  uint64_t gaps = 0;           // gap records written
  uint64_t write_errors = 0;
  uint64_t kernel_seq_gaps = 0;
  uint64_t guard_refusals = 0;  // guard.refused records written
  uint64_t knob_writes = 0;     // knob.write records written
  uint64_t summarized = 0;      // calls of summary-level classes (in ioctl.summary records, written or open)
  uint64_t counted = 0;         // calls of count-level classes (in ioctl.counts records, written or open)
  uint64_t summaries = 0;       // ioctl.summary records written
};

// An ioctl of a judged class as the state watcher needs it, built without
// parsing its record: a flood of denied power-offs must not cost a parse
// each.
struct CommandSeen {
  uint64_t seq = 0;
  uint64_t boot_ns = 0;
  unsigned cls = 0;  // as user space decoded it
  std::string_view verdict;
  uint32_t grant_id = 0;
  std::string_view pci;  // "" where the node names no GPU
  std::string command;
  std::string_view path;  // the device node, "" if unknown
  bool failed = false;    // ret < 0 or an RM status
};

// The calls of one process, node and command at summary level, since the
// last flush.
struct Summary {
  gg_ioctl_enter first{};  // the first call: process, node and command as they were
  uint64_t calls = 0;
  uint64_t first_ns = 0, last_ns = 0;  // boot clock
  uint64_t duration_ns = 0;            // summed over the calls whose exit was seen
  uint64_t raw_sum = 0;                // sum of raw_fingerprint() over the calls
  // Results, most frequent kinds first: kind << 32 | code (0 ok, 1 errno,
  // 2 RM status, 3 no exit seen); at most kMaxResults kinds, the rest in
  // other_results.
  static constexpr size_t kMaxResults = 8;
  std::vector<std::pair<uint64_t, uint64_t>> results;
  uint64_t other_results = 0;
};

// A 64-bit fingerprint of the bytes a call carried (request word and the
// captured argument, XFER and params bytes; FNV-1a). Summaries add them up:
// a sum does not depend on the order, so per-CPU counters can keep it too.
// It identifies, it does not commit: the calls themselves were not written.
uint64_t raw_fingerprint(const gg_raw& raw);

class Pipeline final : public EventHandler {
 public:
  Pipeline(LedgerWriter& ledger, const DeviceTable& devices, HostInfo host, std::string engine, HumanSink sink);

  void on_enter(const gg_ioctl_enter& e) override;
  void on_exit(const gg_ioctl_exit& e) override;
  void on_guard(const gg_guard_event& g) override;
  void on_kmod_config(const gg_kmod_config_event& c) override;
  void on_knob(const gg_knob_event& k) override;

  // Write entries whose exit has not come within max_age (the call is still
  // blocked, or the process died in it): their result is recorded as unknown.
  void flush_stale(uint64_t max_age_ns);
  // Losses of one engine ("bpf", "kmod") already in the ledger (a previous
  // daemon's, when the kernel state was taken over); note_losses reports
  // only what is beyond them.
  void set_loss_baseline(std::string_view source, const EngineStats& recorded) {
    lost_seen_[std::string(source)] = recorded;
  }
  // Compare an engine's loss counters with what was recorded; write a gap
  // record per class for anything newly lost.
  void note_losses(std::string_view source, const EngineStats& stats);
  // Daemon life-cycle records.
  void write_event(const std::string& type, nlohmann::ordered_json body);
  // Records keep the boot clock's order; their wall time is the boot time
  // plus the wall clock's offset. When that offset has stepped (date -s, an
  // NTP step) by at least a second, a clock.jump record says by how much;
  // it is written by the next flush(), after the batch read meanwhile.
  // An event keeps the offset in force when it happened, however late it
  // is written: events up to the boot time the step was seen at keep the
  // old offset, later ones take the new. Returns whether it jumped.
  bool follow_wall_clock();
  // The same with the clocks given (boot time now, wall minus boot time now).
  bool follow_wall_clock(uint64_t boot_now, int64_t offset_now);
  // The wall clock's offset for an event at this boot time.
  [[nodiscard]] int64_t wall_offset_at(uint64_t boot_ns) const;

  [[nodiscard]] const PipelineCounters& counters() const { return counters_; }
  // ioctl records written by class, vendor and verdict (allowed, denied,
  // would-deny): the metrics' gpugate_ioctls_total.
  using IoctlCounts = std::array<std::array<std::array<uint64_t, 3>, GG_VENDOR_COUNT>, GG_CLASS_COUNT>;
  [[nodiscard]] const IoctlCounts& ioctl_counts() const { return ioctl_counts_; }
  [[nodiscard]] size_t pending() const { return pending_.size(); }

  // Where the policy in force came from ("built-in", a file path): records name it.
  void set_policy_source(std::string source) { policy_source_ = std::move(source); }
  // Names of the policy's rules, in order: records name the rule that decided.
  void set_rule_names(std::vector<std::string> names) { rule_names_ = std::move(names); }

  // Sees every record written that can change a GPU's state (commands and
  // knob writes of the judged classes, grants): the state watcher's matcher.
  void set_observer(std::function<void(const nlohmann::ordered_json&)> fn) { observer_ = std::move(fn); }
  // The same for ioctl records, without their JSON; with it set, the
  // observer above sees no ioctl records.
  void set_command_observer(std::function<void(const CommandSeen&)> fn) { command_observer_ = std::move(fn); }

  // How much of each class's traffic is written (RecordConfig::level, by
  // class id) and how often summaries are; all full until set.
  void set_record_levels(const std::array<uint8_t, GG_CLASS_COUNT>& levels, uint64_t interval_ns) {
    record_levels_ = levels;
    summary_interval_ns_ = interval_ns;
  }
  // Has the oldest open summary or count waited an interval (boot clock)?
  // A call an interval after it writes them too, before it is folded in.
  [[nodiscard]] bool summaries_due(uint64_t boot_now) const {
    return window_start_ns_ && boot_now >= window_start_ns_ + summary_interval_ns_;
  }
  // Write an ioctl.summary record per open summary and an ioctl.counts
  // record for the counted classes, and start a new interval. The daemon
  // calls it when due and before it stops or records a crash.
  void flush_summaries();
  [[nodiscard]] size_t open_summaries() const { return summaries_.size(); }
  // At most this many summaries are open: one more writes them all first.
  static constexpr size_t kMaxOpenSummaries = 16384;

  // Write buffered ledger lines out (the daemon calls it after each batch),
  // a clock.jump seen before the batch first.
  Result<void> flush();
  [[nodiscard]] const std::string& ledger_dir() const;
  // Prunes the ledger (LedgerWriter::prune) after writing out what is buffered.
  Result<nlohmann::ordered_json> prune(const ledger::PruneCut& cut);

  // The ledger record for one ioctl (exit may be null), as the members of a
  // JSON object without "seq".
  // With seen, also fills what a command observer gets (but seq).
  std::string build_record(const gg_ioctl_enter& e, const gg_ioctl_exit* x, CommandSeen* seen = nullptr);

 private:
  // What /proc said of a process, kept while the kernel's facts of its
  // calls (the executable's basename, the cgroup) stay the same: a pid
  // reused by another program, or an exec, reads /proc again.
  struct ProcInfo {
    std::string exe;  // "" where /proc names another program, or none
    std::string cgroup;
    std::string kernel_exe_name;
    uint64_t cgroup_id = 0;
  };
  const ProcInfo& proc_info(uint32_t pid, std::string_view kernel_exe_name, uint64_t cgroup_id);
  void track_kernel_seq(bool kmod, uint64_t seq);
  // The process object of a record: what the kernel said and /proc adds.
  void write_process(JsonOut& o, const gg_ioctl_enter& e, bool with_tid);
  // The RM class of the object an NVIDIA control targets, where an alloc
  // this daemon saw named it.
  [[nodiscard]] std::optional<uint32_t> rm_object_class(const gg_ioctl_enter& e) const;
  // gpugate_ioctls_total, by class, vendor and verdict.
  void count_ioctl(const gg_ioctl_enter& e);
  // The recording level of a decided call (gg_record_level_of, with the
  // class user space decodes too).
  [[nodiscard]] unsigned record_level(const gg_ioctl_enter& e) const;
  // A call below full: folded into its summary or its class's count.
  void aggregate(const gg_ioctl_enter& e, const gg_ioctl_exit* x, unsigned level);
  void write_summary(const struct Summary& s);
  void finish(const gg_ioctl_enter& e, const gg_ioctl_exit* x);
  // Append to the ledger and show it; false if the write failed (counted).
  bool emit(nlohmann::ordered_json rec);
  nlohmann::ordered_json base(const std::string& type, uint64_t boot_ns);

  LedgerWriter& ledger_;
  const DeviceTable& devices_;
  HostInfo host_;
  std::string engine_;
  HumanSink sink_;
  std::function<void(const nlohmann::ordered_json&)> observer_;
  std::function<void(const CommandSeen&)> command_observer_;
  int64_t rt_offset_;
  // Offsets replaced by steps: each held for events up to its boot time.
  // Bounded: an event waits for its exit at most flush_stale's age.
  struct OffsetUntil {
    uint64_t boot_until;
    int64_t offset;
  };
  std::vector<OffsetUntil> past_offsets_;
  std::vector<nlohmann::ordered_json> pending_jumps_;  // written by the next flush()
  // Entries waiting for their exit: tid -> slot in a slab that is reused,
  // so the hot path allocates nothing once warm.
  std::unordered_map<uint32_t, size_t> pending_;
  std::vector<gg_ioctl_enter> slots_;
  std::vector<size_t> free_slots_;
  // The wall-clock second last formatted, "2026-11-28T12:00:01."
  int64_t utc_second_ = -1;
  char utc_prefix_[32] = {};
  std::string_view utc(int64_t realtime_ns, char* buf);
  std::unordered_map<uint32_t, ProcInfo> procs_;                  // by pid
  std::map<std::pair<uint64_t, uint32_t>, uint32_t> rm_objects_;  // (pid<<32|client, handle) -> class
  std::map<std::string, EngineStats> lost_seen_;                  // by engine
  // Numbers the kernel skipped: the span seen less the records seen, so two
  // rings read one after the other (the BPF reserve ring first) count none.
  struct SeqTrack {
    uint64_t first = 0, last = 0, count = 0;
    [[nodiscard]] uint64_t missing() const { return count ? last - first + 1 - std::min(count, last - first + 1) : 0; }
  };
  std::array<SeqTrack, 2> kernel_seq_{};  // BPF (or the simulation), the module
  PipelineCounters counters_;
  IoctlCounts ioctl_counts_{};
  std::vector<std::string> rule_names_;
  std::array<uint8_t, GG_CLASS_COUNT> record_levels_{};  // GG_REC_FULL everywhere
  uint64_t summary_interval_ns_ = 60'000'000'000ull;
  uint64_t window_start_ns_ = 0;  // boot time of the oldest open summary or count; 0: none open
  // Open summaries by (pid, node, request word, command, RM object,
  // class): NVIDIA's controls all go through nvidiactl, the object names
  // the GPU.
  struct SummaryKey {
    uint32_t pid, dev, request, command, object, cls;
    bool operator==(const SummaryKey&) const = default;
  };
  struct SummaryKeyHash {
    size_t operator()(const SummaryKey& k) const noexcept;
  };
  std::unordered_map<SummaryKey, size_t, SummaryKeyHash> summary_index_;
  std::vector<struct Summary> summaries_;
  // Count-level calls by class and vendor in the open interval.
  std::array<std::array<uint64_t, GG_VENDOR_COUNT>, GG_CLASS_COUNT> counted_{};
  uint64_t counted_first_ns_ = 0, counted_last_ns_ = 0;
  std::string policy_source_ = "built-in";
};

// "12:00:01.123 nvidia-ctl 195:255 (alias of nvidiactl at /dev/full) pid 42 nvclient: NV2080_... -> ret 0"
std::string human_line(const nlohmann::ordered_json& record);

}  // namespace gpugate
