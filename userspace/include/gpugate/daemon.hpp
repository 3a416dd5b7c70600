// gpugated's life: open the ledger, start the engines (BPF, gpugate.ko, or
// the simulation), say what runs in the self-test, record what the kernel
// decides, serve the control socket, keep the gates' tables current, and
// close the books on a stop, a crash or an error. The main is only its
// command line (userspace/daemon/main.cpp).
#pragma once

#include <csignal>
#include <cstdint>
#include <string>
#include <vector>

namespace gpugate {

struct DaemonOptions {
  std::string engine = "bpf";  // bpf (live, with gpugate.ko per kmod), kmod (the module alone) or sim
  std::string sim_script;
  std::vector<std::string> aliases;  // --device PATH=VENDOR
  bool no_discover = false;
  std::string ledger;
  uint64_t segment_mib = 64, checkpoint_records = 100000, checkpoint_ms = 10000;
  std::string ledger_fsync = "checkpoint";
  std::string ledger_compress = "on";       // on: zstd-compress sealed segments
  double ledger_max_gib = 0;                // the ledger's size budget (0: none)
  std::vector<std::string> ledger_shipped;  // gpugate log ship state files: what the budget may prune
  std::string status_file;
  std::string state_dir;
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
  std::string pin_dir;
  bool no_pin = false;
  std::string control_socket;
  std::string control_group;
  std::string allowed_signers;
  // gpugate.ko: auto (use it where /dev/gpugate exists), on (required), off.
  std::string kmod = "auto";
  std::string kmod_device;
  // The GPU state watcher (docs/watch.md): auto (on, except for the simulation), on, off.
  std::string watch = "auto";
  uint64_t watch_interval_ms = 1000, watch_window_ms = 10000;
  std::string nvml_library = "libnvidia-ml.so.1";
  // Metrics (docs/operations.md): an HTTP endpoint and/or a node_exporter textfile; off when empty.
  std::string metrics_listen;
  std::string metrics_textfile;
};

// What the daemon's version string is.
extern const char* const kDaemonVersion;

// Set by a signal handler (SIGTERM, SIGINT): the loop stops cleanly.
extern volatile std::sig_atomic_t g_daemon_stop;

// Runs the daemon: 0 clean stop, 1 an engine failed (recorded), 2 bad
// arguments or unusable files.
int run_daemon(const DaemonOptions& options);

// gpugated --unload: ends the gates that outlive the daemon (the pinned BPF
// gate; gpugate.ko's hold and enforcement) and records it.
int unload_gates(const DaemonOptions& options);

}  // namespace gpugate
