// A small CUDA load for the gpu venue (tests/gpu/run-watch.sh): vector adds
// with a run of FMAs per element on GPU 0 for SECONDS (default 10), so that
// clocks, power draw and the performance state move the way real work moves
// them. It only computes: no power, clock or mode is set. Exits non-zero,
// naming the CUDA call, if anything fails or a result is wrong.
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

#define CHECK(call)                                                                       \
  do {                                                                                    \
    cudaError_t err_ = (call);                                                            \
    if (err_ != cudaSuccess) {                                                            \
      std::fprintf(stderr, "workload: %s failed: %s\n", #call, cudaGetErrorString(err_)); \
      std::exit(1);                                                                       \
    }                                                                                     \
  } while (0)

constexpr int kFmas = 256;  // per element: enough arithmetic to keep the SMs, not only HBM, busy

__global__ void add(const float* a, const float* b, float* c, size_t n) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n; i += size_t{gridDim.x} * blockDim.x) {
    float x = a[i], y = b[i];
    // x = x * 1 + 0 keeps the value exact, so the host can check the sum.
    for (int k = 0; k < kFmas; k++) x = fmaf(x, 1.0f, y * 0.0f);
    c[i] = x + y;
  }
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = argc > 1 ? std::atof(argv[1]) : 10.0;
  if (argc > 2 || seconds <= 0) {
    std::fprintf(stderr, "usage: workload [SECONDS]  (a CUDA load on GPU 0; default 10)\n");
    return 2;
  }
  int count = 0;
  CHECK(cudaGetDeviceCount(&count));
  cudaDeviceProp prop{};
  CHECK(cudaGetDeviceProperties(&prop, 0));
  char bus[32] = {};
  CHECK(cudaDeviceGetPCIBusId(bus, sizeof(bus), 0));
  std::printf("workload: %d GPU(s); GPU 0 %s at %s, %d SMs; %.1f s\n", count, prop.name, bus, prop.multiProcessorCount,
              seconds);

  const size_t n = size_t{1} << 26;  // 64 Mi floats: 256 MiB per vector
  std::vector<float> ha(n), hb(n), hc(n);
  for (size_t i = 0; i < n; i++) {
    ha[i] = static_cast<float>(i % 1024);
    hb[i] = static_cast<float>(i % 7);
  }
  float *a = nullptr, *b = nullptr, *c = nullptr;
  CHECK(cudaMalloc(&a, n * sizeof(float)));
  CHECK(cudaMalloc(&b, n * sizeof(float)));
  CHECK(cudaMalloc(&c, n * sizeof(float)));
  CHECK(cudaMemcpy(a, ha.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(b, hb.data(), n * sizeof(float), cudaMemcpyHostToDevice));

  const int threads = 256, blocks = prop.multiProcessorCount * 8;
  auto start = std::chrono::steady_clock::now();
  double elapsed = 0;
  long launches = 0;
  while (elapsed < seconds) {
    add<<<blocks, threads>>>(a, b, c, n);
    CHECK(cudaGetLastError());
    CHECK(cudaDeviceSynchronize());
    launches++;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  CHECK(cudaMemcpy(hc.data(), c, n * sizeof(float), cudaMemcpyDeviceToHost));
  size_t wrong = 0;
  for (size_t i = 0; i < n; i++)
    if (hc[i] != ha[i] + hb[i]) wrong++;
  CHECK(cudaFree(a));
  CHECK(cudaFree(b));
  CHECK(cudaFree(c));
  std::printf("workload: %ld launches in %.2f s (%.1f GFMA/s), %zu wrong\n", launches, elapsed,
              static_cast<double>(launches) * static_cast<double>(n) * kFmas / elapsed / 1e9, wrong);
  return wrong == 0 ? 0 : 1;
}
