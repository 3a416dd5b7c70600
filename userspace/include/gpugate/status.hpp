// The daemon's status file: what is attached, what was seen and lost.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "gpugate/result.hpp"

namespace gpugate {

// Atomically replaces path with the JSON document (write, fsync-free rename).
Result<void> write_status(const std::string& path, const nlohmann::ordered_json& status);
Result<nlohmann::json> read_status(const std::string& path);

}  // namespace gpugate
