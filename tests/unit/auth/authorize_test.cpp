// Quorum: distinct keys, one per principal, every signature reported.
#include <gtest/gtest.h>

#include "auth_fixture.hpp"
#include "gpugate/authorize.hpp"

using namespace gpugate::auth;
using namespace gpugate::test::auth;

namespace {

const std::string kMessage = sample_request();
constexpr int64_t kNow = 1795858800;  // the sample request's not-before

void expect_has(const std::string& text, std::string_view want) {
  EXPECT_NE(text.find(want), std::string::npos) << "text: " << text << "\nwanted: " << want;
}

struct Team {
  const SshKey& alice = Keys::get().key("ed25519", "alice");
  const SshKey& bob = Keys::get().key("ecdsa256", "bob");
  const SshKey& carol = Keys::get().key("rsa3072");
  const SshKey& alice2 = Keys::get().key("ed25519", "alice-second");
  const SshKey& stranger = Keys::get().key("ed25519", "stranger");
  AllowedSigners signers;
  SignerGroup oncall{"oncall", {"alice@example.org", "bob@example.org", "carol@example.org"}, 2};

  Team() {
    std::string file = alice.allowed_line("alice@example.org") + bob.allowed_line("bob@example.org") +
                       carol.allowed_line("carol@example.org", "valid-before=\"20270101Z\"") +
                       alice2.allowed_line("alice@example.org");
    signers = *AllowedSigners::parse(file, "allowed_signers");
  }
  SignatureInput sig(const SshKey& k, const std::string& label, std::string_view message = kMessage) {
    return {label, Keys::get().sign(k, message)};
  }
};

Team& team() {
  static Team t;
  return t;
}

Authorization run(const std::vector<SignatureInput>& sigs, std::vector<SignerGroup> groups, int64_t when = kNow) {
  return authorize(kMessage, sigs, team().signers, kSignatureNamespace, when, groups);
}

}  // namespace

TEST(AuthQuorum, TwoOfOncallIsMet) {
  auto& t = team();
  auto a = run({t.sig(t.alice, "alice.sig"), t.sig(t.bob, "bob.sig")}, {t.oncall});
  EXPECT_TRUE(a.quorum_met) << a.summary();
  EXPECT_TRUE(a.all_signatures_good());
  ASSERT_EQ(a.groups.size(), 1u);
  EXPECT_TRUE(a.groups[0].met);
  EXPECT_EQ(a.groups[0].credited.size(), 2u);
  EXPECT_EQ(a.verified_keys(), (std::vector<std::string>{t.alice.key.fingerprint(), t.bob.key.fingerprint()}));
  EXPECT_EQ(a.signatures[0].principals, (std::vector<std::string>{"alice@example.org"}));
  EXPECT_EQ(a.signatures[0].sources, (std::vector<std::string>{"allowed_signers:1"}));
  EXPECT_EQ(a.authorizing_group(), &a.groups[0]);
  expect_has(a.summary(), "group oncall: 2 of 2 met by alice@example.org (" + t.alice.key.fingerprint() + ")");
}

TEST(AuthQuorum, ShortByOneIsNotMet) {
  auto& t = team();
  auto a = run({t.sig(t.alice, "alice.sig")}, {t.oncall});
  EXPECT_FALSE(a.quorum_met);
  EXPECT_TRUE(a.all_signatures_good());
  EXPECT_EQ(a.authorizing_group(), nullptr);
  expect_has(a.groups[0].explanation, "group oncall: 1 of 2, short by 1: alice@example.org");
}

TEST(AuthQuorum, SameKeySigningTwiceCountsOnce) {
  auto& t = team();
  // Two different signature blobs by one key (ECDSA signatures differ each time).
  auto a = run({t.sig(t.bob, "bob-1.sig"), t.sig(t.bob, "bob-2.sig")}, {t.oncall});
  EXPECT_FALSE(a.quorum_met) << a.summary();
  ASSERT_EQ(a.signatures.size(), 2u);
  EXPECT_TRUE(a.signatures[0].counted);
  EXPECT_FALSE(a.signatures[1].counted);
  EXPECT_TRUE(a.signatures[1].duplicate);
  expect_has(a.signatures[1].error,
             "key " + t.bob.key.fingerprint() + " already signed as bob-1.sig; a key counts once");
  EXPECT_TRUE(a.all_signatures_good()) << "a duplicate is not a bad signature";
  expect_has(a.groups[0].explanation, "1 of 2, short by 1");
}

TEST(AuthQuorum, OnePersonWithTwoKeysCountsOnce) {
  auto& t = team();
  auto a = run({t.sig(t.alice, "alice.sig"), t.sig(t.alice2, "alice-again.sig")}, {t.oncall});
  EXPECT_TRUE(a.signatures[0].counted && a.signatures[1].counted);
  EXPECT_EQ(a.verified_keys().size(), 2u);
  EXPECT_FALSE(a.quorum_met) << "two keys, one person: " << a.summary();
  expect_has(a.groups[0].explanation, "1 of 2, short by 1");
}

TEST(AuthQuorum, EveryBadSignatureIsReported) {
  auto& t = team();
  std::string changed = kMessage;
  changed[20] ^= 1;
  auto a = run({t.sig(t.stranger, "stranger.sig"),
                t.sig(t.bob, "bob-other-text.sig", changed),
                {"garbage.sig", "-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n"},
                t.sig(t.alice, "alice.sig"),
                {"ns.sig", Keys::get().sign(t.alice, kMessage, "file")}},
               {t.oncall});
  ASSERT_EQ(a.signatures.size(), 5u);
  expect_has(a.signatures[0].error, "is not in allowed_signers");
  expect_has(a.signatures[1].error, "does not match the signed bytes");
  expect_has(a.signatures[2].error, "not a valid SSH signature");
  EXPECT_TRUE(a.signatures[3].counted);
  expect_has(a.signatures[4].error, "namespace 'file'");
  EXPECT_FALSE(a.all_signatures_good());
  EXPECT_FALSE(a.quorum_met);
  std::string s = a.summary();
  expect_has(s, "signature stranger.sig: REJECTED: key ");
  expect_has(s, "signature alice.sig: good, ED25519 key");
}

TEST(AuthQuorum, KeyOutsideItsValidBeforeDoesNotCount) {
  auto& t = team();
  int64_t after_carol = 1798761600 + 1;  // just past carol's valid-before, 2027-01-01T00:00:00Z
  auto a = run({t.sig(t.carol, "carol.sig"), t.sig(t.alice, "alice.sig")}, {t.oncall}, after_carol);
  EXPECT_FALSE(a.quorum_met);
  expect_has(a.signatures[0].error,
             "allowed_signers:3 made it valid only until 2027-01-01T00:00:00Z (valid-before), and the time checked is "
             "2027-01-01T00:00:01Z");
  auto before = run({t.sig(t.carol, "carol.sig"), t.sig(t.alice, "alice.sig")}, {t.oncall}, 1798761600);
  EXPECT_TRUE(before.quorum_met) << before.summary();
}

TEST(AuthQuorum, BreakGlassGroupIsReportedAsSuch) {
  auto& t = team();
  SignerGroup glass{"emergency", {"carol@example.org"}, 1, true};
  auto only_glass = run({t.sig(t.carol, "carol.sig")}, {t.oncall, glass});
  EXPECT_TRUE(only_glass.quorum_met);
  ASSERT_NE(only_glass.authorizing_group(), nullptr);
  EXPECT_EQ(only_glass.authorizing_group()->name, "emergency");
  EXPECT_TRUE(only_glass.authorizing_group()->break_glass);
  expect_has(only_glass.authorizing_group()->explanation, "break-glass group emergency: 1 of 1 met");
  auto both = run({t.sig(t.carol, "carol.sig"), t.sig(t.alice, "alice.sig")}, {glass, t.oncall});
  EXPECT_EQ(both.authorizing_group()->name, "oncall") << "a regular group is preferred";
}

TEST(AuthQuorum, WithoutGroupsOneGoodSignatureSuffices) {
  auto& t = team();
  EXPECT_TRUE(run({t.sig(t.alice, "a.sig")}, {}).quorum_met);
  EXPECT_FALSE(run({t.sig(t.stranger, "s.sig")}, {}).quorum_met);
  EXPECT_FALSE(run({}, {}).quorum_met);
}

TEST(AuthQuorum, GroupSpecsAreChecked) {
  auto g = parse_signer_group("oncall:2:alice@example.org,bob@example.org");
  ASSERT_TRUE(g) << g.error().message;
  EXPECT_EQ(g->name, "oncall");
  EXPECT_EQ(g->threshold, 2u);
  EXPECT_EQ(g->principals, (std::vector<std::string>{"alice@example.org", "bob@example.org"}));
  struct Case {
    const char* spec;
    const char* want;
  };
  for (auto c : std::vector<Case>{{"oncall", "two colons"},
                                  {"oncall:x:a", "threshold 'x' is not a number"},
                                  {"oncall:3:a,b", "needs 3 of 2 principals"},
                                  {"oncall:0:a", "threshold must be 1 to 1"},
                                  {"oncall:1:a,a", "lists principal a twice"},
                                  {"oncall:1:*@example.org", "without * ? ! ,"},
                                  {":1:a", "signer group name ''"},
                                  {"oncall:1:a,", "principal ''"}}) {
    auto r = parse_signer_group(c.spec);
    ASSERT_FALSE(r) << c.spec;
    expect_has(r.error().message, c.want);
  }
  // A bad group from a policy is reported, never met.
  auto& t = team();
  auto a = run({t.sig(t.alice, "a.sig")}, {SignerGroup{"bad", {"alice@example.org"}, 0}});
  EXPECT_FALSE(a.quorum_met);
  expect_has(a.groups[0].explanation, "group bad is not usable");
}
