#include "gpugate/control_service.hpp"

#include <unistd.h>

#include <algorithm>
#include <exception>
#include <filesystem>
#include <limits>

#include <fmt/format.h>

#include "gpugate/decode.hpp"

namespace gpugate {
namespace {

using ojson = nlohmann::ordered_json;
using json = nlohmann::json;

constexpr std::string_view kOps = "ping, nonce, submit, grants, revoke, mmio, prune";

// The members of an mmio capture (gpugate mmio capture's record) and their JSON types.
constexpr std::pair<std::string_view, nlohmann::json::value_t> kMmioMembers[] = {
    {"trace_version", nlohmann::json::value_t::string},
    {"lines", nlohmann::json::value_t::number_unsigned},
    {"malformed_lines", nlohmann::json::value_t::number_unsigned},
    {"maps", nlohmann::json::value_t::number_unsigned},
    {"maps_on_gpus", nlohmann::json::value_t::number_unsigned},
    {"reads", nlohmann::json::value_t::number_unsigned},
    {"writes", nlohmann::json::value_t::number_unsigned},
    {"gpu_writes", nlohmann::json::value_t::number_unsigned},
    {"named_writes", nlohmann::json::value_t::number_unsigned},
    {"unknown_ops", nlohmann::json::value_t::number_unsigned},
    {"lost_events", nlohmann::json::value_t::number_unsigned},
    {"by_register", nlohmann::json::value_t::array},
    {"named_writes_kept", nlohmann::json::value_t::array},
    {"named_writes_cut", nlohmann::json::value_t::boolean},
    {"unnamed_writes_kept", nlohmann::json::value_t::array},
    {"unnamed_writes_cut", nlohmann::json::value_t::boolean},
    {"trace_sha256", nlohmann::json::value_t::string},
    {"trace_bytes", nlohmann::json::value_t::number_unsigned},
    {"command", nlohmann::json::value_t::array},
    {"command_status", nlohmann::json::value_t::number_integer},
    {"seconds", nlohmann::json::value_t::number_unsigned},
    {"limits", nlohmann::json::value_t::string},
};

ojson fail(const std::string& why) { return ojson{{"ok", false}, {"error", why}}; }

ojson peer_json(const ControlPeer& p) { return {{"pid", p.pid}, {"uid", p.uid}, {"gid", p.gid}}; }

// A client's text in a message: printable ASCII kept, the rest \xNN, cut at 64 bytes.
std::string shown(std::string_view s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < 64; i++) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
      out.push_back(static_cast<char>(c));
    else
      out += fmt::format("\\x{:02x}", c);
  }
  if (s.size() > 64) out += "...";
  return out + "\"";
}

std::string type_of(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    case json::value_t::number_integer: return v.get<int64_t>() < 0 ? "a negative number" : "a number";
    case json::value_t::number_unsigned: return "a number";
    case json::value_t::number_float: return "a number with a fraction or exponent";
    case json::value_t::binary: return "binary data";
    case json::value_t::discarded: return "nothing";
  }
  return "something else";
}

// Only the members an op takes; the rest is refused by name.
Result<void> known_members(const json& obj, std::string_view op, std::initializer_list<std::string_view> allowed) {
  for (const auto& [key, value] : obj.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
    if (op == "submit" && (key == "cgroup_id" || key == "scope" || key == "uid" || key == "cgroup"))
      return make_error(fmt::format(
          "submit: member {} is not accepted: which processes may use a grant is part of the signed request "
          "(its scope: line), never chosen by the submitter; remove it (gpugate request new --scope sets the "
          "scope before signing)",
          shown(key)));
    std::string names;
    for (auto a : allowed) names += fmt::format("{}\"{}\"", names.empty() ? "" : ", ", a);
    return make_error(fmt::format("{}: unknown member {}; {} takes {}", op, shown(key), op, names));
  }
  return {};
}

Result<const std::string*> string_member(const json& obj, std::string_view op, const char* key, const char* what) {
  auto it = obj.find(key);
  if (it == obj.end()) return make_error(fmt::format("{}: member \"{}\" ({}) is missing", op, key, what));
  if (!it->is_string())
    return make_error(fmt::format("{}: member \"{}\" must be a string ({}), not {}", op, key, what, type_of(*it)));
  return &it->get_ref<const std::string&>();
}

}  // namespace

std::string control_answer_text(const ojson& answer) noexcept {
  try {
    return answer.dump(-1, ' ', false, json::error_handler_t::replace);
  } catch (...) {
    return R"({"ok":false,"error":"internal error: the answer could not be written"})";
  }
}

ojson ControlService::answer(const ControlPeer& peer, std::string_view line, const ControlContext& ctx) {
  try {
    auto request = json::parse(line.begin(), line.end(), nullptr, false);
    std::string problem;
    if (request.is_discarded())
      problem = "not valid JSON";
    else if (!request.is_object())
      problem = fmt::format("it is {}, not an object", type_of(request));
    else if (!request.contains("op"))
      problem = fmt::format("member \"op\" is missing (one of {})", kOps);
    else if (!request["op"].is_string())
      problem = fmt::format("member \"op\" must be a string (one of {}), not {}", kOps, type_of(request["op"]));
    if (!problem.empty()) {
      std::string why = fmt::format(
          "malformed control request: {}; a request is one JSON object with a string \"op\", e.g. {{\"op\":\"ping\"}}",
          problem);
      ctx.events.record("control.refused", {{"error", why}, {"bytes", line.size()}, {"peer", peer_json(peer)}});
      return fail(why);
    }
    return dispatch(peer, request, ctx);
  } catch (const std::exception& e) {
    std::string why = fmt::format("internal error while answering: {}", e.what());
    try {
      ctx.events.record("control.error", {{"error", why}, {"bytes", line.size()}, {"peer", peer_json(peer)}});
    } catch (...) {
    }
    return fail(why + "; gpugated recorded it (control.error) and keeps running: check gpugate grants");
  } catch (...) {
    try {
      ctx.events.record("control.error", {{"error", "internal error (unknown exception)"}, {"peer", peer_json(peer)}});
    } catch (...) {
    }
    return fail("internal error while answering; gpugated recorded it (control.error) and keeps running");
  }
}

ojson ControlService::dispatch(const ControlPeer& peer, const json& req, const ControlContext& ctx) {
  const std::string& op = req.at("op").get_ref<const std::string&>();
  auto refused = [&](const std::string& why) {
    ctx.events.record("control.refused", {{"op", op}, {"error", why}, {"peer", peer_json(peer)}});
    return fail(why);
  };
  if (op == "ping" || op == "nonce" || op == "grants") {
    if (auto m = known_members(req, op, {"op"}); !m) return refused(m.error().message);
  }
  if (op == "ping") return {{"ok", true}, {"pid", ::getpid()}};
  if (op == "nonce") {
    auto n = grants_.issue_nonce(ctx.now_unix);
    if (!n) return fail(n.error().message);
    ctx.events.record("nonce.issued", {{"nonce", n->nonce}, {"expires_at", n->expires_at}, {"peer", peer_json(peer)}});
    return {{"ok", true},
            {"nonce", n->nonce},
            {"host", grants_.host_id()},
            {"issued_at", n->issued_at},
            {"expires_at", n->expires_at}};
  }
  if (op == "grants") return list_grants(ctx);
  if (op == "revoke") return revoke(peer, req, ctx);
  if (op == "submit") return submit(peer, req, ctx);
  if (op == "mmio") return mmio(peer, req, ctx);
  if (op == "prune") return prune(peer, req, ctx);
  return refused(fmt::format("unknown op {}; the ops are {}", shown(op), kOps));
}

// MMIO evidence a root process traced (gpugate mmio capture): recorded as
// it reports it, with who reported it. Only root can run mmiotrace, and
// only root may put evidence in the ledger.
ojson ControlService::mmio(const ControlPeer& peer, const json& req, const ControlContext& ctx) {
  auto refused = [&](const std::string& why) {
    ctx.events.record("control.refused", {{"op", "mmio"}, {"error", why}, {"peer", peer_json(peer)}});
    return fail(why);
  };
  if (peer.uid != 0)
    return refused(
        fmt::format("mmio: uid {} may not record MMIO evidence; run gpugate mmio capture as root", peer.uid));
  if (auto m = known_members(req, "mmio", {"op", "capture"}); !m) return refused(m.error().message);
  auto it = req.find("capture");
  if (it == req.end() || !it->is_object())
    return refused(
        "mmio: member \"capture\" (the capture, as gpugate mmio capture --json prints it) must be an object");
  ojson body;
  body["reported_by"] = peer_json(peer);
  for (const auto& item : it->items()) {
    const std::string& key = item.key();
    const json& value = item.value();
    auto m = std::find_if(std::begin(kMmioMembers), std::end(kMmioMembers),
                          [&key](const auto& p) { return p.first == key; });
    if (m == std::end(kMmioMembers)) return refused(fmt::format("mmio: capture has an unknown member {}", shown(key)));
    // nlohmann: an unsigned number is an integer too; a negative one is not unsigned
    bool ok = value.is_null() || value.type() == m->second ||
              (m->second == json::value_t::number_integer && value.is_number_integer()) ||
              (m->second == json::value_t::number_unsigned && value.is_number_unsigned());
    if (!ok) return refused(fmt::format("mmio: capture member {} is {}", shown(key), type_of(value)));
    body[key] = ojson::parse(value.dump());
  }
  ctx.events.record("mmio.capture", std::move(body));
  return {{"ok", true}};
}

// gpugate log prune, while this daemon writes the ledger: only the writer
// may append the ledger.pruned record, and only root may remove evidence.
ojson ControlService::prune(const ControlPeer& peer, const json& req, const ControlContext& ctx) {
  auto refused = [&](const std::string& why) {
    ctx.events.record("control.refused", {{"op", "prune"}, {"error", why}, {"peer", peer_json(peer)}});
    return fail(why);
  };
  if (peer.uid != 0)
    return refused(
        fmt::format("prune: uid {} may not remove ledger segments; run gpugate log prune as root", peer.uid));
  if (auto m = known_members(req, "prune", {"op", "ledger", "before_seq", "before_ns"}); !m)
    return refused(m.error().message);
  auto dir = string_member(req, "prune", "ledger", "the ledger directory to prune");
  if (!dir) return refused(dir.error().message);
  if (!ctx.prune) return refused("prune: this daemon writes no ledger it can prune");
  std::error_code ec;
  if (!std::filesystem::equivalent(**dir, ctx.ledger_dir, ec))
    return refused(
        fmt::format("prune: this daemon writes {}, not {}; prune that one with gpugate log prune {} (or "
                    "the other daemon's --control-socket)",
                    ctx.ledger_dir, **dir, ctx.ledger_dir));
  ledger::PruneCut cut;
  auto seq = req.find("before_seq");
  auto ns = req.find("before_ns");
  if ((seq == req.end()) == (ns == req.end()))
    return refused("prune: give exactly one of \"before_seq\" (a seq) and \"before_ns\" (Unix ns)");
  if (seq != req.end()) {
    if (!seq->is_number_unsigned()) return refused("prune: \"before_seq\" must be an unsigned number");
    cut.before_seq = seq->get<uint64_t>();
  } else {
    if (!ns->is_number_integer()) return refused("prune: \"before_ns\" must be an integer (Unix ns)");
    cut.before_unix_ns = ns->get<int64_t>();
  }
  auto done = ctx.prune(cut);
  if (!done) return refused(done.error().message);
  (*done)["by"] = peer_json(peer);
  return {{"ok", true}, {"pruned", *done}};
}

ojson ControlService::submit(const ControlPeer& peer, const json& req, const ControlContext& ctx) {
  auto malformed = [&](const std::string& why) {
    ctx.events.record("control.refused", {{"op", "submit"}, {"error", why}, {"peer", peer_json(peer)}});
    return fail(why);
  };
  if (auto m = known_members(req, "submit", {"op", "request", "signatures"}); !m) return malformed(m.error().message);
  auto text = string_member(req, "submit", "request", "the request text");
  if (!text) return malformed(text.error().message);
  auto sigs_it = req.find("signatures");
  if (sigs_it == req.end())
    return malformed("submit: member \"signatures\" (a list of {\"label\": NAME, \"armored\": TEXT}) is missing");
  if (!sigs_it->is_array())
    return malformed(
        fmt::format("submit: member \"signatures\" must be an array of {{\"label\": NAME, \"armored\": TEXT}}, not {}",
                    type_of(*sigs_it)));
  if (sigs_it->size() > kMaxSignaturesPerRequest)
    return malformed(
        fmt::format("submit: {} signatures; a request carries at most {}", sigs_it->size(), kMaxSignaturesPerRequest));
  std::vector<auth::SignatureInput> sigs;
  ojson sig_texts = ojson::array();
  for (size_t i = 0; i < sigs_it->size(); i++) {
    const json& s = (*sigs_it)[i];
    std::string where = fmt::format("submit: signatures[{}]", i);
    if (!s.is_object())
      return malformed(
          fmt::format("{} must be an object {{\"label\": NAME, \"armored\": TEXT}}, not {}", where, type_of(s)));
    for (const auto& [key, value] : s.items())
      if (key != "label" && key != "armored")
        return malformed(
            fmt::format("{}: unknown member {}; a signature has \"label\" and \"armored\"", where, shown(key)));
    auto armored = s.find("armored");
    if (armored == s.end())
      return malformed(fmt::format("{}: member \"armored\" (the .sig file's text) is missing", where));
    if (!armored->is_string())
      return malformed(fmt::format("{}: member \"armored\" must be a string (the .sig file's text), not {}", where,
                                   type_of(*armored)));
    std::string label = fmt::format("signature {}", i + 1);
    if (auto l = s.find("label"); l != s.end()) {
      if (!l->is_string())
        return malformed(
            fmt::format("{}: member \"label\" must be a string (a name for messages, such as the file "
                        "name), not {}",
                        where, type_of(*l)));
      if (l->get_ref<const std::string&>().size() > kMaxSignatureLabelBytes)
        return malformed(fmt::format("{}: member \"label\" is longer than {} bytes", where, kMaxSignatureLabelBytes));
      label = l->get<std::string>();
    }
    sigs.push_back({std::move(label), armored->get<std::string>()});
    sig_texts.push_back(armored->get<std::string>());
  }

  const std::string& request_text = **text;
  auto refuse = [&](const std::string& why, const GrantDecision* d) {
    ojson rec{{"error", why},
              {"request", request_text},
              {"signatures", sig_texts},
              {"peer", peer_json(peer)},
              {"nonce", d && !d->nonce.empty() ? ojson(d->nonce) : ojson(nullptr)},
              {"signatures_verified", d && d->verified},
              {"nonce_burned", d && d->nonce_burned}};
    ctx.events.record("grant.refused", std::move(rec));
    return fail(why);
  };
  if (!ctx.store) return refuse("this engine cannot hold grants (the simulation)", nullptr);
  auto decision = grants_.check(request_text, sigs, ctx.devices, ctx.now_unix, ctx.now_boot_ns);
  if (!decision.ok()) return refuse(decision.error, &decision);
  AcceptedRequest& accepted = *decision.accepted;
  auto id = ctx.store->install(accepted.grant);
  if (!id)
    return refuse(fmt::format("the kernel did not take the grant: {}; the request's nonce is spent: make a new "
                              "request (gpugate request nonce) and have it signed again",
                              id.error().message),
                  &decision);
  accepted.grant.id = *id;
  scopes_[*id] = accepted.scope;
  const auto& r = accepted.request;
  ojson params = ojson::object();
  for (const auto& p : r.params) params[p.name] = p.value;
  ojson keys = ojson::array();
  for (const auto& k : accepted.authorization.verified_keys()) keys.push_back(k);
  ojson rec{{"grant_id", *id},
            {"class", r.class_name},
            {"gpu", r.gpu},
            {"devices", accepted.device_paths},
            {"uses", accepted.grant.uses},
            {"not_before", r.not_before},
            {"not_after", r.not_after},
            {"scope", accepted.scope},
            {"scope_cgroup", accepted.scope_path.empty() ? ojson(nullptr) : ojson(accepted.scope_path)},
            {"scope_id", accepted.grant.scope_id},
            {"params", params},
            {"param_checked", accepted.checked_param.empty() ? ojson(nullptr) : ojson(accepted.checked_param)},
            {"requester", r.requester},
            {"reason", r.reason},
            {"nonce", r.nonce},
            {"group", accepted.group},
            {"break_glass", accepted.break_glass},
            {"keys", keys},
            {"request", request_text},
            {"signatures", sig_texts},
            {"peer", peer_json(peer)}};
  ctx.events.record(accepted.break_glass ? "grant.break_glass" : "grant.installed", std::move(rec));
  return {{"ok", true},
          {"grant_id", *id},
          {"class", r.class_name},
          {"devices", accepted.device_paths},
          {"uses", accepted.grant.uses},
          {"scope", accepted.scope},
          {"scope_id", accepted.grant.scope_id},
          {"param_checked", accepted.checked_param},
          {"not_after", r.not_after},
          {"break_glass", accepted.break_glass},
          {"authorization", accepted.authorization.summary()}};
}

ojson ControlService::list_grants(const ControlContext& ctx) {
  if (!ctx.store) return fail("this engine holds no grants (the simulation)");
  auto gs = ctx.store->list();
  if (!gs) return fail(gs.error().message);
  // Boot time to Unix time, from the same moment on both clocks.
  auto to_unix = [&](uint64_t boot_ns) {
    return ctx.now_unix +
           (static_cast<int64_t>(boot_ns / 1'000'000'000) - static_cast<int64_t>(ctx.now_boot_ns / 1'000'000'000));
  };
  ojson list = ojson::array();
  for (const auto& g : *gs) {
    ojson devs = ojson::array();
    for (uint32_t d : g.devs) {
      const Device* dev = ctx.devices.find(d);
      const PciGpu* gpu = dev ? nullptr : ctx.devices.find_gpu(d);
      devs.push_back(dev   ? dev->path
                     : gpu ? "pci " + gpu->address + " (its knobs)"
                           : fmt::format("{}:{}", kernel_dev_major(d), kernel_dev_minor(d)));
    }
    const char* kind = g.scope == GG_SCOPE_CGROUP ? "cgroup" : g.scope == GG_SCOPE_UID ? "uid" : "any";
    auto signed_scope = scopes_.find(g.id);
    list.push_back({{"id", g.id},
                    {"class", class_name(g.cls)},
                    {"devices", devs},
                    {"uses_left", g.uses},
                    {"not_before", to_unix(g.not_before_ns)},
                    {"not_after", to_unix(g.not_after_ns)},
                    {"scope", kind},
                    {"scope_id", g.scope_id},
                    {"signed_scope", signed_scope == scopes_.end() ? ojson(nullptr) : ojson(signed_scope->second)}});
  }
  return {{"ok", true}, {"grants", list}};
}

ojson ControlService::revoke(const ControlPeer& peer, const json& req, const ControlContext& ctx) {
  auto malformed = [&](const std::string& why) {
    ctx.events.record("control.refused", {{"op", "revoke"}, {"error", why}, {"peer", peer_json(peer)}});
    return fail(why);
  };
  if (auto m = known_members(req, "revoke", {"op", "id"}); !m) return malformed(m.error().message);
  auto it = req.find("id");
  if (it == req.end()) return malformed("revoke: member \"id\" (a grant id, see gpugate grants) is missing");
  if (!it->is_number_unsigned() || it->get<uint64_t>() == 0 ||
      it->get<uint64_t>() > std::numeric_limits<uint32_t>::max())
    return malformed(fmt::format("revoke: member \"id\" must be a grant id, a whole number from 1 to {}, not {}",
                                 std::numeric_limits<uint32_t>::max(),
                                 it->is_number_unsigned() ? std::to_string(it->get<uint64_t>()) : type_of(*it)));
  if (!ctx.store) return fail("this engine holds no grants (the simulation)");
  auto id = static_cast<uint32_t>(it->get<uint64_t>());
  if (auto r = ctx.store->revoke(id); !r) return fail(r.error().message);
  scopes_.erase(id);
  ctx.events.record("grant.revoked", {{"grant_id", id}, {"peer", peer_json(peer)}});
  return {{"ok", true}, {"grant_id", id}};
}

void ControlService::expire(const ControlContext& ctx) {
  if (!ctx.store) return;
  auto gs = ctx.store->list();
  if (!gs) return;
  std::map<uint32_t, std::string> live;
  for (const auto& g : *gs) {
    const char* why = g.uses <= 0 ? "uses spent" : ctx.now_boot_ns > g.not_after_ns ? "window ended" : nullptr;
    if (!why) {
      if (auto s = scopes_.find(g.id); s != scopes_.end()) live.insert(*s);
      continue;
    }
    if (!ctx.store->revoke(g.id).ok()) continue;
    ctx.events.record("grant.ended", {{"grant_id", g.id}, {"class", class_name(g.cls)}, {"reason", why}});
  }
  scopes_ = std::move(live);  // grants revoked elsewhere (or a previous daemon's) leave no entry behind
}

}  // namespace gpugate
