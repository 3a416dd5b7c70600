// Invariants of the command tables: sorted (binary-searched in BPF), unique
// ids and names, every class reachable, classes valid.
#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <set>
#include <string>

#include "gpugate/decode.hpp"

extern "C" {
#include "gg_decode_c.h"
}

using namespace gpugate;

// Class ids are ABI and come from classes.def's order: its id column must say
// the same, so that a row added in the middle is caught.
#define GG_CLASS(ident, id, name, gated) static_assert(GG_CLASS_##ident == (id), "classes.def: " #ident);
#include "gpugate/classes.def"
#undef GG_CLASS

TEST(Tables, NvidiaControlsSortedUniqueAndNamed) {
  int n = 0;
  const gg_nv_ctrl_entry* t = gg_table_nv_controls(&n);
  ASSERT_GT(n, 1300);
  std::set<std::string> names;
  for (int i = 0; i < n; i++) {
    if (i) ASSERT_LT(t[i - 1].id, t[i].id) << "not sorted or duplicate at " << i;
    ASSERT_LT(t[i].cls, GG_CLASS_COUNT);
    ASSERT_GE(t[i].priv, GG_PRIV_NONE);
    ASSERT_LE(t[i].priv, GG_PRIV_INTERNAL);
    ASSERT_LT(t[i].pkind, GG_PK_COUNT);
    auto name = std::string(table_entry_name(GG_TAB_NV_CONTROL, static_cast<size_t>(i)));
    ASSERT_TRUE(names.insert(name).second) << "duplicate name " << name;
  }
}

TEST(Tables, NvidiaEscapesSortedAndSized) {
  int n = 0;
  const gg_nv_esc_entry* t = gg_table_nv_escapes(&n);
  std::set<std::string> names;
  for (int i = 0; i < n; i++) {
    if (i) ASSERT_LT(t[i - 1].nr, t[i].nr);
    ASSERT_LT(t[i].cls, GG_CLASS_COUNT);
    ASSERT_LE(t[i].size, 16384);
    ASSERT_TRUE(names.insert(std::string(table_entry_name(GG_TAB_NV_ESCAPE, static_cast<size_t>(i)))).second);
  }
  // The facts the decoder relies on (nvidia-abi.md 2.2).
  EXPECT_EQ(nv_escape_name(0x2A), "NV_ESC_RM_CONTROL");
  EXPECT_EQ(nv_escape_name(0xD3), "NV_ESC_IOCTL_XFER_CMD");
}

TEST(Tables, IoctlTablesSortedUniqueWithValidClasses) {
  for (const auto& info : tables()) {
    if (info.table != GG_TAB_DRM_CORE && info.table != GG_TAB_KFD) continue;
    int n = 0;
    const gg_ioctl_entry* t = gg_table_ioctls(info.table, &n);
    ASSERT_EQ(static_cast<size_t>(n), info.size) << info.name;
    ASSERT_GT(n, 0) << info.name;
    std::set<std::string> names;
    for (int i = 0; i < n; i++) {
      if (i) ASSERT_LT(t[i - 1].nr, t[i].nr) << info.name << " not sorted at " << i;
      ASSERT_LT(t[i].cls, GG_CLASS_COUNT);
      ASSERT_TRUE(names.insert(std::string(table_entry_name(info.table, static_cast<size_t>(i)))).second);
    }
  }
}

// Every DRM driver is one block of drm_drivers.def: a row (name, vendor,
// table id) and its commands. The commands of all drivers are one table,
// sorted by driver then nr (binary-searched in BPF), named uniquely per
// driver; each driver has commands, a name, a vendor and its own table id.
TEST(Tables, DrmDriversAreOneRowEachWithTheirCommands) {
  int nd = 0, n = 0;
  const gg_drm_driver_entry* drivers = gg_table_drm_drivers(&nd);
  const gg_drm_ioctl_entry* t = gg_table_drm_driver_ioctls(&n);
  ASSERT_EQ(nd, GG_DRM_DRIVER_COUNT);
  ASSERT_GT(n, 0);
  std::set<unsigned> table_ids = {GG_TAB_NONE,   GG_TAB_NV_ESCAPE, GG_TAB_NV_CONTROL, GG_TAB_NV_LEGACY,
                                  GG_TAB_NV_UVM, GG_TAB_DRM_CORE,  GG_TAB_KFD,        GG_TAB_NV_MODESET};
  std::map<unsigned, std::set<std::string>> names;
  for (int i = 0; i < n; i++) {
    if (i) ASSERT_LT(t[i - 1].key, t[i].key) << "not sorted by driver, then nr, at " << i;
    unsigned drv = t[i].key >> 8, nr = t[i].key & 0xff;
    ASSERT_GT(drv, static_cast<unsigned>(GG_DRM_GENERIC));
    ASSERT_LT(drv, static_cast<unsigned>(GG_DRM_DRIVER_COUNT));
    ASSERT_GE(nr, 0x40u) << "a driver's own commands start at DRM_COMMAND_BASE";
    ASSERT_LT(nr, 0xA0u);
    ASSERT_LT(t[i].cls, GG_CLASS_COUNT);
    std::string name(table_entry_name(drivers[drv].table, static_cast<size_t>(i)));
    ASSERT_TRUE(names[drv].insert(name).second) << name;
  }
  for (unsigned d = GG_DRM_GENERIC + 1; d < static_cast<unsigned>(nd); d++) {
    SCOPED_TRACE(drm_driver_name(d));
    EXPECT_FALSE(names[d].empty()) << "a driver without commands";
    EXPECT_EQ(drm_driver_from_name(drm_driver_name(d)), d);
    EXPECT_LT(drivers[d].vendor, GG_VENDOR_COUNT);
    EXPECT_LT(drivers[d].table, GG_TAB_COUNT);
    EXPECT_TRUE(table_ids.insert(drivers[d].table).second) << "table id " << unsigned(drivers[d].table) << " reused";
    EXPECT_EQ(table_name(drivers[d].table), drm_driver_name(d));
  }
  EXPECT_EQ(drivers[GG_DRM_AMDGPU].vendor, GG_VENDOR_AMD);
  EXPECT_EQ(drivers[GG_DRM_AMDGPU].table, 6) << "ABI: the ids of the first tables stay";
  EXPECT_EQ(drivers[GG_DRM_XE].table, 8);
}

TEST(Tables, LegacyAndUvmSortedUnique) {
  int n = 0;
  const gg_nv_legacy_entry* l = gg_table_nv_legacy(&n);
  for (int i = 1; i < n; i++)
    ASSERT_LT(l[i - 1].cmd_class << 8 | l[i - 1].category, l[i].cmd_class << 8 | l[i].category);
  const gg_nv_uvm_entry* u = gg_table_nv_uvm(&n);
  for (int i = 1; i < n; i++) ASSERT_LT(u[i - 1].request, u[i].request);
}

TEST(Tables, EveryClassIsReachable) {
  std::set<unsigned> reached;
  int n = 0;
  const gg_nv_ctrl_entry* c = gg_table_nv_controls(&n);
  for (int i = 0; i < n; i++) reached.insert(c[i].cls);
  const gg_nv_esc_entry* e = gg_table_nv_escapes(&n);
  for (int i = 0; i < n; i++) reached.insert(e[i].cls);
  const gg_nv_legacy_entry* l = gg_table_nv_legacy(&n);
  for (int i = 0; i < n; i++) reached.insert(l[i].cls);
  for (unsigned cls = 0; cls < GG_CLASS_COUNT; cls++) {
    if (cls == GG_CLASS_BAR_MAP) continue;  // BAR mmaps are not ioctls: the mmap hooks come later
    EXPECT_TRUE(reached.count(cls)) << class_name(cls) << " is reachable from no table";
  }
}

TEST(Tables, ClassNamesRoundTrip) {
  for (unsigned cls = 0; cls < GG_CLASS_COUNT; cls++) EXPECT_EQ(class_from_name(class_name(cls)), cls);
  EXPECT_FALSE(class_from_name("power.of"));
  EXPECT_TRUE(class_gated_by_default(GG_CLASS_POWER_OFF));
  EXPECT_FALSE(class_gated_by_default(GG_CLASS_QUERY));
}

// What an RM control name says it does lives after NVIDIA's "<class>_CTRL_" or
// "<class>_CTRL_CMD_" prefix; keeping the prefix would make CTRL a verb in
// every name.
static std::string command_words(std::string_view name) {
  static const std::regex prefix("^.*?_CTRL_(CMD_)?");
  return std::regex_replace(std::string(name), prefix, "", std::regex_constants::format_first_only);
}

// A verb that changes state and a power, clock, performance or thermal noun,
// in either order, each a whole '_'-separated word: SETUP is not SET, CLOCK is
// not LOCK, PERFMON is not PERF. Verb and noun must be two words, so BOOST
// (both) alone does not match SYNC_GPU_BOOST_INFO, while PERF_BOOST and
// DISABLE_DYNAMIC_MMA_BOOST do. GPS and PFM are the notebook power controllers;
// ELPG, ELCG, BLCG, SLCG and MSCG are power and clock gating.
static const std::regex& danger_pattern() {
  static const std::string verb =
      "(SET|LOCK|BOOST|GATE|GATING|RESET|STRESS|FORCE|OVERRIDE|DISABLE|ENABLE|EXECUTE|ALLOW|DISALLOW|THROTTLE|"
      "LIMIT|CTRL|CONTROL|REQUEST|CONFIG|CONFIGURE|SWITCH|UPDATE|APPLY|WRITE|MODIFY|CHANGE|PROGRAM|TOGGLE)";
  static const std::string noun =
      "(POWER|POWERSTATE|PWR|PMGR|CLK|CLKS|CLOCK|CLOCKS|PERF|PSTATE|THERMAL|VOLT|VOLTAGE|FAN|GC6|GCOFF|LPWR|"
      "BOOST|TDP|TGP|ELPG|ELCG|BLCG|SLCG|MSCG|GPS|PFM)";
  static const std::regex pattern("(^|_)" + verb + "_(.*_)?" + noun + "(_|$)|(^|_)" + noun + "_(.*_)?" + verb +
                                  "(_|$)");
  return pattern;
}

// Names that only read: a GET or QUERY word and no word that changes state
// (BOOST, CONTROL, CONFIG, LIMIT are nouns in GET names: GET_DYNAMIC_MMA_BOOST_STATUS).
static bool reads_only_by_name(const std::string& words) {
  static const std::regex read("(^|_)(GET|QUERY)(_|$)");
  static const std::regex write(
      "(^|_)(SET|LOCK|GATE|RESET|STRESS|FORCE|OVERRIDE|DISABLE|ENABLE|EXECUTE|ALLOW|DISALLOW|THROTTLE|CONFIGURE|"
      "UPDATE|APPLY|WRITE|MODIFY|CHANGE|PROGRAM|TOGGLE|CLEAR|INJECT)(_|$)");
  return std::regex_search(words, read) && !std::regex_search(words, write);
}

static bool reachable_from_user_space(const gg_nv_ctrl_entry& e) {
  // KERNEL and INTERNAL controls are refused by the driver to ioctl callers.
  return e.priv == GG_PRIV_NONE || e.priv == GG_PRIV_ROOT;
}

// Controls whose names match the danger pattern but whose class is not gated, each
// with the reason. Keep this short: a new entry needs a reason a reviewer accepts.
static const std::map<uint32_t, std::string_view>& ungated_despite_name() {
  static const std::map<uint32_t, std::string_view> allow = {
      {0x20800513, "THERMAL_SYSTEM_EXECUTE_V2: public opcodes are GET-only; NVML reads temperatures with it"},
      {0x2080206E, "PERF_RATED_TDP_GET_CONTROL: reads the rated-TDP setting (its twin 0x2080206F is gated)"},
      {0x20801832, "BUS_SET_C2C_LPWR_STATE_VOTE: C2C link low power, link.config like PCIe ASPM (DESIGN 2)"},
      {0x20801836, "BUS_SET_C2C_LPWR_IDLE_THRESHOLD: C2C link low power, link.config (DESIGN 2)"},
  };
  return allow;
}

TEST(Tables, PowerClockPerfThermalSettersReachableFromUserSpaceAreGated) {
  int n = 0;
  const gg_nv_ctrl_entry* t = gg_table_nv_controls(&n);
  std::set<uint32_t> allow_used;
  for (int i = 0; i < n; i++) {
    if (!reachable_from_user_space(t[i])) continue;
    auto name = table_entry_name(GG_TAB_NV_CONTROL, static_cast<size_t>(i));
    if (!std::regex_search(command_words(name), danger_pattern())) continue;
    if (class_gated_by_default(t[i].cls)) continue;
    if (ungated_despite_name().count(t[i].id)) {
      allow_used.insert(t[i].id);
      continue;
    }
    ADD_FAILURE() << name << " (" << std::hex << "0x" << t[i].id << ", " << priv_name(t[i].priv)
                  << ") changes power, clock, perf or thermal state by its name but is " << class_name(t[i].cls)
                  << ": give it a gated class in tools/tables/nvidia-curated.tsv, or an allowlist reason here";
  }
  // An allowlist entry that no longer matches, or got gated, is stale.
  for (const auto& [id, reason] : ungated_despite_name())
    EXPECT_TRUE(allow_used.count(id)) << std::hex << "0x" << id << " is allowlisted but needs no exception: " << reason;
}

TEST(Tables, ControlsNamedOnlyGetOrQueryStayQueries) {
  int n = 0;
  const gg_nv_ctrl_entry* t = gg_table_nv_controls(&n);
  int reads = 0;
  for (int i = 0; i < n; i++) {
    auto name = table_entry_name(GG_TAB_NV_CONTROL, static_cast<size_t>(i));
    if (!reads_only_by_name(command_words(name))) continue;
    reads++;
    // No read is gated on purpose today; nvidia-smi -q issues many of them.
    EXPECT_EQ(t[i].cls, GG_CLASS_QUERY) << name << " reads by its name but is " << class_name(t[i].cls);
  }
  EXPECT_GT(reads, 500);  // the pattern still sees the GET/QUERY family
}

TEST(Tables, DangerPatternMatchesWholeWordsOnly) {
  auto matches = [](std::string_view name) { return std::regex_search(command_words(name), danger_pattern()); };
  EXPECT_TRUE(matches("NV2080_CTRL_CMD_GPU_SET_POWER"));
  EXPECT_TRUE(matches("NV2080_CTRL_CMD_PERF_BOOST"));
  EXPECT_TRUE(matches("NVB0CC_CTRL_CMD_DISABLE_DYNAMIC_MMA_BOOST"));
  EXPECT_TRUE(matches("NV2080_CTRL_CMD_LPWR_DIFR_CTRL"));
  EXPECT_TRUE(matches("NV0000_CTRL_CMD_SYSTEM_GPS_CTRL"));
  EXPECT_FALSE(matches("NV0000_CTRL_CMD_SYNC_GPU_BOOST_INFO"));           // one word is not a pair
  EXPECT_FALSE(matches("NV2080_CTRL_CMD_PERF_RESERVE_PERFMON_HW"));       // no verb
  EXPECT_FALSE(matches("NV2080_CTRL_CMD_FLA_SETUP_INSTANCE_MEM_BLOCK"));  // SETUP is not SET
  EXPECT_FALSE(matches("NV0000_CTRL_CMD_GPU_GET_CLOCK_INFO"));            // CLOCK is not LOCK
  EXPECT_FALSE(matches("NV2080_CTRL_CMD_GPU_GET_INFO"));                  // CTRL in the prefix is not a verb
}

// The decisions of the RM control walk (nvidia-curated.tsv cites each header line).
TEST(Tables, NotebookPowerRawI2cAndProfilerPowerControlsAreGated) {
  const std::map<uint32_t, unsigned> expected = {{0x00000122, GG_CLASS_POWER_LIMIT},
                                                 {0x00000123, GG_CLASS_POWER_LIMIT},
                                                 {0x0000012A, GG_CLASS_POWER_LIMIT},
                                                 {0x0000012D, GG_CLASS_POWER_LIMIT},
                                                 {0x00000130, GG_CLASS_POWER_LIMIT},
                                                 {0x00000132, GG_CLASS_POWER_LIMIT},
                                                 {0x00000140, GG_CLASS_POWER_LIMIT},
                                                 {0x00000141, GG_CLASS_POWER_LIMIT},
                                                 {0x00000142, GG_CLASS_POWER_LIMIT},
                                                 {0x00000143, GG_CLASS_POWER_LIMIT},
                                                 {0x00000145, GG_CLASS_POWER_LIMIT},
                                                 {0x20800601, GG_CLASS_POWER_LIMIT},
                                                 {0x20800602, GG_CLASS_POWER_LIMIT},
                                                 {0x20800604, GG_CLASS_POWER_LIMIT},
                                                 {0x402C0102, GG_CLASS_POWER_LIMIT},
                                                 {0x402C0105, GG_CLASS_POWER_LIMIT},
                                                 {0x208F0701, GG_CLASS_POWER_LIMIT},
                                                 {0x208F0703, GG_CLASS_POWER_LIMIT},
                                                 {0x00730120, GG_CLASS_POWER_OFF},
                                                 {0x00730134, GG_CLASS_PERF_STATE},
                                                 {0x90CC0301, GG_CLASS_PERF_STATE},
                                                 {0xB0CC0301, GG_CLASS_PERF_STATE},
                                                 {0xB0CC0117, GG_CLASS_CLOCK_LIMIT},
                                                 {0x20803605, GG_CLASS_GPU_RESET},
                                                 // Reads and tests that stay ungated (reasons in nvidia-curated.tsv).
                                                 {0x20800513, GG_CLASS_QUERY},
                                                 {0x20800603, GG_CLASS_OTHER},
                                                 {0x01000102, GG_CLASS_OTHER},
                                                 {0x90CC0302, GG_CLASS_OTHER}};
  int n = 0;
  const gg_nv_ctrl_entry* t = gg_table_nv_controls(&n);
  std::map<uint32_t, unsigned> found;
  for (int i = 0; i < n; i++)
    if (expected.count(t[i].id)) found[t[i].id] = t[i].cls;
  for (const auto& [id, cls] : expected) {
    ASSERT_TRUE(found.count(id)) << std::hex << "0x" << id << " is not in the table";
    EXPECT_EQ(found[id], cls) << std::hex << "0x" << id << ": " << class_name(found[id]) << ", expected "
                              << class_name(cls);
  }
}
