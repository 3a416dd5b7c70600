/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * The device behind a node the daemon's table does not name: every minor
 * of NVIDIA's major and of DRM's is a GPU node even before the daemon has
 * seen it (a node made with mknod, a GPU hot-added), decoded by its minor.
 * Shared by the BPF programs and the module, which look their own tables
 * up first.
 */
#ifndef GPUGATE_DEVICE_H
#define GPUGATE_DEVICE_H

#include "../uapi/gpugate/event.h"

#define GG_NV_MAJOR   195 /* kernel-open/common/inc/nv.h NV_MAJOR_DEVICE_NUMBER */
#define GG_DRM_MAJOR  226 /* include/uapi/drm/drm.h DRM_MAJOR */
#define GG_NV_CTL_MIN 255
#define GG_NV_MS_MIN  254

static inline int gg_default_device(__u32 rdev, struct gg_device *out)
{
	__u32 major = rdev >> 20, minor = rdev & 0xfffff;

	out->flags = 0;
	out->drm_driver = GG_DRM_GENERIC;
	if (major == GG_NV_MAJOR) {
		out->vendor = GG_VENDOR_NVIDIA;
		out->kind = minor == GG_NV_CTL_MIN  ? GG_DEV_NVIDIA_CTL
			    : minor == GG_NV_MS_MIN ? GG_DEV_NVIDIA_MODESET
						    : GG_DEV_NVIDIA_GPU;
		out->gpu_index = minor < GG_NV_MS_MIN ? (__s32)minor : -1;
		return 1;
	}
	if (major == GG_DRM_MAJOR) {
		out->vendor = GG_VENDOR_OTHER;
		out->kind = GG_DEV_DRM;
		out->gpu_index = (__s32)(minor & 0x3f);
		return 1;
	}
	return 0;
}

#endif /* GPUGATE_DEVICE_H */
