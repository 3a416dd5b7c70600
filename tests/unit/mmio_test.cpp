// mmiotrace's lines parsed and a trace classified against the GPUs' BARs
// and the register table (docs/mmio.md): every line form of the kernel's
// tracer, the lines it is not, writes inside and outside a GPU's BAR, the
// narrowest named register, and the kernel's own notes of lost events.
#include <gtest/gtest.h>

#include <string>

#include <fmt/format.h>

#include "gpugate/decode.hpp"
#include "gpugate/mmio.hpp"

using namespace gpugate;
using namespace gpugate::mmio;

namespace {

PciGpu std_vga() {
  PciGpu g;
  g.address = "0000:00:02.0";
  g.vendor_id = 0x1234;
  g.device_id = 0x1111;
  g.bars = {{0, 0xfd000000, 0xfdffffff, true}, {2, 0xfebf0000, 0xfebf0fff, true}};
  return g;
}

PciGpu nvidia_gpu() {
  PciGpu g;
  g.address = "0000:41:00.0";
  g.vendor_id = 0x10de;
  g.device_id = 0x2335;
  g.bars = {{0, 0xfa000000, 0xfaffffff, true}, {1, 0x18000000000, 0x1ffffffffff, true}, {5, 0xf000, 0xf07f, false}};
  return g;
}

}  // namespace

TEST(Mmio, EveryLineFormOfTheTracerParses) {
  auto w = parse_line("W 2 12.345678 3 0xfebf0502 0x400 0x0 0\n");
  ASSERT_TRUE(w);
  EXPECT_EQ(w->op, Op::kWrite);
  EXPECT_EQ(w->width, 2u);
  EXPECT_EQ(w->time, "12.345678");
  EXPECT_EQ(w->map_id, 3);
  EXPECT_EQ(w->phys, 0xfebf0502u);
  EXPECT_EQ(w->value, 0x400u);
  auto r = parse_line("R 4 0.000010 1 0xfa000000 0x172000a1 0x0 0");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->op, Op::kRead);
  auto m = parse_line("MAP 432.175965 1 0xfa000000 0xffffa524801ab000 0x1000 0x0 0");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->op, Op::kMap);
  EXPECT_EQ(m->len, 0x1000u);
  auto u = parse_line("UNMAP 433.000001 -1 0x0 0");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->map_id, -1) << "an unmap of a mapping made before the trace";
  EXPECT_EQ(parse_line("VERSION 20070824")->text, "20070824");
  EXPECT_EQ(
      parse_line("PCIDEV 0010 12341111 0 fd000008 0 febf0000 0 0 0 c0002 1000000 0 1000 0 0 0 10000 bochs-drm")->op,
      Op::kPciDev);
  EXPECT_EQ(parse_line("UNKNOWN 1.000000 2 0xfebf0500 0f,b7,02 0x0 0")->op, Op::kUnknownOp);
  auto mark = parse_line("MARK 5.000000 gpugate: X is up");
  ASSERT_TRUE(mark);
  EXPECT_EQ(mark->text, "gpugate: X is up");
  EXPECT_EQ(parse_line("CPU:0 [LOST 17 EVENTS]")->text, "Lost 17 events.");
}

TEST(Mmio, LinesThatAreNotTheTracersAreRefusedNotGuessed) {
  for (const char* bad : {"", "W", "W 2 12.345678 3 0xfebf0502", "W 3 12.345678 3 0xfebf0502 0x400 0x0 0",
                          "W 2 12 3 0x1 0x1 0x0 0", "W 2 12.345678 x 0x1 0x1 0x0 0", "W 2 12.345678 1 0xzz 0x1 0x0 0",
                          "W 2 12.345678 1 0x1ffffffffffffffffff 0x1 0x0 0", "MAP 1.0 1 0x1 0x1",
                          "R 4 .5 1 0x1 0x1 0x0 0", "# tracer: mmiotrace", "hello world"})
    EXPECT_FALSE(parse_line(bad)) << bad;
}

TEST(Mmio, WritesAreClassifiedByBarAndTheNarrowestNamedRegister) {
  std::string trace =
      "VERSION 20070824\n"
      "PCIDEV 0010 12341111 0 fd000008 0 febf0000 0 0 0 c0002 1000000 0 1000 0 0 0 10000 bochs-drm\n"
      "MAP 1.000000 1 0xfebf0000 0xffffc90000100000 0x1000 0x0 0\n"
      "MAP 1.000001 2 0xfe000000 0xffffc90000200000 0x1000 0x0 0\n"
      "R 2 1.000002 1 0xfebf0500 0xb0c5 0x0 0\n"
      "W 4 1.000003 1 0xfebf0604 0x1e1e1e1e 0x0 0\n"
      "W 2 1.000004 1 0xfebf0508 0x0 0x0 0\n"
      "W 2 1.000005 1 0xfebf0502 0x400 0x0 0\n"
      "W 2 1.000006 1 0xfebf0504 0x300 0x0 0\n"
      "W 2 1.000007 1 0xfebf0508 0x41 0x0 0\n"
      "W 1 1.000008 1 0xfebf0700 0x1 0x0 0\n"
      "W 4 1.000009 2 0xfe000010 0x1 0x0 0\n"
      "W 4 1.000010 3 0xfa000200 0x0 0x0 0\n"
      "W 4 1.000011 3 0xfa020164 0x3f0000 0x0 0\n"
      "W 4 1.000012 3 0xfa020004 0x1 0x0 0\n"
      "W 4 1.000013 3 0xfa118010 0x1 0x0 0\n"
      "MARK 0.000000 Lost 5 events.\n"
      "CPU:1 [LOST 2 EVENTS]\n"
      "garbage line\n"
      "UNMAP 2.000000 1 0x0 0\n";
  auto c = classify(trace, {std_vga(), nvidia_gpu()});
  EXPECT_EQ(c.version, "20070824");
  EXPECT_EQ(c.maps, 2u);
  EXPECT_EQ(c.maps_on_gpus, 1u) << "0xfe000000 is no GPU's";
  EXPECT_EQ(c.reads, 1u);
  EXPECT_EQ(c.writes, 11u);
  EXPECT_EQ(c.gpu_writes, 10u) << "all but the one outside every BAR";
  EXPECT_EQ(c.named_writes, 9u) << "0x700 of BAR 2 has no name";
  EXPECT_EQ(c.lost, 7u);
  EXPECT_EQ(c.malformed, 1u);
  ASSERT_EQ(c.named.size(), 9u);
  ASSERT_EQ(c.unnamed.size(), 1u);
  EXPECT_EQ(c.unnamed[0].offset, 0x700u);
  EXPECT_EQ(c.named[0].reg->name, "PCI_VGA_QEXT_REG_BYTEORDER");
  EXPECT_EQ(c.named[1].reg->name, "VBE_DISPI_INDEX_ENABLE");
  EXPECT_EQ(c.named[2].reg->name, "VBE_DISPI_INDEX_XRES");
  EXPECT_EQ(c.named[2].value, 0x400u);
  EXPECT_EQ(c.named[2].offset, 0x502u);
  EXPECT_EQ(c.named[2].bar, 2u);
  EXPECT_EQ(c.named[5].reg->cls, static_cast<unsigned>(GG_CLASS_GPU_RESET)) << "NV_PMC_ENABLE";
  EXPECT_EQ(std::string(c.named[6].reg->name).rfind("therm_clk_slowdown", 0), 0u) << "the narrowest entry";
  EXPECT_EQ(c.named[6].reg->cls, static_cast<unsigned>(GG_CLASS_CLOCK_LIMIT));
  EXPECT_EQ(std::string(c.named[7].reg->name).rfind("NV_THERM", 0), 0u) << "the block, where no register is named";
  EXPECT_EQ(c.named[8].reg->cls, static_cast<unsigned>(GG_CLASS_POWER_OFF)) << "the GC6 island";
  EXPECT_EQ((c.by_register[{"0000:00:02.0", 2, "VBE_DISPI_INDEX_ENABLE", GG_CLASS_OTHER}]), 2u);
  EXPECT_EQ((c.by_register[{"0000:00:02.0", 2, "", GG_CLASS_UNKNOWN}]), 1u);

  auto j = capture_json(c);
  EXPECT_EQ(j["gpu_writes"], 10);
  EXPECT_EQ(j["lost_events"], 7);
  EXPECT_EQ(j["named_writes_kept"][2]["register"], "VBE_DISPI_INDEX_XRES");
  EXPECT_EQ(j["named_writes_kept"][2]["offset"], "0x502");
  EXPECT_EQ(j["named_writes_kept"][5]["class"], "gpu.reset");
  EXPECT_EQ(j["unnamed_writes_kept"][0]["offset"], "0x700");
  EXPECT_EQ(j["named_writes_cut"], false);

  // A driver clearing memory through a BAR: the named writes after it are all kept.
  std::string clear;
  for (int i = 0; i < 100; i++) clear += fmt::format("W 1 2.{:06} 4 0xfd{:06x} 0x0 0x0 0\n", i, i);
  auto flood = classify(clear + trace, {std_vga(), nvidia_gpu()}, 16);
  EXPECT_EQ(flood.unnamed.size(), 2u) << "16 / 8";
  EXPECT_TRUE(flood.unnamed_cut);
  EXPECT_EQ(flood.named.size(), 9u);
  EXPECT_FALSE(flood.named_cut);
  EXPECT_EQ(flood.gpu_writes, 110u) << "counted all the same";
  auto few = classify(trace, {std_vga(), nvidia_gpu()}, 3);
  EXPECT_EQ(few.named.size(), 3u);
  EXPECT_TRUE(few.named_cut);
}

TEST(Mmio, EveryTableEntryIsAWellFormedRange) {
  for (const auto& r : register_table()) {
    EXPECT_LE(r.first, r.last) << r.name;
    EXPECT_FALSE(r.name.empty());
    EXPECT_FALSE(r.source.empty()) << r.name << ": every name has its source";
    EXPECT_LT(r.cls, static_cast<unsigned>(GG_CLASS_COUNT)) << r.name;
  }
}
