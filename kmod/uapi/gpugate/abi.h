/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * gpugate ABI: the one set of types that crosses the kernel/user boundary.
 *
 * Compiled by three compilers: clang -target bpf (after vmlinux.h), the
 * kernel (module) and user space (C and C++). Fixed-width types, explicit
 * padding, layout asserts.
 */
#ifndef GPUGATE_ABI_H
#define GPUGATE_ABI_H

#if defined(__bpf__)
/* vmlinux.h already provides __u8.. __u64 */
#elif defined(__KERNEL__)
#include <linux/types.h>
#else
#include <linux/types.h>
#endif

#if defined(__cplusplus)
#define GG_ABI_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define GG_ABI_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

/* Bumped when a record layout changes (schema) or a map/ioctl changes (api). */
#define GG_ABI_API_VERSION    1
#define GG_ABI_SCHEMA_VERSION 1

#endif /* GPUGATE_ABI_H */
