// `gpugate log ...`: the investigator's commands on a ledger directory
// (verify, checkpoint, proof, verify-proof, show, stats, export, replay,
// timeline). docs/ledger.md has them all with examples.
#pragma once

#include <functional>
#include <optional>

#include <CLI/CLI.hpp>

namespace gpugate::cli {

// Registers `log` and its subcommands on app. After parsing, the returned
// function runs the chosen one and gives its exit status, or nullopt when
// `log` was not chosen.
std::function<std::optional<int>()> add_log_command(CLI::App& app);

}  // namespace gpugate::cli
