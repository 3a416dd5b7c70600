// `gpugate mmio capture|classify`: MMIO evidence from mmiotrace (docs/mmio.md).
#pragma once

#include <functional>
#include <optional>

#include <CLI/CLI.hpp>

namespace gpugate::cli {

// Registers `mmio` and its subcommands on app; the returned function runs the
// chosen one after parsing and gives its exit status, or nullopt.
std::function<std::optional<int>()> add_mmio_command(CLI::App& app);

}  // namespace gpugate::cli
