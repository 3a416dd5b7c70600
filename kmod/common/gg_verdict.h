/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * The shared verdict: from the decoded class, the policy in force and
 * whether a grant covers the request, to allow / deny / would-deny. Pure C
 * for the BPF LSM gate, the kernel module and user space (replay, what-if).
 */
#ifndef GPUGATE_VERDICT_H
#define GPUGATE_VERDICT_H

#include "../uapi/gpugate/types.h"

GG_ABI_ASSERT((GG_CLASS_COUNT & (GG_CLASS_COUNT - 1)) == 0, "class ids index by mask");

/* The policy as the kernel holds it: one action per class and the mode. */
struct gg_policy {
	__u8 mode; /* enum gg_mode */
	__u8 pad[3];
	__u8 action[GG_CLASS_COUNT]; /* enum gg_action */
};

/*
 * granted:  a live grant covers this GPU and class.
 * recorded: the record of this decision could be reserved; a gated command
 *           that cannot be recorded is denied (fail closed).
 */
static inline __u32 gg_decide(const struct gg_policy *p, __u32 cls, int granted, int recorded)
{
	/* the mask keeps the index provably in range for older verifiers (6.1) */
	__u32 action = p->action[(cls < GG_CLASS_COUNT ? cls : (__u32)GG_CLASS_UNKNOWN) &
				 (GG_CLASS_COUNT - 1)];

	if (action == GG_ACT_ALLOW || action == GG_ACT_LOG)
		return GG_VERDICT_ALLOW;
	if (action == GG_ACT_REQUIRE_SIGNATURE && granted && recorded)
		return GG_VERDICT_ALLOW;
	return p->mode == GG_MODE_ENFORCE ? (__u32)GG_VERDICT_DENY : (__u32)GG_VERDICT_WOULD_DENY;
}

#endif /* GPUGATE_VERDICT_H */
