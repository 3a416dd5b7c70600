// SPDX-License-Identifier: GPL-2.0
/*
 * The DRM family: every DRM driver's ioctls pass through the DRM core
 * (torvalds/linux drivers/gpu/drm/drm_ioctl.c, the same in 6.1 and 6.12;
 * ../shared/reference/kmod-hooks.md section 4):
 *
 *   drm_ioctl, drm_compat_ioctl  (exported, the drivers' file operations)
 *       - the call's context: the file, the request word, 32-bit or not;
 *   drm_ioctl_kernel(file, func, kdata, flags)  (exported; 6.1 :771,
 *       6.12 :728) - kdata is the kernel copy the handler will use,
 *       copied and zero-extended by drm_ioctl (6.1 :883, 6.12 :834). It gets
 *       no ioctl number: that comes from the context. Refused with -EPERM.
 *
 * An ioctl the DRM core refuses before any handler (an unknown number, a
 * missing permission) never reaches drm_ioctl_kernel: it is recorded after
 * the call, as undecided (nothing ran).
 */
#include <linux/compat.h>
#include <linux/uaccess.h>

#include "gpugate.h"

typedef long (*gg_ioctl_fn)(struct file *file, unsigned int cmd, unsigned long arg);
typedef int (*gg_ioctl_kernel_fn)(struct file *file, void *func, void *kdata, u32 flags);

static unsigned long gg_orig_drm_ioctl;
static unsigned long gg_orig_drm_compat_ioctl;
static unsigned long gg_orig_drm_ioctl_kernel;

static long gg_drm_call(struct file *file, unsigned int cmd, unsigned long arg, bool compat)
{
	gg_ioctl_fn orig = (gg_ioctl_fn)(compat ? gg_orig_drm_compat_ioctl : gg_orig_drm_ioctl);
	struct gg_call c;
	long ret;

	atomic_inc(&gg_inflight);
	gg_call_begin(&c, GG_FAM_DRM, file, cmd, arg);
	c.compat = compat;
	ret = orig(file, cmd, arg);
	if (!c.decided)
		gg_record_unseen(&c, GG_HOOK_KMOD_DRM);
	gg_record_exit(&c, ret);
	gg_call_end(&c);
	atomic_dec(&gg_inflight);
	return ret;
}

static long gg_drm_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	return gg_drm_call(file, cmd, arg, false);
}

static long gg_drm_compat_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	return gg_drm_call(file, cmd, arg, true);
}

static int gg_drm_ioctl_kernel(struct file *file, void *func, void *kdata, u32 flags)
{
	gg_ioctl_kernel_fn orig = (gg_ioctl_kernel_fn)gg_orig_drm_ioctl_kernel;
	struct gg_call *c = gg_call_current(GG_FAM_DRM), orphan;
	u8 copy[GG_ARG_MAX];
	struct gg_kcopy k = {.arg = kdata};
	int ret;

	atomic_inc(&gg_inflight);
	if (!c) {
		/* not through drm_ioctl: no request word to decode */
		gg_call_begin(&orphan, GG_FAM_DRM, file, 0, 0);
		orphan.orphan = 1;
		atomic64_inc(&gg_stats.no_context);
		c = &orphan;
	}
	/*
	 * drm_ioctl's kdata holds at least 128 bytes (its stack buffer) or the
	 * whole struct; a 32-bit caller's converted struct may be smaller than
	 * its request word says, so it is read without faulting.
	 */
	k.arg_len = min_t(u32, _IOC_SIZE(c->request), GG_ARG_MAX);
	if (c->compat) {
		if (copy_from_kernel_nofault(copy, kdata, k.arg_len))
			k.arg_len = 0;
		k.arg = copy;
	}
	if (gg_kdecide(c, GG_HOOK_KMOD_DRM, c->request, &k, false) == GG_DECIDED_DENY) {
		c->refused = 1;
		ret = -EPERM;
	} else {
		ret = orig(file, func, kdata, flags);
	}
	if (c == &orphan) {
		gg_record_exit(c, ret);
		gg_call_end(c);
	}
	atomic_dec(&gg_inflight);
	return ret;
}

static struct gg_khook gg_drm_hooks[] = {
	{
		.symbol = "drm_ioctl",
		.kind = GG_KHOOK_FTRACE,
		.record_hook = GG_HOOK_KMOD_DRM,
		.wrapper = gg_drm_ioctl,
		.orig = &gg_orig_drm_ioctl,
	},
	{
		.symbol = "drm_compat_ioctl",
		.kind = GG_KHOOK_FTRACE,
		.record_hook = GG_HOOK_KMOD_DRM,
		.wrapper = gg_drm_compat_ioctl,
		.orig = &gg_orig_drm_compat_ioctl,
	},
	{
		.symbol = "drm_ioctl_kernel",
		.kind = GG_KHOOK_FTRACE,
		.record_hook = GG_HOOK_KMOD_DRM,
		.wrapper = gg_drm_ioctl_kernel,
		.orig = &gg_orig_drm_ioctl_kernel,
	},
};

struct gg_family gg_drm_family = {
	.name = "drm",
	.anchor = "drm_ioctl_kernel",
	.hooks = gg_drm_hooks,
	.nhooks = ARRAY_SIZE(gg_drm_hooks),
};
