// RFC 6962 / RFC 9162 Merkle tree hashing (SHA-256 through OpenSSL EVP):
// leaf = SHA-256(0x00 || data), node = SHA-256(0x01 || left || right).
// A compact range keeps a growing tree in at most 64 hashes; proofs are
// lists of the roots of sub-ranges, computed in one streaming pass.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gpugate/result.hpp"

namespace gpugate::merkle {

using Hash = std::array<uint8_t, 32>;

std::string to_hex(std::span<const uint8_t> bytes);
std::string to_base64(std::span<const uint8_t> bytes);
// Standard alphabet, padding required; nullopt-like error on anything else.
Result<std::vector<uint8_t>> from_base64(std::string_view text);
Result<Hash> hash_from_hex(std::string_view hex);
Result<Hash> hash_from_base64(std::string_view text);

// A reusable SHA-256 context (one EVP_MD fetched once, one EVP_MD_CTX).
class Hasher {
 public:
  Hasher();
  ~Hasher();
  Hasher(Hasher&& o) noexcept;
  Hasher& operator=(Hasher&& o) noexcept;
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;

  Hash leaf(std::string_view data);
  Hash node(const Hash& left, const Hash& right);
  Hash sha256(std::string_view data);
  // Incremental plain SHA-256.
  void begin();
  void update(std::string_view data);
  Hash finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// SHA-256("") : the root of the empty tree.
Hash empty_root();

// The compact range [0, size): one subtree root per set bit of size, largest
// (leftmost) first. Appending merges equal-sized neighbours.
class CompactRange {
 public:
  void append(Hasher& h, const Hash& leaf_hash);
  [[nodiscard]] Hash root(Hasher& h) const;
  [[nodiscard]] uint64_t size() const { return size_; }
  [[nodiscard]] const std::vector<Hash>& hashes() const { return hashes_; }
  // Rebuild from a stored range; fails if hashes.size() != popcount(size).
  static Result<CompactRange> from(uint64_t size, std::vector<Hash> hashes);

 private:
  uint64_t size_ = 0;
  std::vector<Hash> hashes_;
};

// Root of leaves[begin, end) (tests and small trees).
Hash root_of(Hasher& h, std::span<const Hash> leaf_hashes);

// Proofs as lists of leaf ranges [lo, hi) whose roots form the proof, in
// proof order (RFC 6962 section 2.1.1 and 2.1.2).
using Span = std::pair<uint64_t, uint64_t>;
std::vector<Span> inclusion_spans(uint64_t index, uint64_t size);
std::vector<Span> consistency_spans(uint64_t size1, uint64_t size2);

// Feed every leaf hash in order; afterwards roots() are the roots of spans.
// Spans may be given in any order; they must not overlap.
class SpanRoots {
 public:
  explicit SpanRoots(std::vector<Span> spans);
  void add(Hasher& h, uint64_t index, const Hash& leaf_hash);
  [[nodiscard]] bool complete() const;
  // In the order the spans were given.
  [[nodiscard]] std::vector<Hash> roots(Hasher& h) const;

 private:
  std::vector<Span> spans_;
  std::vector<size_t> order_;  // span indexes sorted by lo
  size_t cursor_ = 0;
  std::vector<CompactRange> ranges_;
};

// RFC 9162 section 2.1.3.2; error text says what did not match.
Result<void> verify_inclusion(Hasher& h, uint64_t index, uint64_t size, const Hash& leaf_hash,
                              std::span<const Hash> proof, const Hash& root);
Result<Hash> root_from_inclusion(Hasher& h, uint64_t index, uint64_t size, const Hash& leaf_hash,
                                 std::span<const Hash> proof);
// RFC 9162 section 2.1.4.2.
Result<void> verify_consistency(Hasher& h, uint64_t size1, uint64_t size2, std::span<const Hash> proof,
                                const Hash& root1, const Hash& root2);

}  // namespace gpugate::merkle
