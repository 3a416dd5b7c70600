// SPDX-License-Identifier: GPL-2.0
/*
 * The NVIDIA family: where nvidia.ko holds the bytes RM will act on.
 * Facts from NVIDIA/open-gpu-kernel-modules 595.45.04, traced in
 * ../shared/reference/kmod-hooks.md sections 1-3 (docs/kernel-module.md):
 *
 *   nvidia_unlocked_ioctl  (kernel-open/nvidia/nv.c:2881-2888, static, the
 *       file operation, ftrace-able glue) - the call's context: the struct
 *       file the syscall pinned, the request word and argument as passed.
 *       Escapes the glue answers itself (CARD_INFO, ATTACH_GPUS_TO_FD, ...;
 *       HANDLER GLUE in nvidia_escapes.def) are decided here, on the escape
 *       number, which is a register, not memory.
 *   rm_ioctl  (src/nvidia/arch/nvalloc/unix/src/osapi.c:2875, prototype
 *       kernel-open/common/inc/nv.h:1173; in nv-kernel.o, built without an
 *       ftrace site: a kprobe) - the kernel copy of the escape's struct,
 *       XFER already resolved (nv.c:2501-2539, 2853). Decides every RM
 *       escape whose class its struct settles; an RM control whose class or
 *       grant depends on its params waits for their copy. Refuses as the
 *       driver does: NV_ERR_INSUFFICIENT_PERMISSIONS in the struct's status
 *       and NV_OK from rm_ioctl, so the ioctl returns 0.
 *   os_memcpy_from_user  (kernel-open/nvidia/os-interface.c:522-529, the one
 *       user copy of the RM core, memory_unix_kernel_os.c:179; ftrace-able
 *       glue) - the params RM is about to use, in the buffer it will use.
 *       A refusal is the copy's status, 0x1B, which RM hands back unchanged
 *       in NVOS54.status (kmod-hooks.md section 2). Every matching copy is
 *       decided, since the driver may copy twice (escape.c:75-131).
 */
#include <linux/uaccess.h>

#include "gpugate.h"

#define GG_NV_OK			   0x00
#define GG_NV_ERR_INSUFFICIENT_PERMISSIONS 0x1B
#define GG_NV_ERR_INVALID_ADDRESS	   0x1E
#define GG_NV_ESC_RM_CONTROL		   0x2A
#define GG_NV_ESC_RM_ALLOC		   0x2B
#define GG_NV_ESC_RM_FREE		   0x29

typedef long (*gg_ioctl_fn)(struct file *file, unsigned int cmd, unsigned long arg);

static unsigned long gg_orig_nv_ioctl;
static unsigned long gg_orig_os_memcpy; /* found, not called: see the wrapper */

/* rm_ioctl's refusal: the status is in the struct already; answer NV_OK. */
static noinline notrace u32 gg_rm_ioctl_refused(void *sp, void *nv, void *nvfp, u32 cmd, void *data,
						u32 size)
{
	return GG_NV_OK;
}

/* For an escape without a status word: the refusal is rm_ioctl's answer. */
static noinline notrace u32 gg_rm_ioctl_refused_status(void *sp, void *nv, void *nvfp, u32 cmd,
						       void *data, u32 size)
{
	return GG_NV_ERR_INSUFFICIENT_PERMISSIONS;
}

/*
 * A call of rm_ioctl without nvidia_unlocked_ioctl around it: decided as
 * one without per-call state (fail closed where the policy gates NVIDIA).
 */
static void gg_nv_orphan(struct gg_call *c)
{
	memset(c, 0, sizeof(*c));
	c->orphan = 1;
	c->task = current;
	c->family = GG_FAM_NVIDIA;
	gg_default_device(MKDEV(GG_NV_MAJOR, GG_NV_CTL_MIN), &c->device);
	c->uid = from_kuid(&init_user_ns, current_uid());
	c->gid = from_kgid(&init_user_ns, current_gid());
	get_task_comm(c->comm, current);
	atomic64_inc(&gg_stats.no_context);
}

/* SysV x86-64: rm_ioctl(sp, nv, nvfp, Command = ecx, pData = r8, dataSize = r9d) */
static int gg_rm_ioctl_pre(struct kprobe *p, struct pt_regs *regs)
{
	u32 cmd = (u32)regs->cx, size = (u32)regs->r9, off;
	void *data = (void *)regs->r8;
	struct gg_call *c = gg_call_current(GG_FAM_NVIDIA), orphan;
	struct gg_kcopy k = {.arg = data, .arg_len = min_t(u32, size, GG_ARG_MAX)};
	bool control = cmd == GG_NV_ESC_RM_CONTROL && size == GG_NV_NVOS54_SIZE;

	atomic64_inc(&container_of(p, struct gg_khook, kp)->hits);
	if (!c) {
		gg_nv_orphan(&orphan);
		c = &orphan;
	}
	c->escape = cmd;
	c->size = size;
	c->data = data;
	c->deferred = 0;
	/* the request word as issued (a register), unless XFER tunnelled it */
	c->rm_request = _IOC_NR(c->request) == cmd && _IOC_SIZE(c->request) == size
				? c->request
				: gg_nv_request(cmd, size);
	if (control)
		memcpy(c->header, data, GG_NV_NVOS54_SIZE);
	if (gg_kdecide(c, GG_HOOK_KMOD_RM_IOCTL, c->rm_request, &k, control) != GG_DECIDED_DENY)
		return 0;
	c->refused = 1;
	off = gg_nv_escape_status_offset(cmd, size);
	if (off && off + 4 <= size) {
		*(u32 *)((u8 *)data + off) = GG_NV_ERR_INSUFFICIENT_PERMISSIONS;
		c->nv_status = GG_NV_ERR_INSUFFICIENT_PERMISSIONS;
		c->status_valid = 1;
		regs->ip = (unsigned long)gg_rm_ioctl_refused;
	} else {
		regs->ip = (unsigned long)gg_rm_ioctl_refused_status;
	}
	return 1; /* resume at regs->ip: the driver never runs it */
}

struct gg_rm_ret {
	void *data;
	u32 cmd;
	u32 size;
};

static int gg_rm_ioctl_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct gg_rm_ret *r = (struct gg_rm_ret *)ri->data;

	r->cmd = (u32)regs->cx;
	r->size = (u32)regs->r9;
	r->data = (void *)regs->r8;
	return 0;
}

static u32 gg_u32_at(const void *p, u32 off)
{
	u32 v;

	memcpy(&v, (const u8 *)p + off, sizeof(v));
	return v;
}

/*
 * rm_ioctl's answer, in its kernel copy (before nvidia_ioctl copies it out
 * and frees it): the status for the record, and the objects the driver
 * allocated or freed, so that controls on them are decoded with their
 * class (BINAPI objects, the strict profile).
 */
static int gg_rm_ioctl_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct gg_rm_ret *r = (struct gg_rm_ret *)ri->data;
	struct gg_call *c = gg_call_current(GG_FAM_NVIDIA);
	u32 off = gg_nv_escape_status_offset(r->cmd, r->size), status;

	if (regs_return_value(regs) != GG_NV_OK || !r->data)
		return 0;
	status = off && off + 4 <= r->size ? gg_u32_at(r->data, off) : 0;
	if (c && off && off + 4 <= r->size) {
		c->nv_status = status;
		c->status_valid = 1;
	}
	if (status != GG_NV_OK)
		return 0;
	if (r->cmd == GG_NV_ESC_RM_ALLOC && (r->size == 32 || r->size == 48))
		gg_object_learn(gg_u32_at(r->data, 0), gg_u32_at(r->data, 8),
				gg_u32_at(r->data, 12));
	else if (r->cmd == GG_NV_ESC_RM_FREE && r->size == 16)
		gg_object_forget(gg_u32_at(r->data, 0), gg_u32_at(r->data, 8));
	return 0;
}

/*
 * In place of the glue's os_memcpy_from_user, which it reimplements
 * exactly (os-interface.c:522-529): the copy RM asked for, into RM's buffer,
 * then the decision on those bytes. Calling the hooked function back is
 * not needed here, so the wrapper never re-enters its own ftrace site.
 */
static u32 gg_os_memcpy_from_user(void *to, const void *from, u32 n)
{
	u32 status;
	struct gg_call *c;
	struct gg_kcopy k;

	atomic_inc(&gg_inflight);
	status = copy_from_user(to, (const void __user *)from, n) ? GG_NV_ERR_INVALID_ADDRESS
								  : GG_NV_OK;
	c = gg_call_current(GG_FAM_NVIDIA);

	if (status == GG_NV_OK && c && c->deferred && c->params_user == (u64)(unsigned long)from &&
	    n == c->params_size) {
		k.arg = c->header;
		k.arg_len = GG_NV_NVOS54_SIZE;
		k.params = to;
		k.params_user = (u64)(unsigned long)from;
		k.params_len = n;
		if (gg_kdecide(c, GG_HOOK_KMOD_OS_MEMCPY, c->rm_request, &k, false) ==
		    GG_DECIDED_DENY) {
			c->refused = 1;
			status = GG_NV_ERR_INSUFFICIENT_PERMISSIONS;
		}
	}
	atomic_dec(&gg_inflight);
	return status;
}

static long gg_nv_unlocked_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	gg_ioctl_fn orig = (gg_ioctl_fn)gg_orig_nv_ioctl;
	u32 want = min_t(u32, _IOC_SIZE(cmd), GG_ARG_MAX);
	u8 copy[GG_ARG_MAX];
	struct gg_kcopy k = {.arg = copy};
	struct gg_call c;
	long ret;

	atomic_inc(&gg_inflight);
	gg_call_begin(&c, GG_FAM_NVIDIA, file, cmd, arg);
	if (gg_nv_escape_in_glue(_IOC_NR(cmd))) {
		/* the class is the escape's; the bytes are for the record */
		if (want && !copy_from_user(copy, (void __user *)arg, want))
			k.arg_len = want;
		if (gg_kdecide(&c, GG_HOOK_KMOD_NV_IOCTL, cmd, &k, false) == GG_DECIDED_DENY) {
			c.refused = 1;
			ret = -EPERM;
			goto out;
		}
	}
	ret = orig(file, cmd, arg);
	if (!c.decided)
		gg_record_unseen(&c, c.deferred ? GG_HOOK_KMOD_OS_MEMCPY : GG_HOOK_KMOD_NV_IOCTL);
out:
	gg_record_exit(&c, ret);
	gg_call_end(&c);
	atomic_dec(&gg_inflight);
	return ret;
}

static struct gg_khook gg_nvidia_hooks[] = {
	{
		.symbol = "nvidia_unlocked_ioctl",
		.kind = GG_KHOOK_FTRACE,
		.record_hook = GG_HOOK_KMOD_NV_IOCTL,
		.wrapper = gg_nv_unlocked_ioctl,
		.orig = &gg_orig_nv_ioctl,
	},
	{
		.symbol = "rm_ioctl",
		.kind = GG_KHOOK_KPROBE,
		.record_hook = GG_HOOK_KMOD_RM_IOCTL,
		.pre = gg_rm_ioctl_pre,
		.kretprobe = 1,
		.entry = gg_rm_ioctl_entry,
		.ret = gg_rm_ioctl_ret,
		.ret_data = sizeof(struct gg_rm_ret),
	},
	{
		.symbol = "os_memcpy_from_user",
		.kind = GG_KHOOK_FTRACE,
		.record_hook = GG_HOOK_KMOD_OS_MEMCPY,
		.wrapper = gg_os_memcpy_from_user,
		.orig = &gg_orig_os_memcpy,
	},
};

struct gg_family gg_nvidia_family = {
	.name = "nvidia",
	.anchor = "rm_ioctl",
	.hooks = gg_nvidia_hooks,
	.nhooks = ARRAY_SIZE(gg_nvidia_hooks),
};
