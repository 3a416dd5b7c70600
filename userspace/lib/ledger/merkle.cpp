// RFC 6962 hashing, compact ranges and proofs. See merkle.hpp.
#include "gpugate/merkle.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <bit>
#include <cstring>

#include <fmt/format.h>

#include "gpugate/base64.hpp"

namespace gpugate::merkle {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

uint64_t largest_pow2_below(uint64_t n) {  // n > 1
  return uint64_t{1} << (63 - std::countl_zero(n - 1));
}

void path(uint64_t m, uint64_t lo, uint64_t hi, std::vector<Span>& out) {
  uint64_t n = hi - lo;
  if (n <= 1) return;
  uint64_t k = largest_pow2_below(n);
  if (m < k) {
    path(m, lo, lo + k, out);
    out.emplace_back(lo + k, hi);
  } else {
    path(m - k, lo + k, hi, out);
    out.emplace_back(lo, lo + k);
  }
}

void subproof(uint64_t m, uint64_t lo, uint64_t hi, bool b, std::vector<Span>& out) {
  uint64_t n = hi - lo;
  if (m == n) {
    if (!b) out.emplace_back(lo, hi);
    return;
  }
  uint64_t k = largest_pow2_below(n);
  if (m <= k) {
    subproof(m, lo, lo + k, b, out);
    out.emplace_back(lo + k, hi);
  } else {
    subproof(m - k, lo + k, hi, false, out);
    out.emplace_back(lo, lo + k);
  }
}

std::string short_hex(const Hash& h) { return to_hex(std::span(h.data(), 8)); }

}  // namespace

std::string to_hex(std::span<const uint8_t> bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s(bytes.size() * 2, '\0');
  for (size_t i = 0; i < bytes.size(); i++) {
    s[2 * i] = kHex[bytes[i] >> 4];
    s[2 * i + 1] = kHex[bytes[i] & 15];
  }
  return s;
}

std::string to_base64(std::span<const uint8_t> in) { return base64_encode(in); }

Result<std::vector<uint8_t>> from_base64(std::string_view s) { return base64_decode(s); }

Result<Hash> hash_from_hex(std::string_view hex) {
  Hash h{};
  if (hex.size() != 64) return make_error("a SHA-256 hash is 64 hex digits");
  for (size_t i = 0; i < 32; i++) {
    int a = hex_value(hex[2 * i]), b = hex_value(hex[2 * i + 1]);
    if (a < 0 || b < 0) return make_error("not a hex digit");
    h[i] = static_cast<uint8_t>(a << 4 | b);
  }
  return h;
}

Result<Hash> hash_from_base64(std::string_view text) {
  auto b = from_base64(text);
  if (!b) return b.error();
  if (b->size() != 32) return make_error(fmt::format("a SHA-256 hash is 32 bytes, this is {}", b->size()));
  Hash h;
  std::memcpy(h.data(), b->data(), 32);
  return h;
}

struct Hasher::Impl {
  EVP_MD* md = nullptr;
  EVP_MD_CTX* ctx = nullptr;
  Impl() {
    md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    ctx = EVP_MD_CTX_new();
  }
  ~Impl() {
    EVP_MD_CTX_free(ctx);
    EVP_MD_free(md);
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
};

Hasher::Hasher() : impl_(std::make_unique<Impl>()) {}
Hasher::~Hasher() = default;
Hasher::Hasher(Hasher&&) noexcept = default;
Hasher& Hasher::operator=(Hasher&&) noexcept = default;

void Hasher::begin() { EVP_DigestInit_ex2(impl_->ctx, impl_->md, nullptr); }
void Hasher::update(std::string_view d) { EVP_DigestUpdate(impl_->ctx, d.data(), d.size()); }
Hash Hasher::finish() {
  Hash h;
  unsigned len = 0;
  EVP_DigestFinal_ex(impl_->ctx, h.data(), &len);
  return h;
}

Hash Hasher::leaf(std::string_view data) {
  static constexpr char kZero = 0x00;
  begin();
  update(std::string_view(&kZero, 1));
  update(data);
  return finish();
}

Hash Hasher::node(const Hash& l, const Hash& r) {
  uint8_t buf[65];
  buf[0] = 0x01;
  std::memcpy(buf + 1, l.data(), 32);
  std::memcpy(buf + 33, r.data(), 32);
  begin();
  update(std::string_view(reinterpret_cast<const char*>(buf), sizeof(buf)));
  return finish();
}

Hash Hasher::sha256(std::string_view data) {
  begin();
  update(data);
  return finish();
}

Hash empty_root() {
  Hasher h;
  return h.sha256("");
}

void CompactRange::append(Hasher& h, const Hash& leaf_hash) {
  hashes_.push_back(leaf_hash);
  for (uint64_t s = size_; s & 1; s >>= 1) {
    size_t n = hashes_.size();
    hashes_[n - 2] = h.node(hashes_[n - 2], hashes_[n - 1]);
    hashes_.pop_back();
  }
  size_++;
}

Hash CompactRange::root(Hasher& h) const {
  if (hashes_.empty()) return h.sha256("");
  Hash r = hashes_.back();
  for (size_t i = hashes_.size() - 1; i-- > 0;) r = h.node(hashes_[i], r);
  return r;
}

Result<CompactRange> CompactRange::from(uint64_t size, std::vector<Hash> hashes) {
  if (hashes.size() != static_cast<size_t>(std::popcount(size)))
    return make_error(
        fmt::format("a compact range of size {} has {} hashes, not {}", size, std::popcount(size), hashes.size()));
  CompactRange c;
  c.size_ = size;
  c.hashes_ = std::move(hashes);
  return c;
}

Hash root_of(Hasher& h, std::span<const Hash> leaves) {
  CompactRange c;
  for (const auto& l : leaves) c.append(h, l);
  return c.root(h);
}

std::vector<Span> inclusion_spans(uint64_t index, uint64_t size) {
  std::vector<Span> out;
  if (index < size) path(index, 0, size, out);
  return out;
}

std::vector<Span> consistency_spans(uint64_t size1, uint64_t size2) {
  std::vector<Span> out;
  if (size1 > 0 && size1 < size2) subproof(size1, 0, size2, true, out);
  return out;
}

SpanRoots::SpanRoots(std::vector<Span> spans) : spans_(std::move(spans)), ranges_(spans_.size()) {
  order_.resize(spans_.size());
  for (size_t i = 0; i < order_.size(); i++) order_[i] = i;
  std::sort(order_.begin(), order_.end(), [&](size_t a, size_t b) { return spans_[a].first < spans_[b].first; });
}

void SpanRoots::add(Hasher& h, uint64_t index, const Hash& leaf_hash) {
  while (cursor_ < order_.size() && spans_[order_[cursor_]].second <= index) cursor_++;
  if (cursor_ == order_.size()) return;
  const auto& s = spans_[order_[cursor_]];
  if (index >= s.first) ranges_[order_[cursor_]].append(h, leaf_hash);
}

bool SpanRoots::complete() const {
  for (size_t i = 0; i < spans_.size(); i++)
    if (ranges_[i].size() != spans_[i].second - spans_[i].first) return false;
  return true;
}

std::vector<Hash> SpanRoots::roots(Hasher& h) const {
  std::vector<Hash> out;
  out.reserve(ranges_.size());
  for (const auto& r : ranges_) out.push_back(r.root(h));
  return out;
}

Result<Hash> root_from_inclusion(Hasher& h, uint64_t index, uint64_t size, const Hash& leaf_hash,
                                 std::span<const Hash> proof) {
  if (index >= size) return make_error(fmt::format("index {} is not below the tree size {}", index, size));
  uint64_t fn = index, sn = size - 1;
  Hash r = leaf_hash;
  for (const auto& p : proof) {
    if (sn == 0) return make_error("the proof is longer than the tree is deep");
    if ((fn & 1) || fn == sn) {
      r = h.node(p, r);
      if (!(fn & 1))
        while (!(fn & 1) && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
    } else {
      r = h.node(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) return make_error("the proof is shorter than the tree is deep");
  return r;
}

Result<void> verify_inclusion(Hasher& h, uint64_t index, uint64_t size, const Hash& leaf_hash,
                              std::span<const Hash> proof, const Hash& root) {
  auto r = root_from_inclusion(h, index, size, leaf_hash, proof);
  if (!r) return r.error();
  if (*r != root)
    return make_error(
        fmt::format("the proof leads to root {}..., the checkpoint says {}...", short_hex(*r), short_hex(root)));
  return {};
}

Result<void> verify_consistency(Hasher& h, uint64_t size1, uint64_t size2, std::span<const Hash> proof,
                                const Hash& root1, const Hash& root2) {
  if (size2 < size1)
    return make_error(fmt::format("the second tree ({}) is smaller than the first ({})", size2, size1));
  if (size1 == size2) {
    if (!proof.empty()) return make_error("equal sizes need an empty proof");
    if (root1 != root2) return make_error("equal sizes but different roots: the two trees disagree");
    return {};
  }
  if (size1 == 0) {
    if (!proof.empty()) return make_error("the empty tree needs an empty proof");
    return {};
  }
  if (proof.empty()) return make_error("empty consistency proof");
  std::vector<Hash> path;
  if (std::has_single_bit(size1)) path.push_back(root1);
  path.insert(path.end(), proof.begin(), proof.end());
  uint64_t fn = size1 - 1, sn = size2 - 1;
  while (fn & 1) {
    fn >>= 1;
    sn >>= 1;
  }
  Hash fr = path[0], sr = path[0];
  for (size_t i = 1; i < path.size(); i++) {
    const Hash& c = path[i];
    if (sn == 0) return make_error("the proof is longer than the tree is deep");
    if ((fn & 1) || fn == sn) {
      fr = h.node(c, fr);
      sr = h.node(c, sr);
      if (!(fn & 1))
        while (!(fn & 1) && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
    } else {
      sr = h.node(sr, c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) return make_error("the proof is shorter than the tree is deep");
  if (fr != root1) return make_error("the proof does not lead to the first root: the older tree is not a prefix");
  if (sr != root2) return make_error("the proof does not lead to the second root");
  return {};
}

}  // namespace gpugate::merkle
