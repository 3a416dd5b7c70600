// The shared decoder and capture code running in this kernel's BPF machine
// (BPF_PROG_TEST_RUN of a raw_tp wrapper), fed every vector of the unit
// tests from real user memory, must answer byte for byte as user space does.
// Needs root; fails (never skips) without it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <memory>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "gpugate/decode.hpp"
#include "vectors.hpp"

extern "C" {
#include "gg_table_types.h"
#include "gg_verdict.h"
}
#include <random>
#include "decode_test.skel.h"

using namespace gpugate;
using gpugate::test::Layout;
using gpugate::test::Vector;

namespace {

struct SkelDeleter {
  void operator()(decode_test_bpf* s) const { decode_test_bpf__destroy(s); }
};

using KernelResult = gg_ioctl_enter;

// Copies of the vector's bytes whose pointer fields point at each other.
struct Memory {
  std::vector<uint8_t> arg, inner, params;
  explicit Memory(const Vector& v) : arg(v.arg), inner(v.inner), params(v.params) {
    arg.resize(std::max<size_t>(arg.size(), 128));
    inner.resize(std::max<size_t>(inner.size(), 128));
    params.resize(std::max<size_t>(params.size(), 256));
    auto p = reinterpret_cast<uint64_t>(params.data());
    auto in = reinterpret_cast<uint64_t>(inner.data());
    switch (v.layout) {
      case Layout::Control:
      case Layout::Alloc21:
      case Layout::Alloc64:
        if (v.params.size()) test::put64(arg, 16, p);
        break;
      case Layout::XferControl:
        test::put64(arg, 8, in);
        if (v.params.size()) test::put64(inner, 16, p);
        break;
      case Layout::XferPlain: test::put64(arg, 8, in); break;
      case Layout::Plain: break;
    }
  }
};

class BpfDecode : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(geteuid(), 0u) << "host tests need root (BPF_PROG_LOAD, BPF_PROG_TEST_RUN): run them with sudo";
    skel_.reset(decode_test_bpf__open_and_load());
    ASSERT_TRUE(skel_) << "the decoder's BPF program did not load: " << std::strerror(errno);
  }

  KernelResult run_in_kernel(unsigned kind, unsigned drm, uint32_t request, const void* arg) {
    uint64_t ctx[4] = {kind, drm, request, reinterpret_cast<uint64_t>(arg)};
    LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = ctx, .ctx_size_in = sizeof(ctx));
    int err = bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.gg_decode_test), &opts);
    EXPECT_EQ(err, 0) << std::strerror(errno);
    EXPECT_EQ(opts.retval, 0u);
    KernelResult r{};
    uint32_t zero = 0;
    EXPECT_EQ(bpf_map_lookup_elem(bpf_map__fd(skel_->maps.result), &zero, &r), 0);
    return r;
  }

  std::unique_ptr<decode_test_bpf, SkelDeleter> skel_;
};

// What user space captures from the same memory.
gg_raw capture_user(const Vector& v, const Memory& m) {
  uint32_t want = 0;
  // the user-space capture takes spans; hand it exactly what is readable
  std::span<const uint8_t> arg(m.arg.data(), v.arg.size());
  std::span<const uint8_t> inner(m.inner.data(), v.inner.size());
  std::span<const uint8_t> params(m.params.data(), v.params.size());
  (void)want;
  return capture({v.dev_kind, v.drm_driver, v.request, arg, inner, params, 0});
}

}  // namespace

TEST_F(BpfDecode, KernelAndUserSpaceAgreeOnEveryVector) {
  auto vectors = test::all_vectors();
  size_t checked = 0;
  for (const auto& v : vectors) {
    SCOPED_TRACE(v.name);
    Memory m(v);
    KernelResult k = run_in_kernel(v.dev_kind, v.drm_driver, v.request, m.arg.data());
    gg_raw u_raw = capture_user(v, m);
    gg_decoded u = decode(u_raw);
    // The kernel reads real memory, which the padding makes readable past
    // the vector's bytes; compare what both captured, then the decode.
    ASSERT_EQ(k.raw.request, u_raw.request);
    ASSERT_EQ(k.raw.arg_len, u_raw.arg_len);
    ASSERT_EQ(0, std::memcmp(k.raw.arg, u_raw.arg, u_raw.arg_len));
    ASSERT_EQ(k.raw.inner_len, u_raw.inner_len);
    ASSERT_EQ(0, std::memcmp(k.raw.inner, u_raw.inner, u_raw.inner_len));
    ASSERT_EQ(k.raw.params_len, u_raw.params_len);
    ASSERT_EQ(0, std::memcmp(k.raw.params, u_raw.params, u_raw.params_len));
    ASSERT_EQ(0, std::memcmp(&k.dec, &u, sizeof(u)))
        << "kernel: " << describe(k.raw, k.dec) << "\nuser:   " << describe(u_raw, u);
    if (v.cls >= 0) ASSERT_EQ(k.dec.cls, v.cls) << class_name(k.dec.cls);
    checked++;
  }
  EXPECT_EQ(checked, vectors.size());
  EXPECT_GT(checked, 1500u);
}

TEST_F(BpfDecode, UnreadablePointersAreReportedNotFatal) {
  // An argument pointer into nowhere: the kernel side must flag it.
  KernelResult k = run_in_kernel(GG_DEV_NVIDIA_CTL, 0, test::nv_iowr(0x2A, 32), reinterpret_cast<void*>(0x10));
  EXPECT_TRUE(k.raw.capture_flags & GG_CAP_ARG_FAULT);
  EXPECT_TRUE(k.raw.capture_flags & GG_CAP_NO_FAULT_HOOK) << "the tracepoint cannot fault pages in, and says so";
  EXPECT_TRUE(k.dec.flags & GG_DF_ARG_FAULT);
  EXPECT_TRUE(k.dec.flags & GG_DF_UNDECIDED) << "an unread control could be any control";
  EXPECT_EQ(k.dec.cls, GG_CLASS_UNKNOWN);
  // A control whose params pointer is bad: class from the table, params flagged.
  auto v = test::control("c", 0x20800112, std::vector<uint8_t>(12, 0), GG_CLASS_POWER_OFF);
  test::put64(v.arg, 16, 0x20);
  k = run_in_kernel(GG_DEV_NVIDIA_CTL, 0, v.request, v.arg.data());
  EXPECT_TRUE(k.dec.flags & GG_DF_PARAMS_FAULT);
  EXPECT_TRUE(k.dec.flags & GG_DF_UNDECIDED);
  EXPECT_FALSE(k.dec.flags & GG_DF_KEYS_VALID) << "no key parameter was read";
  EXPECT_EQ(k.dec.cls, GG_CLASS_POWER_OFF);
}

// The gate's re-read (gg_bpf_verify): the bytes it captured, compared with
// user memory after a wait and just before it answers. Every byte that was
// captured counts, none beyond.
TEST_F(BpfDecode, TheRereadSeesEveryCapturedByteAndNoOther) {
  for (uint32_t psize : {4u, 12u, 31u, 33u, 68u, 200u}) {
    SCOPED_TRACE(psize);
    auto v = test::control("c", 0x20800110, std::vector<uint8_t>(psize, 0x5a), -1);
    Memory m(v);
    run_in_kernel(GG_DEV_NVIDIA_CTL, 0, v.request, m.arg.data());
    auto verify = [&](uint32_t stage, const void* p) {
      uint64_t ctx[2] = {stage, reinterpret_cast<uint64_t>(p)};
      LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = ctx, .ctx_size_in = sizeof(ctx));
      EXPECT_EQ(bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.gg_verify_test), &opts), 0);
      return opts.retval;
    };
    EXPECT_EQ(verify(0, m.arg.data()), 0u) << "the argument, unchanged";
    EXPECT_EQ(verify(2, m.params.data()), 0u) << "the params, unchanged";
    for (uint32_t at : {0u, psize / 2, psize - 1}) {
      m.params[at] ^= 0xff;
      EXPECT_EQ(verify(2, m.params.data()), 1u) << "changed at " << at;
      m.params[at] ^= 0xff;
    }
    m.params[psize] ^= 0xff;  // beyond what was captured
    EXPECT_EQ(verify(2, m.params.data()), 0u);
    m.params[psize] ^= 0xff;
    m.arg[8] ^= 1;  // the cmd word
    EXPECT_EQ(verify(0, m.arg.data()), 1u);
    m.arg[8] ^= 1;
    EXPECT_EQ(verify(2, reinterpret_cast<void*>(0x10)), 1u) << "unreadable now: not the same";
  }
}

namespace {

// The inputs and answer of one gate decision, laid out as the BPF test
// program's map value (tests/host/bpf/decode_test.bpf.c).
struct VerdictCase {
  gg_policy policy;
  gg_decoded dec;
  uint32_t uid, dev, vendor, recorded;
  uint64_t cgroup_id;
  char comm[GG_COMM_LEN];
  uint32_t thread_state;
  uint32_t grant;
  uint32_t grant_asked;
  uint32_t pad;
  gg_gate_result res;
};

// A random but well-formed decision: every mode, action, flag that the
// decision reads, rules that may or may not match.
VerdictCase random_case(std::mt19937_64& rng) {
  auto pick = [&](uint32_t n) { return static_cast<uint32_t>(rng() % n); };
  VerdictCase c{};
  c.policy.mode = static_cast<uint8_t>(pick(3));
  for (auto& a : c.policy.action) a = static_cast<uint8_t>(pick(4));
  c.policy.flags = pick(2) ? GG_POLF_STRICT : 0;
  if (pick(4) == 0) c.policy.flags |= GG_POLF_LEDGER_DOWN;
  c.policy.nrules = static_cast<uint8_t>(pick(4));
  for (unsigned i = 0; i < c.policy.nrules; i++) {
    auto& r = c.policy.rules[i];
    r.match = pick(64);
    r.classes = static_cast<uint32_t>(rng());
    r.vendor = static_cast<uint8_t>(pick(GG_VENDOR_COUNT));
    r.uid = pick(3);
    r.dev = pick(3);
    r.cgroup_id = pick(3);
    r.comm[0] = static_cast<char>('a' + pick(2));
    r.action = static_cast<uint8_t>(pick(4));
  }
  c.policy.fail_closed_vendors = gg_policy_fail_closed_vendors(&c.policy);
  c.dec.cls = static_cast<uint8_t>(pick(GG_CLASS_COUNT));
  c.dec.vendor = static_cast<uint8_t>(pick(GG_VENDOR_COUNT));
  c.dec.nr = pick(2) ? 0x2A : static_cast<uint8_t>(pick(256));
  c.dec.priv = static_cast<uint8_t>(pick(5));
  c.dec.table = static_cast<uint8_t>(pick(GG_TAB_COUNT));
  uint32_t flag_pool[] = {GG_DF_UNDECIDED, GG_DF_LEGACY, GG_DF_BINAPI, GG_DF_KEYS_VALID, GG_DF_XFER};
  for (uint32_t f : flag_pool)
    if (pick(3) == 0) c.dec.flags |= f;
  c.uid = pick(3);
  c.dev = pick(3);
  c.vendor = c.dec.vendor;
  c.cgroup_id = pick(3);
  c.comm[0] = static_cast<char>('a' + pick(2));
  c.recorded = pick(4) != 0;
  c.thread_state = pick(4) != 0;
  c.grant = pick(2) ? 7 : 0;
  return c;
}

uint32_t user_grant(VerdictCase* c) {
  c->grant_asked = 1;
  return c->grant;
}

}  // namespace

// The gate's whole decision (GG_GATE_DECIDE in kmod/common/gg_verdict.h) in
// the kernel's BPF machine and in user space, on the same 20,000 random
// cases: the same verdict, action, reason, rule and grant, and the grant
// lookup asked exactly when user space asks it.
TEST_F(BpfDecode, KernelAndUserSpaceDecideAlike) {
  std::mt19937_64 rng(20261202);
  int fd = bpf_map__fd(skel_->maps.verdict_case);
  uint32_t zero = 0;
  size_t denied = 0, granted = 0, capture = 0, strict = 0, ledger_down = 0;
  for (int i = 0; i < 20000; i++) {
    VerdictCase c = random_case(rng);
    ASSERT_EQ(bpf_map_update_elem(fd, &zero, &c, BPF_ANY), 0);
    LIBBPF_OPTS(bpf_test_run_opts, opts);
    ASSERT_EQ(bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.gg_verdict_test), &opts), 0);
    VerdictCase k{};
    ASSERT_EQ(bpf_map_lookup_elem(fd, &zero, &k), 0);

    gg_subject subj{c.dec.cls, c.dev, c.uid, c.vendor, c.cgroup_id, c.comm};
    c.grant_asked = 0;
    GG_GATE_DECIDE(&c.res, &c.policy, &subj, &c.dec, c.recorded, c.thread_state, user_grant(&c));
    SCOPED_TRACE(i);
    ASSERT_EQ(k.res.verdict, c.res.verdict);
    ASSERT_EQ(k.res.action, c.res.action);
    ASSERT_EQ(k.res.reason, c.res.reason);
    ASSERT_EQ(k.res.rule, c.res.rule);
    ASSERT_EQ(k.res.grant_id, c.res.grant_id);
    ASSERT_EQ(k.grant_asked, c.grant_asked);
    // what the decision must never do, whatever the inputs
    if (c.res.verdict == GG_VERDICT_ALLOW && gg_action_gates(c.res.action))
      ASSERT_TRUE(c.res.grant_id && c.recorded) << "a gated command allowed without a grant or a record";
    if ((c.policy.flags & GG_POLF_LEDGER_DOWN) && gg_action_gates(c.res.action))
      ASSERT_NE(c.res.verdict, GG_VERDICT_ALLOW) << "a gated command allowed while the ledger is down";
    if (gg_fails_closed(&c.policy, c.vendor) && (c.dec.flags & GG_DF_UNDECIDED))
      ASSERT_NE(c.res.verdict, GG_VERDICT_ALLOW) << "allowed on bytes that were not read";
    denied += c.res.verdict == GG_VERDICT_DENY;
    granted += c.res.reason == GG_WHY_GRANT;
    capture += c.res.reason == GG_WHY_CAPTURE;
    strict += c.res.reason == GG_WHY_STRICT;
    ledger_down += c.res.reason == GG_WHY_LEDGER_DOWN;
  }
  // the random cases reach every branch
  EXPECT_GT(denied, 1000u);
  EXPECT_GT(granted, 100u);
  EXPECT_GT(capture, 100u);
  EXPECT_GT(strict, 10u);
  EXPECT_GT(ledger_down, 100u);
}
