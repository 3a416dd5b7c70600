// SPDX-License-Identifier: GPL-2.0
/*
 * The AMD KFD family: /dev/kfd, the compute (ROCm/HSA) node amdgpu creates
 * when it loads (torvalds/linux drivers/gpu/drm/amd/amdkfd/kfd_chardev.c;
 * lines for 6.1 and 6.12 in ../shared/reference/kmod-hooks.md section 4):
 *
 *   kfd_ioctl  (static, the file operation; 6.1 :2786, 6.12 :3234; 32-bit
 *       callers reach it through compat_ptr_ioctl) - the call's context:
 *       the struct file, the request word. An ioctl it refuses before any
 *       handler (an nr outside the table, another process's fd, a fault) is
 *       recorded after the call, as undecided.
 *   amdkfd_ioctls[]  (its dispatch table, indexed by _IOC_NR: the kernel's
 *       cmd word, flags, the handler) - kfd_ioctl copies the caller's struct
 *       into kdata, zero-extended to the larger of the caller's and the
 *       kernel's size (6.1 :2877, 6.12 :3321), then calls
 *       func(filep, process, kdata) (6.1 :2885, 6.12 :3329). No shared
 *       function runs after the copy, so every handler the table names is
 *       hooked and decides on kdata, the bytes the handler uses. A refusal
 *       sends the call to a stub that returns -EPERM, which kfd_ioctl
 *       returns after copying the caller's own bytes back.
 *
 * The handlers are found through the table, not by a list of names: the
 * set differs between kernels, and a handler the table names but a list
 * missed would run ungated. The table's layout is checked, not assumed:
 * {unsigned int cmd; int flags; handler; ...} has kept cmd and the handler
 * at offsets 0 and 8 since amdkfd began, while the entry size changes (a
 * validate hook was added: 40 bytes in Debian's 6.1 and 6.12); the entry
 * size is the one for which each entry's cmd has its own index as _IOC_NR
 * and type 'K' and each handler is the start of a kfd_ioctl_* function in
 * the driver's module.
 */
#include <linux/compat.h>
#include <linux/kallsyms.h>
#include <linux/module.h>

#include "gpugate.h"

#define GG_KFD_IOCTL_BASE  'K'
#define GG_KFD_NR_MAX	   64
#define GG_KFD_HANDLER_OFF 8

typedef long (*gg_ioctl_fn)(struct file *file, unsigned int cmd, unsigned long arg);

static unsigned long gg_orig_kfd_ioctl;
/* by nr, as read from the table at attach: the kernel's cmd and handler */
static u32 gg_kfd_cmd[GG_KFD_NR_MAX];
static unsigned long gg_kfd_handler_of[GG_KFD_NR_MAX];
static unsigned int gg_kfd_nr_count;
/* the distinct handlers hooked */
static unsigned long gg_kfd_handlers[GG_KFD_NR_MAX];

/* /dev/kfd's major is dynamic: a node the daemon's table lacks is still KFD. */
static void gg_kfd_device(struct gg_call *c)
{
	if (c->device.kind != GG_DEV_NONE)
		return;
	c->device.kind = GG_DEV_KFD;
	c->device.vendor = GG_VENDOR_AMD;
	c->device.gpu_index = -1;
}

static long gg_kfd_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	gg_ioctl_fn orig = (gg_ioctl_fn)gg_orig_kfd_ioctl;
	struct gg_call c;
	long ret;

	atomic_inc(&gg_inflight);
	gg_call_begin(&c, GG_FAM_KFD, file, cmd, arg);
	gg_kfd_device(&c);
	c.compat = in_compat_syscall();
	ret = orig(file, cmd, arg);
	if (!c.decided)
		gg_record_unseen(&c, GG_HOOK_KMOD_KFD);
	gg_record_exit(&c, ret);
	gg_call_end(&c);
	atomic_dec(&gg_inflight);
	return ret;
}

/* A refused handler: the driver's own answer to a caller without the right. */
static noinline notrace int gg_kfd_refused(struct file *filep, void *process, void *data)
{
	return -EPERM;
}

/*
 * Which table entry a hooked handler belongs to, from its ftrace site (the
 * function's start, or just past an ENDBR); -1 if none.
 */
static int gg_kfd_nr_of(unsigned long ip)
{
	unsigned int nr;

	for (nr = 0; nr < gg_kfd_nr_count; nr++)
		if (gg_kfd_handler_of[nr] && ip - gg_kfd_handler_of[nr] < 16)
			return nr;
	return -1;
}

/*
 * A handler's entry: handler(filep = rdi, process = rsi, kdata = rdx).
 * Decided on kdata; refused by resuming at the stub.
 */
static void gg_kfd_handler_entry(struct gg_khook *h, unsigned long ip, struct pt_regs *regs)
{
	struct gg_call *c = gg_call_current(GG_FAM_KFD), orphan;
	void *kdata = (void *)regs->dx;
	struct gg_kcopy k = {.arg = kdata};
	u32 nr, have;
	int found;

	if (c && c->decided)
		return; /* one handler calling another: the first decision stands */
	if (!c) {
		/* not through kfd_ioctl: the table's own request word */
		found = gg_kfd_nr_of(ip);
		gg_call_begin(&orphan, GG_FAM_KFD, (struct file *)regs->di,
			      found >= 0 ? gg_kfd_cmd[found] : 0, 0);
		gg_kfd_device(&orphan);
		orphan.orphan = 1;
		atomic64_inc(&gg_stats.no_context);
		c = &orphan;
	}
	/* kdata holds the larger of the caller's size and the kernel's */
	nr = _IOC_NR(c->request);
	have = _IOC_SIZE(c->request);
	if (nr < gg_kfd_nr_count)
		have = max_t(u32, have, _IOC_SIZE(gg_kfd_cmd[nr]));
	k.arg_len = kdata ? min_t(u32, have, GG_ARG_MAX) : 0;
	if (gg_kdecide(c, GG_HOOK_KMOD_KFD, c->request, &k, false) == GG_DECIDED_DENY) {
		c->refused = 1;
		regs->ip = (unsigned long)gg_kfd_refused;
	}
	if (c == &orphan)
		gg_call_end(c);
}

/*
 * Is fn a handler: the start of a kfd_ioctl_* function in the driver's
 * module? (Every handler has had that name; a pointer to anything else is
 * not a table entry.)
 */
static bool gg_kfd_handler_ok(unsigned long fn, const char *module)
{
	char name[KSYM_NAME_LEN], owner[MODULE_NAME_LEN];

	return fn && gg_symbol_info(fn, name, sizeof(name), owner, sizeof(owner)) == fn &&
	       !strcmp(owner, module) && !strncmp(name, "kfd_ioctl_", 10);
}

enum gg_kfd_entry { GG_KFD_ENTRY_BAD, GG_KFD_ENTRY_HOLE, GG_KFD_ENTRY_OK };

static enum gg_kfd_entry gg_kfd_entry_at(const u8 *table, unsigned int stride, unsigned int nr,
					 const char *module)
{
	const u8 *e = table + (size_t)nr * stride;
	u32 cmd = *(const u32 *)e;
	unsigned long fn = *(const unsigned long *)(e + GG_KFD_HANDLER_OFF);

	if (!cmd && !fn)
		return GG_KFD_ENTRY_HOLE;
	if (_IOC_NR(cmd) != nr || _IOC_TYPE(cmd) != GG_KFD_IOCTL_BASE ||
	    !gg_kfd_handler_ok(fn, module))
		return GG_KFD_ENTRY_BAD;
	return GG_KFD_ENTRY_OK;
}

/*
 * The entries of the table read with this entry size: from nr 1 (nr 0 is
 * AMDKFD_COMMAND_START's hole) until the first that is not an entry (the
 * data after the table; kallsyms cannot say where a module's data symbol
 * ends). 0 if entries 1 and 2 are not both entries.
 */
static unsigned int gg_kfd_entries(const u8 *table, unsigned int stride, const char *module)
{
	unsigned int nr, last = 0;

	if (gg_kfd_entry_at(table, stride, 0, module) != GG_KFD_ENTRY_HOLE)
		return 0;
	for (nr = 1; nr < GG_KFD_NR_MAX; nr++) {
		enum gg_kfd_entry k = gg_kfd_entry_at(table, stride, nr, module);

		if (k == GG_KFD_ENTRY_BAD)
			break;
		if (k == GG_KFD_ENTRY_OK)
			last = nr;
	}
	return last >= 2 ? last + 1 : 0;
}

static int gg_kfd_read_table(struct gg_khook *h, unsigned long table, const char *module, char *why,
			     size_t len)
{
	const u8 *t = (const u8 *)table;
	unsigned int stride, found = 0, n = 0, nr, i;

	for (stride = GG_KFD_HANDLER_OFF + sizeof(void *); stride <= 64; stride += 8) {
		unsigned int entries = gg_kfd_entries(t, stride, module);

		if (!entries)
			continue;
		if (found) {
			snprintf(why, len, "%s: layout ambiguous (%u or %u bytes an entry)",
				 h->symbol, found, stride);
			return -EINVAL;
		}
		found = stride;
		n = entries;
	}
	if (!found) {
		snprintf(why, len, "%s: not {cmd, flags, kfd_ioctl_* handler} entries", h->symbol);
		return -EINVAL;
	}
	memset(gg_kfd_cmd, 0, sizeof(gg_kfd_cmd));
	memset(gg_kfd_handler_of, 0, sizeof(gg_kfd_handler_of));
	h->nfuncs = 0;
	h->funcs = gg_kfd_handlers;
	for (nr = 0; nr < n; nr++) {
		const u8 *e = t + (size_t)nr * found;
		unsigned long fn = *(const unsigned long *)(e + GG_KFD_HANDLER_OFF);

		gg_kfd_cmd[nr] = *(const u32 *)e;
		gg_kfd_handler_of[nr] = fn;
		if (!fn)
			continue;
		for (i = 0; i < h->nfuncs && gg_kfd_handlers[i] != fn; i++)
			;
		if (i == h->nfuncs)
			gg_kfd_handlers[h->nfuncs++] = fn;
	}
	gg_kfd_nr_count = n;
	pr_info("gpugate: %s: %u commands, %u handlers, %u bytes an entry\n", h->symbol, n - 1,
		h->nfuncs, found);
	return 0;
}

static struct gg_khook gg_kfd_hooks[] = {
	{
		.symbol = "kfd_ioctl",
		.kind = GG_KHOOK_FTRACE,
		.record_hook = GG_HOOK_KMOD_KFD,
		.wrapper = gg_kfd_ioctl,
		.orig = &gg_orig_kfd_ioctl,
	},
	{
		.symbol = "amdkfd_ioctls",
		.kind = GG_KHOOK_TABLE,
		.record_hook = GG_HOOK_KMOD_KFD,
		.read_table = gg_kfd_read_table,
		.on_call = gg_kfd_handler_entry,
	},
};

struct gg_family gg_kfd_family = {
	.name = "kfd",
	.anchor = "amdkfd_ioctls",
	.hooks = gg_kfd_hooks,
	.nhooks = ARRAY_SIZE(gg_kfd_hooks),
};
