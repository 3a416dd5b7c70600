/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * The grants of the BPF maps, as the gate's grant lookup (TAKE_GRANT of
 * GG_DEFINE_GATE, kmod/common/gg_gate.h), a global function.
 */
#include "record.bpf.h"

/*
 * Take one use of a grant covering key now. Returns the grant's id, or 0 if
 * none covers it. Uses are taken atomically: two racing callers cannot both
 * spend the last one. A grant for one parameter value covers no other, and
 * never a command whose key parameters were not all read.
 */
static __always_inline __u32 gg_use_grant(struct gg_grant_key *key, __u64 now,
					  const struct gg_decoded *dec)
{
	struct gg_grant *g = bpf_map_lookup_elem(&grants, key);
	__s64 *uses;
	__u32 id;

	if (!g || now < g->not_before_ns || now > g->not_after_ns)
		return 0;
	if (g->pkind && (!(dec->flags & GG_DF_KEYS_VALID) || dec->pkind != g->pkind ||
			 dec->key[g->key_index & 3] != g->key_value))
		return 0;
	id = g->id;
	uses = bpf_map_lookup_elem(&grant_uses, &id);
	if (!uses)
		return 0;
	if (__sync_fetch_and_add(uses, -1) <= 0) {
		__sync_fetch_and_add(uses, 1);
		return 0;
	}
	return id;
}

/* A grant scoped to the caller's cgroup first, then its uid, then any process. */
static __always_inline __u32 gg_take_grant(__u32 dev, __u32 cls, __u64 cgroup_id, __u32 uid,
					   const struct gg_decoded *dec)
{
	struct gg_grant_key key = {
		.dev = dev, .cls = cls, .scope = GG_SCOPE_CGROUP, .scope_id = cgroup_id};
	__u64 now = bpf_ktime_get_boot_ns();
	__u32 id = gg_use_grant(&key, now, dec);

	if (id)
		return id;
	key.scope = GG_SCOPE_UID;
	key.scope_id = uid;
	id = gg_use_grant(&key, now, dec);
	if (id)
		return id;
	key.scope = GG_SCOPE_ANY;
	key.scope_id = 0;
	return gg_use_grant(&key, now, dec);
}

__noinline __u32 gg_bpf_take_grant(const struct gg_ioctl_enter *e)
{
	if (!e)
		return 0;
	return gg_take_grant(e->dev, e->dec.cls, e->cgroup_id, e->uid, &e->dec);
}

/* A knob's grant is for its GPU, named by its PCI address (GG_PCI_DEV). */
__noinline __u32 gg_bpf_take_knob_grant(const struct gg_knob_event *e)
{
	if (!e)
		return 0;
	return gg_take_grant(e->knob.gpu_dev, e->dec.cls, e->cgroup_id, e->uid, &e->dec);
}
