// allowed_signers: the OpenSSH syntax, refusals with file:line and the fix,
// and lookups that agree with ssh-keygen -Y verify / find-principals.
#include <gtest/gtest.h>

#include "auth_fixture.hpp"
#include "gpugate/allowed_signers.hpp"

using namespace gpugate::auth;
using namespace gpugate::test::auth;

namespace {

const std::string kMessage = sample_request();
constexpr int64_t k2026 = 1767225600;  // 2026-01-01T00:00:00Z

void expect_error(const gpugate::Error& e, std::string_view want) {
  EXPECT_NE(e.message.find(want), std::string::npos) << "error: " << e.message << "\nwanted: " << want;
}

}  // namespace

TEST(AllowedSigners, ParsesOpenSshSyntax) {
  auto& keys = Keys::get();
  const SshKey& ed = keys.key("ed25519");
  const SshKey& ec = keys.key("ecdsa256");
  const SshKey& rsa = keys.key("rsa3072");
  std::string file = "# operators\n\n   \n" + ed.allowed_line("alice@example.org,alice@corp.example") + "  " +
                     ec.allowed_line("*@oncall.example.org,!mallory@oncall.example.org",
                                     "namespaces=\"gpugate-request@gpugate.dev,file\",VALID-AFTER=\"20260101Z\"") +
                     "\"carol@example.org\" valid-before=\"202701011200Z\" " + rsa.type_name + " " + rsa.base64 +
                     " carol's laptop\n" + "\t# indented comment\n";
  auto s = AllowedSigners::parse(file, "allowed_signers");
  ASSERT_TRUE(s) << s.error().message;
  ASSERT_EQ(s->entries().size(), 3u);
  const auto& e0 = s->entries()[0];
  EXPECT_EQ(e0.source, "allowed_signers:4");
  EXPECT_EQ(e0.principal_list(), (std::vector<std::string>{"alice@example.org", "alice@corp.example"}));
  EXPECT_FALSE(e0.namespaces);
  EXPECT_EQ(e0.key, ed.key);
  const auto& e1 = s->entries()[1];
  EXPECT_EQ(e1.source, "allowed_signers:5");
  EXPECT_EQ(*e1.namespaces, "gpugate-request@gpugate.dev,file");
  EXPECT_EQ(*e1.valid_after, k2026);
  EXPECT_TRUE(e1.matches_principal("bob@oncall.example.org"));
  EXPECT_FALSE(e1.matches_principal("mallory@oncall.example.org"));
  EXPECT_FALSE(e1.matches_principal("bob@example.org"));
  const auto& e2 = s->entries()[2];
  EXPECT_EQ(e2.principals, "carol@example.org");
  EXPECT_EQ(*e2.valid_before, 1798804800);  // 2027-01-01T12:00:00Z
}

TEST(AllowedSigners, PatternListsMatchAsOpenSsh) {
  EXPECT_TRUE(match_pattern_list("alice@example.org", "alice@example.org"));
  EXPECT_TRUE(match_pattern_list("alice@example.org", "bob@x,*@example.org"));
  EXPECT_TRUE(match_pattern_list("a1", "a?"));
  EXPECT_FALSE(match_pattern_list("a12", "a?"));
  EXPECT_FALSE(match_pattern_list("alice@example.org", "*@example.org,!alice@*"));
  EXPECT_FALSE(match_pattern_list("Alice@example.org", "alice@example.org"));
  EXPECT_FALSE(match_pattern_list("x", "!y"));  // a negation alone matches nothing
  EXPECT_TRUE(match_pattern_list("gpugate-request@gpugate.dev", "gpugate-*"));
  EXPECT_TRUE(match_pattern_list("", "*"));
  EXPECT_TRUE(match_pattern_list("*x", "*")) << "a '*' is a wildcard also where the text has one";
  EXPECT_TRUE(match_pattern_list("a*b", "a*"));
}

TEST(AllowedSigners, OpenSshTimes) {
  EXPECT_EQ(*parse_openssh_time("20260101"), *parse_openssh_time("202601010000"));
  EXPECT_EQ(*parse_openssh_time("20260101Z"), k2026);
  EXPECT_EQ(*parse_openssh_time("20260101000000z"), k2026);
  EXPECT_EQ(*parse_openssh_time("202601010000UTC"), k2026);
  EXPECT_EQ(*parse_openssh_time("20260101000001Z"), k2026 + 1);
  for (const char* bad : {"2026", "2026-01-01", "20261301Z", "20260230Z", "2026010125Z", "20260101T0000Z", ""})
    EXPECT_FALSE(parse_openssh_time(bad)) << bad;
}

TEST(AllowedSigners, RefusalsNameFileLineAndFix) {
  const SshKey& ed = Keys::get().key("ed25519");
  std::string key = ed.type_name + " " + ed.base64;
  struct Case {
    std::string line;
    std::string want;
  };
  std::vector<Case> cases = {
      {"ca@example.org cert-authority " + key, "cert-authority is not supported"},
      {"ca@example.org namespaces=\"x\",cert-authority " + key, "cert-authority is not supported"},
      {"a@b namespaces=x " + key, "namespaces= needs its value in double quotes"},
      {"a@b namespaces=\"x " + key, "no closing double quote"},
      {"a@b namespaces=\"x\",namespaces=\"y\" " + key, "namespaces= is given twice"},
      {"a@b valid-after=\"20270101\",valid-before=\"20260101\" " + key, "valid-before is not later than valid-after"},
      {"a@b valid-after=\"2027\" " + key, "valid-after=: time '2027' has the wrong length"},
      {"a@b no-touch-required " + key, "unsupported option 'no-touch-required'"},
      {"a@b", "only principals on this line"},
      {"a@b namespaces=\"x\"", "options but no key"},
      {"a@b ssh-ed25519", "no base64 key"},
      {"a@b ssh-ed25519 AAAA!!!!", "base64 is damaged"},
      {"a@b ssh-ed25519 " + Keys::get().key("ecdsa256").base64, "holds a ecdsa-sha2-nistp256 key"},
      {"a@b ssh-dss AAAAB3NzaC1kc3MAAAA=", "ssh-dss (DSA) keys are not supported"},
      {"a@b " + key + "\r", "dos2unix"},
      {"\"a@b " + key, "no closing double quote"},
  };
  for (const auto& c : cases) {
    auto s = AllowedSigners::parse("# first line is a comment\n" + c.line + "\n", "/etc/gpugate/allowed_signers");
    ASSERT_FALSE(s) << c.line;
    expect_error(s.error(), "/etc/gpugate/allowed_signers:2: ");
    expect_error(s.error(), c.want);
  }
  auto ca = AllowedSigners::parse("ca@example.org cert-authority " + key + "\n", "as");
  expect_error(ca.error(), "list the operators' keys instead of the CA key");
}

TEST(AllowedSigners, LookupSaysWhyAKeyMayNotSign) {
  auto& keys = Keys::get();
  const SshKey& ed = keys.key("ed25519");
  const SshKey& ec = keys.key("ecdsa256");
  const SshKey& stranger = keys.key("ed25519", "stranger");
  std::string file = ed.allowed_line("alice@example.org", "namespaces=\"file\"") +
                     ed.allowed_line("alice@example.org", "valid-after=\"20270101Z\"") +
                     ec.allowed_line("bob@example.org", "valid-before=\"20260101Z\"");
  auto s = AllowedSigners::parse(file, "as");
  ASSERT_TRUE(s) << s.error().message;

  auto unknown = s->find(stranger.key, kSignatureNamespace, k2026);
  ASSERT_FALSE(unknown);
  expect_error(unknown.error(), "key " + stranger.key.fingerprint() +
                                    " (ED25519) is not in as; if it may sign, add a line: PRINCIPAL ssh-ed25519 ");

  auto alice = s->find(ed.key, kSignatureNamespace, k2026);
  ASSERT_FALSE(alice);
  expect_error(alice.error(), "as:1 lets it sign only in namespaces=\"file\", not 'gpugate-request@gpugate.dev'");
  expect_error(alice.error(),
               "as:2 makes it valid only from 2027-01-01T00:00:00Z (valid-after), and the time checked is "
               "2026-01-01T00:00:00Z");
  auto alice_later = s->find(ed.key, kSignatureNamespace, k2026 + 366 * 86400);
  ASSERT_TRUE(alice_later);
  EXPECT_EQ(alice_later->size(), 1u);
  EXPECT_EQ((*alice_later)[0].source, "as:2");

  // valid-before is inclusive, as in OpenSSH.
  EXPECT_TRUE(s->find(ec.key, kSignatureNamespace, k2026));
  auto bob = s->find(ec.key, kSignatureNamespace, k2026 + 1);
  ASSERT_FALSE(bob);
  expect_error(bob.error(),
               "as:3 made it valid only until 2026-01-01T00:00:00Z (valid-before), and the time checked is "
               "2026-01-01T00:00:01Z");
}

TEST(AllowedSigners, AgreesWithSshKeygenOnValidityAndNamespaces) {
  auto& keys = Keys::get();
  const SshKey& ed = keys.key("ed25519");
  std::string armored = keys.sign(ed, kMessage);
  auto sig = *parse_sshsig(armored);
  struct Case {
    std::string options;
    std::string at;  // ssh-keygen -O verify-time
    int64_t when;
  };
  std::vector<Case> cases = {
      {"valid-before=\"20260101Z\"", "20260101000000Z", k2026},
      {"valid-before=\"20260101Z\"", "20260101000001Z", k2026 + 1},
      {"valid-after=\"20260101Z\"", "20251231235959Z", k2026 - 1},
      {"valid-after=\"20260101Z\"", "20260101000000Z", k2026},
      {"namespaces=\"file,git\"", "20260101Z", k2026},
      {"namespaces=\"gpugate-*\"", "20260101Z", k2026},
      {"namespaces=\"*,!gpugate-request@gpugate.dev\"", "20260101Z", k2026},
  };
  for (const auto& c : cases) {
    std::string file = ed.allowed_line("alice@example.org", c.options);
    auto s = AllowedSigners::parse(file, "as");
    ASSERT_TRUE(s) << s.error().message;
    bool ours = s->find(sig.key, kSignatureNamespace, c.when).ok();
    auto theirs =
        keys.keygen_verify(file, "alice@example.org", kMessage, armored, kSignatureNamespace, "-O verify-time=" + c.at);
    EXPECT_EQ(ours, theirs.status == 0) << c.options << " at " << c.at << ": " << theirs.output;
  }
}

TEST(AllowedSigners, PrincipalsAgreeWithSshKeygenFindPrincipals) {
  auto& keys = Keys::get();
  const SshKey& ed = keys.key("ed25519");
  std::string armored = keys.sign(ed, kMessage);
  std::string file =
      ed.allowed_line("alice@example.org,alice@corp.example") + keys.key("ecdsa256").allowed_line("bob@example.org");
  auto base = keys.dir() / "find-principals";
  write_text(base.string() + ".as", file);
  write_text(base.string() + ".sig", armored);
  auto theirs = run_shell("ssh-keygen -Y find-principals -f " + base.string() + ".as -s " + base.string() + ".sig");
  ASSERT_EQ(theirs.status, 0) << theirs.output;
  auto s = AllowedSigners::parse(file, "as");
  auto found = s->find(parse_sshsig(armored)->key, kSignatureNamespace, k2026);
  ASSERT_TRUE(found);
  ASSERT_EQ(found->size(), 1u);
  std::string ours;
  for (const auto& p : (*found)[0].principal_list()) ours += p + "\n";
  EXPECT_EQ(ours, theirs.output);
}
