/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * One GPU ioctl, at entry and at exit, as every hook family records it:
 * who, on what, which bytes (captured and decoded in the kernel), the
 * decision (kmod/common/gg_verdict.h, GG_GATE_DECIDE), the record in the
 * ring, and the per-thread state that joins the exit to its entry.
 */
#ifndef GPUGATE_RECORD_BPF_H
#define GPUGATE_RECORD_BPF_H

#include "capture.bpf.h"

/* How the enter path reads user memory (a constant at every call site). */
enum gg_read_mode {
	GG_READ_NOFAULT = 0, /* tracepoints, the compat LSM hook */
	GG_READ_LSM = 1,     /* the sleepable ioctl LSM hook */
};

/*
 * Basename of the executable: user space cannot read /proc of a process
 * that exited before its records were read. Read once per executable and
 * kept in the thread's storage (an exec changes mm->exe_file).
 */
static __always_inline void gg_exe_name(struct gg_pending *p)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct mm_struct *mm = task->mm;
	struct file *exe = mm ? mm->exe_file : 0;

	if (exe == p->exe_file)
		return;
	p->exe_file = exe;
	p->exe_name[0] = 0;
	if (exe)
		bpf_probe_read_kernel_str(p->exe_name, sizeof(p->exe_name),
					  exe->f_path.dentry->d_name.name);
}

/* Who, when and on what: everything but the request's bytes. */
static __always_inline void gg_fill_enter(struct gg_ioctl_enter *e, struct gg_globals *gl,
					  __u32 rdev, int fd, __u64 arg,
					  const struct gg_device *dev, const struct gg_pending *p)
{
	__u64 id;

	gg_fill_hdr(&e->hdr, GG_EV_IOCTL_ENTER, sizeof(*e), __sync_fetch_and_add(&gl->next_seq, 1));
	id = bpf_get_current_uid_gid();
	e->uid = (__u32)id;
	e->gid = id >> 32;
	e->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	if (p)
		__builtin_memcpy(e->exe_name, p->exe_name, sizeof(e->exe_name));
	else
		__builtin_memset(e->exe_name, 0, sizeof(e->exe_name));
	e->dev = rdev;
	e->fd = fd;
	e->arg = arg;
	e->device = *dev;
	e->grant_id = 0;
	e->rule = 0;
	e->reason = 0;
	e->pad[0] = 0;
	e->pad[1] = 0;
	e->pad[2] = 0;
}

/* Remember where the driver will write an RM alloc's or free's result. */
static __always_inline void gg_note_object(struct gg_pending *p, const struct gg_ioctl_enter *e)
{
	__u64 body = (e->dec.flags & GG_DF_XFER) ? e->dec.inner_ptr : e->arg;
	__u32 size = (e->dec.flags & GG_DF_XFER) ? e->dec.inner_size : gg_ioc_size(e->raw.request);

	p->object_addr = 0;
	if (e->dec.vendor != GG_VENDOR_NVIDIA || e->dec.table != GG_TAB_NV_ESCAPE)
		return;
	if ((e->dec.nr == 0x2B && (size == 32 || size == 48)) ||
	    (e->dec.nr == 0x29 && size == 16)) {
		p->object_addr = body;
		p->object_nr = e->dec.nr;
		p->object_size = size;
	}
}

/*
 * Record one GPU ioctl at entry and decide on it. Returns the verdict; only
 * the LSM hooks act on it. read_mode says how user memory is read (a
 * constant at every call site, so each program keeps one path).
 */
/*
 * A record built in the thread's spare, copied into the reserve ring; on
 * success the copy is decided again as recorded and returned.
 */
static __always_inline struct gg_ioctl_enter *gg_move_to_reserve(struct gg_ioctl_enter *spare,
								 const struct gg_policy *pol,
								 __u32 *how, __u32 *recorded)
{
	struct gg_ioctl_enter *r = bpf_ringbuf_reserve(&gated_events, sizeof(*r), 0);

	if (!r)
		return spare;
	if (bpf_probe_read_kernel(r, sizeof(*r), spare)) {
		bpf_ringbuf_discard(r, 0);
		return spare;
	}
	*how |= GG_HOW_RECORDED;
	*recorded = 1;
	gg_bpf_decide(r, pol, *how);
	return r;
}

static __always_inline __u32 gg_record_enter(__u32 hook, __u32 rdev, int fd, __u32 request,
					     __u64 arg, enum gg_read_mode read_mode)
{
	struct gg_ioctl_enter *e;
	struct gg_pending *p;
	struct gg_device dev;
	struct gg_policy *pol;
	struct gg_globals *gl;
	__u32 zero = 0, recorded = 1, reserve = 0, verdict, how,
	      major = (rdev >> 20) & (GG_MAJORS - 1);
	__u64 status_addr = 0;
	__u8 *is_gpu;

	if (!rdev)
		return GG_VERDICT_ALLOW;
	is_gpu = bpf_map_lookup_elem(&majors, &major);
	gl = gg_globals();
	if (!is_gpu || !*is_gpu || !gl)
		return GG_VERDICT_ALLOW;
	pol = bpf_map_lookup_elem(&policy, &zero);
	if (!pol || !gg_lookup_device(rdev, &dev))
		return GG_VERDICT_ALLOW;
	/* gpugate.ko decides and records these, on the driver's own copy */
	if (gg_kmod_owns(pol, dev.kind))
		return GG_VERDICT_ALLOW;

	p = bpf_task_storage_get(&pending, bpf_get_current_task_btf(), 0,
				 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (p)
		gg_exe_name(p);

	/* Build the record in place in the ring; if the ring is full, build it
	 * in the thread's spare to learn its class, count the loss, and decide
	 * as for an unrecorded request (a gated one is denied in enforce mode). */
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		recorded = 0;
		if (!p) {
			gg_count(GG_CLASS_UNKNOWN, GG_CNT_DROPPED);
			gg_count(GG_CLASS_UNKNOWN, GG_CNT_NO_STATE);
			return gg_fails_closed(pol, dev.vendor) ? gg_refusal(pol->mode)
								: (__u32)GG_VERDICT_ALLOW;
		}
		e = &p->spare;
	}
	gg_fill_enter(e, gl, rdev, fd, arg, &dev, p);
	e->hook = hook;
	how = (recorded ? GG_HOW_RECORDED : 0) | (p ? GG_HOW_THREAD_STATE : 0);
	/* the gate's whole decision (kmod/common/gg_gate.h); the sleepable
	 * gate reads the bytes once more, as late as it can */
	if (recorded) {
		if (read_mode == GG_READ_LSM)
			gg_bpf_gate_lsm(e, pol, request, arg, how);
		else
			gg_bpf_gate_nofault(e, pol, request, arg, how);
	} else {
		if (read_mode == GG_READ_LSM)
			gg_bpf_capture_lsm(e, pol, request, arg);
		else
			gg_bpf_capture_nofault(e, request, arg);
		gg_bpf_decide(e, pol, how);
		/* Refused only for want of a record: the reserve ring takes it,
		 * and it is decided again as recorded (a grant may be used). */
		if (e->reason == GG_WHY_UNRECORDED)
			e = gg_move_to_reserve(e, pol, &how, &recorded);
		reserve = recorded;
	}
	verdict = e->verdict;
	if (!recorded) {
		gg_count(e->dec.cls, GG_CNT_DROPPED);
		return verdict;
	}
	if (e->dec.status_offset)
		status_addr = ((e->dec.flags & GG_DF_XFER) ? e->dec.inner_ptr : arg) +
			      e->dec.status_offset;
	if (p)
		gg_note_object(p, e);
	else
		gg_count(e->dec.cls, GG_CNT_NO_STATE);
	gg_count(e->dec.cls, GG_CNT_SEEN);
	if (p) {
		if (!p->active)
			__sync_fetch_and_add(&gl->pending_hint, 1);
		p->active = 1;
		p->seq = e->hdr.seq;
		p->cls = e->dec.cls;
		p->status_addr = status_addr;
		p->reserve = reserve;
	}
	bpf_ringbuf_submit(e,
			   reserve ? gg_reserve_ring_flags(sizeof(*e)) : gg_ring_flags(sizeof(*e)));
	return verdict;
}

/* The driver's answer to an RM alloc or free: learn or forget the object. */
static __always_inline void gg_learn_object(struct gg_pending *p, long ret)
{
	__u8 b[64];
	__u32 status, size = p->object_size;
	struct gg_rm_object key;
	__u32 cls;

	if (!p->object_addr || ret || size < 16 || size > 48)
		return;
	if (bpf_probe_read_user(b, GG_LEN_1_TO(size, sizeof(b)), (const void *)p->object_addr))
		return;
	key.client = *(__u32 *)&b[0];
	if (p->object_nr == 0x29) { /* NVOS00 {hRoot, hObjectParent, hObjectOld, status} */
		key.object = *(__u32 *)&b[8];
		status = *(__u32 *)&b[12];
		if (!status)
			bpf_map_delete_elem(&rm_objects, &key);
		return;
	}
	/* NVOS21 / NVOS64: hObjectNew at 8, hClass at 12, status at 28 / 40 */
	key.object = *(__u32 *)&b[8];
	cls = *(__u32 *)&b[12];
	status = size == 48 ? *(__u32 *)&b[40] : *(__u32 *)&b[28];
	if (!status && key.object)
		bpf_map_update_elem(&rm_objects, &key, &cls, BPF_ANY);
}

/* The result of a GPU ioctl this thread entered: one exit record. */
static __always_inline int gg_record_exit(long ret)
{
	struct gg_ioctl_exit *x;
	struct gg_pending *p;
	struct gg_globals *gl = gg_globals();
	int in_reserve;

	if (!gl || !gl->pending_hint)
		return 0;
	p = bpf_task_storage_get(&pending, bpf_get_current_task_btf(), 0, 0);
	if (!p || !p->active)
		return 0;
	p->active = 0;
	__sync_fetch_and_sub(&gl->pending_hint, 1);
	gg_learn_object(p, ret);
	p->object_addr = 0;

	x = bpf_ringbuf_reserve(&events, sizeof(*x), 0);
	in_reserve = !x && p->reserve;
	if (in_reserve)
		x = bpf_ringbuf_reserve(&gated_events, sizeof(*x), 0);
	if (!x) {
		gg_count(p->cls, GG_CNT_EXIT_DROPPED);
		return 0;
	}
	gg_fill_hdr(&x->hdr, GG_EV_IOCTL_EXIT, sizeof(*x), p->seq);
	x->enter_seq = p->seq;
	x->ret = ret;
	x->nv_status = 0;
	x->status_valid = 0;
	x->cls = p->cls;
	x->pad[0] = 0;
	x->pad[1] = 0;
	if (p->status_addr &&
	    !bpf_probe_read_user(&x->nv_status, sizeof(x->nv_status), (const void *)p->status_addr))
		x->status_valid = 1;
	bpf_ringbuf_submit(x, in_reserve ? gg_reserve_ring_flags(sizeof(*x))
					 : gg_ring_flags(sizeof(*x)));
	return 0;
}

#endif /* GPUGATE_RECORD_BPF_H */
