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

#define GG_COUNT_ROW(...) +1
#define GG_ARRAY_LEN(a)	  ((int)(sizeof(a) / sizeof((a)[0])))

enum {
	GG_NV_ESCAPES_LEN = 0
#define GG_NV_ESC GG_COUNT_ROW
#include "../uapi/gpugate/nvidia_escapes.def"
#undef GG_NV_ESC
	,
	GG_NV_CONTROLS_LEN = 0
#define GG_NV_CTRL GG_COUNT_ROW
#include "../uapi/gpugate/nvidia_controls.def"
#undef GG_NV_CTRL
	,
	GG_NV_LEGACY_LEN = 0
#define GG_NV_LEGACY GG_COUNT_ROW
#include "../uapi/gpugate/nvidia_legacy.def"
#undef GG_NV_LEGACY
	,
	GG_NV_UVM_LEN = 0
#define GG_NV_UVM GG_COUNT_ROW
#include "../uapi/gpugate/nvidia_uvm.def"
#undef GG_NV_UVM
	,
	GG_PKINDS_LEN = 0
#define GG_PKIND GG_COUNT_ROW
#include "../uapi/gpugate/pkinds.def"
#undef GG_PKIND
	,
#define GG_DRM_IOCTL GG_COUNT_ROW
#define GG_KFD_IOCTL GG_COUNT_ROW
	GG_DRM_CORE_LEN = 0
#include "../uapi/gpugate/drm.def"
	,
	GG_DRM_AMDGPU_LEN = 0
#include "../uapi/gpugate/amdgpu.def"
	,
	GG_DRM_I915_LEN = 0
#include "../uapi/gpugate/i915.def"
	,
	GG_DRM_XE_LEN = 0
#include "../uapi/gpugate/xe.def"
	,
	GG_KFD_LEN = 0
#include "../uapi/gpugate/kfd.def"
#undef GG_DRM_IOCTL
#undef GG_KFD_IOCTL
};

extern const struct gg_nv_esc_entry gg_nv_escapes[GG_NV_ESCAPES_LEN];
extern const struct gg_nv_ctrl_entry gg_nv_controls[GG_NV_CONTROLS_LEN];
extern const struct gg_nv_legacy_entry gg_nv_legacy[GG_NV_LEGACY_LEN];
extern const struct gg_nv_uvm_entry gg_nv_uvm[GG_NV_UVM_LEN];
extern const struct gg_pkind_entry gg_pkinds[GG_PKINDS_LEN];
extern const struct gg_ioctl_entry gg_drm_core[GG_DRM_CORE_LEN];
extern const struct gg_ioctl_entry gg_drm_amdgpu[GG_DRM_AMDGPU_LEN];
extern const struct gg_ioctl_entry gg_drm_i915[GG_DRM_I915_LEN];
extern const struct gg_ioctl_entry gg_drm_xe[GG_DRM_XE_LEN];
extern const struct gg_ioctl_entry gg_kfd[GG_KFD_LEN];

#endif /* GPUGATE_TABLES_H */
