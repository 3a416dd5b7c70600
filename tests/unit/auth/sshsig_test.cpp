// SSHSIG against the real ssh-keygen: what it signs we verify, and we agree
// with ssh-keygen -Y verify, key type by key type. Then what ssh-keygen
// cannot make here (FIDO sk- signatures, rsa-sha2-256, SHA-1), built by
// hand, and blobs that must be refused without a crash.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "auth_fixture.hpp"
#include "gpugate/sshsig.hpp"

using namespace gpugate::auth;
using namespace gpugate::test::auth;

namespace {

const std::string kMessage = sample_request();

std::string changed_byte(std::string text, size_t at) {
  text[at] = static_cast<char>(text[at] ^ 0x01);
  return text;
}

void expect_error(const gpugate::Error& e, std::string_view want) {
  EXPECT_NE(e.message.find(want), std::string::npos) << "error: " << e.message << "\nwanted: " << want;
}

struct KeyCase {
  std::string spec;
  std::string signature_algorithm;
};

class SshsigInterop : public ::testing::TestWithParam<KeyCase> {};

}  // namespace

TEST_P(SshsigInterop, VerifiesSshKeygenSignaturesAndAgreesWithSshKeygen) {
  auto& keys = Keys::get();
  const SshKey& k = keys.key(GetParam().spec);
  std::string allowed = k.allowed_line("op@example.org");
  // The fingerprint is the one ssh-keygen -l prints.
  auto fp = run_shell("ssh-keygen -l -f " + k.path.string() + ".pub");
  EXPECT_NE(fp.output.find(k.key.fingerprint()), std::string::npos) << fp.output << " vs " << k.key.fingerprint();

  for (std::string hash : {"sha512", "sha256"}) {
    SCOPED_TRACE(hash);
    std::string armored = keys.sign(k, kMessage, kSignatureNamespace, "-O hashalg=" + hash);
    auto sig = parse_sshsig(armored);
    ASSERT_TRUE(sig) << sig.error().message;
    EXPECT_EQ(sig->hash_algorithm, hash);
    EXPECT_EQ(sig->signature_algorithm, GetParam().signature_algorithm);
    EXPECT_EQ(sig->key, k.key);
    EXPECT_EQ(sig->sig_namespace, kSignatureNamespace);
    EXPECT_EQ(armor_sshsig(sig->blob), armored) << "our armor is ssh-keygen's, byte for byte";
    auto ours = verify_sshsig(*sig, kMessage, kSignatureNamespace);
    EXPECT_TRUE(ours) << ours.error().message;
    auto theirs = keys.keygen_verify(allowed, "op@example.org", kMessage, armored);
    EXPECT_EQ(theirs.status, 0) << theirs.output;

    // One changed byte of the request: both refuse.
    for (size_t at : {size_t{0}, kMessage.size() / 2, kMessage.size() - 1}) {
      std::string changed = changed_byte(kMessage, at);
      auto bad = verify_sshsig(*sig, changed, kSignatureNamespace);
      ASSERT_FALSE(bad);
      expect_error(bad.error(), "does not match the signed bytes");
      EXPECT_NE(keys.keygen_verify(allowed, "op@example.org", changed, armored).status, 0);
    }
    // The wrong namespace: both refuse.
    auto wrong_ns = verify_sshsig(*sig, kMessage, "file");
    ASSERT_FALSE(wrong_ns);
    expect_error(wrong_ns.error(), "namespace 'gpugate-request@gpugate.dev', not 'file'");
    EXPECT_NE(keys.keygen_verify(allowed, "op@example.org", kMessage, armored, "file").status, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(KeyTypes, SshsigInterop,
                         ::testing::Values(KeyCase{"ed25519", "ssh-ed25519"},
                                           KeyCase{"ecdsa256", "ecdsa-sha2-nistp256"},
                                           KeyCase{"ecdsa384", "ecdsa-sha2-nistp384"},
                                           KeyCase{"ecdsa521", "ecdsa-sha2-nistp521"},
                                           KeyCase{"rsa3072", "rsa-sha2-512"}),
                         [](const auto& info) { return info.param.spec; });

TEST(SshsigParse, SignatureForAnotherNamespaceIsRefused) {
  auto& keys = Keys::get();
  std::string armored = keys.sign(keys.key("ed25519"), kMessage, "file");
  auto sig = parse_sshsig(armored);
  ASSERT_TRUE(sig) << sig.error().message;
  auto r = verify_sshsig(*sig, kMessage, kSignatureNamespace);
  ASSERT_FALSE(r);
  expect_error(r.error(),
               "the signature is for namespace 'file', not 'gpugate-request@gpugate.dev'; sign with "
               "ssh-keygen -Y sign -n gpugate-request@gpugate.dev");
}

TEST(SshsigParse, RsaSha256ByHandVerifiesHereAndInSshKeygen) {
  auto k = make_soft_key(SoftType::kRsa2048);
  for (std::string alg : {"rsa-sha2-256", "rsa-sha2-512"}) {
    CraftOptions o;
    o.rsa_algorithm = alg;
    std::string armored = craft_armored(k, kMessage, o);
    auto sig = parse_sshsig(armored);
    ASSERT_TRUE(sig) << sig.error().message;
    EXPECT_EQ(sig->signature_algorithm, alg);
    EXPECT_TRUE(verify_sshsig(*sig, kMessage, kSignatureNamespace));
    auto theirs = Keys::get().keygen_verify(k.allowed_line("op@example.org"), "op@example.org", kMessage, armored);
    EXPECT_EQ(theirs.status, 0) << alg << ": " << theirs.output;
  }
}

TEST(SshsigParse, RsaWithSha1IsRefusedClearly) {
  auto k = make_soft_key(SoftType::kRsa2048);
  CraftOptions o;
  o.rsa_algorithm = "ssh-rsa";
  auto sig = parse_sshsig(craft_armored(k, kMessage, o));
  ASSERT_FALSE(sig);
  expect_error(sig.error(), "ssh-rsa (RSA with SHA-1), which gpugate refuses");
}

TEST(SshsigParse, SmallRsaKeysAreRefused) {
  const SshKey& k = Keys::get().key("rsa1024");
  auto key = parse_public_key_text(k.type_name, k.base64);
  ASSERT_FALSE(key);
  expect_error(key.error(), "RSA key has 1024 bits; gpugate requires at least 2048");
}

TEST(SshsigParse, SecurityKeySignaturesNeedUserPresence) {
  for (SoftType type : {SoftType::kSkEd25519, SoftType::kSkEcdsa}) {
    auto k = make_soft_key(type);
    SCOPED_TRACE(k.type_name());
    std::string allowed = k.allowed_line("op@example.org");
    auto key = parse_public_key_text(k.type_name(), k.base64());
    ASSERT_TRUE(key) << key.error().message;
    EXPECT_EQ(key->sk_application, "ssh:");

    // Touched (flag 0x01), with user verification too (0x05): accepted, and
    // ssh-keygen agrees the signature is good.
    for (uint8_t flags : {uint8_t{0x01}, uint8_t{0x05}}) {
      CraftOptions o;
      o.sk_flags = flags;
      o.sk_counter = 42;
      std::string armored = craft_armored(k, kMessage, o);
      auto sig = parse_sshsig(armored);
      ASSERT_TRUE(sig) << sig.error().message;
      EXPECT_EQ(sig->sk_flags, flags);
      EXPECT_EQ(sig->sk_counter, 42u);
      auto ok = verify_sshsig(*sig, kMessage, kSignatureNamespace);
      EXPECT_TRUE(ok) << ok.error().message;
      EXPECT_EQ(Keys::get().keygen_verify(allowed, "op@example.org", kMessage, armored).status, 0);
      EXPECT_FALSE(verify_sshsig(*sig, changed_byte(kMessage, 3), kSignatureNamespace));
    }
    // Not touched: refused by us. ssh-keygen -Y verify does not check the
    // flag (reference/log-and-signing.md 2.1.4), which is why we do.
    CraftOptions untouched;
    untouched.sk_flags = 0x00;
    std::string armored = craft_armored(k, kMessage, untouched);
    auto sig = parse_sshsig(armored);
    ASSERT_TRUE(sig);
    auto r = verify_sshsig(*sig, kMessage, kSignatureNamespace);
    ASSERT_FALSE(r);
    expect_error(r.error(), "signed without user presence (flags 0x00, touch not confirmed)");
    EXPECT_EQ(Keys::get().keygen_verify(allowed, "op@example.org", kMessage, armored).status, 0);

    // Flags changed after signing (0x00 signed, 0x01 claimed): the
    // signature covers the flags, so it fails.
    auto blob = craft_sshsig(k, kMessage, untouched);
    blob[blob.size() - 5] = 0x01;
    auto forged = parse_sshsig_blob(blob);
    ASSERT_TRUE(forged);
    auto f = verify_sshsig(*forged, kMessage, kSignatureNamespace);
    ASSERT_FALSE(f);
    expect_error(f.error(), "does not match the signed bytes");
  }
}

TEST(SshsigParse, ForeignBlobFieldsAreRefused) {
  auto k = make_soft_key(SoftType::kEd25519);
  auto check = [&](const CraftOptions& o, std::string_view want) {
    auto sig = parse_sshsig_blob(craft_sshsig(k, kMessage, o));
    ASSERT_FALSE(sig) << want;
    expect_error(sig.error(), want);
  };
  CraftOptions v2;
  v2.version = 2;
  check(v2, "version 2; gpugate reads version 1");
  CraftOptions reserved;
  reserved.reserved = "x";
  check(reserved, "the reserved field holds 1 bytes; it must be empty");
  // sshsig_signed_data knows only sha256 and sha512, so patch the name in a good blob.
  auto blob = craft_sshsig(k, kMessage);
  std::string text(blob.begin(), blob.end());
  auto at = text.find("sha512");
  text.replace(at, 6, "sha384");
  auto patched = parse_sshsig_blob(wire::as_bytes(text));
  ASSERT_FALSE(patched);
  expect_error(patched.error(), "hash algorithm 'sha384'; sha256 and sha512 are accepted");
  CraftOptions empty_ns;
  empty_ns.ns = "";
  check(empty_ns, "the namespace is empty");

  auto trailing = craft_sshsig(k, kMessage);
  trailing.push_back(0);
  auto t = parse_sshsig_blob(trailing);
  ASSERT_FALSE(t);
  expect_error(t.error(), "1 unexpected bytes after the signature");
}

TEST(SshsigParse, ArmorIsStrict) {
  auto k = make_soft_key(SoftType::kEd25519);
  std::string good = craft_armored(k, kMessage);
  EXPECT_TRUE(parse_sshsig(good));
  EXPECT_TRUE(parse_sshsig(good.substr(0, good.size() - 1))) << "the final newline is optional";
  auto crlf = good;
  crlf.insert(crlf.find('\n', 30), "\r");
  expect_error(parse_sshsig(crlf).error(), "dos2unix");
  expect_error(parse_sshsig(good.substr(0, good.size() - 10)).error(), "cut short");
  expect_error(parse_sshsig(good + "x").error(), "text after the END line");
  expect_error(parse_sshsig("hello").error(), "expected '-----BEGIN SSH SIGNATURE-----'");
  auto bad_char = good;
  bad_char[40] = '*';
  expect_error(parse_sshsig(bad_char).error(), "is not base64");
  expect_error(parse_sshsig(std::string(100000, 'A')).error(), "far larger than any SSH signature");
}

TEST(SshsigParse, PublicKeysAreCheckedOnParse) {
  // An ECDSA point off the curve.
  wire::Writer w;
  w.string(std::string_view("ecdsa-sha2-nistp256"));
  w.string(std::string_view("nistp256"));
  std::vector<uint8_t> point(65, 0x11);
  point[0] = 0x04;
  w.string(wire::ByteView(point));
  auto off_curve = parse_public_key_blob(w.bytes());
  ASSERT_FALSE(off_curve);
  expect_error(off_curve.error(), "is not a point on P-256");

  // Type word and blob disagree.
  const SshKey& ed = Keys::get().key("ed25519");
  auto mismatch = parse_public_key_text("ssh-rsa", ed.base64);
  ASSERT_FALSE(mismatch);
  expect_error(mismatch.error(), "written as type 'ssh-rsa' but its base64 holds a ssh-ed25519 key");

  // Certificates and DSA are refused by name.
  wire::Writer cert;
  cert.string(std::string_view("ssh-ed25519-cert-v01@openssh.com"));
  expect_error(parse_public_key_blob(cert.bytes()).error(), "is an OpenSSH certificate");
  wire::Writer dsa;
  dsa.string(std::string_view("ssh-dss"));
  expect_error(parse_public_key_blob(dsa.bytes()).error(), "ssh-dss (DSA) keys are not supported");

  // A needless leading zero in an RSA modulus is a second encoding: refused.
  auto rsa = make_soft_key(SoftType::kRsa2048);
  wire::Writer padded;
  padded.string(std::string_view("ssh-rsa"));
  padded.mpint(bn_bytes(rsa.pkey.get(), OSSL_PKEY_PARAM_RSA_E));
  auto n = bn_bytes(rsa.pkey.get(), OSSL_PKEY_PARAM_RSA_N);
  n.insert(n.begin(), {0x00, 0x00});
  padded.u32(static_cast<uint32_t>(n.size()));
  padded.raw(wire::ByteView(n));
  expect_error(parse_public_key_blob(padded.bytes()).error(), "needless leading zero");
}

TEST(SshsigParse, TruncatedBlobsAtEveryLengthAreRefused) {
  auto& keys = Keys::get();
  std::vector<std::vector<uint8_t>> blobs;
  for (const char* spec : {"ed25519", "ecdsa256", "rsa3072"})
    blobs.push_back(*dearmor_sshsig(keys.sign(keys.key(spec), kMessage)));
  for (SoftType t : {SoftType::kSkEd25519, SoftType::kSkEcdsa})
    blobs.push_back(craft_sshsig(make_soft_key(t), kMessage));
  for (const auto& blob : blobs) {
    ASSERT_TRUE(parse_sshsig_blob(blob));
    for (size_t len = 0; len < blob.size(); len++) {
      auto r = parse_sshsig_blob(std::span(blob.data(), len));
      ASSERT_FALSE(r) << "prefix of " << len << " bytes parsed";
      EXPECT_NE(r.error().message.find("not a valid SSH signature"), std::string::npos);
    }
    std::string armored = armor_sshsig(blob);
    for (size_t len = 0; len + 1 < armored.size(); len++) EXPECT_FALSE(parse_sshsig(armored.substr(0, len))) << len;
  }
}

TEST(SshsigParse, GarbageBlobsAreRefusedWithoutACrash) {
  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int i = 0; i < 5000; i++) {
    std::vector<uint8_t> blob(static_cast<size_t>(rng() % 600));
    for (auto& b : blob) b = static_cast<uint8_t>(byte(rng));
    if (i % 2 == 0 && blob.size() >= 10) {  // past the magic and version, into the fields
      std::memcpy(blob.data(), "SSHSIG\0\0\0\1", 10);
      // Plausible small lengths make the parser go deeper.
      for (size_t at = 10; at + 4 < blob.size(); at += 4 + (rng() % 40)) {
        blob[at] = blob[at + 1] = 0;
        blob[at + 2] = 0;
        blob[at + 3] = static_cast<uint8_t>(rng() % 48);
      }
    }
    auto r = parse_sshsig_blob(blob);
    if (r) EXPECT_FALSE(verify_sshsig(*r, kMessage, kSignatureNamespace));
    EXPECT_FALSE(parse_sshsig(std::string(blob.begin(), blob.end())));
    (void)parse_public_key_blob(blob);
  }
}
