/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * The gate: BPF LSM on the ioctl permission check, before the driver runs.
 * Where the kernel loads LSM programs these replace the entry tracepoint of
 * observe.bpf.c; results then come from fexit on the ioctl syscalls.
 *
 * Its limit, said plainly: the LSM reads user memory before the driver
 * copies it, so a second thread can change the bytes in between. The
 * capture refuses the waits that would widen that window and reads the
 * bytes a last time before deciding (capture.bpf.h); the module, deciding
 * on the driver's own copy, closes it.
 */
#include "record.bpf.h"

static __always_inline __u32 gg_file_rdev(struct file *file)
{
	struct inode *inode = file->f_inode;

	if (!inode || (inode->i_mode & GG_S_IFMT) != GG_S_IFCHR)
		return 0;
	return inode->i_rdev;
}

static __always_inline int gg_lsm_ioctl(__u32 hook, struct file *file, unsigned int cmd,
					unsigned long arg, int ret, enum gg_read_mode mode)
{
	if (ret)
		return ret; /* an earlier LSM already said no */
	return gg_record_enter(hook, gg_file_rdev(file), -1, cmd, arg, mode) == GG_VERDICT_DENY
		       ? -GG_EPERM
		       : 0;
}

/* Sleepable: user memory is read with the checks of capture.bpf.h. */
SEC("lsm.s/file_ioctl")
int BPF_PROG(gg_file_ioctl, struct file *file, unsigned int cmd, unsigned long arg, int ret)
{
	return gg_lsm_ioctl(GG_HOOK_LSM_IOCTL, file, cmd, arg, ret, GG_READ_LSM);
}

/* Not sleepable (the kernel does not list this hook as sleepable): pages
 * that are not resident cannot be read, and the gate fails closed on them. */
SEC("lsm/file_ioctl_compat")
int BPF_PROG(gg_file_ioctl_compat, struct file *file, unsigned int cmd, unsigned long arg, int ret)
{
	return gg_lsm_ioctl(GG_HOOK_LSM_IOCTL_COMPAT, file, cmd, arg, ret, GG_READ_NOFAULT);
}

/*
 * Results from fexit on the ioctl syscall functions: a syscall tracepoint
 * makes every syscall of every task take the slow path, a trampoline costs
 * only ioctls.
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
