// SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT
/*
 * The one definition of the command tables (declared in gg_tables.h).
 * BPF: global const, so each symbol carries its .rodata offset into BTF
 * (libbpf cannot place static arrays).
 */
#include "gg_tables.h"

const struct gg_nv_esc_entry gg_nv_escapes[GG_NV_ESCAPES_LEN] = {
#define GG_NV_ESC(nr, name, size, alt, dev, kind, cls, st, handler)                                \
	{nr, GG_NVDEV_##dev, GG_NVK_##kind, GG_CLASS_##cls, size, alt, st, GG_NVH_##handler, 0},
#include "../uapi/gpugate/nvidia_escapes.def"
#undef GG_NV_ESC
};

const struct gg_nv_ctrl_entry gg_nv_controls[GG_NV_CONTROLS_LEN] = {
#define GG_NV_CTRL(id, name, priv, cls, src, psize, pkind)                                         \
	{id, GG_PRIV_##priv, GG_CLASS_##cls, GG_SRC_##src, GG_PK_##pkind, psize},
#include "../uapi/gpugate/nvidia_controls.def"
#undef GG_NV_CTRL
};

const struct gg_nv_legacy_entry gg_nv_legacy[GG_NV_LEGACY_LEN] = {
#define GG_NV_LEGACY(cc, cat, catname, cls) {cc, cat, GG_CLASS_##cls},
#include "../uapi/gpugate/nvidia_legacy.def"
#undef GG_NV_LEGACY
};

const struct gg_nv_uvm_entry gg_nv_uvm[GG_NV_UVM_LEN] = {
#define GG_NV_UVM(req, name, cls) {req, GG_CLASS_##cls},
#include "../uapi/gpugate/nvidia_uvm.def"
#undef GG_NV_UVM
};

const struct gg_pkind_entry gg_pkinds[GG_PKINDS_LEN] = {
#define GG_PKIND(ident, names, o0, w0, o1, w1, o2, w2, o3, w3) {{o0, o1, o2, o3}, {w0, w1, w2, w3}},
#include "../uapi/gpugate/pkinds.def"
#undef GG_PKIND
};

#define GG_DRM_IOCTL(nr, name, size, cls) {nr, GG_CLASS_##cls, size},
#define GG_KFD_IOCTL(nr, name, size, cls) {nr, GG_CLASS_##cls, size},
const struct gg_ioctl_entry gg_drm_core[GG_DRM_CORE_LEN] = {
#include "../uapi/gpugate/drm.def"
};
const struct gg_ioctl_entry gg_kfd[GG_KFD_LEN] = {
#include "../uapi/gpugate/kfd.def"
};
#undef GG_DRM_IOCTL
#undef GG_KFD_IOCTL

const struct gg_drm_driver_entry gg_drm_drivers[GG_DRM_DRIVER_COUNT] = {
	{GG_VENDOR_OTHER, GG_TAB_NONE}, /* GG_DRM_GENERIC: core ioctls only */
#define GG_DRM_DRIVER(ident, name, vendor, table) {GG_VENDOR_##vendor, table},
#include "../uapi/gpugate/drm_drivers.def"
#undef GG_DRM_DRIVER
};

const struct gg_drm_ioctl_entry gg_drm_driver_ioctls[GG_DRM_DRIVER_IOCTLS_LEN] = {
#define GG_DRM_DRIVER(ident, name, vendor, table)
#define GG_DRM_DRIVER_TABLES
#define GG_DRM_DRIVER_IOCTL(drv, nr, name, size, cls)                                              \
	{GG_DRM_##drv << 8 | (nr), GG_CLASS_##cls, 0, size},
#include "../uapi/gpugate/drm_drivers.def"
#undef GG_DRM_DRIVER_IOCTL
#undef GG_DRM_DRIVER_TABLES
#undef GG_DRM_DRIVER
};
