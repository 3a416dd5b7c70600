/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * The shared decoder, capture path and gate decision run inside the
 * kernel's BPF machine, driven by BPF_PROG_TEST_RUN from
 * tests/host/bpf_decode_test.cpp. Linked with the production maps and
 * decoder objects (bpf/maps.bpf.c, bpf/decode.bpf.c), so the test runs the
 * production code.
 */
#include "capture.bpf.h"

/* The record the capture fills (only device, raw and dec matter here). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gg_ioctl_enter);
} result SEC(".maps");

/* ctx: { dev_kind, drm_driver, request, user pointer to the argument } */
SEC("raw_tp")
int gg_decode_test(__u64 *ctx)
{
	__u32 zero = 0;
	struct gg_ioctl_enter *r = bpf_map_lookup_elem(&result, &zero);

	if (!r)
		return 1;
	r->device.kind = (__u8)ctx[0];
	r->device.drm_driver = (__u8)ctx[1];
	gg_bpf_capture_nofault(r, (__u32)ctx[2], ctx[3]);
	return 0;
}

/* One decision: the inputs and the answer of GG_GATE_DECIDE. */
struct gg_verdict_case {
	struct gg_policy policy;
	struct gg_decoded dec;
	__u32 uid, dev, vendor, recorded;
	__u64 cgroup_id;
	char comm[GG_COMM_LEN];
	__u32 thread_state;
	__u32 grant; /* what the grant lookup answers */
	__u32 grant_asked;
	__u32 pad;
	struct gg_gate_result res;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gg_verdict_case);
} verdict_case SEC(".maps");

static __always_inline __u32 gg_test_grant(struct gg_verdict_case *c)
{
	c->grant_asked = 1;
	return c->grant;
}

SEC("raw_tp")
int gg_verdict_test(void *ctx)
{
	__u32 zero = 0;
	struct gg_verdict_case *c = bpf_map_lookup_elem(&verdict_case, &zero);
	struct gg_subject subj;

	if (!c)
		return 1;
	subj.cls = c->dec.cls;
	subj.dev = c->dev;
	subj.uid = c->uid;
	subj.vendor = c->vendor;
	subj.cgroup_id = c->cgroup_id;
	subj.comm = c->comm;
	c->grant_asked = 0;
	GG_GATE_DECIDE(&c->res, &c->policy, &subj, &c->dec, c->recorded, c->thread_state,
		       gg_test_grant(c));
	return 0;
}

/* ctx: { stage, user pointer }: are the bytes captured in result's raw for
 * that stage still those at the pointer? (0: the same) */
SEC("raw_tp")
int gg_verify_test(__u64 *ctx)
{
	__u32 zero = 0;
	struct gg_ioctl_enter *r = bpf_map_lookup_elem(&result, &zero);

	if (!r)
		return 2;
	return gg_bpf_verify(&r->raw, (__u32)ctx[0], ctx[1]);
}
