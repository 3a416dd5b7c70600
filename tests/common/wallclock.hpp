// Steps the wall clock (CLOCK_REALTIME) in a test guest, and puts it back:
// the start's wall time plus the boot time elapsed since.
#pragma once
#include <time.h>

#include <cstdint>

namespace gpugate::test {

class WallClockShift {
 public:
  WallClockShift() : real0_(now(CLOCK_REALTIME)), boot0_(now(CLOCK_BOOTTIME)) {}
  WallClockShift(const WallClockShift&) = delete;
  WallClockShift& operator=(const WallClockShift&) = delete;
  ~WallClockShift() { restore(); }
  // Steps the clock by seconds (negative: back). false with errno on failure.
  bool by(int64_t seconds) { return set(now(CLOCK_REALTIME) + seconds * 1'000'000'000); }
  void restore() { (void)set(real0_ + (now(CLOCK_BOOTTIME) - boot0_)); }

 private:
  static int64_t now(clockid_t c) {
    timespec t{};
    clock_gettime(c, &t);
    return t.tv_sec * 1'000'000'000ll + t.tv_nsec;
  }
  static bool set(int64_t ns) {
    timespec t{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
    return clock_settime(CLOCK_REALTIME, &t) == 0;
  }
  int64_t real0_, boot0_;
};

}  // namespace gpugate::test
