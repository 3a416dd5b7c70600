// SPDX-License-Identifier: GPL-2.0
/*
 * The knob family: writes to a GPU's sysfs and procfs knobs and mappings of
 * its BARs, for kernels without the BPF LSM (docs/paths.md). The functions
 * are the kernel's own, so the family attaches when the module loads
 * (torvalds/linux, the same in 6.1 and 6.12):
 *
 *   sysfs_kf_write(of, buf, count, pos)       fs/sysfs/file.c: an
 *   sysfs_kf_bin_write(of, buf, count, pos)   attribute's store, a binary
 *       attribute's write (config: pci_write_config). buf is kernfs's
 *       kernel copy (kernfs_fop_write_iter), whatever system call wrote
 *       it: write, writev, sendfile, splice, io_uring. Length, position
 *       and bytes are final: no second thread can change them;
 *   proc_reg_write(file, ubuf, count, ppos)   fs/proc/inode.c: a procfs
 *       file's write (NVIDIA's suspend, unbindLock): length and position
 *       final, the bytes still the caller's (read for the record only);
 *   sysfs_kf_bin_mmap(of, vma)                a BAR's resourceN, _wc;
 *   mmap_mem(file, vma)                       drivers/char/mem.c: /dev/mem,
 *       by the mapping's physical range against every GPU's memory BARs.
 *
 * A knob is found by inode and filesystem in the daemon's table (tables.c),
 * as in the BPF gate; anything else passes after one lookup. The decision
 * is the shared one (gg_knob.h), made before the store or mapping exists.
 */
#include <linux/kernfs.h>
#include <linux/mm.h>
#include <linux/mman.h>
#include <linux/uaccess.h>

#include "gpugate.h"

typedef ssize_t (*gg_kf_write_fn)(struct kernfs_open_file *of, char *buf, size_t count, loff_t pos);
typedef ssize_t (*gg_proc_write_fn)(struct file *file, const char __user *buf, size_t count,
				    loff_t *ppos);
typedef int (*gg_kf_mmap_fn)(struct kernfs_open_file *of, struct vm_area_struct *vma);
typedef int (*gg_mmap_fn)(struct file *file, struct vm_area_struct *vma);

static unsigned long gg_orig_sysfs_kf_write;
static unsigned long gg_orig_sysfs_kf_bin_write;
static unsigned long gg_orig_proc_reg_write;
static unsigned long gg_orig_sysfs_kf_bin_mmap;
static unsigned long gg_orig_mmap_mem;

/* The knob this file is, by inode and filesystem; false for any other file. */
static bool gg_knob_of(struct file *file, struct gg_knob_call *w)
{
	struct inode *inode = file ? file_inode(file) : NULL;
	u32 magic;

	if (!inode)
		return false;
	magic = (u32)inode->i_sb->s_magic;
	if (magic != GG_FS_SYSFS && magic != GG_FS_PROC)
		return false;
	if (!gg_lookup_knob(inode->i_ino, magic, &w->knob))
		return false;
	w->key.ino = inode->i_ino;
	w->key.fs_magic = magic;
	return true;
}

static ssize_t gg_kf_write(struct kernfs_open_file *of, char *buf, size_t count, loff_t pos,
			   unsigned long orig)
{
	struct gg_knob_call w = {.op = GG_KOP_WRITE, .hook = GG_HOOK_KMOD_KNOB_WRITE};
	ssize_t ret;

	atomic_inc(&gg_inflight);
	if (gg_knob_of(of->file, &w)) {
		w.offset = pos;
		w.length = count;
		w.value = buf;
		w.value_len = min_t(size_t, count, GG_KNOB_VALUE_MAX);
		if (gg_knob_kdecide(&w)) {
			atomic_dec(&gg_inflight);
			return -EPERM;
		}
	}
	ret = ((gg_kf_write_fn)orig)(of, buf, count, pos);
	atomic_dec(&gg_inflight);
	return ret;
}

static ssize_t gg_sysfs_kf_write(struct kernfs_open_file *of, char *buf, size_t count, loff_t pos)
{
	return gg_kf_write(of, buf, count, pos, gg_orig_sysfs_kf_write);
}

static ssize_t gg_sysfs_kf_bin_write(struct kernfs_open_file *of, char *buf, size_t count,
				     loff_t pos)
{
	return gg_kf_write(of, buf, count, pos, gg_orig_sysfs_kf_bin_write);
}

static ssize_t gg_proc_reg_write(struct file *file, const char __user *ubuf, size_t count,
				 loff_t *ppos)
{
	struct gg_knob_call w = {.op = GG_KOP_WRITE, .hook = GG_HOOK_KMOD_KNOB_WRITE};
	u8 value[GG_KNOB_VALUE_MAX];
	ssize_t ret;

	atomic_inc(&gg_inflight);
	if (gg_knob_of(file, &w)) {
		w.offset = ppos ? *ppos : 0;
		w.length = count;
		w.value_len = min_t(size_t, count, sizeof(value));
		/* the caller's bytes, for the record: the class never depends on them */
		if (w.value_len && copy_from_user(value, ubuf, w.value_len))
			w.capture_flags = GG_CAP_ARG_FAULT;
		else
			w.value = value;
		if (gg_knob_kdecide(&w)) {
			atomic_dec(&gg_inflight);
			return -EPERM;
		}
	}
	ret = ((gg_proc_write_fn)gg_orig_proc_reg_write)(file, ubuf, count, ppos);
	atomic_dec(&gg_inflight);
	return ret;
}

static u32 gg_vma_prot(const struct vm_area_struct *vma)
{
	return ((vma->vm_flags & VM_READ) ? PROT_READ : 0) |
	       ((vma->vm_flags & VM_WRITE) ? PROT_WRITE : 0) |
	       ((vma->vm_flags & VM_EXEC) ? PROT_EXEC : 0);
}

static void gg_vma_range(struct gg_knob_call *w, const struct vm_area_struct *vma)
{
	w->offset = (u64)vma->vm_pgoff << PAGE_SHIFT;
	w->length = vma->vm_end - vma->vm_start;
	w->prot = gg_vma_prot(vma);
}

static int gg_sysfs_kf_bin_mmap(struct kernfs_open_file *of, struct vm_area_struct *vma)
{
	struct gg_knob_call w = {.op = GG_KOP_MMAP, .hook = GG_HOOK_KMOD_KNOB_MMAP};
	int ret;

	atomic_inc(&gg_inflight);
	if (gg_knob_of(of->file, &w)) {
		gg_vma_range(&w, vma);
		if (gg_knob_kdecide(&w)) {
			atomic_dec(&gg_inflight);
			return -EPERM;
		}
	}
	ret = ((gg_kf_mmap_fn)gg_orig_sysfs_kf_bin_mmap)(of, vma);
	atomic_dec(&gg_inflight);
	return ret;
}

/* /dev/mem: any node of char 1:1; a GPU's only where the range overlaps its BAR. */
static int gg_mmap_mem(struct file *file, struct vm_area_struct *vma)
{
	struct gg_knob_call w = {.op = GG_KOP_MMAP, .hook = GG_HOOK_KMOD_KNOB_MMAP};
	int ret;

	atomic_inc(&gg_inflight);
	gg_vma_range(&w, vma);
	if (gg_lookup_bar(w.offset, w.length, &w.knob, &w.bar)) {
		w.key.ino = file_inode(file)->i_ino;
		if (gg_knob_kdecide(&w)) {
			atomic_dec(&gg_inflight);
			return -EPERM;
		}
	}
	ret = ((gg_mmap_fn)gg_orig_mmap_mem)(file, vma);
	atomic_dec(&gg_inflight);
	return ret;
}

#define GG_KNOB_HOOK(sym, hook)                                                                    \
	{                                                                                          \
		.symbol = #sym, .kind = GG_KHOOK_FTRACE, .record_hook = hook, .wrapper = gg_##sym, \
		.orig = &gg_orig_##sym,                                                            \
	}

static struct gg_khook gg_knob_hooks[] = {
	GG_KNOB_HOOK(sysfs_kf_write, GG_HOOK_KMOD_KNOB_WRITE),
	GG_KNOB_HOOK(sysfs_kf_bin_write, GG_HOOK_KMOD_KNOB_WRITE),
	GG_KNOB_HOOK(proc_reg_write, GG_HOOK_KMOD_KNOB_WRITE),
	GG_KNOB_HOOK(sysfs_kf_bin_mmap, GG_HOOK_KMOD_KNOB_MMAP),
	GG_KNOB_HOOK(mmap_mem, GG_HOOK_KMOD_KNOB_MMAP),
};

struct gg_family gg_knob_family = {
	.name = "knob",
	.anchor = "sysfs_kf_write",
	.hooks = gg_knob_hooks,
	.nhooks = ARRAY_SIZE(gg_knob_hooks),
};
