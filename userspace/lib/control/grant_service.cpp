#include "gpugate/grant_service.hpp"

#include <sys/stat.h>
#include <sys/statfs.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>

#include <fmt/format.h>

#include "gpugate/decode.hpp"

namespace gpugate {
namespace {

constexpr long kCgroup2Magic = 0x63677270;

std::string policy_name(const SignersConfig& s) {
  return s.source == "built-in" ? std::string("the built-in policy") : fmt::format("policy {}", s.source);
}

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

uint64_t unix_to_boot_ns(int64_t unix_s, int64_t now_unix_s, uint64_t now_boot_ns) {
  __int128 delta_ns = (static_cast<__int128>(unix_s) - now_unix_s) * 1'000'000'000;
  __int128 boot = static_cast<__int128>(now_boot_ns) + delta_ns;
  if (boot < 0) return 0;
  if (boot > static_cast<__int128>(std::numeric_limits<uint64_t>::max())) return std::numeric_limits<uint64_t>::max();
  return static_cast<uint64_t>(boot);
}

Result<uint64_t> resolve_cgroup(const std::string& path, const std::string& root) {
  std::string dir = root + path;
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0)
    return make_error(fmt::format("cgroup {} does not exist here ({}: {})", path, dir, std::strerror(errno)), errno);
  struct statfs fs {};
  if (!S_ISDIR(st.st_mode) || ::statfs(dir.c_str(), &fs) != 0 || fs.f_type != kCgroup2Magic)
    return make_error(fmt::format("{} is not a cgroup v2 directory", dir), ENOTDIR);
  return static_cast<uint64_t>(st.st_ino);  // a cgroup v2 id is its directory's inode number
}

Result<GrantService> GrantService::open(const std::string& nonce_path, SignersConfig signers, std::string host_id,
                                        int64_t now, const GrantServiceOptions& options) {
  for (const auto& g : signers.groups)
    if (auto v = auth::validate_signer_group(g); !v) return v.error();
  if (auto file = check_allowed_signers(signers); !file) return file.error();
  auto store = auth::NonceStore::open(nonce_path, now, options.nonces);
  if (!store) return store.error();
  CgroupResolver cgroups = options.cgroups;
  if (!cgroups) cgroups = [](const std::string& path) { return resolve_cgroup(path); };
  return GrantService(std::move(*store), std::move(signers), std::move(host_id), std::move(cgroups));
}

std::optional<std::string> GrantService::check_request(const auth::AuthRequest& req, const DeviceTable& devices,
                                                       int64_t now_unix, AcceptedRequest& out) {
  // Host first (a request for another machine names GPUs of that machine),
  // then the GPU, then the window.
  std::vector<std::string> names;
  auto nodes = grant_nodes(devices, req.gpu, &names);
  // The GPU on the PCI bus it names (by address or UUID, or through one of
  // its nodes): the grant covers its knobs too (GG_PCI_DEV).
  const PciGpu* pci = nullptr;
  for (const auto& g : devices.gpus()) {
    bool named = g.address == req.gpu || (!g.uuid.empty() && g.uuid == req.gpu);
    if (nodes)
      for (const auto* d : *nodes) named = named || d->pci == g.address;
    if (named) {
      pci = &g;
      break;
    }
  }
  if (!nodes && pci) {
    nodes = std::vector<const Device*>{};
    names.push_back(pci->address);
    if (!pci->uuid.empty()) names.push_back(pci->uuid);
  }
  auto target = auth::check_request_scope(req, host_id_, names, now_unix);
  if (req.host != host_id_) return target.error().message;
  if (!nodes) return nodes.error().message;
  if (!target) return target.error().message;
  auto cls = class_from_name(req.class_name);
  if (!cls || !class_gated_by_default(*cls))
    return fmt::format(
        "class {:?}: grants exist for the gated classes only (power.off, power.limit, clock.limit, perf.state, "
        "gpu.reset, bar.map)",
        req.class_name);
  int64_t uses = 1;
  for (const auto& p : req.params) {
    if (p.name != "uses") {
      // A parameter the decoder names unambiguously is checked by the gate;
      // the others (a power limit in mW inside an opaque control) are signed
      // and recorded only.
      auto refs = key_param_refs(p.name);
      if (refs.size() != 1) continue;
      if (!out.checked_param.empty())
        return fmt::format(
            "params {} and {}: the gate checks one parameter per grant; sign one request per parameter value",
            out.checked_param, p.name + "=" + p.value);
      uint64_t v = 0;
      size_t used = 0;
      try {
        v = std::stoull(p.value, &used, 0);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != p.value.size() || p.value.empty() || p.value[0] == '-')
        return fmt::format("param {}={}: the gate compares it as a number (decimal or 0x hex); fix the request", p.name,
                           p.value);
      out.grant.pkind = refs[0].pkind;
      out.grant.key_index = refs[0].index;
      out.grant.key_value = v;
      out.checked_param = p.name + "=" + p.value;
      continue;
    }
    try {
      size_t used = 0;
      uses = std::stoll(p.value, &used);
      if (used != p.value.size() || p.value[0] == '+') uses = 0;
    } catch (const std::exception&) {
      uses = 0;
    }
    if (uses < 1 || uses > auth::kMaxGrantUses)
      return fmt::format("param uses={}: a grant allows 1 to {} commands; fix the request", p.value,
                         auth::kMaxGrantUses);
  }
  // The policy's caps.
  int64_t window = req.not_after - req.not_before;
  if (window > signers_.max_grant_window)
    return fmt::format(
        "the request's window is {} (not-before {} to not-after {}); {} allows at most {} (max_grant_window in "
        "[signers]): ask for a request with a shorter window (gpugate request new --valid-for {}), or raise "
        "max_grant_window",
        auth::format_duration(window), auth::format_request_time(req.not_before),
        auth::format_request_time(req.not_after), policy_name(signers_),
        auth::format_duration(signers_.max_grant_window), auth::format_duration(signers_.max_grant_window));
  if (uses > signers_.max_grant_uses)
    return fmt::format(
        "param uses={}: {} allows at most {} uses per grant (max_grant_uses in [signers]): ask for a request with "
        "fewer uses, or raise max_grant_uses (at most {})",
        uses, policy_name(signers_), signers_.max_grant_uses, auth::kMaxGrantUses);
  // The process scope, resolved now: a cgroup is its id at this moment.
  out.scope = auth::format_scope(req.scope);
  switch (req.scope.kind) {
    case auth::ScopeKind::kAny:
      out.grant.scope = GG_SCOPE_ANY;
      out.grant.scope_id = 0;
      break;
    case auth::ScopeKind::kUid:
      out.grant.scope = GG_SCOPE_UID;
      out.grant.scope_id = req.scope.uid;
      break;
    case auth::ScopeKind::kCgroup:
    case auth::ScopeKind::kUnit: {
      out.scope_path = req.scope.cgroup_path();
      auto id = cgroups_(out.scope_path);
      if (!id) {
        if (req.scope.kind == auth::ScopeKind::kUnit)
          return fmt::format(
              "scope {}: {}; is {} running (systemctl status {})? A unit means the cgroup "
              "/system.slice/UNIT; a unit in another slice is named by its cgroup instead: scope: cgroup=/PATH "
              "(systemctl show -p ControlGroup {})",
              out.scope, id.error().message, req.scope.name, req.scope.name, req.scope.name);
        return fmt::format(
            "scope {}: {}; create the cgroup (or start what makes it) before submitting; gpugate exec makes the "
            "cgroup its request names before it submits",
            out.scope, id.error().message);
      }
      if (*id == 0) return fmt::format("scope {}: the cgroup's id reads 0, which no grant can use", out.scope);
      out.grant.scope = GG_SCOPE_CGROUP;
      out.grant.scope_id = *id;
      break;
    }
  }
  out.grant.cls = *cls;
  out.grant.uses = uses;
  for (const auto* d : *nodes) {
    out.grant.devs.push_back(d->dev);
    out.device_paths.push_back(d->path);
  }
  if (pci) {
    out.grant.devs.push_back(pci->pci_dev());
    out.device_paths.push_back("pci " + pci->address + " (its knobs)");
  }
  return std::nullopt;
}

GrantDecision GrantService::check(std::string_view request_text, std::span<const auth::SignatureInput> signatures,
                                  const DeviceTable& devices, int64_t now_unix, uint64_t now_boot_ns) {
  GrantDecision d;
  if (signers_.allowed_signers.empty()) {
    d.error =
        "this gpugated accepts no signed requests: its policy names no signers; add [signers] allowed_signers = "
        "\"/etc/gpugate/allowed_signers\" to the policy and restart it";
    return d;
  }
  auto req = auth::parse_request(request_text, "request");
  if (!req) {
    d.error = req.error().message;
    return d;
  }
  d.nonce = req->nonce;
  AcceptedRequest out;
  auto problem = check_request(*req, devices, now_unix, out);

  // The signatures. Before they verify, a refusal keeps the nonce.
  auto signers = auth::AllowedSigners::load(signers_.allowed_signers);
  if (!signers) {
    d.error = fmt::format(
        "{}; the allowed signers file changed since gpugated started and is no longer usable: fix it (gpugate "
        "policy check POLICY reads it too)",
        signers.error().message);
    return d;
  }
  auto authz =
      auth::authorize(request_text, signatures, *signers, auth::kSignatureNamespace, now_unix, signers_.groups);
  if (!authz.quorum_met) {
    d.error = problem ? fmt::format("{}\nand not authorized either: {}", *problem, authz.summary())
                      : fmt::format("not authorized: {}", authz.summary());
    return d;
  }
  d.verified = true;

  // Verified: whatever happens now, this request has been decided and its
  // nonce is spent.
  auto burn = [&](const std::string& why) {
    auto used = nonces_.consume(req->nonce, now_unix);
    d.nonce_burned = used.ok();
    d.error = used ? fmt::format(
                         "{}; the request's nonce is spent: make a new request (gpugate request nonce) and "
                         "have it signed again",
                         why)
                   : fmt::format("{} (and its nonce: {})", why, used.error().message);
    return d;
  };
  if (problem) return burn(*problem);
  if (const auto* g = authz.authorizing_group()) {
    out.group = g->name;
    out.break_glass = g->break_glass;
  }
  if (out.break_glass) {
    std::erase_if(break_glass_times_, [&](int64_t t) { return t <= now_unix - 3600; });
    if (break_glass_times_.size() >= signers_.break_glass_per_hour)
      return burn(
          fmt::format("break-glass refused: {} break-glass grant(s) in the last hour, {} allows {} "
                      "(signers.break_glass_per_hour); have the regular signers sign instead",
                      break_glass_times_.size(), policy_name(signers_), signers_.break_glass_per_hour));
  }
  if (auto used = nonces_.consume(req->nonce, now_unix); !used) {
    d.error = used.error().message;
    return d;
  }
  d.nonce_burned = true;
  if (out.break_glass) break_glass_times_.push_back(now_unix);
  out.grant.not_before_ns = unix_to_boot_ns(req->not_before, now_unix, now_boot_ns);
  out.grant.not_after_ns = unix_to_boot_ns(req->not_after, now_unix, now_boot_ns);
  out.request = std::move(*req);
  out.request_text = std::string(request_text);
  out.authorization = std::move(authz);
  d.accepted = std::move(out);
  return d;
}

}  // namespace gpugate
