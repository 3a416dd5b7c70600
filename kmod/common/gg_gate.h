/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * The gate's capture: the staged reads of gg_decode.h with the read passed
 * in, so that every home reads the caller's bytes its own way and the
 * stages, the bookkeeping and the decode are written once:
 *   BPF LSM      non-faulting read first; a page that must be faulted in is
 *                first checked (no userfaultfd, no FUSE), the faulting read
 *                is timed, and every earlier stage is read again and
 *                compared, since a wait is a window for a second thread;
 *   BPF observer non-faulting reads only;
 *   the module   the driver's own kernel copy (no second fetch at all).
 *
 * GG_DEFINE_GATE_CAPTURE(name, CTX, READ, VERIFY, OBJECT_CLASS) defines
 *   void name(CTX ctx, struct gg_raw *raw, struct gg_decoded *dec,
 *             __u32 dev_kind, __u32 drm_driver, __u32 request, __u64 arg)
 * with
 *   READ(ctx, raw, stage, len, src)  read len bytes at src into the stage's
 *                                    buffer of raw (GG_STAGE_*; len is at
 *                                    most GG_ARG_MAX, or GG_PARAMS_MAX for
 *                                    params). Answers 0, GG_CAP_PAGED (a page
 *                                    was faulted in), GG_CAP_SLOW |
 *                                    GG_CAP_PAGED (read, but it waited too
 *                                    long), or failure bits
 *                                    (GG_CAP_READ_FAILED_MASK);
 *   VERIFY(ctx, raw, stage, src)     0 if the stage's bytes at src are still
 *                                    those in raw;
 *   OBJECT_CLASS(ctx, client, obj)   the RM class of an object, 0 if unknown.
 */
#ifndef GPUGATE_GATE_H
#define GPUGATE_GATE_H

#include "gg_decode.h"

enum gg_stage { GG_STAGE_ARG = 0, GG_STAGE_INNER = 1, GG_STAGE_PARAMS = 2 };

#define GG_CAP_READ_FAILED_MASK                                                                    \
	(GG_CAP_STAGE_MASK | GG_CAP_REFUSED_UFFD | GG_CAP_REFUSED_FUSE | GG_CAP_VMA_BUSY |         \
	 GG_CAP_NO_FAULT_HOOK)

/* Records one stage's read result; returns 1 if the bytes are there. */
static __always_inline int gg_stage_result(struct gg_raw *raw, __u32 stage_bit, __u32 r)
{
	if (r & GG_CAP_READ_FAILED_MASK) {
		raw->capture_flags |= stage_bit | (r & ~GG_CAP_STAGE_MASK);
		return 0;
	}
	raw->capture_flags |= r;
	return 1;
}

#define GG_DEFINE_GATE_CAPTURE(name, CTX, READ, VERIFY, OBJECT_CLASS)                              \
	static __always_inline void name(CTX ctx, struct gg_raw *raw, struct gg_decoded *dec,      \
					 __u32 dev_kind, __u32 drm_driver, __u32 request,          \
					 __u64 arg)                                                \
	{                                                                                          \
		__u64 ptr = 0, inner_ptr = 0;                                                      \
		__u32 want, len = 0, r, client = 0, object = 0;                                    \
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
			r = arg ? READ(ctx, raw, GG_STAGE_ARG, want, arg) : GG_CAP_ARG_FAULT;      \
			if (gg_stage_result(raw, GG_CAP_ARG_FAULT, r))                             \
				raw->arg_len = want;                                               \
		}                                                                                  \
		if (gg_xfer_ref(raw, &ptr, &len) && len) {                                         \
			inner_ptr = ptr;                                                           \
			r = ptr ? READ(ctx, raw, GG_STAGE_INNER, len, ptr) : GG_CAP_INNER_FAULT;   \
			if (gg_stage_result(raw, GG_CAP_INNER_FAULT, r)) {                         \
				raw->inner_len = len;                                              \
				/* a fault may have waited: did the tunnel change meanwhile? */    \
				if ((r & GG_CAP_PAGED) && VERIFY(ctx, raw, GG_STAGE_ARG, arg))     \
					raw->capture_flags |= GG_CAP_CHANGED;                      \
			}                                                                          \
		}                                                                                  \
		if (gg_control_ref(raw, &client, &object))                                         \
			raw->target_class = OBJECT_CLASS(ctx, client, object);                     \
		if (gg_params_ref(raw, &ptr, &len) && len) {                                       \
			r = ptr ? READ(ctx, raw, GG_STAGE_PARAMS, len, ptr) : GG_CAP_PARAMS_FAULT; \
			if (gg_stage_result(raw, GG_CAP_PARAMS_FAULT, r)) {                        \
				raw->params_len = len;                                             \
				if ((r & GG_CAP_PAGED) &&                                          \
				    (VERIFY(ctx, raw, GG_STAGE_ARG, arg) ||                        \
				     VERIFY(ctx, raw, GG_STAGE_INNER, inner_ptr)))                 \
					raw->capture_flags |= GG_CAP_CHANGED;                      \
			}                                                                          \
		}                                                                                  \
		gg_decode(raw, dec);                                                               \
	}

#endif /* GPUGATE_GATE_H */
