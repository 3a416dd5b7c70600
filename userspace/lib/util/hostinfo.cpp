#include "gpugate/hostinfo.hpp"

#include <time.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include <fmt/format.h>

namespace gpugate {
namespace {

std::string first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

int64_t clock_ns(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

}  // namespace

HostInfo HostInfo::load(const std::string& state_dir) {
  HostInfo h;
  h.boot_id = first_line("/proc/sys/kernel/random/boot_id");
  h.host_id = first_line("/etc/machine-id");
  if (h.host_id.empty()) {
    // No machine-id (containers, minimal systems): keep our own, stable.
    std::string path = state_dir + "/host-id";
    h.host_id = first_line(path);
    if (h.host_id.empty()) {
      std::random_device rd;
      h.host_id = fmt::format("{:08x}{:08x}{:08x}{:08x}", rd(), rd(), rd(), rd());
      std::error_code ec;
      std::filesystem::create_directories(state_dir, ec);
      std::ofstream(path) << h.host_id << "\n";
    }
  }
  char name[256] = {};
  gethostname(name, sizeof(name) - 1);
  h.hostname = name;
  return h;
}

int64_t realtime_offset_ns() { return clock_ns(CLOCK_REALTIME) - clock_ns(CLOCK_BOOTTIME); }
uint64_t boottime_ns() { return static_cast<uint64_t>(clock_ns(CLOCK_BOOTTIME)); }

std::string format_utc(int64_t realtime_ns, int digits) {
  time_t secs = static_cast<time_t>(realtime_ns / 1000000000);
  int64_t frac = realtime_ns % 1000000000;
  tm t{};
  gmtime_r(&secs, &t);
  for (int i = digits; i < 9; i++) frac /= 10;
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:0{}}Z", t.tm_year + 1900, t.tm_mon + 1, t.tm_mday,
                     t.tm_hour, t.tm_min, t.tm_sec, frac, digits);
}

}  // namespace gpugate
