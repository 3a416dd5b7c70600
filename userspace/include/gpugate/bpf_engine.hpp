// The live BPF engine: the observer (tracepoints) everywhere, and the gate
// (BPF LSM, pinned) where the kernel loads LSM programs.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "gpugate/decode.hpp"
#include "gpugate/engine.hpp"
#include "gpugate/gate.hpp"

extern "C" {
#include "gpugate/state.h"
}

struct gpugate_bpf;
struct ring_buffer;

namespace gpugate {

struct BpfEngineOptions {
  uint32_t wakeup_bytes = 512 * 1024;  // queued bytes that wake the reader early
  uint32_t ring_bytes = 8u << 20;      // ring buffer size (a power of two); the daemon's RSS holds it twice
  bool verbose = false;                // libbpf debug output
  // How the entry program finds an fd's device: "auto" (BTF loads with
  // bpf_rdonly_cast where the kernel has it, kernel >= 6.2), "btf", "core"
  // (CO-RE probe reads, any kernel with BTF).
  std::string fd_lookup = "auto";
  // What to do with gated commands where the kernel loads BPF LSM programs:
  // GG_MODE_ENFORCE denies them (EPERM), GG_MODE_MONITOR records "would
  // deny". Where it does not, the engine observes (GG_MODE_OBSERVE) and says so.
  unsigned mode = GG_MODE_ENFORCE;
  // Actions per class, installed before any hook attaches (its mode field is
  // replaced by the mode in force).
  gg_policy policy = default_policy(GG_MODE_ENFORCE);
  // Where the gate's programs, links and maps are pinned (bpffs), so that
  // enforcement outlives the daemon and the next daemon takes it over
  // without a window. Empty: nothing is pinned (tests, one-shot tools).
  std::string pin_dir{};
  // The gate's protection of its own maps, programs, links and pins
  // (bpf/protect.bpf.c), armed where the gate loads.
  bool guard = true;
};

// One refusal of the self-protection (bpf/protect.bpf.c), as decoded.
struct GuardRefusal {
  std::string op;          // "map-write", "map-fd", ...
  uint32_t object_id = 0;  // map, program or link id, or a pin's inode number
  uint32_t bpf_cmd = 0;
  uint32_t pid = 0, tid = 0, uid = 0;
  std::string comm, exe;
};

// The default pin directory of gpugated.
inline constexpr const char* kDefaultPinDir = "/sys/fs/bpf/gpugate";

// Mounts bpffs on /sys/fs/bpf if it is not (as root); names the fix if not.
Result<void> ensure_bpffs();

// Removes a pinned gate: its links detach, enforcement ends. Returns the
// number of pins removed; a missing directory is not an error (0).
Result<unsigned> unload_pinned(const std::string& pin_dir);

// Mounts tracefs if the syscall tracepoints are missing (as root); names the fix if not.
Result<void> ensure_kernel_mounts();

class BpfEngine final : public Engine, public Gate {
 public:
  explicit BpfEngine(BpfEngineOptions opts = {});
  ~BpfEngine() override;
  BpfEngine(const BpfEngine&) = delete;
  BpfEngine& operator=(const BpfEngine&) = delete;

  [[nodiscard]] std::string_view name() const override { return "bpf"; }
  Result<std::vector<HookStatus>> start(const DeviceTable& devices) override;
  Result<size_t> poll(std::chrono::milliseconds timeout, EventHandler& handler) override;
  [[nodiscard]] EngineStats stats() const override;
  void stop() override;

  // The Gate (gate.hpp). The audit covers the links (attached, running this
  // daemon's programs), the policy, devices and majors, grants and the guard.
  [[nodiscard]] std::string_view gate_name() const override { return "bpf"; }
  Result<void> set_devices(const DeviceTable& devices) override;
  Result<void> set_policy(gg_policy policy) override;
  // The knobs map from the table's GPUs (called by set_devices).
  Result<void> set_knobs(const DeviceTable& devices);
  Result<uint32_t> install_grant(Grant grant) override;
  Result<void> revoke_grant(uint32_t id) override;
  [[nodiscard]] Result<std::vector<Grant>> grants() const override;
  [[nodiscard]] std::vector<std::string> audit() const override;
  [[nodiscard]] const Takeover& takeover() const override { return takeover_; }
  [[nodiscard]] std::string persists_at() const override { return pinned_ ? opts_.pin_dir : std::string(); }

  // Node kinds gpugate.ko decides on (GG_POLF_KMOD_*): the BPF programs
  // stay out of them, so each ioctl gets one verdict and one record.
  Result<void> set_kmod_owned(uint8_t policy_flags);
  // Whether the self-protection is armed.
  [[nodiscard]] bool guarded() const { return guard_armed_; }

  [[nodiscard]] EngineStats acknowledged_losses() const override;
  void acknowledge(const EngineStats& recorded) override;
  [[nodiscard]] int wait_fd() const override;
  [[nodiscard]] bool backlog() const override { return backlog_; }
  // Whether the gate is pinned (it outlives this process).
  [[nodiscard]] bool pinned() const { return pinned_; }

  // The mode actually in force after start().
  [[nodiscard]] unsigned mode() const override { return mode_; }

 private:
  struct SkelDeleter {
    void operator()(gpugate_bpf* s) const;
  };
  struct RingDeleter {
    void operator()(ring_buffer* r) const;
  };
  static int on_record(void* ctx, void* data, size_t size);

  BpfEngineOptions opts_;
  Result<void> arm_guard();
  Result<gg_state> read_state() const;
  Result<void> write_state(const gg_state& st) const;

  std::unique_ptr<gpugate_bpf, SkelDeleter> skel_;
  std::unique_ptr<ring_buffer, RingDeleter> ring_;
  EventHandler* handler_ = nullptr;
  unsigned mode_ = GG_MODE_OBSERVE;
  const DeviceTable* devices_ = nullptr;
  Takeover takeover_;
  bool pinned_ = false;
  size_t delivered_ = 0;
  bool backlog_ = false;  // the last poll stopped at a bound
  std::chrono::steady_clock::time_point poll_deadline_{};
  uint64_t malformed_ = 0;
  bool guard_armed_ = false;
  gg_policy policy_{};                  // as last installed
  uint8_t kmod_owned_ = 0;              // GG_POLF_KMOD_* added to every policy installed
  std::vector<uint32_t> link_ids_;      // the links this daemon holds
  std::vector<std::string> prog_tags_;  // of its attached programs
  std::vector<Grant> installed_;        // grants installed by this daemon, for the audit
};

}  // namespace gpugate
