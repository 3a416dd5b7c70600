// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/gpugate (kmod/uapi/gpugate/kmod.h): root only. Every caller first
 * says which ABI it speaks; one at a time may own the module (the running
 * gpugated), and only the owner reads records or changes tables. Every
 * change is itself a record (GG_EV_KMOD_CONFIG), naming who made it, so a
 * change made while no daemon ran is in the ledger when the next one reads.
 */
#include <linux/capability.h>
#include <linux/miscdevice.h>
#include <linux/mutex.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>

#include "gpugate.h"

struct gg_client {
	bool hello;
};

static DEFINE_MUTEX(gg_owner_lock);
static struct file *gg_owner;
static u32 gg_owner_pid;
static DEFINE_MUTEX(gg_read_lock);

static bool gg_is_owner(struct file *f)
{
	bool yes;

	mutex_lock(&gg_owner_lock);
	yes = gg_owner == f;
	mutex_unlock(&gg_owner_lock);
	return yes;
}

static int gg_open(struct inode *inode, struct file *f)
{
	struct gg_client *cl;

	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	cl = kzalloc(sizeof(*cl), GFP_KERNEL);
	if (!cl)
		return -ENOMEM;
	f->private_data = cl;
	return 0;
}

static int gg_release(struct inode *inode, struct file *f)
{
	mutex_lock(&gg_owner_lock);
	if (gg_owner == f) {
		gg_owner = NULL;
		gg_owner_pid = 0;
		gg_config_event(GG_KCFG_OWNER_GONE, 0, NULL);
	}
	mutex_unlock(&gg_owner_lock);
	kfree(f->private_data);
	return 0;
}

static ssize_t gg_read(struct file *f, char __user *buf, size_t len, loff_t *off)
{
	ssize_t n;
	int err;

	if (!gg_is_owner(f))
		return -EACCES;
	for (;;) {
		mutex_lock(&gg_read_lock);
		n = gg_ring_read(buf, len);
		mutex_unlock(&gg_read_lock);
		if (n || (f->f_flags & O_NONBLOCK))
			return n ? n : -EAGAIN;
		err = wait_event_interruptible(gg_ring_wait, gg_ring_used() > 0);
		if (err)
			return err;
	}
}

static __poll_t gg_poll(struct file *f, poll_table *wait)
{
	poll_wait(f, &gg_ring_wait, wait);
	return gg_ring_used() ? EPOLLIN | EPOLLRDNORM : 0;
}

static int gg_hello(struct file *f, void __user *uarg)
{
	struct gg_client *cl = f->private_data;
	struct gg_kmod_hello h;
	int err = 0;

	if (copy_from_user(&h, uarg, sizeof(h)))
		return -EFAULT;
	if (h.abi != GG_KMOD_ABI) {
		err = -EPROTO;
	} else if (h.flags & GG_KHELLO_OWNER) {
		mutex_lock(&gg_owner_lock);
		if (gg_owner && gg_owner != f) {
			err = -EBUSY;
		} else if (!gg_owner) {
			gg_owner = f;
			gg_owner_pid = current->tgid;
			gg_config_event(GG_KCFG_OWNER, current->tgid, NULL);
		}
		mutex_unlock(&gg_owner_lock);
	}
	cl->hello = !err;
	memset(&h, 0, sizeof(h));
	h.abi = GG_KMOD_ABI;
	h.instance = gg_instance;
	h.loaded_boot_ns = gg_loaded_boot_ns;
	h.owner_pid = READ_ONCE(gg_owner_pid);
	h.held = gg_held();
	h.ring_bytes = gg_ring_size();
	strscpy(h.version, GG_KMOD_VERSION, sizeof(h.version));
	if (copy_to_user(uarg, &h, sizeof(h)))
		return -EFAULT;
	return err;
}

static int gg_array_in(void __user *uarg, struct gg_kmod_array *a, size_t elem, u32 max, void **out)
{
	if (copy_from_user(a, uarg, sizeof(*a)))
		return -EFAULT;
	if (a->count > max)
		return -E2BIG;
	*out = kvcalloc(max_t(u32, a->count, 1), elem, GFP_KERNEL);
	if (!*out)
		return -ENOMEM;
	return 0;
}

static int gg_set_devices_ioctl(void __user *uarg)
{
	struct gg_kmod_array a;
	struct gg_kmod_device *d;
	int err = gg_array_in(uarg, &a, sizeof(*d), GG_KMOD_MAX_DEVICES, (void **)&d);

	if (err)
		return err;
	if (copy_from_user(d, u64_to_user_ptr(a.ptr), (size_t)a.count * sizeof(*d)))
		err = -EFAULT;
	else
		err = gg_set_devices(d, a.count);
	kvfree(d);
	if (!err)
		gg_config_event(GG_KCFG_DEVICES, a.count, NULL);
	return err;
}

/* The knob table, or the BAR ranges: rows of size elem, at most max. */
static int gg_set_rows_ioctl(void __user *uarg, size_t elem, u32 max,
			     int (*set)(const void *rows, u32 n), u32 op)
{
	struct gg_kmod_array a;
	void *rows;
	int err = gg_array_in(uarg, &a, elem, max, &rows);

	if (err)
		return err;
	if (copy_from_user(rows, u64_to_user_ptr(a.ptr), (size_t)a.count * elem))
		err = -EFAULT;
	else
		err = set(rows, a.count);
	kvfree(rows);
	if (!err)
		gg_config_event(op, a.count, NULL);
	return err;
}

static int gg_set_knob_rows(const void *rows, u32 n)
{
	return gg_set_knobs(rows, n);
}

static int gg_set_bar_rows(const void *rows, u32 n)
{
	return gg_set_bars(rows, n);
}

static int gg_grants_ioctl(void __user *uarg)
{
	struct gg_kmod_array a;
	struct gg_kmod_grant *g;
	int err = gg_array_in(uarg, &a, sizeof(*g), GG_KMOD_MAX_GRANTS, (void **)&g);

	if (err)
		return err;
	a.count = gg_grants(g, a.count, &a.total);
	if (copy_to_user(u64_to_user_ptr(a.ptr), g, (size_t)a.count * sizeof(*g)) ||
	    copy_to_user(uarg, &a, sizeof(a)))
		err = -EFAULT;
	kvfree(g);
	return err;
}

static int gg_hooks_ioctl(void __user *uarg)
{
	struct gg_kmod_array a;
	struct gg_kmod_hook *h;
	int err = gg_array_in(uarg, &a, sizeof(*h), 64, (void **)&h);

	if (err)
		return err;
	a.count = gg_hooks_status(h, a.count, &a.total);
	if (copy_to_user(u64_to_user_ptr(a.ptr), h, (size_t)a.count * sizeof(*h)) ||
	    copy_to_user(uarg, &a, sizeof(a)))
		err = -EFAULT;
	kvfree(h);
	return err;
}

static int gg_stats_ioctl(void __user *uarg)
{
	struct gg_kmod_stats *s = kzalloc(sizeof(*s), GFP_KERNEL);
	int err = 0;

	if (!s)
		return -ENOMEM;
	gg_counters(s->per_class);
	s->records = atomic64_read(&gg_stats.records);
	s->ring_used = gg_ring_used();
	s->no_context = atomic64_read(&gg_stats.no_context);
	s->config_changes = atomic64_read(&gg_stats.config_changes);
	s->undecided = atomic64_read(&gg_stats.undecided);
	s->config_dropped = atomic64_read(&gg_stats.config_dropped);
	if (copy_to_user(uarg, s, sizeof(*s)))
		err = -EFAULT;
	kfree(s);
	return err;
}

static long gg_ioctl(struct file *f, unsigned int cmd, unsigned long arg)
{
	struct gg_client *cl = f->private_data;
	void __user *uarg = (void __user *)arg;
	struct gg_kmod_grant grant;
	struct gg_policy *pol;
	struct gg_state state;
	u32 v;
	int err;

	if (cmd == GG_KIOC_HELLO)
		return gg_hello(f, uarg);
	if (!cl->hello)
		return -EPROTO; /* say which ABI first */
	switch (cmd) {
	case GG_KIOC_STATS:
		return gg_stats_ioctl(uarg);
	case GG_KIOC_HOOKS:
		return gg_hooks_ioctl(uarg);
	case GG_KIOC_GRANTS:
		return gg_grants_ioctl(uarg);
	case GG_KIOC_GET_STATE:
		gg_get_state(&state);
		return copy_to_user(uarg, &state, sizeof(state)) ? -EFAULT : 0;
	case GG_KIOC_GET_POLICY:
		pol = kmalloc(sizeof(*pol), GFP_KERNEL);
		if (!pol)
			return -ENOMEM;
		gg_get_policy(pol);
		err = copy_to_user(uarg, pol, sizeof(*pol)) ? -EFAULT : 0;
		kfree(pol);
		return err;
	}
	if (!gg_is_owner(f))
		return -EACCES; /* changes come from the owner only */
	switch (cmd) {
	case GG_KIOC_SET_POLICY:
		pol = memdup_user(uarg, sizeof(*pol));
		if (IS_ERR(pol))
			return PTR_ERR(pol);
		err = gg_set_policy(pol);
		if (!err)
			gg_config_event(GG_KCFG_POLICY, pol->mode, NULL);
		kfree(pol);
		return err;
	case GG_KIOC_SET_DEVICES:
		return gg_set_devices_ioctl(uarg);
	case GG_KIOC_SET_KNOBS:
		return gg_set_rows_ioctl(uarg, sizeof(struct gg_kmod_knob), GG_KMOD_MAX_KNOBS,
					 gg_set_knob_rows, GG_KCFG_KNOBS);
	case GG_KIOC_SET_BARS:
		return gg_set_rows_ioctl(uarg, sizeof(struct gg_bar_range), GG_BAR_RANGES_MAX,
					 gg_set_bar_rows, GG_KCFG_BARS);
	case GG_KIOC_GRANT_ADD:
		if (copy_from_user(&grant, uarg, sizeof(grant)))
			return -EFAULT;
		err = gg_grant_add(&grant);
		if (!err)
			gg_config_event(GG_KCFG_GRANT_ADD, grant.grant.id, NULL);
		return err;
	case GG_KIOC_GRANT_DEL:
		if (get_user(v, (u32 __user *)uarg))
			return -EFAULT;
		err = gg_grant_del(v);
		if (!err)
			gg_config_event(GG_KCFG_GRANT_DEL, v, NULL);
		return err;
	case GG_KIOC_HOLD:
		if (get_user(v, (u32 __user *)uarg))
			return -EFAULT;
		return gg_hold(v != 0);
	case GG_KIOC_SET_STATE:
		if (copy_from_user(&state, uarg, sizeof(state)))
			return -EFAULT;
		gg_set_state(&state);
		return 0;
	default:
		return -ENOTTY;
	}
}

static const struct file_operations gg_fops = {
	.owner = THIS_MODULE,
	.open = gg_open,
	.release = gg_release,
	.read = gg_read,
	.poll = gg_poll,
	.unlocked_ioctl = gg_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice gg_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = GG_KMOD_NODE,
	.fops = &gg_fops,
	.mode = 0600,
};

int gg_chardev_init(void)
{
	return misc_register(&gg_misc);
}

void gg_chardev_exit(void)
{
	misc_deregister(&gg_misc);
}
