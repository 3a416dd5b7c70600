// A scripted engine: requests described in JSON lines become the same
// records the BPF observer would produce, decoded by the same decoder.
#pragma once

#include <deque>
#include <istream>
#include <string>
#include <vector>

#include "gpugate/engine.hpp"

namespace gpugate {

struct SimCall {
  std::string device;  // path, must be in the device table
  uint32_t request = 0;
  std::vector<uint8_t> arg, inner, params;
  int64_t ret = 0;
  std::optional<uint32_t> nv_status;
  uint32_t pid = 4242, tid = 4242, uid = 0;
  uint64_t cgroup_id = 1;
  std::string comm = "gpugate-sim";
  // When the call happens, in ns after the simulation's start ("at_ms"):
  // a model of hours of traffic runs in seconds with its own timing.
  // Unset: the boot clock when the call is read.
  std::optional<uint64_t> at_ns;
};

// One JSON object per line:
// {"device":"/dev/full","ioctl":"0xc020462a","arg":"hex","inner":"hex",
//  "params":"hex","ret":0,"nv_status":0,"pid":1,"uid":0,"cgroup_id":1,"comm":"x",
//  "at_ms":0}
// Errors name the line.
Result<std::vector<SimCall>> parse_sim_script(std::istream& in, const std::string& name);

class SimEngine final : public Engine {
 public:
  explicit SimEngine(std::vector<SimCall> calls) : calls_(calls.begin(), calls.end()) {}
  [[nodiscard]] std::string_view name() const override { return "sim"; }
  Result<std::vector<HookStatus>> start(const DeviceTable& devices) override;
  Result<size_t> poll(std::chrono::milliseconds timeout, EventHandler& handler) override;
  [[nodiscard]] bool finished() const override { return calls_.empty(); }
  [[nodiscard]] EngineStats stats() const override { return stats_; }
  void stop() override { calls_.clear(); }
  Result<void> set_policy(gg_policy policy) override {
    policy.mode = GG_MODE_OBSERVE;  // the simulation cannot deny
    policy_ = policy;
    return {};
  }

 private:
  std::deque<SimCall> calls_;
  const DeviceTable* devices_ = nullptr;
  EngineStats stats_;
  uint64_t seq_ = 0;
  uint64_t start_ns_ = 0;  // the boot clock at start(): "at_ms" counts from it
  gg_policy policy_ = default_policy(GG_MODE_OBSERVE);
};

}  // namespace gpugate
