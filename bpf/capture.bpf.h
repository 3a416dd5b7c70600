/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * Capturing a GPU ioctl's bytes from user memory, in the staged order the
 * shared decoder asks for (kmod/common/gg_decode.h). Used by the observer
 * and by the decode test program, so the test runs the production path.
 */
#ifndef GPUGATE_CAPTURE_BPF_H
#define GPUGATE_CAPTURE_BPF_H

#include "gg_decode.h"

/*
 * Read len (<= max) bytes of user memory; 0 on success. Tracepoints use
 * bpf_probe_read_user (cannot fault pages in); sleepable LSM programs use
 * bpf_copy_from_user (can). Both capture paths are generated from one text.
 */
#define GG_DEFINE_CAPTURE(suffix, READ)                                                            \
	static __always_inline int gg_read_user##suffix(void *dst, __u64 len, __u64 max,           \
							__u64 src)                                 \
	{                                                                                          \
		if (!len)                                                                          \
			return 0;                                                                  \
		if (!src)                                                                          \
			return -1;                                                                 \
		/* keep the bound on the register the helper gets */                               \
		barrier_var(len);                                                                  \
		if (len > max)                                                                     \
			len = max;                                                                 \
		barrier_var(len);                                                                  \
		if (len > GG_PARAMS_MAX)                                                           \
			return -1;                                                                 \
		return READ(dst, len, (const void *)src);                                          \
	}                                                                                          \
                                                                                                   \
	/* Fill raw for (request, arg) on a device of this kind, then decode it. */                \
	static __always_inline void gg_capture##suffix(struct gg_raw *raw, struct gg_decoded *dec, \
						       __u32 dev_kind, __u32 drm_driver,           \
						       __u32 request, __u64 arg)                   \
	{                                                                                          \
		__u64 ptr = 0;                                                                     \
		__u32 want, len = 0;                                                               \
                                                                                                   \
		raw->request = request;                                                            \
		raw->dev_kind = dev_kind;                                                          \
		raw->drm_driver = drm_driver;                                                      \
		raw->capture_flags = 0;                                                            \
		raw->arg_len = 0;                                                                  \
		raw->inner_len = 0;                                                                \
		raw->params_len = 0;                                                               \
		raw->target_class = 0;                                                             \
		want = gg_arg_want(dev_kind, request);                                             \
		if (want) {                                                                        \
			if (gg_read_user##suffix(raw->arg, want, GG_ARG_MAX, arg))                 \
				raw->capture_flags |= GG_CAP_ARG_FAULT;                            \
			else                                                                       \
				raw->arg_len = want;                                               \
		}                                                                                  \
		if (gg_xfer_ref(raw, &ptr, &len) && len) {                                         \
			if (gg_read_user##suffix(raw->inner, len, GG_ARG_MAX, ptr))                \
				raw->capture_flags |= GG_CAP_INNER_FAULT;                          \
			else                                                                       \
				raw->inner_len = len;                                              \
		}                                                                                  \
		if (gg_params_ref(raw, &ptr, &len) && len) {                                       \
			if (gg_read_user##suffix(raw->params, len, GG_PARAMS_MAX, ptr))            \
				raw->capture_flags |= GG_CAP_PARAMS_FAULT;                         \
			else                                                                       \
				raw->params_len = len;                                             \
		}                                                                                  \
		gg_decode(raw, dec);                                                               \
	}

GG_DEFINE_CAPTURE(, bpf_probe_read_user)
GG_DEFINE_CAPTURE(_sleepable, bpf_copy_from_user)

#endif /* GPUGATE_CAPTURE_BPF_H */
