// gpugate request new|sign|verify: signed authorizations without a daemon.
// main.cpp creates one RequestCommands before parsing and asks run() after.
#pragma once

#include <memory>
#include <optional>

namespace CLI {
class App;
}

namespace gpugate::cli {

class RequestCommands {
 public:
  // Adds "request" with the offline subcommands new, sign and verify.
  explicit RequestCommands(CLI::App& app);
  ~RequestCommands();
  RequestCommands(const RequestCommands&) = delete;
  RequestCommands& operator=(const RequestCommands&) = delete;

  // The "request" subcommand, for subcommands that need the daemon (submit).
  CLI::App* request() const;
  // After parsing: the exit status when one of our subcommands ran.
  std::optional<int> run() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace gpugate::cli
