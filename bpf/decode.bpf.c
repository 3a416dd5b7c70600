/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * The shared decoder as global BPF functions, compiled once beside the one
 * copy of the command tables: the verifier checks each function on its own,
 * once, and every program of the linked object calls it.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "gg_tables.c"
#include "gg_decode.h"

__noinline int gg_find_nv_escape(__u32 nr)
{
	return gg_find_nv_escape_body(nr);
}

__noinline int gg_find_nv_control(__u32 id)
{
	return gg_find_nv_control_body(id);
}

__noinline int gg_find_drm_core(__u32 nr)
{
	return gg_find_drm_core_body(nr);
}

__noinline int gg_find_kfd(__u32 nr)
{
	return gg_find_kfd_body(nr);
}

__noinline int gg_find_drm_driver(__u32 key)
{
	return gg_find_drm_driver_body(key);
}

__noinline int gg_decode(const struct gg_raw *raw, struct gg_decoded *d)
{
	return gg_decode_body(raw, d);
}
