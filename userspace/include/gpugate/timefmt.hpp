// Times for people: local RFC 3339 with the zone's offset, so a line read on
// the host matches its clock and still names one instant. Machine output
// (--json, the ledger, exports) keeps UTC and epoch numbers.
#pragma once

#include <cstdint>
#include <string>

namespace gpugate {

// "2026-12-06T23:51:02.123+01:00" in the process's time zone (TZ, else
// /etc/localtime); digits 0..9 of the second's fraction (0: no fraction).
std::string format_local_rfc3339(int64_t unix_ns, int digits = 3);
// Whole seconds since the epoch: "2026-12-06T23:51:02+01:00".
std::string format_local_rfc3339_s(int64_t unix_s);

}  // namespace gpugate
