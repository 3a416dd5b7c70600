/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * Enumerations shared by every part: classes, device kinds, vendors,
 * privileges and decode flags. Values are ABI (records, maps, ledgers).
 */
#ifndef GPUGATE_TYPES_H
#define GPUGATE_TYPES_H

#include "abi.h"

enum gg_class {
/* in the order of classes.def, whose id column says the same (tested) */
#define GG_CLASS(ident, id, name, gated) GG_CLASS_##ident,
#include "classes.def"
#undef GG_CLASS
	GG_CLASS_COUNT
};

/* What kind of node an fd points at; decides which table decodes it. */
enum gg_dev_kind {
	GG_DEV_NONE = 0,
	GG_DEV_NVIDIA_CTL = 1,	     /* 195:255 /dev/nvidiactl */
	GG_DEV_NVIDIA_GPU = 2,	     /* 195:0..247 /dev/nvidiaN */
	GG_DEV_NVIDIA_MODESET = 3,   /* 195:254 */
	GG_DEV_NVIDIA_UVM = 4,	     /* dynamic major, minor 0 */
	GG_DEV_NVIDIA_UVM_TOOLS = 5, /* dynamic major, minor 1 */
	GG_DEV_DRM = 6,		     /* 226:N, driver in drm_driver */
	GG_DEV_KFD = 7,		     /* /dev/kfd */
	GG_DEV_KIND_COUNT
};

enum gg_vendor {
	GG_VENDOR_NONE = 0,
	GG_VENDOR_NVIDIA = 1,
	GG_VENDOR_AMD = 2,
	GG_VENDOR_INTEL = 3,
	GG_VENDOR_OTHER = 4, /* virtio-gpu, bochs, vgem, ... */
	GG_VENDOR_COUNT
};

/* Which DRM driver owns a /dev/dri node (driver ioctls are per driver). */
enum gg_drm_driver {
	GG_DRM_GENERIC = 0, /* core ioctls only */
#define GG_DRM_DRIVER(ident, name, vendor, table) GG_DRM_##ident,
#include "drm_drivers.def"
#undef GG_DRM_DRIVER
	GG_DRM_DRIVER_COUNT
};

/* Privilege the driver itself would demand for the command. */
enum gg_priv {
	GG_PRIV_UNKNOWN = 0,
	GG_PRIV_NONE = 1,     /* any client that can open the node */
	GG_PRIV_ROOT = 2,     /* CAP_SYS_ADMIN */
	GG_PRIV_KERNEL = 3,   /* kernel clients only: user space is refused */
	GG_PRIV_INTERNAL = 4, /* RM-internal: user space gets NOT_SUPPORTED */
};

/* How the class was decided. */
enum gg_class_source {
	GG_SRC_NONE = 0,     /* not found: class unknown */
	GG_SRC_TABLE = 1,    /* a hand-classified table entry */
	GG_SRC_NAME = 2,     /* named in a table, class from the name */
	GG_SRC_INFERRED = 3, /* from structure (legacy category, BINAPI) */
};

/* Which table the decoded index points into. */
enum gg_table {
	GG_TAB_NONE = 0,
	GG_TAB_NV_ESCAPE = 1,
	GG_TAB_NV_CONTROL = 2,
	GG_TAB_NV_LEGACY = 3,
	GG_TAB_NV_UVM = 4,
	GG_TAB_DRM_CORE = 5,
	/* 6, 7, 8: amdgpu, i915, xe; a DRM driver's table id is in drm_drivers.def */
	GG_TAB_KFD = 9,
	GG_TAB_NV_MODESET = 10,
	GG_TAB_KNOB = 11, /* a write to a knob: nr is its enum gg_knob_rule */
	GG_TAB_COUNT = 32 /* every table id is below this */
};

/* Where a record was made. */
enum gg_hook {
	GG_HOOK_NONE = 0,
	GG_HOOK_TP_IOCTL = 1,	      /* tracepoint sys_enter_ioctl: observe only */
	GG_HOOK_LSM_IOCTL = 2,	      /* BPF LSM file_ioctl: can deny */
	GG_HOOK_LSM_IOCTL_COMPAT = 3, /* BPF LSM file_ioctl_compat (32-bit callers) */
	GG_HOOK_SIM = 4,	      /* the simulation engine */
	GG_HOOK_RAW_TP_COMPAT = 5,    /* raw tracepoint sys_enter: 32-bit callers, observe only */
	/* gpugate.ko, on the driver's own kernel copy (post-copy: race-free) */
	GG_HOOK_KMOD_RM_IOCTL = 6,  /* kprobe on NVIDIA rm_ioctl: the RM escape's struct */
	GG_HOOK_KMOD_OS_MEMCPY = 7, /* ftrace on os_memcpy_from_user: an RM control's params */
	GG_HOOK_KMOD_NV_IOCTL = 8,  /* ftrace on nvidia_unlocked_ioctl: escapes RM never sees */
	GG_HOOK_KMOD_DRM = 9,	    /* ftrace on drm_ioctl_kernel: a DRM ioctl's kdata */
	GG_HOOK_KMOD_KFD = 10,	    /* ftrace on every amdkfd ioctl handler: its kdata */
	/* BPF LSM on a GPU's sysfs/procfs knobs (docs/paths.md) */
	GG_HOOK_LSM_FILE_WRITE = 11, /* file_permission: a write */
	GG_HOOK_LSM_MMAP_FILE = 12,  /* mmap_file: a BAR's file, or /dev/mem over a BAR */
	/* gpugate.ko on the same knobs where no BPF LSM is (kmod/knob.c) */
	GG_HOOK_KMOD_KNOB_WRITE = 13, /* ftrace: sysfs and procfs writes */
	GG_HOOK_KMOD_KNOB_MMAP = 14,  /* ftrace: sysfs_kf_bin_mmap, mmap_mem */
	GG_HOOK_COUNT
};

/* The hooks of gpugate.ko, which numbers its records on its own. */
#define GG_HOOK_IS_KMOD(h)                                                                         \
	(((h) >= GG_HOOK_KMOD_RM_IOCTL && (h) <= GG_HOOK_KMOD_KFD) ||                              \
	 (h) == GG_HOOK_KMOD_KNOB_WRITE || (h) == GG_HOOK_KMOD_KNOB_MMAP)

/* What the engine may do with a gated command. */
enum gg_mode {
	GG_MODE_OBSERVE = 0, /* the hook cannot deny (tracepoints) */
	GG_MODE_MONITOR = 1, /* could deny, records "would deny" instead */
	GG_MODE_ENFORCE = 2, /* denies with EPERM */
};

/* Policy action for a class (DESIGN section 5). */
enum gg_action {
	GG_ACT_ALLOW = 0,
	GG_ACT_LOG = 1,
	GG_ACT_DENY = 2,
	GG_ACT_REQUIRE_SIGNATURE = 3,
};

/*
 * How much of a class's traffic is recorded (docs/ledger.md): a record per
 * call, a summary per process, node and command per interval, or counters
 * per class only. Gated, denied and configuration commands are always
 * recorded in full (gg_record_level_of).
 */
enum gg_record_level { GG_REC_FULL = 0, GG_REC_SUMMARY = 1, GG_REC_COUNT = 2, GG_REC_LEVELS };

enum gg_verdict {
	GG_VERDICT_ALLOW = 0,
	GG_VERDICT_DENY = 1,
	GG_VERDICT_WOULD_DENY = 2, /* monitor or observe mode: let through, recorded */
};

/* Decode flags: what was odd about the request. */
#define GG_DF_XFER	      (1u << 0)	 /* unwrapped from NV_ESC_IOCTL_XFER_CMD */
#define GG_DF_ARG_SHORT	      (1u << 1)	 /* fewer argument bytes than the struct */
#define GG_DF_INNER_SHORT     (1u << 2)	 /* fewer XFER inner bytes than the struct */
#define GG_DF_PARAMS_SHORT    (1u << 3)	 /* fewer param bytes than the params block */
#define GG_DF_ARG_FAULT	      (1u << 4)	 /* argument pointer unreadable */
#define GG_DF_INNER_FAULT     (1u << 5)	 /* XFER inner pointer unreadable */
#define GG_DF_PARAMS_FAULT    (1u << 6)	 /* params pointer unreadable */
#define GG_DF_BAD_SIZE	      (1u << 7)	 /* size the driver refuses (-EINVAL) */
#define GG_DF_WRONG_NODE      (1u << 8)	 /* escape refused on this node (ctl vs gpu) */
#define GG_DF_UNKNOWN_ESCAPE  (1u << 9)	 /* nr not in the driver's tables */
#define GG_DF_XFER_TOO_BIG    (1u << 10) /* XFER size above 16384: refused */
#define GG_DF_XFER_NESTED     (1u << 11) /* XFER inside XFER: not unwrapped by the driver */
#define GG_DF_PARAMS_MISMATCH (1u << 12) /* paramsSize differs: NV_ERR_INVALID_PARAM_STRUCT */
#define GG_DF_WORST_CASE      (1u << 13) /* params unreadable: the strictest class was chosen */
#define GG_DF_LEGACY	      (1u << 14) /* GSS-legacy opaque control (bit 15) */
#define GG_DF_BINAPI	      (1u << 15) /* control on a BINAPI pass-through object */
#define GG_DF_NONCANONICAL    (1u << 16) /* type/dir bits differ from the canonical word */
#define GG_DF_ARG_CUT	      (1u << 17) /* struct larger than what is captured */
#define GG_DF_PARAMS_CUT      (1u << 18) /* params block larger than what is captured */
#define GG_DF_NO_ARG	      (1u << 19) /* nothing captured for a struct that needs bytes */
#define GG_DF_UNDECIDED	      (1u << 20) /* bytes the decision needs were not read: fail closed */
#define GG_DF_OPAQUE_PARAMS                                                                        \
	(1u << 21)		      /* params serialized or flagged (NVOS54 flags): not trusted */
#define GG_DF_KEYS_VALID   (1u << 22) /* every key parameter was read from the params */
#define GG_DF_HEADER_SHORT (1u << 23) /* the control's body is shorter than its header */
#define GG_DF_OBJECT_KNOWN (1u << 24) /* the target object's class came from the driver's alloc */
#define GG_DF_DRIVER_REFUSES                                                                       \
	(1u << 25) /* kernel-only or internal: the driver refuses user space                       \
		    */

/*
 * Why a verdict is what it is (gg_ioctl_enter.reason). Values are ABI.
 */
enum gg_reason {
	GG_WHY_CLASS = 0,	    /* the class's action in the policy */
	GG_WHY_RULE = 1,	    /* a policy rule */
	GG_WHY_GRANT = 2,	    /* a signed grant covered it */
	GG_WHY_CAPTURE = 3,	    /* bytes it needs could not be read, waited, or changed */
	GG_WHY_UNRECORDED = 4,	    /* no record could be reserved: a gated command is denied */
	GG_WHY_NO_THREAD_STATE = 5, /* per-thread state unavailable on a gated vendor's node */
	GG_WHY_STRICT = 6,	    /* the strict profile gates this opaque privileged control */
	GG_WHY_UNDECIDED = 7,	    /* no gate saw it before the driver ran (recorded after) */
	GG_WHY_LEDGER_DOWN = 8,	    /* the daemon cannot write its ledger (disk_full_action) */
	GG_WHY_COUNT
};
#endif /* GPUGATE_TYPES_H */
