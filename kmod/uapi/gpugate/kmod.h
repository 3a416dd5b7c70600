/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * /dev/gpugate: how gpugated talks to gpugate.ko.
 *
 * The daemon opens the node, says which ABI it speaks (GG_KIOC_HELLO, the
 * first call; every other one is refused until it matches), takes the
 * module over as its owner (one at a time), pushes devices, knobs, policy and
 * grants, and reads records with read(2): whole records, each starting
 * with struct gg_event_hdr, in the module's order. The records are the
 * ones the BPF engine produces (event.h), made by the module's hooks
 * (GG_HOOK_KMOD_*), plus GG_EV_KMOD_CONFIG for every change of the
 * module's tables, by whoever made it.
 */
#ifndef GPUGATE_KMOD_H
#define GPUGATE_KMOD_H

#include "state.h"
#include "policy.h"

#define GG_KMOD_ABI	 2 /* bumped on any change below or in the records */
#define GG_KMOD_NODE	 "gpugate"
#define GG_KMOD_DEV_PATH "/dev/gpugate"
#define GG_KIOC_TYPE	 'G'

/* GG_KIOC_HELLO: in: abi, flags; out: the rest. */
#define GG_KHELLO_OWNER (1u << 0) /* become the owner: the only one that may change tables */
struct gg_kmod_hello {
	__u32 abi;	      /* in: GG_KMOD_ABI of the caller; out: the module's */
	__u32 flags;	      /* in: GG_KHELLO_* */
	__u64 instance;	      /* out: random, fixed at module load */
	__u64 loaded_boot_ns; /* out: CLOCK_BOOTTIME of the module's load */
	__u32 owner_pid;      /* out: the owner's tgid after the call, 0 if none */
	__u32 held;	      /* out: 1 while the module holds itself against unload */
	__u64 ring_bytes;     /* out: size of the record ring */
	char version[32];     /* out: the module's version string */
};
GG_ABI_ASSERT(sizeof(struct gg_kmod_hello) == 72, "gg_kmod_hello layout");

/* One device node the module decides on (GG_KIOC_SET_DEVICES). */
struct gg_kmod_device {
	__u32 dev; /* kernel dev_t: major << 20 | minor */
	__u32 pad;
	struct gg_device info;
};
GG_ABI_ASSERT(sizeof(struct gg_kmod_device) == 16, "gg_kmod_device layout");

/* An array passed by pointer (devices, grants, hooks). */
struct gg_kmod_array {
	__u32 count; /* in: entries at ptr (capacity for reads); out: entries there */
	__u32 total; /* out: entries the module has (a read may need more room) */
	__u64 ptr;   /* user address of the entries */
};
GG_ABI_ASSERT(sizeof(struct gg_kmod_array) == 16, "gg_kmod_array layout");
#define GG_KMOD_MAX_DEVICES 4096
#define GG_KMOD_MAX_GRANTS  1024
#define GG_KMOD_MAX_KNOBS   16384

/* One knob the module gates (GG_KIOC_SET_KNOBS): the row of the BPF knobs map. */
struct gg_kmod_knob {
	struct gg_knob_key key;
	struct gg_knob knob;
	__u32 pad;
};
GG_ABI_ASSERT(sizeof(struct gg_kmod_knob) == 32, "gg_kmod_knob layout");

/* One key of a grant; keys with the same grant.id share its uses. */
struct gg_kmod_grant {
	struct gg_grant_key key;
	struct gg_grant grant;
	__s64 uses; /* in: uses at install (GG_KIOC_GRANT_ADD); out: uses left */
};
GG_ABI_ASSERT(sizeof(struct gg_kmod_grant) == 56, "gg_kmod_grant layout");

/* What the module knows about one of its hooks (GG_KIOC_HOOKS). */
enum gg_kmod_hook_kind {
	GG_KHOOK_FTRACE = 1, /* ftrace with a wrapper (IPMODIFY) */
	GG_KHOOK_KPROBE = 2, /* kprobe (int3 where the function has no ftrace site) */
	GG_KHOOK_TABLE = 3,  /* ftrace on every handler of a dispatch table (symbol: the table) */
};
enum gg_kmod_hook_state {
	GG_KHOOK_WAITING = 0,  /* the driver that has it is not loaded */
	GG_KHOOK_ATTACHED = 1, /* deciding */
	GG_KHOOK_REFUSED = 2,  /* the driver is loaded but the module refused it (error) */
};
struct gg_kmod_hook {
	char symbol[40]; /* function hooked */
	char driver[24]; /* driver family: "nvidia", "drm", "kfd" */
	char module[24]; /* the kernel module that holds the symbol, once found */
	__u8 kind;	 /* enum gg_kmod_hook_kind */
	__u8 state;	 /* enum gg_kmod_hook_state */
	__u8 hook;	 /* enum gg_hook of the records it makes */
	__u8 pad;
	__s32 error;  /* -errno of the last refusal, 0 if none */
	__u64 hits;   /* calls seen */
	char why[64]; /* the refusal in words: the missing symbol, the busy site */
};
GG_ABI_ASSERT(sizeof(struct gg_kmod_hook) == 168, "gg_kmod_hook layout");

/* Counters of the module (GG_KIOC_STATS). */
struct gg_kmod_stats {
	struct gg_class_counters per_class[GG_CLASS_COUNT];
	__u64 records;	      /* records queued since load */
	__u64 ring_used;      /* bytes waiting to be read */
	__u64 no_context;     /* hooks that found no per-call context */
	__u64 config_changes; /* GG_EV_KMOD_CONFIG records made */
	__u64 undecided;      /* params decisions the driver's copy never reached */
	__u64 config_dropped; /* config records that found the ring full */
};
GG_ABI_ASSERT(sizeof(struct gg_kmod_stats) == GG_CLASS_COUNT * 32 + 48, "gg_kmod_stats layout");

/* A change of the module's tables (type GG_EV_KMOD_CONFIG). */
enum gg_kmod_config_op {
	GG_KCFG_OWNER = 1,	/* a process became the owner */
	GG_KCFG_POLICY = 2,	/* the policy (and mode) was replaced */
	GG_KCFG_DEVICES = 3,	/* the device table was replaced */
	GG_KCFG_GRANT_ADD = 4,	/* a grant key was added (object: grant id) */
	GG_KCFG_GRANT_DEL = 5,	/* a grant was removed (object: grant id) */
	GG_KCFG_HOLD = 6,	/* held against unload (object 1) or released (0) */
	GG_KCFG_HOOK = 7,	/* a hook attached (object 1), detached (0) or refused (2) */
	GG_KCFG_STATE = 8,	/* the restart state was written */
	GG_KCFG_OWNER_GONE = 9, /* the owner closed the node (or died) */
	GG_KCFG_KNOBS = 10,	/* the knob table was replaced (object: its rows) */
	GG_KCFG_BARS = 11,	/* the BAR ranges were replaced (object: their count) */
};
struct gg_kmod_config_event {
	struct gg_event_hdr hdr;
	__u32 uid;
	__u32 op;     /* enum gg_kmod_config_op */
	__u64 object; /* grant id, hook index, mode, ... */
	char comm[GG_COMM_LEN];
	char detail[32]; /* a hook's symbol, ... */
};
GG_ABI_ASSERT(sizeof(struct gg_kmod_config_event) == 96, "gg_kmod_config_event layout");

#define GG_KIOC_HELLO	    _IOWR(GG_KIOC_TYPE, 0x80, struct gg_kmod_hello)
#define GG_KIOC_SET_POLICY  _IOW(GG_KIOC_TYPE, 0x81, struct gg_policy)
#define GG_KIOC_SET_DEVICES _IOW(GG_KIOC_TYPE, 0x82, struct gg_kmod_array) /* of gg_kmod_device */
#define GG_KIOC_GRANT_ADD   _IOW(GG_KIOC_TYPE, 0x83, struct gg_kmod_grant)
#define GG_KIOC_GRANT_DEL   _IOW(GG_KIOC_TYPE, 0x84, __u32) /* every key of that grant id */
#define GG_KIOC_GRANTS	    _IOWR(GG_KIOC_TYPE, 0x85, struct gg_kmod_array) /* of gg_kmod_grant */
#define GG_KIOC_STATS	    _IOR(GG_KIOC_TYPE, 0x86, struct gg_kmod_stats)
#define GG_KIOC_HOOKS	    _IOWR(GG_KIOC_TYPE, 0x87, struct gg_kmod_array) /* of gg_kmod_hook */
#define GG_KIOC_HOLD	    _IOW(GG_KIOC_TYPE, 0x88, __u32) /* 1: hold against unload, 0: let go */
#define GG_KIOC_GET_STATE   _IOR(GG_KIOC_TYPE, 0x89, struct gg_state)
#define GG_KIOC_SET_STATE   _IOW(GG_KIOC_TYPE, 0x8A, struct gg_state)
#define GG_KIOC_GET_POLICY  _IOR(GG_KIOC_TYPE, 0x8B, struct gg_policy)
#define GG_KIOC_SET_KNOBS   _IOW(GG_KIOC_TYPE, 0x8C, struct gg_kmod_array) /* of gg_kmod_knob */
#define GG_KIOC_SET_BARS    _IOW(GG_KIOC_TYPE, 0x8D, struct gg_kmod_array) /* of gg_bar_range */

#endif /* GPUGATE_KMOD_H */
