/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * The observer: every ioctl on a GPU device node, at syscall entry and
 * exit, decoded in the kernel with the shared decoder and sent to user
 * space through a ring buffer. Observe only: tracepoints cannot deny.
 *
 * The device is found from the fd (fd -> file -> inode -> i_rdev), never
 * from the request word: the NVIDIA driver ignores the type and direction
 * bits, so a request-word filter would let a renamed request through.
 *
 * On x86-64 the syscalls/sys_enter_ioctl event skips 32-bit (compat)
 * callers, so they are taken from the raw sys_enter/sys_exit tracepoints,
 * which see every syscall: their programs leave at the first comparison
 * for anything but the compat ioctl.
 */
#include "record.bpf.h"

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
		gg_count_fd_fault();
		return 0;
	}
	filp = bpf_rdonly_cast(filp, bpf_core_type_id_kernel(struct file));
	inode = filp->f_inode;
	if (!inode || (inode->i_mode & GG_S_IFMT) != GG_S_IFCHR)
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
		gg_count_fd_fault();
		return 0;
	}
	inode = BPF_CORE_READ(filp, f_inode);
	if (!inode || (BPF_CORE_READ(inode, i_mode) & GG_S_IFMT) != GG_S_IFCHR)
		return 0;
	return BPF_CORE_READ(inode, i_rdev);
}

/* One of these two is loaded: the loader checks the kernel for bpf_rdonly_cast. */
SEC("tp/syscalls/sys_enter_ioctl")
int gg_ioctl_enter(struct trace_event_raw_sys_enter *ctx)
{
	gg_record_enter(GG_HOOK_TP_IOCTL, gg_fd_rdev((int)ctx->args[0]), (int)ctx->args[0],
			(__u32)ctx->args[1], ctx->args[2], GG_READ_NOFAULT);
	return 0;
}

SEC("tp/syscalls/sys_enter_ioctl")
int gg_ioctl_enter_core(struct trace_event_raw_sys_enter *ctx)
{
	gg_record_enter(GG_HOOK_TP_IOCTL, gg_fd_rdev_core((int)ctx->args[0]), (int)ctx->args[0],
			(__u32)ctx->args[1], ctx->args[2], GG_READ_NOFAULT);
	return 0;
}

SEC("tp/syscalls/sys_exit_ioctl")
int gg_ioctl_exit(struct trace_event_raw_sys_exit *ctx)
{
	return gg_record_exit(ctx->ret);
}

#define GG_IA32_NR_IOCTL 54	/* arch/x86/entry/syscalls/syscall_32.tbl */
#define GG_TS_COMPAT	 0x0002 /* arch/x86/include/asm/thread_info.h */

static __always_inline int gg_in_compat_ioctl(long id)
{
	struct task_struct *task;

	if (id != GG_IA32_NR_IOCTL)
		return 0;
	task = bpf_get_current_task_btf();
	return (BPF_CORE_READ(task, thread_info.status) & GG_TS_COMPAT) != 0;
}

/* 32-bit callers: ioctl(ebx = fd, ecx = request, edx = argument). */
SEC("raw_tp/sys_enter")
int BPF_PROG(gg_compat_ioctl_enter, struct pt_regs *regs, long id)
{
	int fd;

	if (!gg_in_compat_ioctl(id))
		return 0;
	fd = (int)BPF_CORE_READ(regs, bx);
	gg_record_enter(GG_HOOK_RAW_TP_COMPAT, gg_fd_rdev_core(fd), fd,
			(__u32)BPF_CORE_READ(regs, cx), (__u32)BPF_CORE_READ(regs, dx),
			GG_READ_NOFAULT);
	return 0;
}

SEC("raw_tp/sys_exit")
int BPF_PROG(gg_compat_ioctl_exit, struct pt_regs *regs, long ret)
{
	if (!gg_in_compat_ioctl(BPF_CORE_READ(regs, orig_ax)))
		return 0;
	return gg_record_exit(ret);
}
