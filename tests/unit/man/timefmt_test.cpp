// Local RFC 3339 for human lines: the zone's offset at that instant (DST
// included), fractions, times before 1970.
#include <gtest/gtest.h>

#include <stdlib.h>
#include <time.h>

#include <optional>
#include <string>

#include "gpugate/timefmt.hpp"

namespace {

// Sets TZ for one test and puts the old value back.
class TimeFmt : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const char* tz = getenv("TZ")) old_ = tz;
  }
  void TearDown() override {
    if (old_)
      setenv("TZ", old_->c_str(), 1);
    else
      unsetenv("TZ");
    tzset();
  }
  static void zone(const char* tz) {
    setenv("TZ", tz, 1);
    tzset();
  }
  std::optional<std::string> old_;
};

constexpr int64_t kSec = 1000000000;
constexpr int64_t kWinter = 1796250662;  // 2026-12-02T22:31:02Z
constexpr int64_t kSummer = 1783024262;  // 2026-07-02T20:31:02Z

}  // namespace

using gpugate::format_local_rfc3339;
using gpugate::format_local_rfc3339_s;

TEST_F(TimeFmt, Utc) {
  zone("UTC");
  EXPECT_EQ(format_local_rfc3339(kWinter * kSec + 123456789), "2026-12-02T22:31:02.123+00:00");
  EXPECT_EQ(format_local_rfc3339(kWinter * kSec + 123456789, 9), "2026-12-02T22:31:02.123456789+00:00");
  EXPECT_EQ(format_local_rfc3339(kWinter * kSec + 5000000, 2), "2026-12-02T22:31:02.00+00:00");
  EXPECT_EQ(format_local_rfc3339(0, 0), "1970-01-01T00:00:00+00:00");
  EXPECT_EQ(format_local_rfc3339_s(kWinter), "2026-12-02T22:31:02+00:00");
}

TEST_F(TimeFmt, BerlinWinterAndSummer) {
  zone("Europe/Berlin");
  EXPECT_EQ(format_local_rfc3339(kWinter * kSec + 123000000), "2026-12-02T23:31:02.123+01:00");
  EXPECT_EQ(format_local_rfc3339(kSummer * kSec), "2026-07-02T22:31:02.000+02:00");
  // Across midnight: the local date, not the UTC one.
  EXPECT_EQ(format_local_rfc3339_s(kWinter + 3600), "2026-12-03T00:31:02+01:00");
}

TEST_F(TimeFmt, KolkataHalfHourOffset) {
  zone("Asia/Kolkata");
  EXPECT_EQ(format_local_rfc3339_s(kWinter), "2026-12-03T04:01:02+05:30");
}

TEST_F(TimeFmt, NegativeOffsetAndBefore1970) {
  zone("America/New_York");
  EXPECT_EQ(format_local_rfc3339_s(kWinter), "2026-12-02T17:31:02-05:00");
  zone("UTC");
  // Half a second before the epoch: the fraction counts up from the second before.
  EXPECT_EQ(format_local_rfc3339(-kSec / 2, 3), "1969-12-31T23:59:59.500+00:00");
}
