// Signed requests end to end on this kernel: ssh-keygen keys and signatures,
// gpugated's control socket, grants in the BPF maps, the records that show
// which grant allowed what, and every refusal recorded. The gate cannot load
// on this host's kernel (observe mode), so the records' grant ids show what
// the grants covered; the guest suite shows the same grants unblocking EPERM.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "gpugate/control.hpp"
#include "ledger_read.hpp"
#include "process.hpp"
#include "tempdir.hpp"

using namespace std::chrono_literals;
using gpugate::test::CommandResult;
using gpugate::test::ledger_records;
using gpugate::test::run_shell;
using gpugate::test::slurp;
using gpugate::test::spawn;
using gpugate::test::TempDir;
using gpugate::test::wait_exit;

namespace {

const std::string kBin = GG_BIN_DIR;
const std::string kAlias = "/dev/kmsg";  // stands in for /dev/nvidia0
const std::string kNamespace = "gpugate-request@gpugate.dev";

class Authorization : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(geteuid(), 0u) << "host tests need root";
    std::string allowed;
    for (const char* who : {"alice", "bob", "carol", "thermal"}) {
      ASSERT_EQ(run_shell("ssh-keygen -q -t ed25519 -N '' -C " + std::string(who) + " -f " + path(who)).status, 0);
      if (std::string(who) == "carol") continue;  // a key nobody trusts
      allowed += std::string(who) + "@example.org namespaces=\"" + kNamespace + "\" " +
                 slurp(path(who) + ".pub").substr(0, slurp(path(who) + ".pub").rfind(' ')) + "\n";
    }
    std::ofstream(path("allowed_signers")) << allowed;
    std::ofstream(path("policy.toml"))
        << "version = 1\n[signers]\nallowed_signers = \"" << path("allowed_signers")
        << "\"\nbreak_glass_per_hour = 1\n"
           "[[signers.groups]]\nname = \"oncall\"\nprincipals = [\"alice@example.org\", \"bob@example.org\"]\n"
           "threshold = 2\n"
           "[[signers.groups]]\nname = \"thermal\"\nprincipals = [\"thermal@example.org\"]\nthreshold = 1\n"
           "break_glass = true\n";
    start();
  }
  void TearDown() override { stop(); }

  std::string path(const std::string& name) const { return dir.path / name; }
  std::string socket() const { return path("ctl.sock"); }

  CommandResult cli(const std::string& args) { return run_shell(kBin + "/gpugate " + args); }

  void start() {
    std::filesystem::remove(path("status.json"));
    daemon = spawn({kBin + "/gpugated", "--no-discover", "--device", kAlias + "=nvidia0", "--ledger", path("ledger"),
                    "--state-dir", dir.path, "--status-file", path("status.json"), "--control-socket", socket(),
                    "--policy", path("policy.toml"), "--no-pin"},
                   path("daemon.out"));
    for (int i = 0; i < 400 && slurp(path("status.json")).find("\"running\"") == std::string::npos; i++)
      std::this_thread::sleep_for(25ms);
    ASSERT_NE(slurp(path("status.json")).find("\"running\""), std::string::npos) << slurp(path("daemon.out"));
  }
  void stop() {
    if (daemon <= 0) return;
    kill(daemon, SIGTERM);
    EXPECT_EQ(wait_exit(daemon), 0) << slurp(path("daemon.out"));
    daemon = -1;
  }

  // A fresh request from the daemon's nonce; returns its file name.
  std::string request(const std::string& name, const std::string& cls, const std::string& extra = "") {
    auto nonce = cli("request nonce --json --socket " + socket());
    EXPECT_EQ(nonce.status, 0) << nonce.output;
    auto issued = nlohmann::json::parse(nonce.output);
    // The daemon's host id (from its state dir where /etc/machine-id is missing, as in the guests).
    std::string n = issued["nonce"];
    std::string host = extra.find("--host") == std::string::npos ? " --host " + issued["host"].get<std::string>() : "";
    auto r = cli("request new --gpu 0 --class " + cls + host + " --valid-for 10m --nonce " + n +
                 " --requester alice@example.org --reason 'INC-1 test' " + extra + " -o " + path(name));
    EXPECT_EQ(r.status, 0) << r.output;
    return path(name);
  }
  std::string sign(const std::string& req, const std::string& who) {
    auto r = run_shell("ssh-keygen -Y sign -n " + kNamespace + " -f " + path(who) + " " + req);
    EXPECT_EQ(r.status, 0) << r.output;
    std::string sig = req + "." + who + ".sig";
    std::filesystem::rename(req + ".sig", sig);
    return sig;
  }
  CommandResult submit(const std::string& req, const std::vector<std::string>& sigs) {
    std::string args = "request submit --json --socket " + socket() + " " + req;
    for (const auto& s : sigs) args += " " + s;
    return cli(args);
  }
  std::vector<nlohmann::json> records(const std::string& type) {
    std::this_thread::sleep_for(300ms);
    return ledger_records(path("ledger"), type);
  }

  TempDir dir;
  pid_t daemon = -1;
};

}  // namespace

TEST_F(Authorization, AQuorumOfTrustedKeysGetsAScopedSingleUseGrant) {
  auto req = request("req1", "power.off");
  auto alice = sign(req, "alice");
  auto r = submit(req, {alice});
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("short by 1"), std::string::npos) << r.output;
  r = submit(req, {alice, alice});
  EXPECT_EQ(r.status, 1) << "the same key twice counts once: " << r.output;
  auto carol = sign(req, "carol");
  r = submit(req, {alice, carol});
  EXPECT_EQ(r.status, 1) << "an untrusted key does not count: " << r.output;

  auto bob = sign(req, "bob");
  r = submit(req, {alice, bob});
  ASSERT_EQ(r.status, 0) << r.output;
  auto answer = nlohmann::json::parse(r.output);
  uint32_t id = answer["grant_id"];
  EXPECT_EQ(answer["devices"], nlohmann::json::array({kAlias}));

  r = submit(req, {alice, bob});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("already used"), std::string::npos) << "a replay: " << r.output;

  auto list = cli("grants --json --socket " + socket());
  ASSERT_EQ(list.status, 0) << list.output;
  auto grants = nlohmann::json::parse(list.output);
  ASSERT_EQ(grants.size(), 1u);
  EXPECT_EQ(grants[0]["id"], id);
  EXPECT_EQ(grants[0]["uses_left"], 1);
  EXPECT_EQ(grants[0]["class"], "power.off");

  // One GPU_SET_POWER: it takes the grant's one use, the next one finds none.
  ASSERT_EQ(run_shell(kBin + "/gpugate-nvclient " + kAlias + " loop 2").status, 0);
  std::this_thread::sleep_for(1500ms);  // the daemon's tick drops the spent grant
  std::vector<nlohmann::json> mine;
  for (const auto& rec : records("ioctl"))
    if (rec["decoded"]["class"] == "power.off") mine.push_back(rec);
  ASSERT_EQ(mine.size(), 2u);
  EXPECT_EQ(mine[0]["grant"]["id"], id);
  EXPECT_TRUE(mine[1]["grant"].is_null());
  auto installed = records("grant.installed");
  ASSERT_EQ(installed.size(), 1u);
  EXPECT_EQ(installed[0]["group"], "oncall");
  EXPECT_EQ(installed[0]["keys"].size(), 2u);
  EXPECT_EQ(installed[0]["request"], slurp(req)) << "the exact bytes, for offline re-verification";
  EXPECT_EQ(installed[0]["signatures"].size(), 2u);
  EXPECT_GE(records("grant.refused").size(), 4u) << "every refusal is recorded";
  auto ended = records("grant.ended");
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0]["reason"], "uses spent");

  // An investigator re-verifies the recorded request offline.
  std::ofstream(path("recorded.req")) << installed[0]["request"].get<std::string>();
  std::ofstream(path("recorded.a.sig")) << installed[0]["signatures"][0].get<std::string>();
  std::ofstream(path("recorded.b.sig")) << installed[0]["signatures"][1].get<std::string>();
  auto verify =
      cli("request verify " + path("recorded.req") + " " + path("recorded.a.sig") + " " + path("recorded.b.sig") +
          " --allowed-signers " + path("allowed_signers") + " --group oncall:2:alice@example.org,bob@example.org");
  EXPECT_EQ(verify.status, 0) << verify.output;

  // The nonce store outlives the daemon: the replay is refused after a restart too.
  stop();
  start();
  r = submit(req, {alice, bob});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("already used"), std::string::npos) << r.output;
}

TEST_F(Authorization, RequestsForAnotherHostOrGpuAreRefused) {
  auto other_host = request("host", "power.limit", "--host 0123456789abcdef0123456789abcdef");
  auto r = submit(other_host, {sign(other_host, "alice"), sign(other_host, "bob")});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("host"), std::string::npos) << r.output;

  auto issued = nlohmann::json::parse(cli("request nonce --json --socket " + socket()).output);
  ASSERT_EQ(cli("request new --gpu 7 --class power.limit --nonce " + issued["nonce"].get<std::string>() + " --host " +
                issued["host"].get<std::string>() + " --requester a@b --reason x -o " + path("gpu7"))
                .status,
            0);
  r = submit(path("gpu7"), {sign(path("gpu7"), "alice"), sign(path("gpu7"), "bob")});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("no watched GPU"), std::string::npos) << r.output;

  auto query = request("query", "query");
  r = submit(query, {sign(query, "alice"), sign(query, "bob")});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("gated classes only"), std::string::npos) << r.output;
}

TEST_F(Authorization, BreakGlassIsRateLimitedAndLoud) {
  auto first = request("bg1", "power.limit");
  auto r = submit(first, {sign(first, "thermal")});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(nlohmann::json::parse(r.output)["break_glass"], true);
  auto second = request("bg2", "power.limit");
  r = submit(second, {sign(second, "thermal")});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("break-glass refused"), std::string::npos) << r.output;
  auto loud = records("grant.break_glass");
  ASSERT_EQ(loud.size(), 1u);
  EXPECT_EQ(loud[0]["group"], "thermal");
}

TEST_F(Authorization, OnlyRootOrTheControlGroupMayUseTheSocket) {
  pid_t child = fork();
  if (child == 0) {
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
    auto a = gpugate::control_call(socket(), {{"op", "nonce"}});
    _exit(a.ok() && (*a)["ok"] == true ? 1 : 0);  // refused, or not even connected (socket mode 0660)
  }
  EXPECT_EQ(wait_exit(child), 0);
  auto ok = gpugate::control_call(socket(), {{"op", "ping"}});
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ((*ok)["ok"], true);
  struct stat st {};
  ASSERT_EQ(stat(socket().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
}

TEST_F(Authorization, ExecScopesTheGrantToTheCommandsCgroup) {
  auto req = request("exec", "power.off", "--param uses=5");
  auto a = sign(req, "alice"), b = sign(req, "bob");
  ASSERT_EQ(run_shell(kBin + "/gpugate-nvclient " + kAlias + " loop 1").status, 0);  // outside: no grant
  auto r = cli("exec --socket " + socket() + " --request " + req + " --sig " + a + " --sig " + b + " -- " + kBin +
               "/gpugate-nvclient " + kAlias + " loop 1");
  ASSERT_EQ(r.status, 0) << r.output;
  ASSERT_EQ(run_shell(kBin + "/gpugate-nvclient " + kAlias + " loop 1").status, 0);  // after: revoked
  std::vector<nlohmann::json> calls;
  for (const auto& rec : records("ioctl"))
    if (rec["decoded"]["class"] == "power.off") calls.push_back(rec);
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_TRUE(calls[0]["grant"].is_null()) << calls[0].dump();
  EXPECT_FALSE(calls[1]["grant"].is_null()) << "inside gpugate exec: " << calls[1].dump();
  EXPECT_TRUE(calls[2]["grant"].is_null()) << calls[2].dump();
  auto installed = records("grant.installed");
  ASSERT_EQ(installed.size(), 1u);
  EXPECT_GT(installed[0]["cgroup_id"].get<uint64_t>(), 1u);
  EXPECT_EQ(records("grant.revoked").size(), 1u);
}

// A signed parameter the decoder names (GPU_SET_POWER's newLevel) is checked
// by the kernel: a call with another value does not take the grant.
TEST_F(Authorization, ASignedParameterValueIsCheckedByTheGate) {
  auto req = request("level", "power.off", "--param newlevel=5 --param uses=3");
  auto r = submit(req, {sign(req, "alice"), sign(req, "bob")});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(nlohmann::json::parse(r.output)["param_checked"], "newlevel=5");
  ASSERT_EQ(run_shell(kBin + "/gpugate-nvclient " + kAlias + " loop 1").status, 0);  // GPU_SET_POWER newLevel=4
  std::vector<nlohmann::json> calls;
  for (const auto& rec : records("ioctl"))
    if (rec["decoded"]["class"] == "power.off") calls.push_back(rec);
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0]["decoded"]["params"]["newLevel"], 4);
  EXPECT_TRUE(calls[0]["grant"].is_null()) << "newLevel=4 is not what was signed: " << calls[0].dump();
  auto installed = records("grant.installed");
  ASSERT_EQ(installed.size(), 1u);
  EXPECT_EQ(installed[0]["param_checked"], "newlevel=5");
}
