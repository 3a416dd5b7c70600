// The module engine: gpugate.ko through /dev/gpugate (kmod/uapi/gpugate/kmod.h).
// The module decides on the driver's own kernel copy of each request (docs/
// kernel-module.md); this engine pushes it the daemon's devices, policy and
// grants, reads its records, and checks that it still holds what was pushed.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "gpugate/engine.hpp"
#include "gpugate/gate.hpp"
#include "gpugate/unique_fd.hpp"

extern "C" {
#include "gpugate/kmod.h"
}

namespace gpugate {

struct KmodEngineOptions {
  std::string device = GG_KMOD_DEV_PATH;
  // GG_MODE_ENFORCE, GG_MODE_MONITOR or GG_MODE_OBSERVE: the module can deny
  // wherever its hooks are attached.
  unsigned mode = GG_MODE_ENFORCE;
  gg_policy policy{};
  // Hold the module against unload while it enforces (until --unload).
  bool hold = true;
};

// One driver family of the module (nvidia, drm) and whether it is gating.
struct KmodFamily {
  std::string name;
  std::string module;  // the kernel module holding its symbols ("gpusim", "nvidia", "drm")
  unsigned state = GG_KHOOK_WAITING;
  std::string why;
  std::vector<gg_kmod_hook> hooks;
};

// Whether gpugate.ko is loaded here (its node exists).
bool kmod_present(const std::string& device = GG_KMOD_DEV_PATH);

// gpugated --unload for the module: let go of the hold, stop enforcing, drop
// its grants, so that rmmod can remove it. Returns the module's instance id.
Result<uint64_t> kmod_release(const std::string& device = GG_KMOD_DEV_PATH);

class KmodEngine final : public Engine, public Gate {
 public:
  explicit KmodEngine(KmodEngineOptions opts = {});
  ~KmodEngine() override;
  KmodEngine(const KmodEngine&) = delete;
  KmodEngine& operator=(const KmodEngine&) = delete;

  // Engine
  [[nodiscard]] std::string_view name() const override { return "kmod"; }
  Result<std::vector<HookStatus>> start(const DeviceTable& devices) override;
  Result<size_t> poll(std::chrono::milliseconds timeout, EventHandler& handler) override;
  [[nodiscard]] EngineStats stats() const override;
  [[nodiscard]] EngineStats acknowledged_losses() const override;
  void acknowledge(const EngineStats& recorded) override;
  [[nodiscard]] int wait_fd() const override { return fd_.get(); }
  [[nodiscard]] bool backlog() const override { return backlog_; }
  void stop() override;

  // Gate
  [[nodiscard]] std::string_view gate_name() const override { return "kmod"; }
  [[nodiscard]] unsigned mode() const override { return mode_; }
  Result<void> set_devices(const DeviceTable& devices) override;
  Result<void> set_policy(gg_policy policy) override;
  Result<uint32_t> install_grant(Grant grant) override;
  Result<void> revoke_grant(uint32_t id) override;
  [[nodiscard]] Result<std::vector<Grant>> grants() const override;
  [[nodiscard]] std::vector<std::string> audit() const override;
  [[nodiscard]] const Takeover& takeover() const override { return takeover_; }
  [[nodiscard]] std::string persists_at() const override { return held_ ? opts_.device : std::string(); }

  // The module's driver families as it reports them now.
  [[nodiscard]] Result<std::vector<KmodFamily>> families() const;
  // GG_POLF_KMOD_* for the families attached now: what BPF must leave alone.
  [[nodiscard]] uint8_t owned_policy_flags() const;
  [[nodiscard]] const gg_kmod_hello& hello() const { return hello_; }
  // The self-test rows for the hooks as they are now.
  [[nodiscard]] std::vector<HookStatus> hook_rows() const;

 private:
  Result<void> set_knobs(const DeviceTable& devices);
  Result<gg_state> read_state() const;
  Result<void> write_state(const gg_state& st) const;
  Result<void> ioctl_checked(unsigned long request, void* arg, const char* what) const;
  void deliver(const uint8_t* data, size_t n, EventHandler& handler);

  KmodEngineOptions opts_;
  UniqueFd fd_;
  gg_kmod_hello hello_{};
  unsigned mode_ = GG_MODE_OBSERVE;
  bool held_ = false;
  Takeover takeover_;
  const DeviceTable* devices_ = nullptr;
  gg_policy policy_{};
  std::vector<Grant> installed_;
  std::vector<uint8_t> buf_;
  size_t delivered_ = 0;
  bool backlog_ = false;  // the last poll stopped at a bound
  uint64_t malformed_ = 0;
};

}  // namespace gpugate
