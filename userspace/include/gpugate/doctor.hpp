// gpugate doctor: what this host supports for gpugate, and the fix for
// what is missing, one check a line (docs/operations.md).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace gpugate::doctor {

// Where the checks look; tests point them at a fake tree.
struct Roots {
  std::string proc = "/proc";
  std::string sys = "/sys";
  std::string boot = "/boot";
  std::string lib_modules = "/lib/modules";
  std::string etc = "/etc";
  std::string release;               // the running kernel's release; "" asks uname
  std::optional<bool> clock_synced;  // "" asks the kernel (ntp_adjtime)
  std::optional<bool> root;          // "" asks geteuid
};

struct Options {
  std::string control_group = "gpugate";
  std::string kmod_device = "/dev/gpugate";
};

struct Check {
  std::string name;
  std::string status;  // "ok", "warn" (works, weaker), "fail" (a part of gpugate cannot run)
  std::string detail;
  std::string fix;  // empty when ok
};

std::vector<Check> run_checks(const Roots& roots = {}, const Options& options = {});
nlohmann::ordered_json checks_json(const std::vector<Check>& checks);
std::string checks_text(const std::vector<Check>& checks);
// 0 when nothing failed, 1 otherwise.
int exit_status(const std::vector<Check>& checks);

}  // namespace gpugate::doctor
