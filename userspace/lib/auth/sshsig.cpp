// SSHSIG parsing and verification. Byte layouts from openssh/openssh-portable
// PROTOCOL.sshsig and PROTOCOL.u2f (see reference/log-and-signing.md 2.1).
#include "gpugate/sshsig.hpp"

#include <openssl/core_names.h>
#include <openssl/err.h>

#include <array>

#include <fmt/format.h>

#include "wire.hpp"

namespace gpugate::auth {

using wire::Bytes;
using wire::ByteView;

namespace {

constexpr std::string_view kMagic = "SSHSIG";
constexpr uint32_t kSshsigVersion = 1;
constexpr std::string_view kArmorBegin = "-----BEGIN SSH SIGNATURE-----";
constexpr std::string_view kArmorEnd = "-----END SSH SIGNATURE-----";
// PROTOCOL.sshsig says lines SHOULD break every 76 characters; ssh-keygen
// (9.2) breaks them at 70. Read up to 76, write 70 as ssh-keygen does.
constexpr size_t kArmorLineWidth = 76;
constexpr size_t kArmorWriteWidth = 70;
// The largest RSA key (16384 bits) makes a blob of about 4.2 KiB; anything
// far beyond that is not a signature.
constexpr size_t kMaxArmoredSize = 64 * 1024;
constexpr size_t kRsaMinBits = 2048;  // below this gpugate refuses, as current guidance does
constexpr size_t kRsaMaxBits = 16384;
constexpr size_t kEd25519KeySize = 32;
constexpr size_t kEd25519SigSize = 64;

constexpr std::string_view kFixReSign = "ask the signer for a fresh signature made with ssh-keygen -Y sign";

// Text from the wire, safe to print: printable ASCII kept, the rest \xNN,
// long values cut.
std::string printable(ByteView bytes) {
  std::string out;
  for (size_t i = 0; i < bytes.size() && i < 64; i++) {
    uint8_t c = bytes[i];
    if (c >= 0x20 && c < 0x7f && c != '\\')
      out.push_back(static_cast<char>(c));
    else
      out += fmt::format("\\x{:02x}", c);
  }
  if (bytes.size() > 64) out += "...";
  return out;
}
std::string printable(std::string_view s) { return printable(wire::as_bytes(s)); }

bool equals(ByteView bytes, std::string_view text) { return wire::as_text(bytes) == text; }

struct CurveInfo {
  KeyType type;
  std::string_view key_type;  // "ecdsa-sha2-nistp256"
  std::string_view curve;     // "nistp256"
  const char* openssl_group;  // "P-256"
  size_t field_bytes;         // coordinate size
  const EVP_MD* (*digest)();  // RFC 5656 6.2.1: hash by curve size
};
const std::array<CurveInfo, 3> kCurves = {{
    {KeyType::kEcdsaP256, "ecdsa-sha2-nistp256", "nistp256", "P-256", 32, EVP_sha256},
    {KeyType::kEcdsaP384, "ecdsa-sha2-nistp384", "nistp384", "P-384", 48, EVP_sha384},
    {KeyType::kEcdsaP521, "ecdsa-sha2-nistp521", "nistp521", "P-521", 66, EVP_sha512},
}};
const CurveInfo& curve_of(KeyType t) {
  for (const auto& c : kCurves)
    if (c.type == t) return c;
  return kCurves[0];  // sk-ecdsa is P-256
}

constexpr std::string_view kSkEd25519 = "sk-ssh-ed25519@openssh.com";
constexpr std::string_view kSkEcdsa = "sk-ecdsa-sha2-nistp256@openssh.com";

size_t bit_length(ByteView magnitude) {
  if (magnitude.empty()) return 0;
  size_t bits = magnitude.size() * 8;
  for (uint8_t top = magnitude[0]; !(top & 0x80); top <<= 1) bits--;
  return bits;
}

// The OpenSSL key for a parsed public key. Building it also checks what
// OpenSSL checks on import (EC points must lie on the curve).
Result<wire::EvpPkeyPtr> make_evp_key(const PublicKey& key) {
  switch (key.type) {
    case KeyType::kEd25519:
    case KeyType::kSkEd25519: {
      wire::EvpPkeyPtr pkey(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, key.point.data(), key.point.size()));
      if (!pkey) return make_error("OpenSSL refused the Ed25519 public key: " + wire::openssl_error());
      return pkey;
    }
    case KeyType::kEcdsaP256:
    case KeyType::kEcdsaP384:
    case KeyType::kEcdsaP521:
    case KeyType::kSkEcdsaP256: {
      const CurveInfo& curve = curve_of(key.type);
      wire::ParamBldPtr bld(OSSL_PARAM_BLD_new());
      if (!bld || !OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, curve.openssl_group, 0) ||
          !OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, key.point.data(), key.point.size()))
        return make_error("out of memory building an ECDSA key");
      wire::ParamPtr params(OSSL_PARAM_BLD_to_param(bld.get()));
      wire::EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
      EVP_PKEY* raw = nullptr;
      if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) <= 0 ||
          EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) <= 0)
        return make_error(fmt::format("the {} public key is not a point on {} ({})", key.type_name, curve.openssl_group,
                                      wire::openssl_error()));
      return wire::EvpPkeyPtr(raw);
    }
    case KeyType::kRsa: {
      wire::BnPtr n(BN_bin2bn(key.rsa_n.data(), static_cast<int>(key.rsa_n.size()), nullptr));
      wire::BnPtr e(BN_bin2bn(key.rsa_e.data(), static_cast<int>(key.rsa_e.size()), nullptr));
      wire::ParamBldPtr bld(OSSL_PARAM_BLD_new());
      if (!n || !e || !bld || !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) ||
          !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get()))
        return make_error("out of memory building an RSA key");
      wire::ParamPtr params(OSSL_PARAM_BLD_to_param(bld.get()));
      wire::EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
      EVP_PKEY* raw = nullptr;
      if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) <= 0 ||
          EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) <= 0)
        return make_error("OpenSSL refused the RSA public key: " + wire::openssl_error());
      return wire::EvpPkeyPtr(raw);
    }
  }
  return make_error("unknown key type");
}

Result<ByteView> read_ec_point(wire::Reader& r, const CurveInfo& curve, std::string_view type_name) {
  auto curve_name = r.string();
  if (!curve_name) return make_error(fmt::format("{} key blob ends before its curve name", type_name));
  if (!equals(*curve_name, curve.curve))
    return make_error(
        fmt::format("{} key names curve '{}'; it must be '{}'", type_name, printable(*curve_name), curve.curve));
  auto point = r.string();
  if (!point) return make_error(fmt::format("{} key blob ends before its public point", type_name));
  size_t want = 1 + 2 * curve.field_bytes;
  if (point->size() != want || (*point)[0] != 0x04)
    return make_error(fmt::format(
        "{} public point is {} bytes{}; an uncompressed {} point (0x04, x, y) is {} bytes", type_name, point->size(),
        (!point->empty() && (*point)[0] != 0x04) ? " and not uncompressed" : "", curve.openssl_group, want));
  return *point;
}

Result<PublicKey> parse_key_fields(ByteView blob) {
  wire::Reader r(blob);
  auto type = r.string();
  if (!type) return make_error("the key blob is too short to hold a key type");
  PublicKey key;
  key.type_name = std::string(wire::as_text(*type));
  key.blob.assign(blob.begin(), blob.end());
  const std::string& t = key.type_name;

  if (t == "ssh-ed25519" || t == kSkEd25519) {
    key.type = t == "ssh-ed25519" ? KeyType::kEd25519 : KeyType::kSkEd25519;
    auto pk = r.string();
    if (!pk || pk->size() != kEd25519KeySize)
      return make_error(fmt::format("{} key must hold a {}-byte public key{}", t, kEd25519KeySize,
                                    pk ? fmt::format(", not {} bytes", pk->size()) : ", the blob ends early"));
    key.point.assign(pk->begin(), pk->end());
  } else if (t == kSkEcdsa) {
    key.type = KeyType::kSkEcdsaP256;
    auto point = read_ec_point(r, kCurves[0], t);
    if (!point) return point.error();
    key.point.assign(point->begin(), point->end());
  } else if (t.starts_with("ecdsa-sha2-")) {
    const CurveInfo* curve = nullptr;
    for (const auto& c : kCurves)
      if (t == c.key_type) curve = &c;
    if (!curve)
      return make_error(
          fmt::format("ECDSA curve of key type '{}' is not supported; use {}", printable(t), supported_key_types()));
    key.type = curve->type;
    auto point = read_ec_point(r, *curve, t);
    if (!point) return point.error();
    key.point.assign(point->begin(), point->end());
  } else if (t == "ssh-rsa") {
    key.type = KeyType::kRsa;
    auto e = r.string();
    auto n = e ? r.string() : std::nullopt;
    if (!e || !n) return make_error("ssh-rsa key blob ends before its exponent and modulus");
    auto e_mag = wire::mpint_magnitude(*e, 8, "RSA public exponent");
    if (!e_mag) return e_mag.error();
    auto n_mag = wire::mpint_magnitude(*n, kRsaMaxBits / 8, "RSA modulus");
    if (!n_mag) return n_mag.error();
    if (e_mag->empty() || !(e_mag->back() & 1) || bit_length(*e_mag) < 2)
      return make_error("RSA public exponent must be odd and at least 3");
    size_t bits = bit_length(*n_mag);
    if (bits < kRsaMinBits)
      return make_error(
          fmt::format("RSA key has {} bits; gpugate requires at least {}: make a new key with "
                      "ssh-keygen -t ed25519 (or -t rsa -b 3072)",
                      bits, kRsaMinBits));
    key.rsa_e.assign(e_mag->begin(), e_mag->end());
    key.rsa_n.assign(n_mag->begin(), n_mag->end());
  } else if (t.ends_with("-cert-v01@openssh.com")) {
    return make_error(
        fmt::format("'{}' is an OpenSSH certificate; gpugate verifies plain keys only: list the "
                    "operator's own key (ssh-keygen -y) instead",
                    printable(t)));
  } else if (t == "ssh-dss") {
    return make_error("ssh-dss (DSA) keys are not supported (OpenSSH disabled them as too weak); use ssh-ed25519");
  } else {
    return make_error(fmt::format("key type '{}' is not supported; use {}", printable(t), supported_key_types()));
  }
  if (key.is_security_key()) {
    auto app = r.string();
    if (!app) return make_error(fmt::format("{} key blob ends before its FIDO application string", t));
    key.sk_application = std::string(wire::as_text(*app));
  }
  if (!r.at_end())
    return make_error(fmt::format("{} key blob has {} unexpected bytes after the key", t, r.remaining()));
  // Last: OpenSSL's own import checks (curve membership).
  auto pkey = make_evp_key(key);
  if (!pkey) return pkey.error();
  return key;
}

// The "signature" field of the SSHSIG blob.
Result<void> parse_signature_blob(ByteView blob, SshSignature& sig) {
  wire::Reader r(blob);
  auto alg = r.string();
  if (!alg) return make_error("the signature field is too short to hold a signature type");
  sig.signature_algorithm = std::string(wire::as_text(*alg));
  const PublicKey& key = sig.key;
  const std::string& a = sig.signature_algorithm;

  switch (key.type) {
    case KeyType::kRsa:
      if (a == "ssh-rsa")
        return make_error(
            "signature uses ssh-rsa (RSA with SHA-1), which gpugate refuses; sign with "
            "rsa-sha2-512 (what ssh-keygen -Y sign uses with OpenSSH 8.1 and later) or an ed25519 key");
      if (a != "rsa-sha2-256" && a != "rsa-sha2-512")
        return make_error(
            fmt::format("RSA key with signature type '{}'; only rsa-sha2-256 and rsa-sha2-512 are "
                        "accepted",
                        printable(a)));
      break;
    case KeyType::kSkEcdsaP256:
      if (a.starts_with("webauthn-"))
        return make_error(
            fmt::format("signature type '{}' (WebAuthn) is not supported; sign with ssh-keygen -Y "
                        "sign, which makes {} signatures",
                        printable(a), kSkEcdsa));
      [[fallthrough]];
    default:
      if (a != key.type_name)
        return make_error(
            fmt::format("signature type '{}' does not match the {} key that made it", printable(a), key.type_name));
  }

  auto body = r.string();
  if (!body) return make_error(fmt::format("{} signature ends before its signature bytes", a));
  switch (key.type) {
    case KeyType::kEd25519:
    case KeyType::kSkEd25519:
      if (body->size() != kEd25519SigSize)
        return make_error(
            fmt::format("{} signature is {} bytes; Ed25519 signatures are {}", a, body->size(), kEd25519SigSize));
      sig.signature.assign(body->begin(), body->end());
      break;
    case KeyType::kRsa:
      // Exactly the modulus length, as signers write it: no other encoding
      // of the same signature is accepted.
      if (body->size() != key.rsa_n.size())
        return make_error(fmt::format("{} signature is {} bytes; this key's signatures are {} bytes", a, body->size(),
                                      key.rsa_n.size()));
      sig.signature.assign(body->begin(), body->end());
      break;
    default: {
      const CurveInfo& curve = curve_of(key.type);
      wire::Reader inner(*body);
      auto r_field = inner.string();
      auto s_field = r_field ? inner.string() : std::nullopt;
      if (!r_field || !s_field || !inner.at_end())
        return make_error(fmt::format("{} signature must hold exactly two numbers, r and s", a));
      auto r_mag = wire::mpint_magnitude(*r_field, curve.field_bytes, "ECDSA r");
      if (!r_mag) return r_mag.error();
      auto s_mag = wire::mpint_magnitude(*s_field, curve.field_bytes, "ECDSA s");
      if (!s_mag) return s_mag.error();
      if (r_mag->empty() || s_mag->empty()) return make_error("ECDSA signature with r or s zero is invalid");
      sig.ecdsa_r.assign(r_mag->begin(), r_mag->end());
      sig.ecdsa_s.assign(s_mag->begin(), s_mag->end());
    }
  }
  if (key.is_security_key()) {
    auto flags = r.u8();
    auto counter = flags ? r.u32() : std::nullopt;
    if (!flags || !counter) return make_error(fmt::format("{} signature ends before its FIDO flags and counter", a));
    sig.sk_flags = *flags;
    sig.sk_counter = *counter;
  }
  if (!r.at_end()) return make_error(fmt::format("{} signature has {} unexpected bytes at its end", a, r.remaining()));
  return {};
}

// 1: good, 0: bad signature; an error only for OpenSSL failing to run.
Result<bool> evp_verify(EVP_PKEY* pkey, const EVP_MD* md, ByteView signature, ByteView data) {
  wire::EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx) return make_error("out of memory creating a digest context");
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, pkey) <= 0)
    return make_error("OpenSSL could not start verifying: " + wire::openssl_error());
  int rc = EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), data.data(), data.size());
  ERR_clear_error();  // a bad signature queues an error; it is not one of ours
  return rc == 1;
}

Result<Bytes> ecdsa_der(const SshSignature& sig) {
  wire::EcdsaSigPtr es(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(sig.ecdsa_r.data(), static_cast<int>(sig.ecdsa_r.size()), nullptr);
  BIGNUM* s = BN_bin2bn(sig.ecdsa_s.data(), static_cast<int>(sig.ecdsa_s.size()), nullptr);
  if (!es || !r || !s || !ECDSA_SIG_set0(es.get(), r, s)) {
    BN_free(r);
    BN_free(s);
    return make_error("out of memory converting an ECDSA signature");
  }
  unsigned char* der = nullptr;
  int len = i2d_ECDSA_SIG(es.get(), &der);
  if (len <= 0) return make_error("OpenSSL could not encode the ECDSA signature: " + wire::openssl_error());
  Bytes out(der, der + len);
  OPENSSL_free(der);
  return out;
}

}  // namespace

std::string_view supported_key_types() {
  return "ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa (2048 bits or more, rsa-sha2-256/512 signatures), "
         "sk-ssh-ed25519@openssh.com, sk-ecdsa-sha2-nistp256@openssh.com";
}

std::string PublicKey::fingerprint() const { return "SHA256:" + wire::base64_encode(wire::sha256(blob), false); }

std::string_view PublicKey::short_type() const {
  switch (type) {
    case KeyType::kEd25519: return "ED25519";
    case KeyType::kEcdsaP256:
    case KeyType::kEcdsaP384:
    case KeyType::kEcdsaP521: return "ECDSA";
    case KeyType::kRsa: return "RSA";
    case KeyType::kSkEd25519: return "ED25519-SK";
    case KeyType::kSkEcdsaP256: return "ECDSA-SK";
  }
  return "?";
}

std::string PublicKey::to_openssh() const { return type_name + " " + wire::base64_encode(blob); }

Result<PublicKey> parse_public_key_blob(std::span<const uint8_t> blob) { return parse_key_fields(blob); }

Result<PublicKey> parse_public_key_text(std::string_view type_name, std::string_view base64) {
  auto blob = wire::base64_decode(base64);
  if (!blob) return make_error("the key's base64 is damaged: " + blob.error().message);
  auto key = parse_key_fields(*blob);
  if (!key) return key.error();
  if (key->type_name != type_name)
    return make_error(
        fmt::format("the key is written as type '{}' but its base64 holds a {} key; copy the line "
                    "from the .pub file again",
                    printable(type_name), key->type_name));
  return key;
}

Result<std::vector<uint8_t>> dearmor_sshsig(std::string_view text) {
  auto fail = [](size_t line, std::string_view why) {
    return make_error(
        fmt::format("line {}: {}; the signature file must be exactly what ssh-keygen -Y sign wrote", line, why));
  };
  if (text.size() > kMaxArmoredSize)
    return make_error(
        fmt::format("{} bytes is far larger than any SSH signature (at most {})", text.size(), kMaxArmoredSize));
  size_t pos = 0, line_no = 0;
  auto next_line = [&]() -> std::optional<std::string_view> {
    if (pos >= text.size()) return std::nullopt;
    size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    line_no++;
    return line;
  };
  auto first = next_line();
  if (!first || *first != kArmorBegin) return fail(1, fmt::format("expected '{}'", kArmorBegin));
  std::string base64;
  bool ended = false;
  while (auto line = next_line()) {
    if (*line == kArmorEnd) {
      ended = true;
      break;
    }
    if (line->empty()) return fail(line_no, "empty line inside the signature");
    if (line->find('\r') != std::string_view::npos)
      return fail(line_no, "carriage return (CRLF line ends); convert the file with dos2unix");
    if (line->size() > kArmorLineWidth)
      return fail(line_no,
                  fmt::format("line is {} characters; armor lines are at most {}", line->size(), kArmorLineWidth));
    base64 += *line;
  }
  if (!ended) return fail(line_no, fmt::format("no '{}' line (the file is cut short)", kArmorEnd));
  if (pos != text.size()) return fail(line_no + 1, "text after the END line");
  if (base64.empty()) return fail(2, "no signature between BEGIN and END");
  auto blob = wire::base64_decode(base64);
  if (!blob) return make_error("signature armor: " + blob.error().message + "; " + std::string(kFixReSign));
  return blob;
}

std::string armor_sshsig(std::span<const uint8_t> blob) {
  std::string b64 = wire::base64_encode(blob);
  std::string out = std::string(kArmorBegin) + "\n";
  for (size_t i = 0; i < b64.size(); i += kArmorWriteWidth) out += b64.substr(i, kArmorWriteWidth) + "\n";
  out += std::string(kArmorEnd) + "\n";
  return out;
}

Result<SshSignature> parse_sshsig_blob(std::span<const uint8_t> blob) {
  auto bad = [](const std::string& why) {
    return make_error("not a valid SSH signature: " + why + "; " + std::string(kFixReSign));
  };
  wire::Reader r(blob);
  auto magic = r.raw(kMagic.size());
  if (!magic || !equals(*magic, kMagic)) return bad("it does not begin with the SSHSIG magic");
  auto version = r.u32();
  if (!version) return bad("it ends before the version");
  if (*version != kSshsigVersion)
    return bad(fmt::format("version {}; gpugate reads version {}", *version, kSshsigVersion));
  auto key_blob = r.string();
  if (!key_blob) return bad("it ends inside the public key");
  auto ns = r.string();
  if (!ns) return bad("it ends inside the namespace");
  auto reserved = r.string();
  if (!reserved) return bad("it ends inside the reserved field");
  auto hash_alg = r.string();
  if (!hash_alg) return bad("it ends inside the hash algorithm");
  auto signature = r.string();
  if (!signature) return bad("it ends inside the signature");
  if (!r.at_end()) return bad(fmt::format("{} unexpected bytes after the signature", r.remaining()));

  SshSignature sig;
  auto key = parse_public_key_blob(*key_blob);
  if (!key) return bad("its public key: " + key.error().message);
  sig.key = std::move(*key);
  if (ns->empty()) return bad("the namespace is empty");
  sig.sig_namespace = std::string(wire::as_text(*ns));
  // Not signed, so it could carry anything without breaking the signature;
  // ssh-keygen leaves it empty and so must everyone.
  if (!reserved->empty())
    return bad(fmt::format("the reserved field holds {} bytes; it must be empty", reserved->size()));
  if (!equals(*hash_alg, "sha256") && !equals(*hash_alg, "sha512"))
    return bad(fmt::format("hash algorithm '{}'; sha256 and sha512 are accepted", printable(*hash_alg)));
  sig.hash_algorithm = std::string(wire::as_text(*hash_alg));
  if (auto parsed = parse_signature_blob(*signature, sig); !parsed) return bad(parsed.error().message);
  sig.blob.assign(blob.begin(), blob.end());
  return sig;
}

Result<SshSignature> parse_sshsig(std::string_view armored) {
  auto blob = dearmor_sshsig(armored);
  if (!blob) return blob.error();
  return parse_sshsig_blob(*blob);
}

Result<std::vector<uint8_t>> sshsig_signed_data(std::string_view sig_namespace, std::string_view hash_algorithm,
                                                std::span<const uint8_t> message) {
  Bytes digest;
  if (hash_algorithm == "sha512")
    digest = wire::sha512(message);
  else if (hash_algorithm == "sha256")
    digest = wire::sha256(message);
  else
    return make_error(fmt::format("hash algorithm '{}' is not sha256 or sha512", printable(hash_algorithm)));
  wire::Writer w;
  w.raw(kMagic);
  w.string(sig_namespace);
  w.string(std::string_view{});  // reserved
  w.string(hash_algorithm);
  w.string(ByteView(digest));
  return std::move(w).bytes();
}

Result<void> verify_sshsig(const SshSignature& sig, std::span<const uint8_t> message,
                           std::string_view expected_namespace) {
  if (sig.sig_namespace != expected_namespace)
    return make_error(fmt::format("the signature is for namespace '{}', not '{}'; sign with ssh-keygen -Y sign -n {}",
                                  printable(sig.sig_namespace), printable(expected_namespace),
                                  printable(expected_namespace)));
  auto signed_data = sshsig_signed_data(expected_namespace, sig.hash_algorithm, message);
  if (!signed_data) return signed_data.error();
  auto pkey = make_evp_key(sig.key);
  if (!pkey) return pkey.error();

  const PublicKey& key = sig.key;
  Bytes data = std::move(*signed_data);
  if (key.is_security_key()) {
    // PROTOCOL.u2f: the token signs SHA-256(application) || flags ||
    // counter || SHA-256(message), the message being the SSHSIG signed data.
    wire::Writer w;
    w.raw(ByteView(wire::sha256(wire::as_bytes(key.sk_application))));
    w.u8(sig.sk_flags);
    w.u32(sig.sk_counter);
    w.raw(ByteView(wire::sha256(data)));
    data = std::move(w).bytes();
  }

  Result<bool> good = false;
  switch (key.type) {
    case KeyType::kEd25519:
    case KeyType::kSkEd25519: good = evp_verify(pkey->get(), nullptr, sig.signature, data); break;
    case KeyType::kRsa:
      good = evp_verify(pkey->get(), sig.signature_algorithm == "rsa-sha2-256" ? EVP_sha256() : EVP_sha512(),
                        sig.signature, data);
      break;
    default: {
      auto der = ecdsa_der(sig);
      if (!der) return der.error();
      good = evp_verify(pkey->get(), curve_of(key.type).digest(), *der, data);
    }
  }
  if (!good) return good.error();
  if (!*good)
    return make_error(
        fmt::format("the {} signature by key {} does not match the signed bytes (the request was "
                    "changed after signing, or the signature belongs to another file)",
                    sig.signature_algorithm, key.fingerprint()));
  if (key.is_security_key() && !(sig.sk_flags & kSkUserPresent))
    return make_error(
        fmt::format("the security key {} signed without user presence (flags {:#04x}, touch not "
                    "confirmed); gpugate requires a touch: sign again without the no-touch-required "
                    "option",
                    key.fingerprint(), sig.sk_flags));
  return {};
}

}  // namespace gpugate::auth
