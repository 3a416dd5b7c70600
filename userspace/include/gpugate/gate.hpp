// A home of the gate in the kernel: the BPF LSM programs (BpfEngine) or
// gpugate.ko (KmodEngine). Both decide with the same pure C
// (kmod/common/gg_gate.h) on tables the daemon pushes: devices, policy and
// mode, grants. The daemon, the control plane and the upkeep speak to
// every home through this interface, never to a concrete engine.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

extern "C" {
#include "gpugate/policy.h"
#include "gpugate/state.h"
}

#include "gpugate/device.hpp"
#include "gpugate/result.hpp"

namespace gpugate {

// A grant as the daemon hands it to the kernel (gg_grant in event.h). The
// only user-facing way to create one is a verified signed request.
struct Grant {
  std::vector<uint32_t> devs;     // kernel dev_t of every node it covers (they share the uses)
  unsigned cls = 0;               // enum gg_class
  uint64_t not_before_ns = 0;     // CLOCK_BOOTTIME
  uint64_t not_after_ns = 0;      // CLOCK_BOOTTIME
  int64_t uses = 1;               // at install; grants() reports what is left
  unsigned scope = GG_SCOPE_ANY;  // enum gg_scope: which callers may use it (signed in the request)
  uint64_t scope_id = 0;          // the cgroup v2 id (GG_SCOPE_CGROUP) or uid (GG_SCOPE_UID)
  uint32_t id = 0;                // assigned by install_grant (0), or given (the same grant in another home)
  // A parameter the command must carry: key parameter key_index of layout
  // pkind (pkinds.def) equal to key_value. pkind 0: none checked.
  unsigned pkind = 0;
  unsigned key_index = 0;
  uint64_t key_value = 0;
};

// Checks a grant before any home installs it: the nodes are watched, the
// class is gated, the window and uses make sense, the scope is one of three.
Result<void> check_grant(const Grant& grant, const DeviceTable* devices);

// The kernel homes' form of a grant, the same in the BPF maps and gpugate.ko:
// one key a node (gg_grant_key) sharing one value (gg_grant) and its uses.
gg_grant_key grant_key(const Grant& grant, uint32_t dev);
gg_grant grant_value(const Grant& grant);
// Folds one kernel row back into grants: a new grant, or one more node of
// the grant with its id. Sort with sort_grants when all rows are in.
void fold_grant_row(std::vector<Grant>& grants, const gg_grant_key& key, const gg_grant& value, int64_t uses);
void sort_grants(std::vector<Grant>& grants);

// The kernel homes' form of the GPUs' knobs: one row per file the gate keys
// on (inode and filesystem), with its GPU, rule and class. A file several
// GPUs share (a driver's unbind, NVIDIA's suspend) is one row for the first
// of them, marked GG_KNOBF_SHARED.
std::vector<std::pair<gg_knob_key, gg_knob>> knob_rows(const DeviceTable& devices);
// The GPUs' memory BARs as /dev/mem reaches them, at most GG_BAR_RANGES_MAX
// (the first ones by GPU address).
std::vector<gg_bar_range> bar_rows(const DeviceTable& devices);

// What start() found of a daemon before this one (the kernel state it left).
struct Takeover {
  bool happened = false;
  uint32_t previous_pid = 0;
  uint64_t previous_heartbeat_ns = 0;  // CLOCK_BOOTTIME of its last tick, 0 if it never ticked
  unsigned kept_links = 0;             // hooks left attached (same programs)
  unsigned replaced_links = 0;         // hooks whose programs changed (handed over, see README)
};

// The restart state a kernel home keeps for the daemon (gg_state, state.h),
// the same in the BPF state map and in gpugate.ko:
// - claim: this daemon takes the state over; what the one before it left is
//   the takeover (only where found_earlier: a pinned gate, a held module);
Takeover claim_restart_state(gg_state& st, bool found_earlier);
// - the next grant id (never reused), or wanted where another home gave it;
uint32_t next_grant_id(gg_state& st, uint32_t wanted);
// - the losses already written to the ledger, and the daemon's heartbeat.
struct EngineStats;
EngineStats acknowledged_in(const gg_state& st);
void acknowledge_in(gg_state& st, const EngineStats& recorded);

class Gate {
 public:
  virtual ~Gate() = default;
  // "bpf" or "kmod": in records, the self-test and alarms.
  [[nodiscard]] virtual std::string_view gate_name() const = 0;
  // GG_MODE_* in force: GG_MODE_OBSERVE where this home cannot deny.
  [[nodiscard]] virtual unsigned mode() const = 0;
  // Replace the device table (new GPUs, new aliases); adds before it removes.
  virtual Result<void> set_devices(const DeviceTable& devices) = 0;
  // Replace the policy; the mode in force is kept.
  virtual Result<void> set_policy(gg_policy policy) = 0;
  // Install a checked grant: id 0 gets a fresh id, never reused across
  // daemons; another id is used as given (one grant, several homes).
  virtual Result<uint32_t> install_grant(Grant grant) = 0;
  virtual Result<void> revoke_grant(uint32_t id) = 0;
  // Live grants with their remaining uses (expired ones too, until revoked).
  [[nodiscard]] virtual Result<std::vector<Grant>> grants() const = 0;
  // The kernel's state against what this daemon put there: one line per
  // difference (a hook detached, a policy or grant not its own), none if equal.
  [[nodiscard]] virtual std::vector<std::string> audit() const = 0;
  // What this daemon found of the one before it.
  [[nodiscard]] virtual const Takeover& takeover() const = 0;
  // Where the gate outlives the daemon (a bpffs pin directory, /dev/gpugate
  // held against unload), "" if it ends with it.
  [[nodiscard]] virtual std::string persists_at() const = 0;
};

// Every home the daemon runs, as one (the control plane's grants, the
// upkeep's devices and audit): a grant goes into each with one id, so it
// is the same grant whichever home decides the node it covers.
class GateSet {
 public:
  void add(Gate* gate) { gates_.push_back(gate); }
  [[nodiscard]] bool empty() const { return gates_.empty(); }
  [[nodiscard]] const std::vector<Gate*>& gates() const { return gates_; }

  Result<uint32_t> install_grant(const Grant& grant);
  Result<void> revoke_grant(uint32_t id);
  [[nodiscard]] Result<std::vector<Grant>> grants() const;
  Result<void> set_devices(const DeviceTable& devices);
  // The same policy in every home (each keeps its mode).
  Result<void> set_policy(const gg_policy& policy);
  // One line per difference, each naming its home ("kmod: ...").
  [[nodiscard]] std::vector<std::string> audit() const;

 private:
  std::vector<Gate*> gates_;
};

}  // namespace gpugate
