/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * The command tables as compact arrays, expanded from the .def files.
 * Included once per program: by each BPF object, by the module and by
 * user space's gg_decode_c.c. Every array is sorted by its key (checked by
 * tests/unit/tables_test.cpp) so BPF and C can binary-search it.
 */
#ifndef GPUGATE_TABLES_H
#define GPUGATE_TABLES_H

#include "gg_table_types.h"

/*
 * BPF: global, so that the symbol carries its .rodata offset into BTF
 * (libbpf 1.1 cannot place static arrays and rejects the object's BTF).
 * Elsewhere: static, one copy per program.
 */
#if defined(__bpf__)
#define GG_TABLE const
#else
#define GG_TABLE static const
#endif

GG_TABLE struct gg_nv_esc_entry gg_nv_escapes[] = {
#define GG_NV_ESC(nr, name, size, alt, dev, kind, cls, st)                                         \
	{nr, GG_NVDEV_##dev, GG_NVK_##kind, GG_CLASS_##cls, size, alt, st},
#include "../uapi/gpugate/nvidia_escapes.def"
#undef GG_NV_ESC
};

GG_TABLE struct gg_nv_ctrl_entry gg_nv_controls[] = {
#define GG_NV_CTRL(id, name, priv, cls, src, psize, pkind)                                         \
	{id, GG_PRIV_##priv, GG_CLASS_##cls, GG_SRC_##src, GG_PK_##pkind, psize},
#include "../uapi/gpugate/nvidia_controls.def"
#undef GG_NV_CTRL
};

GG_TABLE struct gg_nv_legacy_entry gg_nv_legacy[] = {
#define GG_NV_LEGACY(cc, cat, catname, cls) {cc, cat, GG_CLASS_##cls},
#include "../uapi/gpugate/nvidia_legacy.def"
#undef GG_NV_LEGACY
};

GG_TABLE struct gg_nv_uvm_entry gg_nv_uvm[] = {
#define GG_NV_UVM(req, name, cls) {req, GG_CLASS_##cls},
#include "../uapi/gpugate/nvidia_uvm.def"
#undef GG_NV_UVM
};

#define GG_DRM_IOCTL(nr, name, size, cls) {nr, GG_CLASS_##cls, size},
#define GG_KFD_IOCTL(nr, name, size, cls) {nr, GG_CLASS_##cls, size},
GG_TABLE struct gg_ioctl_entry gg_drm_core[] = {
#include "../uapi/gpugate/drm.def"
};
GG_TABLE struct gg_ioctl_entry gg_drm_amdgpu[] = {
#include "../uapi/gpugate/amdgpu.def"
};
GG_TABLE struct gg_ioctl_entry gg_drm_i915[] = {
#include "../uapi/gpugate/i915.def"
};
GG_TABLE struct gg_ioctl_entry gg_drm_xe[] = {
#include "../uapi/gpugate/xe.def"
};
GG_TABLE struct gg_ioctl_entry gg_kfd[] = {
#include "../uapi/gpugate/kfd.def"
};
#undef GG_DRM_IOCTL
#undef GG_KFD_IOCTL

GG_TABLE struct gg_pkind_entry gg_pkinds[] = {
#define GG_PKIND(ident, names, o0, w0, o1, w1, o2, w2, o3, w3) {{o0, o1, o2, o3}, {w0, w1, w2, w3}},
#include "../uapi/gpugate/pkinds.def"
#undef GG_PKIND
};

#define GG_ARRAY_LEN(a) ((int)(sizeof(a) / sizeof((a)[0])))

#define GG_NV_ESCAPES_LEN  GG_ARRAY_LEN(gg_nv_escapes)
#define GG_NV_CONTROLS_LEN GG_ARRAY_LEN(gg_nv_controls)
#define GG_NV_LEGACY_LEN   GG_ARRAY_LEN(gg_nv_legacy)
#define GG_NV_UVM_LEN	   GG_ARRAY_LEN(gg_nv_uvm)

#endif /* GPUGATE_TABLES_H */
