// What the shared kernel-style C (kmod/common) expects of its home that user
// space's headers do not provide.
#ifndef GPUGATE_COMPAT_H
#define GPUGATE_COMPAT_H
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
#ifndef __maybe_unused
#define __maybe_unused __attribute__((unused))
#endif
#endif
