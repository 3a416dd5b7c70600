// gpugated: the command line. The daemon itself is gpugate::run_daemon (libgpugate, lib/daemon).
#include <signal.h>

#include <cstdio>

#include <CLI/CLI.hpp>

#include "gpugate/bpf_engine.hpp"
#include "gpugate/daemon.hpp"
#include "gpugate/decode.hpp"
#include "gpugate/device.hpp"
#include "gpugate/kmod_engine.hpp"
#include "gpugate/paths.hpp"

using namespace gpugate;

namespace {

void on_signal(int) { g_daemon_stop = 1; }

int daemon_main(int argc, char** argv) {
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
      "Where gpugate.ko is loaded (--kmod) it decides on the drivers' own kernel copies of each request,\n"
      "which no second thread can change, and holds itself against unload while it enforces.\n"
      "Remove both with gpugated --unload.\n\n"
      "Engines: bpf (live; root), kmod (gpugate.ko alone; root) and sim (a JSON-lines script, no kernel).\n\n"
      "Exit status: 0 clean stop, 1 the engine failed, 2 bad arguments or unusable files.",
      "gpugated"};
  DaemonOptions o;
  o.ledger = paths::kLedger;
  o.status_file = paths::kStatus;
  o.state_dir = paths::kStateDir;
  o.pin_dir = kDefaultPinDir;
  o.control_socket = paths::kControlSocket;
  o.kmod_device = GG_KMOD_DEV_PATH;
  app.add_option("--engine", o.engine,
                 "bpf (default: BPF observer and LSM gate, plus gpugate.ko per --kmod), kmod (gpugate.ko alone: "
                 "no BPF program is loaded) or sim")
      ->check(CLI::IsMember({"bpf", "kmod", "sim"}));
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
  app.add_option("--ledger-compress", o.ledger_compress,
                 "on: compress sealed segments with zstd (NNNNNN.jsonl.zst), all but the newest sealed one; every "
                 "gpugate log command reads them. off: leave them plain")
      ->capture_default_str()
      ->check(CLI::IsMember({"on", "off"}));
  app.add_option("--ledger-max-gib", o.ledger_max_gib,
                 "The ledger's size budget in GiB (0: none). When its files exceed it, gpugated prunes whole sealed "
                 "segments that every --ledger-shipped state file says were shipped; what it cannot prune it keeps, "
                 "with a ledger.budget record, a status and a metric saying so. Nothing unshipped is removed")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1048576.0));
  app.add_option("--ledger-shipped", o.ledger_shipped,
                 "State file of a gpugate log ship of this ledger (repeatable: prune only what every destination "
                 "acknowledged). Needs --ledger-max-gib")
      ->check(CLI::ExistingFile | CLI::NonexistentPath);
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
  app.add_flag("-q,--quiet", o.quiet,
               "No human lines and no self-test (it is in the daemon.start record); a needed hook that failed "
               "is still said");
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
  app.add_flag("-v,--verbose", o.verbose, "libbpf debug output, verifier logs");
  app.add_option("--kmod", o.kmod,
                 "gpugate.ko, the driver-level gate (docs/kernel-module.md): auto (default) uses it where it is "
                 "loaded (" GG_KMOD_DEV_PATH
                 " exists), on requires it, off never opens it. Where its hooks for a "
                 "driver are attached it decides that driver's ioctls on the driver's own copy and the BPF programs "
                 "stay out of them: one verdict, one record")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "on", "off"}));
  app.add_option("--kmod-device", o.kmod_device, "The module's node")->capture_default_str();
  app.add_option("--watch", o.watch,
                 "The GPU state watcher (docs/watch.md): samples power limits, clocks, throttle reasons, modes and "
                 "PCI state through NVML and sysfs, and records every change that no recorded command, grant, "
                 "allowed reset or hardware protection explains (state.unexplained). auto (default): on, except "
                 "with --engine sim")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "on", "off"}));
  app.add_option("--watch-interval-ms", o.watch_interval_ms,
                 "Sample every GPU this often (and at once after a command that can change its state)")
      ->capture_default_str()
      ->check(CLI::Range(10, 3600000));
  app.add_option("--watch-window-ms", o.watch_window_ms,
                 "How long before the sample that saw a change a command may have caused it")
      ->capture_default_str()
      ->check(CLI::Range(0, 86400000));
  app.add_option("--metrics-listen", o.metrics_listen,
                 "Serve Prometheus metrics (and OpenMetrics, when the scraper asks) on GET /metrics at ADDR: PORT "
                 "or :PORT (loopback), HOST:PORT, [V6]:PORT. Off by default");
  app.add_option("--metrics-textfile", o.metrics_textfile,
                 "Write the same metrics every second to FILE (atomically), for node_exporter's textfile collector");
  app.add_option("--nvml-library", o.nvml_library, "The NVML library the watcher opens")->capture_default_str();
  bool unload = false;
  app.add_flag("--unload", unload,
               "End the gates that outlive the daemon: remove the pinned BPF gate at --pin-dir, let gpugate.ko go "
               "(no hold against unload, no enforcement), record it in the ledger, and exit");
  app.set_version_flag("--version", kDaemonVersion);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; a usage error exits 2, as every other
    // "bad arguments" of gpugate does (CLI11's own codes are over 100).
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (unload) return unload_gates(o);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  return run_daemon(o);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return daemon_main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpugated: fatal: %s\n", e.what());
    return 1;
  }
}
