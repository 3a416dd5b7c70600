// SPDX-License-Identifier: GPL-2.0
/*
 * The module's decision: the gate of kmod/common/gg_gate.h (the same
 * function the BPF programs and user space instantiate), reading the
 * driver's own kernel copy of the request. Nothing here reads user memory
 * to decide, so nothing a second thread does can change what was decided
 * on: the driver runs on the bytes the gate saw.
 *
 * A decision is built in this CPU's scratch (preemption off), then moved
 * into a record reserved in the ring before the grant is looked up: a
 * gated command is allowed only if its record exists (fail closed).
 */
#include <linux/percpu.h>
#include <linux/preempt.h>
#include <linux/rcupdate.h>
#include <linux/string.h>
#include <linux/ktime.h>
#include <linux/uaccess.h>
#include <linux/compat.h>
#include <linux/cred.h>
#include <asm/syscall.h>

#include "gpugate.h"
#include "gg_knob.h"

/* Read a stage from the driver's copy. Params not copied yet: deferred. */
static u32 gg_kread(const struct gg_kcopy *k, struct gg_raw *raw, u32 stage, u32 len, u64 src)
{
	switch (stage) {
	case GG_STAGE_ARG:
		if (len > GG_ARG_MAX || len > k->arg_len || !k->arg)
			return GG_CAP_ARG_FAULT;
		memcpy(raw->arg, k->arg, len);
		return 0;
	case GG_STAGE_PARAMS:
		if (!k->params || src != k->params_user)
			return GG_CAP_PARAMS_FAULT | GG_CAP_DEFERRED;
		if (len > GG_PARAMS_MAX || len > k->params_len)
			return GG_CAP_PARAMS_FAULT;
		memcpy(raw->params, k->params, len);
		return 0;
	default:
		/* the driver has resolved the XFER tunnel before any hook */
		return GG_CAP_INNER_FAULT;
	}
}

#define GG_KREAD(k, raw, stage, len, src) gg_kread(k, raw, stage, len, src)
#define GG_KVERIFY(k, raw, stage, src)	  0
#define GG_KOBJECT(k, client, object)	  gg_object_class(client, object)
#define GG_KLAST_LOOK(k, pol, e, arg)	  0
#define GG_KGRANT(k, e)			  gg_take_grant(e)
#define GG_KNO_GRANT(k, e)		  0

GG_DEFINE_GATE(gg_kgate, const struct gg_kcopy *, GG_KREAD, GG_KVERIFY, GG_KOBJECT, GG_KLAST_LOOK,
	       GG_KGRANT)
/* the same decision without spending a grant: may it wait for the params? */
GG_DEFINE_GATE(gg_kdry, const struct gg_kcopy *, GG_KREAD, GG_KVERIFY, GG_KOBJECT, GG_KLAST_LOOK,
	       GG_KNO_GRANT)

static DEFINE_PER_CPU(struct gg_ioctl_enter, gg_scratch);

static void gg_fill_hdr(struct gg_event_hdr *h, u16 type, u16 size, u64 seq)
{
	h->type = type;
	h->size = size;
	h->cpu = raw_smp_processor_id();
	h->seq = seq;
	h->boot_ns = ktime_get_boot_fast_ns();
	h->pid = current->tgid;
	h->tid = current->pid;
}

/* Who and where, from the call's context. */
static void gg_fill_enter(struct gg_ioctl_enter *e, const struct gg_call *c, u32 hook)
{
	memset(e, 0, sizeof(*e));
	gg_fill_hdr(&e->hdr, GG_EV_IOCTL_ENTER, sizeof(*e), 0);
	e->uid = c->uid;
	e->gid = c->gid;
	e->cgroup_id = c->cgroup_id;
	memcpy(e->comm, c->comm, sizeof(e->comm));
	memcpy(e->exe_name, c->exe_name, sizeof(e->exe_name));
	e->dev = c->dev;
	e->fd = -1;
	e->arg = c->arg;
	e->device = c->device;
	e->hook = hook;
}

/*
 * Whether waiting for the params could change anything: not if, without
 * them and without any grant, the command is allowed by its class.
 */
static bool gg_needs_params(const struct gg_kcopy *k, const struct gg_policy *pol,
			    struct gg_ioctl_enter *s)
{
	u32 flags = s->dec.flags;
	bool wait;

	if (!(s->raw.capture_flags & GG_CAP_DEFERRED) || (flags & GG_DF_OPAQUE_PARAMS))
		return false;
	/*
	 * a class that is the worst case of unread params waits for them too,
	 * so that the record names the command the params make
	 */
	s->dec.flags &= ~GG_DF_UNDECIDED;
	gg_kdry_decide(k, pol, s, 1, 1);
	wait = s->verdict != GG_VERDICT_ALLOW || gg_action_gates(s->action) ||
	       (flags & GG_DF_WORST_CASE);
	s->dec.flags = flags;
	return wait;
}

/*
 * Decide on the driver's copy of one request and record it. may_defer: the
 * params are not copied yet and may be decided where they are (NVIDIA RM
 * controls at rm_ioctl); then nothing is recorded here unless the class
 * settles it.
 */
enum gg_decision gg_kdecide(struct gg_call *c, u32 hook, u32 request, const struct gg_kcopy *k,
			    bool may_defer)
{
	struct gg_ioctl_enter *s, *e, *r;
	const struct gg_policy *pol;
	enum gg_decision d;

	preempt_disable();
	rcu_read_lock();
	pol = gg_policy_rcu();
	s = this_cpu_ptr(&gg_scratch);
	gg_fill_enter(s, c, hook);
	gg_kgate_capture(k, pol, s, request, (u64)(unsigned long)k->arg);
	if (may_defer && !c->orphan && gg_needs_params(k, pol, s)) {
		c->deferred = 1;
		c->params_user = s->dec.params_ptr;
		c->params_size = s->dec.params_size;
		rcu_read_unlock();
		preempt_enable();
		return GG_DECIDED_DEFER;
	}
	if (may_defer && (s->raw.capture_flags & GG_CAP_DEFERRED))
		s->dec.flags &= ~GG_DF_UNDECIDED; /* settled by the command id */
	r = gg_ring_reserve(sizeof(*s));
	e = r ? r : s;
	if (r)
		memcpy(r, s, sizeof(*s));
	e->hdr.seq = gg_next_seq();
	gg_kgate_decide(k, pol, e, r != NULL, !c->orphan);
	d = e->verdict == GG_VERDICT_DENY ? GG_DECIDED_DENY : GG_DECIDED_ALLOW;
	c->seq = e->hdr.seq;
	c->cls = e->dec.cls;
	c->decided = 1;
	c->deferred = 0;
	if (r) {
		gg_count(e->dec.cls, GG_CNT_SEEN);
		atomic64_inc(&gg_stats.records);
		gg_ring_commit(r);
	} else {
		gg_count(e->dec.cls, GG_CNT_DROPPED);
	}
	rcu_read_unlock();
	preempt_enable();
	return d;
}

/*
 * An ioctl that reached none of the post-copy hooks: the driver refused it
 * first, handled it in its glue after an XFER, or a hook was not there.
 * Recorded from the caller's memory as it is now, marked as read after
 * the call: nothing was decided on it.
 */
void gg_record_unseen(struct gg_call *c, u32 hook)
{
	struct gg_ioctl_enter *e = gg_ring_reserve(sizeof(*e));
	u32 want = min_t(u32, _IOC_SIZE(c->request), GG_ARG_MAX);
	u64 ptr, inner = 0;
	u32 len;

	if (!e) {
		gg_count(GG_CLASS_UNKNOWN, GG_CNT_DROPPED);
		return;
	}
	gg_fill_enter(e, c, hook);
	e->raw.request = c->request;
	e->raw.dev_kind = c->device.kind;
	e->raw.drm_driver = c->device.drm_driver;
	e->raw.capture_flags = GG_CAP_AFTER;
	if (want && !copy_from_user(e->raw.arg, u64_to_user_ptr(c->arg), want))
		e->raw.arg_len = want;
	else if (want)
		e->raw.capture_flags |= GG_CAP_ARG_FAULT;
	if (gg_xfer_ref(&e->raw, &ptr, &len) && len) {
		inner = ptr;
		if (!copy_from_user(e->raw.inner, u64_to_user_ptr(inner), len))
			e->raw.inner_len = len;
		else
			e->raw.capture_flags |= GG_CAP_INNER_FAULT;
	}
	if (gg_params_ref(&e->raw, &ptr, &len) && len) {
		if (!copy_from_user(e->raw.params, u64_to_user_ptr(ptr), len))
			e->raw.params_len = len;
		else
			e->raw.capture_flags |= GG_CAP_PARAMS_FAULT;
	}
	gg_decode(&e->raw, &e->dec);
	rcu_read_lock();
	e->mode = gg_policy_rcu()->mode;
	rcu_read_unlock();
	e->verdict = GG_VERDICT_ALLOW;
	e->reason = GG_WHY_UNDECIDED;
	e->hdr.seq = gg_next_seq();
	c->seq = e->hdr.seq;
	c->cls = e->dec.cls;
	c->decided = 1;
	atomic64_inc(&gg_stats.undecided);
	gg_count(e->dec.cls, GG_CNT_SEEN);
	atomic64_inc(&gg_stats.records);
	gg_ring_commit(e);
}

void gg_record_exit(struct gg_call *c, long ret)
{
	struct gg_ioctl_exit *x;

	if (!c->seq)
		return;
	x = gg_ring_reserve(sizeof(*x));
	if (!x) {
		gg_count(c->cls, GG_CNT_EXIT_DROPPED);
		return;
	}
	memset(x, 0, sizeof(*x));
	gg_fill_hdr(&x->hdr, GG_EV_IOCTL_EXIT, sizeof(*x), c->seq);
	x->enter_seq = c->seq;
	x->ret = ret;
	x->nv_status = c->nv_status;
	x->status_valid = c->status_valid;
	x->cls = c->cls;
	gg_ring_commit(x);
}

/* Every change of the module's tables, and who made it. */
void gg_config_event(u32 op, u64 object, const char *detail)
{
	struct gg_kmod_config_event *ev = gg_ring_reserve(sizeof(*ev));

	atomic64_inc(&gg_stats.config_changes);
	if (!ev) {
		atomic64_inc(&gg_stats.config_dropped);
		return;
	}
	memset(ev, 0, sizeof(*ev));
	gg_fill_hdr(&ev->hdr, GG_EV_KMOD_CONFIG, sizeof(*ev), 0);
	ev->uid = from_kuid(&init_user_ns, current_uid());
	ev->op = op;
	ev->object = object;
	get_task_comm(ev->comm, current);
	if (detail)
		strscpy(ev->detail, detail, sizeof(ev->detail));
	gg_ring_commit(ev);
}

static void gg_knob_fill(struct gg_knob_event *e, const struct gg_knob_call *w)
{
	const struct cred *cred = current_cred();

	memset(e, 0, sizeof(*e));
	gg_fill_hdr(&e->hdr, GG_EV_KNOB, sizeof(*e), 0);
	e->uid = from_kuid(&init_user_ns, cred->uid);
	e->gid = from_kgid(&init_user_ns, cred->gid);
	e->cgroup_id = gg_cgroup_id();
	get_task_comm(e->comm, current);
	gg_exe_name(e->exe_name, sizeof(e->exe_name));
	e->key = w->key;
	e->knob = w->knob;
	e->syscall_nr = (u32)syscall_get_nr(current, task_pt_regs(current));
	e->compat = in_compat_syscall();
	e->offset = w->offset;
	e->length = w->length;
	e->call = GG_WC_KERNEL;
	e->hook = w->hook;
	e->op = w->op;
	e->bar = w->bar;
	e->prot = w->prot;
	e->capture_flags = w->capture_flags;
	if (w->value) {
		e->value_len = min_t(u32, w->value_len, GG_KNOB_VALUE_MAX);
		memcpy(e->value, w->value, e->value_len);
	}
}

static void gg_knob_decide_filled(struct gg_knob_event *e, const struct gg_policy *pol,
				  bool recorded)
{
	gg_knob_decode_event(e);
	GG_KNOB_DECIDE(pol, e, recorded, gg_take_knob_grant(e));
}

/*
 * Decide on one write to a knob or mapping of a BAR and record it: true to
 * refuse. The same decoder and GG_GATE_DECIDE as the BPF gate's, on what
 * the kernel passes the file's own function. Without room in the ring the
 * decision is made on the stack, unrecorded (a gated write is then denied).
 */
bool gg_knob_kdecide(const struct gg_knob_call *w)
{
	struct gg_knob_event *r, spare;
	const struct gg_policy *pol;
	bool deny;

	preempt_disable();
	rcu_read_lock();
	pol = gg_policy_rcu();
	r = gg_ring_reserve(sizeof(*r));
	if (r) {
		gg_knob_fill(r, w);
		r->hdr.seq = gg_next_seq();
		gg_knob_decide_filled(r, pol, true);
		deny = r->verdict == GG_VERDICT_DENY;
		gg_count(r->dec.cls, GG_CNT_SEEN);
		atomic64_inc(&gg_stats.records);
		gg_ring_commit(r);
	} else {
		gg_knob_fill(&spare, w);
		gg_knob_decide_filled(&spare, pol, false);
		deny = spare.verdict == GG_VERDICT_DENY;
		gg_count(spare.dec.cls, GG_CNT_DROPPED);
	}
	rcu_read_unlock();
	preempt_enable();
	return deny;
}
