/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * A write to a GPU's knob (a sysfs or procfs file that powers it off,
 * resets or throttles it), decoded into a class, in every home: the BPF
 * LSM gate, the module and user space (tests, replay).
 *
 * The class depends only on what no other thread can change once the
 * write has begun: which knob, and the length and file position of the
 * write (system call arguments in registers; the kernel holds the file
 * position lock across the write). The bytes written are captured for the
 * record and for a grant that names a value, never to let a write through:
 * a second thread could change them after the gate looked and before the
 * kernel copies them.
 *   GG_KNOB_ANY_WRITE   every write falls in the knob's class;
 *   GG_KNOB_NUMBER      the same, with the decimal number written as the
 *                       key a grant can name (power1_cap in uW, MHz);
 *   GG_KNOB_RUNTIME_PM  power/control: the kernel powers down only on
 *                       "auto" (drivers/base/power/sysfs.c control_store,
 *                       sysfs_streq), so a write of at most 3 bytes ("on",
 *                       "on\n") cannot power off; any longer one can;
 *   GG_KNOB_PCI_CONFIG  config space: a write whose range touches the PM
 *                       control byte (PowerState, D3hot), Link Control's
 *                       low byte (Link Disable), Device Control's high byte
 *                       (Initiate FLR) or, on a bridge, Bridge Control's
 *                       low byte (Secondary Bus Reset) falls in that
 *                       register's class; any other range is harmless.
 * A write whose length or position is unknown (a path other than write,
 * pwrite64) gets the knob's strictest class and GG_DF_UNDECIDED. The
 * module decides at the file's own write function (GG_WC_KERNEL), where
 * the kernel has fixed length and position for every system call, and on
 * sysfs holds its own copy of the bytes.
 */
#ifndef GPUGATE_KNOB_H
#define GPUGATE_KNOB_H

#include "../uapi/gpugate/event.h"
#include "gg_table_types.h"
#include "gg_verdict.h"

/* Config-space offsets (PCI Local Bus and PCI Express Base specifications). */
#define GG_PCI_PM_CTRL	      4	   /* PMCSR, from the PM capability: PowerState in bits 1:0 */
#define GG_PCI_EXP_DEVCTL     8	   /* Device Control: bit 15 Initiate Function Level Reset */
#define GG_PCI_EXP_LNKCTL     0x10 /* Link Control: bit 4 Link Disable */
#define GG_PCI_BRIDGE_CONTROL 0x3e /* Bridge Control: bit 6 Secondary Bus Reset */

static inline int gg_range_touches(__u64 off, __u64 len, __u64 at)
{
	return len && off <= at && at - off < len;
}

/* The class of a config write of len bytes at off on this knob's function. */
static inline __u32 gg_knob_config_class(const struct gg_knob *k, __u64 off, __u64 len)
{
	if (k->pm_cap && gg_range_touches(off, len, k->pm_cap + GG_PCI_PM_CTRL))
		return GG_CLASS_POWER_OFF;
	if (k->exp_cap && gg_range_touches(off, len, k->exp_cap + GG_PCI_EXP_LNKCTL))
		return GG_CLASS_POWER_OFF;
	if (k->exp_cap && gg_range_touches(off, len, k->exp_cap + GG_PCI_EXP_DEVCTL + 1))
		return GG_CLASS_GPU_RESET;
	if ((k->flags & GG_KNOBF_BRIDGE) && gg_range_touches(off, len, GG_PCI_BRIDGE_CONTROL))
		return GG_CLASS_GPU_RESET;
	return GG_CLASS_OTHER;
}

/*
 * The decimal number at the start of value ("250000000\n"), as kstrtoul
 * would read it in base 10; 0 and no key where it is not one.
 */
static inline int gg_knob_number(const __u8 *value, __u32 len, __u64 *out)
{
	__u64 n = 0;
	__u32 i;

	if (!len)
		return 0;
	for (i = 0; i < GG_KNOB_VALUE_MAX; i++) {
		__u8 c;

		if (i >= len)
			break;
		c = value[i];
		if (c == '\n' && i + 1 == len && i)
			break;
		if (c < '0' || c > '9')
			return 0;
		/* 18446744073709551615 is the largest: no wrap-around */
		if (n > 1844674407370955161ull || (n == 1844674407370955161ull && c > '5'))
			return 0;
		n = n * 10 + (c - '0');
	}
	*out = n;
	return 1;
}

/* The answer every knob decode starts from: the class, offset and length as keys. */
static inline void gg_knob_decoded_init(const struct gg_knob *k, __u32 cls, __u64 offset,
					__u64 length, struct gg_decoded *d)
{
	__u32 i;

	d->cls = cls;
	d->cls_source = GG_SRC_TABLE;
	d->priv = GG_PRIV_ROOT;
	d->vendor = k->vendor;
	d->table = GG_TAB_KNOB;
	d->pkind = GG_PK_KNOB;
	d->nr = k->rule;
	d->outer_nr = k->rule;
	d->index = 0xffff;
	d->status_offset = 0;
	d->flags = 0;
	d->command = k->rule;
	d->object = 0;
	d->client = 0;
	d->params_size = 0;
	d->inner_size = 0;
	d->pad = 0;
	d->params_ptr = 0;
	d->inner_ptr = 0;
	for (i = 0; i < 4; i++)
		d->key[i] = 0;
	d->key[1] = offset;
	d->key[2] = length;
}

/*
 * Decode one write: call says whether length and offset are known (from
 * write or pwrite64, or the kernel's own), value holds value_len captured bytes (capture_flags
 * GG_CAP_ARG_FAULT where they could not be read).
 */
static inline void gg_knob_decode(const struct gg_knob *k, __u32 call, __u64 offset, __u64 length,
				  const __u8 *value, __u32 value_len, __u32 capture_flags,
				  struct gg_decoded *d)
{
	__u32 known = call == GG_WC_WRITE || call == GG_WC_PWRITE || call == GG_WC_KERNEL;
	__u64 number = 0;

	gg_knob_decoded_init(k, k->cls, offset, length, d);
	if (!known) {
		/* the strictest class of the knob, and no trust in what was read */
		d->cls = k->rule == GG_KNOB_PCI_CONFIG ? GG_CLASS_POWER_OFF : k->cls;
		d->cls_source = GG_SRC_INFERRED;
		d->flags = GG_DF_UNDECIDED | GG_DF_WORST_CASE;
		return;
	}
	if (k->rule == GG_KNOB_RUNTIME_PM && length <= 3)
		d->cls = GG_CLASS_OTHER;
	if (k->rule == GG_KNOB_PCI_CONFIG)
		d->cls = gg_knob_config_class(k, offset, length);
	if (capture_flags & GG_CAP_ARG_FAULT) {
		d->flags |= GG_DF_ARG_FAULT;
		return;
	}
	if (value_len < length)
		d->flags |= GG_DF_ARG_CUT;
	if (value_len == length && gg_knob_number(value, value_len, &number)) {
		d->key[0] = number;
		d->flags |= GG_DF_KEYS_VALID;
	}
}

/*
 * Decode one mapping: of a BAR's file (resourceN, resourceN_wc) or of
 * /dev/mem over a BAR (GG_KNOBF_DEVMEM). Every mapping of a BAR is bar.map,
 * whatever its protection (a read of a register can act too); offset and
 * length are recorded. Where /dev/mem's offset is not in registers (another
 * system call than mmap or mmap2) the gate cannot tell which BAR it maps:
 * undecided.
 */
static inline void gg_knob_decode_map(const struct gg_knob *k, __u32 call, __u64 offset,
				      __u64 length, struct gg_decoded *d)
{
	gg_knob_decoded_init(k, GG_CLASS_BAR_MAP, offset, length, d);
	if (call != GG_WC_MMAP && call != GG_WC_KERNEL && (k->flags & GG_KNOBF_DEVMEM)) {
		d->cls_source = GG_SRC_INFERRED;
		d->flags = GG_DF_UNDECIDED | GG_DF_WORST_CASE;
	}
}

/* Decode a filled event by what was done to the knob: a write or a mapping. */
static inline void gg_knob_decode_event(struct gg_knob_event *e)
{
	if (e->op == GG_KOP_MMAP)
		gg_knob_decode_map(&e->knob, e->call, e->offset, e->length, &e->dec);
	else
		gg_knob_decode(&e->knob, e->call, e->offset, e->length, e->value, e->value_len,
			       e->capture_flags, &e->dec);
}

/*
 * The gate's decision on a decoded knob write, in every home: the same
 * rules, class actions, fail-closed and grants as an ioctl's (GG_GATE_DECIDE),
 * for the knob's GPU (GG_PCI_DEV) as the device. There is no per-thread
 * state to miss. take_grant is evaluated only where a signature is required
 * and the record exists.
 */
#define GG_KNOB_DECIDE(pol, e, recorded, take_grant)                                               \
	do {                                                                                       \
		struct gg_subject ks_;                                                             \
		struct gg_gate_result kr_;                                                         \
		ks_.cls = (e)->dec.cls;                                                            \
		ks_.dev = (e)->knob.gpu_dev;                                                       \
		ks_.uid = (e)->uid;                                                                \
		ks_.vendor = (e)->knob.vendor;                                                     \
		ks_.cgroup_id = (e)->cgroup_id;                                                    \
		ks_.comm = (e)->comm;                                                              \
		(e)->mode = (pol)->mode;                                                           \
		GG_GATE_DECIDE(&kr_, pol, &ks_, &(e)->dec, recorded, 1, take_grant);               \
		(e)->action = kr_.action;                                                          \
		(e)->rule = kr_.rule;                                                              \
		(e)->verdict = kr_.verdict;                                                        \
		(e)->grant_id = kr_.grant_id;                                                      \
		(e)->reason = kr_.reason;                                                          \
	} while (0)

#endif /* GPUGATE_KNOB_H */
