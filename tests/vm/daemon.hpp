// gpugated in a guest test: started with this suite's gate, in a temporary
// directory, and waited for until its status file says it runs.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "process.hpp"
#include "tempdir.hpp"
#include "test_gate.hpp"

namespace gpugate::test {

inline pid_t start_daemon(const TempDir& dir, const std::vector<std::string>& extra, const std::string& out_name) {
  std::string status = dir.path / "status.json";
  std::filesystem::remove(status);
  std::vector<std::string> argv = {std::string(GG_BIN_DIR) + "/gpugated",
                                   "--ledger",
                                   dir.path / "ledger",
                                   "--status-file",
                                   status,
                                   "--state-dir",
                                   dir.path};
  for (const auto& a : gate_args()) argv.push_back(a);
  argv.insert(argv.end(), extra.begin(), extra.end());
  forget_module_records();
  pid_t pid = spawn(argv, dir.path / out_name);
  for (int i = 0; i < 600 && slurp(status).find("\"running\"") == std::string::npos; i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_NE(slurp(status).find("\"running\""), std::string::npos) << slurp(dir.path / out_name);
  return pid;
}

}  // namespace gpugate::test
