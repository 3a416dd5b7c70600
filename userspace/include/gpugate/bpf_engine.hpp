// The live engine: the observe.bpf.c tracepoint programs on this kernel.
#pragma once

#include <memory>
#include <string>

#include "gpugate/decode.hpp"
#include "gpugate/engine.hpp"

struct observe_bpf;
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
};

// Mounts tracefs if the syscall tracepoints are missing (as root); names the fix if not.
Result<void> ensure_kernel_mounts();

class BpfEngine final : public Engine {
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

  // Replace the device table while running (new GPUs, new aliases).
  Result<void> set_devices(const DeviceTable& devices);
  // Replace the policy (the mode is kept: observe where the gate did not load).
  Result<void> set_policy(gg_policy policy) override;
  // The mode actually in force after start().
  [[nodiscard]] unsigned mode() const override { return mode_; }

 private:
  struct SkelDeleter {
    void operator()(observe_bpf* s) const;
  };
  struct RingDeleter {
    void operator()(ring_buffer* r) const;
  };
  static int on_record(void* ctx, void* data, size_t size);

  BpfEngineOptions opts_;
  std::unique_ptr<observe_bpf, SkelDeleter> skel_;
  std::unique_ptr<ring_buffer, RingDeleter> ring_;
  EventHandler* handler_ = nullptr;
  std::string fd_lookup_used_;
  unsigned mode_ = GG_MODE_OBSERVE;
  size_t delivered_ = 0;
  uint64_t malformed_ = 0;
};

}  // namespace gpugate
