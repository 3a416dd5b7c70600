// What the daemon answers on its control socket: nonces, signed requests,
// grants. One request line in, one JSON answer out, every decision recorded.
//
// Every member of a request is type-checked (an error names the member and
// the type it must have), unknown members are refused, and nothing a client
// sends can throw out of answer(): a last-resort catch answers "internal
// error" and records it. Kept apart from the socket (ControlServer) and the
// engine (GrantStore), so that unit tests and the fuzzer drive it without a
// kernel.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "gpugate/control.hpp"
#include "gpugate/device.hpp"
#include "gpugate/gate.hpp"
#include "gpugate/grant_service.hpp"
#include "gpugate/log_prune.hpp"
#include "gpugate/result.hpp"

namespace gpugate {

// Where grants live: the BPF engine's maps in the daemon, a fake in tests.
class GrantStore {
 public:
  virtual ~GrantStore() = default;
  virtual Result<uint32_t> install(const Grant& grant) = 0;
  virtual Result<void> revoke(uint32_t id) = 0;
  virtual Result<std::vector<Grant>> list() const = 0;
};

// Where decisions are recorded: the ledger in the daemon.
class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void record(const std::string& type, nlohmann::ordered_json body) = 0;
};

// What one call may use: the devices, the grant store (null where the engine
// holds no grants, the simulation), the record, and the time on both clocks.
struct ControlContext {
  const DeviceTable& devices;
  GrantStore* store = nullptr;
  EventSink& events;
  int64_t now_unix = 0;      // seconds
  uint64_t now_boot_ns = 0;  // CLOCK_BOOTTIME
  // Prunes the ledger this daemon writes (absent: the op is refused).
  std::function<Result<nlohmann::ordered_json>(const ledger::PruneCut&)> prune;
  std::string ledger_dir;  // the directory it writes
};

// The ops and the members each takes (besides "op").
//   {"op":"ping"}                       -> {"ok":true,"pid":N}
//   {"op":"nonce"}                      -> {"ok":true,"nonce":..,"host":..,"issued_at":..,"expires_at":..}
//   {"op":"submit","request":TEXT,"signatures":[{"label":NAME,"armored":TEXT},...]}
//                                       -> {"ok":true,"grant_id":N,...} (the scope is the signed request's)
//   {"op":"grants"}                     -> {"ok":true,"grants":[...]}
//   {"op":"revoke","id":N}              -> {"ok":true,"grant_id":N}
//   {"op":"mmio","capture":{...}}       -> {"ok":true} (root only: an mmio.capture record)
//   {"op":"prune","ledger":DIR,"before_seq":N | "before_ns":T}
//                                       -> {"ok":true,"pruned":{...}} (root only: a ledger.pruned record)
// Errors: {"ok":false,"error":TEXT}.
inline constexpr size_t kMaxSignaturesPerRequest = 32;
inline constexpr size_t kMaxSignatureLabelBytes = 256;

class ControlService {
 public:
  explicit ControlService(GrantService grants) : grants_(std::move(grants)) {}

  // The answer to one request line from peer. Nothing a client sends makes
  // it throw: every exception is caught, answered and recorded (only running
  // out of memory while doing that could escape).
  nlohmann::ordered_json answer(const ControlPeer& peer, std::string_view line, const ControlContext& ctx);
  // Drops grants whose window ended or whose uses are spent, recording each.
  void expire(const ControlContext& ctx);

  [[nodiscard]] GrantService& grants() { return grants_; }

 private:
  nlohmann::ordered_json dispatch(const ControlPeer& peer, const nlohmann::json& request, const ControlContext& ctx);
  nlohmann::ordered_json submit(const ControlPeer& peer, const nlohmann::json& request, const ControlContext& ctx);
  nlohmann::ordered_json list_grants(const ControlContext& ctx);
  nlohmann::ordered_json revoke(const ControlPeer& peer, const nlohmann::json& request, const ControlContext& ctx);
  nlohmann::ordered_json mmio(const ControlPeer& peer, const nlohmann::json& request, const ControlContext& ctx);
  nlohmann::ordered_json prune(const ControlPeer& peer, const nlohmann::json& request, const ControlContext& ctx);
  GrantService grants_;
  std::map<uint32_t, std::string> scopes_;  // grant id -> the signed scope text, for gpugate grants
};

// The answer as one line of JSON (invalid UTF-8 replaced, never throws).
std::string control_answer_text(const nlohmann::ordered_json& answer) noexcept;

}  // namespace gpugate
