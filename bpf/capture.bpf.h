/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * How the BPF programs read a GPU ioctl's bytes from user memory, for the
 * shared staged capture (kmod/common/gg_gate.h). Two readers:
 *
 *   nofault   bpf_probe_read_user only: tracepoints and the (non-sleepable)
 *             compat LSM hook cannot fault pages in; a page that is not
 *             resident is unreadable, and the gate then fails closed;
 *   lsm       the sleepable ioctl LSM hook: a resident page is read without
 *             faulting; one that is not is first looked up (bpf_find_vma) and
 *             refused if it is registered with userfaultfd or backed by FUSE,
 *             whose faults wait for a user-space process that could change
 *             the request meanwhile; otherwise it is faulted in with
 *             bpf_copy_from_user, timed against the policy's bound, and the
 *             capture reads every earlier stage again to see it unchanged.
 */
#ifndef GPUGATE_CAPTURE_BPF_H
#define GPUGATE_CAPTURE_BPF_H

#include "common.bpf.h"
#include "gg_gate.h"

struct gg_reader {
	__u64 max_wait_ns; /* a faulting read slower than this is SLOW */
};

/*
 * The readers are global functions, defined once in capture.bpf.c: the
 * verifier checks each on its own instead of once per stage and path.
 */
__u32 gg_bpf_read_nofault(struct gg_raw *raw, __u32 stage, __u32 len, __u64 src);
__u32 gg_bpf_read_lsm(struct gg_raw *raw, __u32 stage, __u32 len, __u64 src, __u64 max_wait_ns);
int gg_bpf_verify(struct gg_raw *raw, __u32 stage, __u64 src);

#define GG_READ_NOFAULT_FN(r, raw, stage, len, src) gg_bpf_read_nofault(raw, stage, len, src)
#define GG_READ_LSM_FN(r, raw, stage, len, src)                                                    \
	gg_bpf_read_lsm(raw, stage, len, src, (r)->max_wait_ns)
#define GG_VERIFY_FN(r, raw, stage, src) gg_bpf_verify(raw, stage, src)

static __always_inline __u32 gg_object_class(struct gg_reader *r, __u32 client, __u32 object)
{
	struct gg_rm_object key = {client, object};
	__u32 *cls = bpf_map_lookup_elem(&rm_objects, &key);

	return cls ? *cls : 0;
}

/*
 * The capture of one request into e->raw and its decode into e->dec, for a
 * node of kind e->device (the decoder's own test runs this alone).
 */
int gg_bpf_capture_nofault(struct gg_ioctl_enter *e, __u32 request, __u64 arg);

/*
 * The gate's whole decision on one request (GG_DEFINE_GATE of
 * kmod/common/gg_gate.h, the same function the module and user space
 * instantiate), as global functions (capture.bpf.c), one per reader: fill
 * e's raw, dec, mode and decision. how: GG_HOW_RECORDED (e is in the ring,
 * not the thread's spare), GG_HOW_THREAD_STATE (the thread's storage was
 * available); one argument, since a BPF function takes five at most.
 */
#define GG_HOW_RECORDED	    1u
#define GG_HOW_THREAD_STATE 2u
int gg_bpf_gate_nofault(struct gg_ioctl_enter *e, const struct gg_policy *pol, __u32 request,
			__u64 arg, __u32 how);
int gg_bpf_gate_lsm(struct gg_ioctl_enter *e, const struct gg_policy *pol, __u32 request, __u64 arg,
		    __u32 how);
/* The gate in its two halves, for a record that is built before it has a
 * place in a ring: capture (as the sleepable gate reads), then decide. */
int gg_bpf_capture_lsm(struct gg_ioctl_enter *e, const struct gg_policy *pol, __u32 request,
		       __u64 arg);
int gg_bpf_decide(struct gg_ioctl_enter *e, const struct gg_policy *pol, __u32 how);

/* One use of a grant covering e (decide.bpf.c): its id, or 0. */
__u32 gg_bpf_take_grant(const struct gg_ioctl_enter *e);

/*
 * Once more, after the decision's inputs were read: the bytes the driver is
 * about to copy are still those decided on. Narrows the race with a second
 * thread to the moment between here and the driver's own copy; closes it
 * only in the module, which decides on that copy.
 */
static __always_inline int gg_still_same(struct gg_raw *raw, __u64 arg,
					 const struct gg_decoded *dec)
{
	return !gg_bpf_verify(raw, GG_STAGE_ARG, arg) &&
	       !gg_bpf_verify(raw, GG_STAGE_INNER, dec->inner_ptr) &&
	       !gg_bpf_verify(raw, GG_STAGE_PARAMS, dec->params_ptr);
}

#endif /* GPUGATE_CAPTURE_BPF_H */
