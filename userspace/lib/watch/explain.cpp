// Which recorded command, grant, reset or hardware reason explains a change
// of a GPU's state: docs/watch.md, "How a change is explained".
#include <algorithm>

#include <fmt/format.h>

#include "gpugate/decode.hpp"
#include "gpugate/pipeline.hpp"
#include "gpugate/watch.hpp"

namespace gpugate::watch {
namespace {

constexpr size_t kMaxEntries = 65536;
constexpr size_t kMaxCandidates = 16;

std::string str(const Json& j, const char* key) {
  if (!j.is_object()) return {};
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Integers only: a float out of range would be undefined to convert.
template <typename T>
T num(const Json& j, const char* key, T fallback = 0) {
  if (!j.is_object()) return fallback;
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) return fallback;
  return it->is_number_unsigned() ? static_cast<T>(it->get<uint64_t>()) : static_cast<T>(it->get<int64_t>());
}

// A class that can explain any change of its GPU: a reset puts every
// setting back to its default, and an allowed mapping of the GPU's
// registers may have written anything.
bool explains_anything(unsigned cls) { return cls == GG_CLASS_GPU_RESET || cls == GG_CLASS_BAR_MAP; }

bool judged_class(unsigned cls) { return cls >= GG_CLASS_POWER_OFF; }

}  // namespace

void Explainer::note(const Json& rec) {
  if (!rec.is_object() || str(rec, "boot_id") != boot_id_) return;
  std::string type = str(rec, "type");
  Entry e;
  e.seq = num<uint64_t>(rec, "seq");
  e.type = type;
  e.boot_ns = num<uint64_t>(rec, "boottime_ns");
  if (type == "ioctl" || type == "knob.write" || type == "knob.mmap") {
    const auto& dec = rec.contains("decoded") ? rec["decoded"] : Json::object();
    auto cls = class_from_name(str(dec, "class"));
    if (!cls || !judged_class(*cls)) return;
    e.cls = *cls;
    e.verdict = str(rec, "verdict");
    if (rec.contains("grant") && rec["grant"].is_object()) e.grant_id = num<uint32_t>(rec["grant"], "id");
    if (type == "ioctl") {  // as the live path has it: one way to keep a command
      const auto& dev = rec.contains("device") ? rec["device"] : Json::object();
      const auto& res = rec.contains("result") ? rec["result"] : Json::object();
      std::string pci = str(dev, "pci"), path = str(dev, "path");
      CommandSeen c;
      c.seq = e.seq;
      c.boot_ns = e.boot_ns;
      c.cls = e.cls;
      c.verdict = e.verdict;
      c.grant_id = e.grant_id;
      c.pci = pci;
      c.command = str(dec, "command");
      c.path = path;
      c.failed = num<int64_t>(res, "ret") < 0 || num<uint64_t>(res, "nv_status") != 0;
      note_command(c);
      return;
    } else {
      const auto& gpu = rec.contains("gpu") ? rec["gpu"] : Json::object();
      const auto& knob = rec.contains("knob") ? rec["knob"] : Json::object();
      e.pci = str(gpu, "pci");
      e.what = fmt::format("{} of {}", type == "knob.mmap" ? "a mapping" : "a write", str(knob, "name"));
    }
  } else if (type == "grant.installed" || type == "grant.break_glass") {
    auto cls = class_from_name(str(rec, "class"));
    if (!cls) return;
    e.cls = *cls;
    e.verdict = "granted";
    e.grant_id = num<uint32_t>(rec, "grant_id");
    e.not_before = num<int64_t>(rec, "not_before");
    e.not_after = num<int64_t>(rec, "not_after");
    if (!str(rec, "gpu").empty()) e.keys.push_back(str(rec, "gpu"));
    if (rec.contains("devices") && rec["devices"].is_array())
      for (const auto& d : rec["devices"])
        if (d.is_string()) e.keys.push_back(d.get<std::string>());
    e.what = fmt::format("grant {} for {} on GPU {}", e.grant_id, str(rec, "class"), str(rec, "gpu"));
  } else if (type == "grant.revoked" || type == "grant.ended") {
    uint32_t id = num<uint32_t>(rec, "grant_id");
    for (auto& g : entries_)
      if (g.grant_id == id && g.type.starts_with("grant.") && !g.ended)
        g.ended = num<int64_t>(rec, "realtime_ns") / 1000000000;
    return;
  } else {
    return;
  }
  note(std::move(e));
}

void Explainer::note_command(const CommandSeen& c) {
  Entry e;
  e.seq = c.seq;
  e.type = "ioctl";
  e.cls = c.cls;
  e.verdict = c.verdict;
  e.failed = c.failed;
  e.boot_ns = c.boot_ns;
  e.pci = c.pci;
  e.grant_id = c.grant_id;
  e.what = fmt::format("{} on {}", c.command, c.path);
  note(std::move(e));
}

void Explainer::note(Entry e) {
  bool command = !e.type.starts_with("grant.");
  if (command && !judged_class(e.cls)) return;
  if (entries_.size() >= kMaxEntries) entries_.pop_front();
  entries_.push_back(std::move(e));
}

Json Explainer::entry_json(const Entry& e) {
  Json j{{"seq", e.seq}, {"type", e.type}, {"class", class_name(e.cls)}, {"what", e.what}};
  if (!e.verdict.empty()) j["verdict"] = e.verdict;
  if (e.grant_id) j["grant_id"] = e.grant_id;
  j["boottime_ns"] = e.boot_ns;
  return j;
}

Explanation Explainer::explain(const Change& c) const {
  Explanation out;
  out.candidates = Json::array();
  auto spec = field_spec(c.field);
  if (!spec) {
    out.detail = {{"note", fmt::format("{} is not a field the watcher judges", c.field)}};
    return out;
  }

  // A throttle: the new reasons decide, unless a command of a class that
  // moves the clocks came first.
  std::vector<std::string> new_throttles;
  if (spec->kind == FieldKind::Throttle) {
    spec->classes = {GG_CLASS_POWER_LIMIT, GG_CLASS_CLOCK_LIMIT, GG_CLASS_PERF_STATE};
    std::vector<std::string> before;
    if (c.before.is_array())
      for (const auto& r : c.before)
        if (r.is_string()) before.push_back(r.get<std::string>());
    if (c.after.is_array())
      for (const auto& r : c.after) {
        if (!r.is_string()) continue;
        auto name = r.get<std::string>();
        if (throttle_reason(name) && std::find(before.begin(), before.end(), name) == before.end())
          new_throttles.push_back(name);
      }
  }

  uint64_t from = c.before_ns > window_ns_ ? c.before_ns - window_ns_ : 0;
  const Entry* best = nullptr;
  for (auto it = entries_.rbegin(); it != entries_.rend(); ++it) {
    const Entry& e = *it;
    if (e.type.starts_with("grant.")) continue;
    if (!e.pci.empty() && e.pci != c.pci) continue;  // another GPU's
    bool relevant =
        explains_anything(e.cls) || std::find(spec->classes.begin(), spec->classes.end(), e.cls) != spec->classes.end();
    if (!relevant) continue;
    std::string why_not;
    if (e.boot_ns > c.after_ns)
      why_not = "recorded after the sample that saw the change";
    else if (e.boot_ns < from)
      why_not = fmt::format("{} ms before the earlier sample: outside the window of {} ms",
                            (c.before_ns - e.boot_ns) / 1000000, window_ns_ / 1000000);
    else if (e.verdict == "denied")
      why_not = "denied: it never reached the driver";
    else if (e.failed)
      why_not = "the driver refused it";
    if (why_not.empty() && !best) best = &e;
    if (out.candidates.size() < kMaxCandidates) {
      Json cand = entry_json(e);
      cand["why_not"] = why_not.empty() ? (best == &e ? Json("explains it") : Json("an older match")) : Json(why_not);
      out.candidates.push_back(std::move(cand));
    }
  }
  if (best) {
    out.kind = best->cls == GG_CLASS_GPU_RESET ? "reset" : "command";
    out.seq = best->seq;
    out.has_seq = true;
    out.detail = entry_json(*best);
    out.detail["authorized"] = best->verdict == "allowed";
    if (best->verdict == "would-deny")
      out.detail["note"] = "monitor mode let it through: the change is explained, but no grant authorized it";
    if (best->pci.empty())
      out.detail["note"] = "through a node that names no single GPU (the control node): counted for every GPU";
    if (best->cls == GG_CLASS_BAR_MAP)
      out.detail["note"] = "an allowed mapping of the GPU's registers: what was written through it is not seen";
    return out;
  }

  // A grant whose window covers the change: operators signed for it, even
  // where the command went a way no hook sees (the BMC, the firmware).
  int64_t now_s = c.after_realtime_ns / 1000000000;
  for (auto it = entries_.rbegin(); it != entries_.rend(); ++it) {
    const Entry& e = *it;
    if (!e.type.starts_with("grant.")) continue;
    bool relevant =
        explains_anything(e.cls) || std::find(spec->classes.begin(), spec->classes.end(), e.cls) != spec->classes.end();
    bool gpu = std::any_of(e.keys.begin(), e.keys.end(), [&](const std::string& k) {
      return k == c.pci || (!c.uuid.empty() && k == c.uuid) ||
             std::find(c.nodes.begin(), c.nodes.end(), k) != c.nodes.end();
    });
    if (!relevant || !gpu) continue;
    std::string why_not;
    if (now_s < e.not_before || now_s > e.not_after)
      why_not = "its window does not cover the change";
    else if (e.ended && e.ended < now_s)
      why_not = "revoked or ended before the change";
    if (why_not.empty()) {
      out.kind = "grant";
      out.seq = e.seq;
      out.has_seq = true;
      out.detail = entry_json(e);
      out.detail["authorized"] = true;
      return out;
    }
    if (out.candidates.size() < kMaxCandidates) {
      Json cand = entry_json(e);
      cand["why_not"] = why_not;
      out.candidates.push_back(std::move(cand));
    }
  }

  // The GPU's own protections, as it reports them.
  if (spec->kind == FieldKind::Throttle) {
    if (new_throttles.empty()) {
      out.kind = "not-a-throttle";
      out.detail = {{"note", "no new reason holds the clocks down"}};
      return out;
    }
    bool all_hw = std::all_of(new_throttles.begin(), new_throttles.end(), hardware_protection_reason);
    bool hw_or_cap = std::all_of(new_throttles.begin(), new_throttles.end(), [](const std::string& r) {
      return hardware_protection_reason(r) || r == "sw_power_cap";
    });
    if (all_hw || hw_or_cap) {
      out.kind = all_hw ? "hardware-protection" : "load-at-power-limit";
      out.detail = {{"reasons", new_throttles},
                    {"note", all_hw ? "the GPU reports it protecting itself (thermal, power brake or HW slowdown)"
                                    : "the GPU holds its clocks to stay within the power limit in force, which did "
                                      "not change"}};
      return out;
    }
  } else if (c.field == "power.enforced_limit_mw" || c.field == "clocks.sm_max_mhz") {
    std::vector<std::string> hw;
    for (const auto& r : c.reasons)
      if (hardware_protection_reason(r)) hw.push_back(r);
    if (!hw.empty()) {
      out.kind = "hardware-protection";
      out.detail = {{"reasons", hw},
                    {"note",
                     "the GPU reports a hardware protection in force; a firmware cap that the driver "
                     "reports the same way cannot be told apart (docs/watch.md)"}};
      return out;
    }
  }
  if (!new_throttles.empty()) out.detail = {{"reasons", new_throttles}};
  return out;
}

void Explainer::forget_before(uint64_t now_ns) {
  uint64_t horizon = now_ns > 4 * window_ns_ ? now_ns - 4 * window_ns_ : 0;
  // Called after every batch the daemon reads: the front goes at once, and
  // a full sweep (grants, records out of order) runs once per window, so a
  // flood of judged commands keeps this O(1) per batch.
  while (!entries_.empty() && !entries_.front().type.starts_with("grant.") && entries_.front().boot_ns < horizon)
    entries_.pop_front();
  if (now_ns < next_sweep_ns_) return;
  next_sweep_ns_ = now_ns > UINT64_MAX - window_ns_ ? UINT64_MAX : now_ns + window_ns_;
  std::erase_if(entries_, [&](const Entry& e) {
    if (e.type.starts_with("grant.")) return e.ended != 0 && e.boot_ns < horizon;
    return e.boot_ns < horizon;
  });
}

}  // namespace gpugate::watch
