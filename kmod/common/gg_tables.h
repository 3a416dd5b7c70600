/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * The command tables as compact arrays, expanded from the .def files and
 * defined once, in gg_tables.c: compiled into BPF's decode object, the
 * module and user space's library. Every array is sorted by its key
 * (checked by tests/unit/tables_test.cpp) so BPF and C can binary-search it.
 * The lengths are constants, counted from the same .def rows, so that a
 * search of any table has a bound the verifier can see.
 */
#ifndef GPUGATE_TABLES_H
#define GPUGATE_TABLES_H

#include "gg_table_types.h"

#define GG_ARRAY_LEN(a) ((int)(sizeof(a) / sizeof((a)[0])))

/*
 * Each table's length is the enumerator after its last row: one enumerator
 * per row, named after the row, so that a length is a constant wherever it
 * is used (a bound the BPF verifier can see).
 */
enum gg_nv_escape_rows {
#define GG_NV_ESC(nr, name, size, alt, dev, kind, cls, st, handler) GG_ROW_ESC_##name,
#include "../uapi/gpugate/nvidia_escapes.def"
#undef GG_NV_ESC
	GG_NV_ESCAPES_LEN
};

enum gg_nv_control_rows {
#define GG_NV_CTRL(id, name, priv, cls, src, psize, pkind) GG_ROW_CTRL_##name,
#include "../uapi/gpugate/nvidia_controls.def"
#undef GG_NV_CTRL
	GG_NV_CONTROLS_LEN
};

enum gg_nv_legacy_rows {
#define GG_NV_LEGACY(cc, cat, catname, cls) GG_ROW_LEGACY_##cc##_##cat,
#include "../uapi/gpugate/nvidia_legacy.def"
#undef GG_NV_LEGACY
	GG_NV_LEGACY_LEN
};

enum gg_nv_uvm_rows {
#define GG_NV_UVM(req, name, cls) GG_ROW_UVM_##name,
#include "../uapi/gpugate/nvidia_uvm.def"
#undef GG_NV_UVM
	GG_NV_UVM_LEN
};

enum gg_pkind_rows {
#define GG_PKIND(ident, names, o0, w0, o1, w1, o2, w2, o3, w3) GG_ROW_PKIND_##ident,
#include "../uapi/gpugate/pkinds.def"
#undef GG_PKIND
	GG_PKINDS_LEN
};

enum gg_drm_core_rows {
#define GG_DRM_IOCTL(nr, name, size, cls) GG_ROW_DRM_##name,
#include "../uapi/gpugate/drm.def"
#undef GG_DRM_IOCTL
	GG_DRM_CORE_LEN
};

/* Every DRM driver's own commands, in one table sorted by driver, then nr. */
enum gg_drm_driver_ioctl_rows {
#define GG_DRM_DRIVER(ident, name, vendor, table)
#define GG_DRM_DRIVER_TABLES
#define GG_DRM_DRIVER_IOCTL(drv, nr, name, size, cls) GG_ROW_DRMDRV_##drv##_##name,
#include "../uapi/gpugate/drm_drivers.def"
#undef GG_DRM_DRIVER_IOCTL
#undef GG_DRM_DRIVER_TABLES
#undef GG_DRM_DRIVER
	GG_DRM_DRIVER_IOCTLS_LEN
};

enum gg_kfd_rows {
#define GG_KFD_IOCTL(nr, name, size, cls) GG_ROW_KFD_##name,
#include "../uapi/gpugate/kfd.def"
#undef GG_KFD_IOCTL
	GG_KFD_LEN
};

extern const struct gg_nv_esc_entry gg_nv_escapes[GG_NV_ESCAPES_LEN];
extern const struct gg_nv_ctrl_entry gg_nv_controls[GG_NV_CONTROLS_LEN];
extern const struct gg_nv_legacy_entry gg_nv_legacy[GG_NV_LEGACY_LEN];
extern const struct gg_nv_uvm_entry gg_nv_uvm[GG_NV_UVM_LEN];
extern const struct gg_pkind_entry gg_pkinds[GG_PKINDS_LEN];
extern const struct gg_ioctl_entry gg_drm_core[GG_DRM_CORE_LEN];
extern const struct gg_drm_driver_entry gg_drm_drivers[GG_DRM_DRIVER_COUNT];
extern const struct gg_drm_ioctl_entry gg_drm_driver_ioctls[GG_DRM_DRIVER_IOCTLS_LEN];
extern const struct gg_ioctl_entry gg_kfd[GG_KFD_LEN];

#endif /* GPUGATE_TABLES_H */
