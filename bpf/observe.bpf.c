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
#include "capture.bpf.h"

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

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); /* kernel dev_t */
	__type(value, struct gg_device);
} devices SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 * 1024 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gg_ioctl_enter);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GG_CLASS_COUNT);
	__type(key, __u32);
	__type(value, struct gg_class_counters);
} counters SEC(".maps");

struct gg_pending {
	__u64 seq;
	__u64 status_addr; /* user address of the NV status word, 0 if none */
	__u32 cls;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32); /* tid */
	__type(value, struct gg_pending);
} pending SEC(".maps");

extern void *bpf_rdonly_cast(void *obj, __u32 btf_id) __ksym;

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

/* Basename of the executable: user space cannot read /proc of a process
 * that exited before its records were read. */
static __always_inline void gg_exe_name(char *dst, __u32 len)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct mm_struct *mm = task->mm;
	struct file *exe;

	dst[0] = 0;
	if (!mm)
		return;
	exe = mm->exe_file;
	if (!exe)
		return;
	bpf_probe_read_kernel_str(dst, len, exe->f_path.dentry->d_name.name);
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

static __always_inline __u64 gg_ring_flags(void)
{
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP
									     : BPF_RB_NO_WAKEUP;
}

SEC("tp/syscalls/sys_enter_ioctl")
int gg_ioctl_enter(struct trace_event_raw_sys_enter *ctx)
{
	int fd = (int)ctx->args[0];
	__u32 request = (__u32)ctx->args[1];
	__u64 arg = ctx->args[2];
	__u64 id = bpf_get_current_pid_tgid();
	struct gg_pending p = {};
	struct gg_ioctl_enter *e;
	struct gg_device *dev;
	__u32 rdev, zero = 0, cls;

	rdev = gg_fd_rdev(fd);
	if (!rdev || !gpu_majors[(rdev >> 20) & (GG_MAJORS - 1)])
		return 0;
	dev = bpf_map_lookup_elem(&devices, &rdev);
	if (!dev)
		return 0;
	e = bpf_map_lookup_elem(&scratch, &zero);
	if (!e)
		return 0;

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
	gg_exe_name(e->exe_name, sizeof(e->exe_name));
	e->dev = rdev;
	e->fd = fd;
	e->arg = arg;
	e->device = *dev;

	gg_capture(&e->raw, &e->dec, dev->kind, dev->drm_driver, request, arg);
	cls = e->dec.cls;

	if (bpf_ringbuf_output(&events, e, sizeof(*e), gg_ring_flags())) {
		gg_count(cls, 1);
		return 0;
	}
	gg_count(cls, 0);

	p.seq = e->hdr.seq;
	p.cls = cls;
	if (e->dec.status_offset)
		p.status_addr = ((e->dec.flags & GG_DF_XFER) ? e->dec.inner_ptr : arg) +
				e->dec.status_offset;
	if (!bpf_map_update_elem(&pending, &e->hdr.tid, &p, BPF_ANY))
		__sync_fetch_and_add(&pending_hint, 1);
	return 0;
}

SEC("tp/syscalls/sys_exit_ioctl")
int gg_ioctl_exit(struct trace_event_raw_sys_exit *ctx)
{
	struct gg_ioctl_exit x = {};
	struct gg_pending *p;
	__u64 id;
	__u32 tid;

	if (!pending_hint)
		return 0;
	id = bpf_get_current_pid_tgid();
	tid = (__u32)id;
	p = bpf_map_lookup_elem(&pending, &tid);
	if (!p)
		return 0;

	x.hdr.type = GG_EV_IOCTL_EXIT;
	x.hdr.size = sizeof(x);
	x.hdr.cpu = bpf_get_smp_processor_id();
	x.hdr.seq = p->seq;
	x.hdr.boot_ns = bpf_ktime_get_boot_ns();
	x.hdr.pid = id >> 32;
	x.hdr.tid = tid;
	x.enter_seq = p->seq;
	x.ret = ctx->ret;
	x.cls = p->cls;
	if (p->status_addr &&
	    !bpf_probe_read_user(&x.nv_status, sizeof(x.nv_status), (const void *)p->status_addr))
		x.status_valid = 1;
	if (bpf_ringbuf_output(&events, &x, sizeof(x), gg_ring_flags()))
		gg_count(x.cls, 2);
	bpf_map_delete_elem(&pending, &tid);
	__sync_fetch_and_sub(&pending_hint, 1);
	return 0;
}
