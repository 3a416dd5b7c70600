#include "gpugate/sim_engine.hpp"

#include <time.h>

#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "gpugate/decode.hpp"
#include "gpugate/hex.hpp"

namespace gpugate {

uint64_t EngineStats::seen() const {
  uint64_t n = 0;
  for (const auto& c : per_class) n += c.seen;
  return n;
}

uint64_t EngineStats::dropped() const {
  uint64_t n = 0;
  for (const auto& c : per_class) n += c.dropped + c.exit_dropped;
  return n;
}

Result<std::vector<SimCall>> parse_sim_script(std::istream& in, const std::string& name) {
  std::vector<SimCall> calls;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    lineno++;
    if (line.empty() || line[0] == '#') continue;
    auto where = fmt::format("{}:{}", name, lineno);
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      return make_error(fmt::format("{}: not a JSON object; each line describes one ioctl", where));
    SimCall c;
    if (!j.contains("device") || !j["device"].is_string())
      return make_error(fmt::format("{}: missing \"device\" (the node's path)", where));
    c.device = j["device"].get<std::string>();
    if (!j.contains("ioctl") || !j["ioctl"].is_string())
      return make_error(fmt::format("{}: missing \"ioctl\" (the request word, e.g. \"0xc020462a\")", where));
    auto req = parse_number(j["ioctl"].get<std::string>(), UINT32_MAX);
    if (!req) return make_error(fmt::format("{}: ioctl: {}", where, req.error().message));
    c.request = static_cast<uint32_t>(*req);
    for (auto [key, dst] : {std::pair{"arg", &c.arg}, {"inner", &c.inner}, {"params", &c.params}}) {
      if (!j.contains(key)) continue;
      if (!j[key].is_string()) return make_error(fmt::format("{}: {} must be a hex string", where, key));
      auto bytes = parse_hex(j[key].get<std::string>());
      if (!bytes) return make_error(fmt::format("{}: {}: {}", where, key, bytes.error().message));
      *dst = std::move(*bytes);
    }
    c.ret = j.value("ret", int64_t{0});
    if (j.contains("nv_status")) c.nv_status = j["nv_status"].get<uint32_t>();
    c.pid = j.value("pid", c.pid);
    c.tid = j.value("tid", c.pid);
    c.uid = j.value("uid", c.uid);
    c.cgroup_id = j.value("cgroup_id", c.cgroup_id);
    c.comm = j.value("comm", c.comm);
    calls.push_back(std::move(c));
  }
  return calls;
}

Result<std::vector<HookStatus>> SimEngine::start(const DeviceTable& devices) {
  devices_ = &devices;
  for (const auto& c : calls_) {
    bool known = false;
    for (const auto& d : devices.devices()) known |= d.path == c.device;
    if (!known)
      return make_error(
          fmt::format("sim: the script uses {} but no such GPU device is configured; "
                      "add --device {}=VENDOR",
                      c.device, c.device));
  }
  return std::vector<HookStatus>{{"sim", true, fmt::format("{} scripted requests", calls_.size())}};
}

Result<size_t> SimEngine::poll(std::chrono::milliseconds, EventHandler& handler) {
  size_t n = 0;
  while (!calls_.empty() && n < 256) {
    SimCall c = std::move(calls_.front());
    calls_.pop_front();
    const Device* dev = nullptr;
    for (const auto& d : devices_->devices())
      if (d.path == c.device) dev = &d;
    timespec ts{};
    clock_gettime(CLOCK_BOOTTIME, &ts);
    gg_ioctl_enter e{};
    e.hdr.type = GG_EV_IOCTL_ENTER;
    e.hdr.size = sizeof(e);
    e.hdr.seq = seq_++;
    e.hdr.boot_ns = static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
    e.hdr.pid = c.pid;
    e.hdr.tid = c.tid;
    e.uid = c.uid;
    std::strncpy(e.comm, c.comm.c_str(), sizeof(e.comm) - 1);
    std::strncpy(e.exe_name, c.comm.c_str(), sizeof(e.exe_name) - 1);
    e.dev = dev->dev;
    e.fd = 3;
    e.device = dev->info;
    e.raw = capture({dev->info.kind, dev->info.drm_driver, c.request, c.arg, c.inner, c.params, 0});
    e.dec = decode(e.raw);
    // The simulation cannot deny: decided as an observe-only hook would be.
    e.hook = GG_HOOK_SIM;
    e.mode = GG_MODE_OBSERVE;
    e.cgroup_id = c.cgroup_id;
    Decision d = decide(policy_, subject_of(e), false, true);
    e.action = static_cast<uint8_t>(d.action);
    e.rule = d.rule;
    e.verdict = static_cast<uint8_t>(d.verdict);
    unsigned cls = e.dec.cls < GG_CLASS_COUNT ? e.dec.cls : 0;
    stats_.per_class[cls].seen++;
    handler.on_enter(e);
    gg_ioctl_exit x{};
    x.hdr.type = GG_EV_IOCTL_EXIT;
    x.hdr.size = sizeof(x);
    x.hdr.seq = e.hdr.seq;
    x.hdr.boot_ns = e.hdr.boot_ns + 1000;
    x.hdr.pid = c.pid;
    x.hdr.tid = c.tid;
    x.enter_seq = e.hdr.seq;
    x.ret = c.ret;
    x.cls = static_cast<uint8_t>(cls);
    if (c.nv_status && e.dec.status_offset) {
      x.nv_status = *c.nv_status;
      x.status_valid = 1;
    }
    handler.on_exit(x);
    n += 2;
  }
  return n;
}

}  // namespace gpugate
