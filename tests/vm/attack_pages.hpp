// Memory an attacker controls the timing of, for the guest attack tests:
// a page the process never touched (a non-faulting read fails where the
// driver's copy succeeds), and a page registered with userfaultfd whose
// first fault waits for a thread of the attacker's.
#pragma once

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#include "ia32.hpp"
#include "nvabi.hpp"

namespace gpugate::test {

// One page of a memfd, mapped MAP_SHARED below 4 GiB but never touched by
// this process: the bytes are in the page cache, no page table entry points
// at them, so a non-faulting read fails where the driver's copy succeeds.
struct UntouchedPage {
  UntouchedPage() {
    fd = static_cast<int>(syscall(SYS_memfd_create, "gg-untouched", 0));
    if (fd >= 0 && ftruncate(fd, 4096) == 0) remap();
  }
  ~UntouchedPage() {
    if (addr) munmap(addr, 4096);
    if (fd >= 0) close(fd);
  }
  // A fresh mapping (no page table entries) of the same page.
  void remap() {
    if (addr) munmap(addr, 4096);
    void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_32BIT, fd, 0);
    addr = p == MAP_FAILED ? nullptr : static_cast<uint8_t*>(p);
  }
  // Writes through the file, not the mapping: the mapping stays untouched.
  bool put(size_t off, const void* data, size_t len) const {
    return pwrite(fd, data, len, static_cast<off_t>(off)) == static_cast<ssize_t>(len);
  }
  uint32_t at(size_t off) const { return low32(addr + off); }
  int fd = -1;
  uint8_t* addr = nullptr;
};

// GPU_SET_POWER(level) laid out in the untouched page: the NVOS54 at 0, its
// params at 256.
inline bool stage_set_power(UntouchedPage& page, uint32_t level) {
  uint32_t params[3] = {0, level, 0};
  Nvos54 c = control(kSetPower, nullptr, sizeof(params));
  c.params = page.at(256);
  return page.put(0, &c, sizeof(c)) && page.put(256, params, sizeof(params));
}

// A page registered with userfaultfd, served by a thread of this process:
// when a fault on it arrives, the thread first runs flip (the attacker's
// second thread changing the request meanwhile), then fills the page with
// fill and wakes the faulting reader.
struct UffdPage {
  explicit UffdPage(std::function<void()> flip_fn, std::vector<uint8_t> fill_bytes)
      : flip(std::move(flip_fn)), fill(std::move(fill_bytes)) {
    uffd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
    if (uffd < 0) return;
    uffdio_api api{UFFD_API, 0, 0};
    if (ioctl(uffd, UFFDIO_API, &api) != 0) return;
    void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return;
    addr = static_cast<uint8_t*>(p);
    uffdio_register reg{{reinterpret_cast<uint64_t>(addr), 4096}, UFFDIO_REGISTER_MODE_MISSING, 0};
    if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) return;
    ready = true;
    server = std::thread([this] { serve(); });
  }
  ~UffdPage() {
    stop = true;
    if (server.joinable()) server.join();
    if (addr) munmap(addr, 4096);
    if (uffd >= 0) close(uffd);
  }
  void serve() {
    while (!stop) {
      pollfd p{uffd, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      uffd_msg msg{};
      if (read(uffd, &msg, sizeof(msg)) != sizeof(msg) || msg.event != UFFD_EVENT_PAGEFAULT) continue;
      flip();
      served++;  // before the copy wakes the faulting reader
      std::vector<uint8_t> page(4096, 0);
      std::memcpy(page.data(), fill.data(), std::min<size_t>(fill.size(), page.size()));
      uffdio_copy cp{reinterpret_cast<uint64_t>(addr), reinterpret_cast<uint64_t>(page.data()), 4096, 0, 0};
      ioctl(uffd, UFFDIO_COPY, &cp);
    }
  }
  std::function<void()> flip;
  std::vector<uint8_t> fill;
  int uffd = -1;
  uint8_t* addr = nullptr;
  bool ready = false;
  std::atomic<bool> stop{false};
  std::atomic<int> served{0};
  std::thread server;
};

inline std::vector<uint8_t> u32_bytes(uint32_t v) {
  return {uint8_t(v), uint8_t(v >> 8), uint8_t(v >> 16), uint8_t(v >> 24)};
}

}  // namespace gpugate::test
