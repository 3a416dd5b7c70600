// Deterministic mutation fuzzing of the auth parsers: thousands of changed
// blobs, requests and allowed_signers files. Nothing may crash, and nothing
// changed may verify. (tests/fuzz/sshsig_fuzz.cpp is the libFuzzer twin.)
#include <gtest/gtest.h>

#include <random>

#include "auth_fixture.hpp"
#include "gpugate/authorize.hpp"
#include "gpugate/request.hpp"

using namespace gpugate::auth;
using namespace gpugate::test::auth;

namespace {

const std::string kMessage = sample_request();

// One random edit: flip a bit, set a byte, insert, delete, cut, or copy a
// run over another place. Lengths are where the parser is most exposed, so
// edits often land on small values.
template <class Seq>
Seq mutate(const Seq& in, std::mt19937& rng) {
  Seq out = in;
  auto pick = [&](size_t n) { return n == 0 ? size_t{0} : static_cast<size_t>(rng() % n); };
  int edits = 1 + static_cast<int>(rng() % 3);
  for (int e = 0; e < edits; e++) {
    size_t at = pick(out.size());
    switch (rng() % 7) {
      case 0:
        if (!out.empty()) out[at] ^= static_cast<typename Seq::value_type>(1u << (rng() % 8));
        break;
      case 1:
        if (!out.empty()) out[at] = static_cast<typename Seq::value_type>(rng() % 256);
        break;
      case 2:
        out.insert(out.begin() + static_cast<long>(at), static_cast<typename Seq::value_type>(rng() % 256));
        break;
      case 3:
        if (!out.empty()) out.erase(out.begin() + static_cast<long>(at));
        break;
      case 4: out.resize(at); break;
      case 5:
        if (!out.empty()) out[at] = static_cast<typename Seq::value_type>(rng() % 2 ? 0 : 0xff);
        break;
      case 6: {
        size_t from = pick(out.size()), len = pick(16);
        for (size_t i = 0; i < len && from + i < out.size() && at + i < out.size(); i++) out[at + i] = out[from + i];
        break;
      }
    }
  }
  return out;
}

struct Corpus {
  std::vector<std::vector<uint8_t>> blobs;
  std::string allowed;
  AllowedSigners signers;
  Corpus() {
    auto& keys = Keys::get();
    for (const char* spec : {"ed25519", "ecdsa256", "rsa3072"}) {
      const SshKey& k = keys.key(spec);
      blobs.push_back(*dearmor_sshsig(keys.sign(k, kMessage)));
      allowed += k.allowed_line("op-" + std::string(spec) + "@example.org",
                                "namespaces=\"gpugate-*\",valid-after=\"20200101Z\"");
    }
    for (SoftType t : {SoftType::kSkEd25519, SoftType::kSkEcdsa}) {
      auto k = make_soft_key(t);
      blobs.push_back(craft_sshsig(k, kMessage));
      allowed += k.allowed_line("op-sk@example.org");
    }
    signers = *AllowedSigners::parse(allowed, "as");
  }
};

Corpus& corpus() {
  static Corpus c;
  return c;
}

}  // namespace

TEST(AuthFuzz, MutatedSignatureBlobsNeverVerify) {
  std::mt19937 rng(20261128);
  int parsed = 0, total = 0;
  for (const auto& blob : corpus().blobs) {
    ASSERT_TRUE(verify_sshsig(*parse_sshsig_blob(blob), kMessage, kSignatureNamespace));
    for (int i = 0; i < 1500; i++) {
      auto m = mutate(blob, rng);
      if (m == blob) continue;
      total++;
      auto sig = parse_sshsig_blob(m);
      if (!sig) continue;
      parsed++;
      EXPECT_FALSE(verify_sshsig(*sig, kMessage, kSignatureNamespace)) << "mutation " << i << " verified";
    }
  }
  EXPECT_GT(total, 7000);
  // Some mutations must get past the parser (into the signature check), or
  // this loop tests only the first bytes.
  EXPECT_GT(parsed, 100);
}

TEST(AuthFuzz, MutatedArmorVerifiesOnlyAsTheSameBlob) {
  std::mt19937 rng(42);
  for (const auto& blob : corpus().blobs) {
    std::string armored = armor_sshsig(blob);
    for (int i = 0; i < 600; i++) {
      auto m = mutate(armored, rng);
      auto sig = parse_sshsig(m);
      if (sig && verify_sshsig(*sig, kMessage, kSignatureNamespace)) EXPECT_EQ(sig->blob, blob) << m;
    }
  }
}

TEST(AuthFuzz, MutatedRequestsNeverVerifyAndParseCanonically) {
  std::mt19937 rng(7);
  auto sig = *parse_sshsig_blob(corpus().blobs[0]);
  int parsed = 0;
  for (int i = 0; i < 5000; i++) {
    auto m = mutate(kMessage, rng);
    if (m == kMessage) continue;
    EXPECT_FALSE(verify_sshsig(sig, m, kSignatureNamespace));
    auto r = parse_request(m, "m");
    if (!r) continue;
    parsed++;
    // Strictness means one text per request: whatever parses renders back
    // to the same bytes.
    EXPECT_EQ(render_request(*r), m);
  }
  EXPECT_GT(parsed, 50);
}

TEST(AuthFuzz, MutatedAllowedSignersNeverTrustAnotherKey) {
  std::mt19937 rng(99);
  const auto& c = corpus();
  std::vector<SignatureInput> sigs;
  for (size_t i = 0; i < c.blobs.size(); i++) sigs.push_back({"s" + std::to_string(i), armor_sshsig(c.blobs[i])});
  auto base = authorize(kMessage, sigs, c.signers, kSignatureNamespace, 1795858800, {});
  ASSERT_TRUE(base.all_signatures_good()) << base.summary();
  for (int i = 0; i < 1500; i++) {
    auto m = mutate(c.allowed, rng);
    auto s = AllowedSigners::parse(m, "m");
    if (!s) continue;
    auto a = authorize(kMessage, sigs, *s, kSignatureNamespace, 1795858800, {});
    for (size_t k = 0; k < a.signatures.size(); k++) {
      if (!a.signatures[k].counted) continue;
      // The key that counted is listed, unchanged, in the mutated file.
      auto key = parse_sshsig_blob(c.blobs[k])->key;
      bool listed =
          std::any_of(s->entries().begin(), s->entries().end(), [&](const AllowedSigner& e) { return e.key == key; });
      EXPECT_TRUE(listed);
    }
  }
}
