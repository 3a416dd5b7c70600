// Google Benchmark: the user-space side of a recorded GPU ioctl, on one core.
// The daemon must turn at least 200k records/s into ledger lines; the
// baseline in the same run is the same record built as an nlohmann tree.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "gpugate/decode.hpp"
#include "gpugate/json_out.hpp"
#include "gpugate/pipeline.hpp"

using namespace gpugate;

namespace {

struct Fixture {
  DeviceTable devices;
  gg_ioctl_enter enter{};
  gg_ioctl_exit exit{};

  Fixture() {
    (void)devices.add_alias("/dev/full=nvidia");
    uint32_t params[3] = {0, 4, 0};
    uint8_t arg[32] = {};
    uint32_t words[] = {0xc1d00001, 0xcaf00001, 0x20800112, 0};
    std::memcpy(arg, words, sizeof(words));
    uint64_t ptr = 0x7ffc0000;
    std::memcpy(arg + 16, &ptr, 8);
    uint32_t size = 12;
    std::memcpy(arg + 24, &size, 4);
    enter.hdr = {GG_EV_IOCTL_ENTER, sizeof(enter), 0, 1, 1000, 4242, 4242};
    std::strcpy(enter.comm, "bench");
    std::strcpy(enter.exe_name, "bench");
    enter.dev = devices.devices()[0].dev;
    enter.device = devices.devices()[0].info;
    enter.fd = 3;
    enter.raw =
        capture({GG_DEV_NVIDIA_CTL, 0, 0xC020462A, arg, {}, {reinterpret_cast<uint8_t*>(params), sizeof(params)}, 0});
    enter.dec = decode(enter.raw);
    exit.hdr = {GG_EV_IOCTL_EXIT, sizeof(exit), 0, 1, 2000, 4242, 4242};
    exit.enter_seq = 1;
    exit.ret = -25;
  }
};

void BM_Decode(benchmark::State& state) {
  Fixture f;
  for (auto _ : state) {
    auto d = decode(f.enter.raw);
    benchmark::DoNotOptimize(d);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Decode);

// Baseline: the same content as an nlohmann tree, dumped.
void BM_RecordAsJsonTree(benchmark::State& state) {
  Fixture f;
  for (auto _ : state) {
    nlohmann::ordered_json j;
    j["type"] = "ioctl";
    j["process"] = {{"pid", f.enter.hdr.pid}, {"tid", f.enter.hdr.tid}, {"comm", "bench"}, {"exe", "bench"}};
    j["device"] = {{"rdev", "1:7"}, {"kind", "nvidia-ctl"}, {"alias", true}};
    j["request"] = raw_json(f.enter.raw);
    j["decoded"] = decoded_json(f.enter.raw, f.enter.dec);
    j["result"] = {{"ret", f.exit.ret}};
    auto text = j.dump();
    benchmark::DoNotOptimize(text);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RecordAsJsonTree);

void BM_RecordAsText(benchmark::State& state) {
  Fixture f;
  auto dir = std::filesystem::temp_directory_path() / ("gg-bench-" + std::to_string(getpid()));
  auto ledger = LedgerWriter::open((dir / "ledger").string());
  Pipeline p(*ledger, f.devices, HostInfo{"h", "b", "n"}, "bench", nullptr);
  for (auto _ : state) {
    auto text = p.build_record(f.enter, &f.exit);
    benchmark::DoNotOptimize(text);
  }
  state.SetItemsProcessed(state.iterations());
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_RecordAsText);

// The whole user-space path: join entry and exit, render, append, flush
// every 256 records (as the daemon does per batch) into a file in /tmp.
void BM_PipelineToLedger(benchmark::State& state) {
  Fixture f;
  auto dir = std::filesystem::temp_directory_path() / ("gg-bench-" + std::to_string(getpid()));
  auto ledger = LedgerWriter::open((dir / "ledger").string());
  Pipeline p(*ledger, f.devices, HostInfo{"h", "b", "n"}, "bench", nullptr);
  uint64_t n = 0;
  for (auto _ : state) {
    f.enter.hdr.seq = f.exit.enter_seq = n;
    p.on_enter(f.enter);
    p.on_exit(f.exit);
    if (++n % 256 == 0) (void)p.flush();
  }
  (void)p.flush();
  state.SetItemsProcessed(state.iterations());
  state.counters["bytes_per_record"] = static_cast<double>(ledger->bytes_written()) / static_cast<double>(n);
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_PipelineToLedger);

}  // namespace

BENCHMARK_MAIN();
