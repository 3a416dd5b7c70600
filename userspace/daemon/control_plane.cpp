#include "control_plane.hpp"

#include <poll.h>
#include <time.h>

#include <fmt/format.h>

#include "gpugate/decode.hpp"
#include "gpugate/hostinfo.hpp"

namespace gpugate {
namespace {

int64_t unix_now() { return static_cast<int64_t>(::time(nullptr)); }

nlohmann::ordered_json peer_json(const ControlPeer& p) { return {{"pid", p.pid}, {"uid", p.uid}, {"gid", p.gid}}; }

nlohmann::ordered_json grant_json(const Grant& g, const DeviceTable& devices) {
  nlohmann::ordered_json devs = nlohmann::ordered_json::array();
  for (uint32_t d : g.devs) {
    const Device* dev = devices.find(d);
    devs.push_back(dev ? dev->path : fmt::format("{}:{}", kernel_dev_major(d), kernel_dev_minor(d)));
  }
  int64_t offset_s = realtime_offset_ns() / 1'000'000'000;
  return {{"id", g.id},
          {"class", class_name(g.cls)},
          {"devices", devs},
          {"uses_left", g.uses},
          {"not_before", static_cast<int64_t>(g.not_before_ns / 1'000'000'000) + offset_s},
          {"not_after", static_cast<int64_t>(g.not_after_ns / 1'000'000'000) + offset_s},
          {"scope", g.scope == GG_SCOPE_CGROUP ? "cgroup"
                    : g.scope == GG_SCOPE_UID  ? "uid"
                                               : "any"},
          {"scope_id", g.scope_id}};
}

}  // namespace

Result<ControlPlane> ControlPlane::open(const std::string& socket_path, std::optional<gid_t> group,
                                        const std::string& nonce_path, SignersConfig signers, std::string host_id) {
  auto grants = GrantService::open(nonce_path, std::move(signers), std::move(host_id), unix_now());
  if (!grants) return grants.error();
  auto server = ControlServer::listen(socket_path, group);
  if (!server) return server.error();
  return ControlPlane(std::move(*server), std::move(*grants));
}

void ControlPlane::serve(Pipeline& pipeline, BpfEngine* engine, const DeviceTable& devices) {
  for (int i = 0; i < 16; i++) {
    pollfd p{server_.fd(), POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return;
    auto call = server_.accept_one();
    if (!call) {
      if (call.error().code == EAGAIN || call.error().code == EWOULDBLOCK) return;
      pipeline.write_event("control.refused", {{"error", call.error().message}});
      continue;
    }
    auto answer = handle(*call, pipeline, engine, devices);
    (void)pipeline.flush();  // recorded before the caller hears of it
    ControlServer::reply(*call, answer);
  }
}

nlohmann::ordered_json ControlPlane::handle(const ControlCall& call, Pipeline& pipeline, BpfEngine* engine,
                                            const DeviceTable& devices) {
  const auto& req = call.request;
  std::string op = req["op"].get<std::string>();
  auto fail = [](const std::string& why) { return nlohmann::ordered_json{{"ok", false}, {"error", why}}; };
  if (op == "ping") return {{"ok", true}, {"pid", ::getpid()}};
  if (op == "nonce") {
    auto n = grants_.issue_nonce(unix_now());
    if (!n) return fail(n.error().message);
    pipeline.write_event("nonce.issued",
                         {{"nonce", n->nonce}, {"expires_at", n->expires_at}, {"peer", peer_json(call.peer)}});
    return {{"ok", true},
            {"nonce", n->nonce},
            {"host", grants_.host_id()},
            {"issued_at", n->issued_at},
            {"expires_at", n->expires_at}};
  }
  if (op == "grants") {
    if (!engine) return fail("this engine holds no grants (the simulation)");
    auto gs = engine->grants();
    if (!gs) return fail(gs.error().message);
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const auto& g : *gs) list.push_back(grant_json(g, devices));
    return {{"ok", true}, {"grants", list}};
  }
  if (op == "revoke") {
    if (!engine) return fail("this engine holds no grants (the simulation)");
    if (!req.contains("id") || !req["id"].is_number_unsigned()) return fail("revoke needs \"id\": a grant id");
    auto id = req["id"].get<uint32_t>();
    if (auto r = engine->revoke_grant(id); !r) return fail(r.error().message);
    pipeline.write_event("grant.revoked", {{"grant_id", id}, {"peer", peer_json(call.peer)}});
    return {{"ok", true}, {"grant_id", id}};
  }
  if (op == "submit") {
    if (!req.contains("request") || !req["request"].is_string() || !req.contains("signatures") ||
        !req["signatures"].is_array())
      return fail("submit needs \"request\" (the request text) and \"signatures\" (a list)");
    std::vector<auth::SignatureInput> sigs;
    nlohmann::ordered_json sig_texts = nlohmann::ordered_json::array();
    for (const auto& s : req["signatures"]) {
      if (!s.is_object() || !s.contains("armored") || !s["armored"].is_string())
        return fail("each signature is {\"label\": NAME, \"armored\": TEXT}");
      sigs.push_back({s.value("label", std::string("signature")), s["armored"].get<std::string>()});
      sig_texts.push_back(s["armored"].get<std::string>());
    }
    uint64_t cgroup_id = req.value("cgroup_id", uint64_t{0});
    std::string text = req["request"].get<std::string>();
    auto refuse = [&](const std::string& why) {
      pipeline.write_event(
          "grant.refused",
          {{"error", why}, {"request", text}, {"signatures", sig_texts}, {"peer", peer_json(call.peer)}});
      return fail(why);
    };
    if (!engine) return refuse("this engine cannot hold grants (the simulation)");
    auto accepted = grants_.check(text, sigs, devices, cgroup_id, unix_now(), boottime_ns());
    if (!accepted) return refuse(accepted.error().message);
    auto id = engine->install_grant(accepted->grant);
    if (!id) return refuse(id.error().message);
    accepted->grant.id = *id;
    const auto& r = accepted->request;
    nlohmann::ordered_json params = nlohmann::ordered_json::object();
    for (const auto& p : r.params) params[p.name] = p.value;
    nlohmann::ordered_json keys = nlohmann::ordered_json::array();
    for (const auto& k : accepted->authorization.verified_keys()) keys.push_back(k);
    nlohmann::ordered_json rec{
        {"grant_id", *id},
        {"class", r.class_name},
        {"gpu", r.gpu},
        {"devices", accepted->device_paths},
        {"uses", accepted->grant.uses},
        {"not_before", r.not_before},
        {"not_after", r.not_after},
        {"cgroup_id", cgroup_id},
        {"params", params},
        {"param_checked", accepted->checked_param.empty() ? nlohmann::ordered_json(nullptr)
                                                          : nlohmann::ordered_json(accepted->checked_param)},
        {"requester", r.requester},
        {"reason", r.reason},
        {"nonce", r.nonce},
        {"group", accepted->group},
        {"break_glass", accepted->break_glass},
        {"keys", keys},
        {"request", text},
        {"signatures", sig_texts},
        {"peer", peer_json(call.peer)}};
    pipeline.write_event(accepted->break_glass ? "grant.break_glass" : "grant.installed", rec);
    return {{"ok", true},
            {"grant_id", *id},
            {"class", r.class_name},
            {"devices", accepted->device_paths},
            {"uses", accepted->grant.uses},
            {"param_checked", accepted->checked_param},
            {"not_after", r.not_after},
            {"break_glass", accepted->break_glass},
            {"authorization", accepted->authorization.summary()}};
  }
  return fail(fmt::format("unknown op {:?}: ping, nonce, submit, grants, revoke", op));
}

void ControlPlane::expire(Pipeline& pipeline, BpfEngine* engine) {
  if (!engine) return;
  auto gs = engine->grants();
  if (!gs) return;
  uint64_t now = boottime_ns();
  for (const auto& g : *gs) {
    const char* why = g.uses <= 0 ? "uses spent" : now > g.not_after_ns ? "window ended" : nullptr;
    if (!why || !engine->revoke_grant(g.id).ok()) continue;
    pipeline.write_event("grant.ended", {{"grant_id", g.id}, {"class", class_name(g.cls)}, {"reason", why}});
  }
}

}  // namespace gpugate
