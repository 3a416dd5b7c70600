/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * The shared decoder and capture path run inside the kernel's BPF
 * machine, driven by BPF_PROG_TEST_RUN from tests/host/bpf_decode_test.cpp.
 * ctx: { dev_kind, drm_driver, request, user pointer to the argument }.
 * The captured bytes and the decode land in the one-entry map "result".
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "capture.bpf.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct gg_decode_result {
	struct gg_decoded dec;
	struct gg_raw raw;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gg_decode_result);
} result SEC(".maps");

SEC("raw_tp")
int gg_decode_test(__u64 *ctx)
{
	__u32 zero = 0;
	struct gg_decode_result *r = bpf_map_lookup_elem(&result, &zero);

	if (!r)
		return 1;
	gg_capture(&r->raw, &r->dec, (__u32)ctx[0], (__u32)ctx[1], (__u32)ctx[2], ctx[3]);
	return 0;
}
