/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * The shared decoder: from (device kind, request word, captured bytes) to
 * vendor, escape, command, class, privilege and key parameters.
 *
 * Pure C for three homes: BPF programs, the kernel module and user space.
 * No allocation, no calls out, loops bounded by constants, and every read
 * checked against the captured length: input may be truncated, garbage or
 * hostile, and the answer then says so in gg_decoded.flags.
 *
 * Capturing is staged because each step says where the next bytes are:
 *   1. capture gg_arg_want() bytes of the ioctl argument;
 *   2. if gg_xfer_ref() says so, capture the XFER inner struct;
 *   3. if gg_params_ref() says so, capture the RM params block;
 *   4. gg_decode().
 *
 * The staging helpers are inline everywhere. The decoder proper and its
 * table searches are written once, as *_body functions; in the kernel and
 * user space they are inline, in BPF global functions defined once in
 * bpf/decode.bpf.c beside the one copy of the tables, which every other
 * BPF object of gpugate is linked against (the verifier checks each once).
 * Homes outside the kernel define __always_inline before including this.
 */
#ifndef GPUGATE_DECODE_H
#define GPUGATE_DECODE_H

#include "../uapi/gpugate/event.h"
#include "gg_tables.h"

/*
 * Pins a value to one register, so that the bounds check that follows is
 * made on the register later used as an index (else clang may check a
 * copy and the verifier sees an unbounded index).
 */
#if defined(__bpf__)
#define GG_PIN(v) ({ asm volatile("" : "+r"(v)); })
#else
#define GG_PIN(v) ((void)0)
#endif

#define GG_NO_INDEX			   0xffff
#define GG_NV_IOCTL_MAGIC		   0x46 /* 'F', kernel-open/common/inc/nv-ioctl-numbers.h:33 */
#define GG_NV_ESC_XFER			   0xD3
#define GG_NV_NVOS54_SIZE		   32
#define GG_NV_NVOS21_SIZE		   32
#define GG_NV_NVOS64_SIZE		   48
#define GG_NV_GSS_LEGACY		   0x8000u /* rmapi_deprecated.h:41-43 */
#define GG_NV_GSS_LEGACY_PRIV		   0xC000u
#define GG_NV_CLASS_BINAPI		   0x2081u
#define GG_NV_CLASS_BINAPI_PRIV		   0x2082u
#define GG_DRM_IOCTL_TYPE		   0x64 /* 'd' */
#define GG_DRM_COMMAND_BASE		   0x40
#define GG_DRM_COMMAND_END		   0xA0
#define GG_KFD_IOCTL_TYPE		   0x4B /* 'K' */
#define GG_NVKMS_IOCTL_TYPE		   0x6D /* 'm' */
/*
 * torvalds/linux include/uapi/drm/amdgpu_drm.h: DRM_AMDGPU_CTX 0x02,
 * AMDGPU_CTX_OP_SET_STABLE_PSTATE 6
 */
#define GG_AMDGPU_CTX_NR		   0x42
#define GG_AMDGPU_CTX_OP_SET_STABLE_PSTATE 6

static __always_inline __u32 gg_ioc_nr(__u32 req)
{
	return req & 0xff;
}

static __always_inline __u32 gg_ioc_type(__u32 req)
{
	return (req >> 8) & 0xff;
}

static __always_inline __u32 gg_ioc_size(__u32 req)
{
	return (req >> 16) & 0x3fff;
}

/* Little-endian read of width bytes at off; 0 when it would pass len. */
static __always_inline __u64 gg_rdle(const __u8 *buf, __u32 len, __u32 off, __u32 width)
{
	__u64 v = 0;
	__u32 i;

	off &= 0x7f; /* every fixed offset we read is below 128 */
	if (width > 8 || off + width > len)
		return 0;
	for (i = 0; i < 8; i++) {
		if (i >= width)
			break;
		v |= (__u64)buf[off + i] << (8 * i);
	}
	return v;
}

static __always_inline __u32 gg_rd32(const __u8 *buf, __u32 len, __u32 off)
{
	return (__u32)gg_rdle(buf, len, off, 4);
}

static __always_inline __u64 gg_rd64(const __u8 *buf, __u32 len, __u32 off)
{
	return gg_rdle(buf, len, off, 8);
}

/*
 * Binary search of a sorted table for key in field: the index, or -1. At
 * most 16 rounds: enough for 65535 entries, and a constant bound the
 * verifier can see. The length must be a constant where this expands.
 */
#define GG_BSEARCH(table, len, field, key)                                                         \
	({                                                                                         \
		int lo_ = 0, hi_ = (len), i_, found_ = -1;                                         \
		for (i_ = 0; i_ < 16 && lo_ < hi_; i_++) {                                         \
			int mid_ = (lo_ + hi_) >> 1;                                               \
			GG_PIN(mid_);                                                              \
			if (mid_ < 0 || mid_ >= (len))                                             \
				break;                                                             \
			if ((table)[mid_].field == (key)) {                                        \
				found_ = mid_;                                                     \
				break;                                                             \
			}                                                                          \
			if ((table)[mid_].field < (key))                                           \
				lo_ = mid_ + 1;                                                    \
			else                                                                       \
				hi_ = mid_;                                                        \
		}                                                                                  \
		found_;                                                                            \
	})

static __always_inline int gg_find_nv_escape_body(__u32 nr)
{
	return GG_BSEARCH(gg_nv_escapes, GG_NV_ESCAPES_LEN, nr, nr);
}

static __always_inline int gg_find_nv_control_body(__u32 id)
{
	return GG_BSEARCH(gg_nv_controls, GG_NV_CONTROLS_LEN, id, id);
}

/*
 * The DRM/KFD searches, one function per table: the table's address stays a
 * constant in each, so the verifier reads its entries as known values.
 */
static __always_inline int gg_find_drm_core_body(__u32 nr)
{
	return GG_BSEARCH(gg_drm_core, GG_DRM_CORE_LEN, nr, nr);
}

static __always_inline int gg_find_kfd_body(__u32 nr)
{
	return GG_BSEARCH(gg_kfd, GG_KFD_LEN, nr, nr);
}

/* key: driver << 8 | nr */
static __always_inline int gg_find_drm_driver_body(__u32 key)
{
	return GG_BSEARCH(gg_drm_driver_ioctls, GG_DRM_DRIVER_IOCTLS_LEN, key, key);
}

/*
 * In BPF the table searches and the decoder are global functions: the
 * verifier checks each once on its own instead of once per call path,
 * which keeps the observer far below the instruction limit.
 */
#if defined(__bpf__)
int gg_find_nv_escape(__u32 nr);
int gg_find_nv_control(__u32 id);
int gg_find_drm_core(__u32 nr);
int gg_find_kfd(__u32 nr);
int gg_find_drm_driver(__u32 key);
int gg_decode(const struct gg_raw *raw, struct gg_decoded *d);
#else
static inline int gg_find_nv_escape(__u32 nr)
{
	return gg_find_nv_escape_body(nr);
}

static inline int gg_find_nv_control(__u32 id)
{
	return gg_find_nv_control_body(id);
}

static inline int gg_find_drm_core(__u32 nr)
{
	return gg_find_drm_core_body(nr);
}

static inline int gg_find_kfd(__u32 nr)
{
	return gg_find_kfd_body(nr);
}

static inline int gg_find_drm_driver(__u32 key)
{
	return gg_find_drm_driver_body(key);
}
#endif

/*
 * An entry of a DRM/KFD table by the index its search returned. In BPF the
 * search is a global function, checked once: the index comes back as one
 * unknown value, bounded here by the table's constant length, instead of a
 * known index per path through the search that the verifier would follow
 * through the rest of the decoder (6.1's verifier ran out that way).
 */
#define GG_IOCTL_AT(tab, len, i, cls, size)                                                        \
	({                                                                                         \
		__u32 at_ = (__u32)(i); /* -1 becomes too large: one unsigned bound */             \
		int found_at_ = -1;                                                                \
		GG_PIN(at_);                                                                       \
		if (at_ < (__u32)(len)) {                                                          \
			*(cls) = (tab)[at_].cls;                                                   \
			*(size) = (tab)[at_].size;                                                 \
			found_at_ = (int)at_;                                                      \
		}                                                                                  \
		found_at_;                                                                         \
	})

/* Index of nr in the DRM core or the KFD table, -1 if absent. */
static __always_inline int gg_find_ioctl(__u32 table, __u32 nr, __u32 *cls, __u32 *size)
{
	switch (table) {
	case GG_TAB_DRM_CORE:
		return GG_IOCTL_AT(gg_drm_core, GG_DRM_CORE_LEN, gg_find_drm_core(nr), cls, size);
	case GG_TAB_KFD:
		return GG_IOCTL_AT(gg_kfd, GG_KFD_LEN, gg_find_kfd(nr), cls, size);
	default:
		return -1;
	}
}

/* Index of a DRM driver's own command in gg_drm_driver_ioctls, -1 if absent. */
static __always_inline int gg_find_drm_driver_ioctl(__u32 driver, __u32 nr, __u32 *cls, __u32 *size)
{
	__u32 key = (driver & 0xff) << 8 | (nr & 0xff);

	return GG_IOCTL_AT(gg_drm_driver_ioctls, GG_DRM_DRIVER_IOCTLS_LEN, gg_find_drm_driver(key),
			   cls, size);
}

static __always_inline int gg_find_nv_legacy(__u32 cmd_class, __u32 category)
{
	__u32 key = cmd_class << 8 | category;
	int i;

	for (i = 0; i < GG_NV_LEGACY_LEN; i++) {
		__u32 k = (__u32)gg_nv_legacy[i].cmd_class << 8 | gg_nv_legacy[i].category;

		if (k == key)
			return i;
	}
	return -1;
}

static __always_inline int gg_find_nv_uvm(__u32 request)
{
	int i;

	for (i = 0; i < GG_NV_UVM_LEN; i++) {
		if (gg_nv_uvm[i].request == request)
			return i;
	}
	return -1;
}

/* A DRM driver's row (drm_drivers.def): a constant bound for the verifier. */
static __always_inline const struct gg_drm_driver_entry *gg_drm_driver(__u32 driver)
{
	__u32 i;

	for (i = 0; i < GG_DRM_DRIVER_COUNT; i++)
		if (i == driver)
			return &gg_drm_drivers[i];
	return &gg_drm_drivers[GG_DRM_GENERIC];
}

static __always_inline int gg_is_nvidia_rm(__u32 dev_kind)
{
	return dev_kind == GG_DEV_NVIDIA_CTL || dev_kind == GG_DEV_NVIDIA_GPU;
}

/* Step 1: how many argument bytes to capture. */
static __always_inline __u32 gg_arg_want(__u32 dev_kind, __u32 request)
{
	__u32 size = gg_ioc_size(request);

	if (dev_kind == GG_DEV_NONE)
		return 0;
	return size < GG_ARG_MAX ? size : GG_ARG_MAX;
}

/*
 * Step 2: is this an NVIDIA XFER, and where is its inner struct?
 * Returns 1 and fills ptr/len (len capped to GG_ARG_MAX) if so.
 */
static __always_inline int gg_xfer_ref(const struct gg_raw *raw, __u64 *ptr, __u32 *len)
{
	__u32 size;

	if (!gg_is_nvidia_rm(raw->dev_kind) || gg_ioc_nr(raw->request) != GG_NV_ESC_XFER ||
	    raw->arg_len < 16)
		return 0;
	size = gg_rd32(raw->arg, raw->arg_len, 4);
	*ptr = gg_rd64(raw->arg, raw->arg_len, 8);
	*len = size < GG_ARG_MAX ? size : GG_ARG_MAX;
	return 1;
}

/*
 * The NVIDIA struct that describes the request: the outer argument, or
 * for an XFER the inner struct. Gives its bytes, effective escape and the
 * size the caller declared for it.
 */
static __always_inline void gg_nv_body(const struct gg_raw *raw, const __u8 **body, __u32 *body_len,
				       __u32 *nr, __u32 *size)
{
	*nr = gg_ioc_nr(raw->request);
	*size = gg_ioc_size(raw->request);
	*body = raw->arg;
	*body_len = raw->arg_len;
	if (*nr == GG_NV_ESC_XFER && raw->arg_len >= 16) {
		*nr = gg_rd32(raw->arg, raw->arg_len, 0);
		*size = gg_rd32(raw->arg, raw->arg_len, 4);
		*body = raw->inner;
		*body_len = raw->inner_len;
	}
}

/* Offsets of the params pointer/size in an RM control or alloc struct. */
static __always_inline int gg_nv_params_fields(__u32 nr, __u32 size, __u32 *ptr_off,
					       __u32 *size_off)
{
	if (nr == 0x2A && size == GG_NV_NVOS54_SIZE) {
		*ptr_off = 16;
		*size_off = 24;
		return 1;
	}
	if (nr == 0x2B && size == GG_NV_NVOS21_SIZE) {
		*ptr_off = 16;
		*size_off = 24;
		return 1;
	}
	if (nr == 0x2B && size == GG_NV_NVOS64_SIZE) {
		*ptr_off = 16;
		*size_off = 32;
		return 1;
	}
	return 0;
}

/*
 * Step 3: where is the params block of an RM control or alloc?
 * Returns 1 and fills ptr/len (len capped to GG_PARAMS_MAX) if there is one.
 */
static __always_inline int gg_params_ref(const struct gg_raw *raw, __u64 *ptr, __u32 *len)
{
	const __u8 *body;
	__u32 body_len, nr, size, ptr_off, size_off, psize;

	if (!gg_is_nvidia_rm(raw->dev_kind))
		return 0;
	gg_nv_body(raw, &body, &body_len, &nr, &size);
	if (!gg_nv_params_fields(nr, size, &ptr_off, &size_off) || body_len < size)
		return 0;
	*ptr = gg_rd64(body, body_len, ptr_off);
	psize = gg_rd32(body, body_len, size_off);
	if (!*ptr || !psize)
		return 0;
	*len = psize < GG_PARAMS_MAX ? psize : GG_PARAMS_MAX;
	return 1;
}

/*
 * Between steps 1-2 and 3: the RM handles a control is addressed to, so
 * that the capturer can look up the object's class (learned from the
 * driver's own alloc results) into raw->target_class. 1 for an RM control.
 */
static __always_inline int gg_control_ref(const struct gg_raw *raw, __u32 *client, __u32 *object)
{
	const __u8 *body;
	__u32 body_len, nr, size;

	if (!gg_is_nvidia_rm(raw->dev_kind))
		return 0;
	gg_nv_body(raw, &body, &body_len, &nr, &size);
	if (nr != 0x2A || body_len < 8)
		return 0;
	*client = gg_rd32(body, body_len, 0);
	*object = gg_rd32(body, body_len, 4);
	return 1;
}

/* Does the driver's glue answer this escape itself (rm_ioctl never sees it)? */
static __always_inline int gg_nv_escape_in_glue(__u32 nr)
{
	int i = gg_find_nv_escape(nr);

	GG_PIN(i);
	return i >= 0 && i < GG_NV_ESCAPES_LEN && gg_nv_escapes[i].handler == GG_NVH_GLUE;
}

/* Where the driver puts the RM status word in an escape's struct, 0 if none. */
static __always_inline __u32 gg_nv_escape_status_offset(__u32 nr, __u32 size)
{
	int i = gg_find_nv_escape(nr);

	GG_PIN(i);
	if (i < 0 || i >= GG_NV_ESCAPES_LEN)
		return 0;
	if (nr == 0x2B && size == GG_NV_NVOS64_SIZE)
		return 40;
	return gg_nv_escapes[i].status_offset;
}

/* The request word the driver's own validation would accept for nr, size. */
static __always_inline __u32 gg_nv_request(__u32 nr, __u32 size)
{
	return 0xC0000000u | (size & 0x3fff) << 16 | GG_NV_IOCTL_MAGIC << 8 | (nr & 0xff);
}

static __always_inline void gg_set_class(struct gg_decoded *d, __u32 cls, __u32 src)
{
	d->cls = cls;
	d->cls_source = src;
}

/* Lift the key fields of a params block into d->key[]. */
static __always_inline int gg_nv_key_params(const struct gg_raw *raw, struct gg_decoded *d,
					    __u32 pkind)
{
	__u32 i, have = raw->params_len;
	int complete = 1;

	if (pkind >= GG_PK_COUNT)
		return 0;
	d->pkind = pkind;
	for (i = 0; i < 4; i++) {
		__u32 off = gg_pkinds[pkind].off[i];
		__u32 w = gg_pkinds[pkind].width[i];

		if (!w)
			continue;
		if (off + w > have) {
			complete = 0;
			continue;
		}
		d->key[i] = gg_rdle(raw->params, have, off, w);
	}
	return complete;
}

/* Say why params bytes are missing, if they are. */
static __always_inline void gg_nv_params_flags(const struct gg_raw *raw, struct gg_decoded *d)
{
	__u32 want = d->params_size < GG_PARAMS_MAX ? d->params_size : GG_PARAMS_MAX;

	if (d->params_size > GG_PARAMS_MAX)
		d->flags |= GG_DF_PARAMS_CUT;
	if (raw->capture_flags & GG_CAP_PARAMS_FAULT)
		d->flags |= GG_DF_PARAMS_FAULT;
	else if (raw->params_len < want)
		d->flags |= GG_DF_PARAMS_SHORT;
}

static __always_inline void gg_nv_control(const struct gg_raw *raw, struct gg_decoded *d,
					  const __u8 *body, __u32 body_len)
{
	__u32 cmd = gg_rd32(body, body_len, 8);
	__u32 binapi = raw->target_class == GG_NV_CLASS_BINAPI ||
		       raw->target_class == GG_NV_CLASS_BINAPI_PRIV;
	int idx, complete;

	d->client = gg_rd32(body, body_len, 0);
	d->object = gg_rd32(body, body_len, 4);
	d->command = cmd;
	d->params_ptr = gg_rd64(body, body_len, 16);
	d->params_size = gg_rd32(body, body_len, 24);
	d->status_offset = 28;
	if (raw->target_class)
		d->flags |= GG_DF_OBJECT_KNOWN;
	/*
	 * NVOS54 flags: FINN-serialized params, or kernel-only modes; either
	 * way the bytes at params are not the struct the tables describe
	 */
	if (gg_rd32(body, body_len, 12))
		d->flags |= GG_DF_OPAQUE_PARAMS;
	if (d->params_ptr && d->params_size) {
		gg_nv_params_flags(raw, d);
		if (d->flags & (GG_DF_PARAMS_FAULT | GG_DF_PARAMS_SHORT))
			d->flags |= GG_DF_UNDECIDED;
	}

	if (binapi) {
		d->flags |= GG_DF_BINAPI;
		d->priv =
			raw->target_class == GG_NV_CLASS_BINAPI_PRIV ? GG_PRIV_ROOT : GG_PRIV_NONE;
	}

	idx = gg_find_nv_control(cmd);
	GG_PIN(idx);
	if (idx >= 0 && idx < GG_NV_CONTROLS_LEN) {
		const struct gg_nv_ctrl_entry *e = &gg_nv_controls[idx];

		d->table = GG_TAB_NV_CONTROL;
		d->index = idx;
		if (!binapi)
			d->priv = e->priv;
		if (e->priv == GG_PRIV_KERNEL || e->priv == GG_PRIV_INTERNAL)
			d->flags |= GG_DF_DRIVER_REFUSES;
		gg_set_class(d, e->cls, e->src);
		if (e->param_size >= 0 && d->params_size != (__u32)e->param_size)
			d->flags |= GG_DF_PARAMS_MISMATCH;
		complete = gg_nv_key_params(raw, d, e->pkind) && !(d->flags & GG_DF_OPAQUE_PARAMS);
		if (complete && e->pkind != GG_PK_NONE)
			d->flags |= GG_DF_KEYS_VALID;
		if (e->pkind == GG_PK_DRAIN) {
			/* REMOVE_DEVICE (flags bit 0) on an enable takes the GPU off the bus */
			if (!complete) {
				gg_set_class(d, GG_CLASS_POWER_OFF, e->src);
				d->flags |= GG_DF_WORST_CASE;
			} else if (d->key[1] == 1 && (d->key[2] & 1)) {
				d->cls = GG_CLASS_POWER_OFF;
			}
		} else if (e->pkind == GG_PK_GPS) {
			/* GPS_SYS_SET_MAX_POWER 0x100, DATA_SET_POWER_SIM_STATE 0x250 */
			if (!complete) {
				gg_set_class(d, GG_CLASS_POWER_LIMIT, e->src);
				d->flags |= GG_DF_WORST_CASE;
			} else if (d->key[0] == 0x100 || d->key[0] == 0x250) {
				d->cls = GG_CLASS_POWER_LIMIT;
			}
		}
		return;
	}

	if (cmd & GG_NV_GSS_LEGACY) {
		__u32 privileged = (cmd & GG_NV_GSS_LEGACY_PRIV) == GG_NV_GSS_LEGACY_PRIV;
		int l;

		d->flags |= GG_DF_LEGACY;
		if (!binapi)
			d->priv = privileged ? GG_PRIV_ROOT : GG_PRIV_NONE;
		gg_set_class(d, GG_CLASS_UNKNOWN, GG_SRC_INFERRED);
		if (!privileged)
			return;
		l = gg_find_nv_legacy(cmd >> 16, (cmd >> 8) & 0x3f);
		GG_PIN(l);
		if (l >= 0 && l < GG_NV_LEGACY_LEN) {
			d->table = GG_TAB_NV_LEGACY;
			d->index = l;
			d->cls = gg_nv_legacy[l].cls;
		}
		return;
	}
	gg_set_class(d, GG_CLASS_UNKNOWN, binapi ? GG_SRC_INFERRED : GG_SRC_NONE);
}

static __always_inline void gg_nv_alloc(const struct gg_raw *raw, struct gg_decoded *d,
					const __u8 *body, __u32 body_len, __u32 size)
{
	__u32 ptr_off, size_off;

	d->client = gg_rd32(body, body_len, 0);
	d->object = gg_rd32(body, body_len, 4);
	d->command = gg_rd32(body, body_len, 12); /* hClass */
	d->key[0] = gg_rd32(body, body_len, 8);	  /* hObjectNew */
	if (gg_nv_params_fields(0x2B, size, &ptr_off, &size_off)) {
		d->params_ptr = gg_rd64(body, body_len, ptr_off);
		d->params_size = gg_rd32(body, body_len, size_off);
		d->status_offset = size == GG_NV_NVOS64_SIZE ? 40 : 28;
	}
	if (d->params_ptr && d->params_size)
		gg_nv_params_flags(raw, d);
	d->priv = d->command == GG_NV_CLASS_BINAPI_PRIV ? GG_PRIV_ROOT : GG_PRIV_NONE;
	if (d->command == GG_NV_CLASS_BINAPI || d->command == GG_NV_CLASS_BINAPI_PRIV)
		d->flags |= GG_DF_BINAPI;
}

/* Is size what the driver accepts for this escape? */
static __always_inline int gg_nv_size_ok(const struct gg_nv_esc_entry *e, __u32 size)
{
	if (e->kind == GG_NVK_ARRAY)
		return e->size && size && size % e->size == 0;
	return size == e->size || (e->alt_size && size == e->alt_size);
}

static __always_inline void gg_decode_nvidia(const struct gg_raw *raw, struct gg_decoded *d)
{
	__u32 req = raw->request, nr = gg_ioc_nr(req), size = gg_ioc_size(req);
	__u32 canonical = 0xC0000000u | size << 16 | GG_NV_IOCTL_MAGIC << 8 | nr;
	const struct gg_nv_esc_entry *e;
	const __u8 *body;
	__u32 body_len, want;
	int idx;

	d->vendor = GG_VENDOR_NVIDIA;
	d->outer_nr = nr;
	d->nr = nr;
	d->command = nr;
	d->priv = GG_PRIV_NONE;
	if (req != canonical)
		d->flags |= GG_DF_NONCANONICAL;
	if (raw->capture_flags & GG_CAP_ARG_FAULT)
		d->flags |= GG_DF_ARG_FAULT;
	else if (raw->arg_len < (size < GG_ARG_MAX ? size : GG_ARG_MAX))
		d->flags |= GG_DF_ARG_SHORT;
	if (size > GG_ARG_MAX)
		d->flags |= GG_DF_ARG_CUT;

	idx = gg_find_nv_escape(nr);
	GG_PIN(idx);
	if (idx < 0 || idx >= GG_NV_ESCAPES_LEN) {
		d->flags |= GG_DF_UNKNOWN_ESCAPE;
		gg_set_class(d, GG_CLASS_UNKNOWN, GG_SRC_NONE);
		return;
	}
	e = &gg_nv_escapes[idx];
	if (e->size == 0)
		d->flags |= GG_DF_UNKNOWN_ESCAPE;
	else if (!gg_nv_size_ok(e, size))
		d->flags |= GG_DF_BAD_SIZE;

	body = raw->arg;
	body_len = raw->arg_len;
	want = size;
	if (e->kind == GG_NVK_XFER) {
		d->flags |= GG_DF_XFER;
		if (raw->arg_len < 16) {
			/* the tunnel's own header is missing: it could carry anything */
			d->flags |= GG_DF_UNDECIDED;
			d->table = GG_TAB_NV_ESCAPE;
			d->index = idx;
			gg_set_class(d, GG_CLASS_UNKNOWN, GG_SRC_NONE);
			return;
		}
		nr = gg_rd32(raw->arg, raw->arg_len, 0);
		want = gg_rd32(raw->arg, raw->arg_len, 4);
		d->inner_size = want;
		d->inner_ptr = gg_rd64(raw->arg, raw->arg_len, 8);
		if (want > GG_NV_XFER_MAX)
			d->flags |= GG_DF_XFER_TOO_BIG;
		if (raw->capture_flags & GG_CAP_INNER_FAULT)
			d->flags |= GG_DF_INNER_FAULT;
		else if (raw->inner_len < (want < GG_ARG_MAX ? want : GG_ARG_MAX))
			d->flags |= GG_DF_INNER_SHORT;
		if (want > GG_ARG_MAX)
			d->flags |= GG_DF_ARG_CUT;
		d->command = nr;
		if (nr > 0xff) {
			/* the driver switches on the full word: no escape matches */
			d->flags |= GG_DF_UNKNOWN_ESCAPE;
			gg_set_class(d, GG_CLASS_UNKNOWN, GG_SRC_NONE);
			return;
		}
		d->nr = nr;
		if (nr == GG_NV_ESC_XFER) {
			d->flags |= GG_DF_XFER_NESTED;
			gg_set_class(d, GG_CLASS_UNKNOWN, GG_SRC_NONE);
			return;
		}
		idx = gg_find_nv_escape(nr);
		GG_PIN(idx);
		if (idx < 0 || idx >= GG_NV_ESCAPES_LEN) {
			d->flags |= GG_DF_UNKNOWN_ESCAPE;
			gg_set_class(d, GG_CLASS_UNKNOWN, GG_SRC_NONE);
			return;
		}
		e = &gg_nv_escapes[idx];
		if (e->size == 0)
			d->flags |= GG_DF_UNKNOWN_ESCAPE;
		else if (!gg_nv_size_ok(e, want))
			d->flags |= GG_DF_BAD_SIZE;
		body = raw->inner;
		body_len = raw->inner_len;
	}

	d->table = GG_TAB_NV_ESCAPE;
	d->index = idx;
	d->command = nr;
	if ((e->devices == GG_NVDEV_CTL && raw->dev_kind != GG_DEV_NVIDIA_CTL) ||
	    (e->devices == GG_NVDEV_GPU && raw->dev_kind != GG_DEV_NVIDIA_GPU))
		d->flags |= GG_DF_WRONG_NODE;
	gg_set_class(d, e->cls, GG_SRC_TABLE);
	d->status_offset = e->status_offset;

	if (e->kind == GG_NVK_CONTROL) {
		/* a control whose struct was not read could be any control */
		if (d->flags &
		    (GG_DF_ARG_FAULT | GG_DF_ARG_SHORT | GG_DF_INNER_FAULT | GG_DF_INNER_SHORT))
			d->flags |= GG_DF_UNDECIDED;
		if (body_len < GG_NV_NVOS54_SIZE)
			d->flags |= GG_DF_HEADER_SHORT | GG_DF_UNDECIDED;
		if (body_len < 12) {
			gg_set_class(d, GG_CLASS_UNKNOWN, GG_SRC_NONE);
			d->status_offset = 28;
			return;
		}
		gg_nv_control(raw, d, body, body_len);
	} else if (e->kind == GG_NVK_ALLOC) {
		gg_nv_alloc(raw, d, body, body_len, want);
	} else if (e->kind == GG_NVK_PLAIN || e->kind == GG_NVK_ARRAY) {
		d->key[0] = gg_rd32(body, body_len, 0);
	}
}

static __always_inline void gg_decode_uvm(const struct gg_raw *raw, struct gg_decoded *d)
{
	int idx = gg_find_nv_uvm(raw->request);

	GG_PIN(idx);
	d->vendor = GG_VENDOR_NVIDIA;
	d->command = raw->request;
	d->priv = GG_PRIV_NONE;
	if (idx < 0 || idx >= GG_NV_UVM_LEN) {
		gg_set_class(d, GG_CLASS_UNKNOWN, GG_SRC_NONE);
		return;
	}
	d->table = GG_TAB_NV_UVM;
	d->index = idx;
	gg_set_class(d, gg_nv_uvm[idx].cls, GG_SRC_TABLE);
}

/* nvidia-modeset takes one ioctl that wraps {cmd, size, address}. */
static __always_inline void gg_decode_modeset(const struct gg_raw *raw, struct gg_decoded *d)
{
	d->vendor = GG_VENDOR_NVIDIA;
	d->nr = gg_ioc_nr(raw->request);
	d->outer_nr = d->nr;
	d->command = raw->request;
	d->priv = GG_PRIV_NONE;
	if (d->nr != 0 || gg_ioc_size(raw->request) != 16) {
		d->flags |= GG_DF_UNKNOWN_ESCAPE;
		gg_set_class(d, GG_CLASS_UNKNOWN, GG_SRC_NONE);
		return;
	}
	d->table = GG_TAB_NV_MODESET;
	d->index = 0;
	d->command = gg_rd32(raw->arg, raw->arg_len, 0);
	d->key[0] = d->command;
	d->key[1] = gg_rd32(raw->arg, raw->arg_len, 4);
	if (raw->arg_len < 16)
		d->flags |=
			(raw->capture_flags & GG_CAP_ARG_FAULT) ? GG_DF_ARG_FAULT : GG_DF_ARG_SHORT;
	gg_set_class(d, GG_CLASS_OTHER, GG_SRC_TABLE);
}

/* DRM and KFD: the driver picks its handler by the nr byte. */
static __always_inline void gg_decode_drm_kfd(const struct gg_raw *raw, struct gg_decoded *d)
{
	__u32 req = raw->request, nr = gg_ioc_nr(req), size = gg_ioc_size(req);
	__u32 table, type, cls = 0, esize = 0, own = 0;
	int idx;

	d->nr = nr;
	d->outer_nr = nr;
	d->command = req;
	d->priv = GG_PRIV_UNKNOWN;
	if (raw->dev_kind == GG_DEV_KFD) {
		d->vendor = GG_VENDOR_AMD;
		table = GG_TAB_KFD;
		type = GG_KFD_IOCTL_TYPE;
	} else {
		const struct gg_drm_driver_entry *drv = gg_drm_driver(raw->drm_driver);

		d->vendor = drv->vendor;
		type = GG_DRM_IOCTL_TYPE;
		table = GG_TAB_DRM_CORE;
		/* the driver's own range: its table (drm_drivers.def), if it has one */
		if (nr >= GG_DRM_COMMAND_BASE && nr < GG_DRM_COMMAND_END) {
			table = drv->table;
			own = table != GG_TAB_NONE;
		}
	}
	if (raw->capture_flags & GG_CAP_ARG_FAULT)
		d->flags |= GG_DF_ARG_FAULT;
	else if (raw->arg_len < (size < GG_ARG_MAX ? size : GG_ARG_MAX))
		d->flags |= GG_DF_ARG_SHORT;
	if (size > GG_ARG_MAX)
		d->flags |= GG_DF_ARG_CUT;
	if (own)
		idx = gg_find_drm_driver_ioctl(raw->drm_driver, nr, &cls, &esize);
	else
		idx = gg_find_ioctl(table, nr, &cls, &esize);
	if (idx < 0) {
		d->flags |= GG_DF_UNKNOWN_ESCAPE;
		gg_set_class(d, GG_CLASS_UNKNOWN, GG_SRC_NONE);
		return;
	}
	d->table = table;
	d->index = idx;
	gg_set_class(d, cls, GG_SRC_TABLE);
	if (gg_ioc_type(req) != type || size != esize)
		d->flags |= GG_DF_NONCANONICAL;
	if (own && raw->drm_driver == GG_DRM_AMDGPU && nr == GG_AMDGPU_CTX_NR) {
		/* drm_amdgpu_ctx_in {op, flags, ...}: SET_STABLE_PSTATE pins the clocks */
		if (raw->arg_len < 8) {
			gg_set_class(d, GG_CLASS_CLOCK_LIMIT, GG_SRC_TABLE);
			d->flags |= GG_DF_WORST_CASE | GG_DF_UNDECIDED;
			return;
		}
		d->key[0] = gg_rd32(raw->arg, raw->arg_len, 0);
		d->key[1] = gg_rd32(raw->arg, raw->arg_len, 4);
		d->flags |= GG_DF_KEYS_VALID;
		if (d->key[0] == GG_AMDGPU_CTX_OP_SET_STABLE_PSTATE)
			d->cls = GG_CLASS_CLOCK_LIMIT;
	}
}

/* Step 4: decode. Never reads outside raw; never fails. */
static inline int gg_decode_body(const struct gg_raw *raw, struct gg_decoded *d)
{
	if (!raw || !d)
		return -1;
	__builtin_memset(d, 0, sizeof(*d));
	d->index = GG_NO_INDEX;
	if (raw->arg_len > GG_ARG_MAX || raw->inner_len > GG_ARG_MAX ||
	    raw->params_len > GG_PARAMS_MAX) {
		/* lengths beyond the buffers: refuse to look at the bytes */
		d->flags |= GG_DF_ARG_FAULT;
		return 0;
	}
	switch (raw->dev_kind) {
	case GG_DEV_NVIDIA_CTL:
	case GG_DEV_NVIDIA_GPU:
		gg_decode_nvidia(raw, d);
		break;
	case GG_DEV_NVIDIA_UVM:
	case GG_DEV_NVIDIA_UVM_TOOLS:
		gg_decode_uvm(raw, d);
		break;
	case GG_DEV_NVIDIA_MODESET:
		gg_decode_modeset(raw, d);
		break;
	case GG_DEV_DRM:
	case GG_DEV_KFD:
		gg_decode_drm_kfd(raw, d);
		break;
	default:
		gg_set_class(d, GG_CLASS_UNKNOWN, GG_SRC_NONE);
	}
	/* a read refused, stalled or raced says nothing trustworthy about any byte */
	if (raw->capture_flags & (GG_CAP_REFUSED_UFFD | GG_CAP_REFUSED_FUSE | GG_CAP_VMA_BUSY |
				  GG_CAP_SLOW | GG_CAP_CHANGED))
		d->flags |= GG_DF_UNDECIDED;
	return 0;
}

#if !defined(__bpf__)
static inline int gg_decode(const struct gg_raw *raw, struct gg_decoded *d)
{
	return gg_decode_body(raw, d);
}
#endif

#endif /* GPUGATE_DECODE_H */
