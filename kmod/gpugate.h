/* SPDX-License-Identifier: GPL-2.0 */
/*
 * gpugate.ko: what its parts share.
 *
 *   main.c     load, unload, module parameters, the hold against unload
 *   hook.c     the hook machinery: ftrace wrappers and kprobes, attached
 *              per driver family when the driver's module loads
 *   nvidia.c   the NVIDIA family: nvidia_unlocked_ioctl, rm_ioctl,
 *              os_memcpy_from_user
 *   drm.c      the DRM family: drm_ioctl, drm_compat_ioctl, drm_ioctl_kernel
 *   kfd.c      the AMD KFD family: kfd_ioctl and every handler of amdkfd's
 *              dispatch table
 *   knob.c     the knob family: sysfs and procfs writes to a GPU's knobs,
 *              mappings of its BARs (sysfs resourceN, /dev/mem)
 *   call.c     per-call context, from a driver's ioctl entry to its copies
 *   gate.c     the decision (kmod/common/gg_gate.h) on the driver's copy,
 *              and the records it makes
 *   tables.c   devices, policy, grants, RM objects, counters
 *   ring.c     the record ring read through /dev/gpugate
 *   chardev.c  /dev/gpugate: its ioctls (kmod/uapi/gpugate/kmod.h)
 */
#ifndef GPUGATE_KMOD_INTERNAL_H
#define GPUGATE_KMOD_INTERNAL_H

#include <linux/types.h>
#include <linux/atomic.h>
#include <linux/fs.h>
#include <linux/ftrace.h>
#include <linux/kprobes.h>
#include <linux/list.h>
#include <linux/sched.h>
#include <linux/wait.h>

#include "gpugate/kmod.h"
#include "gg_gate.h"
#include "gg_device.h"

#define GG_KMOD_VERSION "0.2.0"

/* main.c */
extern atomic_t gg_inflight; /* calls inside a wrapper (stubs: synchronize_rcu_tasks) */
extern u64 gg_instance;	     /* random, fixed at load */
extern u64 gg_loaded_boot_ns;
int gg_hold(bool hold); /* hold against unload, or let go */
bool gg_held(void);

/* ring.c: variable-size records, reserved, filled, committed, read in order */
int gg_ring_init(size_t bytes);
void gg_ring_exit(void);
void *gg_ring_reserve(u32 size);
void gg_ring_commit(void *rec);
ssize_t gg_ring_read(char __user *buf, size_t len);
u64 gg_ring_used(void);
u64 gg_ring_size(void);
extern wait_queue_head_t gg_ring_wait;

/* tables.c */
enum gg_counter { GG_CNT_SEEN, GG_CNT_DROPPED, GG_CNT_EXIT_DROPPED, GG_CNT_NO_STATE };

struct gg_kstats {
	atomic64_t records;
	atomic64_t no_context;
	atomic64_t config_changes;
	atomic64_t config_dropped;
	atomic64_t undecided;
};
extern struct gg_kstats gg_stats;

int gg_tables_init(void);
void gg_tables_exit(void);
void gg_count(u32 cls, enum gg_counter which);
void gg_counters(struct gg_class_counters *out);
u64 gg_next_seq(void);
/* The policy: read under rcu_read_lock() */
const struct gg_policy *gg_policy_rcu(void);
int gg_set_policy(const struct gg_policy *p);
void gg_get_policy(struct gg_policy *out);
int gg_set_devices(const struct gg_kmod_device *devs, u32 n);
bool gg_lookup_device(u32 dev, struct gg_device *out);
int gg_grant_add(const struct gg_kmod_grant *g);
int gg_grant_del(u32 id);
int gg_grants(struct gg_kmod_grant *out, u32 cap, u32 *total);
u32 gg_take_grant(const struct gg_ioctl_enter *e);
u32 gg_take_knob_grant(const struct gg_knob_event *e);
int gg_set_knobs(const struct gg_kmod_knob *knobs, u32 n);
int gg_set_bars(const struct gg_bar_range *bars, u32 n);
bool gg_lookup_knob(u64 ino, u32 fs_magic, struct gg_knob *out);
bool gg_lookup_bar(u64 start, u64 len, struct gg_knob *out, u8 *bar);
u32 gg_object_class(u32 client, u32 object);
void gg_object_learn(u32 client, u32 object, u32 cls);
void gg_object_forget(u32 client, u32 object);
void gg_get_state(struct gg_state *out);
void gg_set_state(const struct gg_state *in);

/* call.c: the context of one driver ioctl, on the stack of its wrapper */
enum gg_family_id {
	GG_FAM_NVIDIA = 0,
	GG_FAM_DRM = 1,
	GG_FAM_KFD = 2,
	GG_FAM_KNOB = 3,
	GG_FAM_COUNT
};

struct gg_call {
	struct hlist_node node;
	struct task_struct *task;
	struct gg_call *outer;
	u32 family;
	/* the process and the node, as the ioctl entry saw them */
	u32 dev;
	struct gg_device device;
	u32 request;
	u64 arg;
	u32 uid, gid;
	u64 cgroup_id;
	char comm[GG_COMM_LEN];
	char exe_name[GG_EXE_NAME_LEN];
	/* what the hooks below decided */
	u64 seq; /* the decision's record, 0 if none yet */
	u32 cls;
	u32 nv_status;
	u8 decided;
	u8 status_valid;
	u8 deferred; /* NVIDIA: an RM control decided where its params are copied */
	u8 refused;  /* denied: the driver never ran it */
	u8 orphan;   /* no wrapper around it: no per-call state */
	u8 compat;   /* a 32-bit caller (DRM: drm_compat_ioctl; KFD: compat_ptr_ioctl) */
	/* NVIDIA: the RM escape as rm_ioctl got it */
	u32 escape;
	u32 size;
	u32 rm_request; /* the request word decided on */
	void *data;	/* kernel copy of the escape's struct */
	u8 header[GG_NV_NVOS54_SIZE];
	u64 params_user;
	u32 params_size;
};

void gg_call_begin(struct gg_call *c, u32 family, struct file *file, u32 request, u64 arg);
void gg_exe_name(char *out, size_t len);
u64 gg_cgroup_id(void);
void gg_call_end(struct gg_call *c);
struct gg_call *gg_call_current(u32 family);

/* gate.c */
struct gg_kcopy {
	const void *arg; /* the driver's kernel copy of the argument struct */
	u32 arg_len;
	const void *params; /* the driver's kernel copy of the params, NULL: not yet */
	u64 params_user;    /* where they came from */
	u32 params_len;
};

enum gg_decision {
	GG_DECIDED_ALLOW = 0,
	GG_DECIDED_DENY = 1,
	GG_DECIDED_DEFER = 2, /* decide where the params are copied */
};

enum gg_decision gg_kdecide(struct gg_call *c, u32 hook, u32 request, const struct gg_kcopy *k,
			    bool may_defer);
void gg_record_unseen(struct gg_call *c, u32 hook);
void gg_record_exit(struct gg_call *c, long ret);
void gg_config_event(u32 op, u64 object, const char *detail);

/* One write to a knob or mapping of a BAR, as the knob family's hooks see it. */
struct gg_knob_call {
	struct gg_knob_key key;
	struct gg_knob knob;
	u32 op;	  /* enum gg_knob_op */
	u32 hook; /* GG_HOOK_KMOD_KNOB_* */
	u64 offset, length;
	const u8 *value; /* NULL: value_len bytes were not captured */
	u32 value_len;
	u32 capture_flags;
	u32 prot;
	u8 bar;
};
bool gg_knob_kdecide(const struct gg_knob_call *w);

/* hook.c */
struct gg_khook {
	const char *symbol;
	u8 kind;	     /* enum gg_kmod_hook_kind */
	u8 record_hook;	     /* enum gg_hook of its records */
	u8 kretprobe;	     /* kprobe hooks: also a kretprobe */
	void *wrapper;	     /* ftrace: where calls go instead */
	unsigned long *orig; /* ftrace: the hooked function, for the wrapper to call */
	kprobe_pre_handler_t pre;
	kretprobe_handler_t entry, ret;
	size_t ret_data;
	/*
	 * table: read the dispatch table at table (in module) into
	 * funcs/nfuncs, or refuse with why; on_call runs at a handler's entry
	 */
	int (*read_table)(struct gg_khook *h, unsigned long table, const char *module, char *why,
			  size_t len);
	void (*on_call)(struct gg_khook *h, unsigned long ip, struct pt_regs *regs);
	unsigned long *funcs;
	unsigned int nfuncs;
	/* runtime */
	unsigned long addr;
	struct ftrace_ops ops;
	struct kprobe kp;
	struct kretprobe krp;
	bool ftrace_on, kprobe_on, kretprobe_on;
	atomic64_t hits;
};

struct gg_family {
	const char *name;
	const char *anchor; /* the symbol that says the driver is here */
	struct gg_khook *hooks;
	unsigned int nhooks;
	/* runtime */
	u8 state; /* enum gg_kmod_hook_state */
	int error;
	char why[64];
	char module[MODULE_NAME_LEN];
	struct module *owner; /* the driver's module, NULL if built in */
};

extern struct gg_family gg_nvidia_family;
extern struct gg_family gg_drm_family;
extern struct gg_family gg_kfd_family;
extern struct gg_family gg_knob_family;

unsigned long gg_symbol_info(unsigned long addr, char *name, size_t name_len, char *module,
			     size_t len);
int gg_hooks_init(void);
void gg_hooks_exit(void);
bool gg_family_attached(u32 family);
int gg_hooks_status(struct gg_kmod_hook *out, u32 cap, u32 *total);

/* chardev.c */
int gg_chardev_init(void);
void gg_chardev_exit(void);

#endif /* GPUGATE_KMOD_INTERNAL_H */
