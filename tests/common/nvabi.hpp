// The NVIDIA driver's ioctl structs and numbers as the tests issue them
// (../shared/reference/nvidia-abi.md, from NVIDIA/open-gpu-kernel-modules
// 595.45.04 src/common/sdk/nvidia/inc/nvos.h and kernel-open/common/inc/nv-ioctl.h).
#pragma once

#include <cstdint>

namespace gpugate::test {

// NVOS54_PARAMETERS (NV_ESC_RM_CONTROL), 32 bytes.
struct Nvos54 {
  uint32_t client, object, cmd, flags;
  uint64_t params;
  uint32_t size, status;
};
static_assert(sizeof(Nvos54) == 32);

// NV_ESC_IOCTL_XFER_CMD's tunnel, 16 bytes.
struct NvXfer {
  uint32_t cmd, size;
  uint64_t ptr;
};
static_assert(sizeof(NvXfer) == 16);

constexpr unsigned long kRmControl = 0xC020462A;
constexpr unsigned long kRmAlloc = 0xC020462B;
constexpr unsigned long kXfer = 0xC01046D3;
constexpr uint32_t kSetPower = 0x20800112;              // GPU_SET_POWER {target, newLevel, oldLevel}
constexpr uint32_t kGetPowerState = 0x2080205A;         // PERF_GET_POWERSTATE {powerState}, a query
constexpr uint32_t kSetPowerState = 0x2080205B;         // PERF_SET_POWERSTATE {powerState}, perf.state
constexpr uint32_t kGetNameString = 0x20800110;         // GPU_GET_NAME_STRING, a query
constexpr uint32_t kLegacyPmgrPowerLimit = 0x2080E601;  // gpusim: power limit in mW (root only)

inline Nvos54 control(uint32_t cmd, const void* params, uint32_t size) {
  return {0xc1d00001, 0xcaf00001, cmd, 0, reinterpret_cast<uint64_t>(params), size, 0};
}

}  // namespace gpugate::test
