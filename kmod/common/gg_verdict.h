/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * The shared verdict: from the decoded class, the policy in force and
 * whether a grant covers the request, to allow / deny / would-deny. Pure C
 * for the BPF LSM gate, the kernel module and user space (replay, what-if).
 */
#ifndef GPUGATE_VERDICT_H
#define GPUGATE_VERDICT_H

#include "../uapi/gpugate/event.h"

GG_ABI_ASSERT((GG_CLASS_COUNT & (GG_CLASS_COUNT - 1)) == 0, "class ids index by mask");

#define GG_MAX_RULES 16

/* What a rule matches on; a rule applies when every field it sets matches. */
enum gg_rule_match {
	GG_RM_CLASS = 1 << 0,
	GG_RM_VENDOR = 1 << 1,
	GG_RM_DEV = 1 << 2,
	GG_RM_UID = 1 << 3,
	GG_RM_CGROUP = 1 << 4,
	GG_RM_COMM = 1 << 5,
};

/* One policy rule: first match wins; none matching, the class's action. */
struct gg_rule {
	__u32 match;   /* GG_RM_* */
	__u32 classes; /* bit per class */
	__u32 dev;     /* kernel dev_t of a GPU node */
	__u32 uid;
	__u64 cgroup_id; /* cgroup v2 id (inode number of its directory) */
	char comm[GG_COMM_LEN];
	__u8 vendor; /* enum gg_vendor */
	__u8 action; /* enum gg_action */
	__u8 pad[6];
};
GG_ABI_ASSERT(sizeof(struct gg_rule) == 48, "gg_rule layout");

/* The policy as the kernel holds it: mode, rules, one action per class. */
struct gg_policy {
	__u8 mode; /* enum gg_mode */
	__u8 nrules;
	__u8 pad[2];
	__u8 action[GG_CLASS_COUNT]; /* enum gg_action */
	__u8 pad2[4];
	struct gg_rule rules[GG_MAX_RULES];
};

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

/* The class's own action only (no rules): the what-if of a bare class. */
static inline __u32 gg_decide(const struct gg_policy *p, __u32 cls, int granted, int recorded)
{
	__u32 action = p->action[(cls < GG_CLASS_COUNT ? cls : (__u32)GG_CLASS_UNKNOWN) &
				 (GG_CLASS_COUNT - 1)];

	return gg_verdict_of(p->mode, action, granted, recorded);
}

#endif /* GPUGATE_VERDICT_H */
