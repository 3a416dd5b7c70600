// Test helpers for the daemon's grant path without a kernel: fake GPU
// nodes, a grant store and an event record in memory, real ssh-keygen keys
// in an allowed_signers file, requests made and signed on the spot. Every
// time is injected.
#pragma once

#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "auth_fixture.hpp"
#include "gpugate/control_service.hpp"
#include "gpugate/grant_service.hpp"
#include "gpugate/request.hpp"

namespace gpugate::test::control {

inline constexpr int64_t kNow = 1795858800;            // 2026-11-28T09:40:00Z
inline constexpr uint64_t kBootNs = 5'000'000'000ull;  // booted 5 s before kNow
inline const std::string kHost = "3d1219c7c4c5404aaa1f6d2a48adfda4";

// /dev/nvidia0 (GPU 0) and /dev/nvidiactl, as discovery would list them.
inline DeviceTable fake_devices() {
  DeviceTable t;
  Device gpu;
  gpu.path = "/dev/nvidia0";
  gpu.dev = kernel_dev(195, 0);
  gpu.info.kind = GG_DEV_NVIDIA_GPU;
  gpu.info.vendor = GG_VENDOR_NVIDIA;
  gpu.info.gpu_index = 0;
  t.add(gpu);
  Device ctl;
  ctl.path = "/dev/nvidiactl";
  ctl.dev = kernel_dev(195, 255);
  ctl.info.kind = GG_DEV_NVIDIA_CTL;
  ctl.info.vendor = GG_VENDOR_NVIDIA;
  ctl.info.gpu_index = -1;
  t.add(ctl);
  return t;
}

class FakeStore final : public GrantStore {
 public:
  Result<uint32_t> install(const Grant& g) override {
    if (fail_install) return make_error("grant map full (the fake says so)");
    Grant copy = g;
    copy.id = next_id++;
    grants.push_back(copy);
    return copy.id;
  }
  Result<void> revoke(uint32_t id) override {
    auto n = std::erase_if(grants, [&](const Grant& g) { return g.id == id; });
    if (!n) return make_error(fmt::format("no grant {}", id));
    return {};
  }
  Result<std::vector<Grant>> list() const override {
    if (throw_on_list) throw std::runtime_error("the fake store throws");
    return grants;
  }
  std::vector<Grant> grants;
  uint32_t next_id = 1;
  bool fail_install = false;
  bool throw_on_list = false;
};

class RecordingSink final : public EventSink {
 public:
  void record(const std::string& type, nlohmann::ordered_json body) override {
    records.emplace_back(type, std::move(body));
  }
  std::vector<nlohmann::ordered_json> of_type(const std::string& type) const {
    std::vector<nlohmann::ordered_json> out;
    for (const auto& [t, b] : records)
      if (t == type) out.push_back(b);
    return out;
  }
  std::vector<std::pair<std::string, nlohmann::ordered_json>> records;
};

// An allowed_signers file that trusts alice (ed25519) and bob (ECDSA); carol's
// key is in nobody's file.
struct Signers {
  Signers() {
    auth::write_text(allowed, alice.allowed_line("alice@example.org") + bob.allowed_line("bob@example.org"));
  }
  TempDir dir;
  std::string allowed = (dir.path / "allowed_signers").string();
  const auth::SshKey& alice = auth::Keys::get().key("ed25519", "alice");
  const auth::SshKey& bob = auth::Keys::get().key("ecdsa256", "bob");
  const auth::SshKey& carol = auth::Keys::get().key("ed25519", "carol");

  SignersConfig config() const {
    SignersConfig c;
    c.allowed_signers = allowed;
    return c;
  }
  std::vector<gpugate::auth::SignatureInput> sign(const std::string& text,
                                                  std::initializer_list<const auth::SshKey*> who) const {
    std::vector<gpugate::auth::SignatureInput> out;
    for (const auto* k : who) out.push_back({k->name, auth::Keys::get().sign(*k, text)});
    return out;
  }
};

// Known cgroups, as the daemon would find them under /sys/fs/cgroup.
inline CgroupResolver fake_cgroups(std::map<std::string, uint64_t> known) {
  return [known = std::move(known)](const std::string& path) -> Result<uint64_t> {
    auto it = known.find(path);
    if (it == known.end()) return make_error(fmt::format("cgroup {} does not exist here (the fake's tree)", path));
    return it->second;
  };
}

struct RequestSpec {
  std::string scope = "any";
  std::string cls = "power.off";
  std::string gpu = "0";
  std::string host = kHost;
  int64_t not_before = kNow - 60;
  int64_t not_after = kNow + 600;
  std::vector<gpugate::auth::RequestParam> params;
};

inline std::string make_request(const std::string& nonce, const RequestSpec& s = {}) {
  gpugate::auth::AuthRequest r;
  r.host = s.host;
  r.gpu = s.gpu;
  r.class_name = s.cls;
  r.params = s.params;
  auto scope = gpugate::auth::parse_scope(s.scope);
  if (!scope) throw std::runtime_error(scope.error().message);
  r.scope = *scope;
  r.not_before = s.not_before;
  r.not_after = s.not_after;
  r.nonce = nonce;
  r.requester = "alice@example.org";
  r.reason = "INC-1 test";
  if (auto v = gpugate::auth::validate_request(r); !v) throw std::runtime_error(v.error().message);
  return gpugate::auth::render_request(r);
}

}  // namespace gpugate::test::control
