// The daemon's control plane: the control socket (ControlServer), what it
// answers (ControlService) and the gates that hold the grants, driven from
// the main loop without ever blocking it. Every decision goes into the ledger.
#pragma once

#include <optional>
#include <string>

#include "gpugate/control.hpp"
#include "gpugate/control_service.hpp"
#include "gpugate/gate.hpp"
#include "gpugate/grant_service.hpp"
#include "gpugate/pipeline.hpp"

namespace gpugate {

class ControlPlane {
 public:
  // Checks the signers (a bad allowed_signers line is an error here, naming
  // file:line), opens the nonce store and listens on socket_path.
  static Result<ControlPlane> open(const std::string& socket_path, std::optional<gid_t> group,
                                   const std::string& nonce_path, SignersConfig signers, std::string host_id);

  // For the main loop's poll: readable when serve() has work.
  [[nodiscard]] int fd() const { return server_.fd(); }
  [[nodiscard]] const std::string& socket_path() const { return server_.path(); }
  // How long the main loop may sleep before serve() must run (a deadline), in ms, at most cap_ms.
  [[nodiscard]] int poll_timeout_ms(int cap_ms) const;

  // Serves what is ready on the socket (never blocks; bounded work per
  // call). gates is empty where nothing can hold grants (the simulation).
  // Call it on every turn of the main loop: it also ends connections past
  // their deadline.
  void serve(Pipeline& pipeline, GateSet& gates, const DeviceTable& devices);
  // Drops grants whose window ended or whose uses are spent, recording each.
  void expire(Pipeline& pipeline, GateSet& gates);

 private:
  ControlPlane(ControlServer server, ControlService service)
      : server_(std::move(server)), service_(std::move(service)) {}
  ControlServer server_;
  ControlService service_;
};

}  // namespace gpugate
