// gpugate request nonce|submit, gpugate grants, gpugate exec: the commands
// that talk to the running gpugated over its control socket.
#pragma once

#include <memory>
#include <optional>

namespace CLI {
class App;
}

namespace gpugate::cli {

class ControlCommands {
 public:
  // Adds nonce and submit under request (the offline request commands'
  // subcommand), and grants and exec under app.
  ControlCommands(CLI::App& app, CLI::App* request);
  ~ControlCommands();
  ControlCommands(const ControlCommands&) = delete;
  ControlCommands& operator=(const ControlCommands&) = delete;

  // After parsing: the exit status when one of these subcommands ran.
  std::optional<int> run() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace gpugate::cli
