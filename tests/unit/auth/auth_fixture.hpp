// Test helpers for signed authorizations: keys made by the real ssh-keygen
// (once per test binary), running ssh-keygen -Y sign/verify, and SSHSIG
// blobs built by hand with OpenSSL for what ssh-keygen cannot make here
// (FIDO sk- signatures, rsa-sha2-256, deliberately malformed blobs).
#pragma once

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "gpugate/authorize.hpp"
#include "gpugate/sshsig.hpp"
#include "process.hpp"
#include "tempdir.hpp"
#include "wire.hpp"

namespace gpugate::test::auth {

using gpugate::auth::kSignatureNamespace;
namespace wire = gpugate::auth::wire;

using gpugate::test::CommandResult;
using gpugate::test::run_shell;

using gpugate::test::slurp;

inline void write_text(const std::filesystem::path& p, std::string_view text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
}

// A key pair ssh-keygen made: the private key file and the .pub line.
struct SshKey {
  std::string name;
  std::filesystem::path path;  // private key; path + ".pub" is the public key
  std::string pub_line;        // "ssh-ed25519 AAAA... comment"
  std::string type_name;
  std::string base64;
  gpugate::auth::PublicKey key;
  // "alice@example.org ssh-ed25519 AAAA..." with options if any.
  std::string allowed_line(const std::string& principals, const std::string& options = "") const {
    return principals + (options.empty() ? "" : " " + options) + " " + type_name + " " + base64 + "\n";
  }
};

// One directory of keys for the whole test binary: RSA 3072 takes a while to
// make, so each key is made once, on first use.
class Keys {
 public:
  static Keys& get() {
    static Keys keys;
    return keys;
  }
  const std::filesystem::path& dir() const { return dir_.path; }

  // spec: "ed25519", "ecdsa256", "ecdsa384", "ecdsa521", "rsa3072", "rsa1024";
  // name tells apart several keys of one type.
  const SshKey& key(const std::string& spec, const std::string& name = "") {
    std::string id = spec + (name.empty() ? "" : "-" + name);
    auto it = keys_.find(id);
    if (it != keys_.end()) return it->second;
    std::string args = spec == "ed25519"    ? "-t ed25519"
                       : spec == "rsa3072"  ? "-t rsa -b 3072"
                       : spec == "rsa1024"  ? "-t rsa -b 1024"
                       : spec == "ecdsa384" ? "-t ecdsa -b 384"
                       : spec == "ecdsa521" ? "-t ecdsa -b 521"
                                            : "-t ecdsa -b 256";
    SshKey k;
    k.name = id;
    k.path = dir_.path / id;
    auto r = run_shell("ssh-keygen -q -N '' -C " + id + " " + args + " -f " + k.path.string());
    if (r.status != 0) throw std::runtime_error("ssh-keygen failed: " + r.output);
    k.pub_line = slurp(k.path.string() + ".pub");
    auto sp1 = k.pub_line.find(' '), sp2 = k.pub_line.find(' ', sp1 + 1);
    k.type_name = k.pub_line.substr(0, sp1);
    k.base64 = k.pub_line.substr(sp1 + 1, sp2 - sp1 - 1);
    if (spec != "rsa1024") {
      auto parsed = gpugate::auth::parse_public_key_text(k.type_name, k.base64);
      if (!parsed) throw std::runtime_error("our parser refused ssh-keygen's key: " + parsed.error().message);
      k.key = *parsed;
    }
    return keys_.emplace(id, std::move(k)).first->second;
  }

  // ssh-keygen -Y sign over message; returns the armored signature.
  std::string sign(const SshKey& k, std::string_view message, std::string_view ns = kSignatureNamespace,
                   const std::string& extra = "") {
    auto msg = dir_.path / ("msg-" + std::to_string(counter_++));
    write_text(msg, message);
    auto r = run_shell("ssh-keygen -Y sign -q -n " + std::string(ns) + " -f " + k.path.string() + " " + extra + " < " +
                       msg.string() + " > " + msg.string() + ".sig");
    if (r.status != 0) throw std::runtime_error("ssh-keygen -Y sign failed: " + r.output);
    return slurp(msg.string() + ".sig");
  }

  // ssh-keygen -Y verify: true when it says Good.
  CommandResult keygen_verify(std::string_view allowed_signers, const std::string& principal, std::string_view message,
                              std::string_view armored, std::string_view ns = kSignatureNamespace,
                              const std::string& extra = "") {
    auto base = dir_.path / ("verify-" + std::to_string(counter_++));
    write_text(base.string() + ".allowed", allowed_signers);
    write_text(base.string() + ".msg", message);
    write_text(base.string() + ".sig", armored);
    return run_shell("ssh-keygen -Y verify -f " + base.string() + ".allowed -I '" + principal + "' -n " +
                     std::string(ns) + " -s " + base.string() + ".sig " + extra + " < " + base.string() + ".msg");
  }

 private:
  Keys() = default;
  TempDir dir_;
  std::map<std::string, SshKey> keys_;
  int counter_ = 0;
};

// ---- Hand-made signatures (OpenSSL keys) ----

enum class SoftType { kEd25519, kSkEd25519, kSkEcdsa, kRsa2048 };

struct SoftKey {
  SoftType type;
  std::unique_ptr<EVP_PKEY, wire::EvpPkeyFree> pkey;
  std::vector<uint8_t> blob;  // SSH public key blob
  std::string application = "ssh:";

  std::string type_name() const {
    switch (type) {
      case SoftType::kEd25519: return "ssh-ed25519";
      case SoftType::kSkEd25519: return "sk-ssh-ed25519@openssh.com";
      case SoftType::kSkEcdsa: return "sk-ecdsa-sha2-nistp256@openssh.com";
      case SoftType::kRsa2048: return "ssh-rsa";
    }
    return "";
  }
  std::string base64() const { return wire::base64_encode(blob); }
  std::string allowed_line(const std::string& principals) const {
    return principals + " " + type_name() + " " + base64() + "\n";
  }
};

inline std::vector<uint8_t> bn_bytes(EVP_PKEY* pkey, const char* name) {
  BIGNUM* bn = nullptr;
  EVP_PKEY_get_bn_param(pkey, name, &bn);
  std::vector<uint8_t> out(static_cast<size_t>(BN_num_bytes(bn)));
  BN_bn2bin(bn, out.data());
  BN_free(bn);
  return out;
}

inline SoftKey make_soft_key(SoftType type) {
  SoftKey k{type, nullptr, {}};
  EVP_PKEY* raw = nullptr;
  if (type == SoftType::kEd25519 || type == SoftType::kSkEd25519) {
    raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  } else if (type == SoftType::kSkEcdsa) {
    raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  } else {
    raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048});
  }
  k.pkey.reset(raw);
  wire::Writer w;
  w.string(k.type_name());
  if (type == SoftType::kEd25519 || type == SoftType::kSkEd25519) {
    std::vector<uint8_t> pk(32);
    size_t len = pk.size();
    EVP_PKEY_get_raw_public_key(raw, pk.data(), &len);
    w.string(wire::ByteView(pk));
  } else if (type == SoftType::kSkEcdsa) {
    std::vector<uint8_t> point(65);
    size_t len = 0;
    EVP_PKEY_get_octet_string_param(raw, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point.data(), point.size(), &len);
    w.string(std::string_view("nistp256"));
    w.string(wire::ByteView(point.data(), len));
  } else {
    w.mpint(bn_bytes(raw, OSSL_PKEY_PARAM_RSA_E));
    w.mpint(bn_bytes(raw, OSSL_PKEY_PARAM_RSA_N));
  }
  if (type == SoftType::kSkEd25519 || type == SoftType::kSkEcdsa) w.string(std::string_view(k.application));
  k.blob = std::move(w).bytes();
  return k;
}

struct CraftOptions {
  std::string ns = std::string(kSignatureNamespace);
  std::string hash_algorithm = "sha512";
  std::string rsa_algorithm = "rsa-sha2-256";  // or rsa-sha2-512, ssh-rsa (SHA-1)
  uint8_t sk_flags = gpugate::auth::kSkUserPresent;
  uint32_t sk_counter = 7;
  std::string reserved;
  uint32_t version = 1;
};

inline std::vector<uint8_t> sign_raw(EVP_PKEY* pkey, const EVP_MD* md, const std::vector<uint8_t>& data) {
  std::unique_ptr<EVP_MD_CTX, wire::EvpMdCtxFree> ctx(EVP_MD_CTX_new());
  EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, pkey);
  size_t len = 0;
  EVP_DigestSign(ctx.get(), nullptr, &len, data.data(), data.size());
  std::vector<uint8_t> sig(len);
  EVP_DigestSign(ctx.get(), sig.data(), &len, data.data(), data.size());
  sig.resize(len);
  return sig;
}

// An SSHSIG blob over message, built by hand from PROTOCOL.sshsig/.u2f.
inline std::vector<uint8_t> craft_sshsig(const SoftKey& k, std::string_view message, const CraftOptions& o = {}) {
  std::vector<uint8_t> signed_data =
      *gpugate::auth::sshsig_signed_data(o.ns, o.hash_algorithm, wire::as_bytes(message));
  bool sk = k.type == SoftType::kSkEd25519 || k.type == SoftType::kSkEcdsa;
  if (sk) {
    wire::Writer w;
    w.raw(wire::ByteView(wire::sha256(wire::as_bytes(k.application))));
    w.u8(o.sk_flags);
    w.u32(o.sk_counter);
    w.raw(wire::ByteView(wire::sha256(signed_data)));
    signed_data = std::move(w).bytes();
  }
  wire::Writer sig;
  switch (k.type) {
    case SoftType::kEd25519:
    case SoftType::kSkEd25519:
      sig.string(k.type_name());
      sig.string(wire::ByteView(sign_raw(k.pkey.get(), nullptr, signed_data)));
      break;
    case SoftType::kSkEcdsa: {
      auto der = sign_raw(k.pkey.get(), EVP_sha256(), signed_data);
      const unsigned char* p = der.data();
      ECDSA_SIG* es = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size()));
      std::vector<uint8_t> r(static_cast<size_t>(BN_num_bytes(ECDSA_SIG_get0_r(es)))),
          s(static_cast<size_t>(BN_num_bytes(ECDSA_SIG_get0_s(es))));
      BN_bn2bin(ECDSA_SIG_get0_r(es), r.data());
      BN_bn2bin(ECDSA_SIG_get0_s(es), s.data());
      ECDSA_SIG_free(es);
      wire::Writer rs;
      rs.mpint(r);
      rs.mpint(s);
      sig.string(k.type_name());
      sig.string(wire::ByteView(rs.bytes()));
      break;
    }
    case SoftType::kRsa2048: {
      const EVP_MD* md = o.rsa_algorithm == "rsa-sha2-256"   ? EVP_sha256()
                         : o.rsa_algorithm == "rsa-sha2-512" ? EVP_sha512()
                                                             : EVP_sha1();
      sig.string(o.rsa_algorithm);
      sig.string(wire::ByteView(sign_raw(k.pkey.get(), md, signed_data)));
      break;
    }
  }
  if (sk) {
    sig.u8(o.sk_flags);
    sig.u32(o.sk_counter);
  }
  wire::Writer blob;
  blob.raw(std::string_view("SSHSIG"));
  blob.u32(o.version);
  blob.string(wire::ByteView(k.blob));
  blob.string(o.ns);
  blob.string(o.reserved);
  blob.string(o.hash_algorithm);
  blob.string(wire::ByteView(sig.bytes()));
  return std::move(blob).bytes();
}

inline std::string craft_armored(const SoftKey& k, std::string_view message, const CraftOptions& o = {}) {
  return gpugate::auth::armor_sshsig(craft_sshsig(k, message, o));
}

// A canonical request for tests.
inline std::string sample_request(std::string_view nonce = "0123456789abcdef0123456789abcdef") {
  return "gpugate-request v1\n"
         "host: 3d1219c7c4c5404aaa1f6d2a48adfda4\n"
         "gpu: GPU-5b9d6d3c-4c1a-7e0f-2b6d-93e1f0a4c2d8\n"
         "class: power.limit\n"
         "param: power_limit_mw=250000\n"
         "scope: unit=train.service\n"
         "not-before: 2026-11-28T09:40:00Z\n"
         "not-after: 2026-11-28T09:50:00Z\n"
         "nonce: " +
         std::string(nonce) +
         "\n"
         "requester: alice@example.org\n"
         "reason: INC-1234 rack 7 over its power budget\n";
}

}  // namespace gpugate::test::auth
