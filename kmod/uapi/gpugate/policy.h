/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * The policy as the kernel holds it (the BPF policy map, the module's
 * GG_KIOC_SET_POLICY): mode, rules and one action per class. The decision
 * made with it is kmod/common/gg_verdict.h.
 */
#ifndef GPUGATE_POLICY_H
#define GPUGATE_POLICY_H

#include "event.h"

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

/* Policy flags (gg_policy.flags). */
#define GG_POLF_STRICT	    (1u << 0) /* gate every privileged opaque control (DESIGN section 2) */
/*
 * For the BPF programs only: gpugate.ko decides and records the ioctls on
 * these nodes (its hooks for the driver are attached), so BPF stays out and
 * every ioctl gets one verdict and one record.
 */
#define GG_POLF_KMOD_NVIDIA (1u << 1) /* NVIDIA control and GPU nodes */
#define GG_POLF_KMOD_DRM    (1u << 2) /* DRM nodes */
#define GG_POLF_KMOD_KFD    (1u << 3) /* /dev/kfd */
#define GG_POLF_KMOD_KNOB   (1u << 4) /* the GPUs' sysfs/procfs knobs and BAR mappings */
/*
 * The daemon cannot write its ledger (disk full, read-only) and its policy's
 * disk_full_action is deny-gated: a gated command is refused, grant or not,
 * until the ledger takes records again.
 */
#define GG_POLF_LEDGER_DOWN (1u << 5)
#define GG_POLF_KMOD_ALL                                                                           \
	(GG_POLF_KMOD_NVIDIA | GG_POLF_KMOD_DRM | GG_POLF_KMOD_KFD | GG_POLF_KMOD_KNOB)

/* The default bound on a read that had to fault a page in (docs/gate.md). */
#define GG_READ_WAIT_MAX_NS_DEFAULT 1000000u

/* The policy as the kernel holds it: mode, rules, one action per class. */
struct gg_policy {
	__u8 mode; /* enum gg_mode */
	__u8 nrules;
	__u8 flags;		     /* GG_POLF_* */
	__u8 fail_closed_vendors;    /* bit per enum gg_vendor whose nodes the policy gates */
	__u8 action[GG_CLASS_COUNT]; /* enum gg_action */
	__u32 read_wait_max_ns;	     /* a faulting read slower than this is denied; 0: default */
	struct gg_rule rules[GG_MAX_RULES];
};
GG_ABI_ASSERT(sizeof(struct gg_policy) == 24 + 48 * GG_MAX_RULES, "gg_policy layout");

#endif /* GPUGATE_POLICY_H */
