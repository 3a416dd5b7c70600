#include "gpugate/timefmt.hpp"

#include <time.h>

#include <fmt/format.h>

namespace gpugate {

std::string format_local_rfc3339(int64_t unix_ns, int digits) {
  if (digits < 0) digits = 0;
  if (digits > 9) digits = 9;
  // Floor division: a time before 1970 still has a fraction in [0, 1 s).
  int64_t secs = unix_ns / 1000000000;
  int64_t frac = unix_ns % 1000000000;
  if (frac < 0) {
    frac += 1000000000;
    secs -= 1;
  }
  time_t t = static_cast<time_t>(secs);
  tm lt{};
  if (!localtime_r(&t, &lt)) return fmt::format("@{}", secs);  // out of tm's range: say what it is
  // tm_gmtoff is the offset in force at that instant (DST included).
  long off = lt.tm_gmtoff;
  char sign = off < 0 ? '-' : '+';
  if (off < 0) off = -off;
  std::string out = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", lt.tm_year + 1900, lt.tm_mon + 1, lt.tm_mday,
                                lt.tm_hour, lt.tm_min, lt.tm_sec);
  if (digits > 0) {
    for (int i = digits; i < 9; i++) frac /= 10;
    out += fmt::format(".{:0{}}", frac, digits);
  }
  out += fmt::format("{}{:02}:{:02}", sign, off / 3600, off / 60 % 60);
  return out;
}

std::string format_local_rfc3339_s(int64_t unix_s) { return format_local_rfc3339(unix_s * 1000000000, 0); }

}  // namespace gpugate
