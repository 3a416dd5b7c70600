// A signed request through gpugated's control socket, as an operator makes
// one: stock ssh-keygen keys and signatures, the gpugate CLI for the rest.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "process.hpp"

namespace gpugate::test {

struct Signer {
  std::filesystem::path dir;
  std::string ns = "gpugate-request@gpugate.dev";

  [[nodiscard]] std::string p(const std::string& name) const { return (dir / name).string(); }

  // alice's key, allowed_signers and a policy naming it (policy.toml).
  void setup() const {
    auto step = run_shell("ssh-keygen -q -t ed25519 -N '' -C alice -f " + p("alice"));
    ASSERT_EQ(step.status, 0) << step.output;
    std::string pub = slurp(p("alice.pub"));
    std::ofstream(p("allowed_signers")) << "alice@example.org namespaces=\"" << ns << "\" "
                                        << pub.substr(0, pub.rfind(' ')) << "\n";
    std::ofstream(p("policy.toml")) << "version = 1\n[signers]\nallowed_signers = \"" << p("allowed_signers") << "\"\n";
  }

  // A nonce, the request (request new ARGS), alice's signature, submit.
  void grant(const std::string& bin, const std::string& socket, const std::string& args) const {
    auto step = run_shell(bin + "/gpugate request nonce --json --socket " + socket);
    ASSERT_EQ(step.status, 0) << step.output;
    auto issued = nlohmann::json::parse(step.output);
    std::string nonce = issued["nonce"], host = issued["host"];
    step = run_shell(bin + "/gpugate request new --host " + host + " " + args + " --valid-for 5m --nonce " + nonce +
                     " --requester alice@example.org --reason 'INC-7 cap' -o " + p("req"));
    ASSERT_EQ(step.status, 0) << step.output;
    step = run_shell("ssh-keygen -Y sign -n " + ns + " -f " + p("alice") + " " + p("req"));
    ASSERT_EQ(step.status, 0) << step.output;
    step = run_shell(bin + "/gpugate request submit --socket " + socket + " " + p("req") + " " + p("req.sig"));
    ASSERT_EQ(step.status, 0) << step.output;
  }
};

}  // namespace gpugate::test
