// Invariants of the command tables: sorted (binary-searched in BPF), unique
// ids and names, every class reachable, classes valid.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "gpugate/decode.hpp"

extern "C" {
#include "gg_decode_c.h"
}

using namespace gpugate;

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
    if (info.table == GG_TAB_NV_CONTROL || info.table == GG_TAB_NV_ESCAPE || info.table == GG_TAB_NV_LEGACY ||
        info.table == GG_TAB_NV_UVM)
      continue;
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
