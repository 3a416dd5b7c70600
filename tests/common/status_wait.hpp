// Waits for gpugated's status file to say "running" (and, if given, more):
// polled, with an upper bound for a slow machine, never a pace.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <thread>

#include <nlohmann/json.hpp>

#include "process.hpp"

namespace gpugate::test {

inline bool wait_for_status(const std::filesystem::path& status,
                            const std::function<bool(const nlohmann::json&)>& also = nullptr,
                            std::chrono::milliseconds limit = std::chrono::seconds(120),
                            std::chrono::milliseconds poll = std::chrono::milliseconds(50)) {
  for (auto end = std::chrono::steady_clock::now() + limit; std::chrono::steady_clock::now() < end;
       std::this_thread::sleep_for(poll)) {
    auto j = nlohmann::json::parse(slurp(status), nullptr, false);
    if (!j.is_discarded() && j.value("state", "") == "running" && (!also || also(j))) return true;
  }
  return false;
}

}  // namespace gpugate::test
