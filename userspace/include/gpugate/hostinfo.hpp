// Facts about this host that every record carries.
#pragma once

#include <cstdint>
#include <string>

namespace gpugate {

struct HostInfo {
  std::string host_id;  // /etc/machine-id, else a generated id kept in state_dir
  std::string boot_id;  // /proc/sys/kernel/random/boot_id
  std::string hostname;

  static HostInfo load(const std::string& state_dir);
};

// CLOCK_REALTIME - CLOCK_BOOTTIME now, to turn kernel boot times into wall time.
int64_t realtime_offset_ns();
uint64_t boottime_ns();

// "2026-11-28T12:00:01.123456789Z"
std::string format_utc(int64_t realtime_ns, int digits = 9);

}  // namespace gpugate
