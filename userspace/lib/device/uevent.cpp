#include "gpugate/uevent.hpp"

#include <linux/netlink.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace gpugate {

bool uevent_concerns_gpu(std::string_view message) {
  std::string_view action, major, devname, subsystem;
  size_t pos = message.find('\0');  // past the "ACTION@DEVPATH" header
  while (pos != std::string_view::npos && pos < message.size()) {
    size_t end = message.find('\0', pos + 1);
    std::string_view kv = message.substr(pos + 1, end == std::string_view::npos ? end : end - pos - 1);
    auto take = [&](std::string_view key, std::string_view& out) {
      if (kv.starts_with(key)) out = kv.substr(key.size());
    };
    take("ACTION=", action);
    take("MAJOR=", major);
    take("DEVNAME=", devname);
    take("SUBSYSTEM=", subsystem);
    pos = end;
  }
  if (action != "add" && action != "remove" && action != "change" && action != "bind" && action != "unbind")
    return false;
  if (subsystem == "drm" || subsystem == "kfd") return true;
  if (major == "195" || major == "226") return true;
  return devname.starts_with("nvidia") || devname.starts_with("dri/") || devname == "kfd";
}

Result<UeventMonitor> UeventMonitor::open() {
  UniqueFd fd(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_KOBJECT_UEVENT));
  if (!fd)
    return make_error(fmt::format("cannot open a uevent socket: {}; new GPU nodes are then seen only at the next start",
                                  std::strerror(errno)),
                      errno);
  sockaddr_nl addr{};
  addr.nl_family = AF_NETLINK;
  addr.nl_groups = 1;  // the kernel's own events (not udev's)
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
    return make_error(fmt::format("cannot listen for uevents: {} (needs root); new GPU nodes are then seen only at "
                                  "the next start",
                                  std::strerror(errno)),
                      errno);
  return UeventMonitor(std::move(fd));
}

bool UeventMonitor::drain() {
  bool relevant = false;
  char buf[8192];
  for (;;) {
    ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), 0);
    if (n <= 0) break;  // EAGAIN: all read
    relevant |= uevent_concerns_gpu(std::string_view(buf, static_cast<size_t>(n)));
  }
  return relevant;
}

}  // namespace gpugate
