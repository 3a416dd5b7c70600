/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * Records that cross from the kernel (BPF ring buffer, later /dev/gpugate)
 * to user space, and the raw/decoded pair the shared decoder works on.
 */
#ifndef GPUGATE_EVENT_H
#define GPUGATE_EVENT_H

#include "types.h"

#define GG_ARG_MAX	128 /* captured bytes of the ioctl argument struct */
#define GG_PARAMS_MAX	256 /* captured bytes of an RM control/alloc params block */
#define GG_COMM_LEN	16
#define GG_EXE_NAME_LEN 32    /* basename of the executable, from the kernel */
#define GG_NV_XFER_MAX	16384 /* NV_ABSOLUTE_MAX_IOCTL_SIZE, kernel-open/common/inc/nv.h:76 */

/*
 * Capture flags: which stage could not be read (FAULT bits), and why where
 * it was not a plain fault. A read that had to fault a page in is PAGED:
 * not a failure, but the earlier stages were read again and compared.
 */
#define GG_CAP_ARG_FAULT     (1u << 0)
#define GG_CAP_INNER_FAULT   (1u << 1)
#define GG_CAP_PARAMS_FAULT  (1u << 2)
#define GG_CAP_REFUSED_UFFD  (1u << 3)	/* in a userfaultfd-registered mapping: not read */
#define GG_CAP_REFUSED_FUSE  (1u << 4)	/* in a FUSE-backed mapping: not read */
#define GG_CAP_VMA_BUSY	     (1u << 5)	/* the mapping could not be checked (mmap lock busy) */
#define GG_CAP_SLOW	     (1u << 6)	/* the read waited longer than the policy's bound */
#define GG_CAP_CHANGED	     (1u << 7)	/* bytes read earlier changed while the gate read */
#define GG_CAP_PAGED	     (1u << 8)	/* a page was faulted in (not a failure) */
#define GG_CAP_NO_FAULT_HOOK (1u << 9)	/* this hook cannot fault pages in (observer, compat) */
#define GG_CAP_DEFERRED	     (1u << 10) /* not read here: decided where the driver copies it */
#define GG_CAP_AFTER	     (1u << 11) /* read after the driver ran: recorded, not decided */
#define GG_CAP_STAGE_MASK    (GG_CAP_ARG_FAULT | GG_CAP_INNER_FAULT | GG_CAP_PARAMS_FAULT)

/* Device-table flags (struct gg_device.flags). */
#define GG_DEVF_ALIAS (1u << 0) /* a stand-in node named by --device */

/* Value of the BPF devices map and the daemon's device table, keyed by dev_t. */
struct gg_device {
	__u8 kind;	 /* enum gg_dev_kind */
	__u8 vendor;	 /* enum gg_vendor */
	__u8 drm_driver; /* enum gg_drm_driver */
	__u8 flags;	 /* GG_DEVF_* */
	__s32 gpu_index; /* /dev/nvidiaN minor, DRM card number, -1 if none */
};
GG_ABI_ASSERT(sizeof(struct gg_device) == 8, "gg_device layout");

/*
 * What was captured of one request: the input of gg_decode(). The same
 * bytes go into the ledger, so an investigator can decode them again.
 */
struct gg_raw {
	__u32 request;	     /* ioctl request word as issued */
	__u8 dev_kind;	     /* enum gg_dev_kind */
	__u8 drm_driver;     /* enum gg_drm_driver */
	__u16 capture_flags; /* GG_CAP_* */
	__u32 arg_len;	     /* bytes valid in arg[] */
	__u32 inner_len;     /* bytes valid in inner[] (XFER target) */
	__u32 params_len;    /* bytes valid in params[] */
	__u32 target_class;  /* RM class of the control's hObject, 0 if unknown */
	__u8 arg[GG_ARG_MAX];
	__u8 inner[GG_ARG_MAX];
	__u8 params[GG_PARAMS_MAX];
};
GG_ABI_ASSERT(sizeof(struct gg_raw) == 24 + 2 * GG_ARG_MAX + GG_PARAMS_MAX, "gg_raw layout");

/* The decoder's answer; identical in BPF, the module and user space. */
struct gg_decoded {
	__u8 cls;	     /* enum gg_class */
	__u8 cls_source;     /* enum gg_class_source */
	__u8 priv;	     /* enum gg_priv */
	__u8 vendor;	     /* enum gg_vendor */
	__u8 table;	     /* enum gg_table */
	__u8 pkind;	     /* key-parameter layout, pkinds.def */
	__u8 nr;	     /* effective escape / DRM nr (after XFER unwrap) */
	__u8 outer_nr;	     /* nr of the request word */
	__u16 index;	     /* entry in table, 0xffff if none */
	__u16 status_offset; /* NV status word offset in the struct, 0 if none */
	__u32 flags;	     /* GG_DF_* */
	__u32 command;	     /* RM control id, RM alloc class, or the request */
	__u32 object;	     /* RM hObject (control) / hObjectParent (alloc) */
	__u32 client;	     /* RM hClient */
	__u32 params_size;   /* params block size the struct declares */
	__u32 inner_size;    /* XFER inner size the struct declares */
	__u32 pad;	     /* explicit: records are compared byte for byte */
	__u64 params_ptr;    /* user address of the params block, 0 if none */
	__u64 inner_ptr;     /* user address of the XFER inner struct, 0 if none */
	__u64 key[4];	     /* key parameters, layout per pkind */
};
GG_ABI_ASSERT(sizeof(struct gg_decoded) == 88, "gg_decoded layout");

enum gg_event_type {
	GG_EV_IOCTL_ENTER = 1,
	GG_EV_IOCTL_EXIT = 2,
	GG_EV_GUARD = 3,       /* the gate refused an operation on its own objects */
	GG_EV_KMOD_CONFIG = 4, /* gpugate.ko's tables changed (kmod.h) */
	GG_EV_KNOB = 5,	       /* a write to a GPU's sysfs or procfs knob (gg_knob_event) */
};

struct gg_event_hdr {
	__u16 type; /* enum gg_event_type */
	__u16 size; /* bytes of the whole record */
	__u32 cpu;
	__u64 seq;     /* kernel-side sequence, one per enter record */
	__u64 boot_ns; /* CLOCK_BOOTTIME */
	__u32 pid;     /* tgid */
	__u32 tid;
};
GG_ABI_ASSERT(sizeof(struct gg_event_hdr) == 32, "gg_event_hdr layout");

/* One GPU ioctl at syscall entry: who, on what, which bytes, decoded. */
struct gg_ioctl_enter {
	struct gg_event_hdr hdr;
	__u32 uid;
	__u32 gid;
	__u64 cgroup_id;
	char comm[GG_COMM_LEN];
	char exe_name[GG_EXE_NAME_LEN]; /* kept even when the process is gone */
	__u32 dev;			/* kernel dev_t: major << 20 | minor */
	__s32 fd;
	__u64 arg; /* user pointer passed to ioctl() */
	struct gg_device device;
	__u8 hook;	/* enum gg_hook: where the record was made */
	__u8 mode;	/* enum gg_mode in force */
	__u8 action;	/* enum gg_action of the policy for the class */
	__u8 verdict;	/* enum gg_verdict */
	__u32 grant_id; /* the grant that allowed it, 0 if none */
	__u32 rule;	/* the policy rule that decided, + 1; 0: the class's action */
	__u8 reason;	/* enum gg_reason */
	__u8 pad[3];
	struct gg_decoded dec;
	struct gg_raw raw;
};
GG_ABI_ASSERT(sizeof(struct gg_ioctl_enter) == 760, "gg_ioctl_enter layout");

/* The same ioctl at syscall exit. */
struct gg_ioctl_exit {
	struct gg_event_hdr hdr;
	__u64 enter_seq; /* seq of the matching enter record */
	__s64 ret;	 /* syscall return value (negative errno) */
	__u32 nv_status; /* RM status word read back, if status_valid */
	__u8 status_valid;
	__u8 cls; /* class of the enter record, for drop accounting */
	__u8 pad[2];
};
GG_ABI_ASSERT(sizeof(struct gg_ioctl_exit) == 56, "gg_ioctl_exit layout");

/*
 * Which processes a grant is for: part of the signed request, never chosen
 * by whoever submits it.
 */
enum gg_scope {
	GG_SCOPE_ANY = 0,    /* any process (scope_id 0) */
	GG_SCOPE_CGROUP = 1, /* callers in this cgroup v2 (a systemd unit, gpugate exec) */
	GG_SCOPE_UID = 2,    /* callers with this uid */
	GG_SCOPE_COUNT
};

/*
 * A grant: permission for one class of gated command on one device node,
 * for a window of time and a number of uses, for the processes of its
 * scope. Created by the daemon only from a verified signed request; the
 * kernel consumes uses. One grant may cover several nodes (an NVIDIA GPU
 * and its control node): they share the uses, kept once per grant id in
 * the grant_uses map.
 */
struct gg_grant_key {
	__u32 dev;	/* kernel dev_t of the node the command goes through */
	__u16 cls;	/* enum gg_class */
	__u16 scope;	/* enum gg_scope */
	__u64 scope_id; /* cgroup v2 id or uid the caller must have; 0 for GG_SCOPE_ANY */
};
GG_ABI_ASSERT(sizeof(struct gg_grant_key) == 16, "gg_grant_key layout");

struct gg_grant {
	__u64 not_before_ns; /* CLOCK_BOOTTIME */
	__u64 not_after_ns;  /* CLOCK_BOOTTIME */
	__u32 id;	     /* daemon-assigned, non-zero, recorded in every record it allows */
	__u8 pkind;	/* with a parameter: the key layout (pkinds.def) the command must have, */
	__u8 key_index; /* and its key parameter key_index must equal key_value; */
	__u8 pad[2];	/* pkind 0: no parameter is checked */
	__u64 key_value;
};
GG_ABI_ASSERT(sizeof(struct gg_grant) == 32, "gg_grant layout");

/* What the self-protection refused (gg_guard_event.op). Values are ABI. */
enum gg_guard_op {
	GG_GUARD_MAP_WRITE = 1,	 /* update, delete or freeze of one of the gate's maps */
	GG_GUARD_MAP_FD = 2,	 /* an fd of one of its maps, by id or pin */
	GG_GUARD_PROG_FD = 3,	 /* an fd of one of its programs, by id or pin */
	GG_GUARD_LINK = 4,	 /* detach, update or an fd by id of one of its links */
	GG_GUARD_PIN_UNLINK = 5, /* removing one of its pins */
	GG_GUARD_PIN_RENAME = 6, /* renaming one of its pins or the pin directory */
	GG_GUARD_UMOUNT = 7,	 /* unmounting the bpffs that holds its pins */
	GG_GUARD_PROG_LOAD = 8,	 /* loading an fmod_ret program (it could skip LSM hooks) */
	GG_GUARD_OP_COUNT
};

/* One refusal of the self-protection, as it reaches the daemon. */
struct gg_guard_event {
	struct gg_event_hdr hdr;
	__u32 uid;
	__u32 op;	 /* enum gg_guard_op */
	__u32 object_id; /* map, program or link id, or the inode number of a pin */
	__u32 bpf_cmd;	 /* the bpf() command, or 0 */
	char comm[GG_COMM_LEN];
	char exe_name[GG_EXE_NAME_LEN];
};
GG_ABI_ASSERT(sizeof(struct gg_guard_event) == 96, "gg_guard_event layout");

/*
 * The knobs: sysfs and procfs files whose write powers a GPU off, resets or
 * throttles it (docs/paths.md). Keyed by inode number and filesystem
 * (sysfs and procfs number their inodes once for every mount of them, so a
 * second mount of sysfs names the same knob), never by path.
 */
#define GG_FS_SYSFS 0x62656572u /* SYSFS_MAGIC, include/uapi/linux/magic.h */
#define GG_FS_PROC  0x9fa0u	/* PROC_SUPER_MAGIC */

struct gg_knob_key {
	__u64 ino;
	__u32 fs_magic; /* GG_FS_SYSFS or GG_FS_PROC */
	__u32 pad;
};
GG_ABI_ASSERT(sizeof(struct gg_knob_key) == 16, "gg_knob_key layout");

/* How a write to a knob is decoded into a class (kmod/common/gg_knob.h). */
enum gg_knob_rule {
	GG_KNOB_NONE = 0,
	GG_KNOB_ANY_WRITE = 1,	/* every write falls in the knob's class */
	GG_KNOB_NUMBER = 2,	/* the same, and the number written is its key (uW, MHz) */
	GG_KNOB_RUNTIME_PM = 3, /* power/control: a write too short to hold "auto" is harmless */
	GG_KNOB_PCI_CONFIG = 4, /* config space: the registers the write's range touches */
	GG_KNOB_RULE_COUNT
};

#define GG_KNOBF_BRIDGE (1u << 0) /* the upstream bridge's (Bridge Control's SBR counts) */
#define GG_KNOBF_SHARED (1u << 1) /* shared by several GPUs: gpu_dev is the first of them */

/* A GPU that has no device node of its own in a grant or a rule: its PCI address. */
#define GG_PCI_DEV_MAJOR 0xfffu
#define GG_PCI_DEV(domain, bus, devfn)                                                             \
	((GG_PCI_DEV_MAJOR << 20) | (((domain)&0xfu) << 16) | (((bus)&0xffu) << 8) |               \
	 ((devfn)&0xffu))

/* Value of the knobs map. */
struct gg_knob {
	__u32 gpu_dev; /* GG_PCI_DEV of the GPU it acts on: grants and rules name it */
	__u8 rule;     /* enum gg_knob_rule */
	__u8 cls;      /* enum gg_class of a write (GG_KNOB_PCI_CONFIG: of a sensitive one) */
	__u8 vendor;   /* enum gg_vendor of the GPU */
	__u8 flags;    /* GG_KNOBF_* */
	__u16 pm_cap;  /* config offset of the PCI PM capability, 0 if none */
	__u16 exp_cap; /* config offset of the PCI Express capability, 0 if none */
};
GG_ABI_ASSERT(sizeof(struct gg_knob) == 12, "gg_knob layout");

#define GG_KNOB_VALUE_MAX 64 /* bytes of a write captured (the whole value of a text knob) */

/* Which system call wrote (gg_knob_event.syscall), as the gate read its arguments. */
enum gg_write_call {
	GG_WC_UNKNOWN = 0, /* another path (sendfile, splice, io_uring, ...): length unknown */
	GG_WC_WRITE = 1,
	GG_WC_PWRITE = 2,
	GG_WC_WRITEV = 3, /* the vector is in user memory: its length is not trusted */
	GG_WC_MMAP = 4,	  /* mmap (x86-64) or mmap2 (ia32): offset and length in registers */
	/*
	 * gpugate.ko at the file's own write or mmap function: length, position
	 * (or the mapping's range) as the kernel passes them, whatever system
	 * call it came from; on sysfs the bytes are the kernel's copy too
	 */
	GG_WC_KERNEL = 5,
	GG_WC_COUNT
};

/* What was done to the knob (gg_knob_event.op). */
enum gg_knob_op {
	GG_KOP_WRITE = 0, /* a write (file_permission) */
	GG_KOP_MMAP = 1,  /* a mapping (mmap_file): a BAR's file, or /dev/mem over a BAR */
	GG_KOP_COUNT
};

#define GG_KNOBF_DEVMEM (1u << 2) /* /dev/mem over a BAR (gg_knob_event.bar says which) */

/* A GPU's memory BAR as /dev/mem reaches it: physical addresses [start, end]. */
struct gg_bar_range {
	__u64 start;
	__u64 end;     /* inclusive, as sysfs resource says; 0: an unused slot */
	__u32 gpu_dev; /* GG_PCI_DEV of its GPU */
	__u8 bar;      /* BAR index */
	__u8 vendor;   /* enum gg_vendor */
	__u8 pad[2];
};
GG_ABI_ASSERT(sizeof(struct gg_bar_range) == 24, "gg_bar_range layout");

#define GG_BAR_RANGES_MAX 64
#define GG_MEM_RDEV	  ((1u << 20) | 1u) /* /dev/mem: char 1:1, by device number (any node) */

/* One write to a knob, decided before the kernel's store function runs. */
struct gg_knob_event {
	struct gg_event_hdr hdr;
	__u32 uid;
	__u32 gid;
	__u64 cgroup_id;
	char comm[GG_COMM_LEN];
	char exe_name[GG_EXE_NAME_LEN];
	struct gg_knob_key key;
	struct gg_knob knob;
	__u32 syscall_nr; /* orig_ax as the task issued it */
	__u64 offset;	  /* file position of the write */
	__u64 length;	  /* bytes the call asks to write */
	__u8 call;	  /* enum gg_write_call */
	__u8 compat;	  /* a 32-bit (int 0x80) caller */
	__u8 value_len;	  /* bytes of the value captured in value[] */
	__u8 hook;	  /* GG_HOOK_LSM_FILE_WRITE */
	__u8 mode;
	__u8 action;
	__u8 verdict;
	__u8 reason;
	__u32 grant_id;
	__u32 rule;
	__u16 capture_flags; /* GG_CAP_ARG_FAULT: the value could not be read */
	__u8 op;	     /* enum gg_knob_op */
	__u8 bar;	     /* a mapping of /dev/mem: the BAR it overlaps + 1; 0 otherwise */
	__u32 prot;	     /* a mapping: PROT_* asked for */
	__u8 value[GG_KNOB_VALUE_MAX];
	struct gg_decoded dec;
};
GG_ABI_ASSERT(sizeof(struct gg_knob_event) == 320, "gg_knob_event layout");

/* Per-class counters kept by the observer (per CPU, summed by user space). */
struct gg_class_counters {
	__u64 seen;	    /* enter records produced */
	__u64 dropped;	    /* enter records lost: ring buffer full */
	__u64 exit_dropped; /* exit records lost */
	__u64 no_state;	    /* decided without per-thread state (denied where gated) */
};

#endif /* GPUGATE_EVENT_H */
