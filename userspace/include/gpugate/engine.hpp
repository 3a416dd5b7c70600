// One interface for every source of GPU requests: the live BPF engine, the
// kernel module (gpugate.ko), and the simulation engine. Engines that also
// decide in the kernel are Gates as well (gate.hpp).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

extern "C" {
#include "gpugate/event.h"
#include "gpugate/kmod.h"
}

#include "gpugate/decode.hpp"
#include "gpugate/device.hpp"
#include "gpugate/result.hpp"

namespace gpugate {

// Receives records in kernel order. The references live only during the call.
class EventHandler {
 public:
  virtual ~EventHandler() = default;
  virtual void on_enter(const gg_ioctl_enter& e) = 0;
  virtual void on_exit(const gg_ioctl_exit& e) = 0;
  // The gate refused an operation on its own objects (self-protection).
  virtual void on_guard(const gg_guard_event& e) { (void)e; }
  // gpugate.ko's tables changed, or a driver family attached or detached.
  virtual void on_kmod_config(const gg_kmod_config_event& e) { (void)e; }
  // A write to a GPU's sysfs or procfs knob, decided by the gate.
  virtual void on_knob(const gg_knob_event& e) { (void)e; }
};

// One hook the engine tried to attach, for the startup self-test.
struct HookStatus {
  std::string name;  // "tp/syscalls/sys_enter_ioctl"
  bool attached = false;
  std::string detail;  // why not, or what it does
  bool needed = true;  // false: left out on purpose (detail says why), not a failure
};

struct EngineStats {
  std::array<gg_class_counters, GG_CLASS_COUNT> per_class{};
  uint64_t fd_lookup_faults = 0;
  uint64_t guard_dropped = 0;  // self-protection refusals whose record found the ring full

  [[nodiscard]] uint64_t seen() const;
  [[nodiscard]] uint64_t dropped() const;
};

class Engine {
 public:
  virtual ~Engine() = default;
  [[nodiscard]] virtual std::string_view name() const = 0;

  // Attach to the devices; returns every hook tried, attached or not. An
  // error means the engine cannot run at all.
  virtual Result<std::vector<HookStatus>> start(const DeviceTable& devices) = 0;

  // Deliver what is pending, waiting up to timeout for more. Returns the
  // number of records delivered (0 on timeout), at most kMaxRecordsPerPoll
  // (the module's engine: and the rest of the read that crossed it).
  virtual Result<size_t> poll(std::chrono::milliseconds timeout, EventHandler& handler) = 0;
  // Under a flood the kernel refills the ring as fast as it is read, and a
  // poll that read until empty would never return: the daemon's loop, which
  // answers the control socket, writes the status, signs checkpoints and
  // pings the watchdog, must come round: after this many records (about
  // 20 ms of work here), or this long after the first, whichever is first
  // (a daemon starved of CPU by the flood's threads reads few per second).
  static constexpr size_t kMaxRecordsPerPoll = 4096;
  static constexpr std::chrono::milliseconds kMaxPollTime{20};
  // Whether the last poll stopped at a bound with records left: the
  // caller comes back without waiting.
  [[nodiscard]] virtual bool backlog() const { return false; }

  // Install the per-class actions of a policy (the engine keeps its mode).
  virtual Result<void> set_policy(gg_policy policy) = 0;

  // GG_MODE_OBSERVE, GG_MODE_MONITOR or GG_MODE_ENFORCE, as in force.
  [[nodiscard]] virtual unsigned mode() const { return GG_MODE_OBSERVE; }

  // True once a finite source (simulation, replay) has nothing more.
  [[nodiscard]] virtual bool finished() const { return false; }

  // Counters kept at the source: records produced and lost, per class.
  [[nodiscard]] virtual EngineStats stats() const = 0;

  // Engines whose kernel state outlives the daemon (pinned) keep, beside it,
  // the losses the daemon already recorded and a heartbeat, so the next
  // daemon records exactly what it missed. Others keep nothing.
  [[nodiscard]] virtual EngineStats acknowledged_losses() const { return {}; }
  virtual void acknowledge(const EngineStats& recorded) { (void)recorded; }

  // A descriptor that becomes readable when records wait (for poll), or -1.
  [[nodiscard]] virtual int wait_fd() const { return -1; }

  virtual void stop() = 0;
};

}  // namespace gpugate
