// gg-bench-paced: a rate-paced ioctl generator for the sustained-load test of
// observer-bench. Issues RATE ioctls per second for SECONDS seconds on PATH,
// in batches of RATE/1000 on an absolute 1 ms schedule (clock_nanosleep
// TIMER_ABSTIME). If a batch overruns, the next starts at once (catch-up), so
// the achieved rate is what the calls allow; it is printed with the worst lag
// behind schedule. The argument is the same NVOS54 RM_CONTROL GPU_SET_POWER
// block as gpugate-nvclient's loop, so the observer decodes a real request.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct nvos54 {
  uint32_t h_client, h_object, cmd, flags;
  uint64_t params;
  uint32_t params_size, status;
};

static uint64_t now_ns(void) {
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char** argv) {
  uint32_t params[3] = {0, 4, 0};
  struct nvos54 p = {0xc1d00001, 0xcaf00001, 0x20800112, 0, 0, sizeof(params), 0};
  unsigned long request = 0xc020462aul;
  long rate, batch, issued = 0, total;
  double seconds;
  uint64_t t0, next, lag, max_lag = 0, t1;
  struct timespec ts;
  int fd;

  if (argc < 4) {
    fprintf(stderr, "usage: gg-bench-paced PATH RATE SECONDS [REQUEST]\n");
    return 2;
  }
  rate = strtol(argv[2], NULL, 0);
  seconds = strtod(argv[3], NULL);
  if (argc > 4) request = strtoul(argv[4], NULL, 0);
  if (rate < 1000 || seconds <= 0) {
    fprintf(stderr, "gg-bench-paced: RATE >= 1000 and SECONDS > 0\n");
    return 2;
  }
  fd = open(argv[1], O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "gg-bench-paced: %s: %s\n", argv[1], strerror(errno));
    return 1;
  }
  p.params = (uint64_t)(uintptr_t)params;
  batch = rate / 1000;
  total = (long)((double)rate * seconds);
  t0 = now_ns();
  next = t0;
  while (issued < total) {
    long n = total - issued < batch ? total - issued : batch;

    for (long i = 0; i < n; i++) syscall(SYS_ioctl, fd, request, &p);
    issued += n;
    next += 1000000ull; /* 1 ms per batch */
    t1 = now_ns();
    if (t1 < next) {
      ts.tv_sec = (time_t)(next / 1000000000ull);
      ts.tv_nsec = (long)(next % 1000000000ull);
      while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
    } else {
      lag = t1 - next;
      if (lag > max_lag) max_lag = lag;
    }
  }
  t1 = now_ns();
  printf("issued %ld in %.3f s = %.0f/s target %ld/s max_lag_ms %.1f pid %d\n", issued, (double)(t1 - t0) / 1e9,
         (double)issued * 1e9 / (double)(t1 - t0), rate, (double)max_lag / 1e6, (int)getpid());
  return 0;
}
