// The daemon's decision on a signed request, without a kernel: the scope
// is the signed one (resolved to a cgroup id at submit), the policy's caps,
// when a nonce is burned, allowed_signers checked at start and at submit, and
// the conversion of the request's window to CLOCK_BOOTTIME.
#include <gtest/gtest.h>

#include <limits>

#include "control_fixture.hpp"

using namespace gpugate;
using namespace gpugate::test::control;
using gpugate::test::TempDir;
namespace ta = gpugate::test::auth;

namespace {

void expect_has(const std::string& text, std::string_view want) {
  EXPECT_NE(text.find(want), std::string::npos) << "text: " << text << "\nwanted: " << want;
}

class GrantCheck : public ::testing::Test {
 protected:
  void SetUp() override { open_service(signers.config()); }
  void open_service(SignersConfig config) {
    service.reset();  // the nonce store is locked by whoever holds it
    GrantServiceOptions options;
    options.cgroups = fake_cgroups({{"/gpugate-exec/x", 4242}, {"/system.slice/train.service", 777}});
    auto s = GrantService::open((state.path / "nonces").string(), std::move(config), kHost, kNow, options);
    ASSERT_TRUE(s) << s.error().message;
    service.emplace(std::move(*s));
  }
  std::string nonce() { return service->issue_nonce(kNow)->nonce; }
  GrantDecision check(const std::string& text, std::initializer_list<const ta::SshKey*> who) {
    auto sigs = signers.sign(text, who);
    return service->check(text, sigs, devices, kNow, kBootNs);
  }

  Signers signers;
  TempDir state;
  DeviceTable devices = fake_devices();
  std::optional<GrantService> service;
};

}  // namespace

TEST_F(GrantCheck, TheScopeIsTheSignedOne) {
  struct Case {
    std::string scope;
    unsigned kind;
    uint64_t id;
    std::string path;
  } cases[] = {
      {"any", GG_SCOPE_ANY, 0, ""},
      {"uid=1000", GG_SCOPE_UID, 1000, ""},
      {"cgroup=/gpugate-exec/x", GG_SCOPE_CGROUP, 4242, "/gpugate-exec/x"},
      {"unit=train.service", GG_SCOPE_CGROUP, 777, "/system.slice/train.service"},
  };
  for (const auto& c : cases) {
    RequestSpec spec;
    spec.scope = c.scope;
    auto d = check(make_request(nonce(), spec), {&signers.alice});
    ASSERT_TRUE(d.ok()) << c.scope << ": " << d.error;
    EXPECT_TRUE(d.verified);
    EXPECT_TRUE(d.nonce_burned);
    EXPECT_EQ(d.accepted->grant.scope, c.kind) << c.scope;
    EXPECT_EQ(d.accepted->grant.scope_id, c.id) << c.scope;
    EXPECT_EQ(d.accepted->scope, c.scope);
    EXPECT_EQ(d.accepted->scope_path, c.path);
    EXPECT_EQ(d.accepted->device_paths, (std::vector<std::string>{"/dev/nvidia0", "/dev/nvidiactl"}));
  }
}

TEST_F(GrantCheck, ACgroupThatDoesNotExistIsRefusedWithTheReasonAndBurnsTheNonce) {
  RequestSpec spec;
  spec.scope = "cgroup=/gpugate-exec/missing";
  auto text = make_request(nonce(), spec);
  auto d = check(text, {&signers.alice});
  ASSERT_FALSE(d.ok());
  EXPECT_TRUE(d.verified);
  EXPECT_TRUE(d.nonce_burned);
  expect_has(d.error, "scope cgroup=/gpugate-exec/missing: cgroup /gpugate-exec/missing does not exist");
  expect_has(d.error, "nonce is spent");
  auto again = check(text, {&signers.alice});
  ASSERT_FALSE(again.ok());
  expect_has(again.error, "already used");
  EXPECT_FALSE(again.nonce_burned) << "it was burned before";

  spec.scope = "unit=other.service";
  auto unit = check(make_request(nonce(), spec), {&signers.alice});
  ASSERT_FALSE(unit.ok());
  expect_has(unit.error, "scope unit=other.service");
  expect_has(unit.error, "/system.slice/other.service");
  expect_has(unit.error, "systemctl show -p ControlGroup other.service");
}

TEST_F(GrantCheck, RefusalsBeforeTheSignaturesVerifiedKeepTheNonce) {
  std::string n = nonce();
  auto text = make_request(n, {});
  auto untrusted = check(text, {&signers.carol});
  ASSERT_FALSE(untrusted.ok());
  EXPECT_FALSE(untrusted.verified);
  EXPECT_FALSE(untrusted.nonce_burned);
  EXPECT_EQ(untrusted.nonce, n);
  expect_has(untrusted.error, "not authorized");
  auto bad_text = service->check("gpugate-request v1\n", {}, devices, kNow, kBootNs);
  EXPECT_FALSE(bad_text.ok());
  EXPECT_FALSE(bad_text.nonce_burned);
  // A request with a problem and no good signature is refused for the
  // problem, and keeps its nonce.
  RequestSpec gpu7;
  gpu7.gpu = "7";
  auto both = check(make_request(nonce(), gpu7), {&signers.carol});
  EXPECT_FALSE(both.verified);
  EXPECT_FALSE(both.nonce_burned);
  expect_has(both.error, "no watched GPU");
  expect_has(both.error, "not authorized either");
  auto good = check(text, {&signers.alice});
  EXPECT_TRUE(good.ok()) << "the nonce was kept: " << good.error;
}

TEST_F(GrantCheck, EveryRefusalAfterTheSignaturesVerifiedBurnsTheNonce) {
  struct Case {
    std::string what;
    RequestSpec spec;
    std::string expect;
  };
  RequestSpec gpu7, other_host, query, early, window, uses, format_uses;
  gpu7.gpu = "7";
  other_host.host = "0123456789abcdef0123456789abcdef";
  query.cls = "query";
  early.not_before = kNow + 60;
  window.not_before = kNow - 60;
  window.not_after = kNow - 60 + 7200;
  uses.params = {{"uses", "500"}};
  format_uses.params = {{"uses", "1001"}};
  std::vector<Case> cases = {
      {"GPU not found", gpu7, "no watched GPU goes by that index"},
      {"another host", other_host, "for host 0123456789abcdef0123456789abcdef, but this is host"},
      {"an ungated class", query, "gated classes only"},
      {"not yet valid", early, "not valid yet"},
      {"window over the cap", window,
       "the request's window is 2h (not-before 2026-11-28T09:39:00Z to not-after 2026-11-28T11:39:00Z); the "
       "built-in policy allows at most 1h (max_grant_window in [signers])"},
      {"uses over the cap", uses,
       "param uses=500: the built-in policy allows at most 100 uses per grant (max_grant_uses"},
      {"uses over the format's maximum", format_uses, "a grant allows 1 to 1000 commands"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    auto text = make_request(nonce(), c.spec);
    auto d = check(text, {&signers.alice});
    ASSERT_FALSE(d.ok());
    EXPECT_TRUE(d.verified);
    EXPECT_TRUE(d.nonce_burned);
    expect_has(d.error, c.expect);
    expect_has(d.error, "nonce is spent");
    auto replay = check(text, {&signers.alice});
    EXPECT_FALSE(replay.ok());
    expect_has(replay.error, "already used");
  }
}

TEST_F(GrantCheck, ThePolicysCapsApplyAndNameThemselves) {
  SignersConfig config = signers.config();
  config.max_grant_window = 600;
  config.max_grant_uses = 3;
  config.source = "/etc/gpugate/policy.toml";
  open_service(config);
  RequestSpec ok;
  ok.not_before = kNow - 60;
  ok.not_after = kNow + 540;  // exactly 10m
  ok.params = {{"uses", "3"}};
  auto d = check(make_request(nonce(), ok), {&signers.alice});
  ASSERT_TRUE(d.ok()) << d.error;
  EXPECT_EQ(d.accepted->grant.uses, 3);
  RequestSpec long_window = ok;
  long_window.not_after = kNow + 541;
  d = check(make_request(nonce(), long_window), {&signers.alice});
  ASSERT_FALSE(d.ok());
  expect_has(d.error, "policy /etc/gpugate/policy.toml allows at most 10m (max_grant_window");
  expect_has(d.error, "--valid-for 10m");
  RequestSpec many = ok;
  many.params = {{"uses", "4"}};
  d = check(make_request(nonce(), many), {&signers.alice});
  ASSERT_FALSE(d.ok());
  expect_has(d.error, "at most 3 uses per grant (max_grant_uses");
}

TEST_F(GrantCheck, BreakGlassBeyondItsRateBurnsTheNonce) {
  SignersConfig config = signers.config();
  config.groups = {{"thermal", {"bob@example.org"}, 1, true}};
  config.break_glass_per_hour = 1;
  open_service(config);
  auto first = check(make_request(nonce()), {&signers.bob});
  ASSERT_TRUE(first.ok()) << first.error;
  EXPECT_TRUE(first.accepted->break_glass);
  auto second = check(make_request(nonce()), {&signers.bob});
  ASSERT_FALSE(second.ok());
  EXPECT_TRUE(second.nonce_burned);
  expect_has(second.error, "break-glass refused");
}

TEST_F(GrantCheck, AnAllowedSignersFileBrokenAfterTheStartIsNamedAndKeepsTheNonce) {
  std::string n = nonce();
  auto text = make_request(n);
  auto sigs = signers.sign(text, {&signers.alice});
  ta::write_text(signers.allowed,
                 signers.alice.allowed_line("alice@example.org") + "bob@example.org ssh-ed25519 AAAA\n");
  auto d = service->check(text, sigs, devices, kNow, kBootNs);
  ASSERT_FALSE(d.ok());
  EXPECT_FALSE(d.nonce_burned);
  expect_has(d.error, signers.allowed + ":2:");
  expect_has(d.error, "changed since gpugated started");
  ta::write_text(signers.allowed, signers.alice.allowed_line("alice@example.org"));
  EXPECT_TRUE(service->check(text, sigs, devices, kNow, kBootNs).ok()) << "the nonce was kept";
}

// A bad line is an error when the service opens (gpugated's start), naming
// file:line and the fix; never a silent refusal of every later request.
TEST(GrantServiceOpen, ABadAllowedSignersLineIsAnErrorAtStart) {
  TempDir dir;
  auto& keys = ta::Keys::get();
  const auto& good = keys.key("ed25519", "alice");
  const auto& weak = keys.key("rsa1024");
  struct Case {
    std::string line;
    std::string expect;
  } cases[] = {
      {weak.allowed_line("weak@example.org"), "RSA key has 1024 bits; gpugate requires at least 2048"},
      {good.allowed_line("ca@example.org", "cert-authority"), "cert-authority is not supported"},
      {"x@example.org ssh-ed25519 AAAAnotakey\n", "the key's base64 is damaged"},
      {good.allowed_line("x@example.org", "valid-after=\"tomorrow\""), "valid-after="},
      {good.allowed_line("x@example.org", "permit-pty"), "unsupported option 'permit-pty'"},
      {"x@example.org\n", "only principals"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.line);
    std::string path = (dir.path / "allowed_signers").string();
    ta::write_text(path, good.allowed_line("alice@example.org") + c.line);
    SignersConfig config;
    config.allowed_signers = path;
    EXPECT_FALSE(check_allowed_signers(config));
    auto s = GrantService::open((dir.path / "nonces").string(), config, kHost, kNow);
    ASSERT_FALSE(s);
    expect_has(s.error().message, path + ":2: ");
    expect_has(s.error().message, c.expect);
  }
  SignersConfig missing;
  missing.allowed_signers = (dir.path / "nope").string();
  auto s = GrantService::open((dir.path / "nonces2").string(), missing, kHost, kNow);
  ASSERT_FALSE(s);
  expect_has(s.error().message, "cannot open allowed signers file");
  SignersConfig none;  // no signers at all: a daemon that refuses every request, and says so then
  EXPECT_TRUE(GrantService::open((dir.path / "nonces3").string(), none, kHost, kNow));
}

// Unix seconds to CLOCK_BOOTTIME: a not-before before the boot is 0, never
// a wrapped-around number; extreme values saturate.
TEST(BootTime, ConvertsWithoutUnderflowOrOverflow) {
  const uint64_t boot = 5'000'000'000ull;  // 5 s after boot at kNow
  EXPECT_EQ(unix_to_boot_ns(kNow, kNow, boot), boot);
  EXPECT_EQ(unix_to_boot_ns(kNow + 600, kNow, boot), boot + 600'000'000'000ull);
  EXPECT_EQ(unix_to_boot_ns(kNow - 5, kNow, boot), 0u) << "the boot itself";
  EXPECT_EQ(unix_to_boot_ns(kNow - 6, kNow, boot), 0u) << "before the boot: clamped";
  EXPECT_EQ(unix_to_boot_ns(kNow - 3600, kNow, boot), 0u);
  EXPECT_EQ(unix_to_boot_ns(0, kNow, boot), 0u);
  EXPECT_EQ(unix_to_boot_ns(std::numeric_limits<int64_t>::min(), kNow, boot), 0u);
  EXPECT_EQ(unix_to_boot_ns(std::numeric_limits<int64_t>::max(), kNow, boot), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(unix_to_boot_ns(kNow, std::numeric_limits<int64_t>::min(), 0), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(unix_to_boot_ns(253402300799, kNow, std::numeric_limits<uint64_t>::max()),
            std::numeric_limits<uint64_t>::max());
}

TEST_F(GrantCheck, ANotBeforeEarlierThanTheBootClampsToZero) {
  RequestSpec spec;
  spec.not_before = kNow - 30;  // the machine booted 5 s ago
  spec.not_after = kNow + 600;
  auto d = check(make_request(nonce(), spec), {&signers.alice});
  ASSERT_TRUE(d.ok()) << d.error;
  EXPECT_EQ(d.accepted->grant.not_before_ns, 0u);
  EXPECT_EQ(d.accepted->grant.not_after_ns, kBootNs + 600'000'000'000ull);
}
