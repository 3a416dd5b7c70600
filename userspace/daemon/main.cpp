// gpugated: wires an engine to the pipeline. Everything else lives in libgpugate.
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "control_plane.hpp"
#include "gpugate/bpf_engine.hpp"
#include "gpugate/gate_upkeep.hpp"
#include "gpugate/paths.hpp"
#include "gpugate/pipeline.hpp"
#include "gpugate/policy.hpp"
#include "gpugate/sim_engine.hpp"
#include "gpugate/status.hpp"

using namespace gpugate;

namespace {

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

constexpr const char* kVersion = "0.1.0";

struct Options {
  std::string engine = "bpf";
  std::string sim_script;
  std::vector<std::string> aliases;
  bool no_discover = false;
  std::string ledger = paths::kLedger;
  uint64_t segment_mib = 64, checkpoint_records = 100000, checkpoint_ms = 10000;
  std::string ledger_fsync = "checkpoint";
  std::string status_file = paths::kStatus;
  std::string state_dir = paths::kStateDir;
  bool journald = false;
  bool quiet = false;
  bool json = false;
  double duration = 0;
  uint32_t wakeup_kib = 512;
  uint32_t ring_mib = 8;
  std::string fd_lookup = "auto";
  std::string mode;  // "" = the policy file's, else enforce
  std::string policy_file;
  bool verbose = false;
  std::string pin_dir = kDefaultPinDir;
  bool no_pin = false;
  bool unload = false;
  std::string control_socket = paths::kControlSocket;
  std::string control_group;
  std::string allowed_signers;
};

nlohmann::ordered_json counters_json(const EngineStats& s) {
  nlohmann::ordered_json j;
  for (unsigned c = 0; c < GG_CLASS_COUNT; c++) {
    const auto& pc = s.per_class[c];
    if (!pc.seen && !pc.dropped && !pc.exit_dropped) continue;
    j[std::string(class_name(c))] = {
        {"seen", pc.seen}, {"dropped", pc.dropped}, {"exit_dropped", pc.exit_dropped}, {"no_state", pc.no_state}};
  }
  return j.is_null() ? nlohmann::ordered_json::object() : j;
}

HumanSink make_sink(const Options& o) {
  if (o.quiet) return nullptr;
  if (o.journald) {
    return [](const nlohmann::ordered_json& rec, const std::string& line) {
      std::string cls = rec.contains("decoded") ? rec["decoded"]["class"].get<std::string>() : "";
      int prio = class_from_name(cls) && class_gated_by_default(*class_from_name(cls)) ? LOG_WARNING : LOG_INFO;
      sd_journal_send("MESSAGE=%s", line.c_str(), "PRIORITY=%i", prio, "GPUGATE_TYPE=%s",
                      rec.value("type", std::string()).c_str(), "GPUGATE_CLASS=%s", cls.c_str(), "GPUGATE_SEQ=%llu",
                      static_cast<unsigned long long>(rec.value("seq", uint64_t{0})), nullptr);
    };
  }
  return [](const nlohmann::ordered_json&, const std::string& line) {
    std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
  };
}

void print_selftest(const Options& o, const Engine& engine, const std::vector<HookStatus>& hooks,
                    const DeviceTable& devices, const LedgerWriter& ledger) {
  nlohmann::ordered_json j;
  j["version"] = kVersion;
  j["engine"] = engine.name();
  j["mode"] = mode_name(engine.mode());
  j["hooks"] = nlohmann::ordered_json::array();
  for (const auto& h : hooks) j["hooks"].push_back({{"hook", h.name}, {"attached", h.attached}, {"detail", h.detail}});
  j["devices"] = devices_json(devices);
  j["ledger"] = ledger.path();
  j["ledger_next_seq"] = ledger.next_seq();
  if (o.json) {
    std::printf("%s\n", j.dump().c_str());
    std::fflush(stdout);
    return;
  }
  std::fprintf(stderr, "gpugated %s self-test\n", kVersion);
  const char* what = engine.mode() == GG_MODE_ENFORCE   ? "gated commands without a grant are denied"
                     : engine.mode() == GG_MODE_MONITOR ? "gated commands pass, recorded as would-deny"
                                                        : "records every GPU ioctl; cannot block here";
  std::fprintf(stderr, "  engine    %s, mode %s (%s)\n", std::string(engine.name()).c_str(),
               std::string(mode_name(engine.mode())).c_str(), what);
  for (const auto& h : hooks)
    std::fprintf(stderr, "  hook      %-30s %s  %s\n", h.name.c_str(), h.attached ? "attached" : "FAILED  ",
                 h.detail.c_str());
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
  std::fflush(stderr);
}

// The ledger with the host's log key (created at first start in --state-dir).
Result<LedgerWriter> open_ledger(const Options& o, const HostInfo& host) {
  auto key = tlog::LogKey::load_or_create(o.state_dir, ledger_origin(host.host_id));
  if (!key) return key.error();
  LedgerOptions lo;
  lo.segment_bytes = o.segment_mib << 20;
  lo.checkpoint_records = o.checkpoint_records;
  lo.checkpoint_ms = o.checkpoint_ms;
  lo.fsync = *parse_fsync_policy(o.ledger_fsync);
  lo.key = std::make_shared<const tlog::LogKey>(std::move(*key));
  lo.host_id = host.host_id;
  lo.boot_id = host.boot_id;
  return LedgerWriter::open(o.ledger, lo);
}

// gpugated --unload: the only way the pinned gate ends, recorded as such.
std::optional<gid_t> group_id(const std::string& name) {
  if (!name.empty() && name.find_first_not_of("0123456789") == std::string::npos)
    return static_cast<gid_t>(std::stoul(name));
  struct group* g = ::getgrnam(name.c_str());
  if (!g) return std::nullopt;
  return g->gr_gid;
}

int unload(const Options& o) {
  auto removed = unload_pinned(o.pin_dir);
  if (!removed) {
    std::fprintf(stderr, "gpugated: %s\n", removed.error().message.c_str());
    return 1;
  }
  std::fprintf(stderr, "gpugated: %u pins removed from %s; %s\n", *removed, o.pin_dir.c_str(),
               *removed ? "the gate is detached, GPU commands are no longer decided" : "no gate was pinned there");
  HostInfo host = HostInfo::load(o.state_dir);
  auto ledger = open_ledger(o, host);
  if (!ledger) {
    std::fprintf(stderr, "gpugated: the unload is not recorded: %s\n", ledger.error().message.c_str());
    return 2;
  }
  DeviceTable none;
  Pipeline pipeline(*ledger, none, host, "bpf", nullptr);
  pipeline.write_event("gate.unloaded", {{"pin_dir", o.pin_dir}, {"pins_removed", *removed}, {"pid", getpid()}});
  if (auto f = ledger->checkpoint("shutdown"); !f) {
    std::fprintf(stderr, "gpugated: %s\n", f.error().message.c_str());
    return 2;
  }
  return 0;
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
std::optional<nlohmann::ordered_json> take_last_crash(const std::string& state_dir) {
  std::string path = state_dir + "/last-crash";
  std::ifstream in(path);
  if (!in) return std::nullopt;
  auto j = nlohmann::ordered_json::parse(in, nullptr, false);
  std::filesystem::remove(path);
  if (j.is_discarded() || !j.is_object()) return nlohmann::ordered_json{{"note", "an unreadable crash note was left"}};
  return j;
}

int run(const Options& o) {
  auto find_devices = [&o]() {
    DeviceTable t = o.no_discover ? DeviceTable{} : DeviceTable::discover();
    for (const auto& spec : o.aliases) (void)t.add_alias(spec);  // checked at start
    return t;
  };
  DeviceTable devices = o.no_discover ? DeviceTable{} : DeviceTable::discover();
  for (const auto& spec : o.aliases) {
    if (auto r = devices.add_alias(spec); !r) {
      std::fprintf(stderr, "gpugated: %s\n", r.error().message.c_str());
      return 2;
    }
  }
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
  std::unique_ptr<Engine> engine;
  if (o.engine == "bpf") {
    unsigned mode = mode_text == "monitor"   ? static_cast<unsigned>(GG_MODE_MONITOR)
                    : mode_text == "observe" ? static_cast<unsigned>(GG_MODE_OBSERVE)
                                             : static_cast<unsigned>(GG_MODE_ENFORCE);
    engine = std::make_unique<BpfEngine>(BpfEngineOptions{o.wakeup_kib * 1024, o.ring_mib << 20, o.verbose, o.fd_lookup,
                                                          mode, policy.table, o.no_pin ? std::string() : o.pin_dir});
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
    engine = std::make_unique<SimEngine>(std::move(*calls));
    (void)engine->set_policy(policy.table);  // the simulation only labels, it cannot fail
  } else {
    std::fprintf(stderr, "gpugated: unknown engine '%s'; use bpf or sim\n", o.engine.c_str());
    return 2;
  }

  Pipeline pipeline(*ledger, devices, host, std::string(engine->name()), make_sink(o));

  pipeline.set_policy_source(policy.source);
  std::vector<std::string> rule_names;
  for (const auto& r : policy.rules) rule_names.push_back(r.name);
  pipeline.set_rule_names(std::move(rule_names));
  auto hooks = engine->start(devices);
  if (!hooks) {
    std::fprintf(stderr, "gpugated: engine %s cannot start: %s\n", std::string(engine->name()).c_str(),
                 hooks.error().message.c_str());
    pipeline.write_event("daemon.start_failed",
                         {{"engine", engine->name()}, {"error", hooks.error().message}, {"version", kVersion}});
    (void)ledger->checkpoint("shutdown");
    return 1;
  }
  print_selftest(o, *engine, *hooks, devices, *ledger);
  EngineStats recorded_losses = engine->acknowledged_losses();
  auto last_crash = take_last_crash(o.state_dir);
  if (auto* bpf = dynamic_cast<BpfEngine*>(engine.get()); bpf && bpf->takeover().happened) {
    const Takeover& t = bpf->takeover();
    uint64_t now = boottime_ns(), lost = engine->stats().dropped() - recorded_losses.dropped();
    nlohmann::ordered_json gap;
    gap["reason"] = "daemon restart: the pinned gate kept deciding while no daemon ran";
    gap["previous_pid"] = t.previous_pid;
    gap["down_since_boot_ns"] = t.previous_heartbeat_ns;
    gap["down_ns"] = t.previous_heartbeat_ns && now > t.previous_heartbeat_ns ? now - t.previous_heartbeat_ns : 0;
    gap["lost_records"] = lost;
    gap["hooks_kept"] = t.kept_links;
    gap["hooks_replaced"] = t.replaced_links;
    gap["note"] = lost ? "records lost while down are listed per class in the gap records that follow"
                       : "nothing was lost: the decisions made meanwhile were queued in the ring and follow";
    if (last_crash) gap["previous_crash"] = *last_crash;
    pipeline.write_event("gap", gap);
  } else if (last_crash) {
    pipeline.write_event("gap", {{"reason", "the previous daemon crashed; nothing decided GPU commands after it ended"},
                                 {"previous_crash", *last_crash}});
  }
  pipeline.set_loss_baseline(recorded_losses);

  // The control socket: nonces, signed requests, grants.
  auto* bpf_engine = dynamic_cast<BpfEngine*>(engine.get());
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
      pipeline.write_event("daemon.start_failed", {{"error", cp.error().message}, {"version", kVersion}});
      return 2;
    }
    control.emplace(std::move(*cp));
  }
  nlohmann::ordered_json hooks_json = nlohmann::ordered_json::array();
  for (const auto& h : *hooks) hooks_json.push_back({{"hook", h.name}, {"attached", h.attached}, {"detail", h.detail}});
  pipeline.write_event("daemon.start", {{"version", kVersion},
                                        {"pid", getpid()},
                                        {"engine", engine->name()},
                                        {"mode", mode_name(engine->mode())},
                                        {"hooks", hooks_json},
                                        {"devices", devices_json(devices)},
                                        {"ledger", {{"dir", ledger->path()}, {"key", ledger->key_text()}}}});

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  auto started = std::chrono::steady_clock::now();
  auto last_tick = started - std::chrono::seconds(10);
  EngineStats final_stats;
  bool stopped = false;
  auto status_of = [&](const char* state) {
    auto s = stopped ? final_stats : engine->stats();
    nlohmann::ordered_json st;
    st["state"] = state;
    st["pid"] = getpid();
    st["version"] = kVersion;
    st["engine"] = engine->name();
    st["mode"] = mode_name(engine->mode());
    auto* bpf = dynamic_cast<BpfEngine*>(engine.get());
    st["pinned"] = bpf && bpf->pinned() ? nlohmann::ordered_json(o.pin_dir) : nlohmann::ordered_json(nullptr);
    st["control_socket"] = control ? nlohmann::ordered_json(control->socket_path()) : nlohmann::ordered_json(nullptr);
    st["hooks"] = hooks_json;
    st["devices"] = devices_json(devices);
    st["ledger"] = ledger->path();
    st["ledger_next_seq"] = ledger->next_seq();
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
    st["per_class"] = counters_json(s);
    st["uptime_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return st;
  };
  GateUpkeep upkeep(bpf_engine, devices, find_devices, pipeline);
  upkeep.start();
  int rc = 0;
  // A fatal error escaping the loop is recorded (daemon.crash, signed at
  // once) and noted for the next start, whose gap record names it; the
  // pinned gate keeps deciding meanwhile. GPUGATE_FAULT_INJECT=loop:N throws
  // one after N records, for the test that proves it.
  uint64_t fault_after = fault_injection("loop");
  try {
    while (!g_stop && !engine->finished()) {
      if (control) {
        // Wait on the ring and the control socket together: a signed request
        // is answered at once, not at the next 20 ms tick.
        // Serving never blocks: a silent, slow or oversized client waits for
        // its own deadline, never the loop that drains the ring.
        pollfd fds[2] = {{control->fd(), POLLIN, 0}, {engine->wait_fd(), POLLIN, 0}};
        ::poll(fds, fds[1].fd >= 0 ? 2 : 1, control->poll_timeout_ms(20));
        control->serve(pipeline, bpf_engine, devices);
      }
      auto n = engine->poll(std::chrono::milliseconds(control ? 0 : 20), pipeline);
      if (!n) {
        std::fprintf(stderr, "gpugated: %s\n", n.error().message.c_str());
        rc = 1;
        break;
      }
      if (auto f = pipeline.flush(); !f) std::fprintf(stderr, "gpugated: %s\n", f.error().message.c_str());
      auto now = std::chrono::steady_clock::now();
      upkeep.on_uevent();
      upkeep.tick(now);
      if (now - last_tick >= std::chrono::seconds(1)) {
        last_tick = now;
        pipeline.flush_stale(5'000'000'000ull);
        auto stats = engine->stats();
        pipeline.note_losses(stats);
        engine->acknowledge(stats);
        if (control) control->expire(pipeline, bpf_engine);
        if (auto w = write_status(o.status_file, status_of("running")); !w)
          std::fprintf(stderr, "gpugated: %s\n", w.error().message.c_str());
      }
      if (o.duration > 0 && now - started >= std::chrono::duration<double>(o.duration)) break;
      if (fault_after && pipeline.counters().records >= fault_after)
        throw std::runtime_error(fmt::format("injected fault after {} records (GPUGATE_FAULT_INJECT)", fault_after));
    }
  } catch (const std::exception& e) {
    nlohmann::ordered_json crash{{"error", e.what()},
                                 {"pid", getpid()},
                                 {"boottime_ns", boottime_ns()},
                                 {"records", pipeline.counters().records}};
    pipeline.write_event("daemon.crash", crash);
    (void)pipeline.flush();
    (void)ledger->checkpoint("crash");
    std::ofstream(o.state_dir + "/last-crash") << crash.dump() << "\n";
    std::fprintf(stderr, "gpugated: fatal: %s (recorded as daemon.crash)\n", e.what());
    return 1;
  }
  // Drain what the kernel already produced, then close the books.
  for (int i = 0; i < 50; i++) {
    auto n = engine->poll(std::chrono::milliseconds(0), pipeline);
    if (!n || *n == 0) break;
  }
  pipeline.flush_stale(0);
  final_stats = engine->stats();
  pipeline.note_losses(final_stats);
  engine->acknowledge(final_stats);
  engine->stop();
  stopped = true;
  pipeline.write_event("daemon.stop",
                       {{"records", pipeline.counters().records},
                        {"seen", final_stats.seen()},
                        {"lost", final_stats.dropped()},
                        {"per_class", counters_json(final_stats)},
                        {"reason", g_stop ? "signal" : (engine->finished() ? "end of input" : "duration")}});
  // Sign everything written, including daemon.stop.
  if (auto c = ledger->checkpoint("shutdown"); !c) std::fprintf(stderr, "gpugated: %s\n", c.error().message.c_str());
  (void)write_status(o.status_file, status_of("stopped"));
  return rc;
}

}  // namespace

int run_daemon(int argc, char** argv) {
  CLI::App app{
      "gpugated - GPU control-plane flight recorder.\n\n"
      "Watches every ioctl on the GPU device nodes of this machine (NVIDIA 195:*, nvidia-uvm, /dev/dri/*,\n"
      "/dev/kfd), decodes it in the kernel with gpugate's shared decoder (escape, RM control command,\n"
      "class such as power.off or clock.limit, key parameters), and appends one JSON record per call to\n"
      "the ledger. Human lines go to stderr (or journald). Stop with SIGTERM or SIGINT.\n\n"
      "Where the kernel loads BPF LSM programs (lsm=...,bpf) the gate decides every ioctl on a GPU node\n"
      "before the driver runs: gated classes without a grant fail with EPERM (--mode enforce) or pass as\n"
      "would-deny (--mode monitor). Elsewhere the daemon observes through tracepoints and says so.\n\n"
      "The gate is pinned in bpffs (--pin-dir): it keeps deciding when the daemon stops or dies, and the\n"
      "next gpugated takes it over without a window, recording a gap record for the time it was down.\n"
      "Remove it with gpugated --unload.\n\n"
      "Engines: bpf (live; root) and sim (a JSON-lines script, no kernel).\n\n"
      "Exit status: 0 clean stop, 1 the engine failed, 2 bad arguments or unusable files.",
      "gpugated"};
  Options o;
  app.add_option("--engine", o.engine, "bpf (default) or sim")->check(CLI::IsMember({"bpf", "sim"}));
  app.add_option("--sim-script", o.sim_script, "JSON-lines requests for --engine sim");
  app.add_option("--device", o.aliases,
                 "PATH=VENDOR: also treat this character device as a GPU node (repeatable). VENDOR: " +
                     std::string(alias_vendors_help()));
  app.add_flag("--no-discover", o.no_discover, "Do not look for GPU nodes; watch only --device aliases");
  app.add_option("--ledger", o.ledger,
                 "Ledger directory: numbered JSONL segments (000001.jsonl, ...), appended, Merkle-hashed, with signed "
                 "checkpoints (docs/ledger.md)")
      ->capture_default_str();
  app.add_option("--ledger-segment-mib", o.segment_mib, "Close a segment (with a checkpoint) once it reaches this size")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{1}, uint64_t{65536}));
  app.add_option("--checkpoint-records", o.checkpoint_records,
                 "Sign a checkpoint after this many records (0: not by count)")
      ->capture_default_str();
  app.add_option("--checkpoint-ms", o.checkpoint_ms,
                 "... or this many ms after the last one, if records came since (0: not by time)")
      ->capture_default_str();
  app.add_option("--ledger-fsync", o.ledger_fsync,
                 "When the ledger is synced to disk: never (kernel writeback), checkpoint (before each checkpoint is "
                 "published; default) or batch (after every batch written, at most every 20 ms)")
      ->capture_default_str()
      ->check(CLI::IsMember({"never", "checkpoint", "batch"}));
  app.add_option("--status-file", o.status_file, "Where 'gpugate status' reads the daemon's state")
      ->capture_default_str();
  app.add_option("--state-dir", o.state_dir,
                 "Directory for the log key (log-key, mode 0600, and log-key.pub, created at first start) and the "
                 "host id when /etc/machine-id is absent")
      ->capture_default_str();
  app.add_flag("--journald", o.journald, "Send human lines to journald instead of stderr");
  app.add_flag("-q,--quiet", o.quiet, "No human lines");
  app.add_flag("--json", o.json, "Print the startup self-test as one JSON line on stdout");
  app.add_option("--duration", o.duration, "Stop after this many seconds (0: run until signalled)");
  app.add_option("--wakeup-kib", o.wakeup_kib, "Queued KiB that wake the reader early (else it polls every 20 ms)")
      ->capture_default_str();
  app.add_option("--ring-mib", o.ring_mib,
                 "Ring buffer size in MiB, a power of two (mapped twice: RSS grows by twice this)")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1024u));
  app.add_option("--mode", o.mode,
                 "enforce: deny gated commands (power.off, power.limit, clock.limit, perf.state, gpu.reset, bar.map) "
                 "without a grant, with EPERM; monitor: let them through, recorded as would-deny; observe: never "
                 "load the gate. Where the kernel refuses BPF LSM programs the daemon observes, and says so")
      ->check(CLI::IsMember({"enforce", "monitor", "observe"}));
  app.add_option("--policy", o.policy_file,
                 "Policy file (TOML: version, mode, [classes] with allow|log|deny|require-signature); without "
                 "it the built-in policy (policy/default.toml). --mode overrides the file's mode")
      ->check(CLI::ExistingFile);
  app.add_option("--fd-lookup", o.fd_lookup,
                 "How the kernel side finds an fd's device: auto, btf (kernel >= 6.2) or core (CO-RE reads)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "btf", "core"}));
  app.add_option("--pin-dir", o.pin_dir, "bpffs directory where the gate's programs, links and maps are pinned")
      ->capture_default_str();
  app.add_flag("--no-pin", o.no_pin, "Do not pin: the gate ends with this process (tests, trials)");
  app.add_option("--control-socket", o.control_socket,
                 "Unix socket for gpugate request/grants/exec (\"\" for none); root and --control-group only")
      ->capture_default_str();
  app.add_option("--control-group", o.control_group, "Group whose members may also use the control socket");
  app.add_option("--allowed-signers", o.allowed_signers,
                 "OpenSSH allowed_signers file of the keys that may sign requests (default: the policy's "
                 "[signers], else /etc/gpugate/allowed_signers if it exists)")
      ->check(CLI::ExistingFile);
  app.add_flag("--unload", o.unload,
               "Remove the pinned gate at --pin-dir (enforcement ends), record it in the ledger, and exit");
  app.add_flag("-v,--verbose", o.verbose, "libbpf debug output, verifier logs");
  app.set_version_flag("--version", kVersion);
  CLI11_PARSE(app, argc, argv);
  if (o.unload) return unload(o);
  return run(o);
}

int main(int argc, char** argv) {
  try {
    return run_daemon(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpugated: fatal: %s\n", e.what());
    return 1;
  }
}
