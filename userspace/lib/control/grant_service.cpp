#include "gpugate/grant_service.hpp"

#include <algorithm>
#include <fstream>

#include <fmt/format.h>

#include "gpugate/decode.hpp"

namespace gpugate {
namespace {

constexpr int64_t kMaxUses = 1000;

// "GPU UUID:  GPU-..." from the NVIDIA driver's per-GPU information file.
std::string nvidia_uuid(const std::string& proc_root, const std::string& pci) {
  std::ifstream in(proc_root + "/driver/nvidia/gpus/" + pci + "/information");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("GPU UUID:", 0) != 0) continue;
    auto v = line.substr(9);
    v.erase(0, v.find_first_not_of(" \t"));
    return v;
  }
  return {};
}

}  // namespace

std::vector<std::string> gpu_names(const Device& d, const std::string& proc_root) {
  std::vector<std::string> names;
  bool gpu_node = d.info.kind == GG_DEV_NVIDIA_GPU || d.info.kind == GG_DEV_DRM;
  if (gpu_node && d.info.gpu_index >= 0) names.push_back(std::to_string(d.info.gpu_index));
  if (!d.pci.empty()) {
    names.push_back(d.pci);
    if (d.info.vendor == GG_VENDOR_NVIDIA)
      if (auto uuid = nvidia_uuid(proc_root, d.pci); !uuid.empty()) names.push_back(uuid);
  }
  return names;
}

Result<std::vector<const Device*>> grant_nodes(const DeviceTable& devices, std::string_view gpu,
                                               std::vector<std::string>* names) {
  std::vector<const Device*> nodes;
  bool nvidia = false;
  for (const auto& d : devices.devices()) {
    auto n = gpu_names(d);
    if (std::find(n.begin(), n.end(), gpu) == n.end()) continue;
    nodes.push_back(&d);
    nvidia |= d.info.vendor == GG_VENDOR_NVIDIA;
    if (names) names->insert(names->end(), n.begin(), n.end());
  }
  if (nodes.empty())
    return make_error(
        fmt::format("GPU {:?}: no watched GPU goes by that index, PCI address or UUID on this host; "
                    "gpugate devices lists them",
                    gpu));
  if (nvidia)
    for (const auto& d : devices.devices())
      if (d.info.kind == GG_DEV_NVIDIA_CTL) nodes.push_back(&d);
  return nodes;
}

Result<GrantService> GrantService::open(const std::string& nonce_path, SignersConfig signers, std::string host_id,
                                        int64_t now) {
  auto store = auth::NonceStore::open(nonce_path, now);
  if (!store) return store.error();
  for (const auto& g : signers.groups)
    if (auto v = auth::validate_signer_group(g); !v) return v.error();
  return GrantService(std::move(*store), std::move(signers), std::move(host_id));
}

Result<AcceptedRequest> GrantService::check(std::string_view request_text,
                                            std::span<const auth::SignatureInput> signatures,
                                            const DeviceTable& devices, uint64_t cgroup_id, int64_t now_unix,
                                            uint64_t now_boot_ns) {
  if (signers_.allowed_signers.empty())
    return make_error(
        "this gpugated accepts no signed requests: its policy names no signers; add [signers] allowed_signers = "
        "\"/etc/gpugate/allowed_signers\" to the policy and restart it");
  auto req = auth::parse_request(request_text, "request");
  if (!req) return req.error();
  std::vector<std::string> names;
  auto nodes = grant_nodes(devices, req->gpu, &names);
  if (!nodes) return nodes.error();
  if (auto scope = auth::check_request_scope(*req, host_id_, names, now_unix); !scope) return scope.error();
  auto cls = class_from_name(req->class_name);
  if (!cls || !class_gated_by_default(*cls))
    return make_error(
        fmt::format("class {:?}: grants exist for the gated classes only (power.off, power.limit, "
                    "clock.limit, perf.state, gpu.reset, bar.map)",
                    req->class_name));
  int64_t uses = 1;
  AcceptedRequest out;
  for (const auto& p : req->params) {
    if (p.name != "uses") {
      // A parameter the decoder names unambiguously is checked by the gate;
      // the others (a power limit in mW inside an opaque control) are signed
      // and recorded only.
      auto refs = key_param_refs(p.name);
      if (refs.size() != 1) continue;
      if (!out.checked_param.empty())
        return make_error(
            fmt::format("params {} and {}: the gate checks one parameter per grant; sign one request "
                        "per parameter value",
                        out.checked_param, p.name + "=" + p.value));
      uint64_t v = 0;
      size_t used = 0;
      try {
        v = std::stoull(p.value, &used, 0);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != p.value.size() || p.value.empty() || p.value[0] == '-')
        return make_error(
            fmt::format("param {}={}: the gate compares it as a number (decimal or 0x hex); fix the "
                        "request",
                        p.name, p.value));
      out.grant.pkind = refs[0].pkind;
      out.grant.key_index = refs[0].index;
      out.grant.key_value = v;
      out.checked_param = p.name + "=" + p.value;
      continue;
    }
    try {
      size_t used = 0;
      uses = std::stoll(p.value, &used);
      if (used != p.value.size()) uses = 0;
    } catch (const std::exception&) {
      uses = 0;
    }
    if (uses < 1 || uses > kMaxUses)
      return make_error(
          fmt::format("param uses={}: a grant allows 1 to {} commands; fix the request", p.value, kMaxUses));
  }

  auto signers = auth::AllowedSigners::load(signers_.allowed_signers);
  if (!signers) return signers.error();
  auto authz =
      auth::authorize(request_text, signatures, *signers, auth::kSignatureNamespace, now_unix, signers_.groups);
  if (!authz.quorum_met) return make_error(fmt::format("not authorized: {}", authz.summary()));
  if (const auto* g = authz.authorizing_group()) {
    out.group = g->name;
    out.break_glass = g->break_glass;
  }
  if (out.break_glass) {
    std::erase_if(break_glass_times_, [&](int64_t t) { return t <= now_unix - 3600; });
    if (break_glass_times_.size() >= signers_.break_glass_per_hour)
      return make_error(
          fmt::format("break-glass refused: {} break-glass grant(s) in the last hour, the policy allows "
                      "{} (signers.break_glass_per_hour); have the regular signers sign instead",
                      break_glass_times_.size(), signers_.break_glass_per_hour));
  }
  if (auto used = nonces_.consume(req->nonce, now_unix); !used) return used.error();
  if (out.break_glass) break_glass_times_.push_back(now_unix);

  auto to_boot = [&](int64_t unix_s) -> uint64_t {
    int64_t delta_ns = (unix_s - now_unix) * 1'000'000'000;
    int64_t boot = static_cast<int64_t>(now_boot_ns) + delta_ns;
    return boot < 0 ? 0 : static_cast<uint64_t>(boot);
  };
  out.grant.cls = *cls;
  out.grant.not_before_ns = to_boot(req->not_before);
  out.grant.not_after_ns = to_boot(req->not_after);
  out.grant.uses = uses;
  out.grant.scope = cgroup_id ? GG_SCOPE_CGROUP : GG_SCOPE_ANY;
  out.grant.scope_id = cgroup_id;
  for (const auto* d : *nodes) {
    out.grant.devs.push_back(d->dev);
    out.device_paths.push_back(d->path);
  }
  out.request = std::move(*req);
  out.request_text = std::string(request_text);
  out.authorization = std::move(authz);
  return out;
}

}  // namespace gpugate
