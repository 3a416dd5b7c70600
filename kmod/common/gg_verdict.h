/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * The shared verdict: from the decoded class, the policy in force and
 * whether a grant covers the request, to allow / deny / would-deny. Pure C
 * for the BPF LSM gate, the kernel module and user space (replay, what-if).
 */
#ifndef GPUGATE_VERDICT_H
#define GPUGATE_VERDICT_H

#include "../uapi/gpugate/policy.h"

/* Who asks for what, as far as the rules care. */
struct gg_subject {
	__u32 cls;
	__u32 dev;
	__u32 uid;
	__u32 vendor;
	__u64 cgroup_id;
	const char *comm; /* GG_COMM_LEN bytes */
};

static inline int gg_comm_eq(const char *a, const char *b)
{
	int i;

	for (i = 0; i < GG_COMM_LEN; i++) {
		if (a[i] != b[i])
			return 0;
		if (!a[i])
			return 1;
	}
	return 1;
}

/* The first rule that matches, as its index + 1; 0 when none does. */
static inline __u32 gg_match_rule(const struct gg_policy *p, const struct gg_subject *s)
{
	__u32 i;

	for (i = 0; i < GG_MAX_RULES; i++) {
		const struct gg_rule *r = &p->rules[i];

		if (i >= p->nrules)
			break;
		if ((r->match & GG_RM_CLASS) && !(r->classes & (1u << (s->cls & 31))))
			continue;
		if ((r->match & GG_RM_VENDOR) && r->vendor != s->vendor)
			continue;
		if ((r->match & GG_RM_DEV) && r->dev != s->dev)
			continue;
		if ((r->match & GG_RM_UID) && r->uid != s->uid)
			continue;
		if ((r->match & GG_RM_CGROUP) && r->cgroup_id != s->cgroup_id)
			continue;
		if ((r->match & GG_RM_COMM) && !gg_comm_eq(r->comm, s->comm))
			continue;
		return i + 1;
	}
	return 0;
}

/* The action for a subject; *rule gets the matching rule's index + 1, or 0. */
static inline __u32 gg_action_for(const struct gg_policy *p, const struct gg_subject *s,
				  __u32 *rule)
{
	__u32 idx = gg_match_rule(p, s);

	*rule = idx;
	if (idx)
		return p->rules[(idx - 1) & (GG_MAX_RULES - 1)].action;
	/* the mask keeps the index provably in range for older verifiers (6.1) */
	return p->action[(s->cls < GG_CLASS_COUNT ? s->cls : (__u32)GG_CLASS_UNKNOWN) &
			 (GG_CLASS_COUNT - 1)];
}

/*
 * The verdict for an action in a mode.
 * granted:  a live grant covers this GPU and class.
 * recorded: the record of this decision could be reserved; a gated command
 *           that cannot be recorded is denied (fail closed).
 */
static inline __u32 gg_verdict_of(__u32 mode, __u32 action, int granted, int recorded)
{
	if (action == GG_ACT_ALLOW || action == GG_ACT_LOG)
		return GG_VERDICT_ALLOW;
	if (action == GG_ACT_REQUIRE_SIGNATURE && granted && recorded)
		return GG_VERDICT_ALLOW;
	return mode == GG_MODE_ENFORCE ? (__u32)GG_VERDICT_DENY : (__u32)GG_VERDICT_WOULD_DENY;
}

/* What the gate decided, and why. */
struct gg_gate_result {
	__u8 verdict; /* enum gg_verdict */
	__u8 action;  /* enum gg_action that applied */
	__u8 reason;  /* enum gg_reason */
	__u8 pad;
	__u32 rule;	/* matching rule + 1, or 0 */
	__u32 grant_id; /* the grant spent, or 0 */
};

/*
 * Opaque and privileged, the RM controls the strict profile gates (DESIGN
 * section 2): any control on a BINAPI pass-through object, and GSS-legacy
 * controls with the root-only bits.
 */
static inline int gg_is_opaque_privileged(const struct gg_decoded *d)
{
	if (d->vendor != GG_VENDOR_NVIDIA || d->nr != 0x2A /* NV_ESC_RM_CONTROL */)
		return 0;
	return (d->flags & GG_DF_BINAPI) || ((d->flags & GG_DF_LEGACY) && d->priv == GG_PRIV_ROOT);
}

static inline int gg_action_gates(__u32 action)
{
	return action == GG_ACT_DENY || action == GG_ACT_REQUIRE_SIGNATURE;
}

/*
 * Does the policy fail closed on this vendor's nodes: deny what it cannot
 * read? Only where it gates something, and only where it can deny.
 */
static inline int gg_fails_closed(const struct gg_policy *p, __u32 vendor)
{
	return p->mode != GG_MODE_OBSERVE && vendor < 8 && (p->fail_closed_vendors >> vendor) & 1;
}

/*
 * The vendors whose nodes fail closed under a policy: those it gates
 * anything on, by a class's action (every vendor), by a rule (the rule's
 * vendor, or every vendor), or by the strict profile (NVIDIA). Derived, so
 * that the daemon and replay compute it alike.
 */
static inline __u8 gg_policy_fail_closed_vendors(const struct gg_policy *p)
{
	__u32 v, c, i, mask = 0;

	for (c = 0; c < GG_CLASS_COUNT; c++)
		if (gg_action_gates(p->action[c]))
			mask = 0xff;
	if (p->flags & GG_POLF_STRICT)
		mask |= 1u << GG_VENDOR_NVIDIA;
	for (i = 0; i < GG_MAX_RULES && i < p->nrules; i++) {
		const struct gg_rule *r = &p->rules[i];

		if (!gg_action_gates(r->action))
			continue;
		for (v = 0; v < GG_VENDOR_COUNT; v++)
			if (!(r->match & GG_RM_VENDOR) || r->vendor == v)
				mask |= 1u << v;
	}
	return (__u8)mask;
}

/* Does gpugate.ko decide on nodes of this kind (GG_POLF_KMOD_*)? */
static inline int gg_kmod_owns(const struct gg_policy *p, __u32 dev_kind)
{
	if ((p->flags & GG_POLF_KMOD_NVIDIA) &&
	    (dev_kind == GG_DEV_NVIDIA_CTL || dev_kind == GG_DEV_NVIDIA_GPU))
		return 1;
	if ((p->flags & GG_POLF_KMOD_KFD) && dev_kind == GG_DEV_KFD)
		return 1;
	return (p->flags & GG_POLF_KMOD_DRM) && dev_kind == GG_DEV_DRM;
}

static inline __u32 gg_refusal(__u32 mode)
{
	return mode == GG_MODE_ENFORCE ? (__u32)GG_VERDICT_DENY : (__u32)GG_VERDICT_WOULD_DENY;
}

/*
 * The gate's whole decision on a decoded request, in every home (BPF LSM,
 * the module, user-space replay). take_grant is the home's grant lookup:
 * it is called only when a signature is required and the record exists,
 * and it must spend one use atomically and return the grant's id (0: none).
 *   recorded:     the record of this decision could be reserved
 *   thread_state: per-thread state was available (BPF task storage)
 * Order matters: what could not be read is refused before any rule or
 * grant is consulted, so neither can be matched on bytes never read.
 */
#define GG_GATE_DECIDE(res, pol, subj, dec, recorded, thread_state, take_grant)                    \
	do {                                                                                       \
		__u32 rule_ = 0, action_ = gg_action_for((pol), (subj), &rule_);                   \
		int closed_ = gg_fails_closed((pol), (subj)->vendor);                              \
		/* the class's action or a rule's, before anything can refuse */                   \
		(res)->rule = rule_;                                                               \
		(res)->grant_id = 0;                                                               \
		(res)->pad = 0;                                                                    \
		(res)->reason = rule_ ? GG_WHY_RULE : GG_WHY_CLASS;                                \
		if (((pol)->flags & GG_POLF_STRICT) && !gg_action_gates(action_) &&                \
		    gg_is_opaque_privileged(dec)) {                                                \
			action_ = GG_ACT_REQUIRE_SIGNATURE;                                        \
			(res)->reason = GG_WHY_STRICT;                                             \
		}                                                                                  \
		(res)->action = action_;                                                           \
		if (closed_ && ((dec)->flags & GG_DF_UNDECIDED)) {                                 \
			(res)->verdict = gg_refusal((pol)->mode);                                  \
			(res)->reason = GG_WHY_CAPTURE;                                            \
		} else if (closed_ && !(thread_state)) {                                           \
			(res)->verdict = gg_refusal((pol)->mode);                                  \
			(res)->reason = GG_WHY_NO_THREAD_STATE;                                    \
		} else if (!gg_action_gates(action_)) {                                            \
			(res)->verdict = GG_VERDICT_ALLOW;                                         \
		} else if (!(recorded)) {                                                          \
			(res)->verdict = gg_refusal((pol)->mode);                                  \
			(res)->reason = GG_WHY_UNRECORDED;                                         \
		} else if ((pol)->flags & GG_POLF_LEDGER_DOWN) {                                   \
			(res)->verdict = gg_refusal((pol)->mode);                                  \
			(res)->reason = GG_WHY_LEDGER_DOWN;                                        \
		} else {                                                                           \
			(res)->verdict = gg_refusal((pol)->mode);                                  \
			if (action_ == GG_ACT_REQUIRE_SIGNATURE) {                                 \
				(res)->grant_id = (take_grant);                                    \
				if ((res)->grant_id) {                                             \
					(res)->verdict = GG_VERDICT_ALLOW;                         \
					(res)->reason = GG_WHY_GRANT;                              \
				}                                                                  \
			}                                                                          \
		}                                                                                  \
	} while (0)

/*
 * May a class's calls be recorded below full? Only the traffic classes:
 * what changes a GPU's configuration, what a policy may gate, and commands
 * no table names are recorded call by call, whatever the policy says.
 */
static inline int gg_class_may_summarize(__u32 cls)
{
	return cls == GG_CLASS_QUERY || cls == GG_CLASS_OTHER || cls == GG_CLASS_RESOURCE;
}

/*
 * What is odd about a request: a probe or a malformed call is recorded call
 * by call, never folded into a summary.
 */
#define GG_DF_ODD                                                                                  \
	(GG_DF_ARG_SHORT | GG_DF_INNER_SHORT | GG_DF_PARAMS_SHORT | GG_DF_ARG_FAULT |              \
	 GG_DF_INNER_FAULT | GG_DF_PARAMS_FAULT | GG_DF_BAD_SIZE | GG_DF_WRONG_NODE |              \
	 GG_DF_UNKNOWN_ESCAPE | GG_DF_XFER_TOO_BIG | GG_DF_XFER_NESTED | GG_DF_PARAMS_MISMATCH |   \
	 GG_DF_WORST_CASE | GG_DF_BINAPI | GG_DF_NONCANONICAL | GG_DF_NO_ARG | GG_DF_UNDECIDED |   \
	 GG_DF_HEADER_SHORT | GG_DF_DRIVER_REFUSES)

/*
 * The recording level of one decided call: the class's level from the
 * policy (levels[cls]), raised to full for every call that was not simply
 * allowed, whose action gates (a rule's or the strict profile's included),
 * whose request was odd (dec_flags), or whose class may not be summarized.
 */
static inline __u32 gg_record_level_of(const __u8 *levels, __u32 cls, __u32 action, __u32 verdict,
				       __u32 dec_flags)
{
	__u32 level;

	if (!gg_class_may_summarize(cls) || verdict != GG_VERDICT_ALLOW ||
	    gg_action_gates(action) || (dec_flags & GG_DF_ODD))
		return GG_REC_FULL;
	level = levels[cls & (GG_CLASS_COUNT - 1)];
	return level < GG_REC_LEVELS ? level : (__u32)GG_REC_FULL;
}

/* The class's own action only (no rules): the what-if of a bare class. */
static inline __u32 gg_decide(const struct gg_policy *p, __u32 cls, int granted, int recorded)
{
	__u32 action = p->action[(cls < GG_CLASS_COUNT ? cls : (__u32)GG_CLASS_UNKNOWN) &
				 (GG_CLASS_COUNT - 1)];

	return gg_verdict_of(p->mode, action, granted,
			     recorded && !(p->flags & GG_POLF_LEDGER_DOWN));
}

#endif /* GPUGATE_VERDICT_H */
