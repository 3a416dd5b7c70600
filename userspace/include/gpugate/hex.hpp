// Hex text <-> bytes, for request bytes in records and on the command line.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gpugate/result.hpp"

namespace gpugate {

std::string to_hex(std::span<const uint8_t> bytes);

// Accepts "c0ffee", "C0 FF EE", "c0:ff:ee", "0xc0ffee"; names the offending
// character on error.
Result<std::vector<uint8_t>> parse_hex(std::string_view text);

// "0xC020462A", "3223340586": a 32- or 64-bit number.
Result<uint64_t> parse_number(std::string_view text, uint64_t max = UINT64_MAX);

}  // namespace gpugate
