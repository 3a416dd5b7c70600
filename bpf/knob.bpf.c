/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * The knobs: a write to a GPU's sysfs or procfs file that powers it off,
 * resets or throttles it (power/control, reset, remove, config, power1_cap,
 * the driver's unbind, /proc/driver/nvidia/suspend, ...), decided by the
 * BPF LSM before the kernel's store function runs. The knobs map, keyed by
 * inode and filesystem, is the daemon's (from PCI discovery); the class
 * comes from kmod/common/gg_knob.h, the verdict from the same
 * GG_GATE_DECIDE, policy and grants as an ioctl's.
 *
 * Every write of every file passes file_permission: what is not a write on
 * sysfs or procfs leaves after three loads.
 */
#include "common.bpf.h"
#include "gg_knob.h"

#define GG_MAY_WRITE 0x2
#define GG_TS_COMPAT 0x0002 /* arch/x86/include/asm/thread_info.h: in a 32-bit syscall */

/* x86-64 and ia32 system call numbers (arch/x86/entry/syscalls/). */
#define GG_NR_WRITE	   1
#define GG_NR_PWRITE64	   18
#define GG_NR_WRITEV	   20
#define GG_NR_PWRITEV	   296
#define GG_NR_PWRITEV2	   328
#define GG_NR32_WRITE	   4
#define GG_NR32_PWRITE64   181
#define GG_NR_MMAP	   9
#define GG_NR32_MMAP2	   192
#define GG_X32_SYSCALL_BIT 0x40000000

__u32 gg_bpf_take_knob_grant(const struct gg_knob_event *e);

/*
 * The running system call's buffer, length and position. Only write and
 * pwrite64 say them in registers, which no other thread can change; for
 * writev the lengths are in user memory, so the call is named but its
 * length is not trusted; any other path is unknown.
 */
/* The caller's registers at the system call, and whether it is a 32-bit one. */
static __always_inline struct pt_regs *gg_syscall_regs(__u8 *compat)
{
	struct task_struct *task = bpf_get_current_task_btf();

	*compat = (task->thread_info.status & GG_TS_COMPAT) != 0;
	return (struct pt_regs *)bpf_task_pt_regs(task);
}

static __always_inline __u64 gg_knob_args(struct gg_knob_event *e, struct file *file)
{
	struct pt_regs *regs = gg_syscall_regs(&e->compat);
	__u64 buf = 0;
	long nr;

	e->call = GG_WC_UNKNOWN;
	e->offset = 0;
	e->length = 0;
	if (!regs)
		return 0;
	nr = regs->orig_ax;
	e->syscall_nr = (__u32)nr;
	if (e->compat) {
		if (nr == GG_NR32_WRITE || nr == GG_NR32_PWRITE64) {
			buf = (__u32)regs->cx;
			e->length = (__u32)regs->dx;
			e->call = nr == GG_NR32_WRITE ? GG_WC_WRITE : GG_WC_PWRITE;
			e->offset = nr == GG_NR32_WRITE
					    ? (__u64)file->f_pos
					    : ((__u64)(__u32)regs->di << 32) | (__u32)regs->si;
		}
		return buf;
	}
	if (nr & GG_X32_SYSCALL_BIT)
		return 0; /* x32: unknown, strictest class */
	if (nr == GG_NR_WRITE || nr == GG_NR_PWRITE64) {
		buf = regs->si;
		e->length = regs->dx;
		e->call = nr == GG_NR_WRITE ? GG_WC_WRITE : GG_WC_PWRITE;
		e->offset = nr == GG_NR_WRITE ? (__u64)file->f_pos : regs->r10;
	} else if (nr == GG_NR_WRITEV || nr == GG_NR_PWRITEV || nr == GG_NR_PWRITEV2) {
		e->call = GG_WC_WRITEV;
	}
	return buf;
}

static __always_inline void gg_knob_who(struct gg_knob_event *e)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct mm_struct *mm = task->mm;
	struct file *exe = mm ? mm->exe_file : 0;
	__u64 id = bpf_get_current_uid_gid();

	e->uid = (__u32)id;
	e->gid = id >> 32;
	e->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->exe_name[0] = 0;
	if (exe)
		bpf_probe_read_kernel_str(e->exe_name, sizeof(e->exe_name),
					  exe->f_path.dentry->d_name.name);
}

/*
 * Decode and decide on a filled event: a global function, so the verifier
 * checks it once, and the caller's ring reservation stays on one path.
 */
__noinline int gg_bpf_knob_decide(struct gg_knob_event *e, const struct gg_policy *pol,
				  __u32 recorded)
{
	if (!e || !pol)
		return GG_VERDICT_DENY;
	gg_knob_decode_event(e);
	GG_KNOB_DECIDE(pol, e, recorded, gg_bpf_take_knob_grant(e));
	return e->verdict;
}

/*
 * The running mmap's (x86-64) or mmap2's (ia32) offset and length, from
 * registers: 1, or 0 where the mapping comes from another system call.
 */
static __always_inline int gg_map_range(__u64 *offset, __u64 *length, __u32 *nr_out, __u8 *compat)
{
	struct pt_regs *regs = gg_syscall_regs(compat);
	long nr;

	*offset = 0;
	*length = 0;
	*nr_out = 0;
	if (!regs)
		return 0;
	nr = regs->orig_ax;
	*nr_out = (__u32)nr;
	if (*compat && nr == GG_NR32_MMAP2) {
		*length = (__u32)regs->cx;
		*offset = (__u64)(__u32)regs->bp << 12; /* in 4 KiB pages */
		return 1;
	}
	if (!*compat && nr == GG_NR_MMAP) {
		*length = regs->si;
		*offset = regs->r9;
		return 1;
	}
	return 0;
}

/* Who, which knob, and what the system call asks to write or map. */
static __always_inline void gg_knob_fill(struct gg_knob_event *e, struct gg_globals *gl,
					 struct file *file, const struct gg_knob_key *key,
					 const struct gg_knob *k, __u32 op, __u32 prot, __u32 bar)
{
	__u32 len;
	__u64 buf;

	gg_fill_hdr(&e->hdr, GG_EV_KNOB, sizeof(*e), __sync_fetch_and_add(&gl->next_seq, 1));
	gg_knob_who(e);
	e->key = *key;
	e->knob = *k;
	e->syscall_nr = 0;
	e->hook = op == GG_KOP_MMAP ? GG_HOOK_LSM_MMAP_FILE : GG_HOOK_LSM_FILE_WRITE;
	e->capture_flags = 0;
	e->value_len = 0;
	e->op = op;
	e->bar = bar;
	e->prot = prot;
	__builtin_memset(e->value, 0, sizeof(e->value));
	if (op == GG_KOP_MMAP) {
		e->call = gg_map_range(&e->offset, &e->length, &e->syscall_nr, &e->compat)
				  ? GG_WC_MMAP
				  : GG_WC_UNKNOWN;
		return;
	}
	buf = gg_knob_args(e, file);
	len = e->length < GG_KNOB_VALUE_MAX ? (__u32)e->length : GG_KNOB_VALUE_MAX;
	if (buf && len) {
		if (bpf_probe_read_user(e->value, GG_LEN_1_TO(len, GG_KNOB_VALUE_MAX),
					(const void *)buf))
			e->capture_flags = GG_CAP_ARG_FAULT;
		else
			e->value_len = len;
	}
}

static __always_inline int gg_knob_gate(struct file *file, const struct gg_knob_key *key,
					const struct gg_knob *k, __u32 op, __u32 prot, __u32 bar)
{
	struct gg_knob_event *e;
	struct gg_policy *pol;
	struct gg_globals *gl = gg_globals();
	__u32 zero = 0;
	int verdict;

	pol = bpf_map_lookup_elem(&policy, &zero);
	if (!pol || !gl)
		return 0;
	if (pol->flags & GG_POLF_KMOD_KNOB)
		return 0; /* gpugate.ko decides and records the knobs: one verdict each */
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (e) {
		gg_knob_fill(e, gl, file, key, k, op, prot, bar);
		verdict = gg_bpf_knob_decide(e, pol, 1);
		gg_count(e->dec.cls, GG_CNT_SEEN);
		bpf_ringbuf_submit(e, gg_ring_flags(sizeof(*e)));
		if (verdict == GG_VERDICT_DENY)
			return -GG_EPERM;
		return 0;
	}
	/* the ring is full: decided in the CPU's spare, not recorded (a gated
	 * write is then denied) and counted as lost */
	e = bpf_map_lookup_elem(&knob_spare, &zero);
	if (!e) /* a per-CPU slot is always there; fail closed if not */
		return -GG_EPERM;
	gg_knob_fill(e, gl, file, key, k, op, prot, bar);
	verdict = gg_bpf_knob_decide(e, pol, 0);
	gg_count(e->dec.cls, GG_CNT_DROPPED);
	if (verdict == GG_VERDICT_DENY)
		return -GG_EPERM;
	return 0;
}

/* A file on sysfs or procfs whose inode is a knob: gated; any other: 0 at once. */
static __always_inline int gg_knob_file(struct file *file, __u32 op, __u32 prot)
{
	struct gg_knob_key key = {};
	struct inode *inode = file->f_inode;
	__u32 magic = inode->i_sb->s_magic;
	struct gg_knob *k;

	if (magic != GG_FS_SYSFS && magic != GG_FS_PROC)
		return 0;
	key.ino = inode->i_ino;
	key.fs_magic = magic;
	k = bpf_map_lookup_elem(&knobs, &key);
	if (!k)
		return 0;
	return gg_knob_gate(file, &key, k, op, prot, 0);
}

SEC("lsm/file_permission")
int BPF_PROG(gg_knob_write, struct file *file, int mask, int ret)
{
	if (ret) /* an earlier LSM already said no: its errno, in the range the verifier checks */
		return ret < 0 && ret >= -4095 ? ret : -GG_EPERM;
	if (!(mask & GG_MAY_WRITE))
		return 0;
	return gg_knob_file(file, GG_KOP_WRITE, 0);
}

/*
 * /dev/mem over a GPU's BAR: the first range the mapping overlaps, as a
 * knob of that GPU (its BAR + 1 in *bar), or 0 where none does. A mapping
 * whose offset is unknown overlaps the first BAR (the strictest answer).
 */
static __always_inline int gg_devmem_knob(struct gg_knob *out, __u32 *bar)
{
	__u64 off, len, last;
	__u32 i, nr, known;
	__u8 compat;

	known = gg_map_range(&off, &len, &nr, &compat);
	last = len ? off + len - 1 : off;
	if (last < off)
		last = ~0ull;
	for (i = 0; i < GG_BAR_RANGES_MAX; i++) {
		__u32 idx = i;
		struct gg_bar_range *r = bpf_map_lookup_elem(&bar_ranges, &idx);

		if (!r || !r->end)
			continue;
		if (known && (last < r->start || off > r->end))
			continue;
		out->gpu_dev = r->gpu_dev;
		out->rule = GG_KNOB_ANY_WRITE;
		out->cls = GG_CLASS_BAR_MAP;
		out->vendor = r->vendor;
		out->flags = GG_KNOBF_DEVMEM;
		out->pm_cap = 0;
		out->exp_cap = 0;
		*bar = r->bar + 1;
		return 1;
	}
	return 0;
}

/*
 * Mappings: a BAR's file in sysfs (resourceN, resourceN_wc: every mapping
 * is bar.map), or /dev/mem over a GPU's BAR. Any protection: a mapping
 * refused here never exists, so no later mprotect can widen it.
 */
SEC("lsm/mmap_file")
int BPF_PROG(gg_knob_mmap, struct file *file, unsigned long reqprot, unsigned long prot,
	     unsigned long flags, int ret)
{
	struct gg_knob_key key = {};
	struct gg_knob dm = {};
	struct inode *inode;
	__u32 bar = 0;

	if (ret)
		return ret < 0 && ret >= -4095 ? ret : -GG_EPERM;
	if (!file)
		return 0; /* anonymous memory */
	inode = file->f_inode;
	if ((inode->i_mode & GG_S_IFMT) == GG_S_IFCHR && inode->i_rdev == GG_MEM_RDEV) {
		if (!gg_devmem_knob(&dm, &bar))
			return 0;
		key.ino = inode->i_ino;
		key.fs_magic = 0;
		return gg_knob_gate(file, &key, &dm, GG_KOP_MMAP, (__u32)prot, bar);
	}
	return gg_knob_file(file, GG_KOP_MMAP, (__u32)prot);
}
