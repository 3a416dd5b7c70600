// Google Benchmark: what one sampling round of the GPU state watcher costs,
// for eight GPUs. Target (issue 12): all fields of 8 GPUs at 1 Hz within 1%
// of one core, i.e. a round within 10 ms.
//
// NVML is tests/unit/fake_nvml.c (NVML's ABI, H200-like values) with
// FAKE_NVML_IOCTL=1: each query issues one harmless ioctl, as real NVML issues
// at least one RM control ioctl per query. Real NVML's per-query cost is the
// driver's: GG_NVML_LIBRARY=libnvidia-ml.so.1 adds BM_SampleNvmlLibrary, a
// round through that library, which tests/gpu/run-watch.sh runs on a GPU.
// sysfs is a tree of plain files laid out as sysfs is, and, for the kernel's
// own attribute path, this host's PCI functions. Baseline in the same run:
// one ioctl on /dev/null.
#include <benchmark/benchmark.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "gpugate/watch.hpp"

using namespace gpugate;
namespace fs = std::filesystem;

namespace {

constexpr unsigned kGpus = 8;

// The fake's count of NVML calls, for calls per round.
unsigned long long fake_calls() {
  static auto* fn = [] {
    void* lib = dlopen(FAKE_NVML_PATH, RTLD_NOW | RTLD_LOCAL);  // held: the fake's state is shared with the source's
    return lib ? reinterpret_cast<unsigned long long (*)()>(dlsym(lib, "fake_nvml_calls")) : nullptr;  // NOLINT
  }();
  return fn ? fn() : 0;
}

// One round per iteration over every GPU the library reports.
void sample_rounds(benchmark::State& state, watch::StateSource& src, size_t want_gpus) {
  auto gpus = src.sample();
  if (gpus.empty() || (want_gpus && gpus.size() != want_gpus) || gpus[0].values.size() < 20) {
    state.SkipWithError(fmt::format("{} GPUs, {} fields each: the library or the source is broken", gpus.size(),
                                    gpus.empty() ? 0 : gpus[0].values.size())
                            .c_str());
    return;
  }
  size_t fields = 0;
  for (auto _ : state) {
    auto round = src.sample();
    fields = 0;
    for (const auto& g : round) fields += g.values.size();
    benchmark::DoNotOptimize(round);
  }
  state.counters["gpus"] = static_cast<double>(gpus.size());
  state.counters["fields"] = static_cast<double>(fields);
}

void sample_fake(benchmark::State& state, bool ioctl_per_query) {
  ::setenv("FAKE_NVML_GPUS", std::to_string(kGpus).c_str(), 1);
  ::setenv("FAKE_NVML_IOCTL", ioctl_per_query ? "1" : "0", 1);
  auto src = watch::open_nvml(FAKE_NVML_PATH);
  if (!src) {
    state.SkipWithError(src.error().message.c_str());
    return;
  }
  unsigned long long calls_before = fake_calls();
  sample_rounds(state, **src, kGpus);
  // The check round included: a few calls in a hundred thousand.
  state.counters["nvml_calls"] = static_cast<double>(fake_calls() - calls_before) /
                                 static_cast<double>(std::max<int64_t>(state.iterations() + 1, 1));
}

// One round over 8 GPUs, each query paying one ioctl.
void BM_SampleNvml8Gpus(benchmark::State& state) { sample_fake(state, true); }
BENCHMARK(BM_SampleNvml8Gpus)->Unit(benchmark::kMicrosecond);

// The same without the ioctls: the watcher's own work (calls, JSON values).
void BM_SampleNvml8GpusNoIoctl(benchmark::State& state) { sample_fake(state, false); }
BENCHMARK(BM_SampleNvml8GpusNoIoctl)->Unit(benchmark::kMicrosecond);

// With GG_NVML_LIBRARY set (tests/gpu/run-watch.sh, on a GPU): one round
// through that library, NVIDIA's own, over the GPUs it reports.
void BM_SampleNvmlLibrary(benchmark::State& state, const std::string& library) {
  auto src = watch::open_nvml(library);
  if (!src) {
    state.SkipWithError(src.error().message.c_str());
    return;
  }
  sample_rounds(state, **src, 0);
}

// A sysfs tree of eight NVIDIA GPUs under a temporary root: the attributes
// open_sysfs reads, and the sampled knobs (power/control, d3cold_allowed, an
// hwmon power cap).
struct FakeSysfs {
  fs::path root = fs::temp_directory_path() / fmt::format("gg-watch-bench-{}", getpid());
  std::vector<PciGpu> gpus;

  FakeSysfs() {
    static constexpr unsigned kBus[kGpus] = {0x1a, 0x2a, 0x3a, 0x5d, 0x9a, 0xab, 0xba, 0xdb};
    auto put = [](const fs::path& p, const std::string& v) {
      fs::create_directories(p.parent_path());
      std::ofstream(p) << v << "\n";
    };
    for (unsigned bus : kBus) {
      PciGpu g;
      g.address = fmt::format("0000:{:02x}:00.0", bus);
      g.vendor_id = 0x10de;
      g.device_id = 0x2335;
      g.driver = "nvidia";
      g.uuid = fmt::format("GPU-bench-{:02x}", bus);
      fs::path dir = root / "bus/pci/devices" / g.address;
      put(dir / "power_state", "D0");
      put(dir / "current_link_width", "16");
      put(dir / "current_link_speed", "32.0 GT/s PCIe");
      put(dir / "power/runtime_status", "active");
      for (const auto& [name, value] : {std::pair<std::string, std::string>{"power/control", "on"},
                                        {"d3cold_allowed", "1"},
                                        {"hwmon/hwmon3/power1_cap", "700000000"}}) {
        put(dir / name, value);
        Knob k;
        k.name = name;
        k.path = (dir / name).string();
        k.owner = "gpu";
        k.writable = true;
        g.knobs.push_back(k);
      }
      gpus.push_back(std::move(g));
    }
  }
  ~FakeSysfs() { fs::remove_all(root); }
  FakeSysfs(const FakeSysfs&) = delete;
  FakeSysfs& operator=(const FakeSysfs&) = delete;
};

void run_sysfs(benchmark::State& state, watch::StateSource& src, size_t want_fields) {
  size_t fields = 0;
  for (const auto& g : src.sample()) fields += g.values.size();
  if (fields < want_fields) {
    state.SkipWithError(
        fmt::format("{} fields read, {} expected: the tree or the source is broken", fields, want_fields).c_str());
    return;
  }
  for (auto _ : state) {
    auto round = src.sample();
    benchmark::DoNotOptimize(round);
  }
  state.counters["fields"] = static_cast<double>(fields);
}

void BM_SampleSysfs8Gpus(benchmark::State& state) {
  FakeSysfs tree;
  auto src = watch::open_sysfs(tree.gpus, tree.root.string());
  // present, power_state, link width and speed, runtime status, three knobs
  run_sysfs(state, *src, kGpus * 8);
}
BENCHMARK(BM_SampleSysfs8Gpus)->Unit(benchmark::kMicrosecond);

// The kernel's attribute path (kernfs, the PCI core): eight entries over this
// host's own PCI functions, with their power/control and d3cold_allowed.
void BM_SampleSysfsHostPci8(benchmark::State& state) {
  std::vector<std::string> functions;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/sys/bus/pci/devices", ec)) functions.push_back(e.path().filename());
  if (functions.empty()) {
    state.SkipWithError("no /sys/bus/pci/devices here");
    return;
  }
  std::sort(functions.begin(), functions.end());
  std::vector<PciGpu> gpus;
  for (unsigned i = 0; i < kGpus; i++) {
    PciGpu g;
    g.address = functions[i % functions.size()];
    for (const char* name : {"power/control", "d3cold_allowed"}) {
      Knob k;
      k.name = name;
      k.path = "/sys/bus/pci/devices/" + g.address + "/" + name;
      k.owner = "gpu";
      g.knobs.push_back(k);
    }
    gpus.push_back(std::move(g));
  }
  auto src = watch::open_sysfs(gpus, "/sys");
  run_sysfs(state, *src, kGpus * 3);  // present, power_state, runtime status at least
}
BENCHMARK(BM_SampleSysfsHostPci8)->Unit(benchmark::kMicrosecond);

// Baseline: one ioctl (TCGETS) on /dev/null, what the fake charges per query.
void BM_IoctlDevNull(benchmark::State& state) {
  int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  char arg[64];
  for (auto _ : state) benchmark::DoNotOptimize(::ioctl(fd, 0x5401, arg));
  ::close(fd);
}
BENCHMARK(BM_IoctlDevNull);

}  // namespace

int main(int argc, char** argv) {
  if (const char* library = std::getenv("GG_NVML_LIBRARY"))
    benchmark::RegisterBenchmark("BM_SampleNvmlLibrary", BM_SampleNvmlLibrary, std::string(library))
        ->Unit(benchmark::kMicrosecond);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
