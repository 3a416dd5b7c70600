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
#include "gg_verdict.h"

enum gg_stage { GG_STAGE_ARG = 0, GG_STAGE_INNER = 1, GG_STAGE_PARAMS = 2 };

#define GG_CAP_READ_FAILED_MASK                                                                    \
	(GG_CAP_STAGE_MASK | GG_CAP_REFUSED_UFFD | GG_CAP_REFUSED_FUSE | GG_CAP_VMA_BUSY |         \
	 GG_CAP_NO_FAULT_HOOK | GG_CAP_DEFERRED)

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
		/* the raw record starts empty: only what is read is there */                      \
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
		(void)inner_ptr; /* unused where VERIFY is a constant */                           \
		gg_decode(raw, dec);                                                               \
	}

/* The subject of the rules: who asks, on what, for which class. */
static __always_inline void gg_subject_of(struct gg_subject *s, const struct gg_ioctl_enter *e)
{
	s->cls = e->dec.cls;
	s->dev = e->dev;
	s->uid = e->uid;
	s->vendor = e->device.vendor;
	s->cgroup_id = e->cgroup_id;
	s->comm = e->comm;
}

static __always_inline void gg_apply_result(struct gg_ioctl_enter *e,
					    const struct gg_gate_result *res)
{
	e->action = res->action;
	e->rule = res->rule;
	e->verdict = res->verdict;
	e->grant_id = res->grant_id;
	e->reason = res->reason;
}

/*
 * The gate's whole decision, once for every home:
 *
 * GG_DEFINE_GATE(name, CTX, READ, VERIFY, OBJECT_CLASS, LAST_LOOK, TAKE_GRANT)
 * defines
 *   void name(CTX ctx, const struct gg_policy *pol, struct gg_ioctl_enter *e,
 *             __u32 request, __u64 arg, int recorded, int thread_state)
 * which captures the request (the staged reads above, with READ, VERIFY and
 * OBJECT_CLASS), decodes it, takes a last look, and decides with
 * GG_GATE_DECIDE: rules, the class's action, the strict profile, fail
 * closed on what was not read or could not be recorded, and the grant. e
 * arrives with who and where (uid, cgroup_id, comm, dev, device) and leaves
 * with raw, dec, mode and the decision.
 *   LAST_LOOK(ctx, pol, e, arg)  1 if the bytes decided on changed since they
 *                                were read (the BPF LSM reads them once more;
 *                                homes that decide on a kernel copy say 0)
 *   TAKE_GRANT(ctx, e)           spend one use of a grant that covers e: its
 *                                id, or 0; asked only when a signature is
 *                                required and the record exists
 * Its two halves are there too, for homes that see the bytes in two steps
 * (the module: the RM control's header at rm_ioctl, its params where the
 * driver copies them): name##_capture(ctx, pol, e, request, arg) and
 * name##_decide(ctx, pol, e, recorded, thread_state). A home need not call
 * all three (user space's replay never calls the whole gate in one go), so
 * each is __maybe_unused, which BPF and user space define as the kernel does.
 */
#define GG_DEFINE_GATE(name, CTX, READ, VERIFY, OBJECT_CLASS, LAST_LOOK, TAKE_GRANT)               \
	GG_DEFINE_GATE_CAPTURE(name##_stages, CTX, READ, VERIFY, OBJECT_CLASS)                     \
	static __always_inline __maybe_unused void name##_capture(                                 \
		CTX ctx, const struct gg_policy *pol, struct gg_ioctl_enter *e, __u32 request,     \
		__u64 arg)                                                                         \
	{                                                                                          \
		(void)pol; /* homes whose last look needs no policy */                             \
		name##_stages(ctx, &e->raw, &e->dec, e->device.kind, e->device.drm_driver,         \
			      request, arg);                                                       \
		if (!(e->dec.flags & GG_DF_UNDECIDED) && LAST_LOOK(ctx, pol, e, arg)) {            \
			e->raw.capture_flags |= GG_CAP_CHANGED;                                    \
			e->dec.flags |= GG_DF_UNDECIDED;                                           \
		}                                                                                  \
	}                                                                                          \
	static __always_inline __maybe_unused void name##_decide(                                  \
		CTX ctx, const struct gg_policy *pol, struct gg_ioctl_enter *e, int recorded,      \
		int thread_state)                                                                  \
	{                                                                                          \
		struct gg_subject subj_;                                                           \
		struct gg_gate_result res_;                                                        \
		/* the rules see who asks, on what, for which class */                             \
		(void)ctx; /* homes whose grants need no context */                                \
		gg_subject_of(&subj_, e);                                                          \
		e->mode = pol->mode;                                                               \
		GG_GATE_DECIDE(&res_, pol, &subj_, &e->dec, recorded, thread_state,                \
			       TAKE_GRANT(ctx, e));                                                \
		gg_apply_result(e, &res_);                                                         \
	}                                                                                          \
	static __always_inline __maybe_unused void name(CTX ctx, const struct gg_policy *pol,      \
							struct gg_ioctl_enter *e, __u32 request,   \
							__u64 arg, int recorded, int thread_state) \
	{                                                                                          \
		name##_capture(ctx, pol, e, request, arg);                                         \
		name##_decide(ctx, pol, e, recorded, thread_state);                                \
	}

#endif /* GPUGATE_GATE_H */
