// The shared decoder in user space: every table entry, the ABI's odd cases,
// truncated, oversized and garbage input.
#include <gtest/gtest.h>

#include <random>

#include "gpugate/decode.hpp"
#include "gpugate/hex.hpp"
#include "vectors.hpp"

using namespace gpugate;
using gpugate::test::Vector;

namespace {

gg_decoded run(const Vector& v, gg_raw* out_raw = nullptr) {
  gg_raw raw = capture({v.dev_kind, v.drm_driver, v.request, v.arg, v.inner, v.params, 0});
  if (out_raw) *out_raw = raw;
  return decode(raw);
}

void check(const Vector& v, const gg_decoded& d) {
  SCOPED_TRACE(v.name);
  if (v.cls >= 0) EXPECT_EQ(d.cls, v.cls) << "class " << class_name(d.cls) << " expected " << class_name(v.cls);
  if (v.command >= 0) EXPECT_EQ(d.command, static_cast<uint32_t>(v.command));
  EXPECT_EQ(d.flags & v.flags_set, v.flags_set) << "flags: " << ::testing::PrintToString(flag_names(d.flags));
  EXPECT_EQ(d.flags & v.flags_clear, 0u) << "flags: " << ::testing::PrintToString(flag_names(d.flags));
  EXPECT_LT(d.cls, GG_CLASS_COUNT);
}

}  // namespace

TEST(Decode, EveryVector) {
  auto vectors = test::all_vectors();
  ASSERT_GT(vectors.size(), 1500u);
  for (const auto& v : vectors) check(v, run(v));
}

TEST(Decode, EveryNvidiaControlIsNamedByTheTable) {
  int n = 0;
  const gg_nv_ctrl_entry* t = gg_table_nv_controls(&n);
  for (int i = 0; i < n; i++) {
    if (t[i].id & 0x8000) continue;
    auto v = test::control("c", t[i].id, std::vector<uint8_t>(16, 0), -1);
    gg_raw raw;
    auto d = run(v, &raw);
    ASSERT_EQ(d.table, GG_TAB_NV_CONTROL) << std::hex << t[i].id;
    ASSERT_EQ(d.index, i);
    EXPECT_EQ(d.priv, t[i].priv);
    EXPECT_EQ(command_name(raw, d), table_entry_name(GG_TAB_NV_CONTROL, static_cast<size_t>(i)));
  }
}

TEST(Decode, KeyParametersOfGatedCommands) {
  auto v = test::control("set power", 0x20800112, {1, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0}, GG_CLASS_POWER_OFF);
  gg_raw raw;
  auto d = run(v, &raw);
  auto kp = key_params(d);
  ASSERT_EQ(kp.size(), 3u);
  EXPECT_EQ(kp[0], (std::pair<std::string, uint64_t>{"target", 1}));
  EXPECT_EQ(kp[1], (std::pair<std::string, uint64_t>{"newLevel", 4}));
  EXPECT_EQ(kp[2], (std::pair<std::string, uint64_t>{"oldLevel", 2}));
  EXPECT_EQ(command_name(raw, d), "NV2080_CTRL_CMD_GPU_SET_POWER");
  EXPECT_EQ(describe(raw, d), "NV2080_CTRL_CMD_GPU_SET_POWER [power.off] target=0x1 newLevel=0x4 oldLevel=0x2");
}

TEST(Decode, UnreadableParamsOfDrainChooseTheWorstCase) {
  auto v = test::control("drain", 0x278, {}, -1);
  test::put64(v.arg, 16, 0x1000);
  test::put32(v.arg, 24, 12);  // declares 12 bytes that cannot be read
  auto d = run(v);
  EXPECT_EQ(d.cls, GG_CLASS_POWER_OFF);
  EXPECT_TRUE(d.flags & GG_DF_WORST_CASE);
  EXPECT_TRUE(d.flags & GG_DF_PARAMS_FAULT);
}

TEST(Decode, TruncatedArgumentIsReportedAndNeverReadPast) {
  gg_raw raw{};
  raw.dev_kind = GG_DEV_NVIDIA_CTL;
  raw.request = test::nv_iowr(0x2A, 32);
  raw.arg_len = 8;                                      // the NVOS54 stops before its cmd word
  std::memset(raw.arg + 8, 0xAB, sizeof(raw.arg) - 8);  // must not be looked at
  auto d = decode(raw);
  EXPECT_TRUE(d.flags & GG_DF_ARG_SHORT);
  EXPECT_EQ(d.cls, GG_CLASS_UNKNOWN);
  EXPECT_EQ(d.command, 0x2Au);  // not 0xABABABAB
  // With the cmd word but not the params pointer: named, params missing.
  raw.arg_len = 16;
  std::memset(raw.arg + 8, 0, 8);
  uint32_t cmd = 0x20800112;
  std::memcpy(raw.arg + 8, &cmd, 4);
  d = decode(raw);
  EXPECT_TRUE(d.flags & GG_DF_ARG_SHORT);
  EXPECT_EQ(d.command, 0x20800112u);
  EXPECT_EQ(d.cls, GG_CLASS_POWER_OFF);
  EXPECT_EQ(d.params_ptr, 0u);
}

TEST(Decode, LengthsBeyondTheBuffersAreRefused) {
  gg_raw raw{};
  raw.dev_kind = GG_DEV_NVIDIA_CTL;
  raw.request = test::nv_iowr(0x2A, 32);
  raw.arg_len = 4096;
  auto d = decode(raw);
  EXPECT_TRUE(d.flags & GG_DF_ARG_FAULT);
  EXPECT_EQ(d.cls, GG_CLASS_UNKNOWN);
}

// Unreadable is not "unknown, allowed": the class is left unknown, but the
// decode says the bytes that decide it were not read, and the gate denies
// on that (fail closed).
TEST(Decode, XferWithoutItsInnerStructIsUndecided) {
  auto v = test::xfer(test::control("c", 0x20800112, std::vector<uint8_t>(12, 0), -1));
  v.inner.clear();  // the tunnelled pointer cannot be read
  auto d = run(v);
  EXPECT_TRUE(d.flags & GG_DF_INNER_FAULT);
  EXPECT_TRUE(d.flags & GG_DF_UNDECIDED);
  EXPECT_EQ(d.cls, GG_CLASS_UNKNOWN);
}

TEST(Decode, WhatDecidesTheClassMustHaveBeenRead) {
  // the argument of an RM control, its params, an XFER's own header
  auto c = test::control("c", 0x2080205A, std::vector<uint8_t>(4, 0), -1);
  auto unread_arg = c;
  unread_arg.arg.clear();
  EXPECT_TRUE(run(unread_arg).flags & GG_DF_UNDECIDED);
  auto unread_params = c;
  unread_params.params.clear();
  EXPECT_TRUE(run(unread_params).flags & GG_DF_UNDECIDED) << "a params block that was not read";
  auto x = test::xfer(c);
  x.arg.resize(8);
  EXPECT_TRUE(run(x).flags & GG_DF_UNDECIDED);
  EXPECT_FALSE(run(c).flags & GG_DF_UNDECIDED) << "all read: decided";
  // a control shorter than its header
  auto short_inner = test::xfer(c);
  test::put32(short_inner.arg, 4, 20);
  short_inner.inner.resize(20);
  auto d = run(short_inner);
  EXPECT_TRUE(d.flags & GG_DF_HEADER_SHORT);
  EXPECT_TRUE(d.flags & GG_DF_UNDECIDED);
  // a refused or stalled read, of any stage, on any node
  gg_raw raw = capture({c.dev_kind, 0, c.request, c.arg, c.inner, c.params, 0});
  for (uint16_t why : {GG_CAP_REFUSED_UFFD, GG_CAP_REFUSED_FUSE, GG_CAP_VMA_BUSY, GG_CAP_SLOW, GG_CAP_CHANGED}) {
    gg_raw r = raw;
    r.capture_flags |= why;
    EXPECT_TRUE(decode(r).flags & GG_DF_UNDECIDED) << why;
  }
  gg_raw paged = raw;
  paged.capture_flags |= GG_CAP_PAGED;
  EXPECT_FALSE(decode(paged).flags & GG_DF_UNDECIDED) << "a page faulted in quickly is no reason";
  // DRM: the class is the nr's, unread bytes do not change it
  gg_raw drm{};
  drm.dev_kind = GG_DEV_DRM;
  drm.request = test::iowr(0x64, 0xb2, 32);  // MODE_CREATE_DUMB
  drm.capture_flags = GG_CAP_ARG_FAULT;
  EXPECT_FALSE(decode(drm).flags & GG_DF_UNDECIDED);
}

// Params serialized (NVOS54 flags FINN_SERIALIZED) or flagged for kernel
// callers are not the struct the tables describe: a control refined by its
// params takes the strictest class, and no key parameter counts as read.
TEST(Decode, FlaggedParamsAreNotTrusted) {
  auto drain = test::control("drain", 0x278, {0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0}, -1);  // enable, no REMOVE_DEVICE
  auto d = run(drain);
  EXPECT_EQ(d.cls, GG_CLASS_GPU_RESET);
  EXPECT_TRUE(d.flags & GG_DF_KEYS_VALID);
  test::put32(drain.arg, 12, 4);  // NVOS54_FLAGS_FINN_SERIALIZED
  d = run(drain);
  EXPECT_TRUE(d.flags & GG_DF_OPAQUE_PARAMS);
  EXPECT_EQ(d.cls, GG_CLASS_POWER_OFF) << "the worst case of a drain";
  EXPECT_TRUE(d.flags & GG_DF_WORST_CASE);
  EXPECT_FALSE(d.flags & GG_DF_KEYS_VALID) << "a grant's signed value cannot match serialized bytes";
  auto power = test::control("set power", 0x20800112, {0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0}, -1);
  test::put32(power.arg, 12, 4);
  d = run(power);
  EXPECT_EQ(d.cls, GG_CLASS_POWER_OFF);
  EXPECT_FALSE(d.flags & GG_DF_KEYS_VALID);
}

// amdgpu's context ioctl multiplexes an op: SET_STABLE_PSTATE pins the
// clocks (torvalds/linux include/uapi/drm/amdgpu_drm.h AMDGPU_CTX_OP_*).
TEST(Decode, AmdgpuStablePstateIsAClockLimit) {
  auto ctx = [](std::vector<uint8_t> arg) {
    return capture({GG_DEV_DRM, GG_DRM_AMDGPU, test::iowr(0x64, 0x42, 16), arg, {}, {}, 0});
  };
  auto set = decode(ctx({6, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}));  // SET_STABLE_PSTATE MIN_SCLK
  EXPECT_EQ(set.cls, GG_CLASS_CLOCK_LIMIT);
  EXPECT_EQ(set.key[0], 6u);
  EXPECT_EQ(set.key[1], 2u);
  auto alloc = decode(ctx({1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}));  // ALLOC_CTX
  EXPECT_EQ(alloc.cls, GG_CLASS_RESOURCE);
  gg_raw unread = ctx({});
  unread.capture_flags = GG_CAP_ARG_FAULT;
  auto u = decode(unread);
  EXPECT_EQ(u.cls, GG_CLASS_CLOCK_LIMIT) << "unread: the worst case";
  EXPECT_TRUE(u.flags & GG_DF_UNDECIDED);
}

// Commands the driver refuses from user space are recorded as attempts.
TEST(Decode, KernelOnlyAndInternalControlsAreMarked) {
  int n = 0;
  const gg_nv_ctrl_entry* t = gg_table_nv_controls(&n);
  int marked = 0;
  for (int i = 0; i < n; i++) {
    if (t[i].id & 0x8000) continue;
    auto d = run(test::control("c", t[i].id, std::vector<uint8_t>(16, 0), -1));
    bool refused = t[i].priv == GG_PRIV_KERNEL || t[i].priv == GG_PRIV_INTERNAL;
    ASSERT_EQ(static_cast<bool>(d.flags & GG_DF_DRIVER_REFUSES), refused) << std::hex << t[i].id;
    marked += refused;
  }
  EXPECT_GT(marked, 100);
}

TEST(Decode, BinapiTargetNeedsRootAndIsFlagged) {
  auto v = test::control("binapi", 0x2080E655, std::vector<uint8_t>(8, 0), -1);
  gg_raw raw = capture({v.dev_kind, 0, v.request, v.arg, v.inner, v.params, 0x2082});
  auto d = decode(raw);
  EXPECT_TRUE(d.flags & GG_DF_BINAPI);
  EXPECT_EQ(d.priv, GG_PRIV_ROOT);
}

TEST(Decode, GarbageNeverCrashesAndStaysInRange) {
  std::mt19937_64 rng(20261128);
  for (int i = 0; i < 200000; i++) {
    gg_raw raw{};
    auto* bytes = reinterpret_cast<uint8_t*>(&raw);
    for (size_t k = 0; k < sizeof(raw); k++) bytes[k] = static_cast<uint8_t>(rng());
    if (i % 2) {  // half with plausible shapes, to reach deep paths
      raw.dev_kind = static_cast<uint8_t>(rng() % (GG_DEV_KIND_COUNT + 1));
      raw.arg_len %= GG_ARG_MAX + 1;
      raw.inner_len %= GG_ARG_MAX + 1;
      raw.params_len %= GG_PARAMS_MAX + 1;
      if (rng() % 2) raw.request = test::nv_iowr(static_cast<unsigned>(rng() % 256), static_cast<unsigned>(rng() % 64));
    }
    auto d = decode(raw);
    ASSERT_LT(d.cls, GG_CLASS_COUNT);
    ASSERT_LT(d.table, GG_TAB_COUNT);
    if (d.table != GG_TAB_NONE) {
      bool found = false;
      for (const auto& t : tables())
        if (t.table == d.table) found = d.index < t.size;
      if (d.table == GG_TAB_NV_MODESET) found = d.index == 0;
      ASSERT_TRUE(found) << "index " << d.index << " outside table " << table_name(d.table);
    }
    (void)describe(raw, d);
    (void)decoded_json(raw, d).dump();
  }
}

TEST(Decode, RecordBytesRoundTripToTheSameDecode) {
  for (const auto& v : test::all_vectors()) {
    gg_raw raw;
    auto d = run(v, &raw);
    auto j = nlohmann::json::parse(raw_json(raw).dump());
    auto back = raw_from_json(j);
    ASSERT_TRUE(back.ok()) << back.error().message;
    auto d2 = decode(*back);
    ASSERT_EQ(0, std::memcmp(&d, &d2, sizeof(d))) << v.name;
  }
}

TEST(Decode, RawFromJsonNamesWhatIsWrong) {
  auto bad = raw_from_json(nlohmann::json{{"ioctl", "0xzz"}, {"dev_kind", "nvidia-ctl"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("request.ioctl"), std::string::npos);
  auto odd = raw_from_json(nlohmann::json{{"ioctl", "0xc020462a"}, {"dev_kind", "nvidia-ctl"}, {"arg", "abc"}});
  ASSERT_FALSE(odd.ok());
  EXPECT_NE(odd.error().message.find("odd number"), std::string::npos);
  auto big = raw_from_json(
      nlohmann::json{{"ioctl", "0xc020462a"}, {"dev_kind", "nvidia-ctl"}, {"arg", std::string(600, 'a')}});
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.error().message.find("more than"), std::string::npos);
  // members of the wrong type are refused by name, never thrown
  auto kind = raw_from_json(nlohmann::json{{"ioctl", "0xc020462a"}, {"dev_kind", 3}});
  ASSERT_FALSE(kind.ok());
  EXPECT_NE(kind.error().message.find("request.dev_kind"), std::string::npos);
  auto drv = raw_from_json(nlohmann::json{{"ioctl", "0xc020462a"}, {"dev_kind", "drm"}, {"drm_driver", {1, 2}}});
  ASSERT_FALSE(drv.ok());
  EXPECT_NE(drv.error().message.find("request.drm_driver"), std::string::npos);
  // and lengths that lie are never read past
  gg_raw lying{};
  lying.dev_kind = GG_DEV_NVIDIA_CTL;
  lying.arg_len = 100000;
  lying.params_len = 100000;
  auto shown = raw_json(lying);
  EXPECT_EQ(shown["arg"].get<std::string>().size(), 2u * GG_ARG_MAX);
}

TEST(Hex, ParsesCommonSpellingsAndNamesBadCharacters) {
  EXPECT_EQ(*parse_hex("0xC0ffee"), (std::vector<uint8_t>{0xc0, 0xff, 0xee}));
  EXPECT_EQ(*parse_hex("c0 ff:ee"), (std::vector<uint8_t>{0xc0, 0xff, 0xee}));
  auto e = parse_hex("c0fg");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("position 4"), std::string::npos);
  EXPECT_EQ(*parse_number("0xC020462A", UINT32_MAX), 0xC020462Au);
  EXPECT_FALSE(parse_number("0x1C020462A", UINT32_MAX).ok());
  EXPECT_FALSE(parse_number("", UINT32_MAX).ok());
}
