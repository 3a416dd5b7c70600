/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * The shared decoder as global BPF functions, compiled once beside the one
 * copy of the command tables: the verifier checks each function on its own,
 * once, and every program of the linked object calls it.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define GG_DECODE_IMPL
#include "gg_tables.c"
#include "gg_decode.h"
