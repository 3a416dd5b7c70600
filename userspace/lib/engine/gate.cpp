#include "gpugate/gate.hpp"

#include <algorithm>
#include <optional>

#include <fmt/format.h>

#include <unistd.h>

#include "gpugate/decode.hpp"
#include "gpugate/engine.hpp"
#include "gpugate/hostinfo.hpp"

namespace gpugate {

Result<void> check_grant(const Grant& grant, const DeviceTable* devices) {
  if (grant.devs.empty()) return make_error("grant: names no device node");
  for (uint32_t dev : grant.devs)
    if (!devices || (!devices->find(dev) && !devices->find_gpu(dev)))
      return make_error(
          fmt::format("grant for device {}:{}: no such GPU device is watched; a grant names a device "
                      "gpugate knows (gpugate devices)",
                      kernel_dev_major(dev), kernel_dev_minor(dev)));
  if (grant.cls >= GG_CLASS_COUNT) return make_error(fmt::format("grant: class id {} does not exist", grant.cls));
  if (!class_gated_by_default(grant.cls))
    return make_error(fmt::format("grant for {}: that class is not gated; grants exist for gated classes only",
                                  class_name(grant.cls)));
  if (grant.uses <= 0 || grant.not_after_ns <= grant.not_before_ns)
    return make_error("grant: needs at least one use and a window that ends after it starts");
  if (grant.key_index > 3 || grant.pkind > 255) return make_error("grant: a key parameter is 0 to 3 of a pkind");
  if (grant.scope >= GG_SCOPE_COUNT || (grant.scope == GG_SCOPE_ANY && grant.scope_id != 0) ||
      (grant.scope == GG_SCOPE_CGROUP && grant.scope_id == 0) ||
      (grant.scope == GG_SCOPE_UID && grant.scope_id > UINT32_MAX))
    return make_error("grant: a scope is any process (no id), a cgroup id or a uid");
  return {};
}

std::vector<std::pair<gg_knob_key, gg_knob>> knob_rows(const DeviceTable& devices) {
  std::vector<std::pair<gg_knob_key, gg_knob>> rows;
  for (const auto& g : devices.gpus()) {
    for (const auto& k : g.knobs) {
      if (!k.ino || !k.fs_magic || !k.rule) continue;  // not a file the gate can key on
      gg_knob_key key{k.ino, k.fs_magic, 0};
      auto same = std::find_if(rows.begin(), rows.end(), [&](const auto& r) {
        return r.first.ino == key.ino && r.first.fs_magic == key.fs_magic;
      });
      if (same != rows.end()) {
        if (same->second.gpu_dev != g.pci_dev()) same->second.flags |= GG_KNOBF_SHARED;
        continue;
      }
      gg_knob v{};
      v.gpu_dev = g.pci_dev();
      v.rule = static_cast<uint8_t>(k.rule);
      v.cls = static_cast<uint8_t>(k.cls);
      v.vendor = static_cast<uint8_t>(g.vendor);
      v.flags = k.bridge ? GG_KNOBF_BRIDGE : 0;
      v.pm_cap = k.pm_cap;
      v.exp_cap = k.exp_cap;
      rows.emplace_back(key, v);
    }
  }
  return rows;
}

std::vector<gg_bar_range> bar_rows(const DeviceTable& devices) {
  std::vector<gg_bar_range> rows;
  for (const auto& g : devices.gpus())
    for (const auto& b : g.bars) {
      if (!b.memory || b.end <= b.start || rows.size() >= GG_BAR_RANGES_MAX) continue;
      gg_bar_range r{};
      r.start = b.start;
      r.end = b.end;
      r.gpu_dev = g.pci_dev();
      r.bar = static_cast<uint8_t>(b.index);
      r.vendor = static_cast<uint8_t>(g.vendor);
      rows.push_back(r);
    }
  return rows;
}

gg_grant_key grant_key(const Grant& grant, uint32_t dev) {
  return {dev, static_cast<uint16_t>(grant.cls), static_cast<uint16_t>(grant.scope), grant.scope_id};
}

gg_grant grant_value(const Grant& grant) {
  return {grant.not_before_ns,
          grant.not_after_ns,
          grant.id,
          static_cast<uint8_t>(grant.pkind),
          static_cast<uint8_t>(grant.key_index),
          {0, 0},
          grant.key_value};
}

void fold_grant_row(std::vector<Grant>& grants, const gg_grant_key& key, const gg_grant& value, int64_t uses) {
  for (auto& g : grants)
    if (g.id == value.id) {
      g.devs.push_back(key.dev);
      return;
    }
  grants.push_back({{key.dev},
                    key.cls,
                    value.not_before_ns,
                    value.not_after_ns,
                    uses,
                    key.scope,
                    key.scope_id,
                    value.id,
                    value.pkind,
                    value.key_index,
                    value.key_value});
}

void sort_grants(std::vector<Grant>& grants) {
  std::sort(grants.begin(), grants.end(), [](const Grant& a, const Grant& b) { return a.id < b.id; });
}

Takeover claim_restart_state(gg_state& st, bool found_earlier) {
  Takeover t;
  if (found_earlier && st.daemon_pid != 0) {
    t.happened = true;
    t.previous_pid = st.daemon_pid;
    t.previous_heartbeat_ns = st.daemon_heartbeat_ns;
  }
  st.version = GG_STATE_VERSION;
  st.daemon_pid = static_cast<uint32_t>(getpid());
  st.daemon_heartbeat_ns = boottime_ns();
  if (st.next_grant_id == 0) st.next_grant_id = 1;
  return t;
}

uint32_t next_grant_id(gg_state& st, uint32_t wanted) {
  if (wanted == 0) {
    wanted = st.next_grant_id++;
    if (wanted == 0) wanted = st.next_grant_id++;
  } else if (wanted >= st.next_grant_id) {
    st.next_grant_id = wanted + 1;  // given by another home: never handed out again here
  }
  return wanted;
}

EngineStats acknowledged_in(const gg_state& st) {
  EngineStats s;
  for (unsigned c = 0; c < GG_CLASS_COUNT; c++) {
    s.per_class[c].dropped = st.acked_dropped[c];
    s.per_class[c].exit_dropped = st.acked_exit_dropped[c];
  }
  s.guard_dropped = st.acked_guard_dropped;
  return s;
}

void acknowledge_in(gg_state& st, const EngineStats& recorded) {
  for (unsigned c = 0; c < GG_CLASS_COUNT; c++) {
    st.acked_dropped[c] = recorded.per_class[c].dropped;
    st.acked_exit_dropped[c] = recorded.per_class[c].exit_dropped;
  }
  st.acked_guard_dropped = recorded.guard_dropped;
  st.daemon_heartbeat_ns = boottime_ns();
}

Result<uint32_t> GateSet::install_grant(const Grant& grant) {
  if (gates_.empty()) return make_error("no gate is running that could hold a grant (the simulation holds none)");
  Grant g = grant;
  for (size_t i = 0; i < gates_.size(); i++) {
    auto id = gates_[i]->install_grant(g);
    if (!id) {
      for (size_t j = 0; j < i; j++) (void)gates_[j]->revoke_grant(g.id);
      return make_error(fmt::format("{} gate: {}", gates_[i]->gate_name(), id.error().message), id.error().code);
    }
    g.id = *id;
  }
  return g.id;
}

Result<void> GateSet::revoke_grant(uint32_t id) {
  std::optional<Error> first;
  bool any = false;
  for (auto* gate : gates_) {
    auto r = gate->revoke_grant(id);
    if (r)
      any = true;
    else if (!first)
      first = r.error();
  }
  if (any || gates_.empty()) return {};
  return *first;
}

Result<std::vector<Grant>> GateSet::grants() const {
  if (gates_.empty()) return std::vector<Grant>{};
  return gates_.front()->grants();
}

Result<void> GateSet::set_devices(const DeviceTable& devices) {
  for (auto* gate : gates_)
    if (auto r = gate->set_devices(devices); !r)
      return make_error(fmt::format("{} gate: {}", gate->gate_name(), r.error().message), r.error().code);
  return {};
}

Result<void> GateSet::set_policy(const gg_policy& policy) {
  for (auto* gate : gates_)
    if (auto r = gate->set_policy(policy); !r)
      return make_error(fmt::format("{} gate: {}", gate->gate_name(), r.error().message), r.error().code);
  return {};
}

std::vector<std::string> GateSet::audit() const {
  std::vector<std::string> out;
  for (auto* gate : gates_)
    for (auto& line : gate->audit()) out.push_back(fmt::format("{}: {}", gate->gate_name(), line));
  return out;
}

}  // namespace gpugate
