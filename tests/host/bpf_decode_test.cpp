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
}
#include "decode_test.skel.h"

using namespace gpugate;
using gpugate::test::Layout;
using gpugate::test::Vector;

namespace {

struct SkelDeleter {
  void operator()(decode_test_bpf* s) const { decode_test_bpf__destroy(s); }
};

struct KernelResult {
  gg_decoded dec;
  gg_raw raw;
};

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
  EXPECT_TRUE(k.dec.flags & GG_DF_ARG_FAULT);
  EXPECT_EQ(k.dec.cls, GG_CLASS_UNKNOWN);
  // A control whose params pointer is bad: class from the table, params flagged.
  auto v = test::control("c", 0x20800112, std::vector<uint8_t>(12, 0), GG_CLASS_POWER_OFF);
  test::put64(v.arg, 16, 0x20);
  k = run_in_kernel(GG_DEV_NVIDIA_CTL, 0, v.request, v.arg.data());
  EXPECT_TRUE(k.dec.flags & GG_DF_PARAMS_FAULT);
  EXPECT_EQ(k.dec.cls, GG_CLASS_POWER_OFF);
}
