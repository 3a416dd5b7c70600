// Strict base64 (RFC 4648, standard alphabet): decoding refuses anything a
// canonical encoder would not write, so two texts never decode alike.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gpugate/result.hpp"

namespace gpugate {

// Errors name the offset and what is wrong there.
Result<std::vector<uint8_t>> base64_decode(std::string_view text);
std::string base64_encode(std::span<const uint8_t> data, bool pad = true);

}  // namespace gpugate
