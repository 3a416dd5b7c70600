/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * The observer: every ioctl on a GPU device node, at syscall entry and
 * exit, decoded in the kernel with the shared decoder and sent to user
 * space through a ring buffer. Observe only: tracepoints cannot deny.
 *
 * The device is found from the fd (fd -> file -> inode -> i_rdev), never
 * from the request word: the NVIDIA driver ignores the type and direction
 * bits, so a request-word filter would let a renamed request through.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "capture.bpf.h"
#include "gg_verdict.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define GG_MAJORS 4096
#define S_IFMT	  00170000
#define S_IFCHR	  0020000

/* Wake the reader once this much is queued; below it the reader polls. */
const volatile __u32 wakeup_bytes = 512 * 1024;

/* A cheap first filter: majors that have at least one GPU node. */
__u8 gpu_majors[GG_MAJORS];
__u64 next_seq;
__u64 pending_hint; /* enters without exits yet; 0 lets exits skip the lookup */
__u64 fd_lookup_faults;

/*
 * Kept for user space in this (pinned) map, so a restarted daemon knows what
 * the one before it did: the losses it already recorded, its last heartbeat
 * (CLOCK_BOOTTIME) and pid, and the next grant id. The programs never read them.
 */
__u64 acked_dropped[GG_CLASS_COUNT];
__u64 acked_exit_dropped[GG_CLASS_COUNT];
__u64 daemon_heartbeat_ns;
__u32 daemon_pid;
__u32 next_grant_id;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); /* kernel dev_t */
	__type(value, struct gg_device);
} devices SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024); /* user space may resize before load */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gg_ioctl_enter);
} scratch SEC(".maps");

/* The policy in force: mode and one action per class, set by the daemon. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gg_policy);
} policy SEC(".maps");

/* Live grants, installed by the daemon from verified signed requests. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct gg_grant_key);
	__type(value, struct gg_grant);
} grants SEC(".maps");

/* Uses left per grant id, shared by the nodes one grant covers. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __s64);
} grant_uses SEC(".maps");

/*
 * Take one use of a grant covering (dev, cls) now. Returns the grant's id,
 * or 0 if none covers it. Uses are taken atomically: two racing callers
 * cannot both spend the last one.
 */
static __always_inline __u32 gg_use_grant(struct gg_grant_key *key, __u64 now,
					  const struct gg_decoded *dec)
{
	struct gg_grant *g = bpf_map_lookup_elem(&grants, key);
	__s64 *uses;
	__u32 id;

	if (!g || now < g->not_before_ns || now > g->not_after_ns)
		return 0;
	/* a grant for one parameter value covers no other (a signed power level) */
	if (g->pkind && (dec->pkind != g->pkind || dec->key[g->key_index & 3] != g->key_value))
		return 0;
	id = g->id;
	uses = bpf_map_lookup_elem(&grant_uses, &id);
	if (!uses)
		return 0;
	if (__sync_fetch_and_add(uses, -1) <= 0) {
		__sync_fetch_and_add(uses, 1);
		return 0;
	}
	return id;
}

/* A grant scoped to the caller's cgroup first, then its uid, then any process. */
static __always_inline __u32 gg_take_grant(__u32 dev, const struct gg_decoded *dec)
{
	struct gg_grant_key key = {.dev = dev,
				   .cls = dec->cls,
				   .scope = GG_SCOPE_CGROUP,
				   .scope_id = bpf_get_current_cgroup_id()};
	__u64 now = bpf_ktime_get_boot_ns();
	__u32 id = gg_use_grant(&key, now, dec);

	if (id)
		return id;
	key.scope = GG_SCOPE_UID;
	key.scope_id = (__u32)bpf_get_current_uid_gid();
	id = gg_use_grant(&key, now, dec);
	if (id)
		return id;
	key.scope = GG_SCOPE_ANY;
	key.scope_id = 0;
	return gg_use_grant(&key, now, dec);
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GG_CLASS_COUNT);
	__type(key, __u32);
	__type(value, struct gg_class_counters);
} counters SEC(".maps");

/* Per-thread state between a GPU ioctl's entry and its exit. */
struct gg_pending {
	__u64 seq;
	__u64 status_addr; /* user address of the NV status word, 0 if none */
	__u32 cls;
	__u32 active;	/* an entry is waiting for its exit */
	void *exe_file; /* the file exe_name was read from */
	char exe_name[GG_EXE_NAME_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct gg_pending);
} pending SEC(".maps");

/* Kernel >= 6.2. Weak: on older kernels the loader runs gg_ioctl_enter_core. */
extern void *bpf_rdonly_cast(void *obj, __u32 btf_id) __ksym __weak;

/* fd -> kernel dev_t of a character device, 0 if none. */
static __always_inline __u32 gg_fd_rdev(int fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = task->files->fdt;
	struct file **fds = fdt->fd;
	struct file *filp = 0;
	struct inode *inode;

	if (fd < 0 || (unsigned int)fd >= fdt->max_fds)
		return 0;
	if (bpf_probe_read_kernel(&filp, sizeof(filp), &fds[fd]) || !filp) {
		__sync_fetch_and_add(&fd_lookup_faults, 1);
		return 0;
	}
	filp = bpf_rdonly_cast(filp, bpf_core_type_id_kernel(struct file));
	inode = filp->f_inode;
	if (!inode || (inode->i_mode & S_IFMT) != S_IFCHR)
		return 0;
	return inode->i_rdev;
}

/* The same with CO-RE probe reads, for kernels without bpf_rdonly_cast. */
static __always_inline __u32 gg_fd_rdev_core(int fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *filp = 0;
	struct inode *inode;

	if (fd < 0 || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	if (bpf_probe_read_kernel(&filp, sizeof(filp), &fds[fd]) || !filp) {
		__sync_fetch_and_add(&fd_lookup_faults, 1);
		return 0;
	}
	inode = BPF_CORE_READ(filp, f_inode);
	if (!inode || (BPF_CORE_READ(inode, i_mode) & S_IFMT) != S_IFCHR)
		return 0;
	return BPF_CORE_READ(inode, i_rdev);
}

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

static __always_inline void gg_count(__u32 cls, int which)
{
	struct gg_class_counters *c;

	cls = cls < GG_CLASS_COUNT ? cls : GG_CLASS_UNKNOWN;
	c = bpf_map_lookup_elem(&counters, &cls);
	if (!c)
		return;
	if (which == 0)
		c->seen++;
	else if (which == 1)
		c->dropped++;
	else
		c->exit_dropped++;
}

/*
 * Records go in without waking the reader, which polls every 20 ms; only
 * the record that takes the backlog across wakeup_bytes wakes it. A wakeup
 * costs the caller microseconds (an irq_work), so one per crossing, not one
 * per record while the backlog stays high.
 */
static __always_inline __u64 gg_ring_flags(__u64 size)
{
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);

	return (avail < wakeup_bytes && avail + size >= wakeup_bytes) ? BPF_RB_FORCE_WAKEUP
								      : BPF_RB_NO_WAKEUP;
}

/* Who, when and on what: everything but the request's bytes. */
static __always_inline void gg_fill_enter(struct gg_ioctl_enter *e, __u32 rdev, int fd, __u64 arg,
					  const struct gg_device *dev, const struct gg_pending *p)
{
	__u64 id = bpf_get_current_pid_tgid();

	e->hdr.type = GG_EV_IOCTL_ENTER;
	e->hdr.size = sizeof(*e);
	e->hdr.cpu = bpf_get_smp_processor_id();
	e->hdr.seq = __sync_fetch_and_add(&next_seq, 1);
	e->hdr.boot_ns = bpf_ktime_get_boot_ns();
	e->hdr.pid = id >> 32;
	e->hdr.tid = (__u32)id;
	id = bpf_get_current_uid_gid();
	e->uid = (__u32)id;
	e->gid = id >> 32;
	e->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	__builtin_memcpy(e->exe_name, p->exe_name, sizeof(e->exe_name));
	e->dev = rdev;
	e->fd = fd;
	e->arg = arg;
	e->device = *dev;
}

static __always_inline void gg_subject_of(struct gg_subject *s, const struct gg_ioctl_enter *e,
					  const struct gg_device *dev)
{
	s->cls = e->dec.cls;
	s->dev = e->dev;
	s->uid = e->uid;
	s->vendor = dev->vendor;
	s->cgroup_id = e->cgroup_id;
	s->comm = e->comm;
}

/*
 * Record one GPU ioctl at entry and decide on it. Returns the verdict; only
 * the LSM hooks act on it. sleepable selects how user memory is read (a
 * constant at every call site, so each program keeps one path).
 */
static __always_inline __u32 gg_record_enter(__u32 hook, __u32 rdev, int fd, __u32 request,
					     __u64 arg, int sleepable)
{
	struct gg_ioctl_enter *e;
	struct gg_pending *p;
	struct gg_device *dev;
	struct gg_policy *pol;
	struct gg_subject subj;
	__u32 zero = 0, cls, verdict, grant_id, action, rule;
	__u64 seq, status_addr = 0;

	if (!rdev || !gpu_majors[(rdev >> 20) & (GG_MAJORS - 1)])
		return GG_VERDICT_ALLOW;
	dev = bpf_map_lookup_elem(&devices, &rdev);
	pol = bpf_map_lookup_elem(&policy, &zero);
	if (!dev || !pol)
		return GG_VERDICT_ALLOW;

	p = bpf_task_storage_get(&pending, bpf_get_current_task_btf(), 0,
				 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!p)
		return GG_VERDICT_ALLOW;
	gg_exe_name(p);

	/* Build the record in place in the ring; if the ring is full, build it
	 * in scratch space to learn its class, count the loss, and decide as
	 * for an unrecorded request (a gated one is denied in enforce mode). */
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		e = bpf_map_lookup_elem(&scratch, &zero);
		if (!e)
			return pol->mode == GG_MODE_ENFORCE ? (__u32)GG_VERDICT_DENY
							    : (__u32)GG_VERDICT_ALLOW;
		gg_fill_enter(e, rdev, fd, arg, dev, p);
		if (sleepable)
			gg_capture_sleepable(&e->raw, &e->dec, dev->kind, dev->drm_driver, request,
					     arg);
		else
			gg_capture(&e->raw, &e->dec, dev->kind, dev->drm_driver, request, arg);
		gg_count(e->dec.cls, 1);
		gg_subject_of(&subj, e, dev);
		action = gg_action_for(pol, &subj, &rule);
		return gg_verdict_of(pol->mode, action, 0, 0);
	}
	gg_fill_enter(e, rdev, fd, arg, dev, p);
	if (sleepable)
		gg_capture_sleepable(&e->raw, &e->dec, dev->kind, dev->drm_driver, request, arg);
	else
		gg_capture(&e->raw, &e->dec, dev->kind, dev->drm_driver, request, arg);
	cls = e->dec.cls;
	gg_subject_of(&subj, e, dev);
	action = gg_action_for(pol, &subj, &rule);
	verdict = gg_verdict_of(pol->mode, action, 0, 1);
	grant_id = 0;
	if (verdict != GG_VERDICT_ALLOW && action == GG_ACT_REQUIRE_SIGNATURE) {
		grant_id = gg_take_grant(rdev, &e->dec);
		if (grant_id)
			verdict = gg_verdict_of(pol->mode, action, 1, 1);
	}
	e->hook = hook;
	e->mode = pol->mode;
	e->action = action;
	e->rule = rule;
	e->verdict = verdict;
	e->grant_id = grant_id;
	seq = e->hdr.seq;
	if (e->dec.status_offset)
		status_addr = ((e->dec.flags & GG_DF_XFER) ? e->dec.inner_ptr : arg) +
			      e->dec.status_offset;
	bpf_ringbuf_submit(e, gg_ring_flags(sizeof(*e)));
	gg_count(cls, 0);

	if (!p->active)
		__sync_fetch_and_add(&pending_hint, 1);
	p->active = 1;
	p->seq = seq;
	p->cls = cls;
	p->status_addr = status_addr;
	return verdict;
}

/* One of these two is loaded: the loader checks the kernel for bpf_rdonly_cast. */
SEC("tp/syscalls/sys_enter_ioctl")
int gg_ioctl_enter(struct trace_event_raw_sys_enter *ctx)
{
	gg_record_enter(GG_HOOK_TP_IOCTL, gg_fd_rdev((int)ctx->args[0]), (int)ctx->args[0],
			(__u32)ctx->args[1], ctx->args[2], 0);
	return 0;
}

SEC("tp/syscalls/sys_enter_ioctl")
int gg_ioctl_enter_core(struct trace_event_raw_sys_enter *ctx)
{
	gg_record_enter(GG_HOOK_TP_IOCTL, gg_fd_rdev_core((int)ctx->args[0]), (int)ctx->args[0],
			(__u32)ctx->args[1], ctx->args[2], 0);
	return 0;
}

/*
 * The gate: BPF LSM on the ioctl permission check, before the driver runs.
 * Sleepable, so user memory is read with bpf_copy_from_user. Where the
 * kernel loads LSM programs these replace the entry tracepoint.
 */
#define GG_EPERM 1

static __always_inline __u32 gg_file_rdev(struct file *file)
{
	struct inode *inode = file->f_inode;

	if (!inode || (inode->i_mode & S_IFMT) != S_IFCHR)
		return 0;
	return inode->i_rdev;
}

static __always_inline int gg_lsm_ioctl(__u32 hook, struct file *file, unsigned int cmd,
					unsigned long arg, int ret, int sleepable)
{
	if (ret)
		return ret; /* an earlier LSM already said no */
	return gg_record_enter(hook, gg_file_rdev(file), -1, cmd, arg, sleepable) == GG_VERDICT_DENY
		       ? -GG_EPERM
		       : 0;
}

SEC("lsm.s/file_ioctl")
int BPF_PROG(gg_file_ioctl, struct file *file, unsigned int cmd, unsigned long arg, int ret)
{
	return gg_lsm_ioctl(GG_HOOK_LSM_IOCTL, file, cmd, arg, ret, 1);
}

/* Not sleepable: the kernel does not list this hook as sleepable, so user
 * memory is read with bpf_probe_read_user (no page faults served). */
SEC("lsm/file_ioctl_compat")
int BPF_PROG(gg_file_ioctl_compat, struct file *file, unsigned int cmd, unsigned long arg, int ret)
{
	return gg_lsm_ioctl(GG_HOOK_LSM_IOCTL_COMPAT, file, cmd, arg, ret, 0);
}

/* The result of a GPU ioctl this thread entered: one exit record. */
static __always_inline int gg_record_exit(long ret)
{
	struct gg_ioctl_exit *x;
	struct gg_pending *p;
	__u64 id;

	if (!pending_hint)
		return 0;
	p = bpf_task_storage_get(&pending, bpf_get_current_task_btf(), 0, 0);
	if (!p || !p->active)
		return 0;
	p->active = 0;
	__sync_fetch_and_sub(&pending_hint, 1);

	x = bpf_ringbuf_reserve(&events, sizeof(*x), 0);
	if (!x) {
		gg_count(p->cls, 2);
		return 0;
	}
	id = bpf_get_current_pid_tgid();
	x->hdr.type = GG_EV_IOCTL_EXIT;
	x->hdr.size = sizeof(*x);
	x->hdr.cpu = bpf_get_smp_processor_id();
	x->hdr.seq = p->seq;
	x->hdr.boot_ns = bpf_ktime_get_boot_ns();
	x->hdr.pid = id >> 32;
	x->hdr.tid = (__u32)id;
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
	bpf_ringbuf_submit(x, gg_ring_flags(sizeof(*x)));
	return 0;
}

SEC("tp/syscalls/sys_exit_ioctl")
int gg_ioctl_exit(struct trace_event_raw_sys_exit *ctx)
{
	return gg_record_exit(ctx->ret);
}

/*
 * With the gate, results come from fexit on the ioctl syscall functions
 * instead: a syscall tracepoint makes every syscall of every task take the
 * slow path, a trampoline costs only ioctls.
 */
SEC("fexit/__x64_sys_ioctl")
int BPF_PROG(gg_sys_ioctl_exit, const struct pt_regs *regs, long ret)
{
	return gg_record_exit(ret);
}

SEC("fexit/__ia32_compat_sys_ioctl")
int BPF_PROG(gg_compat_sys_ioctl_exit, const struct pt_regs *regs, long ret)
{
	return gg_record_exit(ret);
}
