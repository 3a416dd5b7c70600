// The register table: public names of GPU registers by BAR and offset, with
// the class a write to them falls in. Sources are cited per entry; offsets
// are facts from public headers, nothing here is copied code.
#include <array>

extern "C" {
#include "gpugate/types.h"
}

#include "gpugate/mmio.hpp"

namespace gpugate::mmio {
namespace {

constexpr uint16_t kQemu = 0x1234;  // QEMU's std VGA and bochs-display (1234:1111)
constexpr uint16_t kQemuVga = 0x1111;
constexpr uint16_t kNvidia = 0x10de;
constexpr std::string_view kBochsVbe = "qemu/qemu include/hw/display/bochs-vbe.h, docs/specs/standard-vga.rst";
constexpr std::string_view kNvBoot =
    "NVIDIA/open-gpu-kernel-modules src/common/inc/swref/published/turing/tu102/dev_boot.h";
constexpr std::string_view kNvXve =
    "NVIDIA/open-gpu-kernel-modules src/common/inc/swref/published/turing/tu102/dev_nv_xve.h";
constexpr std::string_view kNvGc6 =
    "NVIDIA/open-gpu-kernel-modules src/common/inc/swref/published/turing/tu102/dev_gc6_island.h";
constexpr std::string_view kNvgpuTherm =
    "nvidia-mirror/linux-nvgpu drivers/gpu/nvgpu/include/nvgpu/hw/ga100/hw_therm_ga100.h";
constexpr std::string_view kNvgpuTrim =
    "nvidia-mirror/linux-nvgpu drivers/gpu/nvgpu/include/nvgpu/hw/ga100/hw_trim_ga100.h";
constexpr std::string_view kNvgpuPwr =
    "nvidia-mirror/linux-nvgpu drivers/gpu/nvgpu/include/nvgpu/hw/ga100/hw_pwr_ga100.h";

// BAR 2 of QEMU's std VGA and bochs-display: the EDID blob at 0, VGA ports
// at 0x400 (std VGA only), the Bochs VBE (DISPI) registers at 0x500 +
// index * 2, QEMU's extension at 0x600.
constexpr Register bochs(uint64_t off, uint64_t len, std::string_view name, std::string_view group) {
  return {kQemu, kQemuVga, 2, off, off + len - 1, name, GG_CLASS_OTHER, group, kBochsVbe};
}

// BAR 0 of NVIDIA GPUs (Turing to Hopper; Blackwell's GB202 moved the
// thermal block: docs/mmio.md), by block and by register.
constexpr Register nv(uint64_t first, uint64_t last, std::string_view name, unsigned cls, std::string_view group,
                      std::string_view source) {
  return {kNvidia, 0, 0, first, last, name, cls, group, source};
}

constexpr std::array kTable{
    bochs(0x000, 0x400, "EDID blob", "display identification"),
    bochs(0x400, 0x20, "VGA ports 0x3c0-0x3df", "vga"),
    bochs(0x500, 2, "VBE_DISPI_INDEX_ID", "display mode"),
    bochs(0x502, 2, "VBE_DISPI_INDEX_XRES", "display mode"),
    bochs(0x504, 2, "VBE_DISPI_INDEX_YRES", "display mode"),
    bochs(0x506, 2, "VBE_DISPI_INDEX_BPP", "display mode"),
    bochs(0x508, 2, "VBE_DISPI_INDEX_ENABLE", "display mode"),
    bochs(0x50a, 2, "VBE_DISPI_INDEX_BANK", "display mode"),
    bochs(0x50c, 2, "VBE_DISPI_INDEX_VIRT_WIDTH", "display mode"),
    bochs(0x50e, 2, "VBE_DISPI_INDEX_VIRT_HEIGHT", "display mode"),
    bochs(0x510, 2, "VBE_DISPI_INDEX_X_OFFSET", "display mode"),
    bochs(0x512, 2, "VBE_DISPI_INDEX_Y_OFFSET", "display mode"),
    bochs(0x514, 2, "VBE_DISPI_INDEX_VIDEO_MEMORY_64K", "display mode"),
    bochs(0x600, 4, "PCI_VGA_QEXT_REG_SIZE", "qemu extension"),
    bochs(0x604, 4, "PCI_VGA_QEXT_REG_BYTEORDER", "qemu extension"),

    nv(0x000000, 0x000fff, "NV_PMC (master control block)", GG_CLASS_OTHER, "control", kNvBoot),
    nv(0x000000, 0x000003, "NV_PMC_BOOT_0", GG_CLASS_QUERY, "identification", kNvBoot),
    nv(0x000100, 0x00018f, "NV_PMC_INTR / NV_PMC_INTR_EN", GG_CLASS_OTHER, "interrupts", kNvBoot),
    nv(0x000200, 0x000203, "NV_PMC_ENABLE (engine enable and reset bits)", GG_CLASS_GPU_RESET, "reset", kNvBoot),
    nv(0x000600, 0x000603, "NV_PMC_DEVICE_ENABLE (Ampere on: engine reset)", GG_CLASS_GPU_RESET, "reset",
       "NVIDIA/open-gpu-kernel-modules src/common/inc/swref/published/ampere/ga100/dev_boot.h"),
    nv(0x009000, 0x009fff, "NV_PTIMER", GG_CLASS_OTHER, "timer",
       "NVIDIA/open-gpu-kernel-modules src/common/inc/swref/published/turing/tu104/dev_timer.h"),
    nv(0x00e800, 0x00e83f, "trim_sppll0/1_cfg (SPPLL)", GG_CLASS_CLOCK_LIMIT, "clocks", kNvgpuTrim),
    nv(0x020000, 0x0207ff, "NV_THERM (thermal and slowdown block)", GG_CLASS_CLOCK_LIMIT, "thermal", kNvgpuTherm),
    nv(0x020160, 0x02019f, "therm_clk_slowdown (clock slowdown: throttling)", GG_CLASS_CLOCK_LIMIT, "thermal",
       kNvgpuTherm),
    nv(0x020200, 0x02027f, "therm_gate_ctrl (engine clock gating)", GG_CLASS_CLOCK_LIMIT, "clock gating", kNvgpuTherm),
    nv(0x0202c0, 0x0203ff, "therm_grad_stepping / therm_clk_timing (gradual slowdown)", GG_CLASS_CLOCK_LIMIT, "thermal",
       kNvgpuTherm),
    nv(0x020700, 0x02070b, "therm_evt_ext_therm (external thermal events: slowdown)", GG_CLASS_CLOCK_LIMIT, "thermal",
       "nvidia-mirror/linux-nvgpu drivers/gpu/nvgpu/include/nvgpu/hw/ga10b/hw_therm_ga10b.h"),
    nv(0x088000, 0x088fff, "NV_PCFG (PCI config space mirror)", GG_CLASS_OTHER, "pci config", kNvXve),
    nv(0x088080, 0x088083, "NV_XVE_DEVICE_CONTROL_STATUS (bit 15: function level reset)", GG_CLASS_GPU_RESET, "reset",
       kNvXve),
    nv(0x088088, 0x08808b, "NV_XVE_LINK_CONTROL_STATUS (link control)", GG_CLASS_POWER_OFF, "pci express link", kNvXve),
    nv(0x088718, 0x08871b, "NV_XVE_SW_RESET", GG_CLASS_GPU_RESET, "reset", kNvXve),
    nv(0x10a000, 0x10bfff, "PMU falcon (power management unit)", GG_CLASS_OTHER, "power management", kNvgpuPwr),
    nv(0x118000, 0x118fff, "NV_PGC6 (GC6 power-gating island)", GG_CLASS_POWER_OFF, "power gating", kNvGc6),
    nv(0x132000, 0x137fff, "TRIM (clock generation: GPC, FLL, SYS PLLs)", GG_CLASS_CLOCK_LIMIT, "clocks", kNvgpuTrim),
};

}  // namespace

std::span<const Register> register_table() { return kTable; }

}  // namespace gpugate::mmio
