/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * What the BPF objects of gpugate share: the maps and globals (defined once,
 * in maps.bpf.c, declared extern elsewhere; bpftool links the objects into
 * one), and small helpers for the current task.
 *
 * Hook families, one file each: observe.bpf.c (tracepoints, observe only),
 * gate.bpf.c (BPF LSM on ioctl, fexit results), protect.bpf.c (the gate's
 * protection of its own maps, programs, links and pins). record.bpf.h is
 * the enter/exit path they share; capture.bpf.h how they read user memory.
 */
#ifndef GPUGATE_COMMON_BPF_H
#define GPUGATE_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "gpugate/state.h"
#include "gg_verdict.h"
#include "gg_device.h"

/* the kernel's spelling, for the shared C (kmod/common) */
#ifndef __maybe_unused
#define __maybe_unused __attribute__((unused))
#endif

#define GG_S_IFMT  00170000
#define GG_S_IFCHR 0020000
#define GG_EPERM   1

/*
 * A length in 1..max (max a power of two) computed in the register the
 * helper gets, so the verifier sees its bound there: equal to len where
 * the caller has checked 1 <= len <= max (a check on a copy of a register
 * does not bound the original on older verifiers).
 */
#define GG_LEN_1_TO(len, max) (((((__u32)(len)) - 1) & ((max)-1)) + 1)

#ifdef GG_DEFINE_MAPS
#define GG_MAP(name, ...)                                                                          \
	struct {                                                                                   \
		__VA_ARGS__                                                                        \
	} name SEC(".maps")
#else
#define GG_MAP(name, ...)                                                                          \
	extern struct {                                                                            \
		__VA_ARGS__                                                                        \
	} name SEC(".maps")
#endif

/* Per-thread state between a GPU ioctl's entry and its exit. */
struct gg_pending {
	__u64 seq;
	__u64 status_addr; /* user address of the NV status word, 0 if none */
	__u64 object_addr; /* user address of an RM alloc/free struct, 0 if none */
	__u32 cls;
	__u8 active;	  /* an entry is waiting for its exit */
	__u8 object_nr;	  /* NV_ESC_RM_ALLOC or NV_ESC_RM_FREE */
	__u8 object_size; /* NVOS21 32 / NVOS64 48 / NVOS00 16 */
	__u8 reserve;	  /* the entry went to the reserve ring: its exit may too */
	void *exe_file;	  /* the file exe_name was read from */
	char exe_name[GG_EXE_NAME_LEN];
	/* where a decision is built when the ring is full: this thread's own,
	 * since a sleepable program may be preempted on its CPU */
	struct gg_ioctl_enter spare;
};

/* RM object handles the driver allocated, and their class (BINAPI detection). */
struct gg_rm_object {
	__u32 client;
	__u32 object;
};

GG_MAP(devices, __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 4096);
       __type(key, __u32); /* kernel dev_t */
       __type(value, struct gg_device););

GG_MAP(events, __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 8 * 1024 * 1024);
       /* user space may resize before load */);

/*
 * The reserve ring: used only when events is full, and only for commands the
 * policy gates, which would otherwise be refused for want of a record. A
 * flood of queries fills events, never this; the daemon reads it first.
 */
GG_MAP(gated_events, __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 256 * 1024););

/* The policy in force: mode, rules and one action per class, set by the daemon. */
GG_MAP(policy, __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32);
       __type(value, struct gg_policy););

/* Live grants, installed by the daemon from verified signed requests. */
GG_MAP(grants, __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 1024);
       __type(key, struct gg_grant_key); __type(value, struct gg_grant););

/* Uses left per grant id, shared by the nodes one grant covers. */
GG_MAP(grant_uses, __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 1024); __type(key, __u32);
       __type(value, __s64););

GG_MAP(counters, __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, GG_CLASS_COUNT);
       __type(key, __u32); __type(value, struct gg_class_counters););

GG_MAP(pending, __uint(type, BPF_MAP_TYPE_TASK_STORAGE); __uint(map_flags, BPF_F_NO_PREALLOC);
       __type(key, int); __type(value, struct gg_pending););

/* hObject -> RM class, from the driver's own successful allocs. */
GG_MAP(rm_objects, __uint(type, BPF_MAP_TYPE_LRU_HASH); __uint(max_entries, 65536);
       __type(key, struct gg_rm_object); __type(value, __u32););

/* For the daemon only (restart state); the programs never read it. */
GG_MAP(state, __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32);
       __type(value, struct gg_state););

/* Who the daemon is, where its pins are; and which objects are its own. */
GG_MAP(guard, __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32);
       __type(value, struct gg_guard););
GG_MAP(guarded, __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 64);
       __type(key, struct gg_guarded_key); __type(value, __u8););

/*
 * The programs' writable globals. In a map of their own, not .bss: libbpf
 * maps .bss into user space, and a writable mapping of the gate's state
 * would be a way around the self-protection, which sees bpf() calls only.
 */
GG_MAP(globals, __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32);
       __type(value, struct gg_globals););

/* A cheap first filter: 1 for majors with a GPU node (written by the daemon only). */
GG_MAP(majors, __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, GG_MAJORS); __type(key, __u32);
       __type(value, __u8););

/* A GPU's sysfs and procfs knobs (knob.bpf.c), written by the daemon only. */
GG_MAP(knobs, __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 4096);
       __type(key, struct gg_knob_key); __type(value, struct gg_knob););

/* The GPUs' memory BARs, for a mapping of /dev/mem (written by the daemon only). */
GG_MAP(bar_ranges, __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, GG_BAR_RANGES_MAX);
       __type(key, __u32); __type(value, struct gg_bar_range););

/* Where a knob's write is decided when the ring is full: it is not recorded. */
GG_MAP(knob_spare, __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 1);
       __type(key, __u32); __type(value, struct gg_knob_event););

#ifdef GG_DEFINE_MAPS
/* Wake the reader once this much is queued; below it the reader polls. */
const volatile __u32 wakeup_bytes = 512 * 1024;
#else
extern const volatile __u32 wakeup_bytes;
#endif

static __always_inline struct gg_globals *gg_globals(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&globals, &zero);
}

static __always_inline void gg_count_fd_fault(void)
{
	struct gg_globals *gl = gg_globals();

	if (gl)
		__sync_fetch_and_add(&gl->fd_lookup_faults, 1);
}

/* Kernel >= 6.2. Weak: on older kernels the loader runs the CO-RE variants. */
extern void *bpf_rdonly_cast(void *obj, __u32 btf_id) __ksym __weak;

/*
 * Counters are per CPU but a sleepable program can be preempted on its
 * CPU by another running the same code: add atomically, so none is lost.
 */
enum gg_counter { GG_CNT_SEEN, GG_CNT_DROPPED, GG_CNT_EXIT_DROPPED, GG_CNT_NO_STATE };

static __always_inline void gg_count(__u32 cls, enum gg_counter which)
{
	struct gg_class_counters *c;

	cls = cls < GG_CLASS_COUNT ? cls : GG_CLASS_UNKNOWN;
	c = bpf_map_lookup_elem(&counters, &cls);
	if (!c)
		return;
	switch (which) {
	case GG_CNT_SEEN:
		__sync_fetch_and_add(&c->seen, 1);
		break;
	case GG_CNT_DROPPED:
		__sync_fetch_and_add(&c->dropped, 1);
		break;
	case GG_CNT_EXIT_DROPPED:
		__sync_fetch_and_add(&c->exit_dropped, 1);
		break;
	default:
		__sync_fetch_and_add(&c->no_state, 1);
	}
}

/*
 * Records go in without waking the reader, which polls every 20 ms; only
 * the record that takes the backlog across wakeup_bytes wakes it. A wakeup
 * costs the caller microseconds (an irq_work), so one per crossing, not one
 * per record while the backlog stays high.
 */
static __always_inline __u64 gg_ring_flags(__u64 size)
{
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);

	return (avail < wakeup_bytes && avail + size >= wakeup_bytes) ? BPF_RB_FORCE_WAKEUP
								      : BPF_RB_NO_WAKEUP;
}

/*
 * The reserve ring wakes the reader with its first record since the reader
 * last emptied it (the record itself is all it holds): the rest are read in
 * the same pass. A flood of gated commands, each recorded there while the
 * main ring is full, must not pay a wakeup per call (a self-IPI: about two
 * microseconds in a VM, half the caller's time in the bench).
 */
static __always_inline __u64 gg_reserve_ring_flags(__u64 size)
{
	__u64 avail = bpf_ringbuf_query(&gated_events, BPF_RB_AVAIL_DATA);

	return avail <= ((size + 8 + 7) & ~7ULL) ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

static __always_inline void gg_fill_hdr(struct gg_event_hdr *h, __u16 type, __u16 size, __u64 seq)
{
	__u64 id = bpf_get_current_pid_tgid();

	h->type = type;
	h->size = size;
	h->cpu = bpf_get_smp_processor_id();
	h->seq = seq;
	h->boot_ns = bpf_ktime_get_boot_ns();
	h->pid = id >> 32;
	h->tid = (__u32)id;
}

/* The device behind a node: the daemon's table first, then gg_default_device. */
static __always_inline int gg_lookup_device(__u32 rdev, struct gg_device *out)
{
	struct gg_device *d = bpf_map_lookup_elem(&devices, &rdev);

	if (d) {
		*out = *d;
		return 1;
	}
	return gg_default_device(rdev, out);
}

/* Is the current executable the one the guard names (directory and name)? */
static __always_inline int gg_current_exe_is(const struct gg_guard *g)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct mm_struct *mm = task->mm;
	struct file *exe = mm ? mm->exe_file : 0;
	struct dentry *d = exe ? exe->f_path.dentry : 0;
	struct inode *dir = d ? d->d_parent->d_inode : 0;
	char name[GG_GUARD_NAME_LEN] = {};
	int i;

	if (!dir || dir->i_ino != g->exe_dir_ino || dir->i_sb->s_dev != g->exe_dir_dev)
		return 0;
	if (bpf_probe_read_kernel_str(name, sizeof(name), d->d_name.name) <= 0)
		return 0;
	for (i = 0; i < GG_GUARD_NAME_LEN; i++) {
		if (name[i] != g->exe_name[i])
			return 0;
		if (!name[i])
			break;
	}
	return 1;
}

#endif /* GPUGATE_COMMON_BPF_H */
