#include "gpugate/daemon.hpp"

#include <grp.h>
#include <poll.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "gpugate/bpf_engine.hpp"
#include "gpugate/control_plane.hpp"
#include "gpugate/gate_upkeep.hpp"
#include "gpugate/kmod_engine.hpp"
#include "gpugate/ledger_health.hpp"
#include "gpugate/log_reader.hpp"
#include "gpugate/metrics.hpp"
#include "gpugate/paths.hpp"
#include "gpugate/pci.hpp"
#include "gpugate/pipeline.hpp"
#include "gpugate/policy.hpp"
#include "gpugate/service.hpp"
#include "gpugate/ship.hpp"
#include "gpugate/sim_engine.hpp"
#include "gpugate/status.hpp"
#include "gpugate/unique_fd.hpp"
#include "gpugate/watch.hpp"

namespace gpugate {

const char* const kDaemonVersion = "0.2.0";
volatile std::sig_atomic_t g_daemon_stop = 0;

namespace {

// A timer on the wall clock that the kernel cancels when the clock is set
// (date -s, an NTP step): it wakes the loop at the step, so the boundary
// between the old and the new offset is the moment of the step, not the
// next tick. An invalid fd where timerfd is refused: the tick still looks.
UniqueFd arm_clock_step_timer(UniqueFd fd = UniqueFd()) {
  if (!fd) fd.reset(timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!fd) return fd;
  itimerspec far{};
  far.it_value.tv_sec = std::numeric_limits<time_t>::max() / 2;
  if (timerfd_settime(fd.get(), TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &far, nullptr) != 0) fd.reset();
  return fd;
}

using Json = nlohmann::ordered_json;

Json counters_json(const EngineStats& s) {
  Json j;
  for (unsigned c = 0; c < GG_CLASS_COUNT; c++) {
    const auto& pc = s.per_class[c];
    if (!pc.seen && !pc.dropped && !pc.exit_dropped) continue;
    j[std::string(class_name(c))] = {
        {"seen", pc.seen}, {"dropped", pc.dropped}, {"exit_dropped", pc.exit_dropped}, {"no_state", pc.no_state}};
  }
  return j.is_null() ? Json::object() : j;
}

EngineStats sum(const EngineStats& a, const EngineStats& b) {
  EngineStats s = a;
  for (unsigned c = 0; c < GG_CLASS_COUNT; c++) {
    s.per_class[c].seen += b.per_class[c].seen;
    s.per_class[c].dropped += b.per_class[c].dropped;
    s.per_class[c].exit_dropped += b.per_class[c].exit_dropped;
    s.per_class[c].no_state += b.per_class[c].no_state;
  }
  s.fd_lookup_faults += b.fd_lookup_faults;
  s.guard_dropped += b.guard_dropped;
  return s;
}

// The mode in force where it matters most: the strongest of the engines'
// (BPF may only observe while gpugate.ko enforces).
unsigned gate_mode(const std::vector<Engine*>& engines) {
  unsigned m = GG_MODE_OBSERVE;
  for (auto* e : engines) m = std::max(m, e->mode());
  return m;
}

HumanSink make_sink(const DaemonOptions& o) {
  if (o.quiet) return nullptr;
  if (o.journald) {
    return [](const Json& rec, const std::string& line) {
      auto fields = journal_fields(rec, line);
      std::vector<iovec> iov;
      iov.reserve(fields.size());
      for (auto& f : fields) iov.push_back({f.data(), f.size()});
      sd_journal_sendv(iov.data(), static_cast<int>(iov.size()));
    };
  }
  return [](const Json&, const std::string& line) {
    std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
  };
}

// --ledger-max-gib and --ledger-shipped.
Result<LedgerBudget> ledger_budget(const DaemonOptions& o, const std::string& host_id) {
  LedgerBudget b;
  if (o.ledger_max_gib <= 0) {
    if (!o.ledger_shipped.empty())
      return make_error("--ledger-shipped: only the size budget prunes, and none is set; add --ledger-max-gib GIB");
    return b;
  }
  b.max_bytes = static_cast<uint64_t>(o.ledger_max_gib * static_cast<double>(1ull << 30));
  // The newest sealed segment and the open one always stay, and the open
  // one grows to a segment before it seals.
  uint64_t least = 3 * (o.segment_mib << 20);
  if (b.max_bytes < least)
    return make_error(
        fmt::format("--ledger-max-gib {}: less than three segments ({} MiB with --ledger-segment-mib "
                    "{}), and the two newest always stay; raise it, or choose smaller segments",
                    o.ledger_max_gib, least >> 20, o.segment_mib));
  if (!o.ledger_shipped.empty())
    b.shipped_before = [paths = o.ledger_shipped, host_id](uint64_t next_seq) {
      return ship::shipped_before(paths, host_id, next_seq);
    };
  return b;
}

// The ledger with the host's log key (created at first start in --state-dir).
Result<LedgerWriter> open_ledger(const DaemonOptions& o, const HostInfo& host) {
  auto budget = ledger_budget(o, host.host_id);
  if (!budget) return budget.error();
  auto key = tlog::LogKey::load_or_create(o.state_dir, ledger_origin(host.host_id));
  if (!key) return key.error();
  LedgerOptions lo;
  lo.budget = std::move(*budget);
  bool compress = o.ledger_compress == "on";
  if (compress && (o.segment_mib << 20) > ledger::kMaxSegmentBytes)
    return make_error(
        fmt::format("--ledger-segment-mib {}: a compressed segment is read whole, so with "
                    "--ledger-compress on a segment is at most {} MiB; choose a smaller size or "
                    "--ledger-compress off",
                    o.segment_mib, ledger::kMaxSegmentBytes >> 20));
  lo.compress_sealed = compress;
  lo.segment_bytes = o.segment_mib << 20;
  lo.checkpoint_records = o.checkpoint_records;
  lo.checkpoint_ms = o.checkpoint_ms;
  lo.fsync = *parse_fsync_policy(o.ledger_fsync);
  lo.key = std::make_shared<const tlog::LogKey>(std::move(*key));
  lo.host_id = host.host_id;
  lo.boot_id = host.boot_id;
  return LedgerWriter::open(o.ledger, lo);
}

std::optional<gid_t> group_id(const std::string& name) {
  if (!name.empty() && name.find_first_not_of("0123456789") == std::string::npos)
    return static_cast<gid_t>(std::stoul(name));
  struct group* g = ::getgrnam(name.c_str());
  if (!g) return std::nullopt;
  return g->gr_gid;
}

// GPUGATE_FAULT_INJECT=WHERE:N: the N at which to fail at WHERE, 0 if not asked.
uint64_t fault_injection(std::string_view where) {
  const char* spec = std::getenv("GPUGATE_FAULT_INJECT");
  if (!spec) return 0;
  std::string_view s(spec);
  if (!s.starts_with(where) || s.size() <= where.size() + 1 || s[where.size()] != ':') return 0;
  return std::strtoull(std::string(s.substr(where.size() + 1)).c_str(), nullptr, 10);
}

// The crash of an earlier daemon, as it left it (STATE_DIR/last-crash), and
// gone once read: the next start's gap record names it.
std::optional<Json> take_last_crash(const std::string& state_dir) {
  std::string path = state_dir + "/last-crash";
  std::ifstream in(path);
  if (!in) return std::nullopt;
  auto j = Json::parse(in, nullptr, false);
  std::filesystem::remove(path);
  if (j.is_discarded() || !j.is_object()) return Json{{"note", "an unreadable crash note was left"}};
  return j;
}

// What this daemon last knew of gpugate.ko (STATE_DIR/kmod-state): a module
// that held the gate and is gone or replaced without --unload was removed
// by force (rmmod -f) or the host rebooted; the next start says which.
Json read_kmod_note(const std::string& state_dir) {
  std::ifstream in(state_dir + "/kmod-state");
  if (!in) return Json::object();
  auto j = Json::parse(in, nullptr, false);
  return j.is_object() ? j : Json::object();
}

void write_kmod_note(const std::string& state_dir, const Json& note) {
  std::ofstream(state_dir + "/kmod-state") << note.dump() << "\n";
}

void check_kmod_removal(Pipeline& pipeline, const Json& last, const HostInfo& host, const KmodEngine* kmod) {
  if (!last.value("held", false) || last.value("boot_id", std::string()) != host.boot_id) return;
  uint64_t before = last.value("instance", uint64_t{0});
  if (kmod && kmod->hello().instance == before) return;
  pipeline.write_event(
      "alarm", {{"what", "kmod-removed"},
                {"previous_instance", fmt::format("{:016x}", before)},
                {"current_instance", kmod ? Json(fmt::format("{:016x}", kmod->hello().instance)) : Json(nullptr)},
                {"detail", kmod ? "gpugate.ko was unloaded without gpugated --unload while it held the gate, and "
                                  "loaded again: while it was gone nothing decided on the drivers' copies"
                                : "gpugate.ko held the gate and is gone without gpugated --unload (rmmod -f, or a "
                                  "module unload forced some other way): the module gate is not running"}});
}

Json hook_json(const HookStatus& h) {
  Json j{{"hook", h.name}, {"attached", h.attached}, {"detail", h.detail}};
  if (!h.needed) j["needed"] = false;
  return j;
}

void print_selftest(const DaemonOptions& o, const std::vector<Engine*>& engines, const std::vector<HookStatus>& hooks,
                    const DeviceTable& devices, const LedgerWriter& ledger, const Json& watch) {
  Json j;
  j["version"] = kDaemonVersion;
  j["engines"] = Json::array();
  for (auto* e : engines) j["engines"].push_back({{"engine", e->name()}, {"mode", mode_name(e->mode())}});
  j["engine"] = engines.front()->name();
  j["mode"] = mode_name(gate_mode(engines));
  j["hooks"] = Json::array();
  for (const auto& h : hooks) j["hooks"].push_back(hook_json(h));
  j["devices"] = devices_json(devices);
  j["ledger"] = ledger.path();
  j["ledger_next_seq"] = ledger.next_seq();
  j["watch"] = watch;
  if (o.json) {
    std::printf("%s\n", j.dump().c_str());
    std::fflush(stdout);
    return;
  }
  if (o.quiet) {
    // Quiet: the self-test is in the daemon.start record; only a needed hook
    // that failed is said.
    for (const auto& h : hooks)
      if (!h.attached && h.needed)
        std::fprintf(stderr, "gpugated: hook %s FAILED: %s\n", h.name.c_str(), h.detail.c_str());
    std::fflush(stderr);
    return;
  }
  std::fprintf(stderr, "gpugated %s self-test\n", kDaemonVersion);
  for (auto* e : engines) {
    const char* what = e->mode() == GG_MODE_ENFORCE   ? "gated commands without a grant are denied"
                       : e->mode() == GG_MODE_MONITOR ? "gated commands pass, recorded as would-deny"
                                                      : "records every GPU ioctl; cannot block here";
    std::fprintf(stderr, "  engine    %s, mode %s (%s)\n", std::string(e->name()).c_str(),
                 std::string(mode_name(e->mode())).c_str(), what);
  }
  for (const auto& h : hooks)
    std::fprintf(stderr, "  hook      %-30s %s  %s\n", h.name.c_str(),
                 h.attached ? "attached" : (h.needed ? "FAILED  " : "unneeded"), h.detail.c_str());
  if (devices.empty())
    std::fprintf(stderr, "  devices   none found: no GPU nodes here; add --device PATH=VENDOR to watch a stand-in\n");
  for (const auto& d : devices.devices())
    std::fprintf(stderr, "  device    %-22s %-8s %-15s %s\n", d.path.c_str(), d.rdev_string().c_str(),
                 std::string(dev_kind_name(d.info.kind)).c_str(),
                 d.alias() ? fmt::format("alias of {}", d.alias_of).c_str() : d.driver.c_str());
  std::fprintf(stderr, "  ledger    %s (next seq %llu; checkpoint every %llu records or %llu ms; fsync %s)\n",
               ledger.path().c_str(), static_cast<unsigned long long>(ledger.next_seq()),
               static_cast<unsigned long long>(o.checkpoint_records), static_cast<unsigned long long>(o.checkpoint_ms),
               o.ledger_fsync.c_str());
  std::fprintf(stderr, "  log key   %s (%s/log-key.pub)\n", ledger.key_text().c_str(), o.state_dir.c_str());
  if (!ledger.open_note().empty()) std::fprintf(stderr, "  note      %s\n", ledger.open_note().c_str());
  if (watch.is_null()) {
    std::fprintf(stderr, "  watch     off (--watch on samples the GPUs' state)\n");
  } else {
    std::fprintf(stderr,
                 "  watch     every %llu ms from %s, %zu GPU(s); a change is matched against the last %llu ms\n",
                 static_cast<unsigned long long>(o.watch_interval_ms),
                 fmt::format("{}", fmt::join(watch["sources"].get<std::vector<std::string>>(), ", ")).c_str(),
                 devices.gpus().size(), static_cast<unsigned long long>(o.watch_window_ms));
    if (watch.contains("nvml_note"))
      std::fprintf(stderr, "  watch     %s\n", watch["nvml_note"].get<std::string>().c_str());
  }
  std::fflush(stderr);
}

Json hooks_json(const std::vector<HookStatus>& hooks) {
  Json j = Json::array();
  for (const auto& h : hooks) j.push_back(hook_json(h));
  return j;
}

// The driver families gpugate.ko decides on (GG_POLF_KMOD_*), by name.
Json owned_families_json(uint8_t owned) {
  return {{"nvidia", (owned & GG_POLF_KMOD_NVIDIA) != 0},
          {"drm", (owned & GG_POLF_KMOD_DRM) != 0},
          {"kfd", (owned & GG_POLF_KMOD_KFD) != 0},
          {"knob", (owned & GG_POLF_KMOD_KNOB) != 0}};
}

unsigned mode_of(const std::string& text) {
  return text == "monitor"   ? static_cast<unsigned>(GG_MODE_MONITOR)
         : text == "observe" ? static_cast<unsigned>(GG_MODE_OBSERVE)
                             : static_cast<unsigned>(GG_MODE_ENFORCE);
}

// A gap record for a gate that kept deciding while no daemon ran.
void record_takeover(Pipeline& pipeline, const Gate& gate, const Engine& engine, const EngineStats& recorded,
                     const std::optional<Json>& last_crash) {
  const Takeover& t = gate.takeover();
  uint64_t now = boottime_ns(), lost = engine.stats().dropped() - recorded.dropped();
  Json gap;
  gap["reason"] = gate.gate_name() == "kmod" ? "daemon restart: gpugate.ko kept deciding while no daemon ran"
                                             : "daemon restart: the pinned gate kept deciding while no daemon ran";
  gap["engine"] = gate.gate_name();
  gap["previous_pid"] = t.previous_pid;
  gap["down_since_boot_ns"] = t.previous_heartbeat_ns;
  gap["down_ns"] = t.previous_heartbeat_ns && now > t.previous_heartbeat_ns ? now - t.previous_heartbeat_ns : 0;
  gap["lost_records"] = lost;
  if (gate.gate_name() == "bpf") {
    gap["hooks_kept"] = t.kept_links;
    gap["hooks_replaced"] = t.replaced_links;
  }
  gap["note"] = lost ? "records lost while down are listed per class in the gap records that follow"
                     : "nothing was lost: the decisions made meanwhile were queued in the ring and follow";
  if (last_crash) gap["previous_crash"] = *last_crash;
  pipeline.write_event("gap", gap);
}

// A previous run that ended without its shutdown checkpoint (or daemon.stop,
// without a key) was killed or lost power: nothing recorded from its last
// record until now, and the ledger says so.
void record_unclean_end(Pipeline& pipeline, const std::string& last_line, const std::string& boot_id) {
  if (last_line.empty()) return;  // a new ledger
  auto last = Json::parse(last_line, nullptr, false);
  if (last.is_discarded() || !last.is_object()) return;  // the ledger's resume checks judge that
  std::string type = last.value("type", std::string());
  std::string reason = type == "checkpoint" ? last.value("reason", std::string()) : std::string();
  if (type == "daemon.stop" || reason == "shutdown" || reason == "crash") return;
  Json gap{{"class", "daemon"},
           {"reason",
            "the previous daemon ended without stopping (killed, or the host lost power): nothing recorded GPU "
            "commands from its last record until this start, and the calls of summarized or counted classes since "
            "its last ioctl.summary or ioctl.counts record were not written either"},
           {"last_seq", last.value("seq", uint64_t{0})},
           {"last_type", type},
           {"last_time", last.value("time", std::string())}};
  bool same_boot = last.value("boot_id", std::string()) == boot_id;
  gap["same_boot"] = same_boot;
  uint64_t then = last.value("boottime_ns", uint64_t{0}), now = boottime_ns();
  if (same_boot && then && now > then) gap["down_ns"] = now - then;
  pipeline.write_event("gap", gap);
}

}  // namespace

int unload_gates(const DaemonOptions& o) {
  auto removed = unload_pinned(o.pin_dir);
  if (!removed) {
    std::fprintf(stderr, "gpugated: %s\n", removed.error().message.c_str());
    return 1;
  }
  std::fprintf(stderr, "gpugated: %u pins removed from %s; %s\n", *removed, o.pin_dir.c_str(),
               *removed ? "the BPF gate is detached" : "no BPF gate was pinned there");
  Json kmod = nullptr;
  std::string device = o.kmod_device.empty() ? std::string(GG_KMOD_DEV_PATH) : o.kmod_device;
  if (o.kmod != "off" && kmod_present(device)) {
    auto instance = kmod_release(device);
    if (!instance) {
      std::fprintf(stderr, "gpugated: %s\n", instance.error().message.c_str());
      return 1;
    }
    std::fprintf(stderr, "gpugated: gpugate.ko let go and stopped enforcing; it can be removed (rmmod gpugate)\n");
    kmod = {{"instance", fmt::format("{:016x}", *instance)}, {"device", device}};
    Json note = read_kmod_note(o.state_dir);
    note["held"] = false;
    write_kmod_note(o.state_dir, note);
  }
  HostInfo host = HostInfo::load(o.state_dir);
  auto ledger = open_ledger(o, host);
  if (!ledger) {
    std::fprintf(stderr, "gpugated: the unload is not recorded: %s\n", ledger.error().message.c_str());
    return 2;
  }
  DeviceTable none;
  Pipeline pipeline(*ledger, none, host, "bpf", nullptr);
  pipeline.write_event("gate.unloaded",
                       {{"pin_dir", o.pin_dir}, {"pins_removed", *removed}, {"kmod", kmod}, {"pid", getpid()}});
  if (auto f = ledger->checkpoint("shutdown"); !f) {
    std::fprintf(stderr, "gpugated: %s\n", f.error().message.c_str());
    return 2;
  }
  return 0;
}

int run_daemon(const DaemonOptions& o) {
  // The nodes, and the GPUs behind them with their bridges and knobs (issue 11).
  auto find_devices = [&o]() {
    DeviceTable t = o.no_discover ? DeviceTable{} : discover_devices_and_gpus();
    for (const auto& spec : o.aliases) (void)t.add_alias(spec);  // checked at start
    return t;
  };
  DeviceTable devices = o.no_discover ? DeviceTable{} : discover_devices_and_gpus();
  for (const auto& spec : o.aliases) {
    if (auto r = devices.add_alias(spec); !r) {
      std::fprintf(stderr, "gpugated: %s\n", r.error().message.c_str());
      return 2;
    }
  }
  auto gpus_at_start = pci_gpus_json(devices.gpus());
  HostInfo host = HostInfo::load(o.state_dir);
  auto ledger = open_ledger(o, host);
  if (!ledger) {
    std::fprintf(stderr, "gpugated: %s\n", ledger.error().message.c_str());
    return 2;
  }
  Policy policy = builtin_policy(GG_MODE_ENFORCE);
  if (!o.policy_file.empty()) {
    auto p = load_policy(o.policy_file);
    if (!p) {
      std::fprintf(stderr, "gpugated: %s\n", p.error().message.c_str());
      return 2;
    }
    policy = std::move(*p);
  }
  std::string mode_text = !o.mode.empty() ? o.mode : !policy.mode_name.empty() ? policy.mode_name : "enforce";
  std::string kmod_device = o.kmod_device.empty() ? std::string(GG_KMOD_DEV_PATH) : o.kmod_device;

  // The engines: the BPF engine (observer everywhere, the LSM gate where the
  // kernel loads it) and gpugate.ko where it is loaded; or the simulation.
  std::unique_ptr<BpfEngine> bpf;
  std::unique_ptr<KmodEngine> kmod;
  std::unique_ptr<SimEngine> sim;
  std::vector<Engine*> engines;
  GateSet gates;
  if (o.engine == "bpf") {
    bpf = std::make_unique<BpfEngine>(BpfEngineOptions{o.wakeup_kib * 1024, o.ring_mib << 20, o.verbose, o.fd_lookup,
                                                       mode_of(mode_text), policy.table,
                                                       o.no_pin ? std::string() : o.pin_dir});
    engines.push_back(bpf.get());
    if (o.kmod == "on" || (o.kmod == "auto" && kmod_present(kmod_device))) {
      kmod = std::make_unique<KmodEngine>(KmodEngineOptions{kmod_device, mode_of(mode_text), policy.table, true});
      engines.push_back(kmod.get());
    }
  } else if (o.engine == "kmod") {
    // The module alone: nothing but its hooks costs the callers anything.
    kmod = std::make_unique<KmodEngine>(KmodEngineOptions{kmod_device, mode_of(mode_text), policy.table, true});
    engines.push_back(kmod.get());
  } else if (o.engine == "sim") {
    std::ifstream in(o.sim_script);
    if (o.sim_script.empty() || !in) {
      std::fprintf(stderr, "gpugated: --engine sim needs --sim-script FILE (one JSON request per line)\n");
      return 2;
    }
    auto calls = parse_sim_script(in, o.sim_script);
    if (!calls) {
      std::fprintf(stderr, "gpugated: %s\n", calls.error().message.c_str());
      return 2;
    }
    sim = std::make_unique<SimEngine>(std::move(*calls));
    (void)sim->set_policy(policy.table);  // the simulation only labels, it cannot fail
    engines.push_back(sim.get());
  } else {
    std::fprintf(stderr, "gpugated: unknown engine '%s'; use bpf or sim\n", o.engine.c_str());
    return 2;
  }

  Pipeline pipeline(*ledger, devices, host, std::string(engines.front()->name()), make_sink(o));
  pipeline.set_policy_source(policy.source);
  std::vector<std::string> rule_names;
  for (const auto& r : policy.rules) rule_names.push_back(r.name);
  pipeline.set_rule_names(std::move(rule_names));
  pipeline.set_record_levels(policy.record.level, static_cast<uint64_t>(policy.record.interval) * 1'000'000'000ull);

  std::vector<HookStatus> hooks;
  for (auto* engine : engines) {
    auto h = engine->start(devices);
    if (!h) {
      std::fprintf(stderr, "gpugated: engine %s cannot start: %s\n", std::string(engine->name()).c_str(),
                   h.error().message.c_str());
      pipeline.write_event("daemon.start_failed",
                           {{"engine", engine->name()}, {"error", h.error().message}, {"version", kDaemonVersion}});
      (void)ledger->checkpoint("shutdown");
      return 1;
    }
    hooks.insert(hooks.end(), h->begin(), h->end());
  }
  if (bpf) gates.add(bpf.get());
  if (kmod) gates.add(kmod.get());
  // One verdict and one record per ioctl: where the module's hooks for a
  // driver are attached, the BPF programs stay out of that driver's nodes.
  uint8_t kmod_owned = kmod ? kmod->owned_policy_flags() : 0;
  if (bpf && kmod_owned) {
    if (auto r = bpf->set_kmod_owned(kmod_owned); !r) {
      std::fprintf(stderr, "gpugated: %s\n", r.error().message.c_str());
      return 1;
    }
  }
  // The GPU state watcher (docs/watch.md): no NVML is normal, said once.
  std::unique_ptr<watch::Watcher> watcher;
  Json watch_info = nullptr;
  if (o.watch == "on" || (o.watch == "auto" && !sim)) {
    std::vector<std::unique_ptr<watch::StateSource>> sources;
    auto nvml = watch::open_nvml(o.nvml_library);
    std::string nvml_note;
    if (nvml)
      sources.push_back(std::move(*nvml));
    else
      nvml_note = nvml.error().message;
    sources.push_back(watch::open_sysfs(devices.gpus()));
    if (auto simulated = watch::open_gpusim()) sources.push_back(std::move(simulated));
    watch::WatchOptions wo;
    wo.interval_ms = o.watch_interval_ms;
    wo.window_ms = o.watch_window_ms;
    wo.boot_id = host.boot_id;
    watcher = std::make_unique<watch::Watcher>(wo, std::move(sources), devices.gpus());
    // A restart between a command and its change still explains it.
    watcher->seed(watch::ledger_tail(o.ledger));
    pipeline.set_observer([w = watcher.get()](const Json& rec) { w->note(rec); });
    pipeline.set_command_observer([w = watcher.get()](const CommandSeen& c) { w->note_command(c); });
    watch_info = {
        {"sources", watcher->source_names()}, {"interval_ms", o.watch_interval_ms}, {"window_ms", o.watch_window_ms}};
    if (!nvml_note.empty()) watch_info["nvml_note"] = nvml_note;
  }
  print_selftest(o, engines, hooks, devices, *ledger, watch_info);

  auto last_crash = take_last_crash(o.state_dir);
  bool took_over = false;
  std::vector<EngineStats> recorded_losses;
  recorded_losses.reserve(engines.size());
  for (auto* engine : engines) recorded_losses.push_back(engine->acknowledged_losses());
  for (size_t i = 0; i < engines.size(); i++) {
    Gate* gate = engines[i] == bpf.get()    ? static_cast<Gate*>(bpf.get())
                 : engines[i] == kmod.get() ? static_cast<Gate*>(kmod.get())
                                            : nullptr;
    if (gate && gate->takeover().happened) {
      record_takeover(pipeline, *gate, *engines[i], recorded_losses[i], last_crash);
      took_over = true;
    }
    pipeline.set_loss_baseline(engines[i]->name(), recorded_losses[i]);
  }
  if (last_crash && !took_over)
    pipeline.write_event("gap", {{"reason", "the previous daemon crashed; nothing decided GPU commands after it ended"},
                                 {"previous_crash", *last_crash}});
  else if (!took_over)
    record_unclean_end(pipeline, ledger->previous_last_record(), host.boot_id);
  Json kmod_note = read_kmod_note(o.state_dir);
  check_kmod_removal(pipeline, kmod_note, host, kmod.get());
  if (kmod) {
    write_kmod_note(o.state_dir, {{"instance", kmod->hello().instance},
                                  {"held", !kmod->persists_at().empty()},
                                  {"boot_id", host.boot_id},
                                  {"loaded_boot_ns", kmod->hello().loaded_boot_ns}});
  } else if (o.kmod == "auto" && kmod_note.value("held", false)) {
    kmod_note["held"] = false;  // said once
    write_kmod_note(o.state_dir, kmod_note);
  }

  // The control socket: nonces, signed requests, grants.
  std::optional<ControlPlane> control;
  if (!o.control_socket.empty()) {
    std::optional<gid_t> group;
    if (!o.control_group.empty()) {
      group = group_id(o.control_group);
      if (!group) {
        std::fprintf(stderr, "gpugated: --control-group %s: no such group (getent group lists them)\n",
                     o.control_group.c_str());
        return 2;
      }
    }
    std::filesystem::create_directories(std::filesystem::path(o.control_socket).parent_path());
    SignersConfig signers = policy.signers;
    if (!o.allowed_signers.empty()) signers.allowed_signers = o.allowed_signers;
    if (signers.allowed_signers.empty() && std::filesystem::exists(paths::kAllowedSigners))
      signers.allowed_signers = paths::kAllowedSigners;
    // A bad allowed_signers line (a weak RSA key, cert-authority, a malformed
    // key or option) stops the start here, naming file:line (exit 2).
    auto cp = ControlPlane::open(o.control_socket, group, o.state_dir + "/nonces", signers, host.host_id);
    if (!cp) {
      std::fprintf(stderr, "gpugated: %s\n", cp.error().message.c_str());
      pipeline.write_event("daemon.start_failed", {{"error", cp.error().message}, {"version", kDaemonVersion}});
      return 2;
    }
    control.emplace(std::move(*cp));
  }
  // Metrics: a scrape endpoint (its own thread) and a textfile, from the loop's counters.
  std::unique_ptr<MetricsServer> metrics;
  if (!o.metrics_listen.empty()) {
    auto m = MetricsServer::start(o.metrics_listen);
    if (!m) {
      std::fprintf(stderr, "gpugated: %s\n", m.error().message.c_str());
      pipeline.write_event("daemon.start_failed", {{"error", m.error().message}, {"version", kDaemonVersion}});
      return 2;
    }
    metrics = std::move(*m);
    if (!o.json)
      std::fprintf(stderr, "  metrics   http://%s/metrics (Prometheus text; OpenMetrics on request)\n",
                   metrics->address().c_str());
  }
  int64_t start_unix = static_cast<int64_t>(::time(nullptr));
  Json engines_json = Json::array();
  for (auto* e : engines) engines_json.push_back({{"engine", e->name()}, {"mode", mode_name(e->mode())}});
  pipeline.write_event("daemon.start", {{"version", kDaemonVersion},
                                        {"pid", getpid()},
                                        {"engine", engines.front()->name()},
                                        {"engines", engines_json},
                                        {"mode", mode_name(gate_mode(engines))},
                                        {"hooks", hooks_json(hooks)},
                                        {"devices", devices_json(devices)},
                                        {"gpus", gpus_at_start},
                                        {"watch", watch_info},
                                        {"ledger", {{"dir", ledger->path()}, {"key", ledger->key_text()}}}});
  // The size budget: checked now (a restart over it says so at once), then
  // at each rotation; a crossing either way is said once.
  bool budget_over = false;
  auto say_budget = [&]() {
    const auto& b = ledger->budget_status();
    if (b.over == budget_over) return;
    budget_over = b.over;
    if (b.over)
      std::fprintf(stderr, "gpugated: ledger %s is over its budget (%.1f of %.1f MiB) and keeps every record: %s\n",
                   ledger->path().c_str(), static_cast<double>(b.bytes) / (1 << 20),
                   static_cast<double>(b.max_bytes) / (1 << 20), b.reason.c_str());
    else
      std::fprintf(stderr, "gpugated: ledger %s is within its budget again (%.1f of %.1f MiB)\n",
                   ledger->path().c_str(), static_cast<double>(b.bytes) / (1 << 20),
                   static_cast<double>(b.max_bytes) / (1 << 20));
    std::fflush(stderr);
  };
  ledger->check_budget();
  say_budget();
  auto record_state = [&](const std::string& type, Json body) {
    pipeline.write_event(type, std::move(body));
    return ledger->next_seq() - 1;
  };
  if (watcher) watcher->start();

  auto started = std::chrono::steady_clock::now();
  auto last_tick = started - std::chrono::seconds(10);
  UniqueFd clock_step = arm_clock_step_timer();
  std::vector<EngineStats> final_stats(engines.size());
  bool stopped = false;
  auto total_stats = [&]() {
    EngineStats s;
    for (size_t i = 0; i < engines.size(); i++) s = sum(s, stopped ? final_stats[i] : engines[i]->stats());
    return s;
  };
  // A ledger that cannot be written (disk full, read-only) is said once,
  // and the gates deny gated commands meanwhile unless the policy says
  // keep-enforcing; the gap record comes when writes work again.
  LedgerHealth ledger_health(policy.disk_full_action,
                             {[&](bool down) -> Result<void> {
                                gg_policy t = policy.table;
                                if (down) t.flags |= GG_POLF_LEDGER_DOWN;
                                if (sim) (void)sim->set_policy(t);
                                return gates.empty() ? Result<void>{} : gates.set_policy(t);
                              },
                              [&](const std::string& type, Json body) { pipeline.write_event(type, std::move(body)); },
                              [](const std::string& line) {
                                std::fprintf(stderr, "gpugated: %s\n", line.c_str());
                                std::fflush(stderr);
                              }});
  auto status_of = [&](const char* state) {
    auto s = total_stats();
    Json st;
    st["state"] = state;
    st["pid"] = getpid();
    st["version"] = kDaemonVersion;
    st["engine"] = engines.front()->name();
    st["engines"] = engines_json;
    st["mode"] = mode_name(gate_mode(engines));
    st["pinned"] = bpf && bpf->pinned() ? Json(o.pin_dir) : Json(nullptr);
    st["kmod"] = kmod ? Json{{"device", kmod_device},
                             {"instance", fmt::format("{:016x}", kmod->hello().instance)},
                             {"held", !kmod->persists_at().empty()},
                             {"owns", owned_families_json(kmod_owned)}}
                      : Json(nullptr);
    st["control_socket"] = control ? Json(control->socket_path()) : Json(nullptr);
    st["hooks"] = hooks_json(hooks);
    st["devices"] = devices_json(devices);
    st["gpus"] = gpus_at_start;
    st["ledger"] = ledger->path();
    st["ledger_next_seq"] = ledger->next_seq();
    st["ledger_health"] = ledger_health.status();
    st["ledger_budget"] = o.ledger_max_gib > 0 ? ledger->budget_status().json() : Json(nullptr);
    st["records"] = pipeline.counters().records;
    st["seen"] = s.seen();
    st["lost"] = s.dropped();
    st["gaps"] = pipeline.counters().gaps;
    // Cross-checks of the kernel stream: entries skipped in the kernel's
    // sequence (records lost), exits without their entry, entries without exit.
    st["kernel_seq_gaps"] = pipeline.counters().kernel_seq_gaps;
    st["unmatched_exits"] = pipeline.counters().unmatched_exits;
    st["exits_missing"] = pipeline.counters().exits_missing;
    st["pending"] = pipeline.pending();
    // Calls below full: in ioctl.summary and ioctl.counts records, the open
    // interval's written at its end.
    st["summarized"] = pipeline.counters().summarized;
    st["counted"] = pipeline.counters().counted;
    st["open_summaries"] = pipeline.open_summaries();
    st["per_class"] = counters_json(s);
    st["watch"] = watcher ? watcher->status() : Json(nullptr);
    st["metrics"] = metrics ? Json("http://" + metrics->address() + "/metrics") : Json(nullptr);
    st["uptime_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return st;
  };
  auto metrics_snapshot = [&]() {
    MetricsSnapshot m;
    m.version = kDaemonVersion;
    m.mode = std::string(mode_name(gate_mode(engines)));
    m.start_time_unix = start_unix;
    m.ioctls = pipeline.ioctl_counts();
    m.engine = total_stats();
    for (const auto& h : hooks) m.hooks.emplace_back(h.name, h.attached);
    if (!gates.empty())
      if (auto g = gates.grants()) m.grants_active = g->size();
    m.gap_records = pipeline.counters().gaps;
    m.knob_writes = pipeline.counters().knob_writes;
    m.ledger_write_errors = pipeline.counters().write_errors;
    m.ledger_records = ledger->next_seq();
    m.last_checkpoint_unix_ns = ledger->last_checkpoint_unix_ns();
    m.ledger_budget_bytes = ledger->budget_status().max_bytes;
    m.ledger_bytes = ledger->budget_status().bytes;
    m.ledger_budget_over = ledger->budget_status().over;
    if (watcher) {
      m.state_samples = watcher->samples();
      m.state_unexplained = watcher->unexplained();
      m.state_explained = watcher->explained();
    }
    return m;
  };
  auto publish_metrics = [&]() {
    if (!metrics && o.metrics_textfile.empty()) return;
    MetricsSnapshot m = metrics_snapshot();
    if (metrics) metrics->publish(m);
    if (!o.metrics_textfile.empty())
      if (auto w = write_metrics_textfile(o.metrics_textfile, m); !w)
        std::fprintf(stderr, "gpugated: %s\n", w.error().message.c_str());
  };
  publish_metrics();
  GateUpkeep upkeep(gates, devices, find_devices, pipeline);
  upkeep.start();
  // systemd's Type=notify: ready once the gates are attached and daemon.start
  // is in the ledger; the watchdog is answered from the loop below.
  ServiceNotifier service;
  if (auto f = pipeline.flush(); !f) std::fprintf(stderr, "gpugated: %s\n", f.error().message.c_str());
  {
    Json st = status_of("running");
    if (auto w = write_status(o.status_file, st); !w) std::fprintf(stderr, "gpugated: %s\n", w.error().message.c_str());
    service.ready(service_status_line(st));
  }
  // A driver whose module attaches or goes while the daemon runs: the BPF
  // side follows, and the hooks in the status follow.
  auto follow_kmod = [&]() {
    if (!kmod) return;
    uint8_t now = kmod->owned_policy_flags();
    if (now == kmod_owned) return;
    kmod_owned = now;
    if (bpf) {
      if (auto r = bpf->set_kmod_owned(now); !r)
        pipeline.write_event("alarm", {{"what", "kmod-ownership"}, {"error", r.error().message}});
    }
    auto rows = kmod->hook_rows();
    std::erase_if(hooks, [](const HookStatus& h) { return h.name.rfind("kmod/", 0) == 0; });
    hooks.insert(hooks.end(), rows.begin(), rows.end());
    Json families = owned_families_json(now);
    families["hooks"] = hooks_json(rows);
    pipeline.write_event("kmod.families", families);
  };
  int rc = 0;
  // A fatal error escaping the loop is recorded (daemon.crash, signed at
  // once) and noted for the next start, whose gap record names it; the
  // kernel gates keep deciding meanwhile. GPUGATE_FAULT_INJECT=loop:N throws
  // one after N records, for the test that proves it.
  uint64_t fault_after = fault_injection("loop");
  try {
    while (!g_daemon_stop && !(sim && sim->finished())) {
      // Wait on the rings and the control socket together: a signed request
      // is answered at once, not at the next 20 ms tick. Serving never
      // blocks: a silent, slow or oversized client waits for its own
      // deadline, never the loop that drains the rings.
      std::vector<pollfd> fds;
      if (control) fds.push_back({control->fd(), POLLIN, 0});
      size_t clock_at = fds.size();
      if (clock_step) fds.push_back({clock_step.get(), POLLIN, 0});
      for (auto* e : engines)
        if (e->wait_fd() >= 0) fds.push_back({e->wait_fd(), POLLIN, 0});
      // An engine stopped at its per-poll bound has records waiting: look
      // at the control socket and the clock, but do not sleep.
      bool backlog = std::any_of(engines.begin(), engines.end(), [](const Engine* e) { return e->backlog(); });
      int wait_ms = backlog ? 0 : control ? control->poll_timeout_ms(20) : 20;
      if (!sim) ::poll(fds.data(), fds.size(), wait_ms);
      // A cancelled timer stays readable until it is read and armed again.
      if (clock_step && (fds[clock_at].revents & POLLIN)) {
        uint64_t expirations = 0;
        if (::read(clock_step.get(), &expirations, sizeof expirations) < 0 && errno == ECANCELED)
          clock_step = arm_clock_step_timer(std::move(clock_step));
      }
      // Before the rings are read: what they hold happened before this
      // look at the clock, and keeps the offset it happened under.
      pipeline.follow_wall_clock();
      if (control) control->serve(pipeline, gates, devices);
      for (auto* e : engines) {
        auto n = e->poll(std::chrono::milliseconds(0), pipeline);
        if (!n) {
          std::fprintf(stderr, "gpugated: %s\n", n.error().message.c_str());
          pipeline.write_event("alarm",
                               {{"what", "engine-failed"}, {"engine", e->name()}, {"error", n.error().message}});
          rc = 1;
        }
      }
      if (rc) break;
      ledger_health.after_flush(pipeline.flush(), boottime_ns(), pipeline.counters().write_errors);
      say_budget();
      auto now = std::chrono::steady_clock::now();
      service.tick(now);
      upkeep.on_uevent();
      upkeep.tick(now);
      if (watcher) watcher->poll(boottime_ns(), record_state);
      if (now - last_tick >= std::chrono::seconds(1)) {
        last_tick = now;
        follow_kmod();
        pipeline.flush_stale(5'000'000'000ull);
        if (pipeline.summaries_due(boottime_ns())) pipeline.flush_summaries();
        for (auto* e : engines) {
          auto stats = e->stats();
          pipeline.note_losses(e->name(), stats);
          e->acknowledge(stats);
        }
        if (control) control->expire(pipeline, gates);
        Json st = status_of("running");
        if (auto w = write_status(o.status_file, st); !w)
          std::fprintf(stderr, "gpugated: %s\n", w.error().message.c_str());
        service.status(service_status_line(st));
        publish_metrics();
      }
      if (o.duration > 0 && now - started >= std::chrono::duration<double>(o.duration)) break;
      if (fault_after && pipeline.counters().records >= fault_after)
        throw std::runtime_error(fmt::format("injected fault after {} records (GPUGATE_FAULT_INJECT)", fault_after));
    }
  } catch (const std::exception& e) {
    Json crash{{"error", e.what()},
               {"pid", getpid()},
               {"boottime_ns", boottime_ns()},
               {"records", pipeline.counters().records}};
    pipeline.flush_summaries();  // what they cover happened; the crash record comes after it
    pipeline.write_event("daemon.crash", crash);
    (void)pipeline.flush();
    (void)ledger->checkpoint("crash");
    std::ofstream(o.state_dir + "/last-crash") << crash.dump() << "\n";
    std::fprintf(stderr, "gpugated: fatal: %s (recorded as daemon.crash)\n", e.what());
    service.stopping(fmt::format("crashed: {} (recorded as daemon.crash); the kernel gates keep enforcing", e.what()));
    return 1;
  }
  // Stopping ends the recording, not the enforcement: the pinned gate and
  // gpugate.ko keep deciding with the last tables.
  service.stopping(bpf && bpf->pinned()
                       ? "stopping: draining the rings and signing the ledger; the pinned gate keeps enforcing"
                       : "stopping: draining the rings and signing the ledger");
  // Drain what the kernel already produced, then close the books.
  for (int i = 0; i < 50; i++) {
    size_t got = 0;
    for (auto* e : engines) {
      auto n = e->poll(std::chrono::milliseconds(0), pipeline);
      if (n) got += *n;
    }
    if (got == 0) break;
  }
  pipeline.flush_stale(0);
  pipeline.flush_summaries();
  (void)pipeline.flush();  // a clock.jump seen last, before the stop's own records
  // Changes still settling are decided now, with every record drained.
  if (watcher) {
    watcher->stop();
    watcher->poll(UINT64_MAX, record_state);
  }
  for (size_t i = 0; i < engines.size(); i++) {
    final_stats[i] = engines[i]->stats();
    pipeline.note_losses(engines[i]->name(), final_stats[i]);
    engines[i]->acknowledge(final_stats[i]);
    engines[i]->stop();
  }
  stopped = true;
  ledger->finish_compression();
  auto fs = total_stats();
  pipeline.write_event("daemon.stop",
                       {{"records", pipeline.counters().records},
                        {"summarized", pipeline.counters().summarized},
                        {"counted", pipeline.counters().counted},
                        {"seen", fs.seen()},
                        {"lost", fs.dropped()},
                        {"per_class", counters_json(fs)},
                        {"reason", g_daemon_stop ? "signal" : (sim && sim->finished() ? "end of input" : "duration")}});
  // Sign everything written, including daemon.stop.
  if (auto c = ledger->checkpoint("shutdown"); !c) std::fprintf(stderr, "gpugated: %s\n", c.error().message.c_str());
  (void)write_status(o.status_file, status_of("stopped"));
  return rc;
}

}  // namespace gpugate
