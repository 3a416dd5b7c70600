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
#define GG_X32_SYSCALL_BIT 0x40000000

__u32 gg_bpf_take_knob_grant(const struct gg_knob_event *e);

/*
 * The running system call's buffer, length and position. Only write and
 * pwrite64 say them in registers, which no other thread can change; for
 * writev the lengths are in user memory, so the call is named but its
 * length is not trusted; any other path is unknown.
 */
static __always_inline __u64 gg_knob_args(struct gg_knob_event *e, struct file *file)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	__u64 buf = 0;
	long nr;

	e->call = GG_WC_UNKNOWN;
	e->offset = 0;
	e->length = 0;
	e->compat = (task->thread_info.status & GG_TS_COMPAT) != 0;
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
	gg_knob_decode(&e->knob, e->call, e->offset, e->length, e->value, e->value_len,
		       e->capture_flags, &e->dec);
	GG_KNOB_DECIDE(pol, e, recorded, gg_bpf_take_knob_grant(e));
	return e->verdict;
}

/* Who, which knob, and what the system call asks to write. */
static __always_inline void gg_knob_fill(struct gg_knob_event *e, struct gg_globals *gl,
					 struct file *file, const struct gg_knob_key *key,
					 const struct gg_knob *k)
{
	__u32 len;
	__u64 buf;

	gg_fill_hdr(&e->hdr, GG_EV_KNOB, sizeof(*e), __sync_fetch_and_add(&gl->next_seq, 1));
	gg_knob_who(e);
	e->key = *key;
	e->knob = *k;
	e->syscall_nr = 0;
	e->hook = GG_HOOK_LSM_FILE_WRITE;
	e->capture_flags = 0;
	e->value_len = 0;
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	__builtin_memset(e->value, 0, sizeof(e->value));
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
					const struct gg_knob *k)
{
	struct gg_knob_event *e;
	struct gg_policy *pol;
	struct gg_globals *gl = gg_globals();
	__u32 zero = 0;
	int verdict;

	pol = bpf_map_lookup_elem(&policy, &zero);
	if (!pol || !gl)
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (e) {
		gg_knob_fill(e, gl, file, key, k);
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
	gg_knob_fill(e, gl, file, key, k);
	verdict = gg_bpf_knob_decide(e, pol, 0);
	gg_count(e->dec.cls, GG_CNT_DROPPED);
	if (verdict == GG_VERDICT_DENY)
		return -GG_EPERM;
	return 0;
}

SEC("lsm/file_permission")
int BPF_PROG(gg_knob_write, struct file *file, int mask, int ret)
{
	struct gg_knob_key key = {};
	struct inode *inode;
	struct gg_knob *k;
	__u32 magic;

	if (ret) /* an earlier LSM already said no: its errno, in the range the verifier checks */
		return ret < 0 && ret >= -4095 ? ret : -GG_EPERM;
	if (!(mask & GG_MAY_WRITE))
		return 0;
	inode = file->f_inode;
	magic = inode->i_sb->s_magic;
	if (magic != GG_FS_SYSFS && magic != GG_FS_PROC)
		return 0;
	key.ino = inode->i_ino;
	key.fs_magic = magic;
	k = bpf_map_lookup_elem(&knobs, &key);
	if (!k)
		return 0;
	return gg_knob_gate(file, &key, k);
}
