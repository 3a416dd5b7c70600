// RFC 6962 hashing, compact ranges and proofs against published vectors:
// transparency-dev/merkle (github.com/transparency-dev/merkle) files
// testonly/constants.go (leaves, roots) and proof/verify_test.go (inclusion
// and consistency proofs, and the corruptions their verifier must reject);
// signed notes against golang.org/x/mod sumdb/note (the PeterNeumann key and
// signature from its package documentation and note_test.go).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "gpugate/checkpoint.hpp"
#include "gpugate/merkle.hpp"

using namespace gpugate;
using merkle::Hash;

namespace {

Hash H(const char* hex) { return *merkle::hash_from_hex(hex); }

std::string unhex(const std::string& hex) {
  std::string s;
  for (size_t i = 0; i < hex.size(); i += 2) s.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return s;
}

const std::vector<std::string> kLeaves = {
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"};
const char* kRoots[] = {
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
};

struct InclusionVector {
  uint64_t leaf;  // 1-based, as in verify_test.go
  uint64_t size;
  std::vector<const char*> proof;
};
const std::vector<InclusionVector> kInclusion = {
    {1,
     8,
     {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
    {6,
     8,
     {"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
    {3, 3, {"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"}},
    {2,
     5,
     {"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
};

struct ConsistencyVector {
  uint64_t size1, size2;
  std::vector<const char*> proof;
};
const std::vector<ConsistencyVector> kConsistency = {
    {1, 1, {}},
    {1,
     8,
     {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
    {6,
     8,
     {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
    {2,
     5,
     {"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
    {6,
     7,
     {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
      "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
};

std::vector<Hash> leaf_hashes() {
  merkle::Hasher h;
  std::vector<Hash> out;
  for (const auto& l : kLeaves) out.push_back(h.leaf(unhex(l)));
  return out;
}

std::vector<Hash> to_hashes(const std::vector<const char*>& v) {
  std::vector<Hash> out;
  for (const char* s : v) out.push_back(H(s));
  return out;
}

}  // namespace

TEST(Merkle, EmptyTreeAndRootsOfTheVectorTree) {
  EXPECT_EQ(merkle::to_hex(merkle::empty_root()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  merkle::Hasher h;
  merkle::CompactRange c;
  auto leaves = leaf_hashes();
  for (size_t i = 0; i < leaves.size(); i++) {
    c.append(h, leaves[i]);
    EXPECT_EQ(merkle::to_hex(c.root(h)), kRoots[i]) << "size " << i + 1;
    EXPECT_EQ(c.hashes().size(), static_cast<size_t>(__builtin_popcountll(i + 1)));
  }
}

TEST(Merkle, InclusionProofsMatchTheVectorsAndSpansRebuildThem) {
  merkle::Hasher h;
  auto leaves = leaf_hashes();
  for (const auto& v : kInclusion) {
    uint64_t index = v.leaf - 1;
    auto proof = to_hashes(v.proof);
    Hash root = H(kRoots[v.size - 1]);
    EXPECT_TRUE(merkle::verify_inclusion(h, index, v.size, leaves[index], proof, root).ok()) << index << "/" << v.size;
    // Our proof generator gives the same hashes.
    merkle::SpanRoots sr(merkle::inclusion_spans(index, v.size));
    for (uint64_t i = 0; i < v.size; i++) sr.add(h, i, leaves[i]);
    ASSERT_TRUE(sr.complete());
    EXPECT_EQ(sr.roots(h), proof) << index << "/" << v.size;
    // Corruptions from verify_test.go's corruptInclusionProof.
    EXPECT_FALSE(merkle::verify_inclusion(h, index + 1, v.size, leaves[index], proof, root).ok());
    if (index > 0) EXPECT_FALSE(merkle::verify_inclusion(h, index - 1, v.size, leaves[index], proof, root).ok());
    EXPECT_FALSE(merkle::verify_inclusion(h, index, v.size * 2, leaves[index], proof, root).ok());
    EXPECT_FALSE(merkle::verify_inclusion(h, index, v.size / 2, leaves[index], proof, root).ok());
    EXPECT_FALSE(merkle::verify_inclusion(h, index, v.size, h.leaf("WrongLeaf"), proof, root).ok());
    EXPECT_FALSE(merkle::verify_inclusion(h, index, v.size, leaves[index], proof, merkle::empty_root()).ok());
    auto longer = proof;
    longer.push_back(root);
    EXPECT_FALSE(merkle::verify_inclusion(h, index, v.size, leaves[index], longer, root).ok());
    auto front = proof;
    front.insert(front.begin(), root);
    EXPECT_FALSE(merkle::verify_inclusion(h, index, v.size, leaves[index], front, root).ok());
    for (size_t i = 0; i < proof.size(); i++) {
      auto bad = proof;
      bad[i][0] ^= 8;
      EXPECT_FALSE(merkle::verify_inclusion(h, index, v.size, leaves[index], bad, root).ok());
    }
    if (!proof.empty()) {
      auto shorter = proof;
      shorter.pop_back();
      EXPECT_FALSE(merkle::verify_inclusion(h, index, v.size, leaves[index], shorter, root).ok());
    }
  }
  EXPECT_FALSE(merkle::verify_inclusion(h, 0, 0, leaves[0], {}, merkle::empty_root()).ok());
}

TEST(Merkle, ConsistencyProofsMatchTheVectors) {
  merkle::Hasher h;
  auto leaves = leaf_hashes();
  for (const auto& v : kConsistency) {
    auto proof = to_hashes(v.proof);
    Hash r1 = H(kRoots[v.size1 - 1]), r2 = H(kRoots[v.size2 - 1]);
    EXPECT_TRUE(merkle::verify_consistency(h, v.size1, v.size2, proof, r1, r2).ok()) << v.size1 << "->" << v.size2;
    merkle::SpanRoots sr(merkle::consistency_spans(v.size1, v.size2));
    for (uint64_t i = 0; i < v.size2; i++) sr.add(h, i, leaves[i]);
    EXPECT_EQ(sr.roots(h), proof) << v.size1 << "->" << v.size2;
    if (proof.empty()) continue;
    EXPECT_FALSE(merkle::verify_consistency(h, v.size1 - 1, v.size2, proof, r1, r2).ok());
    EXPECT_FALSE(merkle::verify_consistency(h, v.size1 + 1, v.size2, proof, r1, r2).ok());
    EXPECT_FALSE(merkle::verify_consistency(h, v.size1, v.size2 * 2, proof, r1, r2).ok());
    EXPECT_FALSE(merkle::verify_consistency(h, v.size1, v.size2, proof, r2, r1).ok());
    EXPECT_FALSE(merkle::verify_consistency(h, v.size1, v.size2, {}, r1, r2).ok());
    auto longer = proof;
    longer.push_back(r1);
    EXPECT_FALSE(merkle::verify_consistency(h, v.size1, v.size2, longer, r1, r2).ok());
    auto shorter = proof;
    shorter.pop_back();
    EXPECT_FALSE(merkle::verify_consistency(h, v.size1, v.size2, shorter, r1, r2).ok());
    for (size_t i = 0; i < proof.size(); i++) {
      auto bad = proof;
      bad[i][0] ^= 16;
      EXPECT_FALSE(merkle::verify_consistency(h, v.size1, v.size2, bad, r1, r2).ok());
    }
  }
  Hash e = merkle::empty_root();
  EXPECT_TRUE(merkle::verify_consistency(h, 0, 1, {}, e, H(kRoots[0])).ok());
  EXPECT_FALSE(merkle::verify_consistency(h, 1, 0, {}, e, e).ok());
  EXPECT_FALSE(merkle::verify_consistency(h, 1, 1, std::vector<Hash>{e}, e, e).ok());
}

TEST(Merkle, ProofsOfEverySizeUpTo70RoundTrip) {
  merkle::Hasher h;
  std::vector<Hash> leaves;
  for (int i = 0; i < 70; i++) leaves.push_back(h.leaf("leaf " + std::to_string(i)));
  for (uint64_t n = 1; n <= 70; n++) {
    Hash root = merkle::root_of(h, std::span(leaves.data(), n));
    for (uint64_t i = 0; i < n; i++) {
      merkle::SpanRoots sr(merkle::inclusion_spans(i, n));
      for (uint64_t k = 0; k < n; k++) sr.add(h, k, leaves[k]);
      ASSERT_TRUE(merkle::verify_inclusion(h, i, n, leaves[i], sr.roots(h), root).ok()) << i << "/" << n;
    }
    for (uint64_t m = 1; m < n; m++) {
      merkle::SpanRoots sr(merkle::consistency_spans(m, n));
      for (uint64_t k = 0; k < n; k++) sr.add(h, k, leaves[k]);
      Hash r1 = merkle::root_of(h, std::span(leaves.data(), m));
      ASSERT_TRUE(merkle::verify_consistency(h, m, n, sr.roots(h), r1, root).ok()) << m << "->" << n;
    }
  }
}

TEST(Merkle, Base64IsStrict) {
  EXPECT_EQ(merkle::to_base64(std::vector<uint8_t>{'f', 'o', 'o', 'b'}), "Zm9vYg==");
  EXPECT_TRUE(merkle::from_base64("Zm9vYg==").ok());
  EXPECT_FALSE(merkle::from_base64("Zm9vYh==").ok()) << "non-zero bits under the padding";
  EXPECT_FALSE(merkle::from_base64("Zm9v Yg=").ok());
  EXPECT_FALSE(merkle::from_base64("Zm9").ok());
  EXPECT_FALSE(merkle::from_base64("Zm=vYg==").ok());
}

TEST(SignedNote, ReproducesTheGoSumdbNoteVector) {
  // golang.org/x/mod/sumdb/note: skey PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz
  auto seed = merkle::from_base64("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz");
  ASSERT_TRUE(seed.ok());
  ASSERT_EQ(seed->size(), 33u);
  std::array<uint8_t, 32> s{};
  std::copy(seed->begin() + 1, seed->end(), s.begin());
  auto key = tlog::LogKey::from_seed("PeterNeumann", s);
  ASSERT_TRUE(key.ok()) << key.error().message;
  EXPECT_EQ(key->verifier().text(), "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW");
  std::string text =
      "If you think cryptography is the answer to your problem,\n"
      "then you don't know what your problem is.\n";
  std::string want = text +
                     "\n\xE2\x80\x94 PeterNeumann "
                     "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
  EXPECT_EQ(key->sign_note(text), want);

  auto vk = tlog::parse_verifier_key("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW");
  ASSERT_TRUE(vk.ok()) << vk.error().message;
  auto note = tlog::parse_note(want);
  ASSERT_TRUE(note.ok()) << note.error().message;
  std::vector<tlog::VerifierKey> keys{*vk};
  EXPECT_TRUE(tlog::verify_note(*note, keys).ok());
  auto changed = tlog::parse_note(std::string(want).replace(want.find("cryptography"), 12, "cryptographY"));
  ASSERT_TRUE(changed.ok());
  auto v = tlog::verify_note(*changed, keys);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.error().message.find("does not verify"), std::string::npos) << v.error().message;
  auto other = tlog::LogKey::generate("PeterNeumann");
  std::vector<tlog::VerifierKey> wrong{other->verifier()};
  auto w = tlog::verify_note(*note, wrong);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.error().message.find("not by a trusted key"), std::string::npos) << w.error().message;
  // Damaged key texts are refused, not crashed on.
  EXPECT_FALSE(tlog::parse_verifier_key("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW").ok());
  EXPECT_FALSE(tlog::parse_verifier_key("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10").ok());
  EXPECT_FALSE(tlog::parse_verifier_key("").ok());
  // One key, one spelling: an uppercase key id (same value) is refused, since
  // the key would not print as itself (found by checkpoint_fuzz).
  auto upper = tlog::parse_verifier_key("PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW");
  ASSERT_FALSE(upper.ok());
  EXPECT_NE(upper.error().message.find("lowercase"), std::string::npos) << upper.error().message;
  EXPECT_FALSE(tlog::parse_note("no signatures\n").ok());
}

TEST(SignedNote, CheckpointBodies) {
  auto c = tlog::parse_checkpoint("example.com/log\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->size, 8u);
  EXPECT_EQ(merkle::to_hex(c->root), kRoots[7]);
  EXPECT_EQ(c->text(), "example.com/log\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n");
  EXPECT_FALSE(tlog::parse_checkpoint("example.com/log\n08\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n").ok());
  EXPECT_FALSE(tlog::parse_checkpoint("example.com/log\n8\nXcnaeacG\n").ok());
  EXPECT_FALSE(tlog::parse_checkpoint("example.com/log\n8\n").ok());
}
