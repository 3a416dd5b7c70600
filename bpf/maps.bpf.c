/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * The one definition of the maps and globals every gpugate BPF object
 * shares (declared in common.bpf.h), and the license of the linked object.
 */
#define GG_DEFINE_MAPS
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";
