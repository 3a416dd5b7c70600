// `gpugate state`: each GPU's state as the watcher samples it, and what
// changed (docs/watch.md).
#pragma once

#include <functional>
#include <optional>

#include <CLI/CLI.hpp>

namespace gpugate::cli {

// Registers `state` on app; the returned function runs it after parsing and
// gives its exit status, or nullopt when another subcommand was chosen.
std::function<std::optional<int>()> add_state_command(CLI::App& app);

}  // namespace gpugate::cli
