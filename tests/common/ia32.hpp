// System calls as a 32-bit program makes them (int 0x80): the kernel takes
// its compat path, which the syscalls/sys_enter_* events skip on x86-64.
#pragma once

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>

namespace gpugate::test {

inline long ioctl_ia32(int fd, uint32_t cmd, uint32_t arg) {
  long ret;
  asm volatile("int $0x80"
               : "=a"(ret)
               : "a"(54 /* __NR_ioctl, i386 */), "b"(fd), "c"(cmd), "d"(arg)
               : "memory", "r8", "r9", "r10", "r11");
  return ret;
}

// Whether this kernel takes 32-bit system calls at all: a child makes one
// (getpid through int 0x80). Kernels built or booted without IA32
// emulation (ia32_emulation=false, some VM kernels) fault it (SIGSEGV):
// there no 32-bit caller can reach a GPU node.
enum class Ia32 { kAvailable, kRefusedByKernel, kOther };
inline Ia32 ia32_syscalls() {
  pid_t child = fork();
  if (child == 0) {
    // The kernel's answer, not a sanitizer's: ASan catches SIGSEGV and exits 1.
    signal(SIGSEGV, SIG_DFL);
    long ret;
    asm volatile("int $0x80" : "=a"(ret) : "a"(20 /* __NR_getpid, i386 */) : "memory", "r8", "r9", "r10", "r11");
    _exit(ret == getpid() ? 0 : 1);
  }
  int status = 0;
  if (child < 0 || waitpid(child, &status, 0) != child) return Ia32::kOther;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return Ia32::kAvailable;
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV) return Ia32::kRefusedByKernel;
  return Ia32::kOther;
}

// Venues that must run the 32-bit tests (the vm suites) set GG_REQUIRE_IA32=1.
inline bool ia32_required() {
  const char* v = std::getenv("GG_REQUIRE_IA32");
  return v && v[0] == '1';
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
