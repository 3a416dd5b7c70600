// The gate's whole decision (GG_DEFINE_GATE, kmod/common/gg_gate.h) as user
// space runs it on recorded bytes (gg_replay.c): what the record says could
// not be read is refused again, a grant is taken only where a signature is
// required and the record exists, the strict profile and the rules apply.
#include <gtest/gtest.h>

#include "gpugate/decode.hpp"
#include "vectors.hpp"

extern "C" {
#include "gg_decode_c.h"
}

using namespace gpugate;

namespace {

gg_ioctl_enter decide_on(const gg_raw& raw, const gg_policy& pol, uint32_t grant = 0, int recorded = 1) {
  gg_ioctl_enter e{};
  e.uid = 1000;
  e.device.vendor = GG_VENDOR_NVIDIA;
  e.device.kind = raw.dev_kind;
  gg_replay_capture_c(&raw, &pol, &e);
  gg_replay_decide_c(&raw, &pol, &e, grant, recorded, 1);
  return e;
}

gg_raw set_power(bool params_readable, uint32_t target_class = 0) {
  std::vector<uint8_t> params = {0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0};
  auto arg = test::nvos54(0x20800112, 12);
  gg_raw raw = capture({GG_DEV_NVIDIA_CTL, 0, test::nv_iowr(0x2A, 32), arg, {}, params, target_class});
  if (!params_readable) {
    raw.params_len = 0;
    raw.capture_flags |= GG_CAP_PARAMS_FAULT | GG_CAP_NO_FAULT_HOOK;
  }
  return raw;
}

}  // namespace

TEST(ReplayGate, DecidesRecordedBytesAsTheKernelDid) {
  gg_policy enforce = default_policy(GG_MODE_ENFORCE);
  enforce.fail_closed_vendors = gg_policy_fail_closed_vendors(&enforce);

  auto e = decide_on(set_power(true), enforce);
  EXPECT_EQ(e.dec.cls, GG_CLASS_POWER_OFF);
  EXPECT_EQ(e.verdict, GG_VERDICT_DENY);
  EXPECT_EQ(e.reason, GG_WHY_CLASS);
  EXPECT_EQ(e.mode, GG_MODE_ENFORCE);

  e = decide_on(set_power(true), enforce, 7);
  EXPECT_EQ(e.verdict, GG_VERDICT_ALLOW) << "the grant the record names";
  EXPECT_EQ(e.reason, GG_WHY_GRANT);
  EXPECT_EQ(e.grant_id, 7u);

  e = decide_on(set_power(true), enforce, 7, 0);
  EXPECT_EQ(e.verdict, GG_VERDICT_DENY) << "no record, no grant: fail closed";
  EXPECT_EQ(e.reason, GG_WHY_UNRECORDED);
  EXPECT_EQ(e.grant_id, 0u);

  e = decide_on(set_power(false), enforce, 7);
  EXPECT_EQ(e.verdict, GG_VERDICT_DENY) << "params unread then, unread now";
  EXPECT_EQ(e.reason, GG_WHY_CAPTURE);
  EXPECT_EQ(e.grant_id, 0u) << "never a grant on bytes that were not read";

  gg_policy monitor = enforce;
  monitor.mode = GG_MODE_MONITOR;
  e = decide_on(set_power(false), monitor);
  EXPECT_EQ(e.verdict, GG_VERDICT_WOULD_DENY);

  // A query on a BINAPI object: logged by default, gated by the strict profile.
  std::vector<uint8_t> name(68, 0);
  auto arg = test::nvos54(0x20800110, 68);
  gg_raw query = capture({GG_DEV_NVIDIA_CTL, 0, test::nv_iowr(0x2A, 32), arg, {}, name, 0x2082});
  EXPECT_EQ(decide_on(query, enforce).verdict, GG_VERDICT_ALLOW);
  gg_policy strict = enforce;
  strict.flags |= GG_POLF_STRICT;
  strict.fail_closed_vendors = gg_policy_fail_closed_vendors(&strict);
  e = decide_on(query, strict);
  EXPECT_EQ(e.verdict, GG_VERDICT_DENY);
  EXPECT_EQ(e.reason, GG_WHY_STRICT);

  // A read that raced: changed while the gate read it, refused again.
  gg_raw raced = set_power(true);
  raced.capture_flags |= GG_CAP_CHANGED;
  EXPECT_EQ(decide_on(raced, enforce, 7).reason, GG_WHY_CAPTURE);
}
