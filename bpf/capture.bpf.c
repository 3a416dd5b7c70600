/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * The readers of capture.bpf.h, as global functions: each is verified once,
 * on its own, whatever the number of stages and paths that call it.
 */
#include "capture.bpf.h"

#define GG_FUSE_SUPER_MAGIC 0x65735546 /* include/uapi/linux/magic.h */
#define GG_EBUSY	    16

/* The stage's buffer in raw, and how many bytes it holds at most. */
static __always_inline __u8 *gg_stage_buf(struct gg_raw *raw, __u32 stage, __u32 *max, __u32 *have)
{
	if (stage == GG_STAGE_ARG) {
		*max = GG_ARG_MAX;
		*have = raw->arg_len;
		return raw->arg;
	}
	if (stage == GG_STAGE_INNER) {
		*max = GG_ARG_MAX;
		*have = raw->inner_len;
		return raw->inner;
	}
	*max = GG_PARAMS_MAX;
	*have = raw->params_len;
	return raw->params;
}

__noinline __u32 gg_bpf_read_nofault(struct gg_raw *raw, __u32 stage, __u32 len, __u64 src)
{
	__u32 max, have;
	__u8 *dst;

	if (!raw) /* newer verifiers let a global function's pointers be NULL */
		return GG_CAP_ARG_FAULT;
	dst = gg_stage_buf(raw, stage, &max, &have);
	if (!len)
		return 0;
	if (len > max || !src)
		return GG_CAP_ARG_FAULT;
	if (max == GG_ARG_MAX)
		return bpf_probe_read_user(dst, GG_LEN_1_TO(len, GG_ARG_MAX), (const void *)src)
			       ? GG_CAP_ARG_FAULT | GG_CAP_NO_FAULT_HOOK
			       : 0;
	return bpf_probe_read_user(dst, GG_LEN_1_TO(len, GG_PARAMS_MAX), (const void *)src)
		       ? GG_CAP_ARG_FAULT | GG_CAP_NO_FAULT_HOOK
		       : 0;
}

struct gg_vma_check {
	__u64 next; /* end of the mapping found */
	__u32 bad;  /* GG_CAP_REFUSED_* */
};

static long gg_vma_cb(struct task_struct *task, struct vm_area_struct *vma, struct gg_vma_check *c)
{
	struct file *f = vma->vm_file;

	if (vma->vm_userfaultfd_ctx.ctx)
		c->bad |= GG_CAP_REFUSED_UFFD;
	if (f && f->f_inode && f->f_inode->i_sb->s_magic == GG_FUSE_SUPER_MAGIC)
		c->bad |= GG_CAP_REFUSED_FUSE;
	c->next = vma->vm_end;
	return 0;
}

/*
 * May [src, src + len) be faulted in without waiting for user space? 0 if
 * so, else why not. A range spans at most two mappings here (len <= 256).
 */
static __always_inline __u32 gg_vma_ok(__u64 src, __u32 len)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct gg_vma_check c = {};
	__u64 addr = src;
	long err = 0;
	int i, tries;

	for (i = 0; i < 2; i++) {
		/* the mmap lock is only tried: contention is answered, not waited on */
		for (tries = 0; tries < 4; tries++) {
			err = bpf_find_vma(task, addr, gg_vma_cb, &c, 0);
			if (err != -GG_EBUSY)
				break;
		}
		if (err == -GG_EBUSY)
			return GG_CAP_VMA_BUSY;
		if (err)
			return GG_CAP_ARG_FAULT; /* nothing mapped there */
		if (c.bad)
			return c.bad;
		if (c.next >= src + len)
			return 0;
		addr = c.next;
	}
	return GG_CAP_ARG_FAULT;
}

__noinline __u32 gg_bpf_read_lsm(struct gg_raw *raw, __u32 stage, __u32 len, __u64 src,
				 __u64 max_wait_ns)
{
	__u32 max, have, bad, n;
	__u8 *dst;
	__u64 t0, took;
	long err;

	if (!raw)
		return GG_CAP_ARG_FAULT;
	dst = gg_stage_buf(raw, stage, &max, &have);
	if (!len)
		return 0;
	if (len > max || !src)
		return GG_CAP_ARG_FAULT;
	n = max == GG_ARG_MAX ? GG_LEN_1_TO(len, GG_ARG_MAX) : GG_LEN_1_TO(len, GG_PARAMS_MAX);
	if (!bpf_probe_read_user(dst, n, (const void *)src))
		return 0; /* resident: nothing waited */
	bad = gg_vma_ok(src, len);
	if (bad)
		return bad;
	t0 = bpf_ktime_get_ns();
	if (max == GG_ARG_MAX)
		err = bpf_copy_from_user(dst, GG_LEN_1_TO(len, GG_ARG_MAX), (const void *)src);
	else
		err = bpf_copy_from_user(dst, GG_LEN_1_TO(len, GG_PARAMS_MAX), (const void *)src);
	if (err)
		return GG_CAP_ARG_FAULT;
	took = bpf_ktime_get_ns() - t0;
	/* registered meanwhile? then the fault may have gone to user space */
	bad = gg_vma_ok(src, len);
	if (bad)
		return bad;
	return took > max_wait_ns ? GG_CAP_PAGED | GG_CAP_SLOW : GG_CAP_PAGED;
}

__noinline int gg_bpf_verify(struct gg_raw *raw, __u32 stage, __u64 src)
{
	__u32 max, have, off, i, n;
	__u8 *buf;
	__u64 chunk[4];

	if (!raw)
		return 1;
	buf = gg_stage_buf(raw, stage, &max, &have);
	if (!have)
		return 0;
	if (have > max || !src)
		return 1;
	/* 32 bytes a read, compared a word at a time: this runs on every
	 * allowed RM control, so it is kept to a few dozen instructions */
	for (off = 0; off < GG_PARAMS_MAX; off += sizeof(chunk)) {
		if (off >= have)
			break;
		n = have - off < sizeof(chunk) ? have - off : sizeof(chunk);
		chunk[0] = chunk[1] = chunk[2] = chunk[3] = 0;
		if (bpf_probe_read_user(chunk, GG_LEN_1_TO(n, sizeof(chunk)),
					(const void *)(src + off)))
			return 1;
		for (i = 0; i < 4; i++) {
			__u64 mine = 0;

			if (i * 8 >= n)
				break;
			__builtin_memcpy(&mine, &buf[(off + i * 8) & (GG_PARAMS_MAX - 1)], 8);
			if (n - i * 8 < 8) /* the tail: only the bytes that were captured */
				mine &= (1ull << ((n - i * 8) * 8)) - 1;
			if (mine != chunk[i])
				return 1;
		}
	}
	return 0;
}

/*
 * The last look of the sleepable gate: on a fail-closed NVIDIA RM node, the
 * bytes the driver is about to copy are read once more (gg_still_same).
 */
static __always_inline int gg_lsm_last_look(const struct gg_policy *pol,
					    const struct gg_ioctl_enter *e, __u64 arg)
{
	struct gg_ioctl_enter *m = (struct gg_ioctl_enter *)e;

	return gg_fails_closed(pol, e->device.vendor) && gg_is_nvidia_rm(e->device.kind) &&
	       !gg_still_same(&m->raw, arg, &m->dec);
}

#define GG_NO_LAST_LOOK(r, pol, e, arg)	 0
#define GG_LSM_LAST_LOOK(r, pol, e, arg) gg_lsm_last_look(pol, e, arg)
#define GG_TAKE_GRANT_FN(r, e)		 gg_bpf_take_grant(e)

GG_DEFINE_GATE(gg_gate_nofault, struct gg_reader *, GG_READ_NOFAULT_FN, GG_VERIFY_FN,
	       gg_object_class, GG_NO_LAST_LOOK, GG_TAKE_GRANT_FN)
GG_DEFINE_GATE(gg_gate_lsm, struct gg_reader *, GG_READ_LSM_FN, GG_VERIFY_FN, gg_object_class,
	       GG_LSM_LAST_LOOK, GG_TAKE_GRANT_FN)

__noinline int gg_bpf_capture_nofault(struct gg_ioctl_enter *e, __u32 request, __u64 arg)
{
	struct gg_reader reader = {GG_READ_WAIT_MAX_NS_DEFAULT};

	if (!e)
		return -1;
	gg_gate_nofault_capture(&reader, 0, e, request, arg);
	return 0;
}

__noinline int gg_bpf_gate_nofault(struct gg_ioctl_enter *e, const struct gg_policy *pol,
				   __u32 request, __u64 arg, __u32 how)
{
	struct gg_reader reader = {GG_READ_WAIT_MAX_NS_DEFAULT};

	if (!e || !pol)
		return -1;
	gg_gate_nofault(&reader, pol, e, request, arg, !!(how & GG_HOW_RECORDED),
			!!(how & GG_HOW_THREAD_STATE));
	return 0;
}

__noinline int gg_bpf_gate_lsm(struct gg_ioctl_enter *e, const struct gg_policy *pol, __u32 request,
			       __u64 arg, __u32 how)
{
	struct gg_reader reader = {pol ? pol->read_wait_max_ns : 0};

	if (!e || !pol)
		return -1;
	if (!reader.max_wait_ns)
		reader.max_wait_ns = GG_READ_WAIT_MAX_NS_DEFAULT;
	gg_gate_lsm(&reader, pol, e, request, arg, !!(how & GG_HOW_RECORDED),
		    !!(how & GG_HOW_THREAD_STATE));
	return 0;
}

__noinline int gg_bpf_capture_lsm(struct gg_ioctl_enter *e, const struct gg_policy *pol,
				  __u32 request, __u64 arg)
{
	struct gg_reader reader = {pol ? pol->read_wait_max_ns : 0};

	if (!e || !pol)
		return -1;
	if (!reader.max_wait_ns)
		reader.max_wait_ns = GG_READ_WAIT_MAX_NS_DEFAULT;
	gg_gate_lsm_capture(&reader, pol, e, request, arg);
	return 0;
}

__noinline int gg_bpf_decide(struct gg_ioctl_enter *e, const struct gg_policy *pol, __u32 how)
{
	struct gg_reader reader = {GG_READ_WAIT_MAX_NS_DEFAULT};

	if (!e || !pol)
		return -1;
	gg_gate_lsm_decide(&reader, pol, e, !!(how & GG_HOW_RECORDED),
			   !!(how & GG_HOW_THREAD_STATE));
	return 0;
}
