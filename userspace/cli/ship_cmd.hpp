// `gpugate log ship`: send the ledger's records and signed checkpoints off the
// host (a collector directory or an HTTP(S) collector) and resume where it
// stopped. docs/ledger.md, "Shipping the ledger off the host".
#pragma once

#include <functional>
#include <optional>

#include <CLI/CLI.hpp>

namespace gpugate::cli {

// Registers `ship` under the `log` subcommand. After parsing, the returned
// function runs it and gives its exit status, or nullopt when it was not chosen.
std::function<std::optional<int>()> add_ship_command(CLI::App& log);

}  // namespace gpugate::cli
