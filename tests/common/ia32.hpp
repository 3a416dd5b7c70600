// System calls as a 32-bit program makes them (int 0x80): the kernel takes
// its compat path, which the syscalls/sys_enter_* events skip on x86-64.
#pragma once

#include <sys/mman.h>

#include <cstdint>

namespace gpugate::test {

inline long ioctl_ia32(int fd, uint32_t cmd, uint32_t arg) {
  long ret;
  asm volatile("int $0x80"
               : "=a"(ret)
               : "a"(54 /* __NR_ioctl, i386 */), "b"(fd), "c"(cmd), "d"(arg)
               : "memory", "r8", "r9", "r10", "r11");
  return ret;
}

// Memory a 32-bit pointer reaches (below 4 GiB), touched so it is resident.
inline uint8_t* low_page() {
  void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  static_cast<volatile uint8_t*>(p)[0] = 0;
  return static_cast<uint8_t*>(p);
}

inline uint32_t low32(const void* p) { return static_cast<uint32_t>(reinterpret_cast<uintptr_t>(p)); }

}  // namespace gpugate::test
