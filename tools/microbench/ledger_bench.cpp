// Google Benchmark: the ledger on one core. Targets (DESIGN section 8):
// appends with Merkle hashing >= 300k records/s, verification >= 500 MB/s.
// Baselines in the same run: the same bytes appended by a plain buffered
// writer (no hashing, no prev chain), and SHA-256 of the leaves alone.
//
// Records are real ioctl records, built by the pipeline (about 1.3 KB).
// `gpugate-ledger-bench --write-ledger DIR N` writes such a ledger of N
// records (key in DIR.state) for tools/bench/ledger-bench.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "gpugate/log_verify.hpp"
#include "gpugate/pipeline.hpp"
#include "sample_ioctl.hpp"

using namespace gpugate;
namespace fs = std::filesystem;

namespace {

// One realistic record (the members the pipeline hands the ledger).
std::string sample_members() {
  bench::SampleIoctl sample;
  auto tmp = fs::temp_directory_path() / ("gg-lbench-sample-" + std::to_string(getpid()));
  auto ledger = LedgerWriter::open(tmp.string());
  Pipeline p(*ledger, sample.devices,
             HostInfo{"3d1219c7c4c5404aaa1f6d2a48adfda4", "da957893-3427-402b-b84e-2b515973e58f", "h"}, "bpf", nullptr);
  std::string m = p.build_record(sample.enter, &sample.exit);
  fs::remove_all(tmp);
  return m;
}

fs::path bench_dir(const char* tag) {
  return fs::temp_directory_path() / fmt::format("gg-lbench-{}-{}", tag, getpid());
}

// Baseline: the old ledger's hot path: seq prefix, buffer, write per 256 KiB.
void BM_AppendPlain(benchmark::State& state) {
  std::string members = sample_members();
  auto dir = bench_dir("plain");
  fs::create_directories(dir);
  int fd = ::open((dir / "000001.jsonl").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  std::string buf;
  uint64_t seq = 0, bytes = 0;
  for (auto _ : state) {
    buf.append("{\"seq\":");
    buf.append(std::to_string(seq++));
    buf.push_back(',');
    buf.append(members);
    buf.append("}\n");
    if (buf.size() >= 256 * 1024) {
      bytes += static_cast<uint64_t>(::write(fd, buf.data(), buf.size()));
      buf.clear();
    }
  }
  ::close(fd);
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  fs::remove_all(dir);
}
BENCHMARK(BM_AppendPlain);

// The ledger: prev chain, leaf hash, compact range, checkpoints signed
// every 100k records, flush every 256 records (the daemon's batch).
void BM_AppendHashed(benchmark::State& state) {
  std::string members = sample_members();
  auto dir = bench_dir("hashed");
  LedgerOptions o;
  o.key = std::make_shared<const tlog::LogKey>(*tlog::LogKey::generate("gpugate/bench"));
  o.fsync = state.range(0) ? FsyncPolicy::checkpoint : FsyncPolicy::never;
  o.checkpoint_ms = 0;
  auto w = LedgerWriter::open(dir.string(), o);
  uint64_t n = 0;
  for (auto _ : state) {
    (void)w->append_members(members);
    if (++n % 256 == 0) (void)w->flush();
  }
  (void)w->flush();
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(w->bytes_written()));
  state.counters["checkpoints"] = static_cast<double>(w->checkpoints_written());
  fs::remove_all(dir);
}
BENCHMARK(BM_AppendHashed)->Arg(0)->Arg(1)->ArgName("fsync_at_checkpoint");

// SHA-256 of the leaves alone: the floor under both append and verify.
void BM_LeafHash(benchmark::State& state) {
  std::string line = "{\"seq\":1234567,\"prev\":\"0011223344556677\"," + sample_members() + "}";
  merkle::Hasher h;
  for (auto _ : state) benchmark::DoNotOptimize(h.leaf(line));
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * line.size()));
}
BENCHMARK(BM_LeafHash);

Result<uint64_t> write_ledger(const fs::path& dir, uint64_t n) {
  std::string members = sample_members();
  LedgerOptions o;
  auto key = tlog::LogKey::load_or_create(dir.string() + ".state", "gpugate/bench");
  if (!key) return key.error();
  o.key = std::make_shared<const tlog::LogKey>(std::move(*key));
  o.fsync = FsyncPolicy::never;
  o.checkpoint_ms = 0;
  auto w = LedgerWriter::open(dir.string(), o);
  if (!w) return w.error();
  for (uint64_t i = 0; i < n; i++) {
    (void)w->append_members(members);
    if (i % 256 == 255) (void)w->flush();
  }
  (void)w->checkpoint("shutdown");
  return w->bytes_written();
}

// Full verification (every byte hashed, every checkpoint checked) of a
// ledger of range(0) records, read from the page cache.
void BM_Verify(benchmark::State& state) {
  auto dir = bench_dir("verify");
  auto bytes = write_ledger(dir, static_cast<uint64_t>(state.range(0)));
  ledger::VerifyOptions o;
  uint64_t records = 0;
  for (auto _ : state) {
    auto r = ledger::verify_ledger(dir.string(), o);
    if (!r || r->exit_code != 0) state.SkipWithError("verify failed");
    records = r ? r->records : 0;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * records));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * (bytes ? *bytes : 0)));
  fs::remove_all(dir);
  fs::remove_all(dir.string() + ".state");
}
BENCHMARK(BM_Verify)->Arg(200000)->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::string(argv[1]) == "--write-ledger") {
    auto r = write_ledger(argv[2], std::stoull(argv[3]));
    if (!r) {
      std::fprintf(stderr, "%s\n", r.error().message.c_str());
      return 1;
    }
    std::printf("%llu bytes\n", static_cast<unsigned long long>(*r));
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
