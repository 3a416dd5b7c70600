// libFuzzer entry point for the signed-authorization parsers: SSHSIG armor
// and blobs, SSH public keys, request text and allowed_signers. The
// deterministic twin that runs in every unit-test run is
// tests/unit/auth/fuzz_test.cpp.
//
// Built by CMake with -DGPUGATE_FUZZ=ON (clang; tests/fuzz/CMakeLists.txt)
// and run by `make fuzz` on the seeds in tests/fuzz/corpus/sshsig/; by hand:
//   build-san/fuzz/sshsig_fuzz -max_total_time=300 CORPUS_DIR
//
// Seed the corpus with real signatures for deeper coverage, e.g. files made
// by `ssh-keygen -Y sign -n gpugate-request@gpugate.dev -f KEY < request`,
// with a leading byte 0x01 (armored text, target 1).
//
// The first input byte picks the target, so one corpus covers all of them.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "gpugate/allowed_signers.hpp"
#include "gpugate/authorize.hpp"
#include "gpugate/request.hpp"
#include "gpugate/sshsig.hpp"

using namespace gpugate::auth;

namespace {

constexpr std::string_view kMessage =
    "gpugate-request v1\nhost: h\ngpu: 0\nclass: power.off\nnot-before: 2026-11-28T09:40:00Z\n"
    "not-after: 2026-11-28T09:50:00Z\nnonce: 0123456789abcdef0123456789abcdef\nrequester: r\nreason: r\n";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  uint8_t target = data[0] % 5;
  std::span<const uint8_t> bytes(data + 1, size - 1);
  std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  switch (target) {
    case 0: {  // a binary SSHSIG blob, verified when it parses
      auto sig = parse_sshsig_blob(bytes);
      if (sig && verify_sshsig(*sig, kMessage, kSignatureNamespace))
        __builtin_trap();  // nobody can forge a signature by fuzzing
      break;
    }
    case 1: {  // armored text
      auto sig = parse_sshsig(text);
      if (sig) (void)verify_sshsig(*sig, kMessage, kSignatureNamespace);
      break;
    }
    case 2: {  // a public key blob
      auto key = parse_public_key_blob(bytes);
      if (key) (void)key->fingerprint();
      break;
    }
    case 3: {  // request text: whatever parses must render back to itself
      auto req = parse_request(text, "fuzz");
      if (req && render_request(*req) != text) __builtin_trap();
      break;
    }
    case 4: {  // allowed_signers, then a lookup and a quorum over it
      auto signers = AllowedSigners::parse(text, "fuzz");
      if (signers && !signers->entries().empty()) {
        const auto& key = signers->entries().front().key;
        (void)signers->find(key, kSignatureNamespace, 1795858800);
        SignerGroup group{"g", {"a@b"}, 1};
        std::vector<SignatureInput> none;
        (void)authorize(kMessage, none, *signers, kSignatureNamespace, 1795858800, {&group, 1});
      }
      break;
    }
  }
  return 0;
}
