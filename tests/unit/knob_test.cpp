// A write to a GPU's knob (kmod/common/gg_knob.h), decoded and decided as the
// BPF LSM does: the class follows from the knob, the length and the
// position (what no second thread can change), never from the bytes alone.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "gpugate/decode.hpp"
#include "gpugate/gate.hpp"
#include "gpugate/policy.hpp"

extern "C" {
#include "gg_decode_c.h"
}

using namespace gpugate;

namespace {

gg_knob knob_of(unsigned rule, unsigned cls, uint16_t pm = 0, uint16_t exp = 0, uint8_t flags = 0) {
  gg_knob k{};
  k.gpu_dev = GG_PCI_DEV(0, 0x41, 0);
  k.rule = static_cast<uint8_t>(rule);
  k.cls = static_cast<uint8_t>(cls);
  k.vendor = GG_VENDOR_NVIDIA;
  k.flags = flags;
  k.pm_cap = pm;
  k.exp_cap = exp;
  return k;
}

gg_knob_event write_of(const gg_knob& k, const std::string& value, unsigned call = GG_WC_WRITE, uint64_t offset = 0,
                       int64_t length = -1) {
  gg_knob_event e{};
  e.uid = 1000;
  e.knob = k;
  e.call = static_cast<uint8_t>(call);
  e.offset = offset;
  e.length = length < 0 ? value.size() : static_cast<uint64_t>(length);
  e.value_len = static_cast<uint8_t>(std::min<size_t>(value.size(), GG_KNOB_VALUE_MAX));
  std::memcpy(e.value, value.data(), e.value_len);
  gg_knob_decode_c(&e);
  return e;
}

unsigned cls_of(const gg_knob& k, const std::string& value, unsigned call = GG_WC_WRITE, uint64_t offset = 0,
                int64_t length = -1) {
  return write_of(k, value, call, offset, length).dec.cls;
}

// A config write of len bytes at off on a function with PM at 0x40 and PCIe at 0x80.
unsigned config_class(uint64_t off, uint64_t len, uint8_t flags = 0) {
  auto k = knob_of(GG_KNOB_PCI_CONFIG, GG_CLASS_POWER_OFF, 0x40, 0x80, flags);
  return cls_of(k, std::string(std::min<uint64_t>(len, 64), '\0'), GG_WC_PWRITE, off, static_cast<int64_t>(len));
}

}  // namespace

TEST(Knob, RuntimePmIsHarmlessOnlyWhenTooShortToSayAuto) {
  auto k = knob_of(GG_KNOB_RUNTIME_PM, GG_CLASS_POWER_OFF);
  EXPECT_EQ(cls_of(k, "on"), GG_CLASS_OTHER);
  EXPECT_EQ(cls_of(k, "on\n"), GG_CLASS_OTHER);
  EXPECT_EQ(cls_of(k, "auto"), GG_CLASS_POWER_OFF);
  EXPECT_EQ(cls_of(k, "auto\n"), GG_CLASS_POWER_OFF);
  // Four bytes that read "on" now can read "auto" when the kernel copies them.
  EXPECT_EQ(cls_of(k, std::string("on\0\0", 4)), GG_CLASS_POWER_OFF);
  // A long write with "auto" before a NUL: the kernel's string is "auto".
  EXPECT_EQ(cls_of(k, std::string("auto\0padding", 12)), GG_CLASS_POWER_OFF);
}

TEST(Knob, AWriteOfUnknownLengthGetsTheStrictestClassAndIsUndecided) {
  auto pm = knob_of(GG_KNOB_RUNTIME_PM, GG_CLASS_POWER_OFF);
  for (unsigned call : {GG_WC_UNKNOWN, GG_WC_WRITEV}) {
    auto e = write_of(pm, "on", call);
    EXPECT_EQ(e.dec.cls, GG_CLASS_POWER_OFF) << call;
    EXPECT_TRUE(e.dec.flags & GG_DF_UNDECIDED) << call;
    EXPECT_TRUE(e.dec.flags & GG_DF_WORST_CASE) << call;
  }
  auto config = knob_of(GG_KNOB_PCI_CONFIG, GG_CLASS_GPU_RESET, 0x40, 0x80);
  EXPECT_EQ(cls_of(config, "x", GG_WC_UNKNOWN, 0), GG_CLASS_POWER_OFF);
}

// gpugate.ko decides at the file's own write function, where the kernel has
// fixed the length and position of every system call (writev, sendfile
// included): decided as a write, never undecided.
TEST(Knob, TheModulesKernelCopyIsDecidedWhateverSystemCallWrote) {
  auto pm = knob_of(GG_KNOB_RUNTIME_PM, GG_CLASS_POWER_OFF);
  auto on = write_of(pm, "on", GG_WC_KERNEL);
  EXPECT_EQ(on.dec.cls, GG_CLASS_OTHER);
  EXPECT_FALSE(on.dec.flags & GG_DF_UNDECIDED);
  EXPECT_EQ(cls_of(pm, "auto", GG_WC_KERNEL), GG_CLASS_POWER_OFF);
  EXPECT_EQ(config_class(0x44, 2), GG_CLASS_POWER_OFF);
  auto config = knob_of(GG_KNOB_PCI_CONFIG, GG_CLASS_POWER_OFF, 0x40, 0x80);
  EXPECT_EQ(cls_of(config, "x", GG_WC_KERNEL, 0x3c), GG_CLASS_OTHER) << "Interrupt Line";
  EXPECT_EQ(cls_of(config, "xx", GG_WC_KERNEL, 0x44), GG_CLASS_POWER_OFF) << "PMCSR";
  auto cap = knob_of(GG_KNOB_NUMBER, GG_CLASS_POWER_LIMIT);
  auto limit = write_of(cap, "250000000\n", GG_WC_KERNEL);
  EXPECT_TRUE(limit.dec.flags & GG_DF_KEYS_VALID);
  EXPECT_EQ(limit.dec.key[0], 250000000u);
  auto devmem = knob_of(GG_KNOB_ANY_WRITE, GG_CLASS_BAR_MAP, 0, 0, GG_KNOBF_DEVMEM);
  gg_decoded d{};
  gg_knob_decode_map_c(&devmem, GG_WC_KERNEL, 0xfe000000, 4096, &d);
  EXPECT_EQ(d.cls, GG_CLASS_BAR_MAP);
  EXPECT_FALSE(d.flags & GG_DF_UNDECIDED) << "the mapping's range is the kernel's";
}

TEST(Knob, ConfigWritesFallInTheClassOfTheRegistersTheirRangeTouches) {
  EXPECT_EQ(config_class(0x44, 2), GG_CLASS_POWER_OFF);  // PMCSR: PowerState
  EXPECT_EQ(config_class(0x44, 1), GG_CLASS_POWER_OFF);
  EXPECT_EQ(config_class(0x42, 4), GG_CLASS_POWER_OFF);                   // a dword across it
  EXPECT_EQ(config_class(0x45, 1), GG_CLASS_OTHER);                       // PMCSR's high byte: PME status, data select
  EXPECT_EQ(config_class(0x40, 4), GG_CLASS_OTHER);                       // the capability header
  EXPECT_EQ(config_class(0x90, 2), GG_CLASS_POWER_OFF);                   // Link Control: Link Disable
  EXPECT_EQ(config_class(0x89, 1), GG_CLASS_GPU_RESET);                   // Device Control's high byte: FLR
  EXPECT_EQ(config_class(0x88, 1), GG_CLASS_OTHER);                       // its low byte: error reporting
  EXPECT_EQ(config_class(0x04, 2), GG_CLASS_OTHER);                       // Command
  EXPECT_EQ(config_class(0, 256), GG_CLASS_POWER_OFF);                    // a whole restore
  EXPECT_EQ(config_class(0x44, 0), GG_CLASS_OTHER);                       // nothing written
  EXPECT_EQ(config_class(0x3e, 1), GG_CLASS_OTHER);                       // Bridge Control on a GPU: not a bridge
  EXPECT_EQ(config_class(0x3e, 1, GG_KNOBF_BRIDGE), GG_CLASS_GPU_RESET);  // SBR
  EXPECT_EQ(config_class(0x3c, 4, GG_KNOBF_BRIDGE), GG_CLASS_GPU_RESET);
  // Near the end of the 64-bit range: no wrap-around makes a range miss.
  EXPECT_EQ(config_class(UINT64_MAX - 1, 8), GG_CLASS_OTHER);
  auto no_caps = knob_of(GG_KNOB_PCI_CONFIG, GG_CLASS_POWER_OFF);
  EXPECT_EQ(cls_of(no_caps, "\x03", GG_WC_PWRITE, 0x44), GG_CLASS_OTHER);
}

TEST(Knob, TheNumberWrittenIsTheKeyAGrantCanName) {
  auto cap = knob_of(GG_KNOB_NUMBER, GG_CLASS_POWER_LIMIT);
  auto e = write_of(cap, "250000000\n");
  EXPECT_EQ(e.dec.cls, GG_CLASS_POWER_LIMIT);
  ASSERT_TRUE(e.dec.flags & GG_DF_KEYS_VALID);
  EXPECT_EQ(e.dec.key[0], 250000000u);
  EXPECT_EQ(e.dec.pkind, GG_PK_KNOB);
  auto params = key_params(e.dec);
  ASSERT_FALSE(params.empty());
  EXPECT_EQ(params[0].first, "written");
  EXPECT_EQ(write_of(cap, "18446744073709551615").dec.key[0], UINT64_MAX);
  for (std::string bad : {"", "12a", "-5", " 5", "18446744073709551616", "\n", "5\n\n"}) {
    auto b = write_of(cap, bad);
    EXPECT_EQ(b.dec.cls, GG_CLASS_POWER_LIMIT) << bad;
    EXPECT_FALSE(b.dec.flags & GG_DF_KEYS_VALID) << bad;
  }
  // More asked than captured: the key is not the number the kernel sees.
  auto cut = write_of(cap, "1000", GG_WC_WRITE, 0, 100);
  EXPECT_FALSE(cut.dec.flags & GG_DF_KEYS_VALID);
  EXPECT_TRUE(cut.dec.flags & GG_DF_ARG_CUT);
  // Unreadable: the class stands (it never depended on the bytes), no key.
  auto k = knob_of(GG_KNOB_NUMBER, GG_CLASS_POWER_LIMIT);
  gg_knob_event f{};
  f.knob = k;
  f.call = GG_WC_WRITE;
  f.length = 9;
  f.capture_flags = GG_CAP_ARG_FAULT;
  gg_knob_decode_c(&f);
  EXPECT_EQ(f.dec.cls, GG_CLASS_POWER_LIMIT);
  EXPECT_TRUE(f.dec.flags & GG_DF_ARG_FAULT);
  EXPECT_FALSE(f.dec.flags & (GG_DF_KEYS_VALID | GG_DF_UNDECIDED));
}

TEST(Knob, TheDecisionIsTheIoctlGatesOnTheKnobsGpu) {
  auto pol = builtin_policy(GG_MODE_ENFORCE).table;
  pol.fail_closed_vendors = gg_policy_fail_closed_vendors(&pol);  // as every kernel home sets it
  auto pm = knob_of(GG_KNOB_RUNTIME_PM, GG_CLASS_POWER_OFF);
  auto off = write_of(pm, "auto\n");
  gg_knob_decide_c(&pol, &off, 1, 0);
  EXPECT_EQ(off.verdict, GG_VERDICT_DENY);
  EXPECT_EQ(off.reason, GG_WHY_CLASS);
  auto granted = write_of(pm, "auto\n");
  gg_knob_decide_c(&pol, &granted, 1, 7);
  EXPECT_EQ(granted.verdict, GG_VERDICT_ALLOW);
  EXPECT_EQ(granted.grant_id, 7u);
  // Not recorded: a gated write is denied even with a grant at hand.
  auto lost = write_of(pm, "auto\n");
  gg_knob_decide_c(&pol, &lost, 0, 7);
  EXPECT_EQ(lost.verdict, GG_VERDICT_DENY);
  EXPECT_EQ(lost.reason, GG_WHY_UNRECORDED);
  auto on = write_of(pm, "on\n");
  gg_knob_decide_c(&pol, &on, 1, 0);
  EXPECT_EQ(on.verdict, GG_VERDICT_ALLOW);
  // Unknown length: refused before any grant is looked at.
  auto spliced = write_of(pm, "", GG_WC_UNKNOWN);
  gg_knob_decide_c(&pol, &spliced, 1, 7);
  EXPECT_EQ(spliced.verdict, GG_VERDICT_DENY);
  EXPECT_EQ(spliced.reason, GG_WHY_CAPTURE);
  EXPECT_EQ(spliced.grant_id, 0u);
  // Monitor mode records what it would deny.
  pol.mode = GG_MODE_MONITOR;
  auto watched = write_of(pm, "auto\n");
  gg_knob_decide_c(&pol, &watched, 1, 0);
  EXPECT_EQ(watched.verdict, GG_VERDICT_WOULD_DENY);
}

TEST(Knob, RowsKeyOnInodeAndFilesystemAndMarkSharedFiles) {
  DeviceTable t;
  auto gpu = [](std::string address, std::vector<Knob> knobs) {
    PciGpu g;
    g.address = std::move(address);
    g.vendor = GG_VENDOR_NVIDIA;
    g.knobs = std::move(knobs);
    return g;
  };
  auto knob = [](std::string name, uint64_t ino, uint32_t fs, unsigned rule, unsigned cls, bool bridge = false) {
    Knob k;
    k.name = std::move(name);
    k.ino = ino;
    k.fs_magic = fs;
    k.rule = rule;
    k.cls = cls;
    k.bridge = bridge;
    if (rule == GG_KNOB_PCI_CONFIG) k.pm_cap = 0x60, k.exp_cap = 0x78;
    return k;
  };
  t.set_gpus({gpu("0000:41:00.0", {knob("power/control", 10, GG_FS_SYSFS, GG_KNOB_RUNTIME_PM, GG_CLASS_POWER_OFF),
                                   knob("config", 11, GG_FS_SYSFS, GG_KNOB_PCI_CONFIG, GG_CLASS_POWER_OFF),
                                   knob("bridge/config", 12, GG_FS_SYSFS, GG_KNOB_PCI_CONFIG, GG_CLASS_GPU_RESET, true),
                                   knob("suspend", 7, GG_FS_PROC, GG_KNOB_ANY_WRITE, GG_CLASS_POWER_OFF),
                                   knob("fake", 13, 0, GG_KNOB_ANY_WRITE, GG_CLASS_POWER_OFF)}),
              gpu("0000:c1:00.0", {knob("suspend", 7, GG_FS_PROC, GG_KNOB_ANY_WRITE, GG_CLASS_POWER_OFF),
                                   knob("suspend-in-sysfs", 7, GG_FS_SYSFS, GG_KNOB_ANY_WRITE, GG_CLASS_OTHER)})});
  auto rows = knob_rows(t);
  ASSERT_EQ(rows.size(), 5u) << "one row per file; none for a file on another filesystem";
  auto row = [&](uint64_t ino, uint32_t fs) -> const gg_knob* {
    for (const auto& [k, v] : rows)
      if (k.ino == ino && k.fs_magic == fs) return &v;
    return nullptr;
  };
  ASSERT_TRUE(row(10, GG_FS_SYSFS));
  EXPECT_EQ(row(10, GG_FS_SYSFS)->gpu_dev, GG_PCI_DEV(0, 0x41, 0));
  EXPECT_EQ(row(10, GG_FS_SYSFS)->rule, GG_KNOB_RUNTIME_PM);
  EXPECT_EQ(row(11, GG_FS_SYSFS)->pm_cap, 0x60);
  EXPECT_EQ(row(11, GG_FS_SYSFS)->exp_cap, 0x78);
  EXPECT_FALSE(row(11, GG_FS_SYSFS)->flags & GG_KNOBF_BRIDGE);
  EXPECT_TRUE(row(12, GG_FS_SYSFS)->flags & GG_KNOBF_BRIDGE);
  ASSERT_TRUE(row(7, GG_FS_PROC));
  EXPECT_TRUE(row(7, GG_FS_PROC)->flags & GG_KNOBF_SHARED);
  EXPECT_EQ(row(7, GG_FS_PROC)->gpu_dev, GG_PCI_DEV(0, 0x41, 0)) << "the first GPU's";
  ASSERT_TRUE(row(7, GG_FS_SYSFS));
  EXPECT_FALSE(row(7, GG_FS_SYSFS)->flags & GG_KNOBF_SHARED);
  EXPECT_FALSE(row(13, 0));
  EXPECT_EQ(t.find_gpu(GG_PCI_DEV(0, 0xc1, 0))->address, "0000:c1:00.0");
  EXPECT_EQ(t.find_gpu(GG_PCI_DEV(0, 0xc2, 0)), nullptr);
}

TEST(Knob, EveryMappingOfABarIsBarMapAndDevMemWithoutAnOffsetIsUndecided) {
  auto resource = knob_of(GG_KNOB_ANY_WRITE, GG_CLASS_BAR_MAP);
  for (unsigned call : {GG_WC_MMAP, GG_WC_UNKNOWN}) {
    gg_decoded d{};
    gg_knob_decode_map_c(&resource, call, 0x1000, 4096, &d);
    EXPECT_EQ(d.cls, GG_CLASS_BAR_MAP) << call;
    EXPECT_EQ(d.key[1], 0x1000u);
    EXPECT_EQ(d.key[2], 4096u);
    EXPECT_FALSE(d.flags & GG_DF_UNDECIDED) << "a BAR's file is a BAR whatever the offset";
  }
  auto devmem = knob_of(GG_KNOB_ANY_WRITE, GG_CLASS_BAR_MAP, 0, 0, GG_KNOBF_DEVMEM);
  gg_decoded d{};
  gg_knob_decode_map_c(&devmem, GG_WC_MMAP, 0xfe000000, 4096, &d);
  EXPECT_FALSE(d.flags & GG_DF_UNDECIDED);
  gg_knob_decode_map_c(&devmem, GG_WC_UNKNOWN, 0, 0, &d);
  EXPECT_TRUE(d.flags & GG_DF_UNDECIDED) << "which memory /dev/mem maps is not known";
}

TEST(Knob, BarRowsAreTheMemoryBarsOfEveryGpu) {
  DeviceTable t;
  PciGpu g;
  g.address = "0000:41:00.0";
  g.vendor = GG_VENDOR_NVIDIA;
  g.bars = {{0, 0xfa000000, 0xfaffffff, true}, {1, 0x38000000000, 0x38fffffffff, true}, {5, 0x3000, 0x307f, false}};
  t.set_gpus({g});
  auto rows = bar_rows(t);
  ASSERT_EQ(rows.size(), 2u) << "an I/O BAR is not in /dev/mem";
  EXPECT_EQ(rows[0].start, 0xfa000000u);
  EXPECT_EQ(rows[0].end, 0xfaffffffu);
  EXPECT_EQ(rows[1].bar, 1u);
  EXPECT_EQ(rows[1].gpu_dev, GG_PCI_DEV(0, 0x41, 0));
  EXPECT_EQ(rows[1].vendor, GG_VENDOR_NVIDIA);
}
