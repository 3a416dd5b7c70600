// What the daemon does for the gate between records: follows GPU nodes as
// they come and go (uevents), says so when a loaded driver has no watched
// node, and audits the kernel's state of the gate against its own.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include "gpugate/device.hpp"
#include "gpugate/gate.hpp"
#include "gpugate/pipeline.hpp"
#include "gpugate/uevent.hpp"

namespace gpugate {

class GateUpkeep {
 public:
  // gates may be empty (the simulation): then only the device alarm runs.
  // rescan builds the device table anew (discovery plus the --device aliases).
  GateUpkeep(GateSet& gates, DeviceTable& devices, std::function<DeviceTable()> rescan, Pipeline& pipeline,
             std::chrono::milliseconds audit_every = std::chrono::seconds(10));

  // Records at start: an alarm for a driver without a watched node, and why
  // hot-plug is not followed where uevents cannot be had.
  void start();
  // The uevent socket to poll (-1 if none).
  [[nodiscard]] int uevent_fd() const { return uevents_ ? uevents_->fd() : -1; }
  // The uevent socket is readable: rescan if a GPU node came or went.
  void on_uevent();
  // Every loop: the audit when it is due.
  void tick(std::chrono::steady_clock::time_point now);
  // Rescan now; records what changed (devices.changed) and installs it.
  void rescan();
  // One audit now; one alarm record per difference. Returns their number.
  size_t audit();

 private:
  void check_unwatched();

  GateSet& gates_;
  DeviceTable& devices_;
  std::function<DeviceTable()> rescan_;
  Pipeline& pipeline_;
  std::chrono::milliseconds audit_every_;
  std::chrono::steady_clock::time_point next_audit_{};
  std::optional<UeventMonitor> uevents_;
  std::string last_unwatched_;
};

}  // namespace gpugate
