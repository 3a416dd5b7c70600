/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * Entry types of the command tables (gg_tables.h), for code that reads
 * the tables without owning a copy of them.
 */
#ifndef GPUGATE_TABLE_TYPES_H
#define GPUGATE_TABLE_TYPES_H

#include "../uapi/gpugate/types.h"

enum gg_nv_devices { GG_NVDEV_CTL = 1, GG_NVDEV_GPU = 2, GG_NVDEV_BOTH = 3 };
enum gg_nv_esc_kind {
	GG_NVK_PLAIN = 0,
	GG_NVK_ARRAY = 1,
	GG_NVK_XFER = 2,
	GG_NVK_CONTROL = 3,
	GG_NVK_ALLOC = 4,
};

enum gg_pkind {
#define GG_PKIND(ident, names, o0, w0, o1, w1, o2, w2, o3, w3) GG_PK_##ident,
#include "../uapi/gpugate/pkinds.def"
#undef GG_PKIND
	GG_PK_COUNT
};

/* Who answers an NVIDIA escape: the glue (nvidia_ioctl) or RM (rm_ioctl). */
enum gg_nv_handler { GG_NVH_RM = 0, GG_NVH_GLUE = 1 };

struct gg_nv_esc_entry {
	__u8 nr;
	__u8 devices;
	__u8 kind;
	__u8 cls;
	__u16 size;
	__u16 alt_size;
	__u16 status_offset;
	__u8 handler; /* enum gg_nv_handler */
	__u8 pad;
};

struct gg_nv_ctrl_entry {
	__u32 id;
	__u8 priv;
	__u8 cls;
	__u8 src;
	__u8 pkind;
	__s32 param_size;
};

struct gg_nv_legacy_entry {
	__u16 cmd_class;
	__u8 category;
	__u8 cls;
};

struct gg_nv_uvm_entry {
	__u32 request;
	__u32 cls;
};

struct gg_ioctl_entry {
	__u8 nr;
	__u8 cls;
	__u16 size;
};

/* A DRM driver (drm_drivers.def): its vendor and its table's id. */
struct gg_drm_driver_entry {
	__u8 vendor; /* enum gg_vendor */
	__u8 table;  /* gg_decoded.table of its commands */
};

/* One command of a DRM driver's own table, keyed by driver and nr. */
struct gg_drm_ioctl_entry {
	__u16 key; /* enum gg_drm_driver << 8 | nr */
	__u8 cls;
	__u8 pad;
	__u16 size;
};

struct gg_pkind_entry {
	__u8 off[4];
	__u8 width[4];
};

#endif /* GPUGATE_TABLE_TYPES_H */
