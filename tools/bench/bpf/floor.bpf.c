/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * Empty programs on the observer's hooks: what the kernel charges for a
 * syscall tracepoint at all. Benchmarks subtract this floor
 * (tools/bench/observer-bench).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

SEC("tp/syscalls/sys_enter_ioctl")
int gg_floor_enter(void *ctx)
{
	return 0;
}

SEC("tp/syscalls/sys_exit_ioctl")
int gg_floor_exit(void *ctx)
{
	return 0;
}
