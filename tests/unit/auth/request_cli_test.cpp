// gpugate request new|sign|verify as an operator and an investigator use
// them: real ssh-keygen keys, files on disk, exit statuses.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "auth_fixture.hpp"
#include "gpugate/hostinfo.hpp"
#include "gpugate/paths.hpp"

using namespace gpugate::test::auth;

namespace {

CommandResult gpugate_cli(const std::string& args) { return run_shell(std::string(GG_BIN_DIR) + "/gpugate " + args); }

void expect_has(const std::string& text, std::string_view want) {
  EXPECT_NE(text.find(want), std::string::npos) << "output: " << text << "\nwanted: " << want;
}

const char* kNewArgs =
    "request new --host 3d1219c7c4c5404aaa1f6d2a48adfda4 --gpu 0000:3b:00.0 --class power.limit "
    "--param power_limit_mw=250000 --not-before 2026-11-28T09:40:00Z --valid-for 10m "
    "--nonce 0123456789abcdef0123456789abcdef --requester alice@example.org --reason 'INC-1234 rack 7'";

// kNewArgs with one option's value replaced.
std::string new_args_with(const std::string& option, const std::string& value) {
  std::string args = kNewArgs;
  size_t at = args.find(option + " ");
  size_t value_end = args.find(" --", at + option.size() + 1);
  args.replace(at, value_end - at, option + " " + value);
  return args;
}

}  // namespace

TEST(RequestCli, HelpDocumentsExitStatuses) {
  auto r = gpugate_cli("request --help");
  EXPECT_EQ(r.status, 0);
  expect_has(r.output, "Exit status: 0 success");
  expect_has(r.output, "3 verify: authorized, but some signatures were");
  expect_has(gpugate_cli("--help").output, "request   signed authorizations");
}

TEST(RequestCli, NewWritesTheCanonicalText) {
  gpugate::test::TempDir dir;
  auto out = dir.path / "req.txt";
  auto r = gpugate_cli(std::string(kNewArgs) + " --param a_first=1 -o " + out.string());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(slurp(out),
            "gpugate-request v1\nhost: 3d1219c7c4c5404aaa1f6d2a48adfda4\ngpu: 0000:3b:00.0\nclass: power.limit\n"
            "param: a_first=1\nparam: power_limit_mw=250000\nscope: any\nnot-before: 2026-11-28T09:40:00Z\n"
            "not-after: 2026-11-28T09:50:00Z\nnonce: 0123456789abcdef0123456789abcdef\n"
            "requester: alice@example.org\nreason: INC-1234 rack 7\n");
  auto again = gpugate_cli(std::string(kNewArgs) + " -o " + out.string());
  EXPECT_EQ(again.status, 2);
  expect_has(again.output, "exists");
  auto stdout_form = gpugate_cli(kNewArgs);
  EXPECT_EQ(stdout_form.status, 0);
  expect_has(stdout_form.output, "gpugate-request v1\n");

  auto bad_gpu = gpugate_cli(new_args_with("--gpu", "3b:00.0"));
  EXPECT_EQ(bad_gpu.status, 2);
  expect_has(bad_gpu.output, "--gpu: PCI address '3b:00.0'");
  auto bad_class = gpugate_cli(new_args_with("--class", "power"));
  EXPECT_EQ(bad_class.status, 2);
  expect_has(bad_class.output, "--class: unknown class 'power'");
  auto bad_window = gpugate_cli(new_args_with("--valid-for", "10x"));
  EXPECT_EQ(bad_window.status, 2);
  expect_has(bad_window.output, "--valid-for: duration '10x'");
  auto both = gpugate_cli(std::string(kNewArgs) + " --not-after 2026-11-28T09:50:00Z");
  EXPECT_NE(both.status, 0);
  expect_has(both.output, "--not-after excludes --valid-for");
  auto twice = gpugate_cli(std::string(kNewArgs) + " --param power_limit_mw=1");
  EXPECT_EQ(twice.status, 2);
  expect_has(twice.output, "--param power_limit_mw is given twice");
}

// --scope: any by default (written out, so the signers read it), the four
// forms, and the command line's conveniences: exec, a user name, the mount
// point left out of a cgroup path.
TEST(RequestCli, NewWritesTheScope) {
  auto scope_of = [](const std::string& option) {
    auto r = gpugate_cli(std::string(kNewArgs) + (option.empty() ? "" : " --scope " + option));
    EXPECT_EQ(r.status, 0) << option << ": " << r.output;
    auto at = r.output.find("scope: ");
    return at == std::string::npos ? std::string() : r.output.substr(at, r.output.find('\n', at) - at);
  };
  EXPECT_EQ(scope_of(""), "scope: any");
  EXPECT_EQ(scope_of("uid=1000"), "scope: uid=1000");
  EXPECT_EQ(scope_of("uid=nobody"), "scope: uid=65534") << "a user name is looked up when the request is written";
  EXPECT_EQ(scope_of("unit=train.service"), "scope: unit=train.service");
  EXPECT_EQ(scope_of("cgroup=/system.slice/train.service"), "scope: cgroup=/system.slice/train.service");
  EXPECT_EQ(scope_of("cgroup=/sys/fs/cgroup/system.slice/train.service"), "scope: cgroup=/system.slice/train.service");
  EXPECT_EQ(scope_of("exec"), "scope: cgroup=/gpugate-exec/0123456789abcdef0123456789abcdef");

  auto no_user = gpugate_cli(std::string(kNewArgs) + " --scope uid=no-such-user-here");
  EXPECT_EQ(no_user.status, 2);
  expect_has(no_user.output, "--scope uid=no-such-user-here: no such user");
  EXPECT_EQ(scope_of("uid=root"), "scope: uid=0") << "root's own processes, by uid";
  auto bad = gpugate_cli(std::string(kNewArgs) + " --scope cgroup=train");
  EXPECT_EQ(bad.status, 2);
  expect_has(bad.output, "--scope: cgroup path 'train' does not start with '/'");
  auto exec_bad_nonce = gpugate_cli(new_args_with("--nonce", "xyz") + " --scope exec");
  EXPECT_EQ(exec_bad_nonce.status, 2);
  expect_has(exec_bad_nonce.output, "--scope exec");
}

// The host id gpugated uses: /etc/machine-id, or the one it keeps in its
// state directory where there is none (the guests).
TEST(RequestCli, DefaultHostIsThisMachine) {
  std::string host_id = gpugate::HostInfo::load(gpugate::paths::kStateDir).host_id;
  ASSERT_FALSE(host_id.empty());
  std::string args = kNewArgs;
  args.replace(args.find("--host 3d1219c7c4c5404aaa1f6d2a48adfda4 "), 40, "");
  auto r = gpugate_cli(args);
  ASSERT_EQ(r.status, 0) << r.output;
  expect_has(r.output, "host: " + host_id);
}

TEST(RequestCli, SignThenVerifyAsAnInvestigator) {
  auto& keys = Keys::get();
  const SshKey& alice = keys.key("ed25519", "alice");
  const SshKey& bob = keys.key("ecdsa256", "bob");
  gpugate::test::TempDir dir;
  std::string req = (dir.path / "req.txt").string();
  ASSERT_EQ(gpugate_cli(std::string(kNewArgs) + " -o " + req).status, 0);
  std::string allowed = (dir.path / "allowed_signers").string();
  write_text(allowed, alice.allowed_line("alice@example.org") + bob.allowed_line("bob@example.org"));

  auto signed_a = gpugate_cli("request sign " + req + " -f " + alice.path.string());
  ASSERT_EQ(signed_a.status, 0) << signed_a.output;
  expect_has(signed_a.output, "wrote " + req + ".sig (ED25519 key " + alice.key.fingerprint() + ")");
  expect_has(signed_a.output, "class      power.limit");
  auto clash = gpugate_cli("request sign " + req + " -f " + bob.path.string());
  EXPECT_EQ(clash.status, 2);
  expect_has(clash.output, "exists (another signer's signature?)");
  ASSERT_EQ(gpugate_cli("request sign " + req + " -f " + bob.path.string() + " -o " + req + ".bob.sig").status, 0);
  // Stock ssh-keygen agrees.
  auto stock = run_shell("ssh-keygen -Y verify -f " + allowed +
                         " -I alice@example.org -n gpugate-request@gpugate.dev -s " + req + ".sig < " + req);
  EXPECT_EQ(stock.status, 0) << stock.output;

  std::string common = " --allowed-signers " + allowed + " --at 2026-11-28T09:45:00Z";
  auto both = gpugate_cli("request verify " + req + " " + req + ".sig " + req + ".bob.sig" + common +
                          " --group oncall:2:alice@example.org,bob@example.org");
  EXPECT_EQ(both.status, 0) << both.output;
  expect_has(both.output, "AUTHORIZED");

  auto short_one = gpugate_cli("request verify " + req + " " + req + ".sig" + common +
                               " --group oncall:2:alice@example.org,bob@example.org");
  EXPECT_EQ(short_one.status, 1) << short_one.output;
  expect_has(short_one.output, "1 of 2, short by 1");

  auto late = gpugate_cli("request verify " + req + " " + req + ".sig --allowed-signers " + allowed +
                          " --at 2026-11-28T09:50:00Z");
  EXPECT_EQ(late.status, 1);
  expect_has(late.output, "NOT AUTHORIZED: the request expired at 2026-11-28T09:50:00Z");

  auto wrong_host = gpugate_cli("request verify " + req + " " + req + ".sig" + common + " --host other");
  EXPECT_EQ(wrong_host.status, 1);
  expect_has(wrong_host.output, "but this is host other");
  auto wrong_gpu = gpugate_cli("request verify " + req + " " + req + ".sig" + common +
                               " --gpu 1 --gpu GPU-00000000-0000-0000-0000-000000000000");
  EXPECT_EQ(wrong_gpu.status, 1);
  expect_has(wrong_gpu.output, "names GPU 0000:3b:00.0");

  // A stranger's signature next to a good one: authorized, exit 3, listed.
  const SshKey& stranger = keys.key("ed25519", "stranger");
  ASSERT_EQ(gpugate_cli("request sign " + req + " -f " + stranger.path.string() + " -o " + req + ".x.sig").status, 0);
  auto partly = gpugate_cli("request verify " + req + " " + req + ".sig " + req + ".x.sig" + common);
  EXPECT_EQ(partly.status, 3) << partly.output;
  expect_has(partly.output, "REJECTED: key " + stranger.key.fingerprint());

  auto json = gpugate_cli("request verify --json " + req + " " + req + ".sig " + req + ".bob.sig" + common +
                          " --group oncall:2:alice@example.org,bob@example.org");
  ASSERT_EQ(json.status, 0) << json.output;
  auto j = nlohmann::json::parse(json.output);
  EXPECT_TRUE(j["authorized"].get<bool>());
  EXPECT_EQ(j["request"]["params"]["power_limit_mw"], "250000");
  EXPECT_EQ(j["signatures"][1]["key"], bob.key.fingerprint());
  EXPECT_EQ(j["groups"][0]["credited"].size(), 2u);
  EXPECT_EQ(j["request_sha256"].get<std::string>().size(), 64u);

  // Changed after signing: every signature fails.
  write_text(req, slurp(req) + "x");
  auto changed = gpugate_cli("request verify " + req + " " + req + ".sig" + common);
  EXPECT_EQ(changed.status, 1);
  expect_has(changed.output, "does not match the signed bytes");

  auto bad_file = gpugate_cli("request verify " + req + " " + req + ".sig --allowed-signers /nonexistent");
  EXPECT_EQ(bad_file.status, 2);
  expect_has(bad_file.output, "--allowed-signers: cannot open /nonexistent");
}

TEST(RequestCli, SignRefusesAMalformedRequestAndWorksThroughTheAgent) {
  auto& keys = Keys::get();
  const SshKey& alice = keys.key("ed25519", "alice");
  gpugate::test::TempDir dir;
  std::string req = (dir.path / "req.txt").string();
  write_text(req, "gpugate-request v1\nhost: x\n");
  auto bad = gpugate_cli("request sign " + req + " -f " + alice.path.string());
  EXPECT_EQ(bad.status, 2);
  expect_has(bad.output, "field 'gpu' is missing");
  expect_has(bad.output, "refusing to sign");

  std::filesystem::remove(req);
  ASSERT_EQ(gpugate_cli(std::string(kNewArgs) + " -o " + req).status, 0);
  auto no_agent = run_shell("env -u SSH_AUTH_SOCK " + std::string(GG_BIN_DIR) + "/gpugate request sign " + req +
                            " -f " + alice.path.string() + ".pub");
  EXPECT_EQ(no_agent.status, 2);
  expect_has(no_agent.output, "SSH_AUTH_SOCK is not set");
  // ssh-agent runs the command with the agent's environment and exits with it.
  auto agent = run_shell("ssh-agent sh -c 'ssh-add -q " + alice.path.string() + " && " + GG_BIN_DIR +
                         "/gpugate request sign " + req + " -f " + alice.path.string() + ".pub'");
  ASSERT_EQ(agent.status, 0) << agent.output;
  auto sig = gpugate::auth::parse_sshsig(slurp(req + ".sig"));
  ASSERT_TRUE(sig);
  EXPECT_EQ(sig->key, alice.key);
}
