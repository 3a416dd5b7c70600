// `gpugate log prune`: remove the oldest sealed segments of a ledger while
// keeping what lets the rest verify. docs/ledger.md, "Pruning".
#pragma once

#include <functional>
#include <optional>

#include <CLI/CLI.hpp>

namespace gpugate::cli {

// Registers `prune` under the `log` subcommand. After parsing, the returned
// function runs it and gives its exit status, or nullopt when it was not chosen.
std::function<std::optional<int>()> add_prune_command(CLI::App& log);

}  // namespace gpugate::cli
