// Kernel uevents: how the daemon learns that a GPU node came or went (a
// driver loaded, a GPU hot-plugged, a node made by hand), so that the
// kernel's device table follows without a restart.
#pragma once

#include <string_view>

#include "gpugate/result.hpp"
#include "gpugate/unique_fd.hpp"

namespace gpugate {

// Does one uevent ("add@/devices/...\0ACTION=add\0MAJOR=226\0...") concern a
// GPU node: an add, remove or change of a character device of NVIDIA's or
// DRM's major, or of a node named nvidia*, dri/* or kfd, or any event of the
// drm or kfd subsystems.
bool uevent_concerns_gpu(std::string_view message);

class UeventMonitor {
 public:
  // A NETLINK_KOBJECT_UEVENT socket on the kernel's multicast group (root).
  static Result<UeventMonitor> open();

  [[nodiscard]] int fd() const { return fd_.get(); }
  // Reads every pending message without blocking; true if one concerned a GPU node.
  bool drain();

 private:
  explicit UeventMonitor(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace gpugate
