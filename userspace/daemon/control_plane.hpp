// The daemon's control plane: nonces, signed requests, grants, over the
// control socket. Every decision it makes goes into the ledger.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "gpugate/bpf_engine.hpp"
#include "gpugate/control.hpp"
#include "gpugate/grant_service.hpp"
#include "gpugate/pipeline.hpp"

namespace gpugate {

class ControlPlane {
 public:
  static Result<ControlPlane> open(const std::string& socket_path, std::optional<gid_t> group,
                                   const std::string& nonce_path, SignersConfig signers, std::string host_id);

  [[nodiscard]] int fd() const { return server_.fd(); }
  [[nodiscard]] const std::string& socket_path() const { return server_.path(); }

  // Serves the connections waiting on the socket. engine is null where the
  // engine cannot hold grants (the simulation).
  void serve(Pipeline& pipeline, BpfEngine* engine, const DeviceTable& devices);
  // Drops grants whose window ended or whose uses are spent, recording each.
  void expire(Pipeline& pipeline, BpfEngine* engine);

 private:
  ControlPlane(ControlServer server, GrantService grants) : server_(std::move(server)), grants_(std::move(grants)) {}
  nlohmann::ordered_json handle(const ControlCall& call, Pipeline& pipeline, BpfEngine* engine,
                                const DeviceTable& devices);
  ControlServer server_;
  GrantService grants_;
};

}  // namespace gpugate
