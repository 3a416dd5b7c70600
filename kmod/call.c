// SPDX-License-Identifier: GPL-2.0
/*
 * The context of one driver ioctl. The wrapper of the driver's ioctl entry
 * (nvidia_unlocked_ioctl, drm_ioctl) keeps it on its own stack and
 * registers it under the calling task; the hooks further down (rm_ioctl,
 * os_memcpy_from_user, drm_ioctl_kernel) find it there. Everything in it is
 * kernel-side: the struct file the syscall pinned, the request word and
 * argument as registers, the caller's credentials; none of it can be
 * changed by a second thread of the caller.
 */
#include <linux/cgroup.h>
#include <linux/cred.h>
#include <linux/hashtable.h>
#include <linux/mm.h>
#include <linux/spinlock.h>

#include "gpugate.h"

#define GG_CALL_BITS 8
static DEFINE_HASHTABLE(gg_calls, GG_CALL_BITS);
static DEFINE_RAW_SPINLOCK(gg_calls_lock);

static u32 gg_task_key(struct task_struct *t)
{
	return (u32)((unsigned long)t >> L1_CACHE_SHIFT);
}

/* Basename of the executable (a label: user space reads /proc for more). */
void gg_exe_name(char *out, size_t len)
{
	struct mm_struct *mm = current->mm;
	struct file *exe;

	out[0] = 0;
	if (!mm)
		return;
	rcu_read_lock();
	exe = rcu_dereference(mm->exe_file);
	if (exe)
		strscpy(out, exe->f_path.dentry->d_name.name, len);
	rcu_read_unlock();
}

u64 gg_cgroup_id(void)
{
	u64 id = 0;

#ifdef CONFIG_CGROUPS
	rcu_read_lock();
	id = cgroup_id(task_dfl_cgroup(current));
	rcu_read_unlock();
#endif
	return id;
}

static struct gg_call *gg_find_locked(u32 family)
{
	struct gg_call *c;

	/* newest first: hash_add puts a call before the one it nests in */
	hash_for_each_possible(gg_calls, c, node, gg_task_key(current))
		if (c->task == current && c->family == family)
			return c;
	return NULL;
}

void gg_call_begin(struct gg_call *c, u32 family, struct file *file, u32 request, u64 arg)
{
	struct inode *inode = file_inode(file);
	const struct cred *cred = current_cred();
	unsigned long flags;

	memset(c, 0, sizeof(*c));
	c->task = current;
	c->family = family;
	c->dev = S_ISCHR(inode->i_mode) ? (u32)inode->i_rdev : 0;
	if (!gg_lookup_device(c->dev, &c->device))
		memset(&c->device, 0, sizeof(c->device));
	c->request = request;
	c->arg = arg;
	c->uid = from_kuid(&init_user_ns, cred->uid);
	c->gid = from_kgid(&init_user_ns, cred->gid);
	c->cgroup_id = gg_cgroup_id();
	get_task_comm(c->comm, current);
	gg_exe_name(c->exe_name, sizeof(c->exe_name));
	raw_spin_lock_irqsave(&gg_calls_lock, flags);
	c->outer = gg_find_locked(family);
	hash_add(gg_calls, &c->node, gg_task_key(current));
	raw_spin_unlock_irqrestore(&gg_calls_lock, flags);
}

void gg_call_end(struct gg_call *c)
{
	unsigned long flags;

	raw_spin_lock_irqsave(&gg_calls_lock, flags);
	hash_del(&c->node);
	raw_spin_unlock_irqrestore(&gg_calls_lock, flags);
	/* drm_compat_ioctl calling drm_ioctl: the inner call has the records */
	if (c->outer && c->decided) {
		c->outer->decided = 1;
		c->outer->seq = 0;
	}
}

/*
 * The innermost call of this family the current task is in, or NULL. Only
 * the task itself adds or removes its calls, so what is found stays valid
 * while the task runs the hook that asked.
 */
struct gg_call *gg_call_current(u32 family)
{
	struct gg_call *found;
	unsigned long flags;

	raw_spin_lock_irqsave(&gg_calls_lock, flags);
	found = gg_find_locked(family);
	raw_spin_unlock_irqrestore(&gg_calls_lock, flags);
	return found;
}
