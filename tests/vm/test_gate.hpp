// Which gate the guest tests run against, and what a refusal looks like
// there. The vm suites set GG_VM_GATE:
//   lsm   the BPF LSM gate (suite gpusim, booted with bpf in lsm=);
//   kmod  gpugate.ko alone (suite kmod-nolsm, booted without bpf in lsm=:
//         BPF only observes, and stays out of the module's nodes);
//   both  gpugate.ko and the BPF LSM gate (suite kmod): the module decides
//         the nodes its hooks cover, BPF the rest; one verdict per ioctl.
// The gating tests hold for every gate; only the answers differ: the LSM
// refuses any ioctl with EPERM, the module refuses an NVIDIA RM control as
// the driver does (NV_ERR_INSUFFICIENT_PERMISSIONS in the struct, ioctl 0)
// and a DRM ioctl with EPERM.
#pragma once

#include <cerrno>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "gpugate/bpf_engine.hpp"
#include "gpugate/kmod_engine.hpp"
#include "gpusim_client.hpp"

namespace gpugate::test {

enum class GateKind { kLsm, kKmod, kBoth };

inline GateKind gate_kind() {
  const char* v = std::getenv("GG_VM_GATE");
  std::string s = v ? v : "lsm";
  return s == "kmod" ? GateKind::kKmod : s == "both" ? GateKind::kBoth : GateKind::kLsm;
}

inline bool module_gates() { return gate_kind() != GateKind::kLsm; }

constexpr int kNvInsufficientPermissions = 0x1B;

// What rm_control() returns for a refused RM control under this gate.
inline int rm_denied() { return module_gates() ? kNvInsufficientPermissions : -EPERM; }

// gpugated's arguments for this gate.
inline std::vector<std::string> gate_args() { return {"--kmod", module_gates() ? "on" : "off"}; }

// The module records every ioctl of the nodes it gates, daemon or not; what
// it recorded before a test's daemon starts would be that daemon's to log.
// Tests that count their records start from an empty ring.
inline void forget_module_records() {
  if (!module_gates() || !kmod_present()) return;
  KmodEngine reader({GG_KMOD_DEV_PATH, GG_MODE_OBSERVE, default_policy(GG_MODE_OBSERVE), false});
  if (!reader.start({}).ok()) return;
  Collector all;
  all.any_pid = true;
  drain(reader, all);
}

// Ends the module's gate after a daemon stopped (it holds the gate until
// then): gpugated --unload's library call.
inline void release_module() {
  if (module_gates() && kmod_present()) (void)kmod_release();
}

// Whether a record's hook is one of this gate's deciding hooks.
inline bool deciding_hook(const std::string& hook) {
  return module_gates() ? hook.rfind("kmod/", 0) == 0 : hook.rfind("lsm", 0) == 0;
}

// The gate in the test process: the engines of this gate, their grants as
// one (GateSet), their records drained together.
struct InProcessGate {
  // table: the devices (and GPUs) to push, discovered if none; the module
  // must be gating the family module_must_own (GG_POLF_KMOD_*).
  explicit InProcessGate(gg_policy policy = default_policy(GG_MODE_ENFORCE),
                         std::optional<DeviceTable> table = std::nullopt,
                         uint8_t module_must_own = GG_POLF_KMOD_NVIDIA) {
    devices = table ? std::move(*table) : DeviceTable::discover();
    GateKind kind = gate_kind();
    if (kind != GateKind::kKmod) {
      BpfEngineOptions o;
      o.policy = policy;
      bpf = std::make_unique<BpfEngine>(o);
      auto h = bpf->start(devices);
      if (!h.ok()) {
        error = "bpf: " + h.error().message;
        return;
      }
      hooks.insert(hooks.end(), h->begin(), h->end());
      if (bpf->mode() != GG_MODE_ENFORCE) {
        error = "the BPF LSM gate did not load";
        return;
      }
    }
    if (kind != GateKind::kLsm) {
      kmod = std::make_unique<KmodEngine>(KmodEngineOptions{GG_KMOD_DEV_PATH, GG_MODE_ENFORCE, policy, false});
      auto h = kmod->start(devices);
      if (!h.ok()) {
        error = "kmod: " + h.error().message;
        return;
      }
      hooks.insert(hooks.end(), h->begin(), h->end());
      if (!(kmod->owned_policy_flags() & module_must_own)) {
        error =
            module_must_own == GG_POLF_KMOD_NVIDIA
                ? "gpugate.ko is not gating the NVIDIA driver (is gpusim.ko loaded?)"
                : fmt::format("gpugate.ko is not gating what this test needs (GG_POLF_KMOD_* {:#x})", module_must_own);
        return;
      }
      if (bpf) {
        auto r = bpf->set_kmod_owned(kmod->owned_policy_flags());
        if (!r.ok()) {
          error = r.error().message;
          return;
        }
      }
    }
    if (bpf) gates.add(bpf.get());
    if (kmod) gates.add(kmod.get());
    // records an earlier test left in the module's ring are not this gate's
    if (kmod) {
      Collector stale;
      stale.any_pid = true;
      drain(*kmod, stale);
    }
    ok = true;
  }
  ~InProcessGate() {
    // the module keeps the last tables: leave it observing for the next test
    if (kmod) {
      gg_policy p = default_policy(GG_MODE_OBSERVE);
      (void)kmod->set_policy(p);
    }
  }
  Result<uint32_t> install_grant(const Grant& g) { return gates.install_grant(g); }
  Result<void> revoke_grant(uint32_t id) { return gates.revoke_grant(id); }
  Result<void> set_policy(const gg_policy& p) { return gates.set_policy(p); }
  // The records of this process (or of any), from every engine of the gate.
  std::vector<gg_ioctl_enter> records(bool any_pid = false) {
    Collector c;
    c.any_pid = any_pid;
    if (bpf) drain(*bpf, c);
    if (kmod) drain(*kmod, c);
    return c.enters;
  }
  void drain_into(Collector& c) {
    if (bpf) drain(*bpf, c);
    if (kmod) drain(*kmod, c);
  }
  DeviceTable devices;
  std::unique_ptr<BpfEngine> bpf;
  std::unique_ptr<KmodEngine> kmod;
  GateSet gates;
  std::vector<HookStatus> hooks;
  bool ok = false;
  std::string error;
};

}  // namespace gpugate::test
