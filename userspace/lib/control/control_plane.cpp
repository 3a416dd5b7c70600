#include "gpugate/control_plane.hpp"

#include <time.h>

#include <algorithm>
#include <exception>

#include <fmt/format.h>

#include "gpugate/hostinfo.hpp"

namespace gpugate {
namespace {

int64_t unix_now() { return static_cast<int64_t>(::time(nullptr)); }

// The gates' grants as the control service sees them.
class GateGrants final : public GrantStore {
 public:
  explicit GateGrants(GateSet& gates) : gates_(gates) {}
  Result<uint32_t> install(const Grant& grant) override { return gates_.install_grant(grant); }
  Result<void> revoke(uint32_t id) override { return gates_.revoke_grant(id); }
  Result<std::vector<Grant>> list() const override { return gates_.grants(); }

 private:
  GateSet& gates_;
};

class PipelineEvents final : public EventSink {
 public:
  explicit PipelineEvents(Pipeline& pipeline) : pipeline_(pipeline) {}
  void record(const std::string& type, nlohmann::ordered_json body) override {
    pipeline_.write_event(type, std::move(body));
  }

 private:
  Pipeline& pipeline_;
};

nlohmann::ordered_json peer_json(const ControlPeer& p) { return {{"pid", p.pid}, {"uid", p.uid}, {"gid", p.gid}}; }

}  // namespace

Result<ControlPlane> ControlPlane::open(const std::string& socket_path, std::optional<gid_t> group,
                                        const std::string& nonce_path, SignersConfig signers, std::string host_id) {
  auto grants = GrantService::open(nonce_path, std::move(signers), std::move(host_id), unix_now());
  if (!grants) return grants.error();
  ControlServerOptions options;
  options.group = group;
  auto server = ControlServer::listen(socket_path, options);
  if (!server) return server.error();
  return ControlPlane(std::move(*server), ControlService(std::move(*grants)));
}

int ControlPlane::poll_timeout_ms(int cap_ms) const {
  auto next = server_.next_deadline();
  if (!next) return cap_ms;
  auto left = std::chrono::ceil<std::chrono::milliseconds>(*next - ControlServer::Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, cap_ms));
}

void ControlPlane::serve(Pipeline& pipeline, GateSet& gates, const DeviceTable& devices) {
  auto batch = server_.serve(ControlServer::Clock::now());
  for (const auto& r : batch.refusals)
    pipeline.write_event("control.refused", {{"error", r.reason}, {"peer", peer_json(r.peer)}});
  if (batch.requests.empty()) return;
  std::optional<GateGrants> store;
  if (!gates.empty()) store.emplace(gates);
  PipelineEvents events(pipeline);
  for (auto& request : batch.requests) {
    ControlContext ctx{devices, store ? &*store : nullptr, events, unix_now(), boottime_ns(), {}, {}};
    ctx.prune = [&pipeline](const ledger::PruneCut& cut) { return pipeline.prune(cut); };
    ctx.ledger_dir = pipeline.ledger_dir();
    std::string answer;
    try {
      answer = control_answer_text(service_.answer(request.peer, request.line, ctx));
    } catch (...) {  // out of memory while answering: the loop goes on
      answer = control_error_answer("internal error: out of memory while answering");
    }
    (void)pipeline.flush();  // recorded before the caller hears of it
    server_.respond(request.id, std::move(answer), ControlServer::Clock::now());
  }
}

void ControlPlane::expire(Pipeline& pipeline, GateSet& gates) {
  if (gates.empty()) return;
  static const DeviceTable kNoDevices;  // ending grants names no device
  GateGrants store(gates);
  PipelineEvents events(pipeline);
  try {
    service_.expire({kNoDevices, &store, events, unix_now(), boottime_ns(), {}, {}});
  } catch (const std::exception& e) {
    pipeline.write_event("control.error", {{"error", fmt::format("expiring grants: {}", e.what())}});
  }
}

}  // namespace gpugate
