#include "gpugate/file.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>

#include <fmt/format.h>

namespace gpugate {

Result<std::string> read_file(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(fmt::format("cannot open {}: {}", path, std::strerror(errno)));
  std::string text;
  char buf[4096];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > max_bytes)
      return make_error(fmt::format("{} is larger than {} bytes; is it the right file?", path, max_bytes));
  }
  if (in.bad()) return make_error(fmt::format("cannot read {}", path));
  return text;
}

}  // namespace gpugate
