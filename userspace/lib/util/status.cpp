#include "gpugate/status.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

namespace gpugate {

Result<void> write_status(const std::string& path, const nlohmann::ordered_json& status) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return make_error(fmt::format("status file {}: {}", tmp, std::strerror(errno)), errno);
    out << status.dump(2) << "\n";
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    return make_error(fmt::format("status file {}: {}", path, std::strerror(errno)), errno);
  return {};
}

Result<nlohmann::json> read_status(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return make_error(fmt::format("no status at {}: gpugated is not running (start it with 'make run' or "
                                  "'gpugated'), or it writes its status elsewhere (--status-file)",
                                  path),
                      ENOENT);
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded()) return make_error(fmt::format("status file {} is not valid JSON", path));
  return j;
}

}  // namespace gpugate
