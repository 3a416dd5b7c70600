#include "gpugate/gate_upkeep.hpp"

#include <set>

#include <fmt/format.h>

namespace gpugate {

GateUpkeep::GateUpkeep(GateSet& gates, DeviceTable& devices, std::function<DeviceTable()> rescan, Pipeline& pipeline,
                       std::chrono::milliseconds audit_every)
    : gates_(gates), devices_(devices), rescan_(std::move(rescan)), pipeline_(pipeline), audit_every_(audit_every) {}

void GateUpkeep::start() {
  if (auto m = UeventMonitor::open(); m)
    uevents_.emplace(std::move(*m));
  else
    pipeline_.write_event("alarm", {{"what", "hot-plug"}, {"error", m.error().message}});
  check_unwatched();
  next_audit_ = std::chrono::steady_clock::now() + audit_every_;
}

void GateUpkeep::on_uevent() {
  if (uevents_ && uevents_->drain()) rescan();
}

void GateUpkeep::rescan() {
  DeviceTable fresh = rescan_();
  std::set<std::string> before, after;
  for (const auto& d : devices_.devices()) before.insert(d.path + " " + d.rdev_string());
  for (const auto& d : fresh.devices()) after.insert(d.path + " " + d.rdev_string());
  // A GPU's knobs change inode when it is removed and found again.
  for (const auto& g : devices_.gpus())
    for (const auto& k : g.knobs) before.insert(fmt::format("{} inode {}", k.path, k.ino));
  for (const auto& g : fresh.gpus())
    for (const auto& k : g.knobs) after.insert(fmt::format("{} inode {}", k.path, k.ino));
  if (before == after) return;
  nlohmann::ordered_json added = nlohmann::ordered_json::array(), removed = nlohmann::ordered_json::array();
  for (const auto& a : after)
    if (!before.count(a)) added.push_back(a);
  for (const auto& b : before)
    if (!after.count(b)) removed.push_back(b);
  devices_ = std::move(fresh);
  nlohmann::ordered_json rec{{"added", added}, {"removed", removed}, {"devices", devices_json(devices_)}};
  if (auto r = gates_.set_devices(devices_); !r) rec["error"] = r.error().message;
  pipeline_.write_event("devices.changed", rec);
  check_unwatched();
}

void GateUpkeep::check_unwatched() {
  auto alarm = unwatched_driver(devices_);
  std::string text = alarm.value_or("");
  if (text == last_unwatched_) return;  // said once, until it changes
  last_unwatched_ = text;
  if (alarm) pipeline_.write_event("alarm", {{"what", "unwatched-driver"}, {"detail", *alarm}});
}

size_t GateUpkeep::audit() {
  auto diffs = gates_.audit();
  for (const auto& d : diffs) pipeline_.write_event("alarm", {{"what", "gate-audit"}, {"detail", d}});
  return diffs.size();
}

void GateUpkeep::tick(std::chrono::steady_clock::time_point now) {
  if (now < next_audit_) return;
  next_audit_ = now + audit_every_;
  audit();
}

}  // namespace gpugate
