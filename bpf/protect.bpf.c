/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * The gate protects itself: BPF LSM programs that refuse, to every process
 * but gpugated (its executable, by directory and name), the operations that would turn
 * the gate off or change its mind without the daemon: writing its maps,
 * getting fds of its maps and programs, detaching or replacing its links,
 * removing or renaming its pins, unmounting the bpffs that holds them, and
 * loading fmod_ret programs (which can skip LSM hooks altogether) or
 * freplace programs aimed at its own. Each refusal is a record.
 *
 * What root can still do is in docs/gate.md: boot without the gate, load a
 * kernel module, write the daemon's executable or ptrace it.
 */
#include "common.bpf.h"

static __always_inline struct gg_guard *gg_guard_on(void)
{
	__u32 zero = 0;
	struct gg_guard *g = bpf_map_lookup_elem(&guard, &zero);

	return g && g->enabled ? g : 0;
}

/* The daemon, the next daemon and gpugated --unload run gpugated's executable. */
static __always_inline int gg_is_daemon(const struct gg_guard *g)
{
	return gg_current_exe_is(g);
}

static __always_inline int gg_guarded(__u32 kind, __u32 id)
{
	struct gg_guarded_key key = {kind, id};

	return id && bpf_map_lookup_elem(&guarded, &key) != 0;
}

/* The object behind an fd of the current task (a map, program or link file). */
static __always_inline void *gg_fd_private(int fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *filp = 0;

	if (fd < 0 || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	if (bpf_probe_read_kernel(&filp, sizeof(filp), &fds[fd]) || !filp)
		return 0;
	return BPF_CORE_READ(filp, private_data);
}

/* The id of the map behind an fd, 0 if none. A wrong guess for an fd that
 * is no map only changes the errno of a call the kernel refuses anyway. */
static __always_inline __u32 gg_fd_map_id(int fd)
{
	struct bpf_map *map = gg_fd_private(fd);

	return map ? BPF_CORE_READ(map, id) : 0;
}

static __always_inline __u32 gg_fd_link_id(int fd)
{
	struct bpf_link *link = gg_fd_private(fd);

	return link ? BPF_CORE_READ(link, id) : 0;
}

static __always_inline __u32 gg_fd_prog_id(int fd)
{
	struct bpf_prog *prog = gg_fd_private(fd);
	struct bpf_prog_aux *aux = prog ? BPF_CORE_READ(prog, aux) : 0;

	return aux ? BPF_CORE_READ(aux, id) : 0;
}

static __always_inline int gg_refuse(__u32 op, __u32 object_id, __u32 bpf_cmd)
{
	struct gg_guard_event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	struct task_struct *task;
	struct file *exe;

	if (!ev) {
		struct gg_globals *gl = gg_globals();

		if (gl)
			__sync_fetch_and_add(&gl->guard_dropped, 1);
		return -GG_EPERM;
	}
	gg_fill_hdr(&ev->hdr, GG_EV_GUARD, sizeof(*ev), 0);
	ev->uid = (__u32)bpf_get_current_uid_gid();
	ev->op = op;
	ev->object_id = object_id;
	ev->bpf_cmd = bpf_cmd;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	ev->exe_name[0] = 0;
	task = bpf_get_current_task_btf();
	exe = task->mm ? task->mm->exe_file : 0;
	if (exe)
		bpf_probe_read_kernel_str(ev->exe_name, sizeof(ev->exe_name),
					  exe->f_path.dentry->d_name.name);
	bpf_ringbuf_submit(ev, BPF_RB_FORCE_WAKEUP);
	return -GG_EPERM;
}

SEC("lsm/bpf")
int BPF_PROG(gg_guard_bpf, int cmd, union bpf_attr *attr, unsigned int size, int ret)
{
	struct gg_guard *g;
	__u32 id = 0, op = 0;

	if (ret)
		return ret;
	g = gg_guard_on();
	if (!g || gg_is_daemon(g))
		return 0;
	switch (cmd) {
	case BPF_MAP_UPDATE_ELEM:
	case BPF_MAP_DELETE_ELEM:
	case BPF_MAP_LOOKUP_AND_DELETE_ELEM:
	case BPF_MAP_FREEZE:
		id = gg_fd_map_id(attr->map_fd);
		op = GG_GUARD_MAP_WRITE;
		if (gg_guarded(GG_OBJ_MAP, id))
			return gg_refuse(op, id, cmd);
		return 0;
	case BPF_MAP_UPDATE_BATCH:
	case BPF_MAP_DELETE_BATCH:
	case BPF_MAP_LOOKUP_AND_DELETE_BATCH:
		id = gg_fd_map_id(attr->batch.map_fd);
		if (gg_guarded(GG_OBJ_MAP, id))
			return gg_refuse(GG_GUARD_MAP_WRITE, id, cmd);
		return 0;
	case BPF_MAP_GET_FD_BY_ID:
		if (gg_guarded(GG_OBJ_MAP, attr->map_id))
			return gg_refuse(GG_GUARD_MAP_FD, attr->map_id, cmd);
		return 0;
	case BPF_PROG_GET_FD_BY_ID:
		if (gg_guarded(GG_OBJ_PROG, attr->prog_id))
			return gg_refuse(GG_GUARD_PROG_FD, attr->prog_id, cmd);
		return 0;
	case BPF_LINK_GET_FD_BY_ID:
		if (gg_guarded(GG_OBJ_LINK, attr->link_id))
			return gg_refuse(GG_GUARD_LINK, attr->link_id, cmd);
		return 0;
	case BPF_LINK_DETACH:
		id = gg_fd_link_id(attr->link_detach.link_fd);
		if (gg_guarded(GG_OBJ_LINK, id))
			return gg_refuse(GG_GUARD_LINK, id, cmd);
		return 0;
	case BPF_LINK_UPDATE:
		id = gg_fd_link_id(attr->link_update.link_fd);
		if (gg_guarded(GG_OBJ_LINK, id))
			return gg_refuse(GG_GUARD_LINK, id, cmd);
		return 0;
	case BPF_PROG_LOAD:
		/* fmod_ret may attach to security_* functions and return 0 from
		 * them, skipping every LSM; freplace could swap the decoder */
		if (attr->prog_type == BPF_PROG_TYPE_TRACING &&
		    attr->expected_attach_type == BPF_MODIFY_RETURN)
			return gg_refuse(GG_GUARD_PROG_LOAD, 0, cmd);
		if (attr->prog_type == BPF_PROG_TYPE_EXT) {
			id = gg_fd_prog_id(attr->attach_prog_fd);
			if (gg_guarded(GG_OBJ_PROG, id))
				return gg_refuse(GG_GUARD_PROG_LOAD, id, cmd);
		}
		return 0;
	default:
		return 0;
	}
}

/* An fd of one of its maps by pin (BPF_OBJ_GET); by id is refused above. */
SEC("lsm/bpf_map")
int BPF_PROG(gg_guard_bpf_map, struct bpf_map *map, fmode_t fmode, int ret)
{
	struct gg_guard *g;

	if (ret)
		return ret;
	g = gg_guard_on();
	if (!g || gg_is_daemon(g) || !gg_guarded(GG_OBJ_MAP, map->id))
		return 0;
	return gg_refuse(GG_GUARD_MAP_FD, map->id, 0);
}

SEC("lsm/bpf_prog")
int BPF_PROG(gg_guard_bpf_prog, struct bpf_prog *prog, int ret)
{
	struct gg_guard *g;
	__u32 id;

	if (ret)
		return ret;
	g = gg_guard_on();
	if (!g || gg_is_daemon(g))
		return 0;
	id = prog->aux->id;
	if (!gg_guarded(GG_OBJ_PROG, id))
		return 0;
	return gg_refuse(GG_GUARD_PROG_FD, id, 0);
}

static __always_inline int gg_is_pin_dir(const struct gg_guard *g, struct inode *dir)
{
	return g->pin_dir_ino && dir && dir->i_ino == g->pin_dir_ino &&
	       dir->i_sb->s_dev == g->pin_dev;
}

SEC("lsm/inode_unlink")
int BPF_PROG(gg_guard_unlink, struct inode *dir, struct dentry *dentry, int ret)
{
	struct gg_guard *g;

	if (ret)
		return ret;
	g = gg_guard_on();
	if (!g || !gg_is_pin_dir(g, dir) || gg_is_daemon(g))
		return 0;
	return gg_refuse(GG_GUARD_PIN_UNLINK, (__u32)dentry->d_inode->i_ino, 0);
}

SEC("lsm/inode_rename")
int BPF_PROG(gg_guard_rename, struct inode *old_dir, struct dentry *old_dentry,
	     struct inode *new_dir, struct dentry *new_dentry, int ret)
{
	struct gg_guard *g;
	struct inode *moved;

	if (ret)
		return ret;
	g = gg_guard_on();
	if (!g || gg_is_daemon(g))
		return 0;
	moved = old_dentry->d_inode;
	if (gg_is_pin_dir(g, old_dir) || gg_is_pin_dir(g, new_dir) || gg_is_pin_dir(g, moved))
		return gg_refuse(GG_GUARD_PIN_RENAME, moved ? (__u32)moved->i_ino : 0, 0);
	return 0;
}

SEC("lsm/sb_umount")
int BPF_PROG(gg_guard_umount, struct vfsmount *mnt, int flags, int ret)
{
	struct gg_guard *g;

	if (ret)
		return ret;
	g = gg_guard_on();
	if (!g || !g->pin_dir_ino || mnt->mnt_sb->s_dev != g->pin_dev || gg_is_daemon(g))
		return 0;
	return gg_refuse(GG_GUARD_UMOUNT, g->pin_dev, 0);
}
