// gpugate-nvclient: issues real NVIDIA-ABI ioctls (the driver's escape
// numbers and struct layouts) on a device node, so that the whole chain can
// be watched where no NVIDIA GPU exists: point it at a --device alias.
//
// Layouts: ../shared/reference/nvidia-abi.md section 3 (NVOS54 RM control,
// NVOS21 RM alloc, NVOS00 RM free, nv_ioctl_xfer_t), from
// NVIDIA/open-gpu-kernel-modules 595.45.04 src/common/sdk/nvidia/inc/nvos.h
// and kernel-open/common/inc/nv-ioctl.h.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct Nvos54 {  // NV_ESC_RM_CONTROL
  uint32_t hClient, hObject, cmd, flags;
  uint64_t params;
  uint32_t paramsSize, status;
};
static_assert(sizeof(Nvos54) == 32);

struct Nvos21 {  // NV_ESC_RM_ALLOC
  uint32_t hRoot, hObjectParent, hObjectNew, hClass;
  uint64_t pAllocParms;
  uint32_t paramsSize, status;
};
static_assert(sizeof(Nvos21) == 32);

struct Nvos00 {  // NV_ESC_RM_FREE
  uint32_t hRoot, hObjectParent, hObjectOld, status;
};
static_assert(sizeof(Nvos00) == 16);

struct Xfer {  // NV_ESC_IOCTL_XFER_CMD
  uint32_t cmd, size;
  uint64_t ptr;
};
static_assert(sizeof(Xfer) == 16);

constexpr unsigned long iowr(unsigned nr, unsigned size, unsigned type = 'F') {
  return (3ul << 30) | (static_cast<unsigned long>(size) << 16) | (type << 8) | nr;
}

constexpr uint32_t kClient = 0xc1d00001, kSubdevice = 0xcaf00001;

int g_fd = -1;

long do_ioctl(const char* what, unsigned long request, void* arg) {
  long r = syscall(SYS_ioctl, g_fd, request, arg);
  std::printf("  %-58s ioctl %#010lx -> %ld%s%s\n", what, request, r, r < 0 ? " " : "",
              r < 0 ? std::strerror(errno) : "");
  return r;
}

long control(const char* what, uint32_t object, uint32_t cmd, void* params, uint32_t size, unsigned long req = 0) {
  Nvos54 p{kClient, object, cmd, 0, reinterpret_cast<uint64_t>(params), size, 0};
  return do_ioctl(what, req ? req : iowr(0x2A, sizeof(p)), &p);
}

int demo() {
  std::printf(
      "gpugate-nvclient: NVIDIA-ABI requests (a few are refused by a real driver: they are the ones an\n"
      "attacker would try; on an alias device every call returns the alias driver's answer)\n");
  Nvos21 root{0, 0, kClient, 0x41, 0, 0, 0};  // NV01_ROOT_CLIENT
  do_ioctl("RM_ALLOC root client (NV01_ROOT_CLIENT)", iowr(0x2B, sizeof(root)), &root);

  char name[68] = {};
  control("RM_CONTROL GPU_GET_NAME_STRING (query)", kSubdevice, 0x20800110, name, sizeof(name));

  uint32_t drain_query[3] = {0x100, 0, 0};
  control("RM_CONTROL GPU_QUERY_DRAIN_STATE (query)", kClient, 0x00000279, drain_query, sizeof(drain_query));

  uint32_t tdp[3] = {0, 2 /* FORCE_LIMIT */, 0};
  control("RM_CONTROL PERF_RATED_TDP_SET_CONTROL (power.limit)", kSubdevice, 0x2080206F, tdp, sizeof(tdp));

  uint32_t pmgr[4] = {250000 /* mW */, 0, 0, 0};
  control("RM_CONTROL legacy PMGR 0x2080E6xx, root (power.limit, inferred)", kSubdevice, 0x2080E601, pmgr,
          sizeof(pmgr));

  uint32_t power[3] = {0, 4 /* GPU_LEVEL_4 */, 0};
  control("RM_CONTROL GPU_SET_POWER (power.off)", kSubdevice, 0x20800112, power, sizeof(power));

  uint32_t drain[3] = {0x100, 1 /* ENABLED */, 1 /* REMOVE_DEVICE */};
  control("RM_CONTROL GPU_MODIFY_DRAIN_STATE +REMOVE_DEVICE (power.off)", kClient, 0x00000278, drain, sizeof(drain));

  uint32_t boost[2] = {2 /* BOOST_TO_MAX */, 60};
  // The driver ignores type and direction bits: a "renamed" request still reaches it.
  control("RM_CONTROL PERF_BOOST, request word renamed (clock.limit)", kSubdevice, 0x2080200A, boost, sizeof(boost),
          iowr(0x2A, sizeof(Nvos54), 'Q') & ~(3ul << 30));

  uint32_t power2[3] = {0, 4, 0};
  Nvos54 inner{kClient, kSubdevice, 0x20800112, 0, reinterpret_cast<uint64_t>(power2), sizeof(power2), 0};
  Xfer x{0x2A, sizeof(inner), reinterpret_cast<uint64_t>(&inner)};
  do_ioctl("XFER(RM_CONTROL GPU_SET_POWER) (power.off, tunnelled)", iowr(0xD3, sizeof(x)), &x);

  Nvos00 fr{kClient, kClient, kClient, 0};
  do_ioctl("RM_FREE root client", iowr(0x29, sizeof(fr)), &fr);
  return 0;
}

uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

// N calls, printing ns per call: the workload of the burst test and benchmarks.
// checked: every call must succeed with NV_OK (exit 1 otherwise, with the count).
int loop(long n, unsigned long request, bool getpid_only, uint32_t cmd = 0x20800112, bool checked = false) {
  uint32_t params[17] = {0, 4, 0};  // big enough for GET_NAME_STRING's 68 bytes
  uint32_t size = cmd == 0x20800110 ? 68 : 12;
  Nvos54 p{kClient, kSubdevice, cmd, 0, reinterpret_cast<uint64_t>(params), size, 0};
  long failures = 0;
  uint64_t t0 = now_ns();
  for (long i = 0; i < n; i++) {
    if (getpid_only) {
      syscall(SYS_getpid);
    } else {
      p.status = 0;
      long r = syscall(SYS_ioctl, g_fd, request, &p);
      if (checked && (r != 0 || p.status != 0)) failures++;
    }
  }
  uint64_t t1 = now_ns();
  std::printf("%.1f ns/call %ld calls pid %d%s\n", static_cast<double>(t1 - t0) / static_cast<double>(n), n, getpid(),
              checked ? (" failures " + std::to_string(failures)).c_str() : "");
  return failures ? 1 : 0;
}

// N one-byte writes to the open file (or N pwrites of text at 0, for a
// sysfs attribute), or N one-page mappings of it (mmap and munmap): what
// every write and mapping on the host pays for the knob gate's hooks
// (file_permission, mmap_file; the module's sysfs_kf_write), in ns per call.
int file_loop(long n, bool map, const std::string& text) {
  char byte = 0;
  uint64_t t0 = now_ns();
  for (long i = 0; i < n; i++) {
    if (map) {
      void* p = mmap(nullptr, 4096, PROT_READ, MAP_PRIVATE, g_fd, 0);
      if (p == MAP_FAILED) return 1;
      munmap(p, 4096);
    } else if (!text.empty()) {
      if (pwrite(g_fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) return 1;
    } else if (write(g_fd, &byte, 1) != 1) {
      return 1;
    }
  }
  uint64_t t1 = now_ns();
  std::printf("%.1f ns/call %ld calls pid %d\n", static_cast<double>(t1 - t0) / static_cast<double>(n), n, getpid());
  return 0;
}

int usage() {
  std::fprintf(stderr,
               "usage: gpugate-nvclient PATH demo\n"
               "       gpugate-nvclient PATH loop N [REQUEST [CMD]]  N ioctls (default RM_CONTROL GPU_SET_POWER;\n"
               "                                                CMD 0x20800110 is the GPU_GET_NAME_STRING query)\n"
               "       gpugate-nvclient PATH loop-checked N REQUEST CMD  the same, failing (exit 1) unless every\n"
               "                                                call returns 0 with NV_OK\n"
               "       gpugate-nvclient - getpid N              N getpid() calls\n"
               "       gpugate-nvclient PATH write N [TEXT]     N one-byte writes to PATH (/dev/null), or N\n"
               "                                                pwrites of TEXT at 0 (a sysfs attribute)\n"
               "       gpugate-nvclient PATH mmap N             N one-page read-only mappings of PATH (/dev/zero)\n"
               "PATH is a character device, e.g. an alias given to gpugated with --device PATH=nvidia.\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage();
  std::string path = argv[1], what = argv[2];
  if (what == "getpid") return argc < 4 ? usage() : loop(std::atol(argv[3]), 0, true);
  g_fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (g_fd < 0) g_fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (g_fd < 0) {
    std::fprintf(stderr, "gpugate-nvclient: cannot open %s: %s\n", path.c_str(), std::strerror(errno));
    return 1;
  }
  if (what == "demo") return demo();
  if ((what == "write" || what == "mmap") && argc >= 4)
    return file_loop(std::atol(argv[3]), what == "mmap", argc >= 5 ? argv[4] : "");
  if (what == "loop-checked" && argc >= 6)
    return loop(std::atol(argv[3]), std::strtoul(argv[4], nullptr, 0), false,
                static_cast<uint32_t>(std::strtoul(argv[5], nullptr, 0)), true);
  if (what == "loop" && argc >= 4)
    return loop(std::atol(argv[3]), argc >= 5 ? std::strtoul(argv[4], nullptr, 0) : iowr(0x2A, sizeof(Nvos54)), false,
                argc >= 6 ? static_cast<uint32_t>(std::strtoul(argv[5], nullptr, 0)) : 0x20800112u);
  return usage();
}
