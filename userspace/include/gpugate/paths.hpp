// Default locations, shared by the daemon and the CLI.
#pragma once

namespace gpugate::paths {
inline constexpr const char* kLedger = "/var/lib/gpugate/ledger";  // a directory of segments
inline constexpr const char* kStateDir = "/var/lib/gpugate";
inline constexpr const char* kStatus = "/run/gpugate/status.json";
inline constexpr const char* kControlSocket = "/run/gpugate/control.sock";
inline constexpr const char* kAllowedSigners = "/etc/gpugate/allowed_signers";
}  // namespace gpugate::paths
