// Reading a whole small file, with a bound and an error that names it.
#pragma once

#include <cstddef>
#include <string>

#include "gpugate/result.hpp"

namespace gpugate {

// The file's bytes; an error when it cannot be read or holds more than max_bytes.
Result<std::string> read_file(const std::string& path, size_t max_bytes);

}  // namespace gpugate
