// What the guest tests say to the simulated NVIDIA driver (tests/vm/gpusim):
// its state in sysfs, RM controls in the driver's real structs, and a
// collector of the records an engine in the test process delivers.
#pragma once

#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "gpugate/engine.hpp"
#include "nvabi.hpp"

namespace gpugate::test {

inline std::map<std::string, uint64_t> gpu_state() {
  std::map<std::string, uint64_t> m;
  std::ifstream in("/sys/class/gpusim/nvidiactl/state");
  std::string k;
  uint64_t v;
  while (in >> k >> v) m[k] = v;
  return m;
}

// Any RM control through /dev/nvidiactl: -errno of ioctl, or the NV status.
inline int rm_control(int fd, uint32_t cmd, void* params, uint32_t size) {
  Nvos54 c = control(cmd, params, size);
  int r = ioctl(fd, kRmControl, &c);
  return r < 0 ? -errno : static_cast<int>(c.status);
}

// GPU_SET_POWER {target, newLevel, oldLevel}.
inline int set_power(int fd, uint32_t level) {
  uint32_t params[3] = {0, level, 0};
  return rm_control(fd, kSetPower, params, sizeof(params));
}

// The legacy PMGR power-limit control (root only, class power.limit).
inline int set_power_limit(int fd, uint32_t mw) { return rm_control(fd, kLegacyPmgrPowerLimit, &mw, sizeof(mw)); }

inline uint64_t boot_ns() {
  timespec ts{};
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// The enter records of this process (or of any, with any_pid), from an
// engine running in it.
struct Collector : gpugate::EventHandler {
  std::vector<gg_ioctl_enter> enters;
  std::vector<gg_ioctl_exit> exits;
  std::vector<gg_guard_event> guards;
  std::vector<gg_knob_event> knobs;  // of every process: a knob's writer may be a child
  bool any_pid = false;
  void on_enter(const gg_ioctl_enter& e) override {
    if (any_pid || e.hdr.pid == static_cast<uint32_t>(getpid())) enters.push_back(e);
  }
  void on_exit(const gg_ioctl_exit& x) override {
    if (any_pid || x.hdr.pid == static_cast<uint32_t>(getpid())) exits.push_back(x);
  }
  void on_guard(const gg_guard_event& g) override { guards.push_back(g); }
  void on_knob(const gg_knob_event& k) override { knobs.push_back(k); }
};

// Everything the engine has queued for this process, delivered.
template <class E>
void drain(E& engine, Collector& c) {
  using namespace std::chrono_literals;
  for (int i = 0; i < 200; i++) {
    auto n = engine.poll(20ms, c);
    if (!n.ok() || (*n == 0 && i > 2)) break;
  }
}

}  // namespace gpugate::test
