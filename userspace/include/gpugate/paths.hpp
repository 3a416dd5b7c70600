// Default locations, shared by the daemon and the CLI.
#pragma once

namespace gpugate::paths {
inline constexpr const char* kLedger = "/var/lib/gpugate/ledger.jsonl";
inline constexpr const char* kStateDir = "/var/lib/gpugate";
inline constexpr const char* kStatus = "/run/gpugate/status.json";
}  // namespace gpugate::paths
