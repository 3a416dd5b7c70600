// SPDX-License-Identifier: GPL-2.0
/*
 * The hook machinery. A driver family (nvidia.c, drm.c) is a table of
 * symbols, each hooked one of two ways:
 *   ftrace   an IPMODIFY ftrace_ops at the function's entry sends every
 *            call to the family's wrapper, which may call the function
 *            itself (calls from this module pass through) or answer in its
 *            place; for functions built with an ftrace site (the driver's
 *            glue, the DRM core);
 *   kprobe   an int3 kprobe whose pre-handler may send the call to a stub
 *            (regs->ip) instead; for functions without an ftrace site
 *            (NVIDIA's RM core is built without -mfentry). An empty
 *            post-handler keeps the probe unoptimized, since an optimized
 *            probe ignores a changed regs->ip (Documentation/trace/kprobes.rst).
 *            A kretprobe beside it sees the function's result;
 *   table    one IPMODIFY ftrace_ops on every handler a driver's dispatch
 *            table names (the symbol is the table; the family reads it):
 *            the family's callback decides at the handler's entry, on its
 *            arguments, and may send the call to a refusal stub. For
 *            drivers whose only post-copy points are their handlers
 *            (amdkfd); the table, not a list of names, says which exist.
 *
 * Symbols are resolved with kallsyms_lookup_name (found once through a
 * kprobe on it, as it is not exported). A family attaches whole or not at
 * all: when the module that holds its
 * anchor symbol is loaded (now, or later: a module notifier), every hook
 * must attach, or none stays and the refusal names the symbol that failed.
 * When that module goes, the family detaches before it is freed.
 */
#include <linux/kallsyms.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/string.h>

#include "gpugate.h"

static struct gg_family *gg_families[GG_FAM_COUNT] = {
	[GG_FAM_NVIDIA] = &gg_nvidia_family,
	[GG_FAM_DRM] = &gg_drm_family,
	[GG_FAM_KFD] = &gg_kfd_family,
	[GG_FAM_KNOB] = &gg_knob_family,
};

static DEFINE_MUTEX(gg_hooks_lock);

static void notrace gg_ftrace_thunk(unsigned long ip, unsigned long parent_ip,
				    struct ftrace_ops *ops, struct ftrace_regs *fregs)
{
	struct gg_khook *h = container_of(ops, struct gg_khook, ops);
	struct pt_regs *regs = ftrace_get_regs(fregs);

	/*
	 * our own wrapper calling the function it wraps; no regs: cannot happen
	 * with FTRACE_OPS_FL_SAVE_REGS, and nothing to redirect without them
	 */
	if (within_module(parent_ip, THIS_MODULE) || !regs)
		return;
	atomic64_inc(&h->hits);
	regs->ip = (unsigned long)h->wrapper;
}

static void notrace gg_ftrace_table_thunk(unsigned long ip, unsigned long parent_ip,
					  struct ftrace_ops *ops, struct ftrace_regs *fregs)
{
	struct gg_khook *h = container_of(ops, struct gg_khook, ops);
	struct pt_regs *regs = ftrace_get_regs(fregs);

	if (!regs)
		return;
	atomic64_inc(&h->hits);
	h->on_call(h, ip, regs);
}

/* An empty post-handler: it keeps the kprobe unoptimized (see above). */
static void gg_kprobe_post(struct kprobe *p, struct pt_regs *regs, unsigned long flags)
{
}

/*
 * The symbol that holds addr, from sprint_symbol's "name+off/size [module]":
 * its start (an IBT kernel probes after the ENDBR), its name and its module
 * ("" when built in). Returns the start; name and module may be NULL. (The
 * size is not taken: for a module's data symbols kallsyms measures it to
 * the end of the module's text, which lies below them.)
 */
unsigned long gg_symbol_info(unsigned long addr, char *name, size_t name_len, char *module,
			     size_t len)
{
	char buf[KSYM_SYMBOL_LEN], *plus, *slash, *open;
	unsigned long off = 0;

	sprint_symbol(buf, addr);
	plus = strchr(buf, '+');
	slash = plus ? strchr(plus, '/') : NULL;
	if (plus && slash) {
		*slash = 0;
		if (kstrtoul(plus + 1, 0, &off))
			off = 0;
		*slash = '/';
	}
	if (name) {
		if (plus)
			*plus = 0;
		strscpy(name, buf, name_len);
		if (plus)
			*plus = '+';
	}
	if (module) {
		module[0] = 0;
		open = strchr(buf, '[');
		if (open) {
			strscpy(module, open + 1, len);
			if (strchr(module, ']'))
				*strchr(module, ']') = 0;
		}
	}
	return addr - off;
}

/*
 * kallsyms_lookup_name is not exported: a kprobe resolves it once, at load
 * (a cold function; a transient probe on the drivers' hot paths would be a
 * text patch under their callers), and it resolves the rest.
 */
static unsigned long (*gg_kallsyms_lookup_name)(const char *name);

static int gg_find_kallsyms(void)
{
	struct kprobe kp = {.symbol_name = "kallsyms_lookup_name"};
	int err = register_kprobe(&kp);

	if (err)
		return err;
	gg_kallsyms_lookup_name = (void *)gg_symbol_info((unsigned long)kp.addr, NULL, 0, NULL, 0);
	unregister_kprobe(&kp);
	return 0;
}

/* Where a symbol is, and the module that holds it ("" when built in). */
static int gg_resolve(const char *symbol, unsigned long *start, char *module, size_t len)
{
	unsigned long addr = gg_kallsyms_lookup_name(symbol);

	if (!addr)
		return -ENOENT;
	*start = gg_symbol_info(addr, NULL, 0, module, len);
	return 0;
}

static void gg_hook_detach(struct gg_khook *h)
{
	if (h->ftrace_on) {
		unregister_ftrace_function(&h->ops);
		ftrace_free_filter(&h->ops);
		h->ftrace_on = false;
	}
	if (h->kprobe_on) {
		unregister_kprobe(&h->kp);
		h->kprobe_on = false;
	}
	if (h->kretprobe_on) {
		unregister_kretprobe(&h->krp);
		h->kretprobe_on = false;
	}
}

/* One IPMODIFY ftrace_ops on these functions' ftrace sites, calling thunk. */
static int gg_ftrace_attach(struct gg_khook *h, ftrace_func_t thunk, const unsigned long *funcs,
			    unsigned int n, char *why, size_t len)
{
	unsigned int i;
	int err;

	memset(&h->ops, 0, sizeof(h->ops));
	h->ops.func = thunk;
	h->ops.flags = FTRACE_OPS_FL_SAVE_REGS | FTRACE_OPS_FL_IPMODIFY | FTRACE_OPS_FL_RECURSION;
	for (i = 0; i < n; i++) {
		err = ftrace_set_filter_ip(&h->ops, funcs[i], 0, 0);
		if (err) {
			ftrace_free_filter(&h->ops);
			snprintf(why, len, "%s: %ps has no ftrace site (%d)", h->symbol,
				 (void *)funcs[i], err);
			return err;
		}
	}
	err = register_ftrace_function(&h->ops);
	if (err) {
		ftrace_free_filter(&h->ops);
		snprintf(why, len, "%s: ftrace refused (%d; another IPMODIFY user?)", h->symbol,
			 err);
		return err;
	}
	h->ftrace_on = true;
	return 0;
}

static int gg_hook_attach(struct gg_khook *h, char *why, size_t len)
{
	char module[MODULE_NAME_LEN];
	int err = gg_resolve(h->symbol, &h->addr, module, sizeof(module));

	if (err) {
		snprintf(why, len, "no symbol %s (%d)", h->symbol, err);
		return err;
	}
	if (h->kind == GG_KHOOK_TABLE) {
		err = h->read_table(h, h->addr, module, why, len);
		return err ? err
			   : gg_ftrace_attach(h, gg_ftrace_table_thunk, h->funcs, h->nfuncs, why,
					      len);
	}
	if (h->kind == GG_KHOOK_FTRACE) {
		*h->orig = h->addr;
		return gg_ftrace_attach(h, gg_ftrace_thunk, &h->addr, 1, why, len);
	}
	if (h->kretprobe) {
		memset(&h->krp, 0, sizeof(h->krp));
		h->krp.kp.addr = (kprobe_opcode_t *)h->addr;
		h->krp.entry_handler = h->entry;
		h->krp.handler = h->ret;
		h->krp.data_size = h->ret_data;
		h->krp.maxactive = max_t(int, 64, 4 * num_possible_cpus());
		err = register_kretprobe(&h->krp);
		if (err) {
			snprintf(why, len, "%s: kretprobe refused (%d)", h->symbol, err);
			return err;
		}
		h->kretprobe_on = true;
	}
	memset(&h->kp, 0, sizeof(h->kp));
	h->kp.addr = (kprobe_opcode_t *)h->addr;
	h->kp.pre_handler = h->pre;
	h->kp.post_handler = gg_kprobe_post;
	err = register_kprobe(&h->kp);
	if (err) {
		gg_hook_detach(h);
		snprintf(why, len, "%s: kprobe refused (%d)", h->symbol, err);
		return err;
	}
	h->kprobe_on = true;
	return 0;
}

static void gg_family_detach(struct gg_family *f)
{
	unsigned int i;

	for (i = 0; i < f->nhooks; i++)
		gg_hook_detach(&f->hooks[i]);
	if (f->state == GG_KHOOK_ATTACHED)
		gg_config_event(GG_KCFG_HOOK, 0, f->name);
	f->state = GG_KHOOK_WAITING;
	f->module[0] = 0;
}

/* Attach every hook of a family whose driver holds the anchor, or none. */
static void gg_family_try(struct gg_family *f)
{
	unsigned long addr;
	unsigned int i;
	int err;

	if (f->state == GG_KHOOK_ATTACHED)
		return;
	if (gg_resolve(f->anchor, &addr, f->module, sizeof(f->module))) {
		f->state = GG_KHOOK_WAITING;
		f->module[0] = 0;
		return;
	}
	for (i = 0; i < f->nhooks; i++) {
		err = gg_hook_attach(&f->hooks[i], f->why, sizeof(f->why));
		if (err) {
			while (i--)
				gg_hook_detach(&f->hooks[i]);
			f->state = GG_KHOOK_REFUSED;
			f->error = err;
			pr_warn("gpugate: not gating %s (module %s): %s\n", f->name,
				f->module[0] ? f->module : "built in", f->why);
			gg_config_event(GG_KCFG_HOOK, 2, f->name);
			return;
		}
	}
	f->state = GG_KHOOK_ATTACHED;
	f->error = 0;
	f->why[0] = 0;
	pr_info("gpugate: gating %s (module %s)\n", f->name, f->module[0] ? f->module : "built in");
	gg_config_event(GG_KCFG_HOOK, 1, f->name);
}

static int gg_module_event(struct notifier_block *nb, unsigned long state, void *data)
{
	struct module *mod = data;
	unsigned int i;

	mutex_lock(&gg_hooks_lock);
	for (i = 0; i < GG_FAM_COUNT; i++) {
		struct gg_family *f = gg_families[i];

		if (state == MODULE_STATE_LIVE && f->state != GG_KHOOK_ATTACHED)
			gg_family_try(f);
		else if (state == MODULE_STATE_GOING && f->state != GG_KHOOK_WAITING &&
			 !strcmp(f->module, mod->name))
			gg_family_detach(f);
	}
	mutex_unlock(&gg_hooks_lock);
	return NOTIFY_OK;
}

static struct notifier_block gg_module_nb = {
	.notifier_call = gg_module_event,
};

int gg_hooks_init(void)
{
	unsigned int i;
	int err = gg_find_kallsyms();

	if (err) {
		pr_err("gpugate: cannot find kallsyms_lookup_name (%d): no symbol resolves\n", err);
		return err;
	}
	err = register_module_notifier(&gg_module_nb);
	if (err)
		return err;
	mutex_lock(&gg_hooks_lock);
	for (i = 0; i < GG_FAM_COUNT; i++)
		gg_family_try(gg_families[i]);
	mutex_unlock(&gg_hooks_lock);
	return 0;
}

void gg_hooks_exit(void)
{
	unsigned int i;

	unregister_module_notifier(&gg_module_nb);
	mutex_lock(&gg_hooks_lock);
	for (i = 0; i < GG_FAM_COUNT; i++)
		gg_family_detach(gg_families[i]);
	mutex_unlock(&gg_hooks_lock);
}

bool gg_family_attached(u32 family)
{
	return family < GG_FAM_COUNT && READ_ONCE(gg_families[family]->state) == GG_KHOOK_ATTACHED;
}

int gg_hooks_status(struct gg_kmod_hook *out, u32 cap, u32 *total)
{
	unsigned int i, j;
	u32 n = 0;

	mutex_lock(&gg_hooks_lock);
	*total = 0;
	for (i = 0; i < GG_FAM_COUNT; i++) {
		struct gg_family *f = gg_families[i];

		for (j = 0; j < f->nhooks; j++, (*total)++) {
			struct gg_khook *h = &f->hooks[j];
			struct gg_kmod_hook *o;

			if (n >= cap)
				continue;
			o = &out[n++];
			memset(o, 0, sizeof(*o));
			strscpy(o->symbol, h->symbol, sizeof(o->symbol));
			strscpy(o->driver, f->name, sizeof(o->driver));
			strscpy(o->module, f->module, sizeof(o->module));
			o->kind = h->kind;
			o->state = f->state;
			o->hook = h->record_hook;
			o->error = f->error;
			o->hits = atomic64_read(&h->hits);
			strscpy(o->why, f->state == GG_KHOOK_WAITING ? "" : f->why, sizeof(o->why));
		}
	}
	mutex_unlock(&gg_hooks_lock);
	return n;
}
