// One realistic recorded GPU ioctl for the micro-benchmarks: GPU_SET_POWER
// through NV_ESC_RM_CONTROL on a /dev/full alias of nvidiactl, with its exit.
#pragma once

#include <cstring>

#include "gpugate/decode.hpp"
#include "gpugate/device.hpp"

namespace gpugate::bench {

struct SampleIoctl {
  DeviceTable devices;
  gg_ioctl_enter enter{};
  gg_ioctl_exit exit{};

  SampleIoctl() {
    (void)devices.add_alias("/dev/full=nvidia");
    uint32_t params[3] = {0, 4, 0};
    uint8_t arg[32] = {};
    uint32_t words[] = {0xc1d00001, 0xcaf00001, 0x20800112, 0};
    std::memcpy(arg, words, sizeof(words));
    uint64_t ptr = 0x7ffc0000;
    std::memcpy(arg + 16, &ptr, 8);
    uint32_t size = 12;
    std::memcpy(arg + 24, &size, 4);
    enter.hdr = {GG_EV_IOCTL_ENTER, sizeof(enter), 0, 1, 1000, 4242, 4242};
    std::strcpy(enter.comm, "bench");
    std::strcpy(enter.exe_name, "bench");
    enter.dev = devices.devices()[0].dev;
    enter.device = devices.devices()[0].info;
    enter.fd = 3;
    enter.raw =
        capture({GG_DEV_NVIDIA_CTL, 0, 0xC020462A, arg, {}, {reinterpret_cast<uint8_t*>(params), sizeof(params)}, 0});
    enter.dec = decode(enter.raw);
    exit.hdr = {GG_EV_IOCTL_EXIT, sizeof(exit), 0, 1, 2000, 4242, 4242};
    exit.enter_seq = 1;
    exit.ret = -25;
  }
};

}  // namespace gpugate::bench
