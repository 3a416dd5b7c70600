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
#include "gpugate/watch.hpp"
#include "sample_ioctl.hpp"

using namespace gpugate;

namespace {

using Fixture = bench::SampleIoctl;

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
// The sample is GPU_SET_POWER, a judged class: with a watcher, the daemon
// hands each to it, as a CommandSeen (live) or, the baseline, as its
// record parsed back (what the daemon did before: 44k records/s).
enum class Watched { no, command, parsed };
void pipeline_to_ledger(benchmark::State& state, Watched watched) {
  Fixture f;
  auto dir = std::filesystem::temp_directory_path() / ("gg-bench-" + std::to_string(getpid()));
  auto ledger = LedgerWriter::open((dir / "ledger").string());
  Pipeline p(*ledger, f.devices, HostInfo{"h", "b", "n"}, "bench", nullptr);
  watch::Explainer explainer(10'000'000'000ull, "b");
  if (watched == Watched::command) p.set_command_observer([&](const CommandSeen& c) { explainer.note_command(c); });
  if (watched == Watched::parsed) p.set_observer([&](const nlohmann::ordered_json& r) { explainer.note(r); });
  uint64_t n = 0;
  for (auto _ : state) {
    f.enter.hdr.seq = f.exit.enter_seq = n;
    p.on_enter(f.enter);
    p.on_exit(f.exit);
    if (++n % 256 == 0) {
      (void)p.flush();
      explainer.forget_before(f.enter.hdr.boot_ns);
    }
  }
  (void)p.flush();
  state.SetItemsProcessed(state.iterations());
  state.counters["bytes_per_record"] = static_cast<double>(ledger->bytes_written()) / static_cast<double>(n);
  std::filesystem::remove_all(dir);
}
void BM_PipelineToLedger(benchmark::State& state) { pipeline_to_ledger(state, Watched::no); }
BENCHMARK(BM_PipelineToLedger);
void BM_PipelineToLedgerWatched(benchmark::State& state) { pipeline_to_ledger(state, Watched::command); }
BENCHMARK(BM_PipelineToLedgerWatched);
void BM_PipelineToLedgerWatchedByParse(benchmark::State& state) { pipeline_to_ledger(state, Watched::parsed); }
BENCHMARK(BM_PipelineToLedgerWatchedByParse);

// A plain query, recorded in full and at summary level (issue 15): what a
// summarized call costs the daemon against its full record, same run. One
// process, node and command: one open summary, written every 65536 calls.
void query_path(benchmark::State& state, unsigned level) {
  Fixture f;
  f.enter.dec.cls = GG_CLASS_QUERY;
  f.enter.action = GG_ACT_LOG;
  f.enter.verdict = GG_VERDICT_ALLOW;
  f.enter.dec.flags &= ~GG_DF_ODD;
  auto dir = std::filesystem::temp_directory_path() / ("gg-bench-" + std::to_string(getpid()));
  auto ledger = LedgerWriter::open((dir / "ledger").string());
  Pipeline p(*ledger, f.devices, HostInfo{"h", "b", "n"}, "bench", nullptr);
  std::array<uint8_t, GG_CLASS_COUNT> levels{};
  levels[GG_CLASS_QUERY] = static_cast<uint8_t>(level);
  p.set_record_levels(levels, 60'000'000'000ull);
  uint64_t n = 0;
  for (auto _ : state) {
    f.enter.hdr.seq = f.exit.enter_seq = n;
    p.on_enter(f.enter);
    p.on_exit(f.exit);
    if (++n % 256 == 0) (void)p.flush();
    if (n % 65536 == 0) p.flush_summaries();
  }
  p.flush_summaries();
  (void)p.flush();
  state.SetItemsProcessed(state.iterations());
  state.counters["ledger_bytes_per_call"] = static_cast<double>(ledger->bytes_written()) / static_cast<double>(n);
  std::filesystem::remove_all(dir);
}
void BM_QueryRecordedInFull(benchmark::State& state) { query_path(state, GG_REC_FULL); }
BENCHMARK(BM_QueryRecordedInFull);
void BM_QuerySummarized(benchmark::State& state) { query_path(state, GG_REC_SUMMARY); }
BENCHMARK(BM_QuerySummarized);
void BM_QueryCounted(benchmark::State& state) { query_path(state, GG_REC_COUNT); }
BENCHMARK(BM_QueryCounted);

}  // namespace

BENCHMARK_MAIN();
