// Google Benchmark: signature verifications per second per key type, on one
// core. Keys are made with the real ssh-keygen at start (into a temporary
// directory) and sign a canonical request, as operators would.
//
//   build/bin/gpugate-auth-microbench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//
// Verify:           verify_sshsig on a parsed signature (the OpenSSL key is
//                   rebuilt from the blob each time, as the daemon does).
// ParseAndVerify:   armor + blob parsing + verification, from the .sig text.
// Authorize2of2:    two signatures (ed25519 + ecdsa) against allowed_signers
//                   and a 2-of-2 group: a full quorum decision.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>

#include "gpugate/authorize.hpp"
#include "gpugate/sshsig.hpp"

using namespace gpugate::auth;

namespace {

const std::string kRequest =
    "gpugate-request v1\nhost: 3d1219c7c4c5404aaa1f6d2a48adfda4\ngpu: GPU-5b9d6d3c-4c1a-7e0f-2b6d-93e1f0a4c2d8\n"
    "class: power.limit\nparam: power_limit_mw=250000\nnot-before: 2026-11-28T09:40:00Z\n"
    "not-after: 2026-11-28T09:50:00Z\nnonce: 0123456789abcdef0123456789abcdef\nrequester: alice@example.org\n"
    "reason: INC-1234 rack 7 over its power budget\n";

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void run(const std::string& command) {
  if (std::system(command.c_str()) != 0) throw std::runtime_error("failed: " + command);
}

struct KeyCase {
  std::string name;     // benchmark label
  std::string keygen;   // ssh-keygen -t/-b
  std::string armored;  // signature over kRequest
  std::string pub_line;
};

std::vector<KeyCase> make_keys(const std::filesystem::path& dir) {
  std::vector<KeyCase> keys = {{"ed25519", "-t ed25519", {}, {}},
                               {"ecdsa_p256", "-t ecdsa -b 256", {}, {}},
                               {"rsa3072_sha512", "-t rsa -b 3072", {}, {}}};
  std::ofstream(dir / "request") << kRequest;
  for (auto& k : keys) {
    auto key = dir / k.name;
    run("ssh-keygen -q -N '' " + k.keygen + " -f " + key.string());
    run("ssh-keygen -Y sign -q -n " + std::string(kSignatureNamespace) + " -f " + key.string() + " < " +
        (dir / "request").string() + " > " + key.string() + ".sig");
    k.armored = slurp(key.string() + ".sig");
    k.pub_line = slurp(key.string() + ".pub");
  }
  return keys;
}

void verify(benchmark::State& state, const KeyCase& k) {
  auto sig = parse_sshsig(k.armored);
  if (!sig) {
    state.SkipWithError(sig.error().message.c_str());
    return;
  }
  for (auto _ : state) {
    auto ok = verify_sshsig(*sig, kRequest, kSignatureNamespace);
    if (!ok) state.SkipWithError(ok.error().message.c_str());
  }
  state.SetItemsProcessed(state.iterations());
}

void parse_and_verify(benchmark::State& state, const KeyCase& k) {
  for (auto _ : state) {
    auto sig = parse_sshsig(k.armored);
    if (!sig || !verify_sshsig(*sig, kRequest, kSignatureNamespace)) state.SkipWithError("did not verify");
  }
  state.SetItemsProcessed(state.iterations());
}

void authorize_two(benchmark::State& state, const std::vector<KeyCase>& keys) {
  auto signers = AllowedSigners::parse("alice@example.org " + keys[0].pub_line + "bob@example.org " + keys[1].pub_line,
                                       "allowed_signers");
  if (!signers) {
    state.SkipWithError(signers.error().message.c_str());
    return;
  }
  std::vector<SignatureInput> sigs = {{"a", keys[0].armored}, {"b", keys[1].armored}};
  std::vector<SignerGroup> groups = {{"oncall", {"alice@example.org", "bob@example.org"}, 2}};
  for (auto _ : state) {
    auto a = authorize(kRequest, sigs, *signers, kSignatureNamespace, 1795858800, groups);
    if (!a.quorum_met) state.SkipWithError("quorum not met");
  }
  state.SetItemsProcessed(state.iterations());
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  auto dir = std::filesystem::temp_directory_path() / ("gg-auth-bench-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::vector<KeyCase> keys;
  try {
    keys = make_keys(dir);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpugate-auth-microbench: %s (is openssh-client installed?)\n", e.what());
    std::filesystem::remove_all(dir);
    return 2;
  }
  for (const auto& k : keys) {
    benchmark::RegisterBenchmark(("BM_Verify/" + k.name).c_str(), verify, k);
    benchmark::RegisterBenchmark(("BM_ParseAndVerify/" + k.name).c_str(), parse_and_verify, k);
  }
  benchmark::RegisterBenchmark("BM_Authorize2of2/ed25519+ecdsa_p256", authorize_two, keys);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  std::filesystem::remove_all(dir);
  return 0;
}
