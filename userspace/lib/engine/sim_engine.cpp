#include "gpugate/sim_engine.hpp"

#include "gg_decode_c.h"

#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "gpugate/decode.hpp"
#include "gpugate/hex.hpp"
#include "gpugate/hostinfo.hpp"

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

namespace {

// What a member held, for the error: the value if short, else its JSON type.
std::string what_was_there(const nlohmann::json& v) {
  if (v.is_number() || v.is_boolean()) return fmt::format("got {}", v.dump());
  if (v.is_string()) {
    auto text = v.dump();
    return text.size() <= 40 ? fmt::format("got string {}", text) : "got a string";
  }
  return fmt::format("got {}", v.type_name());
}

Error wrong_type(const std::string& where, std::string_view key, std::string_view expected, const nlohmann::json& v) {
  return make_error(fmt::format("{}: \"{}\" must be {}, {}", where, key, expected, what_was_there(v)));
}

// Members are checked before they are read: nlohmann's get<> throws on a
// mismatch, and wraps or truncates numbers of the wrong sign or kind.
Result<std::optional<uint64_t>> unsigned_member(const nlohmann::json& j, std::string_view key, uint64_t max,
                                                std::string_view expected, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end()) return std::optional<uint64_t>{};
  if (!it->is_number_unsigned() || it->get<uint64_t>() > max) return wrong_type(where, key, expected, *it);
  return std::optional<uint64_t>{it->get<uint64_t>()};
}

Result<std::optional<int64_t>> signed_member(const nlohmann::json& j, std::string_view key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end()) return std::optional<int64_t>{};
  bool fits =
      it->is_number_integer() && (!it->is_number_unsigned() || it->get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX));
  if (!fits) return wrong_type(where, key, "a signed 64-bit integer", *it);
  return std::optional<int64_t>{it->get<int64_t>()};
}

Result<std::optional<std::string>> string_member(const nlohmann::json& j, std::string_view key,
                                                 std::string_view expected, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end()) return std::optional<std::string>{};
  if (!it->is_string()) return wrong_type(where, key, expected, *it);
  return std::optional<std::string>{it->get<std::string>()};
}

constexpr std::string_view kU32 = "an unsigned 32-bit integer";
constexpr std::string_view kU64 = "an unsigned 64-bit integer";

}  // namespace

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
    auto device = string_member(j, "device", "a string (the node's path)", where);
    if (!device) return device.error();
    if (!*device) return make_error(fmt::format("{}: missing \"device\" (the node's path)", where));
    c.device = std::move(**device);
    auto ioctl = string_member(j, "ioctl", "a string (the request word, e.g. \"0xc020462a\")", where);
    if (!ioctl) return ioctl.error();
    if (!*ioctl) return make_error(fmt::format("{}: missing \"ioctl\" (the request word, e.g. \"0xc020462a\")", where));
    auto req = parse_number(**ioctl, UINT32_MAX);
    if (!req) return make_error(fmt::format("{}: ioctl: {}", where, req.error().message));
    c.request = static_cast<uint32_t>(*req);
    for (auto [key, dst] : {std::pair{"arg", &c.arg}, {"inner", &c.inner}, {"params", &c.params}}) {
      auto text = string_member(j, key, "a hex string", where);
      if (!text) return text.error();
      if (!*text) continue;
      auto bytes = parse_hex(**text);
      if (!bytes) return make_error(fmt::format("{}: {}: {}", where, key, bytes.error().message));
      *dst = std::move(*bytes);
    }
    auto ret = signed_member(j, "ret", where);
    if (!ret) return ret.error();
    c.ret = ret->value_or(0);
    auto nv_status = unsigned_member(j, "nv_status", UINT32_MAX, kU32, where);
    if (!nv_status) return nv_status.error();
    if (*nv_status) c.nv_status = static_cast<uint32_t>(**nv_status);
    // uid, pid, tid and cgroup_id as the kernel gives them.
    for (auto [key, dst] : {std::pair{"pid", &c.pid}, {"uid", &c.uid}}) {
      auto v = unsigned_member(j, key, UINT32_MAX, kU32, where);
      if (!v) return v.error();
      if (*v) *dst = static_cast<uint32_t>(**v);
    }
    auto tid = unsigned_member(j, "tid", UINT32_MAX, kU32, where);
    if (!tid) return tid.error();
    c.tid = tid->has_value() ? static_cast<uint32_t>(**tid) : c.pid;
    auto cgroup = unsigned_member(j, "cgroup_id", UINT64_MAX, kU64, where);
    if (!cgroup) return cgroup.error();
    if (*cgroup) c.cgroup_id = **cgroup;
    auto comm = string_member(j, "comm", "a string (the task name)", where);
    if (!comm) return comm.error();
    if (*comm) c.comm = std::move(**comm);
    auto at = unsigned_member(j, "at_ms", UINT64_MAX / 1'000'000, "milliseconds after the start, a number", where);
    if (!at) return at.error();
    if (*at) c.at_ns = **at * 1'000'000;
    calls.push_back(std::move(c));
  }
  return calls;
}

Result<std::vector<HookStatus>> SimEngine::start(const DeviceTable& devices) {
  devices_ = &devices;
  start_ns_ = boottime_ns();
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
    gg_ioctl_enter e{};
    e.hdr.type = GG_EV_IOCTL_ENTER;
    e.hdr.size = sizeof(e);
    e.hdr.seq = seq_++;
    e.hdr.boot_ns = c.at_ns ? start_ns_ + *c.at_ns : boottime_ns();
    e.hdr.pid = c.pid;
    e.hdr.tid = c.tid;
    e.uid = c.uid;
    std::strncpy(e.comm, c.comm.c_str(), sizeof(e.comm) - 1);
    std::strncpy(e.exe_name, c.comm.c_str(), sizeof(e.exe_name) - 1);
    e.dev = dev->dev;
    e.fd = 3;
    e.device = dev->info;
    gg_raw raw = capture({dev->info.kind, dev->info.drm_driver, c.request, c.arg, c.inner, c.params, 0});
    // The simulation cannot deny: decided by the gate's own function
    // (GG_DEFINE_GATE) as an observe-only hook would be.
    e.hook = GG_HOOK_SIM;
    e.cgroup_id = c.cgroup_id;
    gg_replay_capture_c(&raw, &policy_, &e);
    gg_replay_decide_c(&raw, &policy_, &e, 0, 1, 1);
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
