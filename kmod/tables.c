// SPDX-License-Identifier: GPL-2.0
/*
 * What the daemon pushes and the hooks read: devices, policy, grants; and
 * what the hooks learn themselves: the RM objects the driver allocated.
 *
 * The hooks read in atomic context (a kprobe) as well as in process
 * context, never sleeping: the policy and the device table are RCU
 * pointers replaced whole; grants and objects sit under spinlocks held for
 * a lookup.
 */
#include <linux/bsearch.h>
#include <linux/hashtable.h>
#include <linux/rcupdate.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/spinlock.h>
#include <linux/ktime.h>

#include "gpugate.h"

struct gg_kstats gg_stats;

static atomic64_t gg_counts[GG_CLASS_COUNT][4];
static atomic64_t gg_seq = ATOMIC64_INIT(1);

struct gg_policy_box {
	struct rcu_head rcu;
	struct gg_policy p;
};
static struct gg_policy_box __rcu *gg_policy_ptr;

struct gg_device_table {
	struct rcu_head rcu;
	u32 n;
	struct gg_kmod_device d[];
};
static struct gg_device_table __rcu *gg_devices_ptr;

/* The knobs (sorted by key) and the BARs /dev/mem reaches, replaced whole. */
struct gg_rcu_table {
	struct rcu_head rcu;
	u32 n;
	u64 rows[]; /* gg_kmod_knob or gg_bar_range: 8-byte aligned */
};
static struct gg_rcu_table __rcu *gg_knobs_ptr;
static struct gg_rcu_table __rcu *gg_bars_ptr;

static DEFINE_MUTEX(gg_write_lock); /* writers of the RCU tables */

static DEFINE_SPINLOCK(gg_grants_lock);
static struct gg_kmod_grant *gg_grant_keys; /* GG_KMOD_MAX_GRANTS; uses unused here */
static u32 gg_ngrant_keys;
struct gg_grant_uses {
	u32 id;
	s64 uses;
};
static struct gg_grant_uses *gg_grant_uses;
static u32 gg_nuses;

#define GG_OBJECT_BITS 12
#define GG_OBJECTS_MAX 65536
struct gg_object {
	struct hlist_node node;
	u32 client;
	u32 object;
	u32 cls;
};
static DEFINE_HASHTABLE(gg_objects, GG_OBJECT_BITS);
static DEFINE_RAW_SPINLOCK(gg_objects_lock);
static u32 gg_nobjects;

static DEFINE_SPINLOCK(gg_state_lock);
static struct gg_state gg_restart_state = {.version = GG_STATE_VERSION};

void gg_count(u32 cls, enum gg_counter which)
{
	atomic64_inc(&gg_counts[cls < GG_CLASS_COUNT ? cls : GG_CLASS_UNKNOWN][which]);
}

void gg_counters(struct gg_class_counters *out)
{
	u32 c;

	for (c = 0; c < GG_CLASS_COUNT; c++) {
		out[c].seen = atomic64_read(&gg_counts[c][GG_CNT_SEEN]);
		out[c].dropped = atomic64_read(&gg_counts[c][GG_CNT_DROPPED]);
		out[c].exit_dropped = atomic64_read(&gg_counts[c][GG_CNT_EXIT_DROPPED]);
		out[c].no_state = atomic64_read(&gg_counts[c][GG_CNT_NO_STATE]);
	}
}

u64 gg_next_seq(void)
{
	return atomic64_fetch_inc(&gg_seq);
}

static const u8 gg_gated_by_default[GG_CLASS_COUNT] = {
#define GG_CLASS(ident, id, name, gated) gated,
#include "gpugate/classes.def"
#undef GG_CLASS
};

/*
 * The built-in stance until the daemon says otherwise: enforce, gate the
 * classes marked gated in classes.def, fail closed on every vendor.
 */
static void gg_default_policy(struct gg_policy *p)
{
	u32 c;

	memset(p, 0, sizeof(*p));
	p->mode = GG_MODE_ENFORCE;
	p->read_wait_max_ns = GG_READ_WAIT_MAX_NS_DEFAULT;
	for (c = 0; c < GG_CLASS_COUNT; c++)
		p->action[c] = gg_gated_by_default[c] ? GG_ACT_REQUIRE_SIGNATURE : GG_ACT_LOG;
	p->fail_closed_vendors = gg_policy_fail_closed_vendors(p);
}

const struct gg_policy *gg_policy_rcu(void)
{
	struct gg_policy_box *b = rcu_dereference(gg_policy_ptr);

	return &b->p;
}

int gg_set_policy(const struct gg_policy *p)
{
	struct gg_policy_box *b = kmalloc(sizeof(*b), GFP_KERNEL), *old;

	if (!b)
		return -ENOMEM;
	b->p = *p;
	if (b->p.nrules > GG_MAX_RULES || b->p.mode > GG_MODE_ENFORCE) {
		kfree(b);
		return -EINVAL;
	}
	mutex_lock(&gg_write_lock);
	old = rcu_replace_pointer(gg_policy_ptr, b, lockdep_is_held(&gg_write_lock));
	mutex_unlock(&gg_write_lock);
	if (old)
		kfree_rcu(old, rcu);
	return 0;
}

void gg_get_policy(struct gg_policy *out)
{
	rcu_read_lock();
	*out = *gg_policy_rcu();
	rcu_read_unlock();
}

static int gg_cmp_dev(const void *a, const void *b)
{
	u32 x = ((const struct gg_kmod_device *)a)->dev,
	    y = ((const struct gg_kmod_device *)b)->dev;

	return x < y ? -1 : x > y;
}

int gg_set_devices(const struct gg_kmod_device *devs, u32 n)
{
	struct gg_device_table *t, *old;

	if (n > GG_KMOD_MAX_DEVICES)
		return -E2BIG;
	t = kvmalloc(struct_size(t, d, n), GFP_KERNEL);
	if (!t)
		return -ENOMEM;
	t->n = n;
	memcpy(t->d, devs, n * sizeof(*devs));
	sort(t->d, n, sizeof(*devs), gg_cmp_dev, NULL);
	mutex_lock(&gg_write_lock);
	old = rcu_replace_pointer(gg_devices_ptr, t, lockdep_is_held(&gg_write_lock));
	mutex_unlock(&gg_write_lock);
	if (old) {
		synchronize_rcu();
		kvfree(old);
	}
	return 0;
}

/* The daemon's table first; any minor of NVIDIA's or DRM's major after it. */
bool gg_lookup_device(u32 dev, struct gg_device *out)
{
	struct gg_kmod_device key = {.dev = dev}, *hit = NULL;
	struct gg_device_table *t;

	rcu_read_lock();
	t = rcu_dereference(gg_devices_ptr);
	if (t)
		hit = bsearch(&key, t->d, t->n, sizeof(key), gg_cmp_dev);
	if (hit)
		*out = hit->info;
	rcu_read_unlock();
	return hit || gg_default_device(dev, out);
}

int gg_grant_add(const struct gg_kmod_grant *g)
{
	unsigned long flags;
	int err = 0;
	u32 i;

	if (!g->grant.id)
		return -EINVAL;
	spin_lock_irqsave(&gg_grants_lock, flags);
	for (i = 0; i < gg_ngrant_keys; i++)
		if (!memcmp(&gg_grant_keys[i].key, &g->key, sizeof(g->key)))
			break;
	if (i == gg_ngrant_keys) {
		if (gg_ngrant_keys == GG_KMOD_MAX_GRANTS) {
			err = -ENOSPC;
			goto out;
		}
		gg_ngrant_keys++;
	}
	gg_grant_keys[i] = *g;
	for (i = 0; i < gg_nuses; i++)
		if (gg_grant_uses[i].id == g->grant.id)
			break;
	if (i == gg_nuses) {
		if (gg_nuses == GG_KMOD_MAX_GRANTS) {
			err = -ENOSPC;
			goto out;
		}
		gg_nuses++;
	}
	gg_grant_uses[i].id = g->grant.id;
	gg_grant_uses[i].uses = g->uses;
out:
	spin_unlock_irqrestore(&gg_grants_lock, flags);
	return err;
}

int gg_grant_del(u32 id)
{
	unsigned long flags;
	u32 i, found = 0;

	spin_lock_irqsave(&gg_grants_lock, flags);
	for (i = 0; i < gg_ngrant_keys;) {
		if (gg_grant_keys[i].grant.id == id) {
			gg_grant_keys[i] = gg_grant_keys[--gg_ngrant_keys];
			found++;
		} else {
			i++;
		}
	}
	for (i = 0; i < gg_nuses; i++) {
		if (gg_grant_uses[i].id == id) {
			gg_grant_uses[i] = gg_grant_uses[--gg_nuses];
			break;
		}
	}
	spin_unlock_irqrestore(&gg_grants_lock, flags);
	return found ? 0 : -ENOENT;
}

static s64 *gg_uses_of(u32 id)
{
	u32 i;

	for (i = 0; i < gg_nuses; i++)
		if (gg_grant_uses[i].id == id)
			return &gg_grant_uses[i].uses;
	return NULL;
}

int gg_grants(struct gg_kmod_grant *out, u32 cap, u32 *total)
{
	unsigned long flags;
	u32 i, n;

	spin_lock_irqsave(&gg_grants_lock, flags);
	*total = gg_ngrant_keys;
	n = min(cap, gg_ngrant_keys);
	for (i = 0; i < n; i++) {
		s64 *uses = gg_uses_of(gg_grant_keys[i].grant.id);

		out[i] = gg_grant_keys[i];
		out[i].uses = uses ? *uses : 0;
	}
	spin_unlock_irqrestore(&gg_grants_lock, flags);
	return n;
}

/*
 * One use of the grant for key, if it covers e now: its id, else 0. Under
 * the lock, so two racing callers cannot both spend the last use. A grant
 * bound to a parameter value covers no other, and never a command whose
 * key parameters were not all read.
 */
static u32 gg_use_grant(const struct gg_grant_key *key, u64 now, const struct gg_decoded *dec)
{
	const struct gg_grant *g = NULL;
	s64 *uses;
	u32 i;

	for (i = 0; i < gg_ngrant_keys; i++) {
		if (!memcmp(&gg_grant_keys[i].key, key, sizeof(*key))) {
			g = &gg_grant_keys[i].grant;
			break;
		}
	}
	if (!g || now < g->not_before_ns || now > g->not_after_ns)
		return 0;
	if (g->pkind && (!(dec->flags & GG_DF_KEYS_VALID) || dec->pkind != g->pkind ||
			 dec->key[g->key_index & 3] != g->key_value))
		return 0;
	uses = gg_uses_of(g->id);
	if (!uses || *uses <= 0)
		return 0;
	(*uses)--;
	return g->id;
}

/* A grant scoped to the caller's cgroup first, then its uid, then any process. */
static u32 gg_take_grant_for(u32 dev, u64 cgroup_id, u32 uid, const struct gg_decoded *dec)
{
	struct gg_grant_key key = {.dev = dev, .cls = dec->cls};
	u64 now = ktime_get_boot_fast_ns();
	unsigned long flags;
	u32 id;

	spin_lock_irqsave(&gg_grants_lock, flags);
	key.scope = GG_SCOPE_CGROUP;
	key.scope_id = cgroup_id;
	id = gg_use_grant(&key, now, dec);
	if (!id) {
		key.scope = GG_SCOPE_UID;
		key.scope_id = uid;
		id = gg_use_grant(&key, now, dec);
	}
	if (!id) {
		key.scope = GG_SCOPE_ANY;
		key.scope_id = 0;
		id = gg_use_grant(&key, now, dec);
	}
	spin_unlock_irqrestore(&gg_grants_lock, flags);
	return id;
}

u32 gg_take_grant(const struct gg_ioctl_enter *e)
{
	return gg_take_grant_for(e->dev, e->cgroup_id, e->uid, &e->dec);
}

/* A knob's grant is its GPU's (GG_PCI_DEV), as in the BPF gate. */
u32 gg_take_knob_grant(const struct gg_knob_event *e)
{
	return gg_take_grant_for(e->knob.gpu_dev, e->cgroup_id, e->uid, &e->dec);
}

static int gg_cmp_knob(const void *a, const void *b)
{
	const struct gg_knob_key *x = &((const struct gg_kmod_knob *)a)->key,
				 *y = &((const struct gg_kmod_knob *)b)->key;

	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	return x->fs_magic < y->fs_magic ? -1 : x->fs_magic > y->fs_magic;
}

/* Replace an RCU table whole; readers finish with the old one first. */
static void gg_replace_table(struct gg_rcu_table __rcu **slot, struct gg_rcu_table *t)
{
	struct gg_rcu_table *old;

	mutex_lock(&gg_write_lock);
	old = rcu_replace_pointer(*slot, t, lockdep_is_held(&gg_write_lock));
	mutex_unlock(&gg_write_lock);
	if (old) {
		synchronize_rcu();
		kvfree(old);
	}
}

static struct gg_rcu_table *gg_new_table(const void *rows, u32 n, size_t size)
{
	struct gg_rcu_table *t = kvmalloc(sizeof(*t) + n * size, GFP_KERNEL);

	if (!t)
		return NULL;
	t->n = n;
	memcpy(t->rows, rows, n * size);
	return t;
}

int gg_set_knobs(const struct gg_kmod_knob *knobs, u32 n)
{
	struct gg_rcu_table *t;

	if (n > GG_KMOD_MAX_KNOBS)
		return -E2BIG;
	t = gg_new_table(knobs, n, sizeof(*knobs));
	if (!t)
		return -ENOMEM;
	sort(t->rows, n, sizeof(*knobs), gg_cmp_knob, NULL);
	gg_replace_table(&gg_knobs_ptr, t);
	return 0;
}

int gg_set_bars(const struct gg_bar_range *bars, u32 n)
{
	struct gg_rcu_table *t;

	if (n > GG_BAR_RANGES_MAX)
		return -E2BIG;
	t = gg_new_table(bars, n, sizeof(*bars));
	if (!t)
		return -ENOMEM;
	gg_replace_table(&gg_bars_ptr, t);
	return 0;
}

bool gg_lookup_knob(u64 ino, u32 fs_magic, struct gg_knob *out)
{
	struct gg_kmod_knob key = {.key = {.ino = ino, .fs_magic = fs_magic}}, *hit = NULL;
	struct gg_rcu_table *t;

	rcu_read_lock();
	t = rcu_dereference(gg_knobs_ptr);
	if (t)
		hit = bsearch(&key, t->rows, t->n, sizeof(key), gg_cmp_knob);
	if (hit)
		*out = hit->knob;
	rcu_read_unlock();
	return hit;
}

/*
 * The first GPU BAR that physical range [start, start + len) overlaps, as a
 * knob of its GPU (GG_KNOBF_DEVMEM), with the BAR + 1 in *bar; false if none.
 */
bool gg_lookup_bar(u64 start, u64 len, struct gg_knob *out, u8 *bar)
{
	u64 last = len ? start + len - 1 : start;
	const struct gg_bar_range *r;
	struct gg_rcu_table *t;
	bool found = false;
	u32 i;

	if (last < start)
		last = ~0ull;
	rcu_read_lock();
	t = rcu_dereference(gg_bars_ptr);
	for (i = 0; t && i < t->n && !found; i++) {
		r = (const struct gg_bar_range *)t->rows + i;
		if (!r->end || last < r->start || start > r->end)
			continue;
		memset(out, 0, sizeof(*out));
		out->gpu_dev = r->gpu_dev;
		out->rule = GG_KNOB_ANY_WRITE;
		out->cls = GG_CLASS_BAR_MAP;
		out->vendor = r->vendor;
		out->flags = GG_KNOBF_DEVMEM;
		*bar = r->bar + 1;
		found = true;
	}
	rcu_read_unlock();
	return found;
}

static struct gg_object *gg_object_find(u32 client, u32 object)
{
	struct gg_object *o;

	hash_for_each_possible(gg_objects, o, node, client ^ (object * 0x9e3779b1u))
		if (o->client == client && o->object == object)
			return o;
	return NULL;
}

u32 gg_object_class(u32 client, u32 object)
{
	struct gg_object *o;
	unsigned long flags;
	u32 cls = 0;

	raw_spin_lock_irqsave(&gg_objects_lock, flags);
	o = gg_object_find(client, object);
	if (o)
		cls = o->cls;
	raw_spin_unlock_irqrestore(&gg_objects_lock, flags);
	return cls;
}

/* From the driver's own alloc result (atomic context: a kretprobe). */
void gg_object_learn(u32 client, u32 object, u32 cls)
{
	struct gg_object *o, *fresh = kmalloc(sizeof(*fresh), GFP_ATOMIC);
	unsigned long flags;

	raw_spin_lock_irqsave(&gg_objects_lock, flags);
	o = gg_object_find(client, object);
	if (o) {
		o->cls = cls;
	} else if (fresh && gg_nobjects < GG_OBJECTS_MAX) {
		fresh->client = client;
		fresh->object = object;
		fresh->cls = cls;
		hash_add(gg_objects, &fresh->node, client ^ (object * 0x9e3779b1u));
		gg_nobjects++;
		fresh = NULL;
	}
	raw_spin_unlock_irqrestore(&gg_objects_lock, flags);
	kfree(fresh);
}

void gg_object_forget(u32 client, u32 object)
{
	struct gg_object *o;
	unsigned long flags;

	raw_spin_lock_irqsave(&gg_objects_lock, flags);
	o = gg_object_find(client, object);
	if (o) {
		hash_del(&o->node);
		gg_nobjects--;
	}
	raw_spin_unlock_irqrestore(&gg_objects_lock, flags);
	kfree(o);
}

void gg_get_state(struct gg_state *out)
{
	spin_lock(&gg_state_lock);
	*out = gg_restart_state;
	spin_unlock(&gg_state_lock);
}

void gg_set_state(const struct gg_state *in)
{
	spin_lock(&gg_state_lock);
	gg_restart_state = *in;
	spin_unlock(&gg_state_lock);
}

int gg_tables_init(void)
{
	struct gg_policy p;

	gg_grant_keys = kcalloc(GG_KMOD_MAX_GRANTS, sizeof(*gg_grant_keys), GFP_KERNEL);
	gg_grant_uses = kcalloc(GG_KMOD_MAX_GRANTS, sizeof(*gg_grant_uses), GFP_KERNEL);
	if (!gg_grant_keys || !gg_grant_uses)
		goto nomem;
	gg_default_policy(&p);
	if (gg_set_policy(&p))
		goto nomem;
	return 0;
nomem:
	kfree(gg_grant_keys);
	kfree(gg_grant_uses);
	return -ENOMEM;
}

void gg_tables_exit(void)
{
	struct gg_object *o;
	struct hlist_node *tmp;
	int bkt;

	hash_for_each_safe(gg_objects, bkt, tmp, o, node) {
		hash_del(&o->node);
		kfree(o);
	}
	kfree(rcu_dereference_protected(gg_policy_ptr, 1));
	kvfree(rcu_dereference_protected(gg_devices_ptr, 1));
	kvfree(rcu_dereference_protected(gg_knobs_ptr, 1));
	kvfree(rcu_dereference_protected(gg_bars_ptr, 1));
	kfree(gg_grant_keys);
	kfree(gg_grant_uses);
}
