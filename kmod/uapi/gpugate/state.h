/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * State the BPF gate keeps for the daemon in pinned maps: what a restarted
 * daemon needs from the one before it (gg_state), and what the
 * self-protection needs to know who the daemon is (gg_guard).
 */
#ifndef GPUGATE_STATE_H
#define GPUGATE_STATE_H

#include "event.h"

/*
 * Bumped whenever gg_state changes: a daemon refuses to take over a pinned
 * gate whose state has another version (gpugated --unload, then start).
 */
#define GG_STATE_VERSION 2

/* The one entry of the pinned "state" map; the programs never read it. */
struct gg_state {
	__u32 version;		   /* GG_STATE_VERSION */
	__u32 daemon_pid;	   /* the daemon that last held the gate */
	__u64 daemon_heartbeat_ns; /* CLOCK_BOOTTIME of its last tick */
	__u32 next_grant_id;	   /* ids are never reused across daemons */
	__u32 pad;
	__u64 acked_dropped[GG_CLASS_COUNT];	  /* losses already recorded in the ledger */
	__u64 acked_exit_dropped[GG_CLASS_COUNT]; /* likewise for exit records */
	__u64 acked_guard_dropped;		  /* guard events lost and recorded */
};

/* The BPF programs' writable globals (the one entry of the "globals" map). */
#define GG_MAJORS 4096
struct gg_globals {
	__u64 next_seq;		/* kernel-side sequence of enter records */
	__u64 pending_hint;	/* enters without exits yet; 0 lets exits skip the lookup */
	__u64 fd_lookup_faults; /* fd table reads that failed */
	__u64 guard_dropped;	/* guard events that found the ring full */
};

/* Kinds of objects the self-protection guards (key of the "guarded" map). */
enum gg_guarded_kind {
	GG_OBJ_MAP = 1,
	GG_OBJ_PROG = 2,
	GG_OBJ_LINK = 3,
};

struct gg_guarded_key {
	__u32 kind; /* enum gg_guarded_kind */
	__u32 id;   /* the kernel's id of the map, program or link */
};

/*
 * Who the daemon is and where its pins live. A process whose executable is
 * the daemon's, by name and directory (the directory's inode on its
 * device, so that a package upgrade that replaces the file keeps it), may
 * touch the gate's objects: the running daemon, the next one taking over,
 * gpugated --unload.
 */
#define GG_GUARD_NAME_LEN 16
struct gg_guard {
	__u64 exe_dir_ino; /* inode number of the directory of gpugated's executable */
	__u32 exe_dir_dev; /* its superblock's kernel dev_t */
	__u32 enabled;	   /* 0 until the daemon has filled this in */
	char exe_name[GG_GUARD_NAME_LEN]; /* the executable's file name */
	__u64 pin_dir_ino;		  /* inode number of the pin directory, 0: not pinned */
	__u32 pin_dev;			  /* kernel dev_t of the bpffs that holds it */
	__u32 pad;
};

#endif /* GPUGATE_STATE_H */
